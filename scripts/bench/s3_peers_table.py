"""The table of scripts/bench/s3-peers.sh, from its results.tsv.

    python3 s3_peers_table.py RESULTS PHASE_SECONDS REPEAT

Each row: one size, op, concurrency and client, its medians over the
rounds: ops/s, MiB/s, client CPU us/op, server (RGW+OSD+mon) CPU us/op.
Chorus's rows add its ratio to the best peer at that point: for ops/s the
peer with the highest median ops/s, for each CPU the peer with the lowest
median CPU per op; each ratio is the median over rounds of the same
round's Chorus / peer values (paired medians).
"""

import statistics
import sys
from collections import defaultdict

path, secs, repeat = sys.argv[1], sys.argv[2], sys.argv[3]
runs = defaultdict(dict)  # (size, op, conc) -> client -> round -> metrics
for line in open(path):
    f = line.rstrip("\n").split("\t")
    if len(f) < 11:
        continue
    size, op, conc, client, rnd = f[:5]
    ops, errors, nbytes, seconds, cpu, server = (float(x) for x in f[5:11])
    n = max(ops, 1)
    runs[(size, op, int(conc))].setdefault(client, {})[rnd] = {
        "ops_s": ops / seconds if seconds else 0.0,
        "mib_s": nbytes / seconds / 2**20 if seconds else 0.0,
        "cpu": cpu / n * 1e6,
        "server": server / n * 1e6,
        "errors": errors,
    }

ORDER = {"4k": 0, "1m": 1, "64m": 2}
med = statistics.median


def paired(a, b, key):
    r = [a[k][key] / b[k][key] for k in a if k in b and b[k][key]]
    return med(r) if r else float("nan")


hdr = ["size", "op", "conc", "client", "ops/s", "MiB/s", "client µs/op",
       "server µs/op", "errors", "chorus÷best ops/s", "chorus÷best client µs/op",
       "chorus÷best server µs/op"]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for (size, op, conc) in sorted(runs, key=lambda k: (ORDER.get(k[0], 9), k[1], k[2])):
    by = runs[(size, op, conc)]
    m = {c: {k: med(r[k] for r in rr.values()) for k in
             ("ops_s", "mib_s", "cpu", "server")} for c, rr in by.items()}
    errs = {c: sum(r["errors"] for r in rr.values()) for c, rr in by.items()}
    peers = [c for c in m if c != "chorus"]
    for c in sorted(m, key=lambda c: (c != "chorus", c)):
        ratios = ["", "", ""]
        if c == "chorus" and peers:
            best_ops = max(peers, key=lambda p: m[p]["ops_s"])
            best_cpu = min(peers, key=lambda p: m[p]["cpu"])
            best_srv = min(peers, key=lambda p: m[p]["server"])
            ratios = [f"{paired(by['chorus'], by[best_ops], 'ops_s'):.2f} ({best_ops})",
                      f"{paired(by['chorus'], by[best_cpu], 'cpu'):.2f} ({best_cpu})",
                      f"{paired(by['chorus'], by[best_srv], 'server'):.2f} ({best_srv})"]
        v = m[c]
        print(f"| {size} | {op} | {conc} | {c} | {v['ops_s']:.0f} | {v['mib_s']:.1f} | "
              f"{v['cpu']:.0f} | {v['server']:.0f} | {errs[c]:.0f} | " + " | ".join(ratios) + " |")
print(f"\n{secs} s phases, {repeat} round(s), medians; µs/op = CPU microseconds "
      "(user+sys) per op; server = RGW + OSD + mon; client and server share "
      "the machine's cores.")
