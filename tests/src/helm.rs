//! Shared machinery of the deployment tests (`tests/deploy_helm.rs`,
//! `tests/deploy_image.rs`): rendering the Helm chart `deploy/helm/chorus`
//! with Helm's own template engine, reading the rendered objects, checking
//! that the real binaries accept a rendered command line, and a kubelet,
//! cluster DNS and pod network, just enough to run the rendered pods.
//!
//! It exists so that the chart is tested by what its pods do, not only by
//! what its YAML says: the rendered containers are run with the real
//! `agent` and `controller` binaries the way a kubelet would run them —
//! Secrets, ConfigMaps and volumes made into directories, the environment
//! built and `$(VAR)` expanded as Kubernetes does — and the run directory
//! they write can then be checked.
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

use serde_json::Value;

use crate::{bin, only_run_dir, read_json, repo_root};

/// The agent port the chart's values default to.
pub const AGENT_PORT: u16 = 7167;
/// The uid and gid of the image's user, which the chart runs as.
pub const IMAGE_UID: u64 = 10001;
/// How long an emulated pod's agent may take to say it listens.
const AGENT_START: Duration = Duration::from_secs(30);

pub fn chart_dir() -> PathBuf {
    repo_root().join("deploy/helm/chorus")
}

pub fn ci_values(name: &str) -> PathBuf {
    chart_dir().join("ci").join(name)
}

// --- rendering ---------------------------------------------------------------

/// A rendered chart: its objects, in template order.
pub struct Rendered {
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

pub fn render(values: Option<&Path>, sets: &[&str]) -> Rendered {
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
pub fn render_error(values: Option<&Path>, sets: &[&str]) -> String {
    let out = helm_render(values, sets);
    assert!(
        !out.status.success(),
        "rendering with {sets:?} should fail but printed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn text(v: &Value) -> &str {
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
    pub fn kinds(&self) -> BTreeSet<(String, String)> {
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

    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", self.kinds()))
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// The agents' workload (StatefulSet or DaemonSet).
    pub fn agents(&self) -> &Value {
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

    pub fn job(&self) -> &Value {
        let jobs = self.of_kind("Job");
        assert_eq!(jobs.len(), 1, "one controller Job expected");
        jobs[0]
    }

    /// The plan the controller Job mounts.
    pub fn plan(&self) -> String {
        let pod = pod_spec(self.job());
        let vol = volume(pod, "plan");
        let cm = self.get("ConfigMap", text(&vol["configMap"]["name"]));
        text(&cm["data"]["plan.yaml"]).to_string()
    }
}

/// The pod spec of a workload, Job or Pod.
pub fn pod_spec(obj: &Value) -> &Value {
    if obj["kind"] == "Pod" {
        &obj["spec"]
    } else {
        &obj["spec"]["template"]["spec"]
    }
}

pub fn containers(pod: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for key in ["initContainers", "containers"] {
        if let Some(list) = pod[key].as_array() {
            all.extend(list.iter());
        }
    }
    all
}

pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    containers(pod)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

pub fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no volume {name} in {}", pod["volumes"]))
}

pub fn has_volume(pod: &Value, name: &str) -> bool {
    pod["volumes"]
        .as_array()
        .is_some_and(|v| v.iter().any(|v| v["name"] == name))
}

/// command + args, as rendered.
pub fn argv(c: &Value) -> Vec<String> {
    let mut v = strings(&c["command"]);
    v.extend(strings(&c["args"]));
    v
}

/// The value after `flag` in `args`.
pub fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The items (key, path) a secret volume projects.
pub fn secret_items(vol: &Value) -> Vec<String> {
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
pub fn program_argv(c: &Value) -> Vec<String> {
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
pub fn assert_cli_accepts(argv: &[String]) {
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
pub struct PodInfo {
    name: String,
    node: String,
    ip: String,
}

impl PodInfo {
    pub fn new(name: &str, node: &str, ip: &str) -> PodInfo {
        PodInfo {
            name: name.into(),
            node: node.into(),
            ip: ip.into(),
        }
    }
}

/// A container made runnable here.
pub struct Prepared {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Secrets, claims, DNS and the agent port of a pretend cluster.
pub struct Cluster<'a> {
    chart: &'a Rendered,
    pub root: tempfile::TempDir,
    /// Secret name -> key -> content.
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Claim name -> directory.
    claims: BTreeMap<String, PathBuf>,
    /// DNS name -> IP.
    pub dns: Vec<(String, String)>,
    /// Rendered URL -> URL here (etcd).
    pub urls: Vec<(String, String)>,
    /// What stands in for the agent port on the pod addresses.
    pub port: u16,
    /// First on every container's PATH: the built binaries, then shims.
    pub path_dirs: Vec<PathBuf>,
}

impl<'a> Cluster<'a> {
    /// A cluster for `chart` whose pods get `pod_ips`; the agent port is
    /// one free on all of them.
    pub fn new(chart: &'a Rendered, pod_ips: &[&str]) -> Cluster<'a> {
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

    pub fn secret(&mut self, name: &str, data: &[(&str, String)]) {
        self.secrets.insert(
            name.into(),
            data.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
    }

    /// A Secret from the files of `dir` (as `kubectl create secret
    /// generic NAME --from-file=DIR/...` would).
    pub fn secret_from_dir(&mut self, name: &str, dir: &Path, keys: &[&str]) {
        let data: Vec<(&str, String)> = keys
            .iter()
            .map(|k| (*k, std::fs::read_to_string(dir.join(k)).unwrap()))
            .collect();
        self.secret(name, &data);
    }

    /// A claim that exists outside the chart (`existingClaim`).
    pub fn claim(&mut self, name: &str) -> PathBuf {
        let dir = self.root.path().join("claims").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        self.claims.insert(name.into(), dir.clone());
        dir
    }

    pub fn claim_dir(&self, name: &str) -> &Path {
        &self.claims[name]
    }

    /// Makes `container` of `pod_spec` runnable as pod `pod`: volumes as
    /// directories, the environment as the kubelet builds it, `$(VAR)`
    /// expanded, mount paths mapped to those directories, and addresses
    /// mapped to this host.
    pub fn prepare(&self, pod_spec: &Value, container: &Value, pod: &PodInfo) -> Prepared {
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
pub fn expand(s: &str, env: &[(String, String)]) -> String {
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
pub struct Running {
    child: Child,
    pub addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a prepared agent container and waits for `listening on ADDR`.
pub fn start_agent(p: &Prepared) -> Running {
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
pub fn run_to_end(p: &Prepared, extra: &[(&str, &str)]) -> Output {
    Command::new(&p.argv[0])
        .args(&p.argv[1..])
        .env_clear()
        .envs(p.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", p.argv))
}

pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The wait script polls every second here rather than every 5 s.
pub const FAST_WAIT: (&str, &str) = ("CHORUS_WAIT_INTERVAL", "1");

/// Runs the controller Job as rendered: its init container (waits for the
/// agents), then its controller container; returns the run directory in
/// `results`.
pub fn run_job(cluster: &Cluster, results: &Path) -> PathBuf {
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
pub fn run_agents(run: &Path) -> Vec<(String, String)> {
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
pub fn certs(dir: &Path) {
    let out = Command::new(bin("controller"))
        .args(["certs", "init"])
        .arg(dir)
        .output()
        .unwrap();
    assert_ok(&out, "controller certs init");
}

pub const TLS_KEYS: [&str; 5] = [
    "ca.pem",
    "agent.pem",
    "agent.key",
    "controller.pem",
    "controller.key",
];
