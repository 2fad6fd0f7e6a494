//! The npz format: what `numpy.savez` (uncompressed) writes, so that
//! `numpy.load` opens it. A ZIP archive of stored (method 0) members, one
//! `.npy` array per sample, a 1-D `uint8` array of the payload.
//!
//! A sample's record is its ZIP local file header and its member; the
//! central directory and the end-of-central-directory record follow the
//! last member. Members are named `sample_{j:06}.npy` with `j` the
//! sample's place in its file (not its global index), so every name has
//! the same length and a record's length depends on its payload size
//! alone; the global index is `first_sample(file) + j`.
//!
//! No ZIP64: sizes and offsets are u32 and the member count a u16, so
//! [`check`] refuses a layout whose worst-case file would not fit. Time
//! and date fields are fixed (1980-01-01 00:00, the DOS epoch) so the
//! bytes are a function of the contents alone.

use super::digits;

/// The `.npy` magic string, then format version 1.0.
const NPY_MAGIC: &[u8] = b"\x93NUMPY\x01\x00";
/// Magic, version and the u16 header length: the bytes before the header
/// text.
const NPY_PREAMBLE: u64 = 10;
/// `numpy.lib.format` aligns the data to 64 bytes (`ARRAY_ALIGN`).
const NPY_ALIGN: u64 = 64;
const NPY_DICT_HEAD: &str = "{'descr': '|u1', 'fortran_order': False, 'shape': (";
const NPY_DICT_TAIL: &str = ",), }";

/// Length of every member name, `sample_NNNNNN.npy`.
const NAME_LEN: u64 = 17;
const LOCAL_HEADER: u64 = 30;
const CENTRAL_HEADER: u64 = 46;
const END_RECORD: u64 = 22;

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const END_SIG: u32 = 0x0605_4b50;
/// ZIP 2.0: what a stored member needs.
const VERSION: u16 = 20;
/// DOS time 00:00:00 and date 1980-01-01 (day 1, month 1, year 0).
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;

/// Most members a file may hold: 0xFFFF in the end record's count means
/// "see the ZIP64 record", which these files do not have.
pub const MAX_MEMBERS: u64 = 0xFFFE;
/// Largest file: an offset or size of 0xFFFF_FFFF likewise means "see
/// ZIP64".
pub const MAX_FILE: u64 = 0xFFFF_FFFE;

/// What the central directory says of one member, learnt as it is written.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    /// Its place in the file (its name).
    pub within: u32,
    /// CRC-32 of the `.npy` bytes.
    pub crc: u32,
    /// Length of the `.npy` bytes (stored: compressed = uncompressed).
    pub size: u32,
}

/// Refuses a file of `members` members that could reach `worst_file`
/// bytes: either is beyond what ZIP without ZIP64 records.
pub fn check(members: u64, worst_file: u128) -> Result<(), String> {
    if members > MAX_MEMBERS {
        return Err(format!(
            "an npz file holds at most {MAX_MEMBERS} samples (ZIP without ZIP64), \
             not {members}: lower samples_per_file"
        ));
    }
    if worst_file > u128::from(MAX_FILE) {
        return Err(format!(
            "an npz file of {members} samples can reach {worst_file} bytes, over the \
             {MAX_FILE}-byte limit of ZIP without ZIP64: lower samples_per_file or the \
             sample size"
        ));
    }
    Ok(())
}

/// Length of the `.npy` header (magic to the newline) of an array of `n`
/// bytes: padded so the data starts at a multiple of 64.
pub fn npy_header_len(n: u64) -> u64 {
    let text = (NPY_DICT_HEAD.len() + NPY_DICT_TAIL.len()) as u64 + digits(n) + 1;
    (NPY_PREAMBLE + text).div_ceil(NPY_ALIGN) * NPY_ALIGN
}

/// Length of the record of a sample of `n` bytes: local header and member.
pub fn record_len(n: u64) -> u64 {
    LOCAL_HEADER + NAME_LEN + npy_header_len(n) + n
}

/// Length of the central directory and end record of `members` members.
pub fn directory_len(members: u64) -> u64 {
    members * (CENTRAL_HEADER + NAME_LEN) + END_RECORD
}

fn name(within: u32) -> String {
    format!("sample_{within:06}.npy")
}

/// Appends the `.npy` header of an array of `n` bytes.
fn write_npy_header(out: &mut Vec<u8>, n: u64) {
    let start = out.len();
    let total = npy_header_len(n) as usize;
    out.extend_from_slice(NPY_MAGIC);
    // At most 128: fits a u16.
    put16(out, (total - NPY_PREAMBLE as usize) as u16);
    out.extend_from_slice(NPY_DICT_HEAD.as_bytes());
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(NPY_DICT_TAIL.as_bytes());
    out.resize(start + total - 1, b' ');
    out.push(b'\n');
}

/// Appends the record of member `within` (local header, `.npy` header,
/// payload) and says what the central directory needs of it.
pub fn write_record(out: &mut Vec<u8>, within: u32, payload: &[u8]) -> Member {
    // The local header carries the CRC of the member, so the npy header
    // is made aside first (it is at most 128 bytes).
    let mut npy = Vec::with_capacity(2 * NPY_ALIGN as usize);
    write_npy_header(&mut npy, payload.len() as u64);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&npy);
    crc.update(payload);
    // `Layout::new` refused files over MAX_FILE, so a member fits a u32.
    let member = Member {
        within,
        crc: crc.finalize(),
        size: u32::try_from(npy.len() + payload.len()).unwrap_or(u32::MAX),
    };
    let name = name(within);
    put32(out, LOCAL_SIG);
    put16(out, VERSION);
    put16(out, 0); // flags
    put16(out, 0); // method: stored
    put16(out, DOS_TIME);
    put16(out, DOS_DATE);
    put32(out, member.crc);
    put32(out, member.size); // compressed
    put32(out, member.size); // uncompressed
    put16(out, NAME_LEN as u16);
    put16(out, 0); // extra field length
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&npy);
    out.extend_from_slice(payload);
    member
}

/// Appends the central directory of `members` (each with its record's
/// offset in the file) and the end record; the directory starts where
/// `out` ends.
pub fn write_directory(out: &mut Vec<u8>, members: &[(Member, u64)]) {
    // Offsets and counts fit: `Layout::new` checked the worst case.
    let start = out.len() as u64;
    for (m, offset) in members {
        put32(out, CENTRAL_SIG);
        put16(out, VERSION); // made by
        put16(out, VERSION); // needed
        put16(out, 0); // flags
        put16(out, 0); // method: stored
        put16(out, DOS_TIME);
        put16(out, DOS_DATE);
        put32(out, m.crc);
        put32(out, m.size);
        put32(out, m.size);
        put16(out, NAME_LEN as u16);
        put16(out, 0); // extra field length
        put16(out, 0); // comment length
        put16(out, 0); // disk number
        put16(out, 0); // internal attributes
        put32(out, 0); // external attributes
        put32(out, u32::try_from(*offset).unwrap_or(u32::MAX));
        out.extend_from_slice(name(m.within).as_bytes());
    }
    let size = out.len() as u64 - start;
    let count = u16::try_from(members.len()).unwrap_or(u16::MAX);
    put32(out, END_SIG);
    put16(out, 0); // this disk
    put16(out, 0); // disk of the directory
    put16(out, count); // entries on this disk
    put16(out, count); // entries in all
    put32(out, u32::try_from(size).unwrap_or(u32::MAX));
    put32(out, u32::try_from(start).unwrap_or(u32::MAX));
    put16(out, 0); // comment length
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
