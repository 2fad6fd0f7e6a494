//! What a stage does on an agent before its first op and after its last,
//! outside every op's timing: readying the bucket (created, with the
//! versioning or object lock the plan needs), checking that a stage on
//! versions has a bucket that keeps them, listing the key space to learn
//! what exists, and, after a cleanup of `buckets: N`, removing the buckets
//! this agent made.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::keys::{KeyState, Side};
use super::{StageRun, ops, versions};
use crate::store::{BucketSetup, ErrorClass, ObjectStore};

/// Lists the key space once and marks the objects that exist. Bounded: a
/// prefix holding far more than the key space is not read to its end.
pub(super) async fn discover(run: &StageRun) -> anyhow::Result<KeyState> {
    let objects = &run.stage.objects;
    let state = KeyState::new(objects.count);
    // Each key may have two side objects (`Side`).
    let max = objects
        .count
        .saturating_mul(4)
        .saturating_add(1000)
        .min(usize::MAX as u64) as usize;
    let timeout = run.stage.retry.timeout;
    let found = match ops::list_all_timed(run.store.as_ref(), &objects.prefix, max, timeout).await {
        Ok(found) => found,
        // Nothing there yet (e.g. a bucket a prepare stage will create).
        Err(e) if e.class == ErrorClass::NotFound => Vec::new(),
        Err(e) => anyhow::bail!("listing {}{}: {e}", run.store, objects.prefix),
    };
    for meta in found {
        // What ops made beside a key: a cleanup removes it too.
        if let Some((base, side)) = Side::parse(&meta.key)
            && let Some(i) = objects.index_of(base)
        {
            state.set_side(i, side, true);
            continue;
        }
        if let Some(i) = objects.index_of(&meta.key) {
            // An object of the wrong size is rewritten by a prepare stage.
            if meta.size == objects.size.size_of(run.data.seed, i) {
                state.set_present(i, true);
            }
        }
    }
    Ok(state)
}

/// Readies the store for a prepare stage (creates its bucket if missing):
/// each endpoint of every pool's balancer, else the one store, each under
/// the op timer ([`ops::timed`]) on its own, so many endpoints do not
/// share one attempt's time. Returns the buckets the stores created.
pub(super) async fn ensure_ready(run: &StageRun) -> anyhow::Result<Vec<String>> {
    let mut stores: Vec<&Arc<dyn ObjectStore>> = run
        .multi
        .iter()
        .flat_map(|m| (0..).map_while(|i| m.endpoint_store(i)))
        .collect();
    if stores.is_empty() {
        stores.push(&run.store);
    }
    // An endpoint unbound to a pool is in every pool's balancer: once.
    let mut seen = std::collections::HashSet::new();
    stores.retain(|s| seen.insert(s.endpoint().to_string()));
    let timeout = run.stage.retry.timeout;
    let setup = run.stage.api.bucket_setup();
    let mut made = Vec::new();
    for store in stores {
        let what = store.to_string();
        let ready = async {
            if setup == BucketSetup::default() {
                store.ensure_ready().await
            } else {
                store.ensure_ready_with(setup).await
            }
        };
        ops::timed(store.as_ref(), "PREPARE", &what, timeout, ready)
            .await
            .map_err(|e| anyhow::anyhow!("preparing {store}: {e}"))?;
        made.extend(store.buckets_made());
    }
    Ok(made)
}

/// How often a cleanup asks again to remove a bucket it made that is not
/// empty yet (other agents may still be deleting its objects).
const BUCKET_RETRY: Duration = Duration::from_millis(250);

/// At the end of a cleanup of a `buckets: N` stage: removes the buckets
/// this agent made, each retried every [`BUCKET_RETRY`] while it fails (not
/// empty yet), up to the stage's per-attempt `timeout` in all. A bucket
/// that will not go is a warning naming it, never the stage's failure: its
/// measured ops stand.
pub(super) async fn remove_made_buckets(run: &StageRun, state: &KeyState) {
    let names = state.buckets_made();
    if names.is_empty() {
        return;
    }
    let store = run.store.as_ref();
    let deadline = Instant::now() + run.stage.retry.timeout;
    for name in &names {
        let one = std::slice::from_ref(name);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = ops::timed(
                store,
                "DELETE BUCKET",
                name,
                left,
                store.remove_buckets(one),
            )
            .await;
            let e = match r {
                Ok(_) => break,
                // Gone already.
                Err(e) if e.class == ErrorClass::NotFound => break,
                Err(e) => e,
            };
            let hopeless = matches!(e.class, ErrorClass::AccessDenied | ErrorClass::NotSupported);
            if hopeless || Instant::now() + BUCKET_RETRY >= deadline {
                tracing::warn!(
                    bucket = %name,
                    stage = %run.stage.name,
                    "cleanup leaves bucket `{name}`, which Chorus made: {e}"
                );
                break;
            }
            tokio::time::sleep(BUCKET_RETRY).await;
        }
    }
    state.forget_buckets_made(&names);
}

/// A stage with `versioning: true` on a bucket that keeps no versions is
/// refused before it starts, saying so.
pub(super) async fn check_versioning(run: &StageRun) -> anyhow::Result<()> {
    let store = run.store.as_ref();
    let what = store.to_string();
    let on = ops::timed(
        store,
        "GET VERSIONING",
        &what,
        run.stage.retry.timeout,
        store.versioning_enabled(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("asking whether {store} keeps versions: {e}"))?;
    if !on {
        anyhow::bail!("{}", versions::unversioned(store, &run.stage.name).message);
    }
    Ok(())
}
