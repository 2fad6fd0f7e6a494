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
# Measured 2026-12-06 on a 2-core VM, release, base f1b1b85 (tokio's
# timer) against this tree (the pacer thread), medians of 3 alternated
# rounds; 16 workers, Poisson arrivals; closed loop is 1 worker; lag is
# the schedule report's mean of issued - slot. Quiet host (load < 1):
#
#   store  ops/s   build  p50 µs  p99 µs  lag µs  CPU %  CPU µs/op  p50/closed
#   mem    closed  base      0.3     0.5       -    7.4       0.4      1
#   mem    closed  this      0.3     0.7       -    8.6       0.5      1
#   mem       100  base   1130.5  2005.0  1104.7    0.7      81.9   4398
#   mem       100  this    111.8   274.2   103.1    1.3     139.6    337
#   mem      1000  base   1087.5  1998.8  1081.1    3.1      31.9   4151
#   mem      1000  this     36.4   234.8    50.8    7.2      74.3    133
#   mem     10000  base   1060.9  1979.4  1061.7    6.5       6.7   4061
#   mem     10000  this     28.0   193.7    44.4   37.6      38.7    106
#   mem    100000  base   1094.7  2162.7  1104.1   15.1       1.6   4198
#   mem    100000  this     43.6   138.6    49.6  108.3      11.2    169
#   file   closed  base      1.4     6.7       -   24.9       2.0      1
#   file   closed  this      1.1     5.9       -   20.7       1.5      1
#   file      100  base   1154.0  2065.4  1129.2    0.8      93.7    848
#   file      100  this     89.2   252.4    80.4    1.2     128.6     87
#   file     1000  base   1088.5  1985.5  1088.1    3.9      40.2    800
#   file     1000  this     29.9   172.9    34.9    6.8      69.8     26
#   file    10000  base   1074.2  1991.7  1072.5    8.1       8.4    785
#   file    10000  this     32.1   166.4    39.4   40.1      41.4     32
#   file   100000  base   1146.9  2383.9  1161.5   26.6       2.8    846
#   file   100000  this     48.1   211.5    60.1  120.1      12.4     41
#
# Loaded host (load 4-6, other builds), same medians for mem://:
#   100: base 1116 µs p50 / 1449 µs lag, this 41 / 102;  1000: 1089 / 1143,
#   this 5.4 / 62;  10000: 1079 / 1374, this 17 / 222;  100000: 1108 /
#   1580, this 67 / 802; p99s 2-20 ms in both (scheduler stalls).
#
# So: open-loop p50 from the slot falls from ~1.1 ms (the timer) to
# 30-110 µs (quiet) and 5-70 µs (busy: CPUs never idle, so wakes are
# quicker), p99 from ~2 ms to ~0.15-0.27 ms, at every rate, on mem:// and
# file://. The price is CPU per op: a thread wake and a cross-thread task
# wake per op, where tokio's timer woke once per ~1 ms tick for all the
# ops due in it. On this VM (wakes of idle vCPUs are dear): +40 µs/op at
# 1k ops/s (+4% of a core), +32 µs/op at 10k (+31%), +10 µs/op at 100k
# (+93%). The ways of waiting compared: common/benches/pacer_options.rs.
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
