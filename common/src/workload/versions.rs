//! Versions: the ids this agent's puts made ([`VersionBook`], bounded),
//! which `get_version` and `delete_version` draw from, and the cleanup of
//! a versioned key space ([`Sweep`]): its versions listed page by page by
//! one task while workers delete the listed ones in batches (s3dlio's
//! list+delete pipeline), so deleting starts with the first page.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::deal::Slice;
use super::keys::{KeyState, Side};
use super::ops;
use crate::plan::KeySpace;
use crate::store::{ErrorClass, ListOptions, ObjectStore, StoreError, StoreResult};

/// Most version ids an agent keeps: about 5 MB of ids. Past it, a new
/// version takes the place of a drawn one, so the book stays a sample of
/// what was written (a cleanup lists versions, so none is left behind).
pub const MAX_VERSIONS: usize = 65_536;

/// Batches of listed versions ready for deletion: the lister is at most
/// this many batches ahead of the deleters.
const SWEEP_QUEUE: usize = 4;

/// The versions this agent's puts made: `(key index, version id)`.
#[derive(Debug, Default)]
pub struct VersionBook {
    ids: Mutex<Vec<(u64, Box<str>)>>,
}

impl VersionBook {
    /// Records a version of key `index`; `r` (a random draw) picks the one
    /// it replaces when the book is full.
    pub fn record(&self, index: u64, version: &str, r: u64) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let entry = (index, Box::from(version));
        if ids.len() < MAX_VERSIONS {
            ids.push(entry);
        } else {
            let at = (r % ids.len() as u64) as usize;
            ids[at] = entry;
        }
    }

    /// A recorded version, drawn by `r`.
    pub fn pick(&self, r: u64) -> Option<(u64, Box<str>)> {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.is_empty() {
            return None;
        }
        Some(ids[(r % ids.len() as u64) as usize].clone())
    }

    /// A recorded version drawn by `r`, no longer recorded (it is about to
    /// be deleted).
    pub fn take(&self, r: u64) -> Option<(u64, Box<str>)> {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.is_empty() {
            return None;
        }
        let at = (r % ids.len() as u64) as usize;
        Some(ids.swap_remove(at))
    }

    /// Whether `version` of key `index` is recorded.
    pub fn has(&self, index: u64, version: &str) -> bool {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.iter().any(|(i, v)| *i == index && &**v == version)
    }

    pub fn len(&self) -> usize {
        self.ids.lock().map_or(0, |ids| ids.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch of `(key, version)` to delete.
pub(super) type VersionBatch = Vec<(String, String)>;

/// A versioned cleanup's work: batches from the lister task.
pub(super) struct Sweep {
    rx: tokio::sync::Mutex<mpsc::Receiver<StoreResult<VersionBatch>>>,
}

/// What a sweep removes of key space `objects`: every version of a key
/// this agent's `slices` hold that the run made (not there before it),
/// those of its side objects, and the versions the book recorded of keys
/// that were.
pub(super) struct SweepSpec {
    pub(super) objects: KeySpace,
    pub(super) slices: Vec<Slice>,
    pub(super) batch: usize,
    pub(super) timeout: std::time::Duration,
}

impl Sweep {
    /// Starts listing the key space's versions; batches come from
    /// [`Sweep::next`].
    pub(super) fn start(
        store: std::sync::Arc<dyn ObjectStore>,
        state: std::sync::Arc<KeyState>,
        spec: SweepSpec,
    ) -> Sweep {
        let (tx, rx) = mpsc::channel(SWEEP_QUEUE);
        tokio::spawn(async move {
            if let Err(e) = list(store.as_ref(), &state, &spec, &tx).await {
                // The deleters see it as their next batch, and stop.
                let _ = tx.send(Err(e)).await;
            }
        });
        Sweep {
            rx: tokio::sync::Mutex::new(rx),
        }
    }

    /// The next batch to delete; `None` once the listing is done. A
    /// listing that failed ends the stage with its error.
    pub(super) async fn next(&self) -> Option<StoreResult<VersionBatch>> {
        self.rx.lock().await.recv().await
    }
}

/// Lists the versions page by page and sends this agent's in batches.
async fn list(
    store: &dyn ObjectStore,
    state: &KeyState,
    spec: &SweepSpec,
    tx: &mpsc::Sender<StoreResult<VersionBatch>>,
) -> StoreResult<()> {
    let prefix = spec.objects.prefix.as_str();
    let mut opts = ListOptions::default();
    let mut batch = Vec::with_capacity(spec.batch);
    loop {
        let page = ops::timed(
            store,
            "LIST_VERSIONS",
            prefix,
            spec.timeout,
            store.list_versions(prefix, &opts),
        )
        .await?;
        for v in page.entries {
            if mine(state, spec, &v.key, &v.version) {
                batch.push((v.key, v.version));
                if batch.len() == spec.batch {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(spec.batch));
                    if tx.send(Ok(full)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        match page.next {
            Some(next) => opts.continuation = Some(next),
            None => break,
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch)).await;
    }
    Ok(())
}

/// Whether this agent's sweep removes `version` of `key`.
fn mine(state: &KeyState, spec: &SweepSpec, key: &str, version: &str) -> bool {
    let (base, side) = match Side::parse(key) {
        Some((base, side)) => (base, Some(side)),
        None => (key, None),
    };
    let Some(i) = spec.objects.index_of(base) else {
        return false;
    };
    if !spec.slices.iter().any(|s| s.contains(i)) {
        return false;
    }
    side.is_some() || !state.is_preexisting(i) || state.versions().has(i, version)
}

/// The error of a stage with `versioning: true` on a bucket that keeps
/// none: said before the stage starts.
pub(super) fn unversioned(store: &dyn ObjectStore, stage: &str) -> StoreError {
    StoreError::new(
        ErrorClass::Other,
        store.endpoint(),
        format!(
            "stage `{stage}` has `versioning: true` but {store} keeps no versions: \
             enable versioning on the bucket (e.g. `aws s3api put-bucket-versioning \
             --bucket B --versioning-configuration Status=Enabled`), or drop `versioning: true`"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_book_is_bounded_and_draws_what_it_holds() {
        let book = VersionBook::default();
        assert!(book.pick(3).is_none());
        for i in 0..(MAX_VERSIONS as u64 + 10) {
            book.record(i, &format!("v{i}"), i * 7919);
        }
        assert_eq!(book.len(), MAX_VERSIONS);
        let (i, v) = book.take(5).unwrap();
        assert_eq!(&*v, format!("v{i}"));
        assert!(!book.has(i, &v));
        assert_eq!(book.len(), MAX_VERSIONS - 1);
    }
}
