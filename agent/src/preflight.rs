//! Checks of a plan that need the store, made when the plan is loaded,
//! before the agent says ready (so before any stage starts).
//!
//! Today one: a stage on existing objects (`objects: {existing: true}`)
//! whose prefix holds nothing cannot do anything, and finding that out
//! only when its turn comes, after earlier stages ran, wastes the run.
//! One LIST of at most one entry per distinct (target, prefix) answers it.
//! Only agent 0 asks: the answer is the same for all, and N agents need
//! not make N requests.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chorus_common::plan::Plan;
use chorus_common::store::{self, EnvOverlay, ListOptions, ObjectStore};
use chorus_common::workload::timed;
use tonic::Status;

use crate::stage::endpoint_groups;

/// Longest the check's one LIST may take: the controller waits
/// `LOAD_PLAN_TIMEOUT` (30 s) for the whole `LoadPlan`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses the plan (`invalid_argument`, which the controller reports as
/// bad input) when an existing key space's prefix holds no object; a store
/// that cannot be reached is `failed_precondition` with its error (which
/// names the endpoint, never a credential).
pub async fn check_existing(
    plan: &Plan,
    env: &Arc<EnvOverlay>,
    agent_index: u32,
    pools: usize,
) -> Result<(), Status> {
    if agent_index != 0 {
        return Ok(());
    }
    let mut checked = BTreeSet::new();
    for stage in plan.stages.iter().filter(|s| s.objects.existing.is_some()) {
        let prefix = &stage.objects.prefix;
        if !checked.insert((stage.target.clone(), prefix.clone())) {
            continue;
        }
        let timeout = stage.retry.timeout.min(CHECK_TIMEOUT);
        let fail = |e: store::StoreError| {
            Status::failed_precondition(format!(
                "stage `{}`: checking that prefix `{prefix}` of target `{}` holds objects: {e}",
                stage.name, stage.target
            ))
        };
        let opts = store::OpenOptions {
            concurrency: 1,
            timeout,
            env: Some(env.clone()),
            buckets: stage.api.buckets,
            ..Default::default()
        };
        let groups = endpoint_groups(&stage.endpoints, pools)
            .map_err(|m| Status::invalid_argument(format!("stage `{}`: {m}", stage.name)))?;
        let s: Arc<dyn ObjectStore> = match groups.first() {
            Some(urls) => Arc::new(
                store::multi::open_multi(&stage.target, urls, &stage.balance, &opts)
                    .await
                    .map_err(fail)?,
            ),
            None => store::open(&stage.target, &opts).await.map_err(fail)?,
        };
        let one = ListOptions {
            delimiter: None,
            limit: 1,
            continuation: None,
        };
        let page = timed(s.as_ref(), "LIST", prefix, timeout, s.list(prefix, &one)).await;
        let empty = match page {
            Ok(p) => p.entries.is_empty() && p.prefixes.is_empty(),
            // A bucket or directory that is not there holds nothing.
            Err(e) if e.class == store::ErrorClass::NotFound => true,
            Err(e) => return Err(fail(e)),
        };
        if empty {
            return Err(Status::invalid_argument(format!(
                "stage `{}`: `existing: true` but prefix `{prefix}` of target `{}` holds no \
                 objects; write them first, or name the prefix that holds them",
                stage.name, stage.target
            )));
        }
    }
    Ok(())
}
