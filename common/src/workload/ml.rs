//! What the AI/ML stages write or read once, dealt over agents and taken
//! by workers one at a time: a dataset's files (with a TFRecord file's
//! index beside it), and a checkpoint's shards, one per rank.
//!
//! A dataset file's bytes are made by its format (`crate::dataset`)
//! before the op's clock starts and written in one request; a shard is
//! an ordinary generated object, uploaded in parts when it is larger
//! than the stage's `part_size`, and verified by the generator when read
//! back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::source::{Target, Work};
use crate::datagen::DataSpec;
use crate::dataset::Layout;
use crate::op::OpKind;
use crate::plan::{CheckpointSpec, RestoreFrom};

/// This agent's files of a dataset: file `f` goes to agent `f % agents`.
pub struct DatasetFiles {
    layout: Arc<Layout>,
    data: DataSpec,
    agent_index: u64,
    agent_count: u64,
    /// Objects per file: the file, and its index where the format has one.
    per_file: u64,
    next: AtomicU64,
    /// Objects (file, or its index) already there at their size: one bit
    /// each of this agent's, skipped.
    present: Vec<bool>,
}

impl DatasetFiles {
    pub fn new(layout: Arc<Layout>, data: &DataSpec, agent_index: u32, agent_count: u32) -> Self {
        let per_file = if layout.index_key(0).is_some() { 2 } else { 1 };
        DatasetFiles {
            layout,
            data: *data,
            agent_index: u64::from(agent_index),
            agent_count: u64::from(agent_count.max(1)),
            per_file,
            next: AtomicU64::new(0),
            present: Vec::new(),
        }
    }

    /// Like a prepare, keeps the files already there at their size: one
    /// listing of the prefix, reading at most every object of the dataset
    /// and as many others.
    pub(super) async fn skip_listed(&mut self, run: &super::StageRun) -> anyhow::Result<()> {
        let objects = self.layout.files().saturating_mul(self.per_file);
        let max = objects.saturating_mul(2).saturating_add(1000);
        let max = max.min(usize::MAX as u64) as usize;
        let prefix = self.layout.prefix().to_string();
        let timeout = run.stage.retry.timeout;
        match super::ops::list_all_timed(run.store.as_ref(), &prefix, max, timeout).await {
            Ok(found) => self.skip_existing(&found),
            // Nothing there yet (a bucket this stage creates).
            Err(e) if e.class == crate::store::ErrorClass::NotFound => {}
            Err(e) => anyhow::bail!("listing {}{prefix}: {e}", run.store),
        }
        Ok(())
    }

    /// Marks this agent's objects that `found` (a listing of the prefix)
    /// holds at the size the layout gives them: they are not written again.
    fn skip_existing(&mut self, found: &[crate::store::ObjectMeta]) {
        let sizes: std::collections::HashMap<&str, u64> =
            found.iter().map(|m| (m.key.as_str(), m.size)).collect();
        let mine = self
            .layout
            .files()
            .saturating_sub(self.agent_index)
            .div_ceil(self.agent_count);
        self.present = (0..mine * self.per_file)
            .map(|i| {
                let file = self.agent_index + (i / self.per_file) * self.agent_count;
                let (key, size) = match i % self.per_file {
                    0 => (
                        self.layout.file_key(file),
                        Some(self.layout.file_size(file)),
                    ),
                    _ => match self.layout.index_key(file) {
                        Some(k) => (k, None),
                        None => return false,
                    },
                };
                // An index's size is known only by making it: any size
                // will do when its file is there at its size.
                sizes
                    .get(key.as_str())
                    .is_some_and(|&s| size.is_none_or(|want| s == want))
            })
            .collect();
    }

    /// The next object to write, its bytes made; `None` when all are taken.
    pub(super) fn next(&self) -> Option<Work> {
        let i = loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if !self.present.get(i as usize).copied().unwrap_or(false) {
                break i;
            }
        };
        let (nth, part) = (i / self.per_file, i % self.per_file);
        let file = self.agent_index + nth * self.agent_count;
        if file >= self.layout.files() {
            return None;
        }
        let (key, bytes) = match part {
            0 => (
                self.layout.file_key(file),
                self.layout.file_bytes(&self.data, file),
            ),
            _ => (self.layout.index_key(file)?, self.layout.index_bytes(file)?),
        };
        Some(Work {
            op: OpKind::Put,
            target: Target::Key {
                key,
                size: bytes.len() as u64,
                range: None,
                content: Some(bytes),
            },
            due: None,
            token: None,
        })
    }
}

/// This agent's shards of a checkpoint: one op per local rank, all at
/// once (the stage's workers are its ranks).
pub struct Shards {
    spec: CheckpointSpec,
    agent_index: u32,
    agent_count: u32,
    restore: bool,
    next: AtomicU64,
}

impl Shards {
    pub fn new(spec: &CheckpointSpec, agent_index: u32, agent_count: u32, restore: bool) -> Self {
        Shards {
            spec: spec.clone(),
            agent_index,
            agent_count: agent_count.max(1),
            restore,
            next: AtomicU64::new(0),
        }
    }

    /// Total ranks over the cluster.
    fn ranks(&self) -> u32 {
        self.agent_count * self.spec.accelerators
    }

    /// Each shard's size: the checkpoint split evenly (checked before the
    /// run by `Plan::check_ranks`).
    pub fn shard_size(&self) -> u64 {
        self.spec.size / u64::from(self.ranks())
    }

    /// The shard global rank `rank` reads back: its own, or (`other`) the
    /// same rank of the next agent, so the read crosses hosts (the next
    /// rank with one agent).
    pub fn restore_source(&self, rank: u32) -> u32 {
        match self.spec.restore_from {
            RestoreFrom::Own => rank,
            RestoreFrom::Other if self.agent_count == 1 => (rank + 1) % self.ranks(),
            RestoreFrom::Other => (rank + self.spec.accelerators) % self.ranks(),
        }
    }

    pub(super) fn next(&self) -> Option<Work> {
        let local = self.next.fetch_add(1, Ordering::Relaxed);
        if local >= u64::from(self.spec.accelerators) {
            return None;
        }
        let rank = self.agent_index * self.spec.accelerators + local as u32;
        let (op, shard) = match self.restore {
            false => (OpKind::Put, rank),
            true => (OpKind::Get, self.restore_source(rank)),
        };
        Some(Work {
            op,
            target: Target::Key {
                key: self.spec.shard_key(shard, self.ranks()),
                size: self.shard_size(),
                range: None,
                content: None,
            },
            due: None,
            token: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_is_written_once_and_restored_once() {
        for from in [RestoreFrom::Own, RestoreFrom::Other] {
            for agents in [1u32, 3] {
                let spec = CheckpointSpec {
                    size: 12 << 20,
                    accelerators: 2,
                    restore: true,
                    restore_from: from,
                    prefix: "ck/".into(),
                    restoring: false,
                };
                let mut written = Vec::new();
                let mut read = Vec::new();
                for a in 0..agents {
                    let w = Shards::new(&spec, a, agents, false);
                    while let Some(work) = w.next() {
                        let Target::Key { key, size, .. } = work.target else {
                            panic!()
                        };
                        assert_eq!(size * u64::from(agents * 2), 12 << 20);
                        written.push(key);
                    }
                    let r = Shards::new(&spec, a, agents, true);
                    while let Some(work) = r.next() {
                        assert_eq!(work.op, OpKind::Get);
                        let Target::Key { key, .. } = work.target else {
                            panic!()
                        };
                        read.push((a, key));
                    }
                }
                let mut sorted = written.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(sorted.len(), (agents * 2) as usize);
                let mut reads: Vec<_> = read.iter().map(|(_, k)| k.clone()).collect();
                reads.sort();
                assert_eq!(reads, sorted, "{from:?}: each shard read once");
                if from == RestoreFrom::Other && agents > 1 {
                    // No agent reads a shard it wrote.
                    for (a, key) in &read {
                        let rank: u32 = key[8..13].parse().unwrap();
                        assert_ne!(rank / 2, *a, "{key}");
                    }
                }
            }
        }
    }
}
