#!/usr/bin/env python3
"""Merges the logs of pgbench processes run side by side into one pgbench-like log.

bench/pg_overhead.sh runs its per-client rows as N pgbench processes with one connection
each (a grant carries one session at a time, so the gated path needs one credential per
connection, and pgbench has one user per process). This prints the summary lines
pgbench_report.py reads, computed over all processes, followed by every process's own log:

    tps                 sum of the processes' tps (without initial connection time)
    latency average     mean over all transactions (each process's average weighted by its
                        transaction count)
    latency stddev      pooled over all transactions
    initial connection  mean over the processes
    transactions        sums (processed, failed)
    login retries       lines "<pg_overhead|masking|recording>: retry ..." (a process
                        restarted because its grant was still in use at login, see
                        pg_overhead.sh pgbench_client)

A summary number is left out when any process lacks it (a failed run stays failed).
Exit 1 if a log cannot be read. Standard library only.

    pgbench_merge.py run.log.0 run.log.1 ... > run.log
"""

from __future__ import annotations

import math
import re
import sys


def num(text: str, pattern: str) -> float | None:
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else None


def main(paths: list[str]) -> int:
    logs = []
    for p in paths:
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                logs.append(f.read())
        except OSError as e:
            print(f"pgbench_merge: {e}", file=sys.stderr)
            return 1
    runs = [{
        "tps": num(t, r"^tps = ([0-9.]+)"),
        "lat": num(t, r"^latency average = ([0-9.]+) ms"),
        "sd": num(t, r"^latency stddev = ([0-9.]+) ms"),
        "conn": num(t, r"^(?:average connection time|initial connection time) = ([0-9.]+) ms"),
        "n": num(t, r"^number of transactions actually processed: ([0-9]+)"),
        "failed": num(t, r"^number of failed transactions: ([0-9]+)"),
    } for t in logs]

    def have(k: str) -> bool:
        return bool(runs) and all(r[k] is not None for r in runs)

    retries = sum(len(re.findall(r"^(?:pg_overhead|masking|recording): retry", t, re.MULTILINE))
                  for t in logs)
    out = [f"merged from {len(runs)} pgbench processes run side by side (-c 1 each)",
           f"number of clients: {len(runs)}",
           f"login retries: {retries}"]
    if have("n"):
        n = sum(r["n"] for r in runs)
        out.append(f"number of transactions actually processed: {int(n)}")
        if have("failed"):
            failed = sum(r["failed"] for r in runs)
            pct = 100.0 * failed / (n + failed) if n + failed else float("nan")
            out.append(f"number of failed transactions: {int(failed)} ({pct:.3f}%)")
        if have("lat") and n > 0:
            mean = sum(r["lat"] * r["n"] for r in runs) / n
            out.append(f"latency average = {mean:.3f} ms")
            if have("sd"):
                var = sum(r["n"] * (r["sd"] ** 2 + (r["lat"] - mean) ** 2) for r in runs) / n
                out.append(f"latency stddev = {math.sqrt(var):.3f} ms")
    if have("conn"):
        out.append(f"initial connection time = {sum(r['conn'] for r in runs) / len(runs):.3f} ms")
    if have("tps"):
        out.append(f"tps = {sum(r['tps'] for r in runs):.6f} (without initial connection time)")
    print("\n".join(out))
    for i, t in enumerate(logs):
        print(f"\n---- process {i} ----")
        print(t.rstrip("\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
