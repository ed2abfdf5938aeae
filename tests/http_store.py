#!/usr/bin/env python3
"""A test HTTP trace store in Langfuse's public-API shape, behind Basic auth.

It serves the same traces the PostgreSQL fixture loads: scripts/gen_traces.py is imported
(not copied) to generate the seeded synthetic traces and to read the real Langfuse
framework exports in ../shared/data/langfuse-framework-traces (relative to the repository;
when that folder is absent only generated traces are served, never an error). Two special
traces are added: BENCH_TRACE_ID (a trace whose GET body is exactly 30 KiB, for the
benchmark) and PII_TRACE_ID (planted synthetic personal data, PII_VALUES, in input/output
strings, so masking is visible).

Routes (Langfuse's public API; every /api route needs `Authorization: Basic
base64(public_key:secret_key)`, else 401 {"message": "Unauthorized"}):

  GET /api/public/traces/{traceId}      trace with details: ..., "observations": [...],
                                        "scores": [...]; unknown id: 404
                                        {"message": "Trace not found"}
  GET /api/public/observations?traceId=X[&page=&limit=]
                                        {"data": [...], "meta": {"page", "limit",
                                        "totalItems", "totalPages"}}
  GET /api/public/traces[?page=&limit=] the list of all traces (what a gateway must refuse)
  GET /api/public/health                {"status": "OK", "version": ...}

Every request (method, target, all headers in order, body) is recorded; fault-injection
knobs (KNOB_DEFAULTS) change the answers at run time. In-process use goes through
tests/harness.py's HttpTraceStore; as a program (for the benchmark and the demo):

    python3 tests/http_store.py --port 0 --user pk --password sk \\
        [--tls-cert C --tls-key K] [--traces N --seed S] [--shared-data DIR]

prints `listening on http(s)://127.0.0.1:<port>` on stdout and serves until SIGTERM/SIGINT.

Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import functools
import gzip as gzip_module
import hmac
import importlib.util
import json
import math
import os
import signal
import socket
import ssl
import sys
import threading
import time
import types
import urllib.parse
import zlib
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable

ROOT = (os.environ.get("TRACEGATE_ROOT")
        or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN_TRACES = os.path.join(ROOT, "scripts", "gen_traces.py")
# ../shared/data relative to the repository (absent on most users' machines: then only
# generated traces are served).
DEFAULT_SHARED_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data",
                                                    "langfuse-framework-traces"))

BENCH_TRACE_ID = "bench-30k"
BENCH_TRACE_BYTES = 30 * 1024
PII_TRACE_ID = "pii-1"
# Documented test values only (example.com, the Visa test card, AWS's documented example key).
PII_VALUES = {
    "person_name": "Jane Doe",
    "email": "jane.doe@example.com",
    "card": "4111 1111 1111 1111",
    "aws_key": "AKIAIOSFODNN7EXAMPLE",
}

KNOB_DEFAULTS: dict[str, Any] = {
    "delay_seconds": 0.0,          # sleep before answering any request
    "gzip": False,                 # Content-Encoding: gzip when Accept-Encoding allows it
    "chunked": False,              # Transfer-Encoding: chunked instead of Content-Length
    "encoding_override": None,     # e.g. "br": that Content-Encoding, garbage body
    "huge_bytes": 0,               # trace bodies padded to exactly N bytes (valid JSON)
    "lie_trace_id": None,          # answer for trace A with trace B (or A relabelled B)
    "status_override": None,       # every /api request answers this status
    "close_after_response": False,  # Connection: close, then close
    "interim_statuses": [],        # 1xx interim responses (e.g. [100, 103]) before the answer
    "close_delimited": False,      # no Content-Length nor chunked: the body ends when the store
                                   # half-closes (SHUT_WR); it keeps reading, so a request the
                                   # client sends on that connection later is recorded, unanswered
    "gzip_truncated_at": 0,        # trace bodies padded to N bytes, gzip'd and flushed but cut
                                   # off before the stream's end (Content-Length of what is sent)
}

# Not a valid gzip, deflate, brotli or zstd stream (curl --compressed fails on it).
GARBAGE_BODY = b"\xff\xfe\xfd\xfc not a compressed stream \x00\x01\x02\x03" * 4

RESPONSE_CHUNK = 4096  # chunk size with the `chunked` knob
DEFAULT_PAGE_LIMIT = 50


# --- gen_traces.py, imported ----------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def gen_traces() -> types.ModuleType:
    """scripts/gen_traces.py as a module (the one source of the trace data)."""
    if "gen_traces" in sys.modules:
        return sys.modules["gen_traces"]
    spec = importlib.util.spec_from_file_location("gen_traces", GEN_TRACES)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {GEN_TRACES}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_traces"] = module
    spec.loader.exec_module(module)
    return module


def _plain(value: Any) -> Any:
    """gen_traces' row values (Json, TextArray wrappers) as plain JSON values."""
    g = gen_traces()
    if isinstance(value, g.Json):
        return value.value
    if isinstance(value, g.TextArray):
        return list(value.items)
    return value


def _parse_ts(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc)


def _iso(value: Any) -> str | None:
    """Langfuse's timestamp format: 2025-06-01T12:34:56.789Z."""
    t = _parse_ts(value)
    if t is None:
        return value if isinstance(value, str) and value else None
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _seconds_between(start: Any, end: Any) -> float | None:
    a, b = _parse_ts(start), _parse_ts(end)
    if a is None or b is None:
        return None
    return round((b - a).total_seconds(), 3)


def _usage_legacy(usage: Any) -> dict | None:
    if not isinstance(usage, dict):
        return None
    out = {k: usage[k] for k in ("input", "output", "total") if isinstance(usage.get(k), int)}
    if not out:
        return None
    out["unit"] = "TOKENS"
    return out


def api_observation(row: dict, project_id: str | None) -> dict:
    """An observations table row as Langfuse's ObservationsView."""
    usage = _plain(row.get("usage"))
    metadata = _plain(row.get("metadata"))
    params = metadata.get("params") if isinstance(metadata, dict) else None
    start, end = _iso(row.get("start_time")), _iso(row.get("end_time"))
    return {
        "id": row["id"],
        "traceId": row["trace_id"],
        "projectId": project_id,
        "type": row.get("type"),
        "environment": "default",
        "parentObservationId": row.get("parent_observation_id"),
        "name": row.get("name"),
        "startTime": start,
        "endTime": end,
        "completionStartTime": None,
        "model": row.get("model"),
        "modelParameters": params if isinstance(params, dict) else {},
        "input": _plain(row.get("input")),
        "output": _plain(row.get("output")),
        "metadata": metadata,
        "level": row.get("level") or "DEFAULT",
        "statusMessage": None,
        "version": None,
        "usage": _usage_legacy(usage),
        "usageDetails": usage if isinstance(usage, dict) else {},
        "costDetails": {},
        "promptId": None,
        "latency": _seconds_between(start, end),
        "createdAt": start,
        "updatedAt": end or start,
    }


def api_score(row: dict) -> dict:
    ts = _iso(row.get("timestamp"))
    return {
        "id": row["id"],
        "traceId": row["trace_id"],
        "observationId": row.get("observation_id"),
        "name": row.get("name"),
        "value": row.get("value"),
        "dataType": "NUMERIC",
        "source": "API",
        "comment": row.get("comment"),
        "environment": "default",
        "timestamp": ts,
        "createdAt": ts,
        "updatedAt": ts,
    }


def api_trace(row: dict, observations: list[dict], scores: list[dict]) -> dict:
    """A traces table row with its observations and scores as Langfuse's TraceWithFullDetails."""
    project_id = row.get("project_id")
    ts = _iso(row.get("timestamp"))
    obs = [api_observation(o, project_id) for o in observations]
    starts = [o["startTime"] for o in obs if o["startTime"]]
    ends = [o["endTime"] for o in obs if o["endTime"]]
    latency = _seconds_between(min(starts), max(ends)) if starts and ends else 0.0
    return {
        "id": row["id"],
        "projectId": project_id,
        "name": row.get("name"),
        "timestamp": ts,
        "environment": "default",
        "tags": _plain(row.get("tags")) or [],
        "bookmarked": False,
        "public": False,
        "release": row.get("release"),
        "version": row.get("version"),
        "userId": row.get("user_id"),
        "sessionId": row.get("session_id"),
        "input": _plain(row.get("input")),
        "output": _plain(row.get("output")),
        "metadata": _plain(row.get("metadata")),
        "externalId": None,
        "createdAt": ts,
        "updatedAt": ts,
        "htmlPath": f"/project/{project_id}/traces/{urllib.parse.quote(row['id'], safe='')}",
        "latency": latency,
        "totalCost": 0.0,
        "observations": obs,
        "scores": [api_score(s) for s in scores],
    }


def dumps(obj: Any) -> bytes:
    """Compact JSON as Langfuse (JSON.stringify) sends it: UTF-8, no ASCII escaping."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep them as \\u escapes
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _replace_strings(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, list):
        return [_replace_strings(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace_strings(v, old, new) for k, v in value.items()}
    return value


def _clean_generated_trace(seed: int, payload_bytes: int) -> tuple[dict, Any]:
    """The first trace of Generator(seed) that carries no planted PII, as an API trace
    (deep-copied: the generator shares message objects between trace and observations)."""
    g = gen_traces()
    gen = g.Generator(seed, payload_bytes)
    for i in range(100):
        row, obs, scores = gen.trace(i)
        if row["id"] not in gen.manifest:
            return json.loads(dumps(api_trace(row, obs, scores))), gen
    raise RuntimeError("gen_traces planted PII into 100 traces in a row")


def _relabel(trace: dict, new_id: str) -> dict:
    t = copy.deepcopy(trace)
    t["id"] = new_id
    t["htmlPath"] = f"/project/{t.get('projectId')}/traces/{new_id}"
    for o in t["observations"]:
        o["traceId"] = new_id
    for s in t["scores"]:
        s["traceId"] = new_id
    return t


def make_pii_trace() -> tuple[dict, list[dict]]:
    """PII_TRACE_ID: a generated trace with PII_VALUES planted in its user message (also in
    the observations that carry that message) and in an output text block."""
    base, _ = _clean_generated_trace(seed=424242, payload_bytes=2048)
    t = _relabel(base, PII_TRACE_ID)
    v = PII_VALUES
    user_msg = t["input"]["messages"][1]["content"]
    planted = (f"{user_msg} My name is {v['person_name']}, email {v['email']}. Charge the card "
               f"{v['card']}, expiry 12/34. Our deploy logs show access key {v['aws_key']} "
               "failing.")
    t["input"] = _replace_strings(t["input"], user_msg, planted)
    t["observations"] = _replace_strings(t["observations"], user_msg, planted)
    t["output"]["content"].append({"type": "text", "text": (
        f"Thanks {v['person_name']}. I will send the receipt to {v['email']}, charge card "
        f"{v['card']} and rotate key {v['aws_key']}.")})
    manifest = [{"kind": k, "value": val} for k, val in PII_VALUES.items()]
    return t, manifest


def make_bench_trace(target: int = BENCH_TRACE_BYTES) -> dict:
    """BENCH_TRACE_ID: a generated trace whose GET body is exactly `target` bytes, filled up
    with more conversation (generator prose) in its input messages."""
    payload = 16384
    while True:
        base, gen = _clean_generated_trace(seed=30720, payload_bytes=payload)
        t = _relabel(base, BENCH_TRACE_ID)
        t["input"]["messages"].append({"role": "user", "content": ""})
        room = target - len(dumps(t))
        if room >= 0 or payload < 1024:
            break
        payload -= 2048
    filler = ""
    while len(filler) < room:
        filler += gen.paragraph(4) + " "
    t["input"]["messages"][-1]["content"] = filler[:room]
    body = dumps(t)
    if len(body) != target:
        raise RuntimeError(f"bench trace is {len(body)} bytes, not {target}")
    return t


class TraceData:
    """The traces one store serves: generated (gen_traces, seeded, same as PgServer with the
    same traces/seed/payload_bytes), the framework exports when present, and the special
    traces. Immutable once built; bodies are pre-serialized."""

    def __init__(self, traces: int = 50, seed: int = 1, payload_bytes: int = 8192,
                 shared_data: str | None = DEFAULT_SHARED_DATA):
        g = gen_traces()
        self.shared_data = None
        if shared_data and os.path.isdir(shared_data) and any(
                n.endswith(".json") for n in os.listdir(shared_data)):
            self.shared_data = shared_data
        args = argparse.Namespace(traces=traces, seed=seed, payload_bytes=payload_bytes,
                                  shared_data=self.shared_data)
        rows, obs_rows, score_rows, manifest = g.build(args)
        obs_by: dict[str, list[dict]] = {}
        for o in obs_rows:
            obs_by.setdefault(o["trace_id"], []).append(o)
        scores_by: dict[str, list[dict]] = {}
        for s in score_rows:
            scores_by.setdefault(s["trace_id"], []).append(s)
        self.traces: dict[str, dict] = {}
        self.generated_ids: list[str] = [r["id"] for r in rows[:traces]]
        self.shared_ids: list[str] = [r["id"] for r in rows[traces:]]
        for r in rows:
            self.traces[r["id"]] = api_trace(r, obs_by.get(r["id"], []),
                                             scores_by.get(r["id"], []))
        self.manifest: dict[str, list[dict]] = dict(manifest)
        pii, pii_manifest = make_pii_trace()
        for special in (make_bench_trace(), pii):
            if special["id"] in self.traces:
                raise RuntimeError(f"duplicate trace id {special['id']}")
            self.traces[special["id"]] = special
        self.manifest[PII_TRACE_ID] = pii_manifest
        self.special_ids = [BENCH_TRACE_ID, PII_TRACE_ID]
        # The list endpoint's order (Langfuse: newest first).
        self.order = sorted(self.traces, key=lambda i: self.traces[i]["timestamp"] or "",
                            reverse=True)
        self.bodies = {tid: dumps(t) for tid, t in self.traces.items()}
        self.observations = {tid: t["observations"] for tid, t in self.traces.items()}
        self.list_items = {tid: self._list_item(t) for tid, t in self.traces.items()}

    @staticmethod
    def _list_item(t: dict) -> dict:
        """GET /api/public/traces items: observations and scores as ids."""
        item = {k: v for k, v in t.items() if k not in ("observations", "scores")}
        item["observations"] = [o["id"] for o in t["observations"]]
        item["scores"] = [s["id"] for s in t["scores"]]
        return item

    def ids(self) -> list[str]:
        return list(self.traces)


@functools.lru_cache(maxsize=8)
def load_data(traces: int = 50, seed: int = 1, payload_bytes: int = 8192,
              shared_data: str | None = DEFAULT_SHARED_DATA) -> TraceData:
    """TraceData, cached per arguments (building it takes a moment; it is immutable)."""
    return TraceData(traces, seed, payload_bytes, shared_data)


# --- recorded requests ----------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the store received it."""

    method: str
    target: str                       # as on the request line (path and query)
    version: str                      # "HTTP/1.1"
    headers: list[tuple[str, str]]    # every header line, in order, names as sent
    body: bytes = b""
    client: str = ""                  # "127.0.0.1:54321"
    connection: int = 0               # per-store TCP connection number (1, 2, ...)
    seq: int = 0                      # request number on that connection (1, 2, ...)
    tls: bool = False
    time: float = 0.0                 # time.time() when the request line was read
    path: str = field(init=False)
    query: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.target)
        self.path = parts.path
        self.query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def header_names(self) -> list[str]:
        """Lower-cased header names, in order (repeated names repeat)."""
        return [k.lower() for k, _ in self.headers]

    def to_json(self) -> dict:
        return {"method": self.method, "target": self.target, "version": self.version,
                "headers": [list(h) for h in self.headers],
                "body": base64.b64encode(self.body).decode(), "client": self.client,
                "connection": self.connection, "seq": self.seq, "tls": self.tls,
                "time": self.time}

    @classmethod
    def from_json(cls, d: dict) -> "RecordedRequest":
        return cls(method=d["method"], target=d["target"], version=d["version"],
                   headers=[(k, v) for k, v in d["headers"]],
                   body=base64.b64decode(d["body"]), client=d["client"],
                   connection=d["connection"], seq=d["seq"], tls=d["tls"], time=d["time"])


def check_knobs(knobs: dict[str, Any]) -> dict[str, Any]:
    """Validates knob names and types; returns them normalised."""
    out = {}
    for name, value in knobs.items():
        if name not in KNOB_DEFAULTS:
            raise ValueError(f"unknown knob {name!r}; knobs: {', '.join(KNOB_DEFAULTS)}")
        if name == "delay_seconds":
            value = float(value or 0)
            if value < 0:
                raise ValueError("delay_seconds must be >= 0")
        elif name in ("gzip", "chunked", "close_after_response", "close_delimited"):
            value = bool(value)
        elif name in ("huge_bytes", "gzip_truncated_at"):
            value = int(value or 0)
            if value < 0:
                raise ValueError(f"{name} must be >= 0")
        elif name == "interim_statuses":
            value = [int(v) for v in (value or [])]
            if not all(100 <= v <= 199 for v in value):
                raise ValueError("interim_statuses must be 1xx statuses")
        elif name == "status_override":
            value = int(value) if value else None
            if value is not None and not 100 <= value <= 599:
                raise ValueError("status_override must be an HTTP status")
        elif name in ("encoding_override", "lie_trace_id"):
            value = str(value) if value else None
        out[name] = value
    return out


def accepts_gzip(values: Iterable[str]) -> bool:
    """Whether Accept-Encoding header values allow gzip (RFC 9110: q=0 means "not")."""
    gzip_q: float | None = None
    star_q: float | None = None
    for value in values:
        for item in value.split(","):
            parts = [p.strip() for p in item.split(";")]
            coding = parts[0].lower()
            if not coding:
                continue
            q = 1.0
            for p in parts[1:]:
                if p.lower().startswith("q="):
                    try:
                        q = float(p[2:])
                    except ValueError:
                        q = 0.0
            if coding in ("gzip", "x-gzip"):
                gzip_q = q
            elif coding == "*":
                star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _padding(n: int) -> str:
    """n JSON-safe, poorly compressible characters (so gzip does not hide the size)."""
    if n <= 0:
        return ""
    raw = base64.b64encode(os.urandom(n * 3 // 4 + 3)).decode("ascii")
    return raw[:n]


def padded_body(trace: dict, size: int) -> bytes:
    """`trace` as JSON of exactly `size` bytes (a top-level "padding" string), or the plain
    body when the trace alone is already larger."""
    doc = dict(trace)
    doc["padding"] = ""
    room = size - len(dumps(doc))
    if room <= 0:
        return dumps(trace)
    doc["padding"] = _padding(room)
    return dumps(doc)


# --- the server -----------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    store: "StoreServer"

    def handle_error(self, request, client_address) -> None:
        # Clients that hang up, fail the TLS handshake or get cut off by stop(): no traceback
        # on the test output unless verbose.
        if self.store.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "langfuse-test-store/1"
    sys_version = ""
    wbufsize = 1 << 16             # one write per response (headers + body)
    disable_nagle_algorithm = True
    server: _HTTPServer

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        store = self.server.store
        self.timeout = store.idle_timeout
        self.conn_id = store._register(self.request)
        self.seq = 0
        try:
            if isinstance(self.request, ssl.SSLSocket):
                # The handshake runs here, in the connection's thread, not in accept().
                self.request.settimeout(10)
                self.request.do_handshake()
            super().setup()
        except BaseException:
            store._unregister(self.request)
            raise

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.store._unregister(self.request)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        if self.server.store.verbose:
            sys.stderr.write(f"http_store: {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    # -- request --

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(3)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        store = self.server.store
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(400, {"message": "Bad request body"}, store.knobs())
            return
        self.seq += 1
        store._record(RecordedRequest(
            method=self.command, target=self.path, version=self.request_version,
            headers=list(self.headers.items()), body=body,
            client=f"{self.client_address[0]}:{self.client_address[1]}",
            connection=self.conn_id, seq=self.seq,
            tls=isinstance(self.request, ssl.SSLSocket), time=time.time()))
        knobs = store.knobs()
        if knobs["delay_seconds"] > 0:
            store._stopping.wait(knobs["delay_seconds"])
        status, payload = self._route(store, knobs)
        self._send(status, payload, knobs)

    def _route(self, store: "StoreServer", knobs: dict[str, Any]) -> tuple[int, Any]:
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path
        if path != "/api" and not path.startswith("/api/"):
            return 404, {"message": "Not found"}
        status = knobs["status_override"]
        if status:
            return status, {"message": HTTPStatus(status).phrase
                            if status in HTTPStatus._value2member_map_ else "Error"}
        if not store.authorized(self.headers.get_all("Authorization") or []):
            return 401, {"message": "Unauthorized"}
        if self.command not in ("GET", "HEAD"):
            return 405, {"message": "Method not allowed"}
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        data = store.data
        prefix = "/api/public/traces/"
        if path == "/api/public/health":
            return 200, {"status": "OK", "version": "3.0.0-tracegate-test"}
        if path in ("/api/public/traces", "/api/public/traces/"):
            page = self._page(query)
            if page is None:
                return 400, {"message": "Invalid request data"}
            items = [data.list_items[i] for i in data.order]
            return 200, self._paginate(items, *page)
        if path.startswith(prefix) and "/" not in path[len(prefix):]:
            trace_id = urllib.parse.unquote(path[len(prefix):])
            return self._trace(data, trace_id, knobs)
        if path == "/api/public/observations":
            page = self._page(query)
            if page is None:
                return 400, {"message": "Invalid request data"}
            trace_ids = query.get("traceId")
            if trace_ids:
                obs = self._observations(data, trace_ids[0], knobs)
            else:
                obs = [o for i in data.order for o in data.observations[i]]
            return 200, self._paginate(obs, *page)
        return 404, {"message": "Not found"}

    @staticmethod
    def _page(query: dict[str, list[str]]) -> tuple[int, int] | None:
        try:
            page = int(query.get("page", ["1"])[0] or 1)
            limit = int(query.get("limit", [str(DEFAULT_PAGE_LIMIT)])[0] or DEFAULT_PAGE_LIMIT)
        except ValueError:
            return None
        if page < 1 or limit < 1:
            return None
        return page, limit

    @staticmethod
    def _paginate(items: list, page: int, limit: int) -> dict:
        start = (page - 1) * limit
        return {"data": items[start:start + limit],
                "meta": {"page": page, "limit": limit, "totalItems": len(items),
                         "totalPages": math.ceil(len(items) / limit)}}

    @staticmethod
    def _trace(data: TraceData, trace_id: str, knobs: dict[str, Any]) -> tuple[int, Any]:
        if trace_id not in data.traces:
            return 404, {"message": "Trace not found"}
        lie = knobs["lie_trace_id"]
        if lie and lie != trace_id:
            trace = data.traces[lie] if lie in data.traces else _relabel(data.traces[trace_id],
                                                                         lie)
        else:
            trace = data.traces[trace_id]
        if knobs["gzip_truncated_at"]:
            return 200, padded_body(trace, knobs["gzip_truncated_at"])
        if knobs["huge_bytes"]:
            return 200, padded_body(trace, knobs["huge_bytes"])
        if trace is data.traces.get(trace["id"]):
            return 200, data.bodies[trace["id"]]
        return 200, trace

    @staticmethod
    def _observations(data: TraceData, trace_id: str, knobs: dict[str, Any]) -> list[dict]:
        lie = knobs["lie_trace_id"]
        if lie and lie != trace_id:
            if lie in data.observations:
                return data.observations[lie]
            if trace_id in data.traces:
                return _relabel(data.traces[trace_id], lie)["observations"]
        return data.observations.get(trace_id, [])

    # -- response --

    def _send(self, status: int, payload: Any, knobs: dict[str, Any]) -> None:
        body = payload if isinstance(payload, bytes) else dumps(payload)
        headers = [("Content-Type", "application/json; charset=utf-8")]
        if knobs["encoding_override"]:
            body = GARBAGE_BODY
            headers.append(("Content-Encoding", knobs["encoding_override"]))
        elif knobs["gzip_truncated_at"] and status == 200:
            # Every byte of the body decodes, but the gzip stream never ends (no final block,
            # no trailer): a body cut off in transit.
            packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            body = packer.compress(body) + packer.flush(zlib.Z_SYNC_FLUSH)
            headers.append(("Content-Encoding", "gzip"))
        elif knobs["gzip"] and accepts_gzip(self.headers.get_all("Accept-Encoding") or []):
            body = gzip_module.compress(body, compresslevel=6, mtime=0)
            headers.append(("Content-Encoding", "gzip"))
        if knobs["gzip"]:
            headers.append(("Vary", "Accept-Encoding"))
        no_body = status < 200 or status in (204, 304)
        for interim in knobs["interim_statuses"]:
            phrase = (HTTPStatus(interim).phrase if interim in HTTPStatus._value2member_map_
                      else "Interim")
            hints = b"Link: </static/app.css>; rel=preload\r\n" if interim == 103 else b""
            self.wfile.write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (interim, phrase.encode(), hints))
            self.wfile.flush()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if knobs["close_after_response"]:
            self.send_header("Connection", "close")  # also makes http.server close after
        if no_body:
            self.end_headers()
            return
        send_body = self.command != "HEAD"
        if knobs["close_delimited"]:
            self.end_headers()
            if send_body:
                self.wfile.write(body)
            self.wfile.flush()
            # The end of the body is the end of what this connection sends. Reading goes on:
            # a client that keeps the connection and sends another request is seen doing so.
            socket.socket.shutdown(self.request, socket.SHUT_WR)
            return
        if knobs["chunked"]:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if send_body:
                for i in range(0, len(body), RESPONSE_CHUNK):
                    piece = body[i:i + RESPONSE_CHUNK]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)


class StoreServer:
    """The HTTP store itself (threads; one per connection). tests/harness.py's HttpTraceStore
    wraps it; main() runs it as a program."""

    def __init__(self, data: TraceData, user: str, password: str, host: str = "127.0.0.1",
                 port: int = 0, tls_cert: str | None = None, tls_key: str | None = None,
                 record: bool = True, record_file: str | None = None,
                 control_file: str | None = None, knobs: dict[str, Any] | None = None,
                 idle_timeout: float = 60.0, verbose: bool = False):
        self.data = data
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.record = record
        self.record_file = record_file
        self.control_file = control_file
        self.idle_timeout = idle_timeout
        self.verbose = verbose
        self._expected = b"Basic " + base64.b64encode(f"{user}:{password}".encode())
        self._lock = threading.Lock()
        self._knobs = dict(KNOB_DEFAULTS)
        self._knobs.update(check_knobs(knobs or {}))
        self._control_raw: bytes | None = None
        self._requests: list[RecordedRequest] = []
        self._record_fd: int | None = None
        self._conns: dict[socket.socket, int] = {}
        self._conn_counter = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> None:
        """Binds (the same port again after a stop()) and serves in a background thread."""
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.store = self
        if self.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True,
                                           do_handshake_on_connect=False)
        self.port = httpd.server_address[1]
        if self.record_file and self._record_fd is None:
            self._record_fd = os.open(self.record_file,
                                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="http-store", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops accepting, cuts every open connection (also keep-alive ones) and wakes
        delayed answers."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        if self._record_fd is not None:
            os.close(self._record_fd)
            self._record_fd = None

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def _register(self, sock: socket.socket) -> int:
        with self._lock:
            self._conn_counter += 1
            self._conns[sock] = self._conn_counter
            return self._conn_counter

    def _unregister(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.pop(sock, None)

    # -- auth --

    def authorized(self, values: list[str]) -> bool:
        if len(values) != 1:
            return False
        scheme, _, cred = values[0].strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        return hmac.compare_digest(b"Basic " + cred.strip().encode("latin-1", "replace"),
                                   self._expected)

    # -- knobs --

    def knobs(self) -> dict[str, Any]:
        """A snapshot of the knobs (the control file, when there is one, read first)."""
        if self.control_file:
            self._read_control()
        with self._lock:
            return dict(self._knobs)

    def set(self, **knobs: Any) -> None:
        checked = check_knobs(knobs)
        with self._lock:
            self._knobs.update(checked)

    def reset(self) -> None:
        with self._lock:
            self._knobs = dict(KNOB_DEFAULTS)

    def _read_control(self) -> None:
        try:
            with open(self.control_file, "rb") as f:
                raw = f.read()
        except OSError:
            return
        with self._lock:
            if raw == self._control_raw:
                return
            self._control_raw = raw
        try:
            knobs = dict(KNOB_DEFAULTS)
            knobs.update(check_knobs(json.loads(raw or b"{}")))
        except (ValueError, TypeError) as e:
            sys.stderr.write(f"http_store: ignoring control file: {e}\n")
            return
        with self._lock:
            self._knobs = knobs

    # -- recording --

    def _record(self, req: RecordedRequest) -> None:
        if not self.record:
            return
        if self._record_fd is not None:
            line = (json.dumps(req.to_json()) + "\n").encode()
            os.write(self._record_fd, line)  # one write per line (O_APPEND)
            return
        with self._lock:
            self._requests.append(req)

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()


# --- as a program ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    p.add_argument("--user", required=True, help="Basic auth user (Langfuse public key)")
    p.add_argument("--password", required=True, help="Basic auth password (secret key)")
    p.add_argument("--tls-cert", metavar="PEM")
    p.add_argument("--tls-key", metavar="PEM")
    p.add_argument("--traces", type=int, default=50, help="generated traces (default 50)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--payload-bytes", type=int, default=8192)
    p.add_argument("--shared-data", metavar="DIR", default=DEFAULT_SHARED_DATA,
                   help="framework exports DIR/*.json, served when present (default "
                        "%(default)s)")
    p.add_argument("--no-shared-data", action="store_true", help="generated traces only")
    p.add_argument("--record", metavar="FILE", help="append each request as a JSON line")
    p.add_argument("--control", metavar="FILE",
                   help="JSON object of knobs, re-read (when changed) before each request")
    p.add_argument("--knobs", metavar="JSON", default="{}", help="initial knobs")
    p.add_argument("--idle-timeout", type=float, default=60.0,
                   help="close idle keep-alive connections after this many seconds")
    p.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")

    data = TraceData(args.traces, args.seed, args.payload_bytes,
                     None if args.no_shared_data else args.shared_data)
    server = StoreServer(data, args.user, args.password, host=args.host, port=args.port,
                         tls_cert=args.tls_cert, tls_key=args.tls_key,
                         record=bool(args.record), record_file=args.record,
                         control_file=args.control, knobs=json.loads(args.knobs),
                         idle_timeout=args.idle_timeout, verbose=args.verbose)
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    sys.stderr.write(f"http_store: {len(data.traces)} traces ({len(data.generated_ids)} "
                     f"generated, {len(data.shared_ids)} framework exports, "
                     f"{len(data.special_ids)} special)\n")
    print(f"listening on {server.url}", flush=True)
    while not stop.wait(1.0):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
