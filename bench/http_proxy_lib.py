#!/usr/bin/env python3
"""The engine of bench/http_proxy.sh (run it through that script; knobs come from the
environment, see bench/README.md "http_proxy.sh").

One run, side by side, on the 30 KiB trace `bench-30k` of the test HTTP trace store
(tests/http_store.py as a subprocess, plain HTTP, Basic auth):

  wrk rows (N connections, keep-alive, DURATION s, ROUNDS rounds interleaved, order
  rotating; medians reported):
    direct            wrk -> store, with the store's Basic credential (bench/wrk/basic.lua)
    masked            wrk -> tracegate's HTTP listener (connection traces-http, masking
                      profile "default", recording at the gateway's default: strict) -> store;
                      every connection sends its own grant bearers (bench/wrk/bearer.lua)
    masked-batched    the same through a second gateway with audit: {durability: batched}
  sequential calls (one keep-alive client, ONECALL_N calls each, p50/p99 and calls/s):
    direct GET of the trace from the store
    the one-call fetch GET /v1/connections/traces-http/traces/bench-30k (OIDC token)
    the two-call path: POST /v1/grants, then GET on the HTTP listener with the bearer

Prints two tables and the target checks, writes the JSON (OUT_JSON). Every process it
starts (the store, the gateways, wrk) is stopped on exit, on an error, on Ctrl-C and on
SIGTERM. Standard library only (plus tests/harness.py).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(REPO_DIR, "tests"))
sys.path.append(os.path.join(BENCH_DIR, "lib"))

import harness  # noqa: E402
from harness import (Gateway, HttpTraceStore, free_port, port_accepts,  # noqa: E402
                     to_yaml, wait_for)
from result_paths import scrub  # noqa: E402

NAME = "http_proxy"
CONNECTION = "traces-http"
STORE_SECRET_ENV = "TRACEGATE_BENCH_STORE_SECRET"
ROW_LABELS = {
    "direct": "direct (store)",
    "masked": "tracegate (masked)",
    "masked-batched": "tracegate (masked, batched recording)",
}
ROW_MODE = {"masked": "strict", "masked-batched": "batched"}


# ---- knobs ------------------------------------------------------------------------------------

def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw != "" else default
    except ValueError:
        raise SystemExit(f"[{NAME}] FATAL: {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"[{NAME}] FATAL: {name} must be >= {minimum}, got {value}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw != "" else default
    except ValueError:
        raise SystemExit(f"[{NAME}] FATAL: {name} must be a number, got {raw!r}") from None


CONNECTIONS = env_int("CONNECTIONS", 8, 1)
DURATION = env_int("DURATION", 10, 1)
ROUNDS = env_int("ROUNDS", 3, 1)
WARMUP = env_int("WARMUP", 2)
ROWS = os.environ.get("ROWS", "direct masked masked-batched").split()
ONECALL_N = env_int("ONECALL_N", 200)
ONECALL_WARMUP = env_int("ONECALL_WARMUP", 10)
TRACE_ID = os.environ.get("TRACE_ID", "bench-30k")
GRANT_USES = env_int("GRANT_USES", 1000, 1)
GRANT_RPS_GUESS = env_int("GRANT_RPS_GUESS", 20000, 1)
GRANT_SAFETY = env_float("GRANT_SAFETY", 2.5)
TRACEGATE_WORKERS = env_int("TRACEGATE_WORKERS", 2, 1)
UPSTREAM_TIMEOUT = os.environ.get("UPSTREAM_TIMEOUT", "5s")
WRK = os.environ.get("WRK", "wrk")
WRK_TIMEOUT = os.environ.get("WRK_TIMEOUT", "5s")
STORE_TRACES = env_int("STORE_TRACES", 5, 1)
READY_TIMEOUT = env_int("READY_TIMEOUT", 30, 1)
TRACEGATE_BIN = os.environ.get("TRACEGATE_BIN") or harness.gateway_binary()
STRICT = os.environ.get("STRICT", "0") == "1"
KEEP_WORK = os.environ.get("KEEP_WORK", "0") == "1"
STAMP = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
OUT_JSON = os.environ.get("OUT_JSON") or os.path.join(BENCH_DIR, "results",
                                                        f"{NAME}-{STAMP}.json")
TARGET_RATIO = 0.80     # >= 0.8 x direct requests/s
TARGET_ADDED_P99 = 2.0  # p99 added <= 2 ms

for r in ROWS:
    if r not in ROW_LABELS:
        raise SystemExit(f"[{NAME}] FATAL: ROWS: unknown row {r!r} "
                         f"(known: {' '.join(ROW_LABELS)})")


# ---- small helpers ----------------------------------------------------------------------------

def log(msg: str) -> None:
    print(f"[{NAME} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def warn(*lines: str) -> None:
    bar = "!" * 79
    body = "\n".join(f"!!! WARNING: {line}" for line in lines)
    print(f"\n{bar}\n{body}\n{bar}\n", file=sys.stderr, flush=True)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank (as bench/lib/recording_report.py)."""
    if not sorted_values:
        return float("nan")
    k = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(k, len(sorted_values)) - 1]


def median_or_none(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def proc_cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a process (all its threads), in seconds."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def proc_status_kb(pid: int | None, key: str) -> int | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"nproc": len(os.sched_getaffinity(0)),
                            "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_mb"] = int(line.split()[1]) // 1024
                    break
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return info


def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


def tracegate_version() -> str:
    """The binary has no --version: its build time and the checkout's commit instead."""
    try:
        built = dt.datetime.fromtimestamp(os.path.getmtime(TRACEGATE_BIN), dt.timezone.utc)
    except OSError:
        return f"{TRACEGATE_BIN}: not found"
    commit = first_line(["git", "-C", REPO_DIR, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", REPO_DIR, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (f"tracegate built {built.isoformat(timespec='seconds')} in a checkout at "
            f"{commit or '?'}{' (modified)' if dirty else ''}")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---- HTTP clients -----------------------------------------------------------------------------

class Client:
    """One keep-alive HTTP/1.1 connection (http.client), reconnecting when the server closed."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, headers: dict[str, str],
                body: str | None = None) -> tuple[int, bytes, dict[str, str]]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
                if resp.will_close:
                    self.close()
                return resp.status, data, hdrs
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def trace_path(trace_id: str) -> str:
    return f"/api/public/traces/{trace_id}"


# ---- the gateway ------------------------------------------------------------------------------

class Bench:
    def __init__(self) -> None:
        self.work = tempfile.mkdtemp(prefix=f"{NAME}.", dir=os.environ.get("TMPDIR") or None)
        os.chmod(self.work, 0o700)
        os.makedirs(os.path.join(self.work, "runs"))
        self.store: HttpTraceStore | None = None
        self.gateways: dict[str, dict[str, Any]] = {}  # mode -> {gw, cfg, api_port, ...}
        self.wrk_proc: subprocess.Popen | None = None
        self.token = ""
        self.token_file = os.path.join(self.work, "token")
        self.jwks = ""
        self.problems: list[str] = []
        self.skipped: dict[str, str] = {}
        self.est_rps: dict[str, float] = {}
        self.result: dict[str, Any] = {
            "benchmark": NAME,
            "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    # -- lifecycle --

    def cleanup(self) -> None:
        if self.wrk_proc is not None and self.wrk_proc.poll() is None:
            self.wrk_proc.terminate()
            try:
                self.wrk_proc.wait(5)
            except subprocess.TimeoutExpired:
                self.wrk_proc.kill()
                self.wrk_proc.wait(5)
        for g in self.gateways.values():
            self.stop_gateway(g)
        if self.store is not None:
            self.store.cleanup()
            self.store = None
        if KEEP_WORK:
            log(f"kept work dir {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def stop_gateway(self, g: dict[str, Any]) -> None:
        gw: Gateway | None = g.get("gw")
        if gw is None:
            return
        if gw.proc is not None:
            g["rss_kb_end"] = proc_status_kb(gw.proc.pid, "VmRSS")
            g["hwm_kb"] = proc_status_kb(gw.proc.pid, "VmHWM")
            g["alive_at_stop"] = gw.alive()
            t0 = time.monotonic()
            try:
                g["exit_code"] = gw.stop(timeout=20, expect_code=None)
            except AssertionError as e:
                g["exit_code"] = None
                self.problems.append(f"gateway ({g['mode']}): {str(e).splitlines()[0]}")
            g["sigterm_seconds"] = round(time.monotonic() - t0, 2)
            g["log_tail"] = gw.stderr_text()[-3000:]
            if g["exit_code"] not in (0, None):
                self.problems.append(f"gateway ({g['mode']}) exited with {g['exit_code']}")
        if KEEP_WORK and gw.tmp:
            with open(os.path.join(g["dir"], "tracegate.log"), "w") as f:
                f.write(gw.stderr_text())
        gw.cleanup()
        g["gw"] = None

    # -- setup --

    def start_store(self) -> None:
        # Generated traces only (no ../shared): the benchmark fetches bench-30k, which the
        # store always serves; no request record (a JSON line per request would be work the
        # direct row pays for). Subprocess: the store's GIL stays out of this process.
        self.store = HttpTraceStore(traces=STORE_TRACES, shared_data=None, subprocess=True,
                                    record=False, ready_timeout=READY_TIMEOUT)
        self.store.start()
        status, body, _ = Client(self.store.host, self.store.port).request(
            "GET", trace_path(TRACE_ID), {"Authorization": self.store.auth_header()})
        if status != 200:
            raise SystemExit(f"[{NAME}] FATAL: the store answered {status} for {TRACE_ID}: "
                             f"{body[:200]!r}")
        doc = json.loads(body)
        if doc.get("id") != TRACE_ID:
            raise SystemExit(f"[{NAME}] FATAL: the store's {TRACE_ID} has id {doc.get('id')!r}")
        self.direct_body = body
        log(f"store {self.store.url} (python3 tests/http_store.py, pid {self.store.proc.pid}); "
            f"{TRACE_ID}: {len(body)} bytes")

    def dev_issuer(self) -> None:
        keys = os.path.join(self.work, "devkeys")
        os.makedirs(keys, mode=0o700)
        out = subprocess.run([TRACEGATE_BIN, "dev", "issuer", "--key-dir", keys],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise SystemExit(f"[{NAME}] FATAL: tracegate dev issuer failed: {out.stderr.strip()}")
        self.jwks = os.path.join(keys, "dev-issuer-jwks.json")
        if not os.path.exists(self.jwks):
            raise SystemExit(f"[{NAME}] FATAL: tracegate dev issuer did not write {self.jwks}")
        out = subprocess.run([TRACEGATE_BIN, "dev", "token", "--key-dir", keys, "--sub",
                              "bench-agent", "--groups", "ai-agents", "--ttl", "86400"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0 or not out.stdout.strip():
            raise SystemExit(f"[{NAME}] FATAL: tracegate dev token failed: {out.stderr.strip()}")
        self.token = out.stdout.strip()
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")

    def gateway_config(self, mode: str, gdir: str) -> dict[str, Any]:
        assert self.store is not None
        cfg: dict[str, Any] = {
            "workers": TRACEGATE_WORKERS,
            "log_level": "warn",
            "admin": {"listen": f"127.0.0.1:{free_port()}"},
            "connections": [{
                "name": CONNECTION,
                "type": "http",
                "listen": f"127.0.0.1:{free_port()}",
                "upstream": {
                    "url": self.store.url,
                    "auth": {"scheme": "basic", "username": self.store.user,
                             "secret_env": STORE_SECRET_ENV},
                    "timeout": UPSTREAM_TIMEOUT,
                },
                "routes": [{"name": "trace", "path": "/api/public/traces/{trace_id}",
                            "response_trace_id": "id"}],
            }],
            "api": {"listen": f"127.0.0.1:{free_port()}", "tls": False},
            "state": {"path": os.path.join(gdir, "state.db")},
        }
        if mode == "batched":
            cfg["audit"] = {"durability": "batched", "dir": os.path.join(gdir, "audit")}
        cfg["identity"] = {"issuers": [{
            "name": "dev", "issuer": "tracegate-dev", "audiences": ["tracegate"],
            "jwks_file": self.jwks, "algorithms": ["RS256"], "typ": "at+jwt",
            "development": True}]}
        cfg["masking_profiles"] = [{"name": "default"}]
        cfg["policy"] = {"max_ttl": "5m", "rules": [{
            "name": "bench-agents", "groups": ["ai-agents"], "connections": [CONNECTION],
            "ttl": "5m", "uses": GRANT_USES, "max_session": "5m",
            "masking_profile": "default"}]}
        return cfg

    def start_gateway(self, mode: str) -> dict[str, Any] | None:
        """mode strict (no audit section: the gateway's default) or batched. None = skipped."""
        assert self.store is not None
        gdir = os.path.join(self.work, f"gw-{mode}")
        os.makedirs(gdir, mode=0o700)
        cfg = self.gateway_config(mode, gdir)
        path = os.path.join(gdir, "tracegate.yaml")
        with open(path, "w") as f:
            f.write(f"# generated by bench/{NAME}.sh ({mode} recording)\n" + to_yaml(cfg))
        env = {STORE_SECRET_ENV: self.store.password}
        check = subprocess.run([TRACEGATE_BIN, "config", "check", path], capture_output=True,
                               text=True, timeout=60, env={**os.environ, **env})
        g: dict[str, Any] = {"mode": mode, "dir": gdir, "config": cfg, "gw": None,
                             "config_check": (check.stdout + check.stderr).strip()[-2000:]}
        if check.returncode != 0:
            print(f"---- tracegate config ({mode}) ----\n{to_yaml(cfg)}"
                  f"---- tracegate config check ----\n{check.stdout}{check.stderr}",
                  file=sys.stderr)
            reason = "tracegate config check failed"
            if "not supported" in check.stdout + check.stderr:
                reason += " (this build does not support http connections yet)"
            warn(f"gateway ({mode}): {reason}; its rows are SKIPPED")
            self.skipped[mode] = reason
            return None
        gw = Gateway(cfg, env=env, binary=TRACEGATE_BIN, ready_timeout=READY_TIMEOUT)
        g["gw"] = gw
        self.gateways[mode] = g
        try:
            gw.start()
            host, port = harness.split_hostport(cfg["api"]["listen"])
            wait_for(lambda: port_accepts(host, port), READY_TIMEOUT, what="api listening")
        except (RuntimeError, TimeoutError, OSError) as e:
            print(str(e)[-4000:], file=sys.stderr)
            warn(f"gateway ({mode}) did not come up; its rows are SKIPPED")
            self.skipped[mode] = "did not start"
            self.stop_gateway(g)
            return None
        g["pid"] = gw.proc.pid if gw.proc else None
        g["api_port"] = port
        g["http_host"], g["http_port"] = harness.split_hostport(cfg["connections"][0]["listen"])
        g["rss_kb_start"] = proc_status_kb(g["pid"], "VmRSS")
        g["api"] = Client("127.0.0.1", port)
        g["http"] = Client(g["http_host"], g["http_port"])
        try:
            self.smoke(g)
        except (AssertionError, OSError, http.client.HTTPException, ValueError) as e:
            print(f"---- tracegate log ({mode}) ----\n{gw.stderr_text()[-3000:]}", file=sys.stderr)
            warn(f"gateway ({mode}) smoke test failed: {e}", "its rows are SKIPPED")
            self.skipped[mode] = f"smoke test failed: {e}"
            self.stop_gateway(g)
            return None
        log(f"tracegate ({mode} recording, pid {g['pid']}): http listener "
            f"{g['http_host']}:{g['http_port']}, API http://127.0.0.1:{port}; "
            f"masked {TRACE_ID}: {g['masked_bytes']} bytes, "
            f"{'differs from' if g['masked_differs'] else 'same as'} the store's")
        return g

    # -- grants and calls --

    def mint(self, g: dict[str, Any], count: int) -> list[str]:
        body = json.dumps({"connection": CONNECTION, "trace_id": TRACE_ID,
                           "reason": f"{NAME} benchmark"})
        hdrs = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        out = []
        for _ in range(count):
            status, data, _ = g["api"].request("POST", "/v1/grants", hdrs, body)
            if status != 201:
                raise AssertionError(f"POST /v1/grants: HTTP {status}: {data[:300]!r}")
            bearer = (json.loads(data).get("http") or {}).get("bearer", "")
            if not bearer.startswith("tgb_"):
                raise AssertionError("POST /v1/grants: 201 without an http bearer")
            out.append(bearer)
        return out

    def fetch_with(self, g: dict[str, Any], bearer: str) -> tuple[int, bytes, dict[str, str]]:
        return g["http"].request("GET", trace_path(TRACE_ID), {"Authorization": f"Bearer {bearer}"})

    def one_call(self, g: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
        return g["api"].request("GET", f"/v1/connections/{CONNECTION}/traces/{TRACE_ID}",
                                {"Authorization": f"Bearer {self.token}"})

    def smoke(self, g: dict[str, Any]) -> None:
        (bearer,) = self.mint(g, 1)
        status, body, hdrs = self.fetch_with(g, bearer)
        assert status == 200, f"GET through the gateway: HTTP {status}: {body[:300]!r}"
        doc = json.loads(body)
        assert doc.get("id") == TRACE_ID, f"GET through the gateway: id {doc.get('id')!r}"
        g["masked_bytes"] = len(body)
        g["masked_differs"] = body != self.direct_body
        g["session_header"] = "x-tracegate-session" in hdrs
        # A multi-use grant serves its next request on the same connection.
        status, body, _ = self.fetch_with(g, bearer)
        assert status == 200, f"second request on a {GRANT_USES}-use grant: HTTP {status}: " \
                              f"{body[:300]!r}"

    # -- wrk --

    def run_wrk(self, row: str, tag: str, seconds: int) -> dict[str, Any]:
        assert self.store is not None
        g = self.gateways.get(ROW_MODE.get(row, ""))
        env = dict(os.environ)
        run: dict[str, Any] = {"row": row, "tag": tag, "seconds": seconds}
        if row == "direct":
            url = self.store.trace_url(TRACE_ID)
            script = os.path.join(BENCH_DIR, "wrk", "basic.lua")
            env["STORE_AUTHORIZATION"] = self.store.auth_header()
        else:
            assert g is not None
            url = f"http://{g['http_host']}:{g['http_port']}{trace_path(TRACE_ID)}"
            script = os.path.join(BENCH_DIR, "wrk", "bearer.lua")
            # Enough grants for SAFETY x the fastest rate seen so far (or the direct row's).
            est = (max(self.est_rps.get(row, 0.0), self.est_rps.get("direct", 0.0))
                   or GRANT_RPS_GUESS)
            per_conn = math.ceil(est * GRANT_SAFETY * seconds / CONNECTIONS / GRANT_USES) + 1
            t0 = time.monotonic()
            try:
                bearers = self.mint(g, per_conn * CONNECTIONS)
            except (AssertionError, OSError, http.client.HTTPException) as e:
                g["api"].close()
                warn(f"{ROW_LABELS[row]} ({tag}) FAILED: minting {per_conn * CONNECTIONS} "
                     f"grants: {e}")
                self.problems.append(f"{row} {tag}: minting grants failed: {e}")
                run.update(ok=False, problems=[f"minting grants failed: {e}"])
                return run
            mint_s = time.monotonic() - t0
            run.update(grants=len(bearers), grants_per_connection=per_conn,
                       grant_rps_estimate=round(est), mint_seconds=round(mint_s, 3))
            bfile = os.path.join(self.work, "bearers")
            fd = os.open(bfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                for i in range(CONNECTIONS):
                    f.write(" ".join(bearers[i::CONNECTIONS]) + "\n")
            env["BEARER_FILE"] = bfile
            env["GRANT_USES"] = str(GRANT_USES)
        cmd = [WRK, "-t", str(CONNECTIONS), "-c", str(CONNECTIONS), "-d", f"{seconds}s",
               "--latency", "--timeout", WRK_TIMEOUT, "-s", script, url]
        gw_pid = g["pid"] if g else None
        store_pid = self.store.proc.pid if self.store.proc else None
        cpu0 = (proc_cpu_seconds(gw_pid), proc_cpu_seconds(store_pid))
        self.wrk_proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, text=True)
        try:
            text, _ = self.wrk_proc.communicate(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            self.wrk_proc.kill()
            text, _ = self.wrk_proc.communicate()
            text += "\n(killed: wrk ran 120 s past its duration)"
        rc = self.wrk_proc.returncode
        self.wrk_proc = None
        cpu1 = (proc_cpu_seconds(gw_pid), proc_cpu_seconds(store_pid))
        if env.get("BEARER_FILE"):
            os.remove(env["BEARER_FILE"])
        logf = os.path.join(self.work, "runs", f"{row}-{tag}.txt")
        with open(logf, "w") as f:
            f.write(" ".join(cmd) + "\n" + text)
        run["wrk_exit"] = rc
        res: dict[str, Any] | None = None
        for line in text.splitlines():
            if line.startswith("TG_RESULT "):
                res = json.loads(line[len("TG_RESULT "):])
        problems = []
        if rc != 0:
            problems.append(f"wrk exited with {rc}")
        if res is None:
            problems.append("no TG_RESULT line in wrk's output")
        else:
            lat = res["latency_us"]
            n = res["requests"]
            secs = res["duration_us"] / 1e6
            run.update(
                requests=n, rps=round(n / secs, 1) if secs > 0 else None,
                p50_ms=lat["p50"] / 1000, p75_ms=lat["p75"] / 1000, p90_ms=lat["p90"] / 1000,
                p99_ms=lat["p99"] / 1000, p999_ms=lat["p99.9"] / 1000,
                mean_ms=round(lat["mean"] / 1000, 3), max_ms=lat["max"] / 1000,
                bytes_per_request=round(res["bytes"] / n) if n else None,
                errors=res["errors"], non_2xx=res["errors"]["status"],
                bearer_switches=res.get("bearer_switches"),
                bearers_exhausted=res.get("bearers_exhausted"))
            for name, (a, b) in (("gateway", (cpu0[0], cpu1[0])), ("store", (cpu0[1], cpu1[1]))):
                if a is not None and b is not None and n:
                    run[f"{name}_cpu_us_per_request"] = round((b - a) * 1e6 / n, 1)
            if n == 0:
                problems.append("no requests completed")
            if res["errors"]["status"]:
                problems.append(f"{res['errors']['status']} non-2xx/3xx responses")
            sock = {k: v for k, v in res["errors"].items() if k != "status" and v}
            if sock:
                problems.append(f"socket errors {sock}")
            if res.get("bearers_exhausted"):
                problems.append(f"{res['bearers_exhausted']} requests after a connection had "
                                "used up its grants (raise GRANT_SAFETY)")
        run["ok"] = not problems
        run["problems"] = problems
        if problems:
            tail = "\n".join(text.splitlines()[-14:])
            gw_tail = g["gw"].stderr_text()[-1500:] if g and g.get("gw") else ""
            print(f"---- wrk output ({row} {tag}) ----\n{tail}", file=sys.stderr)
            if gw_tail:
                print(f"---- tracegate log ({g['mode']}, tail) ----\n{gw_tail}", file=sys.stderr)
            warn(f"{ROW_LABELS[row]} ({tag}) FAILED: {'; '.join(problems)}")
            self.problems.append(f"{row} {tag}: {'; '.join(problems)}")
        elif run.get("rps"):
            self.est_rps[row] = max(self.est_rps.get(row, 0.0), run["rps"])
        return run

    # -- sequential latency --

    def sequential(self, label: str, call, n: int, warm: int) -> dict[str, Any]:
        """`call()` returns (status, body, parts) where parts is {name: seconds}; the total is
        timed here."""
        for _ in range(warm):
            try:
                call()
            except (OSError, http.client.HTTPException, ValueError):
                pass
        totals: list[float] = []
        parts: dict[str, list[float]] = {}
        bad = 0
        first_bad = ""
        t_start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                ok, detail, split = call()
            except (OSError, http.client.HTTPException, ValueError) as e:
                ok, detail, split = False, f"{type(e).__name__}: {e}", {}
            totals.append(time.perf_counter() - t0)
            for k, v in split.items():
                parts.setdefault(k, []).append(v)
            if not ok:
                bad += 1
                first_bad = first_bad or detail
        wall = time.perf_counter() - t_start
        out = summarize_ms(totals)
        out.update(label=label, calls=n, calls_per_s=round(n / wall, 1) if wall > 0 else None,
                   failed=bad)
        if parts:
            out["parts"] = {k: summarize_ms(v) for k, v in parts.items()}
        if bad:
            out["first_failure"] = first_bad
            warn(f"{label}: {bad} of {n} calls FAILED (first: {first_bad})")
            self.problems.append(f"{label}: {bad} of {n} calls failed: {first_bad}")
        return out

    def sequential_all(self) -> list[dict[str, Any]]:
        assert self.store is not None
        rows = []
        if ONECALL_N == 0:
            return rows
        store = Client(self.store.host, self.store.port)
        auth = {"Authorization": self.store.auth_header()}

        def direct():
            status, body, _ = store.request("GET", trace_path(TRACE_ID), auth)
            return status == 200 and len(body) == len(self.direct_body), f"HTTP {status}", {}

        log(f"sequential: {ONECALL_N} direct GETs")
        rows.append(dict(self.sequential("direct GET (store)", direct, ONECALL_N,
                                         ONECALL_WARMUP), id="direct", mode=None))
        store.close()
        for mode, g in self.gateways.items():
            if g.get("gw") is None:
                continue

            def one(g=g):
                status, body, _ = self.one_call(g)
                if status != 200:
                    return False, f"HTTP {status}: {body[:200]!r}", {}
                g["one_call_bytes"] = len(body)
                return True, "", {}

            def two(g=g):
                t0 = time.perf_counter()
                try:
                    (bearer,) = self.mint(g, 1)
                except AssertionError as e:
                    return False, str(e), {}
                t1 = time.perf_counter()
                status, body, _ = self.fetch_with(g, bearer)
                t2 = time.perf_counter()
                ok = status == 200
                return ok, "" if ok else f"HTTP {status}: {body[:200]!r}", \
                    {"POST /v1/grants": t1 - t0, "GET with the bearer": t2 - t1}

            log(f"sequential ({mode} recording): {ONECALL_N} grant + fetch pairs, "
                f"{ONECALL_N} one-call fetches")
            rows.append(dict(self.sequential("two-call: POST /v1/grants + GET (bearer)", two,
                                             ONECALL_N, ONECALL_WARMUP),
                             id=f"two-call-{mode}", mode=mode))
            one_label = f"one-call GET /v1/connections/{CONNECTION}/traces/{TRACE_ID}"
            # One checked call first: 200, JSON, the trace inside.
            try:
                status, body, _ = self.one_call(g)
                assert status == 200, f"HTTP {status}: {body[:300]!r}"
                assert (json.loads(body).get("trace") or {}).get("id") == TRACE_ID, \
                    "the answer does not hold the trace"
            except (AssertionError, OSError, http.client.HTTPException, ValueError) as e:
                detail = f"{type(e).__name__}: {e}"
                warn(f"{one_label} [{mode}] FAILED its first call: {detail}")
                self.problems.append(f"{one_label} [{mode}]: first call failed: {detail}")
                rows.append({"id": f"one-call-{mode}", "mode": mode, "label": one_label,
                             "calls": 1, "failed": 1, "first_failure": detail,
                             "calls_per_s": None, "p50_ms": None, "p90_ms": None,
                             "p99_ms": None, "mean_ms": None})
            else:
                rows.append(dict(self.sequential(one_label, one, ONECALL_N, ONECALL_WARMUP),
                                 id=f"one-call-{mode}", mode=mode))
            if not g["gw"].alive():
                print(f"---- tracegate log ({mode}, tail) ----\n{g['gw'].stderr_text()[-2000:]}",
                      file=sys.stderr)
                warn(f"gateway ({mode}) is not running after the sequential calls "
                     f"(exit status {g['gw'].proc.poll()})")
                self.problems.append(f"gateway ({mode}) died during the sequential calls "
                                     f"(exit status {g['gw'].proc.poll()})")
        return rows


def summarize_ms(seconds: list[float]) -> dict[str, Any]:
    s = sorted(seconds)
    return {"p50_ms": round(percentile(s, 50) * 1000, 3),
            "p90_ms": round(percentile(s, 90) * 1000, 3),
            "p99_ms": round(percentile(s, 99) * 1000, 3),
            "mean_ms": round(statistics.fmean(s) * 1000, 3) if s else None,
            "max_ms": round(s[-1] * 1000, 3) if s else None}


# ---- report -----------------------------------------------------------------------------------

def fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return format(v, spec)


def report(b: Bench, rows: list[dict[str, Any]], seq: list[dict[str, Any]]) -> tuple[int, int]:
    """Prints the tables and the checks; returns (misses, failed rows)."""
    direct = next((r for r in rows if r["id"] == "direct"), None)
    d_rps = direct["median"].get("rps") if direct else None
    d_p99 = direct["median"].get("p99_ms") if direct else None
    print()
    print(f"http_proxy: GET {TRACE_ID} ({len(b.direct_body)} bytes from the store)" +
          (f", wrk {CONNECTIONS} connections x {DURATION} s, median of {ROUNDS} round(s)"
           if rows else ", no wrk rows"))
    hdr = (f"{'row':<40} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
           f"{'vs direct':>9} {'added p99 ms':>12} {'gw CPU us/req':>13} {'status':>7}")
    print(hdr)
    print("-" * len(hdr))
    failed = 0
    for r in rows:
        m = r["median"]
        ratio = m.get("rps") / d_rps if d_rps and m.get("rps") is not None else None
        added = (m.get("p99_ms") - d_p99
                 if d_p99 is not None and m.get("p99_ms") is not None else None)
        r["ratio_vs_direct"] = round(ratio, 3) if ratio is not None else None
        r["added_p99_ms"] = round(added, 3) if added is not None else None
        if r["id"] == "direct":
            ratio_s, added_s = "1.00", "-"
        else:
            ratio_s, added_s = fmt(ratio), fmt(added, "+.2f")
        status = "ok" if r["ok"] else "FAILED"
        failed += 0 if r["ok"] else 1
        print(f"{r['label']:<40} {fmt(m.get('rps'), '.0f'):>9} {fmt(m.get('p50_ms')):>8} "
              f"{fmt(m.get('p90_ms')):>8} {fmt(m.get('p99_ms')):>8} {ratio_s:>9} {added_s:>12} "
              f"{fmt(m.get('gateway_cpu_us_per_request'), '.0f'):>13} {status:>7}")
    for row in ROWS:
        if ROW_MODE.get(row) in b.skipped:
            print(f"{ROW_LABELS[row]:<40} SKIPPED: {b.skipped[ROW_MODE[row]]}")
    if seq and "strict" in b.skipped and not any(s.get("mode") for s in seq):
        print(f"{'one-call / two-call fetch':<40} SKIPPED: {b.skipped['strict']}")
    if seq:
        print()
        print(f"sequential calls: one keep-alive client (python http.client), {ONECALL_N} calls "
              f"each after {ONECALL_WARMUP} warm-up calls")
        hdr = (f"{'call':<58} {'calls/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
               f"{'mean ms':>8}")
        print(hdr)
        print("-" * len(hdr))
        for s in seq:
            label = s["label"] + (f" [{s['mode']}]" if s.get("mode") else "")
            print(f"{label:<58} {fmt(s['calls_per_s'], '.0f'):>8} {fmt(s['p50_ms']):>8} "
                  f"{fmt(s['p90_ms']):>8} {fmt(s['p99_ms']):>8} {fmt(s['mean_ms']):>8}"
                  + (f"  FAILED {s['failed']}" if s["failed"] else ""))
            for part, p in (s.get("parts") or {}).items():
                print(f"{'  of which ' + part:<58} {'':>8} {fmt(p['p50_ms']):>8} "
                      f"{fmt(p['p90_ms']):>8} {fmt(p['p99_ms']):>8} {fmt(p['mean_ms']):>8}")
    # -- checks --
    checks = []
    for r in rows:
        if r["id"] == "direct":
            continue
        for what, value, ok_fn, shown in (
                (f">= {TARGET_RATIO:.2f} x direct requests/s", r["ratio_vs_direct"],
                 lambda v: v >= TARGET_RATIO, lambda v: f"{v:.2f} x"),
                (f"p99 added <= {TARGET_ADDED_P99:g} ms", r["added_p99_ms"],
                 lambda v: v <= TARGET_ADDED_P99, lambda v: f"{v:+.2f} ms")):
            if value is None or not r["ok"]:
                verdict, detail = "SKIP", "no valid numbers" if r["ok"] else "row FAILED"
            else:
                verdict, detail = ("PASS" if ok_fn(value) else "MISS"), shown(value)
            checks.append({"row": r["id"], "target": what, "value": value, "verdict": verdict,
                           "detail": detail})
    for mode in ROW_MODE.values():
        if mode in b.skipped:
            row = next(k for k, v in ROW_MODE.items() if v == mode)
            if row in ROWS:
                checks.append({"row": row, "target": "measured", "value": None,
                               "verdict": "SKIP", "detail": b.skipped[mode]})
    print()
    print("targets (issue: >= 0.8 x direct requests/s; p99 added <= 2 ms):")
    for c in checks:
        print(f"  {c['verdict']:<5} {ROW_LABELS[c['row']]:<40} {c['target']:<34} {c['detail']}")
    b.result["checks"] = checks
    misses = sum(1 for c in checks if c["verdict"] == "MISS")
    return misses, failed


def main() -> int:
    harness.install_sigterm_cleanup()  # SIGTERM -> SystemExit: the finally below cleans up

    def hangup(signum, frame):  # noqa: ARG001
        raise SystemExit(f"terminated by signal {signum}")
    signal.signal(signal.SIGHUP, hangup)
    b = Bench()
    rc = 0
    try:
        load_start = loadavg()
        ncpu = len(os.sched_getaffinity(0))
        log(f"load average at start: {' '.join(map(str, load_start))} on {ncpu} cores")
        if load_start[0] > 0.5 * ncpu:
            warn(f"load average is {load_start[0]} on {ncpu} cores before starting: something "
                 "else is running,", "and its CPU use will distort the numbers "
                 "(top -b -n1 | head -20)")
        b.result.update(machine=machine_info(), load_average={"start": load_start})
        b.result["versions"] = {
            "wrk": first_line([WRK, "-v"]), "tracegate": tracegate_version(),
            "tracegate_bin": TRACEGATE_BIN, "python": platform.python_version()}
        b.result["parameters"] = {
            "connections": CONNECTIONS, "threads": CONNECTIONS, "duration_s": DURATION,
            "rounds": ROUNDS, "warmup_s": WARMUP, "rows": ROWS, "trace_id": TRACE_ID,
            "onecall_n": ONECALL_N, "onecall_warmup": ONECALL_WARMUP,
            "grant_uses": GRANT_USES, "grant_safety": GRANT_SAFETY,
            "tracegate_workers": TRACEGATE_WORKERS, "upstream_timeout": UPSTREAM_TIMEOUT,
            "wrk_timeout": WRK_TIMEOUT, "store_traces": STORE_TRACES,
            "store": "python3 tests/http_store.py (subprocess, plain HTTP, Basic auth, "
                     "generated traces only, no request record)",
            "masking_profile": "default (every built-in detector, redact)",
            "recording": {"masked": "gateway default (no audit section): strict",
                          "masked-batched": "audit: {durability: batched}"},
        }
        b.start_store()
        want_gw = [ROW_MODE[r] for r in ROWS if r in ROW_MODE]
        if want_gw or ONECALL_N:
            if not os.access(TRACEGATE_BIN, os.X_OK):
                warn(f"tracegate binary not found at {TRACEGATE_BIN} (build it, or set "
                     "TRACEGATE_BIN=...)", "every tracegate row is SKIPPED")
                for m in set(want_gw) | {"strict"}:
                    b.skipped[m] = f"binary not found at {TRACEGATE_BIN}"
            else:
                b.dev_issuer()
                for mode in dict.fromkeys(want_gw or ["strict"]):
                    b.start_gateway(mode)
        b.result["trace"] = {"id": TRACE_ID, "bytes_from_store": len(b.direct_body)}
        for mode, g in b.gateways.items():
            if g.get("gw") is not None:
                b.result["trace"][f"bytes_through_tracegate_{mode}"] = g["masked_bytes"]
                b.result["trace"][f"masked_body_differs_{mode}"] = g["masked_differs"]
        active = [r for r in ROWS if r == "direct" or
                  (ROW_MODE[r] in b.gateways and b.gateways[ROW_MODE[r]].get("gw"))]
        if not active and not (ONECALL_N and any(g.get("gw") for g in b.gateways.values())):
            raise SystemExit(f"[{NAME}] FATAL: nothing to measure (ROWS='{' '.join(ROWS)}')")

        if WARMUP > 0:
            for row in active:
                log(f"warm-up {ROW_LABELS[row]} ({WARMUP} s)")
                w = b.run_wrk(row, "warmup", WARMUP)
                if w["ok"]:
                    log(f"  {fmt(w.get('rps'), '.0f')} req/s, p99 {fmt(w.get('p99_ms'))} ms")
        runs: dict[str, list[dict[str, Any]]] = {r: [] for r in active}
        est = len(active) * ROUNDS * DURATION
        log(f"{len(active)} rows x {ROUNDS} round(s) x {DURATION} s ≈ {est // 60}m{est % 60}s "
            f"of wrk (+ grants, + {ONECALL_N} x sequential calls)")
        for rnd in range(ROUNDS if active else 0):
            order = active[rnd % len(active):] + active[:rnd % len(active)]
            for row in order:
                run = b.run_wrk(row, f"r{rnd + 1}", DURATION)
                run["round"] = rnd + 1
                runs[row].append(run)
                log(f"round {rnd + 1}/{ROUNDS} {ROW_LABELS[row]}: "
                    f"{fmt(run.get('rps'), '.0f')} req/s, p50 {fmt(run.get('p50_ms'))} ms, "
                    f"p99 {fmt(run.get('p99_ms'))} ms" + ("" if run["ok"] else "  FAILED"))
        for g in b.gateways.values():
            if g.get("gw") is not None:
                g["still_running_after_runs"] = g["gw"].alive()
                if not g["still_running_after_runs"]:
                    b.problems.append(f"gateway ({g['mode']}) was not running after its runs")
        seq = b.sequential_all()

        rows = []
        keys = ("rps", "p50_ms", "p75_ms", "p90_ms", "p99_ms", "p999_ms", "mean_ms",
                "bytes_per_request", "gateway_cpu_us_per_request", "store_cpu_us_per_request")
        for row in active:
            ok_runs = [r for r in runs[row] if r["ok"]]
            med = {k: median_or_none([r.get(k) for r in ok_runs]) for k in keys}
            rows.append({"id": row, "label": ROW_LABELS[row], "ok": len(ok_runs) == len(runs[row]),
                         "median": med, "runs": runs[row]})
        # per-round ratio to direct (same round), to show the noise
        if "direct" in runs:
            for row in active:
                if row == "direct":
                    continue
                ratios = []
                for d, r in zip(runs["direct"], runs[row]):
                    if d.get("ok") and r.get("ok") and d.get("rps"):
                        ratios.append(round(r["rps"] / d["rps"], 3))
                next(x for x in rows if x["id"] == row)["per_round_ratio_vs_direct"] = ratios

        misses, failed = report(b, rows, seq)
        load_end = loadavg()
        b.result["load_average"]["end"] = load_end
        b.result.update(rows=rows, sequential=seq)
        print()
        print(f"machine: {b.result['machine'].get('cpu', '?')}, {b.result['machine']['nproc']} "
              f"cores, {b.result['machine'].get('memory_mb', '?')} MB; load average "
              f"{' '.join(map(str, load_start))} at start, {' '.join(map(str, load_end))} at end")
        print(f"versions: {b.result['versions']['wrk']}; {b.result['versions']['tracegate']}")
        if failed or any(s.get("failed") for s in seq) or any(
                "died" in p or "exited with" in p for p in b.problems):
            rc = 2
        elif misses and STRICT:
            rc = 3
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    except SystemExit as e:
        if isinstance(e.code, str):
            log(e.code if e.code.startswith("[") else f"stopped: {e.code}")
            rc = 143 if "signal" in e.code else 1
        else:
            rc = e.code or 0
    finally:
        try:
            b.cleanup()
            # a gateway that crashed or exited badly when stopped fails the run too
            if rc in (0, 3) and any("exited with" in p or "died" in p or "not running" in p
                                    for p in b.problems):
                rc = 2
        finally:
            for mode, g in b.gateways.items():
                for k in ("gw", "api", "http", "dir"):
                    g.pop(k, None)
            b.result["gateways"] = list(b.gateways.values())
            b.result["skipped"] = b.skipped
            b.result["problems"] = b.problems
            b.result["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            b.result["exit_code"] = rc
            if "rows" in b.result or rc in (0, 2, 3):
                os.makedirs(os.path.dirname(OUT_JSON), exist_ok=True)
                with open(OUT_JSON, "w") as f:
                    json.dump(scrub(json.loads(json.dumps(b.result, default=str)),
                                    work=getattr(b, "work", None)), f, indent=2)
                    f.write("\n")
                log(f"wrote {os.path.relpath(OUT_JSON, REPO_DIR)}")
            if b.problems:
                print("\nPROBLEMS:\n" + "\n".join(f"  - {p}" for p in b.problems))
    return rc


if __name__ == "__main__":
    sys.exit(main())
