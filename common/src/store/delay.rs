//! Wrappers that make the store they wrap slower, for tests: [`Paused`]
//! waits for a [`Pause`] before every op of its inner store. Here,
//! [`DelayStore`] adds a fixed latency (a slow endpoint, for tests of load
//! balancing and open-loop pacing); `capacity.rs` adds a queue of known
//! capacity. Not for measuring anything.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    ByteRange, ChunkSink, GetOptions, GetOutcome, ListOptions, ListPage, ObjectMeta, ObjectStore,
    PartPlan, PartSource, StoreResult,
};

/// What a [`Paused`] store waits for before each op.
pub trait Pause: fmt::Debug + Send + Sync {
    fn pause(&self) -> impl Future<Output = ()> + Send;
}

/// `inner`, with its pause waited for before every op.
#[derive(Debug)]
pub struct Paused<P> {
    inner: Arc<dyn ObjectStore>,
    pause: P,
}

impl<P: Pause> Paused<P> {
    pub fn wrap(inner: Arc<dyn ObjectStore>, pause: P) -> Paused<P> {
        Paused { inner, pause }
    }

    /// The store wrapped.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// What it waits for.
    pub fn waits_for(&self) -> &P {
        &self.pause
    }
}

#[async_trait]
impl<P: Pause> ObjectStore for Paused<P>
where
    Paused<P>: fmt::Display,
{
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.pause.pause().await;
        self.inner.put(key, data).await
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        self.pause.pause().await;
        self.inner.get(key, opts).await
    }

    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.pause.pause().await;
        self.inner.stat(key).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.pause.pause().await;
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        self.pause.pause().await;
        self.inner.list(prefix, opts).await
    }

    async fn get_chunks(
        &self,
        key: &str,
        range: Option<ByteRange>,
        sink: ChunkSink<'_>,
    ) -> StoreResult<GetOutcome> {
        self.pause.pause().await;
        self.inner.get_chunks(key, range, sink).await
    }

    async fn put_multipart(
        &self,
        key: &str,
        plan: PartPlan<'_>,
        part: PartSource<'_>,
    ) -> StoreResult<u64> {
        self.pause.pause().await;
        self.inner.put_multipart(key, plan, part).await
    }

    fn stage_begins(&self, removes_objects: bool) {
        self.inner.stage_begins(removes_objects);
    }
}

/// A fixed latency, changeable mid-test.
#[derive(Debug)]
pub struct Delay {
    ns: AtomicU64,
}

impl Pause for Delay {
    async fn pause(&self) {
        let ns = self.ns.load(Ordering::Relaxed);
        if ns > 0 {
            tokio::time::sleep(Duration::from_nanos(ns)).await;
        }
    }
}

/// Wraps a store, sleeping `delay` before every op.
pub type DelayStore = Paused<Delay>;

impl DelayStore {
    pub fn new(inner: Arc<dyn ObjectStore>, delay: Duration) -> DelayStore {
        let ns = AtomicU64::new(delay.as_nanos() as u64);
        Paused::wrap(inner, Delay { ns })
    }

    /// Changes the delay of later ops (to make an endpoint slow mid-test).
    pub fn set_delay(&self, delay: Duration) {
        self.pause
            .ns
            .store(delay.as_nanos() as u64, Ordering::Relaxed);
    }
}

impl fmt::Display for DelayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Duration::from_nanos(self.pause.ns.load(Ordering::Relaxed));
        write!(f, "delay({d:?}) -> {}", self.inner)
    }
}
