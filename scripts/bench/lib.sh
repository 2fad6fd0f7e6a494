# lib.sh: sourced by the bench scripts (not run on its own).
# shellcheck shell=bash

# release_bin ROOT NAME: the path of binary NAME as `cargo build --release`
# run in ROOT leaves it: under $CARGO_TARGET_DIR when that is set (absolute,
# or relative to ROOT, where cargo runs), else under ROOT/target.
release_bin() {
  local root=$1 name=$2
  case "${CARGO_TARGET_DIR:-}" in
    "") echo "$root/target/release/$name" ;;
    /*) echo "$CARGO_TARGET_DIR/release/$name" ;;
    *) echo "$root/$CARGO_TARGET_DIR/release/$name" ;;
  esac
}

# need_time: installs GNU time (/usr/bin/time) when missing: the benches
# read a run's CPU from it.
need_time() {
  [ -x /usr/bin/time ] && return 0
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >&2 ||
    { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q time; } >&2
}

# start_rgw ROOT LOG: starts a Ceph RGW (scripts/servers/rgw.sh) in a new
# folder, stopped and removed when the calling script exits; exports the
# AWS_* variables it prints and sets RGW_DIR. Its start-up output goes to
# LOG; returns 1 (LOG shown) if it did not start.
start_rgw() {
  local root=$1 log=$2
  RGW_DIR=$(mktemp -d /tmp/chorus-bench-rgw-XXXXXX)
  # shellcheck disable=SC2064 # the paths are fixed now, on purpose
  trap "'$root/scripts/servers/rgw.sh' stop '$RGW_DIR' || true; rm -rf '$RGW_DIR'" EXIT
  echo "starting RGW under $RGW_DIR ..."
  local k v
  while IFS='=' read -r k v; do
    case "$k" in AWS_*) export "$k=$v" ;; esac
  done < <("$root/scripts/servers/rgw.sh" start "$RGW_DIR" 2>"$log")
  [ -n "${AWS_ENDPOINT_URL:-}" ] || { cat "$log" >&2; return 1; }
  echo "RGW at $AWS_ENDPOINT_URL"
}

# rgw_server_ticks: CPU ticks (user+sys, in units of `getconf CLK_TCK`) of
# the RGW cluster's daemons (RGW, OSD, mon) started by start_rgw, so far.
rgw_server_ticks() {
  local total=0 f pid stat
  for f in "$RGW_DIR"/pids/*.pid; do
    pid=$(cat "$f")
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    # Fields after the ")" closing the command name: utime is the 12th,
    # stime the 13th.
    # shellcheck disable=SC2086 # split into fields on purpose
    set -- ${stat##*) }
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

# release_controller ROOT: builds the release binaries (unless
# SKIP_BUILD=1) and prints the controller's path; fails if it is missing.
release_controller() {
  local root=$1 bin
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$root" && cargo build --release --bins) >&2
  fi
  bin=$(release_bin "$root" controller)
  [ -x "$bin" ] || { echo "no $bin; build with cargo build --release --bins" >&2; return 1; }
  echo "$bin"
}

# measure CMD...: runs CMD under GNU time (output to $WORK/out.log);
# prints "<seconds> <peak RSS KiB>". The caller sets WORK.
measure() {
  local log="$WORK/time.log"
  /usr/bin/time -v -o "$log" "$@" >"$WORK/out.log"
  local secs rss
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  echo "$secs $rss"
}

# rate N SECONDS: millions of N per second, two decimals.
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.2f", n / s / 1e6 }'; }
# min A B: the smaller number (A when B is empty).
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }

# The address an agent (or simulator) printed on its first stdout line
# (`listening on ADDR`) in OUT, waiting up to TRIES x 50 ms; on timeout,
# says NAME did not start with LOG's last lines, and fails.
listening_addr() {
  local out=$1 log=$2 name=$3 tries=$4 addr=""
  for _ in $(seq "$tries"); do
    addr=$(sed -n 's/^listening on //p' "$out" 2>/dev/null | head -1)
    [ -n "$addr" ] && break
    sleep 0.05
  done
  [ -n "$addr" ] || { echo "$name did not start:" >&2; tail -3 "$log" >&2; return 1; }
  echo "$addr"
}

# start_agents BIN DIR N: starts N `agent` processes (BIN) on loopback
# ports the kernel picks, ids a0..a<N-1>, plaintext, each with its spool in
# DIR/spool-<i> and its stdout/stderr in DIR/a<i>.out and DIR/a<i>.log.
# Appends their pids to AGENT_PIDS and sets AGENT_ADDRS to their addresses,
# comma-separated, in id order (for --agents). Call it directly, not in
# $(...): a subshell would keep the pids and the caller could not stop the
# agents. Returns 1 when an agent has not said where it listens within 10 s.
# Raise `ulimit -n` first for hundreds of agents.
AGENT_PIDS=()
AGENT_ADDRS=""

start_agents() {
  local bin=$1 dir=$2 n=$3 i addr addrs=()
  for ((i = 0; i < n; i++)); do
    "$bin" --listen 127.0.0.1:0 --insecure --id "a$i" --spool "$dir/spool-$i" \
      >"$dir/a$i.out" 2>"$dir/a$i.log" &
    AGENT_PIDS+=($!)
  done
  for ((i = 0; i < n; i++)); do
    addr=$(listening_addr "$dir/a$i.out" "$dir/a$i.log" "agent a$i" 200) || return 1
    addrs+=("$addr")
  done
  # shellcheck disable=SC2034 # read by the scripts that source this file
  AGENT_ADDRS=$(IFS=,; echo "${addrs[*]}")
}

# stop_agents: stops the agents start_agents started (SIGTERM, then waits
# for them) and forgets them.
stop_agents() {
  [ ${#AGENT_PIDS[@]} -gt 0 ] || return 0
  kill "${AGENT_PIDS[@]}" 2>/dev/null || true
  wait "${AGENT_PIDS[@]}" 2>/dev/null || true
  AGENT_PIDS=()
}
