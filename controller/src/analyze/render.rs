//! `controller analyze` output as aligned text tables and as one long CSV
//! table (`section` says which breakdown a row belongs to).

use std::fmt::Write as _;

use chorus_common::metrics::client::MeanMax;
use chorus_common::metrics::summary::write_table as table;

use super::client::StageClients;
use super::stats::Row;
use super::{Analysis, StageAnalysis};

const ROW_HEADER: [&str; 12] = [
    "", "count", "errors", "bytes", "ops/s", "MiB/s", "mean_us", "p50_us", "p90_us", "p99_us",
    "p99.9_us", "max_us",
];

fn row_cells(key: &str, r: &Row) -> Vec<String> {
    let l = &r.latency_us;
    vec![
        key.to_string(),
        r.count.to_string(),
        r.errors.to_string(),
        r.bytes.to_string(),
        format!("{:.2}", r.ops_per_s),
        format!("{:.2}", r.mib_per_s),
        format!("{:.1}", l.mean),
        format!("{:.1}", l.p50),
        format!("{:.1}", l.p90),
        format!("{:.1}", l.p99),
        format!("{:.1}", l.p999),
        format!("{:.1}", l.max),
    ]
}

fn row_table(out: &mut String, first: &str, rows: &[(String, &Row)]) {
    let mut header = ROW_HEADER;
    header[0] = first;
    let cells: Vec<Vec<String>> = rows.iter().map(|(k, r)| row_cells(k, r)).collect();
    table(out, &header, &cells);
}

/// The text report.
pub fn text(a: &Analysis) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Timeline {}{}  records {}  warm-up skipped {}  filtered out {}",
        a.source,
        a.run_id
            .as_deref()
            .map(|r| format!(" (run {r})"))
            .unwrap_or_default(),
        a.records_read,
        a.warmup_skipped,
        a.filtered_out
    );
    if let Some(d) = &a.damaged {
        let _ = writeln!(out, "DAMAGED INPUT, stopped at: {d}");
    }
    for s in &a.stages {
        stage_text(&mut out, s);
    }
    verdicts_text(&mut out, a);
    out
}

/// The stages' answers, last: what the run was for.
fn verdicts_text(out: &mut String, a: &Analysis) {
    if a.verdicts.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nAnswers");
    for v in &a.verdicts {
        let _ = writeln!(out, "  {}", v.text);
        if let Some(t) = v.table() {
            out.push_str(&t);
        }
        let Some(search) = &v.search else {
            continue;
        };
        let rows: Vec<Vec<String>> = search
            .steps
            .iter()
            .map(|p| {
                let mut row = vec![
                    p.name.clone(),
                    format!("{}", p.load),
                    format!("{:.1}", p.ops_per_s),
                    format!("{:.3}", p.latency_us.p99 / 1e3),
                    p.errors.to_string(),
                    if p.good { "good" } else { "bad" }.to_string(),
                ];
                row.push(p.why.clone().unwrap_or_default());
                row
            })
            .collect();
        let header = [
            "step",
            search.vary.as_str(),
            "ops/s",
            "p99 ms",
            "errors",
            "verdict",
            "why",
        ];
        let mut table = String::new();
        chorus_common::metrics::summary::write_table(&mut table, &header, &rows);
        for line in table.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
}

/// One stage's text, in reading order. Long because it is the report's
/// text top to bottom, one block per table.
fn stage_text(out: &mut String, s: &StageAnalysis) {
    let name = if s.name.is_empty() { "(none)" } else { &s.name };
    let _ = writeln!(
        out,
        "\nStage {name}: {} agents, {:.3} s ({} .. {})",
        s.agents, s.elapsed_s, s.first_start, s.last_end
    );
    match &s.common_window {
        Some(w) => {
            let _ = writeln!(
                out,
                "  all agents active: {:.3} s, --from {:.3} --to {:.3} ({} .. {})",
                w.seconds, w.from_s, w.to_s, w.from, w.to
            );
        }
        None => out.push_str("  all agents active: never at once\n"),
    }
    out.push_str("\n  Latency per op (successful ops; rates over the stage):\n");
    let rows: Vec<(String, &Row)> = s.ops.iter().map(|r| (r.key.clone(), r)).collect();
    row_table(out, "op", &rows);

    if let Some(st) = &s.steady {
        let _ = writeln!(
            out,
            "\n  Segments of {} s: {} {}, by {}:",
            s.segment_s,
            st.segments,
            if st.only_steady {
                "inside the common window"
            } else {
                "(none wholly inside the common window: all)"
            },
            st.by
        );
        let cells: Vec<Vec<String>> = [
            ("fastest", &st.fastest),
            ("median", &st.median),
            ("slowest", &st.slowest),
        ]
        .iter()
        .map(|(k, p)| {
            vec![
                k.to_string(),
                p.index.to_string(),
                format!("{:.3}", p.start_s),
                format!("{:.2}", p.ops_per_s),
                format!("{:.2}", p.mib_per_s),
            ]
        })
        .collect();
        table(out, &["", "segment", "start_s", "ops/s", "MiB/s"], &cells);
    }

    if !s.sizes.is_empty() {
        out.push_str("\n  Per op and size:\n");
        let rows: Vec<(String, &Row)> = s
            .sizes
            .iter()
            .map(|r| (format!("{} {}", r.op, r.bucket), &r.row))
            .collect();
        row_table(out, "op size", &rows);
    }
    if !s.ttfb.is_empty() {
        out.push_str("\n  Time to first byte:\n");
        let cells: Vec<Vec<String>> = s
            .ttfb
            .iter()
            .map(|t| {
                let l = &t.ttfb_us;
                vec![
                    t.op.clone(),
                    t.count.to_string(),
                    format!("{:.1}", l.p50),
                    format!("{:.1}", l.p90),
                    format!("{:.1}", l.p99),
                    format!("{:.1}", l.p999),
                    format!("{:.1}", l.max),
                ]
            })
            .collect();
        table(
            out,
            &[
                "op", "count", "p50_us", "p90_us", "p99_us", "p99.9_us", "max_us",
            ],
            &cells,
        );
    }
    if !s.errors.is_empty() {
        out.push_str("\n  Errors by class:\n");
        let cells: Vec<Vec<String>> = s
            .errors
            .iter()
            .map(|e| vec![e.class.clone(), e.op.clone(), e.count.to_string()])
            .collect();
        table(out, &["class", "op", "count"], &cells);
    }
    out.push_str("\n  Per agent (all ops):\n");
    let rows: Vec<(String, &Row)> = s.per_agent.iter().map(|r| (r.key.clone(), r)).collect();
    row_table(out, "agent", &rows);
    out.push_str("\n  Per endpoint (all ops):\n");
    let rows: Vec<(String, &Row)> = s.per_endpoint.iter().map(|r| (r.key.clone(), r)).collect();
    row_table(out, "endpoint", &rows);
    if let Some(c) = &s.client {
        client_text(out, c);
    }
}

/// Client health: one row per agent, then the warning of each
/// client-bound one, worded as the run's summary words it.
fn client_text(out: &mut String, c: &StageClients) {
    if c.rows.is_empty() {
        return;
    }
    out.push_str("\n  Client health (each agent's host; mean/max):\n");
    let mm = |v: Option<MeanMax>, digits: usize| {
        v.map_or("-".to_string(), |m| {
            format!("{:.digits$}/{:.digits$}", m.mean, m.max)
        })
    };
    let cells: Vec<Vec<String>> = c
        .rows
        .iter()
        .map(|r| {
            let h = &r.health;
            vec![
                r.agent.clone(),
                h.seconds.to_string(),
                h.cpus.to_string(),
                mm(h.cpu_busy_pct, 0),
                mm(h.cpu_max_core_pct, 0),
                mm(h.cpu_steal_pct, 0),
                mm(h.proc_cpu_pct, 0),
                mm(h.proc_cpu_wait_pct, 0),
                mm(h.run_queue, 1),
                mm(h.sched_lag_ms, 1),
                match (&h.bottleneck, &h.behind_schedule) {
                    (Some(_), _) => "client-bound",
                    (None, Some(_)) => "behind schedule",
                    (None, None) => "ok",
                }
                .to_string(),
                r.from.clone(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "agent",
            "s",
            "cpus",
            "cpu_busy%",
            "max_core%",
            "steal%",
            "proc_cpu%",
            "cpu_wait%",
            "run_queue",
            "lag_ms",
            "verdict",
            "from",
        ],
        &cells,
    );
    for w in c.rows.iter().flat_map(|r| &r.warnings) {
        let _ = writeln!(out, "warning: {w}");
    }
}

/// CSV header of [`csv`].
pub const CSV_HEADER: &str = "stage,section,key,op,count,errors,bytes,ops_per_s,mib_per_s,\
lat_mean_us,lat_p50_us,lat_p90_us,lat_p99_us,lat_p999_us,lat_max_us";

/// Quotes a field holding a separator, quote or line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV table: sections `op`, `size`, `agent`, `endpoint`, `ttfb`,
/// `error`, `segment` (segment rows: key is the start in seconds, latency
/// columns p50 and p99 only).
// Long because each section is a few lines of the same table; one
// function keeps the column order in one place.
pub fn csv(a: &Analysis) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for s in &a.stages {
        let mut row = |section: &str, key: &str, op: &str, r: &Row| {
            let l = &r.latency_us;
            let _ = writeln!(
                out,
                "{},{section},{},{},{},{},{},{:.3},{:.3},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1}",
                field(&s.name),
                field(key),
                field(op),
                r.count,
                r.errors,
                r.bytes,
                r.ops_per_s,
                r.mib_per_s,
                l.mean,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max
            );
        };
        for r in &s.ops {
            row("op", &r.key, &r.key, r);
        }
        for r in &s.sizes {
            row("size", &r.bucket, &r.op, &r.row);
        }
        for r in &s.per_agent {
            row("agent", &r.key, "ALL", r);
        }
        for r in &s.per_endpoint {
            row("endpoint", &r.key, "ALL", r);
        }
        for t in &s.ttfb {
            let l = &t.ttfb_us;
            let _ = writeln!(
                out,
                "{},ttfb,{},{},{},,,,,{:.1},{:.1},{:.1},{:.1},{:.1},{:.1}",
                field(&s.name),
                t.op,
                t.op,
                t.count,
                l.mean,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max
            );
        }
        for e in &s.errors {
            let _ = writeln!(
                out,
                "{},error,{},{},{},{},,,,,,,,,",
                field(&s.name),
                field(&e.class),
                e.op,
                e.count,
                e.count
            );
        }
        for seg in &s.segments {
            for o in std::iter::once(&seg.all).chain(&seg.ops) {
                let _ = writeln!(
                    out,
                    "{},segment,{:.3},{},{},{},,{:.3},{:.3},,{:.1},,{:.1},,",
                    field(&s.name),
                    seg.start_s,
                    o.op,
                    o.count,
                    o.errors,
                    o.ops_per_s,
                    o.mib_per_s,
                    o.p50_us,
                    o.p99_us
                );
            }
        }
    }
    out
}
