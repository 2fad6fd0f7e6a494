//! Accumulators for `controller analyze`: counts, bytes and latency
//! histograms per key, and the rows they turn into.
//!
//! Per-op latencies use the summary's own histogram ([`OpStats`], 1 ns to
//! 1 h, 3 significant digits) so that `analyze` and `summary.json` agree to
//! the last digit. Breakdowns (per size bucket, agent, endpoint, segment)
//! use auto-resizing histograms, sized by the latencies actually seen, at
//! 3 digits for size buckets and 2 digits (1% precision) where there can be
//! many keys, so memory follows the number of keys, never of records.

use chorus_common::metrics::{LATENCY_HIGHEST_NS, LatencySummary, OpStats};
use hdrhistogram::Histogram;
use serde::Serialize;

const BYTES_PER_MIB: f64 = 1_048_576.0;

/// Significant digits of breakdowns with few keys (size buckets, TTFB).
pub const FINE_SIGFIG: u8 = 3;
/// Significant digits of breakdowns with possibly many keys (agents,
/// endpoints, segments).
pub const COARSE_SIGFIG: u8 = 2;

/// Upper bounds of the size buckets: powers of 4 from 4 KiB to 1 GiB; a
/// last bucket holds everything larger.
pub const SIZE_BOUNDS: [u64; 10] = [
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
    256 << 20,
    1 << 30,
];

/// The size bucket of an op that moved `bytes`.
pub fn size_bucket(bytes: u64) -> usize {
    SIZE_BOUNDS
        .iter()
        .position(|b| bytes < *b)
        .unwrap_or(SIZE_BOUNDS.len())
}

/// A size bucket's label: `<4KiB`, `4KiB-16KiB`, …, `>=1GiB`.
pub fn size_bucket_label(bucket: usize) -> String {
    let fmt = |b: u64| chorus_common::plan::format_size(b);
    match bucket {
        0 => format!("<{}", fmt(SIZE_BOUNDS[0])),
        b if b >= SIZE_BOUNDS.len() => format!(">={}", fmt(SIZE_BOUNDS[SIZE_BOUNDS.len() - 1])),
        b => format!("{}-{}", fmt(SIZE_BOUNDS[b - 1]), fmt(SIZE_BOUNDS[b])),
    }
}

/// The class of an error text: what comes before the first `:` (`timeout`
/// for `timeout: after 30 s`), the whole text when there is no colon.
pub fn error_class(error: &str) -> &str {
    error.split(':').next().unwrap_or(error).trim()
}

/// An auto-resizing latency histogram with `sigfig` digits.
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    // sigfig is one of the two constants above, which hdrhistogram accepts.
    Histogram::new(sigfig).expect("constant sigfig is valid")
}

/// Records `value_ns` (clamped to one hour) into an auto-resizing
/// histogram. `saturating_record` would clamp to the current size instead
/// of growing, so plain `record` is used; it only fails on values beyond
/// any histogram's reach, which the clamp rules out.
pub fn record(h: &mut Histogram<u64>, value_ns: u64) {
    let _ = h.record(value_ns.min(LATENCY_HIGHEST_NS));
}

/// Count, errors, bytes and latency of one breakdown key.
#[derive(Clone, Debug)]
pub struct Tally {
    pub count: u64,
    pub errors: u64,
    pub bytes: u64,
    /// Latencies of successful ops, ns, clamped to one hour like the summary.
    pub latency: Histogram<u64>,
}

impl Tally {
    pub fn new(sigfig: u8) -> Self {
        Tally {
            count: 0,
            errors: 0,
            bytes: 0,
            latency: histogram(sigfig),
        }
    }

    /// Records one op like [`OpStats::record`] does: failed ops count but
    /// add neither bytes nor latency.
    pub fn record(&mut self, latency_ns: u64, bytes: u64, ok: bool) {
        self.count += 1;
        if !ok {
            self.errors += 1;
            return;
        }
        self.bytes = self.bytes.saturating_add(bytes);
        record(&mut self.latency, latency_ns);
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Tally) {
        self.count += other.count;
        self.errors += other.errors;
        self.bytes = self.bytes.saturating_add(other.bytes);
        // Both auto-resize, so adding cannot run out of range.
        let _ = self.latency.add(&other.latency);
    }

    pub fn row(&self, key: &str, elapsed_s: f64) -> Row {
        Row::new(
            key,
            self.count,
            self.errors,
            self.bytes,
            &self.latency,
            elapsed_s,
        )
    }
}

/// One line of a breakdown table.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// What the row is about: an op, a size bucket, an agent, an endpoint.
    pub key: String,
    pub count: u64,
    pub errors: u64,
    pub bytes: u64,
    pub ops_per_s: f64,
    pub mib_per_s: f64,
    pub latency_us: LatencySummary,
    /// Objects a multi-object kind's successful ops removed
    /// (`DELETE_BATCH`'s `n_objects`), and how many a second.
    #[serde(skip_serializing_if = "is_zero")]
    pub objects: u64,
    #[serde(skip_serializing_if = "is_zero_f")]
    pub objects_per_s: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_f(n: &f64) -> bool {
    *n == 0.0
}

impl Row {
    pub fn new(
        key: &str,
        count: u64,
        errors: u64,
        bytes: u64,
        latency: &Histogram<u64>,
        elapsed_s: f64,
    ) -> Row {
        let rate = |x: f64| {
            if elapsed_s.is_finite() && elapsed_s > 0.0 {
                x / elapsed_s
            } else {
                0.0
            }
        };
        Row {
            key: key.to_string(),
            count,
            errors,
            bytes,
            ops_per_s: rate(count as f64),
            mib_per_s: rate(bytes as f64 / BYTES_PER_MIB),
            latency_us: LatencySummary::from_histogram(latency),
            objects: 0,
            objects_per_s: 0.0,
        }
    }

    /// A row of one op from the summary's own statistics.
    pub fn from_op_stats(key: &str, stats: &OpStats, elapsed_s: f64) -> Row {
        let mut row = Row::new(
            key,
            stats.count,
            stats.errors,
            stats.bytes,
            &stats.latency,
            elapsed_s,
        );
        if stats.objects > 0 && elapsed_s.is_finite() && elapsed_s > 0.0 {
            row.objects = stats.objects;
            row.objects_per_s = stats.objects as f64 / elapsed_s;
        }
        row
    }
}

/// Quantiles of the latency distribution curve: dense in the tail, where
/// the interesting part is.
pub const CURVE_QUANTILES: [f64; 17] = [
    0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999,
    0.999995, 0.999999, 1.0,
];

/// A point of the latency distribution: the quantile and its latency (µs).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct CurvePoint {
    pub quantile: f64,
    pub latency_us: f64,
}

/// The latency distribution curve of `h`, up to the quantile where fewer
/// than one op remains beyond it (then the max).
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<CurvePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let n = h.len() as f64;
    CURVE_QUANTILES
        .iter()
        .filter(|q| **q >= 1.0 || (1.0 - **q) * n >= 1.0)
        .map(|&q| CurvePoint {
            quantile: q,
            latency_us: if q >= 1.0 {
                h.max() as f64 / 1e3
            } else {
                h.value_at_quantile(q) as f64 / 1e3
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_buckets() {
        assert_eq!(size_bucket(0), 0);
        assert_eq!(size_bucket(4095), 0);
        assert_eq!(size_bucket(4096), 1);
        assert_eq!(size_bucket(16 << 10), 2);
        assert_eq!(size_bucket(u64::MAX), SIZE_BOUNDS.len());
        assert_eq!(size_bucket_label(0), "<4KiB");
        assert_eq!(size_bucket_label(1), "4KiB-16KiB");
        assert_eq!(size_bucket_label(SIZE_BOUNDS.len()), ">=1GiB");
    }

    #[test]
    fn error_classes() {
        assert_eq!(error_class("timeout: after 30 s"), "timeout");
        assert_eq!(error_class("odd"), "odd");
        assert_eq!(error_class("network: a: b"), "network");
    }

    #[test]
    fn tally_matches_op_stats_at_same_precision() {
        let mut t = Tally::new(FINE_SIGFIG);
        let mut s = OpStats::new();
        for i in 1..10_000u64 {
            let lat = i * 7_919 % 3_000_000;
            t.record(lat, i, i % 13 != 0);
            s.record(lat, i, i % 13 != 0);
        }
        let a = t.row("x", 2.0);
        let b = Row::from_op_stats("x", &s, 2.0);
        assert_eq!(a, b);
        let curve = percentile_curve(&s.latency);
        assert_eq!(curve.first().unwrap().quantile, 0.0);
        assert_eq!(curve.last().unwrap().quantile, 1.0);
        assert!(curve.windows(2).all(|w| w[0].latency_us <= w[1].latency_us));
    }
}
