//! The service driven in-process through its gRPC trait (no socket): a
//! stage run as sub-steps, each step's op-log its own file, found by
//! (stage, step) in the session and in the spool afterwards.

use std::path::Path;

use chorus_common::oplog::OpLogReader;
use chorus_proto::pb::{self, agent_server::Agent, stage_event::Event};
use tokio_stream::StreamExt;
use tonic::Request;

use crate::{AgentConfig, AgentService, ServerSecurity};

fn agent(spool: &Path) -> AgentService {
    AgentService::new(AgentConfig {
        id: "t".into(),
        spool_dir: spool.to_path_buf(),
        keep_spool: false,
        security: ServerSecurity::insecure(),
        metrics: None,
        shared_pools: None,
    })
}

async fn load(agent: &AgentService, data: &Path) {
    let plan = format!(
        "name: steps\ntarget: file://{}\nconcurrency: 2\nobjects: {{count: 20, size: 1KiB}}\n\
         stages:\n  - {{name: prep, type: prepare}}\n  \
         - {{name: w, type: workload, mix: {{get: 1}}, ops: 50}}\n",
        data.display()
    );
    agent
        .load_plan(Request::new(pb::LoadPlanRequest {
            session_id: "s1".into(),
            run_id: "run1".into(),
            plan_yaml: plan,
            agent_index: 0,
            agent_count: 1,
            agent_id: "t".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
}

/// Runs stage `index` (or its `step`) and returns its result.
async fn run(agent: &AgentService, index: u32, step: Option<pb::StageStep>) -> pb::StageDone {
    let mut events = agent
        .run_stage(Request::new(pb::RunStageRequest {
            session_id: "s1".into(),
            stage_index: index,
            step,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    while let Some(e) = events.next().await {
        if let Some(Event::Done(d)) = e.unwrap().event {
            return d;
        }
    }
    panic!("stage {index} ended without a result");
}

async fn fetch(agent: &AgentService, session: &str, stage: u32, step: u32) -> Vec<u8> {
    let mut chunks = agent
        .fetch_op_log(Request::new(pb::FetchOpLogRequest {
            session_id: session.into(),
            stage_index: stage,
            run_id: "run1".into(),
            offset: 0,
            step,
        }))
        .await
        .unwrap_or_else(|s| panic!("fetch stage {stage} step {step}: {s}"))
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(c) = chunks.next().await {
        bytes.extend(c.unwrap().data);
    }
    bytes
}

/// The `stage` column of every record of a fetched log.
fn stages(dir: &Path, bytes: Vec<u8>) -> Vec<String> {
    let path = dir.join("fetched.tsv.zst");
    std::fs::write(&path, bytes).unwrap();
    OpLogReader::open(&path)
        .unwrap()
        .map(|r| r.unwrap().stage)
        .collect()
}

#[tokio::test]
async fn steps_run_with_their_own_settings_and_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let a = agent(&spool);
    load(&a, &tmp.path().join("data")).await;
    assert_eq!(run(&a, 0, None).await.records_logged, 20);
    let step = |index: u32, ops: u64| pb::StageStep {
        index,
        name: format!("w/step-{index:02}"),
        ops,
        ..Default::default()
    };
    // Each step replaces the stage's op budget, and finds the objects the
    // prepare made (key state carried over: no GET of a missing object).
    let one = run(&a, 1, Some(step(1, 7))).await;
    let two = run(&a, 1, Some(step(2, 11))).await;
    assert_eq!((one.records_logged, two.records_logged), (7, 11));
    let errors = |d: &pb::StageDone| chorus_proto::decode_metrics(&d.ops).unwrap().total_errors();
    assert_eq!((errors(&one), errors(&two)), (0, 0));
    let one_log = stages(tmp.path(), fetch(&a, "s1", 1, 1).await);
    assert_eq!(one_log, vec!["w/step-01"; 7]);
    let err = a
        .fetch_op_log(Request::new(pb::FetchOpLogRequest {
            session_id: "s1".into(),
            stage_index: 1,
            step: 0,
            ..Default::default()
        }))
        .await
        .expect_err("the stage was never run whole");
    assert!(err.message().contains("no op-log for stage 1"), "{err}");
    // The spool keeps each step's file under its own name; an agent with
    // no session serves them from there by (stage, step), as `controller
    // collect` asks.
    assert!(spool.join("run1/stage-01-s02.spool.zst").exists());
    assert!(spool.join("run1/stage-00.spool.zst").exists());
    let later = agent(&spool);
    let two_log = stages(tmp.path(), fetch(&later, "", 1, 2).await);
    assert_eq!(two_log, vec!["w/step-02"; 11]);
    assert_eq!(stages(tmp.path(), fetch(&later, "", 0, 0).await).len(), 20);
}

/// The agent's own stop mid-stage (what SIGTERM starts in the binary):
/// the stage ends early with its normal result marked `stopped_by`, its
/// op-log holds every record it counted, heartbeats say the agent is
/// stopping, and new stages and sessions are refused.
#[tokio::test]
async fn a_stop_ends_the_running_stage_with_its_result() {
    let tmp = tempfile::tempdir().unwrap();
    let a = agent(&tmp.path().join("spool"));
    load(&a, &tmp.path().join("data")).await;
    run(&a, 0, None).await;
    // A long step, stopped once its first progress report shows ops.
    let long = pb::StageStep {
        index: 1,
        name: "w/long".into(),
        duration_ms: 600_000,
        ..Default::default()
    };
    let mut events = a
        .run_stage(Request::new(pb::RunStageRequest {
            session_id: "s1".into(),
            stage_index: 1,
            step: Some(long),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut done = None;
    let stream = async {
        while let Some(e) = events.next().await {
            match e.unwrap().event {
                Some(Event::Progress(p)) if p.ops > 0 => a.shutdown().begin("SIGTERM"),
                Some(Event::Done(d)) => done = Some(d),
                _ => {}
            }
        }
    };
    // Only a guard against hanging on the 10-minute step if the stop is
    // not obeyed; the stop itself takes about a second.
    tokio::time::timeout(std::time::Duration::from_secs(120), stream)
        .await
        .expect("the stage obeyed the stop");
    let done = done.expect("a result");
    assert_eq!(done.stopped_by, "SIGTERM");
    let ops = chorus_proto::decode_metrics(&done.ops).unwrap().total_ops();
    assert!(ops > 0);
    let logged = stages(tmp.path(), fetch(&a, "s1", 1, 1).await).len() as u64;
    assert_eq!(logged, done.records_logged);
    let beat = a
        .heartbeat(Request::new(pb::HeartbeatRequest {
            session_id: "s1".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((beat.running, beat.stopping.as_str()), (false, "SIGTERM"));
    let refused = a
        .run_stage(Request::new(pb::RunStageRequest {
            session_id: "s1".into(),
            stage_index: 1,
            ..Default::default()
        }))
        .await
        .expect_err("no stage while stopping");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(refused.message(), "agent is stopping (SIGTERM)");
}

/// With `--metrics-listen`, the agent feeds its own registry: after a
/// stage, its live counters by op kind equal the stage's result, its
/// workers are done, and a new session starts from nothing.
#[tokio::test]
async fn the_agents_own_metrics_follow_its_stages_and_reset_per_run() {
    use chorus_common::metrics::prometheus::{Exposition, Metrics};
    let tmp = tempfile::tempdir().unwrap();
    let metrics = std::sync::Arc::new(Metrics::new());
    let a = AgentService::new(AgentConfig {
        id: "t".into(),
        spool_dir: tmp.path().join("spool"),
        keep_spool: false,
        security: ServerSecurity::insecure(),
        metrics: Some(metrics.clone()),
        shared_pools: None,
    });
    load(&a, &tmp.path().join("data")).await;
    run(&a, 0, None).await;
    let done = run(&a, 1, None).await;
    let gets = chorus_proto::decode_metrics(&done.ops).unwrap().total_ops();
    assert_eq!(gets, 50);
    let text = metrics.render();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        line(r#"chorus_live_ops_total{stage="w",agent="t",op="GET"}"#),
        "50"
    );
    assert_eq!(
        line(r#"chorus_live_ops_total{stage="prep",agent="t",op="PUT"}"#),
        "20"
    );
    assert_eq!(
        line(r#"chorus_ops_total{stage="w",op="GET",agent="t"}"#),
        "50"
    );
    assert_eq!(
        line(r#"chorus_live_active_workers{stage="w",agent="t"}"#),
        "0"
    );
    assert_eq!(line(r#"chorus_agent_up{agent="t"}"#), "1");
    assert_eq!(line(r#"chorus_stage_running{stage="w"}"#), "0");
    // A new run forgets the last one's stages.
    a.end_session(Request::new(pb::EndSessionRequest {
        session_id: "s1".into(),
    }))
    .await
    .unwrap();
    assert!(metrics.render().contains("chorus_run_finished 1"));
    load(&a, &tmp.path().join("data")).await;
    let fresh = metrics.render();
    assert!(!fresh.contains(r#"stage="w""#), "{fresh}");
    assert!(fresh.contains("chorus_run_finished 0"));
}
