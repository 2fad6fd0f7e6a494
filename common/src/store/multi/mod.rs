//! A store that spreads ops over N endpoints of one backend: several
//! gateways of one cluster (S3 gateways, RGW instances, MinIO nodes), so
//! one agent can load all of them instead of the first one only.
//!
//! The caller opens one store per endpoint and hands them to
//! [`MultiStore::new`] together with a [`Balance`] policy. The workload
//! engine calls [`MultiStore::pick`] for each op: the returned [`Lease`]
//! says which endpoint the op goes to (the op-log `endpoint` column), counts
//! the request and holds an in-flight slot until it is dropped, so the
//! count cannot leak even when the op future is cancelled (a stage that
//! ends mid-op) or panics. [`Lease::finish`] adds the bytes moved and
//! whether the op failed. Per-endpoint counters come back from
//! [`MultiStore::stats`] for the live stats and the summary.
//!
//! `MultiStore` is also an [`ObjectStore`] itself, forwarding each call
//! through `pick`, so it stacks like any other store (e.g. under a
//! conformance run or a wrapper). Every endpoint must serve the same
//! namespace: a key written through one endpoint is read through another.
//!
//! Endpoint lists (from a plan or a file, with `{1...8}` templates) are
//! expanded by the functions of [`template`], re-exported here.

pub mod template;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    BucketSetup, ByteRange, ChunkSink, CopyPlan, ErrorClass, GetOptions, GetOutcome, ListOptions,
    ListPage, ObjectMeta, ObjectStore, PartPlan, PartSource, StoreError, StoreResult, Tags,
    VersionPage,
};

pub use template::{
    count_template, endpoints_from_file, expand_all, expand_all_up_to, expand_template,
};

/// Most endpoints one multi-endpoint store (and one expanded list) may have.
/// Real clusters have at most a few hundred gateways; a list far longer is
/// almost always a template typo (`{1...100000}`) that would otherwise open
/// that many connection pools and ship that many counters every second.
pub const MAX_ENDPOINTS: usize = 4096;

/// Endpoints named in full by `Display`; the rest are counted, so printing
/// the store stack of a large list stays one readable line.
const DISPLAY_ENDPOINTS: usize = 16;

/// How the endpoint of each op is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each endpoint in turn: an exactly even share of ops, whatever each
    /// endpoint's speed (a slow endpoint slows the workers that hit it).
    #[default]
    RoundRobin,
    /// The endpoint with the fewest ops in flight, ties taken in turn: a slow
    /// endpoint gets fewer ops, idle endpoints share evenly.
    LeastConnections,
}

impl Balance {
    /// Every policy, for messages that list the valid names.
    pub const ALL: [Balance; 2] = [Balance::RoundRobin, Balance::LeastConnections];

    /// The name used in plans.
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConnections => "least_connections",
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Balance {
    type Err = String;

    fn from_str(s: &str) -> Result<Balance, String> {
        Balance::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Balance::ALL.iter().map(|b| b.name()).collect();
                format!(
                    "unknown balance `{s}`: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A snapshot of one endpoint's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// The endpoint, as its store names it.
    pub endpoint: String,
    /// Ops sent to it (finished, failed, abandoned or still running).
    pub requests: u64,
    /// Bytes moved by its finished ops.
    pub bytes: u64,
    /// Its ops that finished with an error.
    pub errors: u64,
    /// Its ops running now.
    pub in_flight: u64,
}

/// The live counters of one endpoint. Aligned to their own cache lines so
/// that workers hammering different endpoints do not contend on one line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
}

/// One entry of the endpoint list. A list may name one endpoint several
/// times (to weight it); each entry is its own slot with its own counters.
#[derive(Debug)]
struct Slot {
    index: usize,
    store: Arc<dyn ObjectStore>,
    counters: Counters,
}

/// One op's claim on an endpoint, from [`MultiStore::pick`].
///
/// Creating it counted a request and an in-flight op; dropping it (after
/// [`Lease::finish`], or without it when the op was cancelled or panicked)
/// releases the in-flight op. It owns what it needs, so it can move into a
/// spawned task.
#[derive(Debug)]
#[must_use = "a lease counts an op in flight until it is dropped"]
pub struct Lease {
    slot: Arc<Slot>,
}

impl Lease {
    /// The store of the chosen endpoint: send the op here.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.slot.store
    }

    /// Position of the chosen endpoint in the list (and in `stats()`).
    pub fn index(&self) -> usize {
        self.slot.index
    }

    /// The chosen endpoint, for the op-log `endpoint` column.
    pub fn endpoint(&self) -> &str {
        self.slot.store.endpoint()
    }

    /// Records the end of the op: `bytes` moved, and whether it succeeded.
    /// The in-flight op is released when `self` drops right after.
    pub fn finish(self, bytes: u64, ok: bool) {
        let c = &self.slot.counters;
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
        if !ok {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Every lease added exactly one in-flight op when it was made, and
        // drop runs exactly once (also on unwind and on future cancellation),
        // so this never underflows and never leaks.
        self.slot.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A store spreading ops over several endpoints; see the module docs.
#[derive(Debug)]
pub struct MultiStore {
    slots: Vec<Arc<Slot>>,
    balance: Balance,
    /// Picks so far: selects the next slot for round-robin, and which of
    /// several equally loaded slots for least-connections.
    next: AtomicU64,
    /// `multi(N endpoints)`, what `endpoint()` returns.
    label: String,
}

impl MultiStore {
    /// A multi-endpoint store over `stores`, one per endpoint, already
    /// opened. Errors when the list is empty or longer than
    /// [`MAX_ENDPOINTS`].
    pub fn new(stores: Vec<Arc<dyn ObjectStore>>, balance: Balance) -> StoreResult<MultiStore> {
        let label = format!("multi({} endpoints)", stores.len());
        if stores.is_empty() || stores.len() > MAX_ENDPOINTS {
            return Err(StoreError::new(
                ErrorClass::Other,
                label,
                format!(
                    "a multi-endpoint store needs 1 to {MAX_ENDPOINTS} endpoints, got {}",
                    stores.len()
                ),
            ));
        }
        let slots = stores
            .into_iter()
            .enumerate()
            .map(|(index, store)| {
                Arc::new(Slot {
                    index,
                    store,
                    counters: Counters::default(),
                })
            })
            .collect();
        Ok(MultiStore {
            slots,
            balance,
            next: AtomicU64::new(0),
            label,
        })
    }

    /// Number of endpoints (entries of the list, repeats included).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: a `MultiStore` has at least one endpoint.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// The store of endpoint `index`, if there is one.
    pub fn endpoint_store(&self, index: usize) -> Option<&Arc<dyn ObjectStore>> {
        self.slots.get(index).map(|s| &s.store)
    }

    /// Chooses the endpoint of the next op by the balance policy, counting a
    /// request and an in-flight op on it until the lease drops.
    pub fn pick(&self) -> Lease {
        let n = self.slots.len() as u64;
        // Wrapping at u64::MAX shifts the rotation once in centuries of ops.
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let index = match self.balance {
            Balance::RoundRobin => (turn % n) as usize,
            Balance::LeastConnections => self.least_loaded(turn),
        };
        let slot = Arc::clone(&self.slots[index]);
        slot.counters.requests.fetch_add(1, Ordering::Relaxed);
        slot.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        Lease { slot }
    }

    /// The slot with the fewest ops in flight; of several such, the one
    /// `turn` (the pick counter) selects, so equals take turns evenly. (Just
    /// scanning from a rotating start would not: a start landing on a busy
    /// endpoint always falls through to the one after it, which then gets
    /// more than its share.) Loads are read without a lock, so two
    /// concurrent picks may choose the same slot; that skews the balance by
    /// an op at most and is far cheaper than a lock on every op. Two relaxed
    /// loads per endpoint are a few microseconds even at [`MAX_ENDPOINTS`].
    fn least_loaded(&self, turn: u64) -> usize {
        let load = |s: &Arc<Slot>| s.counters.in_flight.load(Ordering::Relaxed);
        let (mut min, mut ties, mut first) = (u64::MAX, 0u64, 0);
        for (i, s) in self.slots.iter().enumerate() {
            let l = load(s);
            if l < min {
                (min, ties, first) = (l, 1, i);
            } else if l == min {
                ties += 1;
            }
        }
        if ties > 1 {
            let mut k = turn % ties;
            for (i, s) in self.slots.iter().enumerate().skip(first) {
                if load(s) == min {
                    if k == 0 {
                        return i;
                    }
                    k -= 1;
                }
            }
        }
        // One least-loaded slot, or loads moved between the two passes.
        first
    }

    /// A snapshot of every endpoint's counters, in list order (repeated
    /// endpoints appear once per entry; see [`MultiStore::stats_by_endpoint`]).
    /// Each counter is read on its own, so a snapshot taken while ops run
    /// may be off by the ops that end during it.
    pub fn stats(&self) -> Vec<EndpointStats> {
        self.slots
            .iter()
            .map(|s| {
                let c = &s.counters;
                EndpointStats {
                    endpoint: s.store.endpoint().to_string(),
                    requests: c.requests.load(Ordering::Relaxed),
                    bytes: c.bytes.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    in_flight: c.in_flight.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Like [`MultiStore::stats`], with the entries of an endpoint listed
    /// several times summed into one, in order of first appearance.
    pub fn stats_by_endpoint(&self) -> Vec<EndpointStats> {
        let mut out: Vec<EndpointStats> = Vec::new();
        for s in self.stats() {
            match out.iter_mut().find(|o| o.endpoint == s.endpoint) {
                Some(o) => {
                    o.requests += s.requests;
                    o.bytes += s.bytes;
                    o.errors += s.errors;
                    o.in_flight += s.in_flight;
                }
                None => out.push(s),
            }
        }
        out
    }
}

impl fmt::Display for MultiStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "multi({}", self.balance)?;
        for (i, s) in self.slots.iter().take(DISPLAY_ENDPOINTS).enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            write!(f, "{sep}{}", s.store)?;
        }
        if self.slots.len() > DISPLAY_ENDPOINTS {
            write!(f, ", … {} more", self.slots.len() - DISPLAY_ENDPOINTS)?;
        }
        f.write_str(")")
    }
}

/// Records the outcome of an op sent through `lease`; `bytes` says how many
/// bytes a successful result moved.
fn record<T>(lease: Lease, r: &StoreResult<T>, bytes: impl FnOnce(&T) -> u64) {
    match r {
        Ok(v) => lease.finish(bytes(v), true),
        Err(_) => lease.finish(0, false),
    }
}

#[async_trait]
impl ObjectStore for MultiStore {
    fn endpoint(&self) -> &str {
        &self.label
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let lease = self.pick();
        let len = data.len() as u64;
        let r = lease.store().put(key, data).await;
        record(lease, &r, |_| len);
        r
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        let lease = self.pick();
        let r = lease.store().get(key, opts).await;
        record(lease, &r, |o| o.bytes);
        r
    }

    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
        let lease = self.pick();
        let r = lease.store().stat(key).await;
        record(lease, &r, |_| 0);
        r
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let lease = self.pick();
        let r = lease.store().delete(key).await;
        record(lease, &r, |_| 0);
        r
    }

    /// Continuation tokens are passed on as they are: endpoints of one
    /// cluster understand each other's, so pages may come from different
    /// endpoints.
    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        let lease = self.pick();
        let r = lease.store().list(prefix, opts).await;
        record(lease, &r, |_| 0);
        r
    }

    /// The whole upload goes to one endpoint: its parts belong to one
    /// upload session there.
    async fn put_multipart(
        &self,
        key: &str,
        plan: PartPlan<'_>,
        part: PartSource<'_>,
    ) -> StoreResult<u64> {
        let lease = self.pick();
        let r = lease.store().put_multipart(key, plan, part).await;
        record(lease, &r, |_| plan.size);
        r
    }

    /// The whole streamed GET from one endpoint, like a GET.
    async fn get_chunks(
        &self,
        key: &str,
        range: Option<ByteRange>,
        sink: ChunkSink<'_>,
    ) -> StoreResult<GetOutcome> {
        let lease = self.pick();
        let r = lease.store().get_chunks(key, range, sink).await;
        record(lease, &r, |g| g.bytes);
        r
    }

    /// One batch call to one endpoint, counted as one request; it is an
    /// error when the call or any of its keys failed.
    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<StoreResult<()>>> {
        let lease = self.pick();
        let r = lease.store().delete_many(keys).await;
        let ok = r.as_ref().is_ok_and(|each| each.iter().all(|e| e.is_ok()));
        lease.finish(0, ok);
        r
    }

    fn batch_limit(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.store.batch_limit())
            .min()
            .unwrap_or(1)
    }

    async fn copy(&self, src: &str, dst: &str, plan: CopyPlan) -> StoreResult<u64> {
        let lease = self.pick();
        let r = lease.store().copy(src, dst, plan).await;
        record(lease, &r, |&b| b);
        r
    }

    async fn append(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let lease = self.pick();
        let len = data.len() as u64;
        let r = lease.store().append(key, data).await;
        record(lease, &r, |_| len);
        r
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> StoreResult<()> {
        let lease = self.pick();
        let r = lease.store().put_tags(key, tags).await;
        record(lease, &r, |_| 0);
        r
    }

    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        let lease = self.pick();
        let r = lease.store().get_tags(key).await;
        record(lease, &r, |_| 0);
        r
    }

    async fn put_retention(&self, key: &str, until: std::time::SystemTime) -> StoreResult<()> {
        let lease = self.pick();
        let r = lease.store().put_retention(key, until).await;
        record(lease, &r, |_| 0);
        r
    }

    /// Asked of one endpoint: endpoints serve one bucket.
    async fn versioning_enabled(&self) -> StoreResult<bool> {
        let lease = self.pick();
        let r = lease.store().versioning_enabled().await;
        record(lease, &r, |_| 0);
        r
    }

    async fn put_versioned(&self, key: &str, data: Bytes) -> StoreResult<Option<String>> {
        let lease = self.pick();
        let len = data.len() as u64;
        let r = lease.store().put_versioned(key, data).await;
        record(lease, &r, |_| len);
        r
    }

    async fn get_version(
        &self,
        key: &str,
        version: &str,
        opts: &GetOptions,
    ) -> StoreResult<GetOutcome> {
        let lease = self.pick();
        let r = lease.store().get_version(key, version, opts).await;
        record(lease, &r, |o| o.bytes);
        r
    }

    async fn delete_version(&self, key: &str, version: &str) -> StoreResult<()> {
        let lease = self.pick();
        let r = lease.store().delete_version(key, version).await;
        record(lease, &r, |_| 0);
        r
    }

    async fn list_versions(&self, prefix: &str, opts: &ListOptions) -> StoreResult<VersionPage> {
        let lease = self.pick();
        let r = lease.store().list_versions(prefix, opts).await;
        record(lease, &r, |_| 0);
        r
    }

    async fn delete_versions(
        &self,
        items: &[(String, String)],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        let lease = self.pick();
        let r = lease.store().delete_versions(items).await;
        let ok = r.as_ref().is_ok_and(|each| each.iter().all(|e| e.is_ok()));
        lease.finish(0, ok);
        r
    }

    async fn mkdir(&self, path: &str) -> StoreResult<()> {
        let lease = self.pick();
        let r = lease.store().mkdir(path).await;
        record(lease, &r, |_| 0);
        r
    }

    async fn rmdir(&self, path: &str) -> StoreResult<()> {
        let lease = self.pick();
        let r = lease.store().rmdir(path).await;
        record(lease, &r, |_| 0);
        r
    }

    /// Readies every endpoint, not one: endpoints may be separate clusters,
    /// and a dead one is better found before the run than during it. Not
    /// counted: it is setup, not load.
    async fn ensure_ready(&self) -> StoreResult<()> {
        for s in &self.slots {
            s.store.ensure_ready().await?;
        }
        Ok(())
    }

    async fn ensure_ready_with(&self, setup: BucketSetup) -> StoreResult<()> {
        for s in &self.slots {
            s.store.ensure_ready_with(setup).await?;
        }
        Ok(())
    }

    fn stage_begins(&self, removes_objects: bool) {
        for s in &self.slots {
            s.store.stage_begins(removes_objects);
        }
    }

    /// What any endpoint's store made, each name once.
    fn buckets_made(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for name in self.slots.iter().flat_map(|s| s.store.buckets_made()) {
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// Through the first endpoint: endpoints serve one namespace. Not
    /// counted: it is teardown, not load.
    async fn remove_buckets(&self, names: &[String]) -> StoreResult<u32> {
        self.slots[0].store.remove_buckets(names).await
    }
}

#[cfg(test)]
mod tests;

/// Opens a stage's endpoints as one [`MultiStore`]: `endpoints` are URLs,
/// templates (`http://10.0.0.{1...8}:9000`) or `@path` files listing them;
/// each becomes a store of `target`'s scheme pointed at that endpoint.
pub async fn open_multi(
    target: &str,
    endpoints: &[String],
    balance: &str,
    opts: &super::OpenOptions,
) -> StoreResult<MultiStore> {
    let bad = |m: String| StoreError::new(ErrorClass::Other, target, m);
    let balance: Balance = balance.parse().map_err(bad)?;
    let mut urls = Vec::new();
    for e in endpoints {
        match e.strip_prefix('@') {
            Some(path) => urls.extend(endpoints_from_file(path).map_err(bad)?),
            None => urls.extend(expand_template(e).map_err(bad)?),
        }
    }
    let mut stores = Vec::with_capacity(urls.len());
    for url in urls {
        let one = super::OpenOptions {
            endpoint: Some(url),
            ..opts.clone()
        };
        stores.push(super::open(target, &one).await?);
    }
    MultiStore::new(stores, balance)
}
