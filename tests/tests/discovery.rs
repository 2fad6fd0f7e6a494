//! Agent discovery: agents that register in a real etcd (started by
//! `scripts/servers/etcd.sh`) are found by `controller agents` and
//! `controller run --etcd`, one killed without warning disappears when its
//! lease runs out, one stopped cleanly disappears at once, and an agent
//! registers again after etcd comes back; a plan's `agents:` templates and
//! a SLURM node list name agents too.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chorus_tests::agents::{AgentProc, AgentSpec};
use chorus_tests::servers::Server;
use chorus_tests::{bin, only_run_dir, read_json, repo_root};

/// Lease TTL of the test agents: short so expiry is quick to see, long
/// enough (renewed every second) that a busy machine does not lose a live
/// agent's lease, and that a killed agent is still listed for a moment.
const TTL_S: u64 = 3;
/// How long an expired lease may take to go: the TTL, etcd's expiry check
/// (every 500 ms on the leader), and slack for a loaded machine.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(TTL_S * 3 + 10);
/// How long a stopped agent may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(15);

/// Starts agent `id` registered in etcd at `url`.
fn etcd_agent(id: &str, url: &str, tmp: &Path) -> AgentProc {
    AgentSpec::new(id, tmp.join(format!("spool-{id}")))
        .arg("--etcd")
        .arg(url)
        .arg("--etcd-ttl")
        .arg(TTL_S.to_string())
        .start()
}

/// Runs `controller` with `args` and `env` (set on it only).
fn controller_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin("controller"))
        .args(args)
        // Never inherit the discovery variables of the test's environment.
        .env_remove("CHORUS_ETCD")
        .env_remove("SLURM_JOB_NODELIST")
        .envs(env.iter().copied())
        .output()
        .expect("run controller")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `controller agents --etcd URL --json --insecure`: the exit status and
/// the listed agents as (id or "", address, reachable).
fn list_etcd(url: &str) -> (Output, Vec<(String, String, bool)>) {
    let out = controller_env(&["agents", "--etcd", url, "--json", "--insecure"], &[]);
    let rows = parse_listing(&out);
    (out, rows)
}

fn parse_listing(out: &Output) -> Vec<(String, String, bool)> {
    if out.stdout.is_empty() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}):\n{}", text(out)));
    v["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("no `agents` array:\n{}", text(out)))
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or("").to_string(),
                a["address"].as_str().unwrap().to_string(),
                a["reachable"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn ids(rows: &[(String, String, bool)]) -> Vec<&str> {
    rows.iter().map(|r| r.0.as_str()).collect()
}

/// Waits for `child` to exit; panics after [`EXIT_DEADLINE`].
fn wait_exit(child: &mut Child, what: &str) {
    let deadline = Instant::now() + EXIT_DEADLINE;
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "{what} did not exit within {EXIT_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` (TERM, INT) to one process, by its id.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {}", child.id());
}

/// Whether etcd at `url` holds agent `id`'s key, read with curl through
/// the JSON gateway (independently of the code under test).
fn etcd_has_key(url: &str, id: &str) -> bool {
    let key = base64(format!("/chorus/agents/{id}").as_bytes());
    let out = Command::new("curl")
        .args(["-sf", "-X", "POST", "-d"])
        .arg(format!("{{\"key\":\"{key}\"}}"))
        .arg(format!("{url}/v3/kv/range"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl range on {url} failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["kvs"].as_array().is_some_and(|k| !k.is_empty())
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn etcd_discovery_finds_agents_and_forgets_gone_ones() {
    let etcd = Server::start("etcd");
    let url = etcd.get("ETCD_ENDPOINT").to_string();
    let tmp = tempfile::tempdir().unwrap();
    let a = etcd_agent("alpha", &url, tmp.path());
    let mut b = etcd_agent("beta", &url, tmp.path());
    let mut c = etcd_agent("gamma", &url, tmp.path());

    // All three, with what each says about itself.
    let (out, rows) = list_etcd(&url);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(ids(&rows), ["alpha", "beta", "gamma"], "{}", text(&out));
    assert_eq!(rows[0].1, a.addr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["source"].as_str().unwrap().contains(&url), "{v}");
    for agent in v["agents"].as_array().unwrap() {
        assert_eq!(agent["version"], env!("CARGO_PKG_VERSION"), "{agent}");
        assert_eq!(agent["busy"], false, "{agent}");
        assert!(agent["cpus"].as_u64().unwrap() >= 1, "{agent}");
        assert!(!agent["topology"].as_str().unwrap().is_empty(), "{agent}");
        assert!(agent["clock_offset_ns"].is_i64(), "{agent}");
        assert!(
            agent["clock_uncertainty_ns"].as_i64().unwrap() >= 0,
            "{agent}"
        );
    }
    // The text form lists them too.
    let out = controller_env(&["agents", "--etcd", &url, "--insecure"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("3 agents from etcd at"), "{stdout}");
    for id in ["alpha", "beta", "gamma"] {
        assert!(stdout.contains(id), "{stdout}");
    }

    // kill -9: nothing revokes the lease, so the key outlives the agent
    // until the TTL runs out. Meanwhile it is listed as unreachable (exit 1).
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let killed = Instant::now();
    assert!(
        etcd_has_key(&url, "beta"),
        "a killed agent's key went at once"
    );
    loop {
        let (out, rows) = list_etcd(&url);
        if ids(&rows) == ["alpha", "gamma"] {
            assert!(out.status.success(), "{}", text(&out));
            assert!(rows.iter().all(|r| r.2), "{}", text(&out));
            break;
        }
        // Until then beta is there, and unreachable.
        assert_eq!(ids(&rows).len(), 3, "{}", text(&out));
        assert!(!rows[1].2 && !out.status.success(), "{}", text(&out));
        assert!(
            killed.elapsed() < EXPIRY_DEADLINE,
            "beta still listed {EXPIRY_DEADLINE:?} after kill -9 (lease TTL {TTL_S} s):\n{}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // SIGTERM: the agent revokes its lease before exiting, so it is gone
    // as soon as the process is.
    signal(&c.child, "TERM");
    wait_exit(&mut c.child, "gamma after SIGTERM");
    assert!(!etcd_has_key(&url, "gamma"), "{}", c.log_text());
    let (out, rows) = list_etcd(&url);
    assert_eq!(ids(&rows), ["alpha"], "{}", text(&out));
    assert!(out.status.success(), "{}", text(&out));

    // Ctrl-C (SIGINT) likewise; then etcd holds no agent, which `agents`
    // says (exit 1, naming etcd).
    let mut a = a;
    signal(&a.child, "INT");
    wait_exit(&mut a.child, "alpha after SIGINT");
    let out = controller_env(&["agents", "--etcd", &url, "--insecure"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no agents registered") && stderr.contains(&url),
        "{stderr}"
    );
}

#[test]
fn run_with_etcd_uses_exactly_the_live_agents() {
    let etcd = Server::start("etcd");
    let url = etcd.get("ETCD_ENDPOINT").to_string();
    let tmp = tempfile::tempdir().unwrap();
    let x = etcd_agent("xray", &url, tmp.path());
    let _y = etcd_agent("yankee", &url, tmp.path());
    // One more that registers and then stops: it must not be used.
    let mut gone = etcd_agent("zulu", &url, tmp.path());
    signal(&gone.child, "TERM");
    wait_exit(&mut gone.child, "zulu after SIGTERM");

    let plan = repo_root().join("examples/quickstart.yaml");
    let target = format!("file://{}", tmp.path().join("data").display());
    let results = tmp.path().join("runs");
    let out = controller_env(
        &[
            "run",
            plan.to_str().unwrap(),
            "--etcd",
            &url,
            "--duration",
            "1s",
            "--target",
            &target,
            "--results",
            results.to_str().unwrap(),
            "--quiet",
            "--insecure",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let meta = read_json(&only_run_dir(&results).join("run.json"));
    let mut used: Vec<&str> = meta["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    used.sort();
    assert_eq!(used, ["xray", "yankee"], "{meta}");

    // CHORUS_ETCD stands in for --etcd; an explicit --agents beats it.
    let out = controller_env(
        &["agents", "--json", "--insecure"],
        &[("CHORUS_ETCD", &url)],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(ids(&parse_listing(&out)), ["xray", "yankee"]);
    let out = controller_env(
        &["agents", "--json", "--insecure", "--agents", &x.addr],
        &[("CHORUS_ETCD", &url)],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(ids(&parse_listing(&out)), ["xray"]);

    // A second agent claiming a live agent's id at another address would
    // hide it: it refuses to start.
    let out = Command::new(bin("agent"))
        .args(["--listen", "127.0.0.1:0", "--id", "xray", "--insecure"])
        .args(["--etcd", &url, "--spool"])
        .arg(tmp.path().join("spool-dup"))
        .output()
        .expect("run agent");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already registered") && stderr.contains(&x.addr),
        "{stderr}"
    );

    // An etcd nobody listens on: exit 1, naming it.
    let out = controller_env(
        &["agents", "--etcd", "http://127.0.0.1:1", "--insecure"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("http://127.0.0.1:1"),
        "{}",
        text(&out)
    );
}

#[test]
fn agent_exits_when_etcd_is_unreachable_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin("agent"))
        .args(["--listen", "127.0.0.1:0", "--insecure", "--spool"])
        .arg(tmp.path().join("spool"))
        .args(["--etcd", "http://127.0.0.1:1"])
        .output()
        .expect("run agent");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http://127.0.0.1:1"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

/// Agents on the same free port of two loopback addresses (127.0.0.1 and
/// 127.0.0.2), as hosts of one template or node list would be; the
/// second bind is retried with a new port if that one is taken there.
fn agents_on_two_loopback_ips(tmp: &Path) -> (Vec<AgentProc>, u16) {
    const ATTEMPTS: usize = 5;
    for attempt in 0..ATTEMPTS {
        let first =
            AgentSpec::new(&format!("one-{attempt}"), tmp.join(format!("s1-{attempt}"))).start();
        let port: u16 = first.addr.rsplit_once(':').unwrap().1.parse().unwrap();
        if let Some(second) = agent_at(&format!("two-{attempt}"), &format!("127.0.0.2:{port}"), tmp)
        {
            return (vec![first, second], port);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2 in {ATTEMPTS} attempts");
}

/// An agent on `listen`, or `None` if it cannot bind there.
fn agent_at(id: &str, listen: &str, tmp: &Path) -> Option<AgentProc> {
    use std::io::{BufRead, BufReader};
    let log = tmp.join(format!("{id}.log"));
    let mut child = Command::new(bin("agent"))
        .args(["--listen", listen, "--id", id, "--insecure", "--spool"])
        .arg(tmp.join(format!("spool-{id}")))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start agent");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.trim().strip_prefix("listening on ") {
        Some(addr) => Some(AgentProc {
            addr: addr.to_string(),
            id: id.to_string(),
            child,
            log,
        }),
        None => {
            let _ = child.wait();
            None
        }
    }
}

fn run_ids(results: &Path) -> Vec<String> {
    let meta = read_json(&only_run_dir(results).join("run.json"));
    meta["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn plan_agents_templates_expand_with_the_agent_port() {
    let tmp = tempfile::tempdir().unwrap();
    let (agents, port) = agents_on_two_loopback_ips(tmp.path());
    let quickstart = std::fs::read_to_string(repo_root().join("examples/quickstart.yaml")).unwrap();
    // Hosts without a port, from a template: each gets --agent-port.
    let plan = tmp.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!("{quickstart}\nagents: [\"127.0.0.{{1...2}}\"]\n"),
    )
    .unwrap();
    let target = format!("file://{}", tmp.path().join("data").display());
    let results = tmp.path().join("runs");
    let out = controller_env(
        &[
            "run",
            plan.to_str().unwrap(),
            "--agent-port",
            &port.to_string(),
            "--duration",
            "1s",
            "--target",
            &target,
            "--results",
            results.to_str().unwrap(),
            "--quiet",
            "--insecure",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let expected: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
    assert_eq!(run_ids(&results), expected);
}

#[test]
fn slurm_nodelist_names_the_agents() {
    let tmp = tempfile::tempdir().unwrap();
    let (agents, port) = agents_on_two_loopback_ips(tmp.path());
    let port_text = port.to_string();
    let args = [
        "agents",
        "--slurm",
        "--agent-port",
        &port_text,
        "--json",
        "--insecure",
    ];
    let out = controller_env(&args, &[("SLURM_JOB_NODELIST", "127.0.0.[1-2]")]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = parse_listing(&out);
    let expected: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids(&rows), expected, "{}", text(&out));
    assert_eq!(rows[1].1, format!("127.0.0.2:{port}"));

    // Two agents per node: the second on the next port, where nothing
    // listens here, so it is listed as unreachable (exit 1).
    let mut two = args.to_vec();
    two.extend(["--agents-per-node", "2"]);
    let out = controller_env(&two, &[("SLURM_JOB_NODELIST", "127.0.0.1")]);
    let rows = parse_listing(&out);
    assert_eq!(rows.len(), 2, "{}", text(&out));
    assert_eq!(rows[1].1, format!("127.0.0.1:{}", port + 1));
    assert!(rows[0].2, "{}", text(&out));

    // Outside an allocation --slurm is bad input.
    let out = controller_env(&args, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SLURM_JOB_NODELIST"));

    // And `run --slurm` uses them.
    let results = tmp.path().join("runs");
    let plan = repo_root().join("examples/quickstart.yaml");
    let target = format!("file://{}", tmp.path().join("data").display());
    let out = controller_env(
        &[
            "run",
            plan.to_str().unwrap(),
            "--slurm",
            "--agent-port",
            &port_text,
            "--duration",
            "1s",
            "--target",
            &target,
            "--results",
            results.to_str().unwrap(),
            "--quiet",
            "--insecure",
        ],
        &[("SLURM_JOB_NODELIST", "127.0.0.[1-2]")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let expected: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
    assert_eq!(run_ids(&results), expected);
}

/// An etcd started by `scripts/servers/etcd.sh` on a given client port,
/// stopped on drop (for a restart where the agents expect it).
struct EtcdOnPort {
    dir: tempfile::TempDir,
}

impl EtcdOnPort {
    fn start(port: &str) -> EtcdOnPort {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/servers/etcd.sh"))
            .arg("start")
            .arg(dir.path())
            .env("CHORUS_ETCD_CLIENT_PORT", port)
            .output()
            .expect("run etcd.sh");
        assert!(out.status.success(), "etcd.sh start: {}", text(&out));
        EtcdOnPort { dir }
    }
}

impl Drop for EtcdOnPort {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/servers/etcd.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn agent_registers_again_when_etcd_comes_back() {
    let etcd = Server::start("etcd");
    let url = etcd.get("ETCD_ENDPOINT").to_string();
    let port = url.rsplit_once(':').unwrap().1.to_string();
    let tmp = tempfile::tempdir().unwrap();
    let agent = etcd_agent("phoenix", &url, tmp.path());
    assert_eq!(ids(&list_etcd(&url).1), ["phoenix"]);

    // etcd goes away (with all its data) for longer than the lease TTL; the
    // agent keeps serving and retrying, and registers anew once a fresh
    // etcd answers on the same address.
    drop(etcd);
    std::thread::sleep(Duration::from_secs(TTL_S + 1));
    let _etcd = EtcdOnPort::start(&port);
    let back = Instant::now();
    loop {
        let (out, rows) = list_etcd(&url);
        if out.status.success() && ids(&rows) == ["phoenix"] {
            break;
        }
        assert!(
            back.elapsed() < EXPIRY_DEADLINE,
            "the agent did not register again within {EXPIRY_DEADLINE:?}:\n{}\nagent log:\n{}",
            text(&out),
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = agent.log_text();
    assert!(log.contains("cannot renew the etcd lease"), "{log}");
    assert!(log.contains("registered in etcd again"), "{log}");
}
