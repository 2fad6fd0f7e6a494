//! Client health in `controller analyze` and the report: each agent's
//! host per stage and whether it was the limit, as the run judged it
//! (`run.json`'s `client` objects) or, for a run whose `run.json` lacks
//! them, judged again here from `series.csv` by the same rules
//! (`chorus_common::metrics::client`). The per-second CPU busy of each
//! agent comes from `series.csv` for the report's chart.
//!
//! Memory is bounded: per stage and agent one `ClientTrack` and at most
//! [`MAX_POINTS`] chart points (adjacent seconds averaged when a stage has
//! more).

use std::collections::BTreeMap;
use std::path::Path;

use chorus_common::metrics::client::{ClientHealth, ClientTrack, HostSample};
use serde::Serialize;

use crate::run::results;
use crate::run::series::{CLUSTER, HEADER, TRAFFIC_COLUMNS, split_csv};

/// CPU chart points kept per agent and stage.
pub const MAX_POINTS: usize = 600;

/// Where a verdict came from.
pub const FROM_RUN: &str = "run.json";
pub const FROM_SERIES: &str = "series.csv";

/// One agent's client health in one stage.
#[derive(Clone, Debug, Serialize)]
pub struct ClientRow {
    pub agent: String,
    /// `run.json`, or `series.csv` when judged again from it.
    pub from: String,
    pub health: ClientHealth,
    /// The summary's warning lines (without `warning: `): client-bound,
    /// fell behind its schedule.
    pub warnings: Vec<String>,
}

/// One stage's client health: a row per agent, and each agent's CPU busy
/// per second (seconds from the stage's start, %).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StageClients {
    pub rows: Vec<ClientRow>,
    pub cpu_busy: Vec<(String, Vec<(f64, f64)>)>,
}

/// One agent's CPU points, halved in resolution when full.
#[derive(Default)]
struct Points {
    /// (second sum, value sum, count) per point.
    points: Vec<(f64, f64, u32)>,
    width: u32,
}

impl Points {
    fn add(&mut self, second: f64, v: f64) {
        self.width = self.width.max(1);
        if let Some(p) = self.points.last_mut().filter(|p| p.2 < self.width) {
            *p = (p.0 + second, p.1 + v, p.2 + 1);
            return;
        }
        if self.points.len() == MAX_POINTS {
            self.points = self
                .points
                .chunks(2)
                .map(|c| {
                    c.iter()
                        .fold((0.0, 0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
                })
                .collect();
            self.width *= 2;
            return self.add(second, v);
        }
        self.points.push((second, v, 1));
    }

    fn means(&self) -> Vec<(f64, f64)> {
        self.points
            .iter()
            .map(|(s, v, n)| (s / *n as f64, v / *n as f64))
            .collect()
    }
}

/// What `series.csv` gives for one (stage, agent).
#[derive(Default)]
struct FromSeries {
    track: ClientTrack,
    cpu: Points,
}

/// Per stage (in first-seen order) and agent, what `series.csv` holds;
/// empty when the file is missing or is of a version without host
/// columns. Lines that do not parse are skipped.
fn read_series(path: &Path) -> Vec<(String, BTreeMap<String, FromSeries>)> {
    use std::io::BufRead;
    let mut stages: Vec<(String, BTreeMap<String, FromSeries>)> = Vec::new();
    let Ok(file) = std::fs::File::open(path) else {
        return stages;
    };
    let mut lines = std::io::BufReader::new(file).lines();
    let has_host = matches!(lines.next(), Some(Ok(h)) if h.trim_end() == HEADER);
    if !has_host {
        return stages;
    }
    for line in lines.map_while(Result::ok) {
        let f = split_csv(&line);
        if f.len() <= TRAFFIC_COLUMNS || f[2] == CLUSTER {
            continue;
        }
        let Ok(second) = f[1].parse::<f64>() else {
            continue;
        };
        let host: Vec<&str> = f[TRAFFIC_COLUMNS..].iter().map(String::as_str).collect();
        let sample = HostSample::from_csv_fields(&host);
        if sample.is_empty() {
            continue;
        }
        let i = match stages.iter().position(|(s, _)| *s == f[0]) {
            Some(i) => i,
            None => {
                stages.push((f[0].clone(), BTreeMap::new()));
                stages.len() - 1
            }
        };
        let agent = stages[i].1.entry(f[2].clone()).or_default();
        agent.track.add(&sample);
        if let Some(busy) = sample.cpu_busy_pct {
            agent.cpu.add(second, busy);
        }
    }
    stages
}

/// Client health per stage name of run directory `dir`: `run.json`'s
/// verdicts where it has them, else judged from `series.csv`. Agents
/// filtered by `agent` when given.
pub fn read(dir: &Path, agent: Option<&str>) -> BTreeMap<String, StageClients> {
    let mut out: BTreeMap<String, StageClients> = BTreeMap::new();
    let mut series = read_series(&dir.join("series.csv"));
    let keep = |id: &str| agent.is_none_or(|a| a == id);
    if let Ok(meta) = results::read_meta(dir) {
        for stage in &meta.stages {
            let from_series = series
                .iter_mut()
                .find(|(s, _)| *s == stage.name)
                .map(|(_, m)| m);
            let mut rows = Vec::new();
            for a in stage.agents.iter().filter(|a| keep(&a.id)) {
                let (health, from) = match (&a.client, &from_series) {
                    (Some(h), _) => (h.clone(), FROM_RUN),
                    (None, Some(m)) => match m.get(&a.id) {
                        Some(f) => (f.track.finish(), FROM_SERIES),
                        None => continue,
                    },
                    (None, None) => continue,
                };
                rows.push(row(&a.id, &stage.name, health, from));
            }
            if !rows.is_empty() {
                out.entry(stage.name.clone()).or_default().rows = rows;
            }
        }
    }
    for (stage, agents) in series {
        let entry = out.entry(stage.clone()).or_default();
        for (id, f) in agents.into_iter().filter(|(id, _)| keep(id)) {
            // A stage run.json does not list (its controller died in it).
            if !entry.rows.iter().any(|r| r.agent == id) {
                entry
                    .rows
                    .push(row(&id, &stage, f.track.finish(), FROM_SERIES));
            }
            entry.cpu_busy.push((id, f.cpu.means()));
        }
    }
    out
}

fn row(agent: &str, stage: &str, health: ClientHealth, from: &str) -> ClientRow {
    ClientRow {
        agent: agent.to_string(),
        from: from.to_string(),
        warnings: health.warnings(agent, stage),
        health,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_alone_gives_the_verdict_and_points_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!("{HEADER}\n");
        let saturated = HostSample {
            cpus: 1,
            cpu_busy_pct: Some(99.0),
            proc_cpu_pct: Some(60.0),
            ..Default::default()
        };
        let idle = HostSample {
            cpus: 1,
            cpu_busy_pct: Some(5.0),
            proc_cpu_pct: Some(2.0),
            ..Default::default()
        };
        for s in 0..2000 {
            for (agent, h) in [("a,1", saturated), ("b", idle)] {
                let name = if agent.contains(',') {
                    format!("\"{agent}\"")
                } else {
                    agent.to_string()
                };
                text.push_str(&format!(
                    "w,{s},{name},1,1,0,1,1,1,1,1,{}\n",
                    h.csv_fields()
                ));
            }
            text.push_str(&format!("w,{s},*,2,2,0,2,2,1,1,1,,,,,,,,,,,,,,\n"));
        }
        std::fs::write(dir.path().join("series.csv"), text).unwrap();
        let all = read(dir.path(), None);
        let w = &all["w"];
        assert_eq!(w.rows.len(), 2);
        let a = w.rows.iter().find(|r| r.agent == "a,1").unwrap();
        assert_eq!(a.from, FROM_SERIES);
        assert!(a.warnings[0].contains("client-bound"), "{a:?}");
        let b = w.rows.iter().find(|r| r.agent == "b").unwrap();
        assert!(b.warnings.is_empty());
        assert!(w.cpu_busy.iter().all(|(_, p)| p.len() <= MAX_POINTS));
        // Filtered by agent.
        assert_eq!(read(dir.path(), Some("b"))["w"].rows.len(), 1);
        // A first-version series.csv (no host columns): nothing, no error.
        std::fs::write(dir.path().join("series.csv"), "stage,second\nw,0\n").unwrap();
        assert!(read(dir.path(), None).is_empty());
    }
}
