//! Alignment for direct I/O: which block size and buffer alignment the file
//! system under a root needs, found once at open by probing a file there,
//! and whether it refuses `O_DIRECT` at all.

use super::*;

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

/// Why [`probe`] failed.
#[derive(Debug)]
pub(super) enum ProbeError {
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
    pub(super) fn into_error(self, uri: &str, root: &str) -> StoreError {
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
pub(super) fn probe(root: &Path) -> Result<Alignment, ProbeError> {
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

pub(super) fn probe_named(root: &Path) -> Result<Alignment, ProbeError> {
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

pub(super) fn plausible(align: u32) -> Option<usize> {
    let a = align as usize;
    (a > 0 && a.is_power_of_two() && a <= MAX_ALIGN).then_some(a)
}

/// The alignment for direct I/O on `file` (which `path` names, for
/// messages). Precedence: `statx` > sysfs logical block size > 4096; see
/// [`AlignSource`] for why.
pub(super) fn alignment_of(file: &fs::File, path: &Path) -> Result<Alignment, ProbeError> {
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
pub(super) fn sysfs_logical_block_size(major: u32, minor: u32) -> Option<usize> {
    let base = format!("/sys/dev/block/{major}:{minor}");
    ["queue/logical_block_size", "../queue/logical_block_size"]
        .iter()
        .find_map(|rel| fs::read_to_string(format!("{base}/{rel}")).ok())
        .and_then(|s| s.trim().parse::<u32>().ok())
        .and_then(plausible)
}
