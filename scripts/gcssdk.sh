#!/usr/bin/env bash
# Runs a Python script (on stdin) with google-cloud-storage, the GCS SDK
# for Python: the client that is not Chorus in tests of the `gs://` object
# API (tests/tests/store_gcs.rs checks copies and batch deletes through it
# against fake-gcs-server: STORAGE_EMULATOR_HOST set, anonymous client).
#   scripts/gcssdk.sh ARGS... <script.py
# The SDK goes into a venv under the user's cache, created on first use, at
# a pinned version, so the reference is the same client on every machine.
set -euo pipefail

VENV="${CHORUS_GCSSDK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chorus/gcssdk-venv}"
GCSSDK_VERSION="${CHORUS_GCSSDK_VERSION:-3.17.1}"

# shellcheck source=scripts/venv-lib.sh
. "$(dirname "$0")/venv-lib.sh"
venv_ensure "$VENV" google-cloud-storage "$GCSSDK_VERSION" gcssdk.sh
exec "$VENV/bin/python" - "$@"
