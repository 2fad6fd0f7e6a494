#!/usr/bin/env bash
# Parquet export at scale, against the TSV merge of the same records in the
# same run (issue 19: a 10M- and a 40M-record timeline).
#
#   scripts/bench/parquet-export.sh                       # 10M, then 40M records
#   scripts/bench/parquet-export.sh 10000000              # one size
#   RECORDS=40000000 scripts/bench/parquet-export.sh      # the same, as before
#
# For each size (arguments, else RECORDS, else 10M and 40M), in order:
# 1. `controller gen-oplog` writes FILES op-logs of RECORDS/FILES records
#    each, as agents write them (see merge.sh).
# 2. `controller merge` of them into timeline.tsv.zst (the TSV merge every
#    run does), then `zstd -dc` of that timeline (the floor of any reader
#    of it: decompression only), then `controller export --format parquet`
#    of it; for each: seconds, records/s and peak RSS (/usr/bin/time -v).
#    REPEAT times (default 1), interleaved; the best is printed (the
#    machine may be shared).
# 3. The sizes of timeline.tsv.zst and timeline.parquet.
#
# Needs: zstd, GNU time. Uses WORK (default /tmp/chorus-bench-parquet,
# ~1.5 GB at 10M records, ~6 GB at 40M: one size at a time, emptied
# between sizes), removed at the end unless KEEP=1 (which keeps the last
# size's files). About 1 minute per 10M records on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."

FILES=${FILES:-8}
sizes=("$@")
# shellcheck disable=SC2206 # RECORDS may list sizes, split on spaces
[ ${#sizes[@]} -gt 0 ] || sizes=(${RECORDS:-10000000 40000000})
REPEAT=${REPEAT:-1}
WORK=${WORK:-/tmp/chorus-bench-parquet}

command -v zstd >/dev/null || { echo "zstd missing (apt-get install zstd)" >&2; exit 2; }
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
need_time
if [ -z "${BIN:-}" ]; then
  BIN=$(release_bin "$PWD" controller)
  cargo build --release --bin controller >&2
fi
mkdir -p "$WORK"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT

# bench RECORDS: the steps above for one size; prints its rows.
bench() {
  local records=$1 per total i s r ms="" mr="" zs="" zr="" es="" er="" tsv pq
  local pids=()
  per=$((records / FILES))
  total=$((per * FILES))
  # The previous size's files: only what this script makes, WORK may be
  # shared.
  rm -rf "$WORK/logs" "$WORK/tmp" "$WORK/timeline.tsv.zst" "$WORK/timeline.parquet"
  mkdir -p "$WORK/logs"
  for i in $(seq 0 $((FILES - 1))); do
    "$BIN" gen-oplog -o "$WORK/logs/agent-$i.tsv.zst" --records "$per" \
      --client "agent-$i" --seed $((i + 1)) &
    pids+=($!)
    if [ ${#pids[@]} -ge 2 ]; then wait "${pids[@]}"; pids=(); fi
  done
  [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"

  for _ in $(seq 1 "$REPEAT"); do
    rm -f "$WORK/timeline.tsv.zst" "$WORK/timeline.parquet"
    read -r s r < <(measure "$BIN" merge "$WORK"/logs/*.tsv.zst -o "$WORK/timeline.tsv.zst" --tmp "$WORK/tmp")
    ms=$(min "$s" "$ms"); mr=$r
    read -r s r < <(measure sh -c "zstd -dc '$WORK/timeline.tsv.zst' >/dev/null")
    zs=$(min "$s" "$zs"); zr=$r
    read -r s r < <(measure "$BIN" export "$WORK/timeline.tsv.zst" --format parquet -o "$WORK/timeline.parquet")
    es=$(min "$s" "$es"); er=$r
    cat "$WORK/out.log" >&2
  done
  row "controller merge ($FILES logs)" "$total" "$ms" "$mr"
  row "zstd -dc timeline.tsv.zst" "$total" "$zs" "$zr"
  row "controller export --format parquet" "$total" "$es" "$er"
  tsv=$(stat -c %s "$WORK/timeline.tsv.zst")
  pq=$(stat -c %s "$WORK/timeline.parquet")
  awk -v t="$tsv" -v p="$pq" -v n="$total" 'BEGIN {
    printf "%d records: timeline.tsv.zst %d bytes (%.1f B/record), timeline.parquet %d bytes (%.1f B/record), parquet/tsv.zst %.2f\n",
      n, t, t / n, p, p / n, p / t }'
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
printf '%-36s %12s %9s %12s %12s\n' "step" "records" "seconds" "M records/s" "peak RSS MiB"
row() { printf '%-36s %12s %9.2f %12s %12d\n' "$1" "$2" "$3" "$(rate "$2" "$3")" $(($4 / 1024)); }
for records in "${sizes[@]}"; do
  bench "$records"
done
