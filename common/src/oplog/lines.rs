//! The lines of a log file, plain, zstd or a binary spool made text (told
//! apart by the magic number),
//! each bounded by [`MAX_LINE_BYTES`] and counted, so whatever parses them
//! can name the file and line of a fault. Shared by [`super::OpLogReader`]
//! and [`crate::trace::TraceReader`].

use super::reader::{MAX_LINE_BYTES, OpLogError};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Read buffer for decompressed text: large, because lines are short and a
/// merge reads many files at once (one such buffer each).
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Lines of one file, read one at a time into a reused buffer.
pub(crate) struct LineReader {
    path: PathBuf,
    input: Box<dyn BufRead + Send>,
    compressed: bool,
    /// Lines read so far, the header included.
    line_no: u64,
    buf: Vec<u8>,
}

impl LineReader {
    /// Opens `path`; zstd is detected by its magic number.
    pub(crate) fn open(path: &Path) -> Result<Self, OpLogError> {
        let file = File::open(path).map_err(|source| OpLogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_reader(path, file)
    }

    /// Reads any byte stream; `name` labels errors.
    pub(crate) fn from_reader<R: Read + Send + 'static>(
        name: &Path,
        raw: R,
    ) -> Result<Self, OpLogError> {
        let path = name.to_path_buf();
        let raw = BufReader::with_capacity(READ_BUFFER_BYTES, raw);
        let (text, encoding) = super::spool::open_text(&path, raw)?;
        let compressed = encoding != super::spool::LogEncoding::Plain;
        let input: Box<dyn BufRead + Send> =
            Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, text));
        Ok(LineReader {
            path,
            input,
            compressed,
            line_no: 0,
            buf: Vec::with_capacity(512),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn compressed(&self) -> bool {
        self.compressed
    }

    /// Lines consumed so far (header included); the current line's number.
    pub(crate) fn line_no(&self) -> u64 {
        self.line_no
    }

    /// The current line, without its line ending.
    pub(crate) fn line(&self) -> &[u8] {
        &self.buf
    }

    /// A parse error at the current line.
    pub(crate) fn parse_err(&self, msg: String) -> OpLogError {
        OpLogError::Parse {
            path: self.path.clone(),
            line: self.line_no,
            msg,
        }
    }

    /// Reads the first line, the header: an empty file is an error at
    /// line 1. The header is then [`Self::line`].
    pub(crate) fn header(&mut self) -> Result<(), OpLogError> {
        if self.next_line()? {
            return Ok(());
        }
        Err(OpLogError::Parse {
            path: self.path().to_path_buf(),
            line: 1,
            msg: "empty file: no header line".to_string(),
        })
    }

    /// Reads the next line without its line ending (`\n` or `\r\n`).
    /// Returns false at end of input.
    pub(crate) fn next_line(&mut self) -> Result<bool, OpLogError> {
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let n = Read::by_ref(&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| {
                OpLogError::read(&self.path, self.line_no + 1, self.compressed, source)
            })?;
        if n == 0 {
            return Ok(false);
        }
        self.line_no += 1;
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(self.parse_err(format!(
                "line longer than {MAX_LINE_BYTES} bytes (not an op-log?)"
            )));
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(true)
    }
}
