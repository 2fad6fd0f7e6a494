//! A network cut, not a crash: agents on their own hosts (network
//! namespaces), one host's link taken down mid-stage. Nothing closes the
//! connections, so only heartbeats and silence can tell: the controller
//! must call the agent lost within a few seconds and finish with the
//! others, and the cut-off agent must stop its own load within the plan's
//! controller timeout and keep its log for `controller collect`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_tests::agents::AgentSpec;
use chorus_tests::netns::Net;
use chorus_tests::{Tsv, bin, controller, only_run_dir, read_json};

/// Seconds after the cut within which the cut-off agent's last op ends:
/// the plan's controller_timeout (3 s), the watchdog's check interval
/// (0.75 s) and an op in flight.
const STOP_BOUND: Duration = Duration::from_secs(5);

#[test]
fn a_cut_agent_is_lost_by_the_controller_and_stops_on_its_own() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let net = Net::new(3);
    let ids = ["a", "b", "c"];
    let agents: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            AgentSpec::new(id, tmp.path().join(format!("spool-{id}")))
                .netns(&net, i)
                .start()
        })
        .collect();
    let addrs: Vec<&str> = agents.iter().map(|a| a.addr.as_str()).collect();
    let addrs = addrs.join(",");
    let plan = format!(
        "name: cut\ntarget: file://{}\nconcurrency: 2\nobjects: {{count: 100, size: 4KiB}}\n\
         control: {{on_agent_loss: continue, agent_timeout: 2s, controller_timeout: 3s}}\n\
         stages:\n  - {{name: prepare, type: prepare}}\n\
         \x20 - {{name: load, type: workload, mix: {{get: 3, put: 1}}, rate: 300, duration: 10s}}\n",
        tmp.path().join("data").display()
    );
    let plan_path = tmp.path().join("plan.yaml");
    std::fs::write(&plan_path, plan).unwrap();
    let results = tmp.path().join("runs");

    let mut child = Command::new(bin("controller"))
        .args(["run", plan_path.to_str().unwrap(), "--agents", &addrs])
        .args(["--insecure", "--quiet", "--results"])
        .arg(&results)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });

    // Cut host c once the workload runs (its rows are in series.csv).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let started = std::fs::read_dir(&results)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|d| std::fs::read_to_string(d.ok()?.path().join("series.csv")).ok())
            .is_some_and(|s| s.lines().any(|l| l.starts_with("load,")));
        if started {
            break;
        }
        assert!(Instant::now() < deadline, "stage `load` did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("load started {:?} after the test began", t0.elapsed());
    let cut_at = Instant::now();
    let cut_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    net.cut(2);

    let mut stderr_text = String::new();
    let mut reported = None;
    while let Ok((at, line)) = lines.recv_timeout(Duration::from_secs(20)) {
        stderr_text.push_str(&line);
        stderr_text.push('\n');
        if line.contains("agent c lost") {
            reported = Some(at);
            break;
        }
    }
    let reported = reported.unwrap_or_else(|| panic!("no loss reported:\n{stderr_text}"));
    let delay = reported.duration_since(cut_at);
    assert!(
        delay < Duration::from_secs(5),
        "lost reported after {delay:?}"
    );
    println!("loss reported {delay:?} after the cut");
    let status = child.wait().unwrap();
    println!("controller done {:?} after the cut", cut_at.elapsed());
    assert!(status.success(), "continue policy: {status}\n{stderr_text}");

    let run = only_run_dir(&results);
    let meta = read_json(&run.join("run.json"));
    assert_eq!(meta["lost_agents"][0]["id"], "c", "{meta:#}");
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (stage, client) = (t.col("stage"), t.col("client_id"));
    let load_clients: BTreeSet<&str> = t
        .rows
        .iter()
        .filter(|r| r[stage] == "load")
        .map(|r| r[client].as_str())
        .collect();
    assert_eq!(load_clients, BTreeSet::from(["a", "b"]));

    // Back on the network, the cut-off agent hands over what it logged:
    // it stopped its load within the bound although no one told it to.
    net.restore(2);
    let out = controller(&["collect", run.to_str().unwrap(), "--insecure"]);
    println!("collected {:?} after the cut", cut_at.elapsed());
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    let (stage, client, end) = (t.col("stage"), t.col("client_id"), t.col("end"));
    let c_ends: Vec<&str> = t
        .rows
        .iter()
        .filter(|r| r[stage] == "load" && r[client] == "c")
        .map(|r| r[end].as_str())
        .collect();
    assert!(!c_ends.is_empty(), "c's log of `load` was collected");
    // RFC 3339 UTC strings of one width sort as times.
    let last = c_ends.iter().max().unwrap();
    let bound = rfc3339(cut_ns + STOP_BOUND.as_nanos() as i64);
    assert!(
        **last < *bound.as_str(),
        "c's last op ended at {last}, later than {bound} (cut + {STOP_BOUND:?})"
    );
    // The load stage ran 10 s; c stopped well before its end.
    drop(agents);
}

/// ns since the epoch as Chorus writes times: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn rfc3339_formats_known_instants() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(
        rfc3339(1_795_479_887_500_000_000),
        "2026-11-24T00:24:47.500000000Z"
    );
}
