//! Large objects in bounded memory: GETs verified chunk by chunk as the
//! body streams in, `parallel` GETs (an object read as concurrent ranged
//! GETs, as s3dlio's RangeEngine and the AWS CRT client do), and the
//! per-attempt timeout of an op that moves many parts.
//!
//! The memory one op holds is bounded whatever the object's size: a
//! streamed GET keeps one transport chunk (network stores) or
//! [`GET_CHUNK_BYTES`] (local stores) per stream; an upload keeps one part
//! per stream (`datagen::span` makes each as it is sent). With `streams`
//! streams that is at most `streams × max(part, part_size, 8 MiB)`.

use std::sync::Mutex;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};

use crate::clock::Mono;
use crate::datagen::{self, DataSpec};
use crate::op::OpKind;
use crate::plan::Stage;
use crate::store::{
    ByteRange, ErrorClass, GET_CHUNK_BYTES, GetOptions, GetOutcome, ObjectStore, PartPlan,
    PartTime, StoreError, StoreResult,
};

use super::ops::{OpDone, OpPlan};

/// A GET whose expected length is above this, with `verify`, streams its
/// body through the check instead of collecting it: smaller ones keep the
/// one-call path (a `file://` GET of a small object is one read).
pub const STREAMED_VERIFY_BYTES: u64 = GET_CHUNK_BYTES;

/// How a write of `plan` is cut into parts, or `None` for one request: a
/// `multipart_put` always; a `put` of an object larger than `part_size`
/// (its payload is then never made whole: see `OpPlan::new`). Uploads send
/// `parallel.streams` parts at once (one without `parallel`).
pub fn upload_parts(plan: &OpPlan, stage: &Stage) -> Option<PartPlan<'static>> {
    let parts =
        plan.op == OpKind::MultipartPut || (plan.op == OpKind::Put && plan.size > stage.part_size);
    parts.then(|| PartPlan {
        size: plan.size,
        part_size: stage.part_size.max(1),
        streams: stage.parallel.map_or(1, |p| p.streams.max(1) as usize),
        log: None,
    })
}

/// An upload in `parts`, each made by the generator as it is sent, each
/// part's time kept for the op-log when there is more than one.
pub async fn upload(
    store: &dyn ObjectStore,
    plan: &OpPlan,
    parts: PartPlan<'_>,
    data: &DataSpec,
) -> Result<OpDone, StoreError> {
    let key = plan.key.as_str();
    let make = |offset: u64, len: u64| datagen::span(data, key, offset, len);
    let times = Mutex::new(Vec::new());
    let log = |t: PartTime| times.lock().unwrap_or_else(|e| e.into_inner()).push(t);
    let parts = PartPlan {
        log: (parts.count() > 1).then_some(&log as _),
        ..parts
    };
    store.put_multipart(key, parts, &make).await?;
    Ok(OpDone {
        bytes: plan.size,
        n_objects: 1,
        first_byte: None,
        parts: times.into_inner().unwrap_or_else(|e| e.into_inner()),
        version: None,
    })
}

/// The per-attempt timeout of `plan`: the stage's `timeout` for each round
/// of parts the op moves one after another (`ceil(parts / streams)`), so
/// the timeout bounds a part, as it bounds a small op, and a 100 GiB
/// object is not cut short by a limit meant for one request. An op of one
/// part (every small op) gets `timeout` itself.
pub fn attempt_timeout(plan: &OpPlan, stage: &Stage) -> Duration {
    let timeout = stage.retry.timeout;
    let (bytes, part, streams) = match plan.op {
        OpKind::Get => match stage.parallel {
            Some(p) => (plan.size, p.part, u64::from(p.streams)),
            None => (plan.size, stage.part_size, 1),
        },
        OpKind::RangeGet => (plan.range.map_or(0, |r| r.length), stage.part_size, 1),
        OpKind::Put | OpKind::MultipartPut => {
            let streams = stage.parallel.map_or(1, |p| u64::from(p.streams));
            (plan.size, stage.part_size, streams)
        }
        _ => return timeout,
    };
    let rounds = bytes.div_ceil(part.max(1)).div_ceil(streams.max(1)).max(1);
    timeout.saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
}

/// Whether `plan` is a GET to be read as ranged GETs at once.
pub fn is_parallel_get(plan: &OpPlan, stage: &Stage) -> bool {
    // Bytes a source made are checked whole (see `ops::verify`).
    plan.op == OpKind::Get
        && plan.expect.is_none()
        && stage.parallel.is_some_and(|p| plan.size > p.part)
}

/// A GET of `length` bytes at `offset` (a range, or the whole object when
/// `range` is `None`) whose body is checked chunk by chunk against the
/// generator as it arrives; nothing is kept.
pub async fn verified_get(
    store: &dyn ObjectStore,
    key: &str,
    range: Option<ByteRange>,
    expect: (u64, u64),
    data: &DataSpec,
) -> StoreResult<GetOutcome> {
    let endpoint = store.endpoint();
    let fail = |msg: String| {
        StoreError::new(
            ErrorClass::Verification,
            endpoint,
            format!("`{key}`: {msg}"),
        )
    };
    let (offset, length) = expect;
    let mut sink = |at: u64, chunk: &[u8]| -> StoreResult<()> {
        let end = at + chunk.len() as u64;
        if at < offset || end > offset + length {
            return Err(fail(format!(
                "read bytes {at}..{end}, past the expected {offset}..{}",
                offset + length
            )));
        }
        datagen::verify(data, key, at, chunk).map_err(|m| {
            fail(format!(
                "byte at offset {} is {:#04x}, expected {:#04x}",
                m.offset, m.found, m.expected
            ))
        })
    };
    let got = store.get_chunks(key, range, &mut sink).await?;
    if got.bytes != length {
        return Err(fail(format!("read {} bytes, expected {length}", got.bytes)));
    }
    Ok(got)
}

/// A `get` of the whole object as ranged GETs of `parallel.part`, at most
/// `parallel.streams` at once, each verified as it streams when the stage
/// verifies. The object's size is the plan's (what the key space says it
/// is, as verification assumes): no HEAD first. Bytes are the sum of the
/// parts; the first byte is the earliest part's.
pub async fn parallel_get(
    store: &dyn ObjectStore,
    plan: &OpPlan,
    stage: &Stage,
    data: &DataSpec,
) -> Result<OpDone, StoreError> {
    let Some(p) = stage.parallel else {
        return Err(StoreError::new(
            ErrorClass::Other,
            store.endpoint(),
            "parallel GET without `parallel`",
        ));
    };
    let part = p.part.max(1);
    let key = plan.key.as_str();
    let one = |index: u64| async move {
        let offset = index * part;
        let range = ByteRange {
            offset,
            length: part.min(plan.size - offset),
        };
        let start = Mono::now();
        let got = match stage.verify {
            true => verified_get(store, key, Some(range), (offset, range.length), data).await,
            false => {
                let opts = GetOptions {
                    range: Some(range),
                    keep_data: false,
                };
                store.get(key, &opts).await
            }
        }?;
        Ok::<_, StoreError>(PartTime {
            offset,
            bytes: got.bytes,
            start,
            first_byte: got.first_byte,
            end: Mono::now(),
        })
    };
    let count = plan.size.div_ceil(part);
    let parts: Vec<PartTime> = stream::iter(0..count)
        .map(one)
        .buffer_unordered(p.streams.max(1) as usize)
        .try_collect()
        .await?;
    Ok(OpDone {
        bytes: parts.iter().map(|t| t.bytes).sum(),
        n_objects: 1,
        first_byte: parts.iter().filter_map(|t| t.first_byte).min(),
        parts,
        version: None,
    })
}
