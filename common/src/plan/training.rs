//! The keys of the AI/ML stages, MLPerf Storage (DLIO) style:
//! `dataset:` (what a training set looks like: samples, their sizes, how
//! many to a file, the file format), `train:` (epochs of emulated
//! accelerators reading it) and `checkpoint:` (every rank writing its shard
//! of a checkpoint at once, then reading it back). Decoded with located
//! errors, emitted back canonically.
//!
//! A `dataset:` may sit at the top of the plan, where every `dataset` and
//! `train` stage shares it, or on one of those stages. What depends on the
//! number of agents (a batch larger than a rank's shard, a checkpoint that
//! does not split over the ranks) is checked by [`Plan::check_ranks`] once
//! the controller knows the agents, before anything runs.

use std::fmt::Write as _;

use super::emit::float;
use super::error::PlanError;
use super::load::{Decoder, Map, join};
use super::ramp::{ThinkTime, emit_pause};
use super::sizes::SizeSpec;
use super::units::format_size;
use super::yaml::{Entry, NodeKind, quote};
use super::{Plan, StageKind};

/// Keys of `dataset:`.
pub(super) const DATASET_KEYS: [&str; 5] = [
    "samples",
    "sample_size",
    "samples_per_file",
    "format",
    "prefix",
];
/// Keys of `train:`.
pub(super) const TRAIN_KEYS: [&str; 8] = [
    "epochs",
    "batch",
    "accelerators",
    "compute",
    "prefetch",
    "read_threads",
    "au_target",
    "shuffle",
];
/// Keys of `checkpoint:`.
pub(super) const CHECKPOINT_KEYS: [&str; 5] =
    ["size", "accelerators", "restore", "restore_from", "prefix"];

/// Most emulated accelerators (ranks) per agent, and read threads per
/// rank: each is a task with its own buffers, and the product is the
/// agent's worker count.
pub const MAX_ACCELERATORS: u32 = 1024;
pub const MAX_READ_THREADS: u32 = 256;
/// Most samples of a dataset: sample numbers are shuffled by a cipher over
/// their range, never held in a list, so this bounds nothing but u64 sums.
pub const MAX_SAMPLES: u64 = 1 << 40;

/// Most batches of an epoch (`samples` over `batch`): each agent keeps a
/// word per batch of its ranks to hand batches to them in order, 1 GiB at
/// this bound.
pub const MAX_BATCHES: u64 = 1 << 28;

/// How a dataset's files are laid out inside: `crate::dataset`'s formats.
pub use crate::dataset::Format as DatasetFormat;

/// A training dataset (`dataset:`).
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetSpec {
    pub samples: u64,
    /// The size of each sample's payload (a distribution, drawn per sample).
    pub sample_size: SizeSpec,
    pub samples_per_file: u32,
    pub format: DatasetFormat,
    /// Where its files go: `<prefix><file>-of-<files>.<ext>`.
    pub prefix: String,
}

/// An emulated training run (`train:`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSpec {
    pub epochs: u32,
    /// Samples per step per accelerator.
    pub batch: u32,
    /// Emulated accelerators (ranks) per agent.
    pub accelerators: u32,
    /// The accelerator's time per batch.
    pub compute: ThinkTime,
    /// Batches a rank's readers may load ahead of the one it computes.
    pub prefetch: u32,
    /// Concurrent sample reads per rank.
    pub read_threads: u32,
    /// The accelerator utilization a run must keep to pass (0 to 1).
    pub au_target: f64,
    /// A new seeded order of the samples every epoch (else file order).
    pub shuffle: bool,
    /// `accelerators: {min, max}`: search that range for the most
    /// accelerators per agent that keep AU at `au_target`, one epoch per
    /// step (`accelerators` is then `max`).
    pub search: Option<(u32, u32)>,
    /// The epoch a step runs (1-based): set by the step, never by the plan.
    pub epoch: u32,
}

/// Which shard a rank reads back in a restore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestoreFrom {
    /// The shard it wrote.
    #[default]
    Own,
    /// The shard the same rank of the next agent wrote (with one agent,
    /// the next rank's): every read crosses hosts, as when a job restarts
    /// on other nodes.
    Other,
}

impl RestoreFrom {
    pub fn name(self) -> &'static str {
        match self {
            RestoreFrom::Own => "own",
            RestoreFrom::Other => "other",
        }
    }
}

/// A checkpoint written and read back (`checkpoint:`).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointSpec {
    /// Total bytes over all ranks of all agents.
    pub size: u64,
    /// Ranks per agent, each writing one shard.
    pub accelerators: u32,
    pub restore: bool,
    pub restore_from: RestoreFrom,
    pub prefix: String,
    /// This step reads the shards back: set by the step, never by the plan.
    pub restoring: bool,
}

impl CheckpointSpec {
    /// The key of global rank `rank`'s shard of `ranks`.
    pub fn shard_key(&self, rank: u32, ranks: u32) -> String {
        format!("{}rank-{rank:05}-of-{ranks:05}", self.prefix)
    }
}

/// The AI/ML settings of one stage; each `Some` exactly where the stage's
/// kind uses it (`dataset` in dataset and train stages).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Training {
    pub dataset: Option<DatasetSpec>,
    pub train: Option<TrainSpec>,
    pub checkpoint: Option<CheckpointSpec>,
}

/// A plan check that needs the run's agents failed (a batch larger than a
/// rank's shard, an override that picks no agent): where, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentsCheckError {
    /// The key's path, e.g. `stages[1].train.batch`.
    pub path: String,
    pub message: String,
}

impl Plan {
    /// The checks that need the number of agents: a train stage's batch
    /// must fit in a rank's shard of the samples (else a rank has no full
    /// step), a checkpoint's size must split evenly over its ranks.
    pub fn check_ranks(&self, agents: u32) -> Result<(), AgentsCheckError> {
        let agents = agents.max(1);
        for (i, s) in self.stages.iter().enumerate() {
            let at = |k: &str| format!("stages[{i}].{k}");
            if let (Some(t), Some(d)) = (&s.training.train, &s.training.dataset) {
                let ranks = u64::from(agents) * u64::from(t.accelerators);
                let shard = d.samples / ranks;
                if u64::from(t.batch) > shard {
                    return Err(AgentsCheckError {
                        path: at("train.batch"),
                        message: format!(
                            "stage `{}`: `batch` {} is larger than a rank's shard: {} samples \
                             over {ranks} ranks ({agents} agents × {} accelerators) is {shard} \
                             per rank",
                            s.name, t.batch, d.samples, t.accelerators
                        ),
                    });
                }
            }
            if let Some(c) = &s.training.checkpoint {
                let ranks = u64::from(agents) * u64::from(c.accelerators);
                if c.size % ranks != 0 || c.size < ranks {
                    return Err(AgentsCheckError {
                        path: at("checkpoint.size"),
                        message: format!(
                            "stage `{}`: checkpoint `size` {} ({} bytes) does not split evenly \
                             over {ranks} ranks ({agents} agents × {} accelerators)",
                            s.name,
                            format_size(c.size),
                            c.size,
                            c.accelerators
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

impl Decoder<'_> {
    /// `dataset:` (of the plan or of a stage).
    pub(super) fn dataset(&self, e: &Entry, path: &str) -> Result<DatasetSpec, PlanError> {
        let m = self.map(
            &e.value,
            path.to_string(),
            format!("`{path}`"),
            &DATASET_KEYS,
            "key",
        )?;
        let p = |k: &str| join(path, k);
        let samples = self.integer(self.required(&m, "samples")?, &p("samples"), 1, MAX_SAMPLES)?;
        let sample_size = self.size_spec(self.required(&m, "sample_size")?, &p("sample_size"))?;
        let samples_per_file = match m.get("samples_per_file") {
            Some(e) => self.integer(e, &p("samples_per_file"), 1, u64::from(u32::MAX))? as u32,
            None => 1,
        };
        let format = match m.get("format") {
            Some(e) => {
                let names = DatasetFormat::ALL.map(DatasetFormat::name);
                let name = self.one_of(e, &p("format"), &names)?;
                DatasetFormat::from_name(&name).unwrap_or(DatasetFormat::Raw)
            }
            None => DatasetFormat::Raw,
        };
        let prefix = match m.get("prefix") {
            Some(e) => self.string(e, &p("prefix"))?,
            None => "dataset/".to_string(),
        };
        let spec = DatasetSpec {
            samples,
            sample_size,
            samples_per_file,
            format,
            prefix,
        };
        if let Err(why) = crate::dataset::Layout::for_spec(&spec, 0) {
            return Err(self.err(e.value.pos, path, why));
        }
        Ok(spec)
    }

    /// `train:` of a train stage.
    pub(super) fn train(&self, e: &Entry, path: &str) -> Result<TrainSpec, PlanError> {
        let m = self.map(
            &e.value,
            path.to_string(),
            format!("`{path}`"),
            &TRAIN_KEYS,
            "key",
        )?;
        let p = |k: &str| join(path, k);
        let int = |k: &str, default: u64, max: u64| -> Result<u64, PlanError> {
            match m.get(k) {
                Some(e) => self.integer(e, &p(k), 1, max),
                None => Ok(default),
            }
        };
        let epochs = int("epochs", 1, 10_000)? as u32;
        let batch = int("batch", 1, u64::from(u32::MAX))? as u32;
        let (accelerators, search) = match m.get("accelerators") {
            Some(e) if matches!(e.value.kind, NodeKind::Map(_)) => {
                let ap = p("accelerators");
                let r = self.map(
                    &e.value,
                    ap.clone(),
                    format!("`{ap}`"),
                    &["min", "max"],
                    "key",
                )?;
                let bound = |k: &str| -> Result<u32, PlanError> {
                    let e = self.required(&r, k)?;
                    Ok(self.integer(e, &join(&ap, k), 1, u64::from(MAX_ACCELERATORS))? as u32)
                };
                let (min, max) = (bound("min")?, bound("max")?);
                if min > max {
                    let message = format!("`min` ({min}) is above `max` ({max})");
                    return Err(self.err(e.value.pos, &ap, message));
                }
                (max, Some((min, max)))
            }
            _ => (
                int("accelerators", 1, u64::from(MAX_ACCELERATORS))? as u32,
                None,
            ),
        };
        let prefetch = int("prefetch", 2, 1024)? as u32;
        let read_threads = int("read_threads", 1, u64::from(MAX_READ_THREADS))? as u32;
        let compute = match m.get("compute") {
            Some(e) => self.pause(e, &p("compute"), "compute", true)?,
            None => ThinkTime::Fixed(std::time::Duration::ZERO),
        };
        let au_target = match m.get("au_target") {
            Some(e) => self.fraction(e, &p("au_target"), true)?,
            None => 0.9,
        };
        let shuffle = match m.get("shuffle") {
            Some(e) => self.boolean(e, &p("shuffle"))?,
            None => true,
        };
        Ok(TrainSpec {
            epochs,
            batch,
            accelerators,
            compute,
            prefetch,
            read_threads,
            au_target,
            shuffle,
            search,
            epoch: 1,
        })
    }

    /// `checkpoint:` of a checkpoint stage.
    pub(super) fn checkpoint(&self, e: &Entry, path: &str) -> Result<CheckpointSpec, PlanError> {
        let m = self.map(
            &e.value,
            path.to_string(),
            format!("`{path}`"),
            &CHECKPOINT_KEYS,
            "key",
        )?;
        let p = |k: &str| join(path, k);
        let size = self.size(self.required(&m, "size")?, &p("size"), 1)?;
        let accelerators = match m.get("accelerators") {
            Some(e) => self.integer(e, &p("accelerators"), 1, u64::from(MAX_ACCELERATORS))? as u32,
            None => 1,
        };
        let restore = match m.get("restore") {
            Some(e) => self.boolean(e, &p("restore"))?,
            None => true,
        };
        let restore_from = match m.get("restore_from") {
            Some(e) if self.one_of(e, &p("restore_from"), &["own", "other"])? == "other" => {
                RestoreFrom::Other
            }
            _ => RestoreFrom::Own,
        };
        let prefix = match m.get("prefix") {
            Some(e) => self.string(e, &p("prefix"))?,
            None => "checkpoint/".to_string(),
        };
        Ok(CheckpointSpec {
            size,
            accelerators,
            restore,
            restore_from,
            prefix,
            restoring: false,
        })
    }

    /// The `dataset`, `train` and `checkpoint` keys of a stage of `kind`:
    /// each allowed only where the kind uses it, each required there
    /// (`dataset` may come from the plan).
    pub(super) fn training(
        &self,
        m: &Map<'_>,
        what: &str,
        kind: StageKind,
        plan_dataset: Option<&DatasetSpec>,
    ) -> Result<Training, PlanError> {
        let p = |k: &str| join(&m.path, k);
        let only = |key: &str, kinds: &str| -> Result<(), PlanError> {
            match m.get(key) {
                Some(e) => {
                    let message = format!(
                        "`{key}` is only allowed in {kinds} stages; {what} is a {} stage",
                        kind.name()
                    );
                    Err(self.err(e.key_pos, &p(key), message))
                }
                None => Ok(()),
            }
        };
        let uses_dataset = matches!(kind, StageKind::Dataset | StageKind::Train);
        if !uses_dataset {
            only("dataset", "dataset and train")?;
        }
        if kind != StageKind::Train {
            only("train", "train")?;
        }
        if kind != StageKind::Checkpoint {
            only("checkpoint", "checkpoint")?;
        }
        let dataset = match (m.get("dataset"), uses_dataset) {
            (Some(e), true) => Some(self.dataset(e, &p("dataset"))?),
            (None, true) => match plan_dataset {
                Some(d) => Some(d.clone()),
                None => {
                    return Err(self.missing(m, "dataset").with_hint(
                        "add `dataset: {samples: 1000, sample_size: 128KiB}` to the stage or \
                         to the top of the plan",
                    ));
                }
            },
            _ => None,
        };
        let train = match (m.get("train"), kind) {
            (Some(e), StageKind::Train) => Some(self.train(e, &p("train"))?),
            (None, StageKind::Train) => return Err(self.missing(m, "train")),
            _ => None,
        };
        if let (Some(t), Some(d), Some(e)) = (&train, &dataset, m.get("train")) {
            // Each agent tracks its ranks' batches of an epoch, one word
            // each: their number bounds what a plan makes it hold.
            let batches = d.samples.div_ceil(u64::from(t.batch.max(1)));
            if batches > MAX_BATCHES {
                let message = format!(
                    "{batches} batches an epoch (`dataset.samples` over `train.batch`) is above \
                     {MAX_BATCHES}: raise `batch`"
                );
                return Err(self.err(e.value.pos, &p("train.batch"), message));
            }
        }
        let checkpoint = match (m.get("checkpoint"), kind) {
            (Some(e), StageKind::Checkpoint) => Some(self.checkpoint(e, &p("checkpoint"))?),
            (None, StageKind::Checkpoint) => return Err(self.missing(m, "checkpoint")),
            _ => None,
        };
        if matches!(
            kind,
            StageKind::Dataset | StageKind::Train | StageKind::Checkpoint
        ) {
            let settings = match kind {
                StageKind::Train => "`train.accelerators` and `train.read_threads` set",
                StageKind::Checkpoint => "`checkpoint.accelerators` sets",
                _ => "",
            };
            for key in ["ops", "bytes", "rate", "arrivals", "warmup"] {
                if let Some(e) = m.get(key) {
                    let message = format!(
                        "`{key}` is not allowed in {} stages: the stage ends when its data is \
                         written or read (`duration` may cut it short)",
                        kind.name()
                    );
                    return Err(self.err(e.key_pos, &p(key), message));
                }
            }
            if let (Some(e), false) = (m.get("concurrency"), settings.is_empty()) {
                let message = format!(
                    "`concurrency` is not allowed in {} stages: {settings} the workers",
                    kind.name()
                );
                return Err(self.err(e.key_pos, &p("concurrency"), message));
            }
        }
        Ok(Training {
            dataset,
            train,
            checkpoint,
        })
    }
}

/// Writes a stage's `dataset`, `train` and `checkpoint` keys in the
/// canonical form (four spaces in). The dataset is written on every stage
/// that uses it, so a stage reads back alone.
pub(super) fn emit(t: &Training, y: &mut String) {
    // Writing to a String cannot fail; the results are ignored.
    if let Some(d) = &t.dataset {
        let _ = writeln!(
            y,
            "    dataset: {{samples: {}, sample_size: {}, samples_per_file: {}, format: {}, \
             prefix: {}}}",
            d.samples,
            super::emit::size_spec(&d.sample_size),
            d.samples_per_file,
            d.format.name(),
            quote(&d.prefix)
        );
    }
    if let Some(t) = &t.train {
        let _ = writeln!(
            y,
            "    train: {{epochs: {}, batch: {}, accelerators: {}, compute: {}, prefetch: {}, \
             read_threads: {}, au_target: {}, shuffle: {}}}",
            t.epochs,
            t.batch,
            match t.search {
                Some((min, max)) => format!("{{min: {min}, max: {max}}}"),
                None => t.accelerators.to_string(),
            },
            emit_pause(&t.compute),
            t.prefetch,
            t.read_threads,
            float(t.au_target),
            t.shuffle
        );
    }
    if let Some(c) = &t.checkpoint {
        let _ = writeln!(
            y,
            "    checkpoint: {{size: {}, accelerators: {}, restore: {}, restore_from: {}, \
             prefix: {}}}",
            format_size(c.size),
            c.accelerators,
            c.restore,
            c.restore_from.name(),
            quote(&c.prefix)
        );
    }
}

/// `err` located in the plan file at `path`, as text (`file:line:column:
/// message (at `key`)`); the message with the file's name alone when the
/// file cannot be read again.
pub fn locate_in_file(path: &std::path::Path, err: &AgentsCheckError) -> String {
    let source = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => locate(&text, &source, err).to_string(),
        Err(_) => format!("{source}: {}", err.message),
    }
}

/// `err` located in the plan `text` (read from `source`): at the value of
/// its key path, or of the deepest part of the path the text has (a key
/// left to its default is reported at its stage).
pub fn locate(text: &str, source: &str, err: &AgentsCheckError) -> PlanError {
    let Ok(Some(root)) = super::yaml::parse(text, source) else {
        return PlanError::unlocated(source, err.message.clone());
    };
    let mut node = &root;
    for part in err.path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some(next) = node.get(key) else { break };
        node = next;
        if let (Some(i), NodeKind::Seq(items)) = (index, &node.kind) {
            match items.get(i) {
                Some(item) => node = item,
                None => break,
            }
        }
    }
    PlanError::at(source, node.pos, &err.path, err.message.clone())
}

#[cfg(test)]
mod tests;
