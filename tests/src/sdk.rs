//! The vendors' Python SDKs, as the clients that are not Chorus: a test
//! hands a Python script to `scripts/azsdk.sh` (azure-storage-blob) or
//! `scripts/gcssdk.sh` (google-cloud-storage), which run it in a venv of
//! the pinned SDK made on first use, and reads back the JSON it prints.
//! What Chorus wrote is then checked the way a user's own code sees it.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::repo_root;

/// Runs `code` (a Python script, on its stdin) through `scripts/{runner}`
/// with `args` and `env`, asserts it succeeded, and returns the JSON it
/// printed on stdout.
pub fn run_python(
    runner: &str,
    code: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> serde_json::Value {
    let script = repo_root().join("scripts").join(runner);
    let mut child = Command::new("bash")
        .arg(&script)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(code.as_bytes())
        .expect("write the script");
    let out = child.wait_with_output().expect("wait for the SDK script");
    assert!(
        out.status.success(),
        "{runner} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{runner} printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `len` bytes that differ with `seed` and along the data (an LCG), so a
/// copy of the wrong object, a cut one, or appends in the wrong order
/// change the digest.
pub fn payload(seed: u64, len: usize) -> bytes::Bytes {
    const MUL: u64 = 6364136223846793005;
    const ADD: u64 = 1442695040888963407;
    let mut x = seed.wrapping_mul(MUL).wrapping_add(ADD);
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x = x.wrapping_mul(MUL).wrapping_add(ADD);
            (x >> 56) as u8
        })
        .collect();
    data.into()
}

/// The SHA-256 of `data` in lowercase hex, as Python's `hexdigest()`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
