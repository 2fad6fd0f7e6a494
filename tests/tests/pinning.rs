//! Pinning is real: `agent --topology` reports the CPUs this process may
//! use (and honours a narrower affinity it is started with), and the
//! threads of pinned pools may run only on their pool's CPUs, as the kernel
//! reports in `/proc/self/task/*/status`.
//!
//! CPU lists are read and parsed here, not with the code under test.

use std::collections::BTreeMap;
use std::process::Command;

use chorus_common::pools::{PoolSpec, Pools};
use chorus_common::topology::{Topology, pin_current_thread};
use chorus_tests::bin;

/// Parses the kernel's `0-3,8` syntax (test-local on purpose).
fn cpus(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for item in list.trim().split(',').filter(|s| !s.is_empty()) {
        match item.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => out.push(item.parse().unwrap()),
        }
    }
    out.sort_unstable();
    out
}

/// A field (`Name`, `Cpus_allowed_list`) of a `/proc/.../status` text.
fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

fn process_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    cpus(field(&status, "Cpus_allowed_list").unwrap())
}

/// Runs `agent --topology`; returns (allowed CPUs line, pool CPU sets).
fn agent_topology() -> (Vec<usize>, Vec<Vec<usize>>, String) {
    let out = Command::new(bin("agent"))
        .arg("--topology")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "agent --topology failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let allowed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("allowed CPUs: "))
        .unwrap_or_else(|| panic!("no `allowed CPUs:` line in:\n{stdout}"));
    // `  pool0: node0, CPUs 0-1, 2 worker threads`
    let pools: Vec<Vec<usize>> = stdout
        .lines()
        .filter(|l| {
            l.strip_prefix("  pool")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(|l| {
            let set = l.split("CPUs ").nth(1).and_then(|r| r.split(',').next());
            cpus(set.unwrap_or_else(|| panic!("no CPUs in pool line {l:?}")))
        })
        .collect();
    assert!(!pools.is_empty(), "no pool lines in:\n{stdout}");
    assert!(
        stdout.contains("pinning check: "),
        "no pinning check in:\n{stdout}"
    );
    (cpus(allowed), pools, stdout)
}

#[test]
fn agent_topology_lists_this_process_cpus() {
    let mine = process_cpus();
    let (allowed, pools, stdout) = agent_topology();
    assert_eq!(allowed, mine, "agent --topology printed:\n{stdout}");
    // One pool per node: together they cover every allowed CPU here (no
    // test host has CPUs outside every node).
    let mut covered: Vec<usize> = pools.concat();
    covered.sort_unstable();
    covered.dedup();
    assert_eq!(covered, mine, "agent --topology printed:\n{stdout}");
}

#[test]
fn agent_topology_honours_a_narrower_affinity() {
    // A child inherits the affinity of the thread that starts it, as under
    // `taskset -c <cpu> agent --topology`.
    let mine = process_cpus();
    let last = *mine.last().unwrap();
    let (allowed, pools, stdout) = std::thread::spawn(move || {
        pin_current_thread(&[last]).unwrap();
        agent_topology()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert_eq!(allowed, vec![last], "agent --topology printed:\n{stdout}");
    assert_eq!(
        pools,
        vec![vec![last]],
        "agent --topology printed:\n{stdout}"
    );
}

#[test]
fn pool_threads_run_only_on_their_cpus() {
    let topo = Topology::detect();
    let sets = if topo.allowed_cpus.contains(&0) && topo.allowed_cpus.contains(&1) {
        vec![vec![0], vec![1]]
    } else {
        // Still a real check, of one pool instead of two.
        eprintln!(
            "CPUs 0 and 1 are not both allowed ({:?}): checking one pool on CPU {}",
            topo.allowed_cpus, topo.allowed_cpus[0]
        );
        vec![vec![topo.allowed_cpus[0]]]
    };
    let pools = Pools::build(&PoolSpec::CpuSets(sets.clone()), &topo).unwrap();
    // Make every pool start blocking threads too, and keep them (idle
    // blocking threads live on for seconds) while /proc is read.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for i in 0..pools.len() {
        let jobs: Vec<_> = (0..4)
            .map(|_| {
                pools
                    .handle(i)
                    .spawn_blocking(|| std::thread::sleep(std::time::Duration::from_millis(50)))
            })
            .collect();
        for job in jobs {
            rt.block_on(job).unwrap();
        }
    }

    // Pool index -> CPU lists of its threads, from the kernel.
    let mut seen: BTreeMap<usize, Vec<Vec<usize>>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = entry.unwrap().path().join("status");
        let Ok(status) = std::fs::read_to_string(&path) else {
            continue; // the thread exited meanwhile
        };
        let name = field(&status, "Name").unwrap();
        // `chorus-pool<i>-<n>` (the kernel keeps 15 bytes of the name).
        let Some(rest) = name.strip_prefix("chorus-pool") else {
            continue;
        };
        let pool: usize = rest
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("pool thread name {name:?} has no pool number"));
        let allowed = cpus(field(&status, "Cpus_allowed_list").unwrap());
        seen.entry(pool).or_default().push(allowed);
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..sets.len()).collect::<Vec<_>>(),
        "pool threads found: {seen:?}"
    );
    for (pool, threads) in &seen {
        // One worker per CPU plus at least one blocking thread.
        assert!(
            threads.len() > sets[*pool].len(),
            "pool {pool}: only {} threads: {threads:?}",
            threads.len()
        );
        for allowed in threads {
            assert_eq!(allowed, &sets[*pool], "a thread of pool {pool}: {seen:?}");
        }
    }
}
