//! `file:///path`: objects as files under a root directory, with large
//! buffered I/O through the page cache.
//!
//! Keys map to paths below the root (`a/b` is `<root>/a/b`); parent
//! directories are made on PUT. The data path is what an fio `psync` job
//! does, plus the open and close an object op needs:
//!
//! - **GET** opens the file, reads it with `pread` into a per-thread buffer
//!   that is reused (sized to the read, at most [`READ_CHUNK_BYTES`]; no
//!   per-op allocation or zeroing), and closes it. A whole-object GET
//!   learns the size with one `lseek(SEEK_END)` and stops there (no extra
//!   read to find the end, and a short non-blocking read is not taken for
//!   the end); a range GET needs no size unless the range comes back empty
//!   (to tell "past the end", an error, from an empty object).
//! - **fadvise hints**, as fio gives them (`fadvise_hint=1`):
//!   `POSIX_FADV_RANDOM` on a range GET of at most one chunk (no readahead
//!   of pages a random reader will not use), `POSIX_FADV_SEQUENTIAL` on a
//!   whole-object GET larger than the kernel's default readahead window
//!   (below it the hint changes nothing and would cost a syscall). A hint
//!   belongs to an open file, so a reused one (below) is only told again
//!   when the hint a GET wants changes.
//! - **Open files are reused** by GETs: see "Open files" below.
//! - **PUT overwrites in place**: the file is opened without `O_TRUNC`,
//!   written from offset 0 and cut with `ftruncate` only when the old file
//!   was longer (as `direct://` and an fio write to an existing file do).
//!   Truncating first (`File::create`) frees the file's blocks, makes the
//!   write allocate them again, and on ext4 arms the "replace by truncate"
//!   heuristic (`auto_da_alloc`) that starts writeback of the file on
//!   close: measured 16.7k vs 270k 4 KiB PUT/s for fio on the same files.
//!   No fsync: a PUT is done when its `pwrite` returns (fio's defaults,
//!   `fsync=0`, `end_fsync=0`).
//! - **Where the syscalls run**: see [`Exec`]. On a local file system, on
//!   the agent's multi-thread runtime, a worker makes its syscalls itself,
//!   and a read that would wait for the device (`preadv2(RWF_NOWAIT)` says
//!   `EAGAIN`) is the only call handed off with `block_in_place`, so other
//!   workers on that thread go on meanwhile. Page-cache hits cost a few µs;
//!   handing every op to another thread (`spawn_blocking`, or the thread
//!   hand-over `block_in_place` does on each call) costs about as much again
//!   in futex wake-ups and context switches.
//!
//! # Open files
//!
//! An object GET opens and closes its file; fio's random reader keeps its
//! files open and only calls `pread`. On a cached 4 KiB read, open, read
//! and close took 8.5 µs against 2.1 µs for the read alone (2-CPU VM), so
//! GETs keep the files they open in a bounded cache
//! ([`OpenFiles`]: read-only descriptors keyed by object key, least
//! recently used out first, [`DEFAULT_OPEN_FILES`] per store, at most a
//! quarter of the process's `RLIMIT_NOFILE`; `file:///path?open_files=N`
//! sets the bound, `open_files=0` opens a file for every GET). What a
//! benchmark must still do is answer every GET from the object as it is
//! *now*, whoever changed it:
//!
//! - **Overwrites** keep the file: a PUT (this store's, another agent's,
//!   fio's) writes into the existing file, and reads through a descriptor
//!   opened earlier see the new bytes at once (one page cache per file).
//! - **Deletes and replacements** unlink the file: `rm`, a DELETE through
//!   any store or process, or a new file renamed over it (`mv`, rsync,
//!   editors) leave the old file without a name. A reuse checks that
//!   with one `fstat` (`st_nlink > 0`, which also gives the size a whole
//!   GET needs, so that GET makes no extra call); an unlinked file is
//!   dropped and the path opened again, so the GET reads the new file or
//!   fails with `not_found`, as a fresh open would. A DELETE through this
//!   store also drops its entry at once.
//! - **Stages that remove nothing** check each kept file once, not on
//!   every GET. The engine says when a stage begins whether any of its ops,
//!   on any agent, can remove an object (a `delete` or `rmdir` in the mix,
//!   a cleanup stage: [`ObjectStore::stage_begins`]); Chorus's PUTs write
//!   in place and never unlink. When none can, a file checked (or opened)
//!   once in the stage is read without the `fstat` for the rest of it:
//!   that call was a fifth of a worker's CPU on cached 4 KiB range GETs.
//!   Files kept from earlier stages are checked again at their first GET
//!   of the new stage. What this gives up: a file deleted or replaced *by
//!   something outside the run* (`rm` in a shell) during such a stage is
//!   still read until the stage ends, as fio reads the files it holds
//!   open; `open_files=0` when a test does that on purpose. Outside a
//!   stage (a store used on its own, as the tests and `controller`
//!   helpers do), every reuse is checked.
//! - **Not seen**: an object's file *moved away* while it keeps a name
//!   (`mv a/k b/k`) is still read as `a/k` until it leaves the cache; so
//!   is a file still reachable through another hard link. Neither is
//!   something a benchmark's data set has done to it by accident; use
//!   `open_files=0` when a test does it on purpose. And a kept file
//!   deleted by someone else keeps its blocks allocated until a GET of its
//!   key drops it or the store is closed (at most the bound's worth).
//! - **Only local file systems** (the [`Exec::Inline`] list) cache. On
//!   NFS, Lustre, FUSE and the like every GET opens its file: there an open
//!   is the round trip to the server (close-to-open consistency, metadata
//!   server load) that an object GET must pay, and a descriptor held open
//!   would hide both other clients' changes and that cost.
//! - **Descriptors run out**: an open that fails with `EMFILE` or `ENFILE`
//!   closes every cached file and tries once more.
//!
//! PUTs are not cached: a PUT is open, write, close, as fio's write jobs
//! (which open and close each file of `nrfiles`) do.

use std::cell::RefCell;
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::uring::{Engine, parse_engine, resolve};
use super::{
    ByteRange, ChunkSink, CopyPlan, ErrorClass, GetOptions, GetOutcome, ListOptions, ListPage,
    ObjectMeta, ObjectStore, PartPlan, PartSource, StoreError, StoreResult, clamp_range,
    get_in_ranges, page_from_sorted,
};
use crate::clock::Mono;

mod keys;
pub(crate) mod more;
mod open_files;
mod ring;
mod walk;

use keys::key_is_safe;
pub(super) use keys::{class_of, key_path};
pub use open_files::{DEFAULT_OPEN_FILES, MAX_OPEN_FILES};
pub(super) use open_files::{OpenFiles, Reader, open_files_for, with_fds};
use walk::Walk;

/// Most bytes one read syscall asks for on GET: large enough that big
/// objects take few syscalls (fio's `bs=1M`), small enough that the
/// per-thread buffer stays in cache.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// The kernel's default readahead window (`read_ahead_kb` is 128 on most
/// devices). A whole-object GET no larger than this is read in one go by
/// the initial readahead anyway, so `POSIX_FADV_SEQUENTIAL` (which doubles
/// the window) is only given for larger objects.
const DEFAULT_READAHEAD_BYTES: u64 = 128 << 10;

thread_local! {
    /// The reused read buffer of this thread (GETs whose bytes are
    /// dropped). Only sync code borrows it, never across an await, so one
    /// op at a time per thread uses it.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// How one op's syscalls are run; decided per op from the runtime and,
/// once at open, from the root's file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exec {
    /// In place on the calling runtime thread; a read that would wait for
    /// the device goes through `block_in_place`. Used on a multi-thread
    /// runtime when the root is on a local file system, where open, stat
    /// and buffered writes do not wait on a network and cached reads do
    /// not wait at all.
    Inline,
    /// The whole op in `block_in_place`: a multi-thread runtime, with the
    /// root on a file system that is (or may be) remote — NFS, FUSE, SMB,
    /// Lustre — where an open or a write is a round trip that must not
    /// hold up the other tasks of the thread.
    InPlace,
    /// The whole op on tokio's blocking pool: a current-thread runtime,
    /// where `block_in_place` is not allowed.
    Pool,
}

/// A directory of files as an object store.
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
    /// Shared with each op's error builder, so an op copies no string.
    uri: Arc<str>,
    /// The root is on a local file system ([`is_local_fs`]).
    local: bool,
    /// Files GETs keep open (see "Open files" in the module docs); `None`
    /// when every GET opens its file.
    fds: Option<Arc<OpenFiles>>,
    /// GET and PUT data go through this thread's io_uring ([`ring`]), as
    /// `engine=` and [`super::uring::resolve`] decided at open.
    uring: bool,
}

impl FileStore {
    /// Opens the store for the part of a `file://` URI after the scheme: an
    /// absolute root path (made if missing), optionally followed by
    /// `?open_files=<n>` (see "Open files" in the module docs) and
    /// `engine=psync|io_uring|auto` (see [`ring`]), joined by `&`.
    pub fn new(rest: &str) -> StoreResult<FileStore> {
        let uri = format!("file://{rest}");
        let (root, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (mut open_files, mut engine) = (DEFAULT_OPEN_FILES, Engine::DEFAULT);
        for param in query.into_iter().flat_map(|q| q.split('&')) {
            match param.split_once('=') {
                Some(("open_files", v)) => open_files = parse_open_files(v, &uri)?,
                Some(("engine", v)) => engine = parse_engine(v, &uri)?,
                _ => {
                    return Err(StoreError::new(
                        ErrorClass::Other,
                        &uri,
                        format!(
                            "unknown parameter `{param}`; the ones here are `open_files=<n>` \
                             and `engine=psync|io_uring|auto` \
                             (e.g. file:///mnt/x?open_files=0&engine=io_uring)"
                        ),
                    ));
                }
            }
        }
        let mut store = Self::build(root, uri, open_files)?;
        store.uring = resolve(engine, &store.uri)?;
        Ok(store)
    }

    /// The engine this store's GETs and PUTs use: `psync` or `io_uring`.
    pub fn engine(&self) -> &'static str {
        if self.uring { "io_uring" } else { "psync" }
    }

    /// A store on `root` whose URI (in errors) is `uri`, keeping up to
    /// `open_files` files open for GETs (0: none).
    pub(super) fn build(root: &str, uri: String, open_files: usize) -> StoreResult<FileStore> {
        fs::create_dir_all(root).map_err(|e| {
            StoreError::new(
                class_of(&e),
                &uri,
                format!("cannot create root directory: {e}"),
            )
        })?;
        let local = is_local_fs(Path::new(root));
        Ok(FileStore {
            root: PathBuf::from(root),
            local,
            fds: open_files_for(local, open_files),
            uri: uri.into(),
            uring: false,
        })
    }

    /// Most files this store's GETs keep open (0 when every GET opens its
    /// file).
    pub fn open_files(&self) -> usize {
        self.fds.as_ref().map_or(0, |c| c.capacity())
    }

    /// Whether the root is on a local file system (see [`is_local_fs`]).
    pub(super) fn is_local(&self) -> bool {
        self.local
    }

    /// The path of `key`, refusing keys that would leave the root.
    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        key_path(&self.root, &self.uri, key)
    }

    fn exec(&self) -> Exec {
        match (crate::pools::on_multi_thread_runtime(), self.local) {
            (true, true) => Exec::Inline,
            (true, false) => Exec::InPlace,
            (false, _) => Exec::Pool,
        }
    }

    /// Runs the file calls of one op as [`Exec`] says. `f` is told whether
    /// it runs inline (and must then hand blocking reads off itself).
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(Exec) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        match self.exec() {
            Exec::Inline => f(Exec::Inline),
            Exec::InPlace => tokio::task::block_in_place(|| f(Exec::InPlace)),
            Exec::Pool => tokio::task::spawn_blocking(|| f(Exec::Pool))
                .await
                .map_err(|e| {
                    StoreError::new(
                        ErrorClass::Other,
                        &*self.uri,
                        format!("I/O task failed: {e}"),
                    )
                })?,
        }
    }

    /// Runs metadata calls (stat, delete, list, mkdir, rmdir): like
    /// [`Self::run`], but never inline on a multi-thread runtime, since a
    /// directory walk or a cold lookup may read the device.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        match self.exec() {
            Exec::Inline | Exec::InPlace => tokio::task::block_in_place(f),
            Exec::Pool => self.run(move |_| f()).await,
        }
    }
}

/// The value of an `open_files=<n>` URI parameter.
pub(super) fn parse_open_files(value: &str, uri: &str) -> StoreResult<usize> {
    let bad = |m: String| StoreError::new(ErrorClass::Other, uri, m);
    let n: usize = value.parse().map_err(|_| {
        bad(format!(
            "invalid `open_files`: `{value}` is not a whole number of files"
        ))
    })?;
    if n > MAX_OPEN_FILES {
        return Err(bad(format!(
            "`open_files` is at most {MAX_OPEN_FILES}, not {n}"
        )));
    }
    Ok(n)
}

/// Whether `root` is on a file system whose open, stat and buffered write
/// are local work (no network round trip): ext2/3/4, xfs, btrfs, f2fs,
/// bcachefs, tmpfs, overlayfs. Anything else (NFS, FUSE, SMB, Lustre,
/// or `statfs` failing) is treated as possibly remote.
fn is_local_fs(root: &Path) -> bool {
    let Ok(c) = CString::new(root.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain data; all-zero is a valid value of it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a live, writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    matches!(
        st.f_type,
        libc::EXT4_SUPER_MAGIC
            | libc::XFS_SUPER_MAGIC
            | libc::BTRFS_SUPER_MAGIC
            | libc::F2FS_SUPER_MAGIC
            | libc::BCACHEFS_SUPER_MAGIC
            | libc::TMPFS_MAGIC
            | libc::OVERLAYFS_SUPER_MAGIC
    )
}

impl fmt::Display for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// One `pread` at `offset`, retrying interrupted calls. Inline, the read
/// is first tried with `RWF_NOWAIT` (served from the page cache, or
/// `EAGAIN`, after the kernel has started the readahead); only a read that
/// must wait for the device is handed off with `block_in_place`, so the
/// runtime thread's other workers run while it waits. `EOPNOTSUPP` (a file
/// system without non-blocking reads) takes the same hand-off.
fn read_at(file: &fs::File, buf: &mut [u8], offset: u64, exec: Exec) -> io::Result<usize> {
    if exec == Exec::Inline {
        loop {
            let iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: `iov` describes `buf`, writable and live for the call.
            let n = unsafe {
                libc::preadv2(
                    file.as_raw_fd(),
                    &iov,
                    1,
                    offset as libc::off_t,
                    libc::RWF_NOWAIT,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN | libc::EOPNOTSUPP) => break,
                _ => return Err(e),
            }
        }
        return tokio::task::block_in_place(|| read_at(file, buf, offset, Exec::InPlace));
    }
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Reads `len` bytes (fewer if the file ends first) at `offset` into
/// `buf`, a chunk of at most `buf.len()` at a time. When `buf` is shorter
/// than `len` the chunks overwrite each other (the bytes are dropped);
/// to keep them, pass a buffer of `len` bytes. Returns the bytes read.
fn read_span(
    file: &fs::File,
    buf: &mut [u8],
    offset: u64,
    len: u64,
    exec: Exec,
    first_byte: &mut Option<Mono>,
) -> io::Result<u64> {
    let mut total = 0u64;
    while total < len {
        // Where this chunk lands: right after the last one when `buf`
        // holds the whole span, else from the start of `buf`.
        let at = if buf.len() as u64 >= len {
            total as usize
        } else {
            0
        };
        let want = (buf.len() - at).min(usize::try_from(len - total).unwrap_or(usize::MAX));
        let n = read_at(file, &mut buf[at..at + want], offset + total, exec)?;
        first_byte.get_or_insert_with(Mono::now);
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok(total)
}

/// Runs `f` with this thread's scratch buffer grown to at least `len`
/// bytes (at most [`READ_CHUNK_BYTES`]). The buffer is zeroed only when it
/// grows, so a thread pays that once, not per op.
fn with_scratch<T>(len: u64, f: impl FnOnce(&mut [u8]) -> T) -> T {
    let want = usize::try_from(len)
        .unwrap_or(usize::MAX)
        .clamp(1, READ_CHUNK_BYTES);
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < want {
                buf.resize(want, 0);
            }
            f(&mut buf[..want])
        }
        // Not reachable (no op re-enters another on one thread); a fresh
        // buffer keeps it correct if it ever is.
        Err(_) => f(&mut vec![0u8; want]),
    })
}

/// Opens `path` for a PUT: write-only, created if missing, never truncated
/// (see the module docs), parents made when missing.
fn open_for_put(path: &Path) -> io::Result<fs::File> {
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            open()
        }
        r => r,
    }
}

/// The size of the open `file`, by `lseek(SEEK_END)`: one call that reads
/// the inode's size, where `fstat` (`statx`) also asks the file system for
/// every other attribute and copies them out (measured ~3% of a cached
/// 4 KiB GET or PUT). Only `pread`/`pwrite` follow, so the file position
/// it moves is never used.
fn size_of(mut file: &fs::File) -> io::Result<u64> {
    file.seek(SeekFrom::End(0))
}

/// Writes `data` as the whole content of `file`: over the old bytes in
/// place, then cut to size if the old file was longer.
fn overwrite(file: &fs::File, data: &[u8]) -> io::Result<()> {
    let old_size = size_of(file)?;
    file.write_all_at(data, 0)?;
    if old_size > data.len() as u64 {
        file.set_len(data.len() as u64)?;
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for FileStore {
    fn endpoint(&self) -> &str {
        &self.uri
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let path = self.path(key)?;
        if self.uring {
            return ring::put(self, key, &path, data).await;
        }
        let (key, this_err, fds) = (key.to_string(), self.err_fn(), self.fds.clone());
        self.run(move |_| {
            let write = || overwrite(&with_fds(fds.as_deref(), || open_for_put(&path))?, &data);
            write().map_err(|e| this_err(&key, e))
        })
        .await
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        // The key is checked (`key_is_safe`, in `get_file`) only when its
        // file is opened: a kept file's key was checked then.
        if self.uring {
            return ring::get(self, key, opts).await;
        }
        if self.exec() == Exec::Inline {
            // On this thread: nothing to copy for a closure.
            let fds = self.fds.as_deref();
            return get_file(fds, &self.root, &self.uri, key, opts, Exec::Inline);
        }
        let (fds, root, uri) = (self.fds.clone(), self.root.clone(), self.uri.clone());
        let (key, opts) = (key.to_string(), *opts);
        self.run(move |exec| get_file(fds.as_deref(), &root, &uri, &key, &opts, exec))
            .await
    }

    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
        let path = self.path(key)?;
        let (key, this_err) = (key.to_string(), self.err_fn());
        self.blocking(move || {
            let meta = fs::metadata(&path).map_err(|e| this_err(&key, e))?;
            if meta.is_dir() {
                return Err(this_err(&key, io::Error::from(io::ErrorKind::NotFound)));
            }
            Ok(ObjectMeta {
                key,
                size: meta.len(),
            })
        })
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        if let Some(fds) = &self.fds {
            fds.remove(key);
        }
        let (key, this_err) = (key.to_string(), self.err_fn());
        self.blocking(move || fs::remove_file(&path).map_err(|e| this_err(&key, e)))
            .await
    }

    async fn copy(&self, src: &str, dst: &str, _plan: CopyPlan) -> StoreResult<u64> {
        let (from, to, this_err) = (self.path(src)?, self.path(dst)?, self.err_fn());
        let src = src.to_string();
        self.blocking(move || more::copy(&from, &to).map_err(|e| this_err(&src, e)))
            .await
    }

    async fn append(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let (path, key, this_err) = (self.path(key)?, key.to_string(), self.err_fn());
        self.run(move |_| more::append(&path, &data, 0).map_err(|e| this_err(&key, e)))
            .await
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        let root = self.root.clone();
        let (prefix, this_err, opts) = (prefix.to_string(), self.err_fn(), opts.clone());
        self.blocking(move || {
            // Start at the deepest directory the prefix names and walk in key
            // order, collecting one more entry than a page holds.
            let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
            let base = if dir_part.is_empty() {
                String::new()
            } else {
                format!("{dir_part}/")
            };
            let mut walk = Walk {
                prefix: &prefix,
                after: opts.continuation.as_deref().unwrap_or(""),
                roll_dirs: opts.delimiter == Some('/'),
                cap: opts.limit.saturating_add(1),
                out: Vec::new(),
            };
            match walk.dir(&root.join(dir_part), &base) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ListPage::default()),
                Err(e) => return Err(this_err(&prefix, e)),
            }
            let keys = walk.out.iter().map(|(k, s)| (k.as_str(), *s));
            Ok(page_from_sorted(keys, &prefix, &opts))
        })
        .await
    }

    async fn get_chunks(
        &self,
        key: &str,
        range: Option<ByteRange>,
        sink: ChunkSink<'_>,
    ) -> StoreResult<GetOutcome> {
        get_in_ranges(self, key, range, sink).await
    }

    async fn put_multipart(
        &self,
        key: &str,
        plan: PartPlan<'_>,
        part: PartSource<'_>,
    ) -> StoreResult<u64> {
        let (size, part_size) = (plan.size, plan.part_size);
        let path = self.path(key)?;
        let (k, e2, fds) = (key.to_string(), self.err_fn(), self.fds.clone());
        let file = self
            .run(move |_| {
                // Sized up front, without truncating to zero first (see
                // the module docs on PUT).
                let f = with_fds(fds.as_deref(), || open_for_put(&path)).map_err(|e| e2(&k, e))?;
                f.set_len(size).map_err(|e| e2(&k, e))?;
                Ok(Arc::new(f))
            })
            .await?;
        // Parts are made here and written one at a time, so only one part
        // is in memory.
        let part_size = part_size.max(1);
        let (mut offset, mut parts) = (0, 0);
        while offset < size {
            let len = part_size.min(size - offset);
            let data = part(offset, len);
            let start = Mono::now();
            let (f, k, err) = (file.clone(), key.to_string(), self.err_fn());
            self.run(move |_| f.write_all_at(&data, offset).map_err(|e| err(&k, e)))
                .await?;
            plan.done(offset, len, start);
            offset += len;
            parts += 1;
            // Writes run inline on the runtime thread: between parts, the
            // thread's other workers (a checkpoint's other ranks) get their
            // turn, so uploads started together progress together.
            if offset < size {
                tokio::task::yield_now().await;
            }
        }
        Ok(parts.max(1))
    }

    async fn mkdir(&self, path: &str) -> StoreResult<()> {
        let p = self.path(path)?;
        let (key, this_err) = (path.to_string(), self.err_fn());
        self.blocking(move || fs::create_dir_all(&p).map_err(|e| this_err(&key, e)))
            .await
    }

    async fn rmdir(&self, path: &str) -> StoreResult<()> {
        let p = self.path(path)?;
        let (key, this_err) = (path.to_string(), self.err_fn());
        self.blocking(move || fs::remove_dir(&p).map_err(|e| this_err(&key, e)))
            .await
    }

    fn stage_begins(&self, removes_objects: bool) {
        if let Some(fds) = &self.fds {
            fds.stage_begins(removes_objects);
        }
    }
}

/// The file calls of a GET of `key` (checked already) under `root`, run
/// as `exec` says.
fn get_file(
    fds: Option<&OpenFiles>,
    root: &Path,
    uri: &str,
    key: &str,
    opts: &GetOptions,
    exec: Exec,
) -> StoreResult<GetOutcome> {
    let err = |e: io::Error| StoreError::new(class_of(&e), uri, format!("`{key}`: {e}"));
    let (reader, offset, len) = open_span(fds, root, uri, key, opts)?;
    let file = reader.file.file();
    let mut first_byte = None;
    if opts.keep_data {
        // The bytes leave the store: read them into their own buffer,
        // exactly sized, with no second copy.
        let mut kept = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let total = read_span(file, &mut kept, offset, len, exec, &mut first_byte).map_err(err)?;
        kept.truncate(total as usize);
        return Ok(GetOutcome {
            bytes: total,
            first_byte,
            data: Some(Bytes::from(kept)),
        });
    }
    let total = with_scratch(len, |buf| {
        read_span(file, buf, offset, len, exec, &mut first_byte)
    })
    .map_err(err)?;
    unkept_outcome(total, first_byte, &reader, opts, uri, key)
}

/// The outcome of a GET of `key` whose `total` bytes were read and not
/// kept. A range of which nothing was read is past the end (an error) or
/// of an empty object: the file's size tells. Shared by both engines.
fn unkept_outcome(
    total: u64,
    first_byte: Option<Mono>,
    reader: &Reader,
    opts: &GetOptions,
    uri: &str,
    key: &str,
) -> StoreResult<GetOutcome> {
    if let (0, Some(range)) = (total, opts.range) {
        let size = reader
            .size()
            .map_err(|e| StoreError::new(class_of(&e), uri, format!("`{key}`: {e}")))?;
        clamp_range(range, size, uri, key)?;
    }
    Ok(GetOutcome {
        bytes: total,
        first_byte,
        data: None,
    })
}

/// Opens (or reuses) the file of a GET of `key` and works out the span to
/// read, `(reader, offset, len)`, giving the file the fadvise hint the
/// span wants. Shared by both engines.
fn open_span(
    fds: Option<&OpenFiles>,
    root: &Path,
    uri: &str,
    key: &str,
    opts: &GetOptions,
) -> StoreResult<(Reader, u64, u64)> {
    let err = |e: io::Error| StoreError::new(class_of(&e), uri, format!("`{key}`: {e}"));
    // The path is only made (and the key checked) when the file is not
    // kept open already; no file of a bad key is ever kept.
    let open = || match key_is_safe(key) {
        true => fs::File::open(root.join(key)),
        false => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a relative path inside the root",
        )),
    };
    let reader = Reader::open(fds, key, open).map_err(err)?;
    // The span to read: a range as asked (clamped to the object later, by
    // the reads themselves), or the object's size. The hint is what a
    // freshly opened file would get.
    let (offset, len, advice) = match opts.range {
        Some(range) if opts.keep_data => {
            // The exact size is needed up front for the buffer.
            let size = reader.size().map_err(err)?;
            let (offset, len) = clamp_range(range, size, uri, key)?;
            (offset, len, libc::POSIX_FADV_NORMAL)
        }
        Some(range) if range.length <= READ_CHUNK_BYTES as u64 => {
            (range.offset, range.length, libc::POSIX_FADV_RANDOM)
        }
        Some(range) => (range.offset, range.length, libc::POSIX_FADV_NORMAL),
        None => {
            let size = reader.size().map_err(err)?;
            let advice = if size > DEFAULT_READAHEAD_BYTES {
                libc::POSIX_FADV_SEQUENTIAL
            } else {
                libc::POSIX_FADV_NORMAL
            };
            (0, size, advice)
        }
    };
    reader.file.advise(advice);
    Ok((reader, offset, len))
}

impl FileStore {
    /// An owned error builder for closures sent to the blocking pool.
    fn err_fn(&self) -> impl Fn(&str, io::Error) -> StoreError + Send + 'static {
        let uri = self.uri.clone();
        move |key, e| StoreError::new(class_of(&e), &*uri, format!("`{key}`: {e}"))
    }
}

#[cfg(test)]
mod tests;
