//! Pinned tokio runtime pools: one multi-thread runtime per NUMA node or per
//! CPU set, every thread pinned with `sched_setaffinity`.
//!
//! Why separate runtimes rather than one big one: tokio's work stealing
//! moves tasks between any of its workers, so a single runtime cannot keep a
//! worker's task, its buffers and its socket on one node. A runtime whose
//! threads are all pinned to one node's CPUs can.
//!
//! Every thread a pool starts — its workers and the blocking-pool threads
//! behind `spawn_blocking` and file I/O — is pinned from tokio's
//! `on_thread_start` hook, before it runs any task. [`Pools::build`] waits
//! for the workers to report in and fails if any could not be pinned, so a
//! pool that exists is pinned; later failures (a blocking thread started
//! after the cgroup cpuset shrank) are logged and counted in
//! [`Pools::pin_failures`]. Pinning is checkable from outside through
//! `/proc/<pid>/task/*/status` (`Cpus_allowed_list` of the threads named
//! `chorus-pool<i>-<n>`).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::topology::{Topology, format_cpu_list, parse_cpu_list, pin_current_thread};

/// The most pools one agent runs: more than any NUMA machine has nodes, and
/// it keeps a generated plan from starting thousands of runtimes.
pub const MAX_POOLS: usize = 1024;

/// How long [`Pools::build`] waits for a pool's worker threads to start and
/// pin themselves. Thread start takes microseconds; the margin is for a
/// heavily loaded host.
pub const PIN_WAIT: Duration = Duration::from_secs(10);

/// Thread names are `chorus-pool<i>-<n>`. Linux shows at most 15 bytes of a
/// thread name in `/proc`, so the prefix is kept short enough that the pool
/// number and its dash survive for pools up to 999.
pub const THREAD_NAME_PREFIX: &str = "chorus-pool";

/// How an agent lays its runtimes over CPUs.
#[derive(Clone, Debug, PartialEq)]
pub enum PoolSpec {
    /// one pool per NUMA node
    Numa,
    /// explicit CPU sets, one pool each
    CpuSets(Vec<Vec<usize>>),
    /// one unpinned pool
    Unpinned,
}

impl TryFrom<&crate::plan::Pinning> for PoolSpec {
    type Error = String;

    /// The plan's `pinning:` value; CPU set strings are parsed here, so an
    /// error names the set.
    fn try_from(p: &crate::plan::Pinning) -> Result<PoolSpec, String> {
        use crate::plan::Pinning;
        Ok(match p {
            Pinning::Numa => PoolSpec::Numa,
            Pinning::None => PoolSpec::Unpinned,
            Pinning::CpuSets(sets) => PoolSpec::CpuSets(
                sets.iter()
                    .enumerate()
                    .map(|(i, s)| {
                        parse_cpu_list(s).map_err(|e| format!("pinning[{i}] ({s:?}): {e}"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// One pool as it will be built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolLayout {
    /// The CPUs the pool's threads are pinned to (for an unpinned pool: all
    /// the CPUs the process may use), ascending.
    pub cpus: Vec<usize>,
    /// Worker threads: one per CPU.
    pub threads: usize,
    /// The NUMA node, for [`PoolSpec::Numa`].
    pub node: Option<usize>,
    /// False for [`PoolSpec::Unpinned`].
    pub pinned: bool,
}

/// Why pools could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no CPUs to run on: the topology lists no allowed CPU")]
    NoCpus,
    #[error("no CPU sets given: name at least one")]
    NoSets,
    #[error("{count} pools asked for; at most {MAX_POOLS} are allowed")]
    TooManyPools { count: usize },
    #[error("pool {pool}: the CPU set is empty")]
    EmptySet { pool: usize },
    #[error("pool {pool}: CPU {cpu} is not one this process may use (allowed: {allowed})")]
    CpuNotAllowed {
        pool: usize,
        cpu: usize,
        allowed: String,
    },
    #[error("pool {pool}: cannot start its runtime: {source}")]
    Runtime {
        pool: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("pool {pool}: cannot pin a thread to CPUs {cpus}: {error}")]
    Pin {
        pool: usize,
        cpus: String,
        error: String,
    },
}

impl PoolSpec {
    /// The pools this spec gives on `topo`, without starting anything:
    /// checks every CPU set against the CPUs the process may use.
    pub fn layout(&self, topo: &Topology) -> Result<Vec<PoolLayout>, PoolError> {
        if topo.allowed_cpus.is_empty() {
            return Err(PoolError::NoCpus);
        }
        let sets: Vec<(Vec<usize>, Option<usize>, bool)> = match self {
            PoolSpec::Numa => {
                if topo.nodes.is_empty() {
                    return Err(PoolError::NoCpus);
                }
                topo.nodes
                    .iter()
                    .map(|n| (n.cpus.clone(), Some(n.id), true))
                    .collect()
            }
            PoolSpec::CpuSets(sets) => {
                if sets.is_empty() {
                    return Err(PoolError::NoSets);
                }
                sets.iter().map(|s| (s.clone(), None, true)).collect()
            }
            PoolSpec::Unpinned => vec![(topo.allowed_cpus.clone(), None, false)],
        };
        if sets.len() > MAX_POOLS {
            return Err(PoolError::TooManyPools { count: sets.len() });
        }
        let mut layouts = Vec::with_capacity(sets.len());
        for (pool, (mut cpus, node, pinned)) in sets.into_iter().enumerate() {
            cpus.sort_unstable();
            cpus.dedup();
            if cpus.is_empty() {
                return Err(PoolError::EmptySet { pool });
            }
            // Topology fields are public, so a node list is checked too.
            if let Some(&cpu) = cpus
                .iter()
                .find(|c| topo.allowed_cpus.binary_search(c).is_err())
            {
                return Err(PoolError::CpuNotAllowed {
                    pool,
                    cpu,
                    allowed: format_cpu_list(&topo.allowed_cpus),
                });
            }
            layouts.push(PoolLayout {
                threads: cpus.len().max(1),
                cpus,
                node,
                pinned,
            });
        }
        Ok(layouts)
    }

    fn name(&self) -> &'static str {
        match self {
            PoolSpec::Numa => "one per NUMA node",
            PoolSpec::CpuSets(_) => "one per CPU set",
            PoolSpec::Unpinned => "unpinned",
        }
    }
}

/// What a pool's threads report from `on_thread_start`.
#[derive(Default)]
struct PinState {
    counts: Mutex<PinCounts>,
    started: Condvar,
}

#[derive(Default)]
struct PinCounts {
    started: usize,
    failures: usize,
    first_error: Option<String>,
    /// Kernel thread ids of the pool's live threads, for
    /// [`Pools::check_pinning`]; names are not enough, as two `Pools` in
    /// one process both have a `chorus-pool0-0`.
    live: Vec<libc::pid_t>,
}

struct Pool {
    /// `None` only while [`Pools`] is being dropped.
    runtime: Option<Runtime>,
    handle: Handle,
    layout: PoolLayout,
    pins: Arc<PinState>,
}

/// Pinned tokio runtimes, at least one. Indexes passed to [`Pools::handle`],
/// [`Pools::spawn`] and the other per-pool methods are taken modulo
/// [`Pools::len`], so a worker number can be passed as it is.
pub struct Pools {
    pools: Vec<Pool>,
    spec: PoolSpec,
}

impl Pools {
    /// Starts one multi-thread runtime per pool of `spec` on `topo`, with one
    /// worker per CPU of its set, every thread pinned to that set.
    ///
    /// May be called from inside a runtime (it blocks briefly while the new
    /// workers start).
    pub fn build(spec: &PoolSpec, topo: &Topology) -> Result<Pools, PoolError> {
        let layouts = spec.layout(topo)?;
        // Built into `Pools` as we go, so an error half-way drops the
        // runtimes already started through `Drop` (shutdown_background).
        let mut pools = Pools {
            pools: Vec::with_capacity(layouts.len()),
            spec: spec.clone(),
        };
        for (i, layout) in layouts.into_iter().enumerate() {
            let pins = Arc::new(PinState::default());
            let runtime = start_runtime(i, &layout, &pins)
                .map_err(|source| PoolError::Runtime { pool: i, source })?;
            pools.pools.push(Pool {
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
                layout,
                pins,
            });
            let pool = &pools.pools[i];
            wait_for_workers(i, pool)?;
        }
        tracing::debug!("{}", pools.describe());
        Ok(pools)
    }

    /// The number of pools (at least 1).
    pub fn len(&self) -> usize {
        self.pools.len()
    }

    /// Always false: `build` never makes an empty set of pools.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    fn pool(&self, i: usize) -> &Pool {
        &self.pools[i % self.pools.len()]
    }

    /// A handle to pool `i` (modulo `len()`).
    pub fn handle(&self, i: usize) -> Handle {
        self.pool(i).handle.clone()
    }

    /// The CPUs pool `i` (modulo `len()`) runs on, ascending.
    pub fn cpus(&self, i: usize) -> &[usize] {
        &self.pool(i).layout.cpus
    }

    /// The worker threads of pool `i` (modulo `len()`).
    pub fn threads(&self, i: usize) -> usize {
        self.pool(i).layout.threads
    }

    /// The NUMA node of pool `i` (modulo `len()`), for [`PoolSpec::Numa`].
    pub fn node(&self, i: usize) -> Option<usize> {
        self.pool(i).layout.node
    }

    /// The pool running on NUMA node `node`, for binding a stage or an
    /// endpoint to a node; `None` if no pool is on it.
    pub fn pool_for_node(&self, node: usize) -> Option<usize> {
        self.pools.iter().position(|p| p.layout.node == Some(node))
    }

    /// Every pool's layout, in pool order.
    pub fn layouts(&self) -> Vec<PoolLayout> {
        self.pools.iter().map(|p| p.layout.clone()).collect()
    }

    /// Spawns `fut` on pool `i` (modulo `len()`).
    pub fn spawn<F>(&self, i: usize, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.pool(i).handle.spawn(fut)
    }

    /// Threads that could not be pinned since the pools started (each was
    /// logged); `build` fails instead if a worker cannot be pinned.
    pub fn pin_failures(&self) -> usize {
        self.pools
            .iter()
            .map(|p| lock(&p.pins.counts).failures)
            .sum()
    }

    /// Checks from the kernel's side that every live thread of every pool
    /// may run only on its pool's CPUs (`Cpus_allowed_list` in
    /// `/proc/self/task/<tid>/status`). Returns how many threads were
    /// checked, or what is wrong with which thread.
    pub fn check_pinning(&self) -> Result<usize, String> {
        let mut checked = 0;
        for (i, pool) in self.pools.iter().enumerate() {
            let tids = lock(&pool.pins.counts).live.clone();
            for tid in tids {
                // A blocking thread may exit between the copy and the read.
                let Some(cpus) = thread_allowed_cpus(tid) else {
                    continue;
                };
                let cpus = cpus?;
                if cpus != pool.layout.cpus {
                    return Err(format!(
                        "pool {i}: thread {tid} may run on CPUs {}, not only on {}",
                        format_cpu_list(&cpus),
                        format_cpu_list(&pool.layout.cpus)
                    ));
                }
                checked += 1;
            }
        }
        Ok(checked)
    }

    /// One line for logs, e.g.
    /// `2 pools (one per CPU set): pool0 [0] 1 thread; pool1 [1] 1 thread`.
    pub fn describe(&self) -> String {
        describe_layouts(&self.spec, &self.layouts())
    }
}

impl Drop for Pools {
    fn drop(&mut self) {
        // Dropping a Runtime blocks until its tasks stop, which panics when
        // done from async code (Pools are often dropped at the end of an
        // async fn). shutdown_background stops the workers without waiting.
        for pool in &mut self.pools {
            if let Some(runtime) = pool.runtime.take() {
                runtime.shutdown_background();
            }
        }
    }
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The text of [`Pools::describe`] for `layouts` (also usable before
/// building, from [`PoolSpec::layout`]).
pub fn describe_layouts(spec: &PoolSpec, layouts: &[PoolLayout]) -> String {
    let n = layouts.len();
    let mut out = format!(
        "{n} pool{} ({})",
        if n == 1 { "" } else { "s" },
        spec.name()
    );
    for (i, l) in layouts.iter().enumerate() {
        out.push_str(if i == 0 { ": " } else { "; " });
        out.push_str(&format!("pool{i}"));
        if let Some(node) = l.node {
            out.push_str(&format!(" node{node}"));
        }
        out.push_str(&format!(
            " [{}] {} thread{}",
            format_cpu_list(&l.cpus),
            l.threads,
            if l.threads == 1 { "" } else { "s" }
        ));
        if !l.pinned {
            out.push_str(" not pinned");
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves plain counters behind; they
    // are still meaningful.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// Set on every thread of a pool's runtime (worker or blocking), which
    /// stays in that multi-thread runtime for life.
    static POOL_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread runs inside a multi-thread tokio runtime, where
/// `block_in_place` works. A pool's threads know it without asking tokio:
/// `Handle::try_current` clones the runtime's handle, two atomic ops on a
/// cache line every worker shares, which perf put at ~6% of a worker's CPU
/// on cached 4 KiB file reads, asked once per op.
pub fn on_multi_thread_runtime() -> bool {
    POOL_THREAD.with(Cell::get)
        || Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

fn start_runtime(i: usize, layout: &PoolLayout, pins: &Arc<PinState>) -> std::io::Result<Runtime> {
    let next_thread = AtomicUsize::new(0);
    let cpus = layout.cpus.clone();
    let start_pins = Arc::clone(pins);
    let stop_pins = Arc::clone(pins);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(layout.threads)
        .thread_name_fn(move || {
            format!(
                "{THREAD_NAME_PREFIX}{i}-{}",
                next_thread.fetch_add(1, Ordering::Relaxed)
            )
        })
        // Unpinned pools set their mask too: a thread inherits the mask of
        // the thread that creates it, and blocking threads are created on
        // demand from whichever thread calls spawn_blocking — possibly a
        // thread of another, pinned pool.
        .on_thread_start(move || {
            POOL_THREAD.with(|p| p.set(true));
            let result = pin_current_thread(&cpus);
            let mut counts = lock(&start_pins.counts);
            counts.started += 1;
            counts.live.push(current_tid());
            if let Err(e) = result {
                counts.failures += 1;
                let message = format!(
                    "cannot pin a thread of pool {i} to CPUs {}: {e}",
                    format_cpu_list(&cpus)
                );
                tracing::error!("{message}");
                counts.first_error.get_or_insert(e.to_string());
            }
            drop(counts);
            start_pins.started.notify_all();
        })
        .on_thread_stop(move || {
            let tid = current_tid();
            lock(&stop_pins.counts).live.retain(|&t| t != tid);
        })
        .enable_all()
        .build()
}

/// The calling thread's kernel id (as in `/proc/self/task/<tid>`).
fn current_tid() -> libc::pid_t {
    // SAFETY: gettid takes no arguments, cannot fail and touches no memory.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    libc::pid_t::try_from(tid).unwrap_or(0)
}

/// The CPUs `/proc/self/task/<tid>/status` allows thread `tid`; `None` if
/// the thread is gone.
fn thread_allowed_cpus(tid: libc::pid_t) -> Option<Result<Vec<usize>, String>> {
    let path = format!("/proc/self/task/{tid}/status");
    let status = std::fs::read_to_string(&path).ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or_else(|| format!("{path}: no Cpus_allowed_list line"));
    Some(list.and_then(|l| parse_cpu_list(l).map_err(|e| format!("{path}: {e}"))))
}

/// Waits until pool `i`'s workers have run `on_thread_start`, and turns a
/// pinning failure into an error.
fn wait_for_workers(i: usize, pool: &Pool) -> Result<(), PoolError> {
    let deadline = Instant::now() + PIN_WAIT;
    let mut counts = lock(&pool.pins.counts);
    while counts.started < pool.layout.threads && counts.first_error.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // Not an error: the threads will still pin themselves before
            // running anything; only the early check is lost.
            tracing::warn!(
                "pool {i}: {} of {} workers started within {PIN_WAIT:?}; not waiting longer",
                counts.started,
                pool.layout.threads
            );
            return Ok(());
        }
        counts = pool
            .pins
            .started
            .wait_timeout(counts, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    match &counts.first_error {
        Some(error) => Err(PoolError::Pin {
            pool: i,
            cpus: format_cpu_list(&pool.layout.cpus),
            error: error.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::NumaNode;

    /// `Cpus_allowed_list` of the calling thread, from the kernel.
    fn thread_cpus() -> String {
        let status = std::fs::read_to_string("/proc/thread-self/status")
            .expect("read /proc/thread-self/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list line")
            .trim()
            .to_string()
    }

    /// The CPU sets a test can pin to here: [[0],[1]] when both are allowed
    /// (the test machine has two CPUs), else one set of the first CPU.
    fn test_sets(topo: &Topology) -> Vec<Vec<usize>> {
        if topo.allowed_cpus.contains(&0) && topo.allowed_cpus.contains(&1) {
            vec![vec![0], vec![1]]
        } else {
            eprintln!(
                "only CPUs {} are allowed: testing one pool pinned to CPU {}, not two",
                format_cpu_list(&topo.allowed_cpus),
                topo.allowed_cpus[0]
            );
            vec![vec![topo.allowed_cpus[0]]]
        }
    }

    fn fake_topology(allowed: &[usize]) -> Topology {
        Topology {
            nodes: vec![NumaNode {
                id: 0,
                cpus: allowed.to_vec(),
            }],
            allowed_cpus: allowed.to_vec(),
        }
    }

    #[test]
    fn workers_and_blocking_threads_are_pinned() {
        let topo = Topology::detect();
        let sets = test_sets(&topo);
        let pools = Pools::build(&PoolSpec::CpuSets(sets.clone()), &topo).unwrap();
        assert_eq!(pools.len(), sets.len());
        assert_eq!(pools.pin_failures(), 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (i, set) in sets.iter().enumerate() {
            assert_eq!(pools.cpus(i), set.as_slice());
            assert_eq!(pools.threads(i), set.len());
            let want = format_cpu_list(set);
            // Several tasks, so more than one worker is likely to be seen.
            let tasks: Vec<_> = (0..8)
                .map(|_| pools.spawn(i, async { thread_cpus() }))
                .collect();
            let blocking = pools.handle(i).spawn_blocking(thread_cpus);
            for task in tasks {
                assert_eq!(rt.block_on(task).unwrap(), want, "worker of pool {i}");
            }
            assert_eq!(
                rt.block_on(blocking).unwrap(),
                want,
                "blocking thread of pool {i}"
            );
        }
        assert!(
            pools
                .describe()
                .starts_with(&format!("{} pool", sets.len())),
            "{}",
            pools.describe()
        );
        let checked = pools.check_pinning().unwrap();
        assert!(checked >= sets.len(), "only {checked} threads checked");
    }

    #[test]
    fn unpinned_pool_covers_all_allowed_cpus() {
        let topo = Topology::detect();
        let pools = Pools::build(&PoolSpec::Unpinned, &topo).unwrap();
        let want = format_cpu_list(&topo.allowed_cpus);
        assert_eq!(pools.len(), 1);
        assert_eq!(pools.threads(0), topo.allowed_cpus.len());
        // A blocking thread started from a thread pinned elsewhere must not
        // inherit that pin.
        let first = topo.allowed_cpus[0];
        let handle = pools.handle(0);
        let got = std::thread::spawn(move || {
            pin_current_thread(&[first]).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(handle.spawn_blocking(thread_cpus)).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(got, want);
        assert!(
            pools.describe().contains("not pinned"),
            "{}",
            pools.describe()
        );
    }

    #[test]
    fn numa_pools_follow_nodes() {
        let topo = Topology::detect();
        let pools = Pools::build(&PoolSpec::Numa, &topo).unwrap();
        assert_eq!(pools.len(), topo.nodes.len());
        for (i, node) in topo.nodes.iter().enumerate() {
            assert_eq!(pools.cpus(i), node.cpus.as_slice());
            assert_eq!(pools.node(i), Some(node.id));
            assert_eq!(pools.pool_for_node(node.id), Some(i));
        }
    }

    #[test]
    fn bad_sets_are_errors_naming_the_cpu() {
        let topo = fake_topology(&[0, 1]);
        let err = PoolSpec::CpuSets(vec![vec![0], vec![1, 7]])
            .layout(&topo)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "pool 1: CPU 7 is not one this process may use (allowed: 0-1)"
        );
        let err = PoolSpec::CpuSets(vec![vec![0], vec![]])
            .layout(&topo)
            .unwrap_err();
        assert_eq!(err.to_string(), "pool 1: the CPU set is empty");
        assert!(matches!(
            PoolSpec::CpuSets(vec![]).layout(&topo),
            Err(PoolError::NoSets)
        ));
        let many = PoolSpec::CpuSets(vec![vec![0]; MAX_POOLS + 1]);
        assert!(matches!(
            many.layout(&topo),
            Err(PoolError::TooManyPools { .. })
        ));
        let empty = Topology {
            nodes: vec![],
            allowed_cpus: vec![],
        };
        assert!(matches!(
            PoolSpec::Numa.layout(&empty),
            Err(PoolError::NoCpus)
        ));
        assert!(matches!(
            Pools::build(&PoolSpec::Unpinned, &empty),
            Err(PoolError::NoCpus)
        ));
    }

    #[test]
    fn layout_dedups_and_counts_threads() {
        let topo = fake_topology(&[0, 1, 2, 3]);
        let layouts = PoolSpec::CpuSets(vec![vec![3, 1, 1]])
            .layout(&topo)
            .unwrap();
        assert_eq!(
            layouts,
            vec![PoolLayout {
                cpus: vec![1, 3],
                threads: 2,
                node: None,
                pinned: true
            }]
        );
        assert_eq!(
            describe_layouts(&PoolSpec::Numa, &PoolSpec::Numa.layout(&topo).unwrap()),
            "1 pool (one per NUMA node): pool0 node0 [0-3] 4 threads"
        );
    }

    #[test]
    fn from_plan_pinning() {
        use crate::plan::Pinning;
        assert_eq!(PoolSpec::try_from(&Pinning::Numa).unwrap(), PoolSpec::Numa);
        assert_eq!(
            PoolSpec::try_from(&Pinning::None).unwrap(),
            PoolSpec::Unpinned
        );
        let sets = Pinning::CpuSets(vec!["0-1".into(), "3".into()]);
        assert_eq!(
            PoolSpec::try_from(&sets).unwrap(),
            PoolSpec::CpuSets(vec![vec![0, 1], vec![3]])
        );
        let bad = Pinning::CpuSets(vec!["0".into(), "3-1".into()]);
        let err = PoolSpec::try_from(&bad).unwrap_err();
        assert!(err.starts_with("pinning[1] (\"3-1\")"), "{err}");
    }

    #[tokio::test]
    async fn drop_inside_async_context_does_not_panic() {
        let topo = Topology::detect();
        let pools = Pools::build(&PoolSpec::Unpinned, &topo).unwrap();
        // Modulo indexing: any worker number is a valid pool index.
        let got = pools.spawn(7, async { 6 * 7 }).await.unwrap();
        assert_eq!(got, 42);
        drop(pools);
    }
}
