//! Loading a plan: the marked YAML tree decoded by hand into [`Plan`], and
//! command-line overrides on top ([`Plan::to_yaml`], the way back, is in
//! `yaml.rs`).
//!
//! The decoder is hand-written rather than serde-derived so that every error
//! names the offending key's line and column and says what was expected and
//! what was found. Only the first problem is reported (unknown keys of a
//! mapping before its values, stages in order): users fix plans one error
//! at a time anyway, and one precise message beats a cascade of
//! consequences.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::error::{PlanError, hint_for};
use super::options::StageDefaults;
use super::units::{format_size, parse_duration, parse_size};
use super::yaml::{self, Entry, Node, NodeKind, Pos};
use super::{
    DatasetSpec, KeySpace, OpMix, Overrides, Plan, SizeSpec, Stage, StageKind, StopCondition,
};
use crate::op::OpKind;
use crate::store::uri::TargetUri;

const PLAN_KEYS: [&str; 18] = [
    "name",
    "description",
    "seed",
    "target",
    "concurrency",
    "agents",
    "objects",
    "dataset",
    "stages",
    "data",
    "pinning",
    "retries",
    "retry_backoff",
    "timeout",
    "endpoints",
    "balance",
    "control",
    "overrides",
];
const STAGE_KEYS: [&str; 38] = [
    "name",
    "type",
    "target",
    "concurrency",
    "objects",
    "mix",
    "duration",
    "ops",
    "bytes",
    "warmup",
    "ramp",
    "think",
    "rate",
    "arrivals",
    "range",
    "part_size",
    "parallel",
    "list",
    "verify",
    "overwrite",
    "retries",
    "retry_backoff",
    "timeout",
    "pool",
    "endpoints",
    "balance",
    "search",
    "replay",
    "until",
    "steady",
    "dataset",
    "train",
    "checkpoint",
    "versioning",
    "batch",
    "tags",
    "retention",
    "buckets",
];
const OBJECTS_KEYS: [&str; 8] = [
    "prefix",
    "existing",
    "allow_delete",
    "count",
    "size",
    "distribution",
    "partition",
    "naming",
];
const STAGE_TYPES: [&str; 8] = [
    "prepare",
    "workload",
    "cleanup",
    "search",
    "replay",
    "dataset",
    "train",
    "checkpoint",
];

const DEFAULT_SEED: u64 = 1;
const DEFAULT_CONCURRENCY: u32 = 4;
const DEFAULT_PREFIX: &str = "obj/";

/// Most workers one agent runs in a stage (`concurrency`, an override's,
/// a search's `to`): each is a task with its own op state and, for a
/// PUT, a payload buffer of up to [`MAX_PART_SIZE`], so this bounds what a
/// plan can make an agent hold. Far above what one host drives.
pub const MAX_CONCURRENCY: u32 = 1 << 16;

/// Most objects in a key space (`objects.count`): every agent keeps three
/// bits per object (which exist, which it made, which were there before),
/// 1.5 GiB at this bound.
pub const MAX_OBJECTS: u64 = 1 << 32;

/// Largest `part_size`: one PUT request's payload is made whole in memory
/// (an object up to `part_size`, or one part of a larger one), so this
/// bounds each worker's payload buffer. S3's largest part and single PUT.
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// Reads and loads the plan file at `path`; errors name the file as given.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| PlanError::unlocated(&file, format!("cannot read plan file: {e}")))?;
    parse(&text, &file)
}

/// Loads a plan from YAML `text`; `source` names it in errors (a file name,
/// or e.g. `<agent request>`).
pub fn parse(text: &str, source: &str) -> Result<Plan, PlanError> {
    let Some(root) = yaml::parse(text, source)? else {
        return Err(
            PlanError::at(source, Pos { line: 1, column: 1 }, "", "the plan is empty").with_hint(
                "a plan is a mapping with at least `name` and `stages`; see docs/plan.md",
            ),
        );
    };
    Decoder { file: source }.plan(&root)
}

/// `path.key`, or `key` at the top.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Plan and stage names become directory and file names.
fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        Some(c) => Err(format!(
            "invalid {what} `{name}`: only letters, digits, '-', '_' and '.' are allowed, found {c:?}"
        )),
        None => Ok(()),
    }
}

/// Plan-level values that stages inherit.
pub(super) struct Defaults {
    target: Option<String>,
    concurrency: u32,
    objects: Option<KeySpace>,
    /// The training dataset `dataset` and `train` stages share.
    dataset: Option<DatasetSpec>,
    /// Retries, timeouts, endpoints.
    pub(super) stage: StageDefaults,
}

/// A mapping being decoded: its node, its entries and its key path.
pub(super) struct Map<'n> {
    pub(super) node: &'n Node,
    pub(super) entries: &'n [Entry],
    pub(super) path: String,
    /// How errors name this mapping: "the plan", "stage `load`", ...
    pub(super) what: String,
}

impl<'n> Map<'n> {
    pub(super) fn get(&self, key: &str) -> Option<&'n Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

pub(super) struct Decoder<'a> {
    pub(super) file: &'a str,
}

impl Decoder<'_> {
    pub(super) fn err(&self, pos: Pos, key: &str, message: impl Into<String>) -> PlanError {
        PlanError::at(self.file, pos, key, message)
    }

    /// "`key` must be {expected}, got {found}" at the value.
    pub(super) fn wrong(&self, e: &Entry, path: &str, expected: &str) -> PlanError {
        let message = format!("`{}` must be {expected}, got {}", e.key, e.value.describe());
        self.err(e.value.pos, path, message)
    }

    /// Opens `node` as a mapping and rejects keys not in `valid`.
    pub(super) fn map<'n>(
        &self,
        node: &'n Node,
        path: String,
        what: String,
        valid: &[&str],
        kind: &str,
    ) -> Result<Map<'n>, PlanError> {
        let NodeKind::Map(entries) = &node.kind else {
            let name = if path.is_empty() {
                "the plan".to_string()
            } else {
                format!("`{path}`")
            };
            let message = format!("{name} must be a mapping, got {}", node.describe());
            return Err(self.err(node.pos, &path, message));
        };
        for e in entries {
            if !valid.contains(&e.key.as_str()) {
                let message = format!("unknown {kind} `{}` in {what}", e.key);
                return Err(self
                    .err(e.key_pos, &join(&path, &e.key), message)
                    .with_hint(hint_for(&e.key, valid, &format!("{kind}s"))));
            }
        }
        Ok(Map {
            node,
            entries,
            path,
            what,
        })
    }

    /// A missing required key is reported at the mapping that lacks it.
    pub(super) fn missing(&self, m: &Map<'_>, key: &str) -> PlanError {
        let message = format!("missing required key `{key}` in {}", m.what);
        self.err(m.node.pos, &join(&m.path, key), message)
    }

    pub(super) fn required<'n>(&self, m: &Map<'n>, key: &str) -> Result<&'n Entry, PlanError> {
        m.get(key).ok_or_else(|| self.missing(m, key))
    }

    /// A string value: any non-null scalar, quoted or not, as written.
    pub(super) fn string(&self, e: &Entry, path: &str) -> Result<String, PlanError> {
        self.string_node(&e.value, &e.key, path)
    }

    /// [`Self::string`] for a node that is not a mapping value (a list item).
    pub(super) fn string_node(
        &self,
        node: &Node,
        name: &str,
        path: &str,
    ) -> Result<String, PlanError> {
        node.text().map(str::to_string).ok_or_else(|| {
            let message = format!("`{name}` must be a string, got {}", node.describe());
            self.err(node.pos, path, message)
        })
    }

    /// An unquoted integer in `min..=max`.
    pub(super) fn integer(
        &self,
        e: &Entry,
        path: &str,
        min: u64,
        max: u64,
    ) -> Result<u64, PlanError> {
        let expected = if min == 0 {
            "a non-negative integer"
        } else {
            "a positive integer"
        };
        let NodeKind::Scalar { text, plain: true } = &e.value.kind else {
            return Err(self.wrong(e, path, expected));
        };
        let digits = text.strip_prefix('+').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.wrong(e, path, expected));
        }
        match digits.parse::<u64>() {
            Ok(v) if v < min => Err(self.wrong(e, path, expected)),
            Ok(v) if v <= max => Ok(v),
            _ => {
                let message = format!("`{}` is too large: {text} is above {max}", e.key);
                Err(self.err(e.value.pos, path, message))
            }
        }
    }

    pub(super) fn size(&self, e: &Entry, path: &str, min: u64) -> Result<u64, PlanError> {
        let text = self.string(e, path)?;
        let bytes = parse_size(&text)
            .map_err(|m| self.err(e.value.pos, path, format!("invalid `{}`: {m}", e.key)))?;
        if bytes < min {
            let message = format!(
                "`{}` must be at least {}, got {text}",
                e.key,
                format_size(min)
            );
            return Err(self.err(e.value.pos, path, message));
        }
        Ok(bytes)
    }

    pub(super) fn duration(&self, e: &Entry, path: &str) -> Result<Duration, PlanError> {
        let text = self.string(e, path)?;
        let d = parse_duration(&text)
            .map_err(|m| self.err(e.value.pos, path, format!("invalid `{}`: {m}", e.key)))?;
        if d.is_zero() {
            let message = format!("`{}` must be longer than zero, got {text}", e.key);
            return Err(self.err(e.value.pos, path, message));
        }
        Ok(d)
    }

    pub(super) fn target(&self, e: &Entry, path: &str) -> Result<String, PlanError> {
        let text = self.string(e, path)?;
        TargetUri::parse(&text).map_err(|m| self.err(e.value.pos, path, m))?;
        Ok(text)
    }

    fn concurrency(&self, e: &Entry, path: &str) -> Result<u32, PlanError> {
        Ok(self.integer(e, path, 1, u64::from(MAX_CONCURRENCY))? as u32)
    }

    fn name(&self, e: &Entry, path: &str, what: &str) -> Result<String, PlanError> {
        let name = self.string(e, path)?;
        check_name(&name, what).map_err(|m| self.err(e.value.pos, path, m))?;
        Ok(name)
    }

    fn plan(&self, root: &Node) -> Result<Plan, PlanError> {
        let m = self.map(root, String::new(), "the plan".into(), &PLAN_KEYS, "key")?;
        let name = self.name(self.required(&m, "name")?, "name", "plan name")?;
        let description = m.get("description").map(|e| self.string(e, "description"));
        let seed = m.get("seed").map(|e| self.integer(e, "seed", 0, u64::MAX));
        let mut agents = Vec::new();
        if let Some(e) = m.get("agents") {
            let NodeKind::Seq(items) = &e.value.kind else {
                return Err(self.wrong(e, "agents", "a list of `host:port` strings"));
            };
            for (i, item) in items.iter().enumerate() {
                let path = format!("agents[{i}]");
                let agent = self.string_node(item, &path, &path)?;
                if agent.trim().is_empty() {
                    return Err(self.err(item.pos, &path, "agent address must not be empty"));
                }
                agents.push(agent);
            }
        }
        let objects = |e: &Entry| self.objects(&e.value, "objects".into(), "`objects`".into());
        let defaults = Defaults {
            target: m
                .get("target")
                .map(|e| self.target(e, "target"))
                .transpose()?,
            concurrency: m
                .get("concurrency")
                .map(|e| self.concurrency(e, "concurrency"))
                .transpose()?
                .unwrap_or(DEFAULT_CONCURRENCY),
            objects: m.get("objects").map(objects).transpose()?,
            dataset: m
                .get("dataset")
                .map(|e| self.dataset(e, "dataset"))
                .transpose()?,
            stage: self.stage_defaults(&m)?,
        };
        let stages_entry = self.required(&m, "stages")?;
        let NodeKind::Seq(items) = &stages_entry.value.kind else {
            return Err(self.wrong(stages_entry, "stages", "a list of stages"));
        };
        if items.is_empty() {
            return Err(self
                .err(
                    stages_entry.value.pos,
                    "stages",
                    "`stages` must list at least one stage",
                )
                .with_hint("add e.g. `- {name: load, type: workload, ...}`; see docs/plan.md"));
        }
        let mut seen = HashMap::new();
        let mut stages = items
            .iter()
            .enumerate()
            .map(|(i, item)| self.stage(item, i, &defaults, &mut seen))
            .collect::<Result<Vec<_>, _>>()?;
        self.link_object_api(&mut stages, items)?;
        let overrides = match m.get("overrides") {
            Some(e) => self.overrides(e, &stages)?,
            None => Vec::new(),
        };
        Ok(Plan {
            overrides,
            name,
            description: description.transpose()?,
            seed: seed.transpose()?.unwrap_or(DEFAULT_SEED),
            agents,
            data: self.data_options(&m)?,
            pinning: self.pinning(&m)?,
            control: self.control(&m)?,
            stages,
        })
    }

    fn objects(&self, node: &Node, path: String, what: String) -> Result<KeySpace, PlanError> {
        let m = self.map(node, path, what, &OBJECTS_KEYS, "key")?;
        let prefix = m
            .get("prefix")
            .map(|e| self.string(e, &join(&m.path, "prefix")));
        let prefix = prefix.transpose()?.unwrap_or_else(|| DEFAULT_PREFIX.into());
        if let Some(existing) = self.existing(&m)? {
            return self.existing_space(&m, prefix, existing);
        }
        let count = self.integer(
            self.required(&m, "count")?,
            &join(&m.path, "count"),
            1,
            MAX_OBJECTS,
        )?;
        let size = self.size_spec(self.required(&m, "size")?, &join(&m.path, "size"))?;
        Ok(KeySpace {
            prefix,
            count,
            size,
            naming: self.naming(&m)?,
            distribution: self.distribution(&m)?,
            partition: self.partition(&m)?,
            existing: None,
        })
    }

    fn mix(&self, e: &Entry, path: &str, what: &str) -> Result<OpMix, PlanError> {
        let names = OpKind::OPS.map(OpKind::plan_name);
        let m = self.map(
            &e.value,
            path.to_string(),
            format!("`mix` of {what}"),
            &names,
            "op",
        )?;
        let mut mix = OpMix::default();
        for op in m.entries {
            let kind = OpKind::from_plan_name(&op.key).unwrap_or(OpKind::Get);
            let weight = self.integer(op, &join(path, &op.key), 0, u64::from(u32::MAX))? as u32;
            // Zero weights are dropped: the engine never needs to see them.
            if weight > 0 {
                mix.weights.insert(kind, weight);
            }
        }
        if mix.total() == 0 {
            let message = format!(
                "`mix` of {what} has all op weights zero; give at least one op a weight above 0"
            );
            return Err(self
                .err(e.value.pos, path, message)
                .with_hint("e.g. `mix: {get: 70, put: 30}`"));
        }
        Ok(mix)
    }

    /// Decodes stage `i`; `seen` maps the names of earlier stages to their
    /// index and position, to report duplicates.
    fn stage(
        &self,
        node: &Node,
        i: usize,
        defaults: &Defaults,
        seen: &mut HashMap<String, (usize, Pos)>,
    ) -> Result<Stage, PlanError> {
        let path = format!("stages[{i}]");
        // Name the stage in messages as soon as we can read its name, even
        // before its keys are checked: "in stage `load`" beats an index.
        let what = match node.get("name").and_then(Node::text) {
            Some(name) => format!("stage `{name}`"),
            None => format!("`{path}`"),
        };
        let m = self.map(node, path.clone(), what.clone(), &STAGE_KEYS, "key")?;
        let p = |key: &str| join(&path, key);
        let name_entry = self.required(&m, "name")?;
        let name = self.name(name_entry, &p("name"), "stage name")?;
        // Checked before the rest of the stage: a copied-and-pasted stage is
        // the likely cause of anything else wrong with it.
        if let Some((first, pos)) = seen.get(&name) {
            let message = format!("duplicate stage name `{name}`");
            return Err(self
                .err(name_entry.value.pos, &p("name"), message)
                .with_hint(format!(
                    "stages[{first}] at line {}, column {} has the same name; \
                     stage names must be unique",
                    pos.line, pos.column
                )));
        }
        seen.insert(name.clone(), (i, name_entry.value.pos));
        let type_entry = self.required(&m, "type")?;
        let type_text = self.string(type_entry, &p("type"))?;
        let kind = match type_text.as_str() {
            "prepare" => StageKind::Prepare,
            "workload" => StageKind::Workload,
            "cleanup" => StageKind::Cleanup,
            "search" => StageKind::Search,
            "replay" => StageKind::Replay,
            "dataset" => StageKind::Dataset,
            "train" => StageKind::Train,
            "checkpoint" => StageKind::Checkpoint,
            other => {
                let message = format!("unknown stage type `{other}`");
                return Err(self
                    .err(type_entry.value.pos, &p("type"), message)
                    .with_hint(hint_for(other, &STAGE_TYPES, "types")));
            }
        };
        let target = match m.get("target") {
            Some(e) => self.target(e, &p("target"))?,
            None => defaults.target.clone().ok_or_else(|| {
                let message =
                    format!("missing target: {what} sets no `target` and the plan has none");
                self.err(node.pos, &p("target"), message).with_hint(
                    "add `target: file:///tmp/chorus` (or s3://, az://, gs://, direct://, mem://) \
                     to the stage or to the top of the plan",
                )
            })?,
        };
        let concurrency = m
            .get("concurrency")
            .map(|e| self.concurrency(e, &p("concurrency")))
            .transpose()?
            .unwrap_or(defaults.concurrency);
        let objects = match m.get("objects") {
            Some(e) => self.objects(&e.value, p("objects"), format!("`objects` of {what}"))?,
            // A replay's objects are those its trace names.
            // So do a replay's and an AI/ML stage's: their own settings.
            None if matches!(
                kind,
                StageKind::Replay | StageKind::Dataset | StageKind::Train | StageKind::Checkpoint
            ) =>
            {
                defaults
                .objects
                .clone()
                    .unwrap_or_else(replay_key_space)
            }
            None => defaults.objects.clone().ok_or_else(|| {
                let message =
                    format!("missing objects: {what} sets no `objects` and the plan has none");
                self.err(node.pos, &p("objects"), message)
                    .with_hint("add `objects: {count: 1000, size: 4KiB}` to the stage or to the top of the plan")
            })?,
        };
        let mixes = matches!(kind, StageKind::Workload | StageKind::Search);
        let mix = match (m.get("mix"), mixes) {
            (Some(e), true) => self.mix(e, &p("mix"), &what)?,
            (None, true) => return Err(self.missing(&m, "mix")),
            (Some(e), _) => {
                let message = format!(
                    "`mix` is only allowed in workload stages; {what} is a {} stage",
                    kind.name()
                );
                return Err(self.err(e.key_pos, &p("mix"), message));
            }
            (None, _) => OpMix::default(),
        };
        let stop = StopCondition {
            duration: (m.get("duration").map(|e| self.duration(e, &p("duration")))).transpose()?,
            ops: (m
                .get("ops")
                .map(|e| self.integer(e, &p("ops"), 1, u64::MAX)))
            .transpose()?,
            bytes: (m.get("bytes").map(|e| self.size(e, &p("bytes"), 1))).transpose()?,
        };
        if kind == StageKind::Workload && stop == StopCondition::default() {
            let message = format!(
                "workload {what} needs a stop condition: set at least one of `duration`, `ops`, `bytes`"
            );
            return Err(self
                .err(node.pos, &path, message)
                .with_hint("e.g. `duration: 30s`"));
        }
        let search = match (m.get("search"), kind) {
            (Some(e), StageKind::Search) => Some(self.search(&m, e, &what, &mix)?),
            (None, StageKind::Search) => return Err(self.missing(&m, "search")),
            (Some(e), _) => {
                let message = format!(
                    "`search` is only allowed in search stages; {what} is a {} stage",
                    kind.name()
                );
                return Err(self
                    .err(e.key_pos, &p("search"), message)
                    .with_hint("set `type: search` to run the stage as a capacity search"));
            }
            (None, _) => None,
        };
        if kind == StageKind::Search
            && let Some(key) = ["duration", "ops", "bytes"]
                .into_iter()
                .find(|k| m.get(k).is_some())
        {
            let message = format!(
                "`{key}` is not allowed in search stages: each of {what}'s steps lasts `search.step`"
            );
            let pos = m.get(key).map_or(node.pos, |e| e.key_pos);
            return Err(self.err(pos, &p(key), message));
        }
        let replay = match (m.get("replay"), kind) {
            (Some(e), StageKind::Replay) => Some(self.replay(&m, e, &what)?),
            (None, StageKind::Replay) => return Err(self.missing(&m, "replay")),
            (Some(e), _) => {
                let message = format!(
                    "`replay` is only allowed in replay stages; {what} is a {} stage",
                    kind.name()
                );
                return Err(self
                    .err(e.key_pos, &p("replay"), message)
                    .with_hint("set `type: replay` to replay an op-log"));
            }
            (None, _) => None,
        };
        if kind == StageKind::Replay
            && let Some(key) = ["ops", "bytes", "rate", "arrivals", "warmup"]
                .into_iter()
                .find(|k| m.get(k).is_some())
        {
            let why = match key {
                "rate" | "arrivals" => {
                    "the trace's own times are the schedule (use `replay.speed`)"
                }
                "warmup" => "every op of a trace is replayed and counted",
                _ => "the stage ends with its trace (`duration` may cut it short)",
            };
            let message = format!("`{key}` is not allowed in replay stages: {why}");
            let pos = m.get(key).map_or(node.pos, |e| e.key_pos);
            return Err(self.err(pos, &p(key), message));
        }
        let training = self.training(&m, &what, kind, defaults.dataset.as_ref())?;
        // A train stage's workers are its ranks' readers; a checkpoint's,
        // its ranks.
        let concurrency = match (&training.train, &training.checkpoint) {
            (Some(t), _) => t.accelerators * t.read_threads,
            (_, Some(c)) => c.accelerators,
            _ => concurrency,
        };
        let until = self.until(&m, &what, kind, stop.duration.is_some())?;
        let o = self.stage_options(&m, &what, kind, &defaults.stage)?;
        let (ramp, think) = self.ramp_think(&m, &what, kind, &o.pacing, &stop)?;
        if kind == StageKind::Replay
            && o.verify
            && let Some(e) = m.get("verify")
        {
            let message = "`verify` is not allowed in replay stages: a trace's reads were of \
                           bytes Chorus may not have written";
            return Err(self.err(e.value.pos, &p("verify"), message));
        }
        let parallel = self.parallel(&m)?;
        let api = self.object_api(&m, kind)?;
        // Endpoints replace a network backend's endpoint; a local target
        // has none to replace.
        if !o.endpoints.is_empty()
            && !["s3://", "az://", "gs://"]
                .iter()
                .any(|s| target.starts_with(s))
        {
            let pos = m.get("endpoints").map_or(node.pos, |e| e.key_pos);
            let message = format!(
                "{what} has `endpoints` but its target `{target}` is not a network store; \
                 endpoints apply to s3://, az:// and gs:// targets"
            );
            return Err(self.err(pos, &p("endpoints"), message));
        }
        let stage = Stage {
            name,
            kind,
            target,
            concurrency,
            objects,
            mix,
            stop,
            warmup: o.warmup,
            pacing: o.pacing,
            ramp,
            think,
            range: o.range,
            part_size: o.part_size,
            parallel,
            list: o.list,
            verify: o.verify,
            overwrite: o.overwrite,
            retry: o.retry,
            pool: o.pool,
            endpoints: o.endpoints,
            balance: o.balance,
            search,
            until,
            replay,
            training,
            api,
        };
        self.check_existing_stage(&stage, &m, node, &what)?;
        self.check_object_api(&stage, &m, node)?;
        self.check_size_limit(&m, node, &stage)?;
        Ok(stage)
    }
}

impl Plan {
    /// Applies command-line overrides. Everything is checked before anything
    /// changes, so on error the plan is untouched.
    pub fn apply_overrides(&mut self, o: &Overrides) -> Result<(), String> {
        if let Some(t) = &o.target {
            TargetUri::parse(t)?;
            let network = ["s3://", "az://", "gs://"].iter().any(|s| t.starts_with(s));
            if let Some(s) = self
                .stages
                .iter()
                .find(|s| !s.endpoints.is_empty() && !network)
            {
                return Err(format!(
                    "stage `{}` names endpoints, which apply to s3://, az:// and gs:// targets, not `{t}`",
                    s.name
                ));
            }
        }
        if o.concurrency == Some(0) {
            return Err("concurrency must be at least 1, got 0".to_string());
        }
        if o.duration.is_some_and(|d| d.is_zero()) {
            return Err("duration must be longer than zero".to_string());
        }
        if let Some(d) = o.duration {
            super::ramp::check_duration_override(&self.stages, d)?;
        }
        if let Some(t) = &o.target {
            for s in &self.stages {
                crate::store::buckets::bucket_targets(t, s.api.buckets)
                    .map_err(|why| format!("stage `{}` on `{t}`: {why}", s.name))?;
            }
            // The new target's object-size limits, as loading checks them.
            for s in &self.stages {
                let moved = Stage {
                    target: t.clone(),
                    ..s.clone()
                };
                if let Some(why) = super::size_limit(&moved) {
                    return Err(format!("stage `{}` on `{t}`: {why}", s.name));
                }
            }
        }
        for s in &mut self.stages {
            if let Some(t) = &o.target {
                s.target.clone_from(t);
            }
            // A train or checkpoint stage's workers follow from its ranks.
            if let Some(c) = o.concurrency
                && !matches!(s.kind, StageKind::Train | StageKind::Checkpoint)
            {
                s.concurrency = c;
            }
            if let (Some(d), StageKind::Workload) = (o.duration, s.kind) {
                s.stop.duration = Some(d);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// The key space of a replay stage that names none: a placeholder (a
/// replay's ops name their objects), which the canonical plan writes out
/// and loads back like any other.
fn replay_key_space() -> KeySpace {
    KeySpace {
        prefix: DEFAULT_PREFIX.into(),
        count: 1,
        size: SizeSpec::Fixed(0),
        naming: Default::default(),
        distribution: Default::default(),
        partition: Default::default(),
        existing: None,
    }
}
