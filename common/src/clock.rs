//! Wall-clock times, RFC 3339 formatting and parsing, and NTP-style clock
//! offsets between the controller and its agents.
//!
//! Every time Chorus stores is `i64` nanoseconds since the Unix epoch (UTC);
//! that covers the years 1677 to 2262. Op times are taken from the monotonic
//! clock and expressed as wall time through an [`Anchor`], so an NTP step
//! during a run cannot make an op end before it started.
//!
//! Op-logs hold one formatted time per column per record, so
//! [`format_rfc3339_ns`] is hand-written integer arithmetic (Howard
//! Hinnant's `civil_from_days`) writing into a caller's buffer, not chrono's
//! general formatter. It always writes nine fractional digits and `Z`, so
//! comparing two formatted times as strings gives their time order.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NS_PER_S: i64 = 1_000_000_000;
const S_PER_DAY: i64 = 86_400;
/// Length of `YYYY-MM-DDTHH:MM:SS.fffffffffZ`.
const RFC3339_NS_LEN: usize = 30;

/// Wall clock now, in nanoseconds since the Unix epoch. Saturates rather
/// than panicking on clocks set outside the `i64` range.
pub fn now_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        // A clock before 1970: negative time, still representable.
        Err(e) => i64::try_from(e.duration().as_nanos())
            .map(|n| -n)
            .unwrap_or(i64::MIN),
    }
}

/// A reading of the monotonic clock as integer nanoseconds: the clock
/// std's [`Instant`] reads on Linux (`CLOCK_MONOTONIC`), kept as one `i64`.
///
/// The workload engine takes an op's times as `Mono` and works on them as
/// integers. An `Instant` subtraction normalizes seconds and nanoseconds
/// and checks for overflow on every call, and converting one to wall time
/// takes two of them: about 150 instructions per op in all, 9% of the
/// engine's (callgrind, harness bench), against a few for `Mono`.
///
/// `Instant`s (tokio's timers, plan deadlines) convert to and from `Mono`
/// through one pairing of the two taken once per process, so conversions
/// are exact relative to each other; the pairing's own error (the time
/// between two clock reads) is a constant of a few tens of nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mono(i64);

impl Mono {
    /// Reads the monotonic clock.
    #[inline]
    pub fn now() -> Mono {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec. CLOCK_MONOTONIC
        // exists on every Linux, so the call cannot fail (EINVAL and
        // EFAULT are its only errors).
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Mono(
            ts.tv_sec
                .saturating_mul(NS_PER_S)
                .saturating_add(ts.tv_nsec),
        )
    }

    /// Nanoseconds from `earlier` to `self`; 0 when `earlier` is later.
    #[inline]
    pub fn ns_since(self, earlier: Mono) -> u64 {
        self.0.saturating_sub(earlier.0).max(0) as u64
    }

    /// `self` plus `d`, saturating.
    pub fn plus(self, d: Duration) -> Mono {
        Mono(
            self.0
                .saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        )
    }

    /// The same moment as `at`.
    pub fn from_instant(at: Instant) -> Mono {
        let (instant, mono) = *mono_pairing();
        let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        match at.checked_duration_since(instant) {
            Some(after) => Mono(mono.saturating_add(ns(after))),
            None => Mono(mono.saturating_sub(ns(instant.duration_since(at)))),
        }
    }

    /// The same moment as an [`Instant`] (the inverse of
    /// [`Mono::from_instant`]); `None` if it cannot be represented.
    pub fn to_instant(self) -> Option<Instant> {
        let (instant, mono) = *mono_pairing();
        let delta = self.0.checked_sub(mono)?;
        let d = Duration::from_nanos(delta.unsigned_abs());
        if delta >= 0 {
            instant.checked_add(d)
        } else {
            instant.checked_sub(d)
        }
    }
}

/// This process's one pairing of an [`Instant`] with a [`Mono`] reading:
/// the Instant read on both sides of the Mono and their midpoint used, from
/// the tightest of a few tries (a try the thread was interrupted in, or the
/// first one with its cold caches, brackets microseconds).
fn mono_pairing() -> &'static (Instant, i64) {
    static PAIRING: OnceLock<(Instant, i64)> = OnceLock::new();
    PAIRING.get_or_init(|| {
        let mut best: Option<(Duration, Instant, i64)> = None;
        for _ in 0..16 {
            let before = Instant::now();
            let mono = Mono::now();
            let after = Instant::now();
            let width = after - before;
            if best.is_none_or(|(w, _, _)| width < w) {
                best = Some((width, before + width / 2, mono.0));
            }
        }
        let (_, instant, mono) = best.expect("at least one try");
        (instant, mono)
    })
}

/// A pairing of one wall-clock reading with one monotonic reading, taken
/// together. Later monotonic instants are converted to wall time relative to
/// it, so times within a run never jump when the system clock is stepped.
#[derive(Clone, Copy, Debug)]
pub struct Anchor {
    wall_ns: i64,
    /// The monotonic reading paired with `wall_ns`.
    mono: Mono,
}

impl Anchor {
    pub fn now() -> Self {
        // Read the monotonic clock on both sides of the wall clock and use the
        // midpoint, so the pairing error is at most half the read time.
        let before = Instant::now();
        let wall_ns = now_ns();
        let after = Instant::now();
        let instant = before + (after - before) / 2;
        Self::from_parts(wall_ns, instant)
    }

    /// Builds an anchor from a known pairing (tests, or a wall time
    /// already corrected by a clock offset).
    pub fn from_parts(wall_ns: i64, instant: Instant) -> Self {
        Anchor {
            wall_ns,
            mono: Mono::from_instant(instant),
        }
    }

    /// The wall time at which the anchor was taken.
    pub fn anchor_wall_ns(&self) -> i64 {
        self.wall_ns
    }

    /// The wall time of `at`, measured on the monotonic clock from the anchor.
    pub fn wall_ns(&self, at: Instant) -> i64 {
        self.wall_ns_at(Mono::from_instant(at))
    }

    /// The wall time of `at`: one integer subtraction.
    #[inline]
    pub fn wall_ns_at(&self, at: Mono) -> i64 {
        self.wall_ns
            .saturating_add(at.0.saturating_sub(self.mono.0))
    }

    /// The wall time now, on the monotonic clock.
    pub fn now_ns(&self) -> i64 {
        self.wall_ns(Instant::now())
    }

    /// The monotonic instant of wall time `wall_ns` on this clock (the
    /// inverse of [`Anchor::wall_ns`]); `None` if the instant cannot be
    /// represented.
    pub fn instant_at(&self, wall_ns: i64) -> Option<Instant> {
        let delta = wall_ns.checked_sub(self.wall_ns)?;
        Mono(self.mono.0.checked_add(delta)?).to_instant()
    }
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic
/// Gregorian. Hinnant's algorithm: exact for every `i64` day count we can
/// get from nanoseconds.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01; the inverse of
/// [`civil_from_days`]. Callers check ranges first.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // 0..=399
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Fills `buf` with the low decimal digits of `value`, zero padded.
fn put_digits(buf: &mut [u8], mut value: u64) {
    for b in buf.iter_mut().rev() {
        *b = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Appends `ns` as `YYYY-MM-DDTHH:MM:SS.fffffffffZ` (UTC) to `out`.
pub fn format_rfc3339_ns(ns: i64, out: &mut String) {
    let secs = ns.div_euclid(NS_PER_S);
    let frac = ns.rem_euclid(NS_PER_S) as u64;
    let days = secs.div_euclid(S_PER_DAY);
    let sod = secs.rem_euclid(S_PER_DAY) as u64;
    let (year, month, day) = civil_from_days(days);

    // The i64 range is years 1677..=2262, always four digits, but keep the
    // arithmetic total anyway.
    let year = year.clamp(0, 9999) as u64;
    let mut buf = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(&mut buf[0..4], year);
    put_digits(&mut buf[5..7], u64::from(month));
    put_digits(&mut buf[8..10], u64::from(day));
    put_digits(&mut buf[11..13], sod / 3600);
    put_digits(&mut buf[14..16], (sod / 60) % 60);
    put_digits(&mut buf[17..19], sod % 60);
    put_digits(&mut buf[20..29], frac);
    debug_assert_eq!(buf.len(), RFC3339_NS_LEN);
    // Only ASCII digits and punctuation were written.
    out.push_str(std::str::from_utf8(&buf).unwrap_or("0000-00-00T00:00:00.000000000Z"));
}

/// `ns` as `YYYY-MM-DDTHH:MM:SS.fffffffffZ` (UTC).
pub fn rfc3339_ns(ns: i64) -> String {
    let mut s = String::with_capacity(RFC3339_NS_LEN);
    format_rfc3339_ns(ns, &mut s);
    s
}

/// Parses exactly `N` ASCII digits.
fn digits<const N: usize>(b: &[u8]) -> Option<u32> {
    if b.len() != N {
        return None;
    }
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses an RFC 3339 time to nanoseconds since the epoch:
/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM)`. `t`/`z` and a space
/// separator are accepted too (warp and s3dlio write Go's `RFC3339Nano`,
/// which trims trailing zeros and uses local offsets). Returns `None` for
/// anything else, including times outside the `i64` nanosecond range.
pub fn parse_rfc3339_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits::<4>(&b[0..4])?;
    let month = digits::<2>(&b[5..7])?;
    let day = digits::<2>(&b[8..10])?;
    let hour = digits::<2>(&b[11..13])?;
    let minute = digits::<2>(&b[14..16])?;
    let second = digits::<2>(&b[17..19])?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = i64::from(year);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut rest = &b[19..];
    let mut frac_ns: i64 = 0;
    if let Some((b'.', tail)) = rest.split_first() {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        for &c in &tail[..n] {
            frac_ns = frac_ns * 10 + i64::from(c - b'0');
        }
        for _ in n..9 {
            frac_ns *= 10;
        }
        rest = &tail[n..];
    }

    let offset_s: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits::<2>(&[*h1, *h2])?;
            let om = digits::<2>(&[*m1, *m2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };

    let days = days_from_civil(year, month, day);
    let secs = days * S_PER_DAY + i64::from(hour * 3600 + minute * 60 + second) - offset_s;
    // i128: near i64::MIN the whole seconds alone are out of range while
    // seconds plus fraction are not.
    i64::try_from(i128::from(secs) * i128::from(NS_PER_S) + i128::from(frac_ns)).ok()
}

/// One NTP-style exchange: the controller sends at `t1` (controller clock),
/// the agent receives at `t2` and replies at `t3` (agent clock), the
/// controller receives at `t4` (controller clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSample {
    pub t1_ns: i64,
    pub t2_ns: i64,
    pub t3_ns: i64,
    pub t4_ns: i64,
}

/// Clamps an i128 intermediate back to i64; only garbage input gets there.
fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl ClockSample {
    /// Agent clock minus controller clock, assuming symmetric paths.
    pub fn offset_ns(&self) -> i64 {
        // i128 so that nonsense samples cannot overflow.
        let (t1, t2, t3, t4) = (
            i128::from(self.t1_ns),
            i128::from(self.t2_ns),
            i128::from(self.t3_ns),
            i128::from(self.t4_ns),
        );
        clamp_i64(((t2 - t1) + (t3 - t4)) / 2)
    }

    /// Round trip time minus the agent's processing time.
    pub fn rtt_ns(&self) -> i64 {
        let (t1, t2, t3, t4) = (
            i128::from(self.t1_ns),
            i128::from(self.t2_ns),
            i128::from(self.t3_ns),
            i128::from(self.t4_ns),
        );
        clamp_i64((t4 - t1) - (t3 - t2))
    }
}

/// An agent's clock offset to the controller, from the best of many samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockEstimate {
    /// Agent clock minus controller clock.
    pub offset_ns: i64,
    /// Half the RTT of the best sample: the true offset lies within
    /// `offset_ns ± uncertainty_ns` whatever the path asymmetry.
    pub uncertainty_ns: i64,
    /// RTT of the best sample.
    pub rtt_ns: i64,
    /// Number of usable samples the estimate was chosen from.
    pub samples: u32,
    /// Controller time (`t4`) of the best sample.
    pub measured_at_ns: i64,
}

impl ClockEstimate {
    /// Keeps the minimum-RTT sample: the one least disturbed by queueing, so
    /// with the tightest bound on the offset. Samples with a negative RTT
    /// (the agent held the request longer than the whole round trip took,
    /// or a clock ran backwards) are impossible and skipped. `None` when no sample is usable.
    pub fn from_samples(samples: &[ClockSample]) -> Option<Self> {
        let usable = samples.iter().filter(|s| s.rtt_ns() >= 0);
        let count = u32::try_from(usable.clone().count()).unwrap_or(u32::MAX);
        let best = usable.min_by_key(|s| s.rtt_ns())?;
        let rtt_ns = best.rtt_ns();
        Some(ClockEstimate {
            offset_ns: best.offset_ns(),
            uncertainty_ns: rtt_ns / 2,
            rtt_ns,
            samples: count,
            measured_at_ns: best.t4_ns,
        })
    }

    /// Converts an agent-clock time to the controller clock.
    pub fn to_controller_ns(&self, agent_ns: i64) -> i64 {
        agent_ns.saturating_sub(self.offset_ns)
    }

    /// Converts a controller-clock time to the agent clock.
    pub fn to_agent_ns(&self, controller_ns: i64) -> i64 {
        controller_ns.saturating_add(self.offset_ns)
    }
}

/// How fast the agent clock gains on the controller clock between two
/// estimates, in parts per million (positive: the agent runs fast). Zero
/// when both were measured at the same instant.
pub fn drift_ppm(start: &ClockEstimate, end: &ClockEstimate) -> f64 {
    let elapsed_ns = end.measured_at_ns as f64 - start.measured_at_ns as f64;
    if elapsed_ns == 0.0 {
        return 0.0;
    }
    (end.offset_ns as f64 - start.offset_ns as f64) / elapsed_ns * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat, Utc};

    fn chrono_fmt(ns: i64) -> String {
        DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Nanos, true)
    }

    /// A small deterministic generator so the test needs no extra crates.
    fn next(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 11 ^ *state
    }

    #[test]
    fn format_matches_chrono() {
        let mut values = vec![
            0,
            -1,
            1,
            NS_PER_S - 1,
            -NS_PER_S,
            i64::MIN,
            i64::MAX,
            951_782_400 * NS_PER_S,    // 2000-02-29
            -2_203_891_200 * NS_PER_S, // 1900-03-01
            1_795_471_005 * NS_PER_S + 123_456_789,
        ];
        let mut st = 42u64;
        for _ in 0..20_000 {
            values.push(next(&mut st) as i64);
        }
        // Every day around leap days in 1896..2104, at several times of day.
        let mut day = days_from_civil(1896, 1, 1);
        while day < days_from_civil(2104, 12, 31) {
            for sod_ns in [0, 1, 43_199_999_999_999, 86_399_999_999_999] {
                values.push(day * S_PER_DAY * NS_PER_S + sod_ns);
            }
            day += 1;
        }
        let mut s = String::new();
        for v in values {
            s.clear();
            format_rfc3339_ns(v, &mut s);
            assert_eq!(s, chrono_fmt(v), "ns = {v}");
            assert_eq!(s.len(), RFC3339_NS_LEN);
            assert_eq!(parse_rfc3339_ns(&s), Some(v), "{s}");
        }
    }

    #[test]
    fn lexicographic_order_is_time_order() {
        let mut st = 7u64;
        let mut vals: Vec<i64> = (0..2000).map(|_| next(&mut st) as i64).collect();
        vals.sort();
        let strs: Vec<String> = vals.iter().map(|&v| rfc3339_ns(v)).collect();
        assert!(strs.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn parse_variants() {
        let base = parse_rfc3339_ns("2026-11-23T21:56:45Z").unwrap();
        assert_eq!(base, 1_795_471_005 * NS_PER_S);
        assert_eq!(
            parse_rfc3339_ns("2026-11-23T21:56:45.1Z"),
            Some(base + 100_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-11-23T21:56:45.123456789Z"),
            Some(base + 123_456_789)
        );
        assert_eq!(parse_rfc3339_ns("2026-11-23T22:56:45+01:00"), Some(base));
        assert_eq!(parse_rfc3339_ns("2026-11-23T21:56:45+00:00"), Some(base));
        assert_eq!(
            parse_rfc3339_ns("2026-11-23T16:26:45.5-05:30"),
            Some(base + 500_000_000)
        );
        assert_eq!(parse_rfc3339_ns("2026-11-23 21:56:45z"), Some(base));
        assert_eq!(parse_rfc3339_ns("1969-12-31T23:59:59.999999999Z"), Some(-1));
        // Against chrono for offsets and short fractions.
        for s in [
            "2024-02-29T00:00:00.000001+14:00",
            "1900-01-01T12:00:00.5-11:59",
            "2262-04-11T23:47:16.854775807Z",
        ] {
            let want = DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_nanos_opt();
            assert_eq!(parse_rfc3339_ns(s), want, "{s}");
        }
        for bad in [
            "",
            "2026-11-23",
            "2026-11-23T21:56:45",
            "2026-11-23T21:56:45.Z",
            "2026-11-23T21:56:45.1234567890Z",
            "2026-13-23T21:56:45Z",
            "2025-02-29T21:56:45Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T21:56:45+0100",
            "2026-11-23T21:56:45Zjunk",
            "2026/11/23T21:56:45Z",
            "2026-11-23T21:56:45+01:60",
            "0001-01-01T00:00:00Z", // Go's zero time: outside the i64 range
            "2026-11-23T21:56:4éZ",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn anchor_follows_monotonic_clock() {
        let i0 = Instant::now();
        let a = Anchor::from_parts(1_000_000_000, i0);
        assert_eq!(a.wall_ns(i0), 1_000_000_000);
        let later = i0 + std::time::Duration::from_millis(5);
        assert_eq!(a.wall_ns(later), 1_005_000_000);
        if let Some(earlier) = i0.checked_sub(std::time::Duration::from_millis(3)) {
            assert_eq!(a.wall_ns(earlier), 997_000_000);
        }
        let live = Anchor::now();
        assert!((live.now_ns() - now_ns()).abs() < 1_000_000_000);
        // And back: the instant of a wall time, both sides of the anchor.
        assert_eq!(a.instant_at(1_005_000_000), Some(later));
        assert_eq!(a.instant_at(1_000_000_000), Some(i0));
        if let Some(earlier) = i0.checked_sub(std::time::Duration::from_millis(3)) {
            assert_eq!(a.instant_at(997_000_000), Some(earlier));
        }
        assert_eq!(a.instant_at(i64::MIN), None, "i64::MIN - 1e9 overflows");
    }

    #[test]
    fn mono_is_the_instants_clock_as_integers() {
        use std::time::Duration;
        // The same clock as Instant: a Mono read between two Instants
        // converts to a moment between them (give or take the pairing's
        // error, bounded here by a generous microsecond).
        for _ in 0..100 {
            let before = Instant::now();
            let m = Mono::now();
            let after = Instant::now();
            let lo = Mono::from_instant(before).0 - 1_000;
            let hi = Mono::from_instant(after).0 + 1_000;
            assert!((lo..=hi).contains(&m.0), "{lo} <= {} <= {hi}", m.0);
        }
        // Arithmetic, and saturation at 0 for a later `earlier`.
        let a = Mono::now();
        let b = a.plus(Duration::from_micros(1500));
        assert_eq!(b.ns_since(a), 1_500_000);
        assert_eq!(a.ns_since(b), 0);
        // Round trips, both sides of the pairing.
        let i = Instant::now();
        for d in [Duration::ZERO, Duration::from_millis(5)] {
            assert_eq!(Mono::from_instant(i + d).to_instant(), Some(i + d));
            if let Some(earlier) = i.checked_sub(d) {
                assert_eq!(Mono::from_instant(earlier).to_instant(), Some(earlier));
            }
        }
        assert_eq!(Mono(i64::MAX).plus(Duration::from_secs(1)), Mono(i64::MAX));
    }

    #[test]
    fn anchor_gives_the_same_wall_time_for_a_mono_as_for_its_instant() {
        let i0 = Instant::now();
        let a = Anchor::from_parts(1_000_000_000, i0);
        let later = i0 + std::time::Duration::from_nanos(5_000_123);
        assert_eq!(a.wall_ns_at(Mono::from_instant(i0)), 1_000_000_000);
        assert_eq!(a.wall_ns_at(Mono::from_instant(later)), a.wall_ns(later));
        if let Some(earlier) = i0.checked_sub(std::time::Duration::from_millis(3)) {
            assert_eq!(a.wall_ns_at(Mono::from_instant(earlier)), 997_000_000);
        }
        // A live anchor against a live reading: the wall clock's now.
        let live = Anchor::now();
        assert!((live.wall_ns_at(Mono::now()) - now_ns()).abs() < 1_000_000_000);
    }

    #[test]
    fn clock_estimate_picks_min_rtt() {
        // Agent runs 5 ms ahead; one-way delays vary; agent takes 100 µs.
        let offset = 5_000_000i64;
        let mk = |t1: i64, up: i64, down: i64| {
            let t2 = t1 + up + offset;
            let t3 = t2 + 100_000;
            let t4 = t3 - offset + down;
            ClockSample {
                t1_ns: t1,
                t2_ns: t2,
                t3_ns: t3,
                t4_ns: t4,
            }
        };
        let samples = [
            mk(1_000_000_000, 900_000, 300_000),
            mk(2_000_000_000, 200_000, 200_000), // symmetric and fastest
            mk(3_000_000_000, 250_000, 2_000_000),
            // Impossible: the agent held it longer than the round trip took.
            ClockSample {
                t1_ns: 0,
                t2_ns: 10,
                t3_ns: 1_000,
                t4_ns: 1,
            },
        ];
        assert_eq!(samples[1].rtt_ns(), 400_000);
        assert_eq!(samples[1].offset_ns(), offset);
        assert_eq!(samples[0].offset_ns(), offset + 300_000);
        let est = ClockEstimate::from_samples(&samples).unwrap();
        assert_eq!(est.offset_ns, offset);
        assert_eq!(est.rtt_ns, 400_000);
        assert_eq!(est.uncertainty_ns, 200_000);
        assert_eq!(est.samples, 3);
        assert_eq!(est.measured_at_ns, samples[1].t4_ns);
        assert_eq!(est.to_controller_ns(offset + 7), 7);
        assert_eq!(est.to_agent_ns(7), offset + 7);
        assert!(ClockEstimate::from_samples(&[]).is_none());

        // Garbage never panics.
        let g = ClockSample {
            t1_ns: i64::MIN,
            t2_ns: i64::MAX,
            t3_ns: i64::MIN,
            t4_ns: i64::MAX,
        };
        let _ = (g.offset_ns(), g.rtt_ns());

        let json = serde_json::to_string(&est).unwrap();
        assert_eq!(serde_json::from_str::<ClockEstimate>(&json).unwrap(), est);
    }

    #[test]
    fn drift() {
        let start = ClockEstimate {
            offset_ns: 1_000_000,
            uncertainty_ns: 10,
            rtt_ns: 20,
            samples: 8,
            measured_at_ns: 0,
        };
        // 100 s later the agent has gained 2 ms: 20 ppm.
        let end = ClockEstimate {
            offset_ns: 3_000_000,
            measured_at_ns: 100 * NS_PER_S,
            ..start
        };
        assert!((drift_ppm(&start, &end) - 20.0).abs() < 1e-9);
        assert_eq!(drift_ppm(&start, &start), 0.0);
    }
}
