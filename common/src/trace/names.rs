//! Op names each tool writes, mapped onto Chorus op kinds. A name maps only
//! where the op is the same operation: warp's `PUTPART` is one part of a
//! multipart upload, not a whole `MULTIPART_PUT`, so it stays unknown.

use super::{TraceFormat, TraceOpKind};
use crate::op::OpKind;
use std::str::FromStr;

/// The op kind of `name` as `format` writes it.
pub(super) fn op_kind(format: TraceFormat, name: &str) -> TraceOpKind {
    let known = match format {
        // Our own names (and `HEAD`), case-insensitive as the reader is.
        TraceFormat::Chorus => OpKind::from_str(name).ok(),
        // warp's `OpType`s: http.MethodGet/Put/Delete and "STAT", "LIST",
        // its append benchmark's "APPEND" and its retention benchmark's
        // "RETENTION" (a PutObjectRetention on an object it wrote).
        TraceFormat::Warp => match name {
            "GET" => Some(OpKind::Get),
            "PUT" => Some(OpKind::Put),
            "DELETE" => Some(OpKind::Delete),
            "STAT" => Some(OpKind::Stat),
            "LIST" => Some(OpKind::List),
            "APPEND" => Some(OpKind::Append),
            "RETENTION" => Some(OpKind::Retention),
            _ => None,
        },
        // s3dlio's `log_operation`/`LogContext` names.
        TraceFormat::S3dlio => match name {
            "GET" => Some(OpKind::Get),
            "GET_RANGE" => Some(OpKind::RangeGet),
            "PUT" => Some(OpKind::Put),
            "DELETE" => Some(OpKind::Delete),
            "HEAD" | "STAT" => Some(OpKind::Stat),
            "LIST" => Some(OpKind::List),
            // One multi-object delete, its `n_objects` keys.
            "DELETE_BATCH" => Some(OpKind::DeleteBatch),
            _ => None,
        },
    };
    match known {
        Some(k) => TraceOpKind::Known(k),
        None => TraceOpKind::Unknown(name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_per_format() {
        use TraceFormat::*;
        let known = |f, n| match op_kind(f, n) {
            TraceOpKind::Known(k) => Some(k),
            TraceOpKind::Unknown(_) => None,
        };
        assert_eq!(known(Warp, "STAT"), Some(OpKind::Stat));
        assert_eq!(known(Warp, "PUTPART"), None);
        assert_eq!(known(Warp, "RETENTION"), Some(OpKind::Retention));
        assert_eq!(known(Warp, "APPEND"), Some(OpKind::Append));
        assert_eq!(known(Warp, "VERSIONED"), None);
        assert_eq!(known(Warp, "get"), None);
        assert_eq!(known(S3dlio, "HEAD"), Some(OpKind::Stat));
        assert_eq!(known(S3dlio, "GET_RANGE"), Some(OpKind::RangeGet));
        assert_eq!(known(S3dlio, "DELETE_BATCH"), Some(OpKind::DeleteBatch));
        assert_eq!(known(S3dlio, "DELETE_PREFIX"), None);
        for k in OpKind::ALL {
            assert_eq!(known(Chorus, k.log_name()), Some(k));
        }
        assert_eq!(known(Chorus, "GET_RANGE"), None);
        assert_eq!(
            op_kind(Warp, "MULTIPART"),
            TraceOpKind::Unknown("MULTIPART".to_string())
        );
    }
}
