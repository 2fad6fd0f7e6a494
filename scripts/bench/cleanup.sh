#!/usr/bin/env bash
# cleanup.sh: how fast Chorus's cleanup stage deletes a prefix of small
# objects on a local Ceph RGW, against `aws s3 rm --recursive` and boto3's
# list + delete_objects, each on the same count of objects written anew,
# in the same run, with the prefix checked empty after each delete.
#
#   scripts/bench/cleanup.sh                      # ~25 minutes after the build
#   CLEANUP_OBJECTS=2000 scripts/bench/cleanup.sh # ~1 minute
#
# Steps: start RGW with scripts/servers/rgw.sh (stopped on exit), build the
# release binaries, warm RGW up (an unmeasured write and delete of up to
# 10000 objects), then for each tool, in turn: write CLEANUP_OBJECTS
# objects of CLEANUP_SIZE bytes under one prefix with Chorus's prepare
# stage (unmeasured), delete them all with the tool (measured), and list
# the prefix with boto3, which must find nothing. Tools:
#   chorus     `controller run --embedded 1` of a plan whose prepare writes
#              the objects and whose cleanup removes them, default batch
#              (1000 keys per DeleteObjects); the time is the cleanup
#              stage's elapsed_s and the rate its DELETE_BATCH objects/s
#              from the run's summary (the stage lists the prefix, then
#              deletes: list + delete)
#   chorus_b1  the same with `batch: 1` on the cleanup: one DeleteObject a key
#   aws        `aws s3 rm --recursive s3://BUCKET/PREFIX` (AWS CLI v1 from
#              PyPI, pinned, in a venv of its own), s3.max_concurrent_requests
#              = CLEANUP_CONCURRENCY; it lists and sends one DeleteObject a
#              key. The whole process is timed (start-up included, ~0.5 s)
#   boto3      the list_objects_v2 paginator and one delete_objects of each
#              page (1000 keys), in sequence (scripts/boto3.sh); list +
#              delete timed together, client creation excluded
#   boto3_pool the same, each page's delete_objects handed to a
#              ThreadPoolExecutor of CLEANUP_CONCURRENCY threads while the
#              listing goes on (s3dlio's list + delete pipeline)
# Every tool keeps CLEANUP_CONCURRENCY requests in flight at most (boto3:
# one). Fairness: RGW is warmed up first; each round runs the tools in
# CLEANUP_TOOLS's order rotated by the round number, so with REPEAT > 1 no
# tool always runs first or after the same neighbour; each tool deletes
# objects written just before it, by the same writer, at the same keys.
# The table takes each tool's median over the rounds.
#
# Measured once (2026-12-06, this 2-core machine, load average ~5 from
# other work; RGW and the clients share the cores), 100000 x 1 KiB,
# concurrency 32 (seconds, objects/s; docs/backends.md has the table):
#   chorus (batch 1000) 74.10 s 1349/s, + list 76.38 s 1309/s
#   boto3 delete_objects in sequence 77.25 s 1294/s, x32 76.35 s 1310/s
#   aws s3 rm 314.44 s 318/s; chorus (batch 1) 99.97 s 1000/s
# RGW is the limit for batched deletes: one DeleteObjects at a time goes
# as fast as 32.
#
# Settings (environment):
#   CLEANUP_OBJECTS      objects written and deleted per tool     100000
#   CLEANUP_SIZE         bytes per object                         1024
#   CLEANUP_CONCURRENCY  requests in flight (Chorus's workers,    32
#                        aws's max_concurrent_requests, the pool)
#   CLEANUP_TOOLS        which tools, in this order               "chorus boto3 aws boto3_pool chorus_b1"
#   REPEAT               rounds                                   1
#   OUT                  where runs and the table go              target/bench/cleanup-<time>
#   SKIP_BUILD=1         use the release binaries as they are
#   CHORUS_AWSCLI_VENV   the AWS CLI's venv                       ~/.cache/chorus/awscli-venv
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLEANUP_OBJECTS=${CLEANUP_OBJECTS:-100000}
CLEANUP_SIZE=${CLEANUP_SIZE:-1024}
CLEANUP_CONCURRENCY=${CLEANUP_CONCURRENCY:-32}
CLEANUP_TOOLS=${CLEANUP_TOOLS:-"chorus boto3 aws boto3_pool chorus_b1"}
REPEAT=${REPEAT:-1}
OUT=${OUT:-$ROOT/target/bench/cleanup-$(date +%Y%m%d-%H%M%S)}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/chorus
AWSCLI_VENV=${CHORUS_AWSCLI_VENV:-$CACHE/awscli-venv}
AWSCLI_VERSION=1.45.11
BUCKET=chorus-cleanup
PREFIX=del/
# Writers of the (unmeasured) prepare.
PREPARE_CONCURRENCY=32
# shellcheck source=scripts/bench/lib.sh
. "$ROOT/scripts/bench/lib.sh"
# shellcheck source=scripts/venv-lib.sh
. "$ROOT/scripts/venv-lib.sh"

die() { echo "cleanup: $*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed (scripts/install-bench-deps.sh)"
for t in $CLEANUP_TOOLS; do
  case "$t" in chorus | chorus_b1 | aws | boto3 | boto3_pool) ;; *) die "unknown tool $t" ;; esac
done
case " $CLEANUP_TOOLS " in *" aws "*) venv_ensure "$AWSCLI_VENV" awscli "$AWSCLI_VERSION" cleanup ;; esac
CONTROLLER=$(release_controller "$ROOT") || die "no release controller"
mkdir -p "$OUT"
start_rgw "$ROOT" "$OUT/rgw-start.log" || die "RGW did not start"
echo "results in $OUT"
# boto3's venv is made now, not inside the first timed delete.
echo 'import boto3' | "$ROOT/scripts/boto3.sh"
# The AWS CLI's settings: its own config file, nothing from the user's.
cat >"$OUT/aws-config" <<EOF
[default]
s3 =
  max_concurrent_requests = $CLEANUP_CONCURRENCY
EOF

# plan FILE COUNT CLEANUP: a plan writing COUNT objects under the prefix,
# then running CLEANUP (a stage, or nothing).
plan() {
  {
    cat <<EOF
name: cleanup-bench
target: s3://$BUCKET
concurrency: $PREPARE_CONCURRENCY
objects: {prefix: $PREFIX, count: $2, size: $CLEANUP_SIZE}
stages:
  - {name: prepare, type: prepare}
EOF
    [ -z "$3" ] || echo "  - $3"
  } >"$1"
}

# chorus_run DIR: runs DIR/plan.yaml, its results under DIR/runs.
chorus_run() {
  "$CONTROLLER" run "$1/plan.yaml" --embedded 1 --results "$1/runs" --quiet \
    >"$1/stdout" 2>"$1/stderr" || { cat "$1/stderr" >&2; die "controller run of $1/plan.yaml failed"; }
}

# write DIR COUNT: writes COUNT objects (Chorus's prepare), unmeasured.
write() {
  mkdir -p "$1"
  plan "$1/plan.yaml" "$2" ""
  chorus_run "$1"
}

# count: how many objects boto3 lists under the prefix.
count() {
  "$ROOT/scripts/boto3.sh" "$BUCKET" "$PREFIX" <<'PY'
import sys
import boto3
s3 = boto3.client("s3")
pages = s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1], Prefix=sys.argv[2])
print(sum(len(p.get("Contents", [])) for p in pages))
PY
}

# chorus BATCH DIR: prepare + cleanup in one run; prints "objects seconds
# list_seconds" of the cleanup stage: its objects and elapsed_s from the
# run's summary (first op's start to last op's end: the listing the stage
# makes of the prefix before its first op is not in it), and, from
# run.json, the time from the agent's receipt of the stage to its end,
# which holds that listing (and, were the listing shorter than the
# controller's ~0.5 s start lead, the wait for the start).
chorus() {
  local batch=$1 dir=$2 extra=""
  [ "$batch" = default ] || extra=", batch: $batch"
  mkdir -p "$dir"
  plan "$dir/plan.yaml" "$CLEANUP_OBJECTS" \
    "{name: cleanup, type: cleanup, concurrency: $CLEANUP_CONCURRENCY$extra}"
  chorus_run "$dir"
  python3 - "$dir" <<'PY'
import glob, json, os, sys
runs = glob.glob(os.path.join(sys.argv[1], "runs", "*", "summary.json"))
st = next(s for s in json.load(open(runs[0]))["stages"] if s["kind"] == "cleanup")
# DELETE_BATCH rows count objects; a DELETE (batch: 1) is one object.
rows = {r["op"]: r for r in st["ops"]}
objects = rows.get("DELETE_BATCH", {}).get("objects", 0)
d = rows.get("DELETE")
if d:
    objects += d["count"] - d["errors"]
errors = sum(r["errors"] for r in st["ops"] if r["op"] != "ALL")
if errors:
    sys.exit(f"chorus cleanup: {errors} failed ops")
run = json.load(open(os.path.join(os.path.dirname(runs[0]), "run.json")))
agent = next(s for s in run["stages"] if s["kind"] == "cleanup")["agents"][0]

def ns(t):  # RFC 3339 with up to 9 fraction digits, UTC: seconds
    from datetime import datetime
    whole, _, frac = t.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float("0." + (frac or "0"))

print(objects, f"{st['elapsed_s']:.3f}", f"{ns(agent['ended']) - ns(agent['received']):.3f}")
PY
}

# boto3_delete POOL: list + delete_objects of each page, POOL threads
# (0: in sequence); prints "objects seconds".
boto3_delete() {
  "$ROOT/scripts/boto3.sh" "$BUCKET" "$PREFIX" "$1" <<'PY'
import sys, time
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
bucket, prefix, pool = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = boto3.client("s3", config=Config(max_pool_connections=max(pool, 10)))

def delete(keys):
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    if r.get("Errors"):
        sys.exit(f"delete_objects: {len(r['Errors'])} errors, first {r['Errors'][0]}")
    return len(keys)

pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
t = time.monotonic()
n = 0
if pool:
    with ThreadPoolExecutor(pool) as ex:
        futures = [ex.submit(delete, [{"Key": o["Key"]} for o in p["Contents"]])
                   for p in pages if p.get("Contents")]
        n = sum(f.result() for f in futures)
else:
    for p in pages:
        if p.get("Contents"):
            n += delete([{"Key": o["Key"]} for o in p["Contents"]])
print(n, f"{time.monotonic() - t:.3f}")
PY
}

# aws_rm: `aws s3 rm --recursive`, whole process; prints "objects seconds".
aws_rm() {
  local t0 t1 n
  t0=$(date +%s.%N)
  AWS_CONFIG_FILE="$OUT/aws-config" "$AWSCLI_VENV/bin/aws" s3 rm --recursive --only-show-errors \
    "s3://$BUCKET/$PREFIX" >"$OUT/aws.out" 2>&1 || { cat "$OUT/aws.out" >&2; die "aws s3 rm failed"; }
  t1=$(date +%s.%N)
  # It prints nothing on success: the count is what was written.
  n=$CLEANUP_OBJECTS
  python3 -c "import sys; print(sys.argv[1], f'{float(sys.argv[3]) - float(sys.argv[2]):.3f}')" "$n" "$t0" "$t1"
}

# measure_tool TOOL ROUND: writes the objects (chorus: in its own run),
# deletes them with TOOL, checks the prefix is empty; appends a sample.
measure_tool() {
  local tool=$1 round=$2 dir="$OUT/$1-r$2" s left n secs listed=""
  if [ "$tool" != chorus ] && [ "$tool" != chorus_b1 ]; then
    write "$dir/write" "$CLEANUP_OBJECTS"
    left=$(count)
    [ "$left" = "$CLEANUP_OBJECTS" ] || die "$tool: $left objects written, not $CLEANUP_OBJECTS"
  fi
  case "$tool" in
    chorus | chorus_b1)
      local batch=default
      [ "$tool" = chorus_b1 ] && batch=1
      read -r n secs listed < <(chorus "$batch" "$dir")
      s="$n $secs"
      ;;
    aws) s=$(aws_rm) ;;
    boto3) s=$(boto3_delete 0) ;;
    boto3_pool) s=$(boto3_delete "$CLEANUP_CONCURRENCY") ;;
  esac
  left=$(count)
  [ "$left" = 0 ] || die "$tool left $left objects under $PREFIX"
  echo "$tool $round $s" | tee -a "$OUT/samples"
  # The same delete, its listing of the prefix included.
  [ -z "${listed:-}" ] || echo "$tool+list $round $n $listed" | tee -a "$OUT/samples"
}

# Warm-up: RGW's first writes and deletes of the bucket, unmeasured.
warm=$(( CLEANUP_OBJECTS < 10000 ? CLEANUP_OBJECTS : 10000 ))
echo "warm-up: $warm objects written and deleted (unmeasured) ..."
mkdir -p "$OUT/warmup"
plan "$OUT/warmup/plan.yaml" "$warm" "{name: cleanup, type: cleanup}"
chorus_run "$OUT/warmup"
[ "$(count)" = 0 ] || die "warm-up left objects under $PREFIX"

read -r -a tools <<<"$CLEANUP_TOOLS"
: >"$OUT/samples"
for ((round = 1; round <= REPEAT; round++)); do
  n=${#tools[@]}
  for ((i = 0; i < n; i++)); do
    tool=${tools[$(((i + round - 1) % n))]}
    echo "round $round: $CLEANUP_OBJECTS objects, $tool ..."
    measure_tool "$tool" "$round"
  done
done

python3 - "$OUT/samples" "$CLEANUP_OBJECTS" "$CLEANUP_SIZE" "$CLEANUP_CONCURRENCY" "$REPEAT" \
  "$AWSCLI_VERSION" <<'PY' | tee "$OUT/table.txt"
import statistics, sys
from collections import defaultdict

samples, count, size, conc, repeat, awscli = sys.argv[1:7]
count = int(count)
runs = defaultdict(list)
order = []
for line in open(samples):
    tool, _, n, secs = line.split()
    if int(n) != count:
        sys.exit(f"{tool} deleted {n} objects, not {count}")
    runs[tool].append(float(secs))
    if tool not in order:
        order.append(tool)
label = {
    "chorus": "chorus (batch 1000)",
    "chorus+list": "chorus (batch 1000) + list",
    "chorus_b1": "chorus (batch 1)",
    "chorus_b1+list": "chorus (batch 1) + list",
    "aws": f"aws s3 rm (v{awscli})",
    "boto3": "boto3 delete_objects",
    "boto3_pool": f"boto3 delete_objects x{conc}",
}
rate = {t: count / statistics.median(v) for t, v in runs.items()}
print(f"{'tool':30} {'objects':>8} {'seconds':>8} {'objects/s':>10} {'vs chorus':>10} {'vs chorus+list':>15}")
for tool in order:
    secs = statistics.median(runs[tool])
    vs = [f"{rate[tool] / rate[c]:.2f}" if c in rate else "-" for c in ("chorus", "chorus+list")]
    print(f"{label[tool]:30} {count:8} {secs:8.2f} {rate[tool]:10.0f} {vs[0]:>10} {vs[1]:>15}")
print(f"\n{count} objects of {size} bytes under one prefix of a local RGW (memstore),"
      f" written anew before each delete; concurrency {conc}; median of {repeat}."
      " chorus = the cleanup stage's own time (first op to last; its listing of the"
      " prefix comes before), + list = from the agent's receipt of the stage to its"
      " end (listing included); boto3 = list + delete; aws = the whole process."
      " vs = the tool's objects/s over that Chorus row's (below 1: Chorus is faster)."
      " Every delete was checked by a boto3 listing of the prefix finding nothing.")
PY
