//! Chorus core library, embedded by every binary.
//!
//! - [`plan`]: the plan file, read strictly, with located errors.
//! - [`store`]: one async `ObjectStore` trait and a module per backend.
//! - [`datagen`]: reproducible payload bytes keyed by (seed, key, block).
//! - [`workload`]: runs one agent's share of a stage: workers, op choice, timing.
//! - [`oplog`]: one record per op, written as zstd TSV, read back, merged.
//! - [`metrics`]: HDR histograms per op, merged exactly; stage summaries.
//! - [`clock`]: wall-clock times, RFC 3339 formatting, NTP-style offsets.
//! - [`op`]: the op kinds and their names.
//! - [`topology`]: NUMA nodes and the CPUs this process may use; CPU list syntax.
//! - [`pools`]: one tokio runtime per NUMA node or CPU set, threads pinned.
//! - [`discovery`]: finding agents: address templates, SLURM node lists, etcd.
//! - [`trace`]: traces (Chorus, warp, s3dlio op-logs) read one op at a time for replay.
//! - [`dataset`]: training-dataset files (raw, npz, tfrecord, jsonl): layout and bytes.
//! - [`aligned`]: the aligned heap buffer `direct://` and payloads use.
//! - [`limits`]: the open-file limit raised to what the system allows.
//!
//! Nothing here knows the wire format; `chorus-proto` converts these types.

pub mod aligned;
pub mod clock;
pub mod datagen;
pub mod dataset;
pub mod discovery;
pub mod limits;
pub mod metrics;
pub mod op;
pub mod oplog;
pub mod plan;
pub mod pools;
pub mod store;
pub mod topology;
pub mod trace;
pub mod workload;
