"""Reads a Parquet timeline with pyarrow and DuckDB (not Chorus) and prints
what tests/tests/parquet_export.rs compares with the TSV timeline, as JSON.

    check_parquet.py TIMELINE.parquet ANALYSIS.md

Runs from the parquet file's directory, so the queries of docs/analysis.md
(its "timeline as Parquet" section: every ```sql block in DuckDB, the
```python block as is) read `timeline.parquet` as a user's would.
"""

import contextlib
import io
import json
import math
import os
import re
import sys

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

STRINGS = ["op", "client_id", "endpoint", "error_class", "stage"]


def docs_blocks(md_path):
    text = open(md_path, encoding="utf-8").read()
    start = text.index("## The timeline as Parquet")
    end = text.index("\n## ", start + 1)
    section = text[start:end]
    sql = re.findall(r"```sql\n(.*?)```", section, re.S)
    py = re.findall(r"```python\n(.*?)```", section, re.S)
    return sql, py


def plain(v):
    if isinstance(v, (int, float, str)) or v is None:
        return v
    return str(v)


def main():
    path, md = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.chdir(os.path.dirname(path))
    out = {}

    f = pq.ParquetFile(path)
    out["rows"] = f.metadata.num_rows
    out["row_groups"] = f.metadata.num_row_groups
    out["schema"] = {fld.name: str(fld.type) for fld in f.schema_arrow}
    # Encodings and codec of each column in the first row group, as the
    # file's metadata records them.
    rg = f.metadata.row_group(0)
    out["encodings"] = {
        rg.column(i).path_in_schema: sorted(rg.column(i).encodings)
        for i in range(rg.num_columns)
    }
    out["codecs"] = sorted({rg.column(i).compression for i in range(rg.num_columns)})

    t = pq.read_table(path, read_dictionary=STRINGS)
    out["read_dictionary_types"] = {c: str(t.schema.field(c).type) for c in STRINGS}
    out["sum_bytes"] = pc.sum(t["bytes"]).as_py()
    out["error_count"] = len(t) - t["error_class"].null_count
    # Nearest-rank p99 of every GET's duration_ns, from pyarrow ...
    gets = pc.filter(t["duration_ns"], pc.equal(pc.cast(t["op"], pa.string()), "GET"))
    ordered = pc.sort_indices(gets)
    n = len(gets)
    out["get_count"] = n
    out["p99_get_pyarrow"] = gets[ordered[math.ceil(0.99 * n) - 1].as_py()].as_py()
    # ... and from DuckDB.
    out["p99_get_duckdb"] = duckdb.sql(
        "SELECT quantile_disc(duration_ns, 0.99) FROM 'timeline.parquet' WHERE op = 'GET'"
    ).fetchone()[0]
    out["duckdb_types"] = {
        r[0]: r[1]
        for r in duckdb.sql("DESCRIBE SELECT * FROM 'timeline.parquet'").fetchall()
    }

    sql, py = docs_blocks(md)
    out["docs_sql"] = [
        [[plain(v) for v in row] for row in duckdb.sql(q).fetchall()] for q in sql
    ]
    out["docs_python"] = []
    for block in py:
        ns = {}
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block, "docs/analysis.md", "exec"), ns)
        out["docs_python"].append(
            {
                "printed": len(printed.getvalue()),
                "bytes_per_agent": {
                    str(k): int(v) for k, v in ns["bytes_per_agent"].items()
                },
                "ops_per_second_total": int(ns["ops_per_second"].sum()),
            }
        )
    json.dump(out, sys.stdout)


main()
