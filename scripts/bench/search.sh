#!/usr/bin/env bash
# search.sh: the capacity a `type: search` stage finds against a local Ceph
# RGW, against a manual sweep of fixed-rate stages over the same range in
# the same run, and what the search itself costs (issue 16, "Measured").
#
#   scripts/bench/search.sh                  # ~10 minutes after the build
#
# Steps: start RGW with scripts/servers/rgw.sh (stopped on exit), build the
# release binaries, write OBJECTS x 4 KiB objects once, then alternate, for
# ROUNDS rounds:
#   search  one `controller run` of a search stage: GET of the prepared
#           objects, open loop, rates doubling from FROM, bisected to 5%,
#           objective GET <PERCENTILE> <= LIMIT, no errors;
#   sweep   what a person would do by hand: fixed-rate stages (same
#           concurrency, warm-up and step length) on a coarse grid (x1.25)
#           from FROM to TO, stopping after two bad stages in a row, then a
#           fine grid (+2.5%) between the last good and the first bad
#           coarse rate; the capacity is the highest good rate below the
#           first bad one. "Good" is the search's own rule: GET within the
#           objective, no errors, and at least 90% of the asked rate done
#           (a store that cannot keep up is not at that rate).
#
# Why p90 by default: on this shared 2-core machine RGW stalls now and
# then for tens of ms, and a p99 over a few seconds is decided by whether a
# stall fell in the step (measured: p99 of 5 to 59 ms in consecutive
# fixed-rate stages between 800 and 950 ops/s), which no method can pin to
# 5%; the p90 rises with the load, as capacity does. PERCENTILE=p99 runs
# the same with a p99.
# Each is its own process under /usr/bin/time (client CPU: controller with
# its embedded agent). The search's overhead per step is its wall time
# beyond the steps' warm-up + measuring time (clocks measured, start lead,
# logs collected, results judged), and its CPU beyond what the sweep spent
# per op.
#
# Measured 2026-12-06 (release, 2 rounds alternated, defaults: p90 <= 10 ms,
# steps of 2 s warm-up + 8 s; RGW and the client on the same 2 cores):
#
#   round  search_best  sweep_best  ratio  steps  overhead_s/step  extra_cpu_ms/step
#       1         1312        1222  1.074      8             0.55              149
#       2         1094        1192  0.918      9             0.56              742
#
# The two agree within 7-8%, not the 5% the issue asks, and not for want
# of precision: the store's own verdicts near its knee flip from stage to
# stage. The fine sweep of round 1 judged 1222 good, 1252 bad (p90 10.9
# ms), 1284-1382 bad (12-126 ms), 1417 good (9.5 ms), 1452 bad; its
# capacity also moved by 16% between the rounds' searches (1312, 1094).
# Against a store with a stable knee (the suite's store of known capacity,
# controller/src/run/kinds/runs.rs) the search lands within its precision:
# 1938 of 2000 ops/s (3%) in one run; the test's bound is 10%. A
# search costs ~0.55 s of wall per step beyond its warm-up and measuring
# (clocks measured before each step, the start lead, logs collected) and
# 0.15-0.75 s of client CPU per step beyond what its ops cost (the spread
# is the per-op CPU of stages above capacity, which the sweep has fewer
# of); its ~8 steps took 78-92 s where the sweep's ~15 stages took 223 s.
#
# Settings (environment):
#   ROUNDS        search/sweep pairs, alternated        2
#   FROM, TO      the range of rates (ops/s)            250, 64000
#   STEP          each step's measuring time            8s
#   WARMUP        each step's warm-up                   2s
#   PERCENTILE    the objective's percentile           p90 (p50, p90, p99, p99.9)
#   LIMIT         its largest value                     10ms
#   CONCURRENCY   workers per agent                     64
#   OBJECTS       4 KiB objects to read                 2000
#   OUT           where runs and the table go           target/bench/search-<time>
#   SKIP_BUILD=1  use the release binaries as they are
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${ROUNDS:-2}
FROM=${FROM:-250}
TO=${TO:-64000}
STEP=${STEP:-8s}
WARMUP=${WARMUP:-2s}
PERCENTILE=${PERCENTILE:-p90}
LIMIT=${LIMIT:-10ms}
CONCURRENCY=${CONCURRENCY:-64}
OBJECTS=${OBJECTS:-2000}
OUT=${OUT:-$ROOT/target/bench/search-$(date +%Y%m%d-%H%M%S)}
. "$ROOT/scripts/bench/lib.sh"
TARGET=s3://chorus-bench/search

die() { echo "search: $*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed (scripts/install-bench-deps.sh)"
need_time
CONTROLLER=$(release_controller "$ROOT") || die "no release controller"
mkdir -p "$OUT"
start_rgw "$ROOT" "$OUT/rgw-start.log" || die "RGW did not start"
echo "results in $OUT"

head_yaml() {
  cat <<YAML
name: $1
target: $TARGET
concurrency: $CONCURRENCY
objects: {prefix: s4k/, count: $OBJECTS, size: 4KiB}
stages:
YAML
}

# run NAME PLANFILE: one controller run, timed; leaves $OUT/NAME/.
run() {
  local name=$1 plan=$2 res="$OUT/$1"
  mkdir -p "$res"
  if ! /usr/bin/time -f "%U %S %e" -o "$res/time" "$CONTROLLER" run "$plan" \
      --embedded 1 --results "$res/runs" --quiet >"$res/stdout" 2>"$res/stderr"; then
    cat "$res/stderr" >&2
    die "run $name failed"
  fi
}

{ head_yaml search-prepare; echo "  - {name: prepare, type: prepare, concurrency: 16}"; } >"$OUT/prepare.yaml"
echo "prepare: $OBJECTS x 4 KiB objects ..."
run prepare "$OUT/prepare.yaml"

{ head_yaml search-find
  cat <<YAML
  - name: find
    type: search
    warmup: $WARMUP
    arrivals: fixed
    mix: {get: 1}
    search: {vary: rate, from: $FROM, to: $TO, step: $STEP, objective: {op: GET, $PERCENTILE: $LIMIT, errors: 0%}}
YAML
} >"$OUT/search.yaml"

# Each sweep stage lasts what a search step does: warm-up + step.
STAGE_LENGTH=$(python3 -c "
def secs(t):
    return float(t[:-2]) / 1000 if t.endswith('ms') else float(t[:-1])
print(f'{secs(\"$WARMUP\") + secs(\"$STEP\")}s')")

# sweep_plan NAME RATE...: fixed-rate stages, one per rate.
sweep_plan() {
  local name=$1 r; shift
  head_yaml "$name"
  for r in "$@"; do
    echo "  - {name: rate-$r, type: workload, warmup: $WARMUP, duration: $STAGE_LENGTH, rate: $r, arrivals: fixed, mix: {get: 1}}"
  done
}

# judge DIR: "rate good" lines of a sweep run, by the search's rule.
judge() {
  python3 - "$1" "$PERCENTILE" "$LIMIT" <<'PY'
import glob, json, sys
d, q, limit = sys.argv[1], sys.argv[2], sys.argv[3]
key = {"p99.9": "p999"}.get(q, q)
limit_us = float(limit[:-2]) * 1e3 if limit.endswith("ms") else float(limit[:-1]) * 1e6
s = json.load(open(glob.glob(d + "/runs/*/summary.json")[0]))
for st in s["stages"]:
    rate = float(st["name"].split("-", 1)[1])
    get = next(r for r in st["ops"] if r["op"] == "GET")
    good = get["errors"] == 0 and get["latency_us"][key] <= limit_us and get["ops_per_s"] >= 0.9 * rate
    print(rate, int(good), get["ops_per_s"], get["latency_us"][key])
PY
}

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: search ..."
  run "search-$round" "$OUT/search.yaml"
  echo "round $round: sweep, coarse ..."
  coarse=$(python3 -c "
r, out = $FROM, []
while r <= $TO:
    out.append(round(r)); r *= 1.25
print(' '.join(map(str, out)))")
  # The coarse grid in runs of 6 stages, until two bad stages in a row:
  # the bracket is the last good rate before the first bad one, and it.
  lo=""; hi=""; bad_run=0; part=0; set -- $coarse
  while [ $# -gt 0 ] && [ "$bad_run" -lt 2 ]; do
    chunk=("${@:1:6}"); shift $(( $# < 6 ? $# : 6 ))
    part=$((part + 1))
    sweep_plan "sweep-coarse" "${chunk[@]}" >"$OUT/sweep-$round-c$part.yaml"
    run "sweep-$round-c$part" "$OUT/sweep-$round-c$part.yaml"
    while read -r rate good _ _; do
      [ "$bad_run" -lt 2 ] || break
      if [ "$good" = 1 ]; then
        [ -n "$hi" ] || lo=$rate
        bad_run=0
      else
        [ -n "$hi" ] || hi=$rate
        bad_run=$((bad_run + 1))
      fi
    done < <(judge "$OUT/sweep-$round-c$part")
  done
  if [ -z "$lo" ] || [ -z "$hi" ]; then
    echo "round $round: the coarse sweep found no bracket (last good '$lo', first bad '$hi')"
    continue
  fi
  fine=$(python3 -c "
lo, hi, out = $lo, $hi, []
r = lo * 1.025
while r < hi:
    out.append(round(r)); r *= 1.025
print(' '.join(map(str, out)))")
  echo "round $round: sweep, fine between $lo and $hi: $fine"
  best=$lo
  if [ -n "$fine" ]; then
    sweep_plan "sweep-fine" $fine >"$OUT/sweep-$round-fine.yaml"
    run "sweep-$round-fine" "$OUT/sweep-$round-fine.yaml"
    while read -r rate good _ _; do
      [ "$good" = 1 ] || break
      best=$rate
    done < <(judge "$OUT/sweep-$round-fine")
  fi
  echo "$best" >"$OUT/sweep-$round.best"
done

python3 - "$OUT" "$ROUNDS" "$STEP" "$WARMUP" <<'PY' | tee "$OUT/table.txt"
import glob, json, os, sys
from datetime import datetime

out, rounds, step, warmup = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def secs(t):
    return float(t[:-2]) / 1000 if t.endswith("ms") else float(t[:-1])
step_s = secs(step) + secs(warmup)

def cpu(d):
    u, s, wall = map(float, open(os.path.join(out, d, "time")).read().split()[-3:])
    return u + s, wall

def ops(d):
    return sum(json.load(open(p))["total_ops"] for p in glob.glob(f"{out}/{d}/runs/*/summary.json"))

def ts(t):
    return datetime.fromisoformat(t.replace("Z", "+00:00")[:26] + "+00:00").timestamp()

rows = []
for r in range(1, rounds + 1):
    d = f"search-{r}"
    run = json.load(open(glob.glob(f"{out}/{d}/runs/*/run.json")[0]))
    v = run["verdicts"][0]["search"]
    best = v["best"]["load"] if v["best"] else 0.0
    steps = [s for s in run["stages"] if s.get("step", 0) > 0]
    starts = [ts(s["start_at"]) for s in steps]
    # Steps cut short live (their objective broken beyond doubt) end early:
    # the overhead is measured on the steps that ran their whole length.
    gaps = [b - a - step_s for a, b, s in zip(starts, starts[1:], steps) if not s.get("ended_early")]
    search_cpu, search_wall = cpu(d)
    sweep_dirs = [os.path.basename(p) for p in glob.glob(f"{out}/sweep-{r}-*") if os.path.isdir(p)]
    sweep_cpu = sum(cpu(x)[0] for x in sweep_dirs)
    sweep_wall = sum(cpu(x)[1] for x in sweep_dirs)
    sweep_ops = sum(ops(x) for x in sweep_dirs)
    per_op = sweep_cpu / max(sweep_ops, 1)
    extra = (search_cpu - ops(d) * per_op) / max(len(steps), 1)
    try:
        sweep_best = float(open(f"{out}/sweep-{r}.best").read())
    except OSError:
        sweep_best = float("nan")
    rows.append((r, best, sweep_best, best / sweep_best if sweep_best else float("nan"),
                 len(steps), search_wall, sweep_wall, sum(gaps) / max(len(gaps), 1),
                 per_op * 1e6, extra * 1e3, v["stopped"]))
print("round  search_best  sweep_best  ratio  steps  search_wall_s  sweep_wall_s"
      "  overhead_s/step  cpu_us/op  extra_cpu_ms/step  stopped")
for r in rows:
    print(f"{r[0]:5d}  {r[1]:11.0f}  {r[2]:10.0f}  {r[3]:5.3f}  {r[4]:5d}  {r[5]:13.1f}"
          f"  {r[6]:12.1f}  {r[7]:15.2f}  {r[8]:9.1f}  {r[9]:17.1f}  {r[10]}")
print(f"\nGET of 4 KiB objects against RGW on this machine's {os.cpu_count()} cores "
      f"(client and server share them); each step {warmup} warm-up + {step} measured; "
      "ratio = search / sweep (goal: within 5%); overhead = wall per step beyond "
      "warm-up + measuring; extra_cpu = client CPU per step beyond the sweep's CPU per op.")
PY
