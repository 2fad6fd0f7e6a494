//! What the dataset checkers in `tests/python/` compare files against:
//! each sample's id, label, length and SHA-256, from the layout and data
//! spec that made them (see `tests/python/expected.py`).

use std::path::Path;

use chorus_common::datagen::DataSpec;
use chorus_common::dataset::{Layout, label};
use sha2::{Digest, Sha256};

/// Writes the expected samples of every file of `layout` (named by the
/// last part of its key) to `path` as JSON.
pub fn write_expected(layout: &Layout, data: &DataSpec, path: &Path) {
    let mut files = serde_json::Map::new();
    for file in 0..layout.files() {
        let key = layout.file_key(file);
        let name = key.rsplit('/').next().unwrap_or_default().to_owned();
        let first = layout.first_sample(file);
        let samples: Vec<_> = (first..first + u64::from(layout.samples_in_file(file)))
            .map(|i| {
                let payload = layout.payload(data, i);
                let sha: String = Sha256::digest(&payload)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                serde_json::json!({"id": i, "label": label(i), "len": payload.len(), "sha256": sha})
            })
            .collect();
        files.insert(name, samples.into());
    }
    let json = serde_json::json!({ "files": files });
    std::fs::write(path, serde_json::to_vec(&json).expect("JSON")).expect("expected.json written");
}
