//! The plan's stages in order, each driven by its kind (`kinds/`) as one or
//! more load steps (`step.rs`), on the agents still with us. Between steps
//! it notes agents that left (lost, or stopped cleanly by SIGTERM) and
//! applies the plan's `on_agent_loss` policy; a stop raised on the run
//! (Ctrl-C, an abort) ends it after the running step.

use std::path::PathBuf;
use std::sync::Arc;

use chorus_common::clock::rfc3339_ns;
use chorus_common::metrics::summary::StageSummary;
use chorus_common::plan::{AgentLossPolicy, Plan, Stage};
use tokio::sync::{Mutex, Semaphore};

use super::agents::AgentHandle;
use super::collector;
use super::handover;
use super::health::{Health, Lost};
use super::kinds::{KindPicker, StageKind, Step, StepResult};
use super::progress::LiveView;
use super::results::{LostAgentMeta, RunDir, RunMeta};
use super::series::Series;
use super::stage::{self, StopSignal};
use super::step;

/// Per stage or step: its index and step, its summary, and the op-log
/// files gathered from agents with the id of the agent that wrote each
/// (its clock correction comes from `run.json`, see `drift.rs`).
pub struct StageOutput {
    pub index: u32,
    pub step: u32,
    pub summary: StageSummary,
    pub oplogs: Vec<(PathBuf, String)>,
}

/// What the stage loop shares with the rest of the run.
pub struct RunControl {
    pub session_id: String,
    pub stop: Arc<StopSignal>,
    pub health: Arc<Health>,
    pub series: Arc<Mutex<Series>>,
    /// What `--metrics-listen` serves (fed whether or not it is served).
    pub metrics: Arc<chorus_common::metrics::prometheus::Metrics>,
}

/// A run's stages in progress: what every step reads and adds to.
pub struct RunState<'a> {
    pub plan: &'a Plan,
    pub rc: &'a RunControl,
    pub agents: &'a mut [AgentHandle],
    pub dir: &'a RunDir,
    pub meta: &'a mut RunMeta,
    pub view: LiveView,
    /// Agents that left so far (lost or stopped), by run index.
    pub gone: Vec<Option<Lost>>,
    /// How far ahead of now the next step's start is set
    /// (`stage::next_lead`).
    pub lead: std::time::Duration,
    /// Shared by every step's log copying: a bound on fetches at once.
    pub permits: Arc<Semaphore>,
    pub outputs: Vec<StageOutput>,
}

/// Runs every stage, each by the driver `pick` gives it; returns what was
/// measured and how it ended.
pub async fn run_stages(
    plan: &Plan,
    rc: &RunControl,
    agents: &mut [AgentHandle],
    dir: &RunDir,
    meta: &mut RunMeta,
    quiet: bool,
    pick: KindPicker,
) -> (Vec<StageOutput>, anyhow::Result<()>) {
    let mut run = RunState {
        plan,
        rc,
        gone: vec![None; agents.len()],
        agents,
        dir,
        meta,
        view: LiveView::new(quiet),
        lead: stage::START_LEAD,
        permits: Arc::new(Semaphore::new(collector::MAX_CONCURRENT_FETCHES)),
        outputs: Vec::new(),
    };
    let mut result = Ok(());
    for (i, stage) in plan.stages.iter().enumerate() {
        result = run.stage(i as u32, stage, pick(stage).as_mut()).await;
        if result.is_err() {
            break;
        }
    }
    (run.outputs, result)
}

impl RunState<'_> {
    /// One stage: its kind's steps in turn, then the kind's verdict.
    async fn stage(
        &mut self,
        index: u32,
        stage: &Stage,
        kind: &mut dyn StageKind,
    ) -> anyhow::Result<()> {
        let mut done: Vec<StepResult> = Vec::new();
        // Agents that left during the stage's steps.
        let mut left = Vec::new();
        loop {
            self.between_steps(&stage.name)?;
            let Some(next) = kind.next_step(stage, &done) else {
                break;
            };
            let live = self.live();
            let ran = step::run_step(self, index, stage, next, kind).await;
            match ran {
                Ok(r) => done.push(r),
                Err(e) => {
                    // What the steps so far answered is kept with the error.
                    self.verdict(index, stage, kind, &done);
                    return Err(e);
                }
            }
            self.left_since(&live, &mut left);
        }
        if !left.is_empty() {
            self.hand_over(index, stage, kind, &done, left).await?;
        }
        self.verdict(index, stage, kind, &done);
        kind.judge(stage, &done)
    }

    /// After a stage that lost agents in its steps (`left`), hand-over steps on the others until the stage's budget
    /// is done or nothing more can be taken over; said in the summary and
    /// `run.json` (see `handover.rs`).
    async fn hand_over(
        &mut self,
        index: u32,
        stage: &Stage,
        kind: &mut dyn StageKind,
        done: &[StepResult],
        mut left: Vec<String>,
    ) -> anyhow::Result<()> {
        let mut extra: Vec<StepResult> = Vec::new();
        let mut given = None;
        let mut next_index = done.iter().map(|r| r.step.index()).max().unwrap_or(0) + 1;
        // Until a hand-over loses no one.
        let mut lost_last = true;
        let text = loop {
            if !lost_last {
                break None;
            }
            let all: Vec<&StepResult> = done.iter().chain(&extra).collect();
            match handover::next(stage, &all, &left, next_index) {
                handover::Next::Done => break None,
                handover::Next::NotDone(why) => break Some(why),
                handover::Next::Step(spec) => {
                    self.between_steps(&stage.name)?;
                    let live = self.live();
                    let step = Step::Sub(spec.clone());
                    extra.push(step::run_step(self, index, stage, step, kind).await?);
                    lost_last = self.left_since(&live, &mut left);
                    given = Some(spec);
                    next_index += 1;
                }
            }
        };
        let all: Vec<&StepResult> = done.iter().chain(&extra).collect();
        let mut meta = handover::record(index, stage, &left, given.as_ref(), &all);
        if let Some(why) = text {
            meta.text = why;
        }
        if meta.text.is_empty() {
            return Ok(());
        }
        self.view.notice(&format!("note: {}", meta.text));
        if let Some(out) = self.outputs.last_mut() {
            out.summary.warnings.push(meta.text.clone());
        }
        self.meta.handovers.push(meta);
        if let Err(e) = self.dir.write_meta(self.meta) {
            tracing::warn!("run.json: {e:#}");
        }
        Ok(())
    }

    /// Adds to `left` the ids of agents of `live` (run indices) that have
    /// left since; whether any had.
    fn left_since(&self, live: &[usize], left: &mut Vec<String>) -> bool {
        let before = left.len();
        for &k in live {
            if self.gone[k].is_some() {
                left.push(self.agents[k].id.clone());
            }
        }
        left.len() > before
    }

    /// Files the kind's answer, if it gives one: in `run.json` at once, and
    /// shown now (and again after the summary).
    fn verdict(&mut self, index: u32, stage: &Stage, kind: &dyn StageKind, done: &[StepResult]) {
        if done.is_empty() {
            return;
        }
        let Some(mut v) = kind.verdict(stage, done) else {
            return;
        };
        v.index = index;
        self.view.notice(&v.text);
        self.meta.verdicts.push(v);
        if let Err(e) = self.dir.write_meta(self.meta) {
            tracing::warn!("run.json: {e:#}");
        }
    }

    /// Before a step: departures the heartbeats found are reported, the
    /// plan's policy is applied, and a stop raised on the run ends it.
    fn between_steps(&mut self, stage: &str) -> anyhow::Result<()> {
        for k in 0..self.agents.len() {
            if self.gone[k].is_none()
                && let Some(l) = self.rc.health.lost(k)
            {
                self.depart(k, stage, l, true);
            }
        }
        // The policy's words first: an abort on loss also raised the stop.
        if let Some(e) = self.loss_failure() {
            return Err(e);
        }
        match self.rc.stop.reason() {
            Some(reason) => Err(reason.into()),
            None => Ok(()),
        }
    }

    /// The LoadPlan places of the agents that left (what a step's
    /// `departed` says).
    pub fn departed(&self) -> Vec<u32> {
        self.agents
            .iter()
            .zip(&self.gone)
            .filter(|(_, g)| g.is_some())
            .map(|(a, _)| a.index)
            .collect()
    }

    /// Run indices of the agents still taking part.
    pub fn live(&self) -> Vec<usize> {
        (0..self.agents.len())
            .filter(|&k| self.gone[k].is_none())
            .collect()
    }

    /// Records that agent `k` left in `stage`; `announce` unless its
    /// stage already said so when it happened.
    pub fn depart(&mut self, k: usize, stage: &str, l: Lost, announce: bool) {
        let id = self.agents[k].id.clone();
        let entry = LostAgentMeta {
            id: id.clone(),
            at: rfc3339_ns(l.at_ns),
            stage: stage.to_string(),
            reason: l.reason.clone(),
        };
        if l.stopped {
            if announce {
                self.view.notice(&format!(
                    "agent {id} left in stage `{stage}`: {}; its ops up to then are kept",
                    l.reason
                ));
            }
            self.meta.stopped_agents.push(entry);
        } else {
            if announce {
                let line = stage::lost_line(&id, l.at_ns, stage, &l.reason);
                self.view.notice(&line);
            }
            self.meta.lost_agents.push(entry);
        }
        self.rc.health.mark_lost(k, l.clone());
        self.gone[k] = Some(l);
    }

    /// The run's end under the plan's policy: any departure with `abort`,
    /// every agent gone with `continue`.
    fn loss_failure(&self) -> Option<anyhow::Error> {
        let names: Vec<String> = self
            .agents
            .iter()
            .zip(&self.gone)
            .filter_map(|(a, l)| l.as_ref().map(|l| format!("{} ({})", a.id, l.reason)))
            .collect();
        if names.is_empty() {
            return None;
        }
        if names.len() == self.agents.len() {
            return Some(anyhow::anyhow!(
                "every agent left the run: {}",
                names.join(", ")
            ));
        }
        (self.plan.control.on_agent_loss == AgentLossPolicy::Abort).then(|| {
            anyhow::anyhow!(
                "agent {} left the run; the plan says `on_agent_loss: abort`",
                names.join(", ")
            )
        })
    }
}
