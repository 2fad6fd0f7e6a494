//! `report.html`: one self-contained page (inline CSS, SVG and script, no
//! network) drawn from an [`Analysis`] of the merged timeline.
//!
//! The SVGs are the page: it reads the same without scripts. `chart.js`,
//! inlined at the end, adds to each line chart that carries its data
//! ([`data`]) a tooltip naming the values nearest the mouse, and to the
//! time charts a zoom: drag across a chart to show that time range, in it
//! and in the stage's other time charts (throughput, latency, client CPU);
//! double-click or "reset zoom" to show the whole stage again.
//!
//! Per stage: the per-op table, then five charts, each an `<svg>` whose id
//! ends in the stage's position (`-0`, `-1`, …):
//! `throughput-ops-N` (ops/s per segment per op), `throughput-mib-N`
//! (MiB/s), `latency-time-N` (p50 solid, p99 dashed, per segment),
//! `agents-N` (ops/s per agent) and `latency-dist-N` (percentile curve).
//! For a run directory whose agents sampled their hosts, a client-health
//! table per agent (warnings first) and `client-cpu-N`, each agent's CPU
//! busy per second.
//!
//! Past [`TOP_AGENTS`] agents a per-agent list stops being read, so the
//! page shows the aggregate and the agents that matter: `agents-N` the
//! slowest, with the spread over all of them in a line above; the client
//! table, its warnings and its CPU chart the first [`TOP_AGENTS`] rows
//! (warned agents come first), with a count of the rest. The heatmap
//! (`agents-time-N`) groups rows itself and keeps every agent.

pub mod data;
pub mod svg;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::analyze::client::StageClients;
use crate::analyze::{self, Analysis, Config, StageAnalysis};
use chorus_common::metrics::client::MeanMax;
use svg::{Axis, Hover, Series, escape};

/// The charts' script: hover values and zoom (see the module docs).
const CHART_JS: &str = include_str!("chart.js");

/// Agents listed one by one at most, per chart or table (see the module
/// docs).
const TOP_AGENTS: usize = 20;

/// File name of the report in a run directory.
pub const REPORT_FILE: &str = "report.html";

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1600px}\
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;font-size:13px;margin:8px 0}\
td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #eee}td:first-child,th:first-child{text-align:left}\
svg.chart{display:block;margin:12px 0;font-size:11px;background:#fff;width:100%;max-width:1100px;height:auto}\
td.bad{color:#a40;font-weight:600}.pair{display:flex;gap:16px}.pair svg.chart{width:50%}\
svg .title{font-size:13px;font-weight:600}svg .grid{stroke:#eee}svg .axis,svg .tick{stroke:#444;fill:none}\
svg .key{stroke-width:2}.note{color:#666;font-size:13px}.warning{color:#a40}\
svg.zoomable{cursor:crosshair;user-select:none}svg .reset{cursor:pointer}svg .reset rect{fill:#f4f4f4;stroke:#999}\
.chart-tip{position:fixed;pointer-events:none;z-index:10;background:#fff;border:1px solid #999;\
box-shadow:0 1px 4px #0003;padding:4px 8px;font-size:12px;white-space:nowrap}\
.chart-tip table{margin:2px 0 0}.chart-tip td{border:0;padding:0 4px}\
.chart-tip i{display:inline-block;width:12px;height:3px;vertical-align:middle}";

/// Analyzes `run_dir`'s timeline (automatic segments) and writes
/// `report.html` into it.
pub fn write_run_report(run_dir: &Path) -> anyhow::Result<PathBuf> {
    let analysis = analyze::analyze(run_dir, &Config::default())?;
    let title = analysis
        .run_id
        .clone()
        .or_else(|| {
            run_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| run_dir.display().to_string());
    let path = run_dir.join(REPORT_FILE);
    std::fs::write(&path, html(&title, &analysis))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The whole page.
pub fn html(title: &str, a: &Analysis) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>Chorus report: {t}</title>\
<style>{STYLE}</style></head><body><h1>Chorus report: {t}</h1>\
<p class=\"note\">Timeline {src}: {n} records, {w} warm-up records not counted. \
Latencies are of successful ops; charts use segments of the stage.</p>",
        t = escape(title),
        src = escape(&a.source),
        n = a.records_read,
        w = a.warmup_skipped
    );
    if let Some(d) = &a.damaged {
        let _ = write!(
            out,
            "<p><strong>Damaged timeline</strong>, counted up to: {}</p>",
            escape(d)
        );
    }
    overview(&mut out, a);
    if !a.verdicts.is_empty() {
        out.push_str("<h2>Answers</h2><ul>");
        for (i, v) in a.verdicts.iter().enumerate() {
            let _ = write!(out, "<li>{}", escape(&v.text));
            if let Some(table) = v.table() {
                let _ = write!(out, "<pre>{}</pre>", escape(&table));
            }
            if let Some(t) = &v.train {
                train_charts(&mut out, i, t);
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    for (i, s) in a.stages.iter().enumerate() {
        stage_section(&mut out, i, s);
    }
    // Last, so the charts and their data are in the DOM when it runs.
    let _ = write!(out, "<script>{CHART_JS}</script>");
    out.push_str("</body></html>\n");
    out
}

/// Every stage at a glance, first: how long, how fast, how slow at the
/// tail, how many errors, each row a link to the stage's section.
fn overview(out: &mut String, a: &Analysis) {
    out.push_str(
        "<h2>Overview</h2><table id=\"overview\"><tr><th>stage</th><th>agents</th>\
<th>seconds</th><th>ops</th><th>ops/s</th><th>MiB/s</th><th>p99 ms</th><th>errors</th></tr>",
    );
    for (i, s) in a.stages.iter().enumerate() {
        let Some(all) = s.ops.iter().find(|r| r.key == "ALL") else {
            continue;
        };
        let name = if s.name.is_empty() { "(none)" } else { &s.name };
        let _ = write!(
            out,
            "<tr><td><a href=\"#stage-{i}\">{}</a></td><td>{}</td><td>{:.3}</td><td>{}</td>\
<td>{:.1}</td><td>{:.2}</td><td>{:.3}</td><td{}>{}</td></tr>",
            escape(name),
            s.agents,
            s.elapsed_s,
            all.count,
            all.ops_per_s,
            all.mib_per_s,
            all.latency_us.p99 / 1000.0,
            if all.errors > 0 { " class=\"bad\"" } else { "" },
            all.errors
        );
    }
    out.push_str("</table>");
}

/// A training stage's utilization and data wait, epoch by epoch (or
/// search step by step).
fn train_charts(out: &mut String, i: usize, t: &crate::run::kinds::train::TrainReport) {
    let bars = |f: fn(&crate::run::kinds::train::EpochReport) -> f64| -> Vec<(String, f64)> {
        t.epochs
            .iter()
            .map(|e| (e.step.rsplit('/').next().unwrap_or("").to_string(), f(e)))
            .collect()
    };
    // Side by side: two small charts of a few bars each.
    out.push_str("<div class=\"pair\">");
    out.push_str(&svg::bar_chart(
        &format!("train-au-{i}"),
        &format!(
            "Accelerator utilization (target {:.0}%)",
            t.au_target * 100.0
        ),
        &Axis::linear("AU %"),
        &bars(|e| e.au * 100.0),
    ));
    out.push_str(&svg::bar_chart(
        &format!("train-wait-{i}"),
        "Data wait per rank (mean)",
        &Axis::linear("s"),
        &bars(|e| e.wait_mean_s),
    ));
    out.push_str("</div>");
}

/// One stage's part of the page, in reading order: heading, figures,
/// charts, tables. Long because it is the page's text top to bottom; split,
/// the order of the page would be spread over functions.
fn stage_section(out: &mut String, i: usize, s: &StageAnalysis) {
    let name = if s.name.is_empty() { "(none)" } else { &s.name };
    let _ = write!(
        out,
        "<h2 id=\"stage-{i}\">Stage {}</h2><p class=\"note\">{} agents, {:.3} s from {} to {}; ",
        escape(name),
        s.agents,
        s.elapsed_s,
        escape(&s.first_start),
        escape(&s.last_end)
    );
    match &s.common_window {
        Some(w) => {
            let _ = write!(
                out,
                "all agents active for {:.3} s (from {:.3} s to {:.3} s).",
                w.seconds, w.from_s, w.to_s
            );
        }
        None => out.push_str("the agents were never all active at once."),
    }
    if let Some(st) = &s.steady {
        let _ = write!(
            out,
            " Segments of {} s by {}: fastest {:.1} ops/s, {:.2} MiB/s; median {:.1} ops/s, \
{:.2} MiB/s; slowest {:.1} ops/s, {:.2} MiB/s.",
            s.segment_s,
            st.by,
            st.fastest.ops_per_s,
            st.fastest.mib_per_s,
            st.median.ops_per_s,
            st.median.mib_per_s,
            st.slowest.ops_per_s,
            st.slowest.mib_per_s
        );
    }
    out.push_str("</p>");
    ops_table(out, s);

    // Op order of the stage, for stable colours across charts.
    let ops: Vec<&str> = s
        .ops
        .iter()
        .map(|r| r.key.as_str())
        .filter(|k| *k != "ALL")
        .collect();
    let color = |op: &str| ops.iter().position(|o| *o == op).unwrap_or(ops.len());
    let half = s.segment_s / 2.0;
    let per_op = |f: &dyn Fn(&analyze::SegmentOp) -> f64, dashed: bool, suffix: &str| {
        let mut series: Vec<Series> = ops
            .iter()
            .map(|op| Series {
                name: format!("{op}{suffix}"),
                points: s
                    .segments
                    .iter()
                    .map(|seg| {
                        let v = seg.ops.iter().find(|o| o.op == *op).map_or(0.0, f);
                        (seg.start_s + half, v)
                    })
                    .collect(),
                dashed,
                color: color(op),
            })
            .collect();
        if ops.len() > 1 {
            series.push(Series {
                name: format!("ALL{suffix}"),
                points: s
                    .segments
                    .iter()
                    .map(|seg| (seg.start_s + half, f(&seg.all)))
                    .collect(),
                dashed,
                color: ops.len(),
            });
        }
        series
    };
    let t = Axis::time(time_group(i));
    out.push_str(&svg::line_chart(
        &format!("throughput-ops-{i}"),
        &format!("Throughput over time (ops/s per {} s segment)", s.segment_s),
        &t,
        &Axis::linear("ops/s"),
        &per_op(&|o| o.ops_per_s, false, ""),
    ));
    out.push_str(&svg::line_chart(
        &format!("throughput-mib-{i}"),
        &format!("Throughput over time (MiB/s per {} s segment)", s.segment_s),
        &t,
        &Axis::linear("MiB/s"),
        &per_op(&|o| o.mib_per_s, false, ""),
    ));
    let mut lat = per_op(&|o| o.p50_us, false, " p50");
    lat.extend(per_op(&|o| o.p99_us, true, " p99"));
    out.push_str(&svg::line_chart(
        &format!("latency-time-{i}"),
        "Latency over time (p50 solid, p99 dashed)",
        &t,
        &Axis::log("latency (µs)"),
        &lat,
    ));
    agent_charts(out, i, s);
    out.push_str(&latency_distribution(i, s, &color));
    if let Some(c) = &s.client {
        client_section(out, i, c);
    }
}

/// The zoom group of stage `i`'s time charts: zooming one zooms them all.
fn time_group(i: usize) -> String {
    format!("time-{i}")
}

/// Each agent's throughput: over the stage (bars), and over time (a
/// heatmap, which stays readable at 1,000 agents).
fn agent_charts(out: &mut String, i: usize, s: &StageAnalysis) {
    let all: Vec<(String, f64)> = s
        .per_agent
        .iter()
        .map(|r| (r.key.clone(), r.ops_per_s))
        .collect();
    let (bars, title) = match slowest(&all, TOP_AGENTS) {
        Some(slow) => {
            out.push_str(&spread_note(&all));
            let title = format!(
                "Throughput of the {} slowest of {} agents (ops/s over the stage)",
                slow.len(),
                all.len()
            );
            (slow, title)
        }
        None => (
            all,
            "Throughput per agent (ops/s over the stage)".to_string(),
        ),
    };
    out.push_str(&svg::bar_chart(
        &format!("agents-{i}"),
        &title,
        &Axis::linear("ops/s"),
        &bars,
    ));
    let rows: Vec<(&str, &[f64])> = s
        .agent_segments
        .iter()
        .map(|a| (a.agent.as_str(), a.ops_per_s.as_slice()))
        .collect();
    out.push_str(&svg::heatmap(
        &format!("agents-time-{i}"),
        "Throughput per agent over time (ops/s)",
        "ops/s",
        s.segment_s,
        &rows,
    ));
}

/// Each agent's host in the stage: the warnings, a table, the CPU chart.
fn client_section(out: &mut String, i: usize, c: &StageClients) {
    if c.rows.is_empty() {
        return;
    }
    out.push_str("<h3>Client health</h3>");
    // Rows come warned agents first, so the first ones shown are those.
    let shown = &c.rows[..c.rows.len().min(TOP_AGENTS)];
    let warned = c.rows.iter().filter(|r| !r.warnings.is_empty()).count();
    for w in shown.iter().flat_map(|r| &r.warnings) {
        let _ = write!(
            out,
            "<p class=\"warning\"><strong>Warning:</strong> {}</p>",
            escape(w)
        );
    }
    if shown.len() < c.rows.len() {
        let _ = write!(
            out,
            "<p class=\"note\">{} agents, {warned} of them warned: the first {} are shown \
             (warned ones first); every agent is in <code>run.json</code> and \
             <code>summary.json</code>.</p>",
            c.rows.len(),
            shown.len()
        );
    }
    out.push_str(
        "<table class=\"client\"><tr><th>agent</th><th>CPUs</th><th>CPU busy % mean/max</th>\
<th>busiest core %</th><th>steal %</th><th>agent process % of a core</th>\
<th>its threads waiting for a CPU, % of a core</th><th>run queue</th>\
<th>memory used %</th><th>net rx/tx MiB/s</th><th>schedule lag ms mean/max</th><th>verdict</th></tr>",
    );
    let mm =
        |v: Option<MeanMax>| v.map_or("-".to_string(), |m| format!("{:.0} / {:.0}", m.mean, m.max));
    let mean = |v: Option<MeanMax>| v.map_or("-".to_string(), |m| format!("{:.1}", m.mean));
    for r in shown {
        let h = &r.health;
        let verdict = match (&h.bottleneck, &h.behind_schedule) {
            (Some(why), _) => format!("client-bound: {}", why.join(", ")),
            (None, Some(why)) => format!("not the limit, but fell behind its schedule: {why}"),
            (None, None) => "not the limit".to_string(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
<td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.agent),
            h.cpus,
            mm(h.cpu_busy_pct),
            mm(h.cpu_max_core_pct),
            mean(h.cpu_steal_pct),
            mm(h.proc_cpu_pct),
            mm(h.proc_cpu_wait_pct),
            mean(h.run_queue),
            mean(h.mem_used_pct),
            mean(h.net_rx_mib_s),
            mean(h.net_tx_mib_s),
            mm(h.sched_lag_ms),
            escape(&verdict)
        );
    }
    out.push_str("</table>");
    let series: Vec<Series> = c
        .cpu_busy
        .iter()
        .enumerate()
        .filter(|(_, (agent, points))| {
            !points.is_empty() && shown.iter().any(|r| &r.agent == agent)
        })
        .map(|(k, (agent, points))| Series {
            name: agent.clone(),
            points: points.clone(),
            dashed: false,
            color: k,
        })
        .collect();
    if !series.is_empty() {
        out.push_str(&svg::line_chart(
            &format!("client-cpu-{i}"),
            "Client CPU busy per agent (% of its CPUs, per second)",
            &Axis::time(time_group(i)),
            &Axis::linear("CPU busy %"),
            &series,
        ));
    }
}

/// The `n` slowest of `all` (ops/s ascending, ties by name), or `None`
/// when all of them fit.
fn slowest(all: &[(String, f64)], n: usize) -> Option<Vec<(String, f64)>> {
    if all.len() <= n {
        return None;
    }
    let mut sorted = all.to_vec();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    sorted.truncate(n);
    Some(sorted)
}

/// One line on all agents' throughput: min, median, mean, max.
fn spread_note(all: &[(String, f64)]) -> String {
    let mut v: Vec<f64> = all.iter().map(|a| a.1).collect();
    v.sort_by(f64::total_cmp);
    let (Some(min), Some(max)) = (v.first(), v.last()) else {
        return String::new();
    };
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    format!(
        "<p class=\"note\">Throughput per agent over the stage, {} agents: min {}, \
         median {}, mean {}, max {} ops/s.</p>",
        v.len(),
        svg::short_number(*min),
        svg::short_number(v[v.len() / 2]),
        svg::short_number(mean),
        svg::short_number(*max)
    )
}

/// The percentile curve: x is the number of nines (0 = p0, 2 = p99, …).
fn latency_distribution(i: usize, s: &StageAnalysis, color: &dyn Fn(&str) -> usize) -> String {
    let nines = |q: f64| -(1.0 - q).max(1e-6).log10();
    let series: Vec<Series> = s
        .latency_curve
        .iter()
        .map(|c| Series {
            name: c.op.clone(),
            points: c
                .points
                .iter()
                .map(|p| (nines(p.quantile), p.latency_us))
                .collect(),
            dashed: false,
            color: color(&c.op),
        })
        .collect();
    let most = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max)
        .ceil() as usize;
    let labels = ["0", "90", "99", "99.9", "99.99", "99.999", "99.9999"];
    let ticks = (0..=most.min(6))
        .map(|k| (k as f64, format!("p{}", labels[k])))
        .collect();
    let x = Axis {
        label: "percentile".into(),
        ticks: Some(ticks),
        hover: Hover::Nines,
        ..Axis::default()
    };
    svg::line_chart(
        &format!("latency-dist-{i}"),
        "Latency distribution (percentile curve, whole stage)",
        &x,
        &Axis::log("latency (µs)"),
        &series,
    )
}

fn ops_table(out: &mut String, s: &StageAnalysis) {
    out.push_str(
        "<table><tr><th>op</th><th>count</th><th>errors</th><th>ops/s</th><th>MiB/s</th>\
<th>p50 µs</th><th>p90 µs</th><th>p99 µs</th><th>p99.9 µs</th><th>max µs</th></tr>",
    );
    for r in &s.ops {
        let l = &r.latency_us;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td>\
<td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            escape(&r.key),
            r.count,
            r.errors,
            r.ops_per_s,
            r.mib_per_s,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        );
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_agents_are_shown_as_their_spread_and_the_slowest() {
        let few: Vec<(String, f64)> = (0..TOP_AGENTS)
            .map(|a| (format!("a{a}"), a as f64))
            .collect();
        assert_eq!(slowest(&few, TOP_AGENTS), None);
        // 1,000 agents, agent k doing (k * 7) % 1000 ops/s: the slowest are
        // those doing 0, 1, 2, … whatever their place in the list.
        let many: Vec<(String, f64)> = (0..1000)
            .map(|a| (format!("agent-{a:04}"), ((a * 7) % 1000) as f64))
            .collect();
        let slow = slowest(&many, TOP_AGENTS).unwrap();
        assert_eq!(slow.len(), TOP_AGENTS);
        assert_eq!(slow[0], ("agent-0000".to_string(), 0.0));
        assert_eq!(slow[1].1, 1.0);
        assert_eq!(slow[TOP_AGENTS - 1].1, (TOP_AGENTS - 1) as f64);
        let note = spread_note(&many);
        assert!(
            note.contains("1000 agents: min 0, median 500, mean 499.5, max 999 ops/s"),
            "{note}"
        );
    }
}
