//! Client health: what each agent's own host did while it ran a stage, and
//! the verdict whether that client, not the storage, was the limit.
//!
//! An agent samples its host once per progress report ([`HostSample`]: CPU
//! busy of the CPUs it may run on, split as `mpstat` splits it, its own
//! process's CPU, run queue, memory, network, open-loop schedule lag). The
//! controller writes every sample to `series.csv` and folds an agent's
//! samples of a stage into a [`ClientTrack`], which ends as the
//! [`ClientHealth`] object of `run.json` with its [`ClientHealth::bottleneck`]
//! reasons. `controller analyze` rebuilds the same track from `series.csv`
//! for runs whose `run.json` lacks it, so both say the same thing.
//!
//! The rules (see [`verdict`]; thresholds are the constants below):
//! - **CPU**: in at least [`SATURATED_SHARE`] of the stage's sampled
//!   seconds the agent's CPUs were at least [`BUSY_PCT`] busy while the
//!   agent wanted them: its threads were runnable (running, or waiting for
//!   a CPU) at least [`DEMAND_PCT`] of their time (without a wait figure:
//!   its process used at least [`OWN_SHARE_PCT`] of them).
//! - **Steal**: the hypervisor took at least [`STEAL_PCT`] of the agent's
//!   CPUs on average.
//! - **Lag** (open loop): the worst schedule lag per second averaged over
//!   the stage's last third is at least [`LAG_MIN_MS`] and at least
//!   [`LAG_GROWTH`] times that of its first third (the agent fell further
//!   and further behind its schedule) while its CPUs were at least
//!   [`LAG_CPU_PCT`] busy on average. Growing lag with idle CPUs means
//!   every worker was waiting on the store: the store (or too small a
//!   `concurrency`) held the agent back, not its host. That is said too,
//!   as [`ClientHealth::behind_schedule`], but not as a bottleneck.
//!
//! Memory is bounded whatever the stage's length: sums and maxima, plus at
//! most [`LAG_BUCKETS`] buckets of lag (adjacent ones merged when full).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A second counts as CPU-saturated from this mean busy percentage of the
/// agent's CPUs: above it the scheduler has no slack left to run a worker
/// the moment its I/O completes, so the client's own queueing enters the
/// latencies (the level at which fio and elbencho users call a client's CPU
/// suspect).
pub const BUSY_PCT: f64 = 90.0;

/// ... and the agent wanted that CPU: the time its threads ran plus the
/// time they waited for a CPU (`schedstat` run delay) is at least this
/// share of those CPUs' time. An agent starved by busy neighbours gets
/// little CPU but waits for it; one saturating its CPUs alone runs most
/// of the time; an agent that needs little (a few hundred ops/s) wakes
/// now and then and, even on a host full of other work, waits only a
/// fraction of that: measured on a 2-core host loaded 4× over, such an
/// agent's run plus wait stayed around 20–40% and a starved one's above
/// 100%. A host kept busy by other work while the agent idled is shown in
/// the figures but not blamed on the agent.
pub const DEMAND_PCT: f64 = 50.0;

/// Without a wait figure (a kernel without `schedstat`), the agent's own
/// share of its CPUs must be at least this: an agent that needed CPU
/// takes at least a fair share of a busy core (half against one
/// busy-looping neighbour).
pub const OWN_SHARE_PCT: f64 = 20.0;

/// The CPU rule needs saturated seconds in at least this fraction of the
/// stage's sampled seconds ("most of the stage"), so a burst at the start
/// (store open, connection set-up) does not count.
pub const SATURATED_SHARE: f64 = 0.5;

/// Mean steal at or above this: a tenth of the client's CPU time went to
/// other guests, too much for its figures to be the storage's alone.
pub const STEAL_PCT: f64 = 10.0;

/// Open-loop lag below this is not worth a warning however it grows: a
/// tenth of a second behind is what a few slow ops cause.
pub const LAG_MIN_MS: f64 = 100.0;

/// "Growing": the last third's lag is at least this multiple of the first
/// third's.
pub const LAG_GROWTH: f64 = 2.0;

/// Growing lag is the client's when its CPUs were at least this busy on
/// average: short of saturation, but busy enough that workers wait for a
/// CPU. Below it they were waiting on the store.
pub const LAG_CPU_PCT: f64 = 75.0;

/// No verdict from fewer sampled seconds: one or two reports are mostly
/// start-up and the final partial interval.
pub const MIN_SECONDS: u64 = 3;

/// Lag buckets kept per agent and stage (see the module docs).
pub const LAG_BUCKETS: usize = 240;

/// The columns [`HostSample::csv_fields`] fills, appended to `series.csv`.
pub const CSV_COLUMNS: [&str; 15] = [
    "cpu_busy_pct",
    "cpu_max_core_pct",
    "cpu_user_pct",
    "cpu_system_pct",
    "cpu_iowait_pct",
    "cpu_steal_pct",
    "proc_cpu_pct",
    "proc_cpu_wait_pct",
    "run_queue",
    "mem_used_pct",
    "net_rx_mib_s",
    "net_tx_mib_s",
    "sched_lag_ms",
    "sched_lag_mean_ms",
    "cpus",
];

/// One agent's host over one progress interval. `None` is unknown (not
/// Linux, a file unreadable, closed loop for the lag, the first interval).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    /// CPUs the agent may run on (its pools' CPUs); 0 when unknown.
    pub cpus: u32,
    /// Busy (all but idle and iowait) of those CPUs, mean over them, %.
    pub cpu_busy_pct: Option<f64>,
    /// The busiest of those CPUs, %.
    pub cpu_max_core_pct: Option<f64>,
    /// `mpstat`'s split over those CPUs: user (with nice), system (with
    /// irq and softirq), iowait, steal; % of their time.
    pub cpu_user_pct: Option<f64>,
    pub cpu_system_pct: Option<f64>,
    pub cpu_iowait_pct: Option<f64>,
    pub cpu_steal_pct: Option<f64>,
    /// The agent process's CPU (user + system) in % of one core, as `top`
    /// shows it: 250 is two and a half cores.
    pub proc_cpu_pct: Option<f64>,
    /// Time the agent's threads were runnable but waiting for a CPU
    /// (their `schedstat` run delay), in % of one core's time: 150 is one
    /// and a half threads waiting all along. What an agent that wants CPU
    /// and cannot get it shows, however little it gets.
    pub proc_cpu_wait_pct: Option<f64>,
    /// Runnable tasks on the whole host (`procs_running`).
    pub run_queue: Option<f64>,
    /// Host memory in use: 100 − MemAvailable / MemTotal, %.
    pub mem_used_pct: Option<f64>,
    /// Host network, all interfaces but loopback, MiB/s.
    pub net_rx_mib_s: Option<f64>,
    pub net_tx_mib_s: Option<f64>,
    /// Open loop: the worst and the mean lag behind the schedule of the
    /// ops issued in the interval, ms.
    pub sched_lag_ms: Option<f64>,
    pub sched_lag_mean_ms: Option<f64>,
}

impl HostSample {
    /// The process's CPU as a share of the CPUs it may use, %.
    pub fn own_share_pct(&self) -> Option<f64> {
        (self.cpus > 0)
            .then_some(())
            .and(self.proc_cpu_pct)
            .map(|p| p / self.cpus as f64)
    }

    /// The agent's threads' wait for a CPU per CPU it may use, %.
    pub fn wait_share_pct(&self) -> Option<f64> {
        (self.cpus > 0)
            .then_some(())
            .and(self.proc_cpu_wait_pct)
            .map(|p| p / self.cpus as f64)
    }

    /// True when nothing is known (an agent that does not sample).
    pub fn is_empty(&self) -> bool {
        *self == HostSample::default()
    }

    fn values(&self) -> [Option<f64>; 14] {
        [
            self.cpu_busy_pct,
            self.cpu_max_core_pct,
            self.cpu_user_pct,
            self.cpu_system_pct,
            self.cpu_iowait_pct,
            self.cpu_steal_pct,
            self.proc_cpu_pct,
            self.proc_cpu_wait_pct,
            self.run_queue,
            self.mem_used_pct,
            self.net_rx_mib_s,
            self.net_tx_mib_s,
            self.sched_lag_ms,
            self.sched_lag_mean_ms,
        ]
    }

    /// The [`CSV_COLUMNS`] values, comma-separated, without a leading
    /// comma; unknown values are empty.
    pub fn csv_fields(&self) -> String {
        let mut out = String::with_capacity(96);
        for (i, v) in self.values().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if let Some(v) = v.filter(|v| v.is_finite()) {
                let _ = write!(out, "{v:.1}");
            }
        }
        out.push(',');
        if self.cpus > 0 {
            let _ = write!(out, "{}", self.cpus);
        }
        out
    }

    /// The inverse of [`HostSample::csv_fields`]: one value per
    /// [`CSV_COLUMNS`] entry, in order; an empty or unreadable field is
    /// unknown.
    pub fn from_csv_fields(fields: &[&str]) -> HostSample {
        let f = |i: usize| -> Option<f64> {
            fields
                .get(i)
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
        };
        HostSample {
            cpu_busy_pct: f(0),
            cpu_max_core_pct: f(1),
            cpu_user_pct: f(2),
            cpu_system_pct: f(3),
            cpu_iowait_pct: f(4),
            cpu_steal_pct: f(5),
            proc_cpu_pct: f(6),
            proc_cpu_wait_pct: f(7),
            run_queue: f(8),
            mem_used_pct: f(9),
            net_rx_mib_s: f(10),
            net_tx_mib_s: f(11),
            sched_lag_ms: f(12),
            sched_lag_mean_ms: f(13),
            cpus: fields
                .get(14)
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
        }
    }
}

/// Mean and maximum of one figure over a stage's samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanMax {
    pub mean: f64,
    pub max: f64,
}

/// `run.json`'s `client` object of one agent in one stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientHealth {
    /// Host samples received (about one a second).
    #[serde(default)]
    pub seconds: u64,
    /// CPUs the agent may run on.
    #[serde(default)]
    pub cpus: u32,
    /// Each figure of [`HostSample`] over the samples that knew it; absent
    /// when none did.
    #[serde(default)]
    pub cpu_busy_pct: Option<MeanMax>,
    #[serde(default)]
    pub cpu_max_core_pct: Option<MeanMax>,
    #[serde(default)]
    pub cpu_user_pct: Option<MeanMax>,
    #[serde(default)]
    pub cpu_system_pct: Option<MeanMax>,
    #[serde(default)]
    pub cpu_iowait_pct: Option<MeanMax>,
    #[serde(default)]
    pub cpu_steal_pct: Option<MeanMax>,
    #[serde(default)]
    pub proc_cpu_pct: Option<MeanMax>,
    /// The process's CPU as a share of the CPUs it may use, %.
    #[serde(default)]
    pub proc_cpu_share_pct: Option<MeanMax>,
    #[serde(default)]
    pub proc_cpu_wait_pct: Option<MeanMax>,
    #[serde(default)]
    pub run_queue: Option<MeanMax>,
    #[serde(default)]
    pub mem_used_pct: Option<MeanMax>,
    #[serde(default)]
    pub net_rx_mib_s: Option<MeanMax>,
    #[serde(default)]
    pub net_tx_mib_s: Option<MeanMax>,
    /// Of the per-second worst lag.
    #[serde(default)]
    pub sched_lag_ms: Option<MeanMax>,
    /// Seconds that met the CPU rule (busy and the agent's own share).
    #[serde(default)]
    pub cpu_saturated_seconds: u64,
    /// Mean per-second worst lag of the stage's first and last thirds.
    #[serde(default)]
    pub lag_first_third_ms: Option<f64>,
    #[serde(default)]
    pub lag_last_third_ms: Option<f64>,
    /// Why this client was the limit, one phrase per rule met; `None`
    /// when it was not (or too few seconds were sampled to say).
    #[serde(default)]
    pub bottleneck: Option<Vec<String>>,
    /// Open loop: the lag grew (the lag rule) but its CPUs were not busy,
    /// so the store or too few workers held it back: why, in words.
    #[serde(default)]
    pub behind_schedule: Option<String>,
}

impl ClientHealth {
    /// This client was the limit (a bottleneck rule met).
    pub fn is_client_bound(&self) -> bool {
        self.bottleneck.as_ref().is_some_and(|r| !r.is_empty())
    }

    /// The summary's warnings (without `warning: `): that this client was
    /// the limit, and that it fell behind its schedule for another reason.
    pub fn warnings(&self, agent: &str, stage: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(reasons) = self.bottleneck.as_ref().filter(|r| !r.is_empty()) {
            out.push(format!(
                "agent {agent} was client-bound in stage `{stage}`: {}",
                reasons.join(", ")
            ));
        }
        if let Some(why) = &self.behind_schedule {
            out.push(format!(
                "agent {agent} fell behind its schedule in stage `{stage}`: {why}"
            ));
        }
        out
    }
}

/// Sum, count and maximum of one figure.
#[derive(Clone, Copy, Debug, Default)]
struct Stat {
    n: u64,
    sum: f64,
    max: f64,
}

impl Stat {
    fn add(&mut self, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.max = if self.n == 0 { v } else { self.max.max(v) };
            self.n += 1;
            self.sum += v;
        }
    }

    fn mean_max(&self) -> Option<MeanMax> {
        (self.n > 0).then(|| MeanMax {
            mean: self.sum / self.n as f64,
            max: self.max,
        })
    }
}

/// One agent's samples of one stage, folded as they come (bounded).
#[derive(Clone, Debug, Default)]
pub struct ClientTrack {
    seconds: u64,
    cpus: u32,
    stats: [Stat; 14],
    own_share: Stat,
    saturated: u64,
    /// Seconds whose CPU busy was known (the CPU rule's denominator).
    cpu_known: u64,
    /// (sum, count) of per-second worst lag, each bucket `lag_width`
    /// samples wide but the last.
    lag: Vec<(f64, u64)>,
    lag_width: u64,
}

impl ClientTrack {
    pub fn add(&mut self, s: &HostSample) {
        self.seconds += 1;
        if s.cpus > 0 {
            self.cpus = s.cpus;
        }
        for (stat, v) in self.stats.iter_mut().zip(s.values()) {
            stat.add(v);
        }
        self.own_share.add(s.own_share_pct());
        if let Some(busy) = s.cpu_busy_pct {
            self.cpu_known += 1;
            let wants = match (s.own_share_pct(), s.wait_share_pct()) {
                (Some(own), Some(wait)) => own + wait >= DEMAND_PCT,
                (Some(own), None) => own >= OWN_SHARE_PCT,
                _ => false,
            };
            if busy >= BUSY_PCT && wants {
                self.saturated += 1;
            }
        }
        if let Some(lag) = s.sched_lag_ms.filter(|v| v.is_finite()) {
            self.add_lag(lag);
        }
    }

    fn add_lag(&mut self, lag: f64) {
        self.lag_width = self.lag_width.max(1);
        match self.lag.last_mut() {
            Some(b) if b.1 < self.lag_width => {
                b.0 += lag;
                b.1 += 1;
                return;
            }
            _ => {}
        }
        if self.lag.len() == LAG_BUCKETS {
            // Full: halve the resolution, keeping every sample's weight.
            let merged: Vec<(f64, u64)> = self
                .lag
                .chunks(2)
                .map(|c| c.iter().fold((0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1)))
                .collect();
            self.lag = merged;
            self.lag_width *= 2;
            return self.add_lag(lag);
        }
        self.lag.push((lag, 1));
    }

    /// Mean lag of the first and last thirds of the lag samples (by
    /// sample count, at bucket resolution).
    fn lag_thirds(&self) -> Option<(f64, f64)> {
        let total: u64 = self.lag.iter().map(|b| b.1).sum();
        if total < MIN_SECONDS {
            return None;
        }
        let third = (total / 3).max(1);
        let mean_of = |buckets: &mut dyn Iterator<Item = &(f64, u64)>| {
            let (mut sum, mut n) = (0.0, 0u64);
            for b in buckets {
                if n >= third {
                    break;
                }
                sum += b.0;
                n += b.1;
            }
            sum / n.max(1) as f64
        };
        Some((
            mean_of(&mut self.lag.iter()),
            mean_of(&mut self.lag.iter().rev()),
        ))
    }

    /// The stage's figures and verdict.
    pub fn finish(&self) -> ClientHealth {
        let st = |i: usize| self.stats[i].mean_max();
        let thirds = self.lag_thirds();
        let mut h = ClientHealth {
            seconds: self.seconds,
            cpus: self.cpus,
            cpu_busy_pct: st(0),
            cpu_max_core_pct: st(1),
            cpu_user_pct: st(2),
            cpu_system_pct: st(3),
            cpu_iowait_pct: st(4),
            cpu_steal_pct: st(5),
            proc_cpu_pct: st(6),
            proc_cpu_share_pct: self.own_share.mean_max(),
            proc_cpu_wait_pct: st(7),
            run_queue: st(8),
            mem_used_pct: st(9),
            net_rx_mib_s: st(10),
            net_tx_mib_s: st(11),
            sched_lag_ms: st(12),
            cpu_saturated_seconds: self.saturated,
            lag_first_third_ms: thirds.map(|t| t.0),
            lag_last_third_ms: thirds.map(|t| t.1),
            bottleneck: None,
            behind_schedule: None,
        };
        h.bottleneck = verdict(&h, self.cpu_known);
        h.behind_schedule = behind_schedule(&h);
        h
    }
}

/// The reasons this client was the limit (see the module docs), or `None`.
/// `cpu_known` is how many of its seconds knew their CPU busy.
pub fn verdict(h: &ClientHealth, cpu_known: u64) -> Option<Vec<String>> {
    if h.seconds < MIN_SECONDS {
        return None;
    }
    let mut reasons = Vec::new();
    let steal = h.cpu_steal_pct.map(|s| s.mean);
    if cpu_known >= MIN_SECONDS
        && h.cpu_saturated_seconds as f64 >= SATURATED_SHARE * cpu_known as f64
        && let Some(busy) = h.cpu_busy_pct
    {
        let own = h.proc_cpu_share_pct.map(|p| p.mean);
        let wait = h
            .proc_cpu_wait_pct
            .filter(|_| h.cpus > 0)
            .map(|w| w.mean / h.cpus as f64);
        let mut r = format!(
            "CPU {:.0}% busy on its {} core{} (at least {BUSY_PCT:.0}% in {} of {cpu_known} s",
            busy.mean,
            h.cpus,
            if h.cpus == 1 { "" } else { "s" },
            h.cpu_saturated_seconds
        );
        if let Some(own) = own {
            let _ = write!(r, "; agent process {own:.0}% of them");
        }
        if let Some(wait) = wait {
            let _ = write!(r, ", waiting for them {wait:.0}%");
        }
        let _ = write!(r, "; steal {:.0}%)", steal.unwrap_or(0.0));
        reasons.push(r);
    }
    if let Some(s) = steal.filter(|s| *s >= STEAL_PCT) {
        reasons.push(format!("steal {s:.0}% of its CPU time"));
    }
    if let Some(lag) = lag_grew(h)
        && lag_cpu_busy(h).is_some_and(|b| b >= LAG_CPU_PCT)
    {
        reasons.push(lag);
    }
    (!reasons.is_empty()).then_some(reasons)
}

/// The lag rule's phrase when the lag grew, whatever the CPU.
fn lag_grew(h: &ClientHealth) -> Option<String> {
    let (first, last) = (h.lag_first_third_ms?, h.lag_last_third_ms?);
    if h.seconds < MIN_SECONDS || last < LAG_MIN_MS || last < LAG_GROWTH * first {
        return None;
    }
    let worst = h.sched_lag_ms.map_or(last, |l| l.max);
    Some(format!(
        "schedule lag grew to {worst:.0} ms (first third {first:.0} ms, last third {last:.0} ms)"
    ))
}

fn lag_cpu_busy(h: &ClientHealth) -> Option<f64> {
    h.cpu_busy_pct.map(|b| b.mean)
}

/// When the lag grew but not for want of CPU (or the CPU is unknown): why
/// the agent fell behind, in words; `None` otherwise.
pub fn behind_schedule(h: &ClientHealth) -> Option<String> {
    let lag = lag_grew(h)?;
    match lag_cpu_busy(h) {
        Some(b) if b >= LAG_CPU_PCT => None,
        Some(b) => Some(format!(
            "{lag} with its CPUs {b:.0}% busy: the store, or too few workers \
             (`concurrency`) for its latency, held it back, not its host"
        )),
        None => Some(format!("{lag}; its CPU use is unknown")),
    }
}

/// How many of `h`'s seconds knew their CPU busy, for [`verdict`] on a
/// `ClientHealth` read back: all of them when CPU was known at all (an
/// agent samples every second or never).
pub fn cpu_known_seconds(h: &ClientHealth) -> u64 {
    if h.cpu_busy_pct.is_some() {
        h.seconds
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(busy: f64, proc_pct: f64, cpus: u32) -> HostSample {
        HostSample {
            cpus,
            cpu_busy_pct: Some(busy),
            cpu_max_core_pct: Some(busy),
            cpu_steal_pct: Some(0.0),
            proc_cpu_pct: Some(proc_pct),
            ..Default::default()
        }
    }

    fn track(samples: &[HostSample]) -> ClientHealth {
        let mut t = ClientTrack::default();
        for s in samples {
            t.add(s);
        }
        t.finish()
    }

    #[test]
    fn a_saturated_cpu_used_by_the_agent_is_the_limit() {
        let h = track(&[cpu(99.0, 55.0, 1); 8]);
        let why = h.bottleneck.clone().expect("client-bound");
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].starts_with("CPU 99% busy on its 1 core"), "{why:?}");
        assert!(why[0].contains("8 of 8 s"), "{why:?}");
        let w = h.warnings("a1", "w");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("agent a1 was client-bound in stage `w`: CPU 99%"),
            "{w:?}"
        );
    }

    #[test]
    fn idle_busy_elsewhere_or_brief_saturation_is_not() {
        assert_eq!(track(&[cpu(20.0, 15.0, 1); 8]).bottleneck, None);
        // Busy, but with other processes' work: the agent used 2% and
        // hardly waited.
        let idle = HostSample {
            proc_cpu_wait_pct: Some(3.0),
            ..cpu(100.0, 2.0, 1)
        };
        assert_eq!(track(&[idle; 8]).bottleneck, None);
        // Starved: it got 8% but its threads waited 140% of the core.
        let starved = HostSample {
            proc_cpu_wait_pct: Some(140.0),
            ..cpu(100.0, 8.0, 1)
        };
        let why = track(&[starved; 8]).bottleneck.unwrap();
        assert!(why[0].contains("waiting for them 140%"), "{why:?}");
        // A light agent on a host loaded by others, as measured: 3% run,
        // 35% waiting for its turn now and then.
        let light = HostSample {
            proc_cpu_wait_pct: Some(35.0),
            ..cpu(100.0, 3.0, 1)
        };
        assert_eq!(track(&[light; 8]).bottleneck, None);
        // Without a wait figure, 15% of its CPUs is not enough.
        assert_eq!(track(&[cpu(100.0, 15.0, 1); 8]).bottleneck, None);
        // Saturated 3 of 8 seconds: not most of the stage.
        let mut s = vec![cpu(99.0, 90.0, 2); 3];
        s.extend(vec![cpu(40.0, 60.0, 2); 5]);
        assert_eq!(track(&s).bottleneck, None);
        // Two seconds say nothing.
        assert_eq!(track(&[cpu(99.0, 90.0, 1); 2]).bottleneck, None);
        // Nothing known (not Linux): no verdict, no panic.
        assert_eq!(track(&[HostSample::default(); 10]).bottleneck, None);
    }

    #[test]
    fn high_steal_is_named() {
        let s = HostSample {
            cpu_steal_pct: Some(25.0),
            ..cpu(50.0, 30.0, 4)
        };
        let why = track(&[s; 5]).bottleneck.unwrap();
        assert_eq!(why, ["steal 25% of its CPU time"]);
    }

    fn lagging(lags: &[f64], busy: f64) -> ClientHealth {
        let samples: Vec<HostSample> = lags
            .iter()
            .map(|l| HostSample {
                sched_lag_ms: Some(*l),
                ..cpu(busy, 20.0, 2)
            })
            .collect();
        track(&samples)
    }

    #[test]
    fn growing_lag_on_busy_cpus_is_named_steady_or_small_lag_is_not() {
        let grows = [1.0, 2.0, 5.0, 50.0, 150.0, 340.0];
        let h = lagging(&grows, 80.0);
        let why = h.bottleneck.unwrap();
        assert_eq!(why.len(), 1);
        assert!(why[0].starts_with("schedule lag grew to 340 ms"), "{why:?}");
        assert_eq!(h.behind_schedule, None);
        // Large but not growing (a constant backlog): not this rule.
        let h = lagging(&[500.0; 9], 80.0);
        assert_eq!((h.bottleneck, h.behind_schedule), (None, None));
        // Growing but small.
        let h = lagging(&[0.1, 0.2, 1.0, 5.0, 20.0, 60.0], 80.0);
        assert_eq!((h.bottleneck, h.behind_schedule), (None, None));
    }

    #[test]
    fn growing_lag_on_idle_cpus_is_the_stores_not_the_clients() {
        let h = lagging(&[1.0, 2.0, 5.0, 50.0, 150.0, 340.0], 30.0);
        assert_eq!(h.bottleneck, None);
        let w = h.warnings("a1", "w");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("agent a1 fell behind its schedule in stage `w`: schedule lag grew"),
            "{w:?}"
        );
        assert!(w[0].contains("CPUs 30% busy"), "{w:?}");
        // CPU unknown (not Linux): said as unknown.
        let samples: Vec<HostSample> = [1.0, 5.0, 50.0, 150.0, 340.0, 400.0]
            .iter()
            .map(|l| HostSample {
                sched_lag_ms: Some(*l),
                ..Default::default()
            })
            .collect();
        let h = track(&samples);
        assert_eq!(h.bottleneck, None);
        assert!(h.behind_schedule.unwrap().contains("unknown"));
    }

    #[test]
    fn lag_memory_is_bounded_and_thirds_survive_merging() {
        let mut t = ClientTrack::default();
        let n = 10_000;
        for i in 0..n {
            // First third at 10 ms, the rest at 1000 ms.
            let lag = if i < n / 3 { 10.0 } else { 1000.0 };
            t.add(&HostSample {
                sched_lag_ms: Some(lag),
                ..Default::default()
            });
        }
        assert!(t.lag.len() <= LAG_BUCKETS);
        let h = t.finish();
        let first = h.lag_first_third_ms.unwrap();
        assert!(first < 100.0, "{first}");
        assert_eq!(h.lag_last_third_ms, Some(1000.0));
        assert!(h.behind_schedule.is_some());
    }

    #[test]
    fn csv_fields_round_trip_with_unknowns_empty() {
        let s = HostSample {
            cpu_iowait_pct: None,
            sched_lag_ms: Some(12.5),
            net_rx_mib_s: Some(f64::NAN),
            ..cpu(97.25, 55.0, 1)
        };
        let text = s.csv_fields();
        let fields: Vec<&str> = text.split(',').collect();
        assert_eq!(fields.len(), CSV_COLUMNS.len(), "{text}");
        assert_eq!(fields[0], "97.2");
        assert_eq!(fields[4], "", "unknown is empty: {text}");
        assert_eq!(fields[10], "", "NaN is unknown: {text}");
        assert_eq!(fields[14], "1");
        let back = HostSample::from_csv_fields(&fields);
        assert_eq!(back.cpu_busy_pct, Some(97.2));
        assert_eq!(back.cpu_iowait_pct, None);
        assert_eq!(back.sched_lag_ms, Some(12.5));
        assert_eq!(back.cpus, 1);
        assert!(HostSample::from_csv_fields(&["x", "", "1e999"]).is_empty());
        assert_eq!(HostSample::default().csv_fields(), ",".repeat(14));
    }

    #[test]
    fn health_round_trips_through_json() {
        let h = track(&[cpu(99.0, 55.0, 1); 4]);
        let json = serde_json::to_string(&h).unwrap();
        let back: ClientHealth = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert_eq!(verdict(&back, cpu_known_seconds(&back)), h.bottleneck);
        let minimal: ClientHealth = serde_json::from_str(r#"{"seconds": 2}"#).unwrap();
        assert_eq!(minimal.bottleneck, None);
    }
}
