//! Stages after agents left the run (`Deal` with departed agents): the
//! budget split over the agents still in, and the departed agents' keys
//! walked by the others in a prepare, a hand-over and a cleanup.

use super::*;

/// Agents 0 and 2 of 3, agent 1 gone.
fn survivors(handover: bool) -> [Deal; 2] {
    [0, 2].map(|i| Deal::new(i, 3, vec![1], handover).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_are_split_over_the_agents_still_in() {
    let store = mem("departed-ops");
    let keys = prepare(&store, 100, "256B").await;
    let s = stage(
        "{name: s, type: workload, concurrency: 4, objects: {count: 100, size: 256B}, \
         mix: {get: 1}, ops: 1001}",
    );
    let mut total = 0;
    for (d, want) in survivors(false).into_iter().zip([501, 500]) {
        let ran = run_on(&s, &store, Vec::new(), Some(keys.clone()), d, true).await;
        assert_eq!(ran.out.metrics.total_ops(), want);
        total += ran.out.metrics.total_ops();
    }
    assert_eq!(total, 1001, "the whole budget, not two thirds of it");
}

/// A prepare cut short on agent 1 is finished by a hand-over on 0 and 2,
/// and a cleanup after it removes every object, agent 1's included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_writes_the_departed_agents_keys_and_cleanup_removes_them() {
    let store = mem("departed-prepare");
    let objects = "objects: {count: 31, size: 1KiB}";
    let p = stage(&format!("{{name: p, type: prepare, {objects}}}"));
    let c = stage(&format!("{{name: c, type: cleanup, {objects}}}"));
    // Agents 0 and 2 prepare their own thirds; agent 1 is lost first.
    let mut states = Vec::new();
    for i in [0, 2] {
        let ran = run_as(&p, &store, None, i, 3, false).await;
        assert_eq!(ran.out.metrics.total_ops(), share(31, i, 3));
        states.push(ran.out.keys);
    }
    // The hand-over: each writes its half of agent 1's keys, and only those.
    let mut handed = BTreeSet::new();
    for (d, keys) in survivors(true).into_iter().zip(&mut states) {
        let ran = run_on(&p, &store, Vec::new(), Some(keys.clone()), d, true).await;
        assert!(ran.errors().is_empty());
        for r in &ran.records {
            assert!(handed.insert(index_of(&r.file)), "{} twice", r.file);
        }
        *keys = ran.out.keys;
    }
    let theirs: BTreeSet<u64> = (0..31).filter(|i| i % 3 == 1).collect();
    assert_eq!(handed, theirs);
    // Agent 2 lost too, in the hand-over: agent 0 takes over 1's and 2's
    // keys, most of which it never wrote; a listing shows they are there,
    // so none is written twice.
    let alone = Deal::new(0, 3, vec![1, 2], true).unwrap();
    let ran = run_on(&p, &store, Vec::new(), Some(states[0].clone()), alone, true).await;
    assert_eq!(ran.records.len(), 0, "{:?}", ran.records.first());
    for i in 0..31 {
        assert!(store.stat(&p.objects.key(i)).await.is_ok(), "object {i}");
    }
    // A cleanup on the two removes all 31: agent 1's keys are theirs now.
    let mut deleted = 0;
    for (d, keys) in survivors(false).into_iter().zip(&states) {
        let ran = run_on(&c, &store, Vec::new(), Some(keys.clone()), d, false).await;
        assert_eq!(ran.out.metrics.total_errors(), 0);
        deleted += ran.out.metrics.total_ops();
    }
    assert_eq!(deleted, 31);
    for i in 0..31 {
        assert!(
            store.stat(&p.objects.key(i)).await.is_err(),
            "object {i} left"
        );
    }
}
