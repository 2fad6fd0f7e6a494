//! Key naming (`objects.naming`): keys the engine writes, logs and finds
//! again by listing.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_and_width_name_files_and_a_listing_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    let objects = "objects: {count: 20, size: 1KiB, naming: {width: 5, fanout: 4}}";
    let p = stage(&format!("{{name: p, type: prepare, {objects}}}"));
    assert_eq!(p.objects.key(5), "obj/1/00005");
    assert_eq!(p.objects.key(19), "obj/3/00019");

    let prepared = run(&p, &store, None).await;
    assert_eq!(prepared.count(OpKind::Put), 20);
    let logged: BTreeSet<&str> = prepared.records.iter().map(|r| r.file.as_str()).collect();
    let expected: BTreeSet<String> = (0..20).map(|i| p.objects.key(i)).collect();
    assert_eq!(
        logged,
        expected.iter().map(String::as_str).collect(),
        "the op-log names each object by the key it was written under"
    );
    for i in 0..20 {
        let path = dir.path().join(format!("obj/{}/{:05}", i % 4, i));
        assert!(path.is_file(), "{} is missing", path.display());
    }
    // Files that look like keys but are not this key space's are not
    // taken for objects: wrong width, wrong sub-prefix, out of range.
    for stray in ["obj/1/5", "obj/0/00005", "obj/0/00020", "obj/00005"] {
        store
            .put(stray, Bytes::from(vec![0u8; 1024]))
            .await
            .unwrap();
    }

    // A fresh agent lists the key space once and reads only real objects.
    let g = stage(&format!(
        "{{name: g, type: workload, {objects}, mix: {{get: 1}}, ops: 200, verify: true}}"
    ));
    let got = run(&g, &store, None).await;
    assert!(got.errors().is_empty(), "{:?}", got.errors().first());
    assert_eq!(got.count(OpKind::Get), 200);
    assert!(got.records.iter().all(|r| expected.contains(&r.file)));
    // And a prepare as a fresh agent finds all 20 already there.
    let again = run(&p, &store, None).await;
    assert_eq!(again.records.len(), 0);
}

#[test]
fn index_of_reads_back_exactly_the_keys_key_writes() {
    let space = |naming: &str| {
        stage(&format!(
            "{{name: p, type: prepare, objects: {{prefix: k/, count: 1000, size: 1, naming: {naming}}}}}"
        ))
        .objects
    };
    let plain = space("{}");
    assert_eq!(plain.key(42), "k/00000042");
    let wide = space("{width: 12}");
    assert_eq!(wide.key(7), "k/000000000007");
    let fan = space("{fanout: 100}");
    assert_eq!(fan.key(1234 % 1000), "k/34/00000234");
    for s in [&plain, &wide, &fan] {
        for i in [0, 1, 99, 999] {
            assert_eq!(s.index_of(&s.key(i)), Some(i));
        }
        // Past `count`, another prefix, a sign, an empty index.
        assert_eq!(s.index_of(&s.key(1000)), None);
        assert_eq!(s.index_of(&s.key(5).replacen("k/", "j/", 1)), None);
        assert_eq!(s.index_of("k/+0000005"), None);
        assert_eq!(s.index_of("k/"), None);
    }
    // An index wider than `width` still names one key, and reads back.
    let narrow = space("{width: 2}");
    assert_eq!(narrow.key(123), "k/123");
    assert_eq!(narrow.index_of("k/123"), Some(123));
    assert_eq!(narrow.index_of("k/0123"), None);
}
