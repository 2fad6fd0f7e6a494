//! `objects: {existing: true, prefix: ..., allow_delete: ...}`: a key space
//! of objects already there, decoded and checked against the stage using it.
//!
//! Chorus did not write these objects, so what it may do with them is
//! narrower than with its own key space: they are read (`get`,
//! `range_get`, `stat`, `list`), never written (a PUT would replace bytes
//! someone else owns) nor verified (there is nothing to compare with), and
//! deleted only under `allow_delete: true`. Every refusal is located at
//! the key that asks for it.

use super::error::PlanError;
use super::load::{Decoder, Map, join};
use super::yaml::{Node, NodeKind, Pos};
use super::{Existing, KeyNaming, KeySpace, Partition, SizeSpec, Stage};
use crate::op::OpKind;

/// Keys of a key space that describe objects Chorus makes, and so do not
/// apply to existing ones.
const MADE_KEYS: [&str; 4] = ["count", "size", "naming", "partition"];

impl Decoder<'_> {
    /// The `existing` and `allow_delete` keys of the `objects` mapping `m`:
    /// `Some` for `existing: true`.
    pub(super) fn existing(&self, m: &Map<'_>) -> Result<Option<Existing>, PlanError> {
        let flag = |key: &str| {
            m.get(key)
                .map(|e| self.boolean(e, &join(&m.path, key)))
                .transpose()
        };
        let existing = flag("existing")?.unwrap_or(false);
        let allow_delete = flag("allow_delete")?;
        if !existing {
            if let Some(e) = m.get("allow_delete").filter(|_| allow_delete.is_some()) {
                let message = format!(
                    "`allow_delete` in {} applies only with `existing: true`; \
                     Chorus may always delete the objects it writes",
                    m.what
                );
                return Err(self.err(e.key_pos, &join(&m.path, "allow_delete"), message));
            }
            return Ok(None);
        }
        if let Some(key) = MADE_KEYS.into_iter().find(|k| m.get(k).is_some()) {
            let message = format!(
                "`{key}` does not apply to existing objects ({} has `existing: true`): \
                 the listing before the stage finds which objects there are and their sizes",
                m.what
            );
            let pos = m.get(key).map_or(m.node.pos, |e| e.key_pos);
            return Err(self
                .err(pos, &join(&m.path, key), message)
                .with_hint(format!("remove `{key}`, or set `existing: false`")));
        }
        Ok(Some(Existing {
            allow_delete: allow_delete.unwrap_or(false),
        }))
    }

    /// The key space of `existing` objects under `prefix`.
    pub(super) fn existing_space(
        &self,
        m: &Map<'_>,
        prefix: String,
        existing: Existing,
    ) -> Result<KeySpace, PlanError> {
        Ok(KeySpace {
            prefix,
            count: 0,
            size: SizeSpec::Fixed(0),
            naming: KeyNaming::default(),
            distribution: self.distribution(m)?,
            partition: Partition::Agent,
            existing: Some(existing),
        })
    }

    /// Refuses what a stage may not do with existing objects. `m` is the
    /// stage's mapping at `path`, `node` its node (where an error goes when
    /// the offending key is inherited from the top of the plan).
    pub(super) fn check_existing_stage(
        &self,
        stage: &Stage,
        m: &Map<'_>,
        node: &Node,
        what: &str,
    ) -> Result<(), PlanError> {
        let Some(existing) = stage.objects.existing else {
            return Ok(());
        };
        let at = |key: &str| -> (Pos, String) {
            (
                m.get(key).map_or(node.pos, |e| e.key_pos),
                join(&m.path, key),
            )
        };
        let prefix = &stage.objects.prefix;
        if !stage.runs_mix() {
            let (pos, path) = at("objects");
            let message = format!(
                "{what} is a {} stage on existing objects (prefix `{prefix}`): \
                 a prepare writes and a cleanup deletes the objects Chorus makes, \
                 and these are not Chorus's",
                stage.kind.name()
            );
            return Err(self
                .err(pos, &path, message)
                .with_hint("read existing objects in a workload stage; for a key space Chorus writes, drop `existing: true`"));
        }
        if stage.verify {
            let (pos, path) = at("verify");
            let message = format!(
                "`verify` is not allowed on existing objects ({what}, prefix `{prefix}`): \
                 Chorus did not write those bytes, so it has nothing to compare them with"
            );
            return Err(self.err(pos, &path, message).with_hint(
                "set `verify: false`, or verify in a stage on a key space Chorus prepared",
            ));
        }
        for (&op, _) in stage.mix.weights.iter().filter(|&(_, &w)| w > 0) {
            let refused = match op {
                OpKind::Get | OpKind::RangeGet | OpKind::Stat | OpKind::List => None,
                OpKind::Delete if existing.allow_delete => None,
                OpKind::Delete => Some(
                    "would remove objects Chorus did not write; \
                     set `allow_delete: true` in `objects` if that is meant",
                ),
                OpKind::Put | OpKind::MultipartPut => {
                    Some("would replace the bytes of objects Chorus did not write")
                }
                OpKind::Mkdir | OpKind::Rmdir => {
                    Some("works on directories of Chorus's key space, not on listed objects")
                }
                // Parts of a large op, never in a mix (the mix refuses them).
                OpKind::GetPart | OpKind::PutPart => None,
                OpKind::GetTags => None,
                OpKind::DeleteBatch => Some(
                    "is not done on listed objects (its keys are the key space's); \
                     use `delete` with `allow_delete: true`",
                ),
                OpKind::Copy | OpKind::Append => {
                    Some("would write objects beside ones Chorus did not write")
                }
                OpKind::Tag | OpKind::Retention => {
                    Some("would change objects Chorus did not write")
                }
                OpKind::GetVersion | OpKind::DeleteVersion | OpKind::ListVersions => {
                    Some("acts on versions Chorus wrote, and listed objects have none")
                }
            };
            if let Some(why) = refused {
                let key = op.plan_name();
                let pos = m
                    .get("mix")
                    .and_then(|e| match &e.value.kind {
                        NodeKind::Map(entries) => entries.iter().find(|o| o.key == key),
                        _ => None,
                    })
                    .map_or(node.pos, |e| e.key_pos);
                let message = format!(
                    "`{key}` in the mix of {what} on existing objects (prefix `{prefix}`) {why}"
                );
                return Err(self.err(pos, &join(&join(&m.path, "mix"), key), message));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::{Existing, KeyDistribution, PlanError, parse};

    /// A plan of one stage `stage` (a flow mapping's inside) on line 4.
    fn one(stage: &str) -> Result<crate::plan::Plan, PlanError> {
        parse(
            &format!("name: t\ntarget: s3://b\nstages:\n  - {{name: s, {stage}}}\n"),
            "t.yaml",
        )
    }

    fn refused(stage: &str) -> PlanError {
        match one(stage) {
            Ok(_) => panic!("accepted: {stage}"),
            Err(e) => e,
        }
    }

    const READS: &str = "type: workload, mix: {get: 2, range_get: 1, stat: 1, list: 1}, ops: 10";

    #[test]
    fn existing_objects_load_and_round_trip() {
        let p = one(&format!(
            "{READS}, objects: {{existing: true, prefix: \"data/x \", distribution: {{zipf: 1.2}}}}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let o = &p.stages[0].objects;
        assert_eq!(o.existing, Some(Existing::default()));
        assert_eq!((o.prefix.as_str(), o.count), ("data/x ", 0));
        assert_eq!(o.distribution, KeyDistribution::Zipf(1.2));
        let text = p.to_yaml();
        assert!(text.contains("existing: true"), "{text}");
        assert_eq!(parse(&text, "again").unwrap(), p, "{text}");

        let d = one("type: workload, mix: {delete: 1, get: 1}, ops: 1, \
             objects: {existing: true, prefix: a/, allow_delete: true}")
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(d.stages[0].objects.existing.is_some_and(|e| e.allow_delete));
        assert_eq!(parse(&d.to_yaml(), "again").unwrap(), d);
    }

    #[test]
    fn verify_is_refused_at_its_key() {
        let e = refused(&format!(
            "{READS}, verify: true, objects: {{existing: true, prefix: a/}}"
        ));
        assert_eq!((e.line, e.key.as_str()), (4, "stages[0].verify"), "{e}");
        assert_eq!(e.column, 87, "{e}");
        assert!(e.message.contains("did not write those bytes"), "{e}");
    }

    #[test]
    fn delete_needs_allow_delete_and_writes_are_refused() {
        let e = refused(
            "type: workload, mix: {get: 1, delete: 1}, ops: 1, \
             objects: {existing: true, prefix: a/}",
        );
        assert_eq!((e.line, e.key.as_str()), (4, "stages[0].mix.delete"), "{e}");
        assert!(e.message.contains("allow_delete: true"), "{e}");
        assert_eq!(e.column, 45, "{e}");
        for op in ["put", "multipart_put", "mkdir"] {
            let e = refused(&format!(
                "type: workload, mix: {{{op}: 1}}, ops: 1, objects: {{existing: true, prefix: a/, allow_delete: true}}"
            ));
            assert_eq!(e.key, format!("stages[0].mix.{op}"), "{e}");
        }
    }

    #[test]
    fn keys_of_made_objects_and_prepare_or_cleanup_are_refused() {
        for key in [
            "count: 5",
            "size: 1KiB",
            "naming: {width: 4}",
            "partition: agent",
        ] {
            let e = refused(&format!(
                "{READS}, objects: {{existing: true, prefix: a/, {key}}}"
            ));
            let name = key.split(':').next().unwrap();
            assert_eq!(e.key, format!("stages[0].objects.{name}"), "{e}");
            assert!(
                e.message.contains("does not apply to existing objects"),
                "{e}"
            );
        }
        for kind in ["prepare", "cleanup"] {
            let e = refused(&format!(
                "type: {kind}, objects: {{existing: true, prefix: a/}}"
            ));
            assert_eq!((e.line, e.key.as_str()), (4, "stages[0].objects"), "{e}");
            assert!(e.message.contains("not Chorus's"), "{e}");
        }
        let e = refused(&format!(
            "{READS}, objects: {{count: 5, size: 1, allow_delete: true}}"
        ));
        assert_eq!(e.key, "stages[0].objects.allow_delete", "{e}");
    }

    #[test]
    fn a_plan_level_existing_key_space_is_checked_in_each_stage() {
        let e = parse(
            "name: t\ntarget: s3://b\nobjects: {existing: true, prefix: a/}\nverify: true\nstages:\n  - {name: s, type: workload, mix: {get: 1}, ops: 1}\n",
            "t.yaml",
        );
        // `verify` is a stage key only: the top level refuses it itself.
        assert!(e.is_err());
        let e = parse(
            "name: t\ntarget: s3://b\nobjects: {existing: true, prefix: a/}\nstages:\n  - {name: s, type: workload, mix: {delete: 1}, ops: 1}\n",
            "t.yaml",
        )
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (5, "stages[0].mix.delete"), "{e}");
    }
}
