//! Objects already there (`objects: {existing: true}`): the prefix listed
//! once before the stage, each agent keeping its share in a compact index
//! that workload ops draw their objects from.
//!
//! **The index** ([`ExistingIndex`]) keeps, per object, the key's suffix
//! after the prefix in one contiguous byte arena, its end in the arena as a
//! `u32`, its size as a `u64`, and a bit for "this agent deleted it"
//! (`allow_delete`): [`INDEX_BYTES_PER_OBJECT`] bytes and a bit plus the
//! suffix. Its size is the pre-stat size cache: a GET needs no HEAD to know
//! what it will read, a range GET picks an offset inside the object. An
//! agent holds at most [`MAX_OBJECTS_PER_AGENT`] objects and
//! [`MAX_ARENA_BYTES`] of suffixes; past either the stage fails with a
//! message naming the cap and how to narrow the prefix. While listing, at
//! most [`MAX_LIST_TASKS`] pages of [`LIST_PAGE_ENTRIES`] are held at once
//! besides the index.
//!
//! **The split over agents** needs no coordination: every agent makes the
//! same delimiter (`/`) listing of the prefix, which names its
//! sub-prefixes and its top-level objects in key order. Top-level objects
//! are dealt by position (agent `i` of `n` keeps positions `i, i+n, …`).
//! With at least `n` sub-prefixes they are dealt by position too, and each
//! agent lists its own (recursively) and keeps all they hold; with fewer,
//! every agent lists all of them and keeps objects by position. So a flat
//! prefix (no sub-prefixes) is listed whole by every agent: listing time
//! does not shrink with agents there (S3 has no way to split one listing
//! but by key ranges it does not reveal), but each agent's memory does; a
//! prefix with sub-prefixes is listed in parallel over the agents and,
//! within an agent, [`MAX_LIST_TASKS`] sub-prefixes at a time (never more
//! than the stage's concurrency). The index keeps listing order (sub-prefix
//! results are joined in key order), so a zipf stage's hot objects are the
//! first keys of the agent's share, and the same on every run.
//!
//! Each page is one request under the op timer ([`timed`]), retried by the
//! stage's policy. A later stage of the session on the same target and
//! prefix reuses the index (the agent keeps it as the key space's
//! [`KeyState`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::StageRun;
use super::source::{Target, Work, cumulative, draw_op};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::keys::{KeyPicker, KeyState};
use super::ops::{LIST_PAGE_ENTRIES, timed};
use crate::op::OpKind;
use crate::plan::{Partition, RetryPolicy, Stage};
use crate::store::{ErrorClass, ListOptions, ListPage, ObjectStore, StoreError};

/// Index bytes per object besides its key suffix: a `u32` end offset and a
/// `u64` size.
pub const INDEX_BYTES_PER_OBJECT: usize = 12;

/// Most objects one agent indexes: 50 million, about 1.2 GiB of index at
/// 12-byte suffixes.
pub const MAX_OBJECTS_PER_AGENT: usize = 50_000_000;

/// Most bytes of key suffixes one agent indexes (end offsets are `u32`).
pub const MAX_ARENA_BYTES: usize = u32::MAX as usize;

/// Most sub-prefix listings one agent runs at once.
pub const MAX_LIST_TASKS: usize = 16;

/// Most sub-prefixes a prefix may have (their names are held while the
/// agents list them).
pub const MAX_SUBPREFIXES: usize = 1_000_000;

/// What one agent's listing found and cost, as `run.json` reports it for
/// the stage that made it (`agents[].listing`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ListingSummary {
    /// Objects the agent's listings returned (kept or not).
    pub objects_listed: u64,
    /// Listing requests (pages of up to 1000 keys).
    pub pages: u64,
    /// Sub-prefixes of the prefix.
    pub subprefixes: u64,
    pub seconds: f64,
    /// Objects in this agent's share, their bytes, and the index's bytes.
    pub share_objects: u64,
    pub share_bytes: u64,
    pub index_bytes: u64,
}

/// This agent's share of the objects under a prefix: key suffixes and
/// sizes, in listing order.
#[derive(Debug)]
pub struct ExistingIndex {
    prefix: String,
    arena: Vec<u8>,
    ends: Vec<u32>,
    sizes: Vec<u64>,
    /// A bit per object: deleted by this agent (`allow_delete`).
    deleted: Vec<AtomicU64>,
    /// How the listing went (for the log line and tests).
    pub listing: ListingReport,
}

/// What listing a prefix took on one agent.
#[derive(Clone, Debug, Default)]
pub struct ListingReport {
    /// Listing requests (pages) this agent made.
    pub pages: u64,
    /// Objects the listings returned (kept or not).
    pub seen: u64,
    /// Sub-prefixes of the prefix (all agents').
    pub subprefixes: u64,
    pub elapsed: Duration,
}

impl ExistingIndex {
    /// Objects in this agent's share.
    pub fn len(&self) -> u64 {
        self.sizes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// The key of object `i` (below [`ExistingIndex::len`]).
    pub fn key(&self, i: u64) -> String {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let suffix = &self.arena[start..self.ends[i] as usize];
        let mut key = String::with_capacity(self.prefix.len() + suffix.len());
        key.push_str(&self.prefix);
        // Suffixes are whole keys' tails cut at a `str` boundary.
        key.push_str(std::str::from_utf8(suffix).unwrap_or_default());
        key
    }

    /// The size of object `i` as listed.
    pub fn size(&self, i: u64) -> u64 {
        self.sizes[i as usize]
    }

    /// Bytes the index takes.
    pub fn memory_bytes(&self) -> usize {
        self.arena.capacity()
            + self.ends.capacity() * 4
            + self.sizes.capacity() * 8
            + self.deleted.capacity() * 8
    }

    /// Whether this agent deleted object `i`.
    pub fn is_deleted(&self, i: u64) -> bool {
        self.deleted
            .get((i / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
    }

    /// Marks object `i` deleted; false if it already was.
    pub fn mark_deleted(&self, i: u64) -> bool {
        self.deleted.get((i / 64) as usize).is_some_and(|w| {
            let bit = 1 << (i % 64);
            w.fetch_or(bit, Ordering::Relaxed) & bit == 0
        })
    }

    /// Bytes of all indexed objects.
    pub fn total_size(&self) -> u64 {
        self.sizes.iter().sum()
    }

    /// The listing and the share it made, for `run.json`.
    pub fn summary(&self) -> ListingSummary {
        let l = &self.listing;
        ListingSummary {
            objects_listed: l.seen,
            pages: l.pages,
            subprefixes: l.subprefixes,
            seconds: l.elapsed.as_secs_f64(),
            share_objects: self.len(),
            share_bytes: self.total_size(),
            index_bytes: self.memory_bytes() as u64,
        }
    }
}

/// An index being built: objects appended in order, within the caps.
struct Builder {
    prefix: String,
    arena: Vec<u8>,
    ends: Vec<u32>,
    sizes: Vec<u64>,
    /// The caps ([`MAX_OBJECTS_PER_AGENT`], [`MAX_ARENA_BYTES`]; smaller in
    /// tests).
    max_objects: usize,
    max_arena: usize,
}

impl Builder {
    fn new(prefix: &str) -> Builder {
        Builder::with_caps(prefix, MAX_OBJECTS_PER_AGENT, MAX_ARENA_BYTES)
    }

    fn with_caps(prefix: &str, max_objects: usize, max_arena: usize) -> Builder {
        Builder {
            prefix: prefix.to_string(),
            arena: Vec::new(),
            ends: Vec::new(),
            sizes: Vec::new(),
            max_objects,
            max_arena: max_arena.min(MAX_ARENA_BYTES),
        }
    }

    fn push(&mut self, key: &str, size: u64) -> Result<(), String> {
        // A listing of the prefix only returns keys that start with it.
        let suffix = key.strip_prefix(self.prefix.as_str()).unwrap_or(key);
        self.push_suffix(suffix.as_bytes(), size)
    }

    fn push_suffix(&mut self, suffix: &[u8], size: u64) -> Result<(), String> {
        if self.sizes.len() >= self.max_objects || self.arena.len() + suffix.len() > self.max_arena
        {
            return Err(format!(
                "this agent's share of prefix `{}` passes {} objects or {} bytes of key names, \
                 the per-agent cap of an existing index; narrow `objects.prefix` to a \
                 sub-prefix, or run more agents",
                self.prefix, self.max_objects, self.max_arena
            ));
        }
        self.arena.extend_from_slice(suffix);
        self.ends.push(self.arena.len() as u32);
        self.sizes.push(size);
        Ok(())
    }

    /// Appends `other`'s objects (a listing of the same prefix).
    fn append(&mut self, other: Builder) -> Result<(), String> {
        let mut start = 0;
        for (&end, size) in other.ends.iter().zip(other.sizes) {
            self.push_suffix(&other.arena[start..end as usize], size)?;
            start = end as usize;
        }
        Ok(())
    }

    fn finish(mut self, listing: ListingReport) -> ExistingIndex {
        self.arena.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.sizes.shrink_to_fit();
        let words = self.sizes.len().div_ceil(64);
        ExistingIndex {
            deleted: (0..words).map(|_| AtomicU64::new(0)).collect(),
            prefix: self.prefix,
            arena: self.arena,
            ends: self.ends,
            sizes: self.sizes,
            listing,
        }
    }
}

/// Whether agent `agent` of `agents` keeps position `pos`.
fn mine(pos: u64, agent: u32, agents: u32) -> bool {
    pos % u64::from(agents.max(1)) == u64::from(agent)
}

/// One listing request under the op timer, retried by `policy` (throttled,
/// timed out and network failures only, as ops are).
async fn page(
    store: &dyn ObjectStore,
    prefix: &str,
    opts: &ListOptions,
    policy: &RetryPolicy,
) -> Result<ListPage, StoreError> {
    let mut retries = 0;
    loop {
        let r = timed(
            store,
            "LIST",
            prefix,
            policy.timeout,
            store.list(prefix, opts),
        )
        .await;
        match r {
            Err(e)
                if retries < policy.retries
                    && matches!(
                        e.class,
                        ErrorClass::Throttled | ErrorClass::Timeout | ErrorClass::Network
                    ) =>
            {
                retries += 1;
                tokio::time::sleep(policy.backoff.saturating_mul(1 << (retries - 1).min(16))).await;
            }
            r => return r,
        }
    }
}

/// Lists `prefix` recursively, keeping objects at the positions `keep`
/// accepts.
async fn list_recursive(
    store: &dyn ObjectStore,
    prefix: &str,
    policy: &RetryPolicy,
    mut keep: impl FnMut(u64) -> bool,
    index_prefix: &str,
) -> Result<(Builder, u64, u64), String> {
    let mut out = Builder::new(index_prefix);
    let mut opts = ListOptions {
        delimiter: None,
        limit: LIST_PAGE_ENTRIES,
        continuation: None,
    };
    let (mut pages, mut pos) = (0, 0);
    loop {
        let p = page(store, prefix, &opts, policy)
            .await
            .map_err(|e| format!("listing {store}{prefix}: {e}"))?;
        pages += 1;
        for e in p.entries {
            if keep(pos) {
                out.push(&e.key, e.size)?;
            }
            pos += 1;
        }
        match p.next {
            Some(next) => opts.continuation = Some(next),
            None => return Ok((out, pages, pos)),
        }
    }
}

/// Lists this agent's share of the stage's prefix (see the module docs).
/// An empty prefix is an error naming the stage, target and prefix.
pub async fn list_share(run: &StageRun) -> anyhow::Result<ExistingIndex> {
    let began = Instant::now();
    let stage = &run.stage;
    let prefix = stage.objects.prefix.as_str();
    let store = run.store.as_ref();
    let policy = stage.retry;
    // Dealt over the agents still in the run when the listing is made.
    let (agent, agents) = run.deal.live();
    let agents = agents.max(1);
    let fail = |m: String| anyhow::anyhow!("stage `{}`: {m}", stage.name);

    // The top level: sub-prefixes, and objects dealt by position.
    let mut index = Builder::new(prefix);
    let mut subprefixes = Vec::new();
    let mut report = ListingReport::default();
    let mut opts = ListOptions {
        delimiter: Some('/'),
        limit: LIST_PAGE_ENTRIES,
        continuation: None,
    };
    loop {
        if run.stop.load(std::sync::atomic::Ordering::Relaxed) {
            anyhow::bail!("stage `{}`: stopped while listing", stage.name);
        }
        let p = page(store, prefix, &opts, &policy)
            .await
            .map_err(|e| fail(format!("listing {store}{prefix}: {e}")))?;
        report.pages += 1;
        for e in p.entries {
            if mine(report.seen, agent, agents) {
                index.push(&e.key, e.size).map_err(fail)?;
            }
            report.seen += 1;
        }
        subprefixes.extend(p.prefixes);
        if subprefixes.len() > MAX_SUBPREFIXES {
            return Err(fail(format!(
                "prefix `{prefix}` has more than {MAX_SUBPREFIXES} sub-prefixes; \
                 name one of them as `objects.prefix`"
            )));
        }
        match p.next {
            Some(next) => opts.continuation = Some(next),
            None => break,
        }
    }
    // Over several buckets (`buckets: N`) a sub-prefix is named once per
    // bucket that has keys under it: listed once (each listing walks every
    // bucket), in one order on every agent.
    subprefixes.sort();
    subprefixes.dedup();
    report.subprefixes = subprefixes.len() as u64;
    if report.seen == 0 && subprefixes.is_empty() {
        return Err(fail(format!(
            "`existing: true` but prefix `{prefix}` of target `{}` holds no objects",
            stage.target
        )));
    }

    // Sub-prefixes: dealt over agents when there are enough, else every
    // agent lists each and keeps objects by position.
    let dealt = subprefixes.len() >= agents as usize;
    let mine_of: Vec<(usize, String)> = subprefixes
        .into_iter()
        .enumerate()
        .filter(|(j, _)| !dealt || mine(*j as u64, agent, agents))
        .collect();
    let tasks = MAX_LIST_TASKS.min(stage.concurrency.max(1) as usize);
    let mut listed = futures::stream::iter(mine_of)
        .map(|(j, sub)| async move {
            let keep = move |pos: u64| dealt || mine(pos + j as u64, agent, agents);
            list_recursive(store, &sub, &policy, keep, prefix).await
        })
        .buffered(tasks);
    while let Some(r) = listed.next().await {
        if run.stop.load(std::sync::atomic::Ordering::Relaxed) {
            anyhow::bail!("stage `{}`: stopped while listing", stage.name);
        }
        let (part, pages, seen) = r.map_err(fail)?;
        report.pages += pages;
        report.seen += seen;
        index.append(part).map_err(fail)?;
    }
    report.elapsed = began.elapsed();
    Ok(index.finish(report))
}

/// The key state of an existing stage: `prior`'s index when an earlier
/// stage of the session listed the same prefix, else a new listing (and
/// its summary).
pub async fn state(
    run: &StageRun,
    prior: Option<Arc<KeyState>>,
) -> anyhow::Result<(Arc<KeyState>, Option<ListingSummary>)> {
    if let Some(prior) = prior.filter(|p| p.existing().is_some()) {
        return Ok((prior, None));
    }
    let index = list_share(run).await?;
    let l = &index.listing;
    tracing::info!(
        stage = %run.stage.name,
        "listed prefix `{}` of {}: {} objects ({} sub-prefixes) in {} pages in {:.2} s; \
         this agent's share: {} objects, {} bytes, index {} bytes",
        run.stage.objects.prefix,
        run.store,
        l.seen,
        l.subprefixes,
        l.pages,
        l.elapsed.as_secs_f64(),
        index.len(),
        index.total_size(),
        index.memory_bytes(),
    );
    if let Some(late) = Instant::now().checked_duration_since(run.start_at) {
        tracing::warn!(
            stage = %run.stage.name,
            "the listing ended {:.2} s after the stage's start: the stage's workers start that \
             much late and a `duration` that much short; a short stage before it on the same \
             prefix (e.g. one `stat`) lists ahead, and this index is reused",
            late.as_secs_f64()
        );
    }
    if index.is_empty() {
        tracing::warn!(
            stage = %run.stage.name,
            "this agent's share of prefix `{}` is empty: its workers have nothing to do",
            run.stage.objects.prefix
        );
    }
    let summary = index.summary();
    Ok((Arc::new(KeyState::listed(Arc::new(index))), Some(summary)))
}

/// Where a worker's next op on existing objects comes from: ops drawn by
/// the mix's weights, objects by the key space's distribution over their
/// position in the index.
pub(super) struct Draw {
    cumulative: Vec<(u64, OpKind)>,
    /// Picks positions in `0..index.len()`.
    picker: KeyPicker,
    index: Arc<ExistingIndex>,
    /// What a `list` lists.
    list_prefix: String,
}

impl Draw {
    pub(super) fn new(stage: &Stage, index: Arc<ExistingIndex>) -> Draw {
        // The agent's share is its own: positions are picked from all of
        // it, as one shared key space of `len` keys.
        let mut space = stage.objects.clone();
        space.count = index.len();
        space.partition = Partition::Shared;
        Draw {
            cumulative: cumulative(stage),
            picker: KeyPicker::new(&space, 0, 1),
            index,
            list_prefix: stage
                .list
                .prefix
                .clone()
                .unwrap_or_else(|| stage.objects.prefix.clone()),
        }
    }

    /// The next op; None when this agent's share is empty.
    pub(super) fn next(&self, rng: &mut Xoshiro256PlusPlus) -> Option<Work> {
        if self.index.is_empty() {
            return None;
        }
        let op = draw_op(&self.cumulative, rng)?;
        let target = match op {
            OpKind::List => Target::Key {
                key: self.list_prefix.clone(),
                size: 0,
                range: None,
                content: None,
            },
            _ => {
                let i = pick(&self.picker, &self.index, op, rng);
                Target::Key {
                    key: self.index.key(i),
                    size: self.index.size(i),
                    range: None,
                    content: None,
                }
            }
        };
        Some(Work {
            op,
            target,
            due: None,
            token: None,
        })
    }
}

/// Draws that look for an object this agent has not deleted before one
/// that it has is taken (and its op fails with `not_found`, as it should).
const MAX_DRAWS: u32 = 64;

/// The position of `op`'s object: drawn by `picker` among those this agent
/// has not deleted. A delete marks its object deleted as it is drawn, so
/// no later op (nor a second delete) picks it; a delete that then fails
/// leaves the object out of later draws, which reads it as gone a little
/// early rather than racing reads against the delete in flight.
fn pick(
    picker: &KeyPicker,
    index: &ExistingIndex,
    op: OpKind,
    rng: &mut Xoshiro256PlusPlus,
) -> u64 {
    let mut i = picker.any(rng);
    for _ in 1..MAX_DRAWS {
        if !index.is_deleted(i) {
            break;
        }
        i = picker.any(rng);
    }
    if op == OpKind::Delete {
        index.mark_deleted(i);
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys come back whole, sizes as pushed; appending keeps order; the
    /// index costs 12 bytes and a bit per object besides the suffixes.
    #[test]
    fn the_index_gives_back_keys_and_sizes_within_its_stated_bytes() {
        let mut a = Builder::new("p/");
        a.push("p/x", 1).unwrap();
        a.push("p/sub/ü y", 1 << 40).unwrap();
        let mut b = Builder::new("p/");
        b.push("p/z", 0).unwrap();
        a.append(b).unwrap();
        let index = a.finish(ListingReport::default());
        let all: Vec<(String, u64)> = (0..index.len())
            .map(|i| (index.key(i), index.size(i)))
            .collect();
        assert_eq!(
            all,
            [
                ("p/x".into(), 1),
                ("p/sub/ü y".into(), 1 << 40),
                ("p/z".into(), 0)
            ]
        );
        let suffixes = "x".len() + "sub/ü y".len() + "z".len();
        assert_eq!(
            index.memory_bytes(),
            suffixes + 3 * INDEX_BYTES_PER_OBJECT + 8
        );
        assert!(index.mark_deleted(1) && !index.mark_deleted(1) && index.is_deleted(1));
    }

    /// Past either cap the error names it and says how to narrow.
    #[test]
    fn the_caps_are_errors_naming_them() {
        let mut b = Builder::with_caps("p/", 2, 1000);
        b.push("p/1", 1).unwrap();
        b.push("p/2", 1).unwrap();
        let e = b.push("p/3", 1).unwrap_err();
        assert!(e.contains("passes 2 objects or 1000 bytes"), "{e}");
        assert!(e.contains("narrow `objects.prefix`"), "{e}");
        let mut b = Builder::with_caps("p/", 10, 4);
        b.push("p/abc", 1).unwrap();
        assert!(b.push("p/de", 1).is_err(), "5 bytes of suffixes pass 4");
    }
}
