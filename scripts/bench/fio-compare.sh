#!/usr/bin/env bash
# fio-compare.sh: Chorus's file:// and direct:// backends against fio, in the
# same run, on the same files, at the same concurrency (issues 3 and 4).
#
#   scripts/bench/fio-compare.sh            # ~6 minutes at the defaults
#   BASELINE=/tmp/controller-old scripts/bench/fio-compare.sh   # before/after
#
# Workloads (each for file:// with fio --direct=0 and for direct:// with fio
# --direct=1; fio uses ioengine=psync, iodepth=1, numjobs=$JOBS, because a
# Chorus worker issues one blocking op at a time):
#   seq1m read/write   1 MiB objects; Chorus get/put; fio rw=read/write bs=1M,
#                      file_service_type=random (see "Which object" below)
#   rand4k read        4 KiB random ranges in 64 MiB objects; Chorus range_get
#                      (when the build has it); fio rw=randread bs=4k
#   small4k read/write 4 KiB objects; Chorus get/put; fio rw=read/write bs=4k,
#                      file_service_type=random. Also the stand-in for 4 KiB
#                      random reads when range_get is missing.
# Chorus numbers come from the run's summary.json, fio's from its JSON
# output. The ratio is chorus / fio (goal >= 0.95). With BASELINE set, a
# second Chorus build runs in every phase too, right after the first, and
# the table has its ratio beside ("before"): both against the same fio
# runs, under the same load.
#
# Cache state: every run of either side starts from the same state. Before
# each one the page cache is dropped (root only; whether that worked is
# printed), then the phase's files are read once, not timed ("primed"):
#   - direct:// phases: primed with O_DIRECT reads, so the guest's page
#     cache stays empty but whatever sits below it is warm. On a VM the
#     virtual disk is often backed by the host's page cache, which the
#     guest cannot drop: unprimed, whichever side ran second read the
#     files the first side had just pulled into the host (seen: Chorus
#     1.86x fio on 1 MiB direct reads, 3.3x on cold 4 KiB file:// reads,
#     only from running second).
#   - file:// phases, CACHE=warm (the default): primed with buffered reads,
#     so the files are in the page cache. This is what file:// measures that
#     direct:// does not: the cost of the client's own work per op (syscalls,
#     opens, payload generation) against fio's, with the device out of the
#     way. CACHE=cold primes them as direct:// phases are (guest cache
#     empty), so reads wait for the device much of the phase.
# The 1-minute load average at the end of each run is in the table: on a
# shared machine a side that ran under more load than its partner says so.
#
# I/O buffers: Chorus's buffers come from mimalloc's arenas, which the
# kernel backs with transparent huge pages; fio's default buffers (malloc)
# are 4 KiB pages. An O_DIRECT request from a huge page is a few physical
# segments instead of 256 per MiB, and on a virtio disk that alone doubled
# 1 MiB direct reads (fio 1715 MiB/s with --iomem=malloc, 3460 with
# --iomem=shmhuge, Chorus 3441). So fio gets huge pages too (FIO_HUGE=1,
# the default as root): the script reserves a few in
# /proc/sys/vm/nr_hugepages for the run and gives them back at the end.
#
# What each side does per op (the same syscalls where the semantics allow):
#   Chorus GET   first GET of an object: open, lseek(SEEK_END) (whole
#                objects), fadvise, pread…; later GETs of it reuse the open
#                file (a bounded cache), pread only; a whole-object GET adds
#                one lseek(SEEK_END) for the size. In a stage with deletes, every
#                reuse fstats first to check the file still has a name (see
#                docs/backends.md); fadvise only when the hint changes
#   Chorus PUT   open (no O_TRUNC), lseek(SEEK_END), pwrite, close
#   fio, files of one block (seq1m, small4k): open, fadvise, pread/pwrite,
#                close: an object op's work, since a file is closed once done.
#   fio randread (rand4k): pread only, on files held open for the run.
# Which object each op takes: Chorus's workers draw keys uniformly at
# random, each on its own; so do fio's jobs (file_service_type=random, in
# every phase over many files). fio's default, roundrobin, has every job
# walk the same file list from the same start, so the $JOBS jobs move in
# lockstep, mostly on the same file at once (strace: 3 of 4 jobs opening
# and writing one file within ~0.1 ms, then the next). On a virtual disk
# backed by the host's page cache, I/O to the same blocks at once is
# cheaper there: fio direct=1 bs=1M with roundrobin beat itself with
# random by 8-17% in each of 6 alternating pairs on the same files (writes
# 6208/5383, 5369/4591, 5500/5063 MiB/s; reads 3591/3225, 3614/3401,
# 3777/3326), and that was Chorus's gap on direct:// 1 MiB (0.86-0.92):
# in the same turns Chorus made 5467, 5211, 5275 (reused payload) and
# 3224, 3320, 3397, i.e. fio-random's rate. Its per-op syscalls are
# fio's (PUT openat, lseek, pwrite64, close; GET pread64 and one fstat on
# a kept file) at the same queue depth on the disk (/proc/diskstats: 3.5
# to 3.7 requests for both). FIO_FILES=roundrobin gives fio its default.
# PUT payloads: fio writes one pre-filled buffer (refill_buffers=0); Chorus
# generates each object's keyed bytes per op (before the op's clock starts,
# but inside the phase's wall time), as it must to verify them later. On
# file:// 1 MiB writes, where the kernel's copy into the page cache is all
# fio does, that generation is a cost fio does not have (about a third of
# Chorus's CPU there); the summary's mean PUT latency excludes it. The
# seq1m-write-reuse row runs the same writes with `data: {reuse: true}`
# (one payload made once and handed out again, like fio's buffer).
#
# Settings (environment):
#   BENCH_DIR      directory on a real disk (not tmpfs)   /var/tmp/chorus-fio-compare
#   PHASE_SECONDS  length of each measured run            10
#   JOBS           fio numjobs = Chorus workers           4
#   ROUNDS         runs of each side per phase, taken in  1
#                  turn (fio, Chorus, baseline, fio, …); the table shows
#                  each side's median
#   CACHE          warm or cold: file:// phases' page cache  warm
#   OUT            where results and the table go         target/bench/fio-compare-<time>
#   SKIP_BUILD=1   use the release binaries as they are
#   CONTROLLER     the controller binary to measure (default: this checkout's
#                  target/release/controller, or $CARGO_TARGET_DIR/release/
#                  controller; when set, nothing is built)
#   BASELINE       another controller binary, measured in the same phases
#                  (e.g. a copy of the build before a change)
#   NICE           niceness of both fio and Chorus           -10 (0 = as is)
#   FIO_HUGE       1: fio's buffers in huge pages (--iomem=shmhuge), 0: fio's
#                  default (malloc)                        1 as root, else 0
#   FIO_FILES      fio's file_service_type over the files  random
#                  (random, as Chorus picks keys; roundrobin is fio's default)
#   PHASES         the workloads to run, by name (e.g.     all
#                  "seq1m-read seq1m-write"); only their objects are prepared
#   BACKENDS       the backends to run ("file direct",     file direct
#                  "direct")
#   ENGINE         Chorus's I/O engine (engine= on the       (the store's
#                  file:// and direct:// URI): psync,         default)
#                  io_uring or auto
#   BEFORE_ENGINE  with it, the "before" side is the same controller (or
#                  BASELINE if set) with this engine: psync vs io_uring in
#                  one build, against the same fio runs
#   FIO_ENGINE     fio's ioengine: psync (iodepth 1, numjobs  psync
#                  $JOBS) or io_uring (numjobs $FIO_JOBS, iodepth
#                  $JOBS / $FIO_JOBS, so fio's total queue depth is Chorus's
#                  worker count)
#   FIO_JOBS       fio's numjobs with FIO_ENGINE=io_uring     CPUs
#
# io_uring mode (issue 20): ENGINE=io_uring FIO_ENGINE=io_uring
# BEFORE_ENGINE=psync compares Chorus's io_uring engine with fio's at the
# same total queue depth, its psync engine beside.
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
ROUNDS=${ROUNDS:-1}
CACHE=${CACHE:-warm}
NICE=${NICE:--10}
BASELINE=${BASELINE:-}
FIO_HUGE=${FIO_HUGE:-$([ "$(id -u)" = 0 ] && echo 1 || echo 0)}
OUT=${OUT:-$ROOT/target/bench/fio-compare-$(date +%Y%m%d-%H%M%S)}
if [ -n "${CONTROLLER:-}" ]; then
  SKIP_BUILD=1
else
  # Where `cargo build` below puts it.
  . "$ROOT/scripts/bench/lib.sh"
  CONTROLLER=$(release_bin "$ROOT" controller)
fi
PHASES=${PHASES:-seq1m-read seq1m-write seq1m-write-reuse rand4k-read small4k-read small4k-write}
BACKENDS=${BACKENDS:-file direct}
FIO_FILES=${FIO_FILES:-random}
ENGINE=${ENGINE:-}
BEFORE_ENGINE=${BEFORE_ENGINE:-}
FIO_ENGINE=${FIO_ENGINE:-psync}
FIO_JOBS=${FIO_JOBS:-$(nproc)}
case "$FIO_ENGINE" in
  psync) FIO_NUMJOBS=$JOBS; FIO_IODEPTH=1 ;;
  io_uring)
    [ "$FIO_JOBS" -le "$JOBS" ] || FIO_JOBS=$JOBS
    FIO_NUMJOBS=$FIO_JOBS; FIO_IODEPTH=$((JOBS / FIO_JOBS))
    [ $((FIO_NUMJOBS * FIO_IODEPTH)) = "$JOBS" ] \
      || { echo "fio-compare: JOBS ($JOBS) must be a multiple of FIO_JOBS ($FIO_JOBS)" >&2; exit 1; } ;;
  *) echo "fio-compare: FIO_ENGINE is psync or io_uring, not $FIO_ENGINE" >&2; exit 1 ;;
esac
# The before side: another binary, or this one with another engine.
if [ -n "$BEFORE_ENGINE" ] && [ -z "$BASELINE" ]; then BASELINE=$CONTROLLER; fi
# engine_query ENGINE -> the URI query that asks for it ("" for the default).
engine_query() { [ -z "$1" ] || echo "?engine=$1"; }
wanted() { case " $PHASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

die() { echo "fio-compare: $*" >&2; exit 1; }

case "$CACHE" in warm|cold) ;; *) die "CACHE must be warm or cold, not $CACHE" ;; esac
"$ROOT/scripts/install-bench-deps.sh" >/dev/null
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --bins)
fi
[ -x "$CONTROLLER" ] || die "no $CONTROLLER; build with cargo build --release --bins"
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || die "BASELINE $BASELINE is not an executable"

mkdir -p "$BENCH_DIR" "$OUT"
fstype=$(df --output=fstype "$BENCH_DIR" | tail -1 | tr -d ' ')
case "$fstype" in
  tmpfs|ramfs) die "$BENCH_DIR is on $fstype; set BENCH_DIR to a directory on a real disk" ;;
esac
echo "bench dir: $BENCH_DIR ($fstype, $(df --output=source "$BENCH_DIR" | tail -1))"
echo "results:   $OUT"

# Drops the page cache; prints nothing, counts successes for the report.
DROP_OK=0; DROP_FAIL=0
drop_caches() {
  sync
  if { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
    DROP_OK=$((DROP_OK + 1))
  else
    DROP_FAIL=$((DROP_FAIL + 1))
  fi
}

# Huge pages for fio's buffers: one per job (bs x iodepth = 1 MiB fits a
# 2 MiB page) and some to spare, added to whatever is reserved now and
# taken away again on exit (not reset, in case someone else changed it).
FIO_IOMEM=malloc
HUGE_ADDED=0
if [ "$FIO_HUGE" = 1 ]; then
  want=$((JOBS * 2 + 4))
  before=$(cat /proc/sys/vm/nr_hugepages)
  if { echo $((before + want)) > /proc/sys/vm/nr_hugepages; } 2>/dev/null \
      && [ "$(cat /proc/sys/vm/nr_hugepages)" -ge $((before + want)) ]; then
    HUGE_ADDED=$want
    FIO_IOMEM=shmhuge
  else
    echo "could not reserve $want huge pages; fio uses its default buffers"
    { echo "$before" > /proc/sys/vm/nr_hugepages; } 2>/dev/null || true
  fi
fi
give_back_huge() {
  if [ "$HUGE_ADDED" -gt 0 ]; then
    echo $(( $(cat /proc/sys/vm/nr_hugepages) - HUGE_ADDED )) > /proc/sys/vm/nr_hugepages
    HUGE_ADDED=0
  fi
}
trap give_back_huge EXIT

# prime SUBDIR DIRECT: reads every file under the phase's directory once
# (not timed), with O_DIRECT when DIRECT is 1, buffered otherwise; in blocks
# of the smallest file's size up to 1 MiB (fio skips files smaller than bs).
prime() {
  local sub=$1 direct=$2 bs
  bs=$(find "$BENCH_DIR/$sub" -type f -printf '%s\n' | awk 'NR == 1 || $1 < m { m = $1 } END { print m + 0 }')
  bs=$(( bs < 4096 ? 4096 : (bs > 1048576 ? 1048576 : bs / 4096 * 4096) ))
  fio --name=prime --opendir="$BENCH_DIR/$sub" --rw=read --bs="$bs" --direct="$direct" \
      --ioengine=psync --numjobs=1 --openfiles=64 --invalidate=0 \
      --output=/dev/null >/dev/null 2>&1 || die "priming $BENCH_DIR/$sub failed"
}

# start_state SUBDIR SCHEME: the cache state every run of a phase starts in.
start_state() {
  local sub=$1 scheme=$2
  drop_caches
  if [ "$scheme" = file ] && [ "$CACHE" = warm ]; then prime "$sub" 0; else prime "$sub" 1; fi
}

# chorus BINARY PLAN SCHEME TAG [ENGINE] -> prints "ops_per_s mib_per_s" of the plan's
# last stage (its "ALL" row). Fails loudly when the run fails or has op
# errors.
chorus() {
  local bin=$1 plan=$2 scheme=$3 tag=$4 engine=${5:-}
  local res="$OUT/chorus-$(basename "$plan" .yaml)-$scheme-$tag"
  rm -rf "$res"; mkdir -p "$res"
  if ! nice -n "$NICE" "$bin" run "$PLANS/$plan" --embedded 1 --concurrency "$JOBS" \
      --target "$scheme://$BENCH_DIR$(engine_query "$engine")" --duration "${PHASE_SECONDS}s" \
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

# fio NAME DIRECT RW BS SUBDIR TAG [extra args] -> prints "iops mib_per_s".
# --invalidate=0: fio's default (invalidate=1) would drop the files' cached
# pages each time it opens a file (every loop over 1 MiB or 4 KiB files),
# so fio would read cold while Chorus reads the primed cache: not the same
# conditions. Everything else is fio's default, including fadvise_hint=1
# (POSIX_FADV_SEQUENTIAL / POSIX_FADV_RANDOM on open), which Chorus's file://
# matches: FADV_RANDOM on small range GETs, FADV_SEQUENTIAL on whole-object
# GETs above the default readahead window.
fio_run() {
  local name=$1 direct=$2 rw=$3 bs=$4 sub=$5 tag=$6; shift 6
  local json="$OUT/fio-$name-direct$direct-$tag.json"
  nice -n "$NICE" fio --name="$name" --opendir="$BENCH_DIR/$sub" --rw="$rw" --bs="$bs" \
      --direct="$direct" --ioengine="$FIO_ENGINE" --iodepth="$FIO_IODEPTH" \
      --numjobs="$FIO_NUMJOBS" \
      --group_reporting --time_based --runtime="$PHASE_SECONDS" --invalidate=0 \
      --iomem="$FIO_IOMEM" --output-format=json --output="$json" "$@" >/dev/null \
    || die "fio $name failed (see $json)"
  python3 - "$json" "$rw" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
side = "write" if "write" in sys.argv[2] else "read"
print(f"{j[side]['iops']:.1f} {j[side]['bw_bytes'] / 1048576:.2f}")
PY
}

# Every measured run, one line each: workload backend side round ops mib load.
RAW="$OUT/runs.tsv"
: >"$RAW"
load1() { cut -d' ' -f1 /proc/loadavg; }
record() {
  local workload=$1 backend=$2 side=$3 round=$4 pair=$5
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$backend" "$side" "$round" \
    "${pair% *}" "${pair#* }" "$(load1)" >>"$RAW"
  echo "  $workload $backend $side #$round: ${pair% *} ops/s, ${pair#* } MiB/s (load $(load1))"
}

# phase WORKLOAD PLAN FIO_RW BS SUBDIR [fio args]: both backends, every side
# ROUNDS times, in turn.
phase() {
  local workload=$1 plan=$2 rw=$3 bs=$4 sub=$5; shift 5
  local scheme direct round pair
  wanted "$workload" || return 0
  for scheme in $BACKENDS; do
    direct=0; [ "$scheme" = direct ] && direct=1
    for round in $(seq 1 "$ROUNDS"); do
      # (Assignments, so that a failed run stops the script.)
      start_state "$sub" "$scheme"
      pair=$(fio_run "$workload" "$direct" "$rw" "$bs" "$sub" "$round" "$@")
      record "$workload" "$scheme://" fio "$round" "$pair"
      start_state "$sub" "$scheme"
      pair=$(chorus "$CONTROLLER" "$plan" "$scheme" "$round" "$ENGINE")
      record "$workload" "$scheme://" chorus "$round" "$pair"
      if [ -n "$BASELINE" ]; then
        start_state "$sub" "$scheme"
        pair=$(chorus "$BASELINE" "$plan" "$scheme" "before-$round" "$BEFORE_ENGINE")
        record "$workload" "$scheme://" before "$round" "$pair"
      fi
    done
  done
}

echo "preparing objects (Chorus prepare stages, file://)…"
for p in seq1m small4k rand4k; do
  case " $PHASES " in *" $p-"*) chorus "$CONTROLLER" "$p-prepare.yaml" file prepare >/dev/null ;; esac
done

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "measuring, ${PHASE_SECONDS}s per run, $ROUNDS round(s), $JOBS jobs/workers, \
file:// cache $CACHE (load $LOAD_START)…"
phase "seq1m-read" seq1m-get.yaml read 1M seq1m --file_service_type="$FIO_FILES"
phase "seq1m-write" seq1m-put.yaml write 1M seq1m --file_service_type="$FIO_FILES"
# The same writes with one reused payload (data.reuse: true), as fio does:
# what is left of the gap once Chorus makes no per-object bytes.
phase "seq1m-write-reuse" seq1m-put-reuse.yaml write 1M seq1m --file_service_type="$FIO_FILES"
if "$CONTROLLER" validate "$PLANS/rand4k-range-get.yaml" >"$OUT/range-get-validate.txt" 2>&1; then
  RANGE_NOTE="4 KiB random reads: Chorus range_get in 64 MiB objects vs fio randread."
  phase "rand4k-read" rand4k-range-get.yaml randread 4k rand64m \
    --norandommap --randrepeat=0 --file_service_type=random
else
  RANGE_NOTE="range_get is not in this build ($(head -1 "$OUT/range-get-validate.txt")); \
small4k-read (4 KiB whole-object GETs vs fio bs=4k reads of 4 KiB files) stands in for 4 KiB random reads."
fi
phase "small4k-read" small4k-get.yaml read 4k small4k --file_service_type="$FIO_FILES"
phase "small4k-write" small4k-put.yaml write 4k small4k --file_service_type="$FIO_FILES"

{
  python3 - "$RAW" "$ROUNDS" <<'PY'
import statistics, sys
from collections import OrderedDict
raw, rounds = sys.argv[1], int(sys.argv[2])
runs = OrderedDict()
for line in open(raw):
    w, b, side, _round, ops, mib, load = line.rstrip("\n").split("\t")
    unit = "MiB/s" if w.startswith("seq1m") else "iops"
    v = float(mib if unit == "MiB/s" else ops)
    runs.setdefault((w, b, unit), {}).setdefault(side, []).append((v, float(load)))
has_before = any("before" in sides for sides in runs.values())
head = f"{'workload':<14} {'backend':<10} {'unit':<6} {'fio':>12} {'chorus':>12} {'ratio':>6}"
if has_before:
    head += f" {'before':>12} {'ratio':>6}"
print(head + "  load (medians, per side)")
for (w, b, unit), sides in runs.items():
    med = {s: statistics.median(v for v, _ in rs) for s, rs in sides.items()}
    load = {s: statistics.median(l for _, l in rs) for s, rs in sides.items()}
    f = med.get("fio", 0)
    ratio = lambda s: f"{med[s] / f:.2f}" if f > 0 and s in med else "-"
    line = f"{w:<14} {b:<10} {unit:<6} {f:>12.1f} {med.get('chorus', 0):>12.1f} {ratio('chorus'):>6}"
    if has_before:
        line += f" {med.get('before', 0):>12.1f} {ratio('before'):>6}"
    print(line + "  " + "/".join(f"{load[s]:.2f}" for s in sides))
if rounds > 1:
    print(f"\n(medians of {rounds} runs per side, taken in turn; every run in runs.tsv)")
PY
  echo
  echo "goal: ratio >= 0.95. $RANGE_NOTE"
  if [ "$DROP_FAIL" = 0 ]; then
    echo "page cache dropped before each of the $DROP_OK measured runs, then the phase's files"
    echo "read once (direct:// with O_DIRECT; file:// $([ "$CACHE" = warm ] && echo buffered, so cached || echo with O_DIRECT, so not cached))."
  else
    echo "page cache NOT dropped ($DROP_FAIL of $((DROP_OK + DROP_FAIL)) attempts failed; needs root)."
  fi
  echo "fs: $fstype on $(df --output=source "$BENCH_DIR" | tail -1); fio $(fio --version); $(nproc) CPUs."
  echo "fio and Chorus ran at nice $NICE; fio's buffers: --iomem=$FIO_IOMEM."
  echo "fio ioengine=$FIO_ENGINE, numjobs=$FIO_NUMJOBS, iodepth=$FIO_IODEPTH; Chorus $JOBS workers, \
engine ${ENGINE:-default}${BASELINE:+; before: $BASELINE${BEFORE_ENGINE:+ engine $BEFORE_ENGINE}}."
  echo "load average at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$OUT/table.txt"
