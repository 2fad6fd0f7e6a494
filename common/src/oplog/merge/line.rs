//! One record line of our own layout (the columns of [`HEADER`], in order),
//! handled as bytes: the merge checks it, takes its sort key and shifts its
//! three times, without parsing it into an [`OpRecord`] and formatting it
//! back.
//!
//! [`fast_line`] accepts only lines exactly as our writer writes them
//! (canonical numbers, times as `YYYY-MM-DDTHH:MM:SS.fffffffffZ`,
//! `duration_ns` equal to `end - start`), so copying such a line is the same
//! as parsing and formatting it. Anything else (a warp log, a hand-edited
//! line, a damaged one) goes through [`slow_line`]: the reader's parser,
//! which formats the record in our layout or names what is wrong with the
//! same words the reader uses.

use super::clock::ClockCorrection;
use crate::clock::{format_rfc3339_ns, parse_rfc3339_ns};
use crate::oplog::reader::Columns;
use crate::oplog::record::{HEADER, OpRecord};

/// Columns of our layout.
pub(super) const FIELDS: usize = HEADER.len();

// Positions of the columns the merge looks at.
const F_IDX: usize = 0;
const F_THREAD: usize = 1;
const F_OP: usize = 2;
const F_CLIENT_ID: usize = 3;
const F_N_OBJECTS: usize = 4;
const F_BYTES: usize = 5;
const F_START: usize = 9;
const F_FIRST_BYTE: usize = 10;
const F_END: usize = 11;
const F_DURATION_NS: usize = 12;
const F_WARMUP: usize = 14;
const F_RETRIES: usize = 15;
const F_LAG_NS: usize = 16;

/// Length of a canonical time, `2026-11-23T21:56:45.123456789Z`.
const TIME_LEN: usize = 30;
/// Its `YYYY-MM-DDTHH:MM:SS` part: the same for all times in one second.
const SECOND_LEN: usize = 19;

/// The merge order of a line: start, then client id, then index. The
/// client id is not copied: it is `client_len` bytes at `client_off` in the
/// line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LineKey {
    pub start: i64,
    pub idx: u64,
    pub client_off: u32,
    pub client_len: u32,
}

/// A line found by [`split_line`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Split {
    /// Where its `\n` is; None: the buffer ends first.
    pub newline: Option<usize>,
    /// Tabs before the line end (the first [`FIELDS`] are in `tabs`).
    pub tabs: usize,
    /// Every byte scanned was ASCII (false says nothing).
    pub ascii: bool,
}

/// Scans the line starting at `buf[0]` for its tabs and its end; the
/// first [`FIELDS`] tab positions go to `tabs`. Sixteen bytes at a time.
#[inline]
pub(super) fn split_line(buf: &[u8], tabs: &mut [u32; FIELDS]) -> Split {
    let mut n = 0usize;
    let mut high = 0u32;
    let mut i = 0usize;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of x86_64, so the intrinsics are available
        // without detection; every load reads buf[i..i + 16], in bounds,
        // and loadu has no alignment requirement.
        unsafe {
            let tab = _mm_set1_epi8(b'\t' as i8);
            let nl = _mm_set1_epi8(b'\n' as i8);
            while i + 16 <= buf.len() {
                let v = _mm_loadu_si128(buf.as_ptr().add(i).cast::<__m128i>());
                high |= _mm_movemask_epi8(v) as u32;
                let hits = _mm_or_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpeq_epi8(v, nl));
                let mut m = _mm_movemask_epi8(hits) as u32;
                while m != 0 {
                    let j = i + m.trailing_zeros() as usize;
                    if buf[j] == b'\n' {
                        return Split {
                            newline: Some(j),
                            tabs: n,
                            ascii: high == 0,
                        };
                    }
                    if n < FIELDS {
                        tabs[n] = j as u32;
                    }
                    n += 1;
                    m &= m - 1;
                }
                i += 16;
            }
        }
    }
    for (j, &b) in buf.iter().enumerate().skip(i) {
        high |= u32::from(b & 0x80);
        if b == b'\n' {
            return Split {
                newline: Some(j),
                tabs: n,
                ascii: high == 0,
            };
        }
        if b == b'\t' {
            if n < FIELDS {
                tabs[n] = j as u32;
            }
            n += 1;
        }
    }
    Split {
        newline: None,
        tabs: n,
        ascii: high == 0,
    }
}

/// An unsigned number as our writer writes it: digits, no sign, no leading
/// zero, at most `max`.
#[inline]
fn canon_uint(f: &[u8], max: u64) -> Option<u64> {
    if f.is_empty() || f.len() > 20 || (f[0] == b'0' && f.len() > 1) {
        return None;
    }
    let mut v = 0u64;
    if f.len() < 20 {
        for &c in f {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + u64::from(d);
        }
    } else {
        for &c in f {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(d))?;
        }
    }
    (v <= max).then_some(v)
}

/// A signed number as our writer writes it.
#[inline]
fn canon_int(f: &[u8]) -> Option<i64> {
    match f.split_first() {
        Some((b'-', digits)) if digits != b"0" => {
            let v = canon_uint(digits, i64::MIN.unsigned_abs())?;
            Some(0i64.wrapping_sub_unsigned(v))
        }
        _ => i64::try_from(canon_uint(f, i64::MAX as u64)?).ok(),
    }
}

/// Eight ASCII digits, all checked, as a number: a few word operations
/// instead of a loop (the method of simdjson and fast_float).
#[inline(always)]
fn eight_digits(b: [u8; 8]) -> Option<u64> {
    let v = u64::from_le_bytes(b);
    let all_digits = ((v.wrapping_add(0x4646_4646_4646_4646)
        | v.wrapping_sub(0x3030_3030_3030_3030))
        & 0x8080_8080_8080_8080)
        == 0;
    if !all_digits {
        return None;
    }
    let mut v = v.wrapping_sub(0x3030_3030_3030_3030);
    v = v.wrapping_mul(10).wrapping_add(v >> 8);
    v = ((v & 0x0000_00FF_0000_00FF)
        .wrapping_mul(0x000F_4240_0000_0064)
        .wrapping_add(((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(0x0000_2710_0000_0001)))
        >> 32;
    Some(v & 0xFFFF_FFFF)
}

/// Nine ASCII digits.
#[inline]
fn nine_digits(f: &[u8]) -> Option<i64> {
    let mut head = [0u8; 8];
    head.copy_from_slice(&f[..8]);
    let last = f[8].wrapping_sub(b'0');
    if last > 9 {
        return None;
    }
    Some(eight_digits(head)? as i64 * 10 + i64::from(last))
}

/// `a == b` for 19 bytes, as three word compares rather than a call to
/// memcmp.
#[inline(always)]
fn same_second(a: &[u8], b: &[u8; SECOND_LEN]) -> bool {
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    a.len() == SECOND_LEN
        && word(a, 0) == word(b, 0)
        && word(a, 8) == word(b, 8)
        && word(a, 11) == word(b, 11)
}

/// Parses and formats canonical times, remembering the last second seen:
/// times of one log come in nearly increasing order, so most share their
/// second with the previous one, and only nine digits need work.
#[derive(Debug)]
pub(super) struct TimeCodec {
    /// `YYYY-MM-DDTHH:MM:SS` of the last time parsed, and that second in ns.
    parse_second: [u8; SECOND_LEN],
    parse_base: i64,
    /// The last second formatted (in s) and its `YYYY-MM-DDTHH:MM:SS.`.
    format_second: i64,
    format_prefix: [u8; SECOND_LEN + 1],
}

impl Default for TimeCodec {
    fn default() -> Self {
        TimeCodec {
            // Never equal to a real time's second: the first parse misses.
            parse_second: [0; SECOND_LEN],
            parse_base: 0,
            format_second: i64::MIN,
            format_prefix: [0; SECOND_LEN + 1],
        }
    }
}

impl TimeCodec {
    /// A canonical time, in ns; None for anything else (which may still be
    /// a valid time in another form).
    #[inline]
    fn parse(&mut self, f: &[u8]) -> Option<i64> {
        if f.len() != TIME_LEN || f[SECOND_LEN] != b'.' || f[TIME_LEN - 1] != b'Z' {
            return None;
        }
        let frac = nine_digits(&f[SECOND_LEN + 1..])?;
        if same_second(&f[..SECOND_LEN], &self.parse_second) {
            // Checked: the first and last seconds of the i64 range are
            // only partly in it.
            return self.parse_base.checked_add(frac);
        }
        // A new second: check it whole (and that it is in canonical form).
        if f[10] != b'T' {
            return None;
        }
        let ns = parse_rfc3339_ns(std::str::from_utf8(f).ok()?)?;
        if let Some(base) = ns.checked_sub(frac) {
            self.parse_second.copy_from_slice(&f[..SECOND_LEN]);
            self.parse_base = base;
        }
        Some(ns)
    }

    /// Writes `ns` as a canonical time into `out` (exactly [`TIME_LEN`]
    /// bytes).
    #[inline]
    fn format(&mut self, ns: i64, out: &mut [u8]) {
        let second = ns.div_euclid(1_000_000_000);
        let mut frac = ns.rem_euclid(1_000_000_000);
        if second != self.format_second {
            let mut s = String::with_capacity(TIME_LEN);
            format_rfc3339_ns(ns, &mut s);
            self.format_prefix
                .copy_from_slice(&s.as_bytes()[..SECOND_LEN + 1]);
            self.format_second = second;
        }
        out[..SECOND_LEN + 1].copy_from_slice(&self.format_prefix);
        for d in out[SECOND_LEN + 1..TIME_LEN - 1].iter_mut().rev() {
            *d = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        out[TIME_LEN - 1] = b'Z';
    }
}

/// Where field `i` of a line of `len` bytes with `tabs` is.
#[inline(always)]
fn bounds_of(tabs: &[u32; FIELDS], len: usize, i: usize) -> (usize, usize) {
    let from = if i == 0 { 0 } else { tabs[i - 1] as usize + 1 };
    let to = if i == FIELDS - 1 {
        len
    } else {
        tabs[i] as usize
    };
    (from, to)
}

/// An op as our writer names it (`OpKind::log_name`). Spelled out so
/// that it compiles to a few integer compares; a name missing here (a new
/// op) only takes the slower path.
#[inline]
fn is_op_name(f: &[u8]) -> bool {
    matches!(
        f,
        b"GET"
            | b"PUT"
            | b"STAT"
            | b"LIST"
            | b"DELETE"
            | b"RANGE_GET"
            | b"MULTIPART_PUT"
            | b"MKDIR"
            | b"RMDIR"
            | b"GET_PART"
            | b"PUT_PART"
            | b"COPY"
            | b"APPEND"
            | b"DELETE_BATCH"
            | b"TAG"
            | b"GET_TAGS"
            | b"RETENTION"
            | b"GET_VERSION"
            | b"DELETE_VERSION"
            | b"LIST_VERSIONS"
    )
}

/// Checks that `line` (no line ending; `tabs` and `split` from
/// [`split_line`]) is a record line exactly as our writer writes it, and
/// moves its times in place (they keep their width) by minus `clock`'s
/// offset at its start: one offset for the three, so its latency stays.
/// A constant correction costs one compare; a zero one skips rewriting.
/// Returns its key (times corrected), or None, with `line` unchanged, if
/// the line is in any other form: [`slow_line`] then decides.
#[inline]
pub(super) fn fast_line(
    line: &mut [u8],
    tabs: &[u32; FIELDS],
    split: Split,
    clock: &ClockCorrection,
    times: &mut TimeCodec,
) -> Option<LineKey> {
    if split.tabs != FIELDS - 1 {
        return None;
    }
    let len = line.len();
    let bounds = |i: usize| bounds_of(tabs, len, i);
    let field = |i: usize| {
        let (from, to) = bounds_of(tabs, len, i);
        &line[from..to]
    };
    let idx = canon_uint(field(F_IDX), u64::MAX)?;
    canon_uint(field(F_THREAD), u64::MAX)?;
    if !is_op_name(field(F_OP)) {
        return None;
    }
    canon_uint(field(F_N_OBJECTS), u64::from(u32::MAX))?;
    canon_uint(field(F_BYTES), u64::MAX)?;
    let start = times.parse(field(F_START))?;
    let first_byte = field(F_FIRST_BYTE);
    let first_byte = if first_byte.is_empty() {
        None
    } else {
        Some(times.parse(first_byte)?)
    };
    let end = times.parse(field(F_END))?;
    if canon_int(field(F_DURATION_NS))? != end.checked_sub(start)? {
        return None;
    }
    if !matches!(field(F_WARMUP), b"0" | b"1") {
        return None;
    }
    canon_uint(field(F_RETRIES), u64::from(u32::MAX))?;
    let lag = field(F_LAG_NS);
    if !lag.is_empty() {
        canon_uint(lag, u64::MAX - 1)?;
    }
    // Valid text: the rest is copied as it is.
    if !split.ascii && std::str::from_utf8(line).is_err() {
        return None;
    }
    let client_off = tabs[F_CLIENT_ID - 1] + 1;
    // Constant (the common case): one compare, no arithmetic.
    let offset_ns = clock.offset_at(start);
    let key = LineKey {
        start: start.checked_sub(offset_ns)?,
        idx,
        client_off,
        client_len: tabs[F_CLIENT_ID] - client_off,
    };
    if offset_ns != 0 {
        let end = end.checked_sub(offset_ns)?;
        let first_byte = match first_byte {
            Some(t) => Some(t.checked_sub(offset_ns)?),
            None => None,
        };
        times.format(key.start, &mut line[bounds(F_START).0..][..TIME_LEN]);
        if let Some(fb) = first_byte {
            times.format(fb, &mut line[bounds(F_FIRST_BYTE).0..][..TIME_LEN]);
        }
        times.format(end, &mut line[bounds(F_END).0..][..TIME_LEN]);
    }
    Some(key)
}

/// The key (start, client id, idx) of a line we wrote (no line ending);
/// None if it is not one.
pub(super) fn our_line_key<'a>(
    line: &'a [u8],
    times: &mut TimeCodec,
) -> Option<(i64, &'a [u8], u64)> {
    let mut tabs = [0u32; FIELDS];
    let split = split_line(line, &mut tabs);
    if split.tabs != FIELDS - 1 {
        return None;
    }
    let field = |i: usize| &line[tabs[i - 1] as usize + 1..tabs[i] as usize];
    let idx = canon_uint(&line[..tabs[0] as usize], u64::MAX)?;
    Some((times.parse(field(F_START))?, field(F_CLIENT_ID), idx))
}

/// Any line [`fast_line`] did not take (no line ending): parsed by the
/// reader's parser and appended to `out` in our layout (without line
/// ending) with times moved by minus `clock`'s offset at its start; the
/// error is the reader's message for a bad line.
pub(super) fn slow_line(
    columns: &Columns,
    line: &[u8],
    clock: &ClockCorrection,
    text: &mut String,
    out: &mut Vec<u8>,
) -> Result<LineKey, String> {
    let mut rec: OpRecord = columns.parse(line)?;
    rec.shift_times(clock.offset_at(rec.start_ns));
    text.clear();
    rec.write_tsv(text);
    let bytes = text.as_bytes();
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    // The client id is the fourth column of what write_tsv wrote.
    let mut tabs = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\t')
        .map(|(i, _)| i as u32);
    let _ = (tabs.next(), tabs.next());
    let client_off = tabs.next().unwrap_or(0) + 1;
    let client_end = tabs.next().unwrap_or(client_off);
    out.extend_from_slice(bytes);
    Ok(LineKey {
        start: rec.start_ns,
        idx: rec.idx,
        client_off,
        client_len: client_end - client_off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::OpKind;
    use crate::oplog::test_util::record;

    fn ours() -> Columns {
        Columns::from_header(HEADER.join("\t").as_bytes()).unwrap()
    }

    /// Runs a line (no newline) through fast_line, falling back to
    /// slow_line; returns the written line and whether it was fast.
    fn run(line: &str, offset: i64) -> (Result<(LineKey, String), String>, bool) {
        run_with(line, &ClockCorrection::constant(offset))
    }

    fn run_with(line: &str, clock: &ClockCorrection) -> (Result<(LineKey, String), String>, bool) {
        let mut tabs = [0u32; FIELDS];
        let split = split_line(line.as_bytes(), &mut tabs);
        assert_eq!(split.newline, None);
        let mut bytes = line.as_bytes().to_vec();
        let mut times = TimeCodec::default();
        if let Some(k) = fast_line(&mut bytes, &tabs, split, clock, &mut times) {
            bytes.push(b'\n');
            return (Ok((k, String::from_utf8(bytes).unwrap())), true);
        }
        assert_eq!(bytes, line.as_bytes(), "changed, yet not taken");
        let mut text = String::new();
        let mut out = Vec::new();
        let r = slow_line(&ours(), line.as_bytes(), clock, &mut text, &mut out).map(|k| {
            out.push(b'\n');
            (k, String::from_utf8(out).unwrap())
        });
        (r, false)
    }

    #[test]
    fn split_finds_tabs_and_line_end() {
        let mut tabs = [0u32; FIELDS];
        let text = b"a\tbb\t\tccccccccccccccccc\td\nnext";
        let s = split_line(text, &mut tabs);
        assert_eq!((s.newline, s.tabs, s.ascii), (Some(25), 4, true));
        assert_eq!(&tabs[..4], &[1, 4, 5, 23]);
        // Bytes next to the searched ones are no matches.
        let s = split_line(b"\x08\x0b\x08\x08\x08\x08\x08\x08\x08\x08\t", &mut tabs);
        assert_eq!((s.newline, s.tabs), (None, 1));
        assert_eq!(tabs[0], 10);
        // More tabs than fields: counted, not stored past the end.
        let many = "\t".repeat(40);
        assert_eq!(split_line(many.as_bytes(), &mut tabs).tabs, 40);
        // Non-ASCII before the line end, in the vector part or the tail.
        for at in [0usize, 20, 37] {
            let mut text = vec![b'a'; 40];
            text[at] = 0xc3;
            text.push(b'\n');
            let s = split_line(&text, &mut tabs);
            assert_eq!((s.newline, s.ascii), (Some(40), false), "{at}");
        }
    }

    #[test]
    fn our_lines_are_copied_or_shifted_like_the_formatter() {
        for n in 0..2_000u64 {
            let rec = record(n, &format!("agent-{}", n % 3));
            let mut line = String::new();
            rec.write_tsv(&mut line);
            let line = line.trim_end_matches('\n');
            for offset in [0i64, 1, -1, 5_000_000_123, -86_400_000_000_000] {
                let (got, fast) = run(line, offset);
                assert!(fast, "{line}");
                let (key, text) = got.unwrap();
                let mut want = rec.clone();
                want.shift_times(offset);
                let mut want_text = String::new();
                want.write_tsv(&mut want_text);
                assert_eq!(text, want_text);
                assert_eq!(key.start, want.start_ns);
                assert_eq!(key.idx, want.idx);
                let client = &text[key.client_off as usize..][..key.client_len as usize];
                assert_eq!(client, want.client_id);
            }
        }
    }

    #[test]
    fn drift_moves_all_three_times_by_the_offset_at_the_start() {
        let base = 1_795_471_005_000_000_000i64;
        let clock = ClockCorrection::between((base, 1_000_000), (base + 1_000_000_000, -1_000_000));
        for n in 0..500u64 {
            let mut rec = record(n, "agent-1");
            rec.start_ns = base + n as i64 * 2_345_678;
            rec.end_ns = rec.start_ns + 1_000_000 + n as i64;
            rec.first_byte_ns = rec.first_byte_ns.map(|_| rec.start_ns + 500_000);
            let mut line = String::new();
            rec.write_tsv(&mut line);
            let line = line.trim_end_matches('\n');
            let mut want = rec.clone();
            want.shift_times(clock.offset_at(rec.start_ns));
            let mut want_text = String::new();
            want.write_tsv(&mut want_text);
            let (got, fast) = run_with(line, &clock);
            assert!(fast);
            let (key, text) = got.unwrap();
            assert_eq!(
                (text.as_str(), key.start),
                (want_text.as_str(), want.start_ns)
            );
            // A form only the parser takes gets the same offset.
            let slow = format!("{line} ");
            let (got, fast) = run_with(&slow, &clock);
            assert!(!fast);
            assert_eq!(got.unwrap().1, want_text);
        }
    }

    #[test]
    fn other_forms_are_normalized_by_the_parser() {
        let good = "7\t1\tGET\ta\t1\t5\tep\tk\t\t2026-11-23T21:56:45.000000000Z\t\t2026-11-23T21:56:46.000000000Z\t1000000000\tload\t0\t0\t";
        assert!(run(good, 0).1);
        let variants = [
            // Time without fraction, with an offset, lower-case `t`.
            good.replace("2026-11-23T21:56:45.000000000Z", "2026-11-23T21:56:45Z"),
            good.replace(
                "2026-11-23T21:56:45.000000000Z",
                "2026-11-23T22:56:45+01:00",
            ),
            good.replace(
                "2026-11-23T21:56:45.000000000Z",
                "2026-11-23t21:56:45.000000000Z",
            ),
            // Numbers with a sign or leading zeros, HEAD, warmup `true`.
            good.replacen("7\t", "+7\t", 1),
            good.replacen("7\t1\t", "7\t01\t", 1),
            good.replace("GET", "get"),
            good.replace("load\t0", "load\ttrue"),
            // duration_ns that is not end - start (end wins), or empty.
            good.replace("1000000000", "5"),
            good.replace("\t1000000000\t", "\t\t"),
            // Go's zero time as first byte, a trailing space.
            good.replacen("Z\t\t2026", "Z\t0001-01-01T00:00:00Z\t2026", 1),
            format!("{good} "),
        ];
        for v in &variants {
            let (got, fast) = run(v, 0);
            assert!(!fast, "{v}");
            let (key, text) = got.unwrap_or_else(|e| panic!("{v}: {e}"));
            let rec = ours().parse(v.as_bytes()).unwrap();
            let mut want = String::new();
            rec.write_tsv(&mut want);
            assert_eq!(text, want, "{v}");
            assert_eq!((key.start, key.idx), (rec.start_ns, rec.idx));
            assert_eq!(
                &text[key.client_off as usize..][..key.client_len as usize],
                "a"
            );
        }
        let bad = [
            (
                good.replace("\t5\t", "\tlots\t"),
                "bad number in column `bytes`",
            ),
            (
                good.replacen("\tload\t0\t0\t", "\tload\t0\t0", 1),
                "wrong column count",
            ),
            (
                good.replace("45.000", "45.0x0"),
                "bad time in column `start`",
            ),
        ];
        for (v, want) in &bad {
            let (got, fast) = run(v, 0);
            assert!(!fast);
            let e = got.unwrap_err();
            assert!(e.contains(want), "{e} / {want}");
        }
    }

    #[test]
    fn times_cross_seconds_days_and_the_epoch() {
        let mut c = TimeCodec::default();
        for ns in [
            0i64,
            -1,
            999_999_999,
            1_000_000_000,
            1_795_392_000_000_000_000 - 1,
            1_795_392_000_000_000_000,
            1_795_471_005_123_456_789,
            1_795_471_005_123_456_790,
            i64::MIN,
            i64::MAX,
        ] {
            let mut want = String::new();
            format_rfc3339_ns(ns, &mut want);
            let mut got = [0u8; TIME_LEN];
            c.format(ns, &mut got);
            assert_eq!(std::str::from_utf8(&got).unwrap(), want);
            assert_eq!(c.parse(want.as_bytes()), Some(ns), "{want}");
            assert_eq!(c.parse(want.as_bytes()), Some(ns), "{want} (cached)");
        }
        assert_eq!(c.parse(b"2026-11-23T21:56:45.12345678xZ"), None);
        assert_eq!(c.parse(b"2026-13-23T21:56:45.123456789Z"), None);
    }

    #[test]
    fn every_op_name_takes_the_fast_path() {
        for k in OpKind::ALL {
            assert!(is_op_name(k.log_name().as_bytes()), "{k:?}");
        }
        assert!(!is_op_name(b"HEAD") && !is_op_name(b"get") && !is_op_name(b""));
    }

    #[test]
    fn digits() {
        assert_eq!(eight_digits(*b"00000000"), Some(0));
        assert_eq!(eight_digits(*b"12345678"), Some(12_345_678));
        assert_eq!(eight_digits(*b"99999999"), Some(99_999_999));
        for bad in [*b"1234567/", *b":2345678", *b"1234 678", *b"123456\x007"] {
            assert_eq!(eight_digits(bad), None, "{bad:?}");
        }
        assert_eq!(nine_digits(b"123456789"), Some(123_456_789));
        assert_eq!(nine_digits(b"12345678x"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(canon_uint(b"0", 9), Some(0));
        assert_eq!(
            canon_uint(b"18446744073709551615", u64::MAX),
            Some(u64::MAX)
        );
        assert_eq!(canon_uint(b"18446744073709551616", u64::MAX), None);
        assert_eq!(canon_uint(b"4294967296", u64::from(u32::MAX)), None);
        assert_eq!(canon_uint(b"01", 9), None);
        assert_eq!(canon_uint(b"", 9), None);
        assert_eq!(canon_int(b"-5"), Some(-5));
        assert_eq!(canon_int(b"-0"), None);
        assert_eq!(canon_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(canon_int(b"9223372036854775808"), None);
    }
}
