//! The per-second series of a run (`series.csv`): what each agent reported
//! for each second of each stage, and the cluster's second, with exact
//! percentiles from merged histograms.
//!
//! Agents report about once a second, each on its own tick, so a report is
//! filed under the second (from the stage's start, controller clock) in
//! which its interval ended. Agent rows are written as they arrive; a
//! cluster second is written once no report for it can still come (two
//! seconds after the newest report), so memory holds a few seconds'
//! histograms whatever the run length or agent count.
//!
//! Agent rows end with the agent's host sample of the interval (the
//! columns of `chorus_common::metrics::client::CSV_COLUMNS`, appended after
//! the first versions' columns so readers of those keep working); cluster
//! rows leave them empty, as does an agent that does not know a figure.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use chorus_common::metrics::client::HostSample;
use chorus_common::metrics::histogram_from_bytes;
use chorus_common::metrics::summary::LatencySummary;
use chorus_common::workload::live_histogram;
use hdrhistogram::Histogram;

/// The CSV header of `series.csv`: the traffic columns, then the host
/// columns (`client::CSV_COLUMNS`, checked by a test).
pub const HEADER: &str = "stage,second,agent,ops,bytes,errors,ops_per_s,mib_per_s,p50_us,p99_us,max_us,\
cpu_busy_pct,cpu_max_core_pct,cpu_user_pct,cpu_system_pct,cpu_iowait_pct,cpu_steal_pct,\
proc_cpu_pct,proc_cpu_wait_pct,run_queue,mem_used_pct,net_rx_mib_s,net_tx_mib_s,sched_lag_ms,sched_lag_mean_ms,cpus";

/// Columns before the host columns.
pub const TRAFFIC_COLUMNS: usize = 11;

/// The `agent` column of cluster rows.
pub const CLUSTER: &str = "*";

/// Seconds a cluster second stays open after it: reports are about a
/// second apart, so none for second `s` arrives once one for `s + 2` has.
const OPEN_SECONDS: i64 = 2;

/// Closed cluster seconds kept for a stage kind that looks at them less
/// often than they close.
const RECENT_SECONDS: usize = 16;

/// One interval report of one agent, already on the controller's clock.
pub struct Report<'a> {
    pub agent: &'a str,
    pub start_ns: i64,
    pub end_ns: i64,
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
    /// V2-serialized HDR histogram (ns) of the interval's successful ops.
    pub latency: &'a [u8],
    /// The agent's host over the interval (unknown: all empty).
    pub host: HostSample,
}

/// Numbers of one finished cluster second, for the live view and the
/// running stage kind's `watch`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Second {
    /// Seconds from the stage's (or step's) start, from 0.
    pub second: i64,
    pub errors: u64,
    pub ops_per_s: f64,
    pub mib_per_s: f64,
    /// The second's latency percentiles (all ops, merged over agents).
    pub latency_us: LatencySummary,
}

struct Open {
    ops: u64,
    bytes: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// The series being written.
pub struct Series {
    out: BufWriter<File>,
    stage: String,
    stage_start_ns: i64,
    open: BTreeMap<i64, Open>,
    newest: i64,
    last: Option<Second>,
    /// Cluster seconds closed in the current stage, and the newest of
    /// them (at most [`RECENT_SECONDS`]) for a stage kind to watch.
    closed: u64,
    recent: VecDeque<Second>,
    /// Reports whose histogram could not be read (counted, not dropped:
    /// their counts are still in the rows).
    pub bad_histograms: u64,
}

fn percentiles(h: &Histogram<u64>) -> (f64, f64, f64) {
    if h.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let us = |v: u64| v as f64 / 1e3;
    (
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.max()),
    )
}

impl Series {
    pub fn create(path: &Path) -> anyhow::Result<Series> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::new(file);
        writeln!(out, "{HEADER}")?;
        Ok(Series {
            out,
            stage: String::new(),
            stage_start_ns: 0,
            open: BTreeMap::new(),
            newest: 0,
            last: None,
            closed: 0,
            recent: VecDeque::with_capacity(RECENT_SECONDS),
            bad_histograms: 0,
        })
    }

    /// Starts filing reports under `stage`, seconds counted from `start_ns`.
    pub fn begin_stage(&mut self, stage: &str, start_ns: i64) -> anyhow::Result<()> {
        self.end_stage()?;
        self.stage = stage.to_string();
        self.stage_start_ns = start_ns;
        self.newest = 0;
        self.last = None;
        self.closed = 0;
        self.recent.clear();
        Ok(())
    }

    /// Files one agent's report: its row now, its share of the cluster's
    /// second until that second is complete.
    pub fn add(&mut self, r: &Report<'_>) -> anyhow::Result<()> {
        let second = ((r.end_ns - self.stage_start_ns).max(0) / 1_000_000_000).max(0);
        let mut latency = if r.latency.is_empty() {
            live_histogram()
        } else {
            match histogram_from_bytes(r.latency) {
                Ok(h) => h,
                Err(_) => {
                    self.bad_histograms += 1;
                    live_histogram()
                }
            }
        };
        let seconds = ((r.end_ns - r.start_ns).max(1) as f64 / 1e9).max(1e-3);
        let (p50, p99, max) = percentiles(&latency);
        writeln!(
            self.out,
            "{},{second},{},{},{},{},{:.2},{:.3},{p50:.1},{p99:.1},{max:.1},{}",
            csv_field(&self.stage),
            csv_field(r.agent),
            r.ops,
            r.bytes,
            r.errors,
            r.ops as f64 / seconds,
            r.bytes as f64 / seconds / 1048576.0,
            r.host.csv_fields(),
        )?;
        let open = self.open.entry(second).or_insert_with(|| Open {
            ops: 0,
            bytes: 0,
            errors: 0,
            latency: live_histogram(),
        });
        open.ops += r.ops;
        open.bytes += r.bytes;
        open.errors += r.errors;
        // Both histograms have the live bounds; a foreign one that does not
        // fit is clamped by recording its values saturating.
        if open.latency.add(&latency).is_err() {
            for v in latency.iter_recorded() {
                open.latency
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        latency.reset();
        self.newest = self.newest.max(second);
        self.flush_closed(self.newest - OPEN_SECONDS)
    }

    /// Writes the cluster rows of every second up to `through`.
    fn flush_closed(&mut self, through: i64) -> anyhow::Result<()> {
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() > through {
                break;
            }
            let (second, o) = entry.remove_entry();
            let latency_us = LatencySummary::from_histogram(&o.latency);
            let (p50, p99, max) = (latency_us.p50, latency_us.p99, latency_us.max);
            let s = Second {
                second,
                errors: o.errors,
                ops_per_s: o.ops as f64,
                mib_per_s: o.bytes as f64 / 1048576.0,
                latency_us,
            };
            writeln!(
                self.out,
                "{},{second},{CLUSTER},{},{},{},{:.2},{:.3},{p50:.1},{p99:.1},{max:.1},{}",
                csv_field(&self.stage),
                o.ops,
                o.bytes,
                o.errors,
                s.ops_per_s,
                s.mib_per_s,
                EMPTY_HOST,
            )?;
            self.last = Some(s);
            self.closed += 1;
            if self.recent.len() == RECENT_SECONDS {
                self.recent.pop_front();
            }
            self.recent.push_back(s);
            // Readable as the run goes (tools tail it), a second at a time.
            self.out.flush()?;
        }
        Ok(())
    }

    /// The newest complete cluster second of the current stage.
    pub fn last_second(&self) -> Option<Second> {
        self.last
    }

    /// The cluster seconds closed since `seen` of them were (oldest first,
    /// at most [`RECENT_SECONDS`]), and the new count to pass next time.
    pub fn seconds_since(&self, seen: u64) -> (Vec<Second>, u64) {
        let new = (self.closed.saturating_sub(seen) as usize).min(self.recent.len());
        let skip = self.recent.len() - new;
        (
            self.recent.iter().skip(skip).copied().collect(),
            self.closed,
        )
    }

    /// Writes the stage's remaining cluster seconds.
    pub fn end_stage(&mut self) -> anyhow::Result<()> {
        self.flush_closed(i64::MAX)?;
        self.out.flush()?;
        Ok(())
    }
}

/// The host columns of a cluster row: all empty.
const EMPTY_HOST: &str = ",,,,,,,,,,,,,,";

/// Stage and agent names quoted when CSV needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Splits one CSV record (RFC 4180 quotes, as [`csv_field`] writes names):
/// the reading side of this file's format, for `analyze` and `export`.
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_common::metrics::histogram_to_bytes;

    fn hist(values: &[u64]) -> Vec<u8> {
        let mut h = live_histogram();
        for v in values {
            h.record(*v).unwrap();
        }
        histogram_to_bytes(&h)
    }

    #[test]
    fn agent_rows_and_merged_cluster_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("series.csv");
        let mut s = Series::create(&path).unwrap();
        s.begin_stage("load", 1_000_000_000).unwrap();
        let a = hist(&[1_000_000; 99]);
        let b = hist(&[100_000_000]);
        let report = |agent, end_s: i64, ops, latency| Report {
            agent,
            start_ns: (end_s - 1) * 1_000_000_000,
            end_ns: end_s * 1_000_000_000,
            ops,
            bytes: ops * 1024,
            errors: 0,
            latency,
            host: HostSample {
                cpus: 1,
                cpu_busy_pct: Some(97.0),
                sched_lag_ms: Some(3.5),
                ..Default::default()
            },
        };
        // Second 0 of the stage (ends at 1.x s after its start).
        s.add(&report("a", 2, 99, &a)).unwrap();
        s.add(&report("b", 2, 1, &b)).unwrap();
        assert_eq!(s.last_second(), None, "second 0 may still get reports");
        s.add(&report("a", 4, 10, &[])).unwrap();
        let last = s.last_second().expect("second 1 closed");
        assert_eq!(last.ops_per_s, 100.0);
        s.end_stage().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert!(lines[1].starts_with("load,1,a,99,101376,0,"), "{text}");
        assert!(lines[2].starts_with("load,1,b,1,1024,0,"), "{text}");
        // The cluster row of second 1 merges both histograms: p99 of 100
        // values (99 at 1 ms, 1 at 100 ms) is 1 ms, max is 100 ms.
        let cluster = lines
            .iter()
            .find(|l| l.starts_with("load,1,*,"))
            .expect("cluster row");
        let f: Vec<&str> = cluster.split(',').collect();
        assert_eq!(f[3], "100");
        let p99: f64 = f[9].parse().unwrap();
        let max: f64 = f[10].parse().unwrap();
        assert!((p99 - 1000.0).abs() < 20.0, "{cluster}");
        assert!((max - 100_000.0).abs() < 1000.0, "{cluster}");
        assert!(
            text.lines().any(|l| l.starts_with("load,3,*,10,")),
            "{text}"
        );
        // Every row has every column; host figures on agent rows only.
        let width = HEADER.split(',').count();
        for l in &lines {
            assert_eq!(l.split(',').count(), width, "{l}");
        }
        let a: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(a[TRAFFIC_COLUMNS], "97.0");
        assert_eq!(a[TRAFFIC_COLUMNS + 12], "3.5");
        assert_eq!(a[width - 1], "1");
        assert!(
            f[TRAFFIC_COLUMNS..].iter().all(|v| v.is_empty()),
            "{cluster}"
        );
    }

    /// What [`csv_field`] quotes, [`split_csv`] reads back.
    #[test]
    fn csv_fields_split_back() {
        assert_eq!(split_csv("a,\"b,c\",\"d\"\"e\","), ["a", "b,c", "d\"e", ""]);
        let names = ["plain", "a,b", "say \"hi\"", "two\nlines"];
        let line: Vec<String> = names.iter().map(|n| csv_field(n)).collect();
        assert_eq!(split_csv(&line.join(",")), names);
    }

    #[test]
    fn host_columns_are_the_client_modules() {
        let cols: Vec<&str> = HEADER.split(',').collect();
        assert_eq!(cols[TRAFFIC_COLUMNS - 1], "max_us");
        assert_eq!(
            cols[TRAFFIC_COLUMNS..],
            chorus_common::metrics::client::CSV_COLUMNS
        );
        assert_eq!(EMPTY_HOST, HostSample::default().csv_fields());
    }
}
