//! The `az://` object API past the core ops, as inherent methods of
//! [`AzureStore`] that its `ObjectStore` impl forwards to.
//!
//! - Copy is `Copy Blob` from the source blob's URL in the same container,
//!   then polling the destination's copy status while it is `pending`.
//!   Not the synchronous `Copy Blob From URL`: that one authorizes its
//!   source only by a SAS or OAuth token in the source URL, never by the
//!   shared key signing the request, so it cannot copy a private blob with
//!   a key. A store opened with a SAS puts its SAS on the source URL too
//!   (Azure authorizes a same-account source by either).
//! - Append writes an append blob: `Append Block` first, and only when the
//!   blob is missing `Put Blob` (blob type `AppendBlob`) and the append
//!   again, so an append costs one request once the blob exists. Data over
//!   [`MAX_APPEND_BLOCK`] goes as several blocks, in order.
//! - Tags are blob index tags (`Set Blob Tags`, `Get Blob Tags`).
//! - Batch delete: this crate has no `Blob Batch` call, so `delete_many`
//!   deletes in parallel, [`PARALLEL_DELETES`] at once, and reports
//!   Azure's batch limit ([`BATCH_LIMIT`]) so batches are sized as they
//!   would be for a real batch call.

use std::time::Duration;

use azure_core::StatusCode;
use azure_core::prelude::IfMatchCondition;
use azure_storage_blobs::blob::CopyStatus;
use azure_storage_blobs::prelude::Tags as AzureTags;
use bytes::Bytes;
use futures::{StreamExt, stream};

use super::{AzureStore, error};
use crate::store::http::{first_line, redact};
use crate::store::{CopyPlan, ErrorClass, StoreError, StoreResult, Tags};

/// Most bytes one `Append Block` takes: the service's limit.
pub(super) const MAX_APPEND_BLOCK: usize = 4 << 20;

/// Most blobs one `Blob Batch` request takes on Azure: what
/// `batch_limit` reports.
pub(super) const BATCH_LIMIT: usize = 256;

/// Deletes in flight at once in one `delete_many`: enough to hide round
/// trips, bounded so a batch cannot open hundreds of connections.
pub(super) const PARALLEL_DELETES: usize = 32;

/// First wait before polling a pending copy again; doubled up to
/// [`COPY_POLL_MAX`]. Polling has no bound of its own: the engine's op
/// timer ends a copy that stays pending too long.
const COPY_POLL_FIRST: Duration = Duration::from_millis(10);
const COPY_POLL_MAX: Duration = Duration::from_secs(1);

impl AzureStore {
    /// `Copy Blob` of `src` to `dst`, waiting until the copy is no longer
    /// pending. Returns `plan.size`: the service reports progress, not a
    /// byte count, for a finished copy.
    pub(super) async fn copy_blob(&self, src: &str, dst: &str, plan: CopyPlan) -> StoreResult<u64> {
        let what = format!("COPY `{src}` to `{dst}`");
        let mut source = self.blob(src).url().map_err(|e| self.err(&e, &what))?;
        if let Some(sas) = &self.source_sas {
            source.set_query(Some(sas));
        }
        let target = self.blob(dst);
        let started = target.copy(source).await.map_err(|e| self.err(&e, &what))?;
        let mut status = started.copy_status;
        let mut wait = COPY_POLL_FIRST;
        let mut description = None;
        while status == CopyStatus::Pending {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(COPY_POLL_MAX);
            let props = target
                .get_properties()
                .await
                .map_err(|e| self.err(&e, &format!("{what}: copy status")))?
                .blob
                .properties;
            if props.copy_id.as_ref() != Some(&started.copy_id) {
                // Another copy (or a PUT) replaced ours meanwhile: ours is
                // gone, whatever its end.
                return Err(StoreError::new(
                    ErrorClass::Other,
                    &self.endpoint,
                    format!("{what}: the destination was replaced while the copy ran"),
                ));
            }
            // No status on a blob whose copy id is ours cannot happen; read
            // it as done rather than poll forever.
            status = props.copy_status.unwrap_or(CopyStatus::Success);
            description = props.copy_status_description;
        }
        if status != CopyStatus::Success {
            // The service's description may quote the source URL, SAS and
            // all: cut query strings and scrub our secret, as for errors.
            let why = description.map(|d| format!(": {}", first_line(&d)));
            return Err(self.scrub(StoreError::new(
                ErrorClass::Other,
                &self.endpoint,
                redact(&format!("{what}: copy {status}{}", why.unwrap_or_default())),
            )));
        }
        Ok(plan.size)
    }

    /// Appends `data` to the append blob `key`, creating it when missing.
    /// Several blocks are not atomic: a failure between two leaves the
    /// earlier ones appended, as any client's would.
    pub(super) async fn append_blob(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let what = format!("APPEND `{key}`");
        let blob = self.blob(key);
        if data.is_empty() {
            // Append Block refuses an empty body: an empty append only
            // makes sure the blob exists.
            return self.create_append_blob(key).await;
        }
        let mut created = false;
        let mut offset = 0;
        while offset < data.len() {
            let end = data.len().min(offset + MAX_APPEND_BLOCK);
            match blob.append_block(data.slice(offset..end)).await {
                Ok(_) => offset = end,
                // Only the blob missing (not its container) makes it: the
                // first block found no blob, so make it and send it again.
                Err(e) if !created && error::code_of(&e) == Some("BlobNotFound") => {
                    self.create_append_blob(key).await?;
                    created = true;
                }
                Err(e) => return Err(self.err(&e, &what)),
            }
        }
        Ok(())
    }

    /// `Put Blob` of an empty append blob, only if `key` does not exist
    /// (`If-None-Match: *`): one made meanwhile by another appender is
    /// kept, not truncated.
    async fn create_append_blob(&self, key: &str) -> StoreResult<()> {
        let what = format!("APPEND `{key}`: create the append blob");
        match self
            .blob(key)
            .put_append_blob()
            .if_match(IfMatchCondition::NotMatch("*".into()))
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    error::status_of(&e),
                    Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.err(&e, &what)),
        }
    }

    /// `Set Blob Tags`: `tags` replace all of `key`'s.
    pub(super) async fn set_blob_tags(
        &self,
        key: &str,
        tags: &[(String, String)],
    ) -> StoreResult<()> {
        let what = format!("TAG `{key}`");
        let mut set = AzureTags::new();
        set.extend(tags.iter().cloned());
        self.blob(key)
            .set_tags(set)
            .await
            .map(|_| ())
            .map_err(|e| self.err(&e, &what))
    }

    /// `Get Blob Tags`, in the order the service lists them.
    pub(super) async fn blob_tags(&self, key: &str) -> StoreResult<Tags> {
        let what = format!("GET_TAGS `{key}`");
        let got = self
            .blob(key)
            .get_tags()
            .await
            .map_err(|e| self.err(&e, &what))?;
        Ok(got.tags.into_iter().collect())
    }

    /// Deletes `keys` [`PARALLEL_DELETES`] at a time; one result per key,
    /// in order.
    pub(super) async fn delete_parallel(&self, keys: &[String]) -> Vec<StoreResult<()>> {
        use crate::store::ObjectStore;
        // By index: a closure over `&String` is not general enough for the
        // `Send` check async_trait's boxed future makes.
        stream::iter(0..keys.len())
            .map(|i| self.delete(&keys[i]))
            .buffered(PARALLEL_DELETES)
            .collect()
            .await
    }
}
