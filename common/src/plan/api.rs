//! The keys of the object API's ops past the core: `versioning` (a stage
//! on versions), `batch` (keys per multi-object delete), `tags` (what a
//! `tag` op sets), `retention` (how long a `retention` op locks an
//! object) and `buckets` (the key space spread over N buckets named from
//! the target, `store::buckets`), and the check that the stage's backend has each op its mix
//! names (`store::api::scheme_has`), refused at the op's key when the
//! target makes the lack certain.

use std::fmt::Write as _;
use std::time::Duration;

use super::error::PlanError;
use super::load::{Decoder, Map, join};
use super::units::format_duration;
use super::yaml::{Node, NodeKind};
use super::{Stage, StageKind};
use crate::op::OpKind;
use crate::store::BucketSetup;
use crate::store::api::{Feature, scheme_has};
use crate::store::buckets::{MAX_BUCKETS, bucket_targets};

/// Most keys one `delete_batch` may name: S3's DeleteObjects limit, the
/// largest of any backend's.
pub const MAX_BATCH: u64 = 1000;

/// Most tags one `tag` op sets: S3's limit per object (Azure's is 10).
pub const MAX_TAGS: usize = 10;

/// How long a `retention` op locks an object when the plan does not say.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The stage's settings of the object API's ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectApi {
    /// `versioning: true`: the bucket keeps versions (checked before the
    /// stage starts); `put` records the version it made for
    /// `get_version` and `delete_version`, and a cleanup removes every
    /// version of the objects the run made.
    pub versioning: bool,
    /// Keys per `delete_batch`, and per request of a cleanup; `None`: the
    /// backend's most (S3 1,000, Azure 256, GCS 100, local stores 1).
    pub batch: Option<u32>,
    /// What a `tag` op sets; `{chorus: <stage name>}` when empty.
    pub tags: Vec<(String, String)>,
    /// How long a `retention` op locks an object (governance mode).
    pub retention: Duration,
    /// A stage of the plan sets retention on this stage's bucket, so a
    /// bucket Chorus creates for it has object lock (derived at load, not
    /// a key).
    pub lock: bool,
    /// A stage of the plan keeps versions in this stage's bucket, so a
    /// bucket Chorus creates for it (a prepare before that stage) keeps
    /// versions (derived at load, not a key).
    pub versioned_bucket: bool,
    /// `buckets: N`: the key space spread over N buckets (containers)
    /// named from the target (`store::buckets::bucket_targets`); 1, the
    /// target's one bucket, when not set.
    pub buckets: u32,
}

impl Default for ObjectApi {
    fn default() -> Self {
        ObjectApi {
            versioning: false,
            batch: None,
            tags: Vec::new(),
            retention: DEFAULT_RETENTION,
            lock: false,
            versioned_bucket: false,
            buckets: 1,
        }
    }
}

impl ObjectApi {
    /// What the stage's bucket must have.
    pub fn bucket_setup(&self) -> BucketSetup {
        BucketSetup {
            versioning: self.versioning || self.versioned_bucket || self.lock,
            object_lock: self.lock,
        }
    }

    /// The tags a `tag` op of stage `stage` sets.
    pub fn tags_for(&self, stage: &str) -> Vec<(String, String)> {
        if self.tags.is_empty() {
            vec![("chorus".to_string(), stage.to_string())]
        } else {
            self.tags.clone()
        }
    }
}

/// The feature a backend needs for `op`, if any beyond the core.
pub fn feature_of(op: OpKind) -> Option<Feature> {
    match op {
        OpKind::Copy => Some(Feature::Copy),
        OpKind::Append => Some(Feature::Append),
        OpKind::Tag | OpKind::GetTags => Some(Feature::Tags),
        OpKind::Retention => Some(Feature::Retention),
        OpKind::GetVersion | OpKind::DeleteVersion | OpKind::ListVersions => {
            Some(Feature::Versions)
        }
        _ => None,
    }
}

impl Decoder<'_> {
    /// The stage's `versioning`, `batch`, `tags` and `retention` keys.
    pub(super) fn object_api(&self, m: &Map, kind: StageKind) -> Result<ObjectApi, PlanError> {
        let mut api = ObjectApi::default();
        if let Some(e) = m.get("versioning") {
            api.versioning = self.boolean(e, &join(&m.path, "versioning"))?;
        }
        if let Some(e) = m.get("batch") {
            api.batch = Some(self.integer(e, &join(&m.path, "batch"), 1, MAX_BATCH)? as u32);
        }
        if let Some(e) = m.get("buckets") {
            api.buckets =
                self.integer(e, &join(&m.path, "buckets"), 1, u64::from(MAX_BUCKETS))? as u32;
        }
        if let Some(e) = m.get("retention") {
            api.retention = self.duration(e, &join(&m.path, "retention"))?;
        }
        if let Some(e) = m.get("tags") {
            let path = join(&m.path, "tags");
            let NodeKind::Map(entries) = &e.value.kind else {
                return Err(self.wrong(e, &path, "a mapping of tag names to values"));
            };
            if entries.len() > MAX_TAGS {
                let message = format!(
                    "`tags` of {} has {} tags; an object takes at most {MAX_TAGS}",
                    m.what,
                    entries.len()
                );
                return Err(self.err(e.value.pos, &path, message));
            }
            for t in entries {
                let value = self.string(t, &join(&path, &t.key))?;
                api.tags.push((t.key.clone(), value));
            }
        }
        if api.versioning
            && matches!(
                kind,
                StageKind::Replay | StageKind::Dataset | StageKind::Train | StageKind::Checkpoint
            )
            && let Some(e) = m.get("versioning")
        {
            let message = format!(
                "`versioning` is not allowed in {} stages ({}): only prepare, workload, search \
                 and cleanup stages keep or remove versions",
                kind.name(),
                m.what
            );
            return Err(self.err(e.key_pos, &join(&m.path, "versioning"), message));
        }
        Ok(api)
    }

    /// Refuses, at the op's key in the mix, an op the stage's backend
    /// certainly lacks, and a versions op without `versioning: true`.
    pub(super) fn check_object_api(
        &self,
        stage: &Stage,
        m: &Map,
        node: &Node,
    ) -> Result<(), PlanError> {
        let scheme = stage.target.split("://").next().unwrap_or("");
        for (&op, _) in stage.mix.weights.iter().filter(|&(_, &w)| w > 0) {
            let why = match feature_of(op).map(|f| scheme_has(scheme, f)) {
                Some(Err(why)) => why,
                _ if op.on_versions() && !stage.api.versioning => format!(
                    "`{}` acts on versions the stage's puts made; set `versioning: true` \
                     on the stage (its bucket must keep versions)",
                    op.plan_name()
                ),
                _ => continue,
            };
            let key = op.plan_name();
            let pos = mix_key_pos(m, key).unwrap_or(node.pos);
            let message = format!("`{key}` in the mix of {}: {why}", m.what);
            return Err(self.err(pos, &join(&join(&m.path, "mix"), key), message));
        }
        if stage.api.versioning
            && let Err(why) = scheme_has(scheme, Feature::Versions)
            && let Some(e) = m.get("versioning")
        {
            let message = format!("`versioning: true` on {}: {why}", m.what);
            return Err(self.err(e.value.pos, &join(&m.path, "versioning"), message));
        }
        self.check_buckets(stage, m, node)
    }

    /// `buckets` on a target that names a bucket, and `{n}` only with it:
    /// refused at `buckets`, else at the stage's `target` (or the stage).
    fn check_buckets(&self, stage: &Stage, m: &Map, node: &Node) -> Result<(), PlanError> {
        let Err(why) = bucket_targets(&stage.target, stage.api.buckets) else {
            return Ok(());
        };
        let message = format!("{}: {why}", m.what);
        let (pos, key) = match (m.get("buckets"), m.get("target")) {
            (Some(e), _) => (e.value.pos, "buckets"),
            (None, Some(e)) => (e.value.pos, "target"),
            (None, None) => (node.pos, "target"),
        };
        Err(self.err(pos, &join(&m.path, key), message).with_hint(
            "`buckets: N` spreads the key space over N buckets of an s3://, az:// or gs:// \
             target: `{n}` in the bucket name numbers them (s3://run-{n}/x), else `-1` … `-N` \
             is appended",
        ))
    }
}

/// The bucket part of a target (`s3://bucket`), which object lock and
/// versioning belong to.
fn bucket_of(target: &str) -> &str {
    let rest_at = target.find("://").map_or(0, |i| i + 3);
    match target[rest_at..].find('/') {
        Some(i) => &target[..rest_at + i],
        None => target,
    }
}

impl Decoder<'_> {
    /// What the plan's stages need of each other's buckets: every stage on
    /// a bucket that a stage sets retention on has `lock` (its prepare
    /// creates the bucket with object lock), every stage on a bucket a
    /// stage keeps versions in has `versioned_bucket` (its prepare creates
    /// the bucket keeping versions), and a cleanup of a key space
    /// a stage kept versions of (or locked) must remove versions, or it
    /// would leave them behind: refused at the cleanup unless it has
    /// `versioning: true`.
    pub(super) fn link_object_api(
        &self,
        stages: &mut [Stage],
        items: &[Node],
    ) -> Result<(), PlanError> {
        let locked: Vec<String> = stages
            .iter()
            .filter(|s| {
                s.mix
                    .weights
                    .get(&OpKind::Retention)
                    .is_some_and(|&w| w > 0)
            })
            .map(|s| bucket_of(&s.target).to_string())
            .collect();
        let versioned: Vec<String> = stages
            .iter()
            .filter(|s| s.api.versioning)
            .map(|s| bucket_of(&s.target).to_string())
            .collect();
        for s in stages.iter_mut() {
            s.api.lock = locked.iter().any(|b| b == bucket_of(&s.target));
            s.api.versioned_bucket = versioned.iter().any(|b| b == bucket_of(&s.target));
        }
        for (i, c) in stages.iter().enumerate() {
            if c.kind != StageKind::Cleanup || c.api.versioning {
                continue;
            }
            let keeper = stages.iter().find(|s| {
                s.target == c.target
                    && s.objects.prefix == c.objects.prefix
                    && (s.api.versioning || s.api.lock)
            });
            if let Some(k) = keeper {
                let why = if k.api.versioning {
                    "keeps versions (`versioning: true`)"
                } else {
                    "sets retention, which keeps versions"
                };
                let message = format!(
                    "cleanup stage `{}` would leave versions behind: stage `{}` on the same \
                     key space {why}",
                    c.name, k.name
                );
                // One item per stage, so the item is there.
                let pos = items
                    .get(i)
                    .map_or(super::yaml::Pos { line: 1, column: 1 }, |n| n.pos);
                return Err(self
                    .err(pos, &format!("stages[{i}].versioning"), message)
                    .with_hint("set `versioning: true` on the cleanup: it then removes every version the run made"));
            }
        }
        Ok(())
    }
}

/// Where `key` is written in the stage's `mix`.
fn mix_key_pos(m: &Map, key: &str) -> Option<super::yaml::Pos> {
    m.get("mix").and_then(|e| match &e.value.kind {
        NodeKind::Map(entries) => entries.iter().find(|o| o.key == key).map(|o| o.key_pos),
        _ => None,
    })
}

/// The object API's lines of the canonical plan (only what is not the
/// default, so plans without these ops read as before).
pub(super) fn emit(api: &ObjectApi, y: &mut String) {
    if api.versioning {
        let _ = writeln!(y, "    versioning: true");
    }
    if let Some(b) = api.batch {
        let _ = writeln!(y, "    batch: {b}");
    }
    if !api.tags.is_empty() {
        let tags: Vec<String> = api
            .tags
            .iter()
            .map(|(k, v)| format!("{}: {}", super::yaml::quote(k), super::yaml::quote(v)))
            .collect();
        let _ = writeln!(y, "    tags: {{{}}}", tags.join(", "));
    }
    if api.retention != DEFAULT_RETENTION {
        let _ = writeln!(y, "    retention: {}", format_duration(api.retention));
    }
    if api.buckets > 1 {
        let _ = writeln!(y, "    buckets: {}", api.buckets);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Plan, PlanError, parse};
    use super::*;

    /// A plan on `target`: a prepare, a workload with `mix` and `extra`
    /// keys (on line 9), and a cleanup with `cleanup` keys.
    fn plan(target: &str, mix: &str, extra: &str, cleanup: &str) -> String {
        format!(
            "name: api\n\
             target: {target}\n\
             objects: {{count: 10, size: 1KiB}}\n\
             stages:\n\
             \x20 - {{name: p, type: prepare}}\n\
             \x20 - name: w\n\
             \x20   type: workload\n\
             \x20   ops: 10\n\
             \x20   mix: {mix}\n\
             \x20   {extra}\n\
             \x20 - {{name: c, type: cleanup{cleanup}}}\n"
        )
    }

    fn load(text: &str) -> Result<Plan, PlanError> {
        parse(text, "api.yaml")
    }

    #[test]
    fn keys_decode_derive_and_round_trip() {
        let p = load(&plan(
            "s3://b/run",
            "{put: 1, retention: 1, get_version: 1}",
            "versioning: true\n    batch: 250\n    tags: {team: x, 'a b': 'c'}\n    retention: 2h",
            ", versioning: true",
        ))
        .unwrap();
        let w = &p.stages[1].api;
        assert!(w.versioning && w.lock);
        assert_eq!(w.batch, Some(250));
        assert_eq!(w.tags.len(), 2);
        assert_eq!(w.retention, Duration::from_secs(7200));
        // The prepare makes the bucket with object lock for the retention.
        assert_eq!(
            p.stages[0].api.bucket_setup(),
            BucketSetup {
                versioning: true,
                object_lock: true
            }
        );
        assert_eq!(load(&p.to_yaml()).unwrap(), p, "canonical YAML keeps them");
        // A prepare before a stage that keeps versions makes the bucket
        // keep them, though it has no `versioning` of its own.
        let p = load(&plan(
            "s3://b/x",
            "{get_version: 1}",
            "versioning: true",
            ", versioning: true",
        ))
        .unwrap();
        assert!(!p.stages[0].api.versioning);
        assert!(p.stages[0].api.bucket_setup().versioning);
        assert!(!p.stages[0].api.bucket_setup().object_lock);
        let plain = load(&plan("s3://b", "{get: 1}", "", "")).unwrap();
        assert!(
            !plain.to_yaml().contains("versioning"),
            "defaults stay unwritten"
        );
    }

    #[test]
    fn an_op_the_backend_lacks_is_refused_at_its_key() {
        let e = load(&plan("file:///tmp/x", "{get: 1, retention: 2}", "", "")).unwrap_err();
        assert_eq!((e.line, e.column), (9, 19), "{e}");
        assert_eq!(e.key, "stages[1].mix.retention");
        assert!(
            e.message
                .contains("`file://` backend has no object-lock retention"),
            "{e}"
        );
        let e = load(&plan("gs://b", "{append: 1}", "", "")).unwrap_err();
        assert!(
            e.message.contains("GCS objects cannot be appended to"),
            "{e}"
        );
        let e = load(&plan("az://a/c", "{tag: 1, copy: 1, append: 1}", "", "")).unwrap();
        assert_eq!(e.stages.len(), 3);
        let e = load(&plan("file:///tmp/x", "{put: 1}", "versioning: true", "")).unwrap_err();
        assert_eq!(e.key, "stages[1].versioning");
    }

    #[test]
    fn versions_need_versioning_and_a_cleanup_that_removes_them() {
        let e = load(&plan("s3://b", "{get_version: 1}", "", "")).unwrap_err();
        assert_eq!(e.key, "stages[1].mix.get_version");
        assert!(e.message.contains("set `versioning: true`"), "{e}");
        let e = load(&plan("s3://b", "{put: 1}", "versioning: true", "")).unwrap_err();
        assert_eq!(e.key, "stages[2].versioning");
        assert_eq!(e.line, 11, "{e}");
        assert!(e.message.contains("would leave versions behind"), "{e}");
        let e = load(&plan("s3://b", "{retention: 1}", "", "")).unwrap_err();
        assert!(e.message.contains("sets retention"), "{e}");
    }

    #[test]
    fn buckets_decode_round_trip_and_are_located() {
        let text = |target: &str, extra: &str| {
            format!(
                "name: b\n\
                 target: {target}\n\
                 objects: {{count: 10, size: 1KiB}}\n\
                 stages:\n\
                 \x20 - {{name: p, type: prepare{extra}}}\n"
            )
        };
        let p = load(&text("s3://run-{n}/x", ", buckets: 4")).unwrap();
        assert_eq!(p.stages[0].api.buckets, 4);
        assert!(p.to_yaml().contains("buckets: 4"));
        assert_eq!(load(&p.to_yaml()).unwrap(), p, "canonical YAML keeps it");
        let plain = load(&text("s3://run/x", "")).unwrap();
        assert_eq!(plain.stages[0].api.buckets, 1);
        assert!(!plain.to_yaml().contains("buckets"), "1 stays unwritten");
        assert!(load(&text("mem://t", ", buckets: 2")).is_ok());
        let e = load(&text("file:///tmp/x", ", buckets: 2")).unwrap_err();
        assert_eq!(e.key, "stages[0].buckets");
        assert_eq!((e.line, e.column), (5, 39), "{e}");
        assert!(e.message.contains("not `file://`"), "{e}");
        let e = load(&text("s3://b", ", buckets: 1001")).unwrap_err();
        assert_eq!(e.key, "stages[0].buckets");
        let e = load(&text("s3://b", ", buckets: 0")).unwrap_err();
        assert_eq!(e.key, "stages[0].buckets");
        // `{n}` without `buckets` is refused at the stage's target.
        let e = load(&text("s3://b-{n}", ", target: 's3://b-{n}/y'")).unwrap_err();
        assert_eq!(e.key, "stages[0].target");
        assert!(e.message.contains("set `buckets` above 1"), "{e}");
        let e = load(&text("s3://b-{n}", "")).unwrap_err();
        assert_eq!(e.key, "stages[0].target");
        assert_eq!(e.line, 5, "{e}");
    }

    #[test]
    fn bounds_are_located() {
        let e = load(&plan("s3://b", "{delete_batch: 1}", "batch: 1001", "")).unwrap_err();
        assert_eq!(e.key, "stages[1].batch");
        let tags: Vec<String> = (0..11).map(|i| format!("t{i}: v")).collect();
        let e = load(&plan(
            "s3://b",
            "{tag: 1}",
            &format!("tags: {{{}}}", tags.join(", ")),
            "",
        ))
        .unwrap_err();
        assert!(e.message.contains("at most 10"), "{e}");
    }
}
