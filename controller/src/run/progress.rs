//! The live view: one line per stage with cluster ops/s, MiB/s and errors,
//! redrawn a few times a second from the agents' progress reports.

use std::sync::Arc;
use std::time::Duration;

use chorus_common::clock::now_ns;
use chorus_common::plan::{Stage, StageKind};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// How often the view is redrawn.
const REDRAW: Duration = Duration::from_millis(250);

/// One agent's running totals for the current stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
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
        agents: usize,
        start_at_ns: i64,
        totals: Arc<Mutex<Vec<Totals>>>,
    ) {
        if self.quiet {
            return;
        }
        let by_time = stage.stop.duration;
        let ops_goal = match stage.kind {
            StageKind::Workload => stage.stop.ops,
            _ => Some(
                stage
                    .stop
                    .ops
                    .map_or(stage.objects.count, |o| o.min(stage.objects.count)),
            ),
        };
        let (len, template) = match (by_time, ops_goal) {
            (_, Some(ops)) => (ops, "{prefix:>12} [{bar:30}] {pos}/{len} ops {msg}"),
            (Some(d), None) => (
                d.as_millis() as u64,
                "{prefix:>12} [{bar:30}] {elapsed} {msg}",
            ),
            (None, None) => (0, "{prefix:>12} {spinner} {msg}"),
        };
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
            let mut last = (now_ns(), 0u64, 0u64);
            let mut tick = tokio::time::interval(REDRAW);
            loop {
                tick.tick().await;
                let sum = totals
                    .lock()
                    .await
                    .iter()
                    .fold(Totals::default(), |a, t| Totals {
                        ops: a.ops + t.ops,
                        bytes: a.bytes + t.bytes,
                        errors: a.errors + t.errors,
                    });
                let now = now_ns();
                let dt = (now - last.0).max(1) as f64 / 1e9;
                // Rates over the last ~second, since agents report once a second.
                if dt >= 1.0 {
                    let ops_s = (sum.ops - last.1.min(sum.ops)) as f64 / dt;
                    let mib_s = (sum.bytes - last.2.min(sum.bytes)) as f64 / dt / 1048576.0;
                    b.set_message(format!(
                        "{ops_s:.0} ops/s {mib_s:.1} MiB/s, {} errors, {agents} agents",
                        sum.errors
                    ));
                    last = (now, sum.ops, sum.bytes);
                }
                if by_ops {
                    b.set_position(sum.ops);
                } else {
                    b.set_position(((now - start_at_ns).max(0) / 1_000_000) as u64);
                }
            }
        });
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((bar, updater));
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
