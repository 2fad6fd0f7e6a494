#!/usr/bin/env bash
# fio-compare.sh: Chorus's file:// and direct:// backends against fio, in the
# same run, on the same files, at the same concurrency (issues 3 and 4).
#
#   scripts/bench/fio-compare.sh            # ~5 minutes at the defaults
#
# Workloads (each for file:// with fio --direct=0 and for direct:// with fio
# --direct=1; fio uses ioengine=psync, iodepth=1, numjobs=$JOBS, because a
# Chorus worker issues one blocking op at a time):
#   seq1m read/write   1 MiB objects; Chorus get/put; fio rw=read/write bs=1M
#   rand4k read        4 KiB random ranges in 64 MiB objects; Chorus range_get
#                      (when the build has it); fio rw=randread bs=4k
#   small4k read/write 4 KiB objects; Chorus get/put; fio rw=read/write bs=4k,
#                      file_service_type=random. Also the stand-in for 4 KiB
#                      random reads when range_get is missing.
# Before each measured phase the page cache is dropped (root only); whether
# that worked is printed. Chorus numbers come from the run's summary.json,
# fio's from its JSON output. The ratio is chorus / fio (goal >= 0.95). The
# 1-minute load average at the end of each phase is in the table: on a
# shared machine a phase that ran under more load than its partner says so.
#
# What each side does per op (the same syscalls where the semantics allow):
#   Chorus GET   open, lseek(SEEK_END) (whole objects), fadvise, pread…, close
#   Chorus PUT   open (no O_TRUNC), lseek(SEEK_END), pwrite, close
#   fio, files of one block (seq1m, small4k): open, fadvise, pread/pwrite,
#                close: an object op's work, since a file is closed once done.
#   fio randread (rand4k): pread only, on files held open for the run. An
#                object GET opens and closes the object each time, so on
#                file:// with a warm cache (a few µs per op) this row
#                measures open+close as much as the read; on direct:// the
#                device dominates.
# PUT payloads: fio writes one pre-filled buffer (refill_buffers=0); Chorus
# generates each object's keyed bytes per op (before the op's clock starts,
# but inside the phase's wall time), as it must to verify them later.
#
# Settings (environment):
#   BENCH_DIR      directory on a real disk (not tmpfs)   /var/tmp/chorus-fio-compare
#   PHASE_SECONDS  length of each measured phase          10
#   JOBS           fio numjobs = Chorus workers           4
#   OUT            where results and the table go         target/bench/fio-compare-<time>
#   SKIP_BUILD=1   use the release binaries as they are
#   NICE           niceness of both fio and Chorus           -10 (0 = as is)
#
# Why NICE: on a shared machine, background jobs (builds) take CPU from
# whichever side is running, and not equally: fio runs $JOBS processes while
# Chorus runs its workers on one runtime thread per CPU, so under contention
# the scheduler gives fio more CPU. Both sides run at the same raised
# priority (root only; otherwise nice warns and runs them as is).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PLANS="$ROOT/scripts/bench/plans"
BENCH_DIR=${BENCH_DIR:-/var/tmp/chorus-fio-compare}
PHASE_SECONDS=${PHASE_SECONDS:-10}
JOBS=${JOBS:-4}
NICE=${NICE:--10}
OUT=${OUT:-$ROOT/target/bench/fio-compare-$(date +%Y%m%d-%H%M%S)}
CONTROLLER="$ROOT/target/release/controller"

die() { echo "fio-compare: $*" >&2; exit 1; }

"$ROOT/scripts/install-bench-deps.sh" >/dev/null
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --bins)
fi
[ -x "$CONTROLLER" ] || die "no $CONTROLLER; build with cargo build --release --bins"

mkdir -p "$BENCH_DIR" "$OUT"
fstype=$(df --output=fstype "$BENCH_DIR" | tail -1 | tr -d ' ')
case "$fstype" in
  tmpfs|ramfs) die "$BENCH_DIR is on $fstype; set BENCH_DIR to a directory on a real disk" ;;
esac
echo "bench dir: $BENCH_DIR ($fstype, $(df --output=source "$BENCH_DIR" | tail -1))"
echo "results:   $OUT"

# Drops the page cache; prints nothing, sets DROP_STATE for the report.
DROP_OK=0; DROP_FAIL=0
drop_caches() {
  sync
  if { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
    DROP_OK=$((DROP_OK + 1))
  else
    DROP_FAIL=$((DROP_FAIL + 1))
  fi
}

# chorus PLAN SCHEME -> prints "ops_per_s mib_per_s" of the plan's last stage
# (its "ALL" row). Fails loudly when the run fails or has op errors.
chorus() {
  local plan=$1 scheme=$2 res="$OUT/chorus-$(basename "$plan" .yaml)-$2"
  rm -rf "$res"; mkdir -p "$res"
  if ! nice -n "$NICE" "$CONTROLLER" run "$PLANS/$plan" --embedded 1 --concurrency "$JOBS" \
      --target "$scheme://$BENCH_DIR" --duration "${PHASE_SECONDS}s" \
      --results "$res" --quiet >"$res/stdout" 2>"$res/stderr"; then
    cat "$res/stderr" >&2
    die "chorus run of $plan on $scheme:// failed"
  fi
  local summary
  summary=$(find "$res" -name summary.json | head -1)
  [ -n "$summary" ] || die "no summary.json under $res"
  python3 - "$summary" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
st = s["stages"][-1]
# The "ALL" row is the stage's total; without one, sum the op rows.
rows = [r for r in st["ops"] if r["op"] == "ALL"] or st["ops"]
ops = sum(r.get("ops_per_s", 0) for r in rows)
mib = sum(r.get("mib_per_s", 0) for r in rows)
errs = sum(r.get("errors", 0) for r in rows)
if errs:
    print(f"chorus: {errs} errors in {sys.argv[1]}", file=sys.stderr)
    sys.exit(1)
print(f"{ops:.1f} {mib:.2f}")
PY
}

# fio NAME DIRECT RW BS SUBDIR [extra args] -> prints "iops mib_per_s".
# --invalidate=0: this script drops the page cache before each phase itself;
# fio's default (invalidate=1) would drop the files' cached pages again each
# time it reopens a file (every loop over 1 MiB or 4 KiB files), so fio would
# always read cold while Chorus warms the cache: not the same conditions.
# Everything else is fio's default, including fadvise_hint=1
# (POSIX_FADV_SEQUENTIAL / POSIX_FADV_RANDOM on open), which Chorus's file://
# matches: FADV_RANDOM on small range GETs, FADV_SEQUENTIAL on whole-object
# GETs above the default readahead window.
fio_run() {
  local name=$1 direct=$2 rw=$3 bs=$4 sub=$5; shift 5
  local json="$OUT/fio-$name-direct$direct.json"
  nice -n "$NICE" fio --name="$name" --opendir="$BENCH_DIR/$sub" --rw="$rw" --bs="$bs" \
      --direct="$direct" --ioengine=psync --iodepth=1 --numjobs="$JOBS" \
      --group_reporting --time_based --runtime="$PHASE_SECONDS" --invalidate=0 \
      --output-format=json --output="$json" "$@" >/dev/null \
    || die "fio $name failed (see $json)"
  python3 - "$json" "$rw" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
side = "write" if "write" in sys.argv[2] else "read"
print(f"{j[side]['iops']:.1f} {j[side]['bw_bytes'] / 1048576:.2f}")
PY
}

ROWS=()
load1() { cut -d' ' -f1 /proc/loadavg; }
# row WORKLOAD BACKEND UNIT FIO_PAIR CHORUS_PAIR FIO_LOAD CHORUS_LOAD: UNIT is
# iops or MiB/s; the loads are the 1-minute load average after each phase.
row() {
  local workload=$1 backend=$2 unit=$3 f=$4 c=$5 fl=$6 cl=$7 fv cv
  if [ "$unit" = "MiB/s" ]; then fv=${f#* }; cv=${c#* }; else fv=${f% *}; cv=${c% *}; fi
  ROWS+=("$workload|$backend|$unit|$fv|$cv|$fl/$cl")
  echo "  $workload $backend: fio $fv, chorus $cv $unit (load $fl / $cl)"
}

# phase WORKLOAD UNIT PLAN FIO_RW BS SUBDIR [fio args]: both backends.
phase() {
  local workload=$1 unit=$2 plan=$3 rw=$4 bs=$5 sub=$6; shift 6
  local scheme direct f c fl cl
  for scheme in file direct; do
    direct=0; [ "$scheme" = direct ] && direct=1
    drop_caches; f=$(fio_run "$workload" "$direct" "$rw" "$bs" "$sub" "$@"); fl=$(load1)
    drop_caches; c=$(chorus "$plan" "$scheme"); cl=$(load1)
    row "$workload" "$scheme://" "$unit" "$f" "$c" "$fl" "$cl"
  done
}

echo "preparing objects (Chorus prepare stages, file://)…"
for p in seq1m-prepare small4k-prepare rand4k-prepare; do
  chorus "$p.yaml" file >/dev/null
done

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "measuring, ${PHASE_SECONDS}s per phase, $JOBS jobs/workers (load $LOAD_START)…"
phase "seq1m-read" "MiB/s" seq1m-get.yaml read 1M seq1m
phase "seq1m-write" "MiB/s" seq1m-put.yaml write 1M seq1m
if "$CONTROLLER" validate "$PLANS/rand4k-range-get.yaml" >"$OUT/range-get-validate.txt" 2>&1; then
  RANGE_NOTE="4 KiB random reads: Chorus range_get in 64 MiB objects vs fio randread."
  phase "rand4k-read" "iops" rand4k-range-get.yaml randread 4k rand64m \
    --norandommap --randrepeat=0 --file_service_type=random
else
  RANGE_NOTE="range_get is not in this build ($(head -1 "$OUT/range-get-validate.txt")); \
small4k-read (4 KiB whole-object GETs vs fio bs=4k reads of 4 KiB files) stands in for 4 KiB random reads."
fi
phase "small4k-read" "iops" small4k-get.yaml read 4k small4k --file_service_type=random
phase "small4k-write" "iops" small4k-put.yaml write 4k small4k --file_service_type=random

{
  printf '%-14s %-10s %-6s %12s %12s %7s  %s\n' workload backend unit fio chorus ratio "load fio/chorus"
  for r in "${ROWS[@]}"; do
    IFS='|' read -r w b u fv cv ld <<<"$r"
    ratio=$(python3 -c "f=float('$fv'); print(f'{float(\"$cv\")/f:.2f}' if f > 0 else '-')")
    printf '%-14s %-10s %-6s %12s %12s %7s  %s\n' "$w" "$b" "$u" "$fv" "$cv" "$ratio" "$ld"
  done
  echo
  echo "goal: ratio >= 0.95. $RANGE_NOTE"
  if [ "$DROP_FAIL" = 0 ]; then
    echo "page cache dropped before each of the $DROP_OK measured phases."
  else
    echo "page cache NOT dropped ($DROP_FAIL of $((DROP_OK + DROP_FAIL)) attempts failed; needs root)."
  fi
  echo "fs: $fstype on $(df --output=source "$BENCH_DIR" | tail -1); fio $(fio --version); $(nproc) CPUs."
  echo "fio and Chorus ran at nice $NICE."
  echo "load average at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$OUT/table.txt"
