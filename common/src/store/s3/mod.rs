//! `s3://bucket/prefix`: Amazon S3 and S3-compatible servers (Ceph RGW,
//! MinIO, Garage, …) through `aws-sdk-s3`.
//!
//! The prefix is prepended to every key (with a `/` added when it lacks
//! one, so `s3://b/run1` keeps its objects under `run1/`), and stripped
//! again from listed keys, so the engine sees the same keys on every
//! backend. Configuration and client construction are in [`config`], error
//! mapping in [`error`].
//!
//! Native forms replace the trait's defaults: multipart PUT is
//! CreateMultipartUpload / UploadPart / CompleteMultipartUpload (aborted on
//! failure, so no parts are left billed), batch delete is DeleteObjects.
//! The object API past the core ops (copy, tags, retention, versions, a
//! bucket made with versioning or object lock) is in [`more`], appends
//! (RGW's appendable objects) in [`append`]; the trait impl here forwards
//! to them.
//!
//! Two S3 semantics differ from the trait's wording, on purpose: DELETE of
//! a missing key succeeds (S3 does not say whether the key existed, and a
//! HEAD first would double the requests a benchmark measures), and a LIST
//! page holds at most 1000 entries whatever the limit (S3's cap).

mod append;
pub mod config;
mod error;
mod more;
mod unsigned;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

pub use config::{DEFAULT_REGION, S3Config, S3Credentials};
use error::ErrorMapper;

use super::{
    BucketSetup, ByteRange, ChunkSink, CopyPlan, ErrorClass, GetOptions, GetOutcome, ListOptions,
    ListPage, ObjectMeta, ObjectStore, OpenOptions, PartPlan, PartSource, StoreError, StoreResult,
    Tags, VersionPage, clamp_range,
};
use crate::clock::Mono;

/// Most keys one DeleteObjects request may name (S3's limit).
pub const DELETE_BATCH: usize = 1000;

/// Most parts one multipart upload may have (S3's limit).
pub const MAX_PARTS: u64 = 10_000;

/// Most entries S3 returns in one LIST page, whatever is asked.
pub const MAX_LIST_KEYS: usize = 1000;

/// The largest range end S3 servers parse: byte positions are signed
/// 64-bit in some (RGW). A range reaching further is sent open-ended
/// (`bytes=N-`), which means the same thing: "to the end".
const MAX_RANGE_END: u64 = i64::MAX as u64;

/// An `s3://` store.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Prepended to every key; empty or ending in `/`.
    prefix: String,
    /// `s3://bucket/prefix`, for display.
    uri: String,
    region: String,
    errors: ErrorMapper,
    /// This instance created the bucket (CreateBucket succeeded; not a
    /// bucket that was there, nor one another agent made first).
    made: AtomicBool,
}

/// Splits `bucket/prefix` into the bucket and the key prefix (empty, or
/// ending in `/`).
pub fn split_target(rest: &str) -> Result<(String, String), String> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!(
            "`s3://{rest}` needs a bucket, e.g. s3://bucket/prefix"
        ));
    }
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_string(), prefix))
}

/// The HTTP `Range` header value for `range` (which has a non-zero length).
fn range_header(range: ByteRange) -> String {
    let last = range
        .offset
        .checked_add(range.length - 1)
        .filter(|&l| l <= MAX_RANGE_END);
    match last {
        Some(last) => format!("bytes={}-{last}", range.offset),
        None => format!("bytes={}-", range.offset),
    }
}

impl S3Store {
    /// Opens `bucket/prefix` (the part of an `s3://` URI after the scheme)
    /// with `config`. Sends nothing: a wrong endpoint or key shows on the
    /// first op.
    pub async fn open(rest: &str, config: &S3Config, opts: &OpenOptions) -> StoreResult<S3Store> {
        let (bucket, prefix) = split_target(rest)
            .map_err(|m| StoreError::new(ErrorClass::Other, format!("s3://{rest}"), m))?;
        let built = config::build_client(config, opts).await;
        let region = built
            .client
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        Ok(S3Store {
            client: built.client,
            uri: format!("s3://{bucket}/{prefix}"),
            bucket,
            prefix,
            region,
            errors: ErrorMapper::new(built.endpoint, config.secrets()),
            made: AtomicBool::new(false),
        })
    }

    /// A store on another `bucket/prefix` of the same server, sharing this
    /// one's client (its connection pool and credentials): one per bucket
    /// of a `buckets: N` stage.
    pub fn sibling(&self, rest: &str) -> StoreResult<S3Store> {
        let (bucket, prefix) = split_target(rest)
            .map_err(|m| StoreError::new(ErrorClass::Other, format!("s3://{rest}"), m))?;
        Ok(S3Store {
            client: self.client.clone(),
            uri: format!("s3://{bucket}/{prefix}"),
            bucket,
            prefix,
            region: self.region.clone(),
            errors: self.errors.clone(),
            made: AtomicBool::new(false),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix (empty, or ending in `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The SDK client, for callers that need an op the trait lacks.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// `OP `bucket/full key``, the start of every error message.
    fn what(&self, op: &str, full_key: &str) -> String {
        format!("{op} `{}/{full_key}`", self.bucket)
    }

    /// A key as the engine knows it: without the store's prefix.
    fn strip(&self, full_key: &str) -> String {
        full_key
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(full_key)
            .to_string()
    }

    /// The zero-length range: S3 cannot express it, so check the offset
    /// against the size (of `version`, when one is named) and read nothing.
    async fn empty_range(
        &self,
        key: &str,
        range: ByteRange,
        version: Option<&str>,
    ) -> StoreResult<GetOutcome> {
        let full = self.full_key(key);
        let size = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_version_id(version.map(String::from))
            .send()
            .await
            .map_err(|e| self.errors.sdk(&self.what("HEAD", &full), &e))?
            .content_length
            .unwrap_or(0)
            .max(0) as u64;
        clamp_range(range, size, self.endpoint(), key)?;
        Ok(GetOutcome {
            bytes: 0,
            first_byte: None,
            data: None,
        })
    }

    /// One multipart upload of `full`: created, its parts sent by
    /// `parts` (given the upload id), completed; aborted when anything
    /// failed, so no parts are left billed. The one lifecycle of a
    /// multipart PUT and a multipart copy.
    pub(super) async fn in_upload(
        &self,
        full: &str,
        parts: impl AsyncFnOnce(&str) -> StoreResult<Vec<CompletedPart>>,
    ) -> StoreResult<()> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| self.errors.sdk(&self.what("CREATE MULTIPART", full), &e))?;
        let Some(upload_id) = created.upload_id else {
            return Err(self.errors.error(
                ErrorClass::Other,
                format!(
                    "{}: no upload id in the answer",
                    self.what("CREATE MULTIPART", full)
                ),
            ));
        };
        let result = async {
            let done = parts(&upload_id).await?;
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(done))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.errors.sdk(&self.what("COMPLETE MULTIPART", full), &e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            // Best effort: the op already failed with the error that
            // matters; a failed abort leaves parts a lifecycle rule reaps.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    /// Uploads the parts, at most `plan.streams` at once (each made just
    /// before it is sent, so at most that many are in memory), and gives
    /// them back in part order for the completion. The first failure ends
    /// the upload; parts still in flight are dropped with it.
    async fn multipart_parts(
        &self,
        full: &str,
        upload_id: &str,
        plan: PartPlan<'_>,
        part: PartSource<'_>,
    ) -> StoreResult<Vec<CompletedPart>> {
        let what = self.what("UPLOAD PART", full);
        let upload = |index: u64| {
            let what = &what;
            async move {
                let (offset, len) = plan.part(index);
                let data = part(offset, len);
                let start = Mono::now();
                // Part numbers are 1-based; the count is <= MAX_PARTS.
                let number = (index + 1) as i32;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(full)
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(len as i64)
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .map_err(|e| self.errors.sdk(&format!("{what} {number}"), &e))?;
                plan.done(offset, len, start);
                Ok::<_, StoreError>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag)
                        .build(),
                )
            }
        };
        let mut done: Vec<CompletedPart> = stream::iter(0..plan.count())
            .map(upload)
            .buffer_unordered(plan.streams.max(1))
            .try_collect()
            .await?;
        done.sort_by_key(|p| p.part_number());
        Ok(done)
    }

    /// A GET whose body goes to `sink` when there is one, else is counted
    /// and dropped, or kept when `keep` (the one body loop of every form):
    /// of the current object, or of `version` when one is named.
    async fn get_body(
        &self,
        key: &str,
        range: Option<ByteRange>,
        keep: bool,
        mut sink: Option<ChunkSink<'_>>,
        version: Option<&str>,
    ) -> StoreResult<GetOutcome> {
        let full = self.full_key(key);
        let what = match version {
            None => self.what("GET", &full),
            Some(v) => format!("{} version `{v}`", self.what("GET", &full)),
        };
        let mut req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_version_id(version.map(String::from));
        if let Some(range) = range {
            if range.length == 0 {
                return self.empty_range(key, range, version).await;
            }
            req = req.range(range_header(range));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                // 416 at offset 0 can only mean an empty object, whose
                // range [0, 0) the trait allows.
                let empty =
                    range.is_some_and(|r| r.offset == 0) && e.code() == Some("InvalidRange");
                if empty {
                    return Ok(GetOutcome {
                        bytes: 0,
                        first_byte: Some(Mono::now()),
                        data: keep.then(Bytes::new),
                    });
                }
                return Err(self.errors.sdk(&what, &e));
            }
        };
        let headers_at = Mono::now();
        let expected = out.content_length.unwrap_or(0).max(0) as usize;
        let start = range.map_or(0, |r| r.offset);
        let mut body = out.body;
        let mut first_byte = None;
        let mut bytes = 0u64;
        let mut chunks: Vec<Bytes> = Vec::new();
        // Stream the body: chunks go to the sink, or are counted and
        // dropped unless asked for, so a large GET costs no memory. No
        // deadline of its own: the engine's op timer bounds the whole
        // GET, body included.
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.errors.body(&what, &e))?;
            if first_byte.is_none() && !chunk.is_empty() {
                first_byte = Some(Mono::now());
            }
            let n = chunk.len() as u64;
            if let Some(sink) = sink.as_mut() {
                sink(start + bytes, &chunk)?;
            } else if keep {
                chunks.push(chunk);
            }
            bytes += n;
        }
        let data = keep.then(|| match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut all = Vec::with_capacity(expected.max(bytes as usize));
                for c in &chunks {
                    all.extend_from_slice(c);
                }
                Bytes::from(all)
            }
        });
        Ok(GetOutcome {
            bytes,
            // An empty body: the headers were the first (and last) bytes.
            first_byte: first_byte.or(Some(headers_at)),
            data,
        })
    }

    /// One DeleteObjects request for at most [`DELETE_BATCH`] keys, each
    /// of its current object or of one version; `bypass` removes versions
    /// under governance retention too. One result per item, in order.
    async fn delete_batch(
        &self,
        items: &[(&str, Option<&str>)],
        bypass: bool,
    ) -> Vec<StoreResult<()>> {
        let what = self.what("DELETE OBJECTS", &self.prefix);
        let fail_all = |e: StoreError| items.iter().map(|_| Err(e.clone())).collect();
        let objects: Result<Vec<ObjectIdentifier>, _> = items
            .iter()
            .map(|(k, v)| {
                ObjectIdentifier::builder()
                    .key(self.full_key(k))
                    .set_version_id(v.map(String::from))
                    .build()
            })
            .collect();
        // Quiet: the answer lists only failures, not every deleted key.
        let delete =
            objects.and_then(|o| Delete::builder().set_objects(Some(o)).quiet(true).build());
        let delete = match delete {
            Ok(d) => d,
            Err(e) => {
                return fail_all(self.errors.error(ErrorClass::Other, format!("{what}: {e}")));
            }
        };
        let mut req = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete);
        if bypass {
            req = req.bypass_governance_retention(true);
        }
        let out = match req.send().await {
            Ok(o) => o,
            Err(e) => return fail_all(self.errors.sdk(&what, &e)),
        };
        // Failures by (full key, version): a key may be named once per
        // version in one request.
        let failed: HashMap<(&str, Option<&str>), StoreError> = out
            .errors()
            .iter()
            .filter_map(|e| {
                let key = e.key()?;
                let class = error::classify(e.code(), None);
                let mut message = self.what("DELETE", key);
                if let Some(v) = e.version_id() {
                    message.push_str(&format!(" version `{v}`"));
                }
                message.push_str(&format!(
                    ": {}: {}",
                    e.code().unwrap_or("no S3 error code"),
                    e.message().unwrap_or("")
                ));
                Some(((key, e.version_id()), self.errors.error(class, message)))
            })
            .collect();
        items
            .iter()
            .map(
                |(k, v)| match failed.get(&(self.full_key(k).as_str(), *v)) {
                    Some(e) => Err(e.clone()),
                    None => Ok(()),
                },
            )
            .collect()
    }
}

impl fmt::Display for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the client: its config holds the credentials provider.
        f.debug_struct("S3Store")
            .field("uri", &self.uri)
            .field("endpoint", &self.errors.endpoint)
            .field("region", &self.region)
            .finish()
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn endpoint(&self) -> &str {
        &self.errors.endpoint
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let full = self.full_key(key);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .content_length(data.len() as i64)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.errors.sdk(&self.what("PUT", &full), &e))?;
        Ok(())
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        self.get_body(key, opts.range, opts.keep_data, None, None)
            .await
    }

    async fn get_chunks(
        &self,
        key: &str,
        range: Option<ByteRange>,
        sink: ChunkSink<'_>,
    ) -> StoreResult<GetOutcome> {
        self.get_body(key, range, false, Some(sink), None).await
    }

    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
        let full = self.full_key(key);
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.errors.sdk(&self.what("HEAD", &full), &e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: out.content_length.unwrap_or(0).max(0) as u64,
        })
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let full = self.full_key(key);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.errors.sdk(&self.what("DELETE", &full), &e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        let full = self.full_key(prefix);
        let limit = opts.limit.clamp(1, MAX_LIST_KEYS) as i32;
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .max_keys(limit)
            .set_delimiter(opts.delimiter.map(String::from))
            .set_continuation_token(opts.continuation.clone())
            .send()
            .await
            .map_err(|e| self.errors.sdk(&self.what("LIST", &full), &e))?;
        let entries = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    key: self.strip(o.key()?),
                    size: o.size().unwrap_or(0).max(0) as u64,
                })
            })
            .collect();
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(|p| self.strip(p)))
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(String::from)
        } else {
            None
        };
        Ok(ListPage {
            entries,
            prefixes,
            next,
        })
    }

    async fn put_multipart(
        &self,
        key: &str,
        plan: PartPlan<'_>,
        part: PartSource<'_>,
    ) -> StoreResult<u64> {
        let part_size = plan.part_size.max(1);
        let full = self.full_key(key);
        let count = plan.count();
        if count > MAX_PARTS {
            return Err(self.errors.error(
                ErrorClass::Other,
                format!(
                    "{}: {count} parts of {part_size} bytes; S3 allows at most {MAX_PARTS}",
                    self.what("MULTIPART PUT", &full)
                ),
            ));
        }
        self.in_upload(&full, async |upload_id| {
            self.multipart_parts(&full, upload_id, plan, part).await
        })
        .await?;
        Ok(count)
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<StoreResult<()>>> {
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(DELETE_BATCH) {
            let items: Vec<(&str, Option<&str>)> =
                batch.iter().map(|k| (k.as_str(), None)).collect();
            out.extend(self.delete_batch(&items, false).await);
        }
        Ok(out)
    }

    async fn ensure_ready(&self) -> StoreResult<()> {
        self.ready_bucket(false).await.map(|_| ())
    }

    async fn ensure_ready_with(&self, setup: BucketSetup) -> StoreResult<()> {
        self.ready_bucket_with(setup).await
    }

    fn buckets_made(&self) -> Vec<String> {
        if self.made.load(Ordering::Relaxed) {
            vec![self.bucket.clone()]
        } else {
            Vec::new()
        }
    }

    /// DeleteBucket, which S3 refuses (`BucketNotEmpty`) while objects or
    /// versions remain.
    async fn remove_buckets(&self, names: &[String]) -> StoreResult<u32> {
        if !names.contains(&self.bucket) {
            return Ok(0);
        }
        self.client
            .delete_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| {
                self.errors
                    .sdk(&format!("DELETE BUCKET `{}`", self.bucket), &e)
            })?;
        Ok(1)
    }

    fn batch_limit(&self) -> usize {
        DELETE_BATCH
    }

    async fn copy(&self, src: &str, dst: &str, plan: CopyPlan) -> StoreResult<u64> {
        self.copy_object(src, dst, plan).await
    }

    async fn append(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.append_at_end(key, data).await
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> StoreResult<()> {
        self.put_tag_set(key, tags).await
    }

    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        self.get_tag_set(key).await
    }

    async fn put_retention(&self, key: &str, until: SystemTime) -> StoreResult<()> {
        self.put_governance(key, until).await
    }

    async fn versioning_enabled(&self) -> StoreResult<bool> {
        self.bucket_versioning()
            .await
            .map(|status| status.is_some_and(|s| s == "Enabled"))
    }

    async fn put_versioned(&self, key: &str, data: Bytes) -> StoreResult<Option<String>> {
        self.put_with_version(key, data).await
    }

    async fn get_version(
        &self,
        key: &str,
        version: &str,
        opts: &GetOptions,
    ) -> StoreResult<GetOutcome> {
        self.get_body(key, opts.range, opts.keep_data, None, Some(version))
            .await
    }

    async fn delete_version(&self, key: &str, version: &str) -> StoreResult<()> {
        self.delete_one_version(key, version).await
    }

    async fn list_versions(&self, prefix: &str, opts: &ListOptions) -> StoreResult<VersionPage> {
        self.list_version_page(prefix, opts).await
    }

    async fn delete_versions(
        &self,
        items: &[(String, String)],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        let mut out = Vec::with_capacity(items.len());
        for batch in items.chunks(DELETE_BATCH) {
            let items: Vec<(&str, Option<&str>)> = batch
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect();
            out.extend(self.delete_batch(&items, true).await);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_bucket_and_prefix() {
        let s = |r: &str| split_target(r).unwrap();
        assert_eq!(s("b"), ("b".into(), "".into()));
        assert_eq!(s("b/"), ("b".into(), "".into()));
        assert_eq!(s("b/qs"), ("b".into(), "qs/".into()));
        assert_eq!(s("b/a/b/"), ("b".into(), "a/b/".into()));
        assert!(split_target("/x").is_err());
    }

    #[test]
    fn range_headers() {
        let h = |offset, length| range_header(ByteRange { offset, length });
        assert_eq!(h(0, 1), "bytes=0-0");
        assert_eq!(h(9990, 100), "bytes=9990-10089");
        assert_eq!(h(5000, u64::MAX / 2), "bytes=5000-", "past i64: open-ended");
        assert_eq!(h(1, u64::MAX), "bytes=1-", "u64 overflow: open-ended");
    }

    #[tokio::test]
    async fn opens_without_network_and_hides_secrets() {
        let cfg = S3Config::custom("http://user:pw@127.0.0.1:1/", "AKID", "VERYSECRETKEY");
        let s = S3Store::open("bkt/run", &cfg, &OpenOptions::default())
            .await
            .unwrap();
        assert_eq!(s.to_string(), "s3://bkt/run/");
        assert_eq!(s.endpoint(), "http://127.0.0.1:1");
        assert_eq!(s.full_key("k"), "run/k");
        assert_eq!(s.strip("run/k"), "k");
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("VERYSECRETKEY") && !dbg.contains("pw"),
            "{dbg}"
        );
    }
}
