//! The open files `file://` and `direct://` GETs reuse: a bounded cache of
//! read-only file descriptors keyed by object key, least recently used out
//! first. What it keeps and when a GET opens the file again is in the docs
//! of [`super`] ("Open files"); when a kept file must be checked before it
//! is read again is decided here ([`OpenFiles::trusts`], used by
//! [`Reader::open`], the file a GET reads).

use std::fs;
use std::hash::BuildHasher;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::{FxBuildHasher, FxHashMap};

/// Open files a store keeps unless its URI says otherwise
/// (`?open_files=N`): enough for the objects of a typical random-read set
/// (fio's default `nrfiles` is far below it), far below the usual
/// open-file limits.
pub const DEFAULT_OPEN_FILES: usize = 1024;

/// Most open files one store keeps, whatever the URI asks.
pub const MAX_OPEN_FILES: usize = 1 << 16;

/// A store keeps at most this fraction of the process's open-file limit
/// (`RLIMIT_NOFILE`, soft): the rest is for sockets, op-logs, the files of
/// PUTs, and other stores. Under systemd's usual soft limit of 1024 that is
/// 256 files.
const NOFILE_DIVISOR: u64 = 4;

/// Independent parts of the cache, each with its own lock, so workers on
/// many threads do not queue on one mutex for every GET.
const SHARDS: usize = 16;

/// One open read-only file, shared by the GETs that use it at once. It is
/// closed when the last of them (or the cache) lets go of it, so evicting
/// an entry never closes a file under a GET.
#[derive(Debug)]
pub struct OpenFile {
    file: fs::File,
    /// The `posix_fadvise` hint last given (`POSIX_FADV_NORMAL` at open).
    advice: AtomicI32,
    /// The cache's stage ([`OpenFiles::stage_begins`]) in which the file
    /// was last known to have a name: opened, or checked with `fstat`.
    /// 0 until it is kept.
    checked_in: AtomicU64,
}

impl OpenFile {
    pub fn new(file: fs::File) -> OpenFile {
        OpenFile {
            file,
            advice: AtomicI32::new(libc::POSIX_FADV_NORMAL),
            checked_in: AtomicU64::new(0),
        }
    }

    pub fn file(&self) -> &fs::File {
        &self.file
    }

    /// Gives the kernel `advice` about how the file will be read, unless it
    /// is the hint it already has (the hint belongs to the open file, so a
    /// reused one keeps it). A failure only loses the hint.
    pub fn advise(&self, advice: libc::c_int) {
        // Looked at before it is swapped: a GET that wants the hint the
        // file has (nearly every one) then writes nothing to this line,
        // which the workers on other cores read too.
        if self.advice.load(Ordering::Relaxed) != advice
            && self.advice.swap(advice, Ordering::Relaxed) != advice
        {
            // SAFETY: posix_fadvise on an open fd reads no memory of ours.
            unsafe { libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, advice) };
        }
    }
}

/// The fd an io_uring read of the file uses ([`crate::store::uring`]).
impl AsRawFd for OpenFile {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

/// A bounded map from object key to open file.
#[derive(Debug)]
pub struct OpenFiles {
    shards: Box<[Mutex<Shard>]>,
    /// Entries per shard.
    per_shard: usize,
    /// Counts the stages begun; 1 before the first.
    stage: AtomicU64,
    /// Whether no op of the current stage removes or replaces an object,
    /// so a kept file checked in this stage needs no check again.
    trusting: AtomicBool,
}

#[derive(Debug, Default)]
struct Shard {
    /// Fx hashing: keys come from plans, not from an adversary, and
    /// SipHash (std's default) was most of a lookup's cost.
    map: FxHashMap<Box<str>, Entry>,
    /// Counts uses; an entry's `used` is the count at its last use.
    tick: u64,
}

#[derive(Debug)]
struct Entry {
    file: Arc<OpenFile>,
    used: u64,
}

impl OpenFiles {
    /// A cache of at most `wanted` files, fewer when the process's
    /// open-file limit is low (see [`NOFILE_DIVISOR`]); `None` when that
    /// leaves none (`wanted` 0: every GET opens its file).
    pub fn new(wanted: usize) -> Option<OpenFiles> {
        let capacity = wanted.min(MAX_OPEN_FILES).min(nofile_share());
        if capacity == 0 {
            return None;
        }
        let shards = SHARDS.min(capacity);
        Some(OpenFiles {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            per_shard: capacity / shards,
            stage: AtomicU64::new(1),
            trusting: AtomicBool::new(false),
        })
    }

    /// Most files kept open.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        // The high bits: the map inside uses the low ones.
        let h = FxBuildHasher.hash_one(key) >> 32;
        self.shards[(h % self.shards.len() as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A stage begins (see [`crate::store::ObjectStore::stage_begins`]):
    /// when none of its ops removes or replaces an object, a kept file
    /// that is found to have a name once in the stage is trusted for the
    /// rest of it. Files kept from earlier stages are checked once again,
    /// as another agent may have deleted them then.
    pub fn stage_begins(&self, removes_objects: bool) {
        self.stage.fetch_add(1, Ordering::Relaxed);
        self.trusting.store(!removes_objects, Ordering::Relaxed);
    }

    /// Whether `file`, kept by this cache, may be read without checking
    /// that it still has a name: it was checked (or opened) in this stage,
    /// and no op of the stage removes or replaces an object. Relaxed
    /// loads: stages begin while no GET runs.
    pub fn trusts(&self, file: &OpenFile) -> bool {
        self.trusting.load(Ordering::Relaxed)
            && file.checked_in.load(Ordering::Relaxed) == self.stage.load(Ordering::Relaxed)
    }

    /// `file` was found to have a name (opened, or checked) just now.
    pub fn checked(&self, file: &OpenFile) {
        file.checked_in
            .store(self.stage.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The open file of `key`, if one is kept; marks it used.
    pub fn get(&self, key: &str) -> Option<Arc<OpenFile>> {
        let mut shard = self.shard(key);
        shard.tick += 1;
        let tick = shard.tick;
        let entry = shard.map.get_mut(key)?;
        entry.used = tick;
        Some(entry.file.clone())
    }

    /// Keeps `file` as the open file of `key` (replacing any other),
    /// evicting the least recently used entry of its shard when full.
    pub fn insert(&self, key: &str, file: Arc<OpenFile>) {
        let dropped = {
            let mut shard = self.shard(key);
            shard.tick += 1;
            let used = shard.tick;
            let mut evicted = None;
            if shard.map.len() >= self.per_shard && !shard.map.contains_key(key) {
                // A scan: a shard holds a few dozen entries at the default
                // size, and only a GET that opened a file gets here.
                let oldest = shard
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone());
                evicted = oldest.and_then(|k| shard.map.remove(&k));
            }
            let old = shard.map.insert(key.into(), Entry { file, used });
            (evicted, old)
        };
        // Closed (if no GET holds them) after the lock is released.
        drop(dropped);
    }

    /// Forgets `key`'s open file (a DELETE of it).
    pub fn remove(&self, key: &str) {
        let old = self.shard(key).map.remove(key);
        drop(old);
    }

    /// Forgets `key`'s open file if it is still `file` (found stale by a
    /// GET; another GET may have put a fresh one there meanwhile).
    pub fn remove_if(&self, key: &str, file: &Arc<OpenFile>) {
        let old = {
            let mut shard = self.shard(key);
            match shard.map.get(key) {
                Some(e) if Arc::ptr_eq(&e.file, file) => shard.map.remove(key),
                _ => None,
            }
        };
        drop(old);
    }

    /// Closes every kept file: the process ran out of file descriptors.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let old = std::mem::take(&mut shard.lock().unwrap_or_else(PoisonError::into_inner).map);
            drop(old);
        }
    }

    /// Whether no file is kept open now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Files kept open now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }
}

/// How many files one store may keep open: a share of the soft
/// `RLIMIT_NOFILE` ([`NOFILE_DIVISOR`]).
fn nofile_share() -> usize {
    // SAFETY: rlimit is plain data; all-zero is a valid value of it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a live, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        return usize::MAX;
    }
    usize::try_from(lim.rlim_cur / NOFILE_DIVISOR).unwrap_or(usize::MAX)
}

/// The cache of open files for a store on a root that is (or is not) on a
/// local file system: none on a remote one (see "Open files" in the module
/// docs) or when `wanted` is 0.
pub(crate) fn open_files_for(local: bool, wanted: usize) -> Option<Arc<OpenFiles>> {
    if local {
        OpenFiles::new(wanted).map(Arc::new)
    } else {
        None
    }
}

/// The file a GET reads from.
pub(crate) struct Reader {
    pub file: Arc<OpenFile>,
    /// The size, when the reuse check gave it.
    size: Option<u64>,
}

impl Reader {
    /// The file of `key`: the open one `fds` keeps, if the file still has
    /// a name (one `fstat`, unless `fds` trusts it for this stage), else
    /// what `open` opens, kept for the next GET. See "Open files" in the
    /// module docs.
    pub fn open(
        fds: Option<&OpenFiles>,
        key: &str,
        open: impl Fn() -> io::Result<fs::File>,
    ) -> io::Result<Reader> {
        let Some(fds) = fds else {
            let file = open()?;
            return Ok(Reader {
                file: Arc::new(OpenFile::new(file)),
                size: None,
            });
        };
        if let Some(file) = fds.get(key) {
            if fds.trusts(&file) {
                return Ok(Reader { file, size: None });
            }
            match linked_size(file.file())? {
                Some(size) => {
                    fds.checked(&file);
                    return Ok(Reader {
                        file,
                        size: Some(size),
                    });
                }
                // Deleted or replaced since it was opened.
                None => fds.remove_if(key, &file),
            }
        }
        let file = Arc::new(OpenFile::new(with_fds(Some(fds), &open)?));
        fds.checked(&file);
        fds.insert(key, file.clone());
        Ok(Reader { file, size: None })
    }

    /// The object's size.
    pub fn size(&self) -> io::Result<u64> {
        match self.size {
            Some(size) => Ok(size),
            None => super::size_of(self.file.file()),
        }
    }
}

/// The size of an open file, or `None` when it no longer has a name
/// (unlinked: deleted, or replaced by a rename over it).
fn linked_size(file: &fs::File) -> io::Result<Option<u64>> {
    // SAFETY: stat is plain data; all-zero is a valid value of it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open and `st` a live, writable stat.
    if unsafe { libc::fstat(file.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.st_nlink > 0).then_some(st.st_size as u64))
}

/// Runs `open`; when the process is out of file descriptors (`EMFILE`,
/// `ENFILE`), closes the files `fds` keeps and runs it once more.
pub(crate) fn with_fds<T>(
    fds: Option<&OpenFiles>,
    open: impl Fn() -> io::Result<T>,
) -> io::Result<T> {
    match open() {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => match fds {
            Some(fds) if !fds.is_empty() => {
                fds.clear();
                open()
            }
            _ => Err(e),
        },
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<OpenFile> {
        Arc::new(OpenFile::new(fs::File::open("/dev/null").unwrap()))
    }

    #[test]
    fn bounded_and_least_recently_used_out() {
        let c = OpenFiles::new(SHARDS * 2).unwrap();
        assert_eq!(c.capacity(), SHARDS * 2);
        let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        for k in &keys {
            c.insert(k, file());
            // The first key is used all along: it is never the oldest.
            assert!(c.get(&keys[0]).is_some(), "after {k}");
        }
        assert!(c.len() <= c.capacity(), "{} > {}", c.len(), c.capacity());
        assert!(c.get(&keys[199]).is_some(), "the newest is kept");
        c.remove(&keys[0]);
        assert!(c.get(&keys[0]).is_none());
        c.clear();
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn remove_if_spares_a_newer_file() {
        let c = OpenFiles::new(8).unwrap();
        let (old, new) = (file(), file());
        c.insert("k", old.clone());
        c.insert("k", new.clone());
        c.remove_if("k", &old);
        assert!(Arc::ptr_eq(&c.get("k").unwrap(), &new));
        c.remove_if("k", &new);
        assert!(c.get("k").is_none());
    }

    #[test]
    fn trusted_only_when_checked_in_a_stage_without_removals() {
        let c = OpenFiles::new(8).unwrap();
        let f = file();
        c.checked(&f);
        // Before any stage is known: always checked.
        assert!(!c.trusts(&f));
        c.stage_begins(false);
        assert!(!c.trusts(&f), "checked in an earlier stage");
        c.checked(&f);
        assert!(c.trusts(&f));
        // A stage that deletes: checked on every reuse.
        c.stage_begins(true);
        c.checked(&f);
        assert!(!c.trusts(&f));
        c.stage_begins(false);
        assert!(
            !c.trusts(&f),
            "the deleting stage's check does not carry over"
        );
        c.checked(&f);
        assert!(c.trusts(&f));
    }

    #[test]
    fn zero_means_no_cache() {
        assert!(OpenFiles::new(0).is_none());
        assert_eq!(OpenFiles::new(5).unwrap().capacity(), 5);
    }
}
