//! Kept open files (`file://`) and stages: the engine tells the store
//! whether a stage can remove objects. In one that cannot, a file the
//! store keeps open is checked once in the stage, not at every GET: a file
//! deleted behind the run's back mid-stage is still read, and the next
//! stage finds it gone.

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

use super::*;

/// Passes every call to `inner`; at the `after`-th GET it first deletes
/// `path` from disk, as `rm` would, behind the store's back.
#[derive(Debug)]
struct RmAfter {
    inner: Arc<dyn ObjectStore>,
    path: PathBuf,
    after: usize,
    gets: AtomicUsize,
}

impl fmt::Display for RmAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rm-after({}) -> {}", self.after, self.inner)
    }
}

wrapper_store!(RmAfter {
    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        if self.gets.fetch_add(1, Ordering::Relaxed) + 1 == self.after {
            std::fs::remove_file(&self.path).expect("rm");
        }
        self.inner.get(key, opts).await
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_without_removals_checks_kept_files_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    let keys = prepare(&store, 2, "64KiB").await;
    let reads = stage(
        "{name: r, type: workload, concurrency: 2, objects: {count: 2, size: 64KiB}, \
         mix: {range_get: 1}, range: {size: 4KiB}, ops: 400}",
    );
    assert!(!reads.removes_objects());
    let gone = dir.path().join("obj/00000000");
    let rm: Arc<dyn ObjectStore> = Arc::new(RmAfter {
        inner: store.clone(),
        path: gone.clone(),
        after: 100,
        gets: AtomicUsize::new(0),
    });

    // Both files are open and checked long before the 100th GET (2 keys
    // drawn at random); after it, object 0 has no name but is still read.
    let ran = run(&reads, &rm, Some(keys.clone())).await;
    assert!(!gone.exists());
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    assert_eq!(ran.count(OpKind::RangeGet), 400);

    // The next stage checks each kept file at its first GET.
    let ran = run(&reads, &store, Some(keys)).await;
    let errors = ran.errors();
    assert!(!errors.is_empty(), "object 0 was deleted before this stage");
    for r in errors {
        assert_eq!(r.file, "obj/00000000");
        assert!(r.error.starts_with("not_found"), "{}", r.error);
    }
}

#[test]
fn which_stages_remove_objects() {
    let removes = |spec: &str| {
        let spec = spec.replace("{name", "{ops: 1, objects: {count: 1, size: 1KiB}, name");
        stage(&spec).removes_objects()
    };
    assert!(!removes("{name: p, type: prepare, overwrite: true}"));
    assert!(removes("{name: c, type: cleanup}"));
    assert!(!removes(
        "{name: w, type: workload, mix: {get: 5, put: 5, stat: 1, list: 1}}"
    ));
    assert!(!removes(
        "{name: w, type: workload, mix: {get: 5, multipart_put: 1, mkdir: 1}}"
    ));
    assert!(removes(
        "{name: w, type: workload, mix: {get: 99, delete: 1}}"
    ));
    assert!(removes(
        "{name: w, type: workload, mix: {mkdir: 1, rmdir: 1}}"
    ));
    assert!(!removes(
        "{name: w, type: workload, mix: {get: 1, delete: 0}}"
    ));
}
