//! Finding, starting and talking to agents: embedded ones on loopback when
//! none are named, remote ones by address; and measuring their clocks.

use std::path::PathBuf;

use anyhow::Context;
use chorus_common::clock::{ClockEstimate, ClockSample, now_ns};
use chorus_proto::pb;
use tokio::sync::oneshot;

use crate::transport::{self, Client, Security};

/// Clock samples per measurement; the minimum-RTT one is kept.
pub const CLOCK_SAMPLES: u32 = 32;

/// One agent taking part in a run.
pub struct AgentHandle {
    pub index: u32,
    pub addr: String,
    /// The id used as `client_id` in the op-log: the agent's own, made
    /// unique within the run.
    pub id: String,
    pub hello: pb::HelloReply,
    pub client: Client,
    pub clock_start: Option<ClockEstimate>,
    pub clock_end: Option<ClockEstimate>,
}

impl AgentHandle {
    /// (agent clock − controller clock), from the start measurement.
    pub fn offset_ns(&self) -> i64 {
        self.clock_start.as_ref().map_or(0, |c| c.offset_ns)
    }
}

/// Agents this controller started in its own process; stopped on drop.
pub struct EmbeddedAgents {
    stops: Vec<oneshot::Sender<()>>,
    spools: Vec<PathBuf>,
}

impl Drop for EmbeddedAgents {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for dir in &self.spools {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts `n` agents serving the real protocol on 127.0.0.1, each on its own
/// port with its own spool folder, and returns their addresses.
pub async fn start_embedded(n: u32) -> anyhow::Result<(Vec<String>, EmbeddedAgents)> {
    let mut embedded = EmbeddedAgents {
        stops: Vec::new(),
        spools: Vec::new(),
    };
    let mut addrs = Vec::new();
    for i in 0..n {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind a loopback port for an embedded agent")?;
        let addr = listener.local_addr()?;
        let spool =
            std::env::temp_dir().join(format!("chorus-embedded-{}-{i}", std::process::id()));
        let config = chorus_agent::AgentConfig {
            id: format!("local-{i}"),
            spool_dir: spool.clone(),
            // In-process, on loopback, reached only by this controller.
            security: chorus_agent::ServerSecurity::insecure(),
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stop_rx.await;
            };
            if let Err(e) = chorus_agent::serve(listener, config, shutdown).await {
                tracing::error!("embedded agent {i} failed: {e:#}");
            }
        });
        embedded.stops.push(stop_tx);
        embedded.spools.push(spool);
        addrs.push(addr.to_string());
    }
    Ok((addrs, embedded))
}

/// The agents of `addrs` that accept a connection now; the others are
/// skipped with a warning. Errors when none is left.
pub async fn reachable(addrs: Vec<String>, security: &Security) -> anyhow::Result<Vec<String>> {
    let mut live = Vec::with_capacity(addrs.len());
    for addr in addrs {
        match transport::connect(&addr, security).await {
            Ok(_) => live.push(addr),
            Err(e) => {
                eprintln!("warning: skipping agent at {addr} (registered, not reachable): {e:#}")
            }
        }
    }
    if live.is_empty() {
        anyhow::bail!("no registered agent is reachable");
    }
    Ok(live)
}

/// Connects to every agent with `security` and asks who it is. Ids are
/// made unique by suffixing the index where two agents report the same one.
pub async fn connect(addrs: &[String], security: &Security) -> anyhow::Result<Vec<AgentHandle>> {
    let mut agents: Vec<AgentHandle> = Vec::new();
    for (index, addr) in addrs.iter().enumerate() {
        let mut client = transport::connect(addr, security).await?;
        let hello = client
            .hello(pb::HelloRequest {
                controller_version: env!("CARGO_PKG_VERSION").to_string(),
                protocol_version: chorus_proto::PROTOCOL_VERSION,
            })
            .await
            .map_err(|s| {
                anyhow::anyhow!(
                    "agent at {addr} refused Hello: {}{}",
                    transport::status_text(&s),
                    security.refusal_hint(&s)
                )
            })?
            .into_inner();
        if !hello.busy_with.is_empty() {
            anyhow::bail!(
                "agent {} at {addr} is busy with session {} of another controller",
                hello.agent_id,
                hello.busy_with
            );
        }
        let mut id = hello.agent_id.clone();
        if id.is_empty() || agents.iter().any(|a| a.id == id) {
            id = format!("{id}-{index}");
        }
        agents.push(AgentHandle {
            index: index as u32,
            addr: addr.clone(),
            id,
            hello,
            client,
            clock_start: None,
            clock_end: None,
        });
    }
    Ok(agents)
}

/// Measures one agent's clock offset the NTP way.
pub async fn measure_clock(agent: &mut AgentHandle) -> anyhow::Result<ClockEstimate> {
    measure_clock_of(&mut agent.client, &agent.id).await
}

/// Measures the clock offset of the agent behind `client` (named `id` in
/// errors) the NTP way; also used by `controller agents`.
pub async fn measure_clock_of(client: &mut Client, id: &str) -> anyhow::Result<ClockEstimate> {
    let mut samples = Vec::with_capacity(CLOCK_SAMPLES as usize);
    for _ in 0..CLOCK_SAMPLES {
        let t1_ns = now_ns();
        let reply = client
            .sync_clock(pb::ClockRequest { t1_ns })
            .await
            .with_context(|| format!("clock sync with agent {id}"))?
            .into_inner();
        let t4_ns = now_ns();
        samples.push(ClockSample {
            t1_ns,
            t2_ns: reply.t2_ns,
            t3_ns: reply.t3_ns,
            t4_ns,
        });
    }
    ClockEstimate::from_samples(&samples)
        .ok_or_else(|| anyhow::anyhow!("no clock samples from agent {id}"))
}
