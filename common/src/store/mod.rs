//! One async [`ObjectStore`] trait, with one module per backend.
//!
//! The trait is deliberately small: the ops a benchmark issues, each
//! reporting what the op-log needs (bytes moved, time to first byte) rather
//! than handing data back by default. Backends map their private errors into
//! [`StoreError`], whose [`ErrorClass`] is what the op-log's `error` column
//! starts with. Every store `Display`s itself as the URI it serves, so a run
//! can print its whole store stack.
//!
//! Backends: [`file`] (`file://`), [`memory`] (`mem://`, in-process, for
//! harness tests and overhead measurement). `direct://`, `s3://`, `az://` and
//! `gs://` are named by [`uri::SCHEMES`] and answered by [`open`] with a
//! clear "not available in this build" error until their modules land.

pub mod file;
pub mod memory;
pub mod uri;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use uri::TargetUri;

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

/// The result of a GET.
#[derive(Clone, Debug)]
pub struct GetOutcome {
    /// Bytes received.
    pub bytes: u64,
    /// When the first byte arrived, where the backend can tell.
    pub first_byte: Option<Instant>,
    /// The content, only when asked for (to verify it); otherwise the bytes
    /// are read and dropped, as a reader that discards them would.
    pub data: Option<Bytes>,
}

/// One page of a listing.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub entries: Vec<ObjectMeta>,
    /// True when more entries exist beyond `limit`.
    pub truncated: bool,
}

/// An object store, as the workload engine sees it.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Display + fmt::Debug {
    /// The endpoint this store sends ops to, for the op-log `endpoint`
    /// column (a URL for network stores, the root for local ones).
    fn endpoint(&self) -> &str;

    /// Writes `data` as the whole content of `key`, replacing any old one.
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()>;

    /// Reads all of `key`.
    async fn get(&self, key: &str, keep_data: bool) -> StoreResult<GetOutcome>;

    /// Size of `key`; `NotFound` when it does not exist.
    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta>;

    /// Removes `key`; `NotFound` when it did not exist.
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// Objects whose keys start with `prefix`, in key order, at most `limit`.
    async fn list(&self, prefix: &str, limit: usize) -> StoreResult<ListPage>;
}

/// Opens the store a target URI names.
pub async fn open(target: &str) -> StoreResult<Arc<dyn ObjectStore>> {
    let uri = TargetUri::parse(target)
        .map_err(|m| StoreError::new(ErrorClass::Other, target.to_string(), m))?;
    match uri.scheme.as_str() {
        "file" => Ok(Arc::new(file::FileStore::new(&uri.rest)?)),
        "mem" => Ok(memory::MemoryStore::named(&uri.rest)),
        other => Err(StoreError::new(
            ErrorClass::NotSupported,
            uri.to_string(),
            format!("the `{other}://` backend is not available in this build"),
        )),
    }
}

#[cfg(test)]
pub(crate) mod conformance {
    //! Checks every store must pass; each backend's tests call [`check_all`].

    use super::*;

    pub async fn check_all(store: &dyn ObjectStore, prefix: &str) {
        let k1 = format!("{prefix}a/1");
        let k2 = format!("{prefix}a/2");
        let k3 = format!("{prefix}b/3");
        // Missing object: every read op says NotFound.
        assert_eq!(
            store.get(&k1, false).await.unwrap_err().class,
            ErrorClass::NotFound
        );
        assert_eq!(
            store.stat(&k1).await.unwrap_err().class,
            ErrorClass::NotFound
        );
        assert_eq!(
            store.delete(&k1).await.unwrap_err().class,
            ErrorClass::NotFound
        );

        store.put(&k1, Bytes::from_static(b"hello")).await.unwrap();
        store
            .put(&k2, Bytes::from(vec![7u8; 100_000]))
            .await
            .unwrap();
        store.put(&k3, Bytes::new()).await.unwrap();

        let g = store.get(&k1, true).await.unwrap();
        assert_eq!(g.bytes, 5);
        assert_eq!(g.data.as_deref(), Some(&b"hello"[..]));
        let g = store.get(&k2, false).await.unwrap();
        assert_eq!(g.bytes, 100_000);
        assert!(g.data.is_none());
        assert_eq!(store.stat(&k3).await.unwrap().size, 0);

        // Overwrite replaces the whole content.
        store.put(&k2, Bytes::from_static(b"xy")).await.unwrap();
        assert_eq!(store.stat(&k2).await.unwrap().size, 2);

        let page = store.list(&format!("{prefix}a/"), 10).await.unwrap();
        let keys: Vec<_> = page.entries.iter().map(|m| m.key.clone()).collect();
        assert_eq!(keys, vec![k1.clone(), k2.clone()]);
        assert!(!page.truncated);
        let page = store.list(prefix, 2).await.unwrap();
        assert_eq!(page.entries.len(), 2);
        assert!(page.truncated);

        store.delete(&k1).await.unwrap();
        assert_eq!(
            store.stat(&k1).await.unwrap_err().class,
            ErrorClass::NotFound
        );
        store.delete(&k2).await.unwrap();
        store.delete(&k3).await.unwrap();
        assert!(store.list(prefix, 10).await.unwrap().entries.is_empty());
    }
}
