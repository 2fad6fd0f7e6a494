//! The object API's ops through the engine, on `mem://` (which has every
//! one): what each does to the store and to the agent's record of what
//! exists, how each is logged, and that a cleanup removes all they made.
//! The backends' own forms are tested against their servers
//! (tests/tests/object_api_*.rs).

use super::*;
use crate::store::memory::MemoryStore;

const OBJECTS: &str = "objects: {count: 20, size: 4KiB}";

fn mem_store(name: &str) -> (Arc<MemoryStore>, Arc<dyn ObjectStore>) {
    let m = Arc::new(MemoryStore::new(name));
    let store: Arc<dyn ObjectStore> = m.clone();
    (m, store)
}

fn workload(mix: &str, extra: &str) -> Stage {
    stage(&format!(
        "{{name: w, type: workload, concurrency: 2, {OBJECTS}, mix: {mix}, ops: 40{extra}}}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_appends_and_tags_land_and_cleanup_removes_them_in_batches() {
    let (m, store) = mem_store("api-copy");
    let keys = prepare(&store, 20, "4KiB").await;
    let w = workload(
        "{copy: 1, append: 1, tag: 1, get_tags: 1}",
        ", tags: {team: storage}",
    );
    let ran = run(&w, &store, Some(keys.clone())).await;
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    let copies: Vec<&OpRecord> = ran
        .records
        .iter()
        .filter(|r| r.op == OpKind::Copy)
        .collect();
    assert!(!copies.is_empty());
    for c in &copies {
        // The log names source and destination.
        let (src, dst) = c.file.split_once(" -> ").expect("copy names src -> dst");
        assert_eq!(dst, format!("{src}.copy"));
        assert_eq!(c.bytes, 4096);
        let a = store.get(src, &GetOptions::keep()).await.unwrap().data;
        let b = store.get(dst, &GetOptions::keep()).await.unwrap().data;
        assert_eq!(a, b, "the copy's bytes are the source's");
    }
    let appends: Vec<&OpRecord> = ran
        .records
        .iter()
        .filter(|r| r.op == OpKind::Append)
        .collect();
    assert!(!appends.is_empty());
    for a in &appends {
        assert!(a.file.ends_with(".append"), "{}", a.file);
        let n = appends.iter().filter(|x| x.file == a.file).count() as u64;
        assert_eq!(
            store.stat(&a.file).await.unwrap().size,
            4096 * n,
            "appends add up"
        );
    }
    let tagged = ran
        .records
        .iter()
        .find(|r| r.op == OpKind::Tag)
        .expect("a tag op");
    assert_eq!(
        m.tags_of(&tagged.file),
        Some(vec![("team".to_string(), "storage".to_string())])
    );
    assert!(ran.count(OpKind::GetTags) > 0);

    // A cleanup in batches of 8 removes the run's objects and every copy
    // and append, each batch one DELETE_BATCH naming how many it removed.
    let c = stage(&format!("{{name: c, type: cleanup, {OBJECTS}, batch: 8}}"));
    let cleaned = run(&c, &store, Some(ran.out.keys.clone())).await;
    assert!(
        cleaned.errors().is_empty(),
        "{:?}",
        cleaned.errors().first()
    );
    let objects: u64 = cleaned.records.iter().map(|r| u64::from(r.n_objects)).sum();
    let expected = 20
        + copies
            .iter()
            .map(|c| &c.file)
            .collect::<BTreeSet<_>>()
            .len() as u64
        + appends
            .iter()
            .map(|a| &a.file)
            .collect::<BTreeSet<_>>()
            .len() as u64;
    assert_eq!(objects, expected, "one delete per object, batched");
    assert!(cleaned.records.iter().all(|r| r.n_objects <= 8));
    assert!(cleaned.count(OpKind::DeleteBatch) > 0);
    let stats = &cleaned.out.metrics.ops[&OpKind::DeleteBatch];
    assert_eq!(
        stats.objects,
        cleaned
            .records
            .iter()
            .filter(|r| r.op == OpKind::DeleteBatch)
            .map(|r| u64::from(r.n_objects))
            .sum::<u64>()
    );
    let left = crate::store::list_all(store.as_ref(), "", 1000)
        .await
        .unwrap();
    assert!(left.is_empty(), "left behind: {:?}", left.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanup_that_starts_fresh_finds_side_objects_by_listing() {
    let (_, store) = mem_store("api-list-sides");
    let keys = prepare(&store, 20, "4KiB").await;
    let w = workload("{copy: 1}", "");
    run(&w, &store, Some(keys)).await;
    // No record of the session: the listing finds the copies.
    let c = stage(&format!("{{name: c, type: cleanup, {OBJECTS}}}"));
    let cleaned = run(&c, &store, None).await;
    assert!(
        cleaned.errors().is_empty(),
        "{:?}",
        cleaned.errors().first()
    );
    let left = crate::store::list_all(store.as_ref(), "", 1000)
        .await
        .unwrap();
    assert!(left.is_empty(), "left behind: {:?}", left.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_batch_removes_what_it_names_and_logs_how_many() {
    let (_, store) = mem_store("api-batch");
    let keys = prepare(&store, 20, "4KiB").await;
    let w = stage(&format!(
        "{{name: w, type: workload, concurrency: 1, {OBJECTS}, mix: {{delete_batch: 1}}, \
         ops: 2, batch: 5}}"
    ));
    let ran = run(&w, &store, Some(keys)).await;
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    let removed: u64 = ran.records.iter().map(|r| u64::from(r.n_objects)).sum();
    assert!((2..=10).contains(&removed), "{removed}");
    let left = crate::store::list_all(store.as_ref(), "", 1000)
        .await
        .unwrap();
    assert_eq!(
        left.len() as u64,
        20 - removed,
        "exactly the batch's keys went"
    );
    assert_eq!(ran.out.keys.present_count(), 20 - removed);
    assert!(ran.records[0].file.contains("more)") || ran.records[0].n_objects == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_recorded_read_verified_deleted_and_swept() {
    let (_, store) = mem_store("api-versions");
    let p = stage(&format!(
        "{{name: p, type: prepare, {OBJECTS}, versioning: true}}"
    ));
    let prepared = run(&p, &store, None).await;
    let keys = prepared.out.keys.clone();
    assert_eq!(keys.versions().len(), 20, "each put's version recorded");
    // Puts make new versions of existing keys; reads of versions verify.
    let w = workload(
        "{put: 2, get_version: 2, delete_version: 1, list_versions: 1}",
        ", versioning: true, verify: true",
    );
    let ran = run(&w, &store, Some(keys.clone())).await;
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    let gv = ran
        .records
        .iter()
        .find(|r| r.op == OpKind::GetVersion)
        .expect("a get_version");
    assert!(gv.file.contains("?versionId=v"), "{}", gv.file);
    assert_eq!(gv.bytes, 4096);
    assert!(
        ran.records
            .iter()
            .any(|r| r.op == OpKind::ListVersions && r.n_objects > 0)
    );

    // A versioned cleanup lists the versions and removes them all.
    let c = stage(&format!(
        "{{name: c, type: cleanup, {OBJECTS}, versioning: true, batch: 7}}"
    ));
    let cleaned = run(&c, &store, Some(ran.out.keys.clone())).await;
    assert!(
        cleaned.errors().is_empty(),
        "{:?}",
        cleaned.errors().first()
    );
    assert!(
        cleaned
            .records
            .iter()
            .all(|r| r.op == OpKind::DeleteBatch && r.n_objects <= 7)
    );
    let versions = store
        .list_versions("", &ListOptions::default())
        .await
        .unwrap();
    assert!(
        versions.entries.is_empty(),
        "left: {:?}",
        versions.entries.first()
    );
    let left = crate::store::list_all(store.as_ref(), "", 1000)
        .await
        .unwrap();
    assert!(left.is_empty(), "left behind: {:?}", left.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_set_for_the_plans_time() {
    let (m, store) = mem_store("api-retention");
    let keys = prepare(&store, 20, "4KiB").await;
    let w = stage(&format!(
        "{{name: w, type: workload, concurrency: 1, {OBJECTS}, mix: {{retention: 1}}, \
         ops: 3, retention: 2h}}"
    ));
    let ran = run(&w, &store, Some(keys)).await;
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    let until = m
        .retained_until(&ran.records[0].file)
        .expect("retention set");
    let ahead = until
        .duration_since(std::time::SystemTime::now())
        .expect("in the future")
        .as_secs();
    assert!((7190..=7201).contains(&ahead), "{ahead} s ahead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_op_with_none_recorded_says_so() {
    let (_, store) = mem_store("api-no-versions");
    let keys = prepare(&store, 20, "4KiB").await;
    let w = workload("{get_version: 1}", ", versioning: true");
    let ran = run(&w, &store, Some(keys)).await;
    let e = ran.errors();
    assert_eq!(e.len(), 40);
    assert!(
        e[0].error.starts_with("not_found: no version is recorded"),
        "{}",
        e[0].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_a_backend_lacks_fail_not_supported() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    let keys = prepare(&store, 20, "4KiB").await;
    let w = workload("{tag: 1}", "");
    let ran = run(&w, &store, Some(keys)).await;
    let e = ran.errors();
    assert_eq!(e.len(), 40);
    assert!(
        e[0].error.starts_with("not_supported: TAG"),
        "{}",
        e[0].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_version_is_no_key_to_read() {
    let (_, store) = mem_store("api-delete-version");
    // Each key has one version: deleting it removes the object, so the
    // agent must stop counting it as there (reads of it would fail).
    let p = stage(&format!(
        "{{name: p, type: prepare, {OBJECTS}, versioning: true}}"
    ));
    let keys = run(&p, &store, None).await.out.keys.clone();
    let w = stage(&format!(
        "{{name: w, type: workload, concurrency: 1, {OBJECTS}, ops: 80, versioning: true, \
         mix: {{delete_version: 1, get: 1, copy: 1, tag: 1}}}}"
    ));
    let ran = run(&w, &store, Some(keys)).await;
    assert!(ran.count(OpKind::DeleteVersion) > 5);
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    // What the agent holds as there is there.
    for i in 0..20 {
        let key = w.objects.key(i);
        assert_eq!(
            ran.out.keys.is_present(i),
            store.stat(&key).await.is_ok(),
            "{key}"
        );
    }
}

/// A store that takes batches of 1,000 keys, as S3 does.
#[derive(Debug)]
struct Batching {
    inner: Arc<dyn ObjectStore>,
}

impl fmt::Display for Batching {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batching({})", self.inner)
    }
}

wrapper_store!(Batching {
    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        self.inner.get(key, opts).await
    }
    fn batch_limit(&self) -> usize {
        1000
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cleanup_spreads_its_keys_over_every_worker() {
    let store: Arc<dyn ObjectStore> = Arc::new(Batching {
        inner: mem("api-small-cleanup"),
    });
    let keys = prepare(&store, 200, "1KiB").await;
    // 200 keys, 4 workers, no `batch`: batches of 50, not one of 200.
    let c = stage("{name: c, type: cleanup, concurrency: 4, objects: {count: 200, size: 1KiB}}");
    let cleaned = run(&c, &store, Some(keys)).await;
    assert!(
        cleaned.errors().is_empty(),
        "{:?}",
        cleaned.errors().first()
    );
    let sizes: Vec<u32> = cleaned.records.iter().map(|r| r.n_objects).collect();
    assert_eq!(sizes, [50, 50, 50, 50], "{sizes:?}");
    // With `batch` set, it is what the plan says.
    let keys = prepare(&store, 200, "1KiB").await;
    let c = stage(
        "{name: c, type: cleanup, concurrency: 4, batch: 200, objects: {count: 200, size: 1KiB}}",
    );
    let cleaned = run(&c, &store, Some(keys)).await;
    let sizes: Vec<u32> = cleaned.records.iter().map(|r| r.n_objects).collect();
    assert_eq!(sizes, [200]);
}
