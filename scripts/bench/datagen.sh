#!/usr/bin/env bash
# Data generation speed on one core against memcpy in the same run
# (issue 4: incompressible generation must reach >= 0.5x memcpy).
# Extra arguments go to cargo (e.g. --offline).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo bench -p chorus-common --bench datagen "$@"
