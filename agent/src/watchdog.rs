//! The agent's side of the heartbeat: a session whose controller has been
//! silent for the session's controller timeout is ended by the agent.
//!
//! A controller can vanish without closing its connections (host down,
//! network cut), so a broken stream alone cannot be relied on. The watchdog
//! stops the running stage (workers stop issuing ops, in-flight ones
//! finish), waits for it to wind down, then frees the agent for another
//! controller. The op-logs stay in the spool for `controller collect`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::session::Session;

/// Shortest and longest pause between two looks: a quarter of the timeout,
/// within these bounds, keeps the reaction time within ~25% of the bound.
const MIN_CHECK: Duration = Duration::from_millis(100);
const MAX_CHECK: Duration = Duration::from_secs(1);

/// Watches session `id` until it ends, whether by `EndSession`, by another
/// session replacing it, or by the controller's silence.
pub fn spawn(slot: Arc<Mutex<Option<Session>>>, id: String, timeout: Duration) {
    let every = (timeout / 4).clamp(MIN_CHECK, MAX_CHECK);
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            tokio::time::sleep(every).await;
            let mut guard = slot.lock().await;
            let Some(session) = guard.as_mut().filter(|s| s.id == id) else {
                return;
            };
            let silence = session.silence();
            if silence < timeout {
                continue;
            }
            if let Some(stop) = &session.stop {
                if !warned {
                    tracing::warn!(
                        session = %id,
                        "no word from the controller for {:.1} s: stopping the stage",
                        silence.as_secs_f64()
                    );
                    warned = true;
                }
                stop.store(true, Ordering::Relaxed);
                // The stage task clears `stop` when it has ended.
                continue;
            }
            tracing::warn!(
                session = %id,
                run = %session.run_id,
                spool = %session.dir.display(),
                "controller lost: session ended, op-logs kept in the spool for `controller collect`"
            );
            *guard = None;
            return;
        }
    });
}
