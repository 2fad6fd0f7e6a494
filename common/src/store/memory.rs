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
    ErrorClass, GetOptions, GetOutcome, ListOptions, ListPage, ObjectMeta, ObjectStore, StoreError,
    StoreResult, clamp_range, page_from_sorted,
};
use crate::clock::Mono;

/// An in-memory store. The lock is never held across an await.
#[derive(Debug)]
pub struct MemoryStore {
    uri: String,
    objects: RwLock<BTreeMap<String, Bytes>>,
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
