//! The live view: one bar per stage with cluster ops/s, MiB/s and p99 of
//! the last complete second (from the per-second series, so the numbers on
//! screen are the ones `series.csv` keeps), errors, and how many agents are
//! starting, running, done or lost. Redrawn a few times a second.
//!
//! The line stays one line whatever the number of agents: agents are
//! counted by state, never listed, and with more than [`SLOWEST_SHOWN`]
//! agents the line names the few running ones with the fewest ops so far
//! (the ones holding a stage back), found in one pass over the agents.

use std::sync::Arc;
use std::time::Duration;

use chorus_common::clock::now_ns;
use chorus_common::plan::{Stage, StageKind};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::series::Series;

/// How often the view is redrawn.
const REDRAW: Duration = Duration::from_millis(250);

/// Running agents named on the line as the slowest, when there are more
/// agents than this.
const SLOWEST_SHOWN: usize = 3;

/// Where one agent is in the current stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AgentState {
    #[default]
    Starting,
    Running,
    Done,
    Lost,
}

/// One agent's running totals for the current stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
    pub state: AgentState,
}

/// The live view, or nothing when quiet.
pub struct LiveView {
    quiet: bool,
    current: std::sync::Mutex<Option<(ProgressBar, JoinHandle<()>)>>,
}

impl LiveView {
    pub fn new(quiet: bool) -> LiveView {
        LiveView {
            quiet,
            current: std::sync::Mutex::new(None),
        }
    }

    /// Shows a bar for `stage`: by time for a timed stage, by ops when the
    /// stage has an op count (or is a prepare/cleanup over its key space).
    pub fn start_stage(
        &self,
        stage: &Stage,
        start_at_ns: i64,
        totals: Arc<Mutex<Vec<Totals>>>,
        ids: Vec<String>,
        series: Arc<Mutex<Series>>,
    ) {
        if self.quiet {
            return;
        }
        let by_time = stage.stop.duration;
        let ops_goal = match stage.kind {
            StageKind::Workload | StageKind::Search => stage.stop.ops,
            _ => Some(
                stage
                    .stop
                    .ops
                    .map_or(stage.objects.count, |o| o.min(stage.objects.count)),
            ),
        };
        let (len, template) = match (by_time, ops_goal) {
            (_, Some(ops)) => (ops, "{prefix:>12} [{bar:30}] {pos}/{len} ops {wide_msg}"),
            (Some(d), None) => (
                d.as_millis() as u64,
                "{prefix:>12} [{bar:30}] {elapsed} {wide_msg}",
            ),
            (None, None) => (0, "{prefix:>12} {spinner} {wide_msg}"),
        };
        // `wide_msg`: the message is cut at the terminal's width, so the
        // line stays one line however long the agents' names it ends with.
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(stage.name.clone());
        let b = bar.clone();
        let by_ops = ops_goal.is_some();
        let updater = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REDRAW);
            loop {
                tick.tick().await;
                let all = totals.lock().await.clone();
                let sum = all.iter().fold(Totals::default(), |a, t| Totals {
                    ops: a.ops + t.ops,
                    bytes: a.bytes + t.bytes,
                    errors: a.errors + t.errors,
                    state: a.state,
                });
                let rate = match series.lock().await.last_second() {
                    Some(s) => format!(
                        "{:.0} ops/s {:.1} MiB/s p99 {}",
                        s.ops_per_s,
                        s.mib_per_s,
                        micros(s.latency_us.p99)
                    ),
                    None => "-".into(),
                };
                b.set_message(format!(
                    "{rate}, {} errors, agents: {}{}",
                    sum.errors,
                    states(&all),
                    slowest(&all, &ids, SLOWEST_SHOWN)
                ));
                if by_ops {
                    b.set_position(sum.ops);
                } else {
                    b.set_position(((now_ns() - start_at_ns).max(0) / 1_000_000) as u64);
                }
            }
        });
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((bar, updater));
    }

    /// A line above the bars (or on stderr when quiet, since it is news the
    /// user must see: a lost agent, a clock warning).
    pub fn notice(&self, line: &str) {
        self.notifier().notice(line);
    }

    /// A handle that tasks can keep to print notices as they happen.
    pub fn notifier(&self) -> Notifier {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        Notifier {
            bar: current
                .as_ref()
                .filter(|_| !self.quiet)
                .map(|(bar, _)| bar.clone()),
        }
    }

    pub async fn finish_stage(&self) {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((bar, updater)) = current {
            updater.abort();
            bar.finish();
        }
    }
}

/// Prints a notice above the current bar, or on stderr.
#[derive(Clone)]
pub struct Notifier {
    bar: Option<ProgressBar>,
}

impl Notifier {
    pub fn notice(&self, line: &str) {
        // A bar draws nothing when stderr is not a terminal (CI logs,
        // nohup), and then neither does its println: such news goes to
        // stderr as a plain line.
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }
}

/// `2 running, 1 lost` in a fixed order.
fn states(all: &[Totals]) -> String {
    let names = [
        (AgentState::Starting, "starting"),
        (AgentState::Running, "running"),
        (AgentState::Done, "done"),
        (AgentState::Lost, "lost"),
    ];
    let parts: Vec<String> = names
        .iter()
        .filter_map(|(state, name)| {
            let n = all.iter().filter(|t| t.state == *state).count();
            (n > 0).then(|| format!("{n} {name}"))
        })
        .collect();
    parts.join(", ")
}

/// `; slowest: a 10 ops, b 12 ops` naming the `n` running agents with
/// the fewest ops, when there are more than `n` agents; else nothing.
fn slowest(all: &[Totals], ids: &[String], n: usize) -> String {
    if all.len() <= n {
        return String::new();
    }
    let mut running: Vec<usize> = (0..all.len())
        .filter(|&k| all[k].state == AgentState::Running)
        .collect();
    if running.is_empty() {
        return String::new();
    }
    let key = |&k: &usize| (all[k].ops, k);
    // Linear: the n smallest are put first, then only they are sorted.
    if running.len() > n {
        running.select_nth_unstable_by_key(n - 1, key);
        running.truncate(n);
    }
    running.sort_unstable_by_key(key);
    let named: Vec<String> = running
        .iter()
        .map(|&k| {
            let id = ids.get(k).map_or("?", String::as_str);
            format!("{id} {} ops", all[k].ops)
        })
        .collect();
    format!("; slowest: {}", named.join(", "))
}

/// A latency in the unit that reads best.
fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_states_are_counted_in_order() {
        let t = |state| Totals {
            state,
            ..Default::default()
        };
        let all = [
            t(AgentState::Lost),
            t(AgentState::Running),
            t(AgentState::Running),
        ];
        assert_eq!(states(&all), "2 running, 1 lost");
        assert_eq!(micros(1500.0), "1.50 ms");
    }

    #[test]
    fn the_slowest_running_agents_are_named_when_there_are_many() {
        let t = |ops, state| Totals {
            ops,
            state,
            ..Default::default()
        };
        let ids: Vec<String> = (0..1000).map(|k| format!("a{k}")).collect();
        // Agent k has done 1000 - k ops; the last three are the slowest,
        // but a999 (1 op) is done and a0 lost, so neither is named.
        let mut all: Vec<Totals> = (0..1000)
            .map(|k| t(1000 - k as u64, AgentState::Running))
            .collect();
        all[999].state = AgentState::Done;
        all[0] = t(0, AgentState::Lost);
        let line = slowest(&all, &ids, 3);
        assert_eq!(line, "; slowest: a998 2 ops, a997 3 ops, a996 4 ops");
        // A few agents are all on the line already by their states.
        assert_eq!(slowest(&all[..3], &ids, 3), "");
        let done = vec![t(5, AgentState::Done); 10];
        assert_eq!(slowest(&done, &ids, 3), "");
    }
}
