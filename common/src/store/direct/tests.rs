//! Tests of the `direct://` backend, on a directory that supports O_DIRECT.

use super::*;
use crate::store::{ByteRange, PartPlan};

/// Places tried for test directories, in order: an explicit one, the
/// build's target directory, then the usual disk-backed temp dir. /tmp
/// comes last because it is often tmpfs.
fn candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(d) = std::env::var("CHORUS_DIRECT_TEST_DIR") {
        v.push(PathBuf::from(d));
    }
    v.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/direct-tests"));
    v.push(PathBuf::from("/var/tmp"));
    v.push(std::env::temp_dir());
    v
}

/// A temp dir where O_DIRECT works, and a store on it. Fails (never
/// skips) when there is none, saying what each place answered.
fn capable(opts: &DirectOptions) -> (tempfile::TempDir, DirectStore) {
    let mut tried = Vec::new();
    for base in candidates() {
        if let Err(e) = fs::create_dir_all(&base) {
            tried.push(format!("{}: {e}", base.display()));
            continue;
        }
        let dir = match tempfile::tempdir_in(&base) {
            Ok(d) => d,
            Err(e) => {
                tried.push(format!("{}: {e}", base.display()));
                continue;
            }
        };
        match DirectStore::new(dir.path().to_str().unwrap_or("/nonexistent"), opts) {
            Ok(s) => {
                // Said, not hidden: a place passed over is visible with
                // --nocapture.
                for t in &tried {
                    eprintln!("direct tests: passed over {t}");
                }
                return (dir, s);
            }
            Err(e) => tried.push(format!("{}: {e}", base.display())),
        }
    }
    panic!(
        "no O_DIRECT-capable directory for the direct:// tests; set \
         CHORUS_DIRECT_TEST_DIR to a directory on a local disk. Tried:\n  {}",
        tried.join("\n  ")
    );
}

fn pattern(offset: u64, len: u64) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn conformance() {
    let (_dir, store) = capable(&DirectOptions::default());
    assert!(store.open_files() > 0, "GETs keep files open by default");
    super::super::conformance::run_all(&store, "p/").await;
}

/// The same checks with every GET opening its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_without_open_files() {
    let (_dir, store) = capable(&DirectOptions {
        open_files: 0,
        ..DirectOptions::default()
    });
    assert_eq!(store.open_files(), 0);
    super::super::conformance::run_all(&store, "p/").await;
}

/// A file kept open by GETs is not read once it was deleted or replaced
/// behind the store's back, and an overwrite in place is seen at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_files_follow_changes_made_elsewhere() {
    let (dir, store) = capable(&small());
    let path = dir.path().join("k");
    async fn get(store: &DirectStore) -> StoreResult<Bytes> {
        let g = store.get("k", &GetOptions::keep()).await?;
        Ok(g.data.unwrap_or_default())
    }
    store
        .put("k", Bytes::from(pattern(0, 10_000)))
        .await
        .unwrap();
    assert!(get(&store).await.unwrap() == pattern(0, 10_000));
    // Replaced by a rename over it.
    let tmp = dir.path().join("k.tmp");
    fs::write(&tmp, pattern(7, 5000)).unwrap();
    fs::rename(&tmp, &path).unwrap();
    assert!(get(&store).await.unwrap() == pattern(7, 5000));
    // Overwritten in place (same file).
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&pattern(9, 5000), 0)
        .unwrap();
    assert!(get(&store).await.unwrap() == pattern(9, 5000));
    // Deleted.
    fs::remove_file(&path).unwrap();
    let e = get(&store).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::NotFound, "{e}");
}

/// A small I/O size, so objects of a few KiB already span many
/// syscalls and every boundary case is cheap to reach.
fn small() -> DirectOptions {
    DirectOptions {
        io_size: 8192,
        buffers: 2,
        open_files: DEFAULT_OPEN_FILES,
    }
}

#[tokio::test]
async fn alignment_is_found_and_sane() {
    let (_dir, store) = capable(&DirectOptions::default());
    let a = store.alignment();
    eprintln!("alignment: {a:?}");
    assert!(a.offset.is_power_of_two() && a.offset <= MAX_ALIGN, "{a:?}");
    assert!(a.memory.is_power_of_two() && a.memory <= MAX_ALIGN, "{a:?}");
    assert_eq!(store.io_size(), DEFAULT_IO_SIZE);
    assert_eq!(store.io_size() % a.offset, 0);
    assert_eq!(store.pool_buffers(), 4);
}

#[tokio::test]
async fn partial_tails_round_trip_with_exact_sizes() {
    let (dir, store) = capable(&small());
    let b = store.alignment().offset as u64;
    let io = store.io_size() as u64;
    let sizes = [0, 1, b - 1, b, b + 1, io - 1, io, io + 1, 3 * io + 517];
    for size in sizes {
        let key = format!("t/{size}");
        store
            .put(&key, Bytes::from(pattern(0, size)))
            .await
            .unwrap();
        let on_disk = fs::metadata(dir.path().join(&key)).unwrap().len();
        assert_eq!(on_disk, size, "file length after PUT of {size}");
        assert_eq!(store.stat(&key).await.unwrap().size, size);
        let g = store.get(&key, &GetOptions::keep()).await.unwrap();
        assert_eq!(g.bytes, size);
        assert!(g.data.unwrap() == pattern(0, size), "content of {size}");
    }
}

/// `len` bytes of `pattern` starting at an address aligned to `align`.
fn aligned_pattern(len: u64, align: usize) -> Bytes {
    let mut v = vec![0u8; len as usize + 1 + align];
    let at = v.as_ptr().align_offset(align);
    v[at..at + len as usize + 1].copy_from_slice(&pattern(3, len + 1));
    Bytes::from(v).slice(at..at + len as usize + 1)
}

/// Aligned payloads (as the generator makes them from 64 KiB up) are
/// written from where they lie, whole blocks at a time, with only a
/// partial tail going through a pool buffer; an unaligned view of the same
/// bytes takes the copying path. Both give the same files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aligned_payloads_are_written_in_place() {
    let (dir, store) = capable(&small());
    let b = store.alignment().offset as u64;
    let io = store.io_size() as u64;
    let setup = store.write_setup();
    let generated = crate::datagen::object(&crate::datagen::DataSpec::new(7), "g", 1 << 20);
    assert!(
        !setup.needs_buffer(&generated),
        "generated payloads are aligned"
    );
    for size in [1, b, 2 * b + 1, io, io + b, 3 * io + 517, 4 * io] {
        let key = format!("a/{size}");
        let want = aligned_pattern(size, crate::datagen::PAYLOAD_ALIGN);
        let aligned = want.slice(..size as usize);
        let unaligned = want.slice(1..);
        assert_eq!(
            setup.needs_buffer(&aligned),
            size % b != 0,
            "{size}: a buffer only for a partial tail"
        );
        assert!(setup.needs_buffer(&unaligned) || b == 1);
        for (data, what) in [(aligned, "aligned"), (unaligned, "unaligned")] {
            store.put(&key, data.clone()).await.unwrap();
            let on_disk = fs::read(dir.path().join(&key)).unwrap();
            assert!(on_disk == data, "{what} {size}");
        }
    }
}

#[tokio::test]
async fn overwrite_shorter_then_longer() {
    let (_dir, store) = capable(&small());
    for size in [50_000u64, 700, 20_000, 8192, 3] {
        store
            .put("o", Bytes::from(pattern(size, size)))
            .await
            .unwrap();
        let g = store.get("o", &GetOptions::keep()).await.unwrap();
        assert!(g.data.unwrap() == pattern(size, size), "size {size}");
    }
}

#[tokio::test]
async fn unaligned_ranges_across_chunks() {
    let (_dir, store) = capable(&small());
    let size = 5 * store.io_size() as u64 + 333;
    store.put("r", Bytes::from(pattern(0, size))).await.unwrap();
    let io = store.io_size() as u64;
    let cases = [
        (0, 1),
        (1, 1),
        (511, 2),
        (4095, 4098),
        (io - 1, 2),
        (io + 7, 3 * io),
        (size - 1, 1),
        (size - 400, 10_000),
        (12_345, u64::MAX),
    ];
    for (offset, length) in cases {
        let opts = GetOptions {
            range: Some(ByteRange { offset, length }),
            keep_data: true,
        };
        let g = store.get("r", &opts).await.unwrap();
        let want = length.min(size - offset);
        assert_eq!(g.bytes, want, "{offset}+{length}");
        assert!(
            g.data.unwrap() == pattern(offset, want),
            "{offset}+{length}"
        );
        // Without keep_data the count is the same.
        let opts = GetOptions {
            keep_data: false,
            ..opts
        };
        assert_eq!(store.get("r", &opts).await.unwrap().bytes, want);
    }
}

#[tokio::test]
async fn multipart_with_unaligned_parts() {
    let (_dir, store) = capable(&small());
    let size = 50_001u64;
    let part = |offset: u64, len: u64| Bytes::from(pattern(offset, len));
    let parts = store
        .put_multipart("mp", PartPlan::serial(size, 1000), &part)
        .await
        .unwrap();
    assert_eq!(parts, 51);
    let g = store.get("mp", &GetOptions::keep()).await.unwrap();
    assert!(g.data.unwrap() == pattern(0, size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_ops_than_buffers_wait_for_one() {
    let (_dir, store) = capable(&small());
    let store = Arc::new(store);
    store
        .put("c", Bytes::from(pattern(0, 30_000)))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                if i % 4 == 0 {
                    s.put(&format!("w/{i}"), Bytes::from(pattern(i, 9000)))
                        .await
                        .map(|()| 9000)
                } else {
                    s.get("c", &GetOptions::whole()).await.map(|g| g.bytes)
                }
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let n = t.await.unwrap().unwrap();
        assert_eq!(n, if i % 4 == 0 { 9000 } else { 30_000 });
    }
    assert_eq!(store.pool.free.lock().unwrap().len(), 2, "buffers returned");
}

#[tokio::test]
async fn files_are_opened_with_o_direct() {
    let (dir, _store) = capable(&DirectOptions::default());
    let path = dir.path().join("flag");
    for write in [true, false] {
        let f = open_direct(&path, write).unwrap();
        // SAFETY: F_GETFL on an open fd reads its flags.
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert!(flags & libc::O_DIRECT != 0, "write={write}: {flags:#x}");
    }
}

#[test]
fn einval_on_open_is_not_supported_naming_the_path() {
    let e = io_error(
        "direct:///mnt/x",
        "k",
        Path::new("/mnt/x/k"),
        &io::Error::from_raw_os_error(libc::EINVAL),
    );
    assert_eq!(e.class, ErrorClass::NotSupported);
    assert!(
        e.message
            .contains("O_DIRECT is refused by this file system"),
        "{e}"
    );
    assert!(e.message.contains("/mnt/x/k"), "{e}");
    let e = ProbeError::NoDio(PathBuf::from("/mnt/y")).into_error("direct:///mnt/y", "/mnt/y");
    assert_eq!(e.class, ErrorClass::NotSupported);
    assert!(e.message.contains("/mnt/y"), "{e}");
}

#[tokio::test]
async fn uri_options_are_checked() {
    let (dir, _s) = capable(&DirectOptions::default());
    let root = dir.path().to_str().unwrap();
    let opts = OpenOptions {
        concurrency: 3,
        ..Default::default()
    };
    let s = DirectStore::open_uri(&format!("{root}?io_size=4MiB"), &opts).unwrap();
    assert_eq!((s.io_size(), s.pool_buffers()), (4 << 20, 3));
    assert_eq!(s.to_string(), format!("direct://{root}?io_size=4MiB"));
    for bad in ["?io_size=0", "?io_size=1GiB", "?io_size=x", "?bs=1M", "?"] {
        let e = DirectStore::open_uri(&format!("{root}{bad}"), &opts).unwrap_err();
        assert_eq!(e.class, ErrorClass::Other, "{bad}: {e}");
    }
    let s = DirectStore::open_uri(&format!("{root}?io_size=8KiB&open_files=7"), &opts).unwrap();
    assert_eq!((s.io_size(), s.open_files()), (8192, 7));
    let s = DirectStore::open_uri(&format!("{root}?open_files=0"), &opts).unwrap();
    assert_eq!(s.open_files(), 0);
    for bad in ["?open_files=-1", "?open_files=x", "?open_files=100000000"] {
        let e = DirectStore::open_uri(&format!("{root}{bad}"), &opts).unwrap_err();
        assert!(e.message.contains("open_files"), "{bad}: {e}");
    }
    // Rounded up to the block.
    let s = DirectStore::open_uri(&format!("{root}?io_size=1000"), &opts).unwrap();
    assert_eq!(s.io_size() % s.alignment().offset, 0);
    assert!(DirectStore::open_uri("relative", &opts).is_err());
}

#[test]
fn io_size_is_fitted_to_the_pool_bound() {
    assert_eq!(fit_io_size(1 << 20, 4096, 4), 1 << 20);
    assert_eq!(fit_io_size(1000, 512, 4), 1024);
    let big = fit_io_size(MAX_IO_SIZE, 4096, MAX_POOL_BUFFERS);
    assert!(big as u64 * MAX_POOL_BUFFERS as u64 <= MAX_POOL_BYTES);
    assert_eq!(big % 4096, 0);
}

#[tokio::test]
async fn keys_outside_root_are_refused() {
    let (_dir, store) = capable(&DirectOptions::default());
    for key in ["../x", "/etc/passwd", "a/../../b", ""] {
        let e = store.put(key, Bytes::new()).await.unwrap_err();
        assert!(e.message.contains("not a relative path"), "{key}: {e}");
        assert!(e.endpoint.starts_with("direct://"), "{e}");
    }
}

/// A `direct://` store with `engine=io_uring` (and `extra` URI options) on
/// an O_DIRECT-capable temp dir.
fn capable_uring(extra: &str) -> (tempfile::TempDir, DirectStore) {
    let (dir, _) = capable(&DirectOptions::default());
    let rest = format!("{}?engine=io_uring{extra}", dir.path().display());
    let store = DirectStore::open_uri(&rest, &OpenOptions::default()).unwrap();
    assert_eq!(store.engine(), "io_uring");
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_io_uring() {
    let (_dir, store) = capable_uring("");
    super::super::conformance::run_all(&store, "p/").await;
    // Small I/O: spans of several reads and writes per op.
    let (_dir, store) = capable_uring("&io_size=8KiB&open_files=0");
    super::super::conformance::run_all(&store, "p/").await;
}

#[tokio::test]
async fn conformance_with_io_uring_on_a_current_thread_runtime() {
    let (_dir, store) = capable_uring("");
    super::super::conformance::run_all(&store, "p/").await;
}

/// Payloads aligned or not, of sizes around the block and the I/O size,
/// read back whole and in ranges through the ring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_uring_round_trips_odd_sizes_and_alignments() {
    let (_dir, store) = capable_uring("&io_size=16KiB");
    let aligned = crate::aligned::AlignedBuf::zeroed(64 << 10, 4096).unwrap();
    for size in [1usize, 511, 4096, 4097, 16 << 10, (16 << 10) + 5, 40_000] {
        for skew in [0usize, 1] {
            let data = pattern(skew as u64, size as u64);
            let payload = if skew == 0 && size <= aligned.len() {
                // Aligned memory: whole blocks written from it directly.
                let mut b = crate::aligned::AlignedBuf::zeroed(size.max(1), 4096).unwrap();
                b.as_mut_slice()[..size].copy_from_slice(&data);
                Bytes::copy_from_slice(&b.as_slice()[..size])
            } else {
                Bytes::from(data.clone())
            };
            let key = format!("k{size}-{skew}");
            store.put(&key, payload).await.unwrap();
            let got = store.get(&key, &GetOptions::keep()).await.unwrap();
            assert_eq!(got.data.unwrap(), &data[..], "{key}");
            let r = ByteRange {
                offset: (size / 3) as u64,
                length: (size / 2).max(1) as u64,
            };
            let opts = GetOptions {
                range: Some(r),
                keep_data: true,
            };
            let got = store.get(&key, &opts).await.unwrap().data.unwrap();
            let lo = r.offset as usize;
            let hi = (lo + r.length as usize).min(size);
            assert_eq!(got, &data[lo..hi], "{key} range");
        }
    }
}
