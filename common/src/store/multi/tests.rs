//! Tests of the balancing, the counters and the forwarding store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::store::conformance;
use crate::store::delay::DelayStore;
use crate::store::memory::MemoryStore;

/// Three separate in-memory endpoints, each named after its position.
fn separate(n: usize) -> Vec<Arc<dyn ObjectStore>> {
    (0..n)
        .map(|i| Arc::new(MemoryStore::new(&format!("ep{i}"))) as Arc<dyn ObjectStore>)
        .collect()
}

fn requests(m: &MultiStore) -> Vec<u64> {
    m.stats().iter().map(|s| s.requests).collect()
}

#[test]
fn balance_names_round_trip() {
    for b in Balance::ALL {
        assert_eq!(b.name().parse::<Balance>(), Ok(b));
        assert_eq!(b.to_string(), b.name());
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, format!("\"{}\"", b.name()));
    }
    let e = "fastest".parse::<Balance>().unwrap_err();
    assert!(
        e.contains("fastest") && e.contains("least_connections"),
        "{e}"
    );
    assert_eq!(Balance::default(), Balance::RoundRobin);
}

#[test]
fn empty_or_oversized_lists_are_errors() {
    let e = MultiStore::new(Vec::new(), Balance::RoundRobin).unwrap_err();
    assert!(e.message.contains("got 0"), "{e}");
    let one: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("one"));
    let e = MultiStore::new(vec![one; MAX_ENDPOINTS + 1], Balance::RoundRobin).unwrap_err();
    assert!(e.message.contains(&MAX_ENDPOINTS.to_string()), "{e}");
}

#[test]
fn display_and_endpoint() {
    let m = MultiStore::new(separate(3), Balance::LeastConnections).unwrap();
    assert_eq!(m.endpoint(), "multi(3 endpoints)");
    assert_eq!(
        m.to_string(),
        "multi(least_connections: mem://ep0, mem://ep1, mem://ep2)"
    );
    let m = MultiStore::new(separate(20), Balance::RoundRobin).unwrap();
    let shown = m.to_string();
    assert!(
        shown.contains("mem://ep15") && !shown.contains("mem://ep16"),
        "{shown}"
    );
    assert!(shown.ends_with("… 4 more)"), "{shown}");
}

#[tokio::test]
async fn round_robin_spreads_exactly() {
    const OPS: u64 = 30_000;
    let m = MultiStore::new(separate(3), Balance::RoundRobin).unwrap();
    for i in 0..OPS {
        m.put(&format!("k{i}"), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    let even = OPS / 3;
    for s in m.stats() {
        // Within 1% is the check; round-robin in fact gives exactly 1/3.
        assert!(s.requests.abs_diff(even) <= even / 100, "{s:?}");
        assert_eq!(s.requests, even, "{s:?}");
        assert_eq!(s.bytes, even);
        assert_eq!((s.errors, s.in_flight), (0, 0));
    }
}

#[test]
fn leases_rotate_and_name_their_endpoint() {
    let m = MultiStore::new(separate(3), Balance::RoundRobin).unwrap();
    let picked: Vec<(usize, String)> = (0..6)
        .map(|_| {
            let l = m.pick();
            let r = (l.index(), l.endpoint().to_string());
            assert_eq!(l.store().endpoint(), r.1);
            l.finish(0, true);
            r
        })
        .collect();
    let idx: Vec<usize> = picked.iter().map(|p| p.0).collect();
    assert_eq!(idx, [0, 1, 2, 0, 1, 2]);
    assert_eq!(picked[1].1, "mem://ep1");
}

#[test]
fn least_connections_shares_evenly_when_idle() {
    let m = MultiStore::new(separate(3), Balance::LeastConnections).unwrap();
    for _ in 0..3_000 {
        m.pick().finish(1, true);
    }
    assert_eq!(requests(&m), [1_000, 1_000, 1_000]);
}

#[test]
fn least_connections_avoids_busy_endpoints() {
    let m = MultiStore::new(separate(3), Balance::LeastConnections).unwrap();
    // Hold two ops on whatever endpoints come first; the next picks must
    // go to the idle one until it is as busy as the others.
    let a = m.pick();
    let b = m.pick();
    let busy = [a.index(), b.index()];
    assert_ne!(busy[0], busy[1]);
    let c = m.pick();
    assert!(!busy.contains(&c.index()));
    // Now all have one; ties rotate, and none is picked twice in a row
    // before each has two.
    let more: Vec<Lease> = (0..3).map(|_| m.pick()).collect();
    let mut idx: Vec<usize> = more.iter().map(Lease::index).collect();
    idx.sort_unstable();
    assert_eq!(idx, [0, 1, 2]);
    drop((a, b, c, more));
    assert!(m.stats().iter().all(|s| s.in_flight == 0));
}

/// Ties among the idle endpoints rotate evenly even while another endpoint
/// is busy. (Scanning from a rotating start instead would hand the busy
/// endpoint's turns to its neighbour: 1/3 against 2/3.)
#[test]
fn least_connections_ties_stay_even_around_a_busy_endpoint() {
    let m = MultiStore::new(separate(3), Balance::LeastConnections).unwrap();
    m.pick().finish(0, true); // turn 0 goes to endpoint 0,
    let busy = m.pick(); // turn 1 to endpoint 1, which stays busy.
    assert_eq!(busy.index(), 1);
    for _ in 0..3_000 {
        m.pick().finish(0, true);
    }
    assert_eq!(requests(&m), [1 + 1_500, 1, 1_500]);
    drop(busy);
}

#[test]
fn dropped_lease_releases_in_flight_without_counting_bytes() {
    let m = MultiStore::new(separate(3), Balance::LeastConnections).unwrap();
    let lease = m.pick();
    let i = lease.index();
    assert_eq!(m.stats()[i].in_flight, 1);
    assert_eq!(m.stats()[i].requests, 1);
    drop(lease);
    let s = &m.stats()[i];
    assert_eq!((s.requests, s.bytes, s.errors, s.in_flight), (1, 0, 0, 0));

    let lease = m.pick();
    let i = lease.index();
    lease.finish(42, false);
    let s = &m.stats()[i];
    assert_eq!((s.requests, s.bytes, s.errors, s.in_flight), (1, 42, 1, 0));
}

/// One endpoint that takes forever, to cancel or panic ops in the middle.
fn hung() -> Arc<MultiStore> {
    let slow: Arc<dyn ObjectStore> = Arc::new(DelayStore::new(
        Arc::new(MemoryStore::new("hung")),
        Duration::from_secs(3600),
    ));
    Arc::new(MultiStore::new(vec![slow], Balance::LeastConnections).unwrap())
}

#[tokio::test]
async fn cancelled_ops_release_in_flight() {
    let m = hung();
    // Through the forwarding impl.
    let r = tokio::time::timeout(Duration::from_millis(20), m.get("k", &GetOptions::whole())).await;
    assert!(r.is_err(), "the op should have timed out");
    // Through a lease held by the engine's own op future.
    let op = async {
        let lease = m.pick();
        let r = lease.store().put("k", Bytes::from_static(b"abc")).await;
        lease.finish(3, r.is_ok());
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(20), op)
            .await
            .is_err()
    );
    // And a task aborted from outside.
    let m2 = Arc::clone(&m);
    let task = tokio::spawn(async move { m2.stat("k").await });
    while m.stats()[0].in_flight == 0 {
        tokio::task::yield_now().await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let s = &m.stats()[0];
    assert_eq!((s.requests, s.bytes, s.errors, s.in_flight), (3, 0, 0, 0));
}

fn blow_up() {
    panic!("op blew up (expected by this test)");
}

#[tokio::test]
async fn panicking_op_releases_in_flight() {
    let m = hung();
    let m2 = Arc::clone(&m);
    let task = tokio::spawn(async move {
        let _lease = m2.pick();
        blow_up();
    });
    assert!(task.await.unwrap_err().is_panic());
    let s = &m.stats()[0];
    assert_eq!((s.requests, s.in_flight), (1, 0));
}

/// The checks every store passes, through three gateways of one cluster:
/// the same store three times, so every endpoint sees every key.
#[tokio::test]
async fn conformance_through_three_gateways() {
    for balance in Balance::ALL {
        let cluster: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("cluster"));
        let m = MultiStore::new(vec![cluster; 3], balance).unwrap();
        m.ensure_ready().await.unwrap();
        conformance::run_all(&m, "multi/").await;
        let stats = m.stats();
        let total: u64 = stats.iter().map(|s| s.requests).sum();
        assert!(total > 30, "{balance}: {stats:?}");
        for s in &stats {
            // Sequential ops: every gateway got its third (give or take the
            // rotation's last lap), and nothing was left in flight.
            assert!(s.requests.abs_diff(total / 3) <= 1, "{balance}: {stats:?}");
            assert_eq!(s.in_flight, 0);
        }
        let errors: u64 = stats.iter().map(|s| s.errors).sum();
        assert!(
            errors >= 2,
            "the suite GETs and STATs a missing key: {stats:?}"
        );
        let merged = m.stats_by_endpoint();
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].requests, total);
        assert_eq!(merged[0].endpoint, "mem://cluster");
    }
}

/// What the load tasks saw, to check the store's counters against.
#[derive(Default)]
struct Tally {
    ops: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_connections_sends_less_to_a_slow_endpoint() {
    const TASKS: usize = 32;
    const RUN: Duration = Duration::from_secs(1);
    const SLOW: Duration = Duration::from_millis(20);
    // Three gateways to one cluster, so a key written through one can be
    // read through another; endpoint 1 is made slow.
    let cluster: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("lc"));
    let gateways: Vec<Arc<DelayStore>> = (0..3)
        .map(|_| Arc::new(DelayStore::new(Arc::clone(&cluster), Duration::ZERO)))
        .collect();
    gateways[1].set_delay(SLOW);
    let stores = gateways
        .iter()
        .map(|g| Arc::clone(g) as Arc<dyn ObjectStore>)
        .collect();
    let m = Arc::new(MultiStore::new(stores, Balance::LeastConnections).unwrap());
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + RUN;

    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (m, tally) = (Arc::clone(&m), Arc::clone(&tally));
            tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < end {
                    // Each PUT's key is read back by the GET after it.
                    let key = format!("t{t}/{}", (i / 3) % 16);
                    // PUT, GET of what was written, GET of a missing key.
                    let (bytes, ok) = match i % 3 {
                        0 => {
                            let data = Bytes::from(vec![7u8; 100 + t]);
                            let len = data.len() as u64;
                            let r = m.put(&key, data).await;
                            (if r.is_ok() { len } else { 0 }, r.is_ok())
                        }
                        1 => match m.get(&key, &GetOptions::whole()).await {
                            Ok(o) => (o.bytes, true),
                            Err(_) => (0, false),
                        },
                        _ => {
                            let r = m.get(&format!("missing/{i}"), &GetOptions::whole()).await;
                            (0, r.is_ok())
                        }
                    };
                    tally.ops.fetch_add(1, Ordering::Relaxed);
                    tally.bytes.fetch_add(bytes, Ordering::Relaxed);
                    tally.errors.fetch_add(u64::from(!ok), Ordering::Relaxed);
                    i += 1;
                    // The fast endpoints never wait: let the other tasks in,
                    // as a real network store's awaits would.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    let stats = m.stats();
    let ops = tally.ops.load(Ordering::Relaxed);
    let even = ops / 3;
    // Shown with --nocapture: how lopsided the split was.
    eprintln!("{ops} ops in {RUN:?}: {stats:?}");
    assert!(
        ops > 3_000,
        "too little load to judge: {ops} ops, {stats:?}"
    );
    assert!(
        stats[1].requests < even / 2,
        "slow endpoint got {} of {ops} ops (even share {even}): {stats:?}",
        stats[1].requests
    );
    assert_eq!(
        stats.iter().map(|s| s.requests).sum::<u64>(),
        ops,
        "{stats:?}"
    );
    assert_eq!(
        stats.iter().map(|s| s.bytes).sum::<u64>(),
        tally.bytes.load(Ordering::Relaxed),
        "{stats:?}"
    );
    let errors = tally.errors.load(Ordering::Relaxed);
    // At least every GET of a missing key failed.
    assert!(
        errors >= ops / 3 - TASKS as u64,
        "{errors} errors of {ops} ops"
    );
    assert_eq!(
        stats.iter().map(|s| s.errors).sum::<u64>(),
        errors,
        "{stats:?}"
    );
    assert!(stats.iter().all(|s| s.in_flight == 0), "{stats:?}");
    // The slow endpoint was still used (ties and its idle moments), not
    // cut off: least-connections is not a health check.
    assert!(stats[1].requests > 0, "{stats:?}");
}

/// The object API's ops go through the balancer like the core ops: each
/// to one endpoint, counted there (a store left on the trait's default
/// would answer `not_supported`).
#[tokio::test]
async fn the_object_api_is_forwarded_and_counted() {
    let shared: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("shared"));
    let m = MultiStore::new(vec![shared.clone(); 2], Balance::RoundRobin).unwrap();
    m.put("k", Bytes::from_static(b"abc")).await.unwrap();
    let plan = CopyPlan {
        size: 3,
        part_size: 8,
    };
    assert_eq!(m.copy("k", "k.copy", plan).await.unwrap(), 3);
    m.append("a", Bytes::from_static(b"xy")).await.unwrap();
    m.append("a", Bytes::from_static(b"z")).await.unwrap();
    assert_eq!(shared.stat("a").await.unwrap().size, 3);
    let tags = vec![("t".to_string(), "v".to_string())];
    m.put_tags("k", &tags).await.unwrap();
    assert_eq!(m.get_tags("k").await.unwrap(), tags);
    m.put_retention("k", std::time::SystemTime::now())
        .await
        .unwrap();
    assert!(m.versioning_enabled().await.unwrap());
    let v = m
        .put_versioned("v", Bytes::from_static(b"1"))
        .await
        .unwrap()
        .unwrap();
    let got = m.get_version("v", &v, &GetOptions::keep()).await.unwrap();
    assert_eq!(got.data.as_deref(), Some(&b"1"[..]));
    let page = m.list_versions("v", &ListOptions::default()).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    let each = m.delete_versions(&[("v".to_string(), v)]).await.unwrap();
    assert!(each.iter().all(|r| r.is_ok()));
    assert!(shared.stat("v").await.is_err(), "the last version went");
    // put, copy, 2 appends, 2 tag ops, retention, the versioning query,
    // put_versioned, get_version, list_versions, delete_versions.
    assert_eq!(requests(&m).iter().sum::<u64>(), 12);
    assert_eq!(m.batch_limit(), 1);
}
