//! [`TraceId`]: a trace file named by its content (SHA-256 and length), so
//! an agent that already holds a trace is known by the id alone and a copy
//! is checked byte for byte by the hash.

use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

/// Bytes hashed per read when hashing a file.
const HASH_READ_BYTES: usize = 1 << 20;

/// A trace's content id: SHA-256 of its bytes and their count. Written
/// `<64 hex digits>-<length>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId {
    pub sha256: [u8; 32],
    pub len: u64,
}

impl TraceId {
    /// The id of the file at `path`, read in 1 MiB pieces.
    pub fn of_file(path: &Path) -> std::io::Result<TraceId> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = TraceHasher::new();
        let mut buf = vec![0u8; HASH_READ_BYTES];
        loop {
            match file.read(&mut buf) {
                Ok(0) => return Ok(hasher.finish()),
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The hash as 64 lower-case hex digits.
    pub fn hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A file name for a copy of the trace: the id, so copies of different
    /// traces never collide.
    pub fn file_name(&self) -> String {
        format!("trace-{self}")
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.hex(), self.len)
    }
}

impl FromStr for TraceId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad trace id `{s}` (want <64 hex digits>-<length>)");
        let (hex, len) = s.split_once('-').ok_or_else(bad)?;
        let len = len.parse::<u64>().map_err(|_| bad())?;
        Ok(TraceId {
            sha256: sha256_from_hex(hex).ok_or_else(bad)?,
            len,
        })
    }
}

/// 64 hex digits as 32 bytes.
pub fn sha256_from_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A [`TraceId`] computed piece by piece, as bytes stream past.
#[derive(Clone, Default)]
pub struct TraceHasher {
    sha: Sha256,
    len: u64,
}

impl TraceHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> TraceId {
        TraceId {
            sha256: self.sha.finalize().into(),
            len: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_and_round_trip() {
        let mut h = TraceHasher::new();
        h.update(b"ab");
        h.update(b"c");
        let id = h.finish();
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            id.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad-3"
        );
        assert_eq!(id.to_string().parse::<TraceId>().unwrap(), id);
        assert!("ba78-3".parse::<TraceId>().is_err());
        assert!(format!("{}-x", id.hex()).parse::<TraceId>().is_err());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(TraceId::of_file(&path).unwrap(), id);
    }
}
