//! Sizes (`4KiB`, `1MB`) and durations (`30s`, `1m30s`) as written in plans.
//!
//! Parsing is exact: `1.5MiB` is accepted because it is a whole number of
//! bytes, `1.5B` is not, and nothing goes through floating point, so the
//! value a user writes is the value that runs. The `format_*` functions write
//! the shortest exact form, which parses back to the same value; that is what
//! keeps a "plan as run" equal to the plan that was loaded.

use std::time::Duration;

/// Size units, lower-cased, with their multipliers. Decimal units are powers
/// of 1000 and binary units powers of 1024, as everywhere in storage.
const SIZE_UNITS: [(&str, u64); 14] = [
    ("", 1),
    ("b", 1),
    ("k", 1000),
    ("kb", 1000),
    ("m", 1000 * 1000),
    ("mb", 1000 * 1000),
    ("g", 1000 * 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("t", 1000 * 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

const SIZE_UNIT_LIST: &str = "B, K/KB, M/MB, G/GB, T/TB, KiB, MiB, GiB, TiB";

/// Duration units with their length in nanoseconds, longest first: compound
/// durations must list them in this order.
const DURATION_UNITS: [(&str, u128); 7] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("µs", 1_000),
    ("ns", 1),
];

const DURATION_UNIT_LIST: &str = "h, m, s, ms, us, ns";

/// More significant digits than this cannot be exact in bytes or
/// nanoseconds anyway, and capping them keeps the arithmetic in `u128`.
const MAX_DIGITS: usize = 30;

/// A decimal number split into `mantissa / 10^scale`, e.g. `1.50` is
/// `(15, 1)`. Trailing fraction zeros are dropped so `scale` is minimal.
fn parse_decimal(num: &str) -> Option<(u128, u32)> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f.trim_end_matches('0')),
        None => (num, ""),
    };
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits_ok(int) || !digits_ok(frac) || num.ends_with('.') {
        return None;
    }
    let int = int.trim_start_matches('0');
    if int.len() + frac.len() > MAX_DIGITS {
        return None;
    }
    let mantissa: u128 = format!("{int}{frac}").parse().unwrap_or(0);
    Some((mantissa, frac.len() as u32))
}

/// `mantissa / 10^scale * mult` if that is a whole number.
fn scale_exact(mantissa: u128, scale: u32, mult: u128) -> Option<u128> {
    let total = mantissa.checked_mul(mult)?;
    let div = 10u128.pow(scale);
    (total % div == 0).then_some(total / div)
}

/// Splits `s` at the first character that cannot be part of a number.
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s.split_at(end)
}

/// Parses a size in bytes: a plain integer, or a number and a unit
/// (`4KiB`, `4 kib`, `1.5MiB`, `1GB`). Units are case-insensitive.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty size; expected e.g. 4096, 4KiB or 1MB".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("sizes cannot be negative, got `{s}`"));
    }
    let (num, unit) = split_number(s.strip_prefix('+').unwrap_or(s));
    let Some((mantissa, scale)) = parse_decimal(num) else {
        return Err(format!(
            "`{s}` is not a size; expected a number and a unit, e.g. 4KiB"
        ));
    };
    let unit_lower = unit.trim().to_ascii_lowercase();
    let Some(&(_, mult)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit_lower) else {
        return Err(format!(
            "unknown size unit `{}` in `{s}`; expected one of {SIZE_UNIT_LIST}",
            unit.trim()
        ));
    };
    let Some(bytes) = scale_exact(mantissa, scale, u128::from(mult)) else {
        return Err(format!("`{s}` is not a whole number of bytes"));
    };
    u64::try_from(bytes).map_err(|_| format!("size `{s}` is too large (more than 2^64-1 bytes)"))
}

/// Formats a byte count in the shortest exact form, using only binary units
/// (`4KiB`, `1MiB`) or plain bytes (`1000B`), so the result is never
/// ambiguous and [`parse_size`] gives back `bytes`.
pub fn format_size(bytes: u64) -> String {
    const BINARY: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    if bytes != 0 {
        for (unit, mult) in BINARY {
            if bytes.is_multiple_of(mult) {
                return format!("{}{unit}", bytes / mult);
            }
        }
    }
    format!("{bytes}B")
}

/// Parses a duration: one or more `<number><unit>` parts in decreasing unit
/// order (`500ms`, `30s`, `5m`, `2h`, `1m30s`, `1.5s`), or a plain number of
/// seconds (`30`). Units: h, m, s, ms, us (or µs), ns.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; expected e.g. 30s, 5m or 1m30s".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("durations cannot be negative, got `{s}`"));
    }
    let not_duration = || format!("`{s}` is not a duration; expected e.g. 500ms, 30s, 5m or 1m30s");
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut nanos: u128 = 0;
    // Index into DURATION_UNITS of the last unit used: later parts must use
    // strictly smaller units, which catches typos such as `1s1s` or `30s5m`.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let (num, after) = split_number(rest.trim_start());
        let Some((mantissa, scale)) = parse_decimal(num) else {
            return Err(not_duration());
        };
        let after = after.trim_start();
        let unit_end = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_end);
        let mult = if unit.is_empty() {
            // A bare number means seconds, but only on its own: `1m30` is
            // more likely a mistake than 1m30s.
            if last_unit.is_some() || !tail.trim().is_empty() {
                return Err(format!("missing unit after `{num}` in `{s}`"));
            }
            1_000_000_000
        } else {
            let Some(idx) = DURATION_UNITS.iter().position(|(u, _)| *u == unit) else {
                return Err(format!(
                    "unknown duration unit `{unit}` in `{s}`; expected one of {DURATION_UNIT_LIST}"
                ));
            };
            // `us` and `µs` share a rank.
            let rank = if idx >= 5 { idx - 1 } else { idx };
            if last_unit.is_some_and(|last| rank <= last) {
                return Err(format!(
                    "units in `{s}` must go from largest to smallest, each once (e.g. 1m30s)"
                ));
            }
            last_unit = Some(rank);
            DURATION_UNITS[idx].1
        };
        let Some(part) = scale_exact(mantissa, scale, mult) else {
            return Err(format!("`{s}` is not a whole number of nanoseconds"));
        };
        nanos = nanos
            .checked_add(part)
            .ok_or_else(|| format!("duration `{s}` is too large"))?;
        rest = tail.trim_start();
    }
    let secs =
        u64::try_from(nanos / 1_000_000_000).map_err(|_| format!("duration `{s}` is too large"))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Formats a duration exactly, as compound parts from hours down to
/// nanoseconds (`30s`, `1m30s`, `1s500ms`, `0s`); [`parse_duration`] gives
/// back the same value.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        let cases = [
            ("0", 0),
            ("4096", 4096),
            ("4096B", 4096),
            ("4k", 4000),
            ("4K", 4000),
            ("4KB", 4000),
            ("4kb", 4000),
            ("4KiB", 4096),
            ("4kib", 4096),
            ("4 KiB", 4096),
            (" 4KiB ", 4096),
            ("1.5MiB", 1536 * 1024),
            ("1.50MiB", 1536 * 1024),
            ("1MB", 1_000_000),
            ("2G", 2_000_000_000),
            ("1GiB", 1 << 30),
            ("3TB", 3_000_000_000_000),
            ("1TiB", 1 << 40),
            ("0.5KiB", 512),
            ("18446744073709551615", u64::MAX),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn sizes_reject() {
        let err = |t: &str| parse_size(t).unwrap_err();
        assert_eq!(err("-4KiB"), "sizes cannot be negative, got `-4KiB`");
        assert_eq!(err("1.5B"), "`1.5B` is not a whole number of bytes");
        assert_eq!(err("0.1KiB"), "`0.1KiB` is not a whole number of bytes");
        assert!(err("18446744073709551616").contains("too large"));
        assert!(err("16777216TiB").contains("too large"));
        assert!(err("4QB").starts_with("unknown size unit `QB` in `4QB`"));
        assert!(err("4 K B").starts_with("unknown size unit"));
        assert!(err("KiB").contains("is not a size"));
        assert!(err("1.").contains("is not a size"));
        assert!(err(".5K").contains("is not a size"));
        assert!(err("1..5K").contains("is not a size"));
        assert!(err("").starts_with("empty size"));
        assert!(err("1234567890123456789012345678901234567890").contains("is not a size"));
    }

    #[test]
    fn sizes_format_round_trip() {
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(1), "1B");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(4096), "4KiB");
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(1536 * 1024), "1536KiB");
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(5 << 40), "5TiB");
        for v in [
            0,
            1,
            999,
            1000,
            1024,
            4096,
            1 << 20,
            3 << 30,
            1 << 50,
            u64::MAX,
        ] {
            assert_eq!(parse_size(&format_size(v)), Ok(v), "{v}");
        }
    }

    #[test]
    fn durations_parse() {
        let ms = Duration::from_millis;
        let cases = [
            ("500ms", ms(500)),
            ("30s", ms(30_000)),
            ("5m", ms(300_000)),
            ("2h", ms(7_200_000)),
            ("1m30s", ms(90_000)),
            ("1m 30s", ms(90_000)),
            ("1.5s", ms(1500)),
            ("30", ms(30_000)),
            ("0", ms(0)),
            ("0s", ms(0)),
            ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
            ("250µs", Duration::from_micros(250)),
            ("1.5us", Duration::from_nanos(1500)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn durations_reject() {
        let err = |t: &str| parse_duration(t).unwrap_err();
        assert_eq!(err("-5s"), "durations cannot be negative, got `-5s`");
        assert!(err("5x").starts_with("unknown duration unit `x` in `5x`"));
        assert!(err("5S").starts_with("unknown duration unit `S`"));
        assert!(err("30s5m").contains("largest to smallest"));
        assert!(err("1s1s").contains("largest to smallest"));
        assert_eq!(err("1m30"), "missing unit after `30` in `1m30`");
        assert_eq!(err("1.5ns"), "`1.5ns` is not a whole number of nanoseconds");
        assert!(err("s").contains("is not a duration"));
        assert!(err("").starts_with("empty duration"));
        assert!(err("99999999999999999999h").contains("too large"));
    }

    #[test]
    fn durations_format_round_trip() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(
            format_duration(Duration::new(3723, 4_005_006)),
            "1h2m3s4ms5us6ns"
        );
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(1500),
            Duration::new(86_400, 999_999_999),
            Duration::MAX,
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
        }
    }
}
