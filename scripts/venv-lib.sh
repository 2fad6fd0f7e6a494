# shellcheck shell=bash
# venv-lib.sh: sourced by scripts/boto3.sh, azsdk.sh, gcssdk.sh, pyenv.sh
# and pqenv.sh (not run on its own): a Python venv under the user's cache
# holding one pinned package, created on first use, so the reference reader
# or client is the same on every machine.

# venv_ensure VENV PACKAGE VERSION LOG_NAME: makes VENV hold PACKAGE at
# VERSION, installing it if needed; tests run in parallel, so one installs
# under a lock beside the venv and the others wait for it.
venv_ensure() {
  local venv=$1 package=$2 version=$3 name=$4
  venv_installed "$venv" "$package" "$version" && return 0
  command -v python3 >/dev/null || { echo "$name: python3 not found" >&2; exit 1; }
  mkdir -p "$(dirname "$venv")"
  (
    flock 9
    if ! venv_installed "$venv" "$package" "$version"; then
      echo "$name: installing $package==$version into $venv" >&2
      [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
      "$venv/bin/pip" install -q --disable-pip-version-check "$package==$version" >&2
    fi
  ) 9>"$venv.lock"
  venv_installed "$venv" "$package" "$version" ||
    { echo "$name: install into $venv failed" >&2; exit 1; }
}

# venv_installed VENV PACKAGE VERSION: whether VENV has PACKAGE at VERSION.
venv_installed() {
  [ -x "$1/bin/python" ] &&
    "$1/bin/python" - "$2" "$3" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version(sys.argv[1]) == sys.argv[2] else 1)
PY
}
