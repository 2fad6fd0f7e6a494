#!/usr/bin/env bash
# Runs a Python script with numpy, the reader that is not Chorus for the
# training-dataset files Chorus writes (tests/tests/dataset_formats.rs runs
# the checkers in tests/python/ through it).
#   scripts/pyenv.sh SCRIPT.py ARGS...
# numpy goes into a venv under the user's cache, created on first use, at a
# pinned version, so the reference reader is the same on every machine.
set -euo pipefail

VENV="${CHORUS_PYENV_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chorus/py-venv}"
# 2.3.5: wheels for CPython 3.11 to 3.14.
NUMPY_VERSION="${CHORUS_NUMPY_VERSION:-2.3.5}"

log() { echo "pyenv.sh: $*" >&2; }

[ $# -ge 1 ] || { log "usage: pyenv.sh SCRIPT.py ARGS..."; exit 2; }

# shellcheck source=scripts/venv-lib.sh
. "$(dirname "$0")/venv-lib.sh"
venv_ensure "$VENV" numpy "$NUMPY_VERSION" pyenv.sh
# -B: the checkers import a module beside them; no bytecode left in the tree.
exec "$VENV/bin/python" -B "$@"
