#!/usr/bin/env bash
# large-object.sh: single-object throughput of a 1 GiB GET against a local
# Ceph RGW: Chorus's `parallel` GET (16 ranged GETs of 8 MiB at once)
# against Chorus's plain GET (one request) and against boto3's
# `download_file` (its TransferManager: ranged GETs on threads), measured in
# the same run on the same object (issue 17, part 4).
#
#   scripts/bench/large-object.sh        # ~3 minutes after the build
#
# Steps: start RGW with scripts/servers/rgw.sh (stopped on exit), build the
# release binaries, write the object once (plans/large-prepare), then
# ROUNDS rounds of: plans/large-get, plans/large-pget (each one
# `controller run --embedded 1` of OPS GETs), and boto3 download_file of
# the same object OPS times (max_concurrency 16, 8 MiB chunks, to a file
# on /dev/shm, which it must write) and download_fileobj into a sink that
# drops the bytes (as Chorus does). Throughput is the object's size over
# each GET's latency (Chorus: the summary's mean; boto3: the mean of its
# calls), in MiB/s; ratios are against the parallel GET.
#
# Client and server share this machine's cores, so absolute numbers are a
# loopback RGW's on this machine; the ratios are the point.
#
# Settings (environment):
#   ROUNDS       alternations of the three clients          3
#   OPS          GETs per client per round                   5
#   OUT          where runs and the table go      target/bench/large-<time>
#   SKIP_BUILD=1 use the release binaries as they are
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PLANS="$ROOT/scripts/bench/plans"
ROUNDS=${ROUNDS:-3}
OPS=${OPS:-5}
OUT=${OUT:-$ROOT/target/bench/large-$(date +%Y%m%d-%H%M%S)}
. "$ROOT/scripts/bench/lib.sh"
# The bucket and prefix of the plans; the object's key under it.
TARGET=s3://chorus-bench/large
BUCKET=chorus-bench
KEY=large/big/00000000
SIZE=$((1 << 30))

die() { echo "large-object: $*" >&2; exit 1; }

python3 -c 'import boto3' 2>/dev/null || die "boto3 is needed (scripts/install-bench-deps.sh)"
CONTROLLER=$(release_controller "$ROOT") || die "no release controller"
mkdir -p "$OUT"
start_rgw "$ROOT" "$OUT/rgw-start.log" || die "RGW did not start"
echo "results in $OUT"

# chorus NAME PLAN: one controller run of PLAN into $OUT/NAME.
chorus() {
  local res="$OUT/$1"
  mkdir -p "$res"
  "$CONTROLLER" run "$PLANS/$2" --embedded 1 --target "$TARGET" \
    --results "$res/runs" --quiet >"$res/stdout" 2>"$res/stderr" ||
    { cat "$res/stderr" >&2; die "run $1 ($2) failed"; }
}

# boto3 NAME MODE: OPS downloads of the object; writes the mean seconds
# per download to $OUT/NAME. MODE `file`: download_file to /dev/shm;
# `null`: download_fileobj into a sink that drops the bytes.
boto3_get() {
  python3 - "$OUT/$1" "$2" "$OPS" "$BUCKET" "$KEY" "$SIZE" <<'PY'
import os, sys, time
import boto3
from boto3.s3.transfer import TransferConfig

out, mode, ops, bucket, key, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                  region_name=os.environ.get("AWS_REGION", "us-east-1"))
# As the parallel GET: 8 MiB ranges, 16 at once; boto3's classic
# TransferManager (the CRT one is chosen only on some EC2 instance types).
cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20,
                     max_concurrency=16, preferred_transfer_client="classic")

class Sink:
    def __init__(self): self.n = 0
    def write(self, b): self.n += len(b); return len(b)
    def seek(self, *a): return 0
    def tell(self): return self.n

times = []
for _ in range(ops):
    t0 = time.perf_counter()
    if mode == "file":
        path = "/dev/shm/chorus-bench-large"
        s3.download_file(bucket, key, path, Config=cfg)
        got = os.path.getsize(path)
        os.unlink(path)
    else:
        sink = Sink()
        s3.download_fileobj(bucket, key, sink, Config=cfg)
        got = sink.n
    times.append(time.perf_counter() - t0)
    assert got == size, f"read {got} bytes, expected {size}"
open(out, "w").write(f"{sum(times) / len(times)}\n")
PY
}

echo "prepare: one 1 GiB object ..."
chorus prepare large-prepare.yaml

for r in $(seq 1 "$ROUNDS"); do
  echo "round $r: plain GET, parallel GET, boto3 download_file, boto3 download_fileobj ($OPS each) ..."
  chorus "get-$r" large-get.yaml
  chorus "pget-$r" large-pget.yaml
  boto3_get "boto3-file-$r" file
  boto3_get "boto3-null-$r" null
done

python3 - "$OUT" "$ROUNDS" "$OPS" "$SIZE" <<'PY' | tee "$OUT/table.txt"
import glob, json, os, statistics, sys

out, rounds, ops, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
mib = size / (1 << 20)

def chorus(name):
    s = json.load(open(glob.glob(os.path.join(out, name, "runs", "*", "summary.json"))[0]))
    row = next(r for r in s["stages"][-1]["ops"] if r["op"] == "GET")
    assert row["errors"] == 0 and row["count"] == ops, row
    return mib / (row["latency_us"]["mean"] / 1e6)

def boto(name):
    return mib / float(open(os.path.join(out, name)).read())

clients = [
    ("chorus parallel GET (16 x 8 MiB)", lambda r: chorus(f"pget-{r}")),
    ("chorus plain GET (1 request)", lambda r: chorus(f"get-{r}")),
    ("boto3 download_file (16 x 8 MiB)", lambda r: boto(f"boto3-file-{r}")),
    ("boto3 download_fileobj to a sink", lambda r: boto(f"boto3-null-{r}")),
]
res = {n: [f(r) for r in range(1, rounds + 1)] for n, f in clients}
best = statistics.median(res[clients[0][0]])
w = max(len(n) for n, _ in clients)
print(f"{'client'.ljust(w)}  median MiB/s  rounds (MiB/s)          parallel / this")
for n, _ in clients:
    m = statistics.median(res[n])
    rs = " ".join(f"{v:.0f}" for v in res[n])
    print(f"{n.ljust(w)}  {m:12.0f}  {rs.ljust(22)}  {best / m:6.2f}x")
print(f"\n1 GiB object on a loopback Ceph RGW (memstore), {ops} GETs per client per round, "
      f"{rounds} rounds alternating; MiB/s = object size / mean GET latency; client and "
      f"server share this machine's {os.cpu_count()} cores.")
PY
