//! Op timeouts: an op that does not answer in time fails with class
//! `timeout`, is retried as the stage says, and each retry is counted; an
//! op that answers in time is never cut short.

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
