//! The object API past the core ops on a file system: a server-side copy
//! is `std::fs::copy` (the kernel's `copy_file_range`: no bytes through
//! user space, reflinks where the file system has them) and an append is
//! a write to a file opened `O_APPEND` (created when missing, as an Azure
//! append blob is).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Copies `src` to `dst` (replacing it); returns the bytes copied.
pub(crate) fn copy(src: &Path, dst: &Path) -> io::Result<u64> {
    match fs::copy(src, dst) {
        // A fan-out directory the source is not in may not exist yet.
        Err(e) if e.kind() == io::ErrorKind::NotFound && src.exists() => {
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::copy(src, dst)
        }
        r => r,
    }
}

/// Appends `data` to `path`, creating it (and its directory) when missing.
/// `direct`: opened `O_DIRECT` too, so `data` and the file's length must
/// be aligned to the device's block (the caller's buffer is).
pub(crate) fn append(path: &Path, data: &[u8], flags: i32) -> io::Result<()> {
    let open = || {
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC | flags)
            .open(path)
    };
    let mut file = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            open()?
        }
        r => r?,
    };
    file.write_all(data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn appends_concatenate_and_copies_match() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("sub/a.append");
        super::append(&a, b"one,", 0).unwrap();
        super::append(&a, b"two", 0).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"one,two");
        let c = dir.path().join("other/a.copy");
        assert_eq!(super::copy(&a, &c).unwrap(), 7);
        assert_eq!(std::fs::read(&c).unwrap(), b"one,two");
        assert!(super::copy(&dir.path().join("missing"), &c).is_err());
    }
}
