//! Latency histograms per op kind, merged exactly, and their wire bytes.
//!
//! Every agent records each op into an HDR histogram (nanoseconds, three
//! significant digits). Histograms travel whole ([`histogram_to_bytes`]) and
//! are added together at the controller, so a merged percentile is the true
//! percentile over all ops: percentiles are never averaged.
//!
//! Latencies above [`LATENCY_HIGHEST_NS`] are recorded as that value and
//! counted in [`OpStats::clamped`], so no op disappears from the counts.

pub mod client;
pub mod prometheus;
pub mod summary;

pub use summary::{LatencySummary, OpSummary, RunSummary, StageSummary};

use crate::op::OpKind;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use std::collections::BTreeMap;

/// Smallest latency the histograms distinguish: 1 ns.
pub const LATENCY_LOWEST_NS: u64 = 1;
/// Largest latency recorded as itself: one hour. Anything slower is a hung
/// op, recorded as one hour and counted in `clamped`.
pub const LATENCY_HIGHEST_NS: u64 = 3_600 * 1_000_000_000;
/// Significant decimal digits kept: 0.1% relative error, ~200 KiB per
/// histogram in memory at these bounds.
pub const LATENCY_SIGFIG: u8 = 3;

/// Errors turning bytes back into histograms.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot decode latency histogram: {0}")]
    Decode(String),
}

/// A new, empty latency histogram with the standard bounds.
pub fn new_latency_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low,
    // sigfig <= 5), covered by the tests: this cannot fail at run time.
    Histogram::new_with_bounds(LATENCY_LOWEST_NS, LATENCY_HIGHEST_NS, LATENCY_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// Counts, bytes and latencies of one op kind.
#[derive(Clone, Debug)]
pub struct OpStats {
    /// All ops, including failed ones.
    pub count: u64,
    pub errors: u64,
    /// Bytes moved by successful ops.
    pub bytes: u64,
    /// Latencies of successful ops, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Successful ops slower than [`LATENCY_HIGHEST_NS`], recorded as that.
    pub clamped: u64,
    /// Objects the successful ops of a kind that names several removed
    /// (`delete_batch`); 0 for every other kind, whose ops are one object
    /// each.
    pub objects: u64,
}

impl Default for OpStats {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for OpStats {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count
            && self.errors == other.errors
            && self.bytes == other.bytes
            && self.clamped == other.clamped
            && self.objects == other.objects
            && self.latency == other.latency
    }
}

impl OpStats {
    pub fn new() -> Self {
        OpStats {
            count: 0,
            errors: 0,
            bytes: 0,
            latency: new_latency_histogram(),
            clamped: 0,
            objects: 0,
        }
    }

    /// Records one op. Failed ops count, but neither their bytes nor their
    /// latency (a fast failure would flatter the percentiles).
    pub fn record(&mut self, latency_ns: u64, bytes: u64, ok: bool) {
        self.count += 1;
        if !ok {
            self.errors += 1;
            return;
        }
        self.bytes = self.bytes.saturating_add(bytes);
        let high = self.latency.high();
        if latency_ns > high {
            self.clamped += 1;
        }
        self.latency.saturating_record(latency_ns.min(high));
    }

    /// Adds `other` into `self`, exactly.
    pub fn merge(&mut self, other: &OpStats) {
        self.count = self.count.saturating_add(other.count);
        self.errors = self.errors.saturating_add(other.errors);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.clamped = self.clamped.saturating_add(other.clamped);
        self.objects = self.objects.saturating_add(other.objects);
        if self.latency.add(&other.latency).is_err() {
            // `other` came from elsewhere (decoded bytes) with a wider range:
            // add value by value, clamping like `record` does.
            let high = self.latency.high();
            for v in other.latency.iter_recorded() {
                let value = v.value_iterated_to();
                let n = v.count_at_value();
                if value > high {
                    self.clamped = self.clamped.saturating_add(n);
                }
                self.latency.saturating_record_n(value.min(high), n);
            }
        }
    }
}

/// Per-op statistics of one stage (on one agent, or merged over many).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageMetrics {
    pub ops: BTreeMap<OpKind, OpStats>,
}

impl StageMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, op: OpKind, latency_ns: u64, bytes: u64, ok: bool) {
        self.ops
            .entry(op)
            .or_default()
            .record(latency_ns, bytes, ok);
    }

    /// Adds `n` objects to `op`'s (a successful multi-object op).
    pub fn add_objects(&mut self, op: OpKind, n: u64) {
        let stats = self.ops.entry(op).or_default();
        stats.objects = stats.objects.saturating_add(n);
    }

    /// Adds `other` into `self`: counts summed, histograms added.
    pub fn merge(&mut self, other: &StageMetrics) {
        for (op, stats) in &other.ops {
            self.ops.entry(*op).or_default().merge(stats);
        }
    }

    pub fn total_ops(&self) -> u64 {
        self.ops.values().fold(0, |n, s| n.saturating_add(s.count))
    }

    pub fn total_errors(&self) -> u64 {
        self.ops.values().fold(0, |n, s| n.saturating_add(s.errors))
    }

    pub fn total_bytes(&self) -> u64 {
        self.ops.values().fold(0, |n, s| n.saturating_add(s.bytes))
    }

    /// All ops folded into one [`OpStats`] (the "ALL" row of a summary).
    pub fn combined(&self) -> OpStats {
        let mut all = OpStats::new();
        for stats in self.ops.values() {
            all.merge(stats);
        }
        all
    }
}

/// Encodes a histogram in HdrHistogram's V2 format (uncompressed), readable
/// by every HdrHistogram implementation.
pub fn histogram_to_bytes(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail with an I/O error; V2 only refuses counts
    // above i64::MAX, which no run reaches. Such a histogram becomes empty
    // bytes, which `histogram_from_bytes` reports as an error rather than
    // inventing data.
    if let Err(e) = V2Serializer::new().serialize(h, &mut out) {
        tracing::error!("cannot encode latency histogram: {e:?}");
        out.clear();
    }
    out
}

/// Whether a V2 counts payload (zigzag LEB128 varints of up to 9 bytes,
/// the ninth taken whole) holds the one value hdrhistogram's decoder
/// cannot take: a run of `-i64::MIN` zeros, which it negates (a panic
/// where overflow is checked, as in debug builds).
fn runs_past_i64(payload: &[u8]) -> bool {
    let mut at = 0;
    while at < payload.len() {
        let mut v = 0u64;
        let mut i = 0;
        loop {
            let Some(&b) = payload.get(at + i) else {
                return false;
            };
            if i == 8 {
                v |= u64::from(b) << 56;
                i += 1;
                break;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            i += 1;
            if b < 0x80 {
                break;
            }
        }
        // i64::MIN zigzag-encoded.
        if v == u64::MAX {
            return true;
        }
        at += i;
    }
    false
}

/// HdrHistogram's V2 cookie (uncompressed), what [`histogram_to_bytes`]
/// writes.
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;

/// Bytes of a V2 header: cookie, payload length, normalizing offset,
/// significant digits (u32 each), lowest and highest (u64), ratio (f64).
const V2_HEADER_BYTES: usize = 40;

/// Decodes bytes written by [`histogram_to_bytes`] (or any uncompressed V2
/// encoder). The bytes come from a peer, so what they claim is checked
/// before the decoder acts on it: the payload must be there (the decoder
/// would otherwise reserve the claimed length, up to 4 GiB, first), and at
/// most [`LATENCY_SIGFIG`] significant digits (the counts array, whatever
/// the range, is then at most ~450 KiB; five digits would be ~50 MiB).
/// The deflated form is refused: its payload cannot be checked before it
/// is inflated, and Chorus never writes it.
pub fn histogram_from_bytes(bytes: &[u8]) -> Result<Histogram<u64>, MetricsError> {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    };
    let bad = |m: String| Err(MetricsError::Decode(m));
    match word(0) {
        Some(V2_COOKIE) => {}
        Some(c) => {
            return bad(format!(
                "not an uncompressed V2 histogram (cookie {c:#010x})"
            ));
        }
        None => return bad(format!("{} bytes, shorter than a V2 header", bytes.len())),
    }
    let (Some(payload), Some(digits)) = (word(4), word(12)) else {
        return bad(format!("{} bytes, shorter than a V2 header", bytes.len()));
    };
    if bytes.len() < V2_HEADER_BYTES {
        return bad(format!("{} bytes, shorter than a V2 header", bytes.len()));
    }
    let room = bytes.len() - V2_HEADER_BYTES;
    if payload as usize > room {
        return bad(format!("payload of {payload} bytes claimed, {room} there"));
    }
    if digits > u32::from(LATENCY_SIGFIG) {
        return bad(format!(
            "{digits} significant digits (at most {LATENCY_SIGFIG} accepted)"
        ));
    }
    if runs_past_i64(&bytes[V2_HEADER_BYTES..V2_HEADER_BYTES + payload as usize]) {
        return bad("a run of 2^63 empty buckets in the counts".into());
    }
    let mut reader = bytes;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut reader)
        .map_err(|e| MetricsError::Decode(format!("{e:?}")))?;
    // Its total saturates where the counts' sum would overflow.
    if h.len() > MAX_HISTOGRAM_COUNT {
        return bad(format!("{} samples, above {MAX_HISTOGRAM_COUNT}", h.len()));
    }
    Ok(h)
}

/// Most samples a decoded histogram may hold: 2^44 (1.8e13, twenty days
/// of 10M ops/s on one agent). hdrhistogram sums counts unchecked when it
/// reads percentiles, so counts from a peer that add up past u64 would
/// panic where overflow is checked and give a wrong percentile where it
/// wraps; 2^20 histograms at this bound still add up within u64.
pub const MAX_HISTOGRAM_COUNT: u64 = 1 << 44;

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 17
    }

    #[test]
    fn merge_equals_recording_into_one() {
        let mut a = StageMetrics::new();
        let mut b = StageMetrics::new();
        let mut all = StageMetrics::new();
        let mut st = 1u64;
        for i in 0..20_000u64 {
            let op = OpKind::ALL[(lcg(&mut st) % 5) as usize];
            let lat = lcg(&mut st) % 50_000_000;
            let bytes = lcg(&mut st) % 1_000_000;
            let ok = !i.is_multiple_of(17);
            let target = if i.is_multiple_of(3) { &mut a } else { &mut b };
            target.record(op, lat, bytes, ok);
            all.record(op, lat, bytes, ok);
        }
        // One op only on one side, and a clamped latency.
        a.record(OpKind::List, LATENCY_HIGHEST_NS * 2, 0, true);
        all.record(OpKind::List, LATENCY_HIGHEST_NS * 2, 0, true);

        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged, all);
        assert_eq!(merged.total_ops(), 20_001);
        assert_eq!(merged.total_errors(), all.total_errors());
        assert_eq!(merged.total_bytes(), all.total_bytes());
        assert_eq!(merged.ops[&OpKind::List].clamped, 1);
        assert_eq!(
            merged.ops[&OpKind::List].latency.max(),
            all.ops[&OpKind::List].latency.max()
        );
        let p99 = |m: &StageMetrics| m.ops[&OpKind::Get].latency.value_at_quantile(0.99);
        assert_eq!(p99(&merged), p99(&all));
    }

    #[test]
    fn errors_count_but_do_not_add_latency() {
        let mut m = StageMetrics::new();
        m.record(OpKind::Put, 1_000, 4096, true);
        m.record(OpKind::Put, 5, 4096, false);
        let s = &m.ops[&OpKind::Put];
        assert_eq!(
            (s.count, s.errors, s.bytes, s.latency.len()),
            (2, 1, 4096, 1)
        );
        m.record(OpKind::Get, 0, 0, true); // zero latency is recordable
        assert_eq!(m.ops[&OpKind::Get].latency.len(), 1);
    }

    #[test]
    fn bytes_round_trip() {
        let mut h = new_latency_histogram();
        for v in [1u64, 17, 1_000, 123_456, 9_999_999, LATENCY_HIGHEST_NS] {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        let bytes = histogram_to_bytes(&h);
        let back = histogram_from_bytes(&bytes).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));

        let empty = new_latency_histogram();
        assert_eq!(
            histogram_from_bytes(&histogram_to_bytes(&empty))
                .unwrap()
                .len(),
            0
        );

        assert!(histogram_from_bytes(&[]).is_err());
        assert!(histogram_from_bytes(&bytes[..bytes.len() / 2]).is_err());
        assert!(histogram_from_bytes(b"definitely not a histogram").is_err());
    }

    #[test]
    fn what_a_histogram_claims_is_checked_before_it_is_decoded() {
        let bytes = histogram_to_bytes(&new_latency_histogram());
        let with = |at: usize, v: u32| {
            let mut b = bytes.clone();
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
            histogram_from_bytes(&b).unwrap_err().to_string()
        };
        // A payload far longer than the bytes: refused, not reserved.
        let e = with(4, u32::MAX);
        assert!(e.contains("payload of 4294967295 bytes claimed"), "{e}");
        // Five significant digits: a 50 MiB counts array from 40 bytes.
        let e = with(12, 5);
        assert!(e.contains("5 significant digits"), "{e}");
        // The deflated form (its cookie) is refused by name.
        let e = with(0, 0x1c84_9304 | 0x10);
        assert!(e.contains("not an uncompressed V2 histogram"), "{e}");
        assert!(histogram_from_bytes(&bytes[..12]).is_err());
    }

    /// Inputs afl found: counts that add up past u64 (hdrhistogram's
    /// percentile sums overflow), and fewer bytes than a header.
    #[test]
    fn counts_past_the_bound_and_short_headers_are_errors() {
        let mut h = Histogram::<u64>::new_with_bounds(1, LATENCY_HIGHEST_NS, 3).unwrap();
        h.record_n(10, MAX_HISTOGRAM_COUNT).unwrap();
        assert_eq!(
            histogram_from_bytes(&histogram_to_bytes(&h)).unwrap().len(),
            MAX_HISTOGRAM_COUNT
        );
        h.record_n(1_000, i64::MAX as u64).unwrap();
        h.record_n(2_000, i64::MAX as u64).unwrap();
        let e = histogram_from_bytes(&histogram_to_bytes(&h))
            .unwrap_err()
            .to_string();
        assert!(e.contains("samples, above"), "{e}");
        // A cookie and a zero payload length in 19 bytes.
        let bytes = histogram_to_bytes(&new_latency_histogram());
        let mut short = bytes[..19].to_vec();
        short[4..8].copy_from_slice(&0u32.to_be_bytes());
        let e = histogram_from_bytes(&short).unwrap_err().to_string();
        assert!(e.contains("shorter than a V2 header"), "{e}");
    }

    /// The input afl found (through a `StageEvent`): hdrhistogram negates
    /// a zero run of i64::MIN, a panic where overflow is checked.
    #[test]
    fn a_zero_run_of_i64_min_is_an_error_not_a_panic() {
        let mut h = new_latency_histogram();
        h.record(1_000).unwrap();
        let mut bytes = histogram_to_bytes(&h);
        // u64::MAX as the format's varint: eight continued bytes, then a
        // ninth taken whole.
        let run = [0xff; 9];
        bytes.extend(run);
        let payload = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) + 9;
        bytes[4..8].copy_from_slice(&payload.to_be_bytes());
        let e = histogram_from_bytes(&bytes).unwrap_err().to_string();
        assert!(e.contains("2^63 empty buckets"), "{e}");
        assert!(!runs_past_i64(&histogram_to_bytes(&h)[V2_HEADER_BYTES..]));
    }

    #[test]
    fn merge_of_wider_decoded_histogram_clamps() {
        let mut wide = Histogram::<u64>::new_with_bounds(1, LATENCY_HIGHEST_NS * 10, 3).unwrap();
        wide.record(LATENCY_HIGHEST_NS * 5).unwrap();
        wide.record(10).unwrap();
        let decoded = histogram_from_bytes(&histogram_to_bytes(&wide)).unwrap();
        let other = OpStats {
            count: 2,
            latency: decoded,
            ..OpStats::new()
        };
        let mut mine = OpStats::new();
        mine.merge(&other);
        assert_eq!(mine.latency.len(), 2);
        assert_eq!(mine.clamped, 1);
    }
}
