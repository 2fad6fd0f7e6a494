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
# Measured 2026-12-06 (2-core VM shared with other builds, load 4-6;
# release; base f1b1b85 = tokio's timer, this = the pacer thread;
# medians of 3 alternated rounds; 16 workers, Poisson; closed loop is 1
# worker; lag = mean of issued - slot from the schedule report):
#
#   store  ops/s   build  p50 µs  p99 µs  lag µs  CPU %  CPU µs/op  p50/closed
#   mem    closed  base      0.3     0.7       -    6.8       0.4      1
#   mem    closed  this      0.3     0.6       -    7.5       0.4      1
#   mem       100  base   1116.2  8970.2  1448.8    1.0     107.0   4149
#   mem       100  this     40.6  3233.8   101.9    0.9      98.6    119
#   mem      1000  base   1088.5  4411.4  1142.6    2.2      22.7   3974
#   mem      1000  this      5.4  2009.1    61.7    4.5      46.4     21
#   mem     10000  base   1079.3 13746.2  1373.5    5.4       5.5   4005
#   mem     10000  this     16.7  3346.4   221.5   30.0      31.0     62
#   mem    100000  base   1108.0 20086.8  1579.8   12.1       1.2   4119
#   mem    100000  this     67.4  5353.5   801.8   79.4       8.2    251
#   file   closed  base      1.1     5.6       -   20.4       1.6      1
#   file   closed  this      1.0     5.0       -   17.9       1.5      1
#   file      100  base   1126.4  5505.0  1226.3    0.6      70.7   1006
#   file      100  this     59.8  5799.9   199.2    1.0     113.0     53
#   file     1000  base   1122.3  4440.1  1217.7    2.4      24.7   1002
#   file     1000  this     23.3  2848.8   163.9    6.1      62.2     21
#   file    10000  base   1097.7  4122.6  1169.8    7.6       7.9    980
#   file    10000  this     30.5  1196.0    74.0   35.1      36.2     29
#   file   100000  base   1175.6 33341.4  2286.3   23.3       2.4   1046
#   file   100000  this    173.8  8036.4  1015.9   69.4       7.2    148
#
# So: open-loop p50 from the slot falls from ~1.1 ms (the timer) to
# 5-70 µs on mem:// (to 20-170 µs on file://), at every rate; p99 and
# the mean lag are set by the host's scheduler stalls (this VM is
# oversubscribed), which both builds suffer. The price is CPU per op:
# a thread wake and a cross-thread task wake each op (a VM makes those
# dear: ~10-25 µs), where tokio's timer batched ~1 ms of ops per wake:
# +24 µs/op at 1k ops/s (+2% of a core), +25 µs/op at 10k (+25%), +7 µs/op
# at 100k (+65%). The ways of waiting compared: see common/benches/
# pacer_options.rs.
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
