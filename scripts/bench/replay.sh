#!/usr/bin/env bash
# Replay: how closely a replay keeps to its trace's schedule, against the
# open-loop engine at the same rate in the same run, and how much memory a
# replay takes as the trace grows.
#
#   scripts/bench/replay.sh
#
# 1. Schedule accuracy. For each RATE (default 10000 and 50000 ops/s):
#    `controller gen-oplog` writes a sorted trace of SECS seconds (its
#    simulated workers each do ~850 ops/s; 8 client ids, so both embedded
#    agents get a share), then `controller run` replays it on `mem://`
#    (the store always keeps up, so what is measured is the engine's
#    timing) with 2 embedded agents, concurrency 64 each; the reference is
#    a workload stage of the same rate and mix, open loop, in the same
#    run. Printed: the replay's start lag p50/p99 (the highest of the
#    agents', from run.json) and the open-loop stage's.
# 2. Memory. Traces of 1M and 10M ops (their PUTs turned into STATs, so
#    the `mem://` store holds nothing and only the replay's own memory
#    counts): the controller checks the whole trace, both embedded agents
#    replay all of it at `speed: 1000` (as fast as they can) and the
#    controller reads it again for the verdict. Peak RSS (/usr/bin/time)
#    of the whole run, its wall time, the trace's size. Flat memory: the
#    10M row close to the 1M row.
#
# Knobs: RATES, SECS (10), WORK (/tmp/chorus-bench-replay),
# SKIP_BUILD=1 to use the release binaries as they are.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
. scripts/bench/lib.sh
need_time
BIN=$(release_controller "$ROOT")
RATES=${RATES:-10000 50000}
SECS=${SECS:-10}
WORK=${WORK:-/tmp/chorus-bench-replay}
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

# lag RUN STAGE FIELD: the highest of the agents' FIELD of STAGE's schedule.
lag() {
  python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1] + "/run.json"))
v = [a["schedule"][sys.argv[3]] for s in meta["stages"] if s["name"] == sys.argv[2]
     for a in s["agents"] if a.get("schedule")]
print(f"{max(v):.3f}" if v else "-")
EOF
}

echo "== schedule accuracy (mem://, 2 agents) =="
printf '%-8s %-10s %12s %12s %12s %12s\n' "rate" "trace_ops" "replay_p50" "replay_p99" "open_p50" "open_p99"
for rate in $RATES; do
  workers=$(( (rate + 849) / 850 ))
  records=$(( rate * SECS ))
  trace=$WORK/trace-$rate.tsv.zst
  "$BIN" gen-oplog --output "$trace" --records "$records" --workers "$workers" --agents 8 --sorted
  cat >"$WORK/acc-$rate.yaml" <<EOF
name: replay-accuracy
target: mem://replay-bench
objects: {prefix: bench/, count: 100000, size: 16KiB}
stages:
  - name: replay
    type: replay
    concurrency: 64
    replay: {trace: $trace}
  - name: open
    type: workload
    concurrency: 64
    rate: $rate
    arrivals: fixed
    duration: ${SECS}s
    mix: {get: 60, put: 25, stat: 10, list: 5}
EOF
  "$BIN" run "$WORK/acc-$rate.yaml" --results "$WORK/runs-$rate" --quiet >/dev/null
  run=$(ls -d "$WORK/runs-$rate"/*)
  printf '%-8s %-10s %12s %12s %12s %12s\n' "$rate" "$records" \
    "$(lag "$run" replay/replay p50_lag_ms)" "$(lag "$run" replay/replay p99_lag_ms)" \
    "$(lag "$run" open p50_lag_ms)" "$(lag "$run" open p99_lag_ms)"
done
echo "(lag in ms: how late ops started against their schedule)"

echo
echo "== memory against trace length (2 embedded agents) =="
printf '%-10s %12s %14s %14s\n' "trace_ops" "trace_MiB" "peak_RSS_MiB" "wall_s"
for records in 1000000 10000000; do
  trace=$WORK/mem-$records.tsv.zst
  "$BIN" gen-oplog --output "$WORK/gen.tsv.zst" --records "$records" --workers 32 --agents 8 --sorted
  zstd -dc "$WORK/gen.tsv.zst" | sed 's/\tPUT\t/\tSTAT\t/' | zstd -q -1 -o "$trace"
  rm -f "$WORK/gen.tsv.zst"
  cat >"$WORK/mem-$records.yaml" <<EOF
name: replay-memory
target: mem://replay-mem
stages:
  - name: replay
    type: replay
    concurrency: 64
    replay: {trace: $trace, speed: 1000, prepare: false}
EOF
  /usr/bin/time -f '%M %e' -o "$WORK/time-$records" \
    "$BIN" run "$WORK/mem-$records.yaml" --results "$WORK/runs-mem-$records" --quiet >/dev/null
  read -r rss wall <"$WORK/time-$records"
  printf '%-10s %12.1f %14.1f %14s\n' "$records" \
    "$(echo "$(stat -c %s "$trace") / 1048576" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$wall"
done
