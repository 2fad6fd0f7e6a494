//! `buckets: N` through the engine: a prepare spreads the key space over
//! the buckets of a [`BucketSet`], a cleanup empties them and removes the
//! ones this agent made (and only those, and only with `buckets` > 1),
//! and a bucket that will not empty is left with a warning, not a failed
//! stage.

use std::sync::atomic::AtomicU32;

use super::*;
use crate::store::buckets::BucketSet;
use crate::store::{ErrorClass, StoreError, list_all};

/// One bucket: a `mem://` store that says it created its bucket when
/// readied, and removes it only when empty.
#[derive(Debug)]
struct Bucket {
    inner: Arc<MemoryStore>,
    name: String,
    made: AtomicBool,
    removed: AtomicBool,
    /// Removal attempts (a non-empty bucket is asked again).
    asked: AtomicU32,
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mem://{}", self.name)
    }
}

wrapper_store!(Bucket {
    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        self.inner.get(key, opts).await
    }
    async fn ensure_ready(&self) -> StoreResult<()> {
        self.made.store(true, Ordering::Relaxed);
        Ok(())
    }
    fn buckets_made(&self) -> Vec<String> {
        if self.made.load(Ordering::Relaxed) {
            vec![self.name.clone()]
        } else {
            Vec::new()
        }
    }
    async fn remove_buckets(&self, names: &[String]) -> StoreResult<u32> {
        if !names.contains(&self.name) {
            return Ok(0);
        }
        self.asked.fetch_add(1, Ordering::Relaxed);
        if !self.inner.list("", &ListOptions::default()).await?.entries.is_empty() {
            return Err(StoreError::new(ErrorClass::Other, "mem", "BucketNotEmpty"));
        }
        self.removed.store(true, Ordering::Relaxed);
        Ok(1)
    }
});

fn buckets(name: &str, n: usize) -> (Vec<Arc<Bucket>>, Arc<dyn ObjectStore>) {
    let all: Vec<Arc<Bucket>> = (1..=n)
        .map(|i| {
            let name = format!("{name}-{i}");
            Arc::new(Bucket {
                inner: Arc::new(MemoryStore::new(&name)),
                name,
                made: AtomicBool::new(false),
                removed: AtomicBool::new(false),
                asked: AtomicU32::new(0),
            })
        })
        .collect();
    let stores = all
        .iter()
        .map(|b| b.clone() as Arc<dyn ObjectStore>)
        .collect();
    let set = BucketSet::new(&format!("mem://{name}"), stores).expect("bucket set");
    (all, Arc::new(set))
}

async fn held(b: &Bucket) -> usize {
    list_all(b.inner.as_ref(), "", usize::MAX)
        .await
        .expect("list")
        .len()
}

const SPACE: &str = "objects: {count: 300, size: 1KiB}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_spreads_over_the_buckets_and_cleanup_removes_them() {
    let (all, store) = buckets("spread", 3);
    let p = stage(&format!(
        "{{name: p, type: prepare, concurrency: 8, buckets: 3, {SPACE}}}"
    ));
    let ran = run(&p, &store, None).await;
    assert_eq!(ran.out.metrics.total_ops(), 300);
    assert_eq!(ran.out.metrics.total_errors(), 0);
    assert_eq!(
        ran.out.keys.buckets_made(),
        ["spread-1", "spread-2", "spread-3"]
    );
    let mut total = 0;
    for b in &all {
        let n = held(b).await;
        // 100 each if even; FNV-1a of 300 keys stays well within this.
        assert!((60..=140).contains(&n), "{}: {n} of 300", b.name);
        total += n;
    }
    assert_eq!(total, 300);
    // A workload reads them back through the set.
    let w = stage(&format!(
        "{{name: w, type: workload, concurrency: 4, buckets: 3, {SPACE}, mix: {{get: 1}}, ops: 600}}"
    ));
    let ran = run(&w, &store, Some(ran.out.keys)).await;
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    let c = stage(&format!(
        "{{name: c, type: cleanup, concurrency: 4, buckets: 3, {SPACE}}}"
    ));
    let ran = run(&c, &store, Some(ran.out.keys)).await;
    assert_eq!(ran.out.metrics.total_errors(), 0);
    for b in &all {
        assert_eq!(held(b).await, 0, "{} emptied", b.name);
        assert!(b.removed.load(Ordering::Relaxed), "{} removed", b.name);
    }
    assert!(
        ran.out.keys.buckets_made().is_empty(),
        "nothing left to remove"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_stays_full_is_left_and_the_stage_stands() {
    let (all, store) = buckets("full", 3);
    let p = stage(&format!("{{name: p, type: prepare, buckets: 3, {SPACE}}}"));
    let keys = run(&p, &store, None).await.out.keys;
    // Something the run did not write keeps bucket 2 from emptying.
    all[1]
        .inner
        .put("not-ours", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let c = stage(&format!(
        "{{name: c, type: cleanup, buckets: 3, timeout: 1s, {SPACE}}}"
    ));
    let began = Instant::now();
    let ran = run(&c, &store, Some(keys)).await;
    assert_eq!(ran.out.metrics.total_ops(), 300, "its ops are all there");
    assert_eq!(ran.out.metrics.total_errors(), 0);
    assert!(all[0].removed.load(Ordering::Relaxed));
    assert!(!all[1].removed.load(Ordering::Relaxed));
    assert!(all[2].removed.load(Ordering::Relaxed));
    // Asked every 250 ms for the stage's 1 s timeout, then given up.
    let asked = all[1].asked.load(Ordering::Relaxed);
    assert!((3..=5).contains(&asked), "asked {asked} times");
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_buckets_the_bucket_stays() {
    let (all, store) = buckets("one", 2);
    let p = stage(&format!("{{name: p, type: prepare, {SPACE}}}"));
    let keys = run(&p, &store, None).await.out.keys;
    assert!(keys.buckets_made().is_empty());
    let c = stage(&format!("{{name: c, type: cleanup, {SPACE}}}"));
    run(&c, &store, Some(keys)).await;
    assert!(all.iter().all(|b| !b.removed.load(Ordering::Relaxed)));
    assert!(all.iter().all(|b| b.asked.load(Ordering::Relaxed) == 0));
}
