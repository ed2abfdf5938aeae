#!/usr/bin/env python3
"""Turns the results of bench/masking.sh into tables, target checks and JSON.

Input: --results, the directory masking.sh filled:
    engine.json   masking_bench --benchmark_format=json output (aggregates or single runs)
    runs.tsv      one line per pgbench run: row_id protocol clients target rep exit_code
                  masked_values (delta of tracegate_masked_values_total over the run, or "")
                  with the merged log of each run at <row_id>-<target>-<rep>.log
    stream.tsv    one line per stream: target rows row_bytes seconds exit_code rss_before_kb
                  hwm_before_reset_kb hwm_stream_kb rss_after_kb rss_sampled_max_kb hwm_reset
                  masked_values output
and the run's parameters in BENCH_* environment variables. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from typing import Any

from pgbench_report import env, fmt, machine_info, median, parse_log, ratio, tail_of
from result_paths import scrub

TARGET_ORDER = ("direct", "pgbouncer", "tracegate+gate", "tracegate+gate+mask")
SHORT = {"direct": "direct", "pgbouncer": "pgb", "tracegate+gate": "gate",
         "tracegate+gate+mask": "mask"}
MASK = "tracegate+gate+mask"

ENGINE_ROWS = (  # benchmark, what, kind
    ("BM_MaskTraceCorpus", "framework traces as they are (13 files)", "rate"),
    ("BM_MaskTraceCorpusPlanted", "framework traces + planted PII (~1 per 400 B)", "rate"),
    ("BM_MaskDensePii", "generated traces, dense PII", "rate"),
    ("BM_MaskText", "text column, prose with PII per ~1 KB", "rate"),
    ("BM_MemcpyCorpus", "memcpy of the framework traces (ceiling)", "rate"),
    ("BM_Trace10KB", "10 KB trace (openai-assistants), one call", "latency"),
    ("BM_Trace10KBPlanted", "the same + planted PII, one call", "latency"),
)
ENGINE_MBS_TARGET = 300.0
ENGINE_P99_TARGET_US = 2000.0
E2E_TARGET = 0.70
RSS_TARGET_MB = 64.0

UNIT_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def table(headers: list[str], rows: list[list[str]], left: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def load_engine(path: str) -> dict[str, dict[str, Any]]:
    """run_name -> the median aggregate (or the single run) of each benchmark."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for b in doc.get("benchmarks", []):
        name = b.get("run_name") or b.get("name")
        if b.get("error_occurred"):
            out[name] = {"error": b.get("error_message", "error")}
            continue
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                out[name] = b
        elif name not in out:
            out[name] = b
    out["_context"] = doc.get("context", {})
    return out


def engine_section(path: str) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
    bench = load_engine(path)
    lines: list[str] = []
    rows_json: list[dict[str, Any]] = []
    rate_rows, lat_rows = [], []
    for name, what, kind in ENGINE_ROWS:
        b = bench.get(name)
        if b is None:
            continue
        if "error" in b:
            rows_json.append({"benchmark": name, "what": what, "error": b["error"]})
            continue
        bps = b.get("bytes_per_second")
        secs = b.get("cpu_time", 0) * UNIT_S.get(b.get("time_unit", "ns"), 1e-9)
        entry = {"benchmark": name, "what": what,
                 "mb_per_s": bps / 1e6 if bps else None,
                 "mib_per_s": bps / 2**20 if bps else None,
                 "cpu_time": b.get("cpu_time"), "time_unit": b.get("time_unit"),
                 "bytes_per_iteration": round(bps * secs) if bps else None,
                 "iterations": b.get("iterations")}
        for k in ("masked_per_pass", "masked_per_call", "p50_us", "p99_us", "max_us",
                  "doc_bytes"):
            if k in b:
                entry[k] = b[k]
        rows_json.append(entry)
        if kind == "rate":
            rate_rows.append([what, fmt(entry["bytes_per_iteration"] and
                                        entry["bytes_per_iteration"] / 1e3, ".0f"),
                              fmt(entry["mb_per_s"], ".0f"),
                              fmt(entry.get("masked_per_pass"), ".0f")])
        else:
            lat_rows.append([what, fmt(entry.get("doc_bytes"), ".0f"),
                             fmt(entry["mb_per_s"], ".0f"), fmt(entry.get("p50_us"), ".1f"),
                             fmt(entry.get("p99_us"), ".1f"), fmt(entry.get("max_us"), ".0f"),
                             fmt(entry.get("masked_per_call"), ".0f")])
    ctx = bench.get("_context", {})
    if rate_rows or lat_rows:
        lines.append(f"engine: masking_bench, one thread, every default detector, redact; "
                     f"MB = 10^6 bytes per CPU second (per core); median of "
                     f"{env('ENGINE_REPS')} x {env('ENGINE_MIN_TIME')} s")
        lines += table(["corpus", "KB/pass", "MB/s", "masked/pass"], rate_rows, {0})
        lines.append("")
        lines += table(["one document per call", "bytes", "MB/s", "p50 us", "p99 us",
                        "max us", "masked"], lat_rows, {0})
    return lines, rows_json, ctx


def e2e_section(results: str) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    path = os.path.join(results, "runs.tsv")
    rows: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            lines_in = [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
    except OSError:
        lines_in = []
    for rid, proto, clients, target, rep, rc, masked in lines_in:
        row = rows.setdefault(rid, {"id": rid, "protocol": proto, "clients": int(clients),
                                    "pgbench_args": f"{clients} x pgbench -n -M {proto} -c 1 "
                                    f"-j 1 -T {env('DURATION')} -P {env('DURATION')} -f "
                                    "bench/trace_fetch_grant.sql -D tid=<trace>",
                                    "runs": {}})
        run = parse_log(os.path.join(results, f"{rid}-{target}-{rep}.log"))
        run["rep"] = int(rep)
        run["exit_code"] = int(rc)
        run["ok"] = int(rc) == 0 and run.get("tps") is not None and not run.get("failed")
        if masked != "":
            run["masked_values"] = int(masked)
            if run.get("transactions"):
                run["masked_per_fetch"] = int(masked) / run["transactions"]
        if not run["ok"]:
            problems.append(f"{rid} via {target} rep {rep}: exit {rc}"
                            + (f": {run['errors'][0]}" if run.get("errors") else ""))
        row["runs"].setdefault(target, []).append(run)

    out_rows = []
    table_rows = []
    for row in rows.values():
        res = {}
        for t in TARGET_ORDER:
            runs = row["runs"].get(t)
            if not runs:
                continue
            ok = [r for r in runs if r["ok"]]
            res[t] = {
                "tps": median([r["tps"] for r in ok]),
                "latency_ms": median([r["latency_ms"] for r in ok]),
                "latency_stddev_ms": median([r.get("latency_stddev_ms") for r in ok]),
                "connection_ms": median([r.get("connection_ms") for r in ok]),
                "masked_per_fetch": median([r.get("masked_per_fetch") for r in ok]),
                "reps_ok": len(ok), "reps": len(runs),
                "runs": [{k: v for k, v in r.items() if v is not None} for r in runs],
            }
        tps = {t: res.get(t, {}).get("tps") for t in TARGET_ORDER}
        lat = {t: res.get(t, {}).get("latency_ms") for t in TARGET_ORDER}
        ratios = {
            "pgbouncer_to_direct": ratio(tps["pgbouncer"], tps["direct"]),
            "gate_to_direct": ratio(tps["tracegate+gate"], tps["direct"]),
            "mask_to_direct": ratio(tps[MASK], tps["direct"]),
            "mask_to_gate": ratio(tps[MASK], tps["tracegate+gate"]),
        }
        out_rows.append({k: v for k, v in row.items() if k != "runs"}
                        | {"results": res, "ratios": ratios,
                           "added_latency_ms": {t: lat[t] - lat["direct"]
                                                for t in TARGET_ORDER[1:]
                                                if lat[t] is not None
                                                and lat["direct"] is not None}})
        table_rows.append([
            f"fetch 8 KB trace by id", row["protocol"], str(row["clients"]),
            *(fmt(tps[t], ".0f") for t in TARGET_ORDER),
            fmt(ratios["pgbouncer_to_direct"], ".3f"), fmt(ratios["gate_to_direct"], ".3f"),
            fmt(ratios["mask_to_direct"], ".3f"), fmt(ratios["mask_to_gate"], ".3f"),
            *(fmt(lat[t], ".3f") for t in TARGET_ORDER),
            fmt(res.get(MASK, {}).get("masked_per_fetch"), ".1f"),
        ])
    lines: list[str] = []
    if table_rows:
        lines.append(f"end to end: median of {env('REPS')} x {env('DURATION')} s, interleaved; "
                     "every target runs its clients as that many pgbench processes of one "
                     "connection (a grant carries one session); tps summed, latency = mean "
                     "over all transactions (ms); gate = grant session through the statement "
                     "gate, mask = the same with masking_profile: default")
        lines.append(f"fetched trace {env('ONE_TRACE_ID')} ({env('ONE_ROW_BYTES')} bytes as "
                     f"text) with planted {env('PLANTED')}; masked/fetch = values the gateway "
                     "masked per fetched row (tracegate_masked_values_total)")
        if env("PLANT_CHECK"):
            lines.append(f"what a masked grant receives: …{env('PLANT_CHECK')}…")
        lines += table(["workload", "proto", "cl", "direct tps", "pgb tps", "gate tps",
                        "mask tps", "pgb/direct", "gate/direct", "mask/direct", "mask/gate",
                        "lat direct", "lat pgb", "lat gate", "lat mask", "masked/fetch"],
                       table_rows, {0, 1})
    return lines, out_rows, problems


def kb_env(name: str) -> float | None:
    """BENCH_<name> in kB -> MB (None when unset)."""
    try:
        return float(env(name)) / 1024
    except ValueError:
        return None


def stream_section(results: str) -> tuple[list[str], list[dict[str, Any]]]:
    path = os.path.join(results, "stream.tsv")
    try:
        with open(path, encoding="utf-8") as f:
            lines_in = [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
    except OSError:
        lines_in = []

    def num(v: str) -> float | None:
        try:
            return float(v)
        except ValueError:
            return None

    out, trows = [], []
    for f in lines_in:
        f += [""] * (13 - len(f))
        (target, rows, row_bytes, secs, rc, rss0, hwm_prev, hwm, rss1, rmax, reset,
         masked, output) = f[:13]
        mb = int(rows) * int(row_bytes) / 1e6
        s = num(secs)
        kb = {k: num(v) for k, v in (("rss_before", rss0), ("hwm_before_reset", hwm_prev),
                                     ("hwm_stream", hwm), ("rss_after", rss1),
                                     ("rss_sampled_max", rmax))}
        peak_kb = kb["hwm_stream"] if reset == "1" else kb["rss_sampled_max"]
        entry = {"target": target, "rows": int(rows), "approx_bytes": int(rows) * int(row_bytes),
                 "seconds": s, "exit_code": int(rc), "ok": rc == "0",
                 "mb_per_s": mb / s if s and rc == "0" else None,
                 "gateway_rss_mb": {k: (v / 1024 if v is not None else None)
                                    for k, v in kb.items()},
                 "gateway_peak_rss_mb": peak_kb / 1024 if peak_kb is not None else None,
                 "hwm_reset": reset == "1",
                 "masked_values": int(masked) if masked else None}
        if rc != "0":
            entry["output"] = output
        out.append(entry)
        r = entry["gateway_rss_mb"]
        trows.append([target, str(rows), f"{mb:.0f}", fmt(s, ".1f"),
                      fmt(entry["mb_per_s"], ".0f") if rc == "0" else "FAILED",
                      fmt(r["rss_before"], ".1f"), fmt(entry["gateway_peak_rss_mb"], ".1f"),
                      fmt(r["rss_after"], ".1f"), fmt(entry["masked_values"], ".0f"),
                      fmt(entry["masked_values"] / int(rows) if entry["masked_values"] is not None
                          else None, ".1f")])
    lines: list[str] = []
    if trows:
        lines.append("stream: psql -At -o /dev/null, SELECT t.input, generate_series(1, N) FROM "
                     "traces t WHERE t.id = <planted trace>, one session; MB/s over psql's "
                     "whole run (it reads the result, then prints it); gateway RSS in MB "
                     "(VmRSS before/after, peak = VmHWM reset right before the stream); "
                     f"VmHWM since start (after the e2e runs): "
                     f"{fmt(kb_env('TG_HWM_BEFORE_STREAM_KB'), '.1f')} MB")
        lines += table(["target", "rows", "MB", "s", "MB/s", "RSS before", "peak", "after",
                        "masked", "masked/row"], trows, {0})
    return lines, out


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

    eng_lines, engine, eng_ctx = engine_section(env("ENGINE_JSON"))
    e2e_lines, e2e_rows, problems = e2e_section(args.results)
    str_lines, streams = stream_section(args.results)

    print()
    for block in (eng_lines, e2e_lines, str_lines):
        if block:
            print("\n".join(block))
            print()
    if not eng_lines and "engine" in env("PARTS").split():
        print(f"engine: SKIPPED ({env('ENGINE_NOTE') or 'no results'})\n")

    checks: list[dict[str, Any]] = []

    def check(name: str, target: str, value: float | None, ok: bool | None, detail: str,
              status: str | None = None) -> None:
        checks.append({"name": name, "target": target, "value": value,
                       "status": status or ("SKIP" if ok is None else ("PASS" if ok else "MISS")),
                       "detail": detail})

    by_bench = {e["benchmark"]: e for e in engine}
    for name, label in (("BM_MaskTraceCorpus", "engine, framework traces as they are"),
                        ("BM_MaskTraceCorpusPlanted", "engine, framework traces + planted PII")):
        v = by_bench.get(name, {}).get("mb_per_s")
        check(label, f">= {ENGINE_MBS_TARGET:.0f} MB/s per core", v,
              None if v is None else v >= ENGINE_MBS_TARGET,
              f"{fmt(v, '.0f')} MB/s (memcpy "
              f"{fmt(by_bench.get('BM_MemcpyCorpus', {}).get('mb_per_s'), '.0f')} MB/s)")
    v = by_bench.get("BM_MaskDensePii", {}).get("mb_per_s")
    check("engine, generated traces with dense PII", "(informational)", v, None,
          f"{fmt(v, '.0f')} MB/s", status="INFO" if v is not None else "SKIP")
    for name, label in (("BM_Trace10KB", "engine, 10 KB trace p99"),
                        ("BM_Trace10KBPlanted", "engine, 10 KB trace + planted PII p99")):
        b = by_bench.get(name, {})
        v = b.get("p99_us")
        check(label, f"<= {ENGINE_P99_TARGET_US / 1000:.0f} ms", v,
              None if v is None else v <= ENGINE_P99_TARGET_US,
              f"p50 {fmt(b.get('p50_us'), '.1f')} us, p99 {fmt(v, '.1f')} us, "
              f"max {fmt(b.get('max_us'), '.0f')} us")
    e2e_checked = False
    for r in e2e_rows:
        v = r["ratios"]["mask_to_direct"]
        tps = r["results"]
        detail = (f"mask {fmt(tps.get(MASK, {}).get('tps'), '.0f')} / direct "
                  f"{fmt(tps.get('direct', {}).get('tps'), '.0f')} tps = {fmt(v, '.3f')} "
                  f"(gate {fmt(r['ratios']['gate_to_direct'], '.3f')}, mask/gate "
                  f"{fmt(r['ratios']['mask_to_gate'], '.3f')}, pgbouncer "
                  f"{fmt(r['ratios']['pgbouncer_to_direct'], '.3f')})")
        name = f"masked trace fetch, {r['protocol']}, {r['clients']} clients"
        if r["clients"] == 8:
            e2e_checked = True
            check(name, f">= {E2E_TARGET:.2f} x direct tps", v,
                  None if v is None else v >= E2E_TARGET, detail)
        else:
            check(name, "(informational)", v, None, detail, status="INFO")
    if not e2e_checked and "e2e" in env("PARTS").split():
        check("masked trace fetch, 8 clients", f">= {E2E_TARGET:.2f} x direct tps", None, None,
              skipped.get(MASK, "no 8-client row measured"))
    mstream = next((s for s in streams if s["target"] == MASK), None)
    if mstream is not None or "stream" in env("PARTS").split():
        v = mstream["gateway_peak_rss_mb"] if mstream and mstream["ok"] else None
        check("gateway peak RSS while a masked session streams "
              f"{(mstream or {}).get('approx_bytes', 0) / 1e6:.0f} MB",
              f"< {RSS_TARGET_MB:.0f} MB", v, None if v is None else v < RSS_TARGET_MB,
              (f"peak {fmt(v, '.1f')} MB ("
               f"{'VmHWM reset before the stream' if mstream['hwm_reset'] else 'sampled VmRSS'}), "
               f"before {fmt(mstream['gateway_rss_mb']['rss_before'], '.1f')} MB, after "
               f"{fmt(mstream['gateway_rss_mb']['rss_after'], '.1f')} MB, "
               f"{fmt(mstream['mb_per_s'], '.0f')} MB/s") if mstream and mstream["ok"]
              else skipped.get(MASK, "stream failed" if mstream else "not measured"))
    if env("TG_ALIVE") == "0":
        check("tracegate still running after the runs", "alive", None, False,
              "the gateway process was gone")

    print("targets:")
    for c in checks:
        print(f"  [{c['status']}] {c['name']}: {c['target']}\n         {c['detail']}")

    machine = machine_info()
    versions = {"postgres_server": env("PG_VERSION"), "pgbench": env("PGBENCH_VERSION"),
                "pgbouncer": env("PGBOUNCER_VERSION"), "tracegate": env("TRACEGATE_VERSION"),
                "tracegate_bin": env("TRACEGATE_BIN"), "masking_bench": env("ENGINE_NOTE"),
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
        print(f"FAILED RUNS ({len(problems)}), excluded from the medians:")
        for p in problems[:30]:
            print("  " + p)
    tg_log = tail_of(env("TG_LOG")) if env("TG_LOG") else []
    if tg_log and (problems or env("TG_ALIVE") == "0" or
                   any(not s["ok"] for s in streams)):
        print("tracegate log (last lines, level warn and above):")
        for ln in tg_log[-15:]:
            print("  " + ln)

    def num_env(name: str) -> int | None:
        try:
            return int(env(name))
        except ValueError:
            return None

    result = {
        "benchmark": "masking",
        "description": "inline masking: the engine on one core (masking_bench), a masked 8 KB "
                       "trace fetch end to end vs direct PostgreSQL, pgbouncer and an unmasked "
                       "grant (pgbench, interleaved), and the gateway's RSS while a masked "
                       "session streams ~1 GB",
        "written_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "started_at": env("STARTED_AT"), "finished_at": env("FINISHED_AT"),
        "repo_commit": env("REPO_COMMIT"),
        "machine": machine, "versions": versions,
        "loadavg": {"before_setup": env("LOAD_START"), "after_runs": env("LOAD_END")},
        "parameters": {
            "parts": env("PARTS").split(),
            "engine": {"min_time_s": env("ENGINE_MIN_TIME"), "repetitions": num_env("ENGINE_REPS"),
                       "binary": env("ENGINE_NOTE"), "context": eng_ctx},
            "e2e": {"duration_s": num_env("DURATION"), "warmup_s": num_env("WARMUP"),
                    "reps": num_env("REPS"), "targets": env("TARGETS").split(),
                    "ntraces": num_env("NTRACES"), "payload_bytes": num_env("PAYLOAD_BYTES"),
                    "trace_data": env("TRACE_DATA"), "trace_id": env("ONE_TRACE_ID"),
                    "row_bytes": num_env("ONE_ROW_BYTES"), "input_bytes": num_env("INPUT_BYTES"),
                    "planted": env("PLANTED"), "masked_row_excerpt": env("PLANT_CHECK"),
                    "script": "bench/trace_fetch_grant.sql",
                    "grant": {"uses": num_env("GRANT_USES"), "ttl_s": num_env("GRANT_TTL_S"),
                              "max_rows": 0, "max_bytes": 0,
                              "masked_rule": "masking_profile: default "
                                             "(masking_profiles: [{name: default}])"},
                    "tracegate_workers": num_env("TRACEGATE_WORKERS"),
                    "tracegate_pool": num_env("TRACEGATE_POOL"),
                    "pgbouncer_pool": num_env("PGBOUNCER_POOL")},
            "stream": {"stream_mb": num_env("STREAM_MB"),
                       "query": "SELECT t.input, generate_series(1, N) FROM traces t "
                                "WHERE t.id = '<trace>'",
                       "client": "psql -X -At -o /dev/null"},
        },
        "engine": engine,
        "e2e": e2e_rows,
        "stream": streams,
        "gateway_rss_mb": {"after_start": kb_env("TG_RSS_START_KB"),
                           "peak_before_streams": kb_env("TG_HWM_BEFORE_STREAM_KB"),
                           "at_end": kb_env("TG_RSS_END_KB")},
        "checks": checks,
        "skipped": skipped,
        "failed_runs": problems,
        "tracegate_alive_after": {"1": True, "0": False}.get(env("TG_ALIVE")),
        "tracegate_log_tail": tail_of(env("TG_LOG")) if env("TG_LOG") else [],
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(scrub(result), f, indent=2)
        f.write("\n")
    print(f"\nwrote {args.out}")
    if args.strict == "1" and any(c["status"] == "MISS" for c in checks):
        return 3
    if "e2e" in env("PARTS").split() and not any(
            r["results"].get("direct", {}).get("tps") for r in e2e_rows) and \
            "direct" in env("TARGETS").split():
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
