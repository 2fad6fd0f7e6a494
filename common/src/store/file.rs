//! `file:///path`: objects as files under a root directory, with large
//! buffered I/O.
//!
//! Keys map to paths below the root (`a/b` is `<root>/a/b`); parent
//! directories are made on PUT. Blocking file calls run on tokio's blocking
//! pool so workers never stall a runtime thread.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ErrorClass, GetOutcome, ListPage, ObjectMeta, ObjectStore, StoreError, StoreResult};

/// Size of one read syscall on GET: large enough that big objects take few
/// syscalls, small enough to stay in cache when the data is dropped.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// A directory of files as an object store.
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
    uri: String,
}

impl FileStore {
    /// A store rooted at `root` (made if missing).
    pub fn new(root: &str) -> StoreResult<FileStore> {
        let uri = format!("file://{root}");
        fs::create_dir_all(root).map_err(|e| {
            StoreError::new(
                class_of(&e),
                &uri,
                format!("cannot create root directory: {e}"),
            )
        })?;
        Ok(FileStore {
            root: PathBuf::from(root),
            uri,
        })
    }

    /// The path of `key`, refusing keys that would leave the root.
    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        let rel = Path::new(key);
        let safe = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(StoreError::new(
                ErrorClass::Other,
                &self.uri,
                format!("key `{key}` is not a relative path inside the root"),
            ));
        }
        Ok(self.root.join(rel))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        tokio::task::spawn_blocking(f).await.map_err(|e| {
            StoreError::new(
                ErrorClass::Other,
                &self.uri,
                format!("I/O task failed: {e}"),
            )
        })?
    }
}

fn class_of(e: &io::Error) -> ErrorClass {
    match e.kind() {
        io::ErrorKind::NotFound => ErrorClass::NotFound,
        io::ErrorKind::PermissionDenied => ErrorClass::AccessDenied,
        io::ErrorKind::TimedOut => ErrorClass::Timeout,
        _ => ErrorClass::Other,
    }
}

impl fmt::Display for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

#[async_trait]
impl ObjectStore for FileStore {
    fn endpoint(&self) -> &str {
        &self.uri
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let path = self.path(key)?;
        let (key, this_err) = (key.to_string(), self.err_fn());
        self.blocking(move || {
            let write = || -> io::Result<()> {
                let mut f = match fs::File::create(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if let Some(parent) = path.parent() {
                            fs::create_dir_all(parent)?;
                        }
                        fs::File::create(&path)?
                    }
                    Err(e) => return Err(e),
                };
                f.write_all(&data)
            };
            write().map_err(|e| this_err(&key, e))
        })
        .await
    }

    async fn get(&self, key: &str, keep_data: bool) -> StoreResult<GetOutcome> {
        let path = self.path(key)?;
        let (key, this_err) = (key.to_string(), self.err_fn());
        self.blocking(move || {
            let read = || -> io::Result<GetOutcome> {
                let mut f = fs::File::open(&path)?;
                let mut kept = Vec::new();
                let mut buf = vec![0u8; READ_CHUNK_BYTES];
                let mut total = 0u64;
                let mut first_byte = None;
                loop {
                    let n = f.read(&mut buf)?;
                    if first_byte.is_none() {
                        first_byte = Some(Instant::now());
                    }
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                    if keep_data {
                        kept.extend_from_slice(&buf[..n]);
                    }
                }
                Ok(GetOutcome {
                    bytes: total,
                    first_byte,
                    data: keep_data.then(|| Bytes::from(kept)),
                })
            };
            read().map_err(|e| this_err(&key, e))
        })
        .await
    }

    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
        let path = self.path(key)?;
        let (key, this_err) = (key.to_string(), self.err_fn());
        self.blocking(move || {
            let meta = fs::metadata(&path).map_err(|e| this_err(&key, e))?;
            if meta.is_dir() {
                return Err(this_err(&key, io::Error::from(io::ErrorKind::NotFound)));
            }
            Ok(ObjectMeta {
                key,
                size: meta.len(),
            })
        })
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        let (key, this_err) = (key.to_string(), self.err_fn());
        self.blocking(move || fs::remove_file(&path).map_err(|e| this_err(&key, e)))
            .await
    }

    async fn list(&self, prefix: &str, limit: usize) -> StoreResult<ListPage> {
        let root = self.root.clone();
        let (prefix, this_err) = (prefix.to_string(), self.err_fn());
        self.blocking(move || {
            // Start at the deepest directory the prefix names, then walk in
            // key order so the first `limit` matches are the right ones.
            let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
            let mut page = ListPage::default();
            let start = root.join(dir_part);
            let base = if dir_part.is_empty() {
                String::new()
            } else {
                format!("{dir_part}/")
            };
            match walk(&start, &base, &prefix, limit, &mut page) {
                Ok(()) => Ok(page),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ListPage::default()),
                Err(e) => Err(this_err(&prefix, e)),
            }
        })
        .await
    }
}

impl FileStore {
    /// An owned error builder for closures sent to the blocking pool.
    fn err_fn(&self) -> impl Fn(&str, io::Error) -> StoreError + Send + 'static {
        let uri = self.uri.clone();
        move |key, e| StoreError::new(class_of(&e), &uri, format!("`{key}`: {e}"))
    }
}

/// Adds the files below `dir` (whose keys start with `base`) that match
/// `prefix`, in key order, stopping after `limit` (then sets `truncated`).
fn walk(dir: &Path, base: &str, prefix: &str, limit: usize, page: &mut ListPage) -> io::Result<()> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not a valid key; such files were not written by us
        };
        let is_dir = entry.file_type()?.is_dir();
        // Sort as the keys sort: a directory's keys all start `name/`.
        let sort_key = if is_dir { format!("{name}/") } else { name };
        entries.push((sort_key, is_dir));
    }
    entries.sort();
    for (name, is_dir) in entries {
        let key = format!("{base}{name}");
        if is_dir {
            // Descend only where the prefix can still match.
            if key.starts_with(prefix) || prefix.starts_with(&key) {
                walk(
                    &dir.join(name.trim_end_matches('/')),
                    &key,
                    prefix,
                    limit,
                    page,
                )?;
            }
        } else if key.starts_with(prefix) {
            if page.entries.len() == limit {
                page.truncated = true;
            } else {
                let size = fs::metadata(dir.join(&name))?.len();
                page.entries.push(ObjectMeta { key, size });
            }
        }
        if page.truncated {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
        super::super::conformance::check_all(&store, "p/").await;
    }

    #[tokio::test]
    async fn refuses_keys_outside_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
        for key in ["../x", "/etc/passwd", "a/../../b", ""] {
            let e = store.put(key, Bytes::new()).await.unwrap_err();
            assert!(e.message.contains("not a relative path"), "{key}: {e}");
        }
    }
}
