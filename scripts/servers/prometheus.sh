#!/usr/bin/env bash
# A Prometheus server (Debian `prometheus`) on 127.0.0.1 scraping given
# targets every second, for the live-metrics test (`controller run
# --metrics-listen`, tests/tests/prometheus.rs).
#
#   CHORUS_PROMETHEUS_TARGETS=127.0.0.1:9464 scripts/servers/prometheus.sh start DIR
#   scripts/servers/prometheus.sh stop DIR
#
# `start` installs the package if missing, writes a config scraping the
# comma-separated host:port list in CHORUS_PROMETHEUS_TARGETS (path
# /metrics, every 1 s), keeps its TSDB and log under DIR, listens on a free
# loopback port, waits until it answers, and prints only this line on
# stdout (everything else goes to stderr):
#
#   PROMETHEUS_URL=http://127.0.0.1:PORT
#
# Instances with different DIRs coexist: each has its own port, data and
# pid file.
set -euo pipefail

# Prometheus starts in a second or two; the machine may be busy building.
START_TIMEOUT_S=60
# How long to wait for another apt/dpkg to release the package lock.
APT_LOCK_TIMEOUT_S=600

log() { echo "prometheus.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

prom_bin() {
  command -v prometheus 2>/dev/null || { [ -x /usr/bin/prometheus ] && echo /usr/bin/prometheus; } || true
}

install() {
  if [ -n "$(prom_bin)" ]; then return; fi
  command -v apt-get >/dev/null || die "prometheus not found and no apt-get: install Prometheus 2.x"
  log "installing prometheus (apt-get)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  # policy-rc.d 101: do not start the system-wide service the package
  # ships (it would take port 9090); the tests run their own.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && created=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT_S" \
    install -y --no-install-recommends prometheus >&2 || {
    # The package lists may be missing on a fresh machine.
    $sudo apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT_S" update >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT_S" \
      install -y --no-install-recommends prometheus >&2
  }
  if [ "$created" = 1 ]; then $sudo rm -f "$policy"; fi
  [ -n "$(prom_bin)" ] || die "install failed: no prometheus binary"
}

start() {
  DIR="$1"
  mkdir -p "$DIR"
  local targets="${CHORUS_PROMETHEUS_TARGETS:-}"
  [ -n "$targets" ] || die "set CHORUS_PROMETHEUS_TARGETS to the host:port list to scrape"
  local pid
  if pid=$(our_pid "$DIR/pids/prometheus.pid"); then
    log "already running in $DIR (pid $pid)"
    cat "$DIR/prometheus.env"
    return
  fi
  install
  local port list t x
  port="$(free_port)"
  list=""
  IFS=',' read -ra t <<<"$targets"
  for x in "${t[@]}"; do list="$list'$x',"; done
  # 1 s scrapes and evaluation: the test's run lasts a few seconds.
  cat >"$DIR/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: chorus
    metrics_path: /metrics
    static_configs:
      - targets: [${list%,}]
CONF
  local url="http://127.0.0.1:$port"
  spawn prometheus "$(prom_bin)" \
    --config.file="$DIR/prometheus.yml" \
    --storage.tsdb.path="$DIR/data" \
    --web.listen-address="127.0.0.1:$port"
  pid=$(cat "$DIR/pids/prometheus.pid")
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until curl -sf "$url/-/ready" >/dev/null 2>&1; do
    alive "$pid" || { log "prometheus exited"; show_logs; exit 1; }
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "no answer on $url after ${START_TIMEOUT_S}s"; show_logs; stop "$DIR"; exit 1
    fi
    sleep 0.1
  done
  log "up on $url (pid $pid, scraping $targets, data in $DIR/data)"
  echo "PROMETHEUS_URL=$url" | tee "$DIR/prometheus.env"
}

stop() {
  DIR="$1"
  local pid
  pid=$(our_pid "$DIR/pids/prometheus.pid") || { rm -f "$DIR/pids/prometheus.pid"; return 0; }
  # The whole process group setsid made (its id is the leader's pid).
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$DIR/pids/prometheus.pid"
}

case "${1:-}" in
  start) [ -n "${2:-}" ] || { log "usage: $0 start DIR"; exit 2; }; start "$2" ;;
  stop) [ -n "${2:-}" ] || { log "usage: $0 stop DIR"; exit 2; }; stop "$2" ;;
  *) log "usage: $0 start|stop DIR"; exit 2 ;;
esac
