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
//! - **Open files are reused** by GETs, as by `file://` (a bounded cache
//!   of `O_DIRECT` read descriptors checked with one `fstat` per reuse; see
//!   "Open files" in [`super::file`]); `open_files=N` in the URI sets the
//!   bound, `open_files=0` opens a file for every GET.
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

use std::fmt;
use std::fs;
use std::io::{self, Seek};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::file::{
    DEFAULT_OPEN_FILES, FileStore, OpenFiles, Reader, class_of, open_files_for, parse_open_files,
    with_fds,
};
use super::uring::{Engine, parse_engine, resolve};
use super::{
    ByteRange, ChunkSink, ErrorClass, GetOptions, GetOutcome, ListOptions, ListPage, ObjectMeta,
    ObjectStore, OpenOptions, PartPlan, PartSource, StoreError, StoreResult, clamp_range,
    get_in_ranges,
};
use crate::clock::Mono;
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

mod align;
mod pool;
mod ring;
#[cfg(test)]
mod tests;

use align::*;
pub use align::{AlignSource, Alignment};
use pool::*;
/// How a [`DirectStore`] is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectOptions {
    /// Bytes per syscall; rounded up to a multiple of the block.
    pub io_size: usize,
    /// Buffers in the pool: one per worker, so a worker never waits for
    /// one. More ops than this at once wait (asynchronously) for a buffer.
    pub buffers: usize,
    /// Most files GETs keep open (0: every GET opens its file); see "Open
    /// files" in [`super::file`].
    pub open_files: usize,
}

impl Default for DirectOptions {
    fn default() -> Self {
        DirectOptions {
            io_size: DEFAULT_IO_SIZE,
            buffers: OpenOptions::default().concurrency as usize,
            open_files: DEFAULT_OPEN_FILES,
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
    /// Files GETs keep open (`O_DIRECT` read descriptors); `None` when
    /// every GET opens its file.
    fds: Option<Arc<OpenFiles>>,
    /// Stat, delete, list, mkdir and rmdir move no data: the file store
    /// does them on the same root.
    meta: FileStore,
    /// GET and PUT data go through this thread's io_uring ([`ring`]), as
    /// `engine=` and [`super::uring::resolve`] decided at open.
    uring: bool,
}

impl DirectStore {
    /// Opens the store for the part of a `direct://` URI after the scheme:
    /// an absolute root path, optionally followed by `?io_size=<size>` and
    /// `open_files=<n>` (joined by `&`). The pool gets one buffer per worker
    /// of `opts.concurrency`.
    pub fn open_uri(rest: &str, opts: &OpenOptions) -> StoreResult<DirectStore> {
        let uri = format!("direct://{rest}");
        let (root, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let mut dopts = DirectOptions {
            io_size: DEFAULT_IO_SIZE,
            buffers: opts.concurrency.max(1) as usize,
            open_files: DEFAULT_OPEN_FILES,
        };
        let mut engine = Engine::DEFAULT;
        for param in query.into_iter().flat_map(|q| q.split('&')) {
            let bad = |m: String| StoreError::new(ErrorClass::Other, &uri, m);
            match param.split_once('=') {
                Some(("io_size", v)) => {
                    let n = parse_size(v).map_err(|e| bad(format!("invalid `io_size`: {e}")))?;
                    dopts.io_size = usize::try_from(n).unwrap_or(usize::MAX);
                }
                Some(("open_files", v)) => dopts.open_files = parse_open_files(v, &uri)?,
                Some(("engine", v)) => engine = parse_engine(v, &uri)?,
                _ => {
                    return Err(bad(format!(
                        "unknown parameter `{param}`; the ones here are `io_size=<size>`, \
                         `open_files=<n>` and `engine=psync|io_uring|auto` \
                         (e.g. direct:///mnt/x?io_size=4MiB&open_files=0&engine=io_uring)"
                    )));
                }
            }
        }
        let mut store = Self::build(root, uri, &dopts)?;
        store.uring = resolve(engine, &store.uri)?;
        Ok(store)
    }

    /// The engine this store's GETs and PUTs use: `psync` or `io_uring`.
    pub fn engine(&self) -> &'static str {
        if self.uring { "io_uring" } else { "psync" }
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
        // Its GETs are never used, so it keeps no files open.
        let meta = FileStore::build(root, uri.clone(), 0)?;
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
            fds: open_files_for(meta.is_local(), opts.open_files),
            meta,
            uring: false,
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

    /// Most files this store's GETs keep open (0 when every GET opens its
    /// file).
    pub fn open_files(&self) -> usize {
        self.fds.as_ref().map_or(0, |c| c.capacity())
    }

    /// The path of `key`, refusing keys that would leave the root (the same
    /// rule as `file://`).
    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        super::file::key_path(&self.root, &self.uri, key)
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
        if crate::pools::on_multi_thread_runtime() {
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

    /// What a PUT's writer needs from the store, owned, for the blocking
    /// closure.
    fn write_setup(&self) -> WriteSetup {
        WriteSetup {
            block: self.align.offset,
            mem_align: self.align.memory.max(self.align.offset),
            io_size: self.io_size,
            fds: self.fds.clone(),
        }
    }
}

/// See [`DirectStore::write_setup`].
struct WriteSetup {
    block: usize,
    /// Alignment of memory a write may come straight from.
    mem_align: usize,
    io_size: usize,
    /// Closed when the process runs out of descriptors ([`with_fds`]).
    fds: Option<Arc<OpenFiles>>,
}

impl WriteSetup {
    /// Whether writing `data` needs a pool buffer: unless it lies at an
    /// address aligned for `O_DIRECT` and is whole blocks, some bytes must
    /// go through an aligned buffer.
    fn needs_buffer(&self, data: &[u8]) -> bool {
        !(data.as_ptr() as usize).is_multiple_of(self.mem_align)
            || !data.len().is_multiple_of(self.block)
    }

    /// Opens `path` for writing (made with its parent directories if
    /// missing) and readies a writer with `buf`.
    fn writer<E: Fn(&str, &Path, io::Error) -> StoreError>(
        &self,
        path: &Path,
        buf: Option<PoolBuf>,
        err: &E,
        key: &str,
    ) -> StoreResult<DirectWriter> {
        let open = || with_fds(self.fds.as_deref(), || open_direct(path, true));
        let file = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(|e| err(key, path, e))?;
                }
                open().map_err(|e| err(key, path, e))?
            }
            Err(e) => return Err(err(key, path, e)),
        };
        let old_size = size_of(&file).map_err(|e| err(key, path, e))?;
        Ok(DirectWriter {
            file,
            buf,
            block: self.block,
            mem_align: self.mem_align,
            io_size: self.io_size,
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
    first_byte: &mut Option<Mono>,
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
        first_byte.get_or_insert_with(Mono::now);
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

/// Writes an object front to back: whole blocks straight from the caller's
/// memory when it is aligned for `O_DIRECT` (the payloads Chorus makes are:
/// see [`crate::datagen::PAYLOAD_ALIGN`]), everything else through one
/// aligned buffer from the pool.
///
/// Copying a 1 MiB payload into the pool buffer took more CPU than making
/// the payload (48% against 17% of the process in 1 MiB PUTs on a 2-CPU
/// VM, where the virtual disk is faster than one core's memcpy); fio writes
/// from its own aligned buffer and copies nothing.
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
    /// `None` when the PUT needs none ([`WriteSetup::needs_buffer`]).
    buf: Option<PoolBuf>,
    block: usize,
    /// Alignment of memory written straight from the caller's bytes.
    mem_align: usize,
    /// Bytes per write syscall.
    io_size: usize,
    /// Bytes waiting in `buf`.
    filled: usize,
    /// Bytes already written to the file (a multiple of the block).
    written: u64,
    /// Size of the file before this PUT: a longer old file must be cut.
    old_size: u64,
}

impl DirectWriter {
    /// Writes `data` next: its whole blocks straight from where they lie
    /// when nothing waits in the buffer and the address is aligned, the
    /// rest through the buffer.
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.filled != 0 || !(data.as_ptr() as usize).is_multiple_of(self.mem_align) {
            return self.push(data);
        }
        let whole = data.len() / self.block * self.block;
        for chunk in data[..whole].chunks(self.io_size) {
            self.file.write_all_at(chunk, self.written)?;
            self.written += chunk.len() as u64;
        }
        self.push(&data[whole..])
    }

    /// Copies `data` into the buffer, writing it out each time it is full.
    fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let Some(pooled) = self.buf.as_mut() else {
                return Err(io::Error::other("direct:// writer has no aligned buffer"));
            };
            let buf = pooled.as_mut_slice();
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
        if let (1.., Some(pooled)) = (self.filled, self.buf.as_mut()) {
            let padded = round_up(self.filled, self.block);
            let buf = pooled.as_mut_slice();
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
        if self.uring {
            return ring::put(self, key, data).await;
        }
        let path = self.path(key)?;
        let setup = self.write_setup();
        let buf = match setup.needs_buffer(&data) {
            true => Some(self.buffer().await?),
            false => None,
        };
        let (key, err) = (key.to_string(), self.err_fn());
        self.blocking(move || {
            let mut w = setup.writer(&path, buf, &err, &key)?;
            w.write(&data).map_err(|e| err(&key, &path, e))?;
            w.finish().map_err(|e| err(&key, &path, e))?;
            Ok(())
        })
        .await
    }

    /// Whole blocks only: `O_DIRECT` writes at the file's end, which must
    /// stay block-aligned. Sent through a pool buffer, a buffer at a time.
    async fn append(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let block = self.align.offset;
        let path = self.path(key)?;
        let (key, err) = (key.to_string(), self.err_fn());
        if !data.len().is_multiple_of(block.max(1)) {
            let e = io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "direct:// appends whole blocks: {} bytes is not a multiple of the \
                     device's {block}-byte block (use such sizes, or file://)",
                    data.len()
                ),
            );
            return Err(err(&key, &path, e));
        }
        let mut buf = self.buffer().await?;
        self.blocking(move || {
            let room = buf.as_mut_slice().len().max(1);
            for chunk in data.chunks(room) {
                let b = &mut buf.as_mut_slice()[..chunk.len()];
                b.copy_from_slice(chunk);
                crate::store::file::more::append(&path, b, libc::O_DIRECT)
                    .map_err(|e| err(&key, &path, e))?;
            }
            Ok(())
        })
        .await
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        if self.uring {
            return ring::get(self, key, opts).await;
        }
        let path = self.path(key)?;
        let mut buf = self.buffer().await?;
        let (key, uri, err, opts) = (key.to_string(), self.uri.clone(), self.err_fn(), *opts);
        let block = self.align.offset;
        let fds = self.fds.clone();
        self.blocking(move || {
            let reader = Reader::open(fds.as_deref(), &key, || open_direct(&path, false))
                .map_err(|e| err(&key, &path, e))?;
            let file = reader.file.file();
            // A range whose bytes are dropped needs no size: the reads stop
            // at the end of the file by themselves, and only a range that
            // comes back empty is checked (below).
            let (offset, len) = match opts.range {
                Some(range) if !opts.keep_data => (range.offset, range.length),
                Some(range) => {
                    let size = reader.size().map_err(|e| err(&key, &path, e))?;
                    clamp_range(range, size, &uri, &key)?
                }
                None => (0, reader.size().map_err(|e| err(&key, &path, e))?),
            };
            // Only a GET that must hand its bytes back allocates: the data
            // leaves the store, so it cannot live in a pooled buffer.
            let mut kept = opts
                .keep_data
                .then(|| Vec::with_capacity(usize::try_from(len).unwrap_or(0)));
            let mut first_byte = None;
            let bytes = read_span(
                file,
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
                let size = reader.size().map_err(|e| err(&key, &path, e))?;
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
        if let Some(fds) = &self.fds {
            fds.remove(key);
        }
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
    /// I/O size, so only one part and one buffer are in memory. Whole
    /// blocks of an aligned part are written from the part itself.
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
        let path = Arc::new(self.path(key)?);
        let buf = self.buffer().await?;
        let (k, err, p) = (key.to_string(), self.err_fn(), path.clone());
        let setup = self.write_setup();
        let mut writer = self
            .blocking(move || setup.writer(&p, Some(buf), &err, &k))
            .await?;
        let part_size = part_size.max(1);
        let (mut offset, mut parts) = (0, 0);
        while offset < size {
            let len = part_size.min(size - offset);
            let data = part(offset, len);
            let start = Mono::now();
            let (k, err, p) = (key.to_string(), self.err_fn(), path.clone());
            writer = self
                .blocking(move || {
                    writer.write(&data).map_err(|e| err(&k, &p, e))?;
                    Ok(writer)
                })
                .await?;
            // Up to an I/O size of it may wait in the buffer for the next.
            plan.done(offset, len, start);
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

    /// Only the GETs' open files care: `meta` keeps none.
    fn stage_begins(&self, removes_objects: bool) {
        if let Some(fds) = &self.fds {
            fds.stage_begins(removes_objects);
        }
    }
}
