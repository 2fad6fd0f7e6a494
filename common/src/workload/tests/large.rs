//! Large objects through the engine on a real file system: PUTs above
//! `part_size` go in parts, `parallel` GETs read ranges at once, verified
//! GETs check chunk by chunk; each part is a record beside its op, and
//! only the op is counted.

use super::*;

/// 9 MiB and a bit: above the 8 MiB streamed-verify threshold, not a
/// multiple of any part size used here.
const SIZE: u64 = (9 << 20) + 5;

/// The stage keys of the one large object.
const OBJECTS: &str = "objects: {count: 1, size: 9437189}";

fn parts_of(ran: &Ran, kind: OpKind) -> Vec<&OpRecord> {
    ran.records.iter().filter(|r| r.op == kind).collect()
}

/// The op's record, and its parts' records, checked to lie inside it on
/// the same thread and key with their bytes adding up to the op's.
fn check_parts(ran: &Ran, op: OpKind, part: OpKind, want_parts: usize) {
    let ops = parts_of(ran, op);
    assert_eq!(ops.len(), 1, "one {op} record");
    let o = ops[0];
    let parts = parts_of(ran, part);
    assert_eq!(parts.len(), want_parts, "{part} records");
    assert_eq!(o.bytes, SIZE);
    assert_eq!(parts.iter().map(|p| p.bytes).sum::<u64>(), SIZE);
    for p in &parts {
        assert_eq!(
            (p.thread, p.file.as_str(), p.n_objects),
            (o.thread, o.file.as_str(), 0)
        );
        assert!(
            o.start_ns <= p.start_ns && p.end_ns <= o.end_ns,
            "{p:?} inside {o:?}"
        );
    }
    // The op counts once: one histogram sample, no part in the metrics.
    assert_eq!(
        ran.out.metrics.ops.get(&op).map(|s| s.latency.len()),
        Some(1)
    );
    assert!(!ran.out.metrics.ops.contains_key(&part));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_move_in_parts_that_are_logged_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    // A PUT above part_size: 3 parts of 4 MiB (the last short), 2 at once.
    let p = stage(&format!(
        "{{name: p, type: prepare, concurrency: 1, {OBJECTS}, part_size: 4MiB, \
         parallel: {{part: 2MiB, streams: 2}}}}"
    ));
    let put = run(&p, &store, None).await;
    assert!(put.errors().is_empty(), "{:?}", put.errors().first());
    check_parts(&put, OpKind::Put, OpKind::PutPart, 3);
    let key = p.objects.key(0);
    let on_disk = std::fs::read(dir.path().join(&key)).unwrap();
    assert!(on_disk == datagen::object(&DataSpec::new(SEED), &key, SIZE));

    // A parallel GET: 5 ranges of 2 MiB, verified.
    let g = stage(&format!(
        "{{name: g, type: workload, concurrency: 1, {OBJECTS}, mix: {{get: 1}}, ops: 1, \
         verify: true, parallel: {{part: 2MiB, streams: 3}}}}"
    ));
    let got = run(&g, &store, Some(put.out.keys.clone())).await;
    assert!(got.errors().is_empty(), "{:?}", got.errors().first());
    check_parts(&got, OpKind::Get, OpKind::GetPart, 5);

    // One wrong byte in the 4th range: the parallel GET and the streamed
    // (plain, verified) GET both fail verification, naming its offset.
    let mut bad = on_disk;
    let at = (6 << 20) + 77;
    bad[at] ^= 0xff;
    std::fs::write(dir.path().join(&key), &bad).unwrap();
    let plain = stage(&format!(
        "{{name: v, type: workload, concurrency: 1, {OBJECTS}, mix: {{get: 1}}, ops: 1, \
         verify: true}}"
    ));
    for s in [&g, &plain] {
        let ran = run(s, &store, Some(put.out.keys.clone())).await;
        let errors = ran.errors();
        assert_eq!(errors.len(), 1, "{}: {:?}", s.name, ran.records);
        assert!(
            errors[0].error.starts_with("verification"),
            "{}",
            errors[0].error
        );
        assert!(
            errors[0].error.contains(&at.to_string()),
            "{}",
            errors[0].error
        );
        assert_eq!(ran.count(OpKind::GetPart), 0, "a failed op logs no parts");
    }
}

/// A small op keeps the one-request path and the stage's timeout; a large
/// one gets a `timeout` per round of parts and no payload made whole.
#[test]
fn small_ops_keep_their_path_and_large_ones_get_a_timeout_per_round() {
    use super::super::large::{attempt_timeout, is_parallel_get, upload_parts};
    use super::super::ops::OpPlan;
    use rand::SeedableRng;
    let data = DataSpec::new(SEED);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
    let s = |size: &str| {
        stage(&format!(
            "{{name: s, type: workload, objects: {{count: 1, size: {size}}}, mix: {{get: 1}}, \
             ops: 1, timeout: 2s, part_size: 4MiB, parallel: {{part: 1MiB, streams: 4}}}}"
        ))
    };
    let (small, big) = (s("4MiB"), s("64MiB"));
    let mut plan = |op, st: &Stage| OpPlan::new(op, 0, st, &data, &mut rng);
    let put = plan(OpKind::Put, &small);
    assert_eq!(put.payload.as_ref().map(|p| p.len()), Some(4 << 20));
    assert!(upload_parts(&put, &small).is_none());
    assert_eq!(attempt_timeout(&put, &small), Duration::from_secs(2));
    let put = plan(OpKind::Put, &big);
    assert!(
        put.payload.is_none(),
        "a large PUT's payload is made part by part"
    );
    let parts = upload_parts(&put, &big).expect("in parts");
    assert_eq!((parts.count(), parts.streams), (16, 4));
    // 16 parts, 4 at once: 4 rounds.
    assert_eq!(attempt_timeout(&put, &big), Duration::from_secs(8));
    // A parallel GET of 64 ranges, 4 at once: 16 rounds; a small one is one.
    let get = plan(OpKind::Get, &big);
    assert!(is_parallel_get(&get, &big));
    assert_eq!(attempt_timeout(&get, &big), Duration::from_secs(32));
    let stat = plan(OpKind::Stat, &big);
    assert_eq!(attempt_timeout(&stat, &big), Duration::from_secs(2));
    let tiny = s("1KiB");
    assert!(!is_parallel_get(&plan(OpKind::Get, &tiny), &tiny));
    assert_eq!(
        attempt_timeout(&plan(OpKind::Get, &tiny), &tiny),
        Duration::from_secs(2)
    );
}
