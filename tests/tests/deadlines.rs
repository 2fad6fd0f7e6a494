//! Every call the controller makes to an agent has a deadline, and start-up
//! talks to the agents at once.
//!
//! A "silent agent" here is a real TCP listener that accepts connections
//! and never sends a byte: what a hung agent process, a stopped container
//! or a wrong port with something else behind it looks like from outside.
//! Before deadlines, `controller run` waited on its `Hello` for as long as
//! anyone cared to watch (330 s, then killed).

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chorus_tests::agents::{AgentProc, AgentSpec};
use chorus_tests::{bin, repo_root};

/// What the controller must do better than: give up, naming the agent.
/// Its own deadlines are 5 s to connect and 5 s for `Hello`; the rest is
/// room for a debug build on a busy two-core machine.
const GIVE_UP_WITHIN: Duration = Duration::from_secs(30);

/// A controller still running after this is killed and the test fails,
/// rather than hanging the suite.
const KILL_AFTER: Duration = Duration::from_secs(90);

/// Connections a silent listener holds open; later ones are refused by
/// the kernel once the backlog fills, which no test here reaches.
const SILENT_HOLDS: usize = 64;

/// Binds a listener on loopback that accepts connections, holds them open
/// and never answers. Returns its `host:port`; it lives until the test
/// process exits.
fn silent_agent() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(SILENT_HOLDS).collect();
        // Keep the connections open (and silent) until the process ends.
        loop {
            std::thread::park();
            let _ = &held;
        }
    });
    addr
}

/// How a bounded controller run ended.
struct Ended {
    status: ExitStatus,
    took: Duration,
    stdout: String,
    stderr: String,
}

/// Runs `controller` with `args` (no security flags from the environment),
/// killing it after [`KILL_AFTER`].
fn controller_bounded(tmp: &Path, args: &[&OsStr]) -> Ended {
    let out_path = tmp.join("controller.out");
    let err_path = tmp.join("controller.err");
    let began = Instant::now();
    let mut child = Command::new(bin("controller"))
        .args(args)
        .env_remove("CHORUS_TLS_DIR")
        .env_remove("CHORUS_TOKEN_FILE")
        .env_remove("CHORUS_ETCD")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start controller");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if began.elapsed() > KILL_AFTER {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "controller {args:?} still running after {KILL_AFTER:?}: killed; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ended {
        status,
        took: began.elapsed(),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

/// `controller run` of the quickstart plan (1 s, target under `tmp`) on
/// `agents`, results into `tmp/runs`, with `extra` flags.
fn run_on(tmp: &Path, agents: &str, extra: &[&str]) -> Ended {
    let plan = repo_root().join("examples/quickstart.yaml");
    let target = format!("file://{}", tmp.join("data").display());
    let results = tmp.join("runs");
    let mut args: Vec<&OsStr> = vec![OsStr::new("run"), plan.as_os_str()];
    for a in ["--agents", agents, "--duration", "1s", "--target", &target] {
        args.push(OsStr::new(a));
    }
    args.extend([OsStr::new("--quiet"), OsStr::new("--results")]);
    args.push(results.as_os_str());
    args.extend(extra.iter().map(OsStr::new));
    controller_bounded(tmp, &args)
}

/// Asserts the controller failed within [`GIVE_UP_WITHIN`] with a message
/// naming `addr` and the call `what`.
fn assert_gave_up(end: &Ended, addr: &str, what: &str) {
    let all = format!("{}{}", end.stdout, end.stderr);
    assert!(!end.status.success(), "succeeded against {addr}: {all}");
    assert!(
        end.took < GIVE_UP_WITHIN,
        "took {:?} to give up on {addr}: {all}",
        end.took
    );
    assert!(all.contains(addr) && all.contains(what), "{all}");
}

#[test]
fn run_gives_up_on_a_silent_agent_naming_it_and_hello() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = silent_agent();
    let end = run_on(tmp.path(), &addr, &["--insecure"]);
    assert_gave_up(&end, &addr, "Hello");
    assert!(
        end.stderr
            .contains(&format!("agent at {addr} did not answer Hello within 5 s")),
        "{}",
        end.stderr
    );
    assert_eq!(end.status.code(), Some(1), "{}", end.stderr);
    // Nothing ran: no results directory.
    assert!(!tmp.path().join("runs").exists());
}

#[test]
fn agents_gives_up_on_a_silent_agent_naming_it_and_hello() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = silent_agent();
    let args = ["agents", "--agents", &addr, "--insecure", "--json"].map(OsStr::new);
    let end = controller_bounded(tmp.path(), &args);
    assert_gave_up(&end, &addr, "Hello");
    let listing: serde_json::Value = serde_json::from_str(&end.stdout).unwrap();
    let row = &listing["agents"][0];
    assert_eq!(row["reachable"], false, "{listing:#}");
    assert_eq!(
        row["error"],
        format!("agent at {addr} did not answer Hello within 5 s"),
        "{listing:#}"
    );
}

#[test]
fn a_silent_tls_handshake_is_bounded_too() {
    // tonic's own connect timeout covers TCP only: a peer that accepts and
    // never answers the TLS ClientHello held the connection forever.
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("tls");
    let out = Command::new(bin("controller"))
        .args(["certs", "init"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let addr = silent_agent();
    let mut args: Vec<&OsStr> = ["agents", "--agents", &addr, "--tls-dir"]
        .map(OsStr::new)
        .to_vec();
    args.push(certs.as_os_str());
    let end = controller_bounded(tmp.path(), &args);
    assert_gave_up(&end, &addr, "TLS handshake");

    let end = run_on(tmp.path(), &addr, &["--tls-dir", certs.to_str().unwrap()]);
    assert_gave_up(&end, &addr, "TLS handshake");
}

#[test]
fn start_up_is_concurrent_and_names_every_silent_agent() {
    // Eight silent agents: one at a time, their Hello deadlines alone would
    // add up to 40 s; at once, they cost one deadline, and every one of
    // them is named, not only the first.
    let tmp = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = (0..8).map(|_| silent_agent()).collect();
    let end = run_on(tmp.path(), &addrs.join(","), &["--insecure"]);
    assert_gave_up(&end, &addrs[0], "Hello");
    assert!(
        end.stderr.contains("8 of 8 agents could not be used"),
        "{}",
        end.stderr
    );
    for addr in &addrs {
        assert!(
            end.stderr
                .contains(&format!("agent at {addr} did not answer Hello")),
            "{addr} not named: {}",
            end.stderr
        );
    }
}

/// An agent whose spool directory has become a file: it answers `Hello`,
/// then refuses `LoadPlan` (it cannot make the run's spool folder).
fn agent_that_refuses_plans(tmp: &Path) -> AgentProc {
    let spool = tmp.join("spool-broken");
    let agent = AgentSpec::new("broken", &spool).start();
    // The agent says it listens a moment before it makes its spool folder.
    let began = Instant::now();
    while !spool.is_dir() {
        assert!(began.elapsed() < KILL_AFTER, "agent made no spool folder");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_dir_all(&spool).unwrap();
    std::fs::write(&spool, "not a directory").unwrap();
    agent
}

#[test]
fn a_failed_start_names_the_agent_and_frees_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let good = AgentSpec::new("good", tmp.path().join("spool-good")).start();
    let broken = agent_that_refuses_plans(tmp.path());
    let agents = format!("{},{}", good.addr, broken.addr);
    let end = run_on(tmp.path(), &agents, &["--insecure"]);
    assert_gave_up(&end, &broken.addr, "LoadPlan");
    assert!(
        end.stderr
            .contains(&format!("agent broken at {} refused LoadPlan", broken.addr)),
        "{}",
        end.stderr
    );
    assert!(!end.stderr.contains(&good.addr), "{}", end.stderr);

    // The good agent's session was ended by the failed start: it is free
    // now, not in 10 s when its controller timeout would have freed it.
    let args = ["agents", "--agents", &good.addr, "--insecure", "--json"].map(OsStr::new);
    let listed = controller_bounded(tmp.path(), &args);
    assert!(listed.status.success(), "{}", listed.stderr);
    let listing: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listing["agents"][0]["busy"], false, "{listing:#}");
    // Agents say which wire protocol they speak (0 would be an old agent).
    let protocol = listing["agents"][0]["protocol"].as_u64();
    assert!(protocol.is_some_and(|p| p > 0), "{listing:#}");
}
