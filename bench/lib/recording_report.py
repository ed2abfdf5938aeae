#!/usr/bin/env python3
"""Turns the results of bench/recording.sh into a table, target checks and JSON.

Input: --results, the directory recording.sh filled:
    runs.tsv          one line per measured pgbench run: row_id protocol clients target rep
                      exit_code log_bytes_before log_bytes_after sessions_recorded start_no
                      syncs (bytes: the audit log's segment files before and after the run,
                      and the sessions the gateway's index has as started during it, for the
                      recording targets; syncs: the gateway's fdatasync + fsync calls during
                      the run, from perf, tracegate targets, "" when not counted), with the
                      merged log of each run at <row_id>-<target>-<rep>.log and every pgbench
                      process's per-transaction log (pgbench -l) at
                      <row_id>-<target>-<rep>.log.<process>.txn.<pid>
    starts.tsv        one line per gateway start: target rep start_no started(0|1)
                      alive_at_stop(0|1) stop_seconds
    tracegate-<mode>-<rep>.log   the gateway's log of that start (log_level: warn)
    audit-<mode>.yaml            the audit: section it ran with
and the run's parameters in BENCH_* environment variables. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import math
import os
import platform
import re
import sys
from typing import Any

from pgbench_report import env, fmt, machine_info, median, parse_log, ratio, tail_of
from result_paths import scrub

TARGET_ORDER = ("direct", "tracegate+off", "tracegate+batched", "tracegate+strict")
SHORT = {"direct": "direct", "tracegate+off": "off", "tracegate+batched": "batched",
         "tracegate+strict": "strict"}
OFF, BATCHED, STRICT = "tracegate+off", "tracegate+batched", "tracegate+strict"
RECORDING = (BATCHED, STRICT)

# The issue's targets: (target, clients, minimum tps ratio to direct)
TPS_TARGETS = ((BATCHED, 8, 0.75), (STRICT, 8, 0.55), (STRICT, 32, 0.70))
P50_CLIENTS = 8            # strict p50 - off p50 <= one fdatasync + P50_SLACK_US, at 8 clients
P50_SLACK_US = 100.0


def table(headers: list[str], rows: list[list[str]], left: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def num(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def percentile(sorted_values: list[int], q: float) -> float | None:
    """Nearest rank."""
    if not sorted_values:
        return None
    return float(sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)])


def txn_latencies(results: str, base: str) -> tuple[list[int], set[int], int]:
    """Latencies (us) of every transaction in the per-transaction logs of one run, the
    process indexes that left a log, and how many log files there were (a process whose
    start was retried leaves one per attempt)."""
    pattern = re.compile(rf"^{re.escape(base)}\.(\d+)\.txn\.\d+(?:\.\d+)?$")
    lat: list[int] = []
    procs: set[int] = set()
    files = 0
    for path in glob.glob(os.path.join(glob.escape(results), glob.escape(base) + ".*.txn.*")):
        m = pattern.match(os.path.basename(path))
        if not m:
            continue
        files += 1
        procs.add(int(m.group(1)))
        with open(path, encoding="utf-8", errors="replace") as f:
            for ln in f:
                # client_id transaction_no time(us | failed | skipped) script_no epoch us ...
                parts = ln.split(None, 3)
                if len(parts) >= 3 and parts[2].isdigit():
                    lat.append(int(parts[2]))
    lat.sort()
    return lat, procs, files


def load_tsv(path: str, width: int) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8") as f:
            return [(ln.rstrip("\n").split("\t") + [""] * width)[:width] for ln in f if ln.strip()]
    except OSError:
        return []


def runs_section(results: str) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    rows: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for (rid, proto, clients, target, rep, rc, b0, b1, nsess, start_no,
         syncs) in load_tsv(os.path.join(results, "runs.tsv"), 11):
        row = rows.setdefault(rid, {"id": rid, "protocol": proto, "clients": int(clients),
                                    "pgbench_args": f"{clients} x pgbench -n -M {proto} -c 1 "
                                    f"-j 1 -T {env('DURATION')} -P {env('DURATION')} -l -f "
                                    "bench/trace_fetch_grant.sql -D tid=<trace>",
                                    "runs": {}})
        base = f"{rid}-{target}-{rep}.log"
        run = parse_log(os.path.join(results, base))
        run["rep"] = int(rep)
        run["exit_code"] = int(rc)
        run["ok"] = int(rc) == 0 and run.get("tps") is not None and not run.get("failed")
        if start_no:
            run["gateway_start"] = int(start_no)
        if syncs:
            run["syncs"] = int(syncs)
            if run.get("transactions") and int(syncs):
                run["txn_per_sync"] = run["transactions"] / int(syncs)
        lat, procs, files = txn_latencies(results, base)
        run["latency_samples"] = len(lat)
        run["latency_logs"] = files
        run["p50_ms"] = percentile(lat, 0.50) / 1000 if lat else None
        run["p90_ms"] = percentile(lat, 0.90) / 1000 if lat else None
        run["p99_ms"] = percentile(lat, 0.99) / 1000 if lat else None
        run["max_ms"] = lat[-1] / 1000 if lat else None
        # every process's log gathered, and every transaction pgbench counted is in them
        run["latency_log_complete"] = (len(procs) == int(clients)
                                       and run.get("transactions") == len(lat))
        if run["ok"] and not run["latency_log_complete"]:
            problems.append(f"{rid} via {target} rep {rep}: per-transaction logs of "
                            f"{len(procs)}/{clients} processes, {len(lat)} latencies for "
                            f"{run.get('transactions')} transactions (p50/p99 from what there is)")
        before, after = num(b0), num(b1)
        if before is not None and after is not None:
            grown = int(after - before)
            run["log_bytes"] = grown
            run["log_bytes_before"] = int(before)
            if run.get("transactions"):
                run["bytes_per_txn"] = grown / run["transactions"]
            run["bytes_per_session"] = grown / int(clients)
            if nsess:
                run["sessions_recorded"] = int(nsess)
                if int(nsess):
                    run["bytes_per_recorded_session"] = grown / int(nsess)
        if not run["ok"]:
            problems.append(f"{rid} via {target} rep {rep}: exit {rc}"
                            + (f": {run['errors'][0]}" if run.get("errors") else ""))
        row["runs"].setdefault(target, []).append(run)

    out_rows: list[dict[str, Any]] = []
    table_rows: list[list[str]] = []
    for row in rows.values():
        res: dict[str, dict[str, Any]] = {}
        for t in TARGET_ORDER:
            runs = row["runs"].get(t)
            if not runs:
                continue
            ok = [r for r in runs if r["ok"]]
            res[t] = {k: median([r.get(k) for r in ok]) for k in (
                "tps", "latency_ms", "latency_stddev_ms", "p50_ms", "p90_ms", "p99_ms",
                "connection_ms", "transactions", "syncs", "txn_per_sync", "log_bytes",
                "bytes_per_txn",
                "bytes_per_session", "sessions_recorded", "bytes_per_recorded_session")}
            res[t] |= {"reps_ok": len(ok), "reps": len(runs),
                       "runs": [{k: v for k, v in r.items() if v is not None} for r in runs]}
        tps = {t: res.get(t, {}).get("tps") for t in TARGET_ORDER}
        p50 = {t: res.get(t, {}).get("p50_ms") for t in TARGET_ORDER}
        ratios = {f"{SHORT[t]}_to_direct": ratio(tps[t], tps["direct"]) for t in TARGET_ORDER[1:]}
        ratios |= {"batched_to_off": ratio(tps[BATCHED], tps[OFF]),
                   "strict_to_off": ratio(tps[STRICT], tps[OFF])}
        p50_added_us = {f"{SHORT[t]}_minus_off": (p50[t] - p50[OFF]) * 1000
                        for t in RECORDING if p50[t] is not None and p50[OFF] is not None}
        out_rows.append({k: v for k, v in row.items() if k != "runs"}
                        | {"results": res, "ratios": ratios, "p50_added_us": p50_added_us})
        for t in TARGET_ORDER:
            if t not in res:
                continue
            r = res[t]
            rec = t in RECORDING
            table_rows.append([
                row["protocol"], str(row["clients"]), t,
                fmt(r["tps"], ".0f") if r["reps_ok"] else "FAILED",
                fmt(ratio(r["tps"], tps["direct"]), ".3f"),
                fmt(r["latency_ms"], ".3f"), fmt(r["p50_ms"], ".3f"), fmt(r["p99_ms"], ".3f"),
                fmt(r["syncs"], ".0f"), fmt(r["txn_per_sync"], ".1f"),
                fmt(r["log_bytes"] / 1e3 if rec and r["log_bytes"] is not None else None, ".0f"),
                fmt(r["transactions"], ".0f"),
                fmt(r["bytes_per_txn"] if rec else None, ".0f"),
                fmt(r["bytes_per_session"] / 1e3 if rec and r["bytes_per_session"] is not None
                    else None, ".1f"),
                fmt(r["sessions_recorded"] if rec else None, ".0f"),
            ])
    lines: list[str] = []
    if table_rows:
        lines.append(f"fetch one 8 KB trace by id through a grant (statement gate): median of "
                     f"{env('REPS')} x {env('DURATION')} s, targets interleaved per repetition, "
                     "tracegate restarted for each recording mode; every target runs its "
                     "clients as that many pgbench processes of one connection (one session "
                     "each); tps summed; latency in ms over all transactions (avg from pgbench, "
                     "p50/p99 from the per-transaction logs)")
        lines.append(f"fetched trace {env('ONE_TRACE_ID')} ({env('ONE_ROW_BYTES')} bytes as "
                     "text); syncs = the gateway's fdatasync + fsync calls during the run "
                     "(perf; audit log and state database), txn/sync = transactions per sync "
                     "(group commit); log KB = growth of the audit log's segment files over "
                     "the run (10^3 bytes), B/txn = that / transactions, KB/session = that / "
                     "pgbench processes, sessions = sessions recorded (pgbench's setup "
                     "connections and retried logins included)")
        lines += table(["proto", "cl", "target", "tps", "/direct", "lat avg", "p50", "p99",
                        "syncs", "txn/sync", "log KB", "txns", "B/txn", "KB/session",
                        "sessions"],
                       table_rows, {0, 2})
    return lines, out_rows, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--strict", default="0")
    args = ap.parse_args()

    skipped = {}
    for line in env("SKIPPED").splitlines():
        if "\t" in line:
            t, reason = line.split("\t", 1)
            skipped[t] = reason

    run_lines, rows, problems = runs_section(args.results)
    fsync_p50 = num(env("FSYNC_P50_US"))
    fsync = {"median_us": fsync_p50, "p90_us": num(env("FSYNC_P90_US")),
             "min_us": num(env("FSYNC_MIN_US")), "max_us": num(env("FSYNC_MAX_US")),
             "samples": num(env("FSYNC_SAMPLES")), "bytes_per_write": num(env("FSYNC_BYTES")),
             "filesystem": env("FSYNC_FS"), "device": env("FSYNC_DEV"),
             "what": "os.write(4 KB, O_APPEND) + os.fdatasync on a new file in "
                     "$WORK/tracegate (the audit directories' filesystem), each pair timed, "
                     "5 unrecorded first"}

    starts = []
    for target, rep, start_no, started, alive, stop_s in load_tsv(
            os.path.join(args.results, "starts.tsv"), 6):
        mode = target.split("+", 1)[-1]
        entry: dict[str, Any] = {"target": target, "rep": int(rep), "start": int(start_no),
                                 "started": started == "1",
                                 "alive_after_runs": {"1": True, "0": False}.get(alive),
                                 "stop_seconds": num(stop_s)}
        log_lines = tail_of(os.path.join(args.results, f"tracegate-{mode}-{rep}.log"))
        if log_lines:
            entry["log_tail"] = log_lines
        starts.append(entry)

    print()
    if run_lines:
        print("\n".join(run_lines))
        print()
    p50_lines = []
    for r in rows:
        added = r["p50_added_us"]
        if "strict_minus_off" in added or "batched_minus_off" in added:
            p50_lines.append(
                f"  {r['protocol']}, {r['clients']} clients: strict - off "
                f"{fmt(added.get('strict_minus_off'), '+.0f')} us, batched - off "
                f"{fmt(added.get('batched_minus_off'), '+.0f')} us")
    print(f"one fdatasync ({fsync['filesystem']}, {fsync['device']}; write "
          f"{fmt(fsync['bytes_per_write'], '.0f')} B + fdatasync, median of "
          f"{fmt(fsync['samples'], '.0f')}): {fmt(fsync_p50, '.0f')} us (p90 "
          f"{fmt(fsync['p90_us'], '.0f')} us, min {fmt(fsync['min_us'], '.0f')} us)")
    if p50_lines:
        print("p50 latency added by recording (over tracegate+off, same row):")
        print("\n".join(p50_lines))
    print()

    checks: list[dict[str, Any]] = []

    def check(name: str, target: str, value: float | None, ok: bool | None, detail: str,
              status: str | None = None) -> None:
        checks.append({"name": name, "target": target, "value": value,
                       "status": status or ("SKIP" if ok is None else ("PASS" if ok else "MISS")),
                       "detail": detail})

    def tps_detail(r: dict[str, Any], t: str) -> str:
        res = r["results"]
        return (f"{SHORT[t]} {fmt(res.get(t, {}).get('tps'), '.0f')} / direct "
                f"{fmt(res.get('direct', {}).get('tps'), '.0f')} tps = "
                f"{fmt(r['ratios'][f'{SHORT[t]}_to_direct'], '.3f')} (off "
                f"{fmt(r['ratios']['off_to_direct'], '.3f')}, {SHORT[t]}/off "
                f"{fmt(r['ratios'][f'{SHORT[t]}_to_off'], '.3f')}"
                + (f", {res[t]['txn_per_sync']:.1f} transactions per sync"
                   if res.get(t, {}).get("txn_per_sync") is not None else "") + ")")

    label = {BATCHED: "batched recording", STRICT: "strict recording"}
    for t in RECORDING:
        targeted = {c: minimum for tt, c, minimum in TPS_TARGETS if tt == t}
        for r in rows:
            if t not in r["results"]:
                continue
            v = r["ratios"][f"{SHORT[t]}_to_direct"]
            name = f"{label[t]}, {r['protocol']}, {r['clients']} clients"
            if r["clients"] in targeted:
                minimum = targeted[r["clients"]]
                check(name, f">= {minimum:.2f} x direct tps", v,
                      None if v is None else v >= minimum, tps_detail(r, t))
            else:
                check(name, "(informational)", v, None, tps_detail(r, t), status="INFO")
        for c, minimum in targeted.items():
            if not any(r["clients"] == c and t in r["results"] for r in rows):
                check(f"{label[t]}, {c} clients", f">= {minimum:.2f} x direct tps", None, None,
                      skipped.get(t) or f"no {c}-client row measured")
    limit = fsync_p50 + P50_SLACK_US if fsync_p50 is not None else None
    p50_checked = False
    for r in rows:
        v = r["p50_added_us"].get("strict_minus_off")
        if STRICT not in r["results"] or OFF not in r["results"]:
            continue
        res = r["results"]
        detail = (f"p50 strict {fmt(res[STRICT].get('p50_ms'), '.3f')} ms - off "
                  f"{fmt(res[OFF].get('p50_ms'), '.3f')} ms = {fmt(v, '.0f')} us; one "
                  f"fdatasync {fmt(fsync_p50, '.0f')} us + {P50_SLACK_US:.0f} us = "
                  f"{fmt(limit, '.0f')} us")
        name = f"strict recording p50 added, {r['protocol']}, {r['clients']} clients"
        if r["clients"] == P50_CLIENTS:
            p50_checked = True
            check(name, f"<= one fdatasync + {P50_SLACK_US:.0f} us", v,
                  None if v is None or limit is None else v <= limit, detail)
        else:
            check(name, "(informational)", v, None, detail, status="INFO")
    if not p50_checked:
        check(f"strict recording p50 added, {P50_CLIENTS} clients",
              f"<= one fdatasync + {P50_SLACK_US:.0f} us", None, None,
              skipped.get(STRICT) or skipped.get(OFF) or
              f"no {P50_CLIENTS}-client row with both tracegate+off and tracegate+strict")
    dead = [s for s in starts if s["started"] and s["alive_after_runs"] is False]
    if dead:
        check("tracegate still running after its runs", "alive", None, False,
              ", ".join(f"{s['target']} rep {s['rep']}" for s in dead) + ": the process was gone")

    print("targets:")
    for c in checks:
        print(f"  [{c['status']}] {c['name']}: {c['target']}\n         {c['detail']}")

    machine = machine_info()
    versions = {"postgres_server": env("PG_VERSION"), "pgbench": env("PGBENCH_VERSION"),
                "tracegate": env("TRACEGATE_VERSION"), "tracegate_bin": env("TRACEGATE_BIN"),
                "python": platform.python_version()}
    print()
    print(f"machine: nproc {machine.get('nproc')}, {machine.get('cpu_model', '?')}, "
          f"{machine.get('mem_total_mb', '?')} MB, {machine.get('os', '?')}, "
          f"kernel {machine['kernel']}")
    print(f"load average (1/5/15 min): {env('LOAD_START')} before setup, {env('LOAD_END')} "
          "after the runs")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    if skipped:
        print("SKIPPED: " + "; ".join(f"{t}: {r}" for t, r in skipped.items()))
    if problems:
        print(f"PROBLEMS ({len(problems)}; failed runs are excluded from the medians):")
        for p in problems[:30]:
            print("  " + p)
    failed_starts = {run["gateway_start"] for r in rows for runs in r["results"].values()
                     for run in runs["runs"] if not run["ok"] and "gateway_start" in run}
    if problems or dead or any(not s["started"] for s in starts):
        for s in starts:
            if s.get("log_tail") and (not s["started"] or s["alive_after_runs"] is False
                                      or s["start"] in failed_starts):
                print(f"tracegate log of {s['target']} rep {s['rep']} (last lines, level warn "
                      "and above):")
                for ln in s["log_tail"][-15:]:
                    print("  " + ln)

    def num_env(name: str) -> int | None:
        try:
            return int(env(name))
        except ValueError:
            return None

    audit_sections = {}
    for t in TARGET_ORDER[1:]:
        mode = SHORT[t]
        try:
            with open(os.path.join(args.results, f"audit-{mode}.yaml"), encoding="utf-8") as f:
                audit_sections[mode] = f.read()
        except OSError:
            pass

    result = {
        "benchmark": "recording",
        "description": "session recording (the audit log): an 8 KB trace fetched by id through "
                       "a grant session (statement gate) with recording off, batched and "
                       "strict, vs direct PostgreSQL (pgbench, one process per client, "
                       "interleaved, tracegate restarted per mode); bytes the log grows by per "
                       "transaction and per session; one fdatasync on the log's filesystem",
        "written_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "started_at": env("STARTED_AT"), "finished_at": env("FINISHED_AT"),
        "repo_commit": env("REPO_COMMIT"),
        "machine": machine, "versions": versions,
        "loadavg": {"before_setup": env("LOAD_START"), "after_runs": env("LOAD_END")},
        "parameters": {
            "duration_s": num_env("DURATION"), "warmup_s": num_env("WARMUP"),
            "reps": num_env("REPS"), "clients": [int(c) for c in env("CLIENTS").split()],
            "protocols": env("PROTOCOLS").split(), "targets": env("TARGETS").split(),
            "ntraces": num_env("NTRACES"), "payload_bytes": num_env("PAYLOAD_BYTES"),
            "trace_data": env("TRACE_DATA"), "trace_id": env("ONE_TRACE_ID"),
            "row_bytes": num_env("ONE_ROW_BYTES"), "script": "bench/trace_fetch_grant.sql",
            "layout": "one pgbench process per client (-c 1 -j 1), each with a grant of its "
                      "own for the tracegate targets; logs merged by lib/pgbench_merge.py",
            "grant": {"uses": num_env("GRANT_USES"), "ttl_s": num_env("GRANT_TTL_S"),
                      "max_rows": 0, "max_bytes": 0},
            "audit": {"flush_interval": env("FLUSH_INTERVAL"),
                      "checkpoint_interval": env("CHECKPOINT_INTERVAL"),
                      "extra": env("AUDIT_EXTRA"), "sections": audit_sections,
                      "dir": "$WORK/tracegate/audit-<mode>, fresh per start (state database "
                             "too)"},
            "tracegate_workers": num_env("TRACEGATE_WORKERS"),
            "tracegate_pool": num_env("TRACEGATE_POOL"),
            "sync_counting": (f"{env('PERF')} stat -e syscalls:sys_enter_fdatasync,"
                              "syscalls:sys_enter_fsync -p <gateway>"
                              if env("SYNC_COUNTING") == "1" else None),
        },
        "fdatasync": fsync,
        "rows": rows,
        "gateway_starts": starts,
        "checks": checks,
        "skipped": skipped,
        "problems": problems,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(scrub(result), f, indent=2)
        f.write("\n")
    print(f"\nwrote {args.out}")
    if args.strict == "1" and any(c["status"] == "MISS" for c in checks):
        return 3
    if "direct" in env("TARGETS").split() and not any(
            r["results"].get("direct", {}).get("tps") for r in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
