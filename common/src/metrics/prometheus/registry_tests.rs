//! The registry's text: escaping, counters, histogram lines; and the
//! shared responder serving it: its routes, a bound address, a request
//! head past its bound.

use std::sync::Arc;

use crate::metrics::prometheus::{BUCKETS, escape, http};
use crate::metrics::{StageMetrics, new_latency_histogram};
use crate::op::OpKind;
use crate::store::ErrorClass;
use crate::workload::OpTotals;

use super::*;

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
    assert_eq!(escape("two\nlines"), "two\\nlines");
    let m = Metrics::new();
    m.stage_begins("say \"hi\"\n", "workload");
    let text = m.render();
    assert!(
        text.contains(r#"chorus_stage_info{stage="say \"hi\"\n",kind="workload"} 1"#),
        "{text}"
    );
}

/// The value of the one line that starts with `prefix ` (labels and all).
fn value(text: &str, prefix: &str) -> f64 {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .collect();
    assert_eq!(lines.len(), 1, "{prefix} in\n{text}");
    lines[0][prefix.len() + 1..].parse().expect("a number")
}

#[test]
fn exact_counters_and_histograms_render() {
    let mut a = StageMetrics::new();
    // 0.5 µs (under the first bound), 1 ms, 1 ms, 2 s, 100 s (past the last).
    for ns in [500, 1_000_000, 1_000_000, 2_000_000_000, 100_000_000_000] {
        a.record(OpKind::Get, ns, 10, true);
    }
    a.record(OpKind::Put, 1_000_000, 7, false);
    let m = Metrics::new();
    m.stage_begins("read", "workload");
    m.agent_done("read", "a1", &a);
    m.stage_ends("read");
    let t = m.render();
    assert!(t.contains("# TYPE chorus_ops_total counter\n"), "{t}");
    assert!(t.contains("# TYPE chorus_op_duration_seconds histogram\n"));
    let l = r#"{stage="read",op="GET",agent="a1"}"#;
    assert_eq!(value(&t, &format!("chorus_ops_total{l}")), 5.0);
    assert_eq!(value(&t, &format!("chorus_bytes_total{l}")), 50.0);
    assert_eq!(value(&t, &format!("chorus_errors_total{l}")), 0.0);
    let put = r#"{stage="read",op="PUT",agent="a1"}"#;
    assert_eq!(value(&t, &format!("chorus_errors_total{put}")), 1.0);
    let h = r#"chorus_op_duration_seconds_bucket{stage="read",op="GET",le="#;
    assert_eq!(value(&t, &format!("{h}\"1.000e-6\"}}")), 1.0);
    assert_eq!(value(&t, &format!("{h}\"1.000e-3\"}}")), 3.0);
    assert_eq!(value(&t, &format!("{h}\"1.778e1\"}}")), 4.0);
    // The last finite bucket misses the 100 s op; +Inf is the count.
    assert_eq!(value(&t, &format!("{h}\"6.310e1\"}}")), 4.0);
    assert_eq!(value(&t, &format!("{h}\"+Inf\"}}")), 5.0);
    let c = r#"{stage="read",op="GET"}"#;
    assert_eq!(
        value(&t, &format!("chorus_op_duration_seconds_count{c}")),
        5.0
    );
    let sum = value(&t, &format!("chorus_op_duration_seconds_sum{c}"));
    assert!((sum - 102.0020005).abs() < 0.2, "{sum}");
    assert_eq!(value(&t, r#"chorus_stage_running{stage="read"}"#), 0.0);
    assert_eq!(value(&t, "chorus_run_finished"), 0.0);
    // Cumulative buckets never go down.
    let counts: Vec<f64> = t
        .lines()
        .filter(|l| l.starts_with(h))
        .map(|l| l.rsplit(' ').next().unwrap_or("").parse().unwrap_or(-1.0))
        .collect();
    assert_eq!(counts.len(), BUCKETS + 1);
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
}

#[test]
fn progress_and_agents_render() {
    let m = Metrics::new();
    m.stage_begins("w", "workload");
    let clock = ClockEstimate {
        offset_ns: -1_500_000,
        uncertainty_ns: 20_000,
        rtt_ns: 40_000,
        samples: 8,
        measured_at_ns: 0,
    };
    m.agent_clock("a1", Some(&clock));
    m.agent_clock("a2", None);
    let mut h = new_latency_histogram();
    h.record(2_000_000).unwrap_or_default();
    let host = HostSample {
        cpus: 2,
        cpu_busy_pct: Some(50.0),
        proc_cpu_wait_pct: Some(150.0),
        sched_lag_ms: Some(4.0),
        ..Default::default()
    };
    let get = |ops, bytes, errors, classes| OpTotals {
        op: OpKind::Get,
        ops,
        bytes,
        errors,
        classes,
    };
    let first = [get(10, 100, 1, vec![(ErrorClass::Timeout, 1)])];
    let progress = |by_op, active_workers, latency| Progress {
        by_op,
        active_workers,
        latency,
        host: &host,
    };
    m.progress("w", "a1", progress(&first, 4, Some(&h)));
    let second = [
        get(
            25,
            250,
            2,
            vec![(ErrorClass::Timeout, 1), (ErrorClass::NotFound, 1)],
        ),
        OpTotals {
            op: OpKind::Put,
            ops: 3,
            bytes: 30,
            errors: 0,
            classes: vec![],
        },
    ];
    m.progress("w", "a1", progress(&second, 3, None));
    m.agent_lost("a2");
    let t = m.render();
    let l = r#"{stage="w",agent="a1",op="GET"}"#;
    assert_eq!(value(&t, &format!("chorus_live_ops_total{l}")), 25.0);
    assert_eq!(value(&t, &format!("chorus_live_bytes_total{l}")), 250.0);
    let put = r#"chorus_live_ops_total{stage="w",agent="a1",op="PUT"}"#;
    assert_eq!(value(&t, put), 3.0);
    let errors = |class: &str| {
        let k =
            format!(r#"chorus_live_errors_total{{stage="w",agent="a1",op="GET",class="{class}"}}"#);
        value(&t, &k)
    };
    assert_eq!(errors("timeout"), 1.0);
    assert_eq!(errors("not_found"), 1.0);
    // A class with no error has no series, nor does a kind with none.
    assert!(!t.contains(r#"class="throttled""#), "{t}");
    assert!(!t.contains(r#"op="PUT",class"#), "{t}");
    let active = r#"chorus_live_active_workers{stage="w",agent="a1"}"#;
    assert_eq!(value(&t, active), 3.0);
    let c = r#"chorus_live_op_duration_seconds_count{stage="w"}"#;
    assert_eq!(value(&t, c), 1.0);
    assert_eq!(value(&t, r#"chorus_agent_up{agent="a1"}"#), 1.0);
    assert_eq!(value(&t, r#"chorus_agent_up{agent="a2"}"#), 0.0);
    let off = value(&t, r#"chorus_agent_clock_offset_seconds{agent="a1"}"#);
    assert!((off + 0.0015).abs() < 1e-12, "{off}");
    let unc = value(&t, r#"chorus_agent_clock_uncertainty_seconds{agent="a1"}"#);
    assert!((unc - 2e-5).abs() < 1e-12, "{unc}");
    assert!(!t.contains(r#"chorus_agent_clock_offset_seconds{agent="a2"}"#));
    assert_eq!(value(&t, r#"chorus_agent_cpu_busy_ratio{agent="a1"}"#), 0.5);
    assert_eq!(value(&t, r#"chorus_agent_cpus{agent="a1"}"#), 2.0);
    let wait = r#"chorus_agent_process_cpu_wait_cores{agent="a1"}"#;
    assert_eq!(value(&t, wait), 1.5);
    let lag = r#"chorus_agent_schedule_lag_max_seconds{agent="a1"}"#;
    assert_eq!(value(&t, lag), 0.004);
    // A figure not read is absent, not 0.
    assert!(!t.contains("chorus_agent_cpu_steal_ratio{"), "{t}");
    assert_eq!(value(&t, r#"chorus_stage_running{stage="w"}"#), 1.0);
    // The final figures raise the live ones, never lower them (progress
    // counted 25 ops, some of them warm-up the exact 20 leave out).
    let mut exact = StageMetrics::new();
    for _ in 0..20 {
        exact.record(OpKind::Get, 1_000_000, 20, true);
    }
    // Three failed: one more than the reports classed.
    for _ in 0..3 {
        exact.record(OpKind::Get, 1_000_000, 0, false);
    }
    m.agent_done("w", "a1", &exact);
    let t = m.render();
    assert_eq!(value(&t, &format!("chorus_live_ops_total{l}")), 25.0);
    assert_eq!(value(&t, &format!("chorus_live_bytes_total{l}")), 400.0);
    let unknown = r#"chorus_live_errors_total{stage="w",agent="a1",op="GET",class="unknown"}"#;
    assert_eq!(value(&t, unknown), 1.0);
    assert_eq!(value(&t, active), 0.0);
    m.run_finished();
    assert_eq!(value(&m.render(), "chorus_run_finished"), 1.0);
}

#[test]
fn only_get_metrics_is_served() {
    let m = Metrics::new();
    let text = |r: Vec<u8>| String::from_utf8(r).expect("utf-8");
    let ok = text(http::respond(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        &m,
    ));
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.contains("Content-Type: text/plain; version=0.0.4"));
    assert!(ok.contains("chorus_run_finished 0"));
    let q = text(http::respond(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", &m));
    assert!(q.starts_with("HTTP/1.1 200 OK\r\n"));
    let head = text(http::respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", &m));
    assert!(
        head.ends_with("\r\n\r\n") && !head.contains("chorus_"),
        "{head}"
    );
    let nf = text(http::respond(b"GET / HTTP/1.1\r\n\r\n", &m));
    assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
    let na = text(http::respond(b"POST /metrics HTTP/1.1\r\n\r\n", &m));
    assert!(na.starts_with("HTTP/1.1 405"), "{na}");
    let junk = text(http::respond(b"\xff\xfe", &m));
    assert!(junk.starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn an_address_in_use_is_refused_by_name() {
    let m = Arc::new(Metrics::new());
    let first = http::MetricsServer::bind("127.0.0.1:0", m.clone())
        .await
        .expect("bind");
    let addr = first.local_addr().to_string();
    let second = http::MetricsServer::bind(&addr, m).await;
    let err = second.err().expect("in use");
    assert!(err.contains(&addr), "{err}");
}

#[tokio::test]
async fn a_request_head_past_its_bound_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = http::MetricsServer::bind("127.0.0.1:0", Arc::new(Metrics::new()))
        .await
        .expect("bind");
    let mut s = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    // A head that never ends: the server stops reading at its bound.
    let long = format!(
        "GET /metrics HTTP/1.1\r\nX: {}",
        "a".repeat(2 * http::MAX_REQUEST_BYTES)
    );
    let _ = s.write_all(long.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}
