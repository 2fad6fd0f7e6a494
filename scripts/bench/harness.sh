#!/usr/bin/env bash
# Harness overhead: workload-engine ops/s on mem:// with the op-log on and
# off, workers pinned to one core (issue 4: >= 500k ops/s per engine core
# with the log on, and the log costing <= 5%).
# Knobs (environment): CHORUS_HARNESS_OPS, CHORUS_HARNESS_ROUNDS,
# CHORUS_HARNESS_CONCURRENCY, CHORUS_HARNESS_MIX (all|get90|get100|writer),
# CHORUS_HARNESS_LOG (both|on|off), CHORUS_HARNESS_FORMAT (spool|tsv: what
# the log is written as in the engine runs; the writer-alone figure is
# printed for both). Extra arguments go to cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo bench -p chorus-common --bench harness "$@"
