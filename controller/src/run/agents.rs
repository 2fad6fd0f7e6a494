//! Finding, starting and talking to agents: embedded ones on loopback when
//! none are named, remote ones by address; opening their sessions; and
//! measuring their clocks.
//!
//! Start-up (`reachable`, `connect`, `open_sessions`) talks to the agents
//! at once, at most [`STARTUP_FANOUT`] at a time, and keeps their order.
//! Every call has a deadline (`transport`'s constants), so a silent agent
//! costs the run that deadline and an error naming it, never a hang; when
//! several fail, the error names each (up to [`NAMED_FAILURES`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chorus_common::clock::{ClockEstimate, ClockSample, now_ns};
use chorus_proto::pb;
use futures::StreamExt;
use tokio::sync::oneshot;

use crate::transport::{self, Client, Security};
use crate::versions::{self, Versions};

/// Clock samples per measurement; the minimum-RTT one is kept.
pub const CLOCK_SAMPLES: u32 = 32;

/// Agents contacted at once at start-up: enough that hundreds start in a
/// few round trips' time, few enough not to open hundreds of connections
/// (and TLS handshakes) in one burst, nor to crowd the clock samples.
pub const STARTUP_FANOUT: usize = 32;

/// Failures spelled out in one error when several agents fail at start-up;
/// the rest are counted.
pub const NAMED_FAILURES: usize = 8;

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
    /// Set when the agent runs another Chorus release on the same wire
    /// protocol: said at start-up and kept in `run.json`.
    pub version_warning: Option<String>,
}

impl AgentHandle {
    /// (agent clock − controller clock), from the start measurement.
    pub fn offset_ns(&self) -> i64 {
        self.clock_start.as_ref().map_or(0, |c| c.offset_ns)
    }

    /// `agent ID at HOST:PORT`, as errors name it.
    pub fn name(&self) -> String {
        format!("agent {} at {}", self.id, self.addr)
    }
}

/// Agents this controller started in its own process; stopped on drop.
pub struct EmbeddedAgents {
    stops: Vec<oneshot::Sender<()>>,
    spools: Vec<PathBuf>,
}

impl EmbeddedAgents {
    /// Each agent's spool folder, in the order of their addresses.
    #[cfg(test)]
    pub fn spools(&self) -> &[PathBuf] {
        &self.spools
    }
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
    // Each call's agents get spool folders of their own: a process that
    // starts embedded agents twice (tests running side by side) must not
    // have one set remove the other's spool when it stops.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for i in 0..n {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind a loopback port for an embedded agent")?;
        let addr = listener.local_addr()?;
        let spool =
            std::env::temp_dir().join(format!("chorus-embedded-{}-{call}-{i}", std::process::id()));
        let config = chorus_agent::AgentConfig {
            id: format!("local-{i}"),
            spool_dir: spool.clone(),
            keep_spool: false,
            // In-process, on loopback, reached only by this controller.
            security: chorus_agent::ServerSecurity::insecure(),
            // The controller serves the run's metrics itself.
            metrics: None,
            shared_pools: None,
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
    // `buffered` keeps the order of `addrs`.
    let tried: Vec<(String, anyhow::Result<Client>)> = futures::stream::iter(addrs)
        .map(|addr| async move {
            let connected = transport::connect(&addr, security).await;
            (addr, connected)
        })
        .buffered(STARTUP_FANOUT)
        .collect()
        .await;
    let mut live = Vec::with_capacity(tried.len());
    for (addr, connected) in tried {
        match connected {
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

/// Connects to every agent with `security` and asks who it is, all at once
/// (bounded). An agent on another wire protocol, or busy with another
/// controller, is refused; one on another release of the same protocol is
/// warned about on stderr and in [`AgentHandle::version_warning`]. Ids are
/// made unique by suffixing the index where two agents report the same one.
pub async fn connect(addrs: &[String], security: &Security) -> anyhow::Result<Vec<AgentHandle>> {
    let greeted: Vec<_> = futures::stream::iter(addrs)
        .map(|addr| greet(addr, security))
        .buffered(STARTUP_FANOUT)
        .collect()
        .await;
    let mut agents: Vec<AgentHandle> = Vec::with_capacity(addrs.len());
    let mut failures = Vec::new();
    for (index, (addr, greeting)) in addrs.iter().zip(greeted).enumerate() {
        let (client, hello, version_warning) = match greeting {
            Ok(g) => g,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
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
            version_warning,
        });
    }
    if !failures.is_empty() {
        return Err(several("could not be used", failures, addrs.len()));
    }
    for warning in agents.iter().filter_map(|a| a.version_warning.as_ref()) {
        eprintln!("warning: {warning}");
    }
    Ok(agents)
}

/// Connects to the agent at `addr`, says Hello and judges its versions: the
/// client, its reply and a version warning, if any.
async fn greet(
    addr: &str,
    security: &Security,
) -> anyhow::Result<(Client, pb::HelloReply, Option<String>)> {
    let mut client = transport::connect(addr, security).await?;
    let hello = transport::hello(&mut client, addr, security).await?;
    let who = format!("agent {} at {addr}", hello.agent_id);
    // Versions first: an agent on another protocol may mean anything by
    // its other fields.
    let warning = match versions::judge_hello(&who, &hello) {
        Versions::Same => None,
        Versions::Compatible(w) => Some(w),
        Versions::Incompatible(e) => anyhow::bail!(e),
    };
    if !hello.busy_with.is_empty() {
        anyhow::bail!(
            "{who} is busy with session {} of another controller",
            hello.busy_with
        );
    }
    Ok((client, hello, warning))
}

/// The version warnings of `agents`, for `run.json`.
pub fn version_warnings(agents: &[AgentHandle]) -> Vec<String> {
    agents
        .iter()
        .filter_map(|a| a.version_warning.clone())
        .collect()
}

/// What every agent's session starts with: the parts of `LoadPlan` that
/// are the same for all.
pub struct SessionStart<'a> {
    pub session_id: &'a str,
    pub run_id: &'a str,
    /// The plan in canonical YAML.
    pub plan_yaml: &'a str,
    /// Forwarded variables: their values go only into the request (over
    /// TLS) and are never logged.
    pub env: &'a BTreeMap<String, String>,
    /// How long an agent goes on without hearing the controller.
    pub controller_timeout: Duration,
}

/// Opens the session on every agent: sends it the plan, then measures its
/// clock (`clock_start`), all agents at once, at most [`STARTUP_FANOUT`] at
/// a time. If any fails, the sessions that did open are ended (so the
/// agents are free for the next try at once, not after their controller
/// timeout) and the error names every agent that failed.
pub async fn open_sessions(
    agents: &mut [AgentHandle],
    start: &SessionStart<'_>,
) -> anyhow::Result<()> {
    let began = Instant::now();
    let count = agents.len() as u32;
    let opened: Vec<Result<(), (bool, anyhow::Error)>> = futures::stream::iter(agents.iter_mut())
        .map(|a| open_session(a, count, start))
        .buffered(STARTUP_FANOUT)
        .collect()
        .await;
    let loaded: Vec<bool> = opened
        .iter()
        .map(|r| r.as_ref().map_or_else(|(l, _)| *l, |_| true))
        .collect();
    let failures: Vec<anyhow::Error> = opened
        .into_iter()
        .filter_map(|r| r.err().map(|(_, e)| e))
        .collect();
    if failures.is_empty() {
        tracing::info!(
            "sessions open on {count} agent(s) in {:.1} ms (plan and clocks)",
            began.elapsed().as_secs_f64() * 1e3
        );
        return Ok(());
    }
    let to_end = agents
        .iter_mut()
        .zip(loaded)
        .filter(|(_, l)| *l)
        .map(|(a, _)| a);
    end_sessions(to_end, start.session_id).await;
    Err(several("could not start the run", failures, agents.len()))
}

/// One agent's [`open_sessions`]: `LoadPlan`, then the clock. An error says
/// whether the plan was loaded (and the session so open).
async fn open_session(
    a: &mut AgentHandle,
    count: u32,
    start: &SessionStart<'_>,
) -> Result<(), (bool, anyhow::Error)> {
    let request = pb::LoadPlanRequest {
        session_id: start.session_id.to_string(),
        run_id: start.run_id.to_string(),
        plan_yaml: start.plan_yaml.to_string(),
        agent_index: a.index,
        agent_count: count,
        agent_id: a.id.clone(),
        env: start.env.clone().into_iter().collect(),
        controller_timeout_ms: start.controller_timeout.as_millis() as u64,
    };
    let who = a.name();
    let load = a.client.load_plan(request);
    transport::call(&who, "LoadPlan", transport::LOAD_PLAN_TIMEOUT, load)
        .await
        .map_err(|e| (false, e.into()))?;
    a.clock_start = Some(measure_clock(a).await.map_err(|e| (true, e))?);
    Ok(())
}

/// Ends the sessions of `agents`, at once (bounded), each within
/// [`transport::END_SESSION_TIMEOUT`]; failures are logged: the agent frees
/// itself after its controller timeout anyway.
pub async fn end_sessions<'a>(agents: impl Iterator<Item = &'a mut AgentHandle>, session_id: &str) {
    futures::stream::iter(agents)
        .for_each_concurrent(STARTUP_FANOUT, |a| async move {
            let who = a.name();
            let end = a.client.end_session(pb::EndSessionRequest {
                session_id: session_id.to_string(),
            });
            if let Err(e) =
                transport::call(&who, "EndSession", transport::END_SESSION_TIMEOUT, end).await
            {
                tracing::warn!("{e}");
            }
        })
        .await;
}

/// One error for the `errors` of some of `of` agents: the error itself when
/// there is one, else a count and the first [`NAMED_FAILURES`], each of
/// which names its agent.
pub(crate) fn several(what: &str, mut errors: Vec<anyhow::Error>, of: usize) -> anyhow::Error {
    if errors.len() == 1 {
        return errors.remove(0);
    }
    let named: Vec<String> = errors
        .iter()
        .take(NAMED_FAILURES)
        .map(|e| format!("{e:#}"))
        .collect();
    let mut text = format!(
        "{} of {of} agents {what}: {}",
        errors.len(),
        named.join("; ")
    );
    if errors.len() > NAMED_FAILURES {
        text.push_str(&format!("; and {} more", errors.len() - NAMED_FAILURES));
    }
    anyhow::anyhow!(text)
}

/// Measures one agent's clock offset the NTP way.
pub async fn measure_clock(agent: &mut AgentHandle) -> anyhow::Result<ClockEstimate> {
    let who = agent.name();
    measure_clock_of(&mut agent.client, &who).await
}

/// Measures the clock offset of the agent behind `client` (`who`: `agent
/// ID at HOST:PORT`, for errors) the NTP way, all samples within
/// [`transport::CLOCK_TIMEOUT`]; also used by `controller agents`.
pub async fn measure_clock_of(client: &mut Client, who: &str) -> anyhow::Result<ClockEstimate> {
    let limit = transport::CLOCK_TIMEOUT;
    let deadline = tokio::time::Instant::now() + limit;
    let rpc = format!("SyncClock ({CLOCK_SAMPLES} samples)");
    let mut samples = Vec::with_capacity(CLOCK_SAMPLES as usize);
    for _ in 0..CLOCK_SAMPLES {
        let t1_ns = now_ns();
        let sample = client.sync_clock(pb::ClockRequest { t1_ns });
        let reply = transport::call_until(who, &rpc, deadline, limit, sample).await?;
        let t4_ns = now_ns();
        samples.push(ClockSample {
            t1_ns,
            t2_ns: reply.t2_ns,
            t3_ns: reply.t3_ns,
            t4_ns,
        });
    }
    ClockEstimate::from_samples(&samples)
        .ok_or_else(|| anyhow::anyhow!("no clock samples from {who}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_failures_name_each_agent_up_to_a_bound() {
        let one = several(
            "x",
            vec![anyhow::anyhow!("agent a at h:1 refused LoadPlan")],
            3,
        );
        assert_eq!(one.to_string(), "agent a at h:1 refused LoadPlan");

        let errors: Vec<anyhow::Error> = (0..NAMED_FAILURES + 2)
            .map(|i| anyhow::anyhow!("agent a{i} at h:{i} did not answer Hello within 5 s"))
            .collect();
        let text = several("could not be used", errors, 20).to_string();
        assert!(
            text.starts_with("10 of 20 agents could not be used: agent a0 at h:0 did not answer"),
            "{text}"
        );
        assert!(
            text.contains("agent a7 at h:7") && !text.contains("agent a8"),
            "{text}"
        );
        assert!(text.ends_with("; and 2 more"), "{text}");
    }
}
