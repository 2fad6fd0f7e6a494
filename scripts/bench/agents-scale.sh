#!/usr/bin/env bash
# How many agents one controller drives (issue 5), and how well their
# clocks and starts line up.
#
# For each N: N real `agent` processes on loopback, one `controller run` of
# a prepare and a 20 s open-loop mem:// workload (20 ops/s per agent, so the
# agents themselves stay light on a 2-core machine), under /usr/bin/time.
# Reported per N: the controller's CPU (user+sys seconds, and as % of one
# core over the run), its peak RSS, the workload stage's start skew (first
# ops issued: in open loop later than their slot, which is the start) and
# release skew (when each
# agent's timer really fired and released its workers), and the clock
# offsets measured before it. All agents share this host's clock,
# so the true offset is 0 and each measured offset is its own error.
# The reference in the same run is N=1: CPU and memory per extra agent are
# reported against it.
#
#   scripts/bench/agents-scale.sh            # N = 1 16 64 256
#   scripts/bench/agents-scale.sh 1 16       # chosen N
set -euo pipefail
cd "$(dirname "$0")/../.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 16 64 256)
[ "${counts[0]}" = 1 ] || counts=(1 "${counts[@]}")

cargo build --release --bins -q
. scripts/bench/lib.sh
agent_bin=$(release_bin "$PWD" agent)
controller_bin=$(release_bin "$PWD" controller)
work=$(mktemp -d /tmp/chorus-scale.XXXXXX)
cleanup() {
  stop_agents
  rm -rf "$work"
}
trap cleanup EXIT
# 256 agents each hold a few sockets and files.
ulimit -n 65536 2>/dev/null || true

printf '%-6s %8s %7s %8s %13s %15s %14s %15s %13s\n' agents cpu_s cpu_% rss_MiB start_skew_ms release_skew_ms max_off_err_ms mean_off_err_ms max_uncert_ms
declare -A cpu rss
for n in "${counts[@]}"; do
  rate=$((n * 20))
  cat >"$work/plan.yaml" <<EOF
name: scale-$n
target: mem://scale
concurrency: 1
objects: {count: 100, size: 1KiB}
stages:
  - {name: prepare, type: prepare}
  - {name: load, type: workload, mix: {get: 1}, rate: $rate, arrivals: fixed, duration: 20s}
EOF
  start_agents "$agent_bin" "$work" "$n"
  /usr/bin/time -f "%U %S %e %M" -o "$work/time-$n" \
    "$controller_bin" run "$work/plan.yaml" --agents "$AGENT_ADDRS" --insecure --quiet \
    --results "$work/runs-$n" >"$work/ctl-$n.out" 2>"$work/ctl-$n.err" \
    || { echo "controller failed with $n agents:"; tail -5 "$work/ctl-$n.err"; exit 1; }
  stop_agents
  read -r user sys wall maxkb <"$work/time-$n"
  run=$(ls -d "$work/runs-$n"/*/)
  python3 - "$run/run.json" "$n" "$user" "$sys" "$wall" "$maxkb" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
n, user, sys_, wall, maxkb = int(sys.argv[2]), *map(float, sys.argv[3:7])
load = [s for s in meta["stages"] if s["name"] == "load"][0]
clocks = [a["clock"] for a in load["agents"] if a.get("clock")]
errs = [abs(c["offset_ns"]) / 1e6 for c in clocks]
unc = [c["uncertainty_ns"] / 1e6 for c in clocks]
cpu = user + sys_
print(f"{n:<6} {cpu:8.2f} {100 * cpu / wall:7.1f} {maxkb / 1024:8.1f} "
      f"{load['start_skew_ms'] or 0:13.3f} {load['release_skew_ms'] or 0:15.3f} "
      f"{max(errs):14.3f} {sum(errs) / len(errs):15.3f} {max(unc):13.3f}")
PY
  cpu[$n]=$(echo "$user + $sys" | bc -l)
  rss[$n]=$maxkb
done
for n in "${counts[@]}"; do
  [ "$n" = 1 ] && continue
  python3 -c "
n, c1, cn, r1, rn = $n, ${cpu[1]}, ${cpu[$n]}, ${rss[1]}, ${rss[$n]}
print(f'{n} agents vs 1: controller CPU x{cn / c1:.2f} ({(cn - c1) / (n - 1) * 1000:.1f} ms per extra agent over the run), '
      f'RSS x{rn / r1:.2f} ({(rn - r1) / (n - 1):.0f} KiB per extra agent)')"
done
