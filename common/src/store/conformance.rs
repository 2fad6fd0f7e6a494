//! The checks every store must pass, run by each backend's tests against a
//! real instance (a temp dir, an in-process map, or a server started by
//! `scripts/servers/`). Test support: a failed check panics with what
//! differed.
//!
//! Everything is written under `prefix`, which the caller makes unique, and
//! deleted again at the end.

use bytes::Bytes;

use super::{
    ByteRange, ErrorClass, GetOptions, ListOptions, ObjectStore, PartPlan, StoreResult, list_all,
};

/// Objects written for the pagination check: several pages at `PAGE`.
const MANY: usize = 25;
const PAGE: usize = 7;

/// Multipart check: parts of 5 MiB (S3's smallest allowed part) and a short
/// last part.
pub const MULTIPART_PART_BYTES: u64 = 5 << 20;
pub const MULTIPART_OBJECT_BYTES: u64 = 2 * MULTIPART_PART_BYTES + 12_345;

fn pattern(offset: u64, len: u64) -> Bytes {
    (offset..offset + len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Runs every check.
pub async fn run_all(store: &dyn ObjectStore, prefix: &str) {
    run_all_with_probe(store, store, prefix).await;
}

/// [`run_all`], with the GET of a range past the end sent through `probe`,
/// another instance of the same store. For servers that drop a keep-alive
/// connection after answering 416 (fake-gcs-server does): the next request
/// on that pooled connection would fail for a reason that is the
/// emulator's, not the store's.
pub async fn run_all_with_probe(store: &dyn ObjectStore, probe: &dyn ObjectStore, prefix: &str) {
    missing_objects(store, prefix).await;
    put_get_stat_overwrite(store, prefix).await;
    ranges(store, prefix).await;
    range_past_end(store, probe, prefix).await;
    listing(store, prefix).await;
    multipart(store, prefix).await;
    batch_delete(store, prefix).await;
    let left = list_all(store, prefix, 1000).await.expect("final list");
    assert!(left.is_empty(), "{store}: objects left behind: {left:?}");
}

pub async fn missing_objects(store: &dyn ObjectStore, prefix: &str) {
    let k = format!("{prefix}missing");
    let e = store
        .get(&k, &GetOptions::whole())
        .await
        .expect_err("GET of a missing key");
    assert_eq!(e.class, ErrorClass::NotFound, "{store}: GET missing: {e}");
    assert!(!e.endpoint.is_empty(), "errors name their endpoint");
    let e = store.stat(&k).await.expect_err("STAT of a missing key");
    assert_eq!(e.class, ErrorClass::NotFound, "{store}: STAT missing: {e}");
}

pub async fn put_get_stat_overwrite(store: &dyn ObjectStore, prefix: &str) {
    let (k1, k2, k3) = (
        format!("{prefix}o/1"),
        format!("{prefix}o/2"),
        format!("{prefix}o/empty"),
    );
    store
        .put(&k1, Bytes::from_static(b"hello"))
        .await
        .expect("put k1");
    store.put(&k2, pattern(0, 100_000)).await.expect("put k2");
    store.put(&k3, Bytes::new()).await.expect("put empty");

    let g = store.get(&k1, &GetOptions::keep()).await.expect("get k1");
    assert_eq!(
        (g.bytes, g.data.as_deref()),
        (5, Some(&b"hello"[..])),
        "{store}"
    );
    let g = store.get(&k2, &GetOptions::whole()).await.expect("get k2");
    assert_eq!(g.bytes, 100_000, "{store}");
    assert!(g.data.is_none(), "{store}: data only when asked");
    let g = store
        .get(&k2, &GetOptions::keep())
        .await
        .expect("get k2 keep");
    assert_eq!(
        g.data.unwrap(),
        pattern(0, 100_000),
        "{store}: content round trip"
    );
    assert_eq!(
        store.stat(&k3).await.expect("stat empty").size,
        0,
        "{store}"
    );
    assert_eq!(
        store.stat(&k2).await.expect("stat k2").size,
        100_000,
        "{store}"
    );

    store
        .put(&k2, Bytes::from_static(b"xy"))
        .await
        .expect("overwrite");
    assert_eq!(
        store.stat(&k2).await.expect("stat").size,
        2,
        "{store}: overwrite replaces"
    );
    for k in [&k1, &k2, &k3] {
        store.delete(k).await.expect("delete");
    }
    let e = store.stat(&k1).await.expect_err("deleted");
    assert_eq!(e.class, ErrorClass::NotFound, "{store}");
}

pub async fn ranges(store: &dyn ObjectStore, prefix: &str) {
    let k = format!("{prefix}r/obj");
    let size = 10_000u64;
    store.put(&k, pattern(0, size)).await.expect("put");
    let cases = [
        (0, 1),
        (0, size),
        (1234, 100),
        (size - 1, 1),
        (size - 10, 100),
        (5000, u64::MAX / 2),
    ];
    for (offset, length) in cases {
        let opts = GetOptions {
            range: Some(ByteRange { offset, length }),
            keep_data: true,
        };
        let g = store
            .get(&k, &opts)
            .await
            .unwrap_or_else(|e| panic!("{store}: range {offset}+{length}: {e}"));
        let want = length.min(size - offset);
        assert_eq!(g.bytes, want, "{store}: range {offset}+{length} bytes");
        assert_eq!(
            g.data.unwrap(),
            pattern(offset, want),
            "{store}: range {offset}+{length} content"
        );
    }
    store.delete(&k).await.expect("delete");
}

/// A range starting at the end is an error ("not satisfiable").
pub async fn range_past_end(store: &dyn ObjectStore, probe: &dyn ObjectStore, prefix: &str) {
    let k = format!("{prefix}r/past");
    let size = 100u64;
    store.put(&k, pattern(0, size)).await.expect("put");
    let past = GetOptions {
        range: Some(ByteRange {
            offset: size,
            length: 1,
        }),
        keep_data: false,
    };
    assert!(
        probe.get(&k, &past).await.is_err(),
        "{probe}: a range past the end is an error"
    );
    store.delete(&k).await.expect("delete");
}

pub async fn listing(store: &dyn ObjectStore, prefix: &str) {
    let keys: Vec<String> = (0..MANY)
        .map(|i| format!("{prefix}l/many/{i:04}"))
        .collect();
    for k in &keys {
        store.put(k, Bytes::from_static(b"x")).await.expect("put");
    }
    let extra = [
        format!("{prefix}l/a/x"),
        format!("{prefix}l/b/y"),
        format!("{prefix}l/top"),
    ];
    for k in &extra {
        store.put(k, Bytes::from_static(b"yy")).await.expect("put");
    }

    // Pages of PAGE, in order, each key once.
    let mut seen = Vec::new();
    let mut opts = ListOptions {
        limit: PAGE,
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = store
            .list(&format!("{prefix}l/many/"), &opts)
            .await
            .expect("list page");
        assert!(page.entries.len() <= PAGE, "{store}: page over limit");
        pages += 1;
        seen.extend(page.entries.into_iter().map(|m| m.key));
        match page.next {
            Some(n) => opts.continuation = Some(n),
            None => break,
        }
        assert!(pages <= MANY, "{store}: listing does not end");
    }
    assert_eq!(seen, keys, "{store}: paginated listing");
    assert!(
        pages >= MANY.div_ceil(PAGE),
        "{store}: {pages} pages for {MANY} keys at {PAGE}"
    );

    // Delimiter: objects directly under, and rolled-up prefixes.
    let page = store
        .list(
            &format!("{prefix}l/"),
            &ListOptions {
                delimiter: Some('/'),
                ..Default::default()
            },
        )
        .await
        .expect("list with delimiter");
    let names: Vec<_> = page.entries.iter().map(|m| m.key.clone()).collect();
    assert_eq!(
        names,
        vec![format!("{prefix}l/top")],
        "{store}: objects at this level"
    );
    assert_eq!(page.entries[0].size, 2, "{store}: sizes in listings");
    let want: Vec<String> = ["a/", "b/", "many/"]
        .iter()
        .map(|p| format!("{prefix}l/{p}"))
        .collect();
    assert_eq!(page.prefixes, want, "{store}: common prefixes");

    // Recursive: everything.
    let all = list_all(store, &format!("{prefix}l/"), 1000)
        .await
        .expect("list all");
    assert_eq!(all.len(), MANY + extra.len(), "{store}: recursive listing");

    let mut all_keys = keys;
    all_keys.extend(extra);
    for r in store.delete_many(&all_keys).await.expect("batch delete") {
        r.expect("each delete");
    }
}

pub async fn multipart(store: &dyn ObjectStore, prefix: &str) {
    let k = format!("{prefix}mp/big");
    let part = |offset: u64, len: u64| pattern(offset, len);
    // Parts at once where the backend can: they must land in part order.
    let plan = PartPlan {
        size: MULTIPART_OBJECT_BYTES,
        part_size: MULTIPART_PART_BYTES,
        streams: 3,
        log: None,
    };
    let parts = store
        .put_multipart(&k, plan, &part)
        .await
        .unwrap_or_else(|e| panic!("{store}: multipart: {e}"));
    assert_eq!(parts, 3, "{store}: parts");
    chunks(store, &k, MULTIPART_OBJECT_BYTES).await;
    let g = store
        .get(&k, &GetOptions::keep())
        .await
        .expect("get multipart");
    assert_eq!(g.bytes, MULTIPART_OBJECT_BYTES, "{store}");
    assert!(
        g.data.unwrap() == pattern(0, MULTIPART_OBJECT_BYTES),
        "{store}: multipart content"
    );
    store.delete(&k).await.expect("delete");
}

/// `get_chunks` hands over the body in order, offsets matching the bytes,
/// for the whole object and for a range; a sink's error ends the GET.
pub async fn chunks(store: &dyn ObjectStore, key: &str, size: u64) {
    for (range, start, len) in [
        (None, 0, size),
        (
            Some(ByteRange {
                offset: 7,
                length: size - 100,
            }),
            7,
            size - 100,
        ),
    ] {
        let mut next = start;
        let mut sink = |at: u64, chunk: &[u8]| -> StoreResult<()> {
            assert_eq!(at, next, "{store}: chunks in order");
            assert!(
                chunk == pattern(at, chunk.len() as u64),
                "{store}: chunk at {at}"
            );
            next += chunk.len() as u64;
            Ok(())
        };
        let g = store
            .get_chunks(key, range, &mut sink)
            .await
            .unwrap_or_else(|e| panic!("{store}: get_chunks: {e}"));
        assert_eq!(
            (g.bytes, next),
            (len, start + len),
            "{store}: streamed bytes"
        );
        assert!(g.data.is_none(), "{store}: a streamed GET keeps nothing");
    }
    let mut refuse = |_: u64, _: &[u8]| -> StoreResult<()> {
        Err(super::StoreError::new(
            ErrorClass::Verification,
            "sink",
            "no",
        ))
    };
    let e = store.get_chunks(key, None, &mut refuse).await.unwrap_err();
    assert_eq!(
        e.class,
        ErrorClass::Verification,
        "{store}: sink error: {e}"
    );
}

pub async fn batch_delete(store: &dyn ObjectStore, prefix: &str) {
    let keys: Vec<String> = (0..5).map(|i| format!("{prefix}bd/{i}")).collect();
    for k in &keys[..4] {
        store.put(k, Bytes::from_static(b"z")).await.expect("put");
    }
    let results = store.delete_many(&keys).await.expect("batch delete");
    assert_eq!(results.len(), 5, "{store}: one result per key");
    for r in &results[..4] {
        assert!(r.is_ok(), "{store}: {r:?}");
    }
    for k in &keys[..4] {
        assert_eq!(
            store.stat(k).await.unwrap_err().class,
            ErrorClass::NotFound,
            "{store}"
        );
    }
}
