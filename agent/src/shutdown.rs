//! The agent's stop, broadcast and awaited (the shape of tokio's
//! mini-redis example server).
//!
//! One [`Shutdown`] is shared by the serve loop, every stage task and the
//! watchdog. Stopping goes through phases: `Serving`, then `Stopping(why)`
//! (the running stage stops its workers and ends its stream with its
//! normal result, new stages and sessions are refused, op-logs are still
//! served), then `Closed` (the server stops accepting calls). The serve
//! loop waits for every stage task to end (each holds a [`TaskGuard`]), so
//! the process never exits with a stage's op-log writer unflushed.

use std::sync::Arc;

use tokio::sync::watch;

/// Where the agent is in its stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// Told to stop, for this reason (e.g. `SIGTERM`): finishing the
    /// running stage and serving op-logs a while.
    Stopping(String),
    /// No more calls are taken.
    Closed,
}

/// The shared stop signal and the count of running stage tasks.
#[derive(Clone)]
pub struct Shutdown {
    phase: Arc<watch::Sender<Phase>>,
    reason: Arc<std::sync::Mutex<Option<String>>>,
    tasks: Arc<watch::Sender<usize>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            phase: Arc::new(watch::Sender::new(Phase::Serving)),
            reason: Default::default(),
            tasks: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl Shutdown {
    /// Why the agent is stopping, once it is (also after `Closed`).
    pub fn stopping(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts the stop for `reason`; a second call keeps the first reason.
    pub fn begin(&self, reason: &str) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| reason.to_string());
        self.phase.send_if_modified(|p| {
            if *p == Phase::Serving {
                *p = Phase::Stopping(reason.to_string());
                true
            } else {
                false
            }
        });
    }

    /// The last phase: the server takes no more calls.
    pub fn close(&self) {
        self.phase.send_replace(Phase::Closed);
    }

    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Counts a stage task until the guard is dropped. Taken before the
    /// handler checks [`Shutdown::stopping`], so a stage that slips past the
    /// check is still waited for (and sees the stop at its first look).
    pub fn task(&self) -> TaskGuard {
        self.tasks.send_modify(|n| *n += 1);
        TaskGuard(self.tasks.clone())
    }

    /// Returns once no stage task runs.
    pub async fn tasks_done(&self) {
        let mut rx = self.tasks.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// One running stage task; see [`Shutdown::task`].
pub struct TaskGuard(Arc<watch::Sender<usize>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Waits until `phase` leaves `Serving`, and returns why.
pub async fn stopped(phase: &mut watch::Receiver<Phase>) -> String {
    match phase.wait_for(|p| *p != Phase::Serving).await {
        Ok(p) => match &*p {
            Phase::Stopping(reason) => reason.clone(),
            _ => "shutdown".to_string(),
        },
        // The sender lives as long as any Shutdown: gone means the agent is.
        Err(_) => "shutdown".to_string(),
    }
}

/// Waits until `phase` is `Closed`.
pub async fn closed(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Closed).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_tasks_are_awaited() {
        let s = Shutdown::default();
        let mut rx = s.subscribe();
        assert_eq!(s.stopping(), None);
        let guard = s.task();
        s.begin("SIGTERM");
        s.begin("SIGINT");
        assert_eq!(stopped(&mut rx).await, "SIGTERM");
        assert_eq!(s.stopping().as_deref(), Some("SIGTERM"));
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.tasks_done().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a stage task still runs");
        drop(guard);
        waiter.await.unwrap();
        s.close();
        closed(&mut rx).await;
    }
}
