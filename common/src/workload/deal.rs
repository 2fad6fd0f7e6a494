//! How a stage is dealt over the run's agents, and over the ones still in
//! it after some left (`on_agent_loss: continue`).
//!
//! Two splits, for two reasons:
//!
//! - The *key space* is partitioned by an agent's place in the run, fixed
//!   when its session opened: each agent's `KeyState` knows only its own
//!   part (what it wrote, what it created), so a partition that moved
//!   would send reads to keys the agent knows nothing of, and a cleanup
//!   would skip objects no one knows to remove.
//! - Everything a stage *spends* (ops, bytes, ops/s) and everything dealt
//!   per stage from scratch (a trace, a dataset's files, a checkpoint's
//!   shards, a training epoch's ranks, a listing) is split over the agents
//!   still in the run, so an agent that left before a stage takes nothing
//!   from it: 30,000 ops at 6,000 ops/s over 3 agents with one gone are
//!   15,000 ops at 3,000 ops/s each on the other two.
//!
//! The keys of an agent that left are walked by the others in a prepare
//! or cleanup (they *adopt* them, each a part). A prepare writes the
//! adopted keys that are missing; a cleanup removes those there now that
//! were not there before the run: every agent's first look at a key space
//! lists it whole, so each knows that of every key, not only of its own.

use super::budget::share;

/// One stage's deal on this agent (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deal {
    /// This agent's place in the run, fixed for its session.
    pub index: u32,
    /// Agents in the run when it began.
    pub count: u32,
    /// Places of the agents that left before this stage, ascending, each
    /// once, never this agent's.
    pub departed: Vec<u32>,
    /// This stage only takes over what departed agents left undone (the
    /// controller's hand-over step): a key walk covers only their keys.
    pub handover: bool,
}

/// Keys `offset + j * stride` for `j` in `0..len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    pub offset: u64,
    pub stride: u64,
    pub len: u64,
}

impl Slice {
    /// The `j`-th key of the slice.
    pub fn key(&self, j: u64) -> u64 {
        self.offset + j * self.stride
    }

    /// Whether key `i` is one of the slice's.
    pub fn contains(&self, i: u64) -> bool {
        let stride = self.stride.max(1);
        i >= self.offset
            && (i - self.offset).is_multiple_of(stride)
            && (i - self.offset) / stride < self.len
    }
}

impl Deal {
    /// Agent `index` of `count`, none departed: the stage whole.
    pub fn whole(index: u32, count: u32) -> Deal {
        Deal {
            index,
            count: count.max(1),
            departed: Vec::new(),
            handover: false,
        }
    }

    /// `departed` as the controller sent it, checked against the run:
    /// places in range, not this agent's, sorted and each once. An error
    /// says which place is wrong.
    pub fn new(
        index: u32,
        count: u32,
        mut departed: Vec<u32>,
        handover: bool,
    ) -> Result<Deal, String> {
        departed.sort_unstable();
        departed.dedup();
        if let Some(&d) = departed.iter().find(|&&d| d >= count || d == index) {
            return Err(if d == index {
                format!("agent {index} is named among the departed agents of its own stage")
            } else {
                format!("departed agent {d} is not one of the run's {count} agents")
            });
        }
        Ok(Deal {
            index,
            count: count.max(1),
            departed,
            handover,
        })
    }

    /// This agent's place among the agents still in the run, and their
    /// number: what budgets and per-stage deals are split by.
    pub fn live(&self) -> (u32, u32) {
        let before = self.departed.iter().filter(|&&d| d < self.index).count() as u32;
        (self.index - before, self.count - self.departed.len() as u32)
    }

    /// The parts of a key space of `keys` keys this agent walks in a
    /// prepare or cleanup: its own (not in a hand-over), then its part of
    /// each departed agent's, dealt round-robin over the agents still in.
    pub fn key_slices(&self, keys: u64) -> Vec<Slice> {
        let n = u64::from(self.count);
        let mut slices = Vec::with_capacity(1 + self.departed.len());
        if !self.handover {
            slices.push(Slice {
                offset: u64::from(self.index),
                stride: n,
                len: share(keys, self.index, self.count),
            });
        }
        let (rank, live) = self.live();
        let (rank, live) = (u64::from(rank), u64::from(live.max(1)));
        for &d in &self.departed {
            // The departed agent's j-th key, for j = rank, rank + live, …
            let theirs = share(keys, d, self.count);
            slices.push(Slice {
                offset: u64::from(d) + rank * n,
                stride: n * live,
                len: theirs.saturating_sub(rank).div_ceil(live),
            });
        }
        slices.retain(|s| s.len > 0);
        slices
    }

    /// How many keys of a space of `keys` the departed agents had: what a
    /// hand-over takes on.
    pub fn departed_keys(&self, keys: u64) -> u64 {
        self.departed
            .iter()
            .map(|&d| share(keys, d, self.count))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn walked(d: &Deal, keys: u64) -> Vec<u64> {
        d.key_slices(keys)
            .iter()
            .flat_map(|s| (0..s.len).map(move |j| s.key(j)))
            .collect()
    }

    #[test]
    fn without_departures_each_agent_walks_its_own_keys() {
        for keys in [0, 1, 10, 101] {
            let mut all = BTreeSet::new();
            for i in 0..3 {
                let mine = walked(&Deal::whole(i, 3), keys);
                assert!(mine.iter().all(|k| k % 3 == u64::from(i)));
                for k in mine {
                    assert!(all.insert(k), "key {k} twice");
                }
            }
            assert_eq!(all, (0..keys).collect());
        }
    }

    /// The survivors cover every key exactly once, their own and the
    /// departed agents', for any departures.
    #[test]
    fn survivors_cover_the_key_space_exactly_once() {
        for count in 1..6u32 {
            for mask in 0..(1u32 << count) - 1 {
                let departed: Vec<u32> = (0..count).filter(|i| mask & (1 << i) != 0).collect();
                for keys in [0u64, 1, 7, 100, 1001] {
                    let mut all = Vec::new();
                    let mut adopted = 0;
                    for i in (0..count).filter(|i| !departed.contains(i)) {
                        let d = Deal::new(i, count, departed.clone(), false).unwrap();
                        all.extend(walked(&d, keys));
                        let h = Deal::new(i, count, departed.clone(), true).unwrap();
                        let theirs = walked(&h, keys);
                        assert!(
                            theirs
                                .iter()
                                .all(|k| departed.contains(&((k % u64::from(count)) as u32)))
                        );
                        adopted += theirs.len() as u64;
                    }
                    all.sort_unstable();
                    assert_eq!(
                        all,
                        (0..keys).collect::<Vec<_>>(),
                        "{count} {departed:?} {keys}"
                    );
                    let first = (0..count).find(|i| !departed.contains(i)).unwrap();
                    let d = Deal::new(first, count, departed.clone(), true).unwrap();
                    assert_eq!(adopted, d.departed_keys(keys));
                }
            }
        }
    }

    #[test]
    fn live_place_skips_the_departed() {
        let d = Deal::new(3, 5, vec![4, 0, 0], false).unwrap();
        assert_eq!(d.departed, vec![0, 4]);
        assert_eq!(d.live(), (2, 3));
        assert_eq!(Deal::whole(1, 3).live(), (1, 3));
    }

    #[test]
    fn bad_departures_are_refused() {
        let e = Deal::new(1, 3, vec![3], false).unwrap_err();
        assert!(
            e.contains("departed agent 3 is not one of the run's 3"),
            "{e}"
        );
        let e = Deal::new(1, 3, vec![1], false).unwrap_err();
        assert!(e.contains("agent 1 is named among the departed"), "{e}");
    }
}
