//! The per-second series (`series.csv`) as Parquet: one typed column per
//! CSV column, plus `time`, the second's start as a timestamp, written row
//! group by row group from a streaming read of the CSV, so memory is
//! bounded by one row group however long the run and however many agents.
//!
//! `series.csv` counts `second` from each stage's (or step's) start; that
//! start is not in the CSV but in `run.json` (`stages[].start_at`, the same
//! instant the series counts from: `run/step.rs` sets both from one
//! reading), so the exporter takes the starts as [`StageStarts`] and gives
//! each row `time` = start + `second` s, null when `run.json` has no start
//! for the stage (a stage `collect` recovered, a lone CSV). The CSV's
//! format is `run/series.rs`'s; its reader's quoting rule is shared from
//! there ([`split_csv`]).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use chorus_common::clock::parse_rfc3339_ns;
use parquet::data_type::{DoubleType, Int32Type, Int64Type};

use super::columns::{
    self, ExportError, ExportStats, Strings, Writer, write_strings, write_values,
};
use super::parquet::{MAX_ROW_GROUP_BYTES, MAX_ROW_GROUP_ROWS};
use crate::run::results::RunMeta;
use crate::run::series::{HEADER, TRAFFIC_COLUMNS, split_csv};

/// The series' Parquet name in a run directory.
pub const SERIES_PARQUET: &str = "series.parquet";

/// The series' CSV name in a run directory.
pub const SERIES_CSV: &str = "series.csv";

/// The column added after `second`: when the row's second began.
const TIME: &str = "time";

/// Columns with few distinct values, dictionary-encoded.
const DICTIONARY_COLUMNS: [&str; 2] = ["stage", "agent"];

/// Where each stage's (or step's) second 0 is, controller clock (ns), by
/// name in run order. A name may come back (a plan's stage names are
/// unique, but nothing here needs them to be): each new run of rows under
/// a name takes that name's next start.
#[derive(Debug, Default)]
pub struct StageStarts(HashMap<String, VecDeque<i64>>);

impl StageStarts {
    /// The starts `run.json` records (`stages[]` in the order run); an
    /// entry without a readable `start_at` (a step that never started, a
    /// stage `collect` recovered) gives none.
    pub fn of(meta: &RunMeta) -> StageStarts {
        let mut by_name: HashMap<String, VecDeque<i64>> = HashMap::new();
        for s in &meta.stages {
            if let Some(ns) = parse_rfc3339_ns(&s.start_at) {
                by_name.entry(s.name.clone()).or_default().push_back(ns);
            }
        }
        StageStarts(by_name)
    }

    fn next(&mut self, stage: &str) -> Option<i64> {
        self.0.get_mut(stage).and_then(VecDeque::pop_front)
    }
}

/// How a CSV column is typed in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Names: `stage`, `agent`.
    Str,
    /// Counts and `second`.
    I64,
    /// Rates and latencies (always written).
    F64,
    /// The host figures: empty when unknown (and on cluster rows), null.
    OptF64,
    /// `cpus`: empty when unknown.
    OptI32,
    /// [`TIME`], from the stage's start.
    Time,
}

impl Kind {
    fn of(name: &str) -> Kind {
        match name {
            "stage" | "agent" => Kind::Str,
            "second" | "ops" | "bytes" | "errors" => Kind::I64,
            "cpus" => Kind::OptI32,
            TIME => Kind::Time,
            // The traffic columns' rates and latencies are always written;
            // the host columns after them may be empty.
            _ if HEADER
                .split(',')
                .position(|c| c == name)
                .is_some_and(|i| i < TRAFFIC_COLUMNS) =>
            {
                Kind::F64
            }
            _ => Kind::OptF64,
        }
    }

    fn schema_type(self) -> &'static str {
        match self {
            Kind::Str => "required binary {} (STRING)",
            Kind::I64 => "required int64 {}",
            Kind::F64 => "required double {}",
            Kind::OptF64 => "optional double {}",
            Kind::OptI32 => "optional int32 {}",
            Kind::Time => "optional int64 {} (TIMESTAMP(NANOS,true))",
        }
    }
}

/// The file's columns: `series.csv`'s, with [`TIME`] after `second`.
fn column_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = HEADER.split(',').collect();
    let second = names.iter().position(|&c| c == "second").unwrap_or(1);
    names.insert(second + 1, TIME);
    names
}

/// The schema, made from [`HEADER`] so a column added to the CSV is
/// exported too; a test pins it against the list docs/analysis.md gives.
fn schema() -> String {
    let fields: String = column_names()
        .iter()
        .map(|&n| format!("  {};\n", Kind::of(n).schema_type().replace("{}", n)))
        .collect();
    format!("message series {{\n{fields}}}")
}

/// One column's buffered values: present values only, with definition
/// levels beside them (1 present, 0 null) for an optional column.
enum Values {
    Str(Strings),
    I64(Vec<i64>),
    I32(Vec<i32>),
    F64(Vec<f64>),
}

struct Column {
    name: &'static str,
    kind: Kind,
    /// Its field in the CSV's rows; `None` for [`TIME`], and for a column
    /// the file's (older) header lacks.
    field: Option<usize>,
    values: Values,
    def: Vec<i16>,
}

/// One row group's worth of columns.
struct RowGroup {
    columns: Vec<Column>,
    rows: usize,
    /// Bytes a row costs besides its strings: 8 a value, 2 a level, 8 a
    /// string's end.
    per_row: usize,
}

impl RowGroup {
    /// The columns, each mapped to its field in a CSV of `header`.
    fn new(header: &[String]) -> RowGroup {
        let columns: Vec<Column> = column_names()
            .into_iter()
            .map(|name| {
                let kind = Kind::of(name);
                Column {
                    name,
                    kind,
                    field: header.iter().position(|h| h == name),
                    values: match kind {
                        Kind::Str => Values::Str(Strings::default()),
                        Kind::I64 | Kind::Time => Values::I64(Vec::new()),
                        Kind::OptI32 => Values::I32(Vec::new()),
                        Kind::F64 | Kind::OptF64 => Values::F64(Vec::new()),
                    },
                    def: Vec::new(),
                }
            })
            .collect();
        let per_row =
            columns.len() * (8 + 2) + columns.iter().filter(|c| c.kind == Kind::Str).count() * 8;
        RowGroup {
            columns,
            rows: 0,
            per_row,
        }
    }

    fn heap_bytes(&self) -> usize {
        let strings: usize = self
            .columns
            .iter()
            .map(|c| match &c.values {
                Values::Str(s) => s.data.len(),
                _ => 0,
            })
            .sum();
        strings + self.rows * self.per_row
    }

    /// Adds one CSV row; `time` is the start of its second when known.
    /// Nothing is added when a field does not parse (the error says which).
    fn push(&mut self, fields: &[String], time: Option<i64>) -> Result<(), String> {
        // Parsed first, pushed after, so a bad row leaves no column longer
        // than the others.
        enum Parsed<'a> {
            Str(&'a str),
            I64(Option<i64>),
            I32(Option<i32>),
            F64(Option<f64>),
        }
        let mut parsed = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let text = c.field.map(|i| fields[i].as_str()).unwrap_or("");
            let bad = |what: &str| format!("column `{}`: `{text}` is not {what}", c.name);
            parsed.push(match c.kind {
                Kind::Str => Parsed::Str(text),
                Kind::Time => Parsed::I64(time),
                Kind::I64 => Parsed::I64(Some(text.parse::<i64>().map_err(|_| bad("an integer"))?)),
                Kind::F64 => Parsed::F64(Some(text.parse::<f64>().map_err(|_| bad("a number"))?)),
                Kind::OptF64 if text.is_empty() => Parsed::F64(None),
                Kind::OptF64 => {
                    Parsed::F64(Some(text.parse::<f64>().map_err(|_| bad("a number"))?))
                }
                Kind::OptI32 if text.is_empty() => Parsed::I32(None),
                Kind::OptI32 => {
                    Parsed::I32(Some(text.parse::<i32>().map_err(|_| bad("an integer"))?))
                }
            });
        }
        for (c, p) in self.columns.iter_mut().zip(parsed) {
            let present = match (&mut c.values, p) {
                (Values::Str(s), Parsed::Str(v)) => {
                    s.push(v);
                    true
                }
                (Values::I64(v), Parsed::I64(x)) => x.map(|x| v.push(x)).is_some(),
                (Values::I32(v), Parsed::I32(x)) => x.map(|x| v.push(x)).is_some(),
                (Values::F64(v), Parsed::F64(x)) => x.map(|x| v.push(x)).is_some(),
                _ => unreachable!("a column's values are of its kind"),
            };
            c.def.push(i16::from(present));
        }
        self.rows += 1;
        Ok(())
    }

    /// Writes the buffered rows as one row group and empties the buffers
    /// (keeping their capacity for the next one).
    fn flush(&mut self, writer: &mut Writer) -> parquet::errors::Result<()> {
        let mut rg = writer.next_row_group()?;
        for c in &mut self.columns {
            let Some(mut col) = rg.next_column()? else {
                return Err(parquet::errors::ParquetError::General(format!(
                    "the schema ends before column `{}`",
                    c.name
                )));
            };
            let def = matches!(c.kind, Kind::OptF64 | Kind::OptI32 | Kind::Time)
                .then_some(c.def.as_slice());
            match &mut c.values {
                Values::Str(s) => write_strings(&mut col, s, def)?,
                Values::I64(v) => write_values::<Int64Type>(&mut col, v, def)?,
                Values::I32(v) => write_values::<Int32Type>(&mut col, v, def)?,
                Values::F64(v) => write_values::<DoubleType>(&mut col, v, def)?,
            }
            col.close()?;
            match &mut c.values {
                Values::Str(s) => s.clear(),
                Values::I64(v) => v.clear(),
                Values::I32(v) => v.clear(),
                Values::F64(v) => v.clear(),
            }
            c.def.clear();
        }
        rg.close()?;
        self.rows = 0;
        Ok(())
    }
}

/// Reads CSV records: a line, or several when a quoted name holds a
/// newline (as `csv_field` writes one). Counts lines for errors.
struct Records {
    input: BufReader<File>,
    line: u64,
}

impl Records {
    /// The next record's text (without its line end) and its first line's
    /// number; `None` at the end.
    fn next(&mut self, path: &Path) -> Result<Option<(String, u64)>, ExportError> {
        let mut text = String::new();
        let first = self.line + 1;
        loop {
            let n = self
                .input
                .read_line(&mut text)
                .map_err(|source| ExportError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
            if n == 0 {
                return Ok((!text.is_empty()).then_some((text, first)));
            }
            self.line += 1;
            // Balanced quotes: the record is whole.
            if text.bytes().filter(|&b| b == b'"').count() % 2 == 0 {
                while text.ends_with(['\n', '\r']) {
                    text.pop();
                }
                return Ok(Some((text, first)));
            }
        }
    }
}

/// Exports `series.csv` at `input` to the Parquet file `output`, each
/// row's `time` from `starts`. The file appears under its name only when
/// complete; on any error (located by file and line) nothing is left.
pub fn export_series(
    input: &Path,
    output: &Path,
    starts: StageStarts,
) -> Result<ExportStats, ExportError> {
    columns::atomically(output, |tmp| {
        write_file(input, tmp, starts, MAX_ROW_GROUP_ROWS)
    })
}

/// Writes `input` to `tmp` in row groups of at most `max_rows` rows (a
/// parameter so tests can make several groups from a few rows).
fn write_file(
    input: &Path,
    tmp: &Path,
    mut starts: StageStarts,
    max_rows: usize,
) -> Result<ExportStats, ExportError> {
    let located = |line: u64, msg: String| ExportError::Value {
        path: input.to_path_buf(),
        line,
        msg,
    };
    let file = File::open(input).map_err(|source| ExportError::Io {
        path: input.to_path_buf(),
        source,
    })?;
    let mut records = Records {
        input: BufReader::with_capacity(1 << 16, file),
        line: 0,
    };
    let Some((header, _)) = records.next(input)? else {
        return Err(located(1, "empty: no header".into()));
    };
    // The current header, or an older one that is its beginning (the first
    // versions had no host columns): their columns are then null.
    let header = split_csv(&header);
    let known: Vec<&str> = HEADER.split(',').collect();
    if header.len() < TRAFFIC_COLUMNS
        || header.len() > known.len()
        || header[..] != known[..header.len()]
    {
        return Err(located(
            1,
            format!(
                "not a series.csv header (expected `{HEADER}` or its first {TRAFFIC_COLUMNS} or more columns)"
            ),
        ));
    }
    let pq_err = |source| ExportError::Parquet {
        path: tmp.to_path_buf(),
        source,
    };
    let mut writer = columns::create(tmp, &schema(), max_rows, &DICTIONARY_COLUMNS)?;
    let mut group = RowGroup::new(&header);
    let mut stats = ExportStats::default();
    // Rows of one stage are together (a stage's rows are all written
    // before the next stage begins), so a change of `stage` is a new stage.
    let mut stage: Option<(String, Option<i64>)> = None;
    while let Some((text, line)) = records.next(input)? {
        if text.is_empty() {
            continue;
        }
        let fields = split_csv(&text);
        if fields.len() != header.len() {
            return Err(located(
                line,
                format!(
                    "{} fields where the header has {}",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        if stage.as_ref().is_none_or(|(name, _)| *name != fields[0]) {
            let start = starts.next(&fields[0]);
            stage = Some((fields[0].clone(), start));
        }
        let start = stage.as_ref().and_then(|(_, s)| *s);
        let second: Option<i64> = fields[1].parse().ok();
        let time = start
            .zip(second)
            .and_then(|(s, n)| n.checked_mul(1_000_000_000).and_then(|n| s.checked_add(n)));
        group
            .push(&fields, time)
            .map_err(|msg| located(line, msg))?;
        stats.records += 1;
        if group.rows >= max_rows || group.heap_bytes() >= MAX_ROW_GROUP_BYTES {
            group.flush(&mut writer).map_err(pq_err)?;
            stats.row_groups += 1;
        }
    }
    if group.rows > 0 {
        group.flush(&mut writer).map_err(pq_err)?;
        stats.row_groups += 1;
    }
    stats.bytes_written = columns::finish(writer, tmp)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::results::StageMeta;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    /// The schema docs/analysis.md lists, column by column.
    #[test]
    fn schema_is_the_documented_one() {
        let expected = "message series {
  required binary stage (STRING);
  required int64 second;
  optional int64 time (TIMESTAMP(NANOS,true));
  required binary agent (STRING);
  required int64 ops;
  required int64 bytes;
  required int64 errors;
  required double ops_per_s;
  required double mib_per_s;
  required double p50_us;
  required double p99_us;
  required double max_us;
  optional double cpu_busy_pct;
  optional double cpu_max_core_pct;
  optional double cpu_user_pct;
  optional double cpu_system_pct;
  optional double cpu_iowait_pct;
  optional double cpu_steal_pct;
  optional double proc_cpu_pct;
  optional double proc_cpu_wait_pct;
  optional double run_queue;
  optional double mem_used_pct;
  optional double net_rx_mib_s;
  optional double net_tx_mib_s;
  optional double sched_lag_ms;
  optional double sched_lag_mean_ms;
  optional int32 cpus;
}";
        assert_eq!(schema(), expected);
        parquet::schema::parser::parse_message_type(&schema()).unwrap();
    }

    fn meta(stages: &[(&str, &str)]) -> RunMeta {
        RunMeta {
            stages: stages
                .iter()
                .map(|(name, at)| StageMeta {
                    name: name.to_string(),
                    start_at: at.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn rows(path: &Path) -> Vec<HashMap<String, Field>> {
        let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| {
                r.unwrap()
                    .get_column_iter()
                    .map(|(n, f)| (n.clone(), f.clone()))
                    .collect()
            })
            .collect()
    }

    /// Agent and cluster rows, a quoted stage name with a comma and one with
    /// a newline, empty host figures, across row groups: every value comes
    /// back typed, and `time` is the stage's start plus `second`.
    #[test]
    fn round_trip_with_times_over_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("series.csv");
        let host = "97.0,98.0,60.0,30.0,0.0,0.0,41.5,2.0,3.0,40.0,1.5,2.5,,,2";
        let empty = ",".repeat(14);
        let mut text = format!("{HEADER}\n");
        for s in 0..3 {
            text.push_str(&format!(
                "load,{s},a1,100,102400,1,100.00,0.098,50.0,90.0,120.0,{host}\n"
            ));
            text.push_str(&format!(
                "load,{s},*,100,102400,1,100.00,0.098,50.0,90.0,120.0,{empty}\n"
            ));
        }
        text.push_str(&format!(
            "\"a,b\",0,a1,5,0,0,5.00,0.000,1.0,2.0,3.0,{empty}\n"
        ));
        text.push_str(&format!(
            "\"two\nlines\",4,a1,7,0,0,7.00,0.000,1.0,2.0,3.0,{empty}\n"
        ));
        std::fs::write(&csv, text).unwrap();
        let starts = StageStarts::of(&meta(&[
            ("load", "2026-11-23T21:56:46.5Z"),
            ("a,b", "2026-11-23T21:57:00Z"),
            ("never", ""),
        ]));
        let out = dir.path().join("series.parquet");
        let stats = write_file(&csv, &out, starts, 4).unwrap();
        assert_eq!(stats.records, 8);
        assert_eq!(stats.row_groups, 2);
        let rows = rows(&out);
        assert_eq!(rows.len(), 8);
        let load0 = parse_rfc3339_ns("2026-11-23T21:56:46.5Z").unwrap();
        assert_eq!(rows[0]["stage"], Field::Str("load".into()));
        assert_eq!(rows[0]["agent"], Field::Str("a1".into()));
        assert_eq!(rows[0]["time"], Field::Long(load0));
        assert_eq!(rows[4]["time"], Field::Long(load0 + 2_000_000_000));
        assert_eq!(rows[0]["bytes"], Field::Long(102400));
        assert_eq!(rows[0]["ops_per_s"], Field::Double(100.0));
        assert_eq!(rows[0]["proc_cpu_pct"], Field::Double(41.5));
        assert_eq!(rows[0]["sched_lag_ms"], Field::Null);
        assert_eq!(rows[0]["cpus"], Field::Int(2));
        assert_eq!(rows[1]["agent"], Field::Str("*".into()));
        assert_eq!(rows[1]["cpu_busy_pct"], Field::Null);
        assert_eq!(rows[1]["cpus"], Field::Null);
        assert_eq!(rows[6]["stage"], Field::Str("a,b".into()));
        assert_eq!(
            rows[6]["time"],
            Field::Long(parse_rfc3339_ns("2026-11-23T21:57:00Z").unwrap())
        );
        assert_eq!(rows[7]["stage"], Field::Str("two\nlines".into()));
        assert_eq!(rows[7]["second"], Field::Long(4));
        assert_eq!(rows[7]["time"], Field::Null, "no start in run.json");
    }

    /// A first-version series.csv (no host columns) exports, its host
    /// columns null.
    #[test]
    fn older_header_has_null_host_columns() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("series.csv");
        let old: Vec<&str> = HEADER.split(',').take(TRAFFIC_COLUMNS).collect();
        std::fs::write(
            &csv,
            format!("{}\nw,0,a,1,2,0,1.00,0.000,1.0,1.0,1.0\n", old.join(",")),
        )
        .unwrap();
        let out = dir.path().join("s.parquet");
        export_series(&csv, &out, StageStarts::default()).unwrap();
        let rows = rows(&out);
        assert_eq!(rows[0]["ops"], Field::Long(1));
        assert_eq!(rows[0]["cpu_busy_pct"], Field::Null);
        assert_eq!(rows[0]["time"], Field::Null);
    }

    /// A row that does not parse is an error naming the file, line and
    /// column, and leaves no file.
    #[test]
    fn bad_rows_are_located_errors() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("series.csv");
        let empty = ",".repeat(14);
        let good = format!("w,0,a,1,2,0,1.00,0.000,1.0,1.0,1.0,{empty}");
        let out = dir.path().join("series.parquet");
        for (body, line, what) in [
            (
                format!("{good}\nw,1,a,x,2,0,1,1,1,1,1,{empty}\n"),
                3,
                "column `ops`",
            ),
            (format!("{good}\n{good}\nw,1,a\n"), 4, "3 fields"),
        ] {
            std::fs::write(&csv, format!("{HEADER}\n{body}")).unwrap();
            let err = export_series(&csv, &out, StageStarts::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("{}:{line}: ", csv.display())) && err.contains(what),
                "{err}"
            );
            assert!(!out.exists());
        }
        std::fs::write(&csv, "idx\tthread\n").unwrap();
        let err = export_series(&csv, &out, StageStarts::default()).unwrap_err();
        assert!(
            err.to_string().contains(":1: not a series.csv header"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
