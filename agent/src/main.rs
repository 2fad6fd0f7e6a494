//! `agent`: serves the Chorus agent protocol on a TCP address.

use std::path::PathBuf;

use clap::Parser;

/// A Chorus agent: runs its share of a controller's plan against storage and
/// keeps an op-log of every operation.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:7167")]
    listen: String,
    /// Id reported to the controller (default: host name and port).
    #[arg(long)]
    id: Option<String>,
    /// Folder for op-logs while a run goes on (default: a folder under the
    /// system temp directory).
    #[arg(long)]
    spool: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let id = args
        .id
        .unwrap_or_else(|| format!("{}:{}", chorus_agent::host::hostname(), addr.port()));
    let spool = args
        .spool
        .unwrap_or_else(|| std::env::temp_dir().join(format!("chorus-agent-{}", addr.port())));
    tracing::info!(%addr, %id, spool = %spool.display(), "agent listening");
    // Printed on stdout so scripts that start an agent on port 0 learn the port.
    println!("listening on {addr}");
    let config = chorus_agent::AgentConfig {
        id,
        spool_dir: spool,
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    chorus_agent::serve(listener, config, shutdown).await
}
