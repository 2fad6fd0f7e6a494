//! Host topology: which NUMA nodes the host has, which CPUs each holds, and
//! which of those CPUs this process may run on.
//!
//! The node layout comes from `/sys/devices/system/node/node*/cpulist`; the
//! usable CPUs come from `sched_getaffinity`, so `taskset`, cgroup cpusets
//! and container CPU limits expressed as cpusets are honoured. Every node's
//! CPU list is intersected with the usable CPUs and a node left with none is
//! dropped: a pool pinned to CPUs the process cannot use would never run.
//!
//! Also here: the kernel's CPU list syntax (`0-3,8,10-11`), both ways, and
//! thin wrappers over `sched_getaffinity` / `sched_setaffinity` that
//! [`crate::pools`] uses to pin its threads.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::Path;

use serde::Serialize;

/// Where the kernel describes NUMA nodes.
pub const SYSFS_NODE_DIR: &str = "/sys/devices/system/node";

/// The highest CPU count handled. Far above any real machine (the kernel's
/// own `NR_CPUS` maximum is 8192), and it keeps a typo such as `0-4000000000`
/// from allocating a huge list or affinity mask.
pub const MAX_CPUS: usize = 1 << 16;

/// The CPU layout this process sees.
#[derive(Clone, Debug, Serialize)]
pub struct Topology {
    /// NUMA nodes with at least one allowed CPU, by ascending id.
    pub nodes: Vec<NumaNode>,
    /// The CPUs this process may run on, ascending.
    pub allowed_cpus: Vec<usize>,
}

/// One NUMA node.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NumaNode {
    /// The kernel's node number (`nodeN`).
    pub id: usize,
    /// The node's CPUs that this process may use, ascending.
    pub cpus: Vec<usize>,
}

impl Topology {
    /// Reads the host: node layout from sysfs, usable CPUs from the
    /// process's affinity mask.
    ///
    /// Never fails: the agent must be able to start on odd hosts, so any
    /// problem falls back to one node holding every allowed CPU, with a
    /// warning saying why.
    pub fn detect() -> Topology {
        let allowed = match current_affinity() {
            Ok(cpus) if !cpus.is_empty() => cpus,
            Ok(_) => fallback_cpus("the affinity mask is empty"),
            Err(e) => fallback_cpus(&format!("sched_getaffinity failed: {e}")),
        };
        match Topology::from_sysfs(Path::new(SYSFS_NODE_DIR), &allowed) {
            Ok(topo) => {
                let on_nodes: BTreeSet<usize> = topo
                    .nodes
                    .iter()
                    .flat_map(|n| n.cpus.iter().copied())
                    .collect();
                let orphans: Vec<usize> = allowed
                    .iter()
                    .copied()
                    .filter(|c| !on_nodes.contains(c))
                    .collect();
                if !orphans.is_empty() {
                    // Possible with CPUs hot-added after boot; such CPUs get
                    // no per-node pool, which the operator should know.
                    tracing::warn!(
                        cpus = %format_cpu_list(&orphans),
                        "allowed CPUs belong to no NUMA node in {SYSFS_NODE_DIR}"
                    );
                }
                topo
            }
            Err(e) => {
                tracing::warn!(
                    "cannot read NUMA layout ({e}); using one node for all allowed CPUs"
                );
                Topology::single_node(allowed)
            }
        }
    }

    /// Builds the topology from a sysfs-style node directory `root`
    /// (normally [`SYSFS_NODE_DIR`]) and the CPUs the process may use.
    ///
    /// A missing `root` means a kernel without NUMA support: one node 0
    /// holding every allowed CPU. Entries other than `node<N>` directories
    /// (`online`, `possible`, `has_cpu`, …) are ignored. An unreadable or
    /// malformed `cpulist` is an error naming the file, rather than a node
    /// silently left out.
    pub fn from_sysfs(root: &Path, allowed: &[usize]) -> Result<Topology, String> {
        let allowed = normalise(allowed);
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Topology::single_node(allowed));
            }
            Err(e) => return Err(format!("{}: {e}", root.display())),
        };
        let allowed_set: BTreeSet<usize> = allowed.iter().copied().collect();
        let mut nodes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", root.display()))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("node"))
                .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse::<usize>().ok())
            else {
                continue;
            };
            let path = entry.path().join("cpulist");
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let cpus = parse_cpu_list(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let cpus: Vec<usize> = cpus
                .into_iter()
                .filter(|c| allowed_set.contains(c))
                .collect();
            // Memory-only nodes and nodes outside our cpuset have no CPU we
            // could pin to.
            if !cpus.is_empty() {
                nodes.push(NumaNode { id, cpus });
            }
        }
        nodes.sort_by_key(|n| n.id);
        Ok(Topology {
            nodes,
            allowed_cpus: allowed,
        })
    }

    /// One node 0 holding `allowed` (no node with an empty CPU list).
    fn single_node(allowed: Vec<usize>) -> Topology {
        let allowed = normalise(&allowed);
        let nodes = if allowed.is_empty() {
            Vec::new()
        } else {
            vec![NumaNode {
                id: 0,
                cpus: allowed.clone(),
            }]
        };
        Topology {
            nodes,
            allowed_cpus: allowed,
        }
    }
}

impl fmt::Display for Topology {
    /// `2 allowed CPUs (0-1) on 1 NUMA node: node0 [0-1]`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.allowed_cpus.len();
        let m = self.nodes.len();
        write!(
            f,
            "{n} allowed CPU{} ({}) on {m} NUMA node{}",
            if n == 1 { "" } else { "s" },
            format_cpu_list(&self.allowed_cpus),
            if m == 1 { "" } else { "s" },
        )?;
        for (i, node) in self.nodes.iter().enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            write!(f, "{sep}node{} [{}]", node.id, format_cpu_list(&node.cpus))?;
        }
        Ok(())
    }
}

/// Sorted and without duplicates, as every CPU list here is kept.
fn normalise(cpus: &[usize]) -> Vec<usize> {
    cpus.iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Used when the affinity mask cannot be read: assume the CPUs the standard
/// library counts, numbered from 0.
fn fallback_cpus(why: &str) -> Vec<usize> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    tracing::warn!("{why}; assuming CPUs 0-{}", n - 1);
    (0..n).collect()
}

/// Parses the kernel's CPU list syntax: comma-separated CPU numbers and
/// inclusive ranges, e.g. `0-3,8,10-11`. Whitespace around items (and the
/// trailing newline sysfs files end with) is ignored; an empty list gives no
/// CPUs, as sysfs writes for a node without any. The result is sorted and
/// without duplicates.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let text = text.trim();
    let mut cpus = BTreeSet::new();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty item in CPU list {text:?}"));
        }
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (parse_cpu(a, item)?, parse_cpu(b, item)?),
            None => {
                let cpu = parse_cpu(item, item)?;
                (cpu, cpu)
            }
        };
        if first > last {
            return Err(format!(
                "CPU range {item:?} is backwards (write {last}-{first})"
            ));
        }
        cpus.extend(first..=last);
    }
    Ok(cpus.into_iter().collect())
}

fn parse_cpu(text: &str, item: &str) -> Result<usize, String> {
    let text = text.trim();
    let cpu: usize = text
        .parse()
        .map_err(|_| format!("{text:?} in {item:?} is not a CPU number"))?;
    if cpu >= MAX_CPUS {
        return Err(format!(
            "CPU {cpu} in {item:?} is out of range (CPU numbers go up to {})",
            MAX_CPUS - 1
        ));
    }
    Ok(cpu)
}

/// Formats CPUs in the kernel's list syntax, merging runs into ranges:
/// `[0, 1, 2, 3, 8]` gives `0-3,8`. The inverse of [`parse_cpu_list`], and
/// the same text `/proc/<pid>/status` shows as `Cpus_allowed_list`.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let cpus = normalise(cpus);
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// The word type of an affinity mask, as the kernel reads it.
type MaskWord = libc::c_ulong;
const MASK_WORD_BITS: usize = MaskWord::BITS as usize;

/// glibc's fixed `cpu_set_t` (and so `CPU_SET`) covers 1024 CPUs; hosts can
/// have more, so masks here are sized from the CPUs involved instead, and
/// reading starts at this many bits and doubles while the kernel says the
/// mask is too small.
const MIN_MASK_BITS: usize = 1024;

/// The CPUs the calling thread may run on (for the main thread before any
/// pinning: the process's CPUs).
pub fn current_affinity() -> io::Result<Vec<usize>> {
    let mut bits = MIN_MASK_BITS;
    loop {
        let mut mask: Vec<MaskWord> = vec![0; bits / MASK_WORD_BITS];
        let size = mask.len() * std::mem::size_of::<MaskWord>();
        // SAFETY: `mask` is a writable buffer of exactly `size` bytes,
        // aligned for `c_ulong` as `cpu_set_t` is; the kernel writes at most
        // `size` bytes and glibc zero-fills the rest up to `size`.
        let rc = unsafe { libc::sched_getaffinity(0, size, mask.as_mut_ptr().cast()) };
        if rc == 0 {
            return Ok((0..bits)
                .filter(|&cpu| mask[cpu / MASK_WORD_BITS] & (1 << (cpu % MASK_WORD_BITS)) != 0)
                .collect());
        }
        let err = io::Error::last_os_error();
        // EINVAL: the mask is smaller than the kernel's CPU count.
        if err.raw_os_error() == Some(libc::EINVAL) && bits < MAX_CPUS {
            bits *= 2;
            continue;
        }
        return Err(err);
    }
}

/// Restricts the calling thread to `cpus`. Threads it creates afterwards
/// (and processes it spawns) inherit the restriction.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    let Some(&max) = cpus.iter().max() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot pin a thread to an empty CPU set",
        ));
    };
    if max >= MAX_CPUS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "CPU {max} is out of range (CPU numbers go up to {})",
                MAX_CPUS - 1
            ),
        ));
    }
    let words = (max / MASK_WORD_BITS + 1).max(MIN_MASK_BITS / MASK_WORD_BITS);
    let mut mask: Vec<MaskWord> = vec![0; words];
    for &cpu in cpus {
        mask[cpu / MASK_WORD_BITS] |= 1 << (cpu % MASK_WORD_BITS);
    }
    let size = mask.len() * std::mem::size_of::<MaskWord>();
    // SAFETY: `mask` is a readable buffer of exactly `size` bytes, aligned
    // as `cpu_set_t`; pid 0 means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, size, mask.as_ptr().cast()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn parses_kernel_syntax() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n").unwrap(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpu_list("5").unwrap(), vec![5]);
        assert_eq!(parse_cpu_list(" 3 , 1-2 ,1").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("4-4").unwrap(), vec![4]);
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let cases = [
            ("1,,2", "empty item"),
            ("0-", "\"\" in \"0-\" is not a CPU number"),
            ("a", "\"a\" in \"a\" is not a CPU number"),
            ("3-1", "backwards (write 1-3)"),
            ("-1", "is not a CPU number"),
            ("0-99999999999", "out of range"),
            ("1-2-3", "is not a CPU number"),
        ];
        for (text, needle) in cases {
            let err = parse_cpu_list(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["0-3,8,10-11", "0", "1,3,5", "0-1", ""] {
            assert_eq!(format_cpu_list(&parse_cpu_list(text).unwrap()), text);
        }
        assert_eq!(format_cpu_list(&[3, 1, 2, 2]), "1-3");
    }

    /// A fake `/sys/devices/system/node` with the given (node dir, cpulist).
    fn fake_sysfs(nodes: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, list) in nodes {
            let node = dir.path().join(name);
            fs::create_dir(&node).unwrap();
            fs::write(node.join("cpulist"), format!("{list}\n")).unwrap();
        }
        // Files every real node dir has next to the node dirs.
        fs::write(dir.path().join("online"), "0-2\n").unwrap();
        fs::write(dir.path().join("possible"), "0-2\n").unwrap();
        dir
    }

    #[test]
    fn nodes_are_intersected_with_allowed_cpus() {
        let sys = fake_sysfs(&[
            ("node0", "0-3"),
            ("node1", "4-7"),
            ("node10", "8-9"),
            ("node2", ""),
        ]);
        let all: Vec<usize> = (0..10).collect();
        let topo = Topology::from_sysfs(sys.path(), &all).unwrap();
        let ids: Vec<usize> = topo.nodes.iter().map(|n| n.id).collect();
        // node2 has no CPUs (memory only); node10 sorts after node1.
        assert_eq!(ids, vec![0, 1, 10]);

        // As under `taskset -c 2-5`: node10 has no allowed CPU and is dropped.
        let topo = Topology::from_sysfs(sys.path(), &[5, 2, 3, 4]).unwrap();
        assert_eq!(
            topo.nodes,
            vec![
                NumaNode {
                    id: 0,
                    cpus: vec![2, 3]
                },
                NumaNode {
                    id: 1,
                    cpus: vec![4, 5]
                },
            ]
        );
        assert_eq!(topo.allowed_cpus, vec![2, 3, 4, 5]);
        assert_eq!(
            topo.to_string(),
            "4 allowed CPUs (2-5) on 2 NUMA nodes: node0 [2-3], node1 [4-5]"
        );
    }

    #[test]
    fn no_node_dir_means_one_node() {
        let dir = tempfile::tempdir().unwrap();
        let topo = Topology::from_sysfs(&dir.path().join("missing"), &[1, 0]).unwrap();
        assert_eq!(
            topo.nodes,
            vec![NumaNode {
                id: 0,
                cpus: vec![0, 1]
            }]
        );
        assert_eq!(
            topo.to_string(),
            "2 allowed CPUs (0-1) on 1 NUMA node: node0 [0-1]"
        );
    }

    #[test]
    fn bad_cpulist_is_an_error_naming_the_file() {
        let sys = fake_sysfs(&[("node0", "0-1"), ("node1", "2-x")]);
        let err = Topology::from_sysfs(sys.path(), &[0, 1, 2]).unwrap_err();
        assert!(
            err.contains("node1/cpulist") && err.contains("\"x\""),
            "{err}"
        );
    }

    #[test]
    fn detect_matches_proc_status() {
        let topo = Topology::detect();
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list in /proc/self/status");
        // Test threads start with the process's mask and nothing here pins
        // them, so the detected CPUs are the process's.
        assert_eq!(topo.allowed_cpus, parse_cpu_list(line).unwrap());
        assert!(!topo.nodes.is_empty(), "{topo}");
        for node in &topo.nodes {
            assert!(
                node.cpus.iter().all(|c| topo.allowed_cpus.contains(c)),
                "{topo}"
            );
        }
    }

    #[test]
    fn pin_and_read_back() {
        let allowed = current_affinity().unwrap();
        let first = allowed[0];
        // On a fresh thread, so the test harness's threads keep their mask.
        std::thread::spawn(move || {
            pin_current_thread(&[first]).unwrap();
            assert_eq!(current_affinity().unwrap(), vec![first]);
        })
        .join()
        .unwrap();
        assert!(pin_current_thread(&[]).is_err());
        assert!(pin_current_thread(&[MAX_CPUS]).is_err());
    }
}
