//! The fuzz targets: each takes arbitrary bytes and feeds them to one of
//! the parsers that read bytes Chorus did not write itself (a plan, an
//! agent's op-log in any of its encodings, a replay trace, the merge's
//! inputs, gRPC messages from a peer).
//!
//! One file, compiled twice: by the afl harness at `tests/fuzz/` (one
//! small bin per target, built with `cargo afl`) and by
//! `tests/tests/fuzz_corpora.rs`, which replays every committed corpus and
//! crash-regression file through every target on the stable toolchain, so
//! CI checks them without afl. It uses only `chorus-common`,
//! `chorus-proto`, `prost` and `std`, which both builds have.
//!
//! A target must return for any input; an error from the parser is a
//! good outcome. What would be a bug panics: a panic in the parser, an
//! allocation past the fuzzer's memory limit (the process aborts), or one
//! of the properties the targets assert (a plan's canonical YAML loads
//! again; the merge writes every record it read).

use chorus_common::metrics::histogram_from_bytes;
use chorus_common::oplog::{MergeInput, OpLogReader, merge_files};
use chorus_common::plan;
use chorus_common::trace::{TraceReader, TraceStats};
use chorus_proto::pb;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fuzz target: it returns on every input, panics on a bug.
pub type Target = fn(&[u8]);

/// Every target by name: the afl bins are named after them and the
/// corpus directories too (`tests/fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("plan", plan),
    ("oplog", oplog),
    ("spool", spool),
    ("trace", trace),
    ("merge", merge),
    ("proto", proto),
];

/// Records or ops a target reads from one input at most: inputs are a few
/// KiB, so this is never reached by a parser that moves forward; it keeps
/// one that would not (a reader yielding forever) from hanging the test.
const MAX_ITEMS: usize = 1 << 20;

/// A plan file: YAML text to a checked `Plan`. A plan that loads must
/// load again from its canonical YAML (what the controller sends each
/// agent), and the second form must be the same text.
pub fn plan(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match plan::parse(text, "fuzz.yaml") {
        Ok(p) => {
            let yaml = p.to_yaml();
            let again = plan::parse(&yaml, "canonical.yaml").unwrap_or_else(|e| {
                panic!("a loaded plan's canonical YAML does not load: {e}\n{yaml}")
            });
            assert_eq!(again.to_yaml(), yaml, "canonical YAML is not a fixed point");
        }
        Err(e) => {
            // The message is what a user sees; building it must not panic.
            let _ = e.to_string();
        }
    }
}

/// An agent's op-log as bytes: plain TSV, zstd TSV or a spool, told apart
/// by their first bytes as `OpLogReader` does for a file.
pub fn oplog(data: &[u8]) {
    read_oplog(data.to_vec());
}

/// A spool's records: the input is the decompressed body of a spool (the
/// string, context and batch blocks), put behind a valid header and
/// compressed, so the fuzzer spends its time in the block decoder rather
/// than on zstd's checksums.
pub fn spool(data: &[u8]) {
    let mut log = spool_header();
    if !data.is_empty() {
        log.extend(zstd::encode_all(data, 1).expect("zstd of a byte slice"));
    }
    read_oplog(log);
}

/// The header every spool starts with (`common::oplog::spool`'s format
/// doc): a zstd skippable frame holding the magic and the version.
fn spool_header() -> Vec<u8> {
    use chorus_common::oplog::spool::{SPOOL_MAGIC, SPOOL_VERSION};
    let mut h = 0x184D_2A5C_u32.to_le_bytes().to_vec();
    h.extend(((SPOOL_MAGIC.len() + 4) as u32).to_le_bytes());
    h.extend(SPOOL_MAGIC);
    h.extend(SPOOL_VERSION.to_le_bytes());
    h
}

fn read_oplog(bytes: Vec<u8>) {
    let Ok(reader) = OpLogReader::from_reader(Path::new("fuzz.log"), Cursor::new(bytes)) else {
        return;
    };
    for rec in reader.take(MAX_ITEMS) {
        if rec.is_err() {
            break;
        }
    }
}

/// A replay trace (a Chorus timeline or agent log, warp's CSV, s3dlio's
/// TSV; plain or zstd): read op by op, scanned for its stats, and read in
/// start order through a small window.
pub fn trace(data: &[u8]) {
    let name = Path::new("fuzz.trace");
    if let Ok(r) = TraceReader::from_reader(name, Cursor::new(data.to_vec())) {
        for op in r.take(MAX_ITEMS) {
            if op.is_err() {
                break;
            }
        }
    }
    if let Ok(r) = TraceReader::from_reader(name, Cursor::new(data.to_vec())) {
        let _ = TraceStats::scan_reader(r);
    }
    if let Ok(r) = TraceReader::from_reader(name, Cursor::new(data.to_vec())) {
        for op in r.in_start_order(1_000_000, 8).take(MAX_ITEMS) {
            if op.is_err() {
                break;
            }
        }
    }
}

/// What separates the logs in a `merge` input: each part is one agent's
/// log file (any encoding).
pub const MERGE_SEPARATOR: &[u8] = b"\n#~~ next log ~~#\n";

/// The merge's inputs: up to three logs (the input cut at
/// [`MERGE_SEPARATOR`]) written to a temporary directory and merged into
/// a timeline with different clock offsets. Every record the merge read
/// must be in the timeline, and the timeline must read back whole.
pub fn merge(data: &[u8]) {
    let dir = TempDir::new();
    let mut inputs = Vec::new();
    for (i, part) in split(data, MERGE_SEPARATOR).take(3).enumerate() {
        let path = dir.0.join(format!("agent-{i}.log"));
        std::fs::write(&path, part).expect("write a fuzz input");
        let offset = [0, 1_500_000_000, -7][i];
        inputs.push(MergeInput::new(path, offset));
    }
    let out = dir.0.join("timeline.tsv.zst");
    let Ok(stats) = merge_files(&inputs, &out, &dir.0.join("tmp")) else {
        return;
    };
    assert_eq!(stats.records_in, stats.records_out, "{stats:?}");
    let back = OpLogReader::open(&out).expect("the merged timeline opens");
    let mut n = 0u64;
    let mut last_start = i64::MIN;
    for rec in back {
        let rec = rec.expect("the merged timeline reads back");
        assert!(
            rec.start_ns >= last_start,
            "timeline out of start order at record {n}"
        );
        last_start = rec.start_ns;
        n += 1;
    }
    assert_eq!(
        n, stats.records_out,
        "timeline records vs the merge's count"
    );
}

/// Messages from a gRPC peer: the first byte picks the message (what a
/// controller reads from an agent's stage stream, what an agent reads in
/// `RunStage` and `PutTrace`, or a histogram's bytes alone), the rest is
/// decoded by prost and handed to the conversions in `chorus-proto`.
pub fn proto(data: &[u8]) {
    use prost::Message;
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let Ok(ev) = pb::StageEvent::decode(body) else {
                return;
            };
            match ev.event {
                Some(pb::stage_event::Event::Progress(p)) => progress(&p),
                Some(pb::stage_event::Event::Done(d)) => done(&d),
                Some(pb::stage_event::Event::Preparing(_)) | None => {}
            }
        }
        1 => {
            if let Ok(r) = pb::RunStageRequest::decode(body)
                && let Some(s) = &r.step
            {
                let _ = chorus_proto::decode_step(s);
            }
        }
        2 => {
            if let Ok(c) = pb::TraceChunk::decode(body) {
                let _ = chorus_proto::trace_id_of(&c);
            }
        }
        _ => {
            let _ = histogram_from_bytes(body);
        }
    }
}

fn progress(p: &pb::Progress) {
    let _ = histogram_from_bytes(&p.interval_latency_hist);
    if let Some(h) = &p.host {
        let _ = chorus_proto::decode_host(h);
    }
    let _ = chorus_proto::decode_op_totals(&p.by_op);
}

fn done(d: &pb::StageDone) {
    if let Ok(m) = chorus_proto::decode_metrics(&d.ops) {
        // What the controller does with them next: add them up and read
        // percentiles.
        let _ = m.total_ops();
        for s in m.ops.values() {
            let _ = s.latency.value_at_quantile(0.99);
        }
    }
    if let Some(s) = &d.schedule {
        let _ = chorus_proto::decode_schedule(s);
    }
    if let Some(l) = &d.listing {
        let _ = chorus_proto::decode_listing(l);
    }
    let _ = chorus_proto::decode_endpoints(&d.endpoints);
    let _ = chorus_proto::decode_ranks(&d.ranks);
}

/// `data` cut at each `sep`.
fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(sep.len()).position(|w| w == sep) {
            Some(at) => {
                rest = Some(&r[at + sep.len()..]);
                Some(&r[..at])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// A directory of its own under `/dev/shm` where there is one (a tmpfs:
/// the merge fsyncs its output, free there and slow on a disk), else the
/// system's temporary directory; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "chorus-fuzz-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a fuzz temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
