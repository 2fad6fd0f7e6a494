//! Opening a stage's stores, while telling the controller the agent is
//! alive: a network store's open can wait on the network for the plan's
//! whole request timeout (a GCS open fetches credentials), longer than the
//! controller waits for word before it calls the agent lost.

use std::sync::Arc;
use std::time::Duration;

use chorus_common::clock::Anchor;
use chorus_common::plan::EndpointSpec;
use chorus_common::store::{self, ObjectStore, multi::MultiStore};
use chorus_proto::pb::{self, stage_event::Event};
use tokio::sync::watch;
use tonic::Status;

use super::{Events, StageJob};
use crate::shutdown::{self, Phase};

/// How often `Preparing` is sent while the stores open.
const PREPARING_EVERY: Duration = Duration::from_secs(1);

/// A stage's stores: the one for stage-wide calls, and the balancers of a
/// multi-endpoint stage (empty without endpoints).
pub type Stores = (Arc<dyn ObjectStore>, Vec<Arc<MultiStore>>);

/// How the open ended.
pub enum Opened {
    Ready(Stores),
    /// The store's own error, as the stage's failure.
    Failed(Status),
    /// The agent began to stop first (the reason).
    Stopped(String),
}

/// Opens `job`'s stores, sending `Preparing` at once and then about once a
/// second until they are open; gives up if the agent starts to stop.
pub async fn open_while_preparing(
    job: &StageJob,
    tx: &Events,
    phase: &mut watch::Receiver<Phase>,
) -> Opened {
    let open = open_stores(job);
    tokio::pin!(open);
    let mut tick = tokio::time::interval(PREPARING_EVERY);
    loop {
        tokio::select! {
            r = &mut open => return r.map_or_else(Opened::Failed, Opened::Ready),
            reason = shutdown::stopped(phase) => return Opened::Stopped(reason),
            _ = tick.tick() => {
                // Only a sign of life: one not taken (a full queue) is
                // not worth waiting for.
                let _ = tx.try_send(Ok(preparing(&job.clock)));
            }
        }
    }
}

fn preparing(clock: &Anchor) -> pb::StageEvent {
    pb::StageEvent {
        event: Some(Event::Preparing(pb::Preparing {
            at_ns: clock.now_ns(),
        })),
    }
}

async fn open_stores(job: &StageJob) -> Result<Stores, Status> {
    let stage = &job.stage;
    let opts = store::OpenOptions {
        concurrency: stage.concurrency,
        // The plan's per-attempt timeout is also the connect timeout.
        timeout: stage.retry.timeout,
        env: Some(job.env.clone()),
        buckets: stage.api.buckets,
        ..Default::default()
    };
    let fail =
        |e: store::StoreError| Status::failed_precondition(format!("stage `{}`: {e}", stage.name));
    let mut multi = Vec::with_capacity(job.groups.len());
    for urls in &job.groups {
        let m = store::multi::open_multi(&stage.target, urls, &stage.balance, &opts)
            .await
            .map_err(fail)?;
        multi.push(Arc::new(m));
    }
    let one: Arc<dyn ObjectStore> = match multi.first() {
        Some(m) => m.clone(),
        None => store::open(&stage.target, &opts).await.map_err(fail)?,
    };
    Ok((one, multi))
}

/// The endpoint lists a stage's balancers use: none without endpoints; one
/// list when no endpoint is bound to a pool; else one per pool, holding
/// the endpoints bound to it and the unbound ones.
pub fn endpoint_groups(
    endpoints: &[EndpointSpec],
    pools: usize,
) -> Result<Vec<Vec<String>>, String> {
    if endpoints.iter().all(|e| e.pool.is_none()) {
        let all: Vec<String> = endpoints.iter().map(|e| e.url.clone()).collect();
        return Ok(if all.is_empty() {
            Vec::new()
        } else {
            vec![all]
        });
    }
    if let Some(e) = endpoints
        .iter()
        .find(|e| e.pool.is_some_and(|p| p as usize >= pools))
    {
        return Err(format!(
            "endpoint `{}` is bound to pool {}, but this agent has {pools} pool(s)",
            e.url,
            e.pool.unwrap_or(0)
        ));
    }
    (0..pools)
        .map(|p| {
            let urls: Vec<String> = endpoints
                .iter()
                .filter(|e| e.pool.is_none_or(|b| b as usize == p))
                .map(|e| e.url.clone())
                .collect();
            if urls.is_empty() {
                Err(format!(
                    "pool {p} has no endpoint: bind one to it, or list unbound ones"
                ))
            } else {
                Ok(urls)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str, pool: Option<u32>) -> EndpointSpec {
        EndpointSpec {
            url: url.into(),
            pool,
        }
    }

    #[test]
    fn endpoints_group_by_pool() {
        assert!(endpoint_groups(&[], 2).unwrap().is_empty());
        let unbound = [ep("a", None), ep("b", None)];
        assert_eq!(endpoint_groups(&unbound, 2).unwrap(), vec![vec!["a", "b"]]);
        let bound = [ep("a", Some(0)), ep("b", Some(1)), ep("c", None)];
        assert_eq!(
            endpoint_groups(&bound, 2).unwrap(),
            vec![vec!["a", "c"], vec!["b", "c"]]
        );
        let err = endpoint_groups(&[ep("a", Some(2))], 2).unwrap_err();
        assert!(err.contains("pool 2") && err.contains("2 pool(s)"), "{err}");
        let err = endpoint_groups(&[ep("a", Some(0))], 2).unwrap_err();
        assert!(err.contains("pool 1 has no endpoint"), "{err}");
    }
}
