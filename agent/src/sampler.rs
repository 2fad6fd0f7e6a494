//! The agent's own host, sampled once per progress report while a stage
//! runs: CPU of the CPUs its workers may run on (`/proc/stat`, split as
//! `mpstat` and `sar -u` split it), its process's CPU (`/proc/self/stat`)
//! and its threads' wait for a CPU (`/proc/self/task/*/schedstat` run
//! delay), the run queue (`procs_running`), memory (`/proc/meminfo`) and
//! network (`/proc/net/dev`). The controller uses them to tell when the client,
//! not the storage, was the limit (`chorus_common::metrics::client`).
//!
//! Cheap by design: a few reads of small `/proc` files a second (one per
//! thread of the agent for the wait, at most [`MAX_THREADS`]), no thread
//! of its own, no allocation that grows with the run. Every figure is a difference
//! between two readings, so the first report of a stage is measured from
//! the stage's start. A file that cannot be read or parsed (not Linux, a
//! kernel with other columns, hidden `/proc`) makes its figures unknown;
//! nothing here panics on what the kernel writes.
//!
//! Embedded agents share the controller's process, so their process CPU
//! is that process's: all of them together. So do simulated agents
//! (`crate::simulate`), and for them a reading is shared: every stage of
//! the process takes the last reading when it is at most
//! [`SHARED_READING_AGE`] old, so a thousand sessions read `/proc` about
//! once per report, not a thousand times (each reading is a file per
//! thread, and a thousand stages have a thousand op-log writer threads).

use std::time::Instant;

use chorus_common::metrics::client::HostSample;

/// CPU lines read from `/proc/stat` at most: more than any machine has,
/// and a bound on the memory a strange file can make us take.
const MAX_CPUS: usize = 8192;

/// Interfaces counted at most in `/proc/net/dev` (containers with
/// thousands of veths exist; the sum of the first ones is still a sum).
const MAX_INTERFACES: usize = 4096;

/// Threads whose `schedstat` is read at most: an agent has a few per CPU
/// plus blocking-pool threads; past this the wait is a lower bound.
const MAX_THREADS: usize = 1024;

/// How old a reading another stage of the process took may be and still
/// serve: well under the reports' second, so an interval is off by at
/// most this much, and its figures are rates over the readings' own
/// times, so they stay right.
const SHARED_READING_AGE: std::time::Duration = std::time::Duration::from_millis(100);

/// Fewer clock ticks per CPU than this in an interval (USER_HZ is 100, so
/// 200 ms) give percentages too coarse to mean anything (the last, partial
/// interval of a stage): they are unknown.
const MIN_TICKS: f64 = 20.0;

/// `/proc/stat` CPU columns used: user, nice, system, idle, iowait, irq,
/// softirq, steal (guest time is already inside user).
const CPU_FIELDS: usize = 8;
const USER: usize = 0;
const NICE: usize = 1;
const SYSTEM: usize = 2;
const IDLE: usize = 3;
const IOWAIT: usize = 4;
const IRQ: usize = 5;
const SOFTIRQ: usize = 6;
const STEAL: usize = 7;

type CpuTimes = [u64; CPU_FIELDS];

/// What `/proc/stat` says: the all-CPU line, each CPU's line, and
/// `procs_running`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcStat {
    pub total: Option<CpuTimes>,
    /// (cpu number, its times), in file order.
    pub cpus: Vec<(usize, CpuTimes)>,
    pub procs_running: Option<u64>,
}

/// Parses `/proc/stat`. Lines it does not know are skipped; a CPU line
/// with fewer than eight numbers (kernels before 2.6.11) is skipped too.
pub fn parse_proc_stat(text: &str) -> ProcStat {
    let mut out = ProcStat::default();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(key) = words.next() else { continue };
        if key == "procs_running" {
            out.procs_running = words.next().and_then(|v| v.parse().ok());
        } else if let Some(n) = key.strip_prefix("cpu") {
            let mut t = [0u64; CPU_FIELDS];
            let mut got = 0;
            for (slot, w) in t.iter_mut().zip(words) {
                match w.parse() {
                    Ok(v) => {
                        *slot = v;
                        got += 1;
                    }
                    Err(_) => break,
                }
            }
            if got < CPU_FIELDS {
                continue;
            }
            if n.is_empty() {
                out.total = Some(t);
            } else if let Ok(cpu) = n.parse::<usize>()
                && out.cpus.len() < MAX_CPUS
            {
                out.cpus.push((cpu, t));
            }
        }
    }
    out
}

/// User plus system time of a process, in clock ticks, from
/// `/proc/<pid>/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn parse_process_ticks(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // After the name: state is field 3; utime and stime are 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `MemTotal` and `MemAvailable` in kB from `/proc/meminfo` (kernels
/// before 3.14 have no `MemAvailable`: unknown then).
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_ascii_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let total = field("MemTotal")?;
    (total > 0).then_some(())?;
    Some((total, field("MemAvailable")?))
}

/// Bytes received and sent over all interfaces but loopback, from
/// `/proc/net/dev` (`iface: rx_bytes … (8 rx columns) tx_bytes …`).
pub fn parse_net_dev(text: &str) -> Option<(u64, u64)> {
    let (mut rx, mut tx, mut seen) = (0u64, 0u64, 0usize);
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" || seen == MAX_INTERFACES {
            continue;
        }
        let mut cols = rest.split_ascii_whitespace();
        let (Some(r), Some(t)) = (
            cols.next().and_then(|v| v.parse::<u64>().ok()),
            cols.nth(7).and_then(|v| v.parse::<u64>().ok()),
        ) else {
            continue;
        };
        rx = rx.wrapping_add(r);
        tx = tx.wrapping_add(t);
        seen += 1;
    }
    Some((rx, tx))
}

/// Run delay (ns spent runnable, waiting for a CPU) from a
/// `/proc/<pid>/task/<tid>/schedstat` line: `cpu_ns run_delay_ns slices`.
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The run delay of this process's threads, summed; `None` when the
/// kernel keeps none (no `CONFIG_SCHED_INFO`) or `/proc` is unreadable.
fn threads_run_delay() -> Option<u64> {
    let mut sum = None::<u64>;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.take(MAX_THREADS) {
        let Ok(entry) = entry else { continue };
        let text = std::fs::read_to_string(entry.path().join("schedstat")).ok();
        if let Some(ns) = text.as_deref().and_then(parse_schedstat) {
            sum = Some(sum.unwrap_or(0).saturating_add(ns));
        }
    }
    sum
}

/// One reading of every source.
#[derive(Clone, Debug)]
pub struct Reading {
    at: Instant,
    stat: ProcStat,
    process: Option<u64>,
    /// Run delay of the process's threads, ns.
    waited: Option<u64>,
    mem: Option<(u64, u64)>,
    net: Option<(u64, u64)>,
}

/// The process's last reading, for [`Reading::shared`].
static LAST_READING: std::sync::Mutex<Option<Reading>> = std::sync::Mutex::new(None);

impl Reading {
    /// The process's last reading if it is at most [`SHARED_READING_AGE`]
    /// old, else a new one (kept for the others). The lock is held while
    /// reading, so stages asking at once wait for one reading instead of
    /// each making its own.
    pub fn shared() -> Reading {
        let mut last = LAST_READING.lock().unwrap_or_else(|p| p.into_inner());
        match last.as_ref() {
            Some(r) if r.at.elapsed() <= SHARED_READING_AGE => r.clone(),
            _ => {
                let r = Reading::now();
                *last = Some(r.clone());
                r
            }
        }
    }

    /// Reads `/proc` now; what cannot be read is unknown.
    pub fn now() -> Reading {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        Reading {
            at: Instant::now(),
            stat: read("/proc/stat")
                .map(|t| parse_proc_stat(&t))
                .unwrap_or_default(),
            process: read("/proc/self/stat").and_then(|t| parse_process_ticks(&t)),
            waited: threads_run_delay(),
            mem: read("/proc/meminfo").and_then(|t| parse_meminfo(&t)),
            net: read("/proc/net/dev").and_then(|t| parse_net_dev(&t)),
        }
    }
}

/// Successive readings turned into [`HostSample`]s.
pub struct Sampler {
    /// The CPUs the agent's workers may run on, ascending; empty: all.
    cpus: Vec<usize>,
    last: Reading,
}

impl Sampler {
    /// Starts from a reading now, for CPUs `cpus` (empty: every CPU).
    pub fn new(mut cpus: Vec<usize>) -> Sampler {
        cpus.sort_unstable();
        cpus.dedup();
        Sampler {
            cpus,
            last: Reading::shared(),
        }
    }

    /// The sample from the last committed reading to a new one. The new
    /// reading becomes the base only when [`Sampler::commit`]ted, so a
    /// report that is not delivered is folded into the next one.
    pub fn measure(&self) -> (HostSample, Reading) {
        let now = Reading::shared();
        (sample_between(&self.last, &now, &self.cpus), now)
    }

    pub fn commit(&mut self, reading: Reading) {
        self.last = reading;
    }
}

/// Percent of `part` in `whole`; unknown for an empty interval.
fn pct(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| 100.0 * part as f64 / whole as f64)
}

fn delta(a: &CpuTimes, b: &CpuTimes) -> CpuTimes {
    let mut d = [0u64; CPU_FIELDS];
    for (i, slot) in d.iter_mut().enumerate() {
        // A CPU taken offline and back resets its counters: no negative.
        *slot = b[i].saturating_sub(a[i]);
    }
    d
}

fn busy(d: &CpuTimes) -> (u64, u64) {
    let total: u64 = d.iter().sum();
    (total.saturating_sub(d[IDLE] + d[IOWAIT]), total)
}

/// The figures of the interval between readings `a` and `b`, over CPUs
/// `cpus` (empty: all).
pub fn sample_between(a: &Reading, b: &Reading, cpus: &[usize]) -> HostSample {
    let mut s = HostSample::default();
    let mut sum = [0u64; CPU_FIELDS];
    let (mut counted, mut max_core) = (0u32, None::<f64>);
    for (cpu, now) in &b.stat.cpus {
        if !cpus.is_empty() && cpus.binary_search(cpu).is_err() {
            continue;
        }
        let Some((_, before)) = a.stat.cpus.iter().find(|(c, _)| c == cpu) else {
            continue;
        };
        let d = delta(before, now);
        for (acc, v) in sum.iter_mut().zip(d) {
            *acc += v;
        }
        let (busy, total) = busy(&d);
        if let Some(p) = pct(busy, total) {
            max_core = Some(max_core.map_or(p, |m| m.max(p)));
        }
        counted += 1;
    }
    let (busy_all, total) = busy(&sum);
    s.cpus = counted;
    if counted > 0 && total as f64 >= MIN_TICKS * counted as f64 {
        s.cpu_busy_pct = pct(busy_all, total);
        s.cpu_max_core_pct = max_core;
        s.cpu_user_pct = pct(sum[USER] + sum[NICE], total);
        s.cpu_system_pct = pct(sum[SYSTEM] + sum[IRQ] + sum[SOFTIRQ], total);
        s.cpu_iowait_pct = pct(sum[IOWAIT], total);
        s.cpu_steal_pct = pct(sum[STEAL], total);
    }
    // The process's ticks against one CPU's ticks over the interval (the
    // all-CPU line's over the CPU count): no clock-tick rate needed.
    if let (Some(p0), Some(p1), Some(t0), Some(t1)) =
        (a.process, b.process, a.stat.total, b.stat.total)
        && !b.stat.cpus.is_empty()
    {
        let per_cpu = delta(&t0, &t1).iter().sum::<u64>() as f64 / b.stat.cpus.len() as f64;
        if per_cpu >= MIN_TICKS {
            s.proc_cpu_pct = Some(100.0 * p1.saturating_sub(p0) as f64 / per_cpu);
        }
    }
    let secs = b.at.duration_since(a.at).as_secs_f64();
    // Threads that ended since `a` take their delay with them: a smaller
    // sum is a lower bound, not a negative wait.
    if let (Some(w0), Some(w1)) = (a.waited, b.waited)
        && secs >= MIN_TICKS / 100.0
    {
        s.proc_cpu_wait_pct = Some(100.0 * w1.saturating_sub(w0) as f64 / 1e9 / secs);
    }
    s.run_queue = b.stat.procs_running.map(|r| r as f64);
    s.mem_used_pct = b
        .mem
        .map(|(total, avail)| 100.0 * (1.0 - avail.min(total) as f64 / total as f64));
    if let (Some((rx0, tx0)), Some((rx1, tx1))) = (a.net, b.net)
        && secs > 0.0
    {
        // Interfaces come and go: a smaller sum is not a negative rate.
        let mib_s = |from: u64, to: u64| to.saturating_sub(from) as f64 / secs / 1048576.0;
        s.net_rx_mib_s = Some(mib_s(rx0, rx1));
        s.net_tx_mib_s = Some(mib_s(tx0, tx1));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `/proc/stat` of a 2-CPU guest (Linux 6.1), trimmed.
    const STAT_A: &str = "cpu  1000 10 300 5000 40 0 20 30 0 0
cpu0 600 10 200 2400 20 0 10 10 0 0
cpu1 400 0 100 2600 20 0 10 20 0 0
intr 123456 0 9 0
ctxt 987654
btime 1764979200
processes 4242
procs_running 3
procs_blocked 0
softirq 1 2 3
";
    /// One second later: cpu0 fully busy (user 90, system 10 ticks),
    /// cpu1 mostly idle with some iowait and steal.
    const STAT_B: &str = "cpu  1093 10 311 5083 45 0 20 38 0 0
cpu0 690 10 210 2400 20 0 10 10 0 0
cpu1 403 0 101 2683 25 0 10 28 0 0
procs_running 5
";

    fn reading(stat: &str, process: u64, at: Instant) -> Reading {
        Reading {
            at,
            stat: parse_proc_stat(stat),
            process: Some(process),
            waited: Some(process * 10_000_000),
            mem: parse_meminfo("MemTotal: 1000 kB\nMemAvailable: 250 kB\n"),
            net: Some((0, 0)),
        }
    }

    #[test]
    fn proc_stat_lines_are_read_and_junk_is_skipped() {
        let s = parse_proc_stat(STAT_A);
        assert_eq!(s.total, Some([1000, 10, 300, 5000, 40, 0, 20, 30]));
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.cpus[1].0, 1);
        assert_eq!(s.procs_running, Some(3));
        // Short, garbled or empty input: nothing known, no panic.
        let junk = parse_proc_stat("cpu 1 2 3\ncpuX 1 2 3 4 5 6 7 8\ncpu2 a b\n\nprocs_running x");
        assert_eq!(junk.total, None);
        assert!(junk.cpus.is_empty());
        assert_eq!(junk.procs_running, None);
        assert_eq!(parse_proc_stat(""), ProcStat::default());
    }

    #[test]
    fn the_agents_cpus_alone_count() {
        let t0 = Instant::now();
        let a = reading(STAT_A, 500, t0);
        let b = reading(STAT_B, 560, t0 + Duration::from_secs(1));
        // Pinned to cpu0: 100% busy, of which 90% user.
        let s = sample_between(&a, &b, &[0]);
        assert_eq!(s.cpus, 1);
        assert_eq!(s.cpu_busy_pct, Some(100.0));
        assert_eq!(s.cpu_max_core_pct, Some(100.0));
        assert_eq!(s.cpu_user_pct, Some(90.0));
        assert_eq!(s.cpu_system_pct, Some(10.0));
        assert_eq!(s.cpu_steal_pct, Some(0.0));
        // cpu1: 100 ticks, 83 idle, 5 iowait, 8 steal, 4 user+system.
        let s = sample_between(&a, &b, &[1]);
        assert_eq!(s.cpu_busy_pct, Some(12.0));
        assert_eq!(s.cpu_iowait_pct, Some(5.0));
        assert_eq!(s.cpu_steal_pct, Some(8.0));
        // Both (empty list: all): the mean, and the busiest core.
        let s = sample_between(&a, &b, &[]);
        assert_eq!(s.cpus, 2);
        assert_eq!(s.cpu_busy_pct, Some(56.0));
        assert_eq!(s.cpu_max_core_pct, Some(100.0));
        // 60 process ticks in an interval of 100 ticks per CPU.
        assert_eq!(s.proc_cpu_pct, Some(60.0));
        assert_eq!(s.run_queue, Some(5.0));
        assert_eq!(s.mem_used_pct, Some(75.0));
        assert_eq!(s.net_rx_mib_s, Some(0.0));
        // 600 ms of run delay in one second: 60% of a core.
        assert!((s.proc_cpu_wait_pct.unwrap() - 60.0).abs() < 1e-9, "{s:?}");
        // A CPU the agent may use but the file lacks: not counted.
        let s = sample_between(&a, &b, &[7]);
        assert_eq!((s.cpus, s.cpu_busy_pct), (0, None));
    }

    #[test]
    fn an_unreadable_host_gives_unknowns_not_panics() {
        let t0 = Instant::now();
        let empty = Reading {
            at: t0,
            stat: ProcStat::default(),
            process: None,
            waited: None,
            mem: None,
            net: None,
        };
        let s = sample_between(&empty, &empty.clone(), &[0]);
        assert!(s.is_empty(), "{s:?}");
        // Counters that went backwards (CPU hot-plug) are not negative.
        let a = reading(STAT_B, 560, t0);
        let b = reading(STAT_A, 500, t0 + Duration::from_secs(1));
        let s = sample_between(&a, &b, &[]);
        assert_eq!(s.cpu_busy_pct, None);
        assert_eq!(s.proc_cpu_pct, None);
    }

    #[test]
    fn a_short_interval_has_no_percentages() {
        // 5 ticks per CPU (50 ms): the last report of a stage.
        let t0 = Instant::now();
        let a = reading("cpu  0 0 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0\n", 0, t0);
        let b = reading(
            "cpu  3 0 0 2 0 0 0 0\ncpu0 3 0 0 2 0 0 0 0\n",
            2,
            t0 + Duration::from_millis(50),
        );
        let s = sample_between(&a, &b, &[]);
        assert_eq!((s.cpu_busy_pct, s.proc_cpu_pct), (None, None), "{s:?}");
        assert_eq!(s.proc_cpu_wait_pct, None);
        assert_eq!(parse_schedstat("123 456 7\n"), Some(456));
        assert_eq!(parse_schedstat("123"), None);
    }

    #[test]
    fn process_meminfo_and_net_dev_parse() {
        // A command name with spaces and a parenthesis.
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    1234 567 0 0 20 0 9 0 99 1000 10 18446744073709551615";
        assert_eq!(parse_process_ticks(stat), Some(1801));
        assert_eq!(parse_process_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_process_ticks("no parenthesis"), None);
        let mem = "MemTotal:       16318412 kB\nMemFree:  1 kB\nMemAvailable:   12000000 kB\n";
        assert_eq!(parse_meminfo(mem), Some((16318412, 12000000)));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB"), None);
        let net = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 9999999  100    0    0    0     0          0         0  9999999  100    0    0    0     0       0          0
  eth0: 1000     10     0    0    0     0          0         0  2000     20     0    0    0     0       0          0
veth1a:   24      1     0    0    0     0          0         0    48      1     0    0    0     0       0          0
";
        assert_eq!(parse_net_dev(net), Some((1024, 2048)));
        assert_eq!(parse_net_dev("eth0: 1 2"), Some((0, 0)));
    }

    #[test]
    fn this_host_can_be_sampled() {
        // On Linux the real files parse; elsewhere everything is unknown.
        let sampler = Sampler::new(vec![]);
        // Long enough for whole percentages (MIN_TICKS).
        std::thread::sleep(Duration::from_millis(300));
        let (s, _) = sampler.measure();
        if cfg!(target_os = "linux") {
            assert!(s.cpus >= 1, "{s:?}");
            assert!(s.mem_used_pct.is_some(), "{s:?}");
            assert!(s.run_queue.is_some(), "{s:?}");
            assert!(
                s.cpu_busy_pct.is_some() && s.proc_cpu_pct.is_some(),
                "{s:?}"
            );
        }
    }
}
