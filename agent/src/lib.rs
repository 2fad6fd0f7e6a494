//! The Chorus agent: a gRPC service that takes one controller's plan at a
//! time, runs its share of each stage when told, streams progress and
//! results, and serves its op-logs.
//!
//! - [`service`]: the `Agent` gRPC service (one session at a time).
//! - [`session`]: what a session holds: the plan, this agent's place in it,
//!   and where its op-logs are spooled.
//! - [`host`]: facts about the host reported in `Hello`.
//! - [`auth`]: who may talk to the agent (mTLS, token, or plaintext).
//! - [`watchdog`]: ends a session whose controller went silent.
//!
//! The controller embeds this crate to run agents in-process when none are
//! named (`controller run plan.yaml` on one host); remote agents are the
//! `agent` binary, the same code behind a socket.

pub mod auth;
pub mod host;
pub mod service;
pub mod session;
pub mod watchdog;

use std::future::Future;
use std::path::PathBuf;

use chorus_proto::{AgentServer, MAX_MESSAGE_BYTES};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;

pub use auth::ServerSecurity;
pub use service::AgentService;

/// How an agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The id this agent reports in `Hello`.
    pub id: String,
    /// Where op-logs are written while a run goes on; one folder per run.
    pub spool_dir: PathBuf,
    /// Who may talk to the agent: TLS and token checks, or none.
    pub security: ServerSecurity,
}

/// Serves the agent protocol on `listener` until `shutdown` completes,
/// with the TLS and token checks of `config.security`.
pub async fn serve(
    listener: TcpListener,
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.spool_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create spool directory {}: {e}",
            config.spool_dir.display()
        )
    })?;
    let security = config.security.clone();
    let service = AgentServer::new(AgentService::new(config))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Every RPC passes the token check (a no-op without a token), so the
    // service has one type whatever the security.
    let service = InterceptedService::new(service, security.token_check());
    let mut server = tonic::transport::Server::builder();
    let router = server.add_service(service);
    match security.tls() {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(auth::tls_incoming(listener, tls), shutdown)
                .await?
        }
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await?
        }
    }
    Ok(())
}
