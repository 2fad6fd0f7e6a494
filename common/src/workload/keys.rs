//! Which objects exist, and how ops pick one.
//!
//! An agent keeps one [`KeyState`] per key space for its whole session: a
//! bit per key for "exists" and one for "this run created it", filled by a
//! prepare stage or by one listing (once per agent, never per worker), and
//! kept current by the agent's own PUTs and DELETEs. Reads pick keys that
//! exist; cleanup deletes what the run created.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::existing::ExistingIndex;
use super::versions::VersionBook;
use crate::plan::{KeyDistribution, KeySpace, Partition};
use crate::store::buckets::MAX_BUCKETS;

/// Draws a read op makes looking for an existing key before it settles for
/// a missing one (and records the NotFound that follows honestly).
const MAX_DRAWS: u32 = 64;

/// A bit per key.
#[derive(Debug)]
struct Bits(Vec<AtomicU64>);

impl Bits {
    fn new(count: u64) -> Bits {
        Bits((0..count.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
    }

    fn get(&self, i: u64) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
    }

    fn set(&self, i: u64, on: bool) {
        if let Some(w) = self.0.get((i / 64) as usize) {
            if on {
                w.fetch_or(1 << (i % 64), Ordering::Relaxed);
            } else {
                w.fetch_and(!(1 << (i % 64)), Ordering::Relaxed);
            }
        }
    }

    fn ones(&self) -> u64 {
        self.0
            .iter()
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum()
    }
}

/// What this agent knows of a key space's objects.
#[derive(Debug)]
pub struct KeyState {
    count: u64,
    present: Bits,
    created: Bits,
    /// Objects that were there before the run touched the key space: a
    /// cleanup leaves them alone.
    preexisting: Bits,
    /// Keys whose side objects exist: a `copy`'s destination
    /// (`<key>.copy`) and an `append`'s object (`<key>.append`), which a
    /// cleanup removes too.
    copied: Bits,
    appended: Bits,
    /// Versions the agent's puts made (`versioning: true`).
    versions: VersionBook,
    /// An existing key space's listed objects (`count` is then 0).
    existing: Option<Arc<ExistingIndex>>,
    /// Buckets of a `buckets: N` stage that this agent created while
    /// readying the store for a prepare (each name once, at most
    /// [`MAX_BUCKETS`]): the ones its cleanup removes, as Chorus removes
    /// only what it made. Store instances are per stage; this outlives
    /// them.
    buckets_made: Mutex<Vec<String>>,
}

impl KeyState {
    /// A key space of `count` keys, none known to exist.
    pub fn new(count: u64) -> KeyState {
        KeyState {
            count,
            present: Bits::new(count),
            created: Bits::new(count),
            preexisting: Bits::new(count),
            copied: Bits::new(count),
            appended: Bits::new(count),
            versions: VersionBook::default(),
            existing: None,
            buckets_made: Mutex::new(Vec::new()),
        }
    }

    /// The state of an existing key space: the objects its listing found.
    pub fn listed(index: Arc<ExistingIndex>) -> KeyState {
        KeyState {
            existing: Some(index),
            ..KeyState::new(0)
        }
    }

    /// The listed objects of an existing key space.
    pub fn existing(&self) -> Option<&Arc<ExistingIndex>> {
        self.existing.as_ref()
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_present(&self, i: u64) -> bool {
        self.present.get(i)
    }

    pub fn is_created(&self, i: u64) -> bool {
        self.created.get(i)
    }

    pub fn set_present(&self, i: u64, on: bool) {
        self.present.set(i, on);
    }

    /// A successful write by this run.
    pub fn set_created(&self, i: u64) {
        self.present.set(i, true);
        self.created.set(i, true);
    }

    pub fn is_preexisting(&self, i: u64) -> bool {
        self.preexisting.get(i)
    }

    /// Marks every object known to exist now as having been there before
    /// the run: called on the session's first look at a key space.
    pub fn mark_present_as_preexisting(&self) {
        for (p, e) in self.present.0.iter().zip(&self.preexisting.0) {
            e.fetch_or(p.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Takes `other`'s record of what was there before the run.
    pub fn copy_preexisting(&self, other: &KeyState) {
        for (mine, theirs) in self.preexisting.0.iter().zip(&other.preexisting.0) {
            mine.store(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Adds what `other` (a listing) found present to what this state
    /// knows exists.
    pub fn add_present(&self, other: &KeyState) {
        for (mine, theirs) in self.present.0.iter().zip(&other.present.0) {
            mine.fetch_or(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Whether key `i`'s side object `side` exists.
    pub fn has_side(&self, i: u64, side: Side) -> bool {
        self.side_bits(side).get(i)
    }

    pub fn set_side(&self, i: u64, side: Side, on: bool) {
        self.side_bits(side).set(i, on);
    }

    /// Whether any key has a side object.
    pub fn has_sides(&self) -> bool {
        self.copied.ones() + self.appended.ones() > 0
    }

    fn side_bits(&self, side: Side) -> &Bits {
        match side {
            Side::Copy => &self.copied,
            Side::Append => &self.appended,
        }
    }

    fn made(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.buckets_made.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes buckets this agent created (each once; past [`MAX_BUCKETS`]
    /// names, the rest are not kept).
    pub fn note_buckets_made(&self, names: impl IntoIterator<Item = String>) {
        let mut made = self.made();
        for name in names {
            if made.len() >= MAX_BUCKETS as usize {
                break;
            }
            if !made.contains(&name) {
                made.push(name);
            }
        }
    }

    /// The buckets this agent created, not yet removed.
    pub fn buckets_made(&self) -> Vec<String> {
        self.made().clone()
    }

    /// Forgets `names` (removed, or given up on).
    pub fn forget_buckets_made(&self, names: &[String]) {
        self.made().retain(|n| !names.contains(n));
    }

    /// The versions this agent's puts made.
    pub fn versions(&self) -> &VersionBook {
        &self.versions
    }

    pub fn present_count(&self) -> u64 {
        self.present.ones()
    }

    pub fn created_count(&self) -> u64 {
        self.created.ones()
    }
}

/// An object beside a key-space object, made by an op on it: it has its
/// own key (`<key>.copy`, `<key>.append`) so the key's bytes stay what
/// the generator makes (a verified GET of the key stays right), and an
/// Azure append blob never meets a block blob's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Copy,
    Append,
}

impl Side {
    pub const ALL: [Side; 2] = [Side::Copy, Side::Append];

    fn suffix(self) -> &'static str {
        match self {
            Side::Copy => crate::store::api::COPY_SUFFIX,
            Side::Append => crate::store::api::APPEND_SUFFIX,
        }
    }

    /// The side object's key for `key`.
    pub fn key(self, key: &str) -> String {
        let mut k = String::with_capacity(key.len() + 7);
        k.push_str(key);
        k.push_str(self.suffix());
        k
    }

    /// The key-space key a side object's key belongs to, and which side.
    pub fn parse(key: &str) -> Option<(&str, Side)> {
        Side::ALL
            .into_iter()
            .find_map(|s| key.strip_suffix(s.suffix()).map(|k| (k, s)))
    }
}

/// How one agent picks keys in a workload stage.
#[derive(Debug)]
pub struct KeyPicker {
    count: u64,
    /// Keys this agent may touch are `offset + j * stride` for j in
    /// `0..domain`.
    offset: u64,
    stride: u64,
    domain: u64,
    zipf: Option<Zipf>,
}

impl KeyPicker {
    pub fn new(space: &KeySpace, agent_index: u32, agent_count: u32) -> KeyPicker {
        let (offset, stride, domain) = match space.partition {
            Partition::Shared => (0, 1, space.count),
            Partition::Agent => {
                let n = u64::from(agent_count.max(1));
                let i = u64::from(agent_index);
                (i, n, space.count / n + u64::from(i < space.count % n))
            }
        };
        let zipf = match space.distribution {
            KeyDistribution::Uniform => None,
            KeyDistribution::Zipf(s) => Some(Zipf::new(domain.max(1), s)),
        };
        KeyPicker {
            count: space.count,
            offset,
            stride,
            domain,
            zipf,
        }
    }

    /// Any key this agent may touch (for writes).
    pub fn any(&self, rng: &mut Xoshiro256PlusPlus) -> u64 {
        let j = match &self.zipf {
            // Rank 1 is the hottest: key 0 of the domain.
            Some(z) => z.sample(rng) - 1,
            None => rng.next_u64() % self.domain.max(1),
        };
        (self.offset + j * self.stride).min(self.count.saturating_sub(1))
    }

    /// A key that exists, as far as this agent knows; after [`MAX_DRAWS`]
    /// misses, the last one drawn.
    pub fn existing(&self, rng: &mut Xoshiro256PlusPlus, state: &KeyState) -> u64 {
        let mut k = self.any(rng);
        for _ in 1..MAX_DRAWS {
            if state.is_present(k) {
                break;
            }
            k = self.any(rng);
        }
        k
    }
}

/// A uniform draw in `[0, 1)`.
pub fn unit(rng: &mut Xoshiro256PlusPlus) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Zipf over ranks `1..=n` with exponent `s`, by rejection-inversion
/// (Hörmann and Derflinger), so no table proportional to `n` is needed.
#[derive(Debug)]
struct Zipf {
    s: f64,
    t: f64,
    q: f64,
    n: f64,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let n = n as f64;
        let q = if s != 1.0 { 1.0 / (1.0 - s) } else { 0.0 };
        let t = if s != 1.0 {
            (n.powf(1.0 - s) - s) * q
        } else {
            1.0 + n.ln()
        };
        Zipf { s, t, q, n }
    }

    fn inv_cdf(&self, p: f64) -> f64 {
        let pt = p * self.t;
        if pt <= 1.0 {
            pt
        } else if self.s != 1.0 {
            (pt * (1.0 - self.s) + self.s).powf(self.q)
        } else {
            (pt - 1.0).exp()
        }
    }

    fn sample(&self, rng: &mut Xoshiro256PlusPlus) -> u64 {
        loop {
            let inv_b = self.inv_cdf(unit(rng));
            let x = (inv_b + 1.0).floor();
            let mut ratio = x.powf(-self.s);
            if x > 1.0 {
                ratio *= inv_b.powf(self.s);
            }
            if unit(rng) < ratio {
                return (x as u64).clamp(1, self.n as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::SizeSpec;
    use rand::SeedableRng;

    fn space(count: u64, distribution: KeyDistribution, partition: Partition) -> KeySpace {
        KeySpace {
            prefix: "k/".into(),
            count,
            size: SizeSpec::Fixed(1),
            naming: Default::default(),
            distribution,
            partition,
            existing: None,
        }
    }

    #[test]
    fn agent_partition_touches_only_its_slice() {
        let s = space(100, KeyDistribution::Uniform, Partition::Agent);
        let p = KeyPicker::new(&s, 1, 3);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let picks: Vec<u64> = (0..10_000).map(|_| p.any(&mut rng)).collect();
        assert!(picks.iter().all(|k| k % 3 == 1 && *k < 100));
        let distinct: std::collections::BTreeSet<_> = picks.into_iter().collect();
        assert_eq!(distinct.len(), 33, "every key of the slice is reached");
    }

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let s = space(1000, KeyDistribution::Zipf(1.1), Partition::Shared);
        let p = KeyPicker::new(&s, 0, 1);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let mut hits = vec![0u32; 1000];
        for _ in 0..100_000 {
            hits[p.any(&mut rng) as usize] += 1;
        }
        // Rank 1 over rank 10 is 10^1.1 ≈ 12.6 for Zipf(1.1).
        let ratio = f64::from(hits[0]) / f64::from(hits[9]);
        assert!((ratio - 12.6).abs() < 2.5, "ratio {ratio}");
        assert!(hits[0] > 10_000);
    }

    #[test]
    fn existing_prefers_present_keys() {
        let s = space(1000, KeyDistribution::Uniform, Partition::Shared);
        let p = KeyPicker::new(&s, 0, 1);
        let state = KeyState::new(1000);
        for i in (0..1000).step_by(10) {
            state.set_created(i);
        }
        assert_eq!(state.present_count(), 100);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        // With 10% present, 64 draws all miss with probability 0.9^64
        // (about 0.1%): then the last draw is returned.
        let hits = (0..10_000)
            .filter(|_| p.existing(&mut rng, &state).is_multiple_of(10))
            .count();
        assert!(hits >= 9_950, "{hits}");
    }
}
