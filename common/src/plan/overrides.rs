//! Per-agent settings (`overrides:`): real clusters are not uniform, so a
//! plan may give some agents their own `target`, `concurrency`,
//! `endpoints`, `pinning` or `data`, picked by agent id, by host name
//! pattern or by index range. Entries apply in order, a later one's key
//! replacing an earlier one's.
//!
//! The plan travels to every agent whole (overrides included); each agent
//! applies those that pick it ([`Plan::for_agent`]) before it builds its
//! pools or runs a stage. The controller checks that every entry picks an
//! agent of the run ([`Plan::check_overrides`], a located plan error
//! otherwise) and records in `run.json` what each agent ran
//! ([`Plan::overrides_for`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::emit;
use super::error::PlanError;
use super::load::{Decoder, MAX_CONCURRENCY, join};
use super::yaml::{Entry, NodeKind, quote};
use super::{AgentsCheckError, DataOptions, EndpointSpec, Pinning, Plan, StageKind};

/// Keys of one `overrides:` entry.
const OVERRIDE_KEYS: [&str; 8] = [
    "agents",
    "hosts",
    "index",
    "target",
    "concurrency",
    "endpoints",
    "pinning",
    "data",
];

/// Most `overrides` entries: every agent checks every entry.
pub const MAX_OVERRIDES: usize = 1024;

/// Which agents an entry applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentSelect {
    /// By agent id (`--agents`' ids, `local-N` for embedded agents).
    Ids(Vec<String>),
    /// By host name, a pattern where `*` is any run of characters and `?`
    /// any one.
    Hosts(String),
    /// By index in the run's agent order, `first..=last`.
    Index { first: u32, last: u32 },
}

/// One entry of `overrides:`.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentOverride {
    pub select: AgentSelect,
    /// Replaces every stage's target.
    pub target: Option<String>,
    /// Replaces every stage's workers (but a train's or checkpoint's, which
    /// follow from their ranks).
    pub concurrency: Option<u32>,
    /// Replaces every stage's endpoints.
    pub endpoints: Option<Vec<EndpointSpec>>,
    pub pinning: Option<Pinning>,
    /// Replaces the plan's `data` as a whole.
    pub data: Option<DataOptions>,
}

/// An agent as overrides pick it.
#[derive(Clone, Copy, Debug)]
pub struct AgentIdentity<'a> {
    pub id: &'a str,
    pub host: &'a str,
    pub index: u32,
}

impl AgentSelect {
    fn picks(&self, who: &AgentIdentity<'_>) -> bool {
        match self {
            AgentSelect::Ids(ids) => ids.iter().any(|i| i == who.id),
            AgentSelect::Hosts(pattern) => glob(pattern.as_bytes(), who.host.as_bytes()),
            AgentSelect::Index { first, last } => (*first..=*last).contains(&who.index),
        }
    }
}

/// Whether `text` matches `pattern` (`*`: any run, `?`: any one byte).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative with one backtrack point: linear in practice, no recursion.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

impl Plan {
    /// This plan as the agent `who` runs it: every entry that picks it
    /// applied, in order.
    pub fn for_agent(&self, who: &AgentIdentity<'_>) -> Plan {
        let mut plan = self.clone();
        for o in self.overrides.iter().filter(|o| o.select.picks(who)) {
            if let Some(d) = o.data {
                plan.data = d;
            }
            if let Some(p) = &o.pinning {
                plan.pinning = p.clone();
            }
            for s in &mut plan.stages {
                if let Some(t) = &o.target {
                    s.target.clone_from(t);
                }
                if let Some(c) = o.concurrency
                    && !matches!(s.kind, StageKind::Train | StageKind::Checkpoint)
                {
                    s.concurrency = c;
                }
                if let Some(e) = &o.endpoints {
                    s.endpoints.clone_from(e);
                }
            }
        }
        plan
    }

    /// What the overrides change for agent `who`, key by key in canonical
    /// form (`run.json`); empty when none picks it.
    pub fn overrides_for(&self, who: &AgentIdentity<'_>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for o in self.overrides.iter().filter(|o| o.select.picks(who)) {
            if let Some(t) = &o.target {
                out.insert("target".into(), t.clone());
            }
            if let Some(c) = o.concurrency {
                out.insert("concurrency".into(), c.to_string());
            }
            if let Some(e) = &o.endpoints {
                out.insert("endpoints".into(), emit::endpoints(e));
            }
            if let Some(p) = &o.pinning {
                out.insert("pinning".into(), emit::pinning(p));
            }
            if let Some(d) = &o.data {
                out.insert("data".into(), emit::data(d));
            }
        }
        out
    }

    /// Every entry must pick at least one of the run's agents: one that
    /// picks none is a mistake in the plan (a host renamed, an index past
    /// the end), reported at its selector.
    pub fn check_overrides(&self, agents: &[AgentIdentity<'_>]) -> Result<(), AgentsCheckError> {
        for (i, o) in self.overrides.iter().enumerate() {
            let (key, what) = match &o.select {
                AgentSelect::Ids(ids) => {
                    if let Some(missing) = ids.iter().find(|id| !agents.iter().any(|a| &a.id == id))
                    {
                        return Err(AgentsCheckError {
                            path: format!("overrides[{i}].agents"),
                            message: format!(
                                "`overrides[{i}]` names agent `{missing}`, which is not one of \
                                 the run's agents ({})",
                                ids_of(agents)
                            ),
                        });
                    }
                    continue;
                }
                AgentSelect::Hosts(p) => ("hosts", format!("host pattern `{p}`")),
                AgentSelect::Index { first, last } => {
                    ("index", format!("index range {first}-{last}"))
                }
            };
            let past_end = matches!(o.select, AgentSelect::Index { last, .. } if last as usize >= agents.len());
            if past_end || !agents.iter().any(|a| o.select.picks(a)) {
                let hosts: Vec<&str> = agents.iter().map(|a| a.host).collect();
                return Err(AgentsCheckError {
                    path: format!("overrides[{i}].{key}"),
                    message: format!(
                        "`overrides[{i}]`'s {what} does not pick {} of the run's {} agents \
                         (hosts {})",
                        if past_end { "only" } else { "any" },
                        agents.len(),
                        hosts.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

fn ids_of(agents: &[AgentIdentity<'_>]) -> String {
    let ids: Vec<&str> = agents.iter().map(|a| a.id).collect();
    ids.join(", ")
}

impl Decoder<'_> {
    /// `overrides:` of the plan: a list of entries, each with exactly one
    /// selector and at least one setting. `stages` are the loaded stages,
    /// for the checks that need their targets.
    pub(super) fn overrides(
        &self,
        e: &Entry,
        stages: &[super::Stage],
    ) -> Result<Vec<AgentOverride>, PlanError> {
        let NodeKind::Seq(items) = &e.value.kind else {
            return Err(self.wrong(e, "overrides", "a list of per-agent settings"));
        };
        if items.len() > MAX_OVERRIDES {
            let message = format!(
                "at most {MAX_OVERRIDES} `overrides` entries, got {}",
                items.len()
            );
            return Err(self.err(e.value.pos, "overrides", message));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("overrides[{i}]");
            let m = self.map(
                item,
                path.clone(),
                format!("`{path}`"),
                &OVERRIDE_KEYS,
                "key",
            )?;
            let p = |k: &str| join(&path, k);
            let selectors: Vec<&str> = ["agents", "hosts", "index"]
                .into_iter()
                .filter(|k| m.get(k).is_some())
                .collect();
            let select = match selectors.as_slice() {
                ["agents"] => {
                    let e = self.required(&m, "agents")?;
                    let ids = match &e.value.kind {
                        NodeKind::Seq(ids) => ids
                            .iter()
                            .enumerate()
                            .map(|(j, n)| {
                                let ip = format!("{}[{j}]", p("agents"));
                                self.string_node(n, &ip, &ip)
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                        _ => vec![self.string(e, &p("agents"))?],
                    };
                    if ids.is_empty() {
                        return Err(self.err(e.value.pos, &p("agents"), "`agents` is empty"));
                    }
                    AgentSelect::Ids(ids)
                }
                ["hosts"] => {
                    let e = self.required(&m, "hosts")?;
                    let pattern = self.string(e, &p("hosts"))?;
                    if pattern.is_empty() {
                        return Err(self.err(e.value.pos, &p("hosts"), "`hosts` is empty"));
                    }
                    AgentSelect::Hosts(pattern)
                }
                [_index] => {
                    let e = self.required(&m, "index")?;
                    let text = self.string(e, &p("index"))?;
                    let range = match text.split_once('-') {
                        Some((a, b)) => a.trim().parse::<u32>().ok().zip(b.trim().parse().ok()),
                        None => text.trim().parse::<u32>().ok().map(|a| (a, a)),
                    };
                    match range {
                        Some((first, last)) if first <= last => AgentSelect::Index { first, last },
                        _ => {
                            return Err(self.wrong(
                                e,
                                &p("index"),
                                "an agent index like `3` or a range like `0-7`",
                            ));
                        }
                    }
                }
                [] => {
                    let message = format!(
                        "`{path}` must pick its agents with one of `agents`, `hosts` or `index`"
                    );
                    return Err(self.err(item.pos, &path, message));
                }
                [_, second, ..] => {
                    let message = format!(
                        "`{path}` picks its agents two ways: use one of `agents`, `hosts` or `index`"
                    );
                    let pos = m.get(second).map_or(item.pos, |e| e.key_pos);
                    return Err(self.err(pos, &p(second), message));
                }
            };
            let target = m
                .get("target")
                .map(|e| self.target(e, &p("target")))
                .transpose()?;
            let concurrency = m
                .get("concurrency")
                .map(|e| self.integer(e, &p("concurrency"), 1, u64::from(MAX_CONCURRENCY)))
                .transpose()?
                .map(|c| c as u32);
            let endpoints = match m.get("endpoints") {
                Some(e) => {
                    let list = self.endpoint_list(e, &p("endpoints"))?;
                    if list.is_empty() {
                        return Err(self.err(e.value.pos, &p("endpoints"), "`endpoints` is empty"));
                    }
                    Some(list)
                }
                None => None,
            };
            let pinning = m.get("pinning").map(|_| self.pinning(&m)).transpose()?;
            let data = m.get("data").map(|_| self.data_options(&m)).transpose()?;
            let o = AgentOverride {
                select,
                target,
                concurrency,
                endpoints,
                pinning,
                data,
            };
            if [
                o.target.is_none(),
                o.concurrency.is_none(),
                o.endpoints.is_none(),
                o.pinning.is_none(),
                o.data.is_none(),
            ]
            .iter()
            .all(|&none| none)
            {
                let message = format!(
                    "`{path}` changes nothing: set at least one of `target`, `concurrency`, \
                     `endpoints`, `pinning` or `data`"
                );
                return Err(self.err(item.pos, &path, message));
            }
            // Endpoints replace a network backend's endpoint: every stage
            // the entry's agents run must then be on one.
            if let Some(e) = m.get("endpoints") {
                let local = stages.iter().find(|s| {
                    let target = o.target.as_deref().unwrap_or(&s.target);
                    !["s3://", "az://", "gs://"]
                        .iter()
                        .any(|n| target.starts_with(n))
                });
                if let Some(s) = local {
                    let message = format!(
                        "`{path}` gives endpoints, but stage `{}` would run on a target that is \
                         not a network store; endpoints apply to s3://, az:// and gs:// targets",
                        s.name
                    );
                    return Err(self.err(e.key_pos, &p("endpoints"), message));
                }
            }
            out.push(o);
        }
        Ok(out)
    }
}

/// Writes `overrides:` in the canonical form (nothing when there are none).
pub(super) fn emit_overrides(overrides: &[AgentOverride], y: &mut String) {
    if overrides.is_empty() {
        return;
    }
    y.push_str("overrides:\n");
    for o in overrides {
        let mut keys = vec![match &o.select {
            AgentSelect::Ids(ids) => {
                let ids: Vec<String> = ids.iter().map(|i| quote(i)).collect();
                format!("agents: [{}]", ids.join(", "))
            }
            AgentSelect::Hosts(p) => format!("hosts: {}", quote(p)),
            AgentSelect::Index { first, last } => {
                format!("index: {}", quote(&format!("{first}-{last}")))
            }
        }];
        if let Some(t) = &o.target {
            keys.push(format!("target: {}", quote(t)));
        }
        if let Some(c) = o.concurrency {
            keys.push(format!("concurrency: {c}"));
        }
        if let Some(e) = &o.endpoints {
            keys.push(format!("endpoints: {}", emit::endpoints(e)));
        }
        if let Some(p) = &o.pinning {
            keys.push(format!("pinning: {}", emit::pinning(p)));
        }
        if let Some(d) = &o.data {
            keys.push(format!("data: {}", emit::data(d)));
        }
        // Writing to a String cannot fail.
        let _ = writeln!(y, "  - {{{}}}", keys.join(", "));
    }
}

#[cfg(test)]
mod tests;
