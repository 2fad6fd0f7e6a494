//! One async [`ObjectStore`] trait, with one module per backend.
//!
//! The trait is deliberately small: the ops a benchmark issues, each
//! reporting what the op-log needs (bytes moved, time to first byte) rather
//! than handing data back by default. Backends map their private errors into
//! [`StoreError`], whose [`ErrorClass`] is what the op-log's `error` column
//! starts with. Every store `Display`s itself as the URI it serves, so a run
//! can print its whole store stack.
//!
//! Backends, one module each: [`s3`] (`s3://`), [`azure`] (`az://`), [`gcs`]
//! (`gs://`), [`file`] (`file://`, buffered), [`direct`] (`direct://`,
//! O_DIRECT) and [`memory`] (`mem://`, in-process, for harness tests and
//! overhead measurement). Wrappers that stack on any store: [`multi`] (one
//! store per endpoint, balanced), [`buckets`] (a key space spread over N
//! buckets, one store each), `delay` (injected latency, for tests)
//! and `capacity` (a `mem://` store of known capacity, for tests of the
//! capacity search). `conformance` is the suite every backend's tests run.
//! Those three are test support, built only for this crate's tests and
//! with the `test-support` feature (which the `chorus-tests` crate's and
//! the controller's tests enable): no binary can reach them.

pub mod api;
pub mod azure;
pub mod buckets;
#[cfg(any(test, feature = "test-support"))]
pub mod capacity;
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
#[cfg(any(test, feature = "test-support"))]
pub mod delay;
pub mod direct;
pub mod env;
pub mod file;
pub mod gcs;
pub(crate) mod http;
pub mod memory;
pub mod multi;
mod pages;
pub mod s3;
pub mod uri;
pub mod uring;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use uri::TargetUri;

use crate::clock::Mono;

pub use api::{BucketSetup, CopyPlan, Tags, VersionMeta, VersionPage};
pub use env::EnvOverlay;
pub use pages::{clamp_range, get_in_ranges, list_all, list_pages, page_from_sorted};

/// What kind of failure an op had; the op-log's `error` column starts with
/// [`ErrorClass::name`], so analysis can group errors without parsing text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    NotFound,
    AccessDenied,
    Throttled,
    Timeout,
    Network,
    /// Data read back differs from the data written.
    Verification,
    /// The backend cannot do this op (e.g. a missing feature).
    NotSupported,
    Other,
}

impl ErrorClass {
    /// Every class, in declaration order: `ALL[c.index()] == c`.
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::NotFound,
        ErrorClass::AccessDenied,
        ErrorClass::Throttled,
        ErrorClass::Timeout,
        ErrorClass::Network,
        ErrorClass::Verification,
        ErrorClass::NotSupported,
        ErrorClass::Other,
    ];

    /// The class's place in [`ErrorClass::ALL`], for tables indexed by
    /// class.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::NotFound => "not_found",
            ErrorClass::AccessDenied => "access_denied",
            ErrorClass::Throttled => "throttled",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Network => "network",
            ErrorClass::Verification => "verification",
            ErrorClass::NotSupported => "not_supported",
            ErrorClass::Other => "other",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed store op. The message never holds credentials: backends build it
/// from the endpoint and the server's answer only.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message} (endpoint {endpoint})")]
pub struct StoreError {
    pub class: ErrorClass,
    /// Which endpoint the op went to, so a failing one can be found.
    pub endpoint: String,
    pub message: String,
}

impl StoreError {
    pub fn new(class: ErrorClass, endpoint: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError {
            class,
            endpoint: endpoint.into(),
            message: message.into(),
        }
    }

    /// The text of the op-log `error` column: `class: message`.
    pub fn log_text(&self) -> String {
        format!("{}: {}", self.class, self.message)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a stat or list says of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

/// A byte range of an object: `length` bytes from `offset`. A range that
/// runs past the end is cut at the end (as S3 does); one that starts at or
/// past the end is an error of class `Other` ("range not satisfiable").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub length: u64,
}

/// How to GET.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Only this range; the whole object when `None`.
    pub range: Option<ByteRange>,
    /// Hand the bytes back (to verify them); otherwise they are read and
    /// dropped, as a reader that discards them would.
    pub keep_data: bool,
}

impl GetOptions {
    pub fn whole() -> GetOptions {
        GetOptions::default()
    }

    pub fn keep() -> GetOptions {
        GetOptions {
            range: None,
            keep_data: true,
        }
    }
}

/// The result of a GET.
#[derive(Clone, Debug)]
pub struct GetOutcome {
    /// Bytes received.
    pub bytes: u64,
    /// When the first byte arrived, where the backend can tell.
    pub first_byte: Option<Mono>,
    /// The content, only when asked for.
    pub data: Option<Bytes>,
}

/// How to LIST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOptions {
    /// With a delimiter (`/`), keys below the next delimiter are rolled up
    /// into `ListPage::prefixes`, as S3 does; without one the listing is
    /// recursive.
    pub delimiter: Option<char>,
    /// Most entries (objects plus prefixes) in one page.
    pub limit: usize,
    /// Where to go on from: the `next` of the previous page.
    pub continuation: Option<String>,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            delimiter: None,
            limit: 1000,
            continuation: None,
        }
    }
}

/// One page of a listing, in key order.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub entries: Vec<ObjectMeta>,
    /// Common prefixes (each ending in the delimiter), with a delimiter only.
    pub prefixes: Vec<String>,
    /// Continuation token for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Makes the bytes of part `index` (`length` bytes at `offset`) of a
/// multipart upload, so a large object never has to be in memory whole.
pub type PartSource<'a> = &'a (dyn Fn(u64, u64) -> Bytes + Send + Sync);

/// Takes a GET's body piece by piece, in order: `(offset in the object,
/// bytes)`. An error ends the GET with it (a verification failure stops
/// the read at the first bad chunk). The pieces are the transport's
/// (network chunks) or [`GET_CHUNK_BYTES`] (local files): nothing of the
/// body is kept by the store.
pub type ChunkSink<'a> = &'a mut (dyn FnMut(u64, &[u8]) -> StoreResult<()> + Send);

/// Most bytes a local store (`file://`, `direct://`) reads for one call of
/// a [`ChunkSink`]: the memory a streamed GET of any size holds at once.
pub const GET_CHUNK_BYTES: u64 = 8 << 20;

/// When one part of an op that moves an object in several requests ran:
/// what the op-log's part record (`PUT_PART`, `GET_PART`) holds. Times
/// are `Mono` readings, like an op's; a part's clock starts once its
/// bytes are made (generating data is no part of storage latency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartTime {
    pub offset: u64,
    pub bytes: u64,
    pub start: Mono,
    pub first_byte: Option<Mono>,
    pub end: Mono,
}

/// Told of each part an upload sent, as it completes.
pub type PartLog<'a> = &'a (dyn Fn(PartTime) + Send + Sync);

/// How a multipart PUT is cut and sent.
#[derive(Clone, Copy)]
pub struct PartPlan<'a> {
    /// Bytes of the object.
    pub size: u64,
    /// Bytes of each part (the last may be shorter); at least 1.
    pub part_size: u64,
    /// Most parts in flight at once (at least 1): object stores upload
    /// that many concurrently; local stores write one at a time. At most
    /// `streams` parts are in memory at once.
    pub streams: usize,
    /// Told of each part sent (its time for the op-log); stores that send
    /// the object in one request tell nothing.
    pub log: Option<PartLog<'a>>,
}

impl fmt::Debug for PartPlan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartPlan")
            .field("size", &self.size)
            .field("part_size", &self.part_size)
            .field("streams", &self.streams)
            .field("log", &self.log.is_some())
            .finish()
    }
}

impl PartPlan<'_> {
    /// One stream: parts sent one after another, none logged.
    pub fn serial(size: u64, part_size: u64) -> PartPlan<'static> {
        PartPlan {
            size,
            part_size: part_size.max(1),
            streams: 1,
            log: None,
        }
    }

    /// Tells the plan's log, if any, of the part at `offset` of `bytes`
    /// that started at `start` and ends now.
    pub fn done(&self, offset: u64, bytes: u64, start: Mono) {
        if let Some(log) = self.log {
            log(PartTime {
                offset,
                bytes,
                start,
                first_byte: None,
                end: Mono::now(),
            });
        }
    }

    /// How many parts: at least one, even for an empty object.
    pub fn count(&self) -> u64 {
        self.size.div_ceil(self.part_size.max(1)).max(1)
    }

    /// Offset and length of part `index` (0-based).
    pub fn part(&self, index: u64) -> (u64, u64) {
        let offset = index * self.part_size.max(1);
        (
            offset,
            self.part_size.max(1).min(self.size - offset.min(self.size)),
        )
    }
}

/// An object store, as the workload engine sees it.
///
/// Required: the core ops. Provided (with a plain default each backend may
/// replace with its native form): multipart PUT, batch delete, mkdir/rmdir.
/// Stores do not retry and keep no timers on requests: retries and
/// timeouts belong to the engine (`workload::timed`), which counts each
/// retry in the op-log (a hidden retry is hidden latency).
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Display + fmt::Debug {
    /// The endpoint this store sends ops to, for the op-log `endpoint`
    /// column (a URL for network stores, the root for local ones).
    fn endpoint(&self) -> &str;

    /// Writes `data` as the whole content of `key`, replacing any old one.
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()>;

    /// Reads `key` (or a range of it).
    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome>;

    /// Size of `key`; `NotFound` when it does not exist.
    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta>;

    /// Removes `key`; `NotFound` when it did not exist.
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// One page of the objects whose keys start with `prefix`.
    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage>;

    /// Reads `key` (or `range` of it), handing the body to `sink` piece by
    /// piece as it arrives, keeping none of it: a GET of any size in
    /// bounded memory, verified as it streams. Returns what [`Self::get`]
    /// would, without `data`. The default GETs the bytes whole and hands
    /// them over at once: right for `mem://`, whose objects are in memory
    /// already; every other backend streams.
    async fn get_chunks(
        &self,
        key: &str,
        range: Option<ByteRange>,
        sink: ChunkSink<'_>,
    ) -> StoreResult<GetOutcome> {
        let opts = GetOptions {
            range,
            keep_data: true,
        };
        let mut got = self.get(key, &opts).await?;
        if let Some(data) = got.data.take() {
            sink(range.map_or(0, |r| r.offset), &data)?;
        }
        Ok(got)
    }

    /// Writes `key` in the parts `plan` cuts it into, each made by `part`
    /// when it is sent. Returns the number of parts. The default makes the
    /// whole object and PUTs it once (for `mem://`, which keeps it whole
    /// anyway); every other backend sends parts natively.
    async fn put_multipart(
        &self,
        key: &str,
        plan: PartPlan<'_>,
        part: PartSource<'_>,
    ) -> StoreResult<u64> {
        let mut data = Vec::with_capacity(usize::try_from(plan.size).unwrap_or(0));
        for index in 0..plan.count() {
            let (offset, len) = plan.part(index);
            data.extend_from_slice(&part(offset, len));
        }
        self.put(key, Bytes::from(data)).await?;
        Ok(plan.count())
    }

    /// Removes many keys; one result per key, in order. The default deletes
    /// one by one; object stores replace it with their batch call (or
    /// deletes in parallel where there is none).
    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<StoreResult<()>>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.delete(k).await);
        }
        Ok(out)
    }

    /// Most keys one [`Self::delete_many`] request takes: S3's
    /// DeleteObjects 1,000, an Azure batch 256; 1 where there is no batch
    /// call. A `delete_batch` op or a cleanup's batch is at most this.
    fn batch_limit(&self) -> usize {
        1
    }

    /// Copies `src` to `dst` on the server (S3 CopyObject, UploadPartCopy
    /// above `plan.part_size`; Azure Copy Blob; GCS rewrite; a local
    /// `copy_file_range`). Returns the bytes copied.
    async fn copy(&self, src: &str, dst: &str, plan: CopyPlan) -> StoreResult<u64> {
        let _ = (dst, plan);
        Err(api::not_supported(self.endpoint(), "COPY", src))
    }

    /// Appends `data` to `key`, creating it when missing (an Azure append
    /// blob; a local file opened to append; S3 where the server has it).
    async fn append(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let _ = data;
        Err(api::not_supported(self.endpoint(), "APPEND", key))
    }

    /// Replaces `key`'s tags with `tags` (S3 object tagging, Azure blob
    /// index tags).
    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> StoreResult<()> {
        let _ = tags;
        Err(api::not_supported(self.endpoint(), "TAG", key))
    }

    /// `key`'s tags.
    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        Err(api::not_supported(self.endpoint(), "GET_TAGS", key))
    }

    /// Sets `key`'s object-lock retention, governance mode, until `until`
    /// (so a cleanup that bypasses governance can remove it).
    async fn put_retention(&self, key: &str, until: std::time::SystemTime) -> StoreResult<()> {
        let _ = until;
        Err(api::not_supported(self.endpoint(), "RETENTION", key))
    }

    /// Whether the bucket keeps versions; `not_supported` where the
    /// backend has none.
    async fn versioning_enabled(&self) -> StoreResult<bool> {
        Err(api::not_supported(self.endpoint(), "GET VERSIONING", ""))
    }

    /// A PUT that returns the version id it made (`None` when the server
    /// gave none: versioning is off).
    async fn put_versioned(&self, key: &str, data: Bytes) -> StoreResult<Option<String>> {
        let _ = data;
        Err(api::not_supported(self.endpoint(), "PUT", key))
    }

    /// Reads one version of `key`.
    async fn get_version(
        &self,
        key: &str,
        version: &str,
        opts: &GetOptions,
    ) -> StoreResult<GetOutcome> {
        let _ = (version, opts);
        Err(api::not_supported(self.endpoint(), "GET_VERSION", key))
    }

    /// Removes one version of `key` for good (bypassing governance
    /// retention).
    async fn delete_version(&self, key: &str, version: &str) -> StoreResult<()> {
        let _ = version;
        Err(api::not_supported(self.endpoint(), "DELETE_VERSION", key))
    }

    /// One page of the versions (and delete markers) of keys starting
    /// with `prefix`; `opts.delimiter` is ignored.
    async fn list_versions(&self, prefix: &str, opts: &ListOptions) -> StoreResult<VersionPage> {
        let _ = opts;
        Err(api::not_supported(self.endpoint(), "LIST_VERSIONS", prefix))
    }

    /// Removes many `(key, version)` pairs for good, bypassing governance
    /// retention: at most [`Self::batch_limit`] in one request. One result
    /// per pair, in order. The default removes them one by one.
    async fn delete_versions(
        &self,
        items: &[(String, String)],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        let mut out = Vec::with_capacity(items.len());
        for (k, v) in items {
            out.push(self.delete_version(k, v).await);
        }
        Ok(out)
    }

    /// Makes a directory, where the backend has them.
    async fn mkdir(&self, path: &str) -> StoreResult<()> {
        Err(StoreError::new(
            ErrorClass::NotSupported,
            self.endpoint(),
            format!("`{path}`: this backend has no directories"),
        ))
    }

    /// Makes sure the store can take writes: creates the bucket, container
    /// or root folder if it is missing. Called once per agent before a
    /// prepare stage; the default does nothing.
    async fn ensure_ready(&self) -> StoreResult<()> {
        Ok(())
    }

    /// [`Self::ensure_ready`] for a plan whose ops need `setup`: a bucket
    /// Chorus creates gets it (object lock is set only at creation); one
    /// that exists is checked, and lacking it is an error that says so.
    /// The default readies the store as `ensure_ready` does and checks
    /// nothing (a backend without these features is refused at plan load).
    async fn ensure_ready_with(&self, setup: BucketSetup) -> StoreResult<()> {
        let _ = setup;
        self.ensure_ready().await
    }

    /// Removes an empty directory, where the backend has them.
    async fn rmdir(&self, path: &str) -> StoreResult<()> {
        Err(StoreError::new(
            ErrorClass::NotSupported,
            self.endpoint(),
            format!("`{path}`: this backend has no directories"),
        ))
    }

    /// A stage is about to begin (the engine calls this before its first
    /// op, with no op of the store running): `removes_objects` says
    /// whether any op of the stage, on any agent of the run, can remove or
    /// replace an object. A store that keeps what it learned about objects
    /// may rely on it for the stage when none can (`file://` then checks a
    /// kept open file once per stage instead of on every GET). The default
    /// does nothing.
    fn stage_begins(&self, removes_objects: bool) {
        let _ = removes_objects;
    }

    /// The buckets (containers) this store instance created in
    /// [`Self::ensure_ready`] or [`Self::ensure_ready_with`], by name (not
    /// one that was there, nor one another agent created first): what a
    /// cleanup may remove, as Chorus removes only what it made. The
    /// default: none.
    fn buckets_made(&self) -> Vec<String> {
        Vec::new()
    }

    /// Removes each of this store's buckets whose name is in `names`; a
    /// bucket must be empty (one that is not is an error, and stays).
    /// Returns how many were removed. The default removes none.
    async fn remove_buckets(&self, names: &[String]) -> StoreResult<u32> {
        let _ = names;
        Ok(0)
    }
}

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Workers that will use the store at once: network backends size their
    /// idle-connection pools to it.
    pub concurrency: u32,
    /// What bounds opening, not ops: network backends' connect timeout
    /// (`s3://`, `az://`) and getting credentials (`gs://`). Stores keep no
    /// timer on requests: the engine's op timer (`workload::timed`, the
    /// stage's per-attempt `timeout`, which agents also pass here) bounds
    /// every op, with one error text.
    pub timeout: Duration,
    /// Send requests here instead of the endpoint the environment names
    /// (`AWS_ENDPOINT_URL`, `AZURE_STORAGE_ENDPOINT`, …): one store per
    /// endpoint of a multi-endpoint stage. Network backends only.
    pub endpoint: Option<String>,
    /// Variables the controller forwarded (`--forward-env`): backends read
    /// their credentials and endpoints here first, then in the process
    /// environment (see [`OpenOptions::var`]).
    pub env: Option<Arc<EnvOverlay>>,
    /// The stage's `buckets`: above 1, [`open`] makes a
    /// [`buckets::BucketSet`] over that many buckets named from the
    /// target ([`buckets::bucket_targets`]); 0 and 1 open the target's one.
    pub buckets: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            concurrency: 4,
            timeout: DEFAULT_TIMEOUT,
            endpoint: None,
            env: None,
            buckets: 1,
        }
    }
}

impl OpenOptions {
    /// Variable `name` as a backend sees it: forwarded, else from this
    /// process's environment.
    pub fn var(&self, name: &str) -> Option<String> {
        match self.env.as_ref().and_then(|o| o.get(name)) {
            Some(v) => Some(v.to_string()),
            None => std::env::var(name).ok(),
        }
    }

    /// Whether `name` was forwarded (rather than set in this process).
    pub fn forwarded(&self, name: &str) -> bool {
        self.env.as_ref().is_some_and(|o| o.get(name).is_some())
    }
}

/// [`OpenOptions::timeout`] when none is given: the plan's default
/// per-attempt timeout, long enough for a large object on a slow link.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens the store a target URI names. Credentials come from the
/// environment of the process (each ecosystem's standard variables), or
/// the variables the controller forwarded in `opts.env`, never from the URI
/// or the plan. With `opts.buckets` above 1, a [`buckets::BucketSet`]
/// over one store per bucket.
pub async fn open(target: &str, opts: &OpenOptions) -> StoreResult<Arc<dyn ObjectStore>> {
    if opts.buckets <= 1 {
        return open_one(target, opts).await;
    }
    let targets = buckets::bucket_targets(target, opts.buckets)
        .map_err(|m| StoreError::new(ErrorClass::Other, target.to_string(), m))?;
    let mut stores = Vec::with_capacity(targets.len());
    // An S3 store per bucket shares the first one's client (and so its
    // connection pool): N buckets are not N pools.
    let mut first_s3: Option<Arc<s3::S3Store>> = None;
    for t in &targets {
        let store: Arc<dyn ObjectStore> = match (&first_s3, t.strip_prefix("s3://")) {
            (Some(first), Some(rest)) => Arc::new(first.sibling(rest)?),
            (None, Some(rest)) => {
                let s = Arc::new(open_s3(rest, opts).await?);
                first_s3 = Some(s.clone());
                s
            }
            _ => open_one(t, opts).await?,
        };
        stores.push(store);
    }
    Ok(Arc::new(buckets::BucketSet::new(target, stores)?))
}

async fn open_s3(rest: &str, opts: &OpenOptions) -> StoreResult<s3::S3Store> {
    let mut config = s3::S3Config::from_lookup(|name| opts.var(name));
    if let Some(e) = &opts.endpoint {
        config.endpoint_url = Some(e.clone());
    }
    s3::S3Store::open(rest, &config, opts).await
}

/// [`open`] of one target, one bucket.
async fn open_one(target: &str, opts: &OpenOptions) -> StoreResult<Arc<dyn ObjectStore>> {
    let uri = TargetUri::parse(target)
        .map_err(|m| StoreError::new(ErrorClass::Other, target.to_string(), m))?;
    if opts.endpoint.is_some() && !matches!(uri.scheme.as_str(), "s3" | "az" | "gs") {
        return Err(StoreError::new(
            ErrorClass::NotSupported,
            uri.to_string(),
            "endpoints apply to network backends only (s3://, az://, gs://)",
        ));
    }
    match uri.scheme.as_str() {
        "file" => Ok(Arc::new(file::FileStore::new(&uri.rest)?)),
        "direct" => Ok(Arc::new(direct::DirectStore::open_uri(&uri.rest, opts)?)),
        "az" => Ok(Arc::new(azure::AzureStore::open(&uri.rest, opts)?)),
        "gs" => Ok(Arc::new(gcs::GcsStore::open(&uri.rest, opts).await?)),
        #[cfg(any(test, feature = "test-support"))]
        "mem" => Ok(capacity::wrap(
            &uri.rest,
            memory::MemoryStore::named(&uri.rest),
        )),
        #[cfg(not(any(test, feature = "test-support")))]
        "mem" => Ok(memory::MemoryStore::named(&uri.rest)),
        "s3" => Ok(Arc::new(open_s3(&uri.rest, opts).await?)),
        other => Err(StoreError::new(
            ErrorClass::NotSupported,
            uri.to_string(),
            format!("the `{other}://` backend is not available in this build"),
        )),
    }
}
