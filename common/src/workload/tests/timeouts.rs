//! Op timeouts: an op that does not answer in time fails with class
//! `timeout`, is retried as the stage says, and each retry is counted; an
//! op that answers in time is never cut short; and the engine's calls
//! outside ops are under the same timer.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_that_do_not_answer_time_out_and_are_retried() {
    let inner = mem("timeouts");
    let keys = prepare(&inner, 10, "1KiB").await;
    // Every op waits 2 s; the stage gives an attempt 50 ms, and one retry.
    let slow = Arc::new(DelayStore::new(inner.clone(), Duration::from_secs(2)));
    let store: Arc<dyn ObjectStore> = slow.clone();
    let s = stage(
        "{name: t, type: workload, concurrency: 2, objects: {count: 10, size: 1KiB}, \
         mix: {get: 1}, ops: 6, retries: 1, retry_backoff: 10ms, timeout: 50ms}",
    );
    let ran = run(&s, &store, Some(keys.clone())).await;
    assert_eq!(ran.records.len(), 6);
    for r in &ran.records {
        assert!(r.error.starts_with("timeout: "), "error {:?}", r.error);
        assert!(r.error.contains("no answer within 50ms"), "{:?}", r.error);
        assert_eq!(r.retries, 1, "the retry is counted");
        // Two attempts of 50 ms and a 10 ms wait: cut short, far below the
        // store's 2 s.
        let ms = (r.end_ns - r.start_ns) / 1_000_000;
        assert!((100..1000).contains(&ms), "op took {ms} ms");
    }
    assert_eq!(ran.out.retries, 6);

    // The same store answering at once: no op is cut, none retried.
    slow.set_delay(Duration::ZERO);
    let ran = run(&s, &store, Some(keys)).await;
    assert!(ran.errors().is_empty(), "{:?}", ran.errors().first());
    assert!(ran.records.iter().all(|r| r.retries == 0));
}

/// A store whose `ensure_ready` (creating a bucket) never answers in time.
#[derive(Debug)]
struct SlowReady {
    inner: Arc<dyn ObjectStore>,
}

impl fmt::Display for SlowReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slow-ready -> {}", self.inner)
    }
}

wrapper_store!(SlowReady {
    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        self.inner.get(key, opts).await
    }
    async fn ensure_ready(&self) -> StoreResult<()> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    }
});

/// Runs `stage` on `store` with no op-log and nothing known of its keys
/// (so it starts with a listing), and returns its error.
async fn stage_error(stage: &Stage, store: Arc<dyn ObjectStore>) -> String {
    let run = StageRun {
        deal: Deal::whole(0, 1),
        agent_id: "agent-0".into(),
        data: DataSpec::new(SEED),
        stage_index: 0,
        stage: stage.clone(),
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
    match tokio::time::timeout(STAGE_TIMEOUT, run_stage(run)).await {
        Ok(Err(e)) => format!("{e:#}"),
        Ok(Ok(_)) => panic!("stage `{}` ran", stage.name),
        Err(_) => panic!("stage `{}` hung", stage.name),
    }
}

/// What the engine asks of a store outside ops (the listing a stage starts
/// with, readying a bucket for a prepare stage) is under the same op timer:
/// with no timer in the stores, nothing else would bound it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_outside_ops_are_timed_too() {
    let inner = mem("outside-ops");
    let t = Instant::now();
    let slow = delayed(&inner, 2000);
    let s = stage(
        "{name: w, type: workload, objects: {count: 10, size: 1KiB}, \
         mix: {get: 1}, ops: 6, timeout: 50ms}",
    );
    let e = stage_error(&s, slow).await;
    assert!(e.contains("LIST `obj/`: no answer within 50ms"), "{e}");

    let ready: Arc<dyn ObjectStore> = Arc::new(SlowReady { inner });
    let p = stage("{name: p, type: prepare, objects: {count: 10, size: 1KiB}, timeout: 50ms}");
    let e = stage_error(&p, ready).await;
    assert!(e.contains("PREPARE `slow-ready -> "), "{e}");
    assert!(e.contains("no answer within 50ms"), "{e}");
    // Both cut at 50 ms, far below the stores' 2 s.
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}
