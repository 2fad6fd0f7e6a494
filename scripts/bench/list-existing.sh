#!/usr/bin/env bash
# list-existing.sh: how fast Chorus lists a prefix of objects it did not
# write (`objects: {existing: true}`, issue 17), against boto3's
# list_objects_v2 paginator and `aws s3 ls --recursive` (when present) on
# the same prefix of a local Ceph RGW, in the same run.
#
#   scripts/bench/list-existing.sh      # ~5 minutes after the build
#
# Steps: start RGW with scripts/servers/rgw.sh (stopped on exit), build the
# release binaries, write COUNT 1-byte objects twice with Chorus's own
# prepare stage (the fastest creator at hand; the listing does not care
# who wrote them): once spread over 16 sub-prefixes (`fan/NN/...`), once
# flat (`flat/...`). Then, REPEATS times for each prefix, in turn:
#   chorus  `controller run --embedded 1` of a one-stat stage on the
#           existing prefix; the time is the agent's own "listed ... in
#           X s" (the listing only, not the process start)
#   boto3   the list_objects_v2 paginator (scripts/boto3.sh), timed in
#           Python around the pages (client creation excluded)
#   aws     `aws s3 ls --recursive`, whole process (start-up included)
# and reports the median of each in objects/s and Chorus's ratio to each.
# Chorus lists a prefix with sub-prefixes in parallel (16 at a time here)
# and a flat one as a single sequence of pages, as boto3 does.
#
# Measured once (2026-12-06, this 2-core machine, other builds running;
# RGW, client and Python share the cores), 100000 objects, median of 3:
#   prefix  tool    seconds  objects/s  tool/Chorus
#   fan/    chorus     1.02      98039         1.00
#   fan/    boto3     10.22       9788        10.02
#   fan/    aws       13.44       7438        13.18
#   flat/   chorus     1.39      71942         1.00
#   flat/   boto3      9.62      10395         6.92
#   flat/   aws       13.24       7553         9.52
# boto3's pages are the same 1000-key requests; most of its time is
# parsing each page's XML in Python. Listing 16 sub-prefixes at once gains
# ~27% over one sequence here: RGW on the same 2 cores is the limit.
# The index took 2.0 MB (flat, 8-byte suffixes) and 2.3 MB (fan/, 11-byte
# suffixes): 12 bytes + suffix + 1 bit per object, as docs/plan.md states.
#
# Settings (environment):
#   COUNT       objects per prefix                 100000
#   REPEATS     listings per tool and prefix       3
#   OUT         where runs and the table go        target/bench/list-existing-<time>
#   SKIP_BUILD=1  use the release binaries as they are
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
COUNT=${COUNT:-100000}
REPEATS=${REPEATS:-3}
OUT=${OUT:-$ROOT/target/bench/list-existing-$(date +%Y%m%d-%H%M%S)}
. "$ROOT/scripts/bench/lib.sh"
BUCKET=chorus-list
PREFIXES="fan/ flat/"

die() { echo "list-existing: $*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed (scripts/install-bench-deps.sh)"
CONTROLLER=$(release_controller "$ROOT") || die "no release controller"
mkdir -p "$OUT"
start_rgw "$ROOT" "$OUT/rgw-start.log" || die "RGW did not start"
echo "results in $OUT"
# boto3's venv is made now, not inside the first timed listing.
echo 'import boto3' | "$ROOT/scripts/boto3.sh"

# plan NAME TEXT: writes plan NAME.yaml under $OUT.
plan() { printf '%s\n' "$2" >"$OUT/$1.yaml"; }

for p in $PREFIXES; do
  naming=""
  [ "$p" = fan/ ] && naming=", naming: {fanout: 16}"
  plan "prepare-${p%/}" "name: prepare-${p%/}
target: s3://$BUCKET
concurrency: 32
objects: {prefix: $p, count: $COUNT, size: 1$naming}
stages:
  - {name: prepare, type: prepare}"
  echo "writing $COUNT objects under $p ..."
  t0=$(date +%s.%N)
  "$CONTROLLER" run "$OUT/prepare-${p%/}.yaml" --embedded 1 --results "$OUT/runs" --quiet \
    >"$OUT/prepare-${p%/}.out" 2>&1 || { cat "$OUT/prepare-${p%/}.out" >&2; die "prepare of $p failed"; }
  echo "  in $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)") s"
  plan "list-${p%/}" "name: list-${p%/}
target: s3://$BUCKET
concurrency: 16
objects: {existing: true, prefix: $p}
stages:
  - {name: list, type: workload, mix: {stat: 1}, ops: 1}"
done

# chorus PREFIX: prints "objects seconds" from the agent's listing line.
chorus() {
  local log="$OUT/chorus-${1%/}.log"
  RUST_LOG="warn,chorus_common::workload::existing=info" "$CONTROLLER" run \
    "$OUT/list-${1%/}.yaml" --embedded 1 --results "$OUT/runs" --quiet >"$log" 2>&1 ||
    { cat "$log" >&2; die "chorus listing of $1 failed"; }
  # "listed prefix `P` of STORE: N objects (S sub-prefixes) in P pages in T s; ..."
  sed -n 's/.*listed prefix .* of [^ ]*: \([0-9]*\) objects ([0-9]* sub-prefixes) in [0-9]* pages in \([0-9.]*\) s;.*/\1 \2/p' "$log" | head -1
}

# boto3 PREFIX: prints "objects seconds" of one paginated listing.
boto3_list() {
  "$ROOT/scripts/boto3.sh" "$BUCKET" "$1" <<'PY'
import sys, time
import boto3
s3 = boto3.client("s3")
pages = s3.get_paginator("list_objects_v2")
t = time.monotonic()
n = sum(len(p.get("Contents", [])) for p in pages.paginate(Bucket=sys.argv[1], Prefix=sys.argv[2]))
print(n, f"{time.monotonic() - t:.3f}")
PY
}

# aws PREFIX: prints "objects seconds" of `aws s3 ls --recursive`.
aws_list() {
  local t0 n
  t0=$(date +%s.%N)
  n=$(aws s3 ls --recursive "s3://$BUCKET/$1" | wc -l)
  python3 -c "import sys; print(sys.argv[1], f'{float(sys.argv[3]) - float(sys.argv[2]):.3f}')" \
    "$n" "$t0" "$(date +%s.%N)"
}

TOOLS="chorus boto3_list"
command -v aws >/dev/null && TOOLS="$TOOLS aws_list"
: >"$OUT/samples"
for r in $(seq "$REPEATS"); do
  for p in $PREFIXES; do
    for tool in $TOOLS; do
      s=$($tool "$p")
      [ -n "$s" ] || die "$tool gave no result for $p"
      echo "$p ${tool%_list} $s" | tee -a "$OUT/samples"
    done
  done
done

python3 - "$OUT/samples" "$COUNT" "$REPEATS" <<'PY' | tee "$OUT/table.txt"
import statistics, sys
from collections import defaultdict

samples, count, repeats = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = defaultdict(list)
for line in open(samples):
    prefix, tool, n, secs = line.split()
    if int(n) != count:
        sys.exit(f"{tool} listed {n} objects under {prefix}, not {count}")
    runs[prefix, tool].append(float(secs))
print(f"{'prefix':8} {'tool':7} {'median_s':>9} {'objects/s':>10} {'chorus_x':>9}")
for prefix in ("fan/", "flat/"):
    chorus = statistics.median(runs[prefix, "chorus"])
    for tool in ("chorus", "boto3", "aws"):
        if (prefix, tool) not in runs:
            continue
        secs = statistics.median(runs[prefix, tool])
        print(f"{prefix:8} {tool:7} {secs:9.2f} {count / secs:10.0f} {secs / chorus:9.2f}")
print(f"\n{count} objects per prefix on one local RGW; median of {repeats};"
      " fan/ = 16 sub-prefixes (Chorus lists them 16 at a time), flat/ = none;"
      " chorus_x = the tool's time over Chorus's (above 1: Chorus is faster);"
      " chorus = the agent's listing alone, boto3 = the paginator's pages alone,"
      " aws = the whole `aws s3 ls` process.")
PY
