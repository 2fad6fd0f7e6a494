//! The kinds of storage operation Chorus issues, and their names in plans
//! and op-logs.
//!
//! Op-log names follow warp and s3dlio (`GET`, `PUT`, `STAT`, `DELETE`,
//! `LIST`) so their tools can read our logs; plan names are lower case.

use std::fmt;
use std::str::FromStr;

/// One kind of storage operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Get,
    Put,
    Stat,
    Delete,
    List,
}

impl OpKind {
    /// Every op, in the order summaries print them.
    pub const ALL: [OpKind; 5] = [
        OpKind::Get,
        OpKind::Put,
        OpKind::Stat,
        OpKind::Delete,
        OpKind::List,
    ];

    /// The lower-case name used as a key in plan files (`mix: {get: 70}`).
    pub fn plan_name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::Put => "put",
            OpKind::Stat => "stat",
            OpKind::Delete => "delete",
            OpKind::List => "list",
        }
    }

    /// The upper-case name written in the op-log `op` column.
    pub fn log_name(self) -> &'static str {
        match self {
            OpKind::Get => "GET",
            OpKind::Put => "PUT",
            OpKind::Stat => "STAT",
            OpKind::Delete => "DELETE",
            OpKind::List => "LIST",
        }
    }

    /// Parses a plan name (`get`); see [`OpKind::from_str`] for log names.
    pub fn from_plan_name(s: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.plan_name() == s)
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
            assert_eq!(OpKind::from_plan_name(k.plan_name()), Some(k));
            assert_eq!(k.log_name().parse::<OpKind>().unwrap(), k);
        }
        assert_eq!("head".parse::<OpKind>().unwrap(), OpKind::Stat);
        assert!("gett".parse::<OpKind>().is_err());
    }
}
