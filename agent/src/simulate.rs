//! Simulated agents: one process serving many independent agents, each on
//! its own loopback port with its own gRPC server, id, session, clock
//! anchor and spool folder (`agent --simulate N`). A test and benchmark
//! aid: a real agent process costs ~30 MiB, so a controller's behaviour at
//! 1,000 or 10,000 agents can be measured on one host only if agents share
//! a process.
//!
//! What the sessions share is what a host shares anyway or what would
//! not fit thousands of times: the process's pools (one tokio runtime per
//! NUMA node, built once; a real agent builds its own per session), the
//! host samples (`crate::sampler` reads `/proc` once for all of a
//! process's stages), the TLS and token settings. Everything the
//! controller talks to is per session, as with real agents. Per session
//! a running stage still costs its op-log writer thread (and an open-loop
//! pacer thread), so thousands of sessions running a stage at once need
//! that many threads (`kernel.pid_max`, `kernel.threads-max`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chorus_common::pools::{PoolSpec, Pools};
use chorus_common::topology::Topology;
use tokio::net::TcpListener;

use crate::{AgentConfig, ServerSecurity, Stop};

/// Most sessions one process simulates: as many as one controller drives.
pub const MAX_SIMULATED: usize = chorus_common::discovery::MAX_AGENTS;

/// Binds `n` listeners for `listen` (`IP:PORT`): ports PORT to PORT+n−1,
/// or with port 0 each its own free port. A port in use is an error
/// naming it.
pub async fn bind(listen: &str, n: usize) -> anyhow::Result<Vec<TcpListener>> {
    if n == 0 || n > MAX_SIMULATED {
        anyhow::bail!("--simulate {n}: give 1 to {MAX_SIMULATED} agents");
    }
    let first: SocketAddr = listen
        .parse()
        .map_err(|e| anyhow::anyhow!("--listen `{listen}` with --simulate: {e} (give IP:PORT)"))?;
    let ports: Vec<u16> = if first.port() == 0 {
        vec![0; n]
    } else {
        let last = first.port() as usize + n - 1;
        if last > u16::MAX as usize {
            anyhow::bail!(
                "--simulate {n} from port {} needs ports up to {last}, past {}",
                first.port(),
                u16::MAX
            );
        }
        (first.port()..=last as u16).collect()
    };
    let mut listeners = Vec::with_capacity(n);
    for port in ports {
        let addr = SocketAddr::new(first.ip(), port);
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (simulated agent)"))?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// How the simulated agents are set up: what real agents get from their
/// own flags, for all of them at once.
pub struct SimulateConfig {
    /// Each agent's id is `<prefix>-<port>`, or `<hostname>:<port>` (a
    /// real agent's default) without one.
    pub id_prefix: Option<String>,
    /// Each agent spools to `<spool>/<port>`.
    pub spool: PathBuf,
    /// `--keep-spool`, for every agent.
    pub keep_spool: bool,
    pub security: ServerSecurity,
}

/// The address list of `listeners` as `--agents` takes it: a template
/// (`127.0.0.1:{7200...8199}`) when the ports run on, else a comma list.
pub fn agents_arg(listeners: &[TcpListener]) -> anyhow::Result<String> {
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<_, _>>()?;
    let Some(first) = addrs.first() else {
        anyhow::bail!("no simulated agent");
    };
    let running_on = addrs
        .iter()
        .enumerate()
        .all(|(i, a)| a.ip() == first.ip() && a.port() as usize == first.port() as usize + i);
    if addrs.len() == 1 || !running_on {
        let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        return Ok(list.join(","));
    }
    let host = match first {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let last = addrs[addrs.len() - 1].port();
    Ok(format!("{host}:{{{}...{last}}}", first.port()))
}

/// Serves an agent on each of `listeners` until `stop` completes, then
/// stops them all as one agent stops (see [`crate::serve_until`]). An
/// agent that fails ends with its address in the error.
pub async fn serve(
    listeners: Vec<TcpListener>,
    config: SimulateConfig,
    stop: impl Future<Output = Stop> + Send + 'static,
) -> anyhow::Result<()> {
    let pools = Pools::build(&PoolSpec::Numa, &Topology::detect())
        .map_err(|e| anyhow::anyhow!("cannot build the shared pools: {e}"))?;
    let pools = Arc::new(pools);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None::<Stop>);
    tokio::spawn(async move {
        let _ = stop_tx.send(Some(stop.await));
    });
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let addr = listener.local_addr()?;
        let config = AgentConfig {
            id: id_of(config.id_prefix.as_deref(), addr),
            spool_dir: spool_of(&config.spool, addr),
            keep_spool: config.keep_spool,
            security: config.security.clone(),
            metrics: None,
            shared_pools: Some(pools.clone()),
        };
        let mut rx = stop_rx.clone();
        let stop = async move {
            match rx.wait_for(Option::is_some).await {
                Ok(s) => s.clone().unwrap_or_else(shutdown),
                // The sender went away without a stop: the process ends.
                Err(_) => shutdown(),
            }
        };
        tasks.spawn(async move {
            crate::serve_until(listener, config, stop)
                .await
                .with_context(|| format!("simulated agent at {addr}"))
        });
    }
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let r = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let (Err(e), None) = (r, &first_error) {
            first_error = Some(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn shutdown() -> Stop {
    Stop {
        reason: "shutdown".to_string(),
        grace: std::time::Duration::ZERO,
    }
}

fn id_of(prefix: Option<&str>, addr: SocketAddr) -> String {
    match prefix {
        Some(p) => format!("{p}-{}", addr.port()),
        None => format!("{}:{}", crate::host::hostname(), addr.port()),
    }
}

fn spool_of(spool: &Path, addr: SocketAddr) -> PathBuf {
    spool.join(addr.port().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ports_run_on_from_the_first_and_the_list_is_a_template() {
        // Port 0 first, to find a free range to ask for by number.
        let probe = bind("127.0.0.1:0", 3).await.unwrap();
        assert_eq!(probe.len(), 3);
        assert!(agents_arg(&probe).unwrap().split(',').count() >= 1);
        drop(probe);
        let (mut listeners, mut tries) = (None, 0);
        while listeners.is_none() && tries < 20 {
            tries += 1;
            let base = 20000 + (std::process::id() as u16 % 20000) + tries * 97;
            listeners = bind(&format!("127.0.0.1:{base}"), 4).await.ok();
        }
        let listeners = listeners.expect("a free range of 4 ports");
        let base = listeners[0].local_addr().unwrap().port();
        assert_eq!(
            agents_arg(&listeners).unwrap(),
            format!("127.0.0.1:{{{base}...{}}}", base + 3)
        );
        // A range that runs past the last port is refused, naming it.
        let e = bind("127.0.0.1:65535", 2).await.unwrap_err().to_string();
        assert!(e.contains("65536"), "{e}");
        let e = bind("127.0.0.1:0", 0).await.unwrap_err().to_string();
        assert!(e.contains("give 1 to"), "{e}");
        let e = bind("localhost:7000", 2).await.unwrap_err().to_string();
        assert!(e.contains("`localhost:7000`"), "{e}");
    }

    #[test]
    fn ids_and_spools_are_by_port() {
        let addr: SocketAddr = "127.0.0.1:7300".parse().unwrap();
        assert_eq!(id_of(Some("sim"), addr), "sim-7300");
        assert!(id_of(None, addr).ends_with(":7300"));
        assert_eq!(spool_of(Path::new("/s"), addr), Path::new("/s/7300"));
    }
}
