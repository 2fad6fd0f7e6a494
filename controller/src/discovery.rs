//! Which agents a command talks to: resolves the discovery flags
//! ([`DiscoveryArgs`]) and the plan's `agents:` into a list of addresses.
//!
//! Precedence, first that applies:
//!
//! 1. one of `--agents LIST`, `--etcd URL`, `--slurm` (clap refuses two);
//! 2. `CHORUS_ETCD` in the environment (as `--etcd`; an explicit flag
//!    beats it rather than clashing with it);
//! 3. the plan's `agents:`;
//! 4. nothing: `run` starts embedded agents, `agents` has nothing to list.
//!
//! Lists and the plan may hold `{1...8}` templates; hosts without a port
//! (templates, SLURM nodes) get `--agent-port`.

use chorus_common::discovery::etcd::Etcd;
use chorus_common::discovery::{
    AGENTS_PREFIX, Registration, expand_agent_list, hosts_to_addrs, slurm,
};

use crate::cli::DiscoveryArgs;

/// The environment variable standing in for `--etcd`.
pub const ETCD_ENV: &str = "CHORUS_ETCD";

/// Why no agent list could be made.
#[derive(Debug)]
pub enum DiscoveryError {
    /// Bad input (a flag, a template, an unset SLURM variable): exit 2.
    Input(String),
    /// The registry could not be read, or held no agent: exit 1.
    Failed(anyhow::Error),
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::Input(m) => f.write_str(m),
            DiscoveryError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

/// Agents found, and where they came from (for messages).
#[derive(Debug, Default)]
pub struct Found {
    /// `host:port` (or URL) of each agent, in order; empty when nothing
    /// names any.
    pub addrs: Vec<String>,
    /// `--agents`, `etcd at URL`, `SLURM_JOB_NODELIST`, `the plan`, or empty.
    pub source: String,
}

/// Resolves the agent list from the flags, the environment and the plan.
pub async fn find_agents(
    args: &DiscoveryArgs,
    plan_agents: &[String],
) -> Result<Found, DiscoveryError> {
    let env_etcd = std::env::var(ETCD_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let slurm_nodes = std::env::var(slurm::NODELIST_VAR).ok();
    find_agents_with(args, plan_agents, env_etcd, slurm_nodes.as_deref()).await
}

/// [`find_agents`] with the environment passed in (for tests).
pub async fn find_agents_with(
    args: &DiscoveryArgs,
    plan_agents: &[String],
    env_etcd: Option<String>,
    slurm_nodes: Option<&str>,
) -> Result<Found, DiscoveryError> {
    let input = DiscoveryError::Input;
    if !args.agents.is_empty() {
        let addrs = expand_agent_list(&args.agents, args.agent_port)
            .map_err(|e| input(format!("--agents: {e}")))?;
        return Ok(found(addrs, "--agents"));
    }
    if args.slurm {
        let hosts = slurm::nodelist_hosts(slurm_nodes).map_err(input)?;
        let addrs = hosts_to_addrs(&hosts, args.agent_port, args.agents_per_node)
            .map_err(|e| input(format!("--slurm: {e}")))?;
        return Ok(found(addrs, slurm::NODELIST_VAR));
    }
    if let Some(url) = args.etcd.clone().or(env_etcd) {
        return from_etcd(&url).await;
    }
    if !plan_agents.is_empty() {
        let addrs = expand_agent_list(plan_agents, args.agent_port)
            .map_err(|e| input(format!("the plan's `agents`: {e}")))?;
        return Ok(found(addrs, "the plan's `agents`"));
    }
    Ok(Found::default())
}

fn found(addrs: Vec<String>, source: &str) -> Found {
    Found {
        addrs,
        source: source.to_string(),
    }
}

/// Every agent registered (and alive) in etcd at `url`.
async fn from_etcd(url: &str) -> Result<Found, DiscoveryError> {
    let etcd = Etcd::new(url).map_err(|e| DiscoveryError::Input(format!("--etcd: {e}")))?;
    let listing = etcd
        .list_agents()
        .await
        .map_err(|e| DiscoveryError::Failed(anyhow::anyhow!("cannot list agents: {e}")))?;
    for skipped in &listing.skipped {
        tracing::warn!("etcd at {}: skipped {skipped}", etcd.endpoints());
    }
    if listing.agents.is_empty() {
        return Err(DiscoveryError::Failed(anyhow::anyhow!(
            "no agents registered in etcd at {} (under {AGENTS_PREFIX}): start agents with \
             --etcd {url}",
            etcd.endpoints()
        )));
    }
    tracing::info!(
        agents = listing.agents.len(),
        etcd = %etcd.endpoints(),
        "agents found in etcd"
    );
    let addrs = unique_addresses(listing.agents);
    Ok(found(addrs, &format!("etcd at {}", etcd.endpoints())))
}

/// The registrations' addresses, each once. Two ids at one address happen
/// when an agent dies and comes back under another id before the old
/// lease expires; dialing it twice would make a run fail on "busy".
fn unique_addresses(agents: Vec<Registration>) -> Vec<String> {
    let mut addrs: Vec<String> = Vec::with_capacity(agents.len());
    let mut first_id: std::collections::HashMap<String, String> = Default::default();
    for r in agents {
        match first_id.get(&r.address) {
            Some(id) => tracing::warn!(
                "agents `{id}` and `{}` are both registered at {}; using it once",
                r.id,
                r.address
            ),
            None => {
                first_id.insert(r.address.clone(), r.id);
                addrs.push(r.address);
            }
        }
    }
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_common::discovery::DEFAULT_AGENT_PORT;

    fn args() -> DiscoveryArgs {
        DiscoveryArgs {
            agents: Vec::new(),
            etcd: None,
            slurm: false,
            agent_port: DEFAULT_AGENT_PORT,
            agents_per_node: 1,
        }
    }

    async fn find(
        a: &DiscoveryArgs,
        plan: &[&str],
        env: Option<&str>,
        nodes: Option<&str>,
    ) -> Result<Found, DiscoveryError> {
        let plan: Vec<String> = plan.iter().map(|s| s.to_string()).collect();
        find_agents_with(a, &plan, env.map(String::from), nodes).await
    }

    #[tokio::test]
    async fn flags_beat_env_beats_plan() {
        let mut a = args();
        a.agents = vec!["h{1...2}".into(), "x:9".into()];
        let f = find(&a, &["p:1"], Some("http://127.0.0.1:1"), None)
            .await
            .unwrap();
        assert_eq!(f.addrs, ["h1:7167", "h2:7167", "x:9"]);
        assert_eq!(f.source, "--agents");

        // The environment's etcd is tried before the plan (and fails here).
        let e = find(&args(), &["p:1"], Some("http://127.0.0.1:1"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DiscoveryError::Failed(_)) && e.to_string().contains("127.0.0.1:1"),
            "{e}"
        );

        let mut a = args();
        a.agent_port = 9000;
        let f = find(&a, &["n{01...02}", "m:1"], None, None).await.unwrap();
        assert_eq!(f.addrs, ["n01:9000", "n02:9000", "m:1"]);

        let f = find(&args(), &[], None, None).await.unwrap();
        assert!(f.addrs.is_empty());
    }

    #[tokio::test]
    async fn slurm_hosts_get_ports() {
        let mut a = args();
        a.slurm = true;
        a.agents_per_node = 2;
        let f = find(&a, &["ignored:1"], None, Some("n[1-2]"))
            .await
            .unwrap();
        assert_eq!(f.addrs, ["n1:7167", "n1:7168", "n2:7167", "n2:7168"]);
        let e = find(&a, &[], None, None).await.unwrap_err();
        assert!(
            matches!(&e, DiscoveryError::Input(m) if m.contains("SLURM_JOB_NODELIST")),
            "{e}"
        );
        let e = find(&a, &[], None, Some("n[")).await.unwrap_err();
        assert!(matches!(e, DiscoveryError::Input(_)), "{e}");
    }

    #[test]
    fn one_address_is_used_once() {
        let reg = |id: &str, address: &str| Registration {
            id: id.into(),
            address: address.into(),
            version: String::new(),
            hostname: String::new(),
            registered_at: String::new(),
        };
        let addrs = unique_addresses(vec![reg("a", "h:1"), reg("b", "h:2"), reg("c", "h:1")]);
        assert_eq!(addrs, ["h:1", "h:2"]);
    }

    #[tokio::test]
    async fn bad_input_is_input_error() {
        let mut a = args();
        a.agents = vec!["h{2...1}".into()];
        let e = find(&a, &[], None, None).await.unwrap_err();
        assert!(
            matches!(&e, DiscoveryError::Input(m) if m.contains("--agents") && m.contains("h{2...1}")),
            "{e}"
        );
        let e = find(&args(), &["h:x"], None, None).await.unwrap_err();
        assert!(
            matches!(&e, DiscoveryError::Input(m) if m.contains("plan")),
            "{e}"
        );
        let mut a = args();
        a.etcd = Some("ftp://x".into());
        let e = find(&a, &[], None, None).await.unwrap_err();
        assert!(
            matches!(&e, DiscoveryError::Input(m) if m.contains("--etcd")),
            "{e}"
        );
    }
}
