//! The Prometheus text exposition format (version 0.0.4), as both the
//! controller (`controller run --metrics-listen`) and a long-running agent
//! (`agent --metrics-listen`) serve it: the fixed latency buckets and the
//! error of a quantile over them, label escaping, families and histogram
//! lines, and the `/metrics` endpoint ([`http`]). Hand-written rather than
//! a client crate's registry: each side's figures already live in its own
//! structures, and the buckets must be the ones docs/metrics.md bounds.

pub mod http;
mod registry;

pub use registry::{Metrics, Progress};

use std::fmt::Write as _;
use std::sync::OnceLock;

use hdrhistogram::Histogram;

/// Something served at `/metrics`: its whole text, rendered per scrape.
pub trait Exposition: Send + Sync + 'static {
    fn render(&self) -> String;
}

/// Latency buckets per decade: a bucket's upper bound is 10^(1/20) =
/// 1.122 times its lower one, so a `histogram_quantile` estimate is within
/// 12.2% of the true value (both lie in the same bucket).
pub const BUCKETS_PER_DECADE: u32 = 20;
/// The first bucket's upper bound, 1 µs, as a power of ten of seconds:
/// a `file://` GET served from the page cache takes a few µs (p99 3.7 µs
/// measured here), so buckets from 10 µs would leave it all in the first
/// one, where a quantile is a guess between 0 and the bound.
const FIRST_BOUND_EXP: i32 = -6;
/// Finite buckets: 1 µs up to 10^1.8 s = 63.1 s, past 60 s.
pub const BUCKETS: usize = 157;

/// The buckets' upper bounds: the `le` label text and the bound in
/// nanoseconds, the same number (the text is rounded to 4 significant
/// digits and the bound taken from it, so what Prometheus reads is what
/// was counted against).
pub fn bounds() -> &'static [(String, u64)] {
    static BOUNDS: OnceLock<Vec<(String, u64)>> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        (0..BUCKETS)
            .map(|k| {
                let exp = FIRST_BOUND_EXP as f64 + k as f64 / BUCKETS_PER_DECADE as f64;
                let text = format!("{:.3e}", 10f64.powf(exp));
                let secs: f64 = text.parse().unwrap_or(f64::MAX);
                (text, (secs * 1e9).round() as u64)
            })
            .collect()
    })
}

/// A latency histogram in the fixed buckets: counts per bucket (not
/// cumulative; the last slot is past the last bound), sum and count.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    counts: Vec<u64>,
    sum_ns: u128,
    count: u64,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            counts: vec![0; BUCKETS + 1],
            sum_ns: 0,
            count: 0,
        }
    }
}

impl Buckets {
    /// Adds every value of an HDR histogram (in ns). An HDR bucket holds
    /// values equal to within its precision (0.1%); it is placed by its
    /// lowest value, so a sample exactly on a bound counts as `le` it,
    /// and one at most 0.1% past a bound may too. The sum takes each HDR
    /// bucket's middle value.
    pub fn add_hdr(&mut self, h: &Histogram<u64>) {
        let bounds = bounds();
        for v in h.iter_recorded() {
            let at = v.value_iterated_to();
            let n = v.count_at_value();
            let low = h.lowest_equivalent(at);
            let i = bounds.partition_point(|(_, b)| *b < low);
            self.counts[i] += n;
            self.count += n;
            self.sum_ns += h.median_equivalent(at) as u128 * n as u128;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A label value escaped as the exposition format wants: backslash,
/// double quote and line feed.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `{a="x",b="y"}` from pairs, values escaped.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// `# HELP` and `# TYPE` lines of a family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A float as the format writes it (Go's `strconv` forms for the
/// specials).
pub fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A histogram's `_bucket` (cumulative, `+Inf` = count), `_sum` (s) and
/// `_count` lines.
pub fn histogram(out: &mut String, name: &str, pairs: &[(&str, &str)], b: &Buckets) {
    let mut cumulative = 0;
    for ((le, _), n) in bounds().iter().zip(&b.counts) {
        cumulative += n;
        let mut with = pairs.to_vec();
        with.push(("le", le));
        let _ = writeln!(out, "{name}_bucket{} {cumulative}", labels(&with));
    }
    let mut with = pairs.to_vec();
    with.push(("le", "+Inf"));
    let _ = writeln!(out, "{name}_bucket{} {}", labels(&with), b.count);
    let l = labels(pairs);
    let _ = writeln!(out, "{name}_sum{l} {}", float(b.sum_ns as f64 / 1e9));
    let _ = writeln!(out, "{name}_count{l} {}", b.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log_spaced_from_1us_past_60s() {
        let b = bounds();
        assert_eq!(b.len(), BUCKETS);
        assert_eq!(b[0], ("1.000e-6".to_string(), 1_000));
        assert_eq!(b[BUCKETS_PER_DECADE as usize].1, 10_000);
        assert_eq!(b[3 * BUCKETS_PER_DECADE as usize].1, 1_000_000);
        assert!(b[BUCKETS - 1].1 >= 60_000_000_000, "{:?}", b[BUCKETS - 1]);
        assert!(b[BUCKETS - 2].1 < 60_000_000_000);
        // Each bound within 0.1% of 10^(1/20) times the one before: the
        // documented 12.2% bound on a quantile's error.
        for w in b.windows(2) {
            let ratio = w[1].1 as f64 / w[0].1 as f64;
            assert!((ratio / 10f64.powf(0.05) - 1.0).abs() < 1e-3, "{w:?}");
        }
    }
}
