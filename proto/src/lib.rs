//! The Chorus wire format: `proto/chorus.proto` compiled by tonic/prost, and
//! the conversions between its messages and `chorus-common` types.
//!
//! This is the only crate that knows the wire format; the agent and the
//! controller speak in `common` types and call [`encode_metrics`] /
//! [`decode_metrics`] at the boundary.

use chorus_common::metrics::client::HostSample;
use chorus_common::metrics::{OpStats, StageMetrics, histogram_from_bytes, histogram_to_bytes};
use chorus_common::op::OpKind;
use chorus_common::plan::StepSpec;
use chorus_common::store::ErrorClass;
use chorus_common::store::multi::EndpointStats;
use chorus_common::workload::train::RankReport;
use chorus_common::workload::{ListingSummary, OpTotals, ScheduleReport};

/// Generated messages, client and server.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("chorus.v1");
}

pub use pb::agent_client::AgentClient;
pub use pb::agent_server::{Agent, AgentServer};

/// The wire protocol this build speaks, sent both ways in `Hello`. Bumped
/// whenever a change to `chorus.proto` or to what its fields mean would
/// make an older peer misread this one (a renumbered or retyped field, a
/// field whose meaning changed, a call an old peer lacks); adding a field
/// an old peer may safely ignore does not bump it. 0 is what a peer from
/// before this field sends: proto3 reads a missing field as 0.
// 5: RunStageRequest.departed and StageStep.bytes/handover (an older agent
// would split a stage over agents that left).
// 6: op kinds past PUT_PART (COPY, APPEND, DELETE_BATCH, …) in spools and
// metrics, OpMetrics.objects (an older controller would refuse the names,
// an older agent's spools would lack them).
pub const PROTOCOL_VERSION: u32 = 6;

/// Largest gRPC message either side accepts: a stage's metrics carry one
/// histogram per op (tens of KiB each), and op-log chunks are 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Op-log bytes per `OpLogChunk`: large enough to amortise per-message cost,
/// small enough to keep both ends' memory flat.
pub const OPLOG_CHUNK_BYTES: usize = 1 << 20;

/// Trace bytes per `TraceChunk`, like op-log chunks: far below
/// [`MAX_MESSAGE_BYTES`], so both ends hold a few at a time.
pub const TRACE_CHUNK_BYTES: usize = 1 << 20;

mod trace;
pub use trace::{trace_header, trace_id_of};

/// Stage metrics as sent on the wire: one message per op, histograms whole.
pub fn encode_metrics(m: &StageMetrics) -> Vec<pb::OpMetrics> {
    m.ops
        .iter()
        .map(|(op, s)| pb::OpMetrics {
            op: op.log_name().to_string(),
            count: s.count,
            errors: s.errors,
            bytes: s.bytes,
            clamped: s.clamped,
            latency_hist: histogram_to_bytes(&s.latency),
            objects: s.objects,
        })
        .collect()
}

/// The inverse of [`encode_metrics`]; a bad op name or histogram is an error
/// naming it.
pub fn decode_metrics(ops: &[pb::OpMetrics]) -> anyhow::Result<StageMetrics> {
    let mut m = StageMetrics::default();
    for o in ops {
        let op: OpKind = o.op.parse().map_err(anyhow::Error::msg)?;
        let latency = histogram_from_bytes(&o.latency_hist)
            .map_err(|e| anyhow::anyhow!("histogram of {op}: {e}"))?;
        let stats = OpStats {
            count: o.count,
            errors: o.errors,
            bytes: o.bytes,
            latency,
            clamped: o.clamped,
            objects: o.objects,
        };
        // Merge (not insert) so a repeated op adds up instead of replacing.
        let mut one = StageMetrics::default();
        one.ops.insert(op, stats);
        m.merge(&one);
    }
    Ok(m)
}

pub fn encode_listing(l: &ListingSummary) -> pb::ListingReport {
    pb::ListingReport {
        objects_listed: l.objects_listed,
        pages: l.pages,
        subprefixes: l.subprefixes,
        seconds: l.seconds,
        share_objects: l.share_objects,
        share_bytes: l.share_bytes,
        index_bytes: l.index_bytes,
    }
}

pub fn decode_listing(l: &pb::ListingReport) -> ListingSummary {
    ListingSummary {
        objects_listed: l.objects_listed,
        pages: l.pages,
        subprefixes: l.subprefixes,
        seconds: l.seconds,
        share_objects: l.share_objects,
        share_bytes: l.share_bytes,
        index_bytes: l.index_bytes,
    }
}

pub fn encode_schedule(r: &ScheduleReport) -> pb::ScheduleReport {
    pb::ScheduleReport {
        target_rate: r.target_rate,
        achieved_rate: r.achieved_rate,
        ops: r.ops,
        late_ops: r.late_ops,
        max_lag_ms: r.max_lag_ms,
        mean_lag_ms: r.mean_lag_ms,
        p50_lag_ms: r.p50_lag_ms,
        p99_lag_ms: r.p99_lag_ms,
    }
}

pub fn decode_schedule(r: &pb::ScheduleReport) -> ScheduleReport {
    ScheduleReport {
        target_rate: r.target_rate,
        achieved_rate: r.achieved_rate,
        ops: r.ops,
        late_ops: r.late_ops,
        max_lag_ms: r.max_lag_ms,
        mean_lag_ms: r.mean_lag_ms,
        p50_lag_ms: r.p50_lag_ms,
        p99_lag_ms: r.p99_lag_ms,
    }
}

pub fn encode_endpoints(stats: &[EndpointStats]) -> Vec<pb::EndpointStats> {
    stats
        .iter()
        .map(|e| pb::EndpointStats {
            endpoint: e.endpoint.clone(),
            requests: e.requests,
            bytes: e.bytes,
            errors: e.errors,
        })
        .collect()
}

pub fn decode_endpoints(stats: &[pb::EndpointStats]) -> Vec<EndpointStats> {
    stats
        .iter()
        .map(|e| EndpointStats {
            endpoint: e.endpoint.clone(),
            requests: e.requests,
            bytes: e.bytes,
            errors: e.errors,
            in_flight: 0,
        })
        .collect()
}

/// An agent's host sample as sent in `Progress.host`; `None` when
/// nothing is known (an agent off Linux sends no `host`).
pub fn encode_host(s: &HostSample) -> Option<pb::HostSample> {
    (!s.is_empty()).then_some(pb::HostSample {
        cpus: s.cpus,
        cpu_busy_pct: s.cpu_busy_pct,
        cpu_max_core_pct: s.cpu_max_core_pct,
        cpu_user_pct: s.cpu_user_pct,
        cpu_system_pct: s.cpu_system_pct,
        cpu_iowait_pct: s.cpu_iowait_pct,
        cpu_steal_pct: s.cpu_steal_pct,
        proc_cpu_pct: s.proc_cpu_pct,
        proc_cpu_wait_pct: s.proc_cpu_wait_pct,
        run_queue: s.run_queue,
        mem_used_pct: s.mem_used_pct,
        net_rx_mib_s: s.net_rx_mib_s,
        net_tx_mib_s: s.net_tx_mib_s,
        sched_lag_ms: s.sched_lag_ms,
        sched_lag_mean_ms: s.sched_lag_mean_ms,
    })
}

/// The inverse of [`encode_host`]. Values that are not finite numbers
/// (a peer's bug) are unknown rather than poison in the averages.
pub fn decode_host(s: &pb::HostSample) -> HostSample {
    let f = |v: Option<f64>| v.filter(|v| v.is_finite());
    HostSample {
        cpus: s.cpus,
        cpu_busy_pct: f(s.cpu_busy_pct),
        cpu_max_core_pct: f(s.cpu_max_core_pct),
        cpu_user_pct: f(s.cpu_user_pct),
        cpu_system_pct: f(s.cpu_system_pct),
        cpu_iowait_pct: f(s.cpu_iowait_pct),
        cpu_steal_pct: f(s.cpu_steal_pct),
        proc_cpu_pct: f(s.proc_cpu_pct),
        proc_cpu_wait_pct: f(s.proc_cpu_wait_pct),
        run_queue: f(s.run_queue),
        mem_used_pct: f(s.mem_used_pct),
        net_rx_mib_s: f(s.net_rx_mib_s),
        net_tx_mib_s: f(s.net_tx_mib_s),
        sched_lag_ms: f(s.sched_lag_ms),
        sched_lag_mean_ms: f(s.sched_lag_mean_ms),
    }
}

/// Live per-op totals as sent in `Progress.by_op`.
pub fn encode_op_totals(totals: &[OpTotals]) -> Vec<pb::OpProgress> {
    totals
        .iter()
        .map(|t| pb::OpProgress {
            op: t.op.log_name().to_string(),
            ops: t.ops,
            bytes: t.bytes,
            errors: t.errors,
            errors_by_class: t
                .classes
                .iter()
                .map(|(c, n)| pb::ErrorCount {
                    class: c.name().to_string(),
                    count: *n,
                })
                .collect(),
        })
        .collect()
}

/// The inverse of [`encode_op_totals`]. An op or class name this build
/// does not know (a newer peer's) is left out rather than misfiled: live
/// figures are a view, the exact ones come at the step's end.
pub fn decode_op_totals(by_op: &[pb::OpProgress]) -> Vec<OpTotals> {
    by_op
        .iter()
        .filter_map(|p| {
            let op = p.op.parse::<OpKind>().ok()?;
            let classes = p
                .errors_by_class
                .iter()
                .filter_map(|e| {
                    let class = ErrorClass::ALL.into_iter().find(|c| c.name() == e.class)?;
                    Some((class, e.count))
                })
                .collect();
            Some(OpTotals {
                op,
                ops: p.ops,
                bytes: p.bytes,
                errors: p.errors,
                classes,
            })
        })
        .collect()
}

/// A stage's sub-step as sent on the wire.
pub fn encode_step(s: &StepSpec) -> pb::StageStep {
    pb::StageStep {
        index: s.index,
        name: s.name.clone(),
        rate: s.rate.unwrap_or(0.0),
        concurrency: s.concurrency.unwrap_or(0),
        duration_ms: s.duration.map_or(0, |d| d.as_millis() as u64),
        ops: s.ops.unwrap_or(0),
        prepares: s.prepares,
        accelerators: s.accelerators.unwrap_or(0),
        restores: s.restores,
        bytes: s.bytes.unwrap_or(0),
        handover: s.handover,
    }
}

/// The inverse of [`encode_step`]: zeros are "the stage's own setting".
pub fn decode_step(s: &pb::StageStep) -> StepSpec {
    StepSpec {
        index: s.index,
        name: s.name.clone(),
        rate: (s.rate > 0.0).then_some(s.rate),
        concurrency: (s.concurrency > 0).then_some(s.concurrency),
        duration: (s.duration_ms > 0).then(|| std::time::Duration::from_millis(s.duration_ms)),
        ops: (s.ops > 0).then_some(s.ops),
        prepares: s.prepares,
        accelerators: (s.accelerators > 0).then_some(s.accelerators),
        restores: s.restores,
        bytes: (s.bytes > 0).then_some(s.bytes),
        handover: s.handover,
    }
}

pub fn encode_ranks(ranks: &[RankReport]) -> Vec<pb::RankReport> {
    ranks
        .iter()
        .map(|r| pb::RankReport {
            rank: r.rank,
            samples: r.samples,
            bytes: r.bytes,
            errors: r.errors,
            steps: r.steps,
            compute_ns: r.compute_ns,
            wait_ns: r.wait_ns,
            wall_ns: r.wall_ns,
            overrun_ns: r.overrun_ns,
        })
        .collect()
}

pub fn decode_ranks(ranks: &[pb::RankReport]) -> Vec<RankReport> {
    ranks
        .iter()
        .map(|r| RankReport {
            rank: r.rank,
            samples: r.samples,
            bytes: r.bytes,
            errors: r.errors,
            steps: r.steps,
            compute_ns: r.compute_ns,
            wait_ns: r.wait_ns,
            wall_ns: r.wall_ns,
            overrun_ns: r.overrun_ns,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_round_trip() {
        let mut m = StageMetrics::default();
        for i in 1..1000u64 {
            m.record(OpKind::Get, i * 1000, 4096, true);
            m.record(OpKind::Put, i * 3000, 4096, i % 10 != 0);
        }
        let back = decode_metrics(&encode_metrics(&m)).unwrap();
        assert_eq!(back.total_ops(), m.total_ops());
        assert_eq!(back.total_errors(), m.total_errors());
        for (op, s) in &m.ops {
            let b = &back.ops[op];
            assert_eq!(
                b.latency.value_at_quantile(0.99),
                s.latency.value_at_quantile(0.99)
            );
            assert_eq!(b.bytes, s.bytes);
        }
    }

    #[test]
    fn op_totals_round_trip_and_unknown_names_are_left_out() {
        let totals = vec![
            OpTotals {
                op: OpKind::Get,
                ops: 10,
                bytes: 4096,
                errors: 3,
                classes: vec![(ErrorClass::NotFound, 2), (ErrorClass::Throttled, 1)],
            },
            OpTotals {
                op: OpKind::RangeGet,
                ops: 1,
                bytes: 1,
                errors: 0,
                classes: vec![],
            },
        ];
        let mut wire = encode_op_totals(&totals);
        assert_eq!(decode_op_totals(&wire), totals);
        wire[0].errors_by_class[1].class = "from_the_future".into();
        wire[1].op = "TELEPORT".into();
        let back = decode_op_totals(&wire);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].classes, vec![(ErrorClass::NotFound, 2)]);
    }

    #[test]
    fn bad_op_name_is_an_error() {
        let bad = pb::OpMetrics {
            op: "FETCH".into(),
            ..Default::default()
        };
        assert!(
            decode_metrics(&[bad])
                .unwrap_err()
                .to_string()
                .contains("FETCH")
        );
    }

    #[test]
    fn host_samples_round_trip_and_unknown_stays_unknown() {
        let s = HostSample {
            cpus: 2,
            cpu_busy_pct: Some(97.5),
            cpu_steal_pct: Some(0.0),
            sched_lag_ms: Some(340.0),
            ..Default::default()
        };
        let wire = encode_host(&s).unwrap();
        // Through the bytes too: `optional` keeps 0.0 apart from absent.
        let bytes = prost::Message::encode_to_vec(&wire);
        let back: pb::HostSample = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(decode_host(&back), s);
        assert_eq!(encode_host(&HostSample::default()), None);
        let nan = pb::HostSample {
            cpu_busy_pct: Some(f64::NAN),
            ..Default::default()
        };
        assert_eq!(decode_host(&nan).cpu_busy_pct, None);
    }

    #[test]
    fn steps_round_trip_and_zero_means_unchanged() {
        let s = StepSpec {
            index: 3,
            name: "w/step-03".into(),
            rate: Some(1500.0),
            concurrency: None,
            duration: Some(std::time::Duration::from_secs(30)),
            ops: None,
            prepares: true,
            accelerators: Some(12),
            restores: true,
            bytes: Some(1 << 30),
            handover: true,
        };
        assert_eq!(decode_step(&encode_step(&s)), s);
        let ranks = vec![RankReport {
            rank: 5,
            samples: 96,
            bytes: 1 << 20,
            errors: 1,
            steps: 24,
            compute_ns: 900,
            wait_ns: 100,
            wall_ns: 1000,
            overrun_ns: 7,
        }];
        assert_eq!(decode_ranks(&encode_ranks(&ranks)), ranks);
        let whole = decode_step(&pb::StageStep::default());
        assert_eq!(whole.rate, None);
        assert_eq!(whole.duration, None);
    }
}
