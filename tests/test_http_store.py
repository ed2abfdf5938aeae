"""Self-tests of the test HTTP trace store (tests/http_store.py, harness.HttpTraceStore):
Langfuse's API shape, Basic auth, the recorded requests and every fault-injection knob,
driven with the real curl binary and urllib.

Run from this folder: python3 -m unittest -v test_http_store
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import harness
import http_store
from harness import HttpTraceStore

harness.install_sigterm_cleanup()


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The curl binary (bytes out); -sS: no progress meter, errors on stderr."""
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET",
          cafile: str | None = None, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """urllib request returning (status, lower-cased headers, raw body) also for 4xx/5xx."""
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def response_headers(verbose_stderr: bytes) -> list[str]:
    """`< Name: value` lines of curl -v, lower-cased."""
    return [line[2:].strip().lower() for line in verbose_stderr.decode(errors="replace")
            .splitlines() if line.startswith("< ")]


class StoreTestCase(unittest.TestCase):
    """One in-process store for the class; knobs and the record reset before each test."""

    store: HttpTraceStore

    @classmethod
    def setUpClass(cls):
        cls.store = HttpTraceStore(traces=20, seed=3)
        cls.store.start()
        cls.addClassCleanup(cls.store.cleanup)

    def setUp(self):
        self.store.reset()
        self.store.clear_requests()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": self.store.auth_header()}

    def userpw(self) -> list[str]:
        return ["-u", f"{self.store.user}:{self.store.password}"]

    def get_json(self, url: str) -> tuple[int, object]:
        status, _, body = fetch(url, self.auth)
        return status, json.loads(body)

    def generated_id(self) -> str:
        return self.store.data.generated_ids[0]


class ApiShapeTest(StoreTestCase):
    def test_auth_required_on_every_api_route(self):
        tid = self.generated_id()
        urls = [self.store.trace_url(tid), self.store.observations_url(tid),
                self.store.list_url(), self.store.url + "/api/public/health",
                self.store.url + "/api/public/nope"]
        bad = [[],
               ["-u", f"{self.store.user}:wrong"],
               ["-u", f"someone-else:{self.store.password}"],
               ["-H", "Authorization: Bearer tgb_0123456789abcdef"],
               ["-H", "Authorization: " + self.store.auth_header(), "-H",
                "Authorization: " + self.store.auth_header()]]
        for url in urls:
            for args in bad:
                p = curl("-w", "\n%{http_code}", *args, url)
                body, _, code = p.stdout.rpartition(b"\n")
                self.assertEqual(code, b"401", (url, args))
                self.assertEqual(json.loads(body), {"message": "Unauthorized"})
        p = curl("-o", "/dev/null", "-w", "%{http_code}", *self.userpw(), urls[0])
        self.assertEqual(p.stdout, b"200")
        p = curl("-o", "/dev/null", "-w", "%{http_code}", *self.userpw(), urls[-1])
        self.assertEqual(p.stdout, b"404")

    def test_trace_with_details(self):
        for tid in [self.generated_id(), *self.store.data.shared_ids[:1]]:
            p = curl("--fail", *self.userpw(), self.store.trace_url(tid))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout, self.store.trace_body(tid))
            t = json.loads(p.stdout)
            self.assertEqual(t["id"], tid)
            for key in ("name", "timestamp", "input", "output", "metadata", "userId",
                        "sessionId", "tags", "release", "version", "projectId", "latency",
                        "htmlPath", "observations", "scores"):
                self.assertIn(key, t)
            self.assertRegex(t["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIsInstance(t["tags"], list)
            self.assertGreater(len(t["observations"]), 0)
            for o in t["observations"]:
                self.assertEqual(o["traceId"], tid)
                for key in ("id", "type", "name", "startTime", "endTime", "input", "output",
                            "metadata", "parentObservationId", "level", "usageDetails"):
                    self.assertIn(key, o)
            for s in t["scores"]:
                self.assertEqual(s["traceId"], tid)
        # Generated traces carry the generator's structures (provider reasoning blocks).
        t = self.store.trace(self.generated_id())
        self.assertIn(t["input"]["messages"][0]["role"], ("system", "user"))
        self.assertTrue(any(o["type"] == "GENERATION" for o in t["observations"]))

    def test_unknown_trace_is_404(self):
        for tid in ("no-such-trace", "a b/c", ""):
            status, _, body = fetch(self.store.trace_url(tid) if tid else
                                    self.store.url + "/api/public/traces/x/y", self.auth)
            self.assertEqual(status, 404, tid)
            self.assertIn(json.loads(body)["message"], ("Trace not found", "Not found"))
        status, _, body = fetch(self.store.trace_url("no-such-trace"), self.auth)
        self.assertEqual(json.loads(body), {"message": "Trace not found"})

    def test_observations(self):
        tid = self.generated_id()
        want = self.store.trace(tid)["observations"]
        status, doc = self.get_json(self.store.observations_url(tid))
        self.assertEqual(status, 200)
        self.assertEqual(doc["data"], want)
        self.assertEqual(doc["meta"], {"page": 1, "limit": 50, "totalItems": len(want),
                                       "totalPages": 1})
        self.assertTrue(all(o["traceId"] == tid for o in doc["data"]))
        # Paging.
        status, doc = self.get_json(self.store.observations_url(tid, page=2, limit=2))
        self.assertEqual(doc["data"], want[2:4])
        self.assertEqual(doc["meta"], {"page": 2, "limit": 2, "totalItems": len(want),
                                       "totalPages": -(-len(want) // 2)})
        # Unknown trace: empty, as Langfuse answers a filter that matches nothing.
        status, doc = self.get_json(self.store.observations_url("no-such-trace"))
        self.assertEqual((status, doc["data"], doc["meta"]["totalItems"]), (200, [], 0))
        status, _, _ = fetch(self.store.observations_url(tid, limit=0), self.auth)
        self.assertEqual(status, 400)

    def test_list_endpoint(self):
        ids = self.store.trace_ids()
        self.assertIn(http_store.BENCH_TRACE_ID, ids)
        self.assertIn(http_store.PII_TRACE_ID, ids)
        status, doc = self.get_json(self.store.list_url(limit=1000))
        self.assertEqual(status, 200)
        self.assertEqual(doc["meta"]["totalItems"], len(ids))
        self.assertEqual(sorted(t["id"] for t in doc["data"]), sorted(ids))
        item = doc["data"][0]
        self.assertTrue(all(isinstance(o, str) for o in item["observations"]))
        status, doc = self.get_json(self.store.list_url())
        self.assertEqual(doc["meta"]["limit"], 50)
        self.assertEqual(len(doc["data"]), min(50, len(ids)))
        status, doc = self.get_json(self.store.list_url(page=99))
        self.assertEqual(doc["data"], [])
        self.assertEqual(self.store.requests()[-1].path, "/api/public/traces")

    def test_other_methods_refused(self):
        status, _, body = fetch(self.store.trace_url(self.generated_id()), self.auth,
                                method="DELETE")
        self.assertEqual(status, 405)
        p = curl("-w", "%{http_code}", "-o", "/dev/null", *self.userpw(), "-d", '{"x":1}',
                 self.store.list_url())
        self.assertEqual(p.stdout, b"405")
        self.assertEqual(self.store.requests()[-1].body, b'{"x":1}')

    def test_special_traces(self):
        p = curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}", *self.userpw(),
                 self.store.trace_url(http_store.BENCH_TRACE_ID))
        self.assertEqual(p.stdout, b"200 30720")
        pii = self.store.trace(http_store.PII_TRACE_ID)
        inp, out = json.dumps(pii["input"]), json.dumps(pii["output"])
        for value in http_store.PII_VALUES.values():
            self.assertIn(value, inp)
            self.assertIn(value, out)
        self.assertTrue(http_store.gen_traces().luhn_valid(http_store.PII_VALUES["card"]))
        self.assertEqual({p["kind"] for p in self.store.manifest[http_store.PII_TRACE_ID]},
                         set(http_store.PII_VALUES))
        self.assertTrue(all(o["traceId"] == http_store.PII_TRACE_ID
                            for o in pii["observations"]))

    def test_same_traces_as_the_postgres_fixture(self):
        p = subprocess.run([sys.executable, harness.GEN_TRACES, "--traces", "20", "--seed", "3",
                            "--list-ids"], capture_output=True, text=True, check=True)
        self.assertEqual(self.store.data.generated_ids, p.stdout.split())

    def test_knob_names_checked(self):
        with self.assertRaises(ValueError):
            self.store.set(no_such_knob=1)
        with self.assertRaises(ValueError):
            self.store.set(delay_seconds=-1)


class RecordingTest(StoreTestCase):
    def test_headers_recorded_in_order_with_duplicates(self):
        url = self.store.trace_url(self.generated_id())
        curl(*self.userpw(), "-H", "X-Dup: a", "-H", "X-Dup: b", "-H",
             "Proxy-Authorization: Basic eDp5", "-o", "/dev/null", url)
        curl("-H", "Authorization: Bearer tgb_secret", "-H", "Connection: keep-alive", "-H",
             "TE: trailers", "-o", "/dev/null", url + "?x=1")
        reqs = self.store.requests()
        self.assertEqual(len(reqs), 2)
        a, b = reqs
        self.assertEqual((a.method, a.version, a.path), ("GET", "HTTP/1.1",
                                                          "/api/public/traces/"
                                                          + self.generated_id()))
        self.assertEqual(a.header("authorization"), self.store.auth_header())
        self.assertEqual(a.header_all("x-dup"), ["a", "b"])
        self.assertEqual(a.header("Proxy-Authorization"), "Basic eDp5")
        self.assertLess(a.header_names().index("host"), a.header_names().index("x-dup"))
        self.assertEqual(b.header("Authorization"), "Bearer tgb_secret")
        self.assertEqual(b.header("connection"), "keep-alive")
        self.assertEqual(b.header("te"), "trailers")
        self.assertEqual((b.target, b.query), (a.target + "?x=1", {"x": ["1"]}))
        self.assertFalse(b.tls)
        self.store.clear_requests()
        self.assertEqual(self.store.requests(), [])


class KnobTest(StoreTestCase):
    def test_gzip(self):
        tid = self.generated_id()
        url, plain = self.store.trace_url(tid), self.store.trace_body(tid)
        self.store.set(gzip=True)
        p = curl("--compressed", "-v", *self.userpw(), url)
        self.assertEqual(p.stdout, plain)
        self.assertIn("content-encoding: gzip", response_headers(p.stderr))
        p = curl("-H", "Accept-Encoding: gzip", *self.userpw(), url)
        self.assertEqual(p.stdout[:2], b"\x1f\x8b", "raw bytes are gzip")
        self.assertEqual(gzip.decompress(p.stdout), plain)
        self.assertLess(len(p.stdout), len(plain))
        # Only when the request allows it.
        for accept in (None, "identity", "gzip;q=0", "br"):
            headers = dict(self.auth)
            if accept:
                headers["Accept-Encoding"] = accept
            _, h, body = fetch(url, headers)
            self.assertNotIn("content-encoding", h, accept)
            self.assertEqual(body, plain)
        _, h, body = fetch(url, {**self.auth, "Accept-Encoding": "*"})
        self.assertEqual(h.get("content-encoding"), "gzip")
        self.assertEqual(gzip.decompress(body), plain)
        self.store.set(gzip=False)
        p = curl("-H", "Accept-Encoding: gzip", *self.userpw(), url)
        self.assertEqual(p.stdout, plain)

    def test_accepts_gzip(self):
        ok = http_store.accepts_gzip
        self.assertTrue(ok(["gzip"]))
        self.assertTrue(ok(["deflate, gzip;q=0.5"]))
        self.assertTrue(ok(["br", "GZIP"]))
        self.assertTrue(ok(["*"]))
        self.assertFalse(ok([]))
        self.assertFalse(ok(["gzip;q=0"]))
        self.assertFalse(ok(["*, gzip;q=0"]))
        self.assertFalse(ok(["identity, br"]))

    def test_chunked(self):
        tid = http_store.BENCH_TRACE_ID
        url, plain = self.store.trace_url(tid), self.store.trace_body(tid)
        self.store.set(chunked=True)
        p = curl("-v", *self.userpw(), url)
        self.assertEqual(p.stdout, plain)
        headers = response_headers(p.stderr)
        self.assertIn("transfer-encoding: chunked", headers)
        self.assertFalse(any(h.startswith("content-length") for h in headers))
        raw = curl("--raw", *self.userpw(), url).stdout
        self.assertTrue(raw.startswith(b"%x\r\n" % http_store.RESPONSE_CHUNK), raw[:20])
        self.assertTrue(raw.endswith(b"\r\n0\r\n\r\n"))
        # With gzip on top, and through urllib.
        self.store.set(gzip=True)
        self.assertEqual(curl("--compressed", *self.userpw(), url).stdout, plain)
        self.assertEqual(fetch(url, self.auth)[2], plain)

    def test_delay(self):
        url = self.store.trace_url(self.generated_id())
        self.store.set(delay_seconds=1.0)
        t0 = time.monotonic()
        p = curl("-o", "/dev/null", "-w", "%{http_code}", *self.userpw(), url)
        self.assertEqual(p.stdout, b"200")
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)
        p = curl("--max-time", "0.3", *self.userpw(), url)
        self.assertEqual(p.returncode, 28, "curl: operation timed out")
        self.store.set(delay_seconds=0)
        t0 = time.monotonic()
        curl(*self.userpw(), "-o", "/dev/null", url)
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_keep_alive(self):
        tid = self.generated_id()
        url1, url2 = self.store.trace_url(tid), self.store.observations_url(tid)
        p = curl("-v", *self.userpw(), "-o", "/dev/null", "-o", "/dev/null", url1, url2)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"Re-using existing connection", p.stderr)
        a, b = self.store.requests()
        self.assertEqual(a.connection, b.connection)
        self.assertEqual((a.seq, b.seq), (1, 2))
        # Keep-alive also after a 401 and a 404 (every answer has a length).
        self.store.clear_requests()
        p = curl("-v", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", url1,
                 self.store.url + "/nope", url2)
        self.assertEqual(p.stderr.count(b"Re-using existing connection"), 2)
        self.assertEqual(len({r.connection for r in self.store.requests()}), 1)

    def test_close_after_response(self):
        tid = self.generated_id()
        url1, url2 = self.store.trace_url(tid), self.store.observations_url(tid)
        self.store.set(close_after_response=True)
        p = curl("-v", *self.userpw(), "-o", "/dev/null", "-o", "/dev/null", url1, url2)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("connection: close", response_headers(p.stderr))
        self.assertNotIn(b"Re-using existing connection", p.stderr)
        a, b = self.store.requests()
        self.assertNotEqual(a.connection, b.connection)

    def test_encoding_override(self):
        url = self.store.trace_url(self.generated_id())
        self.store.set(encoding_override="br")
        p = curl("--compressed", *self.userpw(), url)
        self.assertEqual(p.returncode, 61, "curl cannot decode the garbage body")
        p = curl("-v", *self.userpw(), url)
        self.assertIn("content-encoding: br", response_headers(p.stderr))
        self.assertEqual(p.stdout, http_store.GARBAGE_BODY)

    def test_huge_bytes(self):
        tid = self.generated_id()
        self.store.set(huge_bytes=3_000_000)
        status, _, body = fetch(self.store.trace_url(tid), self.auth)
        self.assertEqual((status, len(body)), (200, 3_000_000))
        doc = json.loads(body)
        self.assertEqual(doc["id"], tid)
        self.assertEqual(doc["observations"], self.store.trace(tid)["observations"])
        # gzip does not shrink it away (the padding is random base64).
        self.store.set(gzip=True)
        p = curl("-H", "Accept-Encoding: gzip", *self.userpw(), self.store.trace_url(tid))
        self.assertGreater(len(p.stdout), 2_000_000)

    def test_lie_trace_id(self):
        a, b = self.store.data.generated_ids[:2]
        self.store.set(lie_trace_id=b)
        status, doc = self.get_json(self.store.trace_url(a))
        self.assertEqual((status, doc), (200, self.store.trace(b)))
        status, doc = self.get_json(self.store.observations_url(a))
        self.assertTrue(doc["data"] and all(o["traceId"] == b for o in doc["data"]))
        # A lie that names no stored trace: trace A relabelled.
        self.store.set(lie_trace_id="someone-elses-trace")
        status, doc = self.get_json(self.store.trace_url(a))
        self.assertEqual(doc["id"], "someone-elses-trace")
        self.assertEqual(doc["input"], self.store.trace(a)["input"])
        self.assertTrue(all(o["traceId"] == "someone-elses-trace" for o in doc["observations"]))
        # Unknown ids stay 404.
        status, _, _ = fetch(self.store.trace_url("no-such-trace"), self.auth)
        self.assertEqual(status, 404)

    def test_status_override(self):
        url = self.store.trace_url(self.generated_id())
        for code in (500, 401, 429, 503):
            self.store.set(status_override=code)
            status, _, body = fetch(url, self.auth)
            self.assertEqual(status, code)
            self.assertIn("message", json.loads(body))
        self.store.set(status_override=None)
        self.assertEqual(fetch(url, self.auth)[0], 200)


class LifecycleTest(StoreTestCase):
    def test_stop_cuts_connections_and_start_reuses_port(self):
        tid = self.generated_id()
        port = self.store.port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", f"/api/public/traces/{tid}", headers=self.auth)
        self.assertEqual(conn.getresponse().read(), self.store.trace_body(tid))
        harness.wait_for(lambda: self.store.open_connections() == 1, 5, what="1 connection")
        self.store.stop()
        self.assertFalse(self.store.running)
        self.assertEqual(curl(self.store.trace_url(tid)).returncode, 7, "connection refused")
        with self.assertRaises((http.client.HTTPException, OSError)):
            conn.request("GET", f"/api/public/traces/{tid}", headers=self.auth)
            conn.getresponse().read()
        conn.close()
        self.store.start()
        self.assertEqual(self.store.port, port)
        self.assertEqual(fetch(self.store.trace_url(tid), self.auth)[0], 200)

    def test_shared_data(self):
        if not os.path.isdir(http_store.DEFAULT_SHARED_DATA):
            self.skipTest(f"{http_store.DEFAULT_SHARED_DATA} absent")
        shared = self.store.data.shared_ids
        self.assertGreaterEqual(len(shared), 10)
        p = subprocess.run([sys.executable, harness.GEN_TRACES, "--traces", "20", "--seed", "3",
                            "--shared-data", http_store.DEFAULT_SHARED_DATA, "--list-ids"],
                           capture_output=True, text=True, check=True)
        self.assertEqual(self.store.data.generated_ids + shared, p.stdout.split())
        for tid in shared:
            t = self.store.trace(tid)
            self.assertTrue(t["observations"])
            self.assertTrue(all(o["traceId"] == tid for o in t["observations"]))

    def test_without_shared_data(self):
        with tempfile.TemporaryDirectory() as d:
            for shared in (os.path.join(d, "absent"), d, None):
                with HttpTraceStore(traces=3, seed=9, shared_data=shared) as s:
                    self.assertEqual(len(s.trace_ids()), 5)
                    self.assertEqual(s.data.shared_ids, [])
                    self.assertEqual(fetch(s.trace_url(s.trace_ids()[0]),
                                           {"Authorization": s.auth_header()})[0], 200)


class TlsTest(unittest.TestCase):
    def test_tls_with_self_signed_cert(self):
        with HttpTraceStore(traces=3, shared_data=None, tls=True) as s:
            self.assertTrue(s.url.startswith("https://127.0.0.1:"))
            tid = s.trace_ids()[0]
            userpw = ["-u", f"{s.user}:{s.password}"]
            p = curl("--cacert", s.ca_file, *userpw, s.trace_url(tid))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout, s.trace_body(tid))
            p = curl(*userpw, s.trace_url(tid))
            self.assertEqual(p.returncode, 60, "an unknown CA is refused")
            p = curl(*userpw, s.trace_url(tid).replace("https://", "http://"))
            self.assertNotEqual(p.returncode, 0, "plain HTTP on the TLS port fails")
            # Keep-alive over TLS, urllib with the CA.
            p = curl("-v", "--cacert", s.ca_file, *userpw, "-o", "/dev/null", "-o",
                     "/dev/null", s.trace_url(tid), s.observations_url(tid))
            self.assertIn(b"Re-using existing connection", p.stderr)
            status, _, body = fetch(s.trace_url(tid), {"Authorization": s.auth_header()},
                                    cafile=s.ca_file)
            self.assertEqual((status, body), (200, s.trace_body(tid)))
            self.assertTrue(all(r.tls for r in s.requests()))


class SubprocessModeTest(unittest.TestCase):
    def test_module_script(self):
        with HttpTraceStore(traces=4, seed=5, shared_data=None, subprocess=True) as s:
            self.assertIsNotNone(s.proc)
            tid = s.trace_ids()[0]
            userpw = ["-u", f"{s.user}:{s.password}"]
            p = curl(*userpw, s.trace_url(tid))
            self.assertEqual(p.stdout, s.trace_body(tid))
            p = curl("-o", "/dev/null", "-w", "%{size_download}", *userpw,
                     s.trace_url(http_store.BENCH_TRACE_ID))
            self.assertEqual(p.stdout, b"30720")
            s.set(status_override=503)
            self.assertEqual(curl("-o", "/dev/null", "-w", "%{http_code}", *userpw,
                                  s.trace_url(tid)).stdout, b"503")
            s.reset()
            self.assertEqual(curl("-o", "/dev/null", "-w", "%{http_code}", *userpw,
                                  s.trace_url(tid)).stdout, b"200")
            reqs = s.requests()
            self.assertEqual(len(reqs), 4)
            self.assertEqual(reqs[0].header("authorization"), s.auth_header())
            s.clear_requests()
            self.assertEqual(s.requests(), [])
            curl("-H", "Authorization: Bearer tgb_x", "-o", "/dev/null", s.trace_url(tid))
            self.assertEqual([r.header("authorization") for r in s.requests()],
                             ["Bearer tgb_x"])
            s.stop()
            self.assertEqual(s.exit_code, 0, s.stderr_text())

    def test_command_line(self):
        with tempfile.TemporaryDirectory() as d:
            cert, key = harness.make_self_signed_cert(d)
            proc = subprocess.Popen(
                [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                              "http_store.py"),
                 "--port", "0", "--user", "pk", "--password", "sk", "--tls-cert", cert,
                 "--tls-key", key, "--traces", "2", "--seed", "4", "--no-shared-data"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                line = proc.stdout.readline().strip()
                self.assertRegex(line, r"^listening on https://127\.0\.0\.1:\d+$")
                url = line.split()[-1]
                p = curl("--cacert", cert, "-u", "pk:sk", "-o", "/dev/null", "-w",
                         "%{http_code}", url + "/api/public/traces/" + http_store.PII_TRACE_ID)
                self.assertEqual(p.stdout, b"200")
            finally:
                proc.terminate()
                out, err = proc.communicate(timeout=15)
            self.assertEqual(proc.returncode, 0, err)
            self.assertEqual(out, "", "one line on stdout only")


if __name__ == "__main__":
    unittest.main()
