//! A trace shipped through the real service to two embedded agents (real
//! gRPC on loopback, real sessions, real spool folders).

use std::collections::BTreeMap;
use std::time::Duration;

use chorus_common::trace::TraceId;
use chorus_proto::TRACE_CHUNK_BYTES;

use super::{put_trace, ship_trace};
use crate::run::agents::{self, SessionStart};
use crate::transport::Security;

const PLAN: &str = "name: trace-ship
target: mem://trace-ship
objects: {count: 10, size: 1KiB}
stages:
  - name: fill
    type: prepare
    concurrency: 1
";

/// Bytes no two chunks of which are alike (xorshift), so a chunk dropped,
/// doubled or reordered changes the copy.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_reaches_every_agent_whole_and_bad_streams_are_refused_by_name() {
    let (addrs, embedded) = agents::start_embedded(2).await.unwrap();
    let mut handles = agents::connect(&addrs, &Security::loopback())
        .await
        .unwrap();
    let env = BTreeMap::new();
    let (session, run) = ("s-trace-ship", "trace-ship-run");
    let start = SessionStart {
        session_id: session,
        run_id: run,
        plan_yaml: PLAN,
        env: &env,
        controller_timeout: Duration::from_secs(60),
    };
    agents::open_sessions(&mut handles, &start).await.unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("trace.tsv.zst");
    let bytes = pseudo_random(2 * TRACE_CHUNK_BYTES + 12_345);
    std::fs::write(&path, &bytes).unwrap();

    let id = ship_trace(&handles, session, &path).await.unwrap();
    assert_eq!(id, TraceId::of_file(&path).unwrap());
    assert_eq!(id.len, bytes.len() as u64);
    for spool in embedded.spools() {
        let dir = spool.join(run);
        let copy = std::fs::read(dir.join(id.file_name())).unwrap();
        assert!(copy == bytes, "the agent's copy differs from the trace");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".part-")), "{names:?}");
    }

    // Held already: the agents answer after the header and read no data.
    // Sent from a file of other bytes (which no agent could accept), larger
    // than an HTTP/2 stream window, so a reply that waited for the data
    // would fail or hang instead.
    let other = tmp.path().join("zeros");
    std::fs::write(&other, vec![0u8; bytes.len()]).unwrap();
    for a in &handles {
        let held =
            tokio::time::timeout(Duration::from_secs(10), put_trace(a, session, &other, &id));
        assert!(
            held.await
                .expect("a held trace is answered at once")
                .unwrap()
        );
    }
    assert_eq!(ship_trace(&handles, session, &path).await.unwrap(), id);

    // A header that lies about the hash: refused by the agent, named.
    let mut wrong = id;
    wrong.sha256[0] ^= 1;
    let agent = &handles[1];
    let msg = format!(
        "{:#}",
        put_trace(agent, session, &path, &wrong).await.unwrap_err()
    );
    assert!(msg.contains(&agent.name()), "{msg}");
    assert!(msg.contains("PutTrace"), "{msg}");
    assert!(msg.contains("received bytes hash to"), "{msg}");

    // One that announces more bytes than come: a short stream.
    let long = TraceId {
        len: id.len + 1,
        ..wrong
    };
    let msg = format!(
        "{:#}",
        put_trace(agent, session, &path, &long).await.unwrap_err()
    );
    assert!(msg.contains(&agent.name()), "{msg}");
    assert!(
        msg.contains(&format!(
            "stream ended after {} of {} bytes",
            id.len,
            id.len + 1
        )),
        "{msg}"
    );
    // Neither left a file behind.
    let dir = embedded.spools()[1].join(run);
    assert!(!dir.join(wrong.file_name()).exists());
    assert!(!dir.join(long.file_name()).exists());
    let left = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(left, 1, "only the good copy stays");

    // Another session's id: every agent refuses, each named.
    let msg = format!(
        "{:#}",
        ship_trace(&handles, "not-the-session", &path)
            .await
            .unwrap_err()
    );
    assert!(
        msg.contains("2 of 2 agents could not take the trace"),
        "{msg}"
    );
    for a in &handles {
        assert!(msg.contains(&a.name()), "{msg}");
    }
}
