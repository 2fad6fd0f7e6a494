//! A failing op is a record with its error, counted in the summary, and the
//! run goes on.

use chorus_tests::{Tsv, controller, only_run_dir, read_json};

#[test]
fn ops_on_vanished_objects_are_recorded_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("k")).unwrap();
    for i in 0..20 {
        std::fs::write(data.join(format!("k/{i:08}")), b"x").unwrap();
    }
    // GETs and DELETEs on 20 objects for 400 ops: the objects are soon all
    // deleted, after which every op fails with not_found, and the run must
    // still do all 400 and count every failure.
    let plan = format!(
        "name: vanish\ntarget: file://{}\nobjects: {{prefix: k/, count: 20, size: 1}}\nstages:\n  - name: churn\n    type: workload\n    mix: {{get: 1, delete: 1}}\n    ops: 400\n",
        data.display()
    );
    let path = tmp.path().join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    let results = tmp.path().join("runs");
    let out = controller(&[
        "run",
        path.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = only_run_dir(&results);
    let summary = read_json(&run.join("summary.json"));
    let stage = &summary["stages"][0]["ops"];
    let all = stage
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "ALL")
        .unwrap()
        .clone();
    assert_eq!(all["count"], 400, "the op limit is exact across agents");
    let errors = all["errors"].as_u64().unwrap();
    assert!(errors >= 300, "most ops hit vanished objects: {errors}");
    assert_eq!(summary["total_errors"].as_u64().unwrap(), errors);
    // At most the 20 objects could be deleted successfully.
    let deletes = stage
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "DELETE")
        .unwrap()
        .clone();
    let deleted = deletes["count"].as_u64().unwrap() - deletes["errors"].as_u64().unwrap();
    assert!(deleted <= 20, "{deleted} successful deletes of 20 objects");

    let timeline = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    assert_eq!(timeline.rows.len(), 400);
    let failed: Vec<_> = timeline
        .column("error")
        .into_iter()
        .filter(|e| !e.is_empty())
        .collect();
    assert_eq!(failed.len() as u64, errors);
    assert!(
        failed.iter().all(|e| e.starts_with("not_found: ")),
        "{:?}",
        &failed[..3]
    );
    // Failed ops moved no bytes; successful GETs moved the one byte.
    for ((e, b), op) in timeline
        .column("error")
        .iter()
        .zip(timeline.column("bytes"))
        .zip(timeline.column("op"))
    {
        let want = if e.is_empty() && op == "GET" {
            "1"
        } else {
            "0"
        };
        assert_eq!(b, want, "{op} {e}");
    }
}
