//! Live progress while a stage's workers run: a report each second from
//! the live counters and the host sampler (`crate::sampler`), also fed to
//! the agent's own `/metrics` when it serves one, and the stop signals the
//! running stage obeys.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chorus_common::clock::Anchor;
use chorus_common::metrics::client::HostSample;
use chorus_common::metrics::histogram_to_bytes;
use chorus_common::metrics::prometheus::{Metrics, Progress};
use chorus_common::workload::{LagTaken, LiveCounters, StageOutcome, live_histogram};
use chorus_proto::pb::{self, stage_event::Event};
use chorus_proto::{encode_host, encode_op_totals};
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use tokio::sync::watch;

use super::Events;
use crate::sampler::{Reading, Sampler};
use crate::shutdown::{self, Phase};

/// How often live progress is sent.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// What the stage's run gave, and whether the agent's own stop ended it.
pub struct Watched {
    pub result: Result<anyhow::Result<StageOutcome>, tokio::task::JoinError>,
    /// Set when the agent began to stop (e.g. `SIGTERM`) while the stage
    /// ran: the reason, sent as `StageDone.stopped_by`.
    pub stopped_by: Option<String>,
}

/// What a report holds that is not yet delivered: the interval's
/// latencies and lag (taken from the live counters, so kept here until a
/// report carries them), and the host's reading it was measured to.
struct Pending {
    latency: Histogram<u64>,
    lag: LagTaken,
    sampler: Sampler,
}

impl Pending {
    /// Adds what the live counters hold now.
    fn take(&mut self, live: &LiveCounters) {
        // Same bounds on both sides: add cannot fail.
        let _ = self.latency.add(live.take_interval());
        let lag = live.take_lag();
        self.lag.max = self.lag.max.max(lag.max);
        self.lag.sum = self.lag.sum.saturating_add(lag.sum);
        self.lag.ops += lag.ops;
    }

    /// The host sample of the undelivered interval, and the reading to
    /// commit once it is delivered.
    fn host(&self) -> (HostSample, Reading) {
        let (mut s, reading) = self.sampler.measure();
        if self.lag.ops > 0 {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            s.sched_lag_ms = Some(ms(self.lag.max));
            s.sched_lag_mean_ms = Some(ms(self.lag.sum) / self.lag.ops as f64);
        }
        (s, reading)
    }

    /// Delivered: start the next interval from `reading`.
    fn delivered(&mut self, reading: Reading) {
        self.latency.reset();
        self.lag = LagTaken::default();
        self.sampler.commit(reading);
    }
}

/// The agent's `/metrics` registry and the names its figures go under.
pub struct Feed<'a> {
    pub metrics: &'a Metrics,
    pub stage: &'a str,
    pub agent: &'a str,
}

impl Feed<'_> {
    /// A delivered report (only those: an undelivered one's latencies stay
    /// pending and come with the next, so none is counted twice).
    fn add(&self, p: &pb::Progress, live: &LiveCounters, pending: &Pending, host: &HostSample) {
        self.metrics.progress(
            self.stage,
            self.agent,
            Progress {
                by_op: &live.by_op(),
                active_workers: p.active_workers,
                latency: (!pending.latency.is_empty()).then_some(&pending.latency),
                host,
            },
        );
    }
}

/// What a running stage is watched with.
pub struct Watch<'a> {
    pub live: &'a LiveCounters,
    pub stop: &'a AtomicBool,
    pub clock: &'a Anchor,
    pub tx: &'a Events,
    /// The agent's own `/metrics`, when served.
    pub feed: Option<Feed<'a>>,
}

/// Runs `stage` on its own task and reports progress until it ends; a stop
/// of the agent sets the stage's `stop` flag. The last interval is sent
/// too, so the per-second series adds up to the stage's totals. `cpus` are
/// the CPUs the stage's workers may run on (empty: all), the ones whose
/// busy time the host samples report.
pub async fn watch(
    stage: BoxFuture<'static, anyhow::Result<StageOutcome>>,
    w: Watch<'_>,
    phase: &mut watch::Receiver<Phase>,
    cpus: Vec<usize>,
) -> Watched {
    let Watch {
        live,
        stop,
        clock,
        tx,
        feed,
    } = w;
    let mut pending = Pending {
        latency: live_histogram(),
        lag: LagTaken::default(),
        sampler: Sampler::new(cpus),
    };
    let mut stage = tokio::spawn(stage);
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    ticker.tick().await;
    let mut last = pb::Progress {
        at_ns: clock.now_ns(),
        ..Default::default()
    };
    let mut stopped_by = None;
    let result = loop {
        tokio::select! {
            r = &mut stage => break r,
            reason = shutdown::stopped(phase), if stopped_by.is_none() => {
                tracing::info!("stopping the running stage ({reason})");
                stop.store(true, Ordering::Relaxed);
                stopped_by = Some(reason);
            }
            _ = ticker.tick() => {
                let (p, reading) = progress(live, &last, &mut pending, clock);
                let host = p.host.as_ref().map(chorus_proto::decode_host).unwrap_or_default();
                let event = pb::StageEvent { event: Some(Event::Progress(p.clone())) };
                // A slow controller must not stall this loop (it also
                // collects the stage's end): a report not taken within a
                // tick is folded into the next.
                match tokio::time::timeout(PROGRESS_INTERVAL, tx.send(Ok(event))).await {
                    Ok(Ok(())) => {
                        if let Some(f) = &feed {
                            f.add(&p, live, &pending, &host);
                        }
                        last = p;
                        pending.delivered(reading);
                    }
                    // A controller that stopped listening stops the load.
                    Ok(Err(_)) => stop.store(true, Ordering::Relaxed),
                    Err(_) => {}
                }
            }
        }
    };
    let (p, _) = progress(live, &last, &mut pending, clock);
    // The last figures, delivered or not: nothing comes after them.
    if let Some(f) = &feed {
        let host = p
            .host
            .as_ref()
            .map(chorus_proto::decode_host)
            .unwrap_or_default();
        f.add(&p, live, &pending, &host);
    }
    let event = pb::StageEvent {
        event: Some(Event::Progress(p)),
    };
    let _ = tokio::time::timeout(PROGRESS_INTERVAL, tx.send(Ok(event))).await;
    Watched { result, stopped_by }
}

/// The next progress report: totals now, and what changed since `last`
/// (the last report delivered); `pending` holds the latencies, lag and
/// host reading since then. Also the reading to commit on delivery.
fn progress(
    live: &LiveCounters,
    last: &pb::Progress,
    pending: &mut Pending,
    clock: &Anchor,
) -> (pb::Progress, Reading) {
    let (ops, bytes, errors) = (
        live.ops.load(Ordering::Relaxed),
        live.bytes.load(Ordering::Relaxed),
        live.errors.load(Ordering::Relaxed),
    );
    pending.take(live);
    let (host, reading) = pending.host();
    let p = pb::Progress {
        ops,
        bytes,
        errors,
        at_ns: clock.now_ns(),
        interval_start_ns: last.at_ns,
        interval_ops: ops.saturating_sub(last.ops),
        interval_bytes: bytes.saturating_sub(last.bytes),
        interval_errors: errors.saturating_sub(last.errors),
        interval_latency_hist: if pending.latency.is_empty() {
            Vec::new()
        } else {
            histogram_to_bytes(&pending.latency)
        },
        host: encode_host(&host),
        by_op: encode_op_totals(&live.by_op()),
        active_workers: live.active_workers(),
    };
    (p, reading)
}
