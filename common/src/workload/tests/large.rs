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
