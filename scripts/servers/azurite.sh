#!/usr/bin/env bash
# Azurite (Microsoft's Azure Storage emulator, npm `azurite`), blob service
# only, for the `az://` tests.
#
#   scripts/servers/azurite.sh start DIR   # install if missing, start, wait
#   scripts/servers/azurite.sh stop DIR    # stop what `start DIR` started
#
# `start` listens on 127.0.0.1 on a free port, keeps its data and log under
# DIR, and prints only KEY=VALUE lines on stdout (everything else goes to
# stderr):
#
#   AZURE_STORAGE_ENDPOINT=http://127.0.0.1:PORT/devstoreaccount1
#   AZURE_STORAGE_ACCOUNT=devstoreaccount1
#   AZURE_STORAGE_KEY=<the well-known Azurite key>
#
# The package is installed once into .cache/azurite under the repository
# (git-ignored); AZURITE_VERSION picks another release. Instances with
# different DIRs coexist: each has its own port, data and pid file.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="$REPO/.cache/azurite"
# Pinned so a test run on a fresh machine gets the release these scripts
# were checked against (3.35 has every flag used below).
AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
BIN="$CACHE/node_modules/.bin/azurite-blob"
# The well-known account and key of Azurite and the old Storage Emulator;
# public by design (https://learn.microsoft.com/azure/storage/common/storage-use-azurite).
ACCOUNT=devstoreaccount1
KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
# How long to wait for the server to answer: node starts in ~1 s, but the
# machine may be busy with builds.
START_TIMEOUT_S=60

log() { echo "azurite.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# free_port (below the ephemeral range, so the port is not taken meanwhile).
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install() {
  if [ -x "$BIN" ]; then return; fi
  command -v npm >/dev/null || { log "npm not found: install Node.js 18+ and npm"; exit 1; }
  mkdir -p "$CACHE"
  # Two test binaries may start at once: install under a lock.
  (
    flock 9
    if [ ! -x "$BIN" ]; then
      log "installing azurite@$AZURITE_VERSION into $CACHE"
      npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error \
        "azurite@$AZURITE_VERSION" >&2
    fi
  ) 9>"$CACHE/.install.lock"
  [ -x "$BIN" ] || { log "install failed: $BIN missing"; exit 1; }
}

start() {
  local dir="$1"
  mkdir -p "$dir/data"
  if [ -f "$dir/azurite.pid" ] && kill -0 "$(cat "$dir/azurite.pid")" 2>/dev/null; then
    log "already running in $dir (pid $(cat "$dir/azurite.pid"))"
    cat "$dir/azurite.env"
    return
  fi
  install
  local port
  port="$(free_port)"
  # setsid: own process group, so `stop` can end node and anything it
  # spawned by that one id.
  setsid "$BIN" --blobHost 127.0.0.1 --blobPort "$port" --location "$dir/data" \
    --silent --disableTelemetry --skipApiVersionCheck \
    >"$dir/azurite.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/azurite.pid"
  local url="http://127.0.0.1:$port/$ACCOUNT"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  # Any HTTP status means it is up (an unsigned list is answered 403).
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url?comp=list" || true)" != "000" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "azurite exited; its log:"; cat "$dir/azurite.log" >&2; exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "no answer on $url after ${START_TIMEOUT_S}s; log:"; cat "$dir/azurite.log" >&2
      stop "$dir"; exit 1
    fi
    sleep 0.2
  done
  log "up on $url (pid $pid, data in $dir/data)"
  {
    echo "AZURE_STORAGE_ENDPOINT=$url"
    echo "AZURE_STORAGE_ACCOUNT=$ACCOUNT"
    echo "AZURE_STORAGE_KEY=$KEY"
  } | tee "$dir/azurite.env"
}

stop() {
  local dir="$1" pid
  [ -f "$dir/azurite.pid" ] || return 0
  pid="$(cat "$dir/azurite.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    # The whole process group setsid made (its id is the leader's pid).
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$dir/azurite.pid"
}

case "${1:-}" in
  start) [ -n "${2:-}" ] || { log "usage: $0 start DIR"; exit 2; }; start "$2" ;;
  stop) [ -n "${2:-}" ] || { log "usage: $0 stop DIR"; exit 2; }; stop "$2" ;;
  *) log "usage: $0 start|stop DIR"; exit 2 ;;
esac
