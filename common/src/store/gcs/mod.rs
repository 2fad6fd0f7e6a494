//! `gs://bucket/prefix`: Google Cloud Storage through `gcloud-storage` 1.3
//! (the JSON API), and fake-gcs-server for tests.
//!
//! - Credentials and endpoint: [`GcsConfig`] (application default
//!   credentials; `STORAGE_EMULATOR_HOST` / `GCS_ENDPOINT_URL` with
//!   anonymous auth for emulators, through the client's `storage_endpoint`).
//! - Keys are `prefix/key` in the bucket: the URI's prefix (with a `/` added
//!   if it has none) goes in front of every key and comes off in listings.
//! - No SDK retries: the crate's default HTTP client has no retry
//!   middleware, and we add none (the engine retries and logs each one).
//!   No timer on requests either: the engine's op timer bounds each op.
//!   [`OpenOptions::timeout`] bounds only getting credentials at open.
//! - GET streams the body and drops it unless asked to keep it; the first
//!   byte is the first body chunk.
//! - Multipart PUT is a resumable upload: one session, one chunk request
//!   per part, so parts must be multiples of 256 KiB (GCS's chunk rule)
//!   except the last. Chosen over compose because it writes the object once
//!   (compose writes every part twice and must delete the temporaries).
//! - Copy is `objects.rewrite`, repeated with the rewrite token until the
//!   service says done (large or cross-location copies take several
//!   calls; each call is a request the op's time includes).
//! - Batch delete deletes in parallel, `PARALLEL_DELETES` at once: the
//!   crate has no JSON batch call. `batch_limit` is the JSON API batch's
//!   100, so batches are sized as they would be for it.

mod config;
pub(crate) mod error;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, stream};
use gcloud_storage::client::google_cloud_auth::credentials::CredentialsFile;
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::buckets::delete::DeleteBucketRequest;
use gcloud_storage::http::buckets::get::GetBucketRequest;
use gcloud_storage::http::buckets::insert::{InsertBucketParam, InsertBucketRequest};
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::http::objects::rewrite::RewriteObjectRequest;
use gcloud_storage::http::objects::upload::{Media, UploadObjectRequest, UploadType};
use gcloud_storage::http::resumable_upload_client::{ChunkSize, UploadStatus};

pub use config::{GcsAuth, GcsConfig, PUBLIC_ENDPOINT};

use super::{
    ByteRange, ChunkSink, CopyPlan, ErrorClass, GetOptions, GetOutcome, ListOptions, ListPage,
    ObjectMeta, ObjectStore, OpenOptions, PartPlan, PartSource, StoreError, StoreResult,
};
use crate::clock::Mono;

/// Resumable upload chunks must be multiples of this (GCS's rule), except
/// the last one.
pub const RESUMABLE_CHUNK_ALIGN: u64 = 256 << 10;

/// Longest range a GET asks for: a caller's "to the end" length (say
/// `u64::MAX / 2`) is cut to this, so the end offset fits the server's
/// signed 64-bit (and JavaScript-safe) integers. 1 PiB is beyond any object.
const MAX_RANGE_BYTES: u64 = 1 << 50;

/// Most entries one LIST page may ask for: the JSON API's own cap.
const MAX_LIST_PAGE: usize = 1000;

/// Most calls one JSON API batch request holds on GCS: what `batch_limit`
/// reports.
const BATCH_LIMIT: usize = 100;

/// Deletes in flight at once in one `delete_many`: enough to hide round
/// trips, bounded so a batch cannot open a hundred connections.
const PARALLEL_DELETES: usize = 32;

/// A GCS bucket (or a prefix of one) as an object store.
pub struct GcsStore {
    client: Client,
    bucket: String,
    /// `gs://bucket/prefix`, for `Display`.
    uri: String,
    /// The JSON API base URL: the op-log endpoint.
    endpoint: String,
    /// Put in front of every key; empty or ending in `/`.
    prefix: String,
    /// Project for bucket creation.
    project: Option<String>,
    /// This instance created the bucket (not one that was there).
    made: AtomicBool,
}

impl fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the client holds the token source.
        f.debug_struct("GcsStore")
            .field("uri", &self.uri)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for GcsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// Splits `bucket/prefix` (an `gs://` URI after the scheme); the prefix is
/// `""` or ends in `/`.
pub fn parse_target(rest: &str) -> Result<(String, String), String> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!(
            "`gs://{rest}` needs a bucket: gs://bucket[/prefix]"
        ));
    }
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_string(), prefix))
}

impl GcsStore {
    /// Opens `gs://{rest}` with the configuration from the environment
    /// (forwarded variables first, see [`GcsConfig::from_options`]).
    pub async fn open(rest: &str, opts: &OpenOptions) -> StoreResult<GcsStore> {
        let mut config = GcsConfig::from_options(opts);
        if let Some(e) = &opts.endpoint {
            config.endpoint = Some(e.trim_end_matches('/').to_string());
        }
        GcsStore::with_config(rest, config, opts).await
    }

    /// Opens `gs://{rest}` with an explicit config. Getting credentials may
    /// ask the metadata server, so it is bounded by `opts.timeout`: opening
    /// is not an op, and no op timer covers it.
    pub async fn with_config(
        rest: &str,
        config: GcsConfig,
        opts: &OpenOptions,
    ) -> StoreResult<GcsStore> {
        let uri = format!("gs://{rest}");
        let (bucket, prefix) =
            parse_target(rest).map_err(|m| StoreError::new(ErrorClass::Other, &uri, m))?;
        let endpoint = config.endpoint_url();
        let base = ClientConfig {
            storage_endpoint: endpoint.clone(),
            ..ClientConfig::default()
        };
        let no_creds = |e: &dyn fmt::Display| {
            StoreError::new(
                ErrorClass::AccessDenied,
                &endpoint,
                format!("cannot load Google credentials: {e}"),
            )
        };
        let auth = async {
            match &config.auth {
                GcsAuth::Anonymous => Ok(base.anonymous()),
                GcsAuth::ApplicationDefault => base.with_auth().await.map_err(|e| no_creds(&e)),
                GcsAuth::CredentialsFile(path) => {
                    let file = CredentialsFile::new_from_file(path.display().to_string())
                        .await
                        .map_err(|e| no_creds(&e))?;
                    base.with_credentials(file).await.map_err(|e| no_creds(&e))
                }
                GcsAuth::CredentialsJson(json) => {
                    // The parser's message may quote the JSON, which holds
                    // a private key: say only what was wrong where.
                    let file = CredentialsFile::new_from_str(json).await.map_err(|_| {
                        no_creds(&"GOOGLE_APPLICATION_CREDENTIALS_JSON is not a credentials file")
                    })?;
                    base.with_credentials(file).await.map_err(|e| no_creds(&e))
                }
            }
        };
        let client_config = tokio::time::timeout(opts.timeout, auth)
            .await
            .map_err(|_| {
                StoreError::new(
                    ErrorClass::Timeout,
                    &endpoint,
                    format!("getting credentials took over {:?}", opts.timeout),
                )
            })??;
        let project = config
            .project
            .clone()
            .or_else(|| client_config.project_id.clone());
        Ok(GcsStore {
            client: Client::new(client_config),
            bucket,
            uri,
            endpoint,
            prefix,
            project,
            made: AtomicBool::new(false),
        })
    }

    fn object(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn err(&self, e: &gcloud_storage::http::Error, what: &str) -> StoreError {
        error::map(e, &self.endpoint, what)
    }

    fn get_request(&self, key: &str) -> GetObjectRequest {
        GetObjectRequest {
            bucket: self.bucket.clone(),
            object: self.object(key),
            ..Default::default()
        }
    }

    fn upload_request(&self) -> UploadObjectRequest {
        UploadObjectRequest {
            bucket: self.bucket.clone(),
            ..Default::default()
        }
    }

    fn media(&self, key: &str, len: Option<u64>) -> UploadType {
        let mut media = Media::new(self.object(key));
        media.content_length = len;
        UploadType::Simple(media)
    }

    /// A GET; with a `sink`, the body goes to it piece by piece and none
    /// is kept (a zero-length range, which is widened to one byte, is
    /// never streamed: see `get_chunks`).
    async fn get_inner(
        &self,
        key: &str,
        opts: &GetOptions,
        mut sink: Option<ChunkSink<'_>>,
    ) -> StoreResult<GetOutcome> {
        let start = opts.range.map_or(0, |r| r.offset);
        let what = format!("GET `{key}`");
        let range = match opts.range {
            None => Range::default(),
            Some(r) => {
                // Inclusive end; a zero length still asks for the first
                // byte so a start past the end is refused by the server.
                let len = r.length.clamp(1, MAX_RANGE_BYTES);
                Range(Some(r.offset), Some(r.offset.saturating_add(len - 1)))
            }
        };
        let stream = self
            .client
            .download_streamed_object(&self.get_request(key), &range)
            .await
            .map_err(|e| self.err(&e, &what))?;
        let response_at = Mono::now();
        let mut stream = std::pin::pin!(stream);
        let mut first_byte = None;
        let mut bytes = 0u64;
        let mut kept = opts.keep_data.then(BytesMut::new);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.err(&e, &format!("{what}: reading the body")))?;
            first_byte.get_or_insert_with(Mono::now);
            if let Some(sink) = sink.as_mut() {
                sink(start + bytes, &chunk)?;
            } else if let Some(buf) = kept.as_mut() {
                buf.extend_from_slice(&chunk);
            }
            bytes += chunk.len() as u64;
        }
        // A zero-length range was widened to one byte above; give back
        // what was asked for.
        if let Some(r) = opts.range
            && r.length == 0
        {
            bytes = 0;
            kept = kept.map(|_| BytesMut::new());
        }
        Ok(GetOutcome {
            bytes,
            first_byte: Some(first_byte.unwrap_or(response_at)),
            data: kept.map(BytesMut::freeze),
        })
    }

    async fn list_inner(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        let what = format!("LIST `{prefix}`");
        let req = ListObjectsRequest {
            bucket: self.bucket.clone(),
            prefix: Some(format!("{}{prefix}", self.prefix)),
            delimiter: opts.delimiter.map(String::from),
            max_results: Some(opts.limit.clamp(1, MAX_LIST_PAGE) as i32),
            page_token: opts.continuation.clone(),
            ..Default::default()
        };
        let response = self
            .client
            .list_objects(&req)
            .await
            .map_err(|e| self.err(&e, &what))?;
        let strip = |name: &str| name.strip_prefix(&self.prefix).unwrap_or(name).to_string();
        Ok(ListPage {
            entries: response
                .items
                .unwrap_or_default()
                .iter()
                .map(|o| ObjectMeta {
                    key: strip(&o.name),
                    size: o.size.max(0) as u64,
                })
                .collect(),
            prefixes: response
                .prefixes
                .unwrap_or_default()
                .iter()
                .map(|p| strip(p))
                .collect(),
            next: response.next_page_token.filter(|t| !t.is_empty()),
        })
    }
}

#[async_trait]
impl ObjectStore for GcsStore {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let what = format!("PUT `{key}`");
        let len = data.len() as u64;
        self.client
            .upload_object(&self.upload_request(), data, &self.media(key, Some(len)))
            .await
            .map(|_| ())
            .map_err(|e| self.err(&e, &what))
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        self.get_inner(key, opts, None).await
    }

    async fn get_chunks(
        &self,
        key: &str,
        range: Option<ByteRange>,
        sink: ChunkSink<'_>,
    ) -> StoreResult<GetOutcome> {
        let opts = GetOptions {
            range,
            keep_data: false,
        };
        if range.is_some_and(|r| r.length == 0) {
            // Asked as one byte and given back as none: nothing to stream.
            return self.get_inner(key, &opts, None).await;
        }
        self.get_inner(key, &opts, Some(sink)).await
    }

    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
        let what = format!("STAT `{key}`");
        let object = self
            .client
            .get_object(&self.get_request(key))
            .await
            .map_err(|e| self.err(&e, &what))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: object.size.max(0) as u64,
        })
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let what = format!("DELETE `{key}`");
        let req = DeleteObjectRequest {
            bucket: self.bucket.clone(),
            object: self.object(key),
            ..Default::default()
        };
        self.client
            .delete_object(&req)
            .await
            .map_err(|e| self.err(&e, &what))
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        self.list_inner(prefix, opts).await
    }

    /// A resumable upload: start a session, then one chunk request per
    /// part.
    async fn put_multipart(
        &self,
        key: &str,
        plan: PartPlan<'_>,
        part: PartSource<'_>,
    ) -> StoreResult<u64> {
        let (size, part_size) = (plan.size, plan.part_size.max(1));
        if size == 0 || size <= part_size {
            // One part: a plain upload is the same thing in one request.
            self.put(key, part(0, size)).await?;
            return Ok(1);
        }
        if !part_size.is_multiple_of(RESUMABLE_CHUNK_ALIGN) {
            return Err(StoreError::new(
                ErrorClass::Other,
                &self.endpoint,
                format!(
                    "PUT `{key}`: part size {part_size} is not a multiple of 256 KiB, \
                     which GCS resumable uploads need"
                ),
            ));
        }
        let what = format!("PUT `{key}` start resumable upload");
        let session = self
            .client
            .prepare_resumable_upload(&self.upload_request(), &self.media(key, Some(size)))
            .await
            .map_err(|e| self.err(&e, &what))?;
        let parts = size.div_ceil(part_size);
        for index in 0..parts {
            let offset = index * part_size;
            let len = part_size.min(size - offset);
            let chunk = ChunkSize::new(offset, offset + len - 1, Some(size));
            let what = format!("PUT `{key}` part {index}");
            let data = part(offset, len);
            let start = Mono::now();
            let status = session
                .upload_multiple_chunk(data, &chunk)
                .await
                .map_err(|e| self.err(&e, &what))?;
            plan.done(offset, len, start);
            let last = index + 1 == parts;
            let done = matches!(status, UploadStatus::Ok(_));
            if done != last {
                return Err(StoreError::new(
                    ErrorClass::Other,
                    &self.endpoint,
                    format!("{what}: unexpected upload status {status:?}"),
                ));
            }
        }
        Ok(parts)
    }

    /// In parallel, bounded: the crate has no JSON batch call.
    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<StoreResult<()>>> {
        // By index: a closure over `&String` is not general enough for the
        // `Send` check async_trait's boxed future makes.
        Ok(stream::iter(0..keys.len())
            .map(|i| self.delete(&keys[i]))
            .buffered(PARALLEL_DELETES)
            .collect()
            .await)
    }

    fn batch_limit(&self) -> usize {
        BATCH_LIMIT
    }

    /// `objects.rewrite` within the bucket, again with the token the
    /// service hands back until it says done. Returns the object's size
    /// as the service reports it. The plan's part size is unused: how a
    /// rewrite is cut into calls is the service's choice.
    async fn copy(&self, src: &str, dst: &str, _plan: CopyPlan) -> StoreResult<u64> {
        let what = format!("COPY `{src}` to `{dst}`");
        let mut req = RewriteObjectRequest {
            source_bucket: self.bucket.clone(),
            source_object: self.object(src),
            destination_bucket: self.bucket.clone(),
            destination_object: self.object(dst),
            ..Default::default()
        };
        loop {
            let step = self
                .client
                .rewrite_object(&req)
                .await
                .map_err(|e| self.err(&e, &what))?;
            if step.done {
                return Ok(step.object_size.max(step.total_bytes_rewritten).max(0) as u64);
            }
            match step.rewrite_token.filter(|t| !t.is_empty()) {
                Some(token) => req.rewrite_token = Some(token),
                // Not done and nothing to go on with: asking again would
                // start over, forever.
                None => {
                    return Err(StoreError::new(
                        ErrorClass::Other,
                        &self.endpoint,
                        format!("{what}: the rewrite is not done but gave no token to go on"),
                    ));
                }
            }
        }
    }

    /// Creates the bucket, tolerating one that exists (409), and one we may
    /// not create but can use (403 on create, but the bucket answers).
    async fn ensure_ready(&self) -> StoreResult<()> {
        let what = format!("create bucket `{}`", self.bucket);
        let req = InsertBucketRequest {
            name: self.bucket.clone(),
            param: InsertBucketParam {
                project: self.project.clone().unwrap_or_default(),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = match self.client.insert_bucket(&req).await {
            Ok(_) => {
                self.made.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if error::status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(self.err(&e, &what)),
        };
        match created {
            Err(e) if e.class == ErrorClass::AccessDenied => {
                let get = GetBucketRequest {
                    bucket: self.bucket.clone(),
                    ..Default::default()
                };
                let probe = self.client.get_bucket(&get).await;
                probe.map(|_| ()).map_err(|_| e)
            }
            other => other,
        }
    }

    fn buckets_made(&self) -> Vec<String> {
        if self.made.load(Ordering::Relaxed) {
            vec![self.bucket.clone()]
        } else {
            Vec::new()
        }
    }

    /// Deletes the bucket, which GCS refuses (409) while it holds objects.
    async fn remove_buckets(&self, names: &[String]) -> StoreResult<u32> {
        if !names.contains(&self.bucket) {
            return Ok(0);
        }
        let req = DeleteBucketRequest {
            bucket: self.bucket.clone(),
            ..Default::default()
        };
        self.client
            .delete_bucket(&req)
            .await
            .map_err(|e| self.err(&e, &format!("delete bucket `{}`", self.bucket)))?;
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_bucket_and_prefix() {
        assert_eq!(parse_target("b").unwrap(), ("b".into(), String::new()));
        assert_eq!(parse_target("b/p/q").unwrap(), ("b".into(), "p/q/".into()));
        assert_eq!(parse_target("b/p/").unwrap(), ("b".into(), "p/".into()));
        assert!(parse_target("").is_err());
    }

    #[tokio::test]
    async fn opens_an_emulator_without_network() {
        let store = GcsStore::with_config(
            "bkt/pre",
            GcsConfig::emulator("127.0.0.1:1"),
            &OpenOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(store.to_string(), "gs://bkt/pre");
        assert_eq!(store.endpoint(), "http://127.0.0.1:1");
    }
}
