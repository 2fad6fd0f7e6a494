//! `parallel` and the backends' object-size limits: decoded, written back,
//! and refused at the key that makes a stage unservable.

use super::super::{Plan, parse};
use super::*;

/// A one-stage plan on `target` writing `count` objects of `size`, with
/// `extra` stage keys; the stage's `objects` is on line 7.
fn plan(target: &str, size: &str, extra: &str) -> String {
    format!(
        "name: big\n\
         target: {target}\n\
         stages:\n\
         \x20 - name: write\n\
         \x20   type: prepare\n\
         \x20   {extra}\n\
         \x20   objects: {{count: 1, size: {size}}}\n"
    )
}

fn load(text: &str) -> Plan {
    parse(text, "big.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn parallel_decodes_with_defaults_and_round_trips() {
    let p = load(&plan(
        "s3://b",
        "1GiB",
        "parallel: {part: 16MiB, streams: 32}",
    ));
    let want = Parallel {
        part: 16 << 20,
        streams: 32,
    };
    assert_eq!(p.stages[0].parallel, Some(want));
    assert_eq!(load(&p.to_yaml()), p, "canonical YAML keeps `parallel`");
    let d = load(&plan("s3://b", "1GiB", "parallel: {}"));
    let defaults = Parallel {
        part: 8 << 20,
        streams: 8,
    };
    assert_eq!(d.stages[0].parallel, Some(defaults));
    assert_eq!(
        load(&plan("s3://b", "1GiB", "verify: false")).stages[0].parallel,
        None
    );
}

#[test]
fn bad_parallel_keys_are_located() {
    let e = parse(
        &plan("s3://b", "1GiB", "parallel: {streams: 0}"),
        "big.yaml",
    )
    .unwrap_err();
    assert_eq!(
        (e.line, e.key.as_str()),
        (6, "stages[0].parallel.streams"),
        "{e}"
    );
    let e = parse(
        &plan("s3://b", "1GiB", "parallel: {parts: 4MiB}"),
        "big.yaml",
    )
    .unwrap_err();
    assert!(e.message.contains("unknown key `parts`"), "{e}");
    assert!(e.hint.as_deref().unwrap_or("").contains("part"), "{e:?}");
    let e = parse(
        &plan("s3://b", "1GiB", "parallel: {streams: 5000}"),
        "big.yaml",
    )
    .unwrap_err();
    assert!(e.message.contains("too large"), "{e}");
}

#[test]
fn objects_beyond_a_backend_are_refused_at_their_key() {
    // 100 GiB in 8 MiB parts: 12,800 parts, over S3's 10,000.
    let e = parse(&plan("s3://b", "100GiB", "verify: false"), "big.yaml").unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("big.yaml", 7), "{e}");
    assert_eq!(e.key, "stages[0].objects", "{e}");
    assert!(e.message.contains("12800 parts"), "{e}");
    assert!(e.message.contains("at most 10000"), "{e}");
    // The fix the message names works: 16 MiB parts fit.
    load(&plan("s3://b", "100GiB", "part_size: 16MiB"));
    // Over S3's 5 TiB whatever the parts.
    let e = parse(&plan("s3://b", "6TiB", "part_size: 1GiB"), "big.yaml").unwrap_err();
    assert!(e.message.contains("larger than S3 stores"), "{e}");
    // Azure: 50,000 blocks.
    let e = parse(&plan("az://a/c", "500GiB", "verify: false"), "big.yaml").unwrap_err();
    assert!(e.message.contains("at most 50000"), "{e}");
    load(&plan("az://a/c", "300GiB", "verify: false"));
    // GCS: resumable chunks are multiples of 256 KiB.
    let e = parse(&plan("gs://b", "1GiB", "part_size: 1000KiB"), "big.yaml").unwrap_err();
    assert_eq!(e.key, "stages[0].part_size", "{e}");
    assert_eq!(e.line, 6, "{e}");
    // Local stores have no such limit; a stage that only reads is not
    // checked (the objects were written by something else).
    load(&plan("file:///tmp/x", "6TiB", "verify: false"));
    let reads = "name: r\ntarget: s3://b\nobjects: {count: 1, size: 100GiB}\nstages:\n  \
                 - {name: r, type: workload, mix: {get: 1}, ops: 1}\n";
    load(reads);
}

#[test]
fn a_target_override_is_checked_too() {
    let mut p = load(&plan("file:///tmp/x", "100GiB", "verify: false"));
    let o = crate::plan::Overrides {
        target: Some("s3://b".into()),
        ..Default::default()
    };
    let e = p.apply_overrides(&o).unwrap_err();
    assert!(e.contains("12800 parts"), "{e}");
    assert_eq!(p.stages[0].target, "file:///tmp/x", "untouched on error");
}
