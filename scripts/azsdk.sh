#!/usr/bin/env bash
# Runs a Python script (on stdin) with azure-storage-blob, the Azure SDK for
# Python: the client that is not Chorus in tests of the `az://` object API
# (tests/tests/store_azure.rs checks copies, appends, tags and batch deletes
# through it, as a user would see them).
#   scripts/azsdk.sh ARGS... <script.py
# The SDK goes into a venv under the user's cache, created on first use, at
# a pinned version, so the reference is the same client on every machine.
set -euo pipefail

VENV="${CHORUS_AZSDK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chorus/azsdk-venv}"
AZSDK_VERSION="${CHORUS_AZSDK_VERSION:-12.31.1}"

# shellcheck source=scripts/venv-lib.sh
. "$(dirname "$0")/venv-lib.sh"
venv_ensure "$VENV" azure-storage-blob "$AZSDK_VERSION" azsdk.sh
exec "$VENV/bin/python" - "$@"
