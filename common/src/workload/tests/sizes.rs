//! Object sizes, ranges and multipart parts, checked on what the engine
//! really wrote and read: uniform sizes with random ranges, and multipart
//! PUTs whose parts verify.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniform_sizes_and_random_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    let objects = "objects: {count: 40, size: {uniform: {min: 1KiB, max: 64KiB}}}";
    let p = stage(&format!("{{name: p, type: prepare, {objects}}}"));
    let prepared = run(&p, &store, None).await;
    assert_eq!(prepared.count(OpKind::Put), 40);
    let mut sizes = BTreeSet::new();
    for i in 0..40 {
        let want = p.objects.size.size_of(SEED, i);
        assert!((1024..=65536).contains(&want));
        let key = p.objects.key(i);
        let on_disk = std::fs::metadata(dir.path().join(&key)).unwrap().len();
        assert_eq!(on_disk, want, "{key}");
        sizes.insert(on_disk);
    }
    assert!(sizes.len() >= 30, "sizes do not vary: {sizes:?}");
    let logged: BTreeMap<u64, u64> = prepared
        .records
        .iter()
        .map(|r| (index_of(&r.file), r.bytes))
        .collect();
    assert!(
        logged
            .iter()
            .all(|(&i, &b)| b == p.objects.size.size_of(SEED, i))
    );

    // Random 4 KiB ranges, verified: offsets and lengths inside each object
    // are right, and no op moves more than 4 KiB.
    let r = stage(&format!(
        "{{name: r, type: workload, {objects}, mix: {{range_get: 1}}, range: {{size: 4KiB}}, \
         verify: true, ops: 600}}"
    ));
    let ran = run(&r, &store, Some(prepared.out.keys.clone())).await;
    assert_eq!(ran.records.len(), 600);
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    assert!(
        ran.records
            .iter()
            .all(|r| r.op == OpKind::RangeGet && (1..=4096).contains(&r.bytes))
    );
    assert!(
        ran.records.iter().any(|r| r.bytes < 4096),
        "short last ranges of objects whose size is not a multiple of 4 KiB"
    );
    assert_eq!(ran.out.metrics.total_bytes(), ran.bytes());
}

/// One multipart upload: the key and its parts as (offset, length).
type Upload = (String, Vec<(u64, u64)>);

/// A store that logs the parts of each multipart PUT it passes on.
#[derive(Debug)]
struct PartLog {
    inner: Arc<dyn ObjectStore>,
    parts: Mutex<Vec<Upload>>,
}

impl fmt::Display for PartLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parts -> {}", self.inner)
    }
}

wrapper_store!(PartLog {
    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        self.inner.get(key, opts).await
    }
    async fn put_multipart(
        &self,
        key: &str,
        plan: PartPlan<'_>,
        part: PartSource<'_>,
    ) -> StoreResult<u64> {
        let this_op = Mutex::new(Vec::new());
        let logged = |offset: u64, len: u64| {
            this_op
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((offset, len));
            part(offset, len)
        };
        let result = self
            .inner
            .put_multipart(key, plan, &logged)
            .await;
        let op = this_op.into_inner().unwrap_or_else(|e| e.into_inner());
        self.parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key.to_string(), op));
        result
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_put_writes_parts_that_verify() {
    let dir = tempfile::tempdir().unwrap();
    let parts = Arc::new(PartLog {
        inner: file_store(dir.path()),
        parts: Mutex::new(Vec::new()),
    });
    let store: Arc<dyn ObjectStore> = parts.clone();
    let objects = "objects: {count: 6, size: 100KiB}";
    let m = stage(&format!(
        "{{name: m, type: workload, concurrency: 2, {objects}, mix: {{multipart_put: 1}}, \
         part_size: 16KiB, ops: 30}}"
    ));
    let ran = run(&m, &store, None).await;
    assert_eq!(ran.count(OpKind::MultipartPut), 30);
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    // Each op's 7 parts are logged beside it (see tests/large.rs).
    assert_eq!(ran.count(OpKind::PutPart), 30 * 7);
    let ops = || ran.records.iter().filter(|r| !r.op.is_part());
    assert!(ops().all(|r| r.bytes == 100 * 1024));
    // 100 KiB in 16 KiB parts: six full parts and one of 4 KiB, in order.
    let logged = parts.parts.lock().unwrap().clone();
    assert_eq!(logged.len(), 30, "one multipart upload per op");
    for (key, op) in &logged {
        let want: Vec<(u64, u64)> = (0..7).map(|i| (i * 16384, 16384)).collect();
        let mut want = want;
        want[6].1 = 4096;
        assert_eq!(op, &want, "{key}");
    }
    // What was written is the generator's bytes for each key: on disk, and
    // through a verifying GET stage.
    let data = DataSpec::new(SEED);
    let written: BTreeSet<&str> = ops().map(|r| r.file.as_str()).collect();
    for key in &written {
        let on_disk = std::fs::read(dir.path().join(key)).unwrap();
        assert!(on_disk == datagen::object(&data, key, 100 * 1024), "{key}");
    }
    let g = stage(&format!(
        "{{name: g, type: workload, {objects}, mix: {{get: 1}}, verify: true, ops: 60}}"
    ));
    let got = run(&g, &store, Some(ran.out.keys.clone())).await;
    assert!(got.errors().is_empty(), "{:?}", got.errors().first());
    assert!(
        got.records
            .iter()
            .all(|r| written.contains(r.file.as_str()))
    );
}
