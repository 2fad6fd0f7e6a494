#!/usr/bin/env bash
# Runs a Python script with pyarrow, DuckDB and pandas, the readers that are
# not Chorus for the Parquet timelines `controller export` writes
# (tests/tests/parquet_export.rs runs tests/python/check_parquet.py and the
# queries of docs/analysis.md through it).
#   scripts/pqenv.sh SCRIPT.py ARGS...
# The packages go into a venv under the user's cache, created on first use,
# at pinned versions, so the reference readers are the same on every machine.
set -euo pipefail

VENV="${CHORUS_PQENV_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chorus/pq-venv}"
# Wheels for CPython 3.10 to 3.13 (3.14 for all but pandas 2.3.3's older
# builds); pandas is what docs/analysis.md's pandas example loads into.
PYARROW_VERSION="${CHORUS_PYARROW_VERSION:-22.0.0}"
DUCKDB_VERSION="${CHORUS_DUCKDB_VERSION:-1.4.2}"
PANDAS_VERSION="${CHORUS_PANDAS_VERSION:-2.3.3}"

log() { echo "pqenv.sh: $*" >&2; }

[ $# -ge 1 ] || { log "usage: pqenv.sh SCRIPT.py ARGS..."; exit 2; }

# shellcheck source=scripts/venv-lib.sh
. "$(dirname "$0")/venv-lib.sh"
venv_ensure "$VENV" pyarrow "$PYARROW_VERSION" pqenv.sh
venv_ensure "$VENV" duckdb "$DUCKDB_VERSION" pqenv.sh
venv_ensure "$VENV" pandas "$PANDAS_VERSION" pqenv.sh
exec "$VENV/bin/python" -B "$@"
