//! The `s3://` backend against a real Ceph RGW started by
//! `scripts/servers/rgw.sh`: the conformance suite, error classes (wrong
//! credentials, missing objects, unreachable and silent endpoints), and the
//! quickstart plan run unchanged but for its target.
//!
//! Starting RGW takes ~15 s, so the tests share one: each holds an `Arc` of
//! it, and the last one to finish drops it, which stops the cluster (a
//! `static` would never be dropped and would leak the daemons).

use std::net::TcpListener;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chorus_common::store::conformance;
use chorus_common::store::s3::{S3Config, S3Store};
use chorus_common::store::{ErrorClass, GetOptions, ObjectStore, OpenOptions};
use chorus_common::workload::timed;
use chorus_tests::servers::Server;
use chorus_tests::{bin, only_run_dir, read_json, run_quickstart};

/// The bucket the store tests use (created by `ensure_ready`).
const BUCKET: &str = "chorus-test";

/// Timeout for ops expected to fail fast (closed port, silent server): short
/// so the test is quick, long enough for a loaded 2-core machine to connect.
const SHORT_TIMEOUT: Duration = Duration::from_millis(1500);

/// The shared RGW, started by the first test that asks.
fn rgw() -> Arc<Server> {
    static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = shared.upgrade() {
        return s;
    }
    let s = Arc::new(Server::start("rgw"));
    *shared = Arc::downgrade(&s);
    s
}

fn config(server: &Server) -> S3Config {
    S3Config::custom(
        server.get("AWS_ENDPOINT_URL"),
        server.get("AWS_ACCESS_KEY_ID"),
        server.get("AWS_SECRET_ACCESS_KEY"),
    )
    .with_region(server.get("AWS_REGION"))
}

/// A prefix no other test (or earlier run) uses.
fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}/", std::process::id())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

async fn open(rest: &str, cfg: &S3Config, timeout: Duration) -> S3Store {
    let opts = OpenOptions {
        concurrency: 4,
        timeout,
        ..Default::default()
    };
    S3Store::open(rest, cfg, &opts).await.expect("open store")
}

#[test]
fn conformance_suite_passes_on_rgw() {
    let server = rgw();
    let cfg = config(&server);
    runtime().block_on(async {
        let store = open(
            &format!("{BUCKET}/conformance"),
            &cfg,
            Duration::from_secs(30),
        )
        .await;
        store.ensure_ready().await.expect("create bucket");
        store.ensure_ready().await.expect("ensure_ready twice");
        conformance::run_all(&store, &unique("suite")).await;
    });
}

#[test]
fn errors_have_the_right_class_endpoint_and_no_secret() {
    let server = rgw();
    let cfg = config(&server);
    let endpoint = server.get("AWS_ENDPOINT_URL").to_string();
    runtime().block_on(async {
        let good = open(BUCKET, &cfg, Duration::from_secs(30)).await;
        good.ensure_ready().await.expect("create bucket");
        let prefix = unique("errors");

        // Missing object, missing bucket.
        let e = good
            .get(&format!("{prefix}nope"), &GetOptions::whole())
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::NotFound, "{e}");
        assert!(e.message.contains("NoSuchKey"), "names the S3 code: {e}");
        assert_eq!(e.endpoint, endpoint);
        let no_bucket = open("chorus-no-such-bucket", &cfg, Duration::from_secs(30)).await;
        let e = no_bucket.stat("k").await.unwrap_err();
        assert_eq!(e.class, ErrorClass::NotFound, "{e}");

        // Wrong secret: the signature does not match.
        let secret = "WrongSecretKeyThatMustNeverAppear0123456";
        let mut wrong = cfg.clone();
        wrong.credentials.as_mut().unwrap().secret_access_key = secret.to_string();
        let store = open(BUCKET, &wrong, Duration::from_secs(30)).await;
        for e in [
            store
                .put(&format!("{prefix}k"), Bytes::from_static(b"x"))
                .await
                .unwrap_err(),
            store
                .get(&format!("{prefix}k"), &GetOptions::whole())
                .await
                .unwrap_err(),
            store.stat(&format!("{prefix}k")).await.unwrap_err(),
        ] {
            assert_eq!(e.class, ErrorClass::AccessDenied, "{e}");
            assert_eq!(e.endpoint, endpoint);
            let text = format!("{e} {} {e:?}", e.log_text());
            assert!(text.contains(&endpoint), "names the endpoint: {text}");
            assert!(!text.contains(secret), "leaks the secret: {text}");
        }

        // Unknown access key.
        let unknown = S3Config::custom(&endpoint, "AKIANOSUCHKEY0000000", secret);
        let store = open(BUCKET, &unknown, Duration::from_secs(30)).await;
        let e = store
            .get(&format!("{prefix}k"), &GetOptions::whole())
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::AccessDenied, "{e}");
        assert!(e.message.contains("InvalidAccessKeyId"), "{e}");
        assert!(!format!("{e:?}").contains(secret));
    });
}

#[test]
fn unreachable_and_silent_endpoints() {
    runtime().block_on(async {
        // A closed port: bind one, note it, close it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let cfg = S3Config::custom(&endpoint, "AKIDEXAMPLE", "SecretThatMustNotLeak123");
        let store = open(BUCKET, &cfg, SHORT_TIMEOUT).await;
        let e = store.get("k", &GetOptions::whole()).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Network, "{e}");
        assert_eq!(e.endpoint, endpoint);
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(!format!("{e:?}").contains("SecretThatMustNotLeak123"));

        // A server that accepts and never answers: the op times out.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", silent.local_addr().unwrap());
        let cfg = S3Config::custom(&endpoint, "AKIDEXAMPLE", "SecretThatMustNotLeak123");
        let store = open(BUCKET, &cfg, SHORT_TIMEOUT).await;
        let t = Instant::now();
        // The engine's op timer is the one bound (stores keep none).
        let e = timed(&store, "STAT", "k", SHORT_TIMEOUT, store.stat("k"))
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Timeout, "{e}");
        assert!(
            t.elapsed() < SHORT_TIMEOUT * 4,
            "no hidden retries: {:?}",
            t.elapsed()
        );
        drop(silent);
    });
}

#[test]
fn quickstart_plan_runs_unchanged_against_rgw() {
    let server = rgw();
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("runs");
    let env: Vec<(&str, &str)> = server
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let run = run_quickstart("s3://chorus-qs/qs", &results, &env);
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["total_errors"], 0, "{summary:#}");
    let ops = summary["total_ops"].as_u64().unwrap();
    assert!(ops > 2000, "only {ops} ops: {summary:#}");
}

/// A plan naming three endpoints (one RGW on 127.0.0.1-3) spreads a stage's
/// ops over them: round-robin gives each the same share, the op-log names
/// the endpoint of every op, and the summary's counters add up.
#[test]
fn plan_spreads_ops_over_three_gateways() {
    let server = rgw();
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("runs");
    let plan = format!(
        "name: multi\ntarget: s3://chorus-multi/{}\nconcurrency: 4\nobjects: {{count: 200, size: 4KiB}}\n\
         endpoints: [\"{}\"]\nbalance: round_robin\nstages:\n  - {{name: prepare, type: prepare}}\n\
         \x20 - {{name: rw, type: workload, mix: {{get: 3, put: 1}}, ops: 1200}}\n",
        unique("m").trim_end_matches('/'),
        server.get("CHORUS_RGW_ENDPOINTS")
    );
    let path = tmp.path().join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    let out = std::process::Command::new(bin("controller"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
            "--quiet",
        ])
        .envs(&server.env)
        .output()
        .expect("run controller");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run_dir(&results);
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["total_errors"], 0, "{summary:#}");
    let rw = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "rw")
        .unwrap();
    let endpoints = rw["endpoints"].as_array().expect("per-endpoint rows");
    assert_eq!(endpoints.len(), 3, "{rw:#}");
    // Two agents, each round-robin over 3 endpoints for its 600 ops.
    for e in endpoints {
        assert_eq!(e["requests"], 400, "{e}");
        assert_eq!(e["errors"], 0);
    }
    let bytes: u64 = endpoints.iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
    let all = rw["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "ALL")
        .unwrap();
    assert_eq!(
        bytes,
        all["bytes"].as_u64().unwrap(),
        "endpoint bytes add up to the stage's"
    );

    let timeline = chorus_tests::Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (stage, endpoint) = (timeline.column("stage"), timeline.column("endpoint"));
    for e in endpoints {
        let name = e["endpoint"].as_str().unwrap();
        let n = stage
            .iter()
            .zip(&endpoint)
            .filter(|(s, ep)| **s == "rw" && **ep == name)
            .count();
        assert_eq!(n, 400, "op-log records naming {name}");
    }
}

/// Endpoints bound to pools: with two pools (CPU 0 and CPU 1) and gateway
/// .1 bound to pool 0, .2 and .3 to pool 1, the workers on pool 0 (even
/// workers) send every op to .1, those on pool 1 only to .2 and .3.
#[test]
fn endpoints_bound_to_pools_serve_only_their_workers() {
    let server = rgw();
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("runs");
    let port = server
        .get("AWS_ENDPOINT_URL")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let plan = format!(
        "name: bound\ntarget: s3://chorus-bound/{}\nconcurrency: 4\npinning: [\"0\", \"1\"]\n\
         objects: {{count: 100, size: 1KiB}}\n\
         endpoints: [{{url: \"http://127.0.0.1:{port}\", pool: 0}}, {{url: \"http://127.0.0.{{2...3}}:{port}\", pool: 1}}]\n\
         stages:\n  - {{name: prepare, type: prepare}}\n\
         \x20 - {{name: rw, type: workload, mix: {{get: 3, put: 1}}, ops: 800}}\n",
        unique("b").trim_end_matches('/'),
    );
    let path = tmp.path().join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    let out = std::process::Command::new(bin("controller"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--embedded",
            "1",
            "--results",
            results.to_str().unwrap(),
            "--quiet",
        ])
        .envs(&server.env)
        .output()
        .expect("run controller");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run_dir(&results);
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["total_errors"], 0, "{summary:#}");

    let timeline = chorus_tests::Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (stage, thread, endpoint) = (
        timeline.column("stage"),
        timeline.column("thread"),
        timeline.column("endpoint"),
    );
    let one = format!("http://127.0.0.1:{port}");
    let mut seen = std::collections::BTreeSet::new();
    for ((s, t), e) in stage.iter().zip(&thread).zip(&endpoint) {
        if *s != "rw" {
            continue;
        }
        let even = t.parse::<u32>().unwrap() % 2 == 0;
        assert_eq!(
            even,
            *e == one,
            "worker {t} (pool {}) sent an op to {e}",
            u32::from(!even)
        );
        seen.insert(e.to_string());
    }
    assert_eq!(seen.len(), 3, "all three gateways served: {seen:?}");
}
