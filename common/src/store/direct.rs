//! `direct:///path`: objects as files under a root directory, read and
//! written with `O_DIRECT`, so the page cache is bypassed and every byte of
//! a GET or PUT goes to the device.
//!
//! Keys map to paths below the root exactly as in [`super::file`] (`a/b` is
//! `<root>/a/b`), so the same directory can be driven as `file://` and as
//! `direct://`. What differs is the data path:
//!
//! - **Alignment** comes from the file system, found once at open (see
//!   [`Alignment`] for which source wins).
//! - **Buffers** come from a bounded pool of aligned buffers allocated once
//!   at open, one per worker ([`OpenOptions::concurrency`]), so no op
//!   allocates (except a GET asked to hand its bytes back, which must).
//! - **Large I/O**: each syscall moves up to the I/O size (1 MiB by default,
//!   `direct:///path?io_size=4MiB` to change it), never one page at a time.
//! - **The final partial block** of an object whose size is not a multiple
//!   of the block is written padded with zeros to the block, and the file is
//!   then cut to its real size with `ftruncate` (see [`DirectWriter`]).
//! - **Refusal is an error**: a file system that refuses `O_DIRECT`
//!   (`EINVAL` on open), or that says through `statx` it cannot do direct
//!   I/O for the file, gives a `NotSupported` error naming the path; there is
//!   never a silent fallback to buffered I/O.
//! - **Syscalls in place**: on the agent's multi-thread runtime a worker
//!   does its own syscalls (`block_in_place`), as an fio psync job does,
//!   instead of handing each op to another thread (see
//!   `DirectStore::blocking`).
//! - **No fsync**: a PUT is done when its last `pwrite` returns, as with
//!   fio's defaults (`fsync=0`, `end_fsync=0`).
//!
//! Stat, delete, list and mkdir/rmdir move no data, so they are the
//! `file://` backend's own code, with errors re-labelled with this store's
//! endpoint.

use std::alloc::{self, Layout};
use std::fmt;
use std::fs;
use std::io::{self, Seek};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::file::FileStore;
use super::{
    ErrorClass, GetOptions, GetOutcome, ListOptions, ListPage, ObjectMeta, ObjectStore,
    OpenOptions, PartSource, StoreError, StoreResult, clamp_range,
};
use crate::plan::{format_size, parse_size};

/// Bytes moved by one syscall unless the URI says otherwise: large enough
/// that a device's bandwidth, not the syscall rate, is the limit, and what
/// fio users compare against with `bs=1M`.
pub const DEFAULT_IO_SIZE: usize = 1 << 20;

/// Largest I/O size accepted: a bound on pool memory per worker; beyond a
/// few MiB per syscall devices gain nothing.
pub const MAX_IO_SIZE: usize = 64 << 20;

/// Alignment assumed when neither `statx` nor sysfs can tell: 4 KiB is a
/// multiple of every common logical block size (512 and 4096), so it works
/// on any of them, at the price of over-aligning on 512-byte devices.
pub const FALLBACK_ALIGN: usize = 4096;

/// Largest alignment believed from `statx` or sysfs; anything larger (or
/// not a power of two) is taken as a bad report and the next source is
/// tried.
const MAX_ALIGN: usize = 1 << 16;

/// Buffers are aligned to at least a page even when the device asks for
/// less: it costs nothing and keeps each buffer's pages its own.
const BUFFER_ALIGN_FLOOR: usize = 4096;

/// Most buffers one store keeps: a bound on the worker count a store sizes
/// its pool for.
const MAX_POOL_BUFFERS: usize = 4096;

/// Most bytes one store's pool may hold. When workers × I/O size would be
/// more, the I/O size is lowered (to a multiple of the block) to fit.
const MAX_POOL_BYTES: u64 = 4 << 30;

/// Where the alignment of a store came from, in order of precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignSource {
    /// `statx(STATX_DIOALIGN)` (Linux ≥ 6.1 on ext4, xfs, btrfs, f2fs…):
    /// the file system's own answer for this file, which accounts for what
    /// the block device alone does not (stacked devices, encryption,
    /// file-system block constraints). It wins whenever it is reported.
    Statx,
    /// `/sys/dev/block/<major>:<minor>/queue/logical_block_size` of the
    /// device holding the root (`st_dev`), for kernels or file systems
    /// without `STATX_DIOALIGN`.
    SysfsLogicalBlock,
    /// Neither could tell (e.g. NFS, FUSE): [`FALLBACK_ALIGN`].
    Fallback,
}

impl AlignSource {
    pub fn name(self) -> &'static str {
        match self {
            AlignSource::Statx => "statx",
            AlignSource::SysfsLogicalBlock => "sysfs logical_block_size",
            AlignSource::Fallback => "fallback",
        }
    }
}

/// The alignment direct I/O needs on this store's file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alignment {
    /// File offsets and lengths of every read and write are multiples of
    /// this (the "block").
    pub offset: usize,
    /// Buffer addresses are multiples of this.
    pub memory: usize,
    pub source: AlignSource,
}

/// How a [`DirectStore`] is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectOptions {
    /// Bytes per syscall; rounded up to a multiple of the block.
    pub io_size: usize,
    /// Buffers in the pool: one per worker, so a worker never waits for
    /// one. More ops than this at once wait (asynchronously) for a buffer.
    pub buffers: usize,
}

impl Default for DirectOptions {
    fn default() -> Self {
        DirectOptions {
            io_size: DEFAULT_IO_SIZE,
            buffers: OpenOptions::default().concurrency as usize,
        }
    }
}

/// A directory of files as an object store, with `O_DIRECT` I/O.
#[derive(Debug)]
pub struct DirectStore {
    root: PathBuf,
    uri: String,
    align: Alignment,
    io_size: usize,
    pool: Arc<Pool>,
    /// Stat, delete, list, mkdir and rmdir move no data: the file store
    /// does them on the same root.
    meta: FileStore,
}

impl DirectStore {
    /// Opens the store for the part of a `direct://` URI after the scheme:
    /// an absolute root path, optionally followed by `?io_size=<size>`.
    /// The pool gets one buffer per worker of `opts.concurrency`.
    pub fn open_uri(rest: &str, opts: &OpenOptions) -> StoreResult<DirectStore> {
        let uri = format!("direct://{rest}");
        let (root, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let mut dopts = DirectOptions {
            io_size: DEFAULT_IO_SIZE,
            buffers: opts.concurrency.max(1) as usize,
        };
        for param in query.into_iter().flat_map(|q| q.split('&')) {
            let bad = |m: String| StoreError::new(ErrorClass::Other, &uri, m);
            match param.split_once('=') {
                Some(("io_size", v)) => {
                    let n = parse_size(v).map_err(|e| bad(format!("invalid `io_size`: {e}")))?;
                    dopts.io_size = usize::try_from(n).unwrap_or(usize::MAX);
                }
                _ => {
                    return Err(bad(format!(
                        "unknown parameter `{param}`; the only one is `io_size=<size>` \
                         (e.g. direct:///mnt/x?io_size=4MiB)"
                    )));
                }
            }
        }
        Self::build(root, uri, &dopts)
    }

    /// A store rooted at `root` (made if missing). Fails with class
    /// `NotSupported` when the file system refuses `O_DIRECT`.
    pub fn new(root: &str, opts: &DirectOptions) -> StoreResult<DirectStore> {
        Self::build(root, format!("direct://{root}"), opts)
    }

    fn build(root: &str, uri: String, opts: &DirectOptions) -> StoreResult<DirectStore> {
        if opts.io_size == 0 || opts.io_size > MAX_IO_SIZE {
            return Err(StoreError::new(
                ErrorClass::Other,
                &uri,
                format!(
                    "io_size {} is out of range: it must be between 1 byte and {}",
                    opts.io_size,
                    format_size(MAX_IO_SIZE as u64)
                ),
            ));
        }
        if !root.starts_with('/') {
            return Err(StoreError::new(
                ErrorClass::Other,
                &uri,
                format!("`{root}` is not an absolute path"),
            ));
        }
        let meta = FileStore::new(root).map_err(|e| relabel(e, &uri))?;
        let align = probe(Path::new(root)).map_err(|p| p.into_error(&uri, root))?;
        let buffers = opts.buffers.clamp(1, MAX_POOL_BUFFERS);
        let io_size = fit_io_size(opts.io_size, align.offset, buffers);
        if io_size != round_up(opts.io_size, align.offset) {
            tracing::warn!(
                "{uri}: io_size lowered to {} so {buffers} buffers fit in {}",
                format_size(io_size as u64),
                format_size(MAX_POOL_BYTES)
            );
        }
        let buf_align = align.memory.max(align.offset).max(BUFFER_ALIGN_FLOOR);
        let pool = Pool::new(buffers, io_size, buf_align).ok_or_else(|| {
            StoreError::new(
                ErrorClass::Other,
                &uri,
                format!(
                    "cannot allocate {buffers} aligned buffers of {}",
                    format_size(io_size as u64)
                ),
            )
        })?;
        Ok(DirectStore {
            root: PathBuf::from(root),
            uri,
            align,
            io_size,
            pool: Arc::new(pool),
            meta,
        })
    }

    /// The alignment found at open, and where it came from.
    pub fn alignment(&self) -> Alignment {
        self.align
    }

    /// Bytes per syscall (a multiple of the block).
    pub fn io_size(&self) -> usize {
        self.io_size
    }

    /// Buffers in the pool.
    pub fn pool_buffers(&self) -> usize {
        self.pool.buffers
    }

    /// The path of `key`, refusing keys that would leave the root (the same
    /// rule as `file://`).
    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        let rel = Path::new(key);
        let safe = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(StoreError::new(
                ErrorClass::Other,
                &self.uri,
                format!("key `{key}` is not a relative path inside the root"),
            ));
        }
        Ok(self.root.join(rel))
    }

    /// Runs the blocking file calls of one op.
    ///
    /// On a multi-thread runtime (the agent's) they run in place with
    /// `block_in_place`: the runtime hands this thread's other tasks to
    /// another thread and the worker does its syscalls itself, as an fio
    /// psync job does. Handing each op to the blocking pool instead costs
    /// two thread wake-ups per op, which measured ~25% of the 4 KiB random
    /// read rate on a 2-CPU VM (29.5k vs 37k ops/s). The price: an op stuck
    /// in the kernel (a hard-mounted NFS server gone) holds its worker until
    /// it returns, and is then logged with its true latency. Elsewhere (a
    /// current-thread runtime, where `block_in_place` is not allowed) the
    /// blocking pool is used.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            return tokio::task::block_in_place(f);
        }
        tokio::task::spawn_blocking(f).await.map_err(|e| {
            StoreError::new(
                ErrorClass::Other,
                &self.uri,
                format!("I/O task failed: {e}"),
            )
        })?
    }

    /// A buffer from the pool; waits (without holding a thread) while all
    /// are in use.
    async fn buffer(&self) -> StoreResult<PoolBuf> {
        self.pool.take().await.ok_or_else(|| {
            StoreError::new(
                ErrorClass::Other,
                &self.uri,
                "buffer pool is closed or empty",
            )
        })
    }

    /// An owned error builder for closures sent to the blocking pool.
    fn err_fn(&self) -> impl Fn(&str, &Path, io::Error) -> StoreError + Send + 'static {
        let uri = self.uri.clone();
        move |key, path, e| io_error(&uri, key, path, &e)
    }

    /// Opens `path` for writing (made with its parent directories if
    /// missing) and readies a writer with `buf`.
    fn writer_for<E: Fn(&str, &Path, io::Error) -> StoreError>(
        path: &Path,
        buf: PoolBuf,
        block: usize,
        err: &E,
        key: &str,
    ) -> StoreResult<DirectWriter> {
        let file = match open_direct(path, true) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(|e| err(key, path, e))?;
                }
                open_direct(path, true).map_err(|e| err(key, path, e))?
            }
            Err(e) => return Err(err(key, path, e)),
        };
        let old_size = size_of(&file).map_err(|e| err(key, path, e))?;
        Ok(DirectWriter {
            file,
            buf,
            block,
            filled: 0,
            written: 0,
            old_size,
        })
    }
}

impl fmt::Display for DirectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// The file store's errors carry its `file://` endpoint; ours must say
/// `direct://`.
fn relabel(mut e: StoreError, uri: &str) -> StoreError {
    e.endpoint = uri.to_string();
    e
}

fn class_of(e: &io::Error) -> ErrorClass {
    match e.kind() {
        io::ErrorKind::NotFound => ErrorClass::NotFound,
        io::ErrorKind::PermissionDenied => ErrorClass::AccessDenied,
        io::ErrorKind::TimedOut => ErrorClass::Timeout,
        _ => ErrorClass::Other,
    }
}

/// The store error for an I/O error on `path`. `EINVAL` from an open with
/// `O_DIRECT` means the file system refuses direct I/O; that is said in so
/// many words, because the alternative a user might assume (buffered I/O
/// behind their back) is exactly what this backend never does.
fn io_error(uri: &str, key: &str, path: &Path, e: &io::Error) -> StoreError {
    if e.raw_os_error() == Some(libc::EINVAL) {
        return refused(uri, path);
    }
    StoreError::new(class_of(e), uri, format!("`{key}`: {e}"))
}

fn refused(uri: &str, path: &Path) -> StoreError {
    StoreError::new(
        ErrorClass::NotSupported,
        uri,
        format!(
            "O_DIRECT is refused by this file system: opening `{}` with O_DIRECT gave EINVAL; \
             use a directory on a local disk, or file:// for buffered I/O",
            path.display()
        ),
    )
}

/// Opens `path` with `O_DIRECT`: for reading, or for writing (created if
/// missing, never truncated here: a PUT overwrites in place and cuts the
/// file to size at the end, so blocks already allocated are reused, as an
/// fio write to an existing file does).
fn open_direct(path: &Path, write: bool) -> io::Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    if write {
        o.write(true).create(true).truncate(false).mode(0o644);
    } else {
        o.read(true);
    }
    o.custom_flags(libc::O_DIRECT | libc::O_CLOEXEC).open(path)
}

/// Reads at `offset` until `buf` is full or the file ends, retrying
/// interrupted calls. Returns the bytes read. A direct read comes back
/// short only at the end of the file, where it stops at the file's size
/// (not a block boundary); a short read that ends on a block boundary is
/// continued, since going on from there is still aligned.
fn read_full_at(file: &fs::File, buf: &mut [u8], offset: u64, block: usize) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                if !done.is_multiple_of(block) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The size of the open `file`, by `lseek(SEEK_END)`: one call that reads
/// the inode's size, where `fstat` (`statx`) also asks the file system for
/// every other attribute and copies them out. Only `pread`/`pwrite` follow,
/// so the file position it moves is never used.
fn size_of(mut file: &fs::File) -> io::Result<u64> {
    file.seek(io::SeekFrom::End(0))
}

fn round_up(n: usize, block: usize) -> usize {
    n.div_ceil(block).saturating_mul(block)
}

/// The I/O size used: `wanted` rounded up to the block, lowered (but not
/// below one block) when `buffers` of it would pass [`MAX_POOL_BYTES`].
fn fit_io_size(wanted: usize, block: usize, buffers: usize) -> usize {
    let size = round_up(wanted, block).max(block);
    let cap = (MAX_POOL_BYTES / buffers.max(1) as u64) as usize;
    if size <= cap {
        size
    } else {
        (cap / block * block).max(block)
    }
}

/// The span of a GET: `len` bytes at `offset`, read through `buf` in
/// aligned pieces. An unaligned start is read from the block below it and
/// the bytes before `offset` dropped; the end is rounded up to the block,
/// and a file that ends inside that block just gives a short last read.
/// Returns the bytes of the span delivered.
fn read_span(
    file: &fs::File,
    buf: &mut [u8],
    block: usize,
    offset: u64,
    len: u64,
    mut keep: Option<&mut Vec<u8>>,
    first_byte: &mut Option<Instant>,
) -> io::Result<u64> {
    let end = offset.saturating_add(len);
    let mut pos = offset - offset % block as u64;
    let mut total = 0u64;
    while pos < end {
        let remaining = end - pos;
        let want = if remaining >= buf.len() as u64 {
            buf.len()
        } else {
            round_up(remaining as usize, block)
        };
        let n = read_full_at(file, &mut buf[..want], pos, block)?;
        first_byte.get_or_insert_with(Instant::now);
        let lo = offset.saturating_sub(pos) as usize;
        let hi = (end - pos).min(n as u64) as usize;
        if hi > lo {
            total += (hi - lo) as u64;
            if let Some(out) = keep.as_deref_mut() {
                out.extend_from_slice(&buf[lo..hi]);
            }
        }
        if n < want {
            break; // the file ended (or shrank under us)
        }
        pos += n as u64;
    }
    Ok(total)
}

/// Writes an object front to back through one aligned buffer.
///
/// The final partial block: the tail is zero-padded to a whole block and
/// written with `O_DIRECT` like the rest, then the file is cut to its real
/// size with `ftruncate`. The other way — reopening without `O_DIRECT` for
/// the last sub-block write — would put that tail in the page cache as a
/// dirty page, mixing buffered and direct I/O on one file (the kernel then
/// has to write back and invalidate that page around later direct I/O),
/// and would cost a second open per PUT. Padding keeps every data byte on
/// the direct path; the `ftruncate` is a metadata-only call.
struct DirectWriter {
    file: fs::File,
    buf: PoolBuf,
    block: usize,
    /// Bytes waiting in `buf`.
    filled: usize,
    /// Bytes already written to the file (a multiple of the buffer size).
    written: u64,
    /// Size of the file before this PUT: a longer old file must be cut.
    old_size: u64,
}

impl DirectWriter {
    fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let buf = self.buf.as_mut_slice();
            let n = (buf.len() - self.filled).min(data.len());
            buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == buf.len() {
                self.file.write_all_at(buf, self.written)?;
                self.written += buf.len() as u64;
                self.filled = 0;
            }
        }
        Ok(())
    }

    /// Writes the padded tail and sets the file's size; returns the
    /// object's size.
    fn finish(mut self) -> io::Result<u64> {
        let size = self.written + self.filled as u64;
        if self.filled > 0 {
            let padded = round_up(self.filled, self.block);
            let buf = self.buf.as_mut_slice();
            buf[self.filled..padded].fill(0);
            self.file.write_all_at(&buf[..padded], self.written)?;
        }
        if !size.is_multiple_of(self.block as u64) || self.old_size > size {
            self.file.set_len(size)?;
        }
        Ok(size)
    }
}

#[async_trait]
impl ObjectStore for DirectStore {
    fn endpoint(&self) -> &str {
        &self.uri
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let path = self.path(key)?;
        let buf = self.buffer().await?;
        let (key, err, block) = (key.to_string(), self.err_fn(), self.align.offset);
        self.blocking(move || {
            let mut w = Self::writer_for(&path, buf, block, &err, &key)?;
            w.push(&data).map_err(|e| err(&key, &path, e))?;
            w.finish().map_err(|e| err(&key, &path, e))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        let path = self.path(key)?;
        let mut buf = self.buffer().await?;
        let (key, uri, err, opts) = (key.to_string(), self.uri.clone(), self.err_fn(), *opts);
        let block = self.align.offset;
        self.blocking(move || {
            let file = open_direct(&path, false).map_err(|e| err(&key, &path, e))?;
            // A range whose bytes are dropped needs no size: the reads stop
            // at the end of the file by themselves, and only a range that
            // comes back empty is checked (below). That saves a syscall on
            // every 4 KiB random read.
            let (offset, len) = match opts.range {
                Some(range) if !opts.keep_data => (range.offset, range.length),
                Some(range) => {
                    let size = size_of(&file).map_err(|e| err(&key, &path, e))?;
                    clamp_range(range, size, &uri, &key)?
                }
                None => (0, size_of(&file).map_err(|e| err(&key, &path, e))?),
            };
            // Only a GET that must hand its bytes back allocates: the data
            // leaves the store, so it cannot live in a pooled buffer.
            let mut kept = opts
                .keep_data
                .then(|| Vec::with_capacity(usize::try_from(len).unwrap_or(0)));
            let mut first_byte = None;
            let bytes = read_span(
                &file,
                buf.as_mut_slice(),
                block,
                offset,
                len,
                kept.as_mut(),
                &mut first_byte,
            )
            .map_err(|e| err(&key, &path, e))?;
            if let (0, Some(range)) = (bytes, opts.range) {
                // Nothing there: past the end (an error) or an empty object.
                let size = size_of(&file).map_err(|e| err(&key, &path, e))?;
                clamp_range(range, size, &uri, &key)?;
            }
            Ok(GetOutcome {
                bytes,
                first_byte,
                data: kept.map(Bytes::from),
            })
        })
        .await
    }

    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.meta.stat(key).await.map_err(|e| relabel(e, &self.uri))
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.meta
            .delete(key)
            .await
            .map_err(|e| relabel(e, &self.uri))
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        self.meta
            .list(prefix, opts)
            .await
            .map_err(|e| relabel(e, &self.uri))
    }

    /// Streams the parts through one pooled buffer: parts of any size (not
    /// only multiples of the block) are gathered into aligned writes of the
    /// I/O size, so only one part and one buffer are in memory.
    async fn put_multipart(
        &self,
        key: &str,
        size: u64,
        part_size: u64,
        part: PartSource<'_>,
    ) -> StoreResult<u64> {
        let path = Arc::new(self.path(key)?);
        let buf = self.buffer().await?;
        let (k, err, p) = (key.to_string(), self.err_fn(), path.clone());
        let block = self.align.offset;
        let mut writer = self
            .blocking(move || Self::writer_for(&p, buf, block, &err, &k))
            .await?;
        let part_size = part_size.max(1);
        let (mut offset, mut parts) = (0, 0);
        while offset < size {
            let len = part_size.min(size - offset);
            let data = part(offset, len);
            let (k, err, p) = (key.to_string(), self.err_fn(), path.clone());
            writer = self
                .blocking(move || {
                    writer.push(&data).map_err(|e| err(&k, &p, e))?;
                    Ok(writer)
                })
                .await?;
            offset += len;
            parts += 1;
        }
        let (k, err, p) = (key.to_string(), self.err_fn(), path.clone());
        self.blocking(move || writer.finish().map_err(|e| err(&k, &p, e)))
            .await?;
        Ok(parts.max(1))
    }

    async fn mkdir(&self, path: &str) -> StoreResult<()> {
        self.meta
            .mkdir(path)
            .await
            .map_err(|e| relabel(e, &self.uri))
    }

    async fn rmdir(&self, path: &str) -> StoreResult<()> {
        self.meta
            .rmdir(path)
            .await
            .map_err(|e| relabel(e, &self.uri))
    }
}

/// Why [`probe`] failed.
#[derive(Debug)]
enum ProbeError {
    /// `O_DIRECT` refused (`EINVAL`) on this file.
    Refused(PathBuf),
    /// `statx` says the file system cannot do direct I/O on this file
    /// (`STATX_DIOALIGN` reported with a zero alignment): some (ext4 with
    /// `data=journal`, for one) accept `O_DIRECT` and quietly do buffered
    /// I/O instead, which must not pass for direct I/O.
    NoDio(PathBuf),
    Io(PathBuf, io::Error),
}

impl ProbeError {
    fn into_error(self, uri: &str, root: &str) -> StoreError {
        match self {
            ProbeError::Refused(p) => refused(uri, &p),
            ProbeError::NoDio(p) => StoreError::new(
                ErrorClass::NotSupported,
                uri,
                format!(
                    "O_DIRECT is refused by this file system: statx reports no direct I/O \
                     support for `{}` (the kernel would do buffered I/O instead); use a \
                     directory on a local disk, or file:// for buffered I/O",
                    p.display()
                ),
            ),
            ProbeError::Io(p, e) => StoreError::new(
                class_of(&e),
                uri,
                format!(
                    "cannot probe O_DIRECT under `{root}` with `{}`: {e}",
                    p.display()
                ),
            ),
        }
    }
}

/// Finds out, once at open, whether files under `root` take `O_DIRECT`
/// and with what alignment. Uses an unnamed `O_TMPFILE` so that nothing
/// appears in listings; where the file system has no `O_TMPFILE`, a named
/// probe file that is removed at once.
fn probe(root: &Path) -> Result<Alignment, ProbeError> {
    let tmp = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_DIRECT | libc::O_CLOEXEC)
        .open(root);
    let file = match tmp {
        Ok(f) => f,
        // EINVAL can be O_DIRECT refused or (on some kernels) O_TMPFILE not
        // known; EISDIR / EOPNOTSUPP are "no O_TMPFILE". A named file tells
        // them apart.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL | libc::EISDIR | libc::EOPNOTSUPP)
            ) =>
        {
            return probe_named(root);
        }
        Err(e) => return Err(ProbeError::Io(root.to_path_buf(), e)),
    };
    alignment_of(&file, root)
}

fn probe_named(root: &Path) -> Result<Alignment, ProbeError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = root.join(format!(
        ".chorus-direct-probe-{}-{nanos}",
        std::process::id()
    ));
    let opened = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(&path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Some file systems create the file before refusing the flag.
            let _ = fs::remove_file(&path);
            return Err(ProbeError::Refused(path));
        }
        Err(e) => return Err(ProbeError::Io(path, e)),
    };
    let result = alignment_of(&file, &path);
    let _ = fs::remove_file(&path);
    result
}

fn plausible(align: u32) -> Option<usize> {
    let a = align as usize;
    (a > 0 && a.is_power_of_two() && a <= MAX_ALIGN).then_some(a)
}

/// The alignment for direct I/O on `file` (which `path` names, for
/// messages). Precedence: `statx` > sysfs logical block size > 4096; see
/// [`AlignSource`] for why.
fn alignment_of(file: &fs::File, path: &Path) -> Result<Alignment, ProbeError> {
    // SAFETY: statx is plain data; all-zero is a valid value of it.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for the call, the path is a valid empty C
    // string (with AT_EMPTY_PATH the fd itself is examined), and `stx` is
    // a live, writable statx buffer.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0 {
        if stx.stx_dio_offset_align == 0 {
            return Err(ProbeError::NoDio(path.to_path_buf()));
        }
        if let (Some(offset), Some(memory)) = (
            plausible(stx.stx_dio_offset_align),
            plausible(stx.stx_dio_mem_align),
        ) {
            return Ok(Alignment {
                offset,
                memory,
                source: AlignSource::Statx,
            });
        }
    }
    let dev = file
        .metadata()
        .map_err(|e| ProbeError::Io(path.to_path_buf(), e))?
        .dev();
    if let Some(lbs) = sysfs_logical_block_size(libc::major(dev), libc::minor(dev)) {
        return Ok(Alignment {
            offset: lbs,
            memory: lbs,
            source: AlignSource::SysfsLogicalBlock,
        });
    }
    Ok(Alignment {
        offset: FALLBACK_ALIGN,
        memory: FALLBACK_ALIGN,
        source: AlignSource::Fallback,
    })
}

/// The logical block size of block device `major:minor`. A partition has
/// no `queue/` of its own; its disk (the parent directory) does.
fn sysfs_logical_block_size(major: u32, minor: u32) -> Option<usize> {
    let base = format!("/sys/dev/block/{major}:{minor}");
    ["queue/logical_block_size", "../queue/logical_block_size"]
        .iter()
        .find_map(|rel| fs::read_to_string(format!("{base}/{rel}")).ok())
        .and_then(|s| s.trim().parse::<u32>().ok())
        .and_then(plausible)
}

/// One aligned heap buffer, owned.
struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the buffer is plain owned memory; whoever owns the AlignedBuf is
// the only one that can reach it.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// `len` bytes aligned to `align`, every page touched (zeroed) now so
    /// that no op pays first-touch page faults. `None` when the layout is
    /// invalid or memory is short.
    fn new(len: usize, align: usize) -> Option<AlignedBuf> {
        let layout = Layout::from_size_align(len, align).ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc::alloc(layout) })?;
        // SAFETY: `ptr` points to `len` writable bytes just allocated.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
        Some(AlignedBuf { ptr, layout })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` holds `layout.size()` initialised bytes that only
        // this (exclusively borrowed) owner can reach.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout, freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.layout.size())
    }
}

/// A fixed set of aligned buffers. A semaphore with one permit per buffer
/// makes takers wait asynchronously when all are out, so a buffer is always
/// there for a permit holder.
#[derive(Debug)]
struct Pool {
    free: Mutex<Vec<AlignedBuf>>,
    permits: Arc<Semaphore>,
    buffers: usize,
}

impl Pool {
    fn new(buffers: usize, len: usize, align: usize) -> Option<Pool> {
        let free = (0..buffers)
            .map(|_| AlignedBuf::new(len, align))
            .collect::<Option<Vec<_>>>()?;
        Some(Pool {
            free: Mutex::new(free),
            permits: Arc::new(Semaphore::new(buffers)),
            buffers,
        })
    }

    async fn take(self: &Arc<Self>) -> Option<PoolBuf> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let buf = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()?;
        Some(PoolBuf {
            buf: Some(buf),
            pool: self.clone(),
            _permit: permit,
        })
    }
}

/// A buffer lent by the pool; goes back on drop (before its permit does,
/// since `Drop::drop` runs before the fields are dropped).
#[derive(Debug)]
struct PoolBuf {
    buf: Option<AlignedBuf>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl PoolBuf {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        match self.buf.as_mut() {
            Some(b) => b.as_mut_slice(),
            None => &mut [],
        }
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool
                .free
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ByteRange;

    /// Places tried for test directories, in order: an explicit one, the
    /// build's target directory, then the usual disk-backed temp dir. /tmp
    /// comes last because it is often tmpfs.
    fn candidates() -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Ok(d) = std::env::var("CHORUS_DIRECT_TEST_DIR") {
            v.push(PathBuf::from(d));
        }
        v.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/direct-tests"));
        v.push(PathBuf::from("/var/tmp"));
        v.push(std::env::temp_dir());
        v
    }

    /// A temp dir where O_DIRECT works, and a store on it. Fails (never
    /// skips) when there is none, saying what each place answered.
    fn capable(opts: &DirectOptions) -> (tempfile::TempDir, DirectStore) {
        let mut tried = Vec::new();
        for base in candidates() {
            if let Err(e) = fs::create_dir_all(&base) {
                tried.push(format!("{}: {e}", base.display()));
                continue;
            }
            let dir = match tempfile::tempdir_in(&base) {
                Ok(d) => d,
                Err(e) => {
                    tried.push(format!("{}: {e}", base.display()));
                    continue;
                }
            };
            match DirectStore::new(dir.path().to_str().unwrap_or("/nonexistent"), opts) {
                Ok(s) => {
                    // Said, not hidden: a place passed over is visible with
                    // --nocapture.
                    for t in &tried {
                        eprintln!("direct tests: passed over {t}");
                    }
                    return (dir, s);
                }
                Err(e) => tried.push(format!("{}: {e}", base.display())),
            }
        }
        panic!(
            "no O_DIRECT-capable directory for the direct:// tests; set \
             CHORUS_DIRECT_TEST_DIR to a directory on a local disk. Tried:\n  {}",
            tried.join("\n  ")
        );
    }

    fn pattern(offset: u64, len: u64) -> Vec<u8> {
        (offset..offset + len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn conformance() {
        let (_dir, store) = capable(&DirectOptions::default());
        super::super::conformance::run_all(&store, "p/").await;
    }

    /// A small I/O size, so objects of a few KiB already span many
    /// syscalls and every boundary case is cheap to reach.
    fn small() -> DirectOptions {
        DirectOptions {
            io_size: 8192,
            buffers: 2,
        }
    }

    #[tokio::test]
    async fn alignment_is_found_and_sane() {
        let (_dir, store) = capable(&DirectOptions::default());
        let a = store.alignment();
        eprintln!("alignment: {a:?}");
        assert!(a.offset.is_power_of_two() && a.offset <= MAX_ALIGN, "{a:?}");
        assert!(a.memory.is_power_of_two() && a.memory <= MAX_ALIGN, "{a:?}");
        assert_eq!(store.io_size(), DEFAULT_IO_SIZE);
        assert_eq!(store.io_size() % a.offset, 0);
        assert_eq!(store.pool_buffers(), 4);
    }

    #[tokio::test]
    async fn partial_tails_round_trip_with_exact_sizes() {
        let (dir, store) = capable(&small());
        let b = store.alignment().offset as u64;
        let io = store.io_size() as u64;
        let sizes = [0, 1, b - 1, b, b + 1, io - 1, io, io + 1, 3 * io + 517];
        for size in sizes {
            let key = format!("t/{size}");
            store
                .put(&key, Bytes::from(pattern(0, size)))
                .await
                .unwrap();
            let on_disk = fs::metadata(dir.path().join(&key)).unwrap().len();
            assert_eq!(on_disk, size, "file length after PUT of {size}");
            assert_eq!(store.stat(&key).await.unwrap().size, size);
            let g = store.get(&key, &GetOptions::keep()).await.unwrap();
            assert_eq!(g.bytes, size);
            assert!(g.data.unwrap() == pattern(0, size), "content of {size}");
        }
    }

    #[tokio::test]
    async fn overwrite_shorter_then_longer() {
        let (_dir, store) = capable(&small());
        for size in [50_000u64, 700, 20_000, 8192, 3] {
            store
                .put("o", Bytes::from(pattern(size, size)))
                .await
                .unwrap();
            let g = store.get("o", &GetOptions::keep()).await.unwrap();
            assert!(g.data.unwrap() == pattern(size, size), "size {size}");
        }
    }

    #[tokio::test]
    async fn unaligned_ranges_across_chunks() {
        let (_dir, store) = capable(&small());
        let size = 5 * store.io_size() as u64 + 333;
        store.put("r", Bytes::from(pattern(0, size))).await.unwrap();
        let io = store.io_size() as u64;
        let cases = [
            (0, 1),
            (1, 1),
            (511, 2),
            (4095, 4098),
            (io - 1, 2),
            (io + 7, 3 * io),
            (size - 1, 1),
            (size - 400, 10_000),
            (12_345, u64::MAX),
        ];
        for (offset, length) in cases {
            let opts = GetOptions {
                range: Some(ByteRange { offset, length }),
                keep_data: true,
            };
            let g = store.get("r", &opts).await.unwrap();
            let want = length.min(size - offset);
            assert_eq!(g.bytes, want, "{offset}+{length}");
            assert!(
                g.data.unwrap() == pattern(offset, want),
                "{offset}+{length}"
            );
            // Without keep_data the count is the same.
            let opts = GetOptions {
                keep_data: false,
                ..opts
            };
            assert_eq!(store.get("r", &opts).await.unwrap().bytes, want);
        }
    }

    #[tokio::test]
    async fn multipart_with_unaligned_parts() {
        let (_dir, store) = capable(&small());
        let size = 50_001u64;
        let part = |offset: u64, len: u64| Bytes::from(pattern(offset, len));
        let parts = store.put_multipart("mp", size, 1000, &part).await.unwrap();
        assert_eq!(parts, 51);
        let g = store.get("mp", &GetOptions::keep()).await.unwrap();
        assert!(g.data.unwrap() == pattern(0, size));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn more_ops_than_buffers_wait_for_one() {
        let (_dir, store) = capable(&small());
        let store = Arc::new(store);
        store
            .put("c", Bytes::from(pattern(0, 30_000)))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move {
                    if i % 4 == 0 {
                        s.put(&format!("w/{i}"), Bytes::from(pattern(i, 9000)))
                            .await
                            .map(|()| 9000)
                    } else {
                        s.get("c", &GetOptions::whole()).await.map(|g| g.bytes)
                    }
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let n = t.await.unwrap().unwrap();
            assert_eq!(n, if i % 4 == 0 { 9000 } else { 30_000 });
        }
        assert_eq!(store.pool.free.lock().unwrap().len(), 2, "buffers returned");
    }

    #[tokio::test]
    async fn files_are_opened_with_o_direct() {
        let (dir, _store) = capable(&DirectOptions::default());
        let path = dir.path().join("flag");
        for write in [true, false] {
            let f = open_direct(&path, write).unwrap();
            // SAFETY: F_GETFL on an open fd reads its flags.
            let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
            assert!(flags & libc::O_DIRECT != 0, "write={write}: {flags:#x}");
        }
    }

    #[test]
    fn einval_on_open_is_not_supported_naming_the_path() {
        let e = io_error(
            "direct:///mnt/x",
            "k",
            Path::new("/mnt/x/k"),
            &io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert_eq!(e.class, ErrorClass::NotSupported);
        assert!(
            e.message
                .contains("O_DIRECT is refused by this file system"),
            "{e}"
        );
        assert!(e.message.contains("/mnt/x/k"), "{e}");
        let e = ProbeError::NoDio(PathBuf::from("/mnt/y")).into_error("direct:///mnt/y", "/mnt/y");
        assert_eq!(e.class, ErrorClass::NotSupported);
        assert!(e.message.contains("/mnt/y"), "{e}");
    }

    #[tokio::test]
    async fn uri_options_are_checked() {
        let (dir, _s) = capable(&DirectOptions::default());
        let root = dir.path().to_str().unwrap();
        let opts = OpenOptions {
            concurrency: 3,
            ..Default::default()
        };
        let s = DirectStore::open_uri(&format!("{root}?io_size=4MiB"), &opts).unwrap();
        assert_eq!((s.io_size(), s.pool_buffers()), (4 << 20, 3));
        assert_eq!(s.to_string(), format!("direct://{root}?io_size=4MiB"));
        for bad in ["?io_size=0", "?io_size=1GiB", "?io_size=x", "?bs=1M", "?"] {
            let e = DirectStore::open_uri(&format!("{root}{bad}"), &opts).unwrap_err();
            assert_eq!(e.class, ErrorClass::Other, "{bad}: {e}");
        }
        // Rounded up to the block.
        let s = DirectStore::open_uri(&format!("{root}?io_size=1000"), &opts).unwrap();
        assert_eq!(s.io_size() % s.alignment().offset, 0);
        assert!(DirectStore::open_uri("relative", &opts).is_err());
    }

    #[test]
    fn io_size_is_fitted_to_the_pool_bound() {
        assert_eq!(fit_io_size(1 << 20, 4096, 4), 1 << 20);
        assert_eq!(fit_io_size(1000, 512, 4), 1024);
        let big = fit_io_size(MAX_IO_SIZE, 4096, MAX_POOL_BUFFERS);
        assert!(big as u64 * MAX_POOL_BUFFERS as u64 <= MAX_POOL_BYTES);
        assert_eq!(big % 4096, 0);
    }

    #[tokio::test]
    async fn keys_outside_root_are_refused() {
        let (_dir, store) = capable(&DirectOptions::default());
        for key in ["../x", "/etc/passwd", "a/../../b", ""] {
            let e = store.put(key, Bytes::new()).await.unwrap_err();
            assert!(e.message.contains("not a relative path"), "{key}: {e}");
            assert!(e.endpoint.starts_with("direct://"), "{e}");
        }
    }
}
