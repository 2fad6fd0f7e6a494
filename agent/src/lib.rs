//! The Chorus agent: a gRPC service that takes one controller's plan at a
//! time, runs its share of each stage when told, streams progress and
//! results, and serves its op-logs.
//!
//! - [`service`]: the `Agent` gRPC service (one session at a time); its
//!   handlers parse and delegate.
//! - [`session`]: what a session holds: the plan, this agent's place in it,
//!   and where its op-logs are spooled; the slot it is kept in.
//! - [`stage`]: one stage (or step) on its own task: stores opened,
//!   progress streamed, op-log flushed, result sent.
//! - [`kinds`]: how each kind of stage is executed (one interface; the
//!   workload engine runs prepare, workload and cleanup).
//! - [`fetch`]: op-log files served in chunks.
//! - [`trace`]: replay traces received from the controller, checked, and
//!   kept in the session by content id.
//! - [`shutdown`]: the stop signal shared by the server, stage tasks and
//!   watchdog, and the wait for running stages.
//! - [`host`]: facts about the host reported in `Hello`.
//! - [`sampler`]: the host's CPU, memory and network sampled each second
//!   of a stage, for the controller's client-bound verdict.
//! - [`auth`]: who may talk to the agent (mTLS, token, or plaintext).
//! - [`watchdog`]: ends a session whose controller went silent.
//! - [`simulate`]: many agents in one process (`agent --simulate N`), each
//!   on its own port with its own id, clock and spool: a test and
//!   benchmark aid for driving a controller with thousands of agents.
//!
//! The controller embeds this crate to run agents in-process when none are
//! named (`controller run plan.yaml` on one host); remote agents are the
//! `agent` binary, the same code behind a socket.

pub mod auth;
pub mod fetch;
pub mod host;
pub mod kinds;
pub mod preflight;
pub mod sampler;
pub mod service;
pub mod session;
pub mod shutdown;
pub mod simulate;
pub mod stage;
pub mod trace;
pub mod watchdog;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chorus_proto::{AgentServer, MAX_MESSAGE_BYTES};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;

pub use auth::ServerSecurity;
pub use service::AgentService;

use session::SessionSlot;
use shutdown::Shutdown;

/// How long the server may take to close its connections once the agent
/// has drained (a client holding a stream open must not keep the process).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How an agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The id this agent reports in `Hello`.
    pub id: String,
    /// Where op-logs are written while a run goes on; one folder per run.
    pub spool_dir: PathBuf,
    /// Keep a run's spool folder after its controller fetched the logs
    /// (`--keep-spool`): an audit trail of what the agent did, which the
    /// chaos test compares with the merged timeline.
    pub keep_spool: bool,
    /// Who may talk to the agent: TLS and token checks, or none.
    pub security: ServerSecurity,
    /// The registry `agent --metrics-listen` serves, fed by each session's
    /// stages and reset when a session begins; `None` when not served.
    pub metrics: Option<Arc<chorus_common::metrics::prometheus::Metrics>>,
    /// Pools every session of this agent runs on instead of building its
    /// own: the simulator's sessions share one process's threads
    /// ([`simulate`]); `None` builds a session's pools from its plan.
    pub shared_pools: Option<Arc<chorus_common::pools::Pools>>,
}

/// Why and how an agent stops.
#[derive(Clone, Debug)]
pub struct Stop {
    /// Said in the running stage's `StageDone.stopped_by`, in heartbeat
    /// replies and in refusals, e.g. `SIGTERM`.
    pub reason: String,
    /// How long the op-logs are still served after the stop, unless the
    /// session ends first.
    pub grace: Duration,
}

/// Serves the agent protocol on `listener` until `shutdown` completes, then
/// stops at once (no grace); see [`serve_until`].
pub async fn serve(
    listener: TcpListener,
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stop = async move {
        shutdown.await;
        Stop {
            reason: "shutdown".to_string(),
            grace: Duration::ZERO,
        }
    };
    serve_until(listener, config, stop).await
}

/// Serves the agent protocol on `listener`, with the TLS and token checks
/// of `config.security`, until `stop` completes; then stops cleanly: the
/// running stage stops its workers and ends with its result (stopped by
/// `Stop::reason`), op-logs are served until the session ends or for
/// `Stop::grace`, and this returns only after the stage has ended and its
/// op-log writer has flushed.
pub async fn serve_until(
    listener: TcpListener,
    config: AgentConfig,
    stop: impl Future<Output = Stop> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.spool_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create spool directory {}: {e}",
            config.spool_dir.display()
        )
    })?;
    let security = config.security.clone();
    let agent = AgentService::new(config);
    let (shutdown, slot) = (agent.shutdown(), agent.session());
    let drained = drain(stop, shutdown.clone(), slot);
    let service = AgentServer::new(agent)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Every RPC passes the token check (a no-op without a token), so the
    // service has one type whatever the security.
    let service = InterceptedService::new(service, security.token_check());
    let mut server = tonic::transport::Server::builder();
    let router = server.add_service(service);
    let served = async move {
        match security.tls() {
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(auth::tls_incoming(listener, tls), drained)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), drained)
                    .await
            }
        }
    };
    let mut phase = shutdown.subscribe();
    let close_timed_out = async move {
        shutdown::closed(&mut phase).await;
        tokio::time::sleep(CLOSE_TIMEOUT).await;
    };
    tokio::select! {
        r = served => r?,
        _ = close_timed_out => {
            tracing::warn!("connections still open {CLOSE_TIMEOUT:?} after the stop: closing anyway");
        }
    }
    Ok(())
}

/// The server's shutdown future: waits for the stop, broadcasts it, waits
/// for every stage task and for the session's end (at most the grace),
/// then closes.
async fn drain(stop: impl Future<Output = Stop>, shutdown: Shutdown, slot: Arc<SessionSlot>) {
    let Stop { reason, grace } = stop.await;
    shutdown.begin(&reason);
    if slot.with(|s| s.is_some()) {
        tracing::info!(
            "stopping ({reason}): no new stage; op-logs served until the session ends or \
             for {:.0} s",
            grace.as_secs_f64()
        );
    }
    let session_over = async {
        let _ = tokio::time::timeout(grace, slot.ended()).await;
    };
    tokio::join!(session_over, shutdown.tasks_done());
    shutdown.close();
}
