//! Linux network namespaces as agent "hosts": each gets its own address, so
//! the controller reaches every agent over a real (virtual) link instead of
//! loopback, and a test can cut one host's link.
//!
//! A [`Net`] of `n` hosts makes namespaces `chorus-<pid>-<k>`, each joined to
//! the root namespace (where the controller and the test run) by a veth pair:
//! `chv<pid>x<k>` in the root namespace, `eth0` inside. Every host gets its
//! own /30 out of a private /24 chosen per test process from its pid, so
//! tests running at the same time in other processes do not collide; within
//! a process a counter numbers the hosts of all its `Net`s. Everything is
//! removed on drop, and namespaces left by earlier runs that crashed (their
//! pid is gone) are removed when the first `Net` of a process is made.
//!
//! This needs root (CAP_NET_ADMIN) and iproute2; without them [`Net::new`]
//! panics saying so, because a test that silently skipped would hide a
//! broken CI setup.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Hosts one process may make over all its `Net`s: a /24 holds 64 /30s.
const MAX_HOSTS_PER_PROCESS: u32 = 64;
/// How long a new host's link may take to pass a TCP connection. Links are
/// up at once in practice; this only bounds a broken setup.
const LINK_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The /24s a process may pick lie in `10.64.0.0/10`: 16384 of them.
const SUBNET_FIRST_OCTET2: u32 = 64;
const SUBNET_COUNT: u32 = 64 * 256;
/// /24s tried after the pid's own when it overlaps a route already there.
const SUBNET_PROBES: u32 = 64;

/// Hosts made so far by this process, over all `Net`s: names and /30s.
static NEXT_HOST: AtomicU32 = AtomicU32::new(0);
/// This process's /24, picked (and leftovers cleaned) once.
static SUBNET: OnceLock<Ipv4Addr> = OnceLock::new();

/// One namespace "host".
#[derive(Clone, Debug)]
pub struct Host {
    /// The namespace name, for `ip netns exec`.
    pub ns: String,
    /// The root-namespace end of the veth pair; cutting it cuts the host off.
    pub veth: String,
    /// The host's own address (on `eth0` in its namespace).
    pub ip: Ipv4Addr,
    /// The root namespace's address on this host's link: how the host
    /// reaches the controller or a server listening in the root namespace.
    pub root_ip: Ipv4Addr,
}

/// `n` namespace hosts; removed on drop.
pub struct Net {
    hosts: Vec<Host>,
}

impl Net {
    /// Makes `n` hosts, each with loopback up, its link up, a default route
    /// to the root namespace, and a TCP connection from it to the root
    /// namespace checked. Panics with a clear message if it cannot.
    pub fn new(n: usize) -> Net {
        let subnet = *SUBNET.get_or_init(|| {
            remove_leftovers();
            pick_subnet()
        });
        let mut net = Net { hosts: Vec::new() };
        for _ in 0..n {
            let k = NEXT_HOST.fetch_add(1, Ordering::Relaxed);
            assert!(
                k < MAX_HOSTS_PER_PROCESS,
                "a test process may make at most {MAX_HOSTS_PER_PROCESS} namespace hosts"
            );
            let base = u32::from(subnet) + 4 * k;
            let pid = std::process::id();
            let host = Host {
                ns: format!("chorus-{pid}-{k}"),
                veth: format!("chv{pid}x{k}"),
                root_ip: Ipv4Addr::from(base + 1),
                ip: Ipv4Addr::from(base + 2),
            };
            // Pushed before it exists so that drop removes a half-made host.
            net.hosts.push(host.clone());
            make_host(&host);
        }
        for i in 0..n {
            net.check_link(i);
        }
        net
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Host `i`'s own address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.hosts[i].ip
    }

    /// The root namespace's address as seen from host `i`.
    pub fn root_ip(&self, i: usize) -> Ipv4Addr {
        self.hosts[i].root_ip
    }

    /// `cmd` to be run inside host `i`'s namespace: `ip netns exec NS env
    /// [-u K] [K=V] PROGRAM ARGS`. Its environment changes are passed
    /// through `env` so that they reach only the program, not `ip` (an
    /// `LD_PRELOAD` of libfaketime, say); its working directory is kept.
    /// `env_clear` cannot be seen through `Command` and is not carried over.
    /// Set stdio on the result and spawn it; `ip netns exec` execs the
    /// program, so the child's pid is the program's and killing it works.
    pub fn command(&self, i: usize, cmd: &Command) -> Command {
        let mut out = Command::new("ip");
        out.args(["netns", "exec", &self.hosts[i].ns, "env"]);
        let (mut unset, mut set) = (Vec::new(), Vec::new());
        for (k, v) in cmd.get_envs() {
            match v {
                None => unset.push(k.to_os_string()),
                Some(v) => {
                    let mut kv = k.to_os_string();
                    kv.push("=");
                    kv.push(v);
                    set.push(kv);
                }
            }
        }
        for k in unset {
            out.arg("-u").arg(k);
        }
        out.args(set);
        out.arg(cmd.get_program()).args(cmd.get_args());
        if let Some(dir) = cmd.get_current_dir() {
            out.current_dir(dir);
        }
        out
    }

    /// Spawns `cmd` inside host `i`'s namespace, stdio inherited; see
    /// [`Net::command`] to set stdio first.
    pub fn spawn(&self, i: usize, cmd: &Command) -> std::io::Result<Child> {
        self.command(i, cmd).spawn()
    }

    /// Runs `cmd` inside host `i`'s namespace and returns its output.
    pub fn output(&self, i: usize, cmd: &Command) -> Output {
        self.command(i, cmd)
            .output()
            .unwrap_or_else(|e| panic!("cannot run in {}: {e}", self.hosts[i].ns))
    }

    /// Cuts host `i` off: its link goes down, so packets either way are
    /// lost (connections hang, as on a real partition, rather than being
    /// refused).
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].veth, "down"]);
    }

    /// Brings host `i`'s link back after [`Net::cut`].
    pub fn restore(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].veth, "up"]);
    }

    /// Whether host `i`'s link is up (not cut).
    pub fn is_up(&self, i: usize) -> bool {
        let out = ip(&["-o", "link", "show", &self.hosts[i].veth]);
        link_flags_up(&String::from_utf8_lossy(&out.stdout))
    }

    /// Checks that host `i` has loopback up and can reach the root
    /// namespace (see [`Net::reaches_root`]); panics saying which failed.
    pub fn check_link(&self, i: usize) {
        let host = &self.hosts[i];
        let lo = ip(&["-n", &host.ns, "-o", "link", "show", "lo"]);
        assert!(
            link_flags_up(&String::from_utf8_lossy(&lo.stdout)),
            "loopback is not up in {}",
            host.ns
        );
        if let Err(e) = self.reaches_root(i, LINK_CHECK_TIMEOUT) {
            panic!("{e}");
        }
    }

    /// Whether host `i` can open a TCP connection to the root namespace's
    /// address on its link within `within`: a listener here, `bash`'s
    /// `/dev/tcp` there. That needs packets both ways (SYN, SYN-ACK), so
    /// it also tells whether the controller can reach an agent on the host.
    pub fn reaches_root(&self, i: usize, within: Duration) -> Result<(), String> {
        let host = &self.hosts[i];
        let listener = std::net::TcpListener::bind((host.root_ip, 0))
            .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", host.root_ip));
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let mut probe = Command::new("timeout");
        probe.args([
            &format!("{:.3}", within.as_secs_f64()),
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{}/{port}", host.root_ip),
        ]);
        let child = self
            .command(i, &probe)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run a probe in {}: {e}", host.ns));
        // A little longer than the probe's own limit, so that a connection
        // made at its last moment is still accepted.
        let deadline = Instant::now() + within + Duration::from_millis(500);
        let accepted = loop {
            match listener.accept() {
                Ok(_) => break true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        break false;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept on {}: {e}", host.root_ip),
            }
        };
        let out = child.wait_with_output().expect("probe");
        if accepted && out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "host {} ({}) cannot reach the root namespace at {}:{port} within {within:?}: {}",
                host.ns,
                host.ip,
                host.root_ip,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for host in &self.hosts {
            // Deleting the namespace deletes its end of the veth pair and
            // with it the root end. The root end is deleted too in case the
            // namespace never got it.
            let _ = Command::new("ip")
                .args(["netns", "del", &host.ns])
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("ip")
                .args(["link", "del", &host.veth])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `ip ARGS`, panicking with its stderr (and what this needs) if it
/// fails.
fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `ip` ({e}): the network namespace tests need iproute2 (scripts/install-test-deps.sh)")
    });
    assert!(
        out.status.success(),
        "`ip {}` failed: {}\nthe network namespace tests need root (CAP_NET_ADMIN) and iproute2",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

/// Makes one host: namespace, veth pair straight into it, addresses,
/// links and loopback up, default route back to the root namespace.
fn make_host(h: &Host) {
    let (root_cidr, ns_cidr) = (format!("{}/30", h.root_ip), format!("{}/30", h.ip));
    ip(&["netns", "add", &h.ns]);
    // The peer is made inside the namespace at once, so a crash cannot
    // leave it in the root namespace.
    ip(&[
        "link", "add", &h.veth, "type", "veth", "peer", "name", "eth0", "netns", &h.ns,
    ]);
    ip(&["addr", "add", &root_cidr, "dev", &h.veth]);
    ip(&["link", "set", &h.veth, "up"]);
    ip(&["-n", &h.ns, "addr", "add", &ns_cidr, "dev", "eth0"]);
    ip(&["-n", &h.ns, "link", "set", "eth0", "up"]);
    ip(&["-n", &h.ns, "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        &h.ns,
        "route",
        "add",
        "default",
        "via",
        &h.root_ip.to_string(),
    ]);
}

/// Whether an `ip -o link show` line has the UP flag (administratively up).
fn link_flags_up(line: &str) -> bool {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .is_some_and(|(flags, _)| flags.split(',').any(|f| f == "UP"))
}

/// The pid in a name made by an earlier `Net`: `chorus-<pid>-<k>` or
/// `chv<pid>x<k>`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("chorus-")
        .map(|r| r.split_once('-'))
        .or_else(|| name.strip_prefix("chv").map(|r| r.split_once('x')))??;
    let (pid, k) = rest;
    k.parse::<u32>().ok()?;
    pid.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes namespaces and root veth ends made by processes that are gone
/// (a test killed before its `Net` dropped). The first [`Net::new`] of a
/// process calls it.
pub fn remove_leftovers() {
    let list = ip(&["netns", "list"]);
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        // `NAME` or `NAME (id: N)`.
        let name = line.split_whitespace().next().unwrap_or("");
        if owner_pid(name).is_some_and(|pid| !pid_alive(pid)) {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
    let links = ip(&["-o", "link", "show"]);
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        // `7: chv123x0@if2: <...> ...`
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with("chv") && owner_pid(name).is_some_and(|pid| !pid_alive(pid)) {
            let _ = Command::new("ip").args(["link", "del", name]).status();
        }
    }
}

/// This process's /24: from its pid, so that processes started close
/// together get different ones, skipping any that overlaps a route the
/// root namespace already has (a real network on 10.x).
fn pick_subnet() -> Ipv4Addr {
    let routes = ip(&["-4", "route", "show", "table", "all"]);
    let taken: Vec<(u32, u32)> = String::from_utf8_lossy(&routes.stdout)
        .lines()
        .filter_map(route_destination)
        .collect();
    let first = std::process::id() % SUBNET_COUNT;
    for probe in 0..SUBNET_PROBES {
        let n = (first + probe) % SUBNET_COUNT;
        let net = (10 << 24) | ((SUBNET_FIRST_OCTET2 + n / 256) << 16) | ((n % 256) << 8);
        if !taken.iter().any(|&p| overlaps(p, (net, 24))) {
            return Ipv4Addr::from(net);
        }
    }
    panic!("no free /24 in 10.64.0.0/10 for network namespace hosts");
}

/// The destination of one `ip route show` line, if it is a prefix: the
/// first word, or the second after a route type (`local 127.0.0.0/8 ...`).
/// `default` routes cover everything and are left out.
fn route_destination(line: &str) -> Option<(u32, u32)> {
    const TYPES: [&str; 10] = [
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "anycast",
        "blackhole",
        "unreachable",
        "prohibit",
        "throw",
        "nat",
    ];
    let mut words = line.split_whitespace();
    let mut dst = words.next()?;
    if TYPES.contains(&dst) {
        dst = words.next()?;
    }
    parse_prefix(dst).filter(|&(_, len)| len > 0)
}

/// `a.b.c.d/len` or `a.b.c.d` (a /32) to (address, length).
fn parse_prefix(s: &str) -> Option<(u32, u32)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse().ok()?),
        None => (s, 32),
    };
    Some((u32::from(addr.parse::<Ipv4Addr>().ok()?), len))
}

fn overlaps((a, alen): (u32, u32), (b, blen): (u32, u32)) -> bool {
    let len = alen.min(blen).min(32);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prefixes() {
        assert_eq!(owner_pid("chorus-123-0"), Some(123));
        assert_eq!(owner_pid("chv4194304x63"), Some(4_194_304));
        assert_eq!(owner_pid("chorus-embedded-1"), None);
        assert_eq!(owner_pid("eth0"), None);
        // The longest root veth name fits Linux's 15 bytes.
        assert!("chv4194304x63".len() <= 15);
        assert!(link_flags_up("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536"));
        assert!(!link_flags_up(
            "9: chv1x0@if2: <BROADCAST,MULTICAST> mtu 1500"
        ));
        let p = |s| parse_prefix(s).unwrap();
        assert!(overlaps(p("10.0.0.0/8"), p("10.64.3.0/24")));
        assert!(overlaps(p("10.64.3.7"), p("10.64.3.0/24")));
        assert!(!overlaps(p("10.64.4.0/24"), p("10.64.3.0/24")));
        assert!(!overlaps(p("192.0.2.0/24"), p("10.64.3.0/24")));
        assert_eq!(
            route_destination("local 127.0.0.0/8 dev lo table local"),
            Some(p("127.0.0.0/8"))
        );
        assert_eq!(
            route_destination("192.0.2.0/24 dev eth0 proto kernel"),
            Some(p("192.0.2.0/24"))
        );
        assert_eq!(route_destination("default via 192.0.2.1 dev eth0"), None);
    }
}
