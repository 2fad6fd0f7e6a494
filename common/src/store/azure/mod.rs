//! `az://account/container/prefix`: Azure Blob Storage through
//! `azure_storage_blobs` 0.21, and Azurite for tests.
//!
//! - Credentials and endpoint: [`AzureConfig`] (shared key, SAS or
//!   connection string from `AZURE_STORAGE_*`; `AZURE_STORAGE_ENDPOINT` for
//!   Azurite's path-style `http://127.0.0.1:PORT/devstoreaccount1` and other
//!   custom endpoints, sent through `CloudLocation::Custom`).
//! - Keys are `prefix/key` in the container: the URI's prefix (with a `/`
//!   added if it has none) is put in front of every key and taken off again
//!   in listings, so plans see the same keys as on any other backend.
//! - The SDK's retry policy is off (the engine retries and counts each
//!   retry), and the store keeps no timer on its requests: the engine's op
//!   timer bounds each op. [`OpenOptions::timeout`] is only the HTTP
//!   client's connect timeout.
//! - GET is one plain request for the whole object or range (the SDK's
//!   default would split it into 1 MiB requests and ask the service for a
//!   CRC64 of small ranges; see `policy.rs`), streamed and dropped unless
//!   asked to keep it; the first byte is the first body chunk.
//! - Multipart PUT is the native block blob form: one `Put Block` per part,
//!   then `Put Block List`.
//! - Copy (`Copy Blob`), append (append blobs), blob index tags and batch
//!   delete are in `more.rs`. Batch delete deletes in parallel, bounded:
//!   this crate has no `Blob Batch` call.

mod config;
pub(crate) mod error;
mod more;
mod policy;

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use azure_core::prelude::{Delimiter, MaxResults, NextMarker, Prefix};
use azure_core::{ClientOptions, Policy, RetryOptions, StatusCode, TransportOptions};
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{
    BlobBlockType, BlobClient, BlockId, BlockList, ClientBuilder, ContainerClient,
};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream};

pub use config::{AzureConfig, AzureCredential, EMULATOR_ACCOUNT};

use super::{
    ByteRange, ChunkSink, CopyPlan, ErrorClass, GetOptions, GetOutcome, ListOptions, ListPage,
    ObjectMeta, ObjectStore, OpenOptions, PartPlan, PartSource, StoreError, StoreResult, Tags,
};
use crate::clock::Mono;

/// Size of the one "chunk" a GET asks the SDK for. The SDK splits reads
/// into chunks (1 MiB by default, one request each); asking for 1 PiB makes
/// every GET a single request, and `policy::PlainGet` then drops this
/// marker range so a whole-object GET carries no range at all. Kept below
/// 2^53 so servers that parse numbers as doubles (Azurite is Node.js) read
/// a caller's range ends exactly.
const WHOLE_OBJECT_CHUNK_BYTES: u64 = 1 << 50;

/// Most entries one LIST page may ask for: the service's own cap.
const MAX_LIST_PAGE: u32 = 5000;

/// Most blocks in one block blob (service limit), so an oversized multipart
/// PUT fails before it sends anything.
const MAX_BLOCKS: u64 = 50_000;

/// Digits in a block id: ids must all have the same length, and 16 decimal
/// digits cover any part index.
const BLOCK_ID_DIGITS: usize = 16;

/// An Azure Blob container (or a prefix of one) as an object store.
pub struct AzureStore {
    container: ContainerClient,
    /// `az://account/container/prefix`, for `Display`.
    uri: String,
    /// The blob service URL (no query string): the op-log endpoint.
    endpoint: String,
    /// Put in front of every key; empty or ending in `/`.
    prefix: String,
    /// Scrubbed from every error message, whatever layer produced it.
    secret: Option<String>,
    /// The SAS (no `?`) when the store was opened with one: a copy's
    /// source URL carries it, as Azure authorizes the source by it.
    source_sas: Option<String>,
    /// This instance created the container (not one that was there).
    made: AtomicBool,
}

impl fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the SDK clients' Debug would print the credentials.
        f.debug_struct("AzureStore")
            .field("uri", &self.uri)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for AzureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// Splits `account/container/prefix` (the part of an `az://` URI after the
/// scheme) into its three parts; the prefix is `""` or ends in `/`.
pub fn parse_target(rest: &str) -> Result<(String, String, String), String> {
    let mut parts = rest.splitn(3, '/');
    let account = parts.next().unwrap_or("");
    let container = parts.next().unwrap_or("");
    if account.is_empty() || container.is_empty() {
        return Err(format!(
            "`az://{rest}` needs an account and a container: az://account/container[/prefix]"
        ));
    }
    let prefix = parts.next().unwrap_or("").trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((account.to_string(), container.to_string(), prefix))
}

impl AzureStore {
    /// Opens `az://{rest}` with credentials from the environment (forwarded
    /// variables first, see [`OpenOptions::var`]).
    pub fn open(rest: &str, opts: &OpenOptions) -> StoreResult<AzureStore> {
        let uri = format!("az://{rest}");
        let (account, _, _) =
            parse_target(rest).map_err(|m| StoreError::new(ErrorClass::Other, &uri, m))?;
        let mut config = AzureConfig::from_lookup(&account, |name| opts.var(name))
            .map_err(|m| StoreError::new(ErrorClass::AccessDenied, &uri, m))?;
        if let Some(e) = &opts.endpoint {
            config.endpoint = Some(e.clone());
        }
        AzureStore::with_config(rest, config, opts)
    }

    /// Opens `az://{rest}` with an explicit config; the account in `rest`
    /// must be the config's.
    pub fn with_config(
        rest: &str,
        config: AzureConfig,
        opts: &OpenOptions,
    ) -> StoreResult<AzureStore> {
        let uri = format!("az://{rest}");
        let (account, container, prefix) =
            parse_target(rest).map_err(|m| StoreError::new(ErrorClass::Other, &uri, m))?;
        let endpoint = config.blob_endpoint();
        if account != config.account {
            return Err(StoreError::new(
                ErrorClass::Other,
                &endpoint,
                format!(
                    "the target names account `{account}` but the credentials are for `{}`",
                    config.account
                ),
            ));
        }
        let credentials = match &config.credential {
            AzureCredential::Key(k) => StorageCredentials::access_key(&account, k.clone()),
            AzureCredential::Sas(s) => StorageCredentials::sas_token(s).map_err(|_| {
                StoreError::new(
                    ErrorClass::AccessDenied,
                    &endpoint,
                    "the SAS token is not a valid query string",
                )
            })?,
            AzureCredential::Anonymous => StorageCredentials::anonymous(),
        };
        // Custom even for the public cloud URL: one code path, and the
        // endpoint we print is exactly the one requests go to.
        let location = CloudLocation::Custom {
            account: account.clone(),
            uri: endpoint.clone(),
        };
        // azure_core's own client keeps no idle connections (a workaround
        // for an old hyper hang), so every request would open a new TCP
        // connection: latency would include the handshake, and a long run
        // would pile up TIME_WAIT sockets until ports run out. Ours keeps
        // one idle connection per worker, with TCP_NODELAY.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(opts.concurrency.max(1) as usize)
            .tcp_nodelay(true)
            // Connecting only, not an op timer: it ends once a connection
            // is up; the engine's timer bounds each op as a whole. Of the
            // same length and inside it, it can end only an op that spent
            // all its time connecting, and then says so (never sent).
            .connect_timeout(opts.timeout)
            .build()
            .map_err(|e| {
                StoreError::new(ErrorClass::Other, &endpoint, format!("HTTP client: {e}"))
            })?;
        let options = ClientOptions::default()
            .transport(TransportOptions::new(Arc::new(http)))
            // The engine owns retries and logs each one.
            .retry(RetryOptions::none())
            // Per-call policies run before the crate's signing policy, so
            // the signature covers the request as it is sent.
            .per_call_policies(vec![
                Arc::new(policy::PlainGet::new(WHOLE_OBJECT_CHUNK_BYTES)) as Arc<dyn Policy>,
            ]);
        let container_client = ClientBuilder::with_location(location, credentials)
            .client_options(options)
            .container_client(container);
        Ok(AzureStore {
            container: container_client,
            uri,
            endpoint,
            prefix,
            secret: config.credential.secret().map(str::to_string),
            source_sas: match &config.credential {
                AzureCredential::Sas(s) => Some(s.trim_start_matches('?').to_string()),
                _ => None,
            },
            made: AtomicBool::new(false),
        })
    }

    fn blob(&self, key: &str) -> BlobClient {
        self.container.blob_client(format!("{}{key}", self.prefix))
    }

    /// Maps an SDK error, then scrubs our own secret out of it in case some
    /// layer quoted it.
    fn err(&self, e: &azure_core::Error, what: &str) -> StoreError {
        self.scrub(error::map(e, &self.endpoint, what))
    }

    fn scrub(&self, mut e: StoreError) -> StoreError {
        if let Some(s) = self.secret.as_deref().filter(|s| !s.is_empty()) {
            e.message = e.message.replace(s, "<redacted>");
        }
        e
    }

    /// The size of `key` (a `Get Blob Properties`).
    async fn size_of(&self, key: &str) -> StoreResult<u64> {
        let props = self
            .blob(key)
            .get_properties()
            .await
            .map_err(|e| self.err(&e, &format!("STAT `{key}`")))?;
        Ok(props.blob.properties.content_length)
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
        let mut req = self.blob(key).get().chunk_size(WHOLE_OBJECT_CHUNK_BYTES);
        if let Some(r) = opts.range {
            // A zero length still asks for one byte: `bytes=o-(o-1)` is not
            // a range, and servers would answer it with the whole object.
            let len = r.length.clamp(1, WHOLE_OBJECT_CHUNK_BYTES);
            req = req.range(r.offset..r.offset.saturating_add(len));
        }
        // Only the first page: with the chunk size above it holds the whole
        // object or range.
        let mut pages = req.into_stream();
        let page = match pages.next().await {
            Some(Ok(page)) => page,
            Some(Err(e)) => {
                // Azure refuses any range on an empty blob, where the
                // store contract has offset 0 read back as empty.
                let unsatisfiable =
                    error::status_of(&e) == Some(StatusCode::RequestedRangeNotSatisfiable);
                if unsatisfiable
                    && opts.range.is_some_and(|r| r.offset == 0)
                    && self.size_of(key).await? == 0
                {
                    return Ok(GetOutcome {
                        bytes: 0,
                        first_byte: Some(Mono::now()),
                        data: opts.keep_data.then(Bytes::new),
                    });
                }
                return Err(self.err(&e, &what));
            }
            None => {
                return Err(StoreError::new(
                    ErrorClass::Other,
                    &self.endpoint,
                    format!("{what}: the service sent no response"),
                ));
            }
        };
        let response_at = Mono::now();
        let mut body = page.data;
        let mut first_byte = None;
        let mut bytes = 0u64;
        let mut kept = opts.keep_data.then(BytesMut::new);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.err(&e, &format!("{what}: reading the body")))?;
            first_byte.get_or_insert_with(Mono::now);
            if let Some(sink) = sink.as_mut() {
                sink(start + bytes, &chunk)?;
            } else if let Some(buf) = kept.as_mut() {
                buf.extend_from_slice(&chunk);
            }
            bytes += chunk.len() as u64;
        }
        if let Some(r) = opts.range {
            if bytes == 0 && r.offset > 0 {
                // Azure answers a range starting at the end with 416, but
                // Azurite with an empty 206: make both the contract's error.
                return Err(StoreError::new(
                    ErrorClass::Other,
                    &self.endpoint,
                    format!(
                        "{what}: range {}+{} not satisfiable (starts at or past the end)",
                        r.offset, r.length
                    ),
                ));
            }
            if r.length == 0 {
                // Widened to one byte above; hand back what was asked for.
                bytes = 0;
                kept = kept.map(|_| BytesMut::new());
            }
        }
        Ok(GetOutcome {
            bytes,
            // An empty body has no first byte: the response stands for it.
            first_byte: Some(first_byte.unwrap_or(response_at)),
            data: kept.map(BytesMut::freeze),
        })
    }

    async fn list_inner(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        let what = format!("LIST `{prefix}`");
        let limit = NonZeroU32::new((opts.limit.min(MAX_LIST_PAGE as usize)) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let mut req = self
            .container
            .list_blobs()
            .prefix(Prefix::new(format!("{}{prefix}", self.prefix)))
            .max_results(MaxResults::new(limit));
        if let Some(d) = opts.delimiter {
            req = req.delimiter(Delimiter::new(d.to_string()));
        }
        if let Some(token) = &opts.continuation {
            req = req.marker(NextMarker::new(token.clone()));
        }
        let response = match req.into_stream().next().await {
            Some(r) => r.map_err(|e| self.err(&e, &what))?,
            None => return Ok(ListPage::default()),
        };
        let strip = |name: &str| name.strip_prefix(&self.prefix).unwrap_or(name).to_string();
        let entries = response
            .blobs
            .blobs()
            .map(|b| ObjectMeta {
                key: strip(&b.name),
                size: b.properties.content_length,
            })
            .collect();
        let prefixes = response.blobs.prefixes().map(|p| strip(&p.name)).collect();
        Ok(ListPage {
            entries,
            prefixes,
            next: response
                .next_marker
                .map(|m| m.as_str().to_string())
                .filter(|m| !m.is_empty()),
        })
    }
}

#[async_trait]
impl ObjectStore for AzureStore {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let what = format!("PUT `{key}`");
        self.blob(key)
            .put_block_blob(data)
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
        let size = self.size_of(key).await?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
        })
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let what = format!("DELETE `{key}`");
        self.blob(key)
            .delete()
            .await
            .map(|_| ())
            .map_err(|e| self.err(&e, &what))
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        self.list_inner(prefix, opts).await
    }

    /// Block blob upload: `Put Block` per part, then `Put Block List`.
    async fn put_multipart(
        &self,
        key: &str,
        plan: PartPlan<'_>,
        part: PartSource<'_>,
    ) -> StoreResult<u64> {
        let (size, part_size) = (plan.size, plan.part_size.max(1));
        if size == 0 {
            self.put(key, Bytes::new()).await?;
            return Ok(1);
        }
        let parts = size.div_ceil(part_size);
        if parts > MAX_BLOCKS {
            return Err(StoreError::new(
                ErrorClass::Other,
                &self.endpoint,
                format!(
                    "PUT `{key}`: {parts} parts of {part_size} bytes; a block blob holds at most {MAX_BLOCKS} blocks"
                ),
            ));
        }
        let blob = self.blob(key);
        let id = |index: u64| BlockId::new(Bytes::from(format!("{index:0BLOCK_ID_DIGITS$}")));
        // Blocks are staged up to `streams` at once (each made just before
        // it is sent); the list names them in order whatever order they
        // landed in.
        let stage = |index: u64| {
            let blob = &blob;
            async move {
                let (offset, len) = plan.part(index);
                let what = format!("PUT `{key}` block {index}");
                let data = part(offset, len);
                let start = Mono::now();
                blob.put_block(id(index), data)
                    .await
                    .map_err(|e| self.err(&e, &what))?;
                plan.done(offset, len, start);
                Ok(())
            }
        };
        stream::iter(0..parts)
            .map(stage)
            .buffer_unordered(plan.streams.max(1))
            .try_collect::<()>()
            .await?;
        let list = BlockList {
            blocks: (0..parts).map(|i| BlobBlockType::Latest(id(i))).collect(),
        };
        let what = format!("PUT `{key}` block list");
        blob.put_block_list(list)
            .await
            .map_err(|e| self.err(&e, &what))?;
        Ok(parts)
    }

    /// In parallel, bounded (`more.rs`): this crate has no `Blob Batch`.
    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<StoreResult<()>>> {
        Ok(self.delete_parallel(keys).await)
    }

    fn batch_limit(&self) -> usize {
        more::BATCH_LIMIT
    }

    async fn copy(&self, src: &str, dst: &str, plan: CopyPlan) -> StoreResult<u64> {
        self.copy_blob(src, dst, plan).await
    }

    async fn append(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.append_blob(key, data).await
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> StoreResult<()> {
        self.set_blob_tags(key, tags).await
    }

    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        self.blob_tags(key).await
    }

    /// Creates the container, tolerating one that exists (409), and one we
    /// may not create but can use (a container-scoped SAS gets 403 on
    /// create, so check that the container answers).
    async fn ensure_ready(&self) -> StoreResult<()> {
        let what = format!("create container `{}`", self.container.container_name());
        let created = match self.container.create().await {
            Ok(_) => {
                self.made.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if error::status_of(&e) == Some(StatusCode::Conflict) => Ok(()),
            Err(e) => Err(self.err(&e, &what)),
        };
        match created {
            Err(e) if e.class == ErrorClass::AccessDenied => {
                let probe = self.container.get_properties().await;
                probe.map(|_| ()).map_err(|_| e)
            }
            other => other,
        }
    }

    fn buckets_made(&self) -> Vec<String> {
        if self.made.load(Ordering::Relaxed) {
            vec![self.container.container_name().to_string()]
        } else {
            Vec::new()
        }
    }

    /// Deletes the container when it holds no blob at all (Azure would
    /// delete one with blobs in it, under other agents' deletes).
    async fn remove_buckets(&self, names: &[String]) -> StoreResult<u32> {
        let name = self.container.container_name().to_string();
        if !names.contains(&name) {
            return Ok(0);
        }
        let what = format!("delete container `{name}`");
        let one = self
            .container
            .list_blobs()
            .max_results(MaxResults::new(NonZeroU32::MIN))
            .into_stream()
            .next()
            .await;
        if let Some(page) = one {
            let page = page.map_err(|e| self.err(&e, &what))?;
            if page.blobs.blobs().next().is_some() {
                return Err(StoreError::new(
                    ErrorClass::Other,
                    &self.endpoint,
                    format!("{what}: the container is not empty"),
                ));
            }
        }
        self.container
            .delete()
            .await
            .map_err(|e| self.err(&e, &what))?;
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_account_container_prefix() {
        assert_eq!(
            parse_target("acct/cont/a/b").unwrap(),
            ("acct".into(), "cont".into(), "a/b/".into())
        );
        assert_eq!(
            parse_target("acct/cont").unwrap(),
            ("acct".into(), "cont".into(), String::new())
        );
        assert_eq!(parse_target("acct/cont/p/").unwrap().2, "p/");
        assert!(parse_target("acct").is_err());
        assert!(parse_target("acct/").is_err());
    }

    #[test]
    fn store_shows_uri_and_endpoint_but_no_key() {
        let cfg = AzureConfig::new(
            "acct",
            AzureCredential::Key("c2VjcmV0a2V5".into()),
            Some("http://127.0.0.1:1/acct".into()),
        );
        let store = AzureStore::with_config("acct/c/p", cfg, &OpenOptions::default()).unwrap();
        assert_eq!(store.to_string(), "az://acct/c/p");
        assert_eq!(store.endpoint(), "http://127.0.0.1:1/acct");
        assert!(!format!("{store:?}").contains("c2VjcmV0a2V5"));
    }

    #[test]
    fn account_must_match_config() {
        let cfg = AzureConfig::azurite("http://127.0.0.1:1/devstoreaccount1");
        let e = AzureStore::with_config("other/c", cfg, &OpenOptions::default()).unwrap_err();
        assert!(e.message.contains("`other`"), "{e}");
    }
}
