//! The io_uring I/O engine of the local stores (`file://` and `direct://`
//! with `engine=io_uring`): data reads and writes go through one ring per
//! thread instead of one `pread`/`pwrite` syscall each.
//!
//! # How an op runs
//!
//! A worker still has one op in flight; what changes is how many syscalls
//! the ops of one runtime thread cost together:
//!
//! 1. The op takes a slot of this thread's ring ([`Ring`], made on first
//!    use, one per thread) and pushes its SQE, and nothing else: no
//!    syscall.
//! 2. It yields ([`tokio::task::yield_now`]): tokio runs the deferred task
//!    again only once the thread has run every other task it had, so the
//!    other workers of the thread push their SQEs meanwhile.
//! 3. Polled again, the op flushes the ring: one `io_uring_enter` submits
//!    every SQE queued since the last flush, by whichever op comes first
//!    (or as soon as [`SUBMIT_BATCH`] are queued). Reads served from the
//!    page cache complete inside that call, so the same op then reaps the
//!    completion queue (shared memory, no syscall) and wakes the others.
//! 4. An op that must wait for the device (`O_DIRECT`, a cache miss)
//!    completes later; the ring's fd is registered with tokio's reactor,
//!    and a small reaper task per ring reaps and wakes when it turns
//!    readable, so no thread blocks in the kernel.
//!
//! So `k` workers on a thread cost one `io_uring_enter` (plus the
//! zero-timeout reactor poll tokio makes before running deferred tasks)
//! per round instead of `k` syscalls.
//!
//! # Ownership and cancellation
//!
//! The kernel writes into (or reads from) an op's buffer until its
//! completion is posted, whatever happens to the future that asked. So
//! what the kernel touches — the buffer, and the file, so that its fd
//! cannot be closed and reused under a queued SQE — is moved into the
//! op's slot ([`Slot::keep`]) and only handed back with the result. A
//! future dropped early turns its slot into an orphan, freed when the
//! completion arrives. A ring dropped with ops in flight waits for them
//! first (or, if it cannot, leaks their buffers rather than free memory
//! the kernel may still write).
//!
//! Every queue is bounded: [`RING_ENTRIES`] slots per ring (an op that
//! finds none free yields and tries again), the SQ of the same size, and a
//! completion queue twice that, so it cannot overflow.
//!
//! # Availability
//!
//! [`availability`] says whether a ring can be set up here:
//! `/proc/sys/kernel/io_uring_disabled` at 2 (or the `CHORUS_IO_URING_DISABLED`
//! environment variable, which acts like it, for tests and benchmarks)
//! refuses at once; otherwise a small ring is set up and its error (`EPERM`
//! with the sysctl at 1, `ENOSYS` on old kernels, a seccomp filter) given.
//! [`resolve`] turns that and the `engine=` a URI asks for into the engine
//! used.

use std::any::Any;
use std::cell::RefCell;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use io_uring::{IoUring, opcode, squeue, types};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::{ErrorClass, StoreError, StoreResult};

/// Slots (ops in flight at once) per ring, and the SQ size. More workers
/// than this on one thread wait for a slot by yielding.
pub const RING_ENTRIES: u32 = 256;

/// Queued SQEs that make an op flush the ring at once, without waiting for
/// the thread to run out of other tasks: bounds the latency a worker adds
/// by waiting for the rest of its round.
pub const SUBMIT_BATCH: u32 = 32;

/// Set (to anything but `0` or empty) to make io_uring count as disabled,
/// as `/proc/sys/kernel/io_uring_disabled` = 2 does: the test hook for the
/// fallback, and a switch for benchmarks.
pub const DISABLE_ENV: &str = "CHORUS_IO_URING_DISABLED";

/// The sysctl that disables io_uring system-wide (Linux 6.6+): 0 enabled,
/// 1 only for members of `io_uring_group` (and `CAP_SYS_ADMIN`), 2 for
/// nobody.
pub const DISABLED_SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// How a local store does its data syscalls (`engine=` in a `file://` or
/// `direct://` URI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// One `pread`/`pwrite` per call, made by the worker itself.
    Psync,
    /// Through this thread's io_uring; an error at open if there is none.
    IoUring,
    /// io_uring when it can be set up here, else psync.
    Auto,
}

impl Engine {
    /// The default of a `file://` or `direct://` store (see docs/plan.md
    /// for the measurement behind it).
    pub const DEFAULT: Engine = Engine::Psync;

    /// The engine named by an `engine=` value.
    pub fn parse(value: &str) -> Option<Engine> {
        match value {
            "psync" => Some(Engine::Psync),
            "io_uring" => Some(Engine::IoUring),
            "auto" => Some(Engine::Auto),
            _ => None,
        }
    }

    /// The name as written in a URI.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Psync => "psync",
            Engine::IoUring => "io_uring",
            Engine::Auto => "auto",
        }
    }
}

/// Parses the value of an `engine=` URI parameter, for `uri`'s errors.
pub fn parse_engine(value: &str, uri: &str) -> StoreResult<Engine> {
    Engine::parse(value).ok_or_else(|| {
        StoreError::new(
            ErrorClass::Other,
            uri,
            format!("invalid `engine`: `{value}`; it is one of `psync`, `io_uring`, `auto`"),
        )
    })
}

/// Whether `asked` means io_uring on this machine: `Ok(true)` for io_uring,
/// `Ok(false)` for psync, and an error (class `NotSupported`, saying why)
/// when io_uring is asked for and cannot be had. Logs the choice.
pub fn resolve(asked: Engine, uri: &str) -> StoreResult<bool> {
    resolve_from(asked, uri, || {
        availability(Path::new(DISABLED_SYSCTL), env_disabled(), probe_setup)
    })
}

/// [`resolve`], with availability from `why_not` (a test hook).
pub fn resolve_from(
    asked: Engine,
    uri: &str,
    why_not: impl Fn() -> Result<(), String>,
) -> StoreResult<bool> {
    let use_uring = match asked {
        Engine::Psync => false,
        Engine::IoUring => match why_not() {
            Ok(()) => true,
            Err(why) => {
                return Err(StoreError::new(
                    ErrorClass::NotSupported,
                    uri,
                    format!(
                        "engine=io_uring: io_uring is not available here ({why}); \
                         use engine=psync, or engine=auto to fall back by itself"
                    ),
                ));
            }
        },
        Engine::Auto => match why_not() {
            Ok(()) => true,
            Err(why) => {
                tracing::info!("{uri}: engine=auto: using psync, since {why}");
                false
            }
        },
    };
    let used = if use_uring { "io_uring" } else { "psync" };
    tracing::info!("{uri}: I/O engine {used} (engine={})", asked.name());
    Ok(use_uring)
}

/// Whether [`DISABLE_ENV`] is set.
fn env_disabled() -> bool {
    std::env::var_os(DISABLE_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Sets up (and drops) a small ring: the one real test of availability.
fn probe_setup() -> io::Result<()> {
    IoUring::new(2).map(drop)
}

/// Why io_uring cannot be used, if it cannot: the sysctl at `sysctl`
/// (missing on kernels before 6.6: not disabled), the environment switch
/// `env_off`, then `setup`'s error.
pub fn availability(
    sysctl: &Path,
    env_off: bool,
    setup: impl FnOnce() -> io::Result<()>,
) -> Result<(), String> {
    if env_off {
        return Err(format!("{DISABLE_ENV} is set"));
    }
    let level = std::fs::read_to_string(sysctl)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if level >= 2 {
        return Err(format!("{} is {level}", sysctl.display()));
    }
    setup().map_err(|e| {
        let hint = if level == 1 {
            format!(
                " ({} is 1: only io_uring_group may use it)",
                sysctl.display()
            )
        } else {
            String::new()
        };
        format!("setting up a ring failed: {e}{hint}")
    })
}

/// One slot of a ring: an op in flight, done, or free.
#[derive(Default)]
struct Slot {
    state: SlotState,
    /// What the kernel may touch until the completion: the buffer and the
    /// file. `None` when free.
    keep: Option<Box<dyn Any + Send>>,
    waker: Option<Waker>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    #[default]
    Free,
    /// Submitted or queued; its future waits.
    Waiting,
    /// The completion's result (a byte count or `-errno`).
    Done(i32),
    /// Its future was dropped: freed when the completion arrives.
    Orphan,
}

/// A ring and its slots; one per thread, shared (by `Arc`) with the ops
/// that use it, which may be polled on another thread after work
/// stealing, and with its reaper.
pub struct Ring {
    /// The ring's fd (owned by `inner`'s `IoUring`).
    fd: RawFd,
    inner: Mutex<Inner>,
    /// Cleared when the reaper task ends (its runtime shut down): the
    /// thread then makes a new ring on its next op.
    live: AtomicBool,
}

struct Inner {
    ring: IoUring,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// SQEs pushed and not yet submitted.
    queued: u32,
    /// Ops whose completion has not been reaped.
    in_flight: u32,
    /// A submit failed for good; the ring takes no more ops.
    broken: bool,
}

thread_local! {
    static THIS_RING: RefCell<Option<Arc<Ring>>> = const { RefCell::new(None) };
}

impl Ring {
    /// This thread's ring, made (with its reaper, on the current tokio
    /// runtime) when the thread has none or its runtime is gone.
    fn this_thread() -> io::Result<Arc<Ring>> {
        THIS_RING.with(|cell| {
            if let Some(r) = cell.borrow().as_ref()
                && r.live.load(Ordering::Acquire)
            {
                return Ok(r.clone());
            }
            let ring = Ring::new()?;
            *cell.borrow_mut() = Some(ring.clone());
            Ok(ring)
        })
    }

    fn new() -> io::Result<Arc<Ring>> {
        let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let ring = IoUring::builder()
            .setup_cqsize(RING_ENTRIES * 2)
            .build(RING_ENTRIES)?;
        let fd = ring.as_raw_fd();
        let ring = Arc::new(Ring {
            fd,
            inner: Mutex::new(Inner {
                ring,
                slots: (0..RING_ENTRIES).map(|_| Slot::default()).collect(),
                free: (0..RING_ENTRIES).rev().collect(),
                queued: 0,
                in_flight: 0,
                broken: false,
            }),
            live: AtomicBool::new(true),
        });
        // SAFETY: the fd is the ring's, which `RingFd` keeps alive (and
        // open) for as long as the `AsyncFd` lives.
        let fd =
            unsafe { AsyncFd::register_with_interest(RingFd(ring.clone()), Interest::READABLE) }
                .map_err(io::Error::from)?;
        handle.spawn(reap_when_readable(ring.clone(), fd));
        Ok(ring)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The ring's fd, for tokio's reactor: readable while completions wait.
/// Holds the ring, so the fd stays open while registered.
struct RingFd(Arc<Ring>);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.fd
    }
}

/// Marks the ring dead when the reaper ends (dropped with its runtime).
struct LiveGuard(Arc<Ring>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.store(false, Ordering::Release);
    }
}

/// The reaper: wakes the ops whose completions arrived while no op of the
/// ring was being polled (device I/O).
async fn reap_when_readable(ring: Arc<Ring>, fd: AsyncFd<RingFd>) {
    let guard = LiveGuard(ring);
    loop {
        let Ok(mut ready) = fd.readable().await else {
            return;
        };
        // Cleared before reaping: a completion after the reap is a new
        // edge, so none is missed.
        ready.clear_ready();
        guard.0.lock().reap();
    }
}

impl Inner {
    /// Hands completions to their slots, waking the waiting ops and
    /// freeing orphans.
    fn reap(&mut self) {
        let Inner {
            ring, slots, free, ..
        } = self;
        let mut reaped = 0;
        for cqe in ring.completion() {
            reaped += 1;
            let i = cqe.user_data() as usize;
            let Some(slot) = slots.get_mut(i) else {
                continue;
            };
            match slot.state {
                SlotState::Waiting => {
                    slot.state = SlotState::Done(cqe.result());
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
                SlotState::Orphan => {
                    *slot = Slot::default();
                    free.push(i as u32);
                }
                SlotState::Free | SlotState::Done(_) => {}
            }
        }
        self.in_flight -= reaped;
    }

    /// Submits the queued SQEs (one `io_uring_enter`), then reaps.
    fn flush(&mut self) -> io::Result<()> {
        while self.queued > 0 {
            match self.ring.submit() {
                Ok(n) => self.queued = self.queued.saturating_sub(n as u32),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // The kernel is short of memory or the CQ is full: make
                // room and try again.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {
                    self.reap();
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
        self.reap();
        Ok(())
    }

    /// Queues `entry` (its `user_data` set to the slot) with `keep` held in
    /// a free slot; gives `keep` back when no slot is free.
    fn push(
        &mut self,
        entry: squeue::Entry,
        keep: Box<dyn Any + Send>,
        waker: &Waker,
    ) -> Result<u32, Box<dyn Any + Send>> {
        let Some(i) = self.free.pop() else {
            return Err(keep);
        };
        let entry = entry.user_data(u64::from(i));
        // SAFETY: what the entry points at (buffer, fd) is owned by `keep`,
        // which the slot holds until the completion is reaped.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            // The SQ holds at most one entry per slot, so it is only full
            // if slots and SQ disagree: submitting empties it.
            if self.flush().is_err() {
                // Broken: the thread makes a new ring for the next try.
                self.free.push(i);
                self.broken = true;
                return Err(keep);
            }
        }
        self.slots[i as usize] = Slot {
            state: SlotState::Waiting,
            keep: Some(keep),
            waker: Some(waker.clone()),
        };
        self.queued += 1;
        self.in_flight += 1;
        if self.queued >= SUBMIT_BATCH {
            // A failure here is seen by the ops' own flushes.
            let _ = self.flush();
        }
        Ok(i)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        let waited = self.ring.submit_and_wait(self.in_flight as usize);
        self.reap();
        if waited.is_err() || self.in_flight > 0 {
            // The kernel may still write into these: never free them.
            for slot in &mut self.slots {
                if let Some(k) = slot.keep.take() {
                    std::mem::forget(k);
                }
            }
        }
    }
}

/// Runs one read or write SQE on this thread's ring with `keep` (the
/// buffer and file it points into) held until it completes; returns the
/// result (bytes moved) and `keep`.
///
/// # Safety
///
/// `entry` may only point at memory and fds owned by `keep` (heap memory
/// that does not move when `keep` does).
/// `keep` is `None` only when the ring broke (a submit failed for good)
/// with the op queued: the ring keeps it, since the SQE may still be
/// submitted.
pub async unsafe fn run<K: Any + Send>(
    entry: squeue::Entry,
    keep: K,
) -> (io::Result<usize>, Option<K>) {
    let mut keep: Box<dyn Any + Send> = Box::new(keep);
    let slot = loop {
        let ring = match Ring::this_thread() {
            Ok(r) => r,
            Err(e) => return (Err(e), keep.downcast::<K>().ok().map(|k| *k)),
        };
        let pushed = Pushed::<K>::new(&ring, &entry, keep).await;
        match pushed {
            Ok(slot) => break slot,
            Err(k) => {
                keep = k;
                // Every slot is taken: let the others complete.
                tokio::task::yield_now().await;
            }
        }
    };
    // The other workers of this thread queue theirs before the flush.
    tokio::task::yield_now().await;
    slot.await
}

/// Pushes the SQE on its first poll (where the waker is known).
struct Pushed<'a, K> {
    ring: &'a Arc<Ring>,
    entry: &'a squeue::Entry,
    keep: Option<Box<dyn Any + Send>>,
    _k: PhantomData<fn() -> K>,
}

impl<'a, K> Pushed<'a, K> {
    fn new(ring: &'a Arc<Ring>, entry: &'a squeue::Entry, keep: Box<dyn Any + Send>) -> Self {
        Pushed {
            ring,
            entry,
            keep: Some(keep),
            _k: PhantomData,
        }
    }
}

impl<K> Future for Pushed<'_, K> {
    type Output = Result<InFlight<K>, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(keep) = self.keep.take() else {
            return Poll::Pending;
        };
        let mut inner = self.ring.lock();
        let pushed = inner.push(self.entry.clone(), keep, cx.waker());
        if inner.broken {
            self.ring.live.store(false, Ordering::Release);
        }
        drop(inner);
        Poll::Ready(pushed.map(|slot| InFlight {
            ring: self.ring.clone(),
            slot,
            done: false,
            _k: PhantomData,
        }))
    }
}

/// An op in a slot: flushes the ring (if its SQE is still queued), reaps,
/// and returns the result once its completion is in.
struct InFlight<K> {
    ring: Arc<Ring>,
    slot: u32,
    done: bool,
    _k: PhantomData<fn() -> K>,
}

impl<K: Any> Future for InFlight<K> {
    type Output = (io::Result<usize>, Option<K>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let i = self.slot as usize;
        let mut inner = self.ring.lock();
        let flushed = inner.flush();
        let slot = &mut inner.slots[i];
        let SlotState::Done(res) = slot.state else {
            if let Err(e) = flushed {
                // The ring is broken: this op's SQE may still be submitted
                // some day, so its slot (and buffers) stay with the ring,
                // and the thread makes a new ring for the next op.
                slot.state = SlotState::Orphan;
                slot.waker = None;
                inner.broken = true;
                drop(inner);
                self.ring.live.store(false, Ordering::Release);
                self.done = true;
                return Poll::Ready((Err(e), None));
            }
            match &slot.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => slot.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        };
        let keep = std::mem::take(slot).keep;
        inner.free.push(self.slot);
        drop(inner);
        self.done = true;
        let result = match res {
            n if n >= 0 => Ok(n as usize),
            e => Err(io::Error::from_raw_os_error(-e)),
        };
        // Always `Some`: the slot held what this op put in.
        let keep = keep.and_then(|k| k.downcast::<K>().ok()).map(|k| *k);
        Poll::Ready((result, keep))
    }
}

impl<K> Drop for InFlight<K> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut inner = self.ring.lock();
        let slot = &mut inner.slots[self.slot as usize];
        match slot.state {
            // The kernel is done with it: free it now.
            SlotState::Done(_) => {
                *slot = Slot::default();
                inner.free.push(self.slot);
            }
            SlotState::Waiting => {
                slot.state = SlotState::Orphan;
                slot.waker = None;
            }
            SlotState::Free | SlotState::Orphan => {}
        }
    }
}

/// Memory whose bytes stay where they are when the value moves (heap
/// buffers), so the kernel may use it while the value sits in a slot.
///
/// # Safety
///
/// `bytes` and `bytes_mut` must give the same memory however often the
/// value is moved, until it is dropped.
pub unsafe trait StableBuf: Send + 'static {
    fn bytes(&self) -> &[u8];
    /// Writable bytes; a buffer that is never read into may give none.
    fn bytes_mut(&mut self) -> &mut [u8];
}

// SAFETY: a Vec's heap buffer does not move with the Vec.
unsafe impl StableBuf for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

// SAFETY: `Bytes` points at shared (or static) memory that does not move.
unsafe impl StableBuf for bytes::Bytes {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut []
    }
}

/// Runs `entry` holding `file` and `buf` until its completion ([`run`]):
/// the op's result with both given back, or an error when the ring broke
/// and they could not be.
///
/// # Safety
/// As [`run`]: `entry` may point only into `buf` and at `file`'s fd.
async unsafe fn run_held<F, B>(
    entry: squeue::Entry,
    file: F,
    buf: B,
) -> io::Result<(io::Result<usize>, F, B)>
where
    F: AsRawFd + Send + 'static,
    B: StableBuf,
{
    // SAFETY: passed on from the caller.
    let (r, keep) = unsafe { run(entry, (file, buf)) }.await;
    match keep {
        Some((file, buf)) => Ok((r, file, buf)),
        None => Err(r
            .err()
            .unwrap_or_else(|| io::Error::other("io_uring ring broke"))),
    }
}

/// Reads up to `len` bytes at `offset` of `file` into `buf[at..]` through
/// this thread's ring; gives back the count, the file and the buffer.
/// `EINTR` and `EAGAIN` (never expected from a ring read) are retried.
pub async fn read_at<F, B>(
    file: F,
    buf: B,
    at: usize,
    len: usize,
    offset: u64,
) -> io::Result<(usize, F, B)>
where
    F: AsRawFd + Send + 'static,
    B: StableBuf,
{
    let (mut file, mut buf) = (file, buf);
    loop {
        let dst = &mut buf.bytes_mut()[at..];
        let entry = read_entry(
            file.as_raw_fd(),
            dst.as_mut_ptr(),
            len.min(dst.len()),
            offset,
        );
        // SAFETY: the entry points into `buf` and at `file`'s fd; both are
        // held by the slot until the completion.
        let r;
        (r, file, buf) = unsafe { run_held(entry, file, buf) }.await?;
        match r {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) => {}
            r => return r.map(|n| (n, file, buf)),
        }
    }
}

/// Writes all of `buf.bytes()[from..to]` to `file` at `offset` through
/// this thread's ring (more writes if one comes back short); gives back
/// the file and the buffer.
pub async fn write_all_at<F, B>(
    file: F,
    buf: B,
    from: usize,
    to: usize,
    mut offset: u64,
) -> io::Result<(F, B)>
where
    F: AsRawFd + Send + 'static,
    B: StableBuf,
{
    let (mut file, mut buf, mut from) = (file, buf, from);
    while from < to {
        let src = &buf.bytes()[from..to];
        let entry = write_entry(file.as_raw_fd(), src.as_ptr(), src.len(), offset);
        // SAFETY: as in `read_at`.
        let r;
        (r, file, buf) = unsafe { run_held(entry, file, buf) }.await?;
        match r {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                from += n;
                offset += n as u64;
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((file, buf))
}

/// A read of `len` bytes at `offset` of `fd` into `ptr`.
pub fn read_entry(fd: RawFd, ptr: *mut u8, len: usize, offset: u64) -> squeue::Entry {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    opcode::Read::new(types::Fd(fd), ptr, len)
        .offset(offset)
        .build()
}

/// A write of `len` bytes at `ptr` to `fd` at `offset`.
pub fn write_entry(fd: RawFd, ptr: *const u8, len: usize, offset: u64) -> squeue::Entry {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    opcode::Write::new(types::Fd(fd), ptr, len)
        .offset(offset)
        .build()
}

#[cfg(test)]
mod tests;
