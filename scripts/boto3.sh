#!/usr/bin/env bash
# Runs a Python script (on stdin) with boto3, the AWS SDK for Python: the
# client that is not Chorus in tests and benchmarks of objects Chorus did
# not write (tests/tests/existing_objects.rs, scripts/bench/list-existing.sh).
#   scripts/boto3.sh ARGS... <script.py
# boto3 goes into a venv under the user's cache, created on first use, at a
# pinned version, so the reference is the same client on every machine.
set -euo pipefail

VENV="${CHORUS_BOTO3_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chorus/boto3-venv}"
BOTO3_VERSION="${CHORUS_BOTO3_VERSION:-1.44.5}"

# shellcheck source=scripts/venv-lib.sh
. "$(dirname "$0")/venv-lib.sh"
venv_ensure "$VENV" boto3 "$BOTO3_VERSION" boto3.sh
exec "$VENV/bin/python" - "$@"
