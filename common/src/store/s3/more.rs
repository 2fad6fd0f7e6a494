//! The S3 object API past the core ops: server-side copy (CopyObject, or
//! UploadPartCopy above the plan's part size), tags, governance retention,
//! versions (a PUT that returns its id, a version deleted, a versions
//! listing) and a bucket readied for versions or object lock. Helpers of
//! [`S3Store`] that the trait impl in `mod.rs` forwards to; version GETs
//! and batch deletes of versions share `get_body` and `delete_batch` there.

use std::time::SystemTime;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CompletedPart, CreateBucketConfiguration,
    ObjectLockEnabled, ObjectLockRetention, ObjectLockRetentionMode, Tag, Tagging,
    VersioningConfiguration,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use super::{DEFAULT_REGION, MAX_LIST_KEYS, MAX_PARTS, S3Store};
use crate::store::{
    BucketSetup, CopyPlan, ErrorClass, ListOptions, PartPlan, StoreError, StoreResult, Tags,
    VersionMeta, VersionPage,
};

/// Parts of a multipart copy in flight at once: the server does the
/// copying, so a few requests keep it busy without flooding it (as a
/// multipart PUT's default streams).
const COPY_STREAMS: usize = 4;

/// What readying the bucket found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Readied {
    /// It was there already: check it has what the plan needs.
    Existed,
    /// This call created it.
    Made,
    /// Missing at our HEAD, then created by someone else before our
    /// CREATE (another agent of the same run): set it up as if made.
    Raced,
}

/// A `CopySource` value: `bucket/key`, percent-encoded as the SDK sends it
/// verbatim in `x-amz-copy-source` (every byte but unreserved ones and the
/// `/` separators).
pub(super) fn copy_source(bucket: &str, full_key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + full_key.len() + 1);
    for b in format!("{bucket}/{full_key}").bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A versions page's continuation: S3 needs two markers (key and version
/// id), the trait has one opaque string, so they are joined by a newline.
/// Version ids never hold one; keys may, hence [`parse_marker`] splits at
/// the last.
pub(super) fn encode_marker(key: &str, version: Option<&str>) -> String {
    format!("{key}\n{}", version.unwrap_or(""))
}

/// The key and version-id markers of [`encode_marker`]'s string; a string
/// without a newline is a key marker alone.
pub(super) fn parse_marker(token: &str) -> (String, Option<String>) {
    match token.rsplit_once('\n') {
        Some((key, "")) => (key.to_string(), None),
        Some((key, version)) => (key.to_string(), Some(version.to_string())),
        None => (token.to_string(), None),
    }
}

impl S3Store {
    /// Copies `src` to `dst` on the server: one CopyObject up to
    /// `plan.part_size`, a multipart copy above it (CopyObject stops at
    /// 5 GiB; parts also spread the copy over the server).
    pub(super) async fn copy_object(
        &self,
        src: &str,
        dst: &str,
        plan: CopyPlan,
    ) -> StoreResult<u64> {
        let (full_src, full_dst) = (self.full_key(src), self.full_key(dst));
        let source = copy_source(&self.bucket, &full_src);
        if plan.size <= plan.part_size {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(&full_dst)
                .copy_source(&source)
                .send()
                .await
                .map_err(|e| {
                    self.errors
                        .sdk(&self.copy_what("COPY", &full_src, &full_dst), &e)
                })?;
            return Ok(plan.size);
        }
        let parts = PartPlan::serial(plan.size, plan.part_size);
        if parts.count() > MAX_PARTS {
            return Err(self.errors.error(
                ErrorClass::Other,
                format!(
                    "{}: {} parts of {} bytes; S3 allows at most {MAX_PARTS}",
                    self.copy_what("MULTIPART COPY", &full_src, &full_dst),
                    parts.count(),
                    parts.part_size
                ),
            ));
        }
        self.in_upload(&full_dst, async |upload_id| {
            self.copy_parts(&source, &full_src, &full_dst, upload_id, parts)
                .await
        })
        .await?;
        Ok(plan.size)
    }

    /// The UploadPartCopy requests of a multipart copy, [`COPY_STREAMS`]
    /// at once, given back in part order for the completion.
    async fn copy_parts(
        &self,
        source: &str,
        full_src: &str,
        full_dst: &str,
        upload_id: &str,
        parts: PartPlan<'_>,
    ) -> StoreResult<Vec<CompletedPart>> {
        let what = self.copy_what("UPLOAD PART COPY", full_src, full_dst);
        let copy = |index: u64| {
            let what = &what;
            async move {
                let (offset, len) = parts.part(index);
                // Part numbers are 1-based; the count is <= MAX_PARTS.
                let number = (index + 1) as i32;
                let out = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(full_dst)
                    .upload_id(upload_id)
                    .part_number(number)
                    .copy_source(source)
                    .copy_source_range(format!("bytes={offset}-{}", offset + len - 1))
                    // The request has no body, and the SDK then sends no
                    // length; RGW refuses a part without one (411
                    // MissingContentLength).
                    .customize()
                    .mutate_request(|r| {
                        r.headers_mut().insert("content-length", "0");
                    })
                    .send()
                    .await
                    .map_err(|e| self.errors.sdk(&format!("{what} {number}"), &e))?;
                Ok::<_, StoreError>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.copy_part_result.and_then(|r| r.e_tag))
                        .build(),
                )
            }
        };
        let mut done: Vec<CompletedPart> = stream::iter(0..parts.count())
            .map(copy)
            .buffer_unordered(COPY_STREAMS)
            .try_collect()
            .await?;
        done.sort_by_key(|p| p.part_number());
        Ok(done)
    }

    /// `OP `bucket/src` to `bucket/dst``, a copy's error prefix.
    fn copy_what(&self, op: &str, full_src: &str, full_dst: &str) -> String {
        format!(
            "{} to `{}/{full_dst}`",
            self.what(op, full_src),
            self.bucket
        )
    }

    /// PutObjectTagging: `tags` replace the object's tag set.
    pub(super) async fn put_tag_set(
        &self,
        key: &str,
        tags: &[(String, String)],
    ) -> StoreResult<()> {
        let full = self.full_key(key);
        let what = self.what("PUT TAGS", &full);
        let set: Result<Vec<Tag>, _> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let tagging = set
            .and_then(|s| Tagging::builder().set_tag_set(Some(s)).build())
            .map_err(|e| self.errors.error(ErrorClass::Other, format!("{what}: {e}")))?;
        self.client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(&full)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| self.errors.sdk(&what, &e))?;
        Ok(())
    }

    /// GetObjectTagging, in the order the server lists them.
    pub(super) async fn get_tag_set(&self, key: &str) -> StoreResult<Tags> {
        let full = self.full_key(key);
        let out = self
            .client
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.errors.sdk(&self.what("GET TAGS", &full), &e))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    /// PutObjectRetention in GOVERNANCE mode: a cleanup that bypasses
    /// governance can still remove the object (COMPLIANCE could not be
    /// undone, even by the account that set it).
    pub(super) async fn put_governance(&self, key: &str, until: SystemTime) -> StoreResult<()> {
        let full = self.full_key(key);
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(&full)
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Governance)
                    .retain_until_date(DateTime::from(until))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.errors.sdk(&self.what("PUT RETENTION", &full), &e))?;
        Ok(())
    }

    /// The bucket's versioning status as S3 names it (`Enabled`,
    /// `Suspended`), `None` when it was never set.
    pub(super) async fn bucket_versioning(&self) -> StoreResult<Option<String>> {
        let out = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| {
                self.errors
                    .sdk(&format!("GET VERSIONING `{}`", self.bucket), &e)
            })?;
        Ok(out.status().map(|s| s.as_str().to_string()))
    }

    /// A PUT that gives back the version id the server made.
    pub(super) async fn put_with_version(
        &self,
        key: &str,
        data: Bytes,
    ) -> StoreResult<Option<String>> {
        let full = self.full_key(key);
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .content_length(data.len() as i64)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.errors.sdk(&self.what("PUT", &full), &e))?;
        // Servers without versioning say `null` (RGW) or nothing (S3).
        Ok(out.version_id.filter(|v| !v.is_empty() && v != "null"))
    }

    /// Removes one version for good, bypassing governance retention (the
    /// benchmark's own locked objects must be removable by its cleanup).
    pub(super) async fn delete_one_version(&self, key: &str, version: &str) -> StoreResult<()> {
        let full = self.full_key(key);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .version_id(version)
            .bypass_governance_retention(true)
            .send()
            .await
            .map_err(|e| {
                let what = format!("{} version `{version}`", self.what("DELETE", &full));
                self.errors.sdk(&what, &e)
            })?;
        Ok(())
    }

    /// One ListObjectVersions page: versions and delete markers, by key
    /// (and, within a key, newest first, as S3 lists them).
    pub(super) async fn list_version_page(
        &self,
        prefix: &str,
        opts: &ListOptions,
    ) -> StoreResult<VersionPage> {
        let full = self.full_key(prefix);
        let limit = opts.limit.clamp(1, MAX_LIST_KEYS) as i32;
        let (key_marker, version_marker) = match opts.continuation.as_deref() {
            Some(token) => {
                let (k, v) = parse_marker(token);
                (Some(k), v)
            }
            None => (None, None),
        };
        let out = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(&full)
            .max_keys(limit)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .map_err(|e| self.errors.sdk(&self.what("LIST VERSIONS", &full), &e))?;
        // S3 gives versions and delete markers in two lists; merged by key
        // and then newest first, which is the order S3 walks them in.
        let mut all: Vec<(VersionMeta, Option<DateTime>)> = Vec::new();
        for v in out.versions() {
            if let (Some(key), Some(version)) = (v.key(), v.version_id()) {
                let meta = VersionMeta {
                    key: self.strip(key),
                    version: version.to_string(),
                    size: v.size().unwrap_or(0).max(0) as u64,
                    delete_marker: false,
                };
                all.push((meta, v.last_modified().copied()));
            }
        }
        for m in out.delete_markers() {
            if let (Some(key), Some(version)) = (m.key(), m.version_id()) {
                let meta = VersionMeta {
                    key: self.strip(key),
                    version: version.to_string(),
                    size: 0,
                    delete_marker: true,
                };
                all.push((meta, m.last_modified().copied()));
            }
        }
        all.sort_by(|(a, at), (b, bt)| {
            a.key.cmp(&b.key).then_with(|| {
                let (at, bt) = (at.map(|t| t.as_nanos()), bt.map(|t| t.as_nanos()));
                bt.cmp(&at)
            })
        });
        let next = match (out.is_truncated(), out.next_key_marker()) {
            (Some(true), Some(key)) => Some(encode_marker(key, out.next_version_id_marker())),
            _ => None,
        };
        Ok(VersionPage {
            entries: all.into_iter().map(|(m, _)| m).collect(),
            next,
        })
    }

    /// HEAD BUCKET, then CREATE BUCKET when it is missing (with object
    /// lock when `object_lock`: S3 turns it on only at creation).
    pub(super) async fn ready_bucket(&self, object_lock: bool) -> StoreResult<Readied> {
        let what = format!("CREATE BUCKET `{}`", self.bucket);
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(Readied::Existed),
            Err(e) => {
                let e = self
                    .errors
                    .sdk(&format!("HEAD BUCKET `{}`", self.bucket), &e);
                if e.class != ErrorClass::NotFound {
                    return Err(e);
                }
            }
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the one region that takes no location constraint.
        if self.region != DEFAULT_REGION {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        if object_lock {
            create = create.object_lock_enabled_for_bucket(true);
        }
        match create.send().await {
            Ok(_) => {
                self.made.store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(Readied::Made)
            }
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(Readied::Raced),
            // Another agent may have created it between our HEAD and
            // CREATE; some servers then say "exists". Ours if we can HEAD it.
            Err(e) if e.code() == Some("BucketAlreadyExists") => {
                match self.client.head_bucket().bucket(&self.bucket).send().await {
                    Ok(_) => Ok(Readied::Raced),
                    Err(_) => Err(self.errors.sdk(&what, &e)),
                }
            }
            Err(e) => Err(self.errors.sdk(&what, &e)),
        }
    }

    /// `ensure_ready_with`: a bucket made here (or by another agent of the
    /// run at the same moment) gets what `setup` asks; one that was there
    /// is checked, and what it lacks is an error that says how to fix it.
    pub(super) async fn ready_bucket_with(&self, setup: BucketSetup) -> StoreResult<()> {
        let readied = self.ready_bucket(setup.object_lock).await?;
        if setup.object_lock && readied != Readied::Made {
            self.check_object_lock().await?;
        }
        if !setup.versioning {
            return Ok(());
        }
        if readied == Readied::Existed {
            let status = self.bucket_versioning().await?;
            if status.as_deref() != Some("Enabled") {
                let b = &self.bucket;
                let now = status.map_or("never enabled".to_string(), |s| format!("`{s}`"));
                return Err(self.errors.error(
                    ErrorClass::Other,
                    format!(
                        "bucket `{b}` has versioning off (its status: {now}), and the plan \
                         keeps versions (`versioning: true`): enable it with `aws s3api \
                         put-bucket-versioning --bucket {b} --versioning-configuration \
                         Status=Enabled`, or drop `versioning: true` from the plan"
                    ),
                ));
            }
            return Ok(());
        }
        // Made with object lock, versioning is on already; set it anyway
        // (idempotent) so one path covers both.
        self.client
            .put_bucket_versioning()
            .bucket(&self.bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                self.errors
                    .sdk(&format!("PUT VERSIONING `{}`", self.bucket), &e)
            })?;
        Ok(())
    }

    /// An error unless the bucket has object lock enabled.
    async fn check_object_lock(&self) -> StoreResult<()> {
        let b = &self.bucket;
        let lacking = |said: &str| {
            self.errors.error(
                ErrorClass::Other,
                format!(
                    "bucket `{b}` has no object lock ({said}), and the plan sets retention: \
                     S3 enables object lock only when a bucket is created, so use a bucket \
                     that does not exist yet (Chorus creates it with object lock) or one \
                     created with `aws s3api create-bucket --bucket NAME \
                     --object-lock-enabled-for-bucket`"
                ),
            )
        };
        match self
            .client
            .get_object_lock_configuration()
            .bucket(b)
            .send()
            .await
        {
            Ok(out) => {
                let enabled = out
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled);
                if enabled {
                    Ok(())
                } else {
                    Err(lacking("its configuration does not say `Enabled`"))
                }
            }
            Err(e) => {
                let mapped = self
                    .errors
                    .sdk(&format!("GET OBJECT LOCK CONFIGURATION `{b}`"), &e);
                // A denied or failed request says nothing of the bucket:
                // its own error, not a claim that the lock is missing.
                if mapped.class == ErrorClass::NotFound
                    || e.code() == Some("ObjectLockConfigurationNotFoundError")
                {
                    Err(lacking(&mapped.message))
                } else {
                    Err(mapped)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_markers_round_trip() {
        let t = encode_marker("run/k 1", Some("3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"));
        assert_eq!(
            parse_marker(&t),
            (
                "run/k 1".to_string(),
                Some("3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".to_string())
            )
        );
        // No version marker: the key alone.
        assert_eq!(parse_marker(&encode_marker("k", None)), ("k".into(), None));
        // A key with a newline: split at the last one.
        assert_eq!(
            parse_marker(&encode_marker("a\nb", Some("v1"))),
            ("a\nb".into(), Some("v1".into()))
        );
        // A bare token is a key marker.
        assert_eq!(parse_marker("k"), ("k".into(), None));
    }

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(copy_source("b", "run/k-1_x.y~"), "b/run/k-1_x.y~");
        assert_eq!(copy_source("b", "a b+c"), "b/a%20b%2Bc");
        assert_eq!(copy_source("b", "é"), "b/%C3%A9");
    }
}
