//! Control-plane security with the real binaries: an agent started with a
//! token or with mutual TLS refuses a controller without them (or with the
//! wrong ones) and serves one with them; an agent refuses to start without
//! a security choice; `--forward-env` is refused without TLS; and storage
//! credentials forwarded over TLS reach agents whose own environment has
//! none, without their values landing in the results.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chorus_tests::servers::Server;
use chorus_tests::{bin, only_run_dir, read_json, repo_root};

/// How long an agent may take to print `listening on` (a debug build on a
/// busy two-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The token the agents of these tests accept. Distinctive, so a search of
/// any output for it cannot hit by accident.
const TOKEN: &str = "chorus-test-token-6f1d9a";

/// An agent process, killed on drop.
struct Agent {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Agent {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an agent on 127.0.0.1:0 with `args`, its stderr in `<dir>/<id>.log`,
/// and `env_clear` when `clean_env` (only PATH kept), so it has no storage
/// credentials of its own.
fn start_agent(dir: &Path, id: &str, args: &[&OsStr], clean_env: bool) -> Agent {
    let log = dir.join(format!("{id}.log"));
    let mut cmd = Command::new(bin("agent"));
    if clean_env {
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
    }
    let mut child = cmd
        .args(["--listen", "127.0.0.1:0", "--id", id, "--spool"])
        .arg(dir.join(format!("{id}-spool")))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start agent");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
    let mut agent = Agent {
        child,
        addr: String::new(),
        log,
    };
    match line.trim().strip_prefix("listening on ") {
        Some(addr) => agent.addr = addr.to_string(),
        None => panic!(
            "agent {id} did not print `listening on`; stderr:\n{}",
            agent.log_text()
        ),
    }
    agent
}

/// `controller certs init DIR`, asserted to succeed.
fn certs_init(dir: &Path) {
    let out = Command::new(bin("controller"))
        .args(["certs", "init"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "certs init: {}", text(&out));
}

/// stdout and stderr of a finished process, for messages and searches.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the quickstart plan for 1 s on the agent at `addr`, against a
/// file:// target under `tmp`, with `extra` controller flags.
fn run_on(addr: &str, tmp: &Path, extra: &[&OsStr]) -> Output {
    let plan = repo_root().join("examples/quickstart.yaml");
    let target = format!("file://{}", tmp.join("data").display());
    Command::new(bin("controller"))
        .arg("run")
        .arg(plan)
        .args(["--agents", addr, "--duration", "1s", "--target", &target])
        .arg("--results")
        .arg(tmp.join("runs"))
        .arg("--quiet")
        .args(extra)
        .env_remove("CHORUS_TLS_DIR")
        .env_remove("CHORUS_TOKEN_FILE")
        .output()
        .expect("run controller")
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn token_agent_refuses_controllers_without_its_token() {
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("agent.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let wrong_file = tmp.path().join("wrong.token");
    std::fs::write(&wrong_file, "not-the-token-41c7").unwrap();
    let agent = start_agent(
        tmp.path(),
        "tok",
        &[os("--token-file"), token_file.as_os_str()],
        false,
    );

    // No flag at all: remote agents need a choice (exit 2, nothing sent).
    let out = run_on(&agent.addr, tmp.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--insecure"), "{}", text(&out));

    // Plaintext without a token: refused by the agent.
    let out = run_on(&agent.addr, tmp.path(), &[os("--insecure")]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("Unauthenticated") && all.contains("token"),
        "{all}"
    );
    assert!(!all.contains(TOKEN), "{all}");

    // A wrong token: refused, and neither token is printed.
    let out = run_on(
        &agent.addr,
        tmp.path(),
        &[os("--token-file"), wrong_file.as_os_str()],
    );
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("wrong token"), "{all}");
    assert!(
        !all.contains(TOKEN) && !all.contains("not-the-token-41c7"),
        "{all}"
    );

    // The right token: the run completes.
    let out = run_on(
        &agent.addr,
        tmp.path(),
        &[os("--token-file"), token_file.as_os_str()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let run = only_run_dir(&tmp.path().join("runs"));
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["transport"], "token", "{meta:#}");
    assert_eq!(meta["agents"][0]["authenticated"], true, "{meta:#}");

    let log = agent.log_text();
    assert!(log.contains("request refused"), "{log}");
    assert!(!log.contains(TOKEN), "the agent logged its token:\n{log}");
}

#[test]
fn tls_agent_refuses_plaintext_and_foreign_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("tls");
    let other = tmp.path().join("other-ca");
    certs_init(&good);
    certs_init(&other);
    // Trusts the agent (same CA) but shows a certificate of another CA, so
    // only the agent's check can refuse it.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::copy(good.join("ca.pem"), foreign.join("ca.pem")).unwrap();
    for f in ["controller.pem", "controller.key"] {
        std::fs::copy(other.join(f), foreign.join(f)).unwrap();
    }
    let agent = start_agent(
        tmp.path(),
        "tls",
        &[os("--tls-dir"), good.as_os_str()],
        false,
    );

    let out = run_on(&agent.addr, tmp.path(), &[os("--insecure")]);
    assert!(!out.status.success(), "plaintext accepted: {}", text(&out));
    assert!(text(&out).contains("--tls-dir"), "{}", text(&out));

    let out = run_on(
        &agent.addr,
        tmp.path(),
        &[os("--tls-dir"), foreign.as_os_str()],
    );
    assert!(
        !out.status.success(),
        "foreign certificate accepted: {}",
        text(&out)
    );

    // A controller trusting another CA refuses the agent too.
    let out = run_on(
        &agent.addr,
        tmp.path(),
        &[os("--tls-dir"), other.as_os_str()],
    );
    assert!(!out.status.success(), "{}", text(&out));

    assert!(
        !tmp.path().join("runs").exists(),
        "a refused run wrote results"
    );

    // The right certificates, the agent reached by a name other than the
    // one in its certificate (the controller checks `chorus-agent`).
    let port = agent.addr.rsplit(':').next().unwrap();
    let by_name = format!("localhost:{port}");
    let out = run_on(&by_name, tmp.path(), &[os("--tls-dir"), good.as_os_str()]);
    assert!(out.status.success(), "{}", text(&out));
    let run = only_run_dir(&tmp.path().join("runs"));
    assert_eq!(read_json(&run.join("run.json"))["transport"], "tls");

    let log = agent.log_text();
    assert!(log.contains("TLS handshake refused"), "{log}");
}

#[test]
fn agent_refuses_to_start_without_a_security_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&OsStr]| {
        Command::new(bin("agent"))
            .args(["--listen", "127.0.0.1:0", "--spool"])
            .arg(tmp.path().join("spool"))
            .args(args)
            .env_remove("CHORUS_TLS_DIR")
            .env_remove("CHORUS_TOKEN_FILE")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for flag in ["--tls-dir", "--token-file", "--insecure"] {
        assert!(err.contains(flag), "{err}");
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));

    // Missing files are named.
    let missing = tmp.path().join("no-such.token");
    let out = run(&[os("--token-file"), missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no-such.token"), "{}", text(&out));
    let empty_dir = tmp.path().join("empty-tls");
    std::fs::create_dir(&empty_dir).unwrap();
    let out = run(&[os("--tls-dir"), empty_dir.as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("ca.pem"), "{}", text(&out));
}

#[test]
fn forward_env_needs_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_on(
        "127.0.0.1:1",
        tmp.path(),
        &[os("--insecure"), os("--forward-env"), os("PATH")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--tls-dir"), "{}", text(&out));

    // With TLS, a variable that is not set is named.
    let tls = tmp.path().join("tls");
    certs_init(&tls);
    let out = run_on(
        "127.0.0.1:1",
        tmp.path(),
        &[
            os("--tls-dir"),
            tls.as_os_str(),
            os("--forward-env"),
            os("CHORUS_TEST_SURELY_UNSET_VAR"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("CHORUS_TEST_SURELY_UNSET_VAR"),
        "{}",
        text(&out)
    );
}

#[test]
fn certs_init_writes_private_keys_and_keeps_existing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    let out = Command::new(bin("controller"))
        .args([
            "certs",
            "init",
            "--san",
            "agent1.example",
            "--san",
            "10.0.0.7",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("--tls-dir") && stdout.contains("agent.key"),
        "{stdout}"
    );
    for f in ["ca.key", "agent.key", "controller.key"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let before = std::fs::read(dir.join("ca.pem")).unwrap();
    let out = Command::new(bin("controller"))
        .args(["certs", "init"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), before);
    let out = Command::new(bin("controller"))
        .args(["certs", "init", "--force"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(std::fs::read(dir.join("ca.pem")).unwrap(), before);
}

/// Every file under `dir` as text (zstd ones decompressed), with its path.
fn all_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
            continue;
        }
        let raw = std::fs::read(&path).unwrap();
        let bytes = if path.extension().is_some_and(|e| e == "zst") {
            let mut d = Vec::new();
            zstd::Decoder::new(&raw[..])
                .unwrap()
                .read_to_end(&mut d)
                .unwrap();
            d
        } else {
            raw
        };
        out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
    }
    out
}

#[test]
fn forwarded_credentials_reach_agents_over_tls_and_are_not_written() {
    let server = Server::start("rgw");
    let secret = server.get("AWS_SECRET_ACCESS_KEY").to_string();
    let tmp = tempfile::tempdir().unwrap();
    let tls = tmp.path().join("tls");
    certs_init(&tls);
    // No AWS variables (nor HOME, so no ~/.aws) in the agents' environment.
    let a = start_agent(
        tmp.path(),
        "fwd-a",
        &[os("--tls-dir"), tls.as_os_str()],
        true,
    );
    let b = start_agent(
        tmp.path(),
        "fwd-b",
        &[os("--tls-dir"), tls.as_os_str()],
        true,
    );
    let plan = repo_root().join("examples/quickstart.yaml");
    let results = tmp.path().join("runs");
    let out = Command::new(bin("controller"))
        .arg("run")
        .arg(plan)
        .args([
            "--agents",
            &format!("{},{}", a.addr, b.addr),
            "--duration",
            "1s",
            "--target",
            "s3://chorus-fwd/qs",
            "--forward-env",
            "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_ENDPOINT_URL,AWS_REGION",
            "-v",
        ])
        .arg("--tls-dir")
        .arg(&tls)
        .arg("--results")
        .arg(&results)
        .arg("--quiet")
        .envs(server.env.iter())
        .output()
        .expect("run controller");
    let all = text(&out);
    assert!(
        out.status.success(),
        "{all}\nagent a:\n{}\nagent b:\n{}",
        a.log_text(),
        b.log_text()
    );
    assert!(!all.contains(&secret), "the controller printed the secret");
    let run = only_run_dir(&results);
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["total_errors"], 0, "{summary:#}");
    // run.json names what was forwarded, never the values.
    let forwarded = &read_json(&run.join("run.json"))["forwarded_env"];
    assert!(
        forwarded
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "AWS_SECRET_ACCESS_KEY"),
        "{forwarded}"
    );
    let files = all_files(&run);
    assert!(files.len() > 3, "{files:?}");
    for (path, content) in &files {
        assert!(
            !content.contains(&secret),
            "{} holds the forwarded secret",
            path.display()
        );
    }
    for agent in [&a, &b] {
        assert!(
            !agent.log_text().contains(&secret),
            "an agent logged the secret"
        );
    }
}
