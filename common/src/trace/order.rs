//! [`InStartOrder`]: a trace's ops in start order through a bounded window,
//! for traces written nearly but not exactly in start order (s3dlio writes
//! each op when it completes, so an op can follow ops that started after
//! it by up to its own duration; a Chorus agent log by a batch's span).
//!
//! An op is released once an op starting `window_ns` after it has been
//! read, so the window must cover the trace's disorder: its
//! [`TraceStats::max_disorder_ns`](super::TraceStats::max_disorder_ns)
//! always suffices (a late op starts at most that long before the latest
//! start read, and every op released started at least the window before
//! that); a smaller one may, depending on what lies between. An op that would come out of
//! order even so, or more than `max_held` ops inside the window, is a
//! located error, never a silently misordered replay or unbounded memory.

use super::{TraceOp, TraceReader};
use crate::oplog::OpLogError;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Ops of a [`TraceReader`] in start order (ties in line order).
pub struct InStartOrder {
    reader: TraceReader,
    window_ns: i64,
    max_held: usize,
    /// Held ops, earliest first: (start, line) is unique per op.
    held: BinaryHeap<Reverse<Held>>,
    /// Latest start read so far.
    max_start: i64,
    /// Start of the last op released.
    released: i64,
    /// The reader is done (end or error); `error` is what ended it.
    drained: bool,
    error: Option<OpLogError>,
}

/// A held op, ordered by (start, line).
struct Held(TraceOp);

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.0.start_ns, self.0.line) == (o.0.start_ns, o.0.line)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0.start_ns, self.0.line).cmp(&(o.0.start_ns, o.0.line))
    }
}

impl TraceReader {
    /// This reader's ops in start order, reordered within `window_ns`,
    /// holding at most `max_held` ops (see [`InStartOrder`]).
    pub fn in_start_order(self, window_ns: i64, max_held: usize) -> InStartOrder {
        InStartOrder {
            reader: self,
            window_ns: window_ns.max(0),
            max_held: max_held.max(1),
            held: BinaryHeap::new(),
            max_start: i64::MIN,
            released: i64::MIN,
            drained: false,
            error: None,
        }
    }
}

impl InStartOrder {
    fn err(&self, line: u64, msg: String) -> OpLogError {
        OpLogError::Parse {
            path: self.reader.path().to_path_buf(),
            line,
            msg,
        }
    }

    /// The next op to release, if the window allows one now.
    fn ready(&mut self) -> Option<TraceOp> {
        let first = self.held.peek()?.0.0.start_ns;
        if self.drained || first <= self.max_start.saturating_sub(self.window_ns) {
            let op = self.held.pop()?.0.0;
            self.released = op.start_ns;
            return Some(op);
        }
        None
    }
}

impl Iterator for InStartOrder {
    type Item = Result<TraceOp, OpLogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(op) = self.ready() {
                return Some(Ok(op));
            }
            if self.drained {
                // What the reader ended with comes after every op before it.
                return self.error.take().map(Err);
            }
            match self.reader.next() {
                None => self.drained = true,
                Some(Err(e)) => {
                    self.drained = true;
                    self.error = Some(e);
                }
                Some(Ok(op)) => {
                    if op.start_ns < self.released {
                        let e = self.err(
                            op.line,
                            format!(
                                "op starts {} ns before one already released: the reorder window of {} ns is too small",
                                self.released - op.start_ns,
                                self.window_ns
                            ),
                        );
                        self.drained = true;
                        self.held.clear();
                        return Some(Err(e));
                    }
                    if self.held.len() >= self.max_held {
                        let e = self.err(
                            op.line,
                            format!(
                                "more than {} ops within a reorder window of {} ns",
                                self.max_held, self.window_ns
                            ),
                        );
                        self.drained = true;
                        self.held.clear();
                        return Some(Err(e));
                    }
                    self.max_start = self.max_start.max(op.start_ns);
                    self.held.push(Reverse(Held(op)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::TraceStats;
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/traces")
            .join(name)
    }

    #[test]
    fn the_scanned_disorder_is_a_window_that_suffices() {
        let path = fixture("s3dlio-0.9.22.tsv.zst");
        let window = TraceStats::scan(&path).unwrap().max_disorder_ns;
        assert_eq!(window, 500_000);
        let ops: Vec<TraceOp> = TraceReader::open(&path)
            .unwrap()
            .in_start_order(window, 16)
            .collect::<Result<_, _>>()
            .unwrap();
        let lines: Vec<u64> = ops.iter().map(|o| o.line).collect();
        // Start order: PUT, HEAD (line 4) before the GET of line 3, the
        // failed GET (line 8) before DELETE_BATCH (line 7).
        assert_eq!(lines, [2, 4, 3, 5, 6, 8, 7]);
        assert!(ops.windows(2).all(|w| w[0].start_ns <= w[1].start_ns));

        // A window too small is a located error after the ops before it:
        // with none, the GET of line 3 is out before the HEAD of line 4,
        // which started earlier, is read.
        let mut it = TraceReader::open(&path).unwrap().in_start_order(0, 16);
        let first = it.next().unwrap().unwrap();
        assert_eq!(first.line, 2);
        let mut seen = 1;
        let err = loop {
            match it.next().unwrap() {
                Ok(_) => seen += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err.line(), Some(4));
        assert!(
            err.to_string().contains(
                "op starts 500000 ns before one already released: \
                 the reorder window of 0 ns is too small"
            ),
            "{err}"
        );
        assert_eq!(seen, 2, "lines 2 and 3 came out before the error");
        assert!(it.next().is_none());

        // Too many ops held is an error too.
        let err = TraceReader::open(&path)
            .unwrap()
            .in_start_order(i64::MAX, 3)
            .find_map(Result::err)
            .unwrap();
        assert_eq!(err.line(), Some(5));
        assert!(err.to_string().contains("more than 3 ops within"), "{err}");
    }
}
