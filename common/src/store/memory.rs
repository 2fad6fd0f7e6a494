//! `mem://NAME`: objects in process memory, for harness tests and for
//! measuring the engine's own overhead with no storage underneath.
//!
//! Stores are shared by name within a process, so a prepare stage and the
//! workload stage after it see the same objects. This is not a stand-in for
//! a backend under test.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    CopyPlan, ErrorClass, GetOptions, GetOutcome, ListOptions, ListPage, ObjectMeta, ObjectStore,
    StoreError, StoreResult, Tags, VersionMeta, VersionPage, clamp_range, page_from_sorted,
};
use crate::clock::Mono;

/// An in-memory store. The lock is never held across an await.
#[derive(Debug)]
pub struct MemoryStore {
    uri: String,
    objects: RwLock<BTreeMap<String, Bytes>>,
    /// Tags, versions and retention: the object API past the core, so the
    /// engine's handling of those ops is tested without a server.
    extra: Mutex<Extra>,
}

/// What `mem://` keeps of tags, versions and retention.
#[derive(Debug, Default)]
struct Extra {
    tags: HashMap<String, Tags>,
    /// Versions of keys written by `put_versioned`, oldest first.
    versions: BTreeMap<String, Vec<(String, Bytes)>>,
    next_version: u64,
    retained: HashMap<String, std::time::SystemTime>,
}

fn registry() -> &'static Mutex<HashMap<String, Arc<MemoryStore>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<MemoryStore>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl MemoryStore {
    /// The process-wide store called `name`, created empty on first use.
    pub fn named(name: &str) -> Arc<MemoryStore> {
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.entry(name.to_string())
            .or_insert_with(|| Arc::new(MemoryStore::new(name)))
            .clone()
    }

    /// A private store, not in the registry.
    pub fn new(name: &str) -> MemoryStore {
        MemoryStore {
            uri: format!("mem://{name}"),
            objects: RwLock::new(BTreeMap::new()),
            extra: Mutex::new(Extra::default()),
        }
    }

    fn not_found(&self, key: &str) -> StoreError {
        StoreError::new(
            ErrorClass::NotFound,
            &self.uri,
            format!("no object `{key}`"),
        )
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Bytes>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Bytes>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }

    fn extra(&self) -> std::sync::MutexGuard<'_, Extra> {
        self.extra.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn must_exist(&self, key: &str) -> StoreResult<()> {
        match self.read().contains_key(key) {
            true => Ok(()),
            false => Err(self.not_found(key)),
        }
    }

    /// The tags of `key`, if any were set (for tests).
    pub fn tags_of(&self, key: &str) -> Option<Tags> {
        self.extra().tags.get(key).cloned()
    }

    /// When `key`'s retention ends, if one was set (for tests).
    pub fn retained_until(&self, key: &str) -> Option<std::time::SystemTime> {
        self.extra().retained.get(key).copied()
    }
}

impl fmt::Display for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn endpoint(&self) -> &str {
        &self.uri
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.write().insert(key.to_string(), data);
        Ok(())
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        let mut data = self
            .read()
            .get(key)
            .cloned()
            .ok_or_else(|| self.not_found(key))?;
        if let Some(range) = opts.range {
            let (offset, len) = clamp_range(range, data.len() as u64, &self.uri, key)?;
            data = data.slice(offset as usize..(offset + len) as usize);
        }
        Ok(GetOutcome {
            bytes: data.len() as u64,
            first_byte: Some(Mono::now()),
            data: opts.keep_data.then_some(data),
        })
    }

    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
        let size = self.read().get(key).map(|d| d.len() as u64);
        size.map(|size| ObjectMeta {
            key: key.to_string(),
            size,
        })
        .ok_or_else(|| self.not_found(key))
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.write()
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| self.not_found(key))
    }

    async fn copy(&self, src: &str, dst: &str, _plan: CopyPlan) -> StoreResult<u64> {
        let data = self
            .read()
            .get(src)
            .cloned()
            .ok_or_else(|| self.not_found(src))?;
        let len = data.len() as u64;
        self.write().insert(dst.to_string(), data);
        Ok(len)
    }

    async fn append(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let mut objects = self.write();
        let mut joined = objects.get(key).map(|d| d.to_vec()).unwrap_or_default();
        joined.extend_from_slice(&data);
        objects.insert(key.to_string(), Bytes::from(joined));
        Ok(())
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> StoreResult<()> {
        self.must_exist(key)?;
        self.extra().tags.insert(key.to_string(), tags.to_vec());
        Ok(())
    }

    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        self.must_exist(key)?;
        Ok(self.extra().tags.get(key).cloned().unwrap_or_default())
    }

    async fn put_retention(&self, key: &str, until: std::time::SystemTime) -> StoreResult<()> {
        self.must_exist(key)?;
        self.extra().retained.insert(key.to_string(), until);
        Ok(())
    }

    async fn versioning_enabled(&self) -> StoreResult<bool> {
        Ok(true)
    }

    async fn put_versioned(&self, key: &str, data: Bytes) -> StoreResult<Option<String>> {
        let mut extra = self.extra();
        extra.next_version += 1;
        let version = format!("v{}", extra.next_version);
        let versions = extra.versions.entry(key.to_string()).or_default();
        versions.push((version.clone(), data.clone()));
        self.write().insert(key.to_string(), data);
        Ok(Some(version))
    }

    async fn get_version(
        &self,
        key: &str,
        version: &str,
        opts: &GetOptions,
    ) -> StoreResult<GetOutcome> {
        let data = self
            .extra()
            .versions
            .get(key)
            .and_then(|vs| vs.iter().find(|(v, _)| v == version))
            .map(|(_, d)| d.clone())
            .ok_or_else(|| self.not_found(&format!("{key}?versionId={version}")))?;
        Ok(GetOutcome {
            bytes: data.len() as u64,
            first_byte: Some(Mono::now()),
            data: opts.keep_data.then_some(data),
        })
    }

    /// The current object becomes the latest version left, as on S3.
    async fn delete_version(&self, key: &str, version: &str) -> StoreResult<()> {
        let mut extra = self.extra();
        let versions = extra.versions.get_mut(key);
        let at = versions
            .as_ref()
            .and_then(|vs| vs.iter().position(|(v, _)| v == version));
        let (Some(versions), Some(at)) = (versions, at) else {
            return Err(self.not_found(&format!("{key}?versionId={version}")));
        };
        versions.remove(at);
        let mut objects = self.write();
        match versions.last() {
            Some((_, d)) => objects.insert(key.to_string(), d.clone()),
            None => {
                extra.versions.remove(key);
                objects.remove(key)
            }
        };
        Ok(())
    }

    /// Pages by position: the continuation is how many versions came before.
    async fn list_versions(&self, prefix: &str, opts: &ListOptions) -> StoreResult<VersionPage> {
        let skip: usize = opts
            .continuation
            .as_deref()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let extra = self.extra();
        let all = extra
            .versions
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .flat_map(|(k, vs)| vs.iter().map(move |(v, d)| (k, v, d)));
        let entries: Vec<VersionMeta> = all
            .skip(skip)
            .take(opts.limit.max(1) + 1)
            .map(|(k, v, d)| VersionMeta {
                key: k.clone(),
                version: v.clone(),
                size: d.len() as u64,
                delete_marker: false,
            })
            .collect();
        let limit = opts.limit.max(1);
        let next = (entries.len() > limit).then(|| (skip + limit).to_string());
        Ok(VersionPage {
            entries: entries.into_iter().take(limit).collect(),
            next,
        })
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        let objects = self.read();
        let start = opts
            .continuation
            .clone()
            .unwrap_or_else(|| prefix.to_string());
        let keys = objects
            .range(start..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, d)| (k.as_str(), d.len() as u64));
        Ok(page_from_sorted(keys, prefix, opts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let store = MemoryStore::new("conformance");
        super::super::conformance::run_all(&store, "p/").await;
    }

    #[test]
    fn named_stores_are_shared() {
        let a = MemoryStore::named("shared-test");
        let b = MemoryStore::named("shared-test");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
