//! Large objects: the `parallel` key (a GET cut into concurrent ranged
//! requests, uploads' parts sent concurrently) and the object-size limits
//! of each backend, checked when the plan is loaded so a size a backend
//! cannot store is a located error before anything runs.
//!
//! How the engine moves large objects is in `workload::ops` and
//! `workload::large`; the memory bound it keeps is stated in docs/plan.md.

use std::fmt::Write as _;

use super::error::PlanError;
use super::load::{Decoder, Map, join};
use super::units::format_size;
use super::yaml::Node;
use super::{Stage, StageKind};
use crate::op::OpKind;

/// `parallel: {part: 8MiB, streams: 16}`: how one op moves a large object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parallel {
    /// A `get` of an object larger than this is read as ranged GETs of
    /// this size.
    pub part: u64,
    /// Most ranged GETs, or most upload parts, in flight at once for one
    /// op.
    pub streams: u32,
}

/// Most `streams` one op may have: each holds up to a part in memory.
pub const MAX_STREAMS: u64 = 1024;

/// The largest S3 object (5 TiB), and its most parts.
const S3_MAX_OBJECT: u64 = 5 << 40;
const S3_MAX_PARTS: u64 = 10_000;
/// An Azure block blob: at most 50,000 blocks of at most 4000 MiB.
const AZURE_MAX_BLOCKS: u64 = 50_000;
const AZURE_MAX_BLOCK: u64 = 4000 << 20;
/// The largest GCS object (5 TiB); resumable upload chunks are multiples
/// of 256 KiB.
const GCS_MAX_OBJECT: u64 = 5 << 40;
const GCS_CHUNK_ALIGN: u64 = 256 << 10;

impl Decoder<'_> {
    /// The stage's `parallel` key, if any.
    pub(super) fn parallel(&self, m: &Map) -> Result<Option<Parallel>, PlanError> {
        let Some(e) = m.get("parallel") else {
            return Ok(None);
        };
        let path = join(&m.path, "parallel");
        let pm = self.map(
            &e.value,
            path.clone(),
            format!("`parallel` of {}", m.what),
            &["part", "streams"],
            "key",
        )?;
        let part = pm
            .get("part")
            .map(|e| self.size(e, &join(&path, "part"), 1))
            .transpose()?
            .unwrap_or(super::options::DEFAULT_PART_SIZE);
        let streams = pm
            .get("streams")
            .map(|e| self.integer(e, &join(&path, "streams"), 1, MAX_STREAMS))
            .transpose()?
            .unwrap_or(8) as u32;
        Ok(Some(Parallel { part, streams }))
    }

    /// A located error when the stage writes objects larger than its
    /// target can store (see [`size_limit`]): at the stage's `objects`
    /// (or `part_size`) when it has them, else at the stage.
    pub(super) fn check_size_limit(
        &self,
        m: &Map,
        node: &Node,
        stage: &Stage,
    ) -> Result<(), PlanError> {
        let Some(message) = size_limit(stage) else {
            return Ok(());
        };
        let (pos, key) = match (m.get("objects"), m.get("part_size")) {
            (_, Some(e)) if message.contains("part") => (e.value.pos, "part_size"),
            (Some(e), _) => (e.value.pos, "objects"),
            _ => (node.pos, "objects"),
        };
        Err(self
            .err(pos, &join(&m.path, key), message)
            .with_hint("raise `part_size` (fewer, larger parts) or make the objects smaller"))
    }
}

/// Whether the stage writes objects: a prepare, or a mix with weight on
/// `put` or `multipart_put`.
fn writes(stage: &Stage) -> bool {
    match stage.kind {
        StageKind::Prepare => true,
        // A replay's sizes are its trace's, unknown until it is read: a
        // store's refusal of one is that op's error.
        StageKind::Cleanup | StageKind::Replay => false,
        // A dataset's files are bounded by its format (`crate::dataset`);
        // a checkpoint's shards depend on the agent count, and a store's
        // refusal of one is that op's error.
        StageKind::Dataset | StageKind::Train | StageKind::Checkpoint => false,
        StageKind::Workload | StageKind::Search => stage
            .mix
            .weights
            .iter()
            .any(|(op, &w)| w > 0 && matches!(op, OpKind::Put | OpKind::MultipartPut)),
    }
}

/// Why the stage's largest object cannot be written to its target, if it
/// cannot: over the backend's object size, or needing more parts than an
/// upload may have at the stage's `part_size`. Objects larger than
/// `part_size` are uploaded in parts (a `put` too), so the part count is
/// what bounds them.
pub fn size_limit(stage: &Stage) -> Option<String> {
    if !writes(stage) {
        return None;
    }
    let size = stage.objects.size.max();
    let part = stage.part_size.max(1);
    let parts = size.div_ceil(part);
    let scheme = stage.target.split("://").next().unwrap_or("");
    let (name, max_object, max_parts) = match scheme {
        "s3" => ("S3", S3_MAX_OBJECT, S3_MAX_PARTS),
        "az" => (
            "an Azure block blob",
            AZURE_MAX_BLOCKS * AZURE_MAX_BLOCK,
            AZURE_MAX_BLOCKS,
        ),
        "gs" => ("GCS", GCS_MAX_OBJECT, u64::MAX),
        _ => return None,
    };
    let mut why = String::new();
    if size > max_object {
        let _ = write!(
            why,
            "objects of up to {} are larger than {name} stores (at most {})",
            format_size(size),
            format_size(max_object)
        );
    } else if parts > max_parts {
        let _ = write!(
            why,
            "objects of up to {} need {parts} parts of {} (part_size); {name} allows at most {max_parts}, \
             so part_size must be at least {}",
            format_size(size),
            format_size(part),
            format_size(size.div_ceil(max_parts))
        );
    } else if scheme == "az" && size > part && part > AZURE_MAX_BLOCK {
        let _ = write!(
            why,
            "part_size {} is over an Azure block's limit of {}",
            format_size(part),
            format_size(AZURE_MAX_BLOCK)
        );
    } else if scheme == "gs" && size > part && !part.is_multiple_of(GCS_CHUNK_ALIGN) {
        let _ = write!(
            why,
            "part_size {} is not a multiple of 256KiB, which GCS resumable uploads need \
             for objects larger than a part",
            format_size(part)
        );
    }
    (!why.is_empty()).then_some(why)
}

/// The `parallel` line of the canonical plan.
pub(super) fn emit(y: &mut String, p: &Parallel) {
    let _ = writeln!(
        y,
        "    parallel: {{part: {}, streams: {}}}",
        format_size(p.part),
        p.streams
    );
}

#[cfg(test)]
mod tests;
