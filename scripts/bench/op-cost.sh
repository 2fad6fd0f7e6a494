#!/usr/bin/env bash
# op-cost.sh: the client's own CPU work per op, as instructions counted by
# valgrind's callgrind: the same count for the same binary and inputs
# whatever else the machine is doing, so it measures a change to the op
# loop on a shared, noisy machine where ops/s cannot (issue 20).
#
#   scripts/bench/op-cost.sh              # ~3 minutes after the build
#   BASELINE=/tmp/controller-old scripts/bench/op-cost.sh   # before/after
#
# Rows (one embedded agent, 4 workers, psync engine):
#   file-range4k  4 KiB range GETs in 1 MiB files from the page cache
#                 (fio-compare.sh's rand4k row, smaller files)
#   mem-get4k     4 KiB GETs on mem:// (the harness's store)
# For each, callgrind counts only what runs inside the workers' op loop
# (`--toggle-collect` on `Worker::run`): key choice, the store call, the
# clock, histograms, live counters and the op-log record; not the kernel
# (a syscall counts as its libc wrapper), not the op-log writer thread,
# not the merge after the run. Instructions per op = that count / the
# stage's ops (summary.json). The reference is fio's whole user space per
# I/O (its process under callgrind, start-up included, which is noise at
# this length) for rw=randread bs=4k ioengine=psync on the same files:
# both sides make one pread-like syscall per op, so the ratio is the gap
# in the client's own work. The top callees of the op loop (inclusive) are
# listed for each Chorus row.
#
# Settings (environment):
#   SECONDS_PER_RUN  stage length under valgrind (ops vary, the count
#                    per op does not much)                        4
#   OUT              results              target/bench/op-cost-<time>
#   WORK             files for file://     /var/tmp/chorus-op-cost
#   CONTROLLER       the controller to measure (default: this checkout's
#                    release build; built unless SKIP_BUILD=1)
#   BASELINE         another controller binary, measured the same way
# Needs: valgrind (apt-get install valgrind), fio, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/scripts/bench/lib.sh"
SECONDS_PER_RUN=${SECONDS_PER_RUN:-4}
OUT=${OUT:-$ROOT/target/bench/op-cost-$(date +%Y%m%d-%H%M%S)}
WORK=${WORK:-/var/tmp/chorus-op-cost}

die() { echo "op-cost: $*" >&2; exit 1; }
for t in valgrind callgrind_annotate fio python3; do
  command -v "$t" >/dev/null || die "$t is needed (apt-get install valgrind fio python3)"
done
if [ -z "${CONTROLLER:-}" ]; then
  CONTROLLER=$(release_bin "$ROOT" controller)
  [ "${SKIP_BUILD:-0}" = 1 ] || (cd "$ROOT" && cargo build --release --bin controller >&2)
fi
[ -x "$CONTROLLER" ] || die "no controller at $CONTROLLER"
mkdir -p "$OUT" "$WORK"

# The plans: the same key space for the prepare and the measured stage.
# file:// is prepared by a run of its own, outside valgrind, so that
# writing the files is not counted; mem:// lives in the run's process, so
# its prepare stage is in the measured run (1000 x 4 KiB: about 0.5% of
# the count).
cat >"$OUT/file-prepare.yaml" <<EOF
name: op-cost-file-prepare
target: file://$WORK
concurrency: 4
objects: {prefix: r1m/, count: 64, size: 1MiB}
stages:
  - {name: prepare, type: prepare}
EOF
cat >"$OUT/file-range4k.yaml" <<EOF
name: op-cost-file-range4k
target: file://$WORK
concurrency: 4
objects: {prefix: r1m/, count: 64, size: 1MiB}
stages:
  - {name: measured, type: workload, mix: {range_get: 1}, range: {size: 4KiB}, duration: ${SECONDS_PER_RUN}s}
EOF
"$CONTROLLER" run "$OUT/file-prepare.yaml" --embedded 1 --results "$OUT/prepare-runs" --quiet >/dev/null ||
  die "preparing $WORK failed"
cat >"$OUT/mem-get4k.yaml" <<EOF
name: op-cost-mem-get4k
target: mem://op-cost
concurrency: 4
objects: {prefix: m4k/, count: 1000, size: 4KiB}
stages:
  - {name: prepare, type: prepare}
  - {name: measured, type: workload, mix: {get: 1}, duration: ${SECONDS_PER_RUN}s}
EOF

# chorus NAME BIN PLAN: callgrind of one run, only inside the op loop;
# prints "instructions ops".
chorus() {
  local name=$1 bin=$2 plan=$3 dir="$OUT/$1"
  rm -rf "$dir"; mkdir -p "$dir"
  valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    --toggle-collect='*Worker::run*' \
    "$bin" run "$plan" --embedded 1 --results "$dir/runs" --quiet \
    >"$dir/stdout" 2>"$dir/valgrind.log" || { tail -20 "$dir/valgrind.log" >&2; die "run $name failed"; }
  callgrind_annotate --inclusive=yes "$dir/callgrind.out" >"$dir/inclusive.txt" 2>/dev/null
  python3 - "$dir" <<'PY'
import glob, json, re, sys
d = sys.argv[1]
total = None
for line in open(f"{d}/inclusive.txt"):
    m = re.match(r"\s*([\d,]+) .*PROGRAM TOTALS", line)
    if m:
        total = int(m.group(1).replace(",", ""))
        break
s = json.load(open(glob.glob(f"{d}/runs/*/summary.json")[0]))
ops = next(st for st in s["stages"] if st["name"] == "measured")["ops"]
n = next(r for r in ops if r["op"] == "ALL")["count"]
print(total, n)
PY
}

# fio_cost: callgrind of fio on the file:// row's files; "instructions ios".
fio_cost() {
  local dir="$OUT/fio"
  rm -rf "$dir"; mkdir -p "$dir"
  valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    fio --name=r --opendir="$WORK/r1m" --rw=randread --bs=4k --ioengine=psync \
      --numjobs=4 --thread --time_based --runtime="$SECONDS_PER_RUN" --group_reporting \
      --invalidate=0 --file_service_type=random --output-format=json --output="$dir/fio.json" \
    >"$dir/stdout" 2>"$dir/valgrind.log" || { tail -20 "$dir/valgrind.log" >&2; die "fio failed"; }
  python3 - "$dir" <<'PY'
import json, re, sys
d = sys.argv[1]
total = None
for line in open(f"{d}/valgrind.log"):
    m = re.search(r"Collected : (\d+)", line)
    if m:
        total = int(m.group(1))
j = json.load(open(f"{d}/fio.json"))["jobs"][0]
print(total, j["read"]["total_ios"])
PY
}

per_op() { python3 -c "import sys; t,n=map(int,sys.argv[1:]); print(f'{t/max(n,1):.0f}')" "$@"; }

echo "results in $OUT"
table="$OUT/table.txt"
printf '%-14s %-10s %12s %10s %10s\n' row side instr/op ops ratio >"$table"
sides=("chorus:$CONTROLLER")
[ -n "${BASELINE:-}" ] && sides+=("before:$BASELINE")
fio_line=""
for row in file-range4k mem-get4k; do
  for side in "${sides[@]}"; do
    name=${side%%:*} bin=${side#*:}
    echo "$row, $name ..."
    read -r instr ops < <(chorus "$row-$name" "$bin" "$OUT/$row.yaml")
    eval "cost_${row//-/_}_$name=$(per_op "$instr" "$ops")"
    eval "ops_${row//-/_}_$name=$ops"
  done
  if [ "$row" = file-range4k ]; then
    echo "$row, fio ..."
    read -r fi fn < <(fio_cost)
    fio_line=$(per_op "$fi" "$fn")
    printf '%-14s %-10s %12s %10s %10s\n' "$row" fio "$fio_line" "$fn" "" >>"$table"
  fi
  for side in "${sides[@]}"; do
    name=${side%%:*}
    c=$(eval echo "\$cost_${row//-/_}_$name") n=$(eval echo "\$ops_${row//-/_}_$name")
    ratio=""
    [ "$row" = file-range4k ] && ratio=$(python3 -c "print(f'{$c/$fio_line:.2f}x fio')")
    printf '%-14s %-10s %12s %10s %10s\n' "$row" "$name" "$c" "$n" "$ratio" >>"$table"
  done
done
{
  echo
  echo "instr/op: user-space instructions per op inside the op loop (Chorus) or"
  echo "per I/O in the whole process (fio), by callgrind; kernel work not counted."
  echo
  echo "Where the op loop's instructions go, per op (file-range4k, $CONTROLLER):"
  echo "self = in the function itself (callgrind_annotate's default), top 20:"
  dir="$OUT/file-range4k-chorus"
  ops=$(eval echo "\$ops_file_range4k_chorus")
  callgrind_annotate "$dir/callgrind.out" 2>/dev/null \
    | awk -v ops="$ops" '/^ *[0-9,]+ \(/ { n=$1; gsub(",", "", n); $1=""; $2="";
        sub(/^ +/, ""); sub(/ \[.*$/, ""); printf "%8.0f  %s\n", n/ops, $0 }' \
    | grep -v 'PROGRAM TOTALS' | head -20 || true  # head ends the pipe early
} >>"$table"
cat "$table"
