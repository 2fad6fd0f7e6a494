#!/usr/bin/env bash
# How many agents one controller drives (issues 5 and 21), and how well
# their clocks and starts line up.
#
# For each N: N agents on loopback, one `controller run` of a prepare and a
# 20 s mem:// workload under /usr/bin/time, on a pseudo-terminal (`script`)
# so that its live view is drawn as a user sees it. Up to REAL_MAX agents
# (default 256) are real `agent` processes; above, simulated ones (`agent
# --simulate`, at most SIM_PER_PROC sessions a process): one process
# serving many agents, each with its own port, gRPC server, session, clock
# and spool. The load stays light so the agents do not starve the
# controller of the host's cores: one worker per agent pausing 50 ms after
# each op (~20 ops/s per agent) up to 1,000 agents, 500 ms above (~2 ops/s,
# 20,000 ops/s in all at 10,000). Closed loop with `think`, not a `rate`:
# an open-loop stage has a pacer thread per agent, which thousands of
# simulated agents on two cores cannot all run. Each agent reads objects
# of its own (N of them, at least 100): simulated agents in different
# processes do not share a mem:// store.
#
# The plan sets `collect_interval: off` (op-logs fetched whole at the end:
# the stage's traffic is the control plane's alone, and collection is timed
# as one step), `agent_timeout: 30s` and `controller_timeout: 60s`
# (thousands of simulated agents start a stage on two shared cores, and
# their reports and heartbeats can be seconds late either way, which is
# the simulator's cost, not a lost agent or controller).
#
# Reported per N:
#   startup_s     launch of `controller run` to the first stage's start
#                 (connect, Hello, LoadPlan, clock sync, the 0.5 s start lead)
#   cpu_s, rss    the controller's CPU (user+sys) and peak RSS over the run
#   skew p50/p99/max  the workload stage's start skew: each agent's first op
#                 issued (clock-corrected) after the earliest one, ms
#   rel_max       its release skew (workers released), max, ms
#   req_lead      how long before the start the last agent's RunStage request
#                 reached it, ms (run.json `request_lead_ms`; negative: after
#                 it). Positive: the controller did its part in time, and the
#                 skew is the agents' own hosts (here, two shared cores)
#   prog/s        progress messages per second at the controller (series.csv
#                 rows of the stage over its duration); heartbeats are N/s
#   draws/s, cols the live view during the stage: redraws per second, and
#                 the widest draw in characters (160 columns: one line)
#   io_KiB/s      the controller's socket and file bytes (rchar + wchar from
#                 /proc) per second in the middle of the stage
#   collect_s     the stage's end to the controller's exit: op-logs fetched,
#                 end clocks, merge, summary, report, sessions ended
# Then the curve: each cost per agent at every N (the reference in the same
# run is N=1). A part linear in agents keeps its per-agent cost flat or
# falling as N grows; a quadratic one would grow with N.
#
#   scripts/bench/agents-scale.sh               # N = 1 256 1000 10000
#   scripts/bench/agents-scale.sh 1 64 1000     # chosen N
#   REAL_MAX=0 scripts/bench/agents-scale.sh    # simulated agents only
set -euo pipefail
cd "$(dirname "$0")/../.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 256 1000 10000)
[ "${counts[0]}" = 1 ] || counts=(1 "${counts[@]}")
REAL_MAX=${REAL_MAX:-256}
SIM_PER_PROC=${SIM_PER_PROC:-5000}
# Simulated agents listen on SIM_PORT and up: below the kernel's ephemeral
# range (32768 and up), so no outgoing connection holds one of them.
SIM_PORT=${SIM_PORT:-20000}

cargo build --release --bins -q
. scripts/bench/lib.sh
need_time
command -v script >/dev/null || { echo "agents-scale.sh needs script (util-linux)"; exit 1; }
agent_bin=$(release_bin "$PWD" agent)
controller_bin=$(release_bin "$PWD" controller)
work=$(mktemp -d /tmp/chorus-scale.XXXXXX)
cleanup() {
  stop_agents
  rm -rf "$work"
}
trap cleanup EXIT
# A socket per agent on both sides, spool files on the agents': 10,000
# agents need more than 20,000 descriptors in all. The binaries raise their
# soft limit to the hard one; this raises the hard one where allowed (root).
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# A simulated agent holds about 4 descriptors (listener, connection, spool
# files): a process of more sessions than its limit allows fails them
# (EMFILE), so processes get at most limit/4 each.
nofile=$(ulimit -n)
[ "$nofile" = unlimited ] || SIM_PER_PROC=$((SIM_PER_PROC < (nofile - 64) / 4 ? SIM_PER_PROC : (nofile - 64) / 4))

# start_simulated N: N simulated agents on SIM_PORT.., in processes of at
# most SIM_PER_PROC; sets AGENT_ADDRS (templates, comma separated).
start_simulated() {
  local n=$1 port=$SIM_PORT i=0 k addr addrs=()
  while [ "$n" -gt 0 ]; do
    k=$((n < SIM_PER_PROC ? n : SIM_PER_PROC))
    "$agent_bin" --simulate "$k" --listen "127.0.0.1:$port" --insecure --id "s$i" \
      --spool "$work/spool-s$i" >"$work/s$i.out" 2>"$work/s$i.log" &
    AGENT_PIDS+=($!)
    addr=$(listening_addr "$work/s$i.out" "$work/s$i.log" "simulator s$i" 600) || return 1
    addrs+=("$addr")
    n=$((n - k)); port=$((port + k)); i=$((i + 1))
  done
  AGENT_ADDRS=$(IFS=,; echo "${addrs[*]}")
}

# sample_io PID FILE: "<epoch s> <rchar+wchar>" of PID every 0.5 s while it lives.
sample_io() {
  local pid=$1 out=$2
  while [ -r "/proc/$pid/io" ]; do
    awk -v t="$(date +%s.%N)" '/^(rchar|wchar):/ {s += $2} END {if (s) print t, s}' \
      "/proc/$pid/io" >>"$out" 2>/dev/null || true
    sleep 0.5
  done
}

duration=20
rows="$work/rows.tsv"
: >"$rows"
for n in "${counts[@]}"; do
  think=$((n > 1000 ? 500 : 50))
  cat >"$work/plan.yaml" <<EOF
name: scale-$n
target: mem://scale
concurrency: 1
objects: {count: $((n > 100 ? n : 100)), size: 1KiB}
control: {collect_interval: off, agent_timeout: 30s, controller_timeout: 60s}
stages:
  - {name: prepare, type: prepare}
  - {name: load, type: workload, mix: {get: 1}, think: ${think}ms, duration: ${duration}s}
EOF
  if [ "$n" -le "$REAL_MAX" ]; then
    kind=real
    start_agents "$agent_bin" "$work" "$n"
  else
    kind=sim
    start_simulated "$n"
  fi
  : >"$work/io-$n"
  t0=$(date +%s.%N)
  # The live view and the notes (stderr) go to the terminal `script`
  # gives it (160 columns), recorded in tty-N; the summary to ctl-N.out. The
  # time's CPU and peak RSS are the controller's (script's are small).
  printf '%s\n' "stty cols 160 rows 50" \
    "exec $controller_bin run $work/plan.yaml --agents '$AGENT_ADDRS' --insecure --results $work/runs-$n >$work/ctl-$n.out" \
    >"$work/ctl-$n.sh"
  /usr/bin/time -f "%U %S %e %M" -o "$work/time-$n" \
    script -qefc "sh $work/ctl-$n.sh" "$work/tty-$n" >/dev/null &
  timer=$!
  ctl=""
  for _ in $(seq 200); do
    ctl=$(pgrep -x controller || true)
    [ -n "$ctl" ] && break
    sleep 0.02
  done
  [ -n "$ctl" ] && sample_io "$ctl" "$work/io-$n" &
  sampler=$!
  wait "$timer" || { echo "controller failed with $n agents:"; tail -c 2000 "$work/tty-$n"; exit 1; }
  wait "$sampler" 2>/dev/null || true
  stop_agents
  read -r user sys wall maxkb <"$work/time-$n"
  run=$(ls -d "$work/runs-$n"/*/)
  python3 - "$run" "$n" "$kind" "$t0" "$user" "$sys" "$wall" "$maxkb" "$work/io-$n" "$duration" \
    "$work/tty-$n" >>"$rows" <<'PY'
import csv, json, re, sys
from datetime import datetime, timezone
run, n, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0, user, sys_, wall, maxkb = map(float, sys.argv[4:9])
io_file, duration, tty = sys.argv[9], float(sys.argv[10]), sys.argv[11]

def ts(s):
    # RFC 3339 with nanoseconds: seconds from the epoch, to the microsecond.
    base, frac = s.rstrip("Z").split(".") if "." in s else (s.rstrip("Z"), "0")
    d = datetime.fromisoformat(base).replace(tzinfo=timezone.utc)
    return d.timestamp() + float("0." + frac)

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

meta = json.load(open(run + "run.json"))
first = meta["stages"][0]
load = [s for s in meta["stages"] if s["name"] == "load"][0]
startup = ts(first["start_at"]) - t0
# On the controller's clock: each agent's time minus its measured offset.
def corrected(key):
    out = []
    for a in load["agents"]:
        if a.get(key) and a.get("clock"):
            out.append(ts(a[key]) - a["clock"]["offset_ns"] / 1e9)
    return out
issued = corrected("first_issued")
released = corrected("started")
skews = [(t - min(issued)) * 1e3 for t in issued]
rel_max = (max(released) - min(released)) * 1e3
lead = load.get("request_lead_ms")
lead = float("nan") if lead is None else lead
ended = max(corrected("ended"))
collect = t0 + wall - ended
start = ts(load["start_at"])
rows = 0
with open(run + "series.csv") as f:
    for r in csv.DictReader(f):
        rows += r["stage"] == "load" and r["agent"] != "*"
prog = rows / duration
# The controller's bytes per second in the middle of the stage.
samples = [tuple(map(float, l.split())) for l in open(io_file) if l.strip()]
mid = [s for s in samples if start + 3 <= s[0] <= start + duration - 2]
io = (mid[-1][1] - mid[0][1]) / (mid[-1][0] - mid[0][0]) / 1024 if len(mid) > 1 else float("nan")
# The live view: each draw clears the line (ESC[2K) and writes the bar;
# the load stage's draws are those of its bar.
ansi = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
draws = [ansi.sub(b"", d.split(b"\n")[0]).replace(b"\r", b"").rstrip()
         for d in open(tty, "rb").read().split(b"\x1b[2K")]
draws = [d for d in draws if d.lstrip().startswith(b"load [")]
draws_s = len(draws) / duration
cols = max((len(d) for d in draws), default=0)
print("\t".join(str(x) for x in [
    n, kind, f"{startup:.2f}", f"{user + sys_:.2f}", f"{maxkb / 1024:.0f}",
    f"{pct(skews, 0.5):.2f}", f"{pct(skews, 0.99):.2f}", f"{max(skews):.2f}",
    f"{rel_max:.2f}", f"{lead:.1f}", f"{prog:.0f}", f"{io:.0f}", f"{collect:.2f}",
    f"{draws_s:.1f}", cols]))
PY
  tail -1 "$rows"
done

echo
printf '%-7s %-5s %9s %7s %8s %9s %9s %9s %9s %8s %7s %9s %9s %7s %5s\n' agents kind startup_s \
  cpu_s rss_MiB skew_p50 skew_p99 skew_max rel_max req_lead prog/s io_KiB/s collect_s draws/s cols
while IFS=$'\t' read -r n kind su cpu rss p50 p99 max rel lead prog io col draws cols; do
  printf '%-7s %-5s %9s %7s %8s %9s %9s %9s %9s %8s %7s %9s %9s %7s %5s\n' "$n" "$kind" "$su" \
    "$cpu" "$rss" "$p50" "$p99" "$max" "$rel" "$lead" "$prog" "$io" "$col" "$draws" "$cols"
done <"$rows"
echo
echo "per extra agent, against N=1 (flat or falling as N grows: linear in agents):"
python3 - "$rows" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
one = rows[0]
f = lambda r, i: float(r[i])
print(f"{'agents':<7} {'startup_ms':>10} {'cpu_ms':>8} {'rss_KiB':>8} {'io_B/s':>8} {'collect_ms':>10}")
for r in rows[1:]:
    n = int(r[0]) - 1
    print(f"{r[0]:<7} {(f(r, 2) - f(one, 2)) * 1e3 / n:>10.2f} {(f(r, 3) - f(one, 3)) * 1e3 / n:>8.2f} "
          f"{(f(r, 4) - f(one, 4)) * 1024 / n:>8.0f} {(f(r, 11) - f(one, 11)) * 1024 / n:>8.0f} "
          f"{(f(r, 12) - f(one, 12)) * 1e3 / n:>10.2f}")
PY
