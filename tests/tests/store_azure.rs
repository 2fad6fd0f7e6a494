//! The `az://` backend against a real Azurite started by
//! `scripts/servers/azurite.sh`: the conformance suite, error classes
//! (wrong key, wrong SAS, missing objects, unreachable and silent
//! endpoints, each naming its endpoint and no secret), and the quickstart
//! plan run unchanged but for its target.
//!
//! The tests share one Azurite: each holds an `Arc` of it and the last to
//! finish drops it, which stops the server (a `static` would never be
//! dropped and would leak the node process).

use std::net::TcpListener;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chorus_common::store::azure::{AzureConfig, AzureCredential, AzureStore, EMULATOR_ACCOUNT};
use chorus_common::store::conformance;
use chorus_common::store::{ErrorClass, GetOptions, ObjectStore, OpenOptions, StoreError};
use chorus_common::workload::timed;
use chorus_tests::sdk;
use chorus_tests::servers::Server;
use chorus_tests::{read_json, run_quickstart};

/// Timeout for ops expected to fail fast (closed port, silent server):
/// short so the test is quick, long enough for a loaded 2-core machine.
const SHORT_TIMEOUT: Duration = Duration::from_millis(1500);

/// Timeout for ops expected to succeed, generous for a busy machine.
const LONG_TIMEOUT: Duration = Duration::from_secs(30);

/// A well-formed (base64, 64 bytes) account key that is not Azurite's.
const WRONG_KEY: &str =
    "d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3dw==";

/// A well-formed SAS whose signature is wrong.
const WRONG_SAS_SIG: &str = "bm90LXRoZS1yZWFsLXNpZ25hdHVyZQ";

/// The shared Azurite, started by the first test that asks.
fn azurite() -> Arc<Server> {
    static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = shared.upgrade() {
        return s;
    }
    let started = Instant::now();
    let s = Arc::new(Server::start("azurite"));
    eprintln!("azurite started in {:?}", started.elapsed());
    *shared = Arc::downgrade(&s);
    s
}

fn config(server: &Server) -> AzureConfig {
    AzureConfig::new(
        server.get("AZURE_STORAGE_ACCOUNT"),
        AzureCredential::Key(server.get("AZURE_STORAGE_KEY").to_string()),
        Some(server.get("AZURE_STORAGE_ENDPOINT").to_string()),
    )
}

/// A container name no other test (or earlier run) uses: lowercase letters,
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

fn open(container: &str, cfg: AzureConfig, timeout: Duration) -> AzureStore {
    let opts = OpenOptions {
        concurrency: 4,
        timeout,
        ..Default::default()
    };
    AzureStore::with_config(&format!("{}/{container}/p", cfg.account), cfg, &opts)
        .expect("open store")
}

/// Asserts `e` is of `class`, names `endpoint`, and holds none of `secrets`.
fn check(e: &StoreError, class: ErrorClass, endpoint: &str, secrets: &[&str]) {
    // Shown with --nocapture, to read what users will see.
    eprintln!("{e}");
    assert_eq!(e.class, class, "{e}");
    assert_eq!(e.endpoint, endpoint, "{e}");
    let text = format!("{e} | {} | {e:?}", e.log_text());
    assert!(
        text.contains(endpoint),
        "the error names its endpoint: {text}"
    );
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into: {text}");
    }
}

#[test]
fn conformance_suite_passes_on_azurite() {
    let server = azurite();
    runtime().block_on(async {
        let store = open(&unique("conf"), config(&server), LONG_TIMEOUT);
        store.ensure_ready().await.expect("create container");
        store.ensure_ready().await.expect("ensure_ready twice");
        let started = Instant::now();
        conformance::run_all(&store, "suite/").await;
        eprintln!("conformance on azurite took {:?}", started.elapsed());
    });
}

#[test]
fn wrong_credentials_are_access_denied_without_secrets() {
    let server = azurite();
    let endpoint = server.get("AZURE_STORAGE_ENDPOINT").to_string();
    let right_key = server.get("AZURE_STORAGE_KEY").to_string();
    runtime().block_on(async {
        let container = unique("creds");
        let good = open(&container, config(&server), LONG_TIMEOUT);
        good.ensure_ready().await.expect("create container");
        good.put("k", Bytes::from_static(b"v")).await.expect("put");

        let mut cfg = config(&server);
        cfg.credential = AzureCredential::Key(WRONG_KEY.to_string());
        let bad = open(&container, cfg, LONG_TIMEOUT);
        let secrets = [WRONG_KEY, right_key.as_str()];
        let e = bad.put("k2", Bytes::from_static(b"v")).await.unwrap_err();
        check(&e, ErrorClass::AccessDenied, &endpoint, &secrets);
        assert!(e.message.contains("403"), "status in the message: {e}");
        let e = bad.get("k", &GetOptions::whole()).await.unwrap_err();
        check(&e, ErrorClass::AccessDenied, &endpoint, &secrets);
        // HEAD has no body: the class still comes from the status.
        let e = bad.stat("k").await.unwrap_err();
        check(&e, ErrorClass::AccessDenied, &endpoint, &secrets);

        // A SAS travels in the URL: its signature must not appear either.
        let sas = format!(
            "sv=2021-08-06&ss=b&srt=sco&sp=rwdlac&se=2099-01-01T00:00:00Z&spr=http&sig={WRONG_SAS_SIG}"
        );
        let mut cfg = config(&server);
        cfg.credential = AzureCredential::Sas(sas.clone());
        let bad = open(&container, cfg, LONG_TIMEOUT);
        let e = bad.get("k", &GetOptions::whole()).await.unwrap_err();
        check(&e, ErrorClass::AccessDenied, &endpoint, &[WRONG_SAS_SIG, &sas]);

        good.delete("k").await.expect("delete");
    });
}

#[test]
fn missing_objects_and_containers_are_not_found() {
    let server = azurite();
    let endpoint = server.get("AZURE_STORAGE_ENDPOINT").to_string();
    runtime().block_on(async {
        let store = open(&unique("missing"), config(&server), LONG_TIMEOUT);
        // Before ensure_ready: the container itself is missing.
        let e = store.get("nope", &GetOptions::whole()).await.unwrap_err();
        check(&e, ErrorClass::NotFound, &endpoint, &[]);
        store.ensure_ready().await.expect("create container");
        let e = store.get("nope", &GetOptions::whole()).await.unwrap_err();
        check(&e, ErrorClass::NotFound, &endpoint, &[]);
        assert!(e.message.contains("BlobNotFound"), "service code: {e}");
        let e = store.stat("nope").await.unwrap_err();
        check(&e, ErrorClass::NotFound, &endpoint, &[]);
        let e = store.delete("nope").await.unwrap_err();
        check(&e, ErrorClass::NotFound, &endpoint, &[]);
    });
}

#[test]
fn empty_objects_read_back_empty() {
    let server = azurite();
    runtime().block_on(async {
        let store = open(&unique("empty"), config(&server), LONG_TIMEOUT);
        store.ensure_ready().await.expect("create container");
        store.put("e", Bytes::new()).await.expect("put empty");
        let g = store
            .get("e", &GetOptions::keep())
            .await
            .expect("get empty");
        assert_eq!((g.bytes, g.data.as_deref()), (0, Some(&b""[..])));
        store.delete("e").await.expect("delete");
    });
}

#[test]
fn unreachable_endpoint_is_network_error() {
    // A port that was free a moment ago and has no listener now.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}/{EMULATOR_ACCOUNT}");
    runtime().block_on(async {
        let store = open("c", AzureConfig::azurite(&endpoint), SHORT_TIMEOUT);
        let e = store.put("k", Bytes::from_static(b"v")).await.unwrap_err();
        check(&e, ErrorClass::Network, &endpoint, &[]);
        let e = store.stat("k").await.unwrap_err();
        check(&e, ErrorClass::Network, &endpoint, &[]);
    });
}

#[test]
fn silent_endpoint_is_timeout() {
    // Accepts connections (the kernel does, from the backlog) but never
    // answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}/{EMULATOR_ACCOUNT}");
    runtime().block_on(async {
        let store = open("c", AzureConfig::azurite(&endpoint), SHORT_TIMEOUT);
        let started = Instant::now();
        // The engine's op timer is the one bound (stores keep none).
        let whole = GetOptions::whole();
        let e = timed(&store, "GET", "k", SHORT_TIMEOUT, store.get("k", &whole))
            .await
            .unwrap_err();
        check(&e, ErrorClass::Timeout, &endpoint, &[]);
        assert!(
            started.elapsed() < SHORT_TIMEOUT * 4,
            "the timeout bounds the op: {:?}",
            started.elapsed()
        );
    });
    drop(listener);
}

#[test]
fn quickstart_runs_unchanged_against_azurite() {
    let server = azurite();
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("runs");
    let target = format!("az://{EMULATOR_ACCOUNT}/{}/qs", unique("qs"));
    let started = Instant::now();
    // Credentials only in the child's environment, never in ours.
    let env = [
        "AZURE_STORAGE_ENDPOINT",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_KEY",
    ]
    .map(|k| (k, server.get(k)));
    let run = run_quickstart(&target, &results, &env);
    eprintln!("quickstart on azurite took {:?}", started.elapsed());

    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["total_errors"], 0, "{summary:#}");
    let total_ops = summary["total_ops"].as_u64().unwrap();
    assert!(
        total_ops > 2000,
        "prepare alone is 2000 ops; got {total_ops}"
    );
    // The key never reaches the results.
    let key = server.get("AZURE_STORAGE_KEY");
    for f in ["plan.yaml", "run.json", "summary.json", "summary.txt"] {
        let text = std::fs::read_to_string(run.join(f)).unwrap();
        assert!(!text.contains(key), "{f} holds the account key");
    }
}

/// Reads what [`object_api_is_what_the_azure_sdk_sees`] made, with
/// azure-storage-blob: argv is the connection string, the container, the
/// store's prefix and a JSON request (blobs to download, to read tags of,
/// to tag, a prefix to list); prints what the SDK saw as JSON.
const AZ_SDK_SCRIPT: &str = r#"
import hashlib, json, sys
from azure.storage.blob import BlobServiceClient
conn, container, prefix, ask = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
c = BlobServiceClient.from_connection_string(conn).get_container_client(container)
blob = lambda name: c.get_blob_client(prefix + name)
out = {"blobs": {}, "tags": {}}
for name in ask.get("download", []):
    data = blob(name).download_blob().readall()
    props = blob(name).get_blob_properties()
    out["blobs"][name] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "type": getattr(props.blob_type, "value", str(props.blob_type)),
        "blocks": props.append_blob_committed_block_count,
    }
for name, tags in ask.get("set_tags", {}).items():
    blob(name).set_blob_tags(tags)
for name in ask.get("tags", []):
    out["tags"][name] = blob(name).get_blob_tags()
if "list" in ask:
    out["listed"] = sorted(
        b.name[len(prefix):] for b in c.list_blobs(name_starts_with=prefix + ask["list"])
    )
json.dump(out, sys.stdout)
"#;

/// Asks the Azure SDK about `container` (see [`AZ_SDK_SCRIPT`]).
fn azure_sdk(server: &Server, container: &str, ask: serde_json::Value) -> serde_json::Value {
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName={};AccountKey={};BlobEndpoint={};",
        server.get("AZURE_STORAGE_ACCOUNT"),
        server.get("AZURE_STORAGE_KEY"),
        server.get("AZURE_STORAGE_ENDPOINT"),
    );
    let ask = ask.to_string();
    sdk::run_python(
        "azsdk.sh",
        AZ_SDK_SCRIPT,
        &[&conn, container, "p/", &ask],
        &[],
    )
}

/// Copy, append, tags and batch delete through Chorus, each checked with
/// the Azure SDK for Python: what a user's own code would read back.
#[test]
fn object_api_is_what_the_azure_sdk_sees() {
    use chorus_common::store::CopyPlan;
    let server = azurite();
    let container = unique("api");
    runtime().block_on(async {
        let store = open(&container, config(&server), LONG_TIMEOUT);
        store.ensure_ready().await.expect("create container");

        // Copy: a server-side copy of 300 KiB, the size returned.
        let src = sdk::payload(1, 300 << 10);
        store.put("src", src.clone()).await.expect("put source");
        let plan = CopyPlan {
            size: src.len() as u64,
            part_size: 8 << 20,
        };
        let copied = store.copy("src", "dst", plan).await.expect("copy");
        assert_eq!(copied, src.len() as u64);

        // Append: a new blob, then distinct data, then more than one 4 MiB
        // block's worth (two Append Block calls).
        let parts = [
            sdk::payload(2, 1000),
            sdk::payload(3, 777),
            sdk::payload(4, (4 << 20) + 5),
        ];
        for p in &parts {
            store.append("log", p.clone()).await.expect("append");
        }
        let whole: Vec<u8> = parts.concat();
        // Appending to a block blob is the service's error, not ours.
        let e = store
            .append("src", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        eprintln!("{e}");
        assert_eq!(e.class, ErrorClass::Other, "{e}");
        assert!(e.message.contains("409"), "{e}");

        // Tags: set by Chorus on one blob, by the SDK on another.
        let tags = vec![
            ("team".to_string(), "chorus".to_string()),
            ("stage".to_string(), "copy-1".to_string()),
        ];
        store.put_tags("dst", &tags).await.expect("put tags");
        store
            .put("tagged-by-sdk", Bytes::from_static(b"t"))
            .await
            .expect("put");

        // Batch delete: 10 of 13 keys, and one that never existed.
        for i in 0..13 {
            let data = Bytes::from(format!("d{i}"));
            store.put(&format!("del/{i:02}"), data).await.expect("put");
        }
        assert_eq!(store.batch_limit(), 256);
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

        let seen = azure_sdk(
            &server,
            &container,
            serde_json::json!({
                "download": ["src", "dst", "log"],
                "set_tags": {"tagged-by-sdk": {"owner": "sdk", "n": "2"}},
                "tags": ["dst", "tagged-by-sdk"],
                "list": "del/",
            }),
        );
        let blob = |name: &str| &seen["blobs"][name];
        assert_eq!(blob("dst")["sha256"], sdk::sha256_hex(&src), "{seen:#}");
        assert_eq!(blob("dst")["sha256"], blob("src")["sha256"]);
        assert_eq!(blob("log")["sha256"], sdk::sha256_hex(&whole), "{seen:#}");
        assert_eq!(blob("log")["size"], whole.len());
        assert_eq!(blob("log")["type"], "AppendBlob", "{seen:#}");
        // 4 MiB at most per block (Azurite takes larger ones; Azure not).
        assert_eq!(blob("log")["blocks"], 4, "{seen:#}");
        assert_eq!(blob("src")["type"], "BlockBlob", "{seen:#}");
        assert_eq!(
            seen["tags"]["dst"],
            serde_json::json!({"team": "chorus", "stage": "copy-1"})
        );
        let listed: Vec<&str> = seen["listed"]
            .as_array()
            .expect("listed")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(listed, ["del/10", "del/11", "del/12"]);

        // get_tags agrees with the SDK, on both blobs.
        let sorted = |mut t: Vec<(String, String)>| {
            t.sort();
            t
        };
        let ours = store.get_tags("dst").await.expect("get tags");
        assert_eq!(sorted(ours), sorted(tags));
        let ours = store.get_tags("tagged-by-sdk").await.expect("get tags");
        let theirs: Vec<(String, String)> = seen["tags"]["tagged-by-sdk"]
            .as_object()
            .expect("tags")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        assert_eq!(theirs.len(), 2, "{seen:#}");
        assert_eq!(sorted(ours), sorted(theirs));

        // Missing blobs are not_found for every new op.
        let e = store.get_tags("nope").await.unwrap_err();
        assert_eq!(e.class, ErrorClass::NotFound, "{e}");
        let e = store.copy("nope", "x", plan).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::NotFound, "{e}");
    });
}
