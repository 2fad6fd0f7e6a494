//! The object API past the core ops: the types of server-side copy,
//! versions, tags, retention and batch deletes, and which backend has
//! which of them ([`Feature`], [`scheme_has`]), so a plan that asks a
//! backend for what it certainly lacks is refused at its key.
//!
//! The [`ObjectStore`](super::ObjectStore) methods of these ops default to
//! a `not_supported` error; each backend replaces the ones it has.

use std::time::SystemTime;

use super::{ErrorClass, StoreError, StoreResult};

/// The suffix of a `copy`'s destination beside its source key
/// (`<key>.copy`): a side object, which the engine keeps, cleans up and
/// [`super::buckets`] routes with its key.
pub const COPY_SUFFIX: &str = ".copy";

/// The suffix of an `append`'s object beside its key (`<key>.append`).
pub const APPEND_SUFFIX: &str = ".append";

/// Every side-object suffix.
pub const SIDE_SUFFIXES: [&str; 2] = [COPY_SUFFIX, APPEND_SUFFIX];

/// The key a side object belongs to (`k` for `k.copy` or `k.append`), or
/// `key` itself.
pub fn base_key(key: &str) -> &str {
    SIDE_SUFFIXES
        .iter()
        .find_map(|s| key.strip_suffix(s))
        .unwrap_or(key)
}

/// A tag set: `key=value` pairs, in the order they were set.
pub type Tags = Vec<(String, String)>;

/// How a server-side copy is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyPlan {
    /// Bytes of the source object (what the copy moves).
    pub size: u64,
    /// Above this many bytes an object store copies in parts (S3
    /// UploadPartCopy), each part this size; at or below, in one request
    /// (CopyObject).
    pub part_size: u64,
}

/// One version of an object, as a versions listing gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionMeta {
    /// The key, without the store's prefix (as [`super::ObjectMeta`]'s).
    pub key: String,
    /// The server's version id.
    pub version: String,
    pub size: u64,
    /// A delete marker, not a version with content.
    pub delete_marker: bool,
}

/// One page of a versions listing, in key order.
#[derive(Clone, Debug, Default)]
pub struct VersionPage {
    pub entries: Vec<VersionMeta>,
    /// Where the next page starts (opaque to the caller); `None` on the
    /// last page.
    pub next: Option<String>,
}

/// What a bucket must have before a stage writes to it, for the ops the
/// plan uses: set when Chorus creates the bucket, checked when it exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketSetup {
    /// Versions kept (`versioning: true`).
    pub versioning: bool,
    /// Object lock (the plan has `retention`); implies versioning.
    pub object_lock: bool,
}

/// An op of the object API beyond the core, by what a backend must have
/// for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    Copy,
    Append,
    Tags,
    Retention,
    Versions,
}

impl Feature {
    pub fn name(self) -> &'static str {
        match self {
            Feature::Copy => "server-side copy",
            Feature::Append => "appends",
            Feature::Tags => "object tags",
            Feature::Retention => "object-lock retention",
            Feature::Versions => "object versions",
        }
    }
}

/// Whether the `scheme://` backend has `feature`: `Ok` when it has it (or
/// only its server can tell, as S3 appends), `Err` with the sentence a
/// plan error shows when it certainly has not, in Chorus.
pub fn scheme_has(scheme: &str, feature: Feature) -> Result<(), String> {
    use Feature::*;
    let has = match (scheme, feature) {
        // mem:// has every op: it is where the engine's handling of each is
        // tested (harness tests, never a backend under test).
        ("mem", _) => true,
        ("s3", _) => true,
        ("az", Copy | Append | Tags) => true,
        ("gs", Copy) => true,
        ("file", Copy | Append) => true,
        ("direct", Append) => true,
        _ => false,
    };
    if has {
        return Ok(());
    }
    let why = match (scheme, feature) {
        ("file" | "direct", Tags | Retention | Versions) => "a file system has none",
        ("direct", Copy) => "O_DIRECT has no server-side copy; use file:// for copy_file_range",
        ("gs", Append) => "GCS objects cannot be appended to",
        ("gs", Tags) => "GCS has metadata, not tags",
        (_, Retention) => "Chorus sets retention on S3 object lock only",
        (_, Versions) => "Chorus keeps versions on S3 only",
        _ => "Chorus does not have it there",
    };
    Err(format!(
        "the `{scheme}://` backend has no {}: {why}",
        feature.name()
    ))
}

/// The error of an op a backend lacks: class `not_supported`, naming it.
pub fn not_supported(endpoint: &str, op: &str, key: &str) -> StoreError {
    StoreError::new(
        ErrorClass::NotSupported,
        endpoint,
        format!("{op} `{key}`: this backend does not have it"),
    )
}

/// What a `delete_many` answered, as one op's result: `Ok` when every key
/// went, else an error naming how many of how many failed and the first
/// failure (its class is the op's).
pub fn batch_result(results: &[StoreResult<()>], endpoint: &str) -> StoreResult<()> {
    let failed = results.iter().filter(|r| r.is_err()).count();
    match results.iter().find_map(|r| r.as_ref().err()) {
        None => Ok(()),
        Some(first) => Err(StoreError::new(
            first.class,
            endpoint,
            format!(
                "{failed} of {} keys failed; first: {}",
                results.len(),
                first.message
            ),
        )),
    }
}

/// `now + for_secs` as a retention date, whole seconds (what S3 keeps).
pub fn retain_until(for_secs: u64) -> SystemTime {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(now + for_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_certain_gaps_name_the_backend() {
        assert!(scheme_has("s3", Feature::Retention).is_ok());
        assert!(scheme_has("az", Feature::Append).is_ok());
        let e = scheme_has("file", Feature::Retention).unwrap_err();
        assert!(e.contains("file://") && e.contains("retention"), "{e}");
        assert!(scheme_has("gs", Feature::Append).is_err());
        assert!(scheme_has("direct", Feature::Copy).is_err());
    }

    #[test]
    fn a_partial_batch_names_how_many_failed() {
        let e = StoreError::new(ErrorClass::AccessDenied, "x", "DELETE `k`: denied");
        let r = batch_result(&[Ok(()), Err(e.clone()), Ok(()), Err(e)], "ep").unwrap_err();
        assert_eq!(r.class, ErrorClass::AccessDenied);
        assert!(r.message.starts_with("2 of 4 keys failed"), "{}", r.message);
        assert!(batch_result(&[Ok(())], "ep").is_ok());
    }
}
