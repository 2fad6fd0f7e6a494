//! `agent`: serves the Chorus agent protocol on a TCP address.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chorus_common::metrics::prometheus::Metrics;
use chorus_common::metrics::prometheus::http::MetricsServer;
use clap::Parser;

mod register;

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
    /// Keep each run's op-logs in the spool after the controller has
    /// fetched them (by default they are removed then): a record of every
    /// op this agent performed, to check a run's timeline against.
    #[arg(long)]
    keep_spool: bool,
    /// Print the host topology this agent sees (NUMA nodes, allowed CPUs)
    /// and the pinned pools it would run with `pinning: numa`, check the
    /// pinning, then exit.
    #[arg(long)]
    topology: bool,
    /// Serve mutual TLS: DIR/agent.pem and DIR/agent.key, and only accept
    /// controllers whose certificate is signed by DIR/ca.pem (as written by
    /// `controller certs init`).
    #[arg(long, value_name = "DIR", env = "CHORUS_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// Require every request to carry the token in FILE (its content,
    /// trimmed) as `authorization: Bearer <token>`.
    #[arg(long, value_name = "FILE", env = "CHORUS_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve plaintext and accept any controller: only on a network where
    /// everyone may run plans against this host's storage.
    #[arg(long, conflicts_with_all = ["tls_dir", "token_file"])]
    insecure: bool,
    /// Register in etcd so controllers find this agent (`controller run
    /// --etcd URL`): comma-separated endpoints, e.g. http://etcd:2379. The
    /// key /chorus/agents/<id> lives as long as this agent does.
    #[arg(long, value_name = "URL", env = "CHORUS_ETCD")]
    etcd: Option<String>,
    /// The address registered in etcd, the one controllers dial (default:
    /// the listen IP if it is a specific one, else <hostname>:<port>).
    #[arg(long, value_name = "HOST:PORT", env = "CHORUS_ADVERTISE")]
    advertise: Option<String>,
    /// TTL of the etcd lease, in seconds: how long a dead agent stays listed.
    /// It is renewed every third of this.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    etcd_ttl: u64,
    /// On SIGTERM or Ctrl-C: how long to keep serving the stopped stage's
    /// op-logs to the controller (unless its session ends first) before
    /// exiting, e.g. 20s, 1m. A second signal exits at once.
    #[arg(long, value_name = "DURATION", default_value = "20s",
          value_parser = chorus_common::plan::parse_duration)]
    stop_grace: Duration,
    /// Serve this agent's own figures at `GET /metrics` on ADDR (host:port,
    /// port 0 picks one) in the Prometheus text format, for long-running
    /// agents scraped where they run (Kubernetes): each run's live ops,
    /// bytes and errors by op kind and class, active workers, latency
    /// histograms and host figures, reset when a run begins. An address
    /// that cannot be bound is exit code 2 before the agent listens.
    #[arg(long, value_name = "ADDR", env = "CHORUS_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Test and benchmark aid: serve N independent agents from this one
    /// process, on --listen's port and the N−1 after it (each on a free
    /// port of its own with port 0), each with its own id (`--id` then
    /// `-PORT`, or `<hostname>:PORT`), session, clock and spool folder
    /// (`--spool`/PORT). They share the process's threads, so a controller
    /// can be driven with thousands of agents on one host. Prints
    /// `listening on LIST`, LIST as `controller run --agents` takes it.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=chorus_agent::simulate::MAX_SIMULATED as i64),
          conflicts_with_all = ["etcd", "advertise", "metrics_listen", "topology"])]
    simulate: Option<u32>,
}

/// Exit code for bad flags or files, as clap uses.
const EXIT_BAD_INPUT: i32 = 2;

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
    // Checked before listening, so a misconfigured agent never serves.
    let security = match security(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(EXIT_BAD_INPUT);
        }
    };
    if let Some(n) = args.simulate {
        return simulate(&args, n as usize, security).await;
    }
    let (metrics, metrics_server) = match serve_metrics(args.metrics_listen.as_deref()).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(EXIT_BAD_INPUT);
        }
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", chorus_agent::host::hostname(), addr.port()));
    let spool = args
        .spool
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("chorus-agent-{}", addr.port())));
    tracing::info!(%addr, %id, spool = %spool.display(), %security, "agent listening");
    // Registered before saying "listening": whoever waits for that line
    // can find the agent in etcd already.
    let registrar = register_if_asked(&args, addr, &id).await;
    let signals = StopSignals::watch()?;
    // Printed on stdout so scripts that start an agent on port 0 learn the port.
    println!("listening on {addr}");
    // On stderr: scripts read stdout's first line and may close it, and a
    // second line to a closed pipe would end the agent.
    if let Some(server) = &metrics_server {
        tracing::info!("metrics on http://{}/metrics", server.local_addr());
    }
    let config = chorus_agent::AgentConfig {
        id,
        spool_dir: spool,
        keep_spool: args.keep_spool,
        security,
        metrics,
        shared_pools: None,
    };
    let grace = args.stop_grace;
    let (left_tx, left_rx) = tokio::sync::oneshot::channel();
    let stop = async move {
        let reason = signals.first().await;
        // Leave the registry while the stage stops, so no controller picks
        // a stopping agent; awaited before the process exits.
        let _ = left_tx.send(registrar.map(|r| tokio::spawn(r.stop())));
        chorus_agent::Stop { reason, grace }
    };
    let served = chorus_agent::serve_until(listener, config, stop).await;
    if let Ok(Some(leaving)) = left_rx.await {
        let _ = leaving.await;
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// `--simulate N`: N agents in this process (`chorus_agent::simulate`),
/// stopped together by the first signal.
async fn simulate(
    args: &Args,
    n: usize,
    security: chorus_agent::ServerSecurity,
) -> anyhow::Result<()> {
    // Each agent holds a listener, its controller's connection and its
    // spool files: thousands of them need more than the usual soft 1024.
    match chorus_common::limits::raise_nofile() {
        Ok(Some(limit)) if limit < 4 * n as u64 + 64 => tracing::warn!(
            "open-file limit {limit} may be too low for {n} simulated agents (about 4 each): \
             raise it (ulimit -Hn)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    // Thousands of sessions, each with threads of its own (log writer,
    // pacer): without this each thread holds a huge page of its own.
    if let Err(e) = chorus_common::limits::no_huge_pages() {
        tracing::warn!("cannot turn transparent huge pages off: {e}");
    }
    let listeners = match chorus_agent::simulate::bind(&args.listen, n).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(EXIT_BAD_INPUT);
        }
    };
    let list = chorus_agent::simulate::agents_arg(&listeners)?;
    let spool = args.spool.clone().unwrap_or_else(|| {
        let port = listeners[0].local_addr().map_or(0, |a| a.port());
        std::env::temp_dir().join(format!("chorus-agent-sim-{port}"))
    });
    tracing::info!(agents = n, spool = %spool.display(), %security, "simulated agents listening");
    let signals = StopSignals::watch()?;
    println!("listening on {list}");
    let config = chorus_agent::simulate::SimulateConfig {
        id_prefix: args.id.clone(),
        spool,
        keep_spool: args.keep_spool,
        security,
    };
    let grace = args.stop_grace;
    let stop = async move {
        let reason = signals.first().await;
        chorus_agent::Stop { reason, grace }
    };
    chorus_agent::simulate::serve(listeners, config, stop).await?;
    tracing::info!("stopped");
    Ok(())
}

/// With `--metrics-listen`: the registry and its server, bound (an
/// address in use is an error naming it).
async fn serve_metrics(
    addr: Option<&str>,
) -> Result<(Option<Arc<Metrics>>, Option<MetricsServer>), String> {
    let Some(addr) = addr else {
        return Ok((None, None));
    };
    let metrics = Arc::new(Metrics::new());
    let server = MetricsServer::bind(addr, metrics.clone()).await?;
    Ok((Some(metrics), Some(server)))
}

/// With `--etcd`: registered (exits 1 if that fails, naming why).
async fn register_if_asked(
    args: &Args,
    addr: std::net::SocketAddr,
    id: &str,
) -> Option<register::Registrar> {
    let endpoints = args.etcd.as_ref()?;
    let registered = async {
        let address = register::advertise_address(
            args.advertise.as_deref(),
            addr,
            &chorus_agent::host::hostname(),
        )?;
        register::start(register::EtcdConfig {
            endpoints: endpoints.clone(),
            ttl_s: args.etcd_ttl,
            id: id.to_string(),
            address,
        })
        .await
    };
    match registered.await {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The security the flags ask for. One of them is required: an agent runs
/// plans against storage with its own credentials, so serving everyone
/// must be a choice, not a default.
fn security(args: &Args) -> anyhow::Result<chorus_agent::ServerSecurity> {
    if args.insecure {
        return Ok(chorus_agent::ServerSecurity::insecure());
    }
    if args.tls_dir.is_none() && args.token_file.is_none() {
        anyhow::bail!(
            "say who may talk to this agent: --tls-dir DIR (mutual TLS, certificates from \
             `controller certs init`), --token-file FILE (a shared token), both, or \
             --insecure (plaintext, anyone)"
        );
    }
    chorus_agent::ServerSecurity::load(args.tls_dir.as_deref(), args.token_file.as_deref())
}

/// SIGTERM (what systemd, Kubernetes and SLURM send to stop) and SIGINT
/// (Ctrl-C), watched from before the agent says it listens.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn watch() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        let watch =
            |kind, name| signal(kind).map_err(|e| anyhow::anyhow!("cannot watch for {name}: {e}"));
        Ok(StopSignals {
            term: watch(SignalKind::terminate(), "SIGTERM")?,
            int: watch(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    /// The next signal's name and the exit code a shell reports for a
    /// process it ended (128 + its number).
    async fn next(&mut self) -> (&'static str, i32) {
        tokio::select! {
            _ = self.term.recv() => ("SIGTERM", 143),
            _ = self.int.recv() => ("SIGINT", 130),
        }
    }

    /// Waits for the first signal and returns its name; from then on a
    /// second one exits the process at once.
    async fn first(mut self) -> String {
        let (first, _) = self.next().await;
        tokio::spawn(async move {
            let (second, code) = self.next().await;
            tracing::warn!("{second} while stopping: exiting now");
            std::process::exit(code);
        });
        first.to_string()
    }
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
