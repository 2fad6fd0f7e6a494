//! One merge pass: a k-way merge of logs over a loser tree, logs opened
//! only when the merge reaches their first start.

use super::clock::ClockCorrection;
use super::entries::{Cursor, cmp_entries};
use super::late::{HoldOrKeep, Late};
use super::sink::Sink;
use super::source::{MIN_CHUNK_BYTES, Sizes, Source};
use crate::oplog::reader::OpLogError;
use std::cmp::Ordering;
use std::path::PathBuf;

/// A log not opened yet.
#[derive(Debug)]
pub(super) struct Waiting {
    pub path: PathBuf,
    pub clock: ClockCorrection,
    /// The merge opens the log when it reaches this start (corrected).
    pub open_at: i64,
    /// Bytes of lines per block it is read in.
    pub block_bytes: usize,
    /// Its whole text's size, when the probe read it to the end: a log
    /// that small is read in one chunk its size, on the merge's thread
    /// (a thousand agents' short logs would otherwise hold a thousand
    /// full-size chunks and decompressor threads).
    pub whole_bytes: Option<usize>,
    /// Which input it is (errors are its, and reported in input order), or
    /// None for a run of ours (whose errors are the merge's).
    pub input: Option<usize>,
}

/// One log of a pass.
#[derive(Debug)]
pub(super) enum Slot {
    Waiting(Waiting),
    Open {
        src: Box<Source>,
        input: Option<usize>,
    },
    Done,
}

impl Slot {
    /// Where the slot stands in merge order, by start only.
    pub(super) fn start(&self) -> i64 {
        match self {
            Slot::Waiting(w) => w.open_at,
            Slot::Open { src, .. } => src.head().map_or(i64::MAX, |(e, _)| e.start),
            Slot::Done => i64::MAX,
        }
    }

    /// The file of a run of ours waiting in this slot.
    pub(super) fn run_path(&self) -> Option<&PathBuf> {
        match self {
            Slot::Waiting(w) if w.input.is_none() => Some(&w.path),
            _ => None,
        }
    }
}

/// What passes share: settings and what the inputs did.
#[derive(Debug)]
pub(super) struct Ctx {
    /// How logs are read.
    pub sizes: Sizes,
    /// Records read from the inputs.
    pub records_in: u64,
    /// Late lines put in place in the held output.
    pub placed: u64,
    /// Errors of damaged inputs, with the input's position.
    pub errors: Vec<(usize, String)>,
}

/// A loser tree over `k` leaves: `node[0]` is the winner (smallest),
/// `node[1..k]` the loser of each match; leaf `i` sits at `k + i`.
struct Tree {
    node: Vec<usize>,
}

impl Tree {
    fn build(k: usize, less: impl Fn(usize, usize) -> bool) -> Tree {
        let mut win = vec![0usize; 2 * k];
        for i in 0..k {
            win[k + i] = i;
        }
        let mut node = vec![0usize; k.max(1)];
        for n in (1..k).rev() {
            let (a, b) = (win[2 * n], win[2 * n + 1]);
            (win[n], node[n]) = if less(b, a) { (b, a) } else { (a, b) };
        }
        if k > 1 {
            node[0] = win[1];
        }
        Tree { node }
    }

    #[inline]
    fn winner(&self) -> usize {
        self.node[0]
    }

    /// Leaf `leaf` changed (it was the winner): replays its matches.
    #[inline]
    fn replay(&mut self, leaf: usize, less: impl Fn(usize, usize) -> bool) {
        let k = self.node.len();
        let mut w = leaf;
        let mut n = (leaf + k) / 2;
        while n > 0 {
            if less(self.node[n], w) {
                std::mem::swap(&mut self.node[n], &mut w);
            }
            n /= 2;
        }
        self.node[0] = w;
    }
}

/// Strict merge order of slots `a` and `b`; `starts` caches each slot's
/// [`Slot::start`]. Ties go to the lower slot, so equal lines keep the
/// order of the inputs.
#[inline]
fn less(slots: &[Slot], starts: &[i64], a: usize, b: usize) -> bool {
    match starts[a].cmp(&starts[b]) {
        Ordering::Less => true,
        Ordering::Greater => false,
        Ordering::Equal => {
            let ord = match (&slots[a], &slots[b]) {
                (Slot::Done, Slot::Done) => Ordering::Equal,
                (Slot::Done, _) => Ordering::Greater,
                (_, Slot::Done) => Ordering::Less,
                // A waiting log opens before lines of its start.
                (Slot::Waiting(_), Slot::Waiting(_)) => Ordering::Equal,
                (Slot::Waiting(_), _) => Ordering::Less,
                (_, Slot::Waiting(_)) => Ordering::Greater,
                (Slot::Open { src: x, .. }, Slot::Open { src: y, .. }) => {
                    match (x.head(), y.head()) {
                        (Some((ex, ax)), Some((ey, ay))) => cmp_entries(ex, ax, ey, ay),
                        (None, None) => Ordering::Equal,
                        (None, _) => Ordering::Greater,
                        (_, None) => Ordering::Less,
                    }
                }
            };
            ord.then(a.cmp(&b)) == Ordering::Less
        }
    }
}

/// Merges `slots` into `sink`. Inputs' damage is recorded in `ctx`; late
/// lines go to `late`; errors of runs of ours, of temp files and of the
/// sink are returned.
pub(super) fn merge_pass(
    mut slots: Vec<Slot>,
    sink: &mut Sink,
    late: &mut Late,
    ctx: &mut Ctx,
) -> Result<(), OpLogError> {
    let k = slots.len();
    if k == 0 {
        return Ok(());
    }
    let mut starts: Vec<i64> = slots.iter().map(Slot::start).collect();
    let mut tree = Tree::build(k, |a, b| less(&slots, &starts, a, b));
    let mut cursor = Cursor::default();
    loop {
        let w = tree.winner();
        match &mut slots[w] {
            Slot::Done => break,
            Slot::Waiting(wait) => {
                let input = wait.input;
                let mut sizes = Sizes {
                    block_bytes: wait.block_bytes,
                    ..ctx.sizes
                };
                if let Some(whole) = wait.whole_bytes {
                    sizes.chunk_bytes = whole.clamp(MIN_CHUNK_BYTES, ctx.sizes.chunk_bytes);
                    sizes.thread = false;
                }
                match Source::open(&wait.path, wait.clock, sizes) {
                    Ok(src) => {
                        let mut src = Box::new(src);
                        src.fill_window(&cursor, &mut HoldOrKeep { sink, late })?;
                        slots[w] = Slot::Open { src, input };
                    }
                    Err(e) => match input {
                        Some(i) => {
                            ctx.errors.push((i, e.to_string()));
                            slots[w] = Slot::Done;
                        }
                        None => return Err(e),
                    },
                }
            }
            Slot::Open { src, .. } => {
                let Some((e, arena)) = src.head() else {
                    unreachable!("an open slot has a line")
                };
                sink.push(e.line(arena), e.start)?;
                cursor.set(e, arena);
                src.advance(&cursor, &mut HoldOrKeep { sink, late })?;
            }
        }
        if let Slot::Open { src, input } = &mut slots[w]
            && src.is_done()
        {
            let input = *input;
            finish_source(src, input, ctx)?;
            slots[w] = Slot::Done;
        }
        starts[w] = slots[w].start();
        tree.replay(w, |a, b| less(&slots, &starts, a, b));
    }
    Ok(())
}

/// Records what an ended source did; a damaged run of ours is an error.
fn finish_source(src: &mut Source, input: Option<usize>, ctx: &mut Ctx) -> Result<(), OpLogError> {
    let error = src.take_error();
    match input {
        Some(i) => {
            ctx.records_in += src.records;
            if let Some(e) = error {
                ctx.errors.push((i, e.to_string()));
            }
            Ok(())
        }
        None => error.map_or(Ok(()), Err),
    }
}

#[cfg(test)]
mod tests {
    use super::Tree;

    /// The tree's winners are the order of a sort, for every k.
    #[test]
    fn loser_tree_pops_in_order() {
        for k in 1..20usize {
            // Each leaf yields a sorted list; all distinct values.
            let lists: Vec<Vec<u64>> = (0..k)
                .map(|i| {
                    (0..7)
                        .map(|j| (j * 31 + i as u64 * 7) % 97 * 100 + i as u64)
                        .collect()
                })
                .map(|mut v: Vec<u64>| {
                    v.sort();
                    v
                })
                .collect();
            let mut pos = vec![0usize; k];
            let head = |pos: &[usize], i: usize| lists[i].get(pos[i]).copied().unwrap_or(u64::MAX);
            let mut tree = Tree::build(k, |a, b| (head(&pos, a), a) < (head(&pos, b), b));
            let mut got = Vec::new();
            loop {
                let w = tree.winner();
                let h = head(&pos, w);
                if h == u64::MAX {
                    break;
                }
                got.push(h);
                pos[w] += 1;
                tree.replay(w, |a, b| (head(&pos, a), a) < (head(&pos, b), b));
            }
            let mut want: Vec<u64> = lists.concat();
            want.sort();
            assert_eq!(got, want, "k = {k}");
        }
    }
}
