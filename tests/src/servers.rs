//! Real servers for the tests, started by the repository's own scripts
//! (`scripts/servers/<name>.sh`), each on 127.0.0.1 with its data under a
//! temp dir, and stopped when the [`Server`] is dropped.
//!
//! A script's `start DIR` installs the server if it is missing, starts it,
//! waits until it answers, and prints `KEY=VALUE` lines (endpoint, test
//! credentials) on stdout; `stop DIR` stops it.

use std::collections::BTreeMap;
use std::process::Command;

use crate::repo_root;

/// A running server; stopped on drop.
pub struct Server {
    name: String,
    dir: tempfile::TempDir,
    /// What the start script printed: endpoint, credentials, bucket.
    pub env: BTreeMap<String, String>,
}

impl Server {
    /// Starts server `name`; panics with the script's output if it fails.
    pub fn start(name: &str) -> Server {
        Server::start_with_env(name, &[])
    }

    /// [`Server::start`] with `env` set on the start script (what to
    /// scrape, for Prometheus).
    pub fn start_with_env(name: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix(&format!("chorus-{name}-"))
            .tempdir()
            .expect("temp dir");
        let script = repo_root()
            .join("scripts/servers")
            .join(format!("{name}.sh"));
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir.path())
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} start failed:\n{stdout}\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Server {
            name: name.to_string(),
            dir,
            env,
        }
    }

    /// A value the start script printed; panics naming the key if absent.
    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{} printed no {key}: {:?}", self.name, self.env))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let script = repo_root()
            .join("scripts/servers")
            .join(format!("{}.sh", self.name));
        let _ = Command::new("bash")
            .arg(&script)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}
