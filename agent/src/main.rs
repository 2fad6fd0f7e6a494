//! `agent`: serves the Chorus agent protocol on a TCP address.

use std::path::PathBuf;

use clap::Parser;

/// mimalloc: records made on worker threads are freed on the op-log
/// writer's thread, which glibc malloc serializes on arena locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Print the host topology this agent sees (NUMA nodes, allowed CPUs)
    /// and the pinned pools it would run with `pinning: numa`, check the
    /// pinning, then exit.
    #[arg(long)]
    topology: bool,
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
    if args.topology {
        return print_topology();
    }
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

/// `--topology`: what this agent sees and how it will pin. The pools are
/// really started and their threads' affinity read back from the kernel, so
/// the output shows pinning that works here, not only a plan.
fn print_topology() -> anyhow::Result<()> {
    use chorus_common::pools::{PoolSpec, Pools};
    use chorus_common::topology::{Topology, format_cpu_list};

    let topo = Topology::detect();
    println!("topology: {topo}");
    println!("allowed CPUs: {}", format_cpu_list(&topo.allowed_cpus));
    println!("NUMA nodes: {}", topo.nodes.len());
    for node in &topo.nodes {
        println!("  node{}: CPUs {}", node.id, format_cpu_list(&node.cpus));
    }
    let pools = Pools::build(&PoolSpec::Numa, &topo)
        .map_err(|e| anyhow::anyhow!("cannot build the NUMA pools: {e}"))?;
    println!("pools (pinning: numa): {}", pools.len());
    for i in 0..pools.len() {
        let node = pools
            .node(i)
            .map(|n| format!("node{n}, "))
            .unwrap_or_default();
        println!(
            "  pool{i}: {node}CPUs {}, {} worker thread{}",
            format_cpu_list(pools.cpus(i)),
            pools.threads(i),
            if pools.threads(i) == 1 { "" } else { "s" }
        );
    }
    let checked = pools
        .check_pinning()
        .map_err(|e| anyhow::anyhow!("pinning check failed: {e}"))?;
    let threads = if checked == 1 { "thread" } else { "threads" };
    println!("pinning check: {checked} pool {threads}, each allowed only its pool's CPUs");
    Ok(())
}
