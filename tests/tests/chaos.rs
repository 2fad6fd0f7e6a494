//! Chaos, audited for lost ops (see `chorus_tests::chaos`). By default
//! the test suite's short version: one run with each fault (an agent
//! killed with -9, one stopped with SIGTERM, one cut off the network and
//! restored, the controller killed and its run collected). With
//! `CHAOS_SECONDS` set (`scripts/chaos.sh`), random faults for that long
//! (`CHAOS_SEED`, `CHAOS_RUNS` at most), the controller killed once.

use chorus_tests::chaos::{self, Fault};

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a whole number")),
    )
}

#[test]
fn nothing_measured_is_lost_under_kills_cuts_and_a_dead_controller() {
    let tmp = tempfile::tempdir().unwrap();
    let report = match env_u64("CHAOS_SECONDS") {
        Some(seconds) => {
            let runs = env_u64("CHAOS_RUNS").unwrap_or(u64::from(u32::MAX)) as u32;
            let seed = env_u64("CHAOS_SEED").unwrap_or(21);
            chaos::run(tmp.path(), runs, seconds, &[], seed)
        }
        None => {
            let faults = [Fault::Kill9, Fault::Term, Fault::Cut, Fault::KillController];
            let report = chaos::run(tmp.path(), faults.len() as u32, 600, &faults, 21);
            assert_eq!(report.runs, 4);
            report
        }
    };
    println!("{report}");
    assert!(report.runs > 0);
    assert!(report.breaks.is_empty(), "{report}");
}
