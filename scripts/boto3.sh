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

log() { echo "boto3.sh: $*" >&2; }

installed() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" - "$BOTO3_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("boto3") == sys.argv[1] else 1)
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
      log "installing boto3==$BOTO3_VERSION into $VENV"
      [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" >&2
      "$VENV/bin/pip" install -q --disable-pip-version-check "boto3==$BOTO3_VERSION" >&2
    fi
  ) 9>"$(dirname "$VENV")/.boto3-venv.lock"
  installed || { log "install into $VENV failed"; exit 1; }
}

install
exec "$VENV/bin/python" - "$@"
