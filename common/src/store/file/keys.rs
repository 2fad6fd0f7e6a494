//! Keys and errors of the local stores (`file://`, `direct://`): a key is
//! a relative path that stays inside the root, and an I/O error's kind is
//! its op-log class.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::store::{ErrorClass, StoreError, StoreResult};

/// The path of `key` under `root`, refusing keys that would leave it
/// (empty, absolute, or with `..`): the rule of every local store.
pub(crate) fn key_path(root: &Path, uri: &str, key: &str) -> StoreResult<PathBuf> {
    check_key(uri, key)?;
    Ok(root.join(key))
}

/// Refuses keys that would leave the root: empty, absolute, or with `..`.
fn check_key(uri: &str, key: &str) -> StoreResult<()> {
    if !key_is_safe(key) {
        return Err(StoreError::new(
            ErrorClass::Other,
            uri,
            format!("key `{key}` is not a relative path inside the root"),
        ));
    }
    Ok(())
}

/// Whether `key` names a path inside the root: not empty, not absolute,
/// no `..` (nor `.`) component.
pub(super) fn key_is_safe(key: &str) -> bool {
    !key.is_empty()
        && Path::new(key)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// The error class of a local I/O error.
pub(crate) fn class_of(e: &io::Error) -> ErrorClass {
    match e.kind() {
        io::ErrorKind::NotFound => ErrorClass::NotFound,
        io::ErrorKind::PermissionDenied => ErrorClass::AccessDenied,
        io::ErrorKind::TimedOut => ErrorClass::Timeout,
        _ => ErrorClass::Other,
    }
}
