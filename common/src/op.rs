//! The kinds of storage operation Chorus issues, and their names in plans
//! and op-logs.
//!
//! Op-log names follow warp and s3dlio (`GET`, `PUT`, `STAT`, `DELETE`,
//! `LIST`, warp's `APPEND` and `RETENTION`) so their tools can read our
//! logs; ops they do not have get names of the same style (`RANGE_GET`,
//! `MULTIPART_PUT`, `MKDIR`, `RMDIR`, `COPY`, `DELETE_BATCH`, …). Plan
//! names are lower case.
//!
//! The object API past the core (copy, append, batch delete, tags,
//! retention, versions) came after the part kinds: they are declared
//! after them so a kind's number (its place, which the agent's spool
//! writes) stays what it was.
//!
//! Two kinds are not ops but parts of one: `GET_PART` (one ranged request
//! of a `parallel` GET) and `PUT_PART` (one part of an upload in parts).
//! They are logged beside their op (same thread, key and endpoint) so the
//! timeline shows how a large object moved, but are never chosen in a mix,
//! never counted as ops (no histogram sample, no op in a stage's totals)
//! and carry `n_objects` 0.

use std::fmt;
use std::str::FromStr;

/// One kind of storage operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Get,
    /// A GET of part of an object.
    RangeGet,
    Put,
    /// A PUT in parts (S3 multipart upload, Azure blocks, …).
    MultipartPut,
    Stat,
    Delete,
    List,
    Mkdir,
    Rmdir,
    /// One ranged request of a `parallel` GET (not an op: see the module
    /// docs).
    GetPart,
    /// One part of an upload in parts (not an op: see the module docs).
    PutPart,
    /// A server-side copy of an existing object to a new key.
    Copy,
    /// Bytes appended to an object (created when missing).
    Append,
    /// One multi-object delete of up to the stage's `batch` keys.
    DeleteBatch,
    /// An object's tags set.
    Tag,
    /// An object's tags read.
    GetTags,
    /// Object-lock retention (governance) set on an object.
    Retention,
    /// A GET of one version the agent wrote.
    GetVersion,
    /// One version the agent wrote removed for good.
    DeleteVersion,
    /// One page of a versions listing.
    ListVersions,
}

impl OpKind {
    /// Every kind a log may hold, in the order summaries print them (parts
    /// are never counted, so never printed), which is their declaration
    /// order.
    pub const ALL: [OpKind; 20] = [
        OpKind::Get,
        OpKind::RangeGet,
        OpKind::Put,
        OpKind::MultipartPut,
        OpKind::Stat,
        OpKind::Delete,
        OpKind::List,
        OpKind::Mkdir,
        OpKind::Rmdir,
        OpKind::GetPart,
        OpKind::PutPart,
        OpKind::Copy,
        OpKind::Append,
        OpKind::DeleteBatch,
        OpKind::Tag,
        OpKind::GetTags,
        OpKind::Retention,
        OpKind::GetVersion,
        OpKind::DeleteVersion,
        OpKind::ListVersions,
    ];

    /// The kind's place in [`OpKind::ALL`], for tables indexed by kind.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The ops a mix may choose: every kind but the parts.
    pub const OPS: [OpKind; 18] = [
        OpKind::Get,
        OpKind::RangeGet,
        OpKind::Put,
        OpKind::MultipartPut,
        OpKind::Stat,
        OpKind::Delete,
        OpKind::List,
        OpKind::Mkdir,
        OpKind::Rmdir,
        OpKind::Copy,
        OpKind::Append,
        OpKind::DeleteBatch,
        OpKind::Tag,
        OpKind::GetTags,
        OpKind::Retention,
        OpKind::GetVersion,
        OpKind::DeleteVersion,
        OpKind::ListVersions,
    ];

    /// The lower-case name used as a key in plan files (`mix: {get: 70}`).
    pub fn plan_name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::RangeGet => "range_get",
            OpKind::Put => "put",
            OpKind::MultipartPut => "multipart_put",
            OpKind::Stat => "stat",
            OpKind::Delete => "delete",
            OpKind::List => "list",
            OpKind::Mkdir => "mkdir",
            OpKind::Rmdir => "rmdir",
            OpKind::GetPart => "get_part",
            OpKind::PutPart => "put_part",
            OpKind::Copy => "copy",
            OpKind::Append => "append",
            OpKind::DeleteBatch => "delete_batch",
            OpKind::Tag => "tag",
            OpKind::GetTags => "get_tags",
            OpKind::Retention => "retention",
            OpKind::GetVersion => "get_version",
            OpKind::DeleteVersion => "delete_version",
            OpKind::ListVersions => "list_versions",
        }
    }

    /// The upper-case name written in the op-log `op` column.
    pub fn log_name(self) -> &'static str {
        match self {
            OpKind::Get => "GET",
            OpKind::RangeGet => "RANGE_GET",
            OpKind::Put => "PUT",
            OpKind::MultipartPut => "MULTIPART_PUT",
            OpKind::Stat => "STAT",
            OpKind::Delete => "DELETE",
            OpKind::List => "LIST",
            OpKind::Mkdir => "MKDIR",
            OpKind::Rmdir => "RMDIR",
            OpKind::GetPart => "GET_PART",
            OpKind::PutPart => "PUT_PART",
            OpKind::Copy => "COPY",
            OpKind::Append => "APPEND",
            OpKind::DeleteBatch => "DELETE_BATCH",
            OpKind::Tag => "TAG",
            OpKind::GetTags => "GET_TAGS",
            OpKind::Retention => "RETENTION",
            OpKind::GetVersion => "GET_VERSION",
            OpKind::DeleteVersion => "DELETE_VERSION",
            OpKind::ListVersions => "LIST_VERSIONS",
        }
    }

    /// True for the part kinds: a piece of an op, not an op.
    pub fn is_part(self) -> bool {
        matches!(self, OpKind::GetPart | OpKind::PutPart)
    }

    /// True for ops on an object that must exist (a copy's source).
    pub fn reads_existing(self) -> bool {
        matches!(
            self,
            OpKind::Get
                | OpKind::RangeGet
                | OpKind::Stat
                | OpKind::Delete
                | OpKind::Copy
                | OpKind::Tag
                | OpKind::GetTags
                | OpKind::Retention
        )
    }

    /// True for ops on versions the agent wrote (they need a stage with
    /// `versioning: true`).
    pub fn on_versions(self) -> bool {
        matches!(
            self,
            OpKind::GetVersion | OpKind::DeleteVersion | OpKind::ListVersions
        )
    }

    /// Whether a traced op of this kind is issued again by a replay: not a
    /// part (its op is), and not one whose keys or version ids were the
    /// traced server's (a batch's keys are not in the log, a version id
    /// exists only where it was made).
    pub fn replayable(self) -> bool {
        !self.is_part()
            && !matches!(
                self,
                OpKind::DeleteBatch | OpKind::GetVersion | OpKind::DeleteVersion
            )
    }

    /// True for ops that may remove an object or a version of one.
    pub fn removes(self) -> bool {
        matches!(
            self,
            OpKind::Delete | OpKind::DeleteBatch | OpKind::DeleteVersion
        )
    }

    /// True for ops that create or replace an object.
    pub fn writes(self) -> bool {
        matches!(self, OpKind::Put | OpKind::MultipartPut)
    }

    /// Parses a plan name of an op (`get`; never a part kind); see
    /// [`OpKind::from_str`] for log names.
    pub fn from_plan_name(s: &str) -> Option<OpKind> {
        OpKind::OPS.into_iter().find(|k| k.plan_name() == s)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.log_name())
    }
}

impl FromStr for OpKind {
    type Err = String;

    /// Accepts op-log names case-insensitively, plus `HEAD` (s3dlio's name
    /// for a stat).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        if upper == "HEAD" {
            return Ok(OpKind::Stat);
        }
        OpKind::ALL
            .into_iter()
            .find(|k| k.log_name() == upper)
            .ok_or_else(|| format!("unknown op `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in OpKind::ALL {
            assert_eq!(k.log_name().parse::<OpKind>().unwrap(), k);
        }
        for k in OpKind::OPS {
            assert_eq!(OpKind::from_plan_name(k.plan_name()), Some(k));
        }
        // Parts are logged, never chosen.
        assert_eq!(OpKind::from_plan_name("get_part"), None);
        assert_eq!("head".parse::<OpKind>().unwrap(), OpKind::Stat);
        assert!("gett".parse::<OpKind>().is_err());
    }

    #[test]
    fn index_is_the_place_in_all() {
        for (i, k) in OpKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        for (i, c) in crate::store::ErrorClass::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
