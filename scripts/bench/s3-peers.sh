#!/usr/bin/env bash
# s3-peers.sh: Chorus against other S3 clients on the same Ceph RGW, the
# same bucket and objects, in the same run (issue 20): GET and PUT of
# 4 KiB, 1 MiB and 64 MiB objects at several concurrencies, with ops/s,
# MiB/s, the client's CPU per op and the RGW cluster's CPU per op.
#
#   scripts/bench/s3-peers.sh                 # all sizes, ~40 min after the build
#   PHASE_SECONDS=5 scripts/bench/s3-peers.sh # ~25 min (docs/backends.md's table)
#   SHORT=1 scripts/bench/s3-peers.sh         # 4 KiB, concurrency 1 and 16, ~2 min
#   SIZES=4k CLIENTS="chorus awscrt" REPEAT=5 scripts/bench/s3-peers.sh
#
# Clients (each issues one HTTP request per object op; none lists or HEADs
# inside the timed window except as noted):
#   chorus  `controller run --embedded 1` of a generated plan (aws-sdk-s3),
#           as scripts/bench/s3-small-objects.sh runs it. Its workload stage
#           lists the prefix once at its start (one LIST per 1000 keys).
#   boto3   scripts/bench/s3_peer.py: one client, a ThreadPoolExecutor of
#           CONCURRENCY threads, max_pool_connections >= CONCURRENCY,
#           checksums when required (as Chorus).
#   awscrt  scripts/bench/s3_peer.py: awscrt.s3.S3Client, CONCURRENCY typed
#           GetObject/PutObject meta requests in flight; part size and
#           multipart threshold above the object size, so no ranged split
#           and no multipart upload.
#   rclone  the Debian package: `rclone copy` of the whole key set with
#           --transfers/--checkers CONCURRENCY, --no-check-dest,
#           --s3-no-head(-object), --s3-disable-checksum, --ignore-checksum
#           (no HEAD, no MD5 computed or checked: one GET or PUT a file),
#           GET into a tmpfs folder, PUT from tmpfs hard links of one file.
#           Passes repeat (new processes) until PHASE_SECONDS; each pass
#           lists the source once (one LIST per 1000 keys) and its start
#           (~0.08 s of CPU) counts.
# Every client picks keys at random (rclone: all of them, in its order);
# PUT overwrites the prepared keys. Rounds (REPEAT) interleave the clients,
# in a rotated order each round, and the table takes each client's median;
# ratios are of medians measured in the same run.
#
# CPU: the client's user+sys seconds per op. Chorus and rclone: the whole
# process (/usr/bin/time), start-up included (tens of ms: against Chorus
# and rclone, not for them). boto3 and awscrt: getrusage over the timed
# window only (importing boto3 and making its client take ~0.3 s of CPU,
# awscrt's import ~0.08 s, which would otherwise swamp short phases). Server: CPU ticks of the RGW, OSD and mon processes
# (/proc/PID/stat) over the client's whole process. Client and server share
# this machine's cores.
#
# Sizes: 4k = 4000 objects, 1m = 400, 64m = 16 (1 GiB: memstore keeps
# objects in RAM), the last at CONCURRENCIES_64M ("1 4") only. RGW moves
# the tails of overwritten objects above 4 MiB to its garbage collector,
# which runs only after hours: after each 64m PUT phase this script runs
# `radosgw-admin gc process --include-all`, outside every measured window,
# so the in-memory store does not fill.
#
# Settings (environment):
#   SIZES             object sizes: 4k 1m 64m                  "4k 1m 64m"
#   CONCURRENCIES     for 4k and 1m                            "1 4 16 64"
#   CONCURRENCIES_64M for 64m                                  "1 4"
#   CLIENTS           which clients                            "chorus boto3 awscrt rclone"
#   OPS               "get put"
#   PHASE_SECONDS     length of each timed phase               10
#   REPEAT            rounds                                   3
#   SHORT=1           SIZES=4k CONCURRENCIES="1 16" PHASE_SECONDS=4 REPEAT=1
#   OUT               where runs and table go                  target/bench/s3-peers-<time>
#   SKIP_BUILD=1      use the release binaries as they are
#   CHORUS_BOTO3_VENV / CHORUS_AWSCRT_VENV  the Python venvs  (~/.cache/chorus/{boto3,awscrt}-venv)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${SHORT:-0}" = 1 ]; then
  : "${SIZES:=4k}" "${CONCURRENCIES:=1 16}" "${PHASE_SECONDS:=4}" "${REPEAT:=1}"
fi
SIZES=${SIZES:-"4k 1m 64m"}
CONCURRENCIES=${CONCURRENCIES:-"1 4 16 64"}
CONCURRENCIES_64M=${CONCURRENCIES_64M:-"1 4"}
CLIENTS=${CLIENTS:-"chorus boto3 awscrt rclone"}
OPS=${OPS:-"get put"}
PHASE_SECONDS=${PHASE_SECONDS:-10}
REPEAT=${REPEAT:-3}
OUT=${OUT:-$ROOT/target/bench/s3-peers-$(date +%Y%m%d-%H%M%S)}
# boto3 from scripts/boto3.sh's venv (the same pinned client as the tests),
# awscrt in a venv of its own (with it installed, botocore would report it
# and could pick CRT code paths: boto3 stays plain).
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/chorus
BOTO3_VENV=${CHORUS_BOTO3_VENV:-$CACHE/boto3-venv}
BOTO3_VERSION=${CHORUS_BOTO3_VERSION:-1.44.5}
AWSCRT_VENV=${CHORUS_AWSCRT_VENV:-$CACHE/awscrt-venv}
AWSCRT_VERSION=0.38.0
BUCKET=chorus-bench
PREPARE_CONCURRENCY=16
# shellcheck source=scripts/bench/lib.sh
. "$ROOT/scripts/bench/lib.sh"
# shellcheck source=scripts/venv-lib.sh
. "$ROOT/scripts/venv-lib.sh"

die() { echo "s3-peers: $*" >&2; exit 1; }

# size_of LABEL: bytes, object count and key prefix of a size label.
size_of() {
  case "$1" in
    4k) echo "4096 4000 p4k/" ;;
    1m) echo "1048576 400 p1m/" ;;
    64m) echo "67108864 16 p64m/" ;;
    *) die "unknown size $1 (4k, 1m or 64m)" ;;
  esac
}

need_time
command -v python3 >/dev/null || die "python3 is needed (scripts/install-bench-deps.sh)"
case " $CLIENTS " in *" rclone "*)
  command -v rclone >/dev/null || "$ROOT/scripts/install-bench-deps.sh" >&2
  command -v rclone >/dev/null || die "rclone did not install" ;;
esac
venv_ensure "$BOTO3_VENV" boto3 "$BOTO3_VERSION" s3-peers
venv_ensure "$AWSCRT_VENV" awscrt "$AWSCRT_VERSION" s3-peers
CONTROLLER=$(release_controller "$ROOT") || die "no release controller"
mkdir -p "$OUT"
# Object bodies and rclone's folders: in memory, removed on exit.
SCRATCH=$(mktemp -d /dev/shm/chorus-s3-peers-XXXXXX)
start_rgw "$ROOT" "$OUT/rgw-start.log" || die "RGW did not start"
# start_rgw's own exit trap, plus the scratch folder.
# shellcheck disable=SC2064 # the paths are fixed now, on purpose
trap "rm -rf '$SCRATCH'; '$ROOT/scripts/servers/rgw.sh' stop '$RGW_DIR' || true; rm -rf '$RGW_DIR'" EXIT
echo "results in $OUT"
# rclone's remote "rgw", from the environment (no config file, no keys in argv).
export RCLONE_CONFIG_RGW_TYPE=s3 RCLONE_CONFIG_RGW_PROVIDER=Ceph
export RCLONE_CONFIG_RGW_ENDPOINT=$AWS_ENDPOINT_URL
export RCLONE_CONFIG_RGW_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export RCLONE_CONFIG_RGW_REGION=${AWS_REGION:-us-east-1}
export RCLONE_CONFIG=/dev/null

TICKS=$(getconf CLK_TCK)

# write_plan FILE NAME SIZE_LABEL STAGE: a Chorus plan over the size's key space.
write_plan() {
  local file=$1 name=$2 label=$3 stage=$4 bytes count prefix
  read -r bytes count prefix < <(size_of "$label")
  cat >"$file" <<EOF
name: $name
target: s3://$BUCKET/peers
concurrency: 4
objects: {prefix: $prefix, count: $count, size: $bytes}
stages:
  - $stage
EOF
}

# Per-phase result line appended to $OUT/results.tsv:
# size op conc client round ops errors bytes seconds client_cpu server_cpu
RESULTS="$OUT/results.tsv"
: >"$RESULTS"

run_chorus() { # LABEL OP CONC DIR -> "ops errors bytes seconds cpu"
  local label=$1 op=$2 conc=$3 dir=$4 bytes
  read -r bytes _ _ < <(size_of "$label")
  write_plan "$dir/plan.yaml" "peers-$op" "$label" \
    "{name: $op, type: workload, mix: {$op: 1}, duration: ${PHASE_SECONDS}s}"
  /usr/bin/time -f "%U %S %e" -o "$dir/time" "$CONTROLLER" run "$dir/plan.yaml" \
    --embedded 1 --concurrency "$conc" --duration "${PHASE_SECONDS}s" \
    --results "$dir/runs" --quiet >"$dir/stdout" 2>"$dir/stderr" ||
    { cat "$dir/stderr" >&2; die "chorus $op c$conc failed"; }
  python3 - "$dir" "$op" "$bytes" <<'PY'
import glob, json, os, sys
d, op, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = json.load(open(glob.glob(os.path.join(d, "runs", "*", "summary.json"))[0]))
row = next(r for r in s["stages"][-1]["ops"] if r["op"].lower() == op)
user, sys_, wall = map(float, open(os.path.join(d, "time")).read().split()[-3:])
ops = s["total_ops"]
# The stage's own rate gives its window; CPU is the whole process.
secs = ops / row["ops_per_s"] if row["ops_per_s"] else wall
print(ops, s["total_errors"], ops * size, f"{secs:.3f}", f"{user + sys_:.3f}")
PY
}

run_py() { # CLIENT LABEL OP CONC DIR
  local client=$1 label=$2 op=$3 conc=$4 dir=$5 bytes
  read -r bytes _ _ < <(size_of "$label")
  local venv=$BOTO3_VENV
  [ "$client" = awscrt ] && venv=$AWSCRT_VENV
  "$venv/bin/python" "$ROOT/scripts/bench/s3_peer.py" "$client" "$op" "$conc" "$PHASE_SECONDS" \
    "$SCRATCH/keys-$label" "$bytes" "$SCRATCH/body-$label" >"$dir/stdout" 2>"$dir/stderr" ||
    { cat "$dir/stderr" >&2; die "$client $op c$conc failed"; }
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))
print(r["ops"], r["errors"], r["bytes"], "%.3f" % r["seconds"], "%.3f" % r["cpu_seconds"])' "$dir/stdout"
}

run_rclone() { # LABEL OP CONC DIR
  local label=$1 op=$2 conc=$3 dir=$4 bytes count prefix
  read -r bytes count prefix < <(size_of "$label")
  # -v logs one "Copied" line a finished file: the op count. Soft cutoff:
  # at --max-duration no new transfer starts and those in flight finish.
  local flags=(--transfers "$conc" --checkers "$conc" --no-check-dest --ignore-checksum
    --s3-no-check-bucket --s3-no-head --s3-no-head-object --s3-disable-checksum
    --retries 1 --low-level-retries 1 --cutoff-mode soft --stats 0 -v)
  local ops=0 cpu=0 start now left n src dst rc
  start=$(date +%s.%N)
  while :; do
    now=$(date +%s.%N)
    left=$(awk -v a="$start" -v b="$now" -v p="$PHASE_SECONDS" 'BEGIN { printf "%.3f", p - (b - a) }')
    # A pass shorter than this would measure rclone's start-up only.
    awk -v l="$left" 'BEGIN { exit !(l > 0.5) }' || break
    if [ "$op" = get ]; then
      rm -rf "$SCRATCH/dl"; mkdir -p "$SCRATCH/dl"
      src="rgw:$BUCKET/peers/$prefix" dst="$SCRATCH/dl"
    else
      src="$SCRATCH/src-$label" dst="rgw:$BUCKET/peers/$prefix"
    fi
    # AWS_CA_BUNDLE (set on some machines) makes rclone's S3 backend fail
    # to start ("unsupported transport"); the endpoint is plain HTTP.
    rc=0
    /usr/bin/time -f "%U %S %e" -o "$dir/time" env -u AWS_CA_BUNDLE rclone copy "$src" "$dst" \
      "${flags[@]}" --max-duration "${left}s" 2>"$dir/pass.log" || rc=$?
    n=$(grep -c ': Copied' "$dir/pass.log" || true)
    # Exit 1 at the cutoff is expected; any other failure ends the bench.
    [ "$rc" = 0 ] || grep -q 'max transfer duration reached' "$dir/pass.log" ||
      { tail -5 "$dir/pass.log" >&2; die "rclone $op c$conc failed"; }
    grep -v ': Copied' "$dir/pass.log" >>"$dir/stderr" || true
    ops=$((ops + n))
    cpu=$(awk -v c="$cpu" -v t="$(tail -1 "$dir/time")" 'BEGIN { split(t, a, " "); printf "%.3f", c + a[1] + a[2] }')
  done
  rm -rf "$SCRATCH/dl" "$dir/pass.log"
  now=$(date +%s.%N)
  awk -v o="$ops" -v b="$bytes" -v a="$start" -v n="$now" -v c="$cpu" \
    'BEGIN { printf "%d 0 %d %.3f %.3f\n", o, o * b, n - a, c }'
}

# phase LABEL OP CONC CLIENT ROUND: one measured phase, appended to RESULTS.
phase() {
  local label=$1 op=$2 conc=$3 client=$4 round=$5
  local dir="$OUT/$label-$op-c$conc-$client-r$round" before after line
  mkdir -p "$dir"
  before=$(rgw_server_ticks)
  case "$client" in
    chorus) line=$(run_chorus "$label" "$op" "$conc" "$dir") ;;
    boto3 | awscrt) line=$(run_py "$client" "$label" "$op" "$conc" "$dir") ;;
    rclone) line=$(run_rclone "$label" "$op" "$conc" "$dir") ;;
    *) die "unknown client $client" ;;
  esac
  after=$(rgw_server_ticks)
  local server
  server=$(awk -v t="$((after - before))" -v hz="$TICKS" 'BEGIN { printf "%.3f", t / hz }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$op" "$conc" "$client" "$round" \
    "$(echo "$line" | tr ' ' '\t')" "$server" >>"$RESULTS"
  echo "  $label $op c$conc $client: $line (ops errors bytes seconds cpu) server ${server}s"
}

# prepare LABEL: writes the size's objects (Chorus), lists their keys, and
# makes the PUT body and rclone's source folder.
prepare() {
  local label=$1 bytes count prefix dir="$OUT/$1-prepare"
  read -r bytes count prefix < <(size_of "$label")
  mkdir -p "$dir"
  echo "prepare: $count x $label objects ..."
  write_plan "$dir/plan.yaml" "peers-prepare" "$label" "{name: prepare, type: prepare}"
  "$CONTROLLER" run "$dir/plan.yaml" --embedded 1 --concurrency "$PREPARE_CONCURRENCY" \
    --results "$dir/runs" --quiet >"$dir/stdout" 2>"$dir/stderr" ||
    { cat "$dir/stderr" >&2; die "prepare $label failed"; }
  "$BOTO3_VENV/bin/python" - "$BUCKET" "peers/$prefix" >"$SCRATCH/keys-$label" <<'PY'
import sys, boto3
from botocore.config import Config
b, p = sys.argv[1], sys.argv[2]
c = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
print(b)
for page in c.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix=p):
    for o in page.get("Contents", []):
        print(o["Key"])
PY
  [ "$(wc -l <"$SCRATCH/keys-$label")" -gt "$count" ] || die "prepare $label: too few keys listed"
  head -c "$bytes" /dev/urandom >"$SCRATCH/body-$label"
  mkdir -p "$SCRATCH/src-$label"
  local key
  tail -n +2 "$SCRATCH/keys-$label" | while read -r key; do
    ln "$SCRATCH/body-$label" "$SCRATCH/src-$label/${key#peers/"$prefix"}"
  done
}

# gc: RGW's garbage collection of overwritten tails, now (unmeasured).
gc() {
  timeout 600 radosgw-admin -c "$RGW_DIR/ceph.conf" gc process --include-all \
    >>"$OUT/gc.log" 2>&1 || echo "s3-peers: gc process failed (see $OUT/gc.log)" >&2
}

read -r -a clients <<<"$CLIENTS"
for label in $SIZES; do
  prepare "$label"
  concs=$CONCURRENCIES
  [ "$label" = 64m ] && concs=$CONCURRENCIES_64M
  for ((round = 1; round <= REPEAT; round++)); do
    echo "$label: round $round of $REPEAT"
    for c in $concs; do
      for op in $OPS; do
        # Rotate the clients' order each round (and each point), so none
        # always runs first or after the same neighbour.
        n=${#clients[@]}
        for ((i = 0; i < n; i++)); do
          client=${clients[$(((i + round + c) % n))]}
          phase "$label" "$op" "$c" "$client" "$round"
          [ "$label" = 64m ] && [ "$op" = put ] && gc
        done
      done
    done
  done
  rm -rf "$SCRATCH/src-$label" "$SCRATCH/body-$label"
done

python3 "$ROOT/scripts/bench/s3_peers_table.py" "$RESULTS" "$PHASE_SECONDS" "$REPEAT" |
  tee "$OUT/table.md"
