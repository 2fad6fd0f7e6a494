#!/usr/bin/env bash
# s3-small-objects.sh: small-object (4 KiB) PUT and GET against a local Ceph
# RGW through the s3:// backend, at several concurrencies, with the client's
# CPU per op, so we know when the client and not the server is the limit
# (issue 3, "Measured"). Chorus alone; scripts/bench/s3-peers.sh runs
# other S3 clients (boto3, awscrt, rclone) on the same RGW and objects, at
# 4 KiB, 1 MiB and 64 MiB, for the comparison (issue 20).
#
#   scripts/bench/s3-small-objects.sh        # ~2 minutes after the build
#
# Steps: start RGW with scripts/servers/rgw.sh (stopped on exit), build the
# release binaries, write 4000 x 4 KiB objects once (plans/s3-small-prepare),
# then for each concurrency run plans/s3-small-put and plans/s3-small-get,
# each as its own `controller run --embedded 1` process so that process's
# CPU time (user+sys, from /usr/bin/time) belongs to one op type only. The
# RGW, OSD and mon CPU over the same run is read from /proc, for comparison.
# Client and server share this machine's cores: read "client cores" and
# "server cores" (CPU seconds per wall second) with that in mind.
#
# CPU per op includes the controller's start-up and shutdown (tens of ms in
# total), which is noise against ~10 s of load.
#
# Settings (environment):
#   CONCURRENCIES  worker counts to measure        "1 4 16 64"
#   PHASE_SECONDS  length of each PUT/GET phase    10
#   OUT            where runs and the table go      target/bench/s3-small-<time>
#   SKIP_BUILD=1   use the release binaries as they are
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PLANS="$ROOT/scripts/bench/plans"
CONCURRENCIES=${CONCURRENCIES:-"1 4 16 64"}
PHASE_SECONDS=${PHASE_SECONDS:-10}
OUT=${OUT:-$ROOT/target/bench/s3-small-$(date +%Y%m%d-%H%M%S)}
. "$ROOT/scripts/bench/lib.sh"
# The bucket and prefix every phase works in (the plans' key space is
# s4k/ below it).
TARGET=s3://chorus-bench/small
# Workers for the one-off prepare: enough to write the objects quickly.
PREPARE_CONCURRENCY=16

die() { echo "s3-small-objects: $*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed to read summary.json (scripts/install-bench-deps.sh)"
need_time
CONTROLLER=$(release_controller "$ROOT") || die "no release controller"
mkdir -p "$OUT"
start_rgw "$ROOT" "$OUT/rgw-start.log" || die "RGW did not start"
echo "results in $OUT"

TICKS=$(getconf CLK_TCK)

# run NAME PLAN CONCURRENCY: one controller run; prints nothing, leaves
# $OUT/NAME/{summary path,time,server}.
run() {
  local name=$1 plan=$2 conc=$3 res="$OUT/$1"
  mkdir -p "$res"
  local before after
  before=$(rgw_server_ticks)
  if ! /usr/bin/time -f "%U %S %e" -o "$res/time" "$CONTROLLER" run "$PLANS/$plan" \
      --embedded 1 --concurrency "$conc" --target "$TARGET" \
      --duration "${PHASE_SECONDS}s" --results "$res/runs" --quiet \
      >"$res/stdout" 2>"$res/stderr"; then
    cat "$res/stderr" >&2
    die "run $name ($plan) failed"
  fi
  after=$(rgw_server_ticks)
  echo "$(( after - before )) $TICKS" >"$res/server"
}

echo "prepare: 4000 x 4 KiB objects ..."
run prepare s3-small-prepare.yaml "$PREPARE_CONCURRENCY"

for c in $CONCURRENCIES; do
  for op in put get; do
    echo "$op, concurrency $c, ${PHASE_SECONDS}s ..."
    run "$op-c$c" "s3-small-$op.yaml" "$c"
  done
done

python3 - "$OUT" "$PHASE_SECONDS" $CONCURRENCIES <<'PY' | tee "$OUT/table.txt"
import glob, json, os, sys

out, secs, concs = sys.argv[1], sys.argv[2], sys.argv[3:]
hdr = ("op", "conc", "ops/s", "p50_us", "p99_us", "errors",
       "client_cpu_us/op", "client_cores", "server_cpu_us/op", "server_cores")
rows = []
for op in ("put", "get"):
    for c in concs:
        d = os.path.join(out, f"{op}-c{c}")
        summary = json.load(open(glob.glob(os.path.join(d, "runs", "*", "summary.json"))[0]))
        st = summary["stages"][-1]
        row = next(r for r in st["ops"] if r["op"].lower() == op)
        user, sys_, wall = map(float, open(os.path.join(d, "time")).read().split()[-3:])
        ticks, hz = map(int, open(os.path.join(d, "server")).read().split())
        total_ops = max(summary["total_ops"], 1)
        cpu = user + sys_
        server = ticks / hz
        rows.append((op, c, f"{row['ops_per_s']:.0f}", f"{row['latency_us']['p50']:.0f}",
                     f"{row['latency_us']['p99']:.0f}", str(summary["total_errors"]),
                     f"{cpu / total_ops * 1e6:.1f}", f"{cpu / wall:.2f}",
                     f"{server / total_ops * 1e6:.1f}", f"{server / wall:.2f}"))
w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(hdr)]
print("  ".join(h.rjust(w[i]) for i, h in enumerate(hdr)))
for r in rows:
    print("  ".join(v.rjust(w[i]) for i, v in enumerate(r)))
print(f"\n4 KiB objects, 4000 keys, {secs} s per phase, 1 embedded agent;"
      " cpu_us/op = CPU microseconds per op (user+sys);"
      " cores = CPU seconds per wall second; client = the controller process,"
      " server = RGW + OSD + mon; both on this machine's "
      f"{os.cpu_count()} cores.")
PY
