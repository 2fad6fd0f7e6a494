//! Target URIs: `scheme://authority/path`, the one place that knows which
//! schemes exist.

use std::fmt;

/// Every scheme a plan may name. The list is fixed here so that `validate`
/// and `run` agree on what is a known scheme; whether a backend for it is
/// compiled in is decided by [`crate::store::open`].
pub const SCHEMES: [&str; 6] = ["file", "direct", "mem", "s3", "az", "gs"];

/// A parsed target URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetUri {
    /// One of [`SCHEMES`].
    pub scheme: String,
    /// For `file://` and `direct://` the absolute directory path; for object
    /// stores `bucket/prefix` (or `account/container/prefix` for `az://`);
    /// for `mem://` a name shared by every stage of the process.
    pub rest: String,
}

impl TargetUri {
    /// Parses `text`, returning a message (no location; the caller adds it)
    /// on failure.
    pub fn parse(text: &str) -> Result<TargetUri, String> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(format!(
                "`{text}` is not a target URI; expected scheme://path with a scheme of {}",
                SCHEMES.join(", ")
            ));
        };
        if !SCHEMES.contains(&scheme) {
            return Err(format!(
                "unknown URI scheme `{scheme}` in `{text}`; expected one of {}",
                SCHEMES.join(", ")
            ));
        }
        match scheme {
            "file" | "direct" if !rest.starts_with('/') => {
                return Err(format!(
                    "`{text}` needs an absolute path, e.g. {scheme}:///tmp/chorus"
                ));
            }
            "s3" | "gs" | "az" if rest.is_empty() || rest.starts_with('/') => {
                return Err(format!(
                    "`{text}` needs a bucket, e.g. {scheme}://bucket/prefix"
                ));
            }
            _ => {}
        }
        if matches!(scheme, "file" | "direct") {
            check_engine(rest)?;
        }
        Ok(TargetUri {
            scheme: scheme.to_string(),
            rest: rest.to_string(),
        })
    }
}

/// Refuses a bad `engine=` in a local target's query at plan load, so the
/// error points at the plan (the store checks its other parameters, and
/// whether io_uring is there, when it opens on the agent).
fn check_engine(rest: &str) -> Result<(), String> {
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    for value in query.split('&').filter_map(|p| p.strip_prefix("engine=")) {
        if super::uring::Engine::parse(value).is_none() {
            return Err(format!(
                "invalid `engine`: `{value}`; it is one of `psync`, `io_uring`, `auto`"
            ));
        }
    }
    Ok(())
}

impl fmt::Display for TargetUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_schemes() {
        let t = TargetUri::parse("file:///tmp/x").unwrap();
        assert_eq!(t.scheme, "file");
        assert_eq!(t.rest, "/tmp/x");
        assert_eq!(t.to_string(), "file:///tmp/x");
        assert!(TargetUri::parse("s3://bucket/p").is_ok());
        assert!(TargetUri::parse("mem://q").is_ok());
    }

    #[test]
    fn rejects_bad_uris() {
        let e = TargetUri::parse("ftp://x/y").unwrap_err();
        assert!(e.contains("unknown URI scheme `ftp`"), "{e}");
        assert!(TargetUri::parse("/tmp/x").is_err());
        assert!(TargetUri::parse("file://relative").is_err());
        assert!(TargetUri::parse("file:///x?engine=io_uring").is_ok());
        assert!(TargetUri::parse("direct:///x?io_size=4KiB&engine=auto").is_ok());
        let e = TargetUri::parse("direct:///x?engine=uring").unwrap_err();
        assert!(e.contains("invalid `engine`"), "{e}");
        assert!(TargetUri::parse("s3://").is_err());
    }
}
