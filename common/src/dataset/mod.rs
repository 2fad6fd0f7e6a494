//! Training-dataset files (AI/ML training workloads, MLPerf-Storage/DLIO
//! style): how N samples are packed `samples_per_file` to a file, and the
//! bytes of each file in a format real training readers open.
//!
//! A [`Layout`] answers every question a writer or a reader has without
//! making bytes: how many files, their keys and exact sizes, and the byte
//! range of each sample's record inside its file (what a ranged GET of one
//! sample asks for). [`Layout::file_bytes`] and [`Layout::sample_bytes`]
//! make the bytes, a pure function of (layout, data spec, index), so a
//! reader can check what it read against what the writer wrote.
//!
//! Formats ([`Format`]): `raw` (payloads concatenated), `npz` (what
//! `numpy.savez` writes: a stored ZIP of `.npy` members, see [`npz`]),
//! `tfrecord` (framed, CRC-32C-checked `tf.train.Example` records, with the
//! text index of the `tfrecord` PyPI package, see [`tfrecord`]) and `jsonl`
//! (one JSON object per line, the payload in base64).
//!
//! Sample `i`'s payload is `datagen::object(data, &layout.sample_key(i),
//! layout.sample_size(i))`: the generator's bytes, so dedup and compress
//! controls apply to payloads and a read can be verified.
//!
//! Costs: sizes come from the size spec's seeded RNG (cheap), and nothing
//! keeps a per-sample table. A sample's range sums the record sizes of the
//! samples before it in its file, and a file's size those of all its
//! samples: O(`samples_per_file`) size computations each. Memory is bounded
//! by one file (and, for npz, a few words per member of that file).

mod jsonl;
pub mod npz;
#[cfg(test)]
mod tests;
pub mod tfrecord;

use bytes::Bytes;

use crate::datagen::{self, DataSpec};
use crate::plan::SizeSpec;
use crate::store::ByteRange;

/// The file format of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Records are the payloads, concatenated.
    Raw,
    /// A `numpy.savez` archive: one uncompressed `.npy` member per sample.
    Npz,
    /// TFRecord: framed `tf.train.Example` records, with a `.idx` index.
    TfRecord,
    /// One JSON object per line: id, label and the payload in base64.
    Jsonl,
}

impl Format {
    /// Every format, in the order their names are listed.
    pub const ALL: [Format; 4] = [Format::Raw, Format::Npz, Format::TfRecord, Format::Jsonl];

    /// The format a plan names ("raw", "npz", "tfrecord", "jsonl"), or
    /// `None`: the plan loader makes its own located error, listing
    /// [`Format::ALL`]'s names.
    pub fn from_name(name: &str) -> Option<Format> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The name a plan gives it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Npz => "npz",
            Format::TfRecord => "tfrecord",
            Format::Jsonl => "jsonl",
        }
    }

    /// The file name extension (without the dot) of its files.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Raw => "bin",
            Format::Npz => "npz",
            Format::TfRecord => "tfrecord",
            Format::Jsonl => "jsonl",
        }
    }
}

/// Where each sample of a dataset lives: `samples` samples, packed
/// `samples_per_file` to a file in sample order (the last file may hold
/// fewer), sizes drawn from a size spec.
///
/// Methods take indices below [`Layout::files`] and [`Layout::samples`];
/// past them the answers describe files and samples that do not exist (a
/// file past the end holds no samples), but never panic.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    format: Format,
    samples: u64,
    per_file: u32,
    sizes: SizeSpec,
    seed: u64,
    prefix: String,
    files: u64,
    /// Digits of the file numbers in keys: at least 8, and enough for the
    /// largest, so that keys list in file order.
    width: usize,
}

impl Layout {
    /// The layout of a plan's `dataset:` (see [`Layout::new`]).
    pub fn for_spec(spec: &crate::plan::DatasetSpec, seed: u64) -> Result<Layout, String> {
        Layout::new(
            spec.format,
            spec.samples,
            spec.samples_per_file,
            &spec.sample_size,
            seed,
            &spec.prefix,
        )
    }

    /// A layout, or what makes it impossible: no samples, no samples per
    /// file, a size spec whose min is above its max, a file that could outgrow its format (npz: ZIP without ZIP64,
    /// see [`npz::check`]) or sizes that overflow a byte count. The limits
    /// are checked against the worst case (every sample at the size spec's
    /// maximum), so no file of the layout can break them.
    pub fn new(
        format: Format,
        samples: u64,
        samples_per_file: u32,
        sample_size: &SizeSpec,
        seed: u64,
        prefix: &str,
    ) -> Result<Layout, String> {
        if samples == 0 {
            return Err("a dataset needs at least one sample".into());
        }
        if samples_per_file == 0 {
            return Err("samples_per_file must be at least 1".into());
        }
        // The plan never makes such a spec, but `size_of` would underflow
        // on it.
        if let SizeSpec::Uniform { min, max } | SizeSpec::Lognormal { min, max, .. } = sample_size
            && min > max
        {
            return Err(format!("sample size min {min} is above max {max}"));
        }
        let max = sample_size.max();
        // Above this, a record's length (base64 is 4/3 of the payload, plus
        // framing) could overflow a u64; no sample comes near it.
        if max > u64::MAX / 4 {
            return Err(format!("a sample of up to {max} bytes is too large"));
        }
        let files = samples.div_ceil(u64::from(samples_per_file));
        let members = samples.min(u64::from(samples_per_file));
        let layout = Layout {
            format,
            samples,
            per_file: samples_per_file,
            sizes: sample_size.clone(),
            seed,
            prefix: prefix.to_owned(),
            files,
            width: (digits(files) as usize).max(8),
        };
        // The largest record any sample can have: the largest payload with
        // the longest index and label the dataset has.
        let worst = u128::from(layout.record_len_of(samples - 1, 999, max));
        let trailer = |n: u64| u128::from(layout.trailer_len(n));
        let worst_file = u128::from(members) * worst + trailer(members);
        let worst_total = u128::from(samples) * worst + u128::from(files) * trailer(members);
        if worst_total > u128::from(u64::MAX) {
            return Err(format!(
                "{samples} samples of up to {max} bytes overflow a byte count"
            ));
        }
        if format == Format::Npz {
            npz::check(members, worst_file)?;
        }
        Ok(layout)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    pub fn samples_per_file(&self) -> u32 {
        self.per_file
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many files: ceil(samples / samples_per_file).
    pub fn files(&self) -> u64 {
        self.files
    }

    /// How many samples file `file` holds: `samples_per_file`, fewer in
    /// the last file, none past it.
    pub fn samples_in_file(&self, file: u64) -> u32 {
        let first = file.saturating_mul(u64::from(self.per_file));
        let left = self.samples.saturating_sub(first);
        // Fits: at most `per_file`, a u32.
        left.min(u64::from(self.per_file)) as u32
    }

    /// The index of file `file`'s first sample.
    pub fn first_sample(&self, file: u64) -> u64 {
        file.saturating_mul(u64::from(self.per_file))
    }

    /// The key of file `file`: `{prefix}{file}-of-{files}.{ext}`, numbers
    /// zero-padded to one width (at least 8 digits), so a sorted listing
    /// is in file order.
    pub fn file_key(&self, file: u64) -> String {
        format!(
            "{}{file:0w$}-of-{:0w$}.{}",
            self.prefix,
            self.files,
            self.format.ext(),
            w = self.width
        )
    }

    /// The key of file `file`'s index, `{file_key}.idx`, for formats that
    /// have one (tfrecord). A reader listing the prefix sees these beside
    /// the data files.
    pub fn index_key(&self, file: u64) -> Option<String> {
        (self.format == Format::TfRecord).then(|| format!("{}.idx", self.file_key(file)))
    }

    /// The generator key of sample `sample`'s payload: `{prefix}sample-{i}`.
    /// The prefix is in it so that two datasets written with one data seed
    /// do not share payloads (which storage would dedup).
    pub fn sample_key(&self, sample: u64) -> String {
        format!("{}sample-{sample}", self.prefix)
    }

    /// Payload bytes of sample `sample`: the size spec's size of it.
    pub fn sample_size(&self, sample: u64) -> u64 {
        self.sizes.size_of(self.seed, sample)
    }

    /// The file sample `sample` is in.
    pub fn sample_file(&self, sample: u64) -> u64 {
        sample / u64::from(self.per_file)
    }

    /// The byte range of sample `sample`'s whole record inside its file
    /// (raw: the payload; npz: its local header and `.npy` member;
    /// tfrecord: the framed record; jsonl: the line with its newline).
    /// Sums the records before it in the file: O(its place in the file).
    pub fn sample_range(&self, sample: u64) -> ByteRange {
        let first = self.first_sample(self.sample_file(sample));
        let offset = (first..sample).map(|i| self.record_len(i)).sum();
        ByteRange {
            offset,
            length: self.record_len(sample),
        }
    }

    /// The exact size of file `file`, computed from sizes alone:
    /// O(`samples_per_file`).
    pub fn file_size(&self, file: u64) -> u64 {
        let n = self.samples_in_file(file);
        let first = self.first_sample(file);
        let records: u64 = (first..first + u64::from(n))
            .map(|i| self.record_len(i))
            .sum();
        records + self.trailer_len(u64::from(n))
    }

    /// The size of the whole dataset, data files only (not tfrecord
    /// indexes): O(samples) size computations, for reports.
    pub fn total_bytes(&self) -> u64 {
        (0..self.files).map(|f| self.file_size(f)).sum()
    }

    /// Sample `sample`'s payload: the generator's bytes for its key.
    pub fn payload(&self, data: &DataSpec, sample: u64) -> Bytes {
        datagen::object(data, &self.sample_key(sample), self.sample_size(sample))
    }

    /// The bytes of file `file`, whole. A deterministic function of the
    /// layout, `data` and `file`.
    pub fn file_bytes(&self, data: &DataSpec, file: u64) -> Bytes {
        let n = self.samples_in_file(file);
        let first = self.first_sample(file);
        // Only a capacity hint: a size that does not fit starts empty.
        let mut out = Vec::with_capacity(usize::try_from(self.file_size(file)).unwrap_or(0));
        let mut members = Vec::new();
        for j in 0..n {
            let sample = first + u64::from(j);
            let offset = out.len() as u64;
            let member = self.write_record(&mut out, data, sample, j);
            if let Some(member) = member {
                members.push((member, offset));
            }
        }
        if self.format == Format::Npz {
            npz::write_directory(&mut out, &members);
        }
        Bytes::from(out)
    }

    /// Exactly the bytes of [`Layout::sample_range`] in the sample's file,
    /// made alone: what a ranged GET of the sample must return.
    pub fn sample_bytes(&self, data: &DataSpec, sample: u64) -> Bytes {
        let mut out = Vec::with_capacity(usize::try_from(self.record_len(sample)).unwrap_or(0));
        let within = (sample - self.first_sample(self.sample_file(sample))) as u32;
        self.write_record(&mut out, data, sample, within);
        Bytes::from(out)
    }

    /// File `file`'s index, for formats that have one (tfrecord): a line
    /// `<offset> <length>\n` per record, as `tfrecord.tools.create_index`
    /// writes. O(`samples_per_file`), from sizes alone.
    pub fn index_bytes(&self, file: u64) -> Option<Bytes> {
        if self.format != Format::TfRecord {
            return None;
        }
        let first = self.first_sample(file);
        let mut text = String::new();
        let mut offset = 0u64;
        for i in first..first + u64::from(self.samples_in_file(file)) {
            let len = self.record_len(i);
            text.push_str(&format!("{offset} {len}\n"));
            offset += len;
        }
        Some(Bytes::from(text))
    }

    /// The length of sample `sample`'s record.
    pub fn record_len(&self, sample: u64) -> u64 {
        self.record_len_of(sample, label(sample), self.sample_size(sample))
    }

    /// The length of the record of a sample with this index, label and
    /// payload size.
    fn record_len_of(&self, sample: u64, label: u64, size: u64) -> u64 {
        match self.format {
            Format::Raw => size,
            Format::Npz => npz::record_len(size),
            Format::TfRecord => tfrecord::record_len(size, label),
            Format::Jsonl => jsonl::line_len(sample, label, size),
        }
    }

    /// Bytes after the records of a file of `n` samples: npz's central
    /// directory; nothing for the others.
    fn trailer_len(&self, n: u64) -> u64 {
        match self.format {
            Format::Npz => npz::directory_len(n),
            Format::Raw | Format::TfRecord | Format::Jsonl => 0,
        }
    }

    /// Appends sample `sample`'s record (it is member `within` of its
    /// file); npz says what its central directory entry needs.
    fn write_record(
        &self,
        out: &mut Vec<u8>,
        data: &DataSpec,
        sample: u64,
        within: u32,
    ) -> Option<npz::Member> {
        let payload = self.payload(data, sample);
        match self.format {
            Format::Raw => out.extend_from_slice(&payload),
            Format::Npz => return Some(npz::write_record(out, within, &payload)),
            Format::TfRecord => tfrecord::write_record(out, &payload, label(sample)),
            Format::Jsonl => jsonl::write_line(out, sample, label(sample), &payload),
        }
        None
    }
}

/// Sample `sample`'s label (tfrecord, jsonl): a class among 1000, as an
/// ImageNet-like dataset has.
pub fn label(sample: u64) -> u64 {
    sample % 1000
}

/// Decimal digits of `n`.
fn digits(n: u64) -> u64 {
    n.checked_ilog10().map_or(1, |d| u64::from(d) + 1)
}
