//! Object size distributions: fixed, uniform, lognormal (clamped) and
//! weighted buckets.
//!
//! The size of object `index` is a pure function of (seed, index), so every
//! agent knows any object's size without asking the store: a GET can verify
//! it, a range GET can pick an offset inside it, and a PUT that rewrites an
//! object writes the same size again.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// How big objects are.
#[derive(Clone, Debug, PartialEq)]
pub enum SizeSpec {
    Fixed(u64),
    /// Uniform in `min..=max`.
    Uniform {
        min: u64,
        max: u64,
    },
    /// Lognormal with this mean and standard deviation (of the sizes, not
    /// of their logarithm), clamped to `min..=max`.
    Lognormal {
        mean: u64,
        stddev: u64,
        min: u64,
        max: u64,
    },
    /// Sizes drawn by weight.
    Buckets(Vec<(u64, u32)>),
}

impl SizeSpec {
    /// The size of object `index`.
    pub fn size_of(&self, seed: u64, index: u64) -> u64 {
        let rng = || {
            // A stream per object, independent of the payload streams.
            Xoshiro256PlusPlus::seed_from_u64(
                seed ^ 0x5157_e5e5_0000_0000 ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            )
        };
        match self {
            SizeSpec::Fixed(s) => *s,
            SizeSpec::Uniform { min, max } => {
                let span = max - min + 1;
                min + if span == 0 {
                    rng().next_u64()
                } else {
                    rng().next_u64() % span
                }
            }
            SizeSpec::Lognormal {
                mean,
                stddev,
                min,
                max,
            } => {
                let (m, sd) = (*mean as f64, (*stddev as f64).max(1.0));
                // Parameters of the underlying normal from the mean and
                // standard deviation of the lognormal itself.
                let sigma2 = (1.0 + (sd * sd) / (m * m)).ln();
                let mu = m.ln() - sigma2 / 2.0;
                let mut r = rng();
                let u1 = ((r.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                let u2 = ((r.next_u64() >> 11) as f64) / (1u64 << 53) as f64;
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let v = (mu + sigma2.sqrt() * z).exp();
                (v.round() as u64).clamp(*min, *max)
            }
            SizeSpec::Buckets(b) => {
                let total: u64 = b.iter().map(|&(_, w)| u64::from(w)).sum();
                let mut pick = rng().next_u64() % total.max(1);
                for &(size, w) in b {
                    if pick < u64::from(w) {
                        return size;
                    }
                    pick -= u64::from(w);
                }
                b.last().map_or(0, |&(s, _)| s)
            }
        }
    }

    /// The largest size this spec can give.
    pub fn max(&self) -> u64 {
        match self {
            SizeSpec::Fixed(s) => *s,
            SizeSpec::Uniform { max, .. } | SizeSpec::Lognormal { max, .. } => *max,
            SizeSpec::Buckets(b) => b.iter().map(|&(s, _)| s).max().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(spec: &SizeSpec, n: u64) -> Vec<u64> {
        (0..n).map(|i| spec.size_of(7, i)).collect()
    }

    #[test]
    fn deterministic_per_index() {
        let s = SizeSpec::Uniform { min: 1, max: 1000 };
        assert_eq!(sizes(&s, 100), sizes(&s, 100));
        assert_ne!(s.size_of(1, 5), s.size_of(2, 5));
    }

    #[test]
    fn uniform_stays_in_bounds_and_spreads() {
        let v = sizes(&SizeSpec::Uniform { min: 100, max: 199 }, 20_000);
        assert!(v.iter().all(|&s| (100..=199).contains(&s)));
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        assert!((mean - 149.5).abs() < 1.5, "{mean}");
    }

    #[test]
    fn lognormal_mean_and_clamp() {
        let spec = SizeSpec::Lognormal {
            mean: 1 << 20,
            stddev: 256 << 10,
            min: 4096,
            max: 4 << 20,
        };
        let v = sizes(&spec, 50_000);
        assert!(v.iter().all(|&s| (4096..=4 << 20).contains(&s)));
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        assert!(
            (mean / (1u64 << 20) as f64 - 1.0).abs() < 0.02,
            "mean {mean}"
        );
        let var = v.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        let sd = var.sqrt() / (256u64 << 10) as f64;
        assert!((sd - 1.0).abs() < 0.05, "stddev ratio {sd}");
    }

    #[test]
    fn buckets_follow_weights() {
        let spec = SizeSpec::Buckets(vec![(4096, 70), (1 << 20, 25), (64 << 20, 5)]);
        let v = sizes(&spec, 100_000);
        let share = |s: u64| v.iter().filter(|&&x| x == s).count() as f64 / v.len() as f64;
        assert!((share(4096) - 0.70).abs() < 0.01);
        assert!((share(1 << 20) - 0.25).abs() < 0.01);
        assert!((share(64 << 20) - 0.05).abs() < 0.01);
        assert_eq!(spec.max(), 64 << 20);
    }
}
