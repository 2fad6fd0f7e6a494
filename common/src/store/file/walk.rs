//! LIST for `file://` (and `direct://`, whose metadata ops are the file
//! store's): a walk of the root's directory tree in key order.

use std::fs;
use std::io;
use std::path::Path;

/// A walk of a directory tree in key order.
pub(super) struct Walk<'a> {
    pub prefix: &'a str,
    /// Keys up to and including this one are skipped (continuation).
    pub after: &'a str,
    /// With `/` as delimiter, a directory below the prefix is one entry
    /// (`dir/`) and is not descended into.
    pub roll_dirs: bool,
    /// Stop once this many keys are collected.
    pub cap: usize,
    pub out: Vec<(String, u64)>,
}

impl Walk<'_> {
    pub fn dir(&mut self, dir: &Path, base: &str) -> io::Result<()> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not a valid key; such files were not written by us
            };
            let is_dir = entry.file_type()?.is_dir();
            // Sort as the keys sort: a directory's keys all start `name/`.
            let sort_key = if is_dir { format!("{name}/") } else { name };
            entries.push((sort_key, is_dir));
        }
        entries.sort();
        for (name, is_dir) in entries {
            if self.out.len() >= self.cap {
                return Ok(());
            }
            let key = format!("{base}{name}");
            if is_dir {
                let below_prefix = key.starts_with(self.prefix) && key.len() > self.prefix.len();
                if self.roll_dirs && below_prefix {
                    // `key` ends in '/': it rolls up to itself.
                    if key.as_str() > self.after {
                        self.out.push((key, 0));
                    }
                } else if key.starts_with(self.prefix) || self.prefix.starts_with(&key) {
                    self.dir(&dir.join(name.trim_end_matches('/')), &key)?;
                }
            } else if key.starts_with(self.prefix) && key.as_str() > self.after {
                let size = fs::metadata(dir.join(&name))?.len();
                self.out.push((key, size));
            }
        }
        Ok(())
    }
}
