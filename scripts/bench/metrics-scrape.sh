#!/usr/bin/env bash
# What `/metrics` costs with many agents (issue 19: "/metrics scrape time
# and controller CPU at 256 agents").
#
# For each N: N real `agent` processes on loopback (lib.sh's start_agents,
# as agents-scale.sh starts them), and the same plan run by a controller
# under /usr/bin/time without --metrics-listen (the reference, in the same
# run of the script) and with it while a loop scrapes /metrics every second
# with curl. Four runs, in the order off, on, on, off, so whatever the
# first run on fresh agents costs more falls on both sides; each side's CPU
# is the mean of its two, and each run's is printed under the row.
#
# The plan has two stages and four op kinds, so the registry holds what a
# real run's does: a prepare (PUT), then a 20 s open-loop mem:// workload
# of GET, PUT and STAT (20 ops/s per agent, so 256 agents stay light on a
# 2-core machine): about 25 scrapes a run. Each agent owns 4 objects
# (count = 4 N), so its reads find objects. The silence bounds are raised
# (agent_timeout 30 s): 256 agent processes on 2 cores wake at once, and
# with the default 3 s the controller took some for lost in the prepare.
#
# The whole-run CPU of two controller runs differs by 10-25% from run to
# run with 256 agent processes on 2 cores, more than a scrape a second
# costs; so the controller's CPU per scrape is also measured directly:
# once the run is over (the linger, the registry at its largest), the
# scrape loop stops, BURST scrapes (default 50) are made back to back, and
# the controller's user+system time (/proc/PID/stat) before and after,
# divided by BURST, is the CPU one scrape costs; then SIGINT ends the
# linger. The burst is subtracted from the with-metrics runs' CPU.
#
# Reported per N: scrapes taken (both runs, 1 s apart), scrape time p50 and
# max (curl's time_total), the largest response in bytes and its number
# of series (lines not starting with `#`; the largest is the last, once
# every step's exact figures are in), the controller's CPU per scrape, and
# its CPU (user+sys, mean of two runs) without and with metrics and their
# ratio, and the scrapes' share of a core at one scrape a second.
#
#   scripts/bench/metrics-scrape.sh            # N = 1 64 256
#   scripts/bench/metrics-scrape.sh 1 16       # chosen N
#   DURATION=60s scripts/bench/metrics-scrape.sh 256
#
# Needs curl and GNU time. Every run is bounded (RUN_TIMEOUT, default
# 300 s, per controller run; curl --max-time 10 per scrape).
set -euo pipefail
cd "$(dirname "$0")/../.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 64 256)
DURATION=${DURATION:-20s}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
BURST=${BURST:-50}

command -v curl >/dev/null || { echo "curl missing (apt-get install curl)" >&2; exit 2; }
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
need_time
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --bins -q
fi
agent_bin=$(release_bin "$PWD" agent)
controller_bin=$(release_bin "$PWD" controller)
work=$(mktemp -d /tmp/chorus-metrics-scrape.XXXXXX)
scraper=""
cleanup() {
  [ -z "$scraper" ] || kill "$scraper" 2>/dev/null || true
  stop_agents
  rm -rf "$work"
}
trap cleanup EXIT
# Hundreds of agents hold a few sockets and files each; the controller one
# connection per agent.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
tick=$(getconf CLK_TCK)

# scrape_loop URL OUT: scrapes URL every second until killed, one line per
# scrape to OUT: seconds, bytes, series.
scrape_loop() {
  local url=$1 out=$2 line
  while :; do
    if line=$(curl -s --max-time 10 -o "$work/body" -w '%{http_code} %{time_total} %{size_download}' "$url") &&
      [ "${line%% *}" = 200 ]; then
      echo "${line#* } $(grep -cv '^#' "$work/body" || true)" >>"$out"
    fi
    sleep 1
  done
}

# run_plan N LABEL [FLAGS...]: one controller run on the started agents
# under /usr/bin/time; its "user sys wall maxrss" in $work/time-N-LABEL.
# Each run has its own mem:// store (an agent keeps a store by name across
# sessions), so the second run's prepare writes as much as the first's.
run_plan() {
  local n=$1 label=$2
  shift 2
  timeout "$RUN_TIMEOUT" /usr/bin/time -f "%U %S %e %M" -o "$work/time-$n-$label" \
    "$controller_bin" run "$work/plan.yaml" --agents "$AGENT_ADDRS" --insecure --quiet \
    --target "mem://scrape-$label" --results "$work/runs-$n-$label" "$@" \
    >"$work/ctl-$n-$label.out" 2>"$work/ctl-$n-$label.err"
}

# fail N LABEL: the controller's last words, and exit.
fail() {
  echo "controller failed with $1 agents ($2):"
  tail -5 "$work/ctl-$1-$2.err"
  exit 1
}

# descendant PID NAME: the first process named NAME under PID.
descendant() {
  local c
  # shellcheck disable=SC2013 # the file holds pids separated by spaces
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    if [ "$(cat /proc/"$c"/comm 2>/dev/null)" = "$2" ]; then
      echo "$c"
      return 0
    fi
    descendant "$c" "$2" && return 0
  done
  return 1
}

# cpu_ticks PID: its user + system time in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# metrics_run N LABEL: run_plan with --metrics-listen in the background;
# the scrape loop from the moment the controller says where /metrics is
# (bound before the agents are joined) to the linger (scrapes appended to
# $work/scrapes-N); then the burst (its ticks appended to $work/burst-N),
# and SIGINT to end the linger.
metrics_run() {
  local n=$1 label=$2 ctl url="" pid t0 t1 i err="$work/ctl-$1-$2.err"
  run_plan "$n" "$label" --metrics-listen 127.0.0.1:0 --metrics-linger 60s &
  ctl=$!
  for _ in $(seq 200); do
    url=$(sed -n 's|^metrics: \(http://[^ ]*/metrics\) .*|\1|p' "$err" 2>/dev/null | head -1)
    [ -n "$url" ] && break
    sleep 0.05
  done
  [ -n "$url" ] || fail "$n" "$label"
  scrape_loop "$url" "$work/scrapes-$n" &
  scraper=$!
  # The run is over when the linger begins (bounded: the run's timeout).
  until grep -q "serving final figures" "$err"; do
    kill -0 "$ctl" 2>/dev/null || fail "$n" "$label"
    sleep 0.1
  done
  # One more scrape a second apart, of the final figures, then the burst.
  sleep 1.5
  kill "$scraper" 2>/dev/null || true
  wait "$scraper" 2>/dev/null || true
  scraper=""
  pid=$(descendant "$ctl" controller) || fail "$n" "$label"
  t0=$(cpu_ticks "$pid")
  for ((i = 0; i < BURST; i++)); do
    curl -sf --max-time 10 -o /dev/null "$url"
  done
  t1=$(cpu_ticks "$pid")
  echo "$((t1 - t0))" >>"$work/burst-$n"
  kill -INT "$pid"
  wait "$ctl" || fail "$n" "$label"
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; workload $DURATION; burst $BURST"
printf '%-6s %7s %9s %9s %8s %6s %12s %9s %9s %6s %11s\n' \
  agents scrapes p50_ms max_ms bytes series cpu_ms/scrape cpu_off_s cpu_on_s ratio core_share
for n in "${counts[@]}"; do
  cat >"$work/plan.yaml" <<PLAN
name: metrics-scrape-$n
target: mem://scrape
concurrency: 1
objects: {count: $((n * 4)), size: 1KiB}
control: {agent_timeout: 30s, controller_timeout: 60s}
stages:
  - {name: prepare, type: prepare}
  - {name: load, type: workload, mix: {get: 60, put: 30, stat: 10}, rate: $((n * 20)), arrivals: fixed, duration: $DURATION}
PLAN
  start_agents "$agent_bin" "$work" "$n"
  : >"$work/scrapes-$n"
  : >"$work/burst-$n"
  for label in off1 on1 on2 off2; do
    case $label in
      off*) run_plan "$n" "$label" || fail "$n" "$label" ;;
      on*) metrics_run "$n" "$label" ;;
    esac
  done
  stop_agents

  python3 - "$work" "$n" "$BURST" "$tick" <<'PY'
import statistics, sys
work, n, burst, tick = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [l.split() for l in open(f"{work}/scrapes-{n}") if l.strip()]
bursts = [int(l) / tick for l in open(f"{work}/burst-{n}") if l.strip()]
def cpu(label):
    user, sys_, _, _ = open(f"{work}/time-{n}-{label}").read().split()
    return float(user) + float(sys_)
if not rows:
    print(f"{n:<6} no scrape answered")
    sys.exit(1)
per_scrape = sum(bursts) / (burst * len(bursts))
off = (cpu("off1") + cpu("off2")) / 2
# The with-metrics runs without their bursts: the run with a scrape a second.
on = (cpu("on1") + cpu("on2") - sum(bursts)) / 2
secs = [float(r[0]) * 1e3 for r in rows]
size, series = max((int(r[1]), int(r[2])) for r in rows)
print(f"{n:<6} {len(rows):7d} {statistics.median(secs):9.2f} {max(secs):9.2f} "
      f"{size:8d} {series:6d} {per_scrape * 1e3:12.2f} {off:9.2f} {on:9.2f} {on / off:6.2f} "
      f"{per_scrape * 100:10.2f}%")
print("       controller CPU s by run: "
      + ", ".join(f"{l} {cpu(l):.2f}" for l in ["off1", "on1", "on2", "off2"])
      + "; bursts " + ", ".join(f"{b:.2f}" for b in bursts))
PY
done
