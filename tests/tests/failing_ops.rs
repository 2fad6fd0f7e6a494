//! A failing op is a record with its error, counted in the summary, and the
//! run goes on.

use chorus_tests::{Tsv, controller, only_run_dir, read_json};

#[test]
fn gets_of_missing_objects_are_recorded_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("empty");
    // Half the key space exists, half does not.
    std::fs::create_dir_all(data.join("k")).unwrap();
    for i in 0..10 {
        std::fs::write(data.join(format!("k/{i:08}")), b"x").unwrap();
    }
    let plan = format!(
        "name: missing\ntarget: file://{}\nobjects: {{prefix: k/, count: 20, size: 1}}\nstages:\n  - name: read\n    type: workload\n    mix: {{get: 1}}\n    ops: 400\n",
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
    let all = summary["stages"][0]["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "ALL")
        .unwrap()
        .clone();
    assert_eq!(all["count"], 400, "the op limit is exact across agents");
    let errors = all["errors"].as_u64().unwrap();
    assert!(
        errors > 100 && errors < 300,
        "about half the GETs fail: {errors}"
    );
    assert_eq!(summary["total_errors"].as_u64().unwrap(), errors);

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
    // Failed GETs moved no bytes; successful ones moved the one byte.
    for (e, b) in timeline
        .column("error")
        .iter()
        .zip(timeline.column("bytes"))
    {
        assert_eq!(b, if e.is_empty() { "1" } else { "0" });
    }
}
