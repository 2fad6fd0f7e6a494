//! `file:///path`: objects as files under a root directory, with large
//! buffered I/O.
//!
//! Keys map to paths below the root (`a/b` is `<root>/a/b`); parent
//! directories are made on PUT. Blocking file calls run on tokio's blocking
//! pool so workers never stall a runtime thread.

use std::fmt;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    ErrorClass, GetOptions, GetOutcome, ListOptions, ListPage, ObjectMeta, ObjectStore, PartSource,
    StoreError, StoreResult, clamp_range, page_from_sorted,
};

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

    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        let path = self.path(key)?;
        let (key, uri, this_err, opts) = (key.to_string(), self.uri.clone(), self.err_fn(), *opts);
        self.blocking(move || {
            let mut f = fs::File::open(&path).map_err(|e| this_err(&key, e))?;
            let mut remaining = u64::MAX;
            if let Some(range) = opts.range {
                let size = f.metadata().map_err(|e| this_err(&key, e))?.len();
                let (offset, len) = clamp_range(range, size, &uri, &key)?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| this_err(&key, e))?;
                remaining = len;
            }
            let mut kept = Vec::new();
            let mut buf = vec![0u8; READ_CHUNK_BYTES];
            let mut total = 0u64;
            let mut first_byte = None;
            while remaining > 0 {
                let want = buf
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let n = f.read(&mut buf[..want]).map_err(|e| this_err(&key, e))?;
                first_byte.get_or_insert_with(Instant::now);
                if n == 0 {
                    break;
                }
                total += n as u64;
                remaining -= n as u64;
                if opts.keep_data {
                    kept.extend_from_slice(&buf[..n]);
                }
            }
            Ok(GetOutcome {
                bytes: total,
                first_byte,
                data: opts.keep_data.then(|| Bytes::from(kept)),
            })
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

    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        let root = self.root.clone();
        let (prefix, this_err, opts) = (prefix.to_string(), self.err_fn(), opts.clone());
        self.blocking(move || {
            // Start at the deepest directory the prefix names and walk in key
            // order, collecting one more entry than a page holds.
            let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
            let base = if dir_part.is_empty() {
                String::new()
            } else {
                format!("{dir_part}/")
            };
            let mut walk = Walk {
                prefix: &prefix,
                after: opts.continuation.as_deref().unwrap_or(""),
                roll_dirs: opts.delimiter == Some('/'),
                cap: opts.limit.saturating_add(1),
                out: Vec::new(),
            };
            match walk.dir(&root.join(dir_part), &base) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ListPage::default()),
                Err(e) => return Err(this_err(&prefix, e)),
            }
            let keys = walk.out.iter().map(|(k, s)| (k.as_str(), *s));
            Ok(page_from_sorted(keys, &prefix, &opts))
        })
        .await
    }

    async fn put_multipart(
        &self,
        key: &str,
        size: u64,
        part_size: u64,
        part: PartSource<'_>,
    ) -> StoreResult<u64> {
        let path = self.path(key)?;
        let (k, e2) = (key.to_string(), self.err_fn());
        let file = self
            .blocking(move || {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(|e| e2(&k, e))?;
                }
                let f = fs::File::create(&path).map_err(|e| e2(&k, e))?;
                f.set_len(size).map_err(|e| e2(&k, e))?;
                Ok(Arc::new(f))
            })
            .await?;
        // Parts are made here and written one at a time, so only one part
        // is in memory.
        let part_size = part_size.max(1);
        let (mut offset, mut parts) = (0, 0);
        while offset < size {
            let len = part_size.min(size - offset);
            let data = part(offset, len);
            let (f, k, err) = (file.clone(), key.to_string(), self.err_fn());
            self.blocking(move || f.write_all_at(&data, offset).map_err(|e| err(&k, e)))
                .await?;
            offset += len;
            parts += 1;
        }
        Ok(parts.max(1))
    }

    async fn mkdir(&self, path: &str) -> StoreResult<()> {
        let p = self.path(path)?;
        let (key, this_err) = (path.to_string(), self.err_fn());
        self.blocking(move || fs::create_dir_all(&p).map_err(|e| this_err(&key, e)))
            .await
    }

    async fn rmdir(&self, path: &str) -> StoreResult<()> {
        let p = self.path(path)?;
        let (key, this_err) = (path.to_string(), self.err_fn());
        self.blocking(move || fs::remove_dir(&p).map_err(|e| this_err(&key, e)))
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

/// A walk of a directory tree in key order.
struct Walk<'a> {
    prefix: &'a str,
    /// Keys up to and including this one are skipped (continuation).
    after: &'a str,
    /// With `/` as delimiter, a directory below the prefix is one entry
    /// (`dir/`) and is not descended into.
    roll_dirs: bool,
    /// Stop once this many keys are collected.
    cap: usize,
    out: Vec<(String, u64)>,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path, base: &str) -> io::Result<()> {
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
            if self.out.len() >= self.cap {
                return Ok(());
            }
            let key = format!("{base}{name}");
            if is_dir {
                let below_prefix = key.starts_with(self.prefix) && key.len() > self.prefix.len();
                if self.roll_dirs && below_prefix {
                    // `key` ends in '/': it rolls up to itself.
                    if key.as_str() > self.after {
                        self.out.push((key, 0));
                    }
                } else if key.starts_with(self.prefix) || self.prefix.starts_with(&key) {
                    self.dir(&dir.join(name.trim_end_matches('/')), &key)?;
                }
            } else if key.starts_with(self.prefix) && key.as_str() > self.after {
                let size = fs::metadata(dir.join(&name))?.len();
                self.out.push((key, size));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_str().unwrap()).unwrap();
        super::super::conformance::run_all(&store, "p/").await;
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
