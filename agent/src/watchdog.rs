//! The agent's side of the heartbeat: a session whose controller has been
//! silent for the session's controller timeout is ended by the agent.
//!
//! A controller can vanish without closing its connections (host down,
//! network cut), so a broken stream alone cannot be relied on. The watchdog
//! stops the running stage (workers stop issuing ops, in-flight ones
//! finish), waits for it to wind down, then frees the agent for another
//! controller. The op-logs stay in the spool for `controller collect`.
//! Each look is a short lock of the session (nothing awaited under it); the
//! watchdog ends with the session or when the agent's server closes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::session::{Session, SessionSlot};
use crate::shutdown::{self, Shutdown};

/// Shortest and longest pause between two looks: a quarter of the timeout,
/// within these bounds, keeps the reaction time within ~25% of the bound.
const MIN_CHECK: Duration = Duration::from_millis(100);
const MAX_CHECK: Duration = Duration::from_secs(1);

/// What one look found.
enum Look {
    Heard,
    /// Silent, the stage told to stop; the stage task clears `stop` when
    /// it has ended, and a later look ends the session.
    Stopping,
    Ended,
}

/// Watches session `id` until it ends, whether by `EndSession`, by another
/// session replacing it, or by the controller's silence.
pub fn spawn(slot: Arc<SessionSlot>, id: String, timeout: Duration, shutdown: &Shutdown) {
    let every = (timeout / 4).clamp(MIN_CHECK, MAX_CHECK);
    let mut phase = shutdown.subscribe();
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown::closed(&mut phase) => return,
            }
            match slot.with(|s| look(s, &id, timeout, &mut warned)) {
                Look::Heard | Look::Stopping => {}
                Look::Ended => return,
            }
        }
    });
}

fn look(slot: &mut Option<Session>, id: &str, timeout: Duration, warned: &mut bool) -> Look {
    let Some(session) = slot.as_mut().filter(|s| s.id == id) else {
        return Look::Ended;
    };
    let silence = session.silence();
    if silence < timeout {
        return Look::Heard;
    }
    if let Some(stop) = &session.stop {
        if !*warned {
            tracing::warn!(
                session = %id,
                "no word from the controller for {:.1} s: stopping the stage",
                silence.as_secs_f64()
            );
            *warned = true;
        }
        stop.store(true, Ordering::Relaxed);
        return Look::Stopping;
    }
    tracing::warn!(
        session = %id,
        run = %session.run_id,
        spool = %session.dir.display(),
        "controller lost: session ended, op-logs kept in the spool for `controller collect`"
    );
    *slot = None;
    Look::Ended
}
