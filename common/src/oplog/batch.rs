//! What a worker hands the op-log writer: [`LogBatch`]es of up to
//! [`super::writer::SEND_BATCH_RECORDS`] ops, each op a fixed-size slot
//! (no heap memory for a successful op on an indexed key), with the
//! stage's constant columns in a shared [`LogContext`]. The writer formats
//! them (`record::LineFormatter`) to the same lines as [`OpRecord`]s.

use super::prefetch;
use super::record::{OpRecord, sanitized};
use crate::op::OpKind;
use crate::plan::KeyNaming;
use std::sync::Arc;

/// Per-stage constants of the records a worker hands to the writer in
/// [`LogBatch`]es: written by the writer into every line instead of being
/// copied into every record.
#[derive(Debug)]
pub struct LogContext {
    /// `client_id`: the agent id.
    pub(crate) client_id: Box<[u8]>,
    /// `stage`: the plan stage.
    pub(crate) stage: Box<[u8]>,
    /// What [`EntryKey::Index`] keys start with (the key space's prefix).
    key_prefix: Box<[u8]>,
    /// How the index follows the prefix.
    naming: KeyNaming,
}

impl LogContext {
    /// `key_prefix` and `naming` must make [`EntryKey::Index`]`(i)` the key
    /// the op used, as [`crate::plan::KeySpace::key`] writes it.
    pub fn new(client_id: &str, stage: &str, key_prefix: &str, naming: KeyNaming) -> LogContext {
        LogContext {
            client_id: sanitized(client_id),
            stage: sanitized(stage),
            key_prefix: sanitized(key_prefix),
            naming,
        }
    }

    /// A context from parts already sanitized (a spool's, read back).
    pub(crate) fn from_parts(
        client_id: Box<[u8]>,
        stage: Box<[u8]>,
        key_prefix: Box<[u8]>,
        naming: KeyNaming,
    ) -> LogContext {
        LogContext {
            client_id,
            stage,
            key_prefix,
            naming,
        }
    }

    /// The key prefix (sanitized) and naming, which a spool records.
    pub(crate) fn key_parts(&self) -> (&[u8], KeyNaming) {
        (&self.key_prefix, self.naming)
    }

    /// The key of object `index`, as bytes appended to `out`.
    pub(crate) fn push_key(&self, index: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key_prefix);
        self.naming.push_index(index, out);
    }
}

/// The `file` column of a [`LogEntry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKey {
    /// Object `i` of the key space, formatted by the writer (see
    /// [`LogContext::new`]), so a worker builds no string for the log.
    Index(u64),
    /// Any other key (a list prefix, a directory name).
    Text(String),
}

/// One op as a worker hands it to the writer: the columns that vary per op,
/// without heap memory for a successful op on an indexed key. The rest
/// comes from the batch: `idx` (the batch's first index plus the entry's
/// position), `client_id` and `stage` (its [`LogContext`]) and `endpoint`
/// (its endpoint table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub thread: u32,
    pub op: OpKind,
    pub warmup: bool,
    pub retries: u32,
    pub n_objects: u32,
    pub bytes: u64,
    pub start_ns: i64,
    pub first_byte_ns: Option<i64>,
    pub end_ns: i64,
    /// How late a scheduled op was issued (see [`OpRecord::lag_ns`]).
    pub lag_ns: Option<u64>,
    pub key: EntryKey,
    /// Empty when the op succeeded; otherwise `class: message`.
    pub error: String,
}

/// Up to [`super::writer::SEND_BATCH_RECORDS`] entries of one worker, sent
/// to the writer as one channel message; their `idx` are consecutive.
///
/// Entries are kept as 64-byte slots (one cache line: this memory
/// is written on the worker's core and read on the writer's), with the rare
/// strings (text keys, errors) in side tables.
#[derive(Debug)]
pub struct LogBatch {
    pub(crate) context: Arc<LogContext>,
    pub(crate) first_idx: u64,
    pub(crate) slots: Vec<Slot>,
    /// The distinct endpoints of this batch (usually one).
    pub(crate) endpoints: Vec<Box<str>>,
    /// Position of the last endpoint used (the likely next one).
    last_endpoint: u16,
    /// (slot, key) of the slots whose key is text, in slot order.
    pub(crate) text_keys: Vec<(u32, String)>,
    /// (slot, error) of the failed ops, in slot order.
    pub(crate) errors: Vec<(u32, String)>,
    /// Whether [`LogBatch::push`] prefetches slots ahead (see `prefetch`).
    prefetch: bool,
}

/// Slots ahead of the one written that [`LogBatch::push`] prefetches: a few
/// ops' time (~1 µs) for the line to arrive.
const PREFETCH_AHEAD: usize = 4;

/// One [`LogEntry`] in a [`LogBatch`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) start_ns: i64,
    pub(crate) end_ns: i64,
    /// [`NO_TIME`] when unknown.
    pub(crate) first_byte_ns: i64,
    pub(crate) bytes: u64,
    /// The object index of an [`EntryKey::Index`] key.
    pub(crate) key: u64,
    /// [`NO_LAG`] for an op without a schedule.
    pub(crate) lag_ns: u64,
    pub(crate) thread: u32,
    pub(crate) retries: u32,
    pub(crate) n_objects: u32,
    pub(crate) endpoint: u16,
    pub(crate) op: OpKind,
    /// [`WARMUP`], [`TEXT_KEY`], [`FAILED`].
    pub(crate) flags: u8,
}

// One slot per op crosses from the worker's core to the writer's: keep it
// to a cache line.
const _: () = assert!(std::mem::size_of::<Slot>() == 64);

/// `lag_ns` of a [`Slot`] when the op had no schedule.
pub(crate) const NO_LAG: u64 = u64::MAX;

/// `first_byte_ns` of a [`Slot`] when there is none.
pub(crate) const NO_TIME: i64 = i64::MIN;
pub(crate) const WARMUP: u8 = 1;
pub(crate) const TEXT_KEY: u8 = 2;
pub(crate) const FAILED: u8 = 4;

impl LogBatch {
    /// An empty batch with room for `capacity` entries.
    pub fn with_capacity(context: Arc<LogContext>, capacity: usize) -> LogBatch {
        Self::with_slots(context, Vec::with_capacity(capacity))
    }

    /// An empty batch on a (cleared) slot buffer used before.
    pub(crate) fn with_slots(context: Arc<LogContext>, mut slots: Vec<Slot>) -> LogBatch {
        slots.clear();
        let prefetch = prefetch::available();
        if prefetch {
            for i in 0..PREFETCH_AHEAD.min(slots.capacity()) {
                prefetch::for_write(slots.as_ptr().wrapping_add(i));
            }
        }
        LogBatch {
            context,
            first_idx: 0,
            slots,
            endpoints: Vec::new(),
            last_endpoint: 0,
            text_keys: Vec::new(),
            errors: Vec::new(),
            prefetch,
        }
    }

    /// A batch from decoded parts (a spool's, read back); side tables in
    /// slot order.
    pub(crate) fn from_parts(
        context: Arc<LogContext>,
        first_idx: u64,
        slots: Vec<Slot>,
        endpoints: Vec<Box<str>>,
        text_keys: Vec<(u32, String)>,
        errors: Vec<(u32, String)>,
    ) -> LogBatch {
        LogBatch {
            context,
            first_idx,
            slots,
            endpoints,
            last_endpoint: 0,
            text_keys,
            errors,
            prefetch: false,
        }
    }

    /// A one-entry batch of a whole record (tests send records).
    #[cfg(test)]
    pub(crate) fn from_record(r: &OpRecord) -> LogBatch {
        let ctx = LogContext::new(&r.client_id, &r.stage, "", KeyNaming::default());
        let mut b = LogBatch::with_capacity(Arc::new(ctx), 1);
        let ep = b.endpoint_id(&r.endpoint);
        b.push(
            LogEntry {
                thread: r.thread as u32,
                op: r.op,
                warmup: r.warmup,
                retries: r.retries,
                n_objects: r.n_objects,
                bytes: r.bytes,
                start_ns: r.start_ns,
                first_byte_ns: r.first_byte_ns,
                end_ns: r.end_ns,
                lag_ns: r.lag_ns,
                key: EntryKey::Text(r.file.clone()),
                error: r.error.clone(),
            },
            ep,
        );
        b.set_first_idx(r.idx);
        b
    }

    /// The position of `endpoint` in this batch's endpoint table, added if
    /// new: what [`LogBatch::push`] takes.
    ///
    /// # Panics
    ///
    /// On a 65,537th distinct endpoint in one batch.
    #[inline]
    pub fn endpoint_id(&mut self, endpoint: &str) -> u16 {
        let last = usize::from(self.last_endpoint);
        if self.endpoints.get(last).is_some_and(|e| **e == *endpoint) {
            return self.last_endpoint;
        }
        let at = match self.endpoints.iter().position(|e| **e == *endpoint) {
            Some(i) => i,
            None => {
                self.endpoints.push(endpoint.into());
                self.endpoints.len() - 1
            }
        };
        self.last_endpoint = u16::try_from(at).expect("at most 65,536 endpoints per batch");
        self.last_endpoint
    }

    /// Adds an entry whose op went to the endpoint [`LogBatch::endpoint_id`]
    /// of this batch returned.
    ///
    /// # Panics
    ///
    /// If `endpoint_id` is not in this batch's table.
    #[inline]
    pub fn push(&mut self, entry: LogEntry, endpoint_id: u16) {
        assert!(
            usize::from(endpoint_id) < self.endpoints.len(),
            "endpoint id {endpoint_id} not of this batch"
        );
        // Entries beyond u32::MAX would need 240 GiB of slots.
        let at = self.slots.len() as u32;
        let mut flags = if entry.warmup { WARMUP } else { 0 };
        let key = match entry.key {
            EntryKey::Index(i) => i,
            EntryKey::Text(t) => {
                flags |= TEXT_KEY;
                self.text_keys.push((at, t));
                0
            }
        };
        if !entry.error.is_empty() {
            flags |= FAILED;
            self.errors.push((at, entry.error));
        }
        self.slots.push(Slot {
            start_ns: entry.start_ns,
            end_ns: entry.end_ns,
            first_byte_ns: entry.first_byte_ns.unwrap_or(NO_TIME),
            bytes: entry.bytes,
            key,
            lag_ns: entry.lag_ns.unwrap_or(NO_LAG),
            thread: entry.thread,
            retries: entry.retries,
            n_objects: entry.n_objects,
            endpoint: endpoint_id,
            op: entry.op,
            flags,
        });
        let ahead = at as usize + PREFETCH_AHEAD;
        if self.prefetch && ahead < self.slots.capacity() {
            prefetch::for_write(self.slots.as_ptr().wrapping_add(ahead));
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sets the `idx` of the first entry; the others follow in order.
    pub fn set_first_idx(&mut self, idx: u64) {
        self.first_idx = idx;
    }

    /// The text of slot `i` in a side table (`text_keys` or `errors`).
    pub(crate) fn side(table: &[(u32, String)], i: usize) -> &str {
        table
            .binary_search_by_key(&(i as u32), |(at, _)| *at)
            .map_or("", |k| table[k].1.as_str())
    }

    /// The entries as full records (for tests and tools; the writer formats
    /// entries directly, to the same text).
    pub fn to_records(&self) -> Vec<OpRecord> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let ctx = &self.context;
        self.slots
            .iter()
            .enumerate()
            .map(|(i, e)| OpRecord {
                idx: self.first_idx + i as u64,
                thread: u64::from(e.thread),
                op: e.op,
                client_id: text(&ctx.client_id),
                n_objects: e.n_objects,
                bytes: e.bytes,
                endpoint: self.endpoints[usize::from(e.endpoint)].to_string(),
                file: if e.flags & TEXT_KEY != 0 {
                    Self::side(&self.text_keys, i).to_string()
                } else {
                    let mut key = Vec::new();
                    ctx.push_key(e.key, &mut key);
                    text(&key)
                },
                error: Self::side(&self.errors, i).to_string(),
                start_ns: e.start_ns,
                first_byte_ns: (e.first_byte_ns != NO_TIME).then_some(e.first_byte_ns),
                end_ns: e.end_ns,
                stage: text(&ctx.stage),
                warmup: e.flags & WARMUP != 0,
                retries: e.retries,
                lag_ns: (e.lag_ns != NO_LAG).then_some(e.lag_ns),
            })
            .collect()
    }

    /// Takes the slot buffer for reuse, cleared.
    pub(crate) fn into_slots(self) -> Vec<Slot> {
        let mut slots = self.slots;
        slots.clear();
        slots
    }
}
