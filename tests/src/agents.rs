//! Starting real `agent` processes for tests: on loopback, inside a
//! network namespace host ([`crate::netns::Net`]), with a skewed wall clock
//! (libfaketime), or both.
//!
//! ```no_run
//! # use chorus_tests::{agents::AgentSpec, netns::Net};
//! # let tmp = std::path::Path::new("/tmp");
//! let net = Net::new(2);
//! let a = AgentSpec::new("a", tmp.join("spool-a")).netns(&net, 0).start();
//! let b = AgentSpec::new("b", tmp.join("spool-b"))
//!     .netns(&net, 1)
//!     .clock_offset_ms(-2000)
//!     .start();
//! let agents = format!("{},{}", a.addr, b.addr);
//! ```
//!
//! Skewed clocks: libfaketime is preloaded with `FAKETIME=+3.000`-style
//! offsets and `FAKETIME_DONT_FAKE_MONOTONIC=1`, so only `CLOCK_REALTIME`
//! moves. The agent's tokio timers and op durations use the monotonic clock
//! and stay real; `chorus_common::clock` reads the wall clock once per
//! [`Anchor`](chorus_common::clock::Anchor) and advances it on the monotonic
//! clock, so a constant offset is exactly what it sees. libfaketime caches
//! only how it parsed the offset (re-read every few seconds, from the same
//! unchanging variable), not the time, so `FAKETIME_NO_CACHE` is not needed.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::bin;
use crate::netns::Net;

/// How long an agent may take to print `listening on`: a debug build on a
/// busy two-core machine, under `ip netns exec`, can be slow to start.
pub const AGENT_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where Debian's `libfaketime` package puts the library, by architecture;
/// `CHORUS_LIBFAKETIME` overrides it.
fn libfaketime() -> PathBuf {
    if let Some(p) = std::env::var_os("CHORUS_LIBFAKETIME") {
        return PathBuf::from(p);
    }
    let candidates = [
        format!(
            "/usr/lib/{}-linux-gnu/faketime/libfaketime.so.1",
            std::env::consts::ARCH
        ),
        "/usr/lib/faketime/libfaketime.so.1".to_string(),
        "/usr/local/lib/faketime/libfaketime.so.1".to_string(),
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "libfaketime is missing (looked for {candidates:?}): install the Debian \
                 package `faketime` (scripts/install-test-deps.sh) or set CHORUS_LIBFAKETIME"
            )
        })
}

/// `taskset` (util-linux), or a panic saying how to get it.
pub fn taskset() -> PathBuf {
    ["/usr/bin/taskset", "/bin/taskset", "/usr/local/bin/taskset"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "taskset is missing: install the Debian package `util-linux` \
                 (scripts/install-test-deps.sh)"
            )
        })
}

/// libfaketime's relative offset syntax for `ms`: `+3.000`, `-2.000`.
fn faketime_offset(ms: i64) -> String {
    let sign = if ms < 0 { '-' } else { '+' };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// A running agent; killed on drop.
pub struct AgentProc {
    pub child: Child,
    /// What it printed after `listening on `: the address to give the
    /// controller.
    pub addr: String,
    pub id: String,
    /// Its stderr (tracing output), for failure messages.
    pub log: PathBuf,
}

impl AgentProc {
    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends it SIGTERM (what Kubernetes and `scancel` send), with the
    /// `kill` command.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Waits (up to `limit`) for it to exit; its status, or `None` if it
    /// still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for agent") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start one agent.
pub struct AgentSpec<'a> {
    id: String,
    spool: PathBuf,
    netns: Option<(&'a Net, usize)>,
    clock_offset_ms: Option<i64>,
    insecure: bool,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cpus: Option<String>,
}

impl<'a> AgentSpec<'a> {
    /// Agent `id` spooling to `spool`, on 127.0.0.1, real clock, with
    /// `--insecure` (plaintext, any controller). Its stderr goes to
    /// `<spool>.log`.
    pub fn new(id: &str, spool: impl Into<PathBuf>) -> Self {
        AgentSpec {
            id: id.to_string(),
            spool: spool.into(),
            netns: None,
            clock_offset_ms: None,
            insecure: true,
            args: Vec::new(),
            envs: Vec::new(),
            cpus: None,
        }
    }

    /// Runs it under `taskset -c LIST`: the process may use those CPUs
    /// only (its pools are laid over them).
    pub fn cpus(mut self, list: &str) -> Self {
        self.cpus = Some(list.to_string());
        self
    }

    /// Runs it on host `i` of `net`, listening on that host's address.
    pub fn netns(mut self, net: &'a Net, i: usize) -> Self {
        self.netns = Some((net, i));
        self
    }

    /// Skews its wall clock by `ms` (positive: ahead) with libfaketime.
    pub fn clock_offset_ms(mut self, ms: i64) -> Self {
        self.clock_offset_ms = Some(ms);
        self
    }

    /// Leaves out `--insecure`, for tests that give `--tls-dir` or
    /// `--token-file` with [`AgentSpec::arg`] instead.
    pub fn secure(mut self) -> Self {
        self.insecure = false;
        self
    }

    /// An extra command-line argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An extra environment variable, for the agent only.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Starts it and waits (up to [`AGENT_START_TIMEOUT`]) for its
    /// `listening on ADDR` line; panics with its stderr if it does not come.
    pub fn start(self) -> AgentProc {
        let listen = match self.netns {
            Some((net, i)) => format!("{}:0", net.ip(i)),
            None => "127.0.0.1:0".to_string(),
        };
        let mut cmd = match &self.cpus {
            Some(list) => {
                let mut c = Command::new(taskset());
                c.args(["-c", list]).arg(bin("agent"));
                c
            }
            None => Command::new(bin("agent")),
        };
        cmd.args(["--listen", &listen, "--id", &self.id, "--spool"])
            .arg(&self.spool)
            .args(self.insecure.then_some("--insecure"))
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(ms) = self.clock_offset_ms {
            cmd.env("LD_PRELOAD", libfaketime())
                .env("FAKETIME", faketime_offset(ms))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let mut cmd = match self.netns {
            Some((net, i)) => net.command(i, &cmd),
            None => cmd,
        };
        let log = log_path(&self.spool);
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        let log_file =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start agent {}: {e}", self.id));
        let addr = read_listening(child.stdout.take().expect("piped stdout"));
        let mut proc = AgentProc {
            child,
            addr: String::new(),
            id: self.id,
            log,
        };
        match addr {
            Some(addr) => proc.addr = addr,
            None => {
                let _ = proc.child.kill();
                let _ = proc.child.wait();
                panic!(
                    "agent {} did not print `listening on ADDR` within {AGENT_START_TIMEOUT:?}; \
                     its stderr:\n{}",
                    proc.id,
                    proc.log_text()
                );
            }
        }
        proc
    }
}

/// Starts agent `id` on 127.0.0.1 with the real clock.
pub fn start_agent(id: &str, spool: &Path) -> AgentProc {
    AgentSpec::new(id, spool).start()
}

fn log_path(spool: &Path) -> PathBuf {
    let mut p = spool.as_os_str().to_os_string();
    p.push(".log");
    PathBuf::from(p)
}

/// The address from the first stdout line, or `None` on timeout, early
/// exit or another line. A thread reads it and then keeps draining stdout
/// until the agent exits, so a later print cannot fail on a closed pipe.
fn read_listening(stdout: impl Read + Send + 'static) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = rx.recv_timeout(AGENT_START_TIMEOUT).ok()?;
    line.trim()
        .strip_prefix("listening on ")
        .map(|a| a.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faketime_offsets() {
        assert_eq!(faketime_offset(3000), "+3.000");
        assert_eq!(faketime_offset(-2000), "-2.000");
        assert_eq!(faketime_offset(-250), "-0.250");
        assert_eq!(faketime_offset(0), "+0.000");
    }
}
