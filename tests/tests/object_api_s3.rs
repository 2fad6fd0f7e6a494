//! The `s3://` store's object API past the core ops (copy, appends, tags,
//! retention, versions, batch deletes, a bucket readied for versions or
//! object lock) against a real Ceph RGW, each op called on the store and
//! its effect checked from outside with boto3 (`scripts/boto3.sh`), so a
//! store that only agreed with itself would fail.
//!
//! Each test has its own bucket, removed with every version in it when the
//! test ends (pass or fail). RGW is shared as in `store_s3.rs`: the last
//! test to finish stops it.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use chorus_common::store::api::retain_until;
use chorus_common::store::s3::{S3Config, S3Store};
use chorus_common::store::{
    BucketSetup, CopyPlan, ErrorClass, GetOptions, ListOptions, ObjectStore, OpenOptions,
};
use chorus_tests::s3::{TestBucket, shared_rgw};
use serde_json::Value;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;

/// A store on `bucket` under `prefix/`, with the RGW's credentials.
async fn store(bucket: &TestBucket, prefix: &str) -> S3Store {
    let s = &bucket.server;
    let cfg = S3Config::custom(
        s.get("AWS_ENDPOINT_URL"),
        s.get("AWS_ACCESS_KEY_ID"),
        s.get("AWS_SECRET_ACCESS_KEY"),
    )
    .with_region(s.get("AWS_REGION"));
    let opts = OpenOptions {
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    S3Store::open(&format!("{}/{prefix}", bucket.name), &cfg, &opts)
        .await
        .expect("open store")
}

/// The (key, version id, is a delete marker) boto3 lists under `prefix`.
fn versions(bucket: &TestBucket, prefix: &str) -> Vec<(String, String, bool)> {
    bucket
        .versions(prefix)
        .into_iter()
        .map(|v| (v.key, v.version, v.delete_marker))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

/// `len` bytes no two offsets of a part apart alike (so a part copied to
/// the wrong place changes the digest).
fn pattern(len: u64, seed: u64) -> Bytes {
    (0..len)
        .map(|i| ((i * 7 + i / 4093 + seed) % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// boto3's GET of `key`: its SHA-256, size and ETag.
const GET_DIGEST: &str = r#"
import hashlib
bucket = sys.argv[1]
out = {}
for key in sys.argv[2:]:
    o = s3.get_object(Bucket=bucket, Key=key)
    body = o["Body"].read()
    out[key] = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "etag": o["ETag"]}
json.dump(out, sys.stdout)
"#;

#[test]
fn copies_small_and_multipart_have_the_source_bytes() {
    let server = shared_rgw();
    let bucket = TestBucket::new(&server, "oa-copy");
    let (small, large) = (pattern(3000, 1), pattern(12 * MIB, 2));
    runtime().block_on(async {
        let store = store(&bucket, "run").await;
        store.ensure_ready().await.expect("create bucket");
        store.put("src-small", small.clone()).await.unwrap();
        store.put("src large", large.clone()).await.unwrap();
        let plan = |size: usize| CopyPlan {
            size: size as u64,
            part_size: 5 * MIB,
        };
        let n = store
            .copy("src-small", "dst-small", plan(small.len()))
            .await
            .expect("CopyObject");
        assert_eq!(n, small.len() as u64);
        let n = store
            .copy("src large", "dst large", plan(large.len()))
            .await
            .expect("multipart copy");
        assert_eq!(n, large.len() as u64);
        // A missing source is the server's NotFound, not a success.
        let e = store.copy("nope", "dst-nope", plan(10)).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::NotFound, "{e}");
    });
    let got = bucket.boto3(GET_DIGEST, &["run/dst-small", "run/dst large"]);
    let small_got = &got["run/dst-small"];
    assert_eq!(small_got["sha256"], sha256_hex(&small), "{got}");
    let large_got = &got["run/dst large"];
    assert_eq!(large_got["size"], 12 * MIB, "{got}");
    assert_eq!(large_got["sha256"], sha256_hex(&large), "{got}");
    // A multipart object's ETag ends in its part count: 12 MiB in 5 MiB
    // parts is three, so the large copy was UploadPartCopy, not one copy.
    let etag = large_got["etag"].as_str().unwrap();
    assert!(etag.trim_matches('"').ends_with("-3"), "{etag}");
    assert!(!small_got["etag"].as_str().unwrap().contains('-'), "{got}");
}

#[test]
fn appends_concatenate_and_a_plain_object_refuses_them() {
    let server = shared_rgw();
    let bucket = TestBucket::new(&server, "oa-append");
    runtime().block_on(async {
        let store = store(&bucket, "a").await;
        store.ensure_ready().await.expect("create bucket");
        store
            .append("log", Bytes::from_static(b"hello "))
            .await
            .expect("first append creates");
        store
            .append("log", Bytes::from_static(b"world"))
            .await
            .expect("second append at the end");
        // An object a plain PUT wrote cannot be appended to on RGW: the
        // append must fail as not_supported and leave it as it was.
        store
            .put("plain", Bytes::from_static(b"abc"))
            .await
            .unwrap();
        let e = store
            .append("plain", Bytes::from_static(b"def"))
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::NotSupported, "{e}");
        assert!(e.message.contains("ObjectNotAppendable"), "{e}");
    });
    const GET: &str = r#"
bucket = sys.argv[1]
json.dump({k: s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode() for k in sys.argv[2:]}, sys.stdout)
"#;
    let got = bucket.boto3(GET, &["a/log", "a/plain"]);
    assert_eq!(got["a/log"], "hello world");
    assert_eq!(got["a/plain"], "abc", "a refused append changed nothing");
}

#[test]
fn appends_at_once_to_one_object_all_land() {
    let server = shared_rgw();
    let bucket = TestBucket::new(&server, "oa-appends");
    runtime().block_on(async {
        let store = Arc::new(store(&bucket, "c").await);
        store.ensure_ready().await.expect("create bucket");
        // Eight workers of one agent append to one object at once: each
        // must aim at the end the one before it left (RGW refuses an
        // append at a stale position).
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(
                    async move { store.append("log", Bytes::from(vec![b'a' + i; 1000])).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap().expect("every append lands");
        }
    });
    const RUNS: &str = r#"
import itertools
body = s3.get_object(Bucket=sys.argv[1], Key=sys.argv[2])["Body"].read()
json.dump([[chr(c), len(list(g))] for c, g in itertools.groupby(body)], sys.stdout)
"#;
    let runs: Vec<(String, u64)> = serde_json::from_value(bucket.boto3(RUNS, &["c/log"])).unwrap();
    assert_eq!(runs.len(), 8, "{runs:?}");
    assert!(runs.iter().all(|(_, n)| *n == 1000), "{runs:?}");
    let letters: std::collections::BTreeSet<&str> = runs.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(letters.len(), 8, "each append once: {runs:?}");
}

#[test]
fn tags_set_are_what_boto3_reads() {
    let server = shared_rgw();
    let bucket = TestBucket::new(&server, "oa-tags");
    let tags = vec![
        ("team".to_string(), "storage".to_string()),
        ("tier".to_string(), "hot 1".to_string()),
    ];
    runtime().block_on(async {
        let store = store(&bucket, "t").await;
        store.ensure_ready().await.expect("create bucket");
        store.put("obj", Bytes::from_static(b"x")).await.unwrap();
        store.put_tags("obj", &tags).await.expect("put tags");
        let mut read = store.get_tags("obj").await.expect("get tags");
        read.sort();
        assert_eq!(read, tags);
        let e = store.put_tags("missing", &tags).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::NotFound, "{e}");
    });
    const TAGS: &str = r#"
bucket, key = sys.argv[1], sys.argv[2]
json.dump(sorted([t["Key"], t["Value"]] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]), sys.stdout)
"#;
    let seen: Vec<(String, String)> =
        serde_json::from_value(bucket.boto3(TAGS, &["t/obj"])).unwrap();
    assert_eq!(seen, tags);
}

#[test]
fn versions_are_made_read_listed_and_deleted() {
    let server = shared_rgw();
    let bucket = TestBucket::new(&server, "oa-versions");
    let (v1, v2) = runtime().block_on(async {
        let store = store(&bucket, "v").await;
        store
            .ensure_ready_with(BucketSetup {
                versioning: true,
                object_lock: false,
            })
            .await
            .expect("create a versioned bucket");
        assert!(store.versioning_enabled().await.unwrap());
        let v1 = store
            .put_versioned("k", Bytes::from_static(b"first"))
            .await
            .unwrap()
            .expect("a version id");
        let v2 = store
            .put_versioned("k", Bytes::from_static(b"second!"))
            .await
            .unwrap()
            .expect("a version id");
        assert_ne!(v1, v2);
        let got = store
            .get_version("k", &v1, &GetOptions::keep())
            .await
            .expect("GET the first version");
        assert_eq!(got.data.as_deref(), Some(&b"first"[..]));
        let got = store.get("k", &GetOptions::keep()).await.unwrap();
        assert_eq!(got.data.as_deref(), Some(&b"second!"[..]), "current");
        // RGW keeps no appendable objects in a versioned bucket.
        let e = store
            .append("log", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::NotSupported, "{e}");
        (v1, v2)
    });
    let listed = versions(&bucket, "v/");
    assert_eq!(
        listed,
        {
            let mut want = vec![
                ("v/k".to_string(), v1.clone(), false),
                ("v/k".to_string(), v2.clone(), false),
            ];
            want.sort();
            want
        },
        "boto3 lists exactly the two versions"
    );
    runtime().block_on(async {
        let store = store(&bucket, "v").await;
        // The store's own listing, one entry a page: the continuation
        // carries both markers, newest first, keys without the prefix.
        store.delete("k").await.unwrap();
        store.put("other", Bytes::from_static(b"o")).await.unwrap();
        let mut opts = ListOptions {
            limit: 1,
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.list_versions("", &opts).await.expect("list versions");
            assert!(page.entries.len() <= 1);
            seen.extend(page.entries);
            match page.next {
                Some(n) => opts.continuation = Some(n),
                None => break,
            }
        }
        let brief: Vec<(&str, bool, u64)> = seen
            .iter()
            .map(|m| (m.key.as_str(), m.delete_marker, m.size))
            .collect();
        assert_eq!(
            brief,
            [
                ("k", true, 0),
                ("k", false, 7),
                ("k", false, 5),
                ("other", false, 1)
            ]
        );
        assert_eq!(seen[1].version, v2);
        assert_eq!(seen[2].version, v1);
        store.delete_version("k", &v1).await.expect("delete v1");
        let e = store
            .get_version("k", &v1, &GetOptions::keep())
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::NotFound, "{e}");
    });
    let left: Vec<(String, bool)> = versions(&bucket, "v/k")
        .into_iter()
        .map(|(_, v, marker)| (v, marker))
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&(v2, false)), "v2 stays: {left:?}");
    assert!(!left.iter().any(|(v, _)| *v == v1), "v1 gone: {left:?}");
}

#[test]
fn retention_on_an_object_lock_bucket_and_its_cleanup() {
    let server = shared_rgw();
    let bucket = TestBucket::new(&server, "oa-lock");
    let until = retain_until(3600);
    let until_secs = until.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let version = runtime().block_on(async {
        let store = store(&bucket, "r").await;
        let setup = BucketSetup {
            versioning: true,
            object_lock: true,
        };
        store.ensure_ready_with(setup).await.expect("locked bucket");
        // Again, on the bucket now there: the checks pass.
        store.ensure_ready_with(setup).await.expect("checked");
        let v = store
            .put_versioned("locked", Bytes::from_static(b"keep me"))
            .await
            .unwrap()
            .expect("a version id");
        store
            .put_retention("locked", until)
            .await
            .expect("put retention");
        v
    });
    const RETENTION: &str = r#"
import botocore
bucket, key, version = sys.argv[1:4]
r = s3.get_object_retention(Bucket=bucket, Key=key, VersionId=version)["Retention"]
try:
    s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    refused = None
except botocore.exceptions.ClientError as e:
    refused = e.response["Error"]["Code"]
json.dump({"mode": r["Mode"], "until": int(r["RetainUntilDate"].timestamp()), "refused": refused}, sys.stdout)
"#;
    let got = bucket.boto3(RETENTION, &["r/locked", &version]);
    assert_eq!(got["mode"], "GOVERNANCE", "{got}");
    assert_eq!(got["until"], until_secs, "{got}");
    assert!(
        got["refused"].is_string(),
        "a delete without bypass is refused under retention: {got}"
    );
    runtime().block_on(async {
        let store = store(&bucket, "r").await;
        let done = store
            .delete_versions(&[("locked".to_string(), version.clone())])
            .await
            .unwrap();
        assert_eq!(done.len(), 1);
        assert!(done[0].is_ok(), "{:?}", done[0]);
    });
    assert_eq!(versions(&bucket, "r/"), vec![], "no version left");
}

#[test]
fn delete_many_removes_exactly_the_keys_named() {
    let server = shared_rgw();
    let bucket = TestBucket::new(&server, "oa-batch");
    runtime().block_on(async {
        let store = store(&bucket, "d").await;
        assert_eq!(store.batch_limit(), 1000);
        store.ensure_ready().await.expect("create bucket");
        for i in 0..10 {
            store
                .put(&format!("k{i}"), Bytes::from(vec![i as u8; 10]))
                .await
                .unwrap();
        }
        let gone: Vec<String> = [0, 2, 3, 5, 7, 9].iter().map(|i| format!("k{i}")).collect();
        let results = store.delete_many(&gone).await.unwrap();
        assert_eq!(results.len(), gone.len());
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    });
    const LIST: &str = r#"
bucket = sys.argv[1]
json.dump([o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])], sys.stdout)
"#;
    let left: Vec<String> = serde_json::from_value(bucket.boto3(LIST, &[])).unwrap();
    assert_eq!(left, ["d/k1", "d/k4", "d/k6", "d/k8"]);
}

#[test]
fn an_existing_bucket_without_versions_or_lock_is_refused_clearly() {
    let server = shared_rgw();
    let bucket = TestBucket::new(&server, "oa-plain");
    let name = bucket.name.clone();
    runtime().block_on(async {
        let store = store(&bucket, "p").await;
        store.ensure_ready().await.expect("create a plain bucket");
        assert!(!store.versioning_enabled().await.unwrap());
        let e = store
            .ensure_ready_with(BucketSetup {
                versioning: true,
                object_lock: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Other, "{e}");
        for says in [
            format!("bucket `{name}`"),
            "versioning off".to_string(),
            format!(
                "aws s3api put-bucket-versioning --bucket {name} \
                 --versioning-configuration Status=Enabled"
            ),
            "drop `versioning: true`".to_string(),
        ] {
            assert!(e.message.contains(&says), "says {says:?}: {e}");
        }
        let e = store
            .ensure_ready_with(BucketSetup {
                versioning: true,
                object_lock: true,
            })
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Other, "{e}");
        assert!(
            e.message
                .contains(&format!("bucket `{name}` has no object lock"))
                && e.message.contains("only when a bucket is created"),
            "{e}"
        );
    });
    // Chorus changed nothing: versioning is still off.
    const STATUS: &str = r#"
json.dump(s3.get_bucket_versioning(Bucket=sys.argv[1]).get("Status"), sys.stdout)
"#;
    assert_eq!(bucket.boto3(STATUS, &[]), Value::Null);
}
