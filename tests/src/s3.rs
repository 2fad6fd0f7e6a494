//! RGW tests' shared parts: one RGW for a test binary, boto3 (through
//! `scripts/boto3.sh`, see [`crate::sdk`]) as the client that is not
//! Chorus, and a bucket per test removed with every version in it
//! (bypassing governance retention) when the test ends, pass or fail.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::repo_root;
use crate::servers::Server;

/// What every boto3 script starts with: `json`, `sys` and a client `s3`.
pub const BOTO3_PRELUDE: &str = "import json, sys\nimport boto3\ns3 = boto3.client('s3')\n";

/// The test binary's RGW, started by the first test that asks and stopped
/// when the last one holding it ends.
pub fn shared_rgw() -> Arc<Server> {
    static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = shared.upgrade() {
        return s;
    }
    let s = Arc::new(Server::start("rgw"));
    *shared = Arc::downgrade(&s);
    s
}

/// Runs `script` (Python after [`BOTO3_PRELUDE`], `args` in
/// `sys.argv[1:]`) against `server`, whatever it answers.
pub fn boto3_output(server: &Server, script: &str, args: &[&str]) -> std::io::Result<Output> {
    let mut child = Command::new("bash")
        .arg(repo_root().join("scripts/boto3.sh"))
        .args(args)
        .envs(&server.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("{BOTO3_PRELUDE}{script}").as_bytes())?;
    }
    child.wait_with_output()
}

/// [`boto3_output`] that must succeed and print one JSON value, returned.
pub fn boto3(server: &Server, script: &str, args: &[&str]) -> Value {
    let env: Vec<(&str, &str)> = server
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    crate::sdk::run_python("boto3.sh", &format!("{BOTO3_PRELUDE}{script}"), args, &env)
}

/// One version or delete marker, as boto3 lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub key: String,
    pub version: String,
    pub delete_marker: bool,
    pub size: u64,
}

/// A bucket of one test, named so no other test (or earlier run) uses it
/// (nothing is created): removed with every version of every object when
/// dropped.
pub struct TestBucket {
    pub server: Arc<Server>,
    pub name: String,
}

impl TestBucket {
    /// A name from `tag`, the process and the time.
    pub fn new(server: &Arc<Server>, tag: &str) -> TestBucket {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        TestBucket {
            server: server.clone(),
            name: format!("{tag}-{}-{}", std::process::id(), nanos % 1_000_000_000),
        }
    }

    /// [`boto3`] with the bucket's name as the first argument.
    pub fn boto3(&self, script: &str, args: &[&str]) -> Value {
        let mut all = vec![self.name.as_str()];
        all.extend_from_slice(args);
        boto3(&self.server, script, &all)
    }

    /// Every version and delete marker under `prefix`, sorted.
    pub fn versions(&self, prefix: &str) -> Vec<Version> {
        const LIST: &str = r#"
bucket, prefix = sys.argv[1], sys.argv[2]
out = []
for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
    out += [[v["Key"], v["VersionId"], False, v["Size"]] for v in page.get("Versions", [])]
    out += [[m["Key"], m["VersionId"], True, 0] for m in page.get("DeleteMarkers", [])]
json.dump(out, sys.stdout)
"#;
        let listed: Vec<(String, String, bool, u64)> =
            serde_json::from_value(self.boto3(LIST, &[prefix])).expect("versions");
        let mut v: Vec<Version> = listed
            .into_iter()
            .map(|(key, version, delete_marker, size)| Version {
                key,
                version,
                delete_marker,
                size,
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for TestBucket {
    fn drop(&mut self) {
        const NUKE: &str = r#"
bucket = sys.argv[1]
try:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        objs = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if objs:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objs, "Quiet": True},
                              BypassGovernanceRetention=True)
    s3.delete_bucket(Bucket=bucket)
except s3.exceptions.NoSuchBucket:
    pass
print("null")
"#;
        // Not `boto3()`: a failed cleanup must not panic while a failed
        // test unwinds.
        let _ = boto3_output(&self.server, NUKE, &[&self.name]);
    }
}
