//! Unit tests of `file`, kept apart so the module stays readable.

use super::*;
use open_files::OpenFile;

#[tokio::test]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
    super::super::conformance::run_all(&store, "p/").await;
}

/// The agent's runtime: ops run inline (the temp dir is on a local
/// file system) with blocking reads handed off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_multi_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
    assert!(store.local, "a temp dir should be on a local file system");
    assert_eq!(store.exec(), Exec::Inline);
    super::super::conformance::run_all(&store, "p/").await;
}

/// A PUT overwrites the file in place (same inode, never truncated to
/// zero) and cuts it only when the old one was longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_overwrites_in_place() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
    let path = dir.path().join("o");
    let mut ino = None;
    for (size, fill) in [(10_000usize, 1u8), (300, 2), (5000, 3), (0, 4), (7, 5)] {
        store.put("o", Bytes::from(vec![fill; size])).await.unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), size as u64);
        assert_eq!(*ino.get_or_insert(meta.ino()), meta.ino(), "same file");
        let g = store.get("o", &GetOptions::keep()).await.unwrap();
        assert!(g.data.unwrap() == vec![fill; size], "size {size}");
        let g = store.get("o", &GetOptions::whole()).await.unwrap();
        assert_eq!(g.bytes, size as u64);
    }
}

/// Objects larger than one read chunk, read whole and in ranges, with
/// and without keeping the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
    let size = 2 * READ_CHUNK_BYTES as u64 + 333;
    let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    store
        .put("big", Bytes::from(content.clone()))
        .await
        .unwrap();
    let g = store.get("big", &GetOptions::keep()).await.unwrap();
    assert!(g.data.unwrap() == content);
    assert_eq!(
        store.get("big", &GetOptions::whole()).await.unwrap().bytes,
        size
    );
    for (offset, length) in [
        (0, 1),
        (5, 4096),
        (READ_CHUNK_BYTES as u64 - 3, 3 * READ_CHUNK_BYTES as u64),
        (size - 1, 10),
    ] {
        let want = length.min(size - offset);
        for keep_data in [true, false] {
            let opts = GetOptions {
                range: Some(super::super::ByteRange { offset, length }),
                keep_data,
            };
            let g = store.get("big", &opts).await.unwrap();
            assert_eq!(g.bytes, want, "{offset}+{length}");
            if keep_data {
                let o = offset as usize;
                assert!(g.data.unwrap() == content[o..o + want as usize]);
            }
        }
    }
    let past = GetOptions {
        range: Some(super::super::ByteRange {
            offset: size,
            length: 1,
        }),
        keep_data: false,
    };
    assert!(store.get("big", &past).await.is_err(), "range past the end");
}

/// GETs keep files open: a file deleted or replaced behind the
/// store's back is not read again, an overwrite in place is seen at
/// once, and a DELETE through the store drops the file it kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_files_follow_changes_made_elsewhere() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
    assert!((1..=DEFAULT_OPEN_FILES).contains(&store.open_files()));
    let fds = store.fds.clone().unwrap();
    let path = dir.path().join("k");
    async fn get(store: &FileStore) -> StoreResult<Bytes> {
        let g = store.get("k", &GetOptions::keep()).await?;
        Ok(g.data.unwrap_or_default())
    }
    store
        .put("k", Bytes::from(vec![1u8; 10_000]))
        .await
        .unwrap();
    assert!(get(&store).await.unwrap() == vec![1u8; 10_000]);
    let ino = fs::metadata(&path).unwrap().ino();
    assert_eq!(fds.len(), 1, "the GET kept its file");
    // Replaced by a rename over it: the new file is read.
    let tmp = dir.path().join("k.tmp");
    fs::write(&tmp, vec![2u8; 5000]).unwrap();
    fs::rename(&tmp, &path).unwrap();
    assert!(get(&store).await.unwrap() == vec![2u8; 5000]);
    assert_ne!(fs::metadata(&path).unwrap().ino(), ino);
    // Overwritten in place, by this store and by another writer.
    store.put("k", Bytes::from(vec![3u8; 7000])).await.unwrap();
    assert!(get(&store).await.unwrap() == vec![3u8; 7000]);
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&[4u8; 100], 0)
        .unwrap();
    let got = get(&store).await.unwrap();
    assert!(got[..100] == [4u8; 100] && got[100..] == vec![3u8; 6900]);
    // Whole and range GETs without the bytes, through the kept file.
    let g = store.get("k", &GetOptions::whole()).await.unwrap();
    assert_eq!(g.bytes, 7000);
    // Deleted behind the store's back.
    fs::remove_file(&path).unwrap();
    let e = get(&store).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::NotFound, "{e}");
    assert_eq!(fds.len(), 0, "the stale file was dropped");
    // Deleted through the store.
    store.put("k", Bytes::from(vec![5u8; 10])).await.unwrap();
    assert!(get(&store).await.unwrap() == vec![5u8; 10]);
    assert_eq!(fds.len(), 1);
    store.delete("k").await.unwrap();
    assert_eq!(fds.len(), 0);
    assert_eq!(get(&store).await.unwrap_err().class, ErrorClass::NotFound);
}

#[tokio::test]
async fn open_files_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let s = FileStore::new(&format!("{root}?open_files=0")).unwrap();
    assert_eq!(s.open_files(), 0);
    assert!(s.fds.is_none());
    conformance_on(&s).await;
    let s = FileStore::new(&format!("{root}?open_files=3")).unwrap();
    assert_eq!(s.open_files(), 3);
    assert_eq!(s.root, dir.path(), "the query is not part of the root");
    for bad in [
        "?open_files=x",
        "?open_files=-2",
        "?open_files=99999999",
        "?fd=1",
    ] {
        let e = FileStore::new(&format!("{root}{bad}")).unwrap_err();
        assert_eq!(e.class, ErrorClass::Other, "{bad}: {e}");
    }
}

async fn conformance_on(store: &FileStore) {
    super::super::conformance::run_all(store, "p/").await;
}

/// Out of descriptors: the kept files are closed and the open tried
/// once more.
#[test]
fn running_out_of_descriptors_closes_kept_files() {
    let fds = OpenFiles::new(4).unwrap();
    fds.insert(
        "a",
        Arc::new(OpenFile::new(fs::File::open("/dev/null").unwrap())),
    );
    let calls = std::cell::Cell::new(0);
    let r = with_fds(Some(&fds), || {
        calls.set(calls.get() + 1);
        if calls.get() == 1 {
            Err(io::Error::from_raw_os_error(libc::EMFILE))
        } else {
            Ok(7)
        }
    });
    assert_eq!((r.unwrap(), calls.get(), fds.len()), (7, 2, 0));
    // With nothing to close, the error stands.
    let r: io::Result<()> = with_fds(Some(&fds), || {
        Err(io::Error::from_raw_os_error(libc::EMFILE))
    });
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EMFILE));
}

#[tokio::test]
async fn refuses_keys_outside_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
    for key in ["../x", "/etc/passwd", "a/../../b", ""] {
        let e = store.put(key, Bytes::new()).await.unwrap_err();
        assert!(e.message.contains("not a relative path"), "{key}: {e}");
    }
}

/// A stage that removes no object checks a kept file once, at its first
/// GET of the stage: a file deleted behind the store's back is still read
/// until the next stage begins, and found gone then. In a stage that
/// removes objects, every reuse checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_files_are_checked_once_per_stage_that_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
    let path = dir.path().join("k");
    let range = GetOptions {
        range: Some(super::super::ByteRange {
            offset: 0,
            length: 4096,
        }),
        keep_data: false,
    };
    store.put("k", Bytes::from(vec![1u8; 8192])).await.unwrap();

    // Removing stage: a deletion is seen at the next GET.
    store.stage_begins(true);
    assert_eq!(store.get("k", &range).await.unwrap().bytes, 4096);
    fs::remove_file(&path).unwrap();
    let e = store.get("k", &range).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::NotFound, "{e}");

    // Non-removing stage: the kept file is trusted for the stage.
    store.put("k", Bytes::from(vec![2u8; 8192])).await.unwrap();
    store.stage_begins(false);
    assert_eq!(store.get("k", &range).await.unwrap().bytes, 4096);
    fs::remove_file(&path).unwrap();
    for _ in 0..3 {
        let g = store.get("k", &GetOptions::keep()).await.unwrap();
        assert!(g.data.unwrap() == vec![2u8; 8192], "the kept file's bytes");
    }
    // The next stage checks it again.
    store.stage_begins(false);
    let e = store.get("k", &range).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::NotFound, "{e}");
    assert!(
        store.fds.as_ref().unwrap().is_empty(),
        "the stale file was dropped"
    );
}

/// The io_uring engine passes the suite on both runtimes tokio has (the
/// agent's multi-thread one, and the current-thread one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_io_uring() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let store = FileStore::new(&format!("{root}?engine=io_uring")).unwrap();
    assert_eq!(store.engine(), "io_uring");
    conformance_on(&store).await;
    let store = FileStore::new(&format!("{root}?engine=io_uring&open_files=0")).unwrap();
    conformance_on(&store).await;
}

#[tokio::test]
async fn conformance_with_io_uring_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let store = FileStore::new(&format!("{root}?engine=io_uring")).unwrap();
    conformance_on(&store).await;
}

/// Many workers at once on few threads: every GET sees its own bytes (no
/// completion handed to the wrong op).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_uring_many_workers_get_their_own_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let store = Arc::new(FileStore::new(&format!("{root}?engine=io_uring")).unwrap());
    for i in 0..64u8 {
        let data = Bytes::from(vec![i; 4096 + i as usize]);
        store.put(&format!("k{i}"), data).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..64u8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..20u8 {
                let i = w.wrapping_add(round.wrapping_mul(7)) % 64;
                let got = s.get(&format!("k{i}"), &GetOptions::keep()).await;
                let got = got.unwrap().data.unwrap();
                assert_eq!(got.len(), 4096 + i as usize);
                assert!(got.iter().all(|&b| b == i), "key k{i}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// `engine=`: bad values are refused; `auto` and `psync` always open.
#[tokio::test]
async fn engine_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    assert_eq!(FileStore::new(root).unwrap().engine(), "psync");
    let s = FileStore::new(&format!("{root}?engine=psync")).unwrap();
    assert_eq!(s.engine(), "psync");
    FileStore::new(&format!("{root}?engine=auto")).unwrap();
    for bad in ["?engine=uring", "?engine=", "?engine=IO_URING"] {
        let e = FileStore::new(&format!("{root}{bad}")).unwrap_err();
        assert_eq!(e.class, ErrorClass::Other, "{bad}: {e}");
        assert!(e.message.contains("psync"), "{bad}: {e}");
    }
}

/// With io_uring disabled (the environment switch, set in a child process
/// so other tests are not affected): `engine=io_uring` fails at open with
/// a stated reason, `auto` falls back to psync and works.
#[test]
fn io_uring_disabled_falls_back_or_fails() {
    use crate::store::uring::DISABLE_ENV;
    if std::env::var_os(DISABLE_ENV).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::file::tests::io_uring_disabled_falls_back_or_fails",
            ])
            .env(DISABLE_ENV, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran the test: {text}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let e = FileStore::new(&format!("{root}?engine=io_uring")).unwrap_err();
    assert_eq!(e.class, ErrorClass::NotSupported, "{e}");
    assert!(e.message.contains(DISABLE_ENV), "{e}");
    let s = FileStore::new(&format!("{root}?engine=auto")).unwrap();
    assert_eq!(s.engine(), "psync");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(conformance_on(&s));
}
