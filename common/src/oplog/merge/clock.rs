//! The clock correction of one input: how far the agent's clock was ahead
//! of the reference (controller) clock, as a function of the agent's own
//! time.
//!
//! The controller measures each agent's offset before every stage and at
//! the end of the run, so a stage's log has a measurement at its start and
//! one at its end. A clock that runs fast or slow (drift, typically a few
//! ppm, up to ~100 ppm on a bad oscillator: 0.36 ms per hour at 0.1 ppm,
//! 360 ms at 100 ppm) makes the two differ; between them the offset is
//! interpolated linearly, by the op's raw (agent clock) start.

/// Agent clock minus reference clock, by raw (agent clock) time: constant,
/// or linear between two measurements.
///
/// Outside the measured span the offset is *clamped* to the nearest
/// measurement, not extrapolated: a stage's ops lie between its two
/// measurements (taken before it starts and after it ends), so only a few
/// ops at the edges fall outside, by little; and a slope from two
/// measurements close together (a short stage, each measurement ± its
/// uncertainty) extrapolated far would move times by more than the drift
/// it corrects. Clamped, the offset is always one that was measured or
/// between two that were.
///
/// Build it with [`ClockCorrection::constant`] or
/// [`ClockCorrection::between`]; [`ClockCorrection::offset_at`] gives the
/// offset for a raw time (subtract it to correct the time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockCorrection {
    /// Raw time of the first measurement and the offset measured then.
    from_ns: i64,
    from_offset: i64,
    /// The second; `to_ns >= from_ns`. Equal to the first when constant.
    to_ns: i64,
    to_offset: i64,
}

impl Default for ClockCorrection {
    fn default() -> Self {
        ClockCorrection::NONE
    }
}

impl ClockCorrection {
    /// No correction: the log is in the reference clock already.
    pub const NONE: ClockCorrection = ClockCorrection::constant(0);

    /// The same offset for every time (one measurement, or no drift).
    pub const fn constant(offset_ns: i64) -> Self {
        ClockCorrection {
            from_ns: 0,
            from_offset: offset_ns,
            to_ns: 0,
            to_offset: offset_ns,
        }
    }

    /// Linear between two measurements, each `(raw_at_ns, offset_ns)`: the
    /// agent's clock reading when the offset was measured (the controller's
    /// time plus the offset; the difference is negligible), and the offset.
    /// In either order. Two measurements at the same time: their mean.
    pub fn between(a: (i64, i64), b: (i64, i64)) -> Self {
        let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
        if first.0 == second.0 {
            let mean = (i128::from(first.1) + i128::from(second.1)).div_euclid(2);
            return ClockCorrection::constant(mean as i64);
        }
        ClockCorrection {
            from_ns: first.0,
            from_offset: first.1,
            to_ns: second.0,
            to_offset: second.1,
        }
    }

    /// The same offset for every time: no per-op computation needed.
    #[inline]
    pub fn is_constant(&self) -> bool {
        self.from_offset == self.to_offset
    }

    /// Agent clock minus reference clock at raw (agent clock) time
    /// `raw_ns`: the offset to subtract from it. Exact integer math (i128,
    /// rounded toward the first measurement's offset); the result is
    /// always between the two measured offsets, so it cannot overflow.
    #[inline]
    pub fn offset_at(&self, raw_ns: i64) -> i64 {
        if self.is_constant() || raw_ns <= self.from_ns {
            return self.from_offset;
        }
        if raw_ns >= self.to_ns {
            return self.to_offset;
        }
        // Magnitudes as u128: each below 2^64, so their product fits
        // (as i128 it would not, at the extremes); elapsed < span, so the
        // quotient is below |change| and the result between the offsets.
        let change = i128::from(self.to_offset) - i128::from(self.from_offset);
        let elapsed = (i128::from(raw_ns) - i128::from(self.from_ns)) as u128;
        let span = (i128::from(self.to_ns) - i128::from(self.from_ns)) as u128;
        let step = (change.unsigned_abs() * elapsed / span) as i128;
        let step = if change < 0 { -step } else { step };
        (i128::from(self.from_offset) + step) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::ClockCorrection;

    #[test]
    fn constant_is_the_same_everywhere() {
        let c = ClockCorrection::constant(-7);
        assert!(c.is_constant());
        for t in [i64::MIN, -1, 0, 1, i64::MAX] {
            assert_eq!(c.offset_at(t), -7);
        }
        assert_eq!(ClockCorrection::default(), ClockCorrection::NONE);
        assert_eq!(ClockCorrection::NONE.offset_at(123), 0);
    }

    #[test]
    fn interpolates_in_both_directions_and_clamps_outside() {
        let s = 1_000_000_000i64;
        // Agent clock 10 ms ahead at 100 s, 10.05 ms at 200 s: +500 ppb.
        let fast = ClockCorrection::between((100 * s, 10_000_000), (200 * s, 10_050_000));
        assert!(!fast.is_constant());
        assert_eq!(fast.offset_at(100 * s), 10_000_000);
        assert_eq!(fast.offset_at(150 * s), 10_025_000);
        assert_eq!(fast.offset_at(110 * s), 10_005_000);
        assert_eq!(fast.offset_at(200 * s), 10_050_000);
        // Clamped before and after.
        assert_eq!(fast.offset_at(0), 10_000_000);
        assert_eq!(fast.offset_at(300 * s), 10_050_000);
        // A slow clock, behind and falling further: offsets negative.
        let slow = ClockCorrection::between((200 * s, -4_000_000), (100 * s, -3_000_000));
        assert_eq!(slow.offset_at(100 * s), -3_000_000);
        assert_eq!(slow.offset_at(125 * s), -3_250_000);
        assert_eq!(slow.offset_at(200 * s), -4_000_000);
        assert_eq!(slow.offset_at(250 * s), -4_000_000);
        // Order of the measurements does not matter.
        assert_eq!(
            slow,
            ClockCorrection::between((100 * s, -3_000_000), (200 * s, -4_000_000))
        );
        // Rounds toward the first offset, never past the second.
        let c = ClockCorrection::between((0, 0), (3, 1));
        assert_eq!([0, 1, 2, 3].map(|t| c.offset_at(t)), [0, 0, 0, 1]);
        let c = ClockCorrection::between((0, 0), (3, -1));
        assert_eq!([0, 1, 2, 3].map(|t| c.offset_at(t)), [0, 0, 0, -1]);
        // Same time twice: the mean.
        assert_eq!(
            ClockCorrection::between((5, 10), (5, 20)),
            ClockCorrection::constant(15)
        );
    }

    #[test]
    fn extremes_do_not_overflow() {
        let c = ClockCorrection::between((i64::MIN, i64::MIN), (i64::MAX, i64::MAX));
        assert_eq!(c.offset_at(i64::MIN), i64::MIN);
        assert_eq!(c.offset_at(i64::MAX), i64::MAX);
        assert_eq!(c.offset_at(0), 0);
        assert_eq!(c.offset_at(-1), -1);
        let c = ClockCorrection::between((i64::MIN, i64::MAX), (i64::MAX, i64::MIN));
        assert_eq!(c.offset_at(i64::MIN), i64::MAX);
        assert_eq!(c.offset_at(i64::MAX), i64::MIN);
        // 2^63 - 1 less 2^63 (exactly half the change).
        assert_eq!(c.offset_at(0), -1);
        // Next to the ends: the product of the magnitudes is near 2^128.
        assert_eq!(c.offset_at(i64::MAX - 1), i64::MIN + 1);
        let up = ClockCorrection::between((i64::MIN, i64::MIN), (i64::MAX, i64::MAX));
        assert_eq!(up.offset_at(i64::MAX - 1), i64::MAX - 1);
        assert_eq!(up.offset_at(i64::MIN + 1), i64::MIN + 1);
        assert_eq!(
            ClockCorrection::between((0, i64::MAX), (0, i64::MAX)).offset_at(0),
            i64::MAX
        );
        assert_eq!(
            ClockCorrection::between((0, i64::MIN), (0, i64::MAX)).offset_at(0),
            -1
        );
    }
}
