//! The deployment artifacts besides the Helm chart, checked against the
//! real tools and binaries:
//!
//! - `deploy/Dockerfile`: it builds with the CI's build command, runs as
//!   the user the chart names, and its default command is one the agent
//!   accepts (no docker engine runs here to build it).
//! - `deploy/systemd/chorus-agent.service`: `systemd-analyze verify`, and
//!   its ExecStart run with systemd's specifiers and credentials filled in.
//!
//! The image's uid, the CLI-acceptance check and the way an agent is
//! started are shared with the Helm chart's tests, in
//! [`chorus_tests::helm`].

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use chorus_tests::helm::{
    IMAGE_UID, Prepared, assert_cli_accepts, assert_ok, certs, flag_value, start_agent,
};
use chorus_tests::{bin, repo_root};
use serde_json::Value;

// --- the container image -----------------------------------------------------

/// The instructions of a Dockerfile, continuation lines joined, comments
/// dropped: (INSTRUCTION, rest).
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("deploy/Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (ins, rest) = cur.split_once(' ').unwrap_or((&cur, ""));
        out.push((ins.to_uppercase(), rest.trim().to_string()));
        cur.clear();
    }
    out
}

/// A JSON-array instruction argument (`["agent"]`).
fn exec_form(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not exec form: {s}: {e}"))
}

#[test]
fn dockerfile_builds_what_ci_builds_and_runs_an_unprivileged_agent() {
    let ins = dockerfile();
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, r)| r)
        .collect();
    assert!(froms.len() >= 2, "not a multi-stage build: {froms:?}");
    assert!(
        froms.last().unwrap().contains("-slim"),
        "runtime base {:?}",
        froms.last()
    );

    // The build step is CI's build command (scripts/test.sh) plus --release.
    let ci = std::fs::read_to_string(repo_root().join("scripts/test.sh")).unwrap();
    let ci_build: BTreeSet<&str> = ci
        .lines()
        .find(|l| l.trim_start().starts_with("cargo build"))
        .expect("scripts/test.sh builds with cargo build")
        .split_whitespace()
        .collect();
    let run = ins
        .iter()
        .filter(|(i, _)| i == "RUN")
        .find(|(_, r)| r.contains("cargo build"))
        .map(|(_, r)| r.clone())
        .expect("a RUN with cargo build");
    let cmd = &run[run.find("cargo build").unwrap()..];
    let cmd = cmd.split("&&").next().unwrap();
    let docker_build: BTreeSet<&str> = cmd.split_whitespace().collect();
    let mut want = ci_build.clone();
    want.insert("--release");
    assert_eq!(docker_build, want, "Dockerfile: {cmd}\nCI: {ci_build:?}");

    // Runs as the chart's uid; the agent is the entrypoint.
    let user = &ins.iter().rfind(|(i, _)| i == "USER").expect("USER").1;
    assert_eq!(user, &format!("{IMAGE_UID}:{IMAGE_UID}"));
    let entry = exec_form(&ins.iter().find(|(i, _)| i == "ENTRYPOINT").unwrap().1);
    assert_eq!(entry, ["agent"]);
    let cmd = exec_form(&ins.iter().find(|(i, _)| i == "CMD").unwrap().1);
    let mut argv = vec!["agent".to_string()];
    argv.extend(cmd.iter().cloned());
    assert_cli_accepts(&argv);
    assert_eq!(flag_value(&argv, "--listen"), Some("0.0.0.0:7167"));
    // Without a security choice the default command refuses to serve.
    let out = Command::new(bin("agent"))
        .args(&cmd)
        .env_remove("CHORUS_TLS_DIR")
        .env_remove("CHORUS_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-dir"));

    // The build context leaves out build output and caches.
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    for p in ["target", ".git", "runs"] {
        assert!(
            ignore.lines().any(|l| l.trim() == p),
            ".dockerignore lacks {p}"
        );
    }
}

// --- the systemd unit --------------------------------------------------------

#[test]
fn systemd_unit_runs_an_agent_with_its_credentials() {
    let unit =
        std::fs::read_to_string(repo_root().join("deploy/systemd/chorus-agent.service")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let agent = bin("agent");
    // systemd's own check, with the binary where the unit expects it.
    let installed = unit.replace("/usr/local/bin/chorus-agent", &agent.display().to_string());
    let path = tmp.path().join("chorus-agent.service");
    std::fs::write(&path, &installed).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output();
    match out {
        Ok(out) => assert_ok(&out, "systemd-analyze verify"),
        Err(e) => eprintln!("systemd-analyze not found ({e}): unit syntax not verified"),
    }

    // ExecStart as systemd runs it: %H the host name, %S /var/lib, %d the
    // credentials directory holding what LoadCredential= names.
    let value = |key: &str| -> Vec<String> {
        installed
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(String::from)
            .collect()
    };
    let tls = tmp.path().join("etc-tls");
    certs(&tls);
    let creds = tmp.path().join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    let loaded = value("LoadCredential");
    assert_eq!(loaded.len(), 3, "{loaded:?}");
    for l in &loaded {
        let (name, from) = l.split_once(':').unwrap();
        let file = Path::new(from).file_name().unwrap();
        assert!(from.starts_with("/etc/chorus/tls/"), "{from}");
        std::fs::copy(tls.join(file), creds.join(name)).unwrap();
    }
    let state = tmp.path().join("state");
    let exec = value("ExecStart");
    assert_eq!(exec.len(), 1);
    let mut argv: Vec<String> = exec[0]
        .split_whitespace()
        .map(|a| {
            a.replace("%H", "bench-host")
                .replace("%S", &state.display().to_string())
                .replace("%d", &creds.display().to_string())
        })
        .collect();
    assert_eq!(flag_value(&argv, "--listen"), Some("0.0.0.0:7167"));
    // The op-log spool is the unit's StateDirectory.
    assert_eq!(value("StateDirectory"), ["chorus-agent"]);
    let spool = state.join("chorus-agent").display().to_string();
    assert_eq!(flag_value(&argv, "--spool"), Some(spool.as_str()));
    let i = argv.iter().position(|a| a == "--listen").unwrap();
    argv[i + 1] = "127.0.0.1:0".into();
    let running = start_agent(&Prepared {
        argv,
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
    });
    let out = Command::new(bin("controller"))
        .args(["agents", "--json", "--agents", &running.addr, "--tls-dir"])
        .arg(&tls)
        .output()
        .unwrap();
    assert_ok(&out, "controller agents against the unit's agent");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &listed["agents"][0];
    assert_eq!(a["id"], "bench-host");
    assert_eq!(a["reachable"], true);
}
