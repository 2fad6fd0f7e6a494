//! `controller agents`: finds agents as `run` would (`--agents`, `--etcd`,
//! `--slurm`), asks each who it is and measures its clock, and prints one
//! line (or JSON object) per agent. Agents that cannot be reached are
//! listed with the error, and make the exit code 1.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use chorus_common::clock::ClockEstimate;
use chorus_proto::PROTOCOL_VERSION;
use futures::StreamExt;
use serde::Serialize;

use crate::EXIT_BAD_INPUT;
use crate::cli::AgentsArgs;
use crate::discovery::{self, DiscoveryError};
use crate::run::agents::measure_clock_of;
use crate::transport::{self, Security};
use crate::versions::{self, Versions};

/// Agents probed at once: enough that a few hundred are listed in seconds,
/// few enough not to open hundreds of connections in one burst.
const PROBE_CONCURRENCY: usize = 32;
/// Longest one agent may take in all. Each step has its own deadline
/// (`transport`'s, whose errors say which step), so this is only a
/// backstop a little past their sum.
const PROBE_TIMEOUT: Duration = Duration::from_secs(
    transport::CONNECT_TIMEOUT.as_secs()
        + transport::HELLO_TIMEOUT.as_secs()
        + transport::CLOCK_TIMEOUT.as_secs()
        + 5,
);

/// What one agent said, or why it could not be asked.
#[derive(Debug, Serialize)]
struct AgentRow {
    /// The address dialed.
    address: String,
    /// Whether it answered Hello.
    reachable: bool,
    /// Why not, or why the clock could not be measured.
    error: Option<String>,
    id: Option<String>,
    version: Option<String>,
    hostname: Option<String>,
    cpus: Option<u32>,
    os: Option<String>,
    topology: Option<String>,
    /// Whether the agent demands a client certificate or a token.
    authenticated: Option<bool>,
    /// Whether another controller's session holds it.
    busy: Option<bool>,
    /// The wire protocol it speaks (0: from before protocol versions).
    /// Another than the controller's makes the exit code 1: `run` would
    /// refuse it (the reason is in `error`).
    protocol: Option<u32>,
    /// Another Chorus release on the same protocol: `run` would go on,
    /// with this warning.
    warning: Option<String>,
    /// The session holding it, when busy.
    busy_with: Option<String>,
    /// Agent clock minus controller clock.
    clock_offset_ns: Option<i64>,
    /// The offset is right within ± this.
    clock_uncertainty_ns: Option<i64>,
    /// Round trip of the best clock sample.
    clock_rtt_ns: Option<i64>,
}

impl AgentRow {
    /// Whether it speaks another wire protocol than this controller.
    fn incompatible(&self) -> bool {
        self.protocol.is_some_and(|p| p != PROTOCOL_VERSION)
    }

    fn unreachable(address: &str, error: String) -> AgentRow {
        AgentRow {
            address: address.to_string(),
            reachable: false,
            error: Some(error),
            id: None,
            version: None,
            hostname: None,
            cpus: None,
            os: None,
            topology: None,
            authenticated: None,
            busy: None,
            protocol: None,
            warning: None,
            busy_with: None,
            clock_offset_ns: None,
            clock_uncertainty_ns: None,
            clock_rtt_ns: None,
        }
    }
}

#[derive(Serialize)]
struct Listing<'a> {
    /// Where the addresses came from.
    source: &'a str,
    agents: &'a [AgentRow],
}

pub async fn agents_command(args: AgentsArgs) -> ExitCode {
    let found = match discovery::find_agents(&args.discovery, &[]).await {
        Ok(f) if f.addrs.is_empty() => {
            eprintln!(
                "error: no agents named: give --agents LIST, --etcd URL (or CHORUS_ETCD), or \
                 --slurm"
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        Ok(f) => f,
        Err(DiscoveryError::Input(m)) => {
            eprintln!("error: {m}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        Err(e @ DiscoveryError::Failed(_)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let security = match Security::from_args(&args.security) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if let Err(m) = security.require_choice() {
        eprintln!("error: {m}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    // `buffered` keeps the discovery order in the output.
    let rows: Vec<AgentRow> = futures::stream::iter(&found.addrs)
        .map(|addr| {
            let security = &security;
            async move {
                match tokio::time::timeout(PROBE_TIMEOUT, probe(addr, security)).await {
                    Ok(row) => row,
                    Err(_) => AgentRow::unreachable(
                        addr,
                        format!("agent at {addr} did not answer within {PROBE_TIMEOUT:?}"),
                    ),
                }
            }
        })
        .buffered(PROBE_CONCURRENCY)
        .collect()
        .await;
    let text = if args.json {
        let listing = Listing {
            source: &found.source,
            agents: &rows,
        };
        match serde_json::to_string_pretty(&listing) {
            Ok(text) => text + "\n",
            Err(e) => {
                eprintln!("error: cannot write JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        render(&found.source, &rows)
    };
    // Not print!: a closed pipe (`| head`) is not worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    if rows.iter().any(|r| !r.reachable || r.incompatible()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Connects, says Hello and measures the clock of the agent at `addr`. An
/// agent on another wire protocol is listed with the refusal `run` would
/// give, and its clock is not measured.
async fn probe(addr: &str, security: &Security) -> AgentRow {
    let mut client = match transport::connect(addr, security).await {
        Ok(c) => c,
        Err(e) => return AgentRow::unreachable(addr, format!("{e:#}")),
    };
    let hello = match transport::hello(&mut client, addr, security).await {
        Ok(h) => h,
        Err(e) => return AgentRow::unreachable(addr, format!("{e:#}")),
    };
    let who = format!("agent {} at {addr}", hello.agent_id);
    let (warning, refusal) = match versions::judge_hello(&who, &hello) {
        Versions::Same => (None, None),
        Versions::Compatible(w) => (Some(w), None),
        Versions::Incompatible(e) => (None, Some(e)),
    };
    let clock: Result<ClockEstimate, String> = match refusal {
        Some(e) => Err(e),
        None => measure_clock_of(&mut client, &who)
            .await
            .map_err(|e| format!("{e:#}")),
    };
    let busy = !hello.busy_with.is_empty();
    let (clock, error) = match clock {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e)),
    };
    AgentRow {
        address: addr.to_string(),
        reachable: true,
        error,
        id: Some(hello.agent_id),
        version: Some(hello.version),
        hostname: Some(hello.hostname),
        cpus: Some(hello.cpus),
        os: Some(hello.os),
        topology: Some(hello.topology),
        authenticated: Some(hello.authenticated),
        busy: Some(busy),
        protocol: Some(hello.protocol_version),
        warning,
        busy_with: busy.then_some(hello.busy_with),
        clock_offset_ns: clock.as_ref().map(|c| c.offset_ns),
        clock_uncertainty_ns: clock.as_ref().map(|c| c.uncertainty_ns),
        clock_rtt_ns: clock.as_ref().map(|c| c.rtt_ns),
    }
}

/// The text listing: a header line, then one aligned row per agent; an
/// unreachable agent's row is its address and the error.
fn render(source: &str, rows: &[AgentRow]) -> String {
    let mut out = String::new();
    let down = rows.iter().filter(|r| !r.reachable).count();
    let _ = write!(
        out,
        "{} agent{} from {source}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    if down > 0 {
        let _ = write!(out, ", {down} not reachable");
    }
    out.push_str("\n\n");
    let header = [
        "ADDRESS", "ID", "VERSION", "HOST", "CPUS", "STATE", "AUTH", "CLOCK", "TOPOLOGY",
    ];
    let cells: Vec<Vec<String>> = rows.iter().map(cells).collect();
    // Widths from reachable rows only: an error message is not a column.
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for (row, c) in rows.iter().zip(&cells) {
        let n = if row.reachable { c.len() } else { 1 };
        for (w, cell) in widths.iter_mut().zip(&c[..n]) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let _ = write!(l, "{cell:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header.map(String::from));
    for c in &cells {
        line(c);
    }
    for r in rows.iter().filter(|r| r.reachable && r.error.is_some()) {
        let _ = writeln!(out, "\n{}: {}", r.address, r.error.as_deref().unwrap_or(""));
    }
    for r in rows.iter().filter_map(|r| r.warning.as_ref()) {
        let _ = writeln!(out, "\nwarning: {r}");
    }
    out
}

fn cells(r: &AgentRow) -> Vec<String> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    if !r.reachable {
        return vec![
            r.address.clone(),
            format!("unreachable: {}", text(&r.error)),
        ];
    }
    let state = match &r.busy_with {
        Some(s) => format!("busy ({s})"),
        None => "free".to_string(),
    };
    let auth = if r.authenticated == Some(true) {
        "yes"
    } else {
        "no"
    };
    vec![
        r.address.clone(),
        text(&r.id),
        text(&r.version),
        text(&r.hostname),
        r.cpus.map(|c| c.to_string()).unwrap_or_default(),
        state,
        auth.to_string(),
        clock_text(r.clock_offset_ns, r.clock_uncertainty_ns),
        text(&r.topology),
    ]
}

/// `+1.234 ms ± 0.056 ms`, or `?` when the clock was not measured.
fn clock_text(offset_ns: Option<i64>, uncertainty_ns: Option<i64>) -> String {
    match (offset_ns, uncertainty_ns) {
        (Some(o), Some(u)) => format!("{:+.3} ms ± {:.3} ms", o as f64 / 1e6, u as f64 / 1e6),
        _ => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_row(addr: &str, id: &str) -> AgentRow {
        AgentRow {
            address: addr.into(),
            reachable: true,
            error: None,
            id: Some(id.into()),
            version: Some("0.1.0".into()),
            hostname: Some("h".into()),
            cpus: Some(4),
            os: Some("linux".into()),
            topology: Some("4 allowed CPUs (0-3) on 1 NUMA node: node0 [0-3]".into()),
            authenticated: Some(false),
            busy: Some(false),
            protocol: Some(PROTOCOL_VERSION),
            warning: None,
            busy_with: None,
            clock_offset_ns: Some(1_234_567),
            clock_uncertainty_ns: Some(56_000),
            clock_rtt_ns: Some(112_000),
        }
    }

    #[test]
    fn text_listing() {
        let mut busy = ok_row("b:7167", "beta");
        busy.busy = Some(true);
        busy.busy_with = Some("run-1".into());
        let rows = vec![
            ok_row("a:7167", "alpha"),
            busy,
            AgentRow::unreachable("c:7167", "cannot reach agent at c:7167: refused".into()),
        ];
        let text = render("--agents", &rows);
        assert!(
            text.starts_with("3 agents from --agents, 1 not reachable\n"),
            "{text}"
        );
        assert!(text.contains("+1.235 ms ± 0.056 ms"), "{text}");
        assert!(text.contains("busy (run-1)"), "{text}");
        assert!(
            text.contains("c:7167   unreachable: cannot reach agent at c:7167: refused"),
            "{text}"
        );
        let header = text.lines().nth(2).unwrap();
        let alpha = text.lines().nth(3).unwrap();
        assert_eq!(header.find("CLOCK"), alpha.find("+1.235"), "{text}");
    }

    #[test]
    fn other_protocols_fail_other_releases_warn() {
        let same = ok_row("a:7167", "alpha");
        assert!(!same.incompatible());
        let mut old = ok_row("b:7167", "beta");
        old.protocol = Some(0);
        assert!(old.incompatible());
        let mut newer = ok_row("c:7167", "gamma");
        newer.warning = Some("agent gamma at c:7167 runs Chorus 9.9.9".into());
        let text = render("--agents", &[same, newer]);
        assert!(
            text.ends_with("\nwarning: agent gamma at c:7167 runs Chorus 9.9.9\n"),
            "{text}"
        );
    }

    #[test]
    fn clock_text_signs() {
        assert_eq!(clock_text(Some(-1_500), Some(500)), "-0.002 ms ± 0.001 ms");
        assert_eq!(clock_text(None, None), "?");
    }

    #[test]
    fn json_has_every_field() {
        let rows = [AgentRow::unreachable("x:1", "down".into())];
        let v = serde_json::to_value(Listing {
            source: "s",
            agents: &rows,
        })
        .unwrap();
        let a = &v["agents"][0];
        assert_eq!(a["address"], "x:1");
        assert_eq!(a["reachable"], false);
        assert_eq!(a["error"], "down");
        assert!(a["clock_offset_ns"].is_null());
    }
}
