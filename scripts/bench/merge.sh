#!/usr/bin/env bash
# Merge and analyze at scale, against plain zstd decompression of the same
# bytes measured in the same run.
#
#   scripts/bench/merge.sh                 # 8 logs x 10M records, 50M timeline
#   RECORDS=2000000 TIMELINE=0 scripts/bench/merge.sh   # smaller, no analyze
#
# Steps:
# 1. `controller gen-oplog` writes FILES op-logs of RECORDS records each, as
#    agents write them (lines in the order workers hand over their batches,
#    so starts are only nearly sorted; zstd level 1 like the agent's
#    writer), and the same at RECORDS/4 to show how memory scales. With
#    SLOW_PPM=N, N ops per million time out after 30 s: lines far later
#    than the rest, which take the merge's second pass.
# 2. For each size, REPEAT times (default 1), interleaved: `zstd -dc` of all
#    TSV files (the floor: decompression only), then `controller merge` of
#    the TSV files, of the spools (the same records), and of the spools at
#    each of FAST_LEVELS (default "-1 -4": zstd's fast levels for the
#    output, `--zstd-level`); records/s, peak RSS (/usr/bin/time -v), and
#    the merge's rate as a fraction of zstd's; and whether the timelines'
#    text is identical (it must be). The best of the repeats is printed (the
#    machine may be shared: a slower repeat measured someone else).
#    With BASELINE=<another controller binary> (an older build, say), its
#    merge of the same files is timed too, in the same run, e.g.
#      BIN=target/release/controller BASELINE=/tmp/controller-before \
#        TIMELINE=0 scripts/bench/merge.sh
#    Then zstd alone compresses the first COMPRESS_SAMPLE lines of the
#    merged timeline, as the merge does, on one core: the floor that
#    compressing the output sets under any merge rate.
# 3. Unless TIMELINE=0: `controller analyze` of a sorted TIMELINE-record
#    timeline and of one a quarter that size: time and peak RSS.
#
# Needs: zstd, GNU time (/usr/bin/time). Uses WORK (default
# /tmp/chorus-bench-merge, ~3 GB at full size), removed at the end unless
# KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

FILES=${FILES:-8}
RECORDS=${RECORDS:-10000000}
TIMELINE=${TIMELINE:-50000000}
REPEAT=${REPEAT:-1}
SLOW_PPM=${SLOW_PPM:-0}
# Output zstd levels measured besides the default (1) on spool inputs.
FAST_LEVELS=${FAST_LEVELS:--1 -4}
# Lines of the merged timeline compressed alone, for the compression floor.
COMPRESS_SAMPLE=${COMPRESS_SAMPLE:-5000000}
WORK=${WORK:-/tmp/chorus-bench-merge}
# The controller is built where cargo puts it (CARGO_TARGET_DIR honoured),
# unless BIN=<a controller binary> is given.

command -v zstd >/dev/null || { echo "zstd missing (apt-get install zstd)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time missing (apt-get install time)" >&2; exit 2; }
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
if [ -z "${BIN:-}" ]; then
  BIN=$(release_bin "$PWD" controller)
  cargo build --release --bin controller >&2
fi
mkdir -p "$WORK"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT


# gen <dir> <records per file>: FILES agent logs, two at a time, each as
# an agent's binary spool (agent-N.spool.zst) and as the TSV the agent's
# text writer would have written for the same ops (agent-N.tsv.zst, by
# `controller export --format tsv`): the same records in both encodings.
gen() {
  local dir=$1 n=$2; shift 2
  mkdir -p "$dir"
  local pids=()
  for i in $(seq 0 $((FILES - 1))); do
    (CHORUS_GEN_OPLOG_SLOW_PPM=$SLOW_PPM "$BIN" gen-oplog --spool -o "$dir/agent-$i.spool.zst" \
      --records "$n" --client "agent-$i" --seed $((i + 1)) "$@" &&
      "$BIN" export --format tsv "$dir/agent-$i.spool.zst" >/dev/null) &
    pids+=($!)
    if [ ${#pids[@]} -ge 2 ]; then wait "${pids[@]}"; pids=(); fi
  done
  [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
}

# same <a.tsv.zst> <b.tsv.zst>: whether two timelines hold the same text.
same() {
  if cmp -s <(zstd -dc "$1") <(zstd -dc "$2"); then echo identical; else echo DIFFERENT; fi
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
printf '%-34s %12s %9s %12s %12s %9s\n' "step" "records" "seconds" "M records/s" "peak RSS MiB" "vs zstd"
row() { printf '%-34s %12s %9.2f %12s %12d %9s\n' "$1" "$2" "$3" "$(rate "$2" "$3")" $(($4 / 1024)) "${5:-}"; }

for n in $((RECORDS / 4)) "$RECORDS"; do
  dir="$WORK/logs-$n"
  gen "$dir" "$n"
  total=$((n * FILES))
  zs="" zr="" ms="" mr="" ss="" sr="" bs="" br=""
  declare -A fs=() fr=()
  for _ in $(seq 1 "$REPEAT"); do
    read -r s r < <(measure sh -c "zstd -dc $dir/*.tsv.zst > /dev/null")
    zs=$(min "$s" "$zs"); zr=$r
    if [ -n "${BASELINE:-}" ]; then
      read -r s r < <(measure "$BASELINE" merge "$dir"/*.tsv.zst -o "$WORK/baseline.tsv.zst" --tmp "$WORK/tmp")
      bs=$(min "$s" "$bs"); br=$r
    fi
    read -r s r < <(measure "$BIN" merge "$dir"/*.tsv.zst -o "$WORK/merged.tsv.zst" --tmp "$WORK/tmp")
    ms=$(min "$s" "$ms"); mr=$r
    grep -o '(late: [^)]*)' "$WORK/out.log" >&2 || true
    read -r s r < <(measure "$BIN" merge "$dir"/*.spool.zst -o "$WORK/spool.tsv.zst" --tmp "$WORK/tmp")
    ss=$(min "$s" "$ss"); sr=$r
    for level in $FAST_LEVELS; do
      read -r s r < <(measure "$BIN" merge "$dir"/*.spool.zst -o "$WORK/fast$level.tsv.zst" --tmp "$WORK/tmp" --zstd-level "$level")
      fs[$level]=$(min "$s" "${fs[$level]:-}"); fr[$level]=$r
    done
  done
  vs() { awk -v z="$zs" -v m="$1" 'BEGIN { printf "%.2f", z / m }'; }
  row "zstd -dc of TSV ($FILES x $n)" "$total" "$zs" "$zr"
  if [ -n "$bs" ]; then
    row "baseline merge, TSV in" "$total" "$bs" "$br" "$(vs "$bs")"
  fi
  row "controller merge, TSV in" "$total" "$ms" "$mr" "$(vs "$ms")"
  row "controller merge, spools in" "$total" "$ss" "$sr" "$(vs "$ss")"
  for level in $FAST_LEVELS; do
    size=$(stat -c %s "$WORK/fast$level.tsv.zst")
    row "  same, --zstd-level $level ($((size >> 20)) MiB)" "$total" "${fs[$level]}" "${fr[$level]}" "$(vs "${fs[$level]}")"
  done
  echo "output sizes: TSV-in $(($(stat -c %s "$WORK/merged.tsv.zst") >> 20)) MiB, spools-in $(($(stat -c %s "$WORK/spool.tsv.zst") >> 20)) MiB; inputs: TSV $(($(cat "$dir"/*.tsv.zst | wc -c) >> 20)) MiB, spools $(($(cat "$dir"/*.spool.zst | wc -c) >> 20)) MiB"
  echo "timeline text, spools in vs TSV in: $(same "$WORK/spool.tsv.zst" "$WORK/merged.tsv.zst")"
  if [ -n "$bs" ]; then
    echo "timeline text, spools in (this build) vs TSV in (baseline): $(same "$WORK/spool.tsv.zst" "$WORK/baseline.tsv.zst")"
  fi
  for level in $FAST_LEVELS; do
    echo "timeline text, --zstd-level $level vs level 1: $(same "$WORK/fast$level.tsv.zst" "$WORK/spool.tsv.zst")"
    rm -f "$WORK/fast$level.tsv.zst"
  done
  # The floor the output's compression sets: zstd at the merge's settings
  # (level 1, window 2^17, hash 2^10; see merge/frames.rs) on one core, on
  # the first lines of the merged timeline. A merge on C cores cannot beat
  # C x this rate, less the decompression above and the merge's own work.
  zstd -dc "$WORK/merged.tsv.zst" 2>/dev/null | head -n "$COMPRESS_SAMPLE" >"$WORK/sample.tsv" || true
  lines=$(wc -l <"$WORK/sample.tsv")
  read -r s r < <(measure sh -c "zstd -q -1 --zstd=wlog=17,hlog=10 -c '$WORK/sample.tsv' >/dev/null")
  row "zstd -1 of the timeline (1 core)" "$lines" "$s" "$r"
  rm -f "$WORK/sample.tsv"
  rm -f "$WORK/spool.tsv.zst" "$WORK/baseline.tsv.zst"
  rm -rf "$dir" "$WORK/merged.tsv.zst"
done

[ "$TIMELINE" -gt 0 ] || exit 0
for n in $((TIMELINE / 4)) "$TIMELINE"; do
  "$BIN" gen-oplog -o "$WORK/timeline.tsv.zst" --records "$n" --client agent --agents 8 --workers 64 --sorted
  read -r s r < <(measure zstd -dc "$WORK/timeline.tsv.zst")
  row "zstd -dc (timeline $n)" "$n" "$s" "$r"
  read -r s r < <(measure "$BIN" analyze "$WORK/timeline.tsv.zst" --segment 1s)
  row "controller analyze ($n)" "$n" "$s" "$r"
  rm -f "$WORK/timeline.tsv.zst"
done
