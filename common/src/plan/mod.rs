//! The plan file: what a run does, stage by stage.
//!
//! A plan is YAML, read strictly by [`load`]: every unknown key, wrong type or
//! bad value is a [`PlanError`] naming the file, line, column and key. The
//! types here are the plan *after* loading: defaults filled in, every stage's
//! target resolved, units converted. [`Plan::to_yaml`] writes the canonical
//! form back out (the "plan as run" of a results directory), and that text
//! loads again to an equal plan, which is also how a plan travels to agents.

mod error;
mod load;
mod units;
mod yaml;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::op::OpKind;

pub use error::PlanError;
pub use load::{load, parse};
pub use units::{format_duration, format_size, parse_duration, parse_size};

/// A whole plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Names the run directory (`runs/<time>-<name>`). Letters, digits, `-`,
    /// `_` and `.` only.
    pub name: String,
    pub description: Option<String>,
    /// Seed for key choice and payload data; the same seed gives the same
    /// bytes for the same key.
    pub seed: u64,
    /// Agent addresses (`host:port`) named by the plan; empty means "the
    /// controller decides" (command line, or embedded agents).
    pub agents: Vec<String>,
    pub stages: Vec<Stage>,
}

/// What a stage does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageKind {
    /// Writes every object of the key space once (split over agents).
    Prepare,
    /// Runs the op mix until the stop condition.
    Workload,
    /// Deletes every object of the key space (split over agents).
    Cleanup,
}

impl StageKind {
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Prepare => "prepare",
            StageKind::Workload => "workload",
            StageKind::Cleanup => "cleanup",
        }
    }
}

/// One stage of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// Unique within the plan.
    pub name: String,
    pub kind: StageKind,
    /// Target URI, already checked by [`crate::store::uri::TargetUri::parse`];
    /// the stage's own `target` or else the plan's.
    pub target: String,
    /// Workers per agent.
    pub concurrency: u32,
    pub objects: KeySpace,
    /// Op weights; only used by workload stages. At least one weight is > 0.
    pub mix: OpMix,
    pub stop: StopCondition,
}

/// The objects a stage works on: keys `<prefix><index>` for index in
/// `0..count`, each `size` bytes when written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpace {
    pub prefix: String,
    pub count: u64,
    pub size: u64,
}

impl KeySpace {
    /// The key of object `index`: zero-padded so listings sort numerically.
    pub fn key(&self, index: u64) -> String {
        format!("{}{:08}", self.prefix, index)
    }
}

/// Op weights of a workload stage. Ops not named have weight 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpMix {
    pub weights: BTreeMap<OpKind, u32>,
}

impl OpMix {
    pub fn total(&self) -> u64 {
        self.weights.values().map(|&w| u64::from(w)).sum()
    }
}

/// When a stage stops: the first of its limits that is reached. A prepare or
/// cleanup stage also stops when its key space is done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopCondition {
    pub duration: Option<Duration>,
    /// Ops for the whole stage, across all agents.
    pub ops: Option<u64>,
    /// Bytes moved (read + written) for the whole stage, across all agents.
    pub bytes: Option<u64>,
}

/// Command-line overrides applied on top of a loaded plan
/// (`controller run --target … --duration … --concurrency …`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Replaces every stage's target.
    pub target: Option<String>,
    /// Replaces the duration of every workload stage.
    pub duration: Option<Duration>,
    /// Replaces every stage's concurrency.
    pub concurrency: Option<u32>,
}
