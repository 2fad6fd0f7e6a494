//! A wrapper that adds a fixed latency to every op of the store it wraps:
//! a slow endpoint or a queueing server on demand, for tests of load
//! balancing and open-loop pacing. Not for measuring anything.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{GetOptions, GetOutcome, ListOptions, ListPage, ObjectMeta, ObjectStore, StoreResult};

/// Wraps `inner`, sleeping `delay` before every op.
#[derive(Debug)]
pub struct DelayStore {
    inner: Arc<dyn ObjectStore>,
    delay_ns: AtomicU64,
}

impl DelayStore {
    pub fn new(inner: Arc<dyn ObjectStore>, delay: Duration) -> DelayStore {
        DelayStore {
            inner,
            delay_ns: AtomicU64::new(delay.as_nanos() as u64),
        }
    }

    /// Changes the delay of later ops (to make an endpoint slow mid-test).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ns
            .store(delay.as_nanos() as u64, Ordering::Relaxed);
    }

    async fn pause(&self) {
        let ns = self.delay_ns.load(Ordering::Relaxed);
        if ns > 0 {
            tokio::time::sleep(Duration::from_nanos(ns)).await;
        }
    }
}

impl fmt::Display for DelayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Duration::from_nanos(self.delay_ns.load(Ordering::Relaxed));
        write!(f, "delay({d:?}) -> {}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for DelayStore {
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.pause().await;
        self.inner.put(key, data).await
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        self.pause().await;
        self.inner.get(key, opts).await
    }

    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.pause().await;
        self.inner.stat(key).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.pause().await;
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        self.pause().await;
        self.inner.list(prefix, opts).await
    }

    fn stage_begins(&self, removes_objects: bool) {
        self.inner.stage_begins(removes_objects);
    }
}
