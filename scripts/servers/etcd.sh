#!/usr/bin/env bash
# A one-member etcd (Debian `etcd-server`) on 127.0.0.1, for the agent
# discovery tests (`agent --etcd`, `controller run --etcd`).
#
#   scripts/servers/etcd.sh start DIR   # install if missing, start, wait
#   scripts/servers/etcd.sh stop DIR    # stop what `start DIR` started
#
# `start` listens on 127.0.0.1 on free client and peer ports, keeps its data
# and log under DIR, and prints only this line on stdout (everything else
# goes to stderr):
#
#   ETCD_ENDPOINT=http://127.0.0.1:PORT
#
# Chorus talks to etcd through its v3 JSON gateway (on the client port,
# etcd 3.4 and later), so nothing else is needed. Instances with different
# DIRs coexist: each has its own ports, data and pid file.
#
# Environment:
#   CHORUS_ETCD_CLIENT_PORT  the client port to use instead of a free one
#     (a test restarting etcd where its agents expect it)
set -euo pipefail

# How long to wait for etcd to answer: it starts in well under a second,
# but the machine may be busy with builds.
START_TIMEOUT_S=60
# How long to wait for another apt/dpkg (another test installing its own
# server) to release the package lock.
APT_LOCK_TIMEOUT_S=600

log() { echo "etcd.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# free_port (below the ephemeral range, so the port is not taken meanwhile).
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

etcd_bin() {
  # Debian's etcd-server installs /usr/bin/etcd.
  command -v etcd 2>/dev/null || { [ -x /usr/bin/etcd ] && echo /usr/bin/etcd; } || true
}

install() {
  if [ -n "$(etcd_bin)" ]; then return; fi
  command -v apt-get >/dev/null || { log "etcd not found and no apt-get: install etcd 3.4+"; exit 1; }
  log "installing etcd-server (apt-get)"
  # policy-rc.d 101: do not start the system-wide etcd service the package
  # ships; the tests run their own on free ports.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT_S" \
    install -y --no-install-recommends etcd-server >&2 || {
    # The package lists may be missing on a fresh machine.
    apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT_S" update >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT_S" \
      install -y --no-install-recommends etcd-server >&2
  }
  [ "$created" = 1 ] && rm -f "$policy"
  [ -n "$(etcd_bin)" ] || { log "install failed: no etcd binary"; exit 1; }
}

start() {
  local dir="$1"
  mkdir -p "$dir"
  if [ -f "$dir/etcd.pid" ] && kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null; then
    log "already running in $dir (pid $(cat "$dir/etcd.pid"))"
    cat "$dir/etcd.env"
    return
  fi
  install
  local bin client peer
  bin="$(etcd_bin)"
  client="${CHORUS_ETCD_CLIENT_PORT:-$(free_port)}"
  peer="$(free_port)"
  while [ "$peer" = "$client" ]; do peer="$(free_port)"; done
  local url="http://127.0.0.1:$client"
  # etcd reads every ETCD_* variable as a flag (and refuses one that
  # clashes with a flag given): the caller's must not leak in.
  local v
  for v in $(compgen -e | grep '^ETCD_' || true); do unset "$v"; done
  # setsid: own process group, so `stop` ends it by that one id.
  setsid "$bin" \
    --name chorus-test \
    --data-dir "$dir/data" \
    --listen-client-urls "$url" \
    --advertise-client-urls "$url" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "chorus-test=http://127.0.0.1:$peer" \
    --initial-cluster-state new \
    >"$dir/etcd.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/etcd.pid"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  # Up when the JSON gateway answers a real v3 call (a range read), not
  # only the /health page.
  until curl -sf -X POST -d '{"key":"AA=="}' "$url/v3/kv/range" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "etcd exited; its log:"; tail -n 50 "$dir/etcd.log" >&2; exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "no answer on $url after ${START_TIMEOUT_S}s; log:"; tail -n 50 "$dir/etcd.log" >&2
      stop "$dir"; exit 1
    fi
    sleep 0.1
  done
  log "up on $url (pid $pid, data in $dir/data)"
  echo "ETCD_ENDPOINT=$url" | tee "$dir/etcd.env"
}

stop() {
  local dir="$1" pid
  [ -f "$dir/etcd.pid" ] || return 0
  pid="$(cat "$dir/etcd.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    # The whole process group setsid made (its id is the leader's pid).
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$dir/etcd.pid"
}

case "${1:-}" in
  start) [ -n "${2:-}" ] || { log "usage: $0 start DIR"; exit 2; }; start "$2" ;;
  stop) [ -n "${2:-}" ] || { log "usage: $0 stop DIR"; exit 2; }; stop "$2" ;;
  *) log "usage: $0 start|stop DIR"; exit 2 ;;
esac
