//! Unit tests of `uring`: availability and the fallback decision, and
//! the ring itself (results, ownership, a dropped op).

use std::io::Write;
use std::sync::Arc;

use super::*;

fn sysctl_file(content: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(content.as_bytes()).unwrap();
    f
}

#[test]
fn availability_reads_the_sysctl_and_the_setup_error() {
    let ok = || Ok(());
    let eperm = || Err(io::Error::from_raw_os_error(libc::EPERM));
    // Disabled for everyone: refused without trying a setup.
    let two = sysctl_file("2\n");
    let e = availability(two.path(), false, || panic!("no setup when 2")).unwrap_err();
    assert!(e.contains("is 2"), "{e}");
    // Members only: the setup error, with the reason.
    let one = sysctl_file("1\n");
    let e = availability(one.path(), false, eperm).unwrap_err();
    assert!(e.contains("io_uring_group"), "{e}");
    assert!(availability(one.path(), false, ok).is_ok());
    // Enabled, or a kernel without the sysctl: the setup decides.
    let zero = sysctl_file("0\n");
    assert!(availability(zero.path(), false, ok).is_ok());
    let e = availability(zero.path(), false, eperm).unwrap_err();
    assert!(e.contains("setting up a ring failed"), "{e}");
    let missing = Path::new("/nonexistent/io_uring_disabled");
    assert!(availability(missing, false, ok).is_ok());
    // The environment switch wins.
    let e = availability(zero.path(), true, ok).unwrap_err();
    assert!(e.contains(DISABLE_ENV), "{e}");
}

/// The real check agrees with the machine's sysctl.
#[test]
fn availability_here_follows_the_sysctl() {
    let level = std::fs::read_to_string(DISABLED_SYSCTL)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let here = availability(Path::new(DISABLED_SYSCTL), false, probe_setup);
    if level >= 2 {
        assert!(here.is_err());
    } else if level == 0 {
        // A kernel with the sysctl at 0 has io_uring (5.1+), unless a
        // seccomp filter says otherwise: then the reason is given.
        if let Err(why) = &here {
            assert!(why.contains("setting up"), "{why}");
        }
    }
}

#[test]
fn resolve_falls_back_or_fails_as_asked() {
    let no = || Err("io_uring_disabled is 2".to_string());
    let yes = || Ok(());
    let e = resolve_from(Engine::IoUring, "file:///x", no).unwrap_err();
    assert_eq!(e.class, ErrorClass::NotSupported);
    assert!(e.message.contains("io_uring_disabled is 2"), "{e}");
    assert!(e.message.contains("engine=psync"), "{e}");
    assert!(!resolve_from(Engine::Auto, "file:///x", no).unwrap());
    assert!(resolve_from(Engine::Auto, "file:///x", yes).unwrap());
    assert!(resolve_from(Engine::IoUring, "file:///x", yes).unwrap());
    let never = || -> Result<(), String> { panic!("psync asks nothing") };
    assert!(!resolve_from(Engine::Psync, "file:///x", never).unwrap());
}

#[test]
fn engine_names_round_trip() {
    for e in [Engine::Psync, Engine::IoUring, Engine::Auto] {
        assert_eq!(Engine::parse(e.name()), Some(e));
    }
    assert!(parse_engine("uring", "file:///x").is_err());
}

fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, Arc<std::fs::File>) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    let file = Arc::new(std::fs::File::open(f.path()).unwrap());
    (f, file)
}

#[tokio::test]
async fn reads_and_writes_through_the_ring() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let (tmp, file) = file_with(&data);
    let (n, file, buf) = read_at(file, vec![0u8; 4096], 0, 4096, 100).await.unwrap();
    assert_eq!(n, 4096);
    assert_eq!(&buf[..], &data[100..4196]);
    // Short at the end of the file, then 0 past it.
    let (n, file, buf) = read_at(file, buf, 10, 4000, 9_000).await.unwrap();
    assert_eq!((n, &buf[10..1010]), (1000, &data[9000..]));
    let (n, _, _) = read_at(file, buf, 0, 4096, 20_000).await.unwrap();
    assert_eq!(n, 0);
    // A write, read back; an error comes back as the errno.
    let w = Arc::new(
        std::fs::OpenOptions::new()
            .write(true)
            .open(tmp.path())
            .unwrap(),
    );
    let payload = bytes::Bytes::from_static(b"hello ring");
    let (w, _) = write_all_at(w, payload, 0, 10, 5).await.unwrap();
    assert_eq!(&std::fs::read(tmp.path()).unwrap()[5..15], b"hello ring");
    let e = read_at(w, vec![0u8; 8], 0, 8, 0).await.unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EBADF),
        "read on a write-only fd"
    );
}

/// A future dropped with its op queued leaves the buffer with the ring
/// until the completion; the ring goes on serving other ops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_op_keeps_its_buffer_and_frees_its_slot() {
    let (_tmp, file) = file_with(&[7u8; 8192]);
    for _ in 0..(RING_ENTRIES * 2) {
        let fut = read_at(file.clone(), vec![0u8; 8192], 0, 8192, 0);
        let mut fut = std::pin::pin!(fut);
        // First poll pushes the SQE and yields; then the future is dropped.
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    // More drops than slots: they were freed again, or this would wait.
    let (n, _, buf) = read_at(file, vec![0u8; 8192], 0, 8192, 0).await.unwrap();
    assert_eq!(n, 8192);
    assert!(buf.iter().all(|&b| b == 7));
}
