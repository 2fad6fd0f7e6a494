//! The deployment artifacts checked against the real tools and binaries:
//!
//! - The Helm chart `deploy/helm/chorus`, rendered by Helm's own template
//!   engine (`scripts/helm-render.sh`: the PyPI `helm-python-sdk`, Helm's
//!   Go SDK built as a C library) with `helm lint --strict`, and every
//!   object validated against the Kubernetes OpenAPI schemas of 1.27 and
//!   1.37 (PyPI `kubernetes-validate`, strict: unknown fields fail). Each
//!   values file under `deploy/helm/chorus/ci/` is rendered, and its pods
//!   are then run here as a kubelet would run them: the rendered command
//!   lines of the agents and of the controller Job (its init container,
//!   the shell script it ships, and `controller run`) are started with the
//!   real binaries, against Secrets, ConfigMaps and volumes made into
//!   directories, and the run directory they write is checked.
//! - `deploy/Dockerfile`: it builds with the CI's build command, runs as
//!   the user the chart names, and its default command is one the agent
//!   accepts (no docker engine runs here to build it).
//! - `deploy/systemd/chorus-agent.service`: `systemd-analyze verify`, and
//!   its ExecStart run with systemd's specifiers and credentials filled in.
//!
//! What a cluster would provide is emulated, and only that: each pod gets
//! its own loopback address (127.0.0.11, .12, …) as its pod IP, a free port
//! stands in for the agent port on those addresses, and cluster DNS names
//! are mapped to those addresses. These rewrites are applied to the
//! rendered command lines and environment after they are checked as
//! rendered.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chorus_tests::servers::Server;
use chorus_tests::{Tsv, bin, only_run_dir, read_json, repo_root};
use serde_json::Value;

/// The agent port the chart's values default to.
const AGENT_PORT: u16 = 7167;
/// The uid and gid of the image's user, which the chart runs as.
const IMAGE_UID: u64 = 10001;
/// How long an emulated pod's agent may take to say it listens.
const AGENT_START: Duration = Duration::from_secs(30);

fn chart_dir() -> PathBuf {
    repo_root().join("deploy/helm/chorus")
}

fn ci_values(name: &str) -> PathBuf {
    chart_dir().join("ci").join(name)
}

// --- rendering ---------------------------------------------------------------

/// A rendered chart: its objects, in template order.
struct Rendered {
    objects: Vec<Value>,
}

/// `scripts/helm-render.sh --lint --validate --json` with a values file
/// (or the chart's defaults) and `--set` expressions.
fn helm_render(values: Option<&Path>, sets: &[&str]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/helm-render.sh"))
        .args(["--lint", "--validate", "--json"]);
    if let Some(v) = values {
        cmd.arg("-f").arg(v);
    }
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.arg(chart_dir())
        .output()
        .expect("run scripts/helm-render.sh")
}

fn render(values: Option<&Path>, sets: &[&str]) -> Rendered {
    let out = helm_render(values, sets);
    assert!(
        out.status.success(),
        "rendering with {values:?} {sets:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("valid for Kubernetes 1.27.0, 1.37.0"),
        "the objects were not validated: {stderr}"
    );
    let docs: Value = serde_json::from_slice(&out.stdout).expect("render prints JSON");
    let objects = docs
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["object"].clone())
        .collect();
    Rendered { objects }
}

/// Renders and expects a failure; returns its message.
fn render_error(values: Option<&Path>, sets: &[&str]) -> String {
    let out = helm_render(values, sets);
    assert!(
        !out.status.success(),
        "rendering with {sets:?} should fail but printed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn text(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| text(s).to_string()).collect())
        .unwrap_or_default()
}

impl Rendered {
    /// (kind, name) of every object.
    fn kinds(&self) -> BTreeSet<(String, String)> {
        self.objects
            .iter()
            .map(|o| {
                (
                    text(&o["kind"]).to_string(),
                    text(&o["metadata"]["name"]).to_string(),
                )
            })
            .collect()
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", self.kinds()))
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// The agents' workload (StatefulSet or DaemonSet).
    fn agents(&self) -> &Value {
        let w: Vec<_> = self
            .objects
            .iter()
            .filter(|o| o["kind"] == "StatefulSet" || o["kind"] == "DaemonSet")
            .collect();
        assert_eq!(
            w.len(),
            1,
            "one agent workload expected: {:?}",
            self.kinds()
        );
        w[0]
    }

    fn job(&self) -> &Value {
        let jobs = self.of_kind("Job");
        assert_eq!(jobs.len(), 1, "one controller Job expected");
        jobs[0]
    }

    /// The plan the controller Job mounts.
    fn plan(&self) -> String {
        let pod = pod_spec(self.job());
        let vol = volume(pod, "plan");
        let cm = self.get("ConfigMap", text(&vol["configMap"]["name"]));
        text(&cm["data"]["plan.yaml"]).to_string()
    }
}

/// The pod spec of a workload, Job or Pod.
fn pod_spec(obj: &Value) -> &Value {
    if obj["kind"] == "Pod" {
        &obj["spec"]
    } else {
        &obj["spec"]["template"]["spec"]
    }
}

fn containers(pod: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for key in ["initContainers", "containers"] {
        if let Some(list) = pod[key].as_array() {
            all.extend(list.iter());
        }
    }
    all
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    containers(pod)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no volume {name} in {}", pod["volumes"]))
}

fn has_volume(pod: &Value, name: &str) -> bool {
    pod["volumes"]
        .as_array()
        .is_some_and(|v| v.iter().any(|v| v["name"] == name))
}

/// command + args, as rendered.
fn argv(c: &Value) -> Vec<String> {
    let mut v = strings(&c["command"]);
    v.extend(strings(&c["args"]));
    v
}

/// The value after `flag` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The items (key, path) a secret volume projects.
fn secret_items(vol: &Value) -> Vec<String> {
    vol["secret"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("secret volume without items: {vol}"))
        .iter()
        .map(|i| text(&i["path"]).to_string())
        .collect()
}

/// The argv of the program a container runs, for a CLI check: its own
/// command line, or, for `sh -c SCRIPT NAME ARGS…` / `sh SCRIPT ARGS…`
/// wrappers, `controller` with the arguments the script passes on (the
/// wrappers here only append discovery flags).
fn program_argv(c: &Value) -> Vec<String> {
    let a = argv(c);
    match a[0].as_str() {
        "agent" | "controller" => a,
        "/bin/sh" if a[1] == "-c" => {
            let mut v = vec!["controller".to_string()];
            v.extend(a[4..].iter().cloned());
            v
        }
        "/bin/sh" => {
            let mut v = vec!["controller".to_string()];
            v.extend(a[2..].iter().cloned());
            v
        }
        other => panic!("unexpected command {other}"),
    }
}

/// Asserts the real binary's clap parser takes `argv` (program first):
/// with `--help` appended it parses every flag and value given (unknown
/// flags and bad values fail) and then prints help instead of starting.
fn assert_cli_accepts(argv: &[String]) {
    let out = Command::new(bin(&argv[0]))
        .args(&argv[1..])
        .arg("--help")
        .output()
        .expect("run binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Usage:"),
        "{} refuses {:?}:\n{}",
        argv[0],
        &argv[1..],
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- a kubelet, cluster DNS and pod network, just enough ---------------------

/// What one emulated pod is: its name, node and IP.
struct PodInfo {
    name: String,
    node: String,
    ip: String,
}

impl PodInfo {
    fn new(name: &str, node: &str, ip: &str) -> PodInfo {
        PodInfo {
            name: name.into(),
            node: node.into(),
            ip: ip.into(),
        }
    }
}

/// A container made runnable here.
struct Prepared {
    argv: Vec<String>,
    env: Vec<(String, String)>,
}

/// Secrets, claims, DNS and the agent port of a pretend cluster.
struct Cluster<'a> {
    chart: &'a Rendered,
    root: tempfile::TempDir,
    /// Secret name -> key -> content.
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Claim name -> directory.
    claims: BTreeMap<String, PathBuf>,
    /// DNS name -> IP.
    dns: Vec<(String, String)>,
    /// Rendered URL -> URL here (etcd).
    urls: Vec<(String, String)>,
    /// What stands in for the agent port on the pod addresses.
    port: u16,
    /// First on every container's PATH: the built binaries, then shims.
    path_dirs: Vec<PathBuf>,
}

impl<'a> Cluster<'a> {
    /// A cluster for `chart` whose pods get `pod_ips`; the agent port is
    /// one free on all of them.
    fn new(chart: &'a Rendered, pod_ips: &[&str]) -> Cluster<'a> {
        let root = tempfile::tempdir().unwrap();
        let mut claims = BTreeMap::new();
        for pvc in chart.of_kind("PersistentVolumeClaim") {
            let name = text(&pvc["metadata"]["name"]).to_string();
            let dir = root.path().join("claims").join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            claims.insert(name, dir);
        }
        Cluster {
            chart,
            secrets: BTreeMap::new(),
            claims,
            dns: Vec::new(),
            urls: Vec::new(),
            port: free_port_on(pod_ips),
            path_dirs: vec![bin("controller").parent().unwrap().to_path_buf()],
            root,
        }
    }

    fn secret(&mut self, name: &str, data: &[(&str, String)]) {
        self.secrets.insert(
            name.into(),
            data.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
    }

    /// A Secret from the files of `dir` (as `kubectl create secret
    /// generic NAME --from-file=DIR/...` would).
    fn secret_from_dir(&mut self, name: &str, dir: &Path, keys: &[&str]) {
        let data: Vec<(&str, String)> = keys
            .iter()
            .map(|k| (*k, std::fs::read_to_string(dir.join(k)).unwrap()))
            .collect();
        self.secret(name, &data);
    }

    /// A claim that exists outside the chart (`existingClaim`).
    fn claim(&mut self, name: &str) -> PathBuf {
        let dir = self.root.path().join("claims").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        self.claims.insert(name.into(), dir.clone());
        dir
    }

    fn claim_dir(&self, name: &str) -> &Path {
        &self.claims[name]
    }

    /// Makes `container` of `pod_spec` runnable as pod `pod`: volumes as
    /// directories, the environment as the kubelet builds it, `$(VAR)`
    /// expanded, mount paths mapped to those directories, and addresses
    /// mapped to this host.
    fn prepare(&self, pod_spec: &Value, container: &Value, pod: &PodInfo) -> Prepared {
        let pod_dir = self.root.path().join("pods").join(&pod.name);
        // Volumes.
        let mut vols = BTreeMap::new();
        for v in pod_spec["volumes"].as_array().into_iter().flatten() {
            let name = text(&v["name"]);
            let dir = if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
                self.claims
                    .get(claim)
                    .unwrap_or_else(|| {
                        panic!("pod {} needs claim {claim}, which no one made", pod.name)
                    })
                    .clone()
            } else {
                let dir = pod_dir.join("volumes").join(name);
                std::fs::create_dir_all(&dir).unwrap();
                if v["secret"].is_object() {
                    let sname = text(&v["secret"]["secretName"]);
                    let data = self
                        .secrets
                        .get(sname)
                        .unwrap_or_else(|| panic!("pod {} needs Secret {sname}", pod.name));
                    project(&dir, data, &v["secret"]["items"], sname);
                } else if v["configMap"].is_object() {
                    let cname = text(&v["configMap"]["name"]);
                    let cm = self.chart.get("ConfigMap", cname);
                    let data: BTreeMap<String, String> = cm["data"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), text(v).to_string()))
                        .collect();
                    project(&dir, &data, &v["configMap"]["items"], cname);
                } else {
                    assert!(
                        v["emptyDir"].is_object(),
                        "volume {name} of pod {}: only emptyDir, secret, configMap and \
                         persistentVolumeClaim are emulated: {v}",
                        pod.name
                    );
                }
                dir
            };
            vols.insert(name.to_string(), dir);
        }
        let mut mounts: Vec<(String, PathBuf)> = container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let vname = text(&m["name"]);
                let dir = vols.get(vname).unwrap_or_else(|| {
                    panic!(
                        "container {} mounts volume {vname}, which the pod lacks",
                        container["name"]
                    )
                });
                (text(&m["mountPath"]).to_string(), dir.clone())
            })
            .collect();
        // Longest mount path first, so nested mounts win.
        mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));

        // Environment, in order, each value able to use the ones before.
        let mut env: Vec<(String, String)> = Vec::new();
        for from in container["envFrom"].as_array().into_iter().flatten() {
            let sname = text(&from["secretRef"]["name"]);
            let data = self
                .secrets
                .get(sname)
                .unwrap_or_else(|| panic!("envFrom names Secret {sname}, which no one made"));
            env.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        for e in container["env"].as_array().into_iter().flatten() {
            let name = text(&e["name"]).to_string();
            let value = if let Some(v) = e["value"].as_str() {
                expand(v, &env)
            } else if let Some(field) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match field {
                    "metadata.name" => pod.name.clone(),
                    "status.podIP" => pod.ip.clone(),
                    "spec.nodeName" => pod.node.clone(),
                    f => panic!("field {f} is not emulated"),
                }
            } else {
                panic!("env {name}: only value and fieldRef are emulated: {e}")
            };
            env.push((name, value));
        }
        let argv: Vec<String> = argv(container).iter().map(|a| expand(a, &env)).collect();

        let map = |s: &str| self.map_addresses(&map_paths(s, &mounts));
        let mut argv: Vec<String> = argv.iter().map(|a| map(a)).collect();
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| {
                let v = if k == "CHORUS_AGENT_PORT" && v == AGENT_PORT.to_string() {
                    self.port.to_string()
                } else {
                    map(&v)
                };
                (k, v)
            })
            .collect();
        // `--listen 0.0.0.0:PORT` in a pod is its own address here.
        if let Some(i) = argv.iter().position(|a| a == "--listen") {
            argv[i + 1] = argv[i + 1].replace("0.0.0.0", &pod.ip);
        }
        if matches!(argv[0].as_str(), "agent" | "controller") {
            argv[0] = bin(&argv[0]).display().to_string();
        }
        let mut path: Vec<String> = self
            .path_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        path.push(std::env::var("PATH").unwrap_or_default());
        env.push(("PATH".into(), path.join(":")));
        Prepared { argv, env }
    }

    /// Cluster DNS and the agent port: in each comma-separated item, a
    /// mapped URL, or `HOST:7167` with HOST a mapped name, gets this host's
    /// address and port.
    fn map_addresses(&self, s: &str) -> String {
        s.split(',')
            .map(|item| {
                if let Some((_, to)) = self.urls.iter().find(|(from, _)| from == item) {
                    return to.clone();
                }
                match item.rsplit_once(':') {
                    Some((host, port)) if port == AGENT_PORT.to_string() => {
                        let host = self
                            .dns
                            .iter()
                            .find(|(name, _)| name == host)
                            .map(|(_, ip)| ip.as_str())
                            .unwrap_or(host);
                        format!("{host}:{}", self.port)
                    }
                    _ => item.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Writes a Secret's or ConfigMap's keys into `dir`: the `items` listed
/// (key -> path), or every key. A missing key fails, as the kubelet would.
fn project(dir: &Path, data: &BTreeMap<String, String>, items: &Value, what: &str) {
    let pairs: Vec<(String, String)> = match items.as_array() {
        Some(items) => items
            .iter()
            .map(|i| (text(&i["key"]).to_string(), text(&i["path"]).to_string()))
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, path) in pairs {
        let content = data
            .get(&key)
            .unwrap_or_else(|| panic!("{what} has no key {key}"));
        std::fs::write(dir.join(path), content).unwrap();
    }
}

/// Kubernetes' `$(VAR)` expansion of command, args and env values: known
/// variables are replaced, `$$` is a literal `$`, anything else stays.
fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some((_, v)) = env.iter().rev().find(|(k, _)| *k == inner[..end])
        {
            out.push_str(v);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A path under a mount point, as the directory standing in for it.
fn map_paths(s: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount, dir) in mounts {
        if s == mount {
            return dir.display().to_string();
        }
        if let Some(rest) = s.strip_prefix(mount.as_str())
            && rest.starts_with('/')
        {
            return format!("{}{rest}", dir.display());
        }
    }
    s.to_string()
}

/// A port free on every address in `ips`.
fn free_port_on(ips: &[&str]) -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind((ips[0], 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()) {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// A running emulated agent container; killed on drop.
struct Running {
    child: Child,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a prepared agent container and waits for `listening on ADDR`.
fn start_agent(p: &Prepared) -> Running {
    let mut child = Command::new(&p.argv[0])
        .args(&p.argv[1..])
        .env_clear()
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", p.argv));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(AGENT_START) {
        Ok(line) if line.starts_with("listening on ") => Running {
            addr: line["listening on ".len()..].trim().to_string(),
            child,
        },
        other => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "agent {:?} did not start ({other:?}):\n{}",
                p.argv,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Runs a prepared container to its end, with `extra` environment.
fn run_to_end(p: &Prepared, extra: &[(&str, &str)]) -> Output {
    Command::new(&p.argv[0])
        .args(&p.argv[1..])
        .env_clear()
        .envs(p.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", p.argv))
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The wait script polls every second here rather than every 5 s.
const FAST_WAIT: (&str, &str) = ("CHORUS_WAIT_INTERVAL", "1");

/// Runs the controller Job as rendered: its init container (waits for the
/// agents), then its controller container; returns the run directory in
/// `results`.
fn run_job(cluster: &Cluster, results: &Path) -> PathBuf {
    let job = cluster.chart.job();
    let pod = pod_spec(job);
    let me = PodInfo::new("controller", "node-c", "127.0.0.10");
    let init = cluster.prepare(pod, container(pod, "wait-for-agents"), &me);
    let out = run_to_end(&init, &[FAST_WAIT]);
    assert_ok(&out, "the wait-for-agents init container");
    // Both containers share the pod's volumes (the agents file of dns mode).
    let main = cluster.prepare(pod, container(pod, "controller"), &me);
    let out = run_to_end(&main, &[]);
    assert_ok(&out, "the controller container");
    only_run_dir(results)
}

/// (id, address) of each agent of a run.
fn run_agents(run: &Path) -> Vec<(String, String)> {
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["status"], "completed", "{meta}");
    meta["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (text(&a["id"]).to_string(), text(&a["address"]).to_string()))
        .collect()
}

/// `controller certs init` into `dir`.
fn certs(dir: &Path) {
    let out = Command::new(bin("controller"))
        .args(["certs", "init"])
        .arg(dir)
        .output()
        .unwrap();
    assert_ok(&out, "controller certs init");
}

const TLS_KEYS: [&str; 5] = [
    "ca.pem",
    "agent.pem",
    "agent.key",
    "controller.pem",
    "controller.key",
];

// --- checks every rendering passes -------------------------------------------

/// Checks that hold whatever the values: consistent names and labels,
/// unprivileged pods with resource requests, commands the CLI takes, a
/// plan the controller accepts.
fn check_common(r: &Rendered) {
    let agents = r.agents();
    let pod = pod_spec(agents);
    let labels = &agents["spec"]["template"]["metadata"]["labels"];
    // The Service selects exactly the agent pods.
    let services = r.of_kind("Service");
    assert_eq!(services.len(), 1);
    let svc = services[0];
    assert_eq!(
        svc["spec"]["clusterIP"], "None",
        "the Service must be headless"
    );
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &labels[k], v,
            "Service selector {k} does not match the agent pods"
        );
    }
    assert_eq!(
        agents["spec"]["selector"]["matchLabels"],
        svc["spec"]["selector"]
    );
    if agents["kind"] == "StatefulSet" {
        assert_eq!(agents["spec"]["serviceName"], svc["metadata"]["name"]);
    }
    // Unprivileged, as the image's user, with resource requests.
    let mut pods = vec![pod, pod_spec(r.job())];
    pods.extend(r.of_kind("Pod").into_iter().map(pod_spec));
    for p in &pods {
        assert_eq!(p["securityContext"]["runAsNonRoot"], true);
        assert_eq!(p["securityContext"]["runAsUser"], IMAGE_UID);
        assert_eq!(p["automountServiceAccountToken"], false);
        for c in containers(p) {
            assert!(
                c["resources"]["requests"]["cpu"].is_string()
                    && c["resources"]["requests"]["memory"].is_string(),
                "container {} has no requests",
                c["name"]
            );
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        }
    }
    // Every command line of the agents' and the Job's pods parses with the
    // real binaries (the results reader, if any, only runs `sleep`).
    for p in pods.iter().take(2) {
        for c in containers(p) {
            let args = program_argv(c);
            // As the kubelet would run them ($(POD_NAME) and such filled in).
            let env: Vec<(String, String)> = ["POD_NAME", "POD_IP", "NODE_NAME"]
                .iter()
                .map(|k| (k.to_string(), "x".to_string()))
                .collect();
            let args: Vec<String> = args.iter().map(|a| expand(a, &env)).collect();
            assert_cli_accepts(&args);
        }
    }
    // The agent is the program of the agent pods, and listens on the port
    // the Service and the probe name.
    let agent = container(pod, "agent");
    let args = argv(agent);
    assert_eq!(args[0], "agent");
    let port = svc["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(
        flag_value(&args, "--listen"),
        Some(format!("0.0.0.0:{port}").as_str())
    );
    assert_eq!(agent["ports"][0]["containerPort"], port);
    assert_eq!(agent["readinessProbe"]["tcpSocket"]["port"], "grpc");
    // The plan the Job runs is a valid plan.
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("plan.yaml");
    std::fs::write(&plan, r.plan()).unwrap();
    let out = Command::new(bin("controller"))
        .arg("validate")
        .arg(&plan)
        .output()
        .unwrap();
    assert_ok(&out, "controller validate of the chart's plan");
}

#[test]
fn every_values_file_renders_valid_objects_and_accepted_commands() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "values files: {files:?}");
    let mut modes = BTreeSet::new();
    for f in std::iter::once(None).chain(files.iter().map(|f| Some(f.as_path()))) {
        let r = render(f, &[]);
        check_common(&r);
        let agent_args = argv(container(pod_spec(r.agents()), "agent"));
        let tls = agent_args.iter().any(|a| a == "--tls-dir");
        modes.insert((text(&r.agents()["kind"]).to_string(), tls));
    }
    // StatefulSet and DaemonSet, each with TLS on and off, are covered.
    for kind in ["StatefulSet", "DaemonSet"] {
        for tls in [true, false] {
            assert!(
                modes.contains(&(kind.to_string(), tls)),
                "{kind} tls={tls} not covered: {modes:?}"
            );
        }
    }
    // The default plan targets the agents' scratch volume.
    let r = render(None, &[]);
    let scratch = container(pod_spec(r.agents()), "agent")["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "scratch")
        .map(|m| text(&m["mountPath"]).to_string())
        .expect("a scratch mount");
    assert!(
        r.plan().contains(&format!("file://{scratch}/")),
        "{}",
        r.plan()
    );
}

#[test]
fn the_cli_check_and_the_validation_have_teeth() {
    // The --help check refuses what the parser refuses.
    let out = Command::new(bin("agent"))
        .args(["--listen", "0.0.0.0:7167", "--no-such-flag", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin("agent"))
        .args(["--etcd-ttl", "0", "--help"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad value must fail before --help"
    );
    // Schema validation is strict: an unknown field fails, naming it.
    let e = render_error(None, &["agents.securityContext.bogusField=1"]);
    assert!(e.contains("bogusField") && e.contains("1.27.0"), "{e}");
    // Values are checked against values.schema.json by Helm: a misspelt
    // or unknown key, or a value out of range, fails naming it.
    let e = render_error(None, &["agents.replica=3"]);
    assert!(e.contains("'replica' not allowed"), "{e}");
    let e = render_error(None, &["agents.kind=Deployment"]);
    assert!(e.contains("/agents/kind"), "{e}");
    let e = render_error(None, &["security.mode=plain"]);
    assert!(e.contains("/security/mode"), "{e}");
    // And the templates refuse combinations they cannot honour.
    let e = render_error(
        None,
        &[
            "security.mode=token",
            "controller.forwardEnv={AWS_SECRET_ACCESS_KEY}",
        ],
    );
    assert!(e.contains("forwardEnv needs security.mode: tls"), "{e}");
    let e = render_error(
        None,
        &[
            "results.persistence.enabled=false",
            "results.reader.enabled=true",
        ],
    );
    assert!(e.contains("results.reader needs"), "{e}");
}

// --- each values file, run ----------------------------------------------------

#[test]
fn statefulset_with_tls_runs_as_rendered() {
    let r = render(Some(&ci_values("statefulset-tls-values.yaml")), &[]);
    let kinds = r.kinds();
    let expected: BTreeSet<(String, String)> = [
        ("StatefulSet", "chorus-agent"),
        ("Service", "chorus-agents"),
        ("ConfigMap", "chorus-plan"),
        ("ConfigMap", "chorus-scripts"),
        ("Job", "chorus-controller-1"),
        ("PersistentVolumeClaim", "chorus-results"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(kinds, expected);

    let sts = r.agents();
    assert_eq!(sts["spec"]["replicas"], 2);
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    let pod = pod_spec(sts);
    // spreadAcrossNodes: hard.
    let anti =
        &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    let agent = container(pod, "agent");
    // Guaranteed QoS (what the static CPU manager pins): limits = requests.
    assert_eq!(agent["resources"]["limits"], agent["resources"]["requests"]);
    // Credentials from a Secret, never the plan.
    assert_eq!(agent["envFrom"][0]["secretRef"]["name"], "s3-credentials");
    assert!(!r.plan().contains("AWS_"));
    // mTLS: each side gets only its own key.
    assert_eq!(
        secret_items(volume(pod, "tls")),
        ["ca.pem", "agent.pem", "agent.key"]
    );
    let job_pod = pod_spec(r.job());
    assert_eq!(
        secret_items(volume(job_pod, "tls")),
        ["ca.pem", "controller.pem", "controller.key"]
    );
    let agent_args = argv(agent);
    assert_eq!(flag_value(&agent_args, "--id"), Some("$(POD_NAME)"));
    assert_eq!(
        flag_value(&agent_args, "--tls-dir"),
        Some("/etc/chorus/tls")
    );
    let run_args = argv(container(job_pod, "controller"));
    let fqdn = |i: usize| format!("chorus-agent-{i}.chorus-agents.default.svc.cluster.local");
    let rendered_list = format!("{}:{AGENT_PORT},{}:{AGENT_PORT}", fqdn(0), fqdn(1));
    assert_eq!(
        flag_value(&run_args, "--agents"),
        Some(rendered_list.as_str())
    );
    assert_eq!(flag_value(&run_args, "--target"), Some("mem://ci"));
    assert_eq!(flag_value(&run_args, "--duration"), Some("1s"));
    assert_eq!(
        flag_value(&run_args, "--forward-env"),
        Some("CHORUS_CI_FORWARDED")
    );
    assert_eq!(flag_value(&run_args, "--results"), Some("/results"));
    assert_eq!(
        flag_value(&argv(container(job_pod, "wait-for-agents")), "--agents"),
        Some(rendered_list.as_str())
    );

    // Run it: two agent pods, then the Job.
    let ips = ["127.0.0.11", "127.0.0.12"];
    let mut cluster = Cluster::new(&r, &ips);
    let tls = cluster.root.path().join("certs");
    certs(&tls);
    cluster.secret_from_dir("chorus-ci-tls", &tls, &TLS_KEYS);
    cluster.secret(
        "s3-credentials",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIACI".into()),
            ("AWS_SECRET_ACCESS_KEY", "ci-secret".into()),
        ],
    );
    for (i, ip) in ips.iter().enumerate() {
        cluster.dns.push((fqdn(i), ip.to_string()));
    }
    let mut agents = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let me = PodInfo::new(&format!("chorus-agent-{i}"), &format!("node-{i}"), ip);
        agents.push(start_agent(&cluster.prepare(pod, agent, &me)));
    }
    let results = cluster.claim_dir("chorus-results").to_path_buf();
    let run = run_job(&cluster, &results);
    let port = cluster.port;
    assert_eq!(
        run_agents(&run),
        [
            ("chorus-agent-0".to_string(), format!("127.0.0.11:{port}")),
            ("chorus-agent-1".to_string(), format!("127.0.0.12:{port}")),
        ]
    );
    assert_eq!(agents[0].addr, format!("127.0.0.11:{port}"));
    // --target from the values replaced the plan's file:// target.
    let timeline = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    assert!(timeline.rows.len() > 50, "{} ops", timeline.rows.len());
    assert!(
        timeline
            .column("endpoint")
            .iter()
            .all(|e| e.starts_with("mem://")),
        "ops went elsewhere than --target mem://ci"
    );

    // The init container waits for every agent, and gives up when one
    // never answers.
    drop(agents.pop());
    let init = cluster.prepare(
        job_pod,
        container(job_pod, "wait-for-agents"),
        &PodInfo::new("c2", "n", "127.0.0.10"),
    );
    let out = run_to_end(&init, &[FAST_WAIT, ("CHORUS_WAIT_SECONDS", "2")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("agents not ready after 2s"), "{stderr}");
}

#[test]
fn statefulset_without_tls_runs_as_rendered() {
    let r = render(Some(&ci_values("statefulset-insecure-values.yaml")), &[]);
    // No PVC (results in an emptyDir), no TLS or token anywhere.
    assert!(r.of_kind("PersistentVolumeClaim").is_empty());
    let sts = r.agents();
    assert_eq!(sts["spec"]["replicas"], 3);
    let pod = pod_spec(sts);
    let job_pod = pod_spec(r.job());
    for p in [pod, job_pod] {
        assert!(!has_volume(p, "tls") && !has_volume(p, "token"));
        for c in containers(p) {
            let a = argv(c);
            assert!(
                !a.iter().any(|x| x == "--tls-dir" || x == "--token-file"),
                "{a:?}"
            );
        }
    }
    assert!(argv(container(pod, "agent")).contains(&"--insecure".to_string()));
    assert!(argv(container(job_pod, "controller")).contains(&"--insecure".to_string()));
    // spreadAcrossNodes: none; spool in memory; no scratch volume.
    assert!(pod["affinity"].is_null());
    assert_eq!(volume(pod, "spool")["emptyDir"]["medium"], "Memory");
    assert!(!has_volume(pod, "scratch"));
    assert!(volume(job_pod, "results")["emptyDir"].is_object());

    let ips = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];
    let mut cluster = Cluster::new(&r, &ips);
    let mut agents = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("chorus-agent-{i}");
        cluster.dns.push((
            format!("{name}.chorus-agents.default.svc.cluster.local"),
            ip.to_string(),
        ));
        agents.push(start_agent(&cluster.prepare(
            pod,
            container(pod, "agent"),
            &PodInfo::new(&name, "n", ip),
        )));
    }
    // The results emptyDir of the controller pod.
    let results = cluster.root.path().join("pods/controller/volumes/results");
    let run = run_job(&cluster, &results);
    let ids: Vec<String> = run_agents(&run).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["chorus-agent-0", "chorus-agent-1", "chorus-agent-2"]);
    // ops: 300 over three agents, after 60 prepared objects.
    let timeline = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    assert_eq!(timeline.rows.len(), 360);
}

#[test]
fn daemonset_with_a_token_finds_its_agents_through_the_service() {
    let r = render(Some(&ci_values("daemonset-token-values.yaml")), &[]);
    let ds = r.agents();
    assert_eq!(ds["kind"], "DaemonSet");
    assert!(ds["spec"]["replicas"].is_null());
    let pod = pod_spec(ds);
    assert_eq!(pod["nodeSelector"]["chorus.example.com/agent"], "true");
    assert_eq!(pod["tolerations"][0]["value"], "storage-bench");
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    // A DaemonSet's Service lists ready agents only.
    assert_eq!(
        r.of_kind("Service")[0]["spec"]["publishNotReadyAddresses"],
        false
    );
    let agent = container(pod, "agent");
    let agent_args = argv(agent);
    assert_eq!(flag_value(&agent_args, "--id"), Some("$(NODE_NAME)"));
    assert_eq!(
        flag_value(&agent_args, "--token-file"),
        Some("/etc/chorus/token/token")
    );
    assert_eq!(secret_items(volume(pod, "token")), ["token"]);
    assert!(
        agent["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/mnt/fs"),
        "the file system under test is not mounted"
    );
    // The existing claim is used, none is made, and the reader mounts it.
    assert!(r.of_kind("PersistentVolumeClaim").is_empty());
    let reader = r.get("Pod", "chorus-results");
    assert_eq!(
        volume(pod_spec(reader), "results")["persistentVolumeClaim"]["claimName"],
        "bench-results"
    );
    let job = r.job();
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 86400);
    let job_pod = pod_spec(job);
    let init = container(job_pod, "wait-for-agents");
    let init_env: BTreeMap<String, String> = init["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (text(&e["name"]).to_string(), text(&e["value"]).to_string()))
        .collect();
    assert_eq!(init_env["CHORUS_DISCOVERY"], "dns");
    assert_eq!(init_env["CHORUS_EXPECTED_AGENTS"], "2");
    let service = "chorus-agents.default.svc.cluster.local";
    assert_eq!(init_env["CHORUS_AGENTS_SERVICE"], service);
    // No agent list in the controller's flags: it comes from the Service.
    assert!(!argv(container(job_pod, "controller")).contains(&"--agents".to_string()));

    let ips = ["127.0.0.31", "127.0.0.32"];
    let mut cluster = Cluster::new(&r, &ips);
    cluster.secret("chorus-ci-token", &[("token", "ci-token-5e1f\n".into())]);
    let results = cluster.claim("bench-results");
    cluster.claim("shared-fs");
    // Cluster DNS for the headless Service: its name resolves to the
    // ready agents (a `getent` in front of the real one on PATH).
    let shims = cluster.root.path().join("dns");
    std::fs::create_dir_all(&shims).unwrap();
    let lines: String = ips
        .iter()
        .map(|ip| format!("{ip} STREAM {service}\n{ip} DGRAM\n{ip} RAW\n"))
        .collect();
    let getent = shims.join("getent");
    std::fs::write(
        &getent,
        format!(
            "#!/bin/sh\nif [ \"$1\" = ahosts ] && [ \"$2\" = {service} ]; then printf '%s' '{lines}'; exit 0; fi\nexec /usr/bin/getent \"$@\"\n"
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&getent)
        .status()
        .unwrap();
    cluster.path_dirs.insert(0, shims);
    let mut agents = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let node = format!("node-{}", ["a", "b"][i]);
        let me = PodInfo::new(&format!("chorus-agent-{node}"), &node, ip);
        agents.push(start_agent(&cluster.prepare(pod, agent, &me)));
    }
    let run = run_job(&cluster, &results);
    let port = cluster.port;
    let mut found = run_agents(&run);
    found.sort();
    assert_eq!(
        found,
        [
            ("node-a".to_string(), format!("127.0.0.31:{port}")),
            ("node-b".to_string(), format!("127.0.0.32:{port}")),
        ]
    );
}

#[test]
fn daemonset_with_etcd_runs_as_rendered() {
    let r = render(Some(&ci_values("daemonset-etcd-tls-values.yaml")), &[]);
    let pod = pod_spec(r.agents());
    let agent = container(pod, "agent");
    let agent_args = argv(agent);
    let url = "http://etcd.etcd.svc.cluster.local:2379";
    assert_eq!(flag_value(&agent_args, "--etcd"), Some(url));
    assert_eq!(
        flag_value(&agent_args, "--advertise"),
        Some(format!("$(POD_IP):{AGENT_PORT}").as_str())
    );
    assert_eq!(flag_value(&agent_args, "--etcd-ttl"), Some("15"));
    let job_pod = pod_spec(r.job());
    let run_args = argv(container(job_pod, "controller"));
    assert_eq!(flag_value(&run_args, "--etcd"), Some(url));
    assert_eq!(flag_value(&run_args, "--concurrency"), Some("1"));
    assert_eq!(flag_value(&run_args, "--duration"), Some("1s"));
    // storageClass "-": an explicitly empty class.
    assert_eq!(
        r.of_kind("PersistentVolumeClaim")[0]["spec"]["storageClassName"],
        ""
    );

    let etcd = Server::start("etcd");
    let ips = ["127.0.0.41", "127.0.0.42"];
    let mut cluster = Cluster::new(&r, &ips);
    cluster
        .urls
        .push((url.to_string(), etcd.get("ETCD_ENDPOINT").to_string()));
    let tls = cluster.root.path().join("certs");
    certs(&tls);
    cluster.secret_from_dir("chorus-tls", &tls, &TLS_KEYS);
    let mut agents = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let node = format!("etcd-node-{i}");
        agents.push(start_agent(&cluster.prepare(
            pod,
            agent,
            &PodInfo::new(&node, &node, ip),
        )));
    }
    let results = cluster.claim_dir("chorus-results").to_path_buf();
    let run = run_job(&cluster, &results);
    let port = cluster.port;
    let mut found = run_agents(&run);
    found.sort();
    assert_eq!(
        found,
        [
            ("etcd-node-0".to_string(), format!("127.0.0.41:{port}")),
            ("etcd-node-1".to_string(), format!("127.0.0.42:{port}")),
        ]
    );
}

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
