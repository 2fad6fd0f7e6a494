//! Finding agents: address lists (with `{1...8}` templates), SLURM node
//! lists, and the etcd registry agents keep themselves in.
//!
//! - [`etcd`]: a small client of etcd's v3 JSON gateway (lease, put,
//!   range, revoke) and the registry layout: `/chorus/agents/<id>` holds a
//!   [`Registration`] attached to a lease the agent keeps alive.
//! - [`slurm`]: Slurm hostlist expressions (`node[01-03,07],gpu[1-2]-ib`).
//! - here: turning host lists into `host:port` addresses.
//!
//! Everything here is pure data and HTTP; the gRPC side (asking each agent
//! who it is) lives in the controller. Every list is capped at
//! [`MAX_AGENTS`], and bad input is an `Err` naming it, never a panic.

pub mod etcd;
pub mod slurm;

use serde::{Deserialize, Serialize};

use crate::store::multi::template::expand_all_up_to;

/// The port agents listen on unless told otherwise.
pub const DEFAULT_AGENT_PORT: u16 = 7167;

/// Most agents one controller drives: a connection and a clock each, which
/// the controller holds at 10,000 (`scripts/bench/agents-scale.sh`, with
/// simulated agents); a list longer than this is far more likely a typo
/// (`node[1-100000]`) than a cluster.
pub const MAX_AGENTS: usize = 16384;

/// Where agents register in etcd: one key per agent id under this prefix.
pub const AGENTS_PREFIX: &str = "/chorus/agents/";

/// What an agent writes under [`agent_key`]: the value is this as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The agent's id (the key's last part).
    pub id: String,
    /// `host:port` a controller dials.
    pub address: String,
    /// The agent's version.
    pub version: String,
    /// The host name the agent runs on.
    pub hostname: String,
    /// When this registration was written (RFC 3339).
    pub registered_at: String,
}

/// The etcd key of agent `id`.
pub fn agent_key(id: &str) -> String {
    format!("{AGENTS_PREFIX}{id}")
}

/// Expands a list of agent addresses as written on the command line or in
/// a plan's `agents:`: each entry may be a `{1...8}` template (zero padding
/// kept, several ranges give every combination), and an entry without a
/// port gets `port`. Order and duplicates are kept.
pub fn expand_agent_list(list: &[String], port: u16) -> Result<Vec<String>, String> {
    let expanded = expand_all_up_to(list, MAX_AGENTS).map_err(|e| format!("agent list: {e}"))?;
    if expanded.len() > MAX_AGENTS {
        return Err(format!(
            "agent list: {} agents, more than the {MAX_AGENTS} one controller drives",
            expanded.len()
        ));
    }
    expanded
        .iter()
        .map(|a| with_default_port(a, port))
        .collect()
}

/// `addr` with `port` added if it names none: `host` and `[v6]` get one,
/// `host:port`, `[v6]:port` and URLs (`http://host:port`) are kept; a bare
/// IPv6 address (`::1`) is bracketed first. Errors name the address.
pub fn with_default_port(addr: &str, port: u16) -> Result<String, String> {
    let a = addr.trim();
    let bad = |why: &str| format!("agent address `{addr}`: {why}");
    if a.is_empty() {
        return Err("empty agent address".to_string());
    }
    if a.contains(char::is_whitespace) {
        return Err(bad("has white space inside"));
    }
    if a.contains("://") {
        // A URL: the gRPC client takes it as it is (its scheme's port if none).
        return Ok(a.to_string());
    }
    if let Some(rest) = a.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(bad("`[` without a matching `]`"));
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        return match after {
            "" => Ok(format!("[{host}]:{port}")),
            p => match p.strip_prefix(':') {
                Some(p) => Ok(format!("[{host}]:{}", parse_port(p).map_err(|e| bad(&e))?)),
                None => Err(bad("text after `]` is not `:PORT`")),
            },
        };
    }
    match a.matches(':').count() {
        0 => Ok(format!("{a}:{port}")),
        1 => {
            let (host, p) = a.split_once(':').unwrap_or((a, ""));
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            Ok(format!("{host}:{}", parse_port(p).map_err(|e| bad(&e))?))
        }
        // More than one colon: an IPv6 address without a port.
        _ => Ok(format!("[{a}]:{port}")),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{p}` is not a port number"));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port `{p}` is not in 1..=65535")),
        Ok(n) => Ok(n),
    }
}

/// Addresses for hosts that run `per_node` agents each, on ports `port`,
/// `port + 1`, …: one agent per socket on SLURM nodes. Host order is kept;
/// a host's agents are next to each other.
pub fn hosts_to_addrs(hosts: &[String], port: u16, per_node: u16) -> Result<Vec<String>, String> {
    if per_node == 0 {
        return Err("agents per node must be at least 1".to_string());
    }
    let last = port as u32 + per_node as u32 - 1;
    if last > u16::MAX as u32 {
        return Err(format!(
            "{per_node} agents per node from port {port} run past port 65535"
        ));
    }
    let total = hosts.len().saturating_mul(per_node as usize);
    if total > MAX_AGENTS {
        return Err(format!(
            "{} hosts × {per_node} agents per node is {total} agents, more than the \
             {MAX_AGENTS} one controller drives",
            hosts.len()
        ));
    }
    let mut out = Vec::with_capacity(total);
    for host in hosts {
        let host = host.trim();
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!("bad host name `{host}`"));
        }
        // A bare IPv6 address needs brackets before a port goes on.
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        for i in 0..per_node {
            out.push(format!("{host}:{}", port + i));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_port_added_where_missing() {
        assert_eq!(with_default_port("h1", 7167).unwrap(), "h1:7167");
        assert_eq!(with_default_port("h1:9000", 7167).unwrap(), "h1:9000");
        assert_eq!(with_default_port(" h1 ", 1).unwrap(), "h1:1");
        assert_eq!(with_default_port("10.0.0.1", 7).unwrap(), "10.0.0.1:7");
        assert_eq!(with_default_port("[::1]", 7).unwrap(), "[::1]:7");
        assert_eq!(with_default_port("[::1]:8", 7).unwrap(), "[::1]:8");
        assert_eq!(with_default_port("fe80::1", 7).unwrap(), "[fe80::1]:7");
        assert_eq!(
            with_default_port("https://h:443", 7).unwrap(),
            "https://h:443"
        );
    }

    #[test]
    fn bad_addresses_are_errors_naming_them() {
        for a in [
            "h:", "h:x", "h:0", "h:65536", ":7167", "[::1", "[::1]x", "[]", "a b",
        ] {
            let e = with_default_port(a, 7167).unwrap_err();
            assert!(e.contains(a), "{a}: {e}");
        }
        assert!(with_default_port("", 1).unwrap_err().contains("empty"));
    }

    #[test]
    fn templates_expand_with_ports() {
        assert_eq!(
            expand_agent_list(&list(&["host{1...3}", "x:9"]), 7167).unwrap(),
            ["host1:7167", "host2:7167", "host3:7167", "x:9"]
        );
        assert_eq!(
            expand_agent_list(&list(&["n{08...10}:{7167...7168}"]), 1).unwrap(),
            [
                "n08:7167", "n08:7168", "n09:7167", "n09:7168", "n10:7167", "n10:7168"
            ]
        );
        let e = expand_agent_list(&list(&["h{3...1}"]), 1).unwrap_err();
        assert!(e.contains("agent list") && e.contains("h{3...1}"), "{e}");
        let e = expand_agent_list(&list(&["h{1...3}:x"]), 1).unwrap_err();
        assert!(e.contains("h1:x"), "{e}");
    }

    #[test]
    fn hosts_get_consecutive_ports() {
        assert_eq!(
            hosts_to_addrs(&list(&["a", "b"]), 7167, 2).unwrap(),
            ["a:7167", "a:7168", "b:7167", "b:7168"]
        );
        assert_eq!(hosts_to_addrs(&list(&["::1"]), 5, 1).unwrap(), ["[::1]:5"]);
        assert!(hosts_to_addrs(&list(&["a"]), 1, 0).is_err());
        assert!(
            hosts_to_addrs(&list(&["a"]), 65535, 2)
                .unwrap_err()
                .contains("65535")
        );
        let many: Vec<String> = (0..MAX_AGENTS).map(|i| format!("h{i}")).collect();
        assert!(
            hosts_to_addrs(&many, 1, 2)
                .unwrap_err()
                .contains("more than")
        );
        assert!(hosts_to_addrs(&list(&[""]), 1, 1).is_err());
    }

    #[test]
    fn registration_json_round_trip() {
        let r = Registration {
            id: "a1".into(),
            address: "h:7167".into(),
            version: "0.1.0".into(),
            hostname: "h".into(),
            registered_at: "2025-01-01T00:00:00Z".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        for k in ["id", "address", "version", "hostname", "registered_at"] {
            assert!(text.contains(&format!("\"{k}\"")), "{text}");
        }
        assert_eq!(serde_json::from_str::<Registration>(&text).unwrap(), r);
        assert_eq!(agent_key("a1"), "/chorus/agents/a1");
    }
}
