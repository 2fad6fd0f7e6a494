"""Reads a run's series.parquet with pyarrow and DuckDB (not Chorus) and
prints what tests/tests/parquet_export.rs compares with series.csv, as JSON.

    check_series_parquet.py SERIES.parquet ANALYSIS.md

Runs from the file's directory, so the queries of docs/analysis.md (its
"per-second series as Parquet" section: every ```sql block in DuckDB, the
```python block as is) read `series.parquet` as a user's would.
"""

import contextlib
import io
import json
import os
import re
import sys

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def docs_blocks(md_path):
    text = open(md_path, encoding="utf-8").read()
    start = text.index("## The per-second series as Parquet")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else len(text)]
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
    out["schema"] = {fld.name: str(fld.type) for fld in f.schema_arrow}
    rg = f.metadata.row_group(0)
    out["encodings"] = {
        rg.column(i).path_in_schema: sorted(rg.column(i).encodings)
        for i in range(rg.num_columns)
    }
    out["codecs"] = sorted({rg.column(i).compression for i in range(rg.num_columns)})

    # pyarrow: sums over every row, and the cluster rows' count.
    t = pq.read_table(path)
    out["pyarrow"] = {
        "sum_ops": pc.sum(t["ops"]).as_py(),
        "sum_bytes": pc.sum(t["bytes"]).as_py(),
        "cluster_rows": pc.sum(pc.equal(t["agent"], "*")).as_py(),
        "cpu_busy_nulls": t["cpu_busy_pct"].null_count,
        "time_nulls": t["time"].null_count,
        # Each stage's first second and its time, exact (epoch ns).
        "first_second": {
            r["stage"]: [r["second_min"], r["time_min"]]
            for r in pa.table(
                {
                    "stage": t["stage"],
                    "second": t["second"],
                    "time": pc.cast(t["time"], pa.int64()),
                }
            )
            .group_by("stage")
            .aggregate([("second", "min"), ("time", "min")])
            .to_pylist()
        },
    }
    # DuckDB: the same sums, and each stage's first second and its time
    # (DuckDB's timestamps are microseconds: epoch_us).
    out["duckdb"] = {
        "sum_ops": duckdb.sql("SELECT sum(ops) FROM 'series.parquet'").fetchone()[0],
        "sum_bytes": duckdb.sql("SELECT sum(bytes) FROM 'series.parquet'").fetchone()[0],
        "first_second": {
            stage: [second, ns]
            for stage, second, ns in duckdb.sql(
                "SELECT stage, min(second), epoch_us(min(time)) FROM 'series.parquet'"
                " GROUP BY stage"
            ).fetchall()
        },
    }
    out["duckdb_types"] = {
        r[0]: r[1] for r in duckdb.sql("DESCRIBE SELECT * FROM 'series.parquet'").fetchall()
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
                "cluster_rows": len(ns["cluster"]),
                "cluster_ops": int(ns["cluster"]["ops"].sum()),
            }
        )
    json.dump(out, sys.stdout)


main()
