//! The `gs://` backend against a real fake-gcs-server started by
//! `scripts/servers/fake-gcs.sh`: the conformance suite, error classes
//! (missing objects and buckets, unreachable and silent endpoints, each
//! naming its endpoint), and the quickstart plan run unchanged but for its
//! target. fake-gcs-server has no authentication, so wrong credentials
//! cannot be tested against it; the status → class mapping for 401/403 is
//! unit-tested in `chorus_common::store::gcs::error`.
//!
//! The tests share one server: each holds an `Arc` of it and the last to
//! finish drops it, which stops it (a `static` would never be dropped).

use std::net::TcpListener;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chorus_common::store::conformance;
use chorus_common::store::gcs::{GcsConfig, GcsStore};
use chorus_common::store::{
    ErrorClass, GetOptions, ObjectStore, OpenOptions, PartPlan, StoreError,
};
use chorus_common::workload::timed;
use chorus_tests::sdk;
use chorus_tests::servers::Server;
use chorus_tests::{read_json, run_quickstart};

/// Timeout for ops expected to fail fast (closed port, silent server):
/// short so the test is quick, long enough for a loaded 2-core machine.
const SHORT_TIMEOUT: Duration = Duration::from_millis(1500);

/// Timeout for ops expected to succeed, generous for a busy machine.
const LONG_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared fake-gcs-server, started by the first test that asks.
fn fake_gcs() -> Arc<Server> {
    static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = shared.upgrade() {
        return s;
    }
    let started = Instant::now();
    let s = Arc::new(Server::start("fake-gcs"));
    eprintln!("fake-gcs-server started in {:?}", started.elapsed());
    *shared = Arc::downgrade(&s);
    s
}

fn endpoint(server: &Server) -> String {
    server.get("STORAGE_EMULATOR_HOST").to_string()
}

/// A bucket name no other test (or earlier run) uses: lowercase letters,
/// digits and dashes, at most 63 characters.
fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut s = format!("{name}-{}-{nanos}", std::process::id());
    s.truncate(63);
    s
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

async fn open(bucket: &str, endpoint: &str, timeout: Duration) -> GcsStore {
    let opts = OpenOptions {
        concurrency: 4,
        timeout,
        ..Default::default()
    };
    GcsStore::with_config(&format!("{bucket}/p"), GcsConfig::emulator(endpoint), &opts)
        .await
        .expect("open store")
}

/// Asserts `e` is of `class` and names `endpoint`.
fn check(e: &StoreError, class: ErrorClass, endpoint: &str) {
    // Shown with --nocapture, to read what users will see.
    eprintln!("{e}");
    assert_eq!(e.class, class, "{e}");
    assert_eq!(e.endpoint, endpoint, "{e}");
    assert!(format!("{e}").contains(endpoint), "names its endpoint: {e}");
}

#[test]
fn conformance_suite_passes_on_fake_gcs() {
    let server = fake_gcs();
    runtime().block_on(async {
        let bucket = unique("conf");
        let store = open(&bucket, &endpoint(&server), LONG_TIMEOUT).await;
        store.ensure_ready().await.expect("create bucket");
        store.ensure_ready().await.expect("ensure_ready twice");
        // fake-gcs-server closes the keep-alive connection after a 416
        // without saying so (curl reports it dead), so the request after it
        // on the same pooled connection can be reset. The range-past-end
        // probe goes through its own store instance, with its own pool.
        let probe = open(&bucket, &endpoint(&server), LONG_TIMEOUT).await;
        let started = Instant::now();
        conformance::run_all_with_probe(&store, &probe, "suite/").await;
        eprintln!("conformance on fake-gcs took {:?}", started.elapsed());
    });
}

#[test]
fn missing_objects_and_buckets_are_not_found() {
    let server = fake_gcs();
    let ep = endpoint(&server);
    runtime().block_on(async {
        let store = open(&unique("missing"), &ep, LONG_TIMEOUT).await;
        let e = store.get("nope", &GetOptions::whole()).await.unwrap_err();
        check(&e, ErrorClass::NotFound, &ep);
        store.ensure_ready().await.expect("create bucket");
        let e = store.get("nope", &GetOptions::whole()).await.unwrap_err();
        check(&e, ErrorClass::NotFound, &ep);
        assert!(e.message.contains("404"), "status in the message: {e}");
        let e = store.stat("nope").await.unwrap_err();
        check(&e, ErrorClass::NotFound, &ep);
        let e = store.delete("nope").await.unwrap_err();
        check(&e, ErrorClass::NotFound, &ep);
    });
}

#[test]
fn empty_objects_and_unaligned_multipart() {
    let server = fake_gcs();
    runtime().block_on(async {
        let store = open(&unique("edge"), &endpoint(&server), LONG_TIMEOUT).await;
        store.ensure_ready().await.expect("create bucket");
        store.put("e", Bytes::new()).await.expect("put empty");
        let g = store
            .get("e", &GetOptions::keep())
            .await
            .expect("get empty");
        assert_eq!((g.bytes, g.data.as_deref()), (0, Some(&b""[..])));
        store.delete("e").await.expect("delete");

        // Parts must be multiples of 256 KiB: a clear error, nothing sent.
        let part = |_: u64, len: u64| Bytes::from(vec![0u8; len as usize]);
        let e = store
            .put_multipart("m", PartPlan::serial(300_000, 100_000), &part)
            .await
            .unwrap_err();
        assert!(e.message.contains("256 KiB"), "{e}");
    });
}

#[test]
fn unreachable_endpoint_is_network_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ep = format!("http://127.0.0.1:{port}");
    runtime().block_on(async {
        let store = open("b", &ep, SHORT_TIMEOUT).await;
        let e = store.put("k", Bytes::from_static(b"v")).await.unwrap_err();
        check(&e, ErrorClass::Network, &ep);
        let e = store.get("k", &GetOptions::whole()).await.unwrap_err();
        check(&e, ErrorClass::Network, &ep);
    });
}

#[test]
fn silent_endpoint_is_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    runtime().block_on(async {
        let store = open("b", &ep, SHORT_TIMEOUT).await;
        let started = Instant::now();
        // The engine's op timer is the one bound (stores keep none).
        let e = timed(&store, "STAT", "k", SHORT_TIMEOUT, store.stat("k"))
            .await
            .unwrap_err();
        check(&e, ErrorClass::Timeout, &ep);
        assert!(
            started.elapsed() < SHORT_TIMEOUT * 4,
            "the timeout bounds the op: {:?}",
            started.elapsed()
        );
    });
    drop(listener);
}

#[test]
fn quickstart_runs_unchanged_against_fake_gcs() {
    let server = fake_gcs();
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("runs");
    let target = format!("gs://{}/qs", unique("qs"));
    let started = Instant::now();
    // The emulator only in the child's environment, never in ours.
    let host = endpoint(&server);
    let run = run_quickstart(
        &target,
        &results,
        &[("STORAGE_EMULATOR_HOST", host.as_str())],
    );
    eprintln!("quickstart on fake-gcs took {:?}", started.elapsed());

    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["total_errors"], 0, "{summary:#}");
    let total_ops = summary["total_ops"].as_u64().unwrap();
    assert!(
        total_ops > 2000,
        "prepare alone is 2000 ops; got {total_ops}"
    );
}

/// Reads what [`object_api_is_what_the_gcs_sdk_sees`] made, with
/// google-cloud-storage against the emulator (`STORAGE_EMULATOR_HOST`,
/// anonymous credentials): argv is the bucket, the store's prefix and a
/// JSON request (objects to download, a prefix to list); prints what the
/// SDK saw as JSON.
const GCS_SDK_SCRIPT: &str = r#"
import hashlib, json, sys
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
bucket, prefix, ask = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = storage.Client(project="chorus-test", credentials=AnonymousCredentials())
b = client.bucket(bucket)
out = {"objects": {}}
for name in ask.get("download", []):
    data = b.blob(prefix + name).download_as_bytes()
    out["objects"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
if "list" in ask:
    out["listed"] = sorted(
        o.name[len(prefix):] for o in client.list_blobs(bucket, prefix=prefix + ask["list"])
    )
json.dump(out, sys.stdout)
"#;

/// Copy and batch delete through Chorus, each checked with the GCS SDK
/// for Python: what a user's own code would read back.
#[test]
fn object_api_is_what_the_gcs_sdk_sees() {
    use chorus_common::store::CopyPlan;
    let server = fake_gcs();
    let ep = endpoint(&server);
    let bucket = unique("api");
    runtime().block_on(async {
        let store = open(&bucket, &ep, LONG_TIMEOUT).await;
        store.ensure_ready().await.expect("create bucket");

        // Copy: a server-side rewrite of 300 KiB, the size returned.
        let src = sdk::payload(1, 300 << 10);
        store.put("src", src.clone()).await.expect("put source");
        let plan = CopyPlan {
            size: src.len() as u64,
            part_size: 8 << 20,
        };
        let copied = store.copy("src", "dst", plan).await.expect("copy");
        assert_eq!(copied, src.len() as u64);
        let e = store.copy("nope", "x", plan).await.unwrap_err();
        check(&e, ErrorClass::NotFound, &ep);

        // Batch delete: 10 of 13 keys, and one that never existed.
        for i in 0..13 {
            let data = Bytes::from(format!("d{i}"));
            store.put(&format!("del/{i:02}"), data).await.expect("put");
        }
        assert_eq!(store.batch_limit(), 100);
        let mut doomed: Vec<String> = (0..10).map(|i| format!("del/{i:02}")).collect();
        doomed.push("del/never".to_string());
        let results = store.delete_many(&doomed).await.expect("delete_many");
        assert_eq!(results.len(), doomed.len());
        for (k, r) in doomed.iter().zip(&results) {
            match k.as_str() {
                "del/never" => assert_eq!(r.as_ref().unwrap_err().class, ErrorClass::NotFound),
                _ => assert!(r.is_ok(), "{k}: {r:?}"),
            }
        }

        let ask = serde_json::json!({"download": ["src", "dst"], "list": "del/"}).to_string();
        let seen = sdk::run_python(
            "gcssdk.sh",
            GCS_SDK_SCRIPT,
            &[&bucket, "p/", &ask],
            &[("STORAGE_EMULATOR_HOST", &ep)],
        );
        let object = |name: &str| &seen["objects"][name];
        assert_eq!(object("dst")["sha256"], sdk::sha256_hex(&src), "{seen:#}");
        assert_eq!(object("dst")["size"], src.len());
        assert_eq!(object("src")["sha256"], object("dst")["sha256"]);
        let listed: Vec<&str> = seen["listed"]
            .as_array()
            .expect("listed")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(listed, ["del/10", "del/11", "del/12"]);
    });
}
