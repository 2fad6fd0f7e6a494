//! Training-dataset files as readers that are not Chorus see them: files
//! of each format made by `chorus_common::dataset::Layout::file_bytes` are
//! written to a directory and read by the checkers in `tests/python/`
//! (numpy's `numpy.load` for npz; a TFRecord reader written from the
//! format, CRC-32C included, and the `.idx` index; Python's json and base64
//! for jsonl), run in the venv `scripts/pyenv.sh` makes. Every sample's
//! payload is checked against its length and SHA-256. A copy with one
//! byte flipped must fail the same checker, so a pass means the checker
//! looked.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use chorus_common::datagen::DataSpec;
use chorus_common::dataset::{Format, Layout};
use chorus_common::plan::SizeSpec;
use chorus_tests::repo_root;

/// 25 samples 10 to a file: three files, the last with 5; sizes from
/// empty up, across base64 and varint boundaries.
fn layout(format: Format) -> Layout {
    let sizes = SizeSpec::Uniform { min: 0, max: 3000 };
    Layout::new(format, 25, 10, &sizes, 17, "train/").expect("a valid layout")
}

/// Compressible, deduped payloads: what a plan's data controls make.
fn data() -> DataSpec {
    DataSpec {
        dedup: 2,
        compress: 2.0,
        ..DataSpec::new(99)
    }
}

/// Writes every file (and index) of `layout` into `dir`, named by the last
/// part of their keys, and the expected samples the checkers read.
fn write_dataset(layout: &Layout, dir: &Path) -> std::path::PathBuf {
    let data = data();
    let base = |key: String| key.rsplit('/').next().unwrap_or_default().to_owned();
    for file in 0..layout.files() {
        fs::write(
            dir.join(base(layout.file_key(file))),
            layout.file_bytes(&data, file),
        )
        .unwrap();
        if let (Some(key), Some(index)) = (layout.index_key(file), layout.index_bytes(file)) {
            fs::write(dir.join(base(key)), index).unwrap();
        }
    }
    let expected = dir.join("expected.json");
    chorus_tests::dataset::write_expected(layout, &data, &expected);
    expected
}

fn check(script: &str, dir: &Path, expected: &Path) -> Output {
    Command::new("bash")
        .arg(repo_root().join("scripts/pyenv.sh"))
        .arg(repo_root().join("tests/python").join(script))
        .arg(dir)
        .arg(expected)
        .output()
        .expect("bash runs")
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Copies `dir` to a new directory with one byte of `file` flipped at
/// `offset`.
fn corrupted(dir: &Path, file: &str, offset: u64) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let path = copy.path().join(file);
    let mut bytes = fs::read(&path).unwrap();
    bytes[offset as usize] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    copy
}

/// The checker passes on the files as written, and fails on copies with a
/// byte flipped in the middle of a sample's record, and at the end of a
/// file: tfrecord's last data CRC, jsonl's last newline, and for npz the
/// last member's CRC in the central directory (not the last byte, the end
/// record's comment length, which Python's zipfile rightly tolerates).
fn formats_read_back(format: Format, script: &str) {
    let layout = layout(format);
    let dir = tempfile::tempdir().unwrap();
    let expected = write_dataset(&layout, dir.path());
    let out = check(script, dir.path(), &expected);
    assert!(out.status.success(), "{script} failed:\n{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("25 samples checked"),
        "{}",
        text(&out)
    );

    let sample = 13;
    let file = layout.sample_file(sample);
    let name = |f| {
        layout
            .file_key(f)
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let r = layout.sample_range(sample);
    let last = layout.files() - 1;
    let end = layout.file_size(last);
    let tail = match format {
        // End record (22 bytes) after the last central entry (46 bytes and
        // its 17-byte name), whose CRC is at 16.
        Format::Npz => end - 22 - (46 + 17) + 16,
        _ => end - 1,
    };
    for (f, offset) in [(file, r.offset + r.length / 2), (last, tail)] {
        let bad = corrupted(dir.path(), &name(f), offset);
        let out = check(script, bad.path(), &expected);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{script} passed {} with byte {offset} flipped:\n{}",
            name(f),
            text(&out)
        );
    }
}

#[test]
fn npz_files_load_in_numpy() {
    formats_read_back(Format::Npz, "check_npz.py");
}

#[test]
fn tfrecord_files_and_indexes_read_back() {
    formats_read_back(Format::TfRecord, "check_tfrecord.py");
}

#[test]
fn jsonl_files_read_back() {
    formats_read_back(Format::Jsonl, "check_jsonl.py");
}
