//! A store of known capacity, for tests of what measures capacity (the
//! capacity search, steady state): it wraps an in-process store and serves
//! its ops through `servers` FIFO servers that each take `service` per op,
//! so it sustains exactly `servers / service` ops/s; above that its queue,
//! and so its latency, grows without bound, as a saturated server's does.
//!
//! Service times are computed, not slept one after another: an op's end is
//! `max(now, earliest free server) + service`, and it sleeps until then, so
//! the capacity is exact whatever the timer's resolution (which only adds
//! its jitter to each op's latency).
//!
//! Tests register a model under a `mem://` name ([`limit`]); `store::open`
//! wraps that name's store with it. Built only for this crate's tests and
//! with the `test-support` feature: a binary never registers one.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ObjectStore;
use super::delay::{Pause, Paused};

/// The servers of one store of known capacity.
#[derive(Debug)]
pub struct Capacity {
    service_ns: AtomicU64,
    /// When each server is next free.
    free_at: Mutex<Vec<Instant>>,
}

impl Capacity {
    /// Ops/s it sustains now.
    pub fn ops_per_s(&self) -> f64 {
        let servers = self.free_at.lock().unwrap_or_else(|p| p.into_inner()).len();
        servers as f64 * 1e9 / self.service_ns.load(Ordering::Relaxed).max(1) as f64
    }

    /// Changes the service time of later ops (a store that slows down).
    pub fn set_service(&self, service: Duration) {
        self.service_ns
            .store(service.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Waits for this op's turn on the earliest free server and its
    /// service time.
    async fn serve(&self) {
        let service = Duration::from_nanos(self.service_ns.load(Ordering::Relaxed));
        let done = {
            let mut free = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let Some(server) = free.iter_mut().min() else {
                return;
            };
            *server = (*server).max(now) + service;
            *server
        };
        tokio::time::sleep_until(done.into()).await;
    }
}

fn registry() -> &'static Mutex<HashMap<String, Arc<Capacity>>> {
    static REGISTRY: std::sync::OnceLock<Mutex<HashMap<String, Arc<Capacity>>>> =
        std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Makes `mem://<name>` a store of `servers` servers taking `service` per
/// op, for every store opened after this in the process.
pub fn limit(name: &str, servers: usize, service: Duration) -> Arc<Capacity> {
    let now = Instant::now();
    let c = Arc::new(Capacity {
        service_ns: AtomicU64::new(service.as_nanos() as u64),
        free_at: Mutex::new(vec![now; servers.max(1)]),
    });
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_string(), c.clone());
    c
}

/// `inner` behind the model registered for `mem://<name>`, if there is one.
pub fn wrap(name: &str, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let model = registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .cloned();
    match model {
        Some(capacity) => Arc::new(CapacityStore::wrap(inner, capacity)),
        None => inner,
    }
}

/// A store behind a [`Capacity`].
pub type CapacityStore = Paused<Arc<Capacity>>;

impl Pause for Arc<Capacity> {
    async fn pause(&self) {
        self.serve().await;
    }
}

impl fmt::Display for CapacityStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "capacity({:.0} ops/s) -> {}",
            self.waits_for().ops_per_s(),
            self.inner()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_sustains_exactly_its_capacity() {
        let inner = crate::store::memory::MemoryStore::named("capacity-unit");
        let model = limit("capacity-unit", 4, Duration::from_millis(2));
        let store = wrap("capacity-unit", inner);
        assert!((model.ops_per_s() - 2000.0).abs() < 1e-6);
        // 400 ops at once: 4 servers × 2 ms each, so the last ends ~200 ms on.
        let t0 = Instant::now();
        let ops = (0..400).map(|_| store.stat("missing"));
        futures::future::join_all(ops).await;
        let took = t0.elapsed().as_secs_f64();
        assert!((0.195..0.3).contains(&took), "{took}");
    }
}
