//! Existing objects (`objects: {existing: true}`): objects written by
//! someone else are listed, split over agents, and read with their listed
//! sizes; the listing is made once per session.

use std::sync::atomic::AtomicU64;

use super::*;

/// Objects under `data/` of varied sizes: top-level ones, three
/// sub-prefixes (one nested), and keys outside the prefix that must not be
/// taken. Returns key → size of those under `data/`.
async fn populate(store: &Arc<dyn ObjectStore>) -> BTreeMap<String, u64> {
    let mut want = BTreeMap::new();
    let mut n = 0u64;
    let mut put = async |key: String| {
        n += 1;
        // Sizes from 1 byte to ~40 KiB, all different.
        let size = 1 + (n * 7919) % 40_000;
        store
            .put(&key, Bytes::from(vec![b'x'; size as usize]))
            .await
            .unwrap();
        (key, size)
    };
    for i in 0..7 {
        let (k, s) = put(format!("data/top-{i}")).await;
        want.insert(k, s);
    }
    for sub in ["a", "b", "c/deep"] {
        for i in 0..9 {
            let (k, s) = put(format!("data/{sub}/obj-{i}")).await;
            want.insert(k, s);
        }
    }
    for stray in ["dat", "datb/x", "other/data/y"] {
        put(stray.to_string()).await;
    }
    want
}

/// What an agent's index holds, key → size.
fn share_of(keys: &KeyState) -> BTreeMap<String, u64> {
    let index = keys.existing().expect("an existing index");
    (0..index.len())
        .map(|i| (index.key(i), index.size(i)))
        .collect()
}

const READ: &str = "name: r, type: workload, objects: {existing: true, prefix: data/}, \
     mix: {get: 4, range_get: 2, stat: 2, list: 1}, range: {size: 1KiB}";

/// Every object under the prefix is in exactly one agent's share, with the
/// size it was written with, for more agents than sub-prefixes and fewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_split_the_listing_and_together_hold_every_object_once() {
    let store = mem("existing-split");
    let want = populate(&store).await;
    for agents in [1u32, 2, 5] {
        let s = stage(&format!("{{{READ}, ops: {}}}", 10 * agents));
        let mut seen = BTreeMap::new();
        for agent in 0..agents {
            let ran = run_as(&s, &store, None, agent, agents, false).await;
            let share = share_of(&ran.out.keys);
            assert!(!share.is_empty(), "agent {agent} of {agents} has objects");
            for (k, size) in share {
                assert!(
                    seen.insert(k.clone(), size).is_none(),
                    "{k} in two shares of {agents}"
                );
            }
        }
        assert_eq!(seen, want, "{agents} agents");
    }
}

/// GETs read every byte of the object as listed, range GETs at most the
/// range and inside it, stats and lists succeed; the op-log names objects
/// by their keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_draw_listed_objects_and_move_their_listed_sizes() {
    let store = mem("existing-reads");
    let want = populate(&store).await;
    let s = stage(&format!("{{{READ}, ops: 600}}"));
    let ran = run(&s, &store, None).await;
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    assert_eq!(ran.records.len(), 600);
    let mut read = BTreeSet::new();
    for r in &ran.records {
        match r.op {
            OpKind::Get => {
                assert_eq!(Some(&r.bytes), want.get(&r.file), "{}", r.file);
                read.insert(r.file.clone());
            }
            OpKind::RangeGet => {
                let size = want[&r.file];
                assert!(r.bytes > 0 && r.bytes <= 1024.min(size), "{r:?}");
            }
            OpKind::Stat => assert!(want.contains_key(&r.file), "{}", r.file),
            // Recursive: every object under the prefix.
            OpKind::List => assert_eq!((r.file.as_str(), r.n_objects), ("data/", 34)),
            op => panic!("{op} in a read mix"),
        }
    }
    for op in [OpKind::Get, OpKind::RangeGet, OpKind::Stat, OpKind::List] {
        assert!(ran.count(op) > 0, "no {op}");
    }
    // ~270 uniform draws over 34 objects reach nearly all of them.
    assert!(read.len() > 25, "{} objects read", read.len());
}

/// A store that counts listing requests.
#[derive(Debug)]
struct Lists {
    inner: Arc<dyn ObjectStore>,
    lists: AtomicU64,
}

impl fmt::Display for Lists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "counted -> {}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Lists {
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        self.inner.get(key, opts).await
    }
    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.inner.stat(key).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix, opts).await
    }
}

/// The listing is one top-level page and one page per sub-prefix, made
/// once: a later stage of the session on the same prefix reuses the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_stage_reuses_the_index() {
    let inner = mem("existing-reuse");
    populate(&inner).await;
    let counted = Arc::new(Lists {
        inner,
        lists: AtomicU64::new(0),
    });
    let store: Arc<dyn ObjectStore> = counted.clone();
    let s = stage(
        "{name: g, type: workload, objects: {existing: true, prefix: data/}, \
         mix: {get: 1}, ops: 50}",
    );
    let first = run(&s, &store, None).await;
    assert_eq!(counted.lists.load(Ordering::Relaxed), 4, "top level + 3");
    let second = run(&s, &store, Some(first.out.keys.clone())).await;
    assert_eq!(second.count(OpKind::Get), 50);
    assert_eq!(
        counted.lists.load(Ordering::Relaxed),
        4,
        "no second listing"
    );
    assert!(Arc::ptr_eq(&first.out.keys, &second.out.keys));
}

/// `existing: true` on a prefix that holds nothing fails before any op,
/// naming the stage, the target and the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_prefix_is_an_error_before_any_op() {
    let store = mem("existing-empty");
    populate(&store).await;
    let s = stage(
        "{name: nothing, type: workload, objects: {existing: true, prefix: none/}, \
         mix: {get: 1}, ops: 5}",
    );
    let run = StageRun {
        deal: Deal::whole(0, 1),
        agent_id: "agent-0".into(),
        data: DataSpec::new(SEED),
        stage_index: 0,
        stage: s,
        store,
        multi: Vec::new(),
        oplog: None,
        keys: None,
        pools: None,
        start_at: Instant::now(),
        clock: crate::clock::Anchor::now(),
        live: Arc::new(LiveCounters::default()),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let live = run.live.clone();
    let e = match tokio::time::timeout(STAGE_TIMEOUT, run_stage(run)).await {
        Ok(Err(e)) => format!("{e:#}"),
        Ok(Ok(_)) => panic!("a stage on an empty prefix ran"),
        Err(_) => panic!("hung"),
    };
    assert_eq!(
        e,
        "stage `nothing`: `existing: true` but prefix `none/` of target `mem://t` holds no objects"
    );
    assert_eq!(live.ops.load(Ordering::Relaxed), 0);
}

/// Zipf over an agent's share follows listing order: the first listed
/// object is the hottest, on every run alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipf_ranks_follow_listing_order() {
    let store = mem("existing-zipf");
    populate(&store).await;
    let s = stage(
        "{name: z, type: workload, concurrency: 1, \
         objects: {existing: true, prefix: data/, distribution: {zipf: 1.5}}, \
         mix: {stat: 1}, ops: 2000}",
    );
    let ran = run(&s, &store, None).await;
    let mut hits = BTreeMap::<&str, u32>::new();
    for r in &ran.records {
        *hits.entry(r.file.as_str()).or_default() += 1;
    }
    let (hottest, _) = hits.iter().max_by_key(|(_, n)| **n).unwrap();
    // Top-level objects are listed first, in key order.
    assert_eq!(*hottest, "data/top-0");
}

/// With `allow_delete`, each delete takes an object no op of this agent
/// deleted before: as many deletes as objects remove them all, none
/// failing on one already gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_take_each_object_once() {
    let store = mem("existing-delete");
    let want = populate(&store).await;
    let s = stage(&format!(
        "{{name: d, type: workload, concurrency: 4, \
         objects: {{existing: true, prefix: data/, allow_delete: true}}, \
         mix: {{delete: 1}}, ops: {}}}",
        want.len()
    ));
    let ran = run(&s, &store, None).await;
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    let deleted: BTreeSet<&str> = ran.records.iter().map(|r| r.file.as_str()).collect();
    assert_eq!(deleted.len(), want.len());
    let left = crate::store::list_all(store.as_ref(), "data/", 100)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}
