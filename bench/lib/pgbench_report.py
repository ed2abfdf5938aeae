#!/usr/bin/env python3
"""Turns the pgbench logs of bench/pg_overhead.sh into a table, target checks and JSON.

Input: --runs, a TSV written by pg_overhead.sh, one line per pgbench run:
    row_id  workload  protocol  clients  extra_args  target  rep  exit_code  [layout]
with the log of each run at <--logs>/<row_id>-<target>-<rep>.log (for layout per-client,
the merged log of the side-by-side processes, see pgbench_merge.py), and the run's
parameters and versions in BENCH_* environment variables. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import sys
from typing import Any

from result_paths import scrub

TARGET_ORDER = ("direct", "pgbouncer", "tracegate", "tracegate+gate")
GATE = "tracegate+gate"

# What pgbouncer 1.18 reached on the reference 2-core machines (DESIGN.md).
REFERENCE = {"pgbouncer_select_simple_8_ratio": 0.57, "pgbouncer_trace_8_ratio": 0.77}


def parse_log(path: str) -> dict[str, Any]:
    """Numbers from one pgbench 15 log (missing ones are None)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        return {"error": str(e)}

    def num(pattern: str) -> float | None:
        m = re.search(pattern, text, re.MULTILINE)
        return float(m.group(1)) if m else None

    out = {
        "tps": num(r"^tps = ([0-9.]+)"),
        "latency_ms": num(r"^latency average = ([0-9.]+) ms"),
        "latency_stddev_ms": num(r"^latency stddev = ([0-9.]+) ms"),
        "connection_ms": num(r"^(?:average connection time|initial connection time) = ([0-9.]+) ms"),
        "transactions": num(r"^number of transactions actually processed: ([0-9]+)"),
        "failed": num(r"^number of failed transactions: ([0-9]+)"),
        "login_retries": num(r"^login retries: ([0-9]+)"),
    }
    for k in ("transactions", "failed", "login_retries"):
        if out[k] is not None:
            out[k] = int(out[k])
    errors = [ln.strip() for ln in text.splitlines()
              if re.search(r"(error|FATAL|abort|could not|unexpected)", ln, re.IGNORECASE)
              and not ln.startswith("number of failed")
              and not ln.startswith("pg_overhead: retry")]
    if errors:
        out["errors"] = errors[:5]
    return out


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "hostname": platform.node(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE)
            if m:
                info["cpu_model"] = m.group(1).strip()
    except OSError:
        pass
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            m = re.search(r"^MemTotal:\s*(\d+) kB", f.read(), re.MULTILINE)
            if m:
                info["mem_total_mb"] = int(m.group(1)) // 1024
    except OSError:
        pass
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            m = re.search(r'^PRETTY_NAME="?([^"\n]+)"?$', f.read(), re.MULTILINE)
            if m:
                info["os"] = m.group(1)
    except OSError:
        pass
    return info


def env(name: str, default: str = "") -> str:
    return os.environ.get("BENCH_" + name, default)


def env_num(name: str) -> float | int | None:
    v = env(name)
    try:
        f = float(v)
    except ValueError:
        return None
    return int(f) if f.is_integer() else f


def E_TG_ALIVE() -> str:  # noqa: N802
    """"1" / "0" whether tracegate was still running after the runs; "" if not started."""
    return env("TG_ALIVE")


def tail_of(path: str, n: int = 30) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [ln.rstrip("\n") for ln in f if ln.strip()][-n:]
    except OSError:
        return []


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--logs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--strict", default="0")
    args = ap.parse_args()

    measured = env("TARGETS").split()
    targets = [t for t in TARGET_ORDER if t in measured]
    skipped = {}
    for line in env("SKIPPED").splitlines():
        if "\t" in line:
            t, reason = line.split("\t", 1)
            skipped[t] = reason

    rows: dict[str, dict[str, Any]] = {}
    with open(args.runs, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            fields = line.split("\t")
            rid, workload, proto, clients, extra, target, rep, rc = fields[:8]
            layout = fields[8] if len(fields) > 8 else "single"
            if layout == "per-client":
                pgargs = (f"{clients} x pgbench -n -M {proto} -c 1 -j 1 -T {env('DURATION')} "
                          f"-P {env('DURATION')} {extra}").strip()
            else:
                pgargs = (f"-n -M {proto} -c {clients} -j {min(int(clients), 2)} "
                          f"-T {env('DURATION')} -P {env('DURATION')} {extra}").strip()
            row = rows.setdefault(rid, {
                "id": rid, "workload": workload, "protocol": proto, "clients": int(clients),
                "layout": layout, "pgbench_args": pgargs, "runs": {}})
            run = parse_log(os.path.join(args.logs, f"{rid}-{target}-{rep}.log"))
            run["rep"] = int(rep)
            run["exit_code"] = int(rc)
            run["ok"] = int(rc) == 0 and run.get("tps") is not None and not run.get("failed")
            row["runs"].setdefault(target, []).append(run)

    problems = []
    for row in rows.values():
        res = {}
        for t in targets:
            runs = row["runs"].get(t, [])
            if not runs:
                continue  # not run in this row (tracegate+gate: trace-one rows only)
            ok = [r for r in runs if r["ok"]]
            for r in runs:
                if not r["ok"]:
                    problems.append(f"{row['id']} via {t} rep {r['rep']}: exit {r['exit_code']}"
                                    + (f", {int(r['failed'])} failed transactions" if r.get("failed") else "")
                                    + (f": {r['errors'][0]}" if r.get("errors") else ""))
            res[t] = {
                "tps": median([r["tps"] for r in ok]),
                "latency_ms": median([r["latency_ms"] for r in ok]),
                "latency_stddev_ms": median([r["latency_stddev_ms"] for r in ok]),
                "connection_ms": median([r["connection_ms"] for r in ok]),
                "reps_ok": len(ok), "reps": len(runs),
                "runs": [{k: v for k, v in r.items() if v is not None} for r in runs],
            }
        row["results"] = res
        del row["runs"]
        tps = {t: res.get(t, {}).get("tps") for t in TARGET_ORDER}
        lat = {t: res.get(t, {}).get("latency_ms") for t in TARGET_ORDER}
        row["ratios"] = {
            "tracegate_to_direct": ratio(tps["tracegate"], tps["direct"]),
            "tracegate_to_pgbouncer": ratio(tps["tracegate"], tps["pgbouncer"]),
            "pgbouncer_to_direct": ratio(tps["pgbouncer"], tps["direct"]),
        }
        if GATE in res:
            row["ratios"].update({
                "tracegate_gate_to_direct": ratio(tps[GATE], tps["direct"]),
                "tracegate_gate_to_tracegate": ratio(tps[GATE], tps["tracegate"]),
                "tracegate_gate_to_pgbouncer": ratio(tps[GATE], tps["pgbouncer"]),
            })
        row["added_latency_ms"] = {
            t: (lat[t] - lat["direct"]) if lat[t] is not None and lat["direct"] is not None else None
            for t in ("pgbouncer", "tracegate") + ((GATE,) if GATE in res else ())}

    row_list = list(rows.values())

    # ---- table ----
    # The tracegate+gate columns appear when that path was measured (trace-one rows only).
    with_gate = GATE in targets
    headers = ["workload", "proto", "cl", "direct tps", "pgb tps", "tg tps",
               *(["gate tps"] if with_gate else []), "tg/direct", "tg/pgb", "pgb/direct",
               *(["gate/direct", "gate/tg"] if with_gate else []),
               "lat direct", "lat pgb", "lat tg", *(["lat gate"] if with_gate else [])]
    table = []
    for r in row_list:
        g = lambda t, k: r["results"].get(t, {}).get(k)  # noqa: E731
        rt = r["ratios"]
        table.append([
            r["workload"], r["protocol"], str(r["clients"]),
            fmt(g("direct", "tps"), ".0f"), fmt(g("pgbouncer", "tps"), ".0f"),
            fmt(g("tracegate", "tps"), ".0f"),
            *([fmt(g(GATE, "tps"), ".0f")] if with_gate else []),
            fmt(rt["tracegate_to_direct"], ".3f"),
            fmt(rt["tracegate_to_pgbouncer"], ".3f"),
            fmt(rt["pgbouncer_to_direct"], ".3f"),
            *([fmt(rt.get("tracegate_gate_to_direct"), ".3f"),
               fmt(rt.get("tracegate_gate_to_tracegate"), ".3f")] if with_gate else []),
            fmt(g("direct", "latency_ms"), ".3f"), fmt(g("pgbouncer", "latency_ms"), ".3f"),
            fmt(g("tracegate", "latency_ms"), ".3f"),
            *([fmt(g(GATE, "latency_ms"), ".3f")] if with_gate else []),
        ])
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h)
              for i, h in enumerate(headers)]
    left = {0, 1}

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    print()
    print(f"pg_overhead: median of {env('REPS')} x {env('DURATION')} s per cell; "
          "latency = pgbench 'latency average' in ms; tg = tracegate (static user, not gated), "
          "pgb = pgbouncer (session)"
          + ("; gate = tracegate, grant sessions through the statement gate" if with_gate else ""))
    if any(r.get("layout") == "per-client" for r in row_list):
        print("trace-one rows: every target runs its clients as that many pgbench processes of "
              "one connection each (a grant carries one session), the numbers summed")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for cells in table:
        print(line(cells))

    # ---- targets ----
    by_id = {r["id"]: r for r in row_list}

    def tps_of(rid: str, t: str) -> float | None:
        return by_id.get(rid, {}).get("results", {}).get(t, {}).get("tps")

    checks = []

    def check(name: str, target: str, value: float | None, ok: bool | None, detail: str) -> None:
        status = "SKIP" if ok is None else ("PASS" if ok else "MISS")
        checks.append({"name": name, "target": target, "value": value, "status": status,
                       "detail": detail})

    have_tg = "tracegate" in targets
    for rid, name, want in (("select-simple-8", "pgbench -S, 8 clients", 0.70),
                            ("trace-extended-8", "8 KB trace fetch, 8 clients", 0.85)):
        r = by_id.get(rid)
        v = r["ratios"]["tracegate_to_direct"] if r else None
        pgb = r["ratios"]["pgbouncer_to_direct"] if r else None
        check(name, f">= {want:.2f} x direct tps", v,
              None if v is None else v >= want,
              f"tracegate {fmt(tps_of(rid, 'tracegate'), '.0f')} / direct "
              f"{fmt(tps_of(rid, 'direct'), '.0f')} tps = {fmt(v, '.3f')} "
              f"(pgbouncer {fmt(pgb, '.3f')})")

    behind = []
    compared = 0
    for r in row_list:
        tg, pgb = tps_of(r["id"], "tracegate"), tps_of(r["id"], "pgbouncer")
        if tg is None or pgb is None:
            continue
        compared += 1
        if tg <= pgb:
            behind.append(f"{r['id']} ({tg:.0f} <= {pgb:.0f})")
    worst = min((r["ratios"]["tracegate_to_pgbouncer"] for r in row_list
                 if r["ratios"]["tracegate_to_pgbouncer"] is not None), default=None)
    check("ahead of pgbouncer in every row", "tracegate tps > pgbouncer tps", worst,
          None if compared == 0 else not behind,
          (f"{compared - len(behind)}/{compared} rows ahead; worst tg/pgb {fmt(worst, '.3f')}"
           + (f"; behind: {', '.join(behind)}" if behind else "")) if compared else "no data")

    lat_details, lat_ok, worst_excess = [], None, None
    for r in row_list:
        if r["clients"] != 1:
            continue
        a_tg, a_pgb = r["added_latency_ms"]["tracegate"], r["added_latency_ms"]["pgbouncer"]
        if a_tg is None or a_pgb is None:
            continue
        ok = a_tg <= a_pgb
        lat_ok = ok if lat_ok is None else (lat_ok and ok)
        excess = a_tg - a_pgb
        worst_excess = excess if worst_excess is None else max(worst_excess, excess)
        lat_details.append(f"{r['id']}: +{a_tg * 1000:.0f} us vs pgbouncer +{a_pgb * 1000:.0f} us"
                           + ("" if ok else " MISS"))
    check("added latency at 1 client", "<= pgbouncer's added latency (every 1-client row)",
          worst_excess, lat_ok, "; ".join(lat_details) or "no data")

    rid = "select-connect-simple-8"
    tg, d = tps_of(rid, "tracegate"), tps_of(rid, "direct")
    v = ratio(tg, d)
    check("pgbench -S -C (new connection per transaction), 8 clients",
          "tracegate tps > direct tps (backend pool)", v, None if v is None else v > 1.0,
          f"tracegate {fmt(tg, '.0f')} / direct {fmt(d, '.0f')} tps = {fmt(v, '.3f')} "
          f"(pgbouncer {fmt(ratio(tps_of(rid, 'pgbouncer'), d), '.3f')})")

    gate_checks = []
    for r in row_list:
        if r["workload"] != "trace-one":
            continue
        v = r["ratios"].get("tracegate_gate_to_direct")
        name = f"trace fetch with statement gate, {r['protocol']}, {r['clients']} clients"
        detail = (f"tracegate+gate {fmt(tps_of(r['id'], GATE), '.0f')} / direct "
                  f"{fmt(tps_of(r['id'], 'direct'), '.0f')} tps = {fmt(v, '.3f')} "
                  f"(ungated tracegate {fmt(r['ratios']['tracegate_to_direct'], '.3f')}, "
                  f"gate/ungated {fmt(r['ratios'].get('tracegate_gate_to_tracegate'), '.3f')}, "
                  f"pgbouncer {fmt(r['ratios']['pgbouncer_to_direct'], '.3f')})")
        if r["clients"] == 8 and r["protocol"] in ("simple", "extended"):
            check(name, ">= 0.80 x direct tps", v, None if v is None else v >= 0.80, detail)
            gate_checks.append(checks.pop())
        else:
            gate_checks.append({"name": name, "target": "(informational)", "value": v,
                                "status": "INFO", "detail": detail})
    if E_TG_ALIVE() == "0":
        gate_checks.append({"name": "tracegate still running after the runs", "target": "alive",
                            "value": None, "status": "MISS", "detail": "the gateway process was gone"})

    print()
    print("targets (tracegate, pass-through):" + ("" if have_tg else
          "  tracegate NOT MEASURED: " + skipped.get("tracegate", "not in TARGETS")))
    for c in checks:
        print(f"  [{c['status']}] {c['name']}: {c['target']}\n         {c['detail']}")
    if gate_checks:
        print("targets (tracegate + statement gate, grant sessions):" + ("" if with_gate else
              "  tracegate+gate NOT MEASURED: " + skipped.get(GATE, "not in TARGETS")))
        for c in gate_checks:
            print(f"  [{c['status']}] {c['name']}: {c['target']}\n         {c['detail']}")
    checks.extend(gate_checks)

    pgb_ref = []
    for rid, key in (("select-simple-8", "pgbouncer_select_simple_8_ratio"),
                     ("trace-extended-8", "pgbouncer_trace_8_ratio")):
        r = by_id.get(rid)
        if r and r["ratios"]["pgbouncer_to_direct"] is not None:
            pgb_ref.append(f"{rid} pgbouncer/direct {r['ratios']['pgbouncer_to_direct']:.3f} "
                           f"(reference machine: {REFERENCE[key]:.2f})")
    if pgb_ref:
        print("  calibration: " + "; ".join(pgb_ref))

    machine = machine_info()
    versions = {"postgres_server": env("PG_VERSION"), "pgbench": env("PGBENCH_VERSION"),
                "pgbouncer": env("PGBOUNCER_VERSION"), "tracegate": env("TRACEGATE_VERSION"),
                "tracegate_bin": env("TRACEGATE_BIN"), "python": platform.python_version()}
    print()
    print(f"machine: nproc {machine.get('nproc')}, {machine.get('cpu_model', '?')}, "
          f"{machine.get('mem_total_mb', '?')} MB, {machine.get('os', '?')}, kernel {machine['kernel']}")
    print(f"load average (1/5/15 min): {env('LOAD_START')} before setup, {env('LOAD_END')} after the runs")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    if skipped:
        print("SKIPPED: " + "; ".join(f"{t}: {r}" for t, r in skipped.items()))
    if problems:
        print(f"FAILED RUNS ({len(problems)}), excluded from the medians:")
        for p in problems[:30]:
            print("  " + p)
    tg_log = tail_of(env("TG_LOG")) if env("TG_LOG") else []
    if tg_log and (problems or E_TG_ALIVE() == "0"):
        print("tracegate log (last lines, level warn and above):")
        for ln in tg_log[-15:]:
            print("  " + ln)

    result = {
        "benchmark": "pg_overhead",
        "description": "tracegate pass-through (static user) and grant sessions through the "
                       "statement gate vs direct PostgreSQL vs pgbouncer (session mode), "
                       "pgbench over TCP loopback, interleaved per row",
        "written_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "started_at": env("STARTED_AT"), "finished_at": env("FINISHED_AT"),
        "repo_commit": env("REPO_COMMIT"),
        "machine": machine, "versions": versions,
        "loadavg": {"before_setup": env("LOAD_START"), "after_runs": env("LOAD_END")},
        "params": {
            "duration_s": env_num("DURATION"), "warmup_s": env_num("WARMUP"),
            "reps": env_num("REPS"), "aggregate": "median over reps",
            "pgbench_scale": env_num("SCALE"), "ntraces": env_num("NTRACES"),
            "payload_bytes": env_num("PAYLOAD_BYTES"),
            "trace_row_bytes_avg": env_num("TRACE_ROW_BYTES"), "trace_data": env("TRACE_DATA"),
            "pgbench_threads": "min(clients, 2); per-client rows: one process per client",
            "tracegate_workers": env_num("TRACEGATE_WORKERS"),
            "tracegate_pool_max_size": env_num("TRACEGATE_POOL"),
            "pgbouncer_pool_mode": "session",
            "pgbouncer_default_pool_size": env_num("PGBOUNCER_POOL"),
            "transport": "TCP 127.0.0.1, sslmode=disable, SCRAM-SHA-256 client and backend side",
            "postgres": "fsync=off, shared_buffers=512MB, max_connections=250, relations prewarmed",
            "trace_one": {
                "trace_id": env("ONE_TRACE_ID") or None, "row_bytes": env_num("ONE_ROW_BYTES"),
                "script": "bench/trace_fetch_grant.sql (-D tid='<id>' with -M simple, "
                          "-D tid=<id> with -M extended/prepared)",
                "layout": "clients x pgbench -c 1 -j 1 side by side, tps summed, latency "
                          "averaged over transactions (bench/lib/pgbench_merge.py)",
                "gate_trace_tables": env("GATE_TABLES").split(),
                "grant_terms": {"uses": env_num("GRANT_USES"), "ttl_s": env_num("GRANT_TTL_S"),
                                "max_session_s": env_num("GRANT_TTL_S"), "max_rows": 0,
                                "max_bytes": 0, "one_grant_per": "pgbench process",
                                "login_retries_allowed": env_num("GRANT_RETRIES")},
            },
        },
        "targets_measured": targets, "targets_skipped": skipped,
        "reference": REFERENCE,
        "rows": row_list, "targets": checks, "failed_runs": problems,
        "tracegate_alive_after_runs": None if not E_TG_ALIVE() else E_TG_ALIVE() == "1",
        "tracegate_log_tail": tg_log,
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(scrub(result), f, indent=2)
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"\nwrote {args.out}")

    if not any(r["results"].get("direct", {}).get("tps") for r in row_list):
        print("no direct PostgreSQL numbers: the setup is broken", file=sys.stderr)
        return 1
    if args.strict == "1" and any(c["status"] == "MISS" for c in checks):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
