//! Doing one op: the store call for each op kind, verification of what a
//! GET read, and retries with timeouts, each retry counted. The timeout
//! here ([`timed`]) is the only op timer: stores keep none.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::keys::Side;
use super::large;
use crate::clock::Mono;
use crate::datagen::{self, DataSpec};
use crate::op::OpKind;
use crate::plan::{RangeSpec, RetryPolicy, Stage};
use crate::store::api;
use crate::store::{
    ByteRange, CopyPlan, ErrorClass, GetOptions, ListOptions, ObjectMeta, ObjectStore, PartTime,
    StoreError, StoreResult,
};

/// Most entries one LIST op asks for: one page, as S3's default.
pub const LIST_PAGE_ENTRIES: usize = 1000;

/// What separates a copy's source and destination in the op-log's
/// `file` column.
const COPY_ARROW: &str = " -> ";

/// The object a logged op of kind `op` needs to exist: a copy's source
/// (its `file` is `source -> destination`), else `file` itself.
pub(super) fn needed_object(op: OpKind, file: String) -> String {
    match (op, file.split_once(COPY_ARROW)) {
        (OpKind::Copy, Some((src, _))) => src.to_string(),
        _ => file,
    }
}

/// What a finished op moved.
#[derive(Debug, Default)]
pub struct OpDone {
    pub bytes: u64,
    pub n_objects: u32,
    pub first_byte: Option<Mono>,
    /// The parts of an op that moved its object in several requests (a
    /// `parallel` GET, an upload in parts), in the order they ended, for
    /// the op-log's part records; empty for a one-request op. One entry
    /// per part: bounded by the object's size over its part size.
    pub parts: Vec<PartTime>,
    /// The version a PUT made, on a stage with `versioning: true`.
    pub version: Option<String>,
}

/// One op, fully decided before the clock starts.
pub struct OpPlan {
    pub op: OpKind,
    pub key: String,
    /// Expected object size (PUT: what is written; GET: what verify expects).
    pub size: u64,
    /// For range GETs.
    pub range: Option<ByteRange>,
    /// For PUTs of at most `part_size` bytes: the payload, made before the
    /// clock starts. Larger PUTs are uploaded in parts made as they are
    /// sent (see `large::upload_parts`), so no object is in memory whole.
    pub payload: Option<Bytes>,
    /// What a verified GET must read, when the generator does not make it
    /// by key (a dataset file's bytes in their format); `None`: the
    /// generator's.
    pub expect: Option<Bytes>,
    /// A copy's destination.
    pub dst: Option<String>,
    /// A `delete_batch`'s keys (`key` is the first).
    pub keys: Vec<String>,
    /// A `delete_batch` of versions: `(key, version)` pairs.
    pub items: Vec<(String, String)>,
    /// The version a `get_version` or `delete_version` is on.
    pub version: Option<Box<str>>,
    /// A `delete_batch`'s key-space indexes (for the agent's record of
    /// what exists), when its keys are the key space's.
    pub indexes: Vec<u64>,
}

impl OpPlan {
    /// Decides the key, size, range and payload of `op` on object `index`.
    pub fn new(
        op: OpKind,
        index: u64,
        stage: &Stage,
        data: &DataSpec,
        rng: &mut Xoshiro256PlusPlus,
    ) -> OpPlan {
        let objects = &stage.objects;
        let key = match op {
            OpKind::List | OpKind::ListVersions => stage
                .list
                .prefix
                .clone()
                .unwrap_or_else(|| objects.prefix.clone()),
            OpKind::Mkdir | OpKind::Rmdir => format!("{}dir{index:08}", objects.prefix),
            OpKind::Append => Side::Append.key(&objects.key(index)),
            _ => objects.key(index),
        };
        let size = objects.size.size_of(data.seed, index);
        OpPlan::for_key(op, key, size, stage, data, rng)
    }

    /// A `delete_batch` of `keys` (at least one).
    pub fn batch(keys: Vec<String>) -> OpPlan {
        OpPlan {
            key: keys.first().cloned().unwrap_or_default(),
            keys,
            ..OpPlan::bare(OpKind::DeleteBatch)
        }
    }

    /// A `delete_batch` of versions (at least one).
    pub fn version_batch(items: Vec<(String, String)>) -> OpPlan {
        OpPlan {
            key: items.first().map(|(k, _)| k.clone()).unwrap_or_default(),
            items,
            ..OpPlan::bare(OpKind::DeleteBatch)
        }
    }

    fn bare(op: OpKind) -> OpPlan {
        OpPlan {
            op,
            key: String::new(),
            size: 0,
            range: None,
            payload: None,
            expect: None,
            dst: None,
            keys: Vec::new(),
            items: Vec::new(),
            version: None,
            indexes: Vec::new(),
        }
    }

    /// Objects the op names: a batch's keys, else one.
    pub fn n_objects(&self) -> u32 {
        (self.keys.len() + self.items.len()).max(1) as u32
    }

    /// The op-log's `file` column for the op when it is not the key: a
    /// copy's `source -> destination`, a batch's first key and count, a
    /// version's `key?versionId=…` (S3's way to name one).
    pub fn log_key(&self) -> Option<String> {
        if let Some(dst) = &self.dst {
            return Some(format!("{}{COPY_ARROW}{dst}", self.key));
        }
        if let Some(v) = &self.version {
            return Some(format!("{}?versionId={v}", self.key));
        }
        let n = self.keys.len() + self.items.len();
        (n > 1).then(|| format!("{} (+{} more)", self.key, n - 1))
    }

    /// Decides the range and payload of `op` on the object `key` of `size`
    /// bytes: an object outside the key space (one listed, one a trace
    /// names).
    pub fn for_key(
        op: OpKind,
        key: String,
        size: u64,
        stage: &Stage,
        data: &DataSpec,
        rng: &mut Xoshiro256PlusPlus,
    ) -> OpPlan {
        let range = (op == OpKind::RangeGet).then(|| match stage.range {
            RangeSpec::Fixed { offset, length } => ByteRange { offset, length },
            RangeSpec::Random { size: len } => {
                let slots = size.div_ceil(len).max(1);
                ByteRange {
                    offset: (rng.next_u64() % slots) * len,
                    length: len,
                }
            }
        });
        // Multipart payloads, and those of PUTs larger than a part, are
        // made part by part during the op instead: memory stays bounded.
        let payload = ((op == OpKind::Put && size <= stage.part_size) || op == OpKind::Append)
            .then(|| datagen::object(data, &key, size));
        // A copy goes to `<key>.copy`, or where a replayed trace's copy
        // went (its log names `source -> destination`).
        let (key, dst) = match (op, key.split_once(COPY_ARROW)) {
            (OpKind::Copy, Some((src, dst))) => (src.to_string(), Some(dst.to_string())),
            (OpKind::Copy, None) => {
                let dst = Side::Copy.key(&key);
                (key, Some(dst))
            }
            _ => (key, None),
        };
        OpPlan {
            key,
            size,
            range,
            payload,
            dst,
            ..OpPlan::bare(op)
        }
    }

    /// Bytes the work's source made: what a PUT writes (in one request,
    /// whatever its size: the bytes are already in memory), or what a GET
    /// of it must read.
    pub fn set_content(&mut self, content: Option<Bytes>) {
        if self.op.writes() {
            self.payload = content;
        } else {
            self.expect = content;
        }
    }
}

/// Runs the op with the stage's retry policy. Returns the outcome and how
/// many retries it took. Only throttling, timeouts and network failures are
/// retried: a NotFound or a verification error will not change on retry.
pub async fn run_with_retries(
    store: &dyn ObjectStore,
    plan: &OpPlan,
    stage: &Stage,
    data: &DataSpec,
) -> (Result<OpDone, StoreError>, u32) {
    let policy: RetryPolicy = stage.retry;
    let mut retries = 0;
    loop {
        // `timed`'s timer, inline: one more async layer around the op's
        // future (moved into it, then into the timer's) cost ~10% of the
        // engine's ops/s on `mem://` (scripts/bench/harness.sh).
        let call = attempt(store, plan, stage, data);
        // One `timeout` per round of parts for a large object; worked out
        // only for an op that waits (see `with_timeout`).
        let timeout = || large::attempt_timeout(plan, stage);
        let result = match with_timeout(timeout, call).await {
            Some(r) => r,
            None => Err(timeout_error(
                store,
                plan.op.log_name(),
                &plan.key,
                timeout(),
            )),
        };
        let retryable = matches!(&result, Err(e) if matches!(e.class, ErrorClass::Throttled | ErrorClass::Timeout | ErrorClass::Network));
        if !retryable || retries >= policy.retries {
            return (result, retries);
        }
        retries += 1;
        let backoff = policy.backoff.saturating_mul(1 << (retries - 1).min(16));
        tokio::time::sleep(backoff).await;
    }
}

/// The one op timer: `call`'s result, or a `timeout` error naming `op`,
/// `key` and the store's endpoint when it has not answered within
/// `timeout` (a stage's per-attempt `timeout`).
///
/// Stores keep no timer of their own on their requests: one layer bounds
/// every op, with one error text, and the engine retries and counts what
/// it cuts short. What stores keep bounds connecting and opening
/// (connect timeouts, getting credentials), not an op. Calls the engine makes
/// outside ops (the listing a stage starts with, readying a bucket) go
/// through here too, so nothing waits on a silent server unbounded.
pub async fn timed<T>(
    store: &dyn ObjectStore,
    op: &str,
    key: &str,
    timeout: Duration,
    call: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    match with_timeout(|| timeout, call).await {
        Some(r) => r,
        None => Err(timeout_error(store, op, key, timeout)),
    }
}

/// The one text of an op cut short by its timer.
#[cold]
fn timeout_error(store: &dyn ObjectStore, op: &str, key: &str, timeout: Duration) -> StoreError {
    StoreError::new(
        ErrorClass::Timeout,
        store.endpoint(),
        format!("{op} `{key}`: no answer within {timeout:?}"),
    )
}

/// [`store::list_all`](crate::store::list_all) with each page under
/// [`timed`]: one request each, like an op.
pub(super) async fn list_all_timed(
    store: &dyn ObjectStore,
    prefix: &str,
    max: usize,
    timeout: Duration,
) -> StoreResult<Vec<ObjectMeta>> {
    crate::store::list_pages(max, |opts| async move {
        timed(store, "LIST", prefix, timeout, store.list(prefix, &opts)).await
    })
    .await
}

/// `op`'s result, or None when it has not answered within `timeout`.
///
/// The op is polled once before any timer is made: an op that finishes on
/// its first poll (a local file or memory op: a page-cache read is one
/// system call made inside the poll) needs none, and none could have cut
/// it short (a timer fires only between polls). Making and dropping a
/// tokio timer per op cost ~5% of the engine's time on such ops (perf:
/// `Sleep::new_timeout`, `Handle::current` and the timer's drop, which
/// touch the runtime's shared state). An op that waits (a network
/// request) gets its timer at its first wait; what it did before that
/// is microseconds of setup.
async fn with_timeout<F: Future>(timeout: impl FnOnce() -> Duration, op: F) -> Option<F::Output> {
    let mut op = std::pin::pin!(op);
    let first = std::future::poll_fn(|cx| Poll::Ready(op.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(r) => Some(r),
        Poll::Pending => tokio::time::timeout(timeout(), op).await.ok(),
    }
}

async fn attempt(
    store: &dyn ObjectStore,
    plan: &OpPlan,
    stage: &Stage,
    data: &DataSpec,
) -> Result<OpDone, StoreError> {
    let key = plan.key.as_str();
    let one = |bytes, first_byte| OpDone {
        bytes,
        n_objects: 1,
        first_byte,
        ..OpDone::default()
    };
    match plan.op {
        // The small-object paths first, as they were: a PUT whose payload
        // was made, a GET of a stage that neither verifies nor splits.
        OpKind::Put if plan.payload.is_some() && !stage.api.versioning => {
            let payload = plan.payload.clone().unwrap_or_default();
            let len = payload.len() as u64;
            store.put(key, payload).await.map(|()| one(len, None))
        }
        // A versioned PUT: the version it made is recorded.
        OpKind::Put if plan.payload.is_some() => {
            let payload = plan.payload.clone().unwrap_or_default();
            let len = payload.len() as u64;
            let version = store.put_versioned(key, payload).await?;
            Ok(OpDone {
                version,
                ..one(len, None)
            })
        }
        OpKind::Get | OpKind::RangeGet if !stage.verify && stage.parallel.is_none() => {
            let opts = GetOptions {
                range: plan.range,
                keep_data: false,
            };
            let g = store.get(key, &opts).await?;
            Ok(one(g.bytes, g.first_byte))
        }
        // Large-object paths are boxed: their futures would otherwise
        // grow every op's, small ones included.
        OpKind::Get if large::is_parallel_get(plan, stage) => {
            Box::pin(large::parallel_get(store, plan, stage, data)).await
        }
        OpKind::Get | OpKind::RangeGet
            if stage.verify
                && plan.expect.is_none()
                && expected_span(plan).1 > large::STREAMED_VERIFY_BYTES =>
        {
            let span = expected_span(plan);
            let g = Box::pin(large::verified_get(store, key, plan.range, span, data)).await?;
            Ok(one(g.bytes, g.first_byte))
        }
        OpKind::Get | OpKind::RangeGet => {
            let opts = GetOptions {
                range: plan.range,
                keep_data: stage.verify,
            };
            let g = store.get(key, &opts).await?;
            if stage.verify {
                verify(store, plan, data, g.data.as_deref().unwrap_or_default())?;
            }
            Ok(one(g.bytes, g.first_byte))
        }
        OpKind::Put | OpKind::MultipartPut => match large::upload_parts(plan, stage) {
            Some(parts) => Box::pin(large::upload(store, plan, parts, data)).await,
            None => {
                let payload = plan.payload.clone().unwrap_or_default();
                let len = payload.len() as u64;
                store.put(key, payload).await.map(|()| one(len, None))
            }
        },
        OpKind::Stat => store.stat(key).await.map(|_| one(0, None)),
        OpKind::Delete => store.delete(key).await.map(|()| one(0, None)),
        OpKind::Mkdir => store.mkdir(key).await.map(|()| one(0, None)),
        OpKind::Rmdir => store.rmdir(key).await.map(|()| one(0, None)),
        OpKind::List => {
            let opts = ListOptions {
                delimiter: stage.list.delimiter,
                limit: LIST_PAGE_ENTRIES,
                continuation: None,
            };
            store.list(key, &opts).await.map(|p| OpDone {
                n_objects: (p.entries.len() + p.prefixes.len()) as u32,
                ..OpDone::default()
            })
        }
        OpKind::Copy => {
            let dst = plan.dst.as_deref().unwrap_or_default();
            let copy = CopyPlan {
                size: plan.size,
                part_size: stage.part_size,
            };
            store.copy(key, dst, copy).await.map(|b| one(b, None))
        }
        OpKind::Append => {
            let payload = plan.payload.clone().unwrap_or_default();
            let len = payload.len() as u64;
            store.append(key, payload).await.map(|()| one(len, None))
        }
        OpKind::Tag => {
            let tags = stage.api.tags_for(&stage.name);
            store.put_tags(key, &tags).await.map(|()| one(0, None))
        }
        OpKind::GetTags => store.get_tags(key).await.map(|_| one(0, None)),
        OpKind::Retention => {
            let until = api::retain_until(stage.api.retention.as_secs());
            store.put_retention(key, until).await.map(|()| one(0, None))
        }
        OpKind::GetVersion | OpKind::DeleteVersion if plan.version.as_deref() == Some("") => {
            Err(StoreError::new(
                ErrorClass::NotFound,
                store.endpoint(),
                "no version is recorded to draw: this agent's puts with `versioning: true` \
                 made none yet",
            ))
        }
        OpKind::GetVersion => {
            let version = plan.version.as_deref().unwrap_or_default();
            let opts = GetOptions {
                range: None,
                keep_data: stage.verify,
            };
            let g = store.get_version(key, version, &opts).await?;
            if stage.verify {
                verify(store, plan, data, g.data.as_deref().unwrap_or_default())?;
            }
            Ok(one(g.bytes, g.first_byte))
        }
        OpKind::DeleteVersion => {
            let version = plan.version.as_deref().unwrap_or_default();
            store
                .delete_version(key, version)
                .await
                .map(|()| one(0, None))
        }
        OpKind::ListVersions => {
            let opts = ListOptions {
                delimiter: None,
                limit: LIST_PAGE_ENTRIES,
                continuation: None,
            };
            store.list_versions(key, &opts).await.map(|p| OpDone {
                n_objects: p.entries.len() as u32,
                ..OpDone::default()
            })
        }
        OpKind::DeleteBatch => {
            let each = if plan.items.is_empty() {
                store.delete_many(&plan.keys).await?
            } else {
                store.delete_versions(&plan.items).await?
            };
            api::batch_result(&each, store.endpoint()).map(|()| OpDone {
                n_objects: plan.n_objects(),
                ..OpDone::default()
            })
        }
        // Never planned: parts are logged beside their op, not chosen.
        OpKind::GetPart | OpKind::PutPart => Err(StoreError::new(
            ErrorClass::NotSupported,
            store.endpoint(),
            format!("`{}` is a part of an op, not an op", plan.op.plan_name()),
        )),
    }
}

/// Where a GET of `plan` should read, and how many bytes: the range cut
/// at the expected size, or the whole object.
fn expected_span(plan: &OpPlan) -> (u64, u64) {
    match plan.range {
        Some(r) => (r.offset, r.length.min(plan.size.saturating_sub(r.offset))),
        None => (0, plan.size),
    }
}

/// Checks what a GET read against the bytes the generator makes for that
/// key and range.
fn verify(
    store: &dyn ObjectStore,
    plan: &OpPlan,
    data: &DataSpec,
    got: &[u8],
) -> Result<(), StoreError> {
    let (offset, want_len) = expected_span(plan);
    let fail = |msg: String| {
        StoreError::new(
            ErrorClass::Verification,
            store.endpoint(),
            format!("`{}`: {msg}", plan.key),
        )
    };
    if got.len() as u64 != want_len {
        return Err(fail(format!(
            "read {} bytes, expected {want_len}",
            got.len()
        )));
    }
    if let Some(want) = &plan.expect {
        // Made by the source for exactly this span.
        return match got.iter().zip(want.iter()).position(|(a, b)| a != b) {
            None if got.len() == want.len() => Ok(()),
            None => Err(fail(format!(
                "read {} bytes, expected {}",
                got.len(),
                want.len()
            ))),
            Some(i) => Err(fail(format!(
                "byte at offset {} is {:#04x}, expected {:#04x}",
                offset + i as u64,
                got[i],
                want[i]
            ))),
        };
    }
    datagen::verify(data, &plan.key, offset, got).map_err(|m| {
        fail(format!(
            "byte at offset {} is {:#04x}, expected {:#04x}",
            m.offset, m.found, m.expected
        ))
    })
}
