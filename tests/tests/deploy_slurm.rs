//! `deploy/slurm/chorus.sbatch` submitted to a real SLURM cluster: Debian's
//! slurmctld and one slurmd per node name, all on this host, each node on
//! its own loopback address (`scripts/servers/slurm.sh`). The batch script
//! starts the agents with `srun`, runs `controller run --slurm` on the
//! first node, and the tests read the run directory it leaves in the
//! submit directory.
//!
//! The agents run the built debug binaries (same host, same paths), and
//! listen on their node's address (`CHORUS_BIND=node`): every slurmd here
//! shares one network namespace, so two agents on `0.0.0.0` would collide.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chorus_tests::servers::Server;
use chorus_tests::{Tsv, bin, only_run_dir, read_json, repo_root};

/// How long a job may take from submission to its end: the scenarios run
/// a few seconds of load; the rest is slack for a busy two-core machine.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// The node names and addresses `slurm.sh` sets up.
const NODES: [(&str, &str); 2] = [("chorus-n1", "127.0.0.2"), ("chorus-n2", "127.0.0.3")];

/// A first port such that `count` consecutive ports are free on every
/// node's address (agents take PORT, PORT+1, … on each node).
fn free_ports(count: u16) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let seed = std::process::id() as u64 ^ nanos;
    for attempt in 0..200u64 {
        let port = 20000 + ((seed.wrapping_mul(7919) + attempt * 104_729) % 30000) as u16;
        let free = (0..count).all(|k| {
            NODES
                .iter()
                .all(|(_, addr)| TcpListener::bind((*addr, port + k)).is_ok())
        });
        if free {
            return port;
        }
    }
    panic!("no {count} free consecutive ports on the node addresses");
}

/// The end of a job, from `scontrol show job`.
struct JobEnd {
    id: String,
    state: String,
    exit_code: String,
    /// The batch script's output (chorus-<id>.out in the submit dir).
    output: String,
}

/// Submits the batch script on two nodes from `submit_dir` with `env` and
/// the script arguments `args`, waits for the job to end, and returns how
/// it ended.
fn submit(slurm: &Server, submit_dir: &Path, env: &[(&str, String)], args: &[&str]) -> JobEnd {
    let script = repo_root().join("deploy/slurm/chorus.sbatch");
    let out = Command::new("sbatch")
        .args(["--parsable", "--nodes=2"])
        .arg(format!("--chdir={}", submit_dir.display()))
        .arg(&script)
        .args(args)
        .current_dir(submit_dir)
        .env("SLURM_CONF", slurm.get("SLURM_CONF"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run sbatch");
    assert!(
        out.status.success(),
        "sbatch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let start = Instant::now();
    loop {
        let show = Command::new("scontrol")
            .args(["show", "job", "-o", &id])
            .env("SLURM_CONF", slurm.get("SLURM_CONF"))
            .output()
            .expect("run scontrol");
        let text = String::from_utf8_lossy(&show.stdout).to_string();
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap_or("")
                .to_string()
        };
        let state = field("JobState");
        if !["PENDING", "CONFIGURING", "RUNNING", "COMPLETING", ""].contains(&state.as_str()) {
            let output = std::fs::read_to_string(submit_dir.join(format!("chorus-{id}.out")))
                .unwrap_or_else(|e| format!("(no job output: {e})"));
            return JobEnd {
                id,
                state,
                exit_code: field("ExitCode"),
                output,
            };
        }
        assert!(
            start.elapsed() < JOB_TIMEOUT,
            "job {id} still {state} after {JOB_TIMEOUT:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A plan writing and reading `file://` objects in the submit directory
/// (the nodes share this host's file system, as a cluster shares NFS).
fn write_plan(dir: &Path, name: &str) -> PathBuf {
    let plan = format!(
        "name: {name}\ntarget: file://{}\nconcurrency: 2\nobjects: {{prefix: ci/, count: 80, size: 4KiB, partition: agent}}\nstages:\n  - name: prepare\n    type: prepare\n  - name: mixed\n    type: workload\n    mix: {{get: 3, put: 1}}\n    duration: 1s\n",
        dir.join("data").display()
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    path
}

/// The agents of a run directory, as (id, address), in run order.
fn run_agents(run: &Path) -> Vec<(String, String)> {
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "completed", "run.json: {meta}");
    meta["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                a["address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn debug_bin_dir() -> String {
    bin("agent").parent().unwrap().display().to_string()
}

/// Asserts nothing listens on any node address on `ports` any more: the
/// job stopped its agents.
fn assert_agents_gone(port: u16, per_node: u16) {
    for (_, addr) in NODES {
        for k in 0..per_node {
            let at = format!("{addr}:{}", port + k);
            assert!(
                TcpStream::connect(&at).is_err(),
                "an agent still listens on {at} after the job"
            );
        }
    }
}

#[test]
fn sbatch_runs_one_agent_per_node_with_job_tls() {
    let slurm = Server::start("slurm");
    assert_eq!(slurm.get("CHORUS_SLURM_NODES"), "chorus-n[1-2]");
    let submit_dir = tempfile::tempdir().unwrap();
    write_plan(submit_dir.path(), "slurm-one");
    let port = free_ports(1);
    // No security variable: the script makes a CA for the job.
    let job = submit(
        &slurm,
        submit_dir.path(),
        &[
            ("CHORUS_BIN", debug_bin_dir()),
            ("CHORUS_BIND", "node".into()),
            ("CHORUS_PORT", port.to_string()),
        ],
        &["plan.yaml", "--quiet"],
    );
    assert_eq!(
        (job.state.as_str(), job.exit_code.as_str()),
        ("COMPLETED", "0:0"),
        "job {}:\n{}",
        job.id,
        job.output
    );
    assert!(
        job.output
            .contains("mutual TLS with a CA made for this job"),
        "{}",
        job.output
    );
    assert!(job.output.contains("2 agents answer"), "{}", job.output);

    // Results in the submit directory's runs/, one agent per node, each
    // reached at its node name on the port asked for.
    let run = only_run_dir(&submit_dir.path().join("runs"));
    assert_eq!(
        run_agents(&run),
        NODES
            .iter()
            .map(|(n, _)| (n.to_string(), format!("{n}:{port}")))
            .collect::<Vec<_>>()
    );
    for f in ["summary.json", "summary.txt", "report.html", "plan.yaml"] {
        assert!(run.join(f).is_file(), "{f} missing in {}", run.display());
    }
    let timeline = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let clients: BTreeSet<&str> = timeline.column("client_id").into_iter().collect();
    assert_eq!(clients, BTreeSet::from(["chorus-n1", "chorus-n2"]));
    // Each agent prepared its own slice: 80 objects in all.
    let stage = timeline.col("stage");
    let op = timeline.col("op");
    let prepared = timeline
        .rows
        .iter()
        .filter(|r| r[stage] == "prepare" && r[op] == "PUT")
        .count();
    assert_eq!(prepared, 80);

    // The job's CA and keys are gone, and so are its agents.
    let leftovers: Vec<_> = std::fs::read_dir(submit_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".chorus-"))
        .collect();
    assert!(leftovers.is_empty(), "job TLS dir left: {leftovers:?}");
    assert_agents_gone(port, 1);
}

#[test]
fn sbatch_runs_several_agents_per_node_with_a_token() {
    let slurm = Server::start("slurm");
    let submit_dir = tempfile::tempdir().unwrap();
    write_plan(submit_dir.path(), "slurm-two");
    let token = submit_dir.path().join("token");
    std::fs::write(&token, "slurm-test-token-7f3a\n").unwrap();
    let port = free_ports(2);
    // Binaries found on PATH this time, and controller flags passed on
    // (a relative --results is the submit directory's).
    let path = format!(
        "{}:{}",
        debug_bin_dir(),
        std::env::var("PATH").unwrap_or_default()
    );
    let job = submit(
        &slurm,
        submit_dir.path(),
        &[
            ("PATH", path),
            ("CHORUS_BIND", "node".into()),
            ("CHORUS_PORT", port.to_string()),
            ("CHORUS_AGENTS_PER_NODE", "2".into()),
            ("CHORUS_TOKEN_FILE", token.display().to_string()),
        ],
        &[
            "plan.yaml",
            "--quiet",
            "--concurrency",
            "1",
            "--results",
            "custom-runs",
        ],
    );
    assert_eq!(
        (job.state.as_str(), job.exit_code.as_str()),
        ("COMPLETED", "0:0"),
        "job {}:\n{}",
        job.id,
        job.output
    );
    assert!(job.output.contains("4 agents answer"), "{}", job.output);
    assert!(
        !job.output.contains("CA made for this job"),
        "a token was given, yet the job made a CA:\n{}",
        job.output
    );
    // --results among the flags replaced the default runs/.
    assert!(!submit_dir.path().join("runs").exists());
    let run = only_run_dir(&submit_dir.path().join("custom-runs"));
    let mut expected = Vec::new();
    for (node, _) in NODES {
        for k in 0..2u16 {
            expected.push((format!("{node}-{k}"), format!("{node}:{}", port + k)));
        }
    }
    assert_eq!(run_agents(&run), expected);
    // --concurrency 1 reached the controller: one worker per agent.
    let timeline = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let threads: BTreeSet<&str> = timeline.column("thread").into_iter().collect();
    assert_eq!(threads, BTreeSet::from(["0"]));
    assert_agents_gone(port, 2);
}

#[test]
fn sbatch_stops_on_a_bad_plan_before_starting_agents() {
    let slurm = Server::start("slurm");
    let submit_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        submit_dir.path().join("plan.yaml"),
        "name: bad\ntarget: mem://x\nobjects: {count: 10, size: 1KiB}\nstages:\n  - name: w\n    type: workload\n    mixx: {get: 1}\n",
    )
    .unwrap();
    let job = submit(
        &slurm,
        submit_dir.path(),
        &[
            ("CHORUS_BIN", debug_bin_dir()),
            ("CHORUS_BIND", "node".into()),
            ("CHORUS_PORT", free_ports(1).to_string()),
        ],
        &["plan.yaml"],
    );
    // The controller's "bad input" code is the job's.
    assert_eq!(
        (job.state.as_str(), job.exit_code.as_str()),
        ("FAILED", "2:0"),
        "{}",
        job.output
    );
    assert!(job.output.contains("mixx"), "{}", job.output);
    let names: Vec<_> = std::fs::read_dir(submit_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        !names.iter().any(|n| n == "runs" || n.contains("-agent-")),
        "agents started or results written for a bad plan: {names:?}"
    );
}
