//! The controller's side of the heartbeat: one task per agent calls
//! `Heartbeat` every second for the whole session.
//!
//! Two jobs: the agent's watchdog hears the controller (without it, an
//! agent ends its session after `control.controller_timeout`), and an agent
//! that stops answering between stages is noticed within
//! `control.agent_timeout` instead of at the next stage's start.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chorus_common::clock::now_ns;
use chorus_proto::pb;
use tokio::task::JoinHandle;

use crate::transport::Client;

/// Time between two heartbeats to one agent.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// When and why an agent left the run (controller clock).
#[derive(Clone, Debug)]
pub struct Lost {
    pub at_ns: i64,
    pub reason: String,
    /// True when the agent said it was stopping (SIGTERM: a pod deleted, a
    /// job cancelled): a clean departure, its logs complete, reported as
    /// stopped and not lost. False: it stopped answering.
    pub stopped: bool,
}

/// What the heartbeat tasks know, per agent (in run order).
#[derive(Default)]
pub struct Health {
    lost: Vec<Mutex<Option<Lost>>>,
}

impl Health {
    /// The agent's loss, if it is lost.
    pub fn lost(&self, index: usize) -> Option<Lost> {
        self.lost
            .get(index)
            .and_then(|l| l.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Records a loss found elsewhere (a broken stage stream), so the
    /// heartbeat task stops and later stages skip the agent.
    pub fn mark_lost(&self, index: usize, lost: Lost) {
        if let Some(l) = self.lost.get(index) {
            l.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(lost);
        }
    }
}

/// The running heartbeat tasks; they stop when this is dropped.
pub struct Heartbeats {
    pub health: Arc<Health>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts one heartbeat task per client. An agent unanswered for
/// `timeout` is marked lost and its task ends.
pub fn start(clients: Vec<(String, Client)>, session_id: &str, timeout: Duration) -> Heartbeats {
    let health = Arc::new(Health {
        lost: clients.iter().map(|_| Mutex::new(None)).collect(),
    });
    let tasks = clients
        .into_iter()
        .enumerate()
        .map(|(i, (id, mut client))| {
            let (health, session_id) = (health.clone(), session_id.to_string());
            tokio::spawn(async move {
                let mut heard = Instant::now();
                let mut last_error = String::from("no reply");
                let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
                loop {
                    tick.tick().await;
                    if health.lost(i).is_some() {
                        return;
                    }
                    let beat = client.heartbeat(pb::HeartbeatRequest {
                        session_id: session_id.clone(),
                    });
                    match tokio::time::timeout(timeout, beat).await {
                        Ok(Ok(r)) if !r.get_ref().stopping.is_empty() => {
                            let why = &r.get_ref().stopping;
                            tracing::info!("agent {id} is stopping ({why})");
                            let (at_ns, reason) = (now_ns(), format!("stopped ({why})"));
                            let stopped = true;
                            health.mark_lost(
                                i,
                                Lost {
                                    at_ns,
                                    reason,
                                    stopped,
                                },
                            );
                            return;
                        }
                        Ok(Ok(_)) => heard = Instant::now(),
                        Ok(Err(s)) => last_error = crate::transport::status_text(&s),
                        Err(_) => last_error = format!("no reply within {timeout:?}"),
                    }
                    if heard.elapsed() >= timeout {
                        let reason = format!(
                            "no heartbeat reply for {:.1} s ({last_error})",
                            heard.elapsed().as_secs_f64()
                        );
                        tracing::warn!("agent {id} lost: {reason}");
                        health.mark_lost(
                            i,
                            Lost {
                                at_ns: now_ns(),
                                reason,
                                stopped: false,
                            },
                        );
                        return;
                    }
                }
            })
        })
        .collect();
    Heartbeats { health, tasks }
}
