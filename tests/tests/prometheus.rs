//! Live Prometheus metrics (`controller run --metrics-listen`): a real
//! Prometheus server (`scripts/servers/prometheus.sh`, Debian's package)
//! scrapes the controller every second during a run of two embedded
//! agents on a `file://` target; its HTTP API then gives the stage's GET
//! count, equal to `summary.json`'s, and a `histogram_quantile` p99 within
//! the documented bucket error of the summary's exact p99; the live
//! counters, split by op kind and error class (deletes make later GETs of
//! their keys fail with `not_found`), add up to the summary's counts. The
//! live counters and active workers are also checked by scraping
//! `/metrics` ourselves while the stage runs. An address in use is
//! refused before anything runs.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_tests::scrape::{scrape, sum_lines};
use chorus_tests::servers::Server;
use chorus_tests::{bin, only_run_dir, read_json};

/// The relative error bound of a `histogram_quantile` over Chorus's
/// buckets (20 per decade from 1 µs: 10^(1/20) - 1 = 12.2%), plus HDR's own 0.1%
/// and rounding of the bounds to 4 digits (docs/metrics.md).
const QUANTILE_ERROR: f64 = 0.125;
/// How long the controller keeps serving after the run: several of the
/// test's 1 s scrapes.
const LINGER: &str = "6s";

/// A port nothing listens on now, on loopback.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn plan(dir: &Path) -> std::path::PathBuf {
    let yaml = format!(
        "name: prom\n\
         seed: 7\n\
         target: file://{}\n\
         concurrency: 2\n\
         objects:\n  prefix: p/\n  count: 300\n  size: 4KiB\n\
         stages:\n\
         \x20 - name: prepare\n    type: prepare\n\
         \x20 - name: read\n    type: workload\n    mix:\n      get: 85\n      put: 10\n      delete: 5\n    duration: 4s\n",
        dir.join("data").display()
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, yaml).expect("write plan");
    path
}

/// An instant query to Prometheus: the first result's value, if any.
fn query(url: &str, q: &str) -> Option<f64> {
    let out = Command::new("curl")
        .args(["-sfG", "--max-time", "10", "--data-urlencode"])
        .arg(format!("query={q}"))
        .arg(format!("{url}/api/v1/query"))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "query {q}: {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Every query of the Grafana dashboard in deploy/ runs on this Prometheus
/// (`query` fails the test on an error), and every Chorus metric it names
/// has series: a renamed metric breaks this, not a user's dashboard.
fn grafana_dashboard_queries_run(url: &str) {
    let path = chorus_tests::repo_root().join("deploy/grafana/chorus-run.json");
    let dash = read_json(&path);
    let mut names = std::collections::BTreeSet::new();
    let mut queries = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            // Grafana's own variable, as it would fill it in.
            query(url, &expr.replace("$__rate_interval", "5s"));
            queries += 1;
            let mut rest = expr;
            while let Some(at) = rest.find("chorus_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.insert(name);
            }
        }
    }
    assert!(queries >= 10, "{queries} queries in {}", path.display());
    for name in &names {
        let n = query(url, &format!("count({name})"));
        assert!(
            n.is_some_and(|n| n > 0.0),
            "dashboard metric {name} has no series"
        );
    }
}

/// The row of op `op` (`GET`, or `ALL` for all kinds) of stage `name` in
/// summary.json.
fn summary_row(run: &Path, name: &str, op: &str) -> serde_json::Value {
    let s = read_json(&run.join("summary.json"));
    let stage = s["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|st| st["name"] == name)
        .expect("stage");
    stage["ops"]
        .as_array()
        .expect("ops")
        .iter()
        .find(|o| o["op"] == op)
        .unwrap_or_else(|| panic!("no {op} row"))
        .clone()
}

/// The GET row of stage `name`: count and p99 (µs).
fn summary_get(run: &Path, name: &str) -> (u64, f64) {
    let get = summary_row(run, name, "GET");
    (
        get["count"].as_u64().expect("count"),
        get["latency_us"]["p99"].as_f64().expect("p99"),
    )
}

/// Stage `name`'s ops and failed ops, all kinds (its `ALL` row).
fn summary_totals(run: &Path, name: &str) -> (u64, u64) {
    let all = summary_row(run, name, "ALL");
    let n = |key: &str| all[key].as_u64().expect(key);
    (n("count"), n("errors"))
}

#[test]
fn prometheus_sees_the_summarys_get_count_and_p99() {
    let tmp = tempfile::tempdir().expect("tmp");
    let addr = format!("127.0.0.1:{}", free_port());
    let prom = Server::start_with_env("prometheus", &[("CHORUS_PROMETHEUS_TARGETS", &addr)]);
    let url = prom.get("PROMETHEUS_URL").to_string();
    let results = tmp.path().join("runs");
    let started = Instant::now();
    let mut child = Command::new(bin("controller"))
        .arg("run")
        .arg(plan(tmp.path()))
        .args(["--embedded", "2", "--quiet", "--results"])
        .arg(&results)
        .args(["--metrics-listen", &addr, "--metrics-linger", LINGER])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start controller");
    // Live: while the stage runs, our own scrapes see its ops grow, and
    // all its workers (2 agents x concurrency 2) running.
    let mut live = Vec::new();
    let mut active = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while live.len() < 2 && Instant::now() < deadline {
        if let Some(text) = scrape(&addr)
            && text.contains(r#"chorus_stage_running{stage="read"} 1"#)
        {
            let ops = sum_lines(&text, r#"chorus_live_ops_total{stage="read","#);
            active = active.max(sum_lines(
                &text,
                r#"chorus_live_active_workers{stage="read","#,
            ));
            if ops > 0.0 && live.last().is_none_or(|&l| ops > l) {
                live.push(ops);
            }
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(
        live.len() >= 2,
        "live ops never grew during the stage: {live:?}"
    );
    assert_eq!(active, 4.0, "active workers while the stage ran");

    // The results line comes before the linger: Prometheus is asked then,
    // while the controller still serves the final figures.
    let stdout = child.stdout.take().expect("stdout");
    let mut run_line = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout line");
        if line.starts_with("results: ") {
            run_line = line;
            break;
        }
    }
    assert!(!run_line.is_empty(), "no results line");
    let run = only_run_dir(&results);
    let (count, p99_us) = summary_get(&run, "read");
    assert!(count > 100, "{count}");
    let total = r#"sum(chorus_ops_total{stage="read",op="GET"})"#;
    let finished = "max(chorus_run_finished)";
    let deadline = Instant::now() + Duration::from_secs(5);
    // Until a scrape after the run is in (1 s interval, within the linger).
    while query(&url, finished) != Some(1.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(query(&url, finished), Some(1.0), "no scrape in the linger");
    assert_eq!(
        query(&url, total),
        Some(count as f64),
        "Prometheus's GET count"
    );
    // The live figures by kind and class add up to the exact ones (no
    // warm-up in this plan, so progress counted the same ops).
    let live_get = r#"sum(chorus_live_ops_total{stage="read",op="GET"})"#;
    assert_eq!(query(&url, live_get), Some(count as f64));
    let (ops, errors) = summary_totals(&run, "read");
    let live_total = r#"sum(chorus_live_ops_total{stage="read"})"#;
    assert_eq!(query(&url, live_total), Some(ops as f64));
    assert!(errors > 0, "the plan's deletes should make not_found GETs");
    let not_found = r#"sum(chorus_live_errors_total{stage="read",class="not_found"})"#;
    assert_eq!(query(&url, not_found), Some(errors as f64));
    let done = r#"sum(chorus_live_active_workers{stage="read"})"#;
    assert_eq!(query(&url, done), Some(0.0), "workers after the stage");
    let p99 = query(
        &url,
        r#"histogram_quantile(0.99, sum by (le) (chorus_op_duration_seconds_bucket{stage="read",op="GET"}))"#,
    )
    .expect("a p99");
    let exact = p99_us / 1e6;
    let err = (p99 - exact).abs() / exact;
    assert!(
        err <= QUANTILE_ERROR,
        "Prometheus p99 {p99} s vs exact {exact} s: {:.1}% off",
        err * 100.0
    );
    grafana_dashboard_queries_run(&url);
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        stderr.contains(&format!("http://{addr}/metrics")),
        "{stderr}"
    );
    // Gone once the linger is over.
    assert!(scrape(&addr).is_none());
    eprintln!(
        "GET count {count}, p99 exact {:.3} us, Prometheus {:.3} us ({:.1}% off), live {live:?}, {:.1} s",
        exact * 1e6,
        p99 * 1e6,
        err * 100.0,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_metrics_address_in_use_is_refused_before_the_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let results = tmp.path().join("runs");
    let out = Command::new(bin("controller"))
        .arg("run")
        .arg(plan(tmp.path()))
        .args(["--embedded", "2", "--quiet", "--results"])
        .arg(&results)
        .args(["--metrics-listen", &addr])
        .output()
        .expect("run controller");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(!results.exists(), "a run started");
    assert!(!tmp.path().join("data").exists(), "the target was written");
    drop(taken);
}

#[test]
fn an_agents_metrics_address_in_use_is_refused_before_it_listens() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(bin("agent"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--insecure",
            "--metrics-listen",
            &addr,
        ])
        .output()
        .expect("run agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    // It never said it listens: nothing would have been measured.
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
}
