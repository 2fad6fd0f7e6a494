#!/usr/bin/env bash
# Open-loop precision, A/B: how late open-loop ops start (and so how much
# latency the engine itself adds to them) against closed-loop latency in
# the same run, and the CPU it costs, for this tree and a base build
# (default: the merge-base with main), run alternately round after round
# on the same machine (it is shared and noisy: compare ratios and medians).
#
#   scripts/bench/open-loop.sh [BASE_REF]
#
# Knobs: CHORUS_OL_AB_ROUNDS (default 3), CHORUS_OL_PROFILE (release, or
# dev for a quick look), and the bench's own CHORUS_OL_RATES (default
# 100,1000,10000,100000 ops/s), CHORUS_OL_SECS (3), CHORUS_OL_TARGETS
# (mem,file). The bench is common/benches/open_loop.rs, copied into the
# base tree so both builds measure alike; it uses only `run_stage`.
#
# Each row: GET latency p50/p99 from the slot, mean lag (issued - slot) from
# the schedule report, process CPU (% of one core, µs per op), and the
# open-loop p50 over the closed-loop p50 of the same round (1 worker).
#
# Results (RESULTS below, filled in by hand from a run; see the commit).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
base_ref=${1:-$(git merge-base HEAD main)}
rounds=${CHORUS_OL_AB_ROUNDS:-3}
profile=${CHORUS_OL_PROFILE:-release}
work=$(mktemp -d /tmp/chorus-open-loop.XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/base"
git archive "$base_ref" | tar -x -C "$work/base"
cp common/benches/open_loop.rs "$work/base/common/benches/open_loop.rs"
grep -q '^name = "open_loop"' "$work/base/common/Cargo.toml" ||
  printf '\n[[bench]]\nname = "open_loop"\nharness = false\n' >>"$work/base/common/Cargo.toml"

# build TREE NAME: builds the bench in TREE and copies it to $work/NAME.
build() {
  local exe
  # Both trees build the same package into one target dir, where cargo
  # tells fresh from stale by file times (and `git archive` leaves old
  # ones): newer sources make it rebuild the crate from this tree.
  find "$1/common" -name '*.rs' -exec touch {} +
  exe=$(cd "$1" && cargo bench -p chorus-common --profile "$profile" --bench open_loop \
    --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.executable != null and .target.name == "open_loop") | .executable' | tail -1)
  [ -n "$exe" ] || { echo "build of $1 failed" >&2; exit 1; }
  cp "$exe" "$work/$2.bin"
}
# A shared target dir keeps the dependencies built once.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
echo "building base ($base_ref) and this tree ($(git rev-parse --short HEAD)), profile $profile" >&2
build "$work/base" base
build "$root" this

out=$work/rows
for r in $(seq 1 "$rounds"); do
  order="base this"
  [ $((r % 2)) -eq 0 ] && order="this base"
  for b in $order; do
    echo "round $r: $b" >&2
    CHORUS_OL_LABEL=$b CHORUS_OL_ROUNDS=1 "$work/$b.bin" | tee -a "$out"
  done
done

echo
echo "medians over $rounds rounds (base = $base_ref):"
python3 - "$out" <<'PY'
import sys, statistics as st
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 11 or f[0] not in ("base", "this"):
        continue
    key = (f[1], f[3])
    rows.setdefault(key, {}).setdefault(f[0], []).append([float(x) for x in f[5:]])
cols = ["p50 µs", "p99 µs", "lag µs", "CPU %", "CPU µs/op", "p50/closed"]
print(f"{'store':<5} {'mode':>7} {'build':<5} " + " ".join(f"{c:>10}" for c in cols))
def order(k):
    return (k[0], -1 if k[1] == "closed" else int(k[1]))
for key in sorted(rows, key=order):
    for b in ("base", "this"):
        v = rows[key].get(b)
        if not v:
            continue
        med = [st.median(c) for c in zip(*v)]
        print(f"{key[0]:<5} {key[1]:>7} {b:<5} " + " ".join(f"{m:>10.1f}" for m in med))
PY
