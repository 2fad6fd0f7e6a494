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

installed() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" - "$NUMPY_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("numpy") == sys.argv[1] else 1)
PY
}

install() {
  installed && return 0
  command -v python3 >/dev/null || { log "python3 not found"; exit 1; }
  mkdir -p "$(dirname "$VENV")"
  # Tests run in parallel: one installs, the others wait for it.
  (
    flock 9
    if ! installed; then
      log "installing numpy==$NUMPY_VERSION into $VENV"
      [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" >&2
      "$VENV/bin/pip" install -q --disable-pip-version-check "numpy==$NUMPY_VERSION" >&2
    fi
  ) 9>"$(dirname "$VENV")/.py-venv.lock"
  installed || { log "install into $VENV failed"; exit 1; }
}

install
# -B: the checkers import a module beside them; no bytecode left in the tree.
exec "$VENV/bin/python" -B "$@"
