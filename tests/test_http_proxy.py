"""HTTP trace stores and the one-call fetch, end to end: a real test trace store in Langfuse's
API shape behind Basic auth (tests/http_store.py), a real PostgreSQL, a real OpenID provider
(npm oidc-provider) and the gateway. Agents use curl and Python's http.client with grant
credentials on the connection's HTTP listener, and the one-call fetch on the HTTPS API with
their OIDC tokens.

Run from this folder: python3 -m unittest -v test_http_proxy
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import threading
import time
import unittest
from typing import Any

import harness
from harness import HttpTraceStore, PgServer, free_port, wait_for
from oidc import OidcProvider
from test_audit import audit
from test_grants import grants_config, start_api_gateway

harness.install_sigterm_cleanup()

PII = "pii-1"
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
STORE_SECRET_ENV = "TRACEGATE_TEST_STORE_SECRET"

CLIENTS = {
    "agent": {"groups": ["http-readers"]},
    "careful": {"groups": ["needs-approval"]},
    "approver": {"groups": ["trace-approvers"]},
    "stranger": {"groups": ["nobody"]},
}
POLICY = {
    "max_ttl": "5m",
    "rules": [
        {"name": "http-agents", "groups": ["http-readers"],
         "connections": ["traces-http", "traces-pg", "dead-http"],
         "masking_profile": "default", "ttl": "60s", "uses": 1, "max_session": "1m"},
        {"name": "careful", "groups": ["needs-approval"], "connections": ["traces-http"],
         "masking_profile": "default", "require_approval": True,
         "approvers": ["trace-approvers"], "ttl": "60s", "uses": 1},
    ],
}
ROUTES = [
    {"name": "trace", "path": "/api/public/traces/{trace_id}", "response_trace_id": "id"},
    {"name": "observations", "path": "/api/public/observations?traceId={trace_id}",
     "response_trace_id": "data[*].traceId", "allow_query": ["page", "limit"]},
]
WORKERS = 2
FETCH_SQL = "select id, name, user_id, input, output, metadata from traces where id = $1"


def http_connection(name: str, url: str, user: str, **upstream: object) -> dict:
    up = {"url": url, "auth": {"scheme": "basic", "username": user,
                               "secret_env": STORE_SECRET_ENV},
          "timeout": "2s", "max_response_bytes": "1MiB"}
    up.update(upstream)
    return {"name": name, "type": "http", "listen": f"127.0.0.1:{free_port()}",
            "upstream": up, "routes": ROUTES}


def use_fetch_query(pg_conn: dict, sql: str) -> None:
    """Makes `sql` (one $1: the trace id) the PostgreSQL connection's one-call fetch."""
    pg_conn["gate"]["queries"] = [{"name": "trace_by_id", "sql": sql}]
    pg_conn["fetch_query"] = "trace_by_id"


def start_store_gateway(cls: Any, cfg: dict) -> None:
    """start_api_gateway() with the secret of cls.store (an HttpTraceStore) for the HTTP
    connections (http_connection()) in cfg."""
    start_api_gateway(cls, cfg, {STORE_SECRET_ENV: cls.store.password})


def wait_http_listener(host: str, port: int) -> None:
    wait_for(lambda: harness.port_accepts(host, port), 30, what="http listener")


class HttpProxyTest(harness.ClassFixtures, unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.start_fixtures("tg-http-")
        cls.pg = cls.enter(PgServer(traces=5))
        cls.store = cls.enter(HttpTraceStore(traces=5))
        cls.idp = cls.enter(OidcProvider(clients=CLIENTS))
        cfg = grants_config(cls.pg, cls.idp, cls.tmp, policy=POLICY,
                            approvals={"timeout": "60s"})
        use_fetch_query(cfg["connections"][0], FETCH_SQL)
        cfg["connections"].append(
            http_connection("traces-http", cls.store.url, cls.store.user))
        cfg["connections"].append(http_connection(
            "dead-http", f"http://127.0.0.1:{free_port()}", cls.store.user))
        # Pinned, so that one request per worker reaches every worker's keep-alive pool
        # (test_a_close_delimited_body_does_not_stay_in_the_keep_alive_pool).
        cfg["workers"] = WORKERS
        cfg["masking_profiles"] = [{"name": "default"}]
        cfg["audit"] = {"dir": os.path.join(cls.tmp, "audit"), "auditor_groups": ["nobody"]}
        start_store_gateway(cls, cfg)
        cls.http_host, cls.http_port = harness.split_hostport(cfg["connections"][2]["listen"])
        cls.dead_port = harness.split_hostport(cfg["connections"][3]["listen"])[1]
        wait_http_listener(cls.http_host, cls.http_port)
        cls.trace_ids = [t for t in cls.store.trace_ids() if t not in (PII, "bench-30k")]
        cls.pg_trace = cls.pg.psql("select id from traces order by id limit 1").strip()

    def setUp(self) -> None:
        self.store.set(delay_seconds=0.0, gzip=False, chunked=False, encoding_override=None,
                       huge_bytes=0, lie_trace_id=None, status_override=None,
                       close_after_response=False, interim_statuses=[], close_delimited=False,
                       gzip_truncated_at=0)

    # -- helpers --

    def bearer(self, trace: str, connection: str = "traces-http", client: str = "agent") -> str:
        status, grant = self.api.grant(self.idp.token(client), trace, connection=connection)
        self.assertEqual(status, 201, grant)
        self.assertIn("http", grant)
        self.assertTrue(grant["http"]["url"].startswith("https://"), grant["http"])
        return grant["http"]["bearer"]

    def curl(self, path: str, bearer: str | None, *extra: str,
             port: int | None = None) -> tuple[int, dict | str, dict[str, str]]:
        """curl through the gateway's listener (HTTPS with the gateway's certificate)."""
        cmd = ["curl", "-sS", "--cacert", self.ca_file, "-D", "-", "--max-time", "20",
               *extra, f"https://127.0.0.1:{port or self.http_port}{path}"]
        if bearer is not None:
            cmd[1:1] = ["-H", f"Authorization: Bearer {bearer}"]
        out = subprocess.run(cmd, capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        head, _, body = out.stdout.decode().partition("\r\n\r\n")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body
        return status, parsed, headers

    def assert_refused(self, result, status: int, code: str) -> dict:
        got_status, body, headers = result
        self.assertEqual(got_status, status, body)
        self.assertIsInstance(body, dict, body)
        self.assertEqual(body["error"], code, body)
        self.assertEqual(headers.get("content-type"), "application/json")
        return body

    def store_requests_for(self, trace: str) -> list:
        return [r for r in self.store.requests() if trace in r.target]

    # -- the data path --

    def test_fetch_is_masked_and_uses_the_gateway_credential(self):
        bearer = self.bearer(PII)
        self.store.clear_requests()
        status, body, headers = self.curl(f"/api/public/traces/{PII}", bearer)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["id"], PII)
        text = json.dumps(body)
        for planted in (EMAIL, CARD, AWS_KEY):
            self.assertNotIn(planted, text)
        self.assertIn("[REDACTED:EMAIL]", text)
        self.assertTrue(headers["x-tracegate-session"].startswith("h"))
        self.assertEqual(headers.get("cache-control"), "no-store")
        # The store saw the gateway's own Basic credential, never the agent's grant.
        (seen,) = self.store_requests_for(PII)
        self.assertTrue(seen.header("authorization").startswith("Basic "))
        for name, value in seen.headers:
            self.assertNotIn("tgb_", value, name)
        self.assertEqual(seen.target, f"/api/public/traces/{PII}")

    def test_a_credential_works_once(self):
        bearer = self.bearer(self.trace_ids[0])
        status, body, _ = self.curl(f"/api/public/traces/{self.trace_ids[0]}", bearer)
        self.assertEqual(status, 200, body)
        body = self.assert_refused(
            self.curl(f"/api/public/traces/{self.trace_ids[0]}", bearer), 403, "grant_unusable")
        self.assertIn("already used", body["message"])

    def test_another_trace_is_refused_before_the_store_is_asked(self):
        bearer = self.bearer(self.trace_ids[0])
        self.store.clear_requests()
        body = self.assert_refused(
            self.curl(f"/api/public/traces/{self.trace_ids[1]}", bearer), 403, "trace_mismatch")
        self.assertIn(self.trace_ids[1], body["message"])
        self.assertEqual(self.store.requests(), [])

    def test_list_and_export_endpoints_are_refused(self):
        for path in ("/api/public/traces", "/api/public/traces?limit=100",
                     "/api/public/observations", "/api/public/sessions"):
            bearer = self.bearer(self.trace_ids[0])
            self.assert_refused(self.curl(path, bearer), 403, "no_route")

    def test_other_methods_are_refused(self):
        bearer = self.bearer(self.trace_ids[0])
        self.assert_refused(self.curl(f"/api/public/traces/{self.trace_ids[0]}", bearer,
                                      "-X", "DELETE"), 405, "method_not_allowed")

    def test_path_tricks_are_refused(self):
        t0, t1 = self.trace_ids[0], self.trace_ids[1]
        for path in (f"/api/public/traces/{t0}/../{t1}", f"/api/public/traces/{t0}%2F..%2F{t1}",
                     f"/api/public/observations?traceId={t0}&traceId={t1}",
                     f"/api/public/observations?traceId={t0}&userId=u1"):
            bearer = self.bearer(t0)
            status, body, _ = self.curl(path, bearer, "--path-as-is")
            self.assertIn(status, (400, 403), (path, body))
            self.assertNotEqual(body.get("error"), None, body)

    def test_observations_route_with_paging(self):
        t0 = self.trace_ids[0]
        bearer = self.bearer(t0)
        status, body, _ = self.curl(f"/api/public/observations?traceId={t0}&page=1&limit=5",
                                    bearer)
        self.assertEqual(status, 200, body)
        self.assertTrue(all(o["traceId"] == t0 for o in body["data"]), body)

    def test_a_response_for_another_trace_is_refused(self):
        t0, t1 = self.trace_ids[0], self.trace_ids[1]
        self.store.set(lie_trace_id=t1)
        bearer = self.bearer(t0)
        status, body, _ = self.curl(f"/api/public/traces/{t0}", bearer)
        self.assertEqual((status, body["error"]), (403, "response_trace_mismatch"), body)
        self.assertNotIn(t1, json.dumps(body))  # nor which other trace the store holds

    def test_store_down_is_502(self):
        status, grant = self.api.grant(self.idp.token("agent"), self.trace_ids[0],
                                       connection="dead-http")
        self.assertEqual(status, 201, grant)
        self.assert_refused(self.curl(f"/api/public/traces/{self.trace_ids[0]}",
                                      grant["http"]["bearer"], port=self.dead_port),
                            502, "upstream_unavailable")

    def test_slow_store_is_504(self):
        self.store.set(delay_seconds=4.0)
        self.assert_refused(self.curl(f"/api/public/traces/{self.trace_ids[0]}",
                                      self.bearer(self.trace_ids[0])), 504, "upstream_timeout")

    def test_huge_body_is_refused(self):
        self.store.set(huge_bytes=3 * 1024 * 1024)
        self.assert_refused(self.curl(f"/api/public/traces/{self.trace_ids[0]}",
                                      self.bearer(self.trace_ids[0])), 502, "response_too_large")

    def test_gzip_is_decoded_to_mask_and_chunked_works(self):
        for knobs in ({"gzip": True}, {"chunked": True}, {"gzip": True, "chunked": True}):
            self.store.set(**knobs)
            status, body, headers = self.curl(f"/api/public/traces/{PII}", self.bearer(PII))
            self.assertEqual(status, 200, (knobs, body))
            self.assertNotIn(EMAIL, json.dumps(body))
            self.assertNotIn("content-encoding", headers)

    def test_an_encoding_masking_cannot_read_is_refused(self):
        self.store.set(encoding_override="br")
        self.assert_refused(self.curl(f"/api/public/traces/{PII}", self.bearer(PII)),
                            502, "unsupported_encoding")

    def test_store_errors_are_mapped(self):
        self.store.set(status_override=500)
        self.assert_refused(self.curl(f"/api/public/traces/{PII}", self.bearer(PII)),
                            502, "upstream_error")
        self.store.set(status_override=401)
        self.assert_refused(self.curl(f"/api/public/traces/{PII}", self.bearer(PII)),
                            502, "upstream_refused")
        self.store.set(status_override=None)
        self.assert_refused(self.curl("/api/public/traces/no-such-trace",
                                      self.bearer("no-such-trace")), 404, "not_found")

    def test_missing_or_forged_credentials(self):
        path = f"/api/public/traces/{self.trace_ids[0]}"
        self.assert_refused(self.curl(path, None), 401, "missing_credential")
        self.assert_refused(self.curl(path, "tgb_aaaaaaaaaaaaaaaaaaaaaaaaaa_" + "A" * 43),
                            401, "invalid_credential")
        real = self.bearer(self.trace_ids[0])
        forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
        self.assert_refused(self.curl(path, forged), 401, "invalid_credential")
        # An OIDC token is not a grant credential.
        self.assert_refused(self.curl(path, self.idp.token("agent")), 401, "invalid_credential")

    def test_keep_alive_carries_several_grants(self):
        ctx = ssl.create_default_context(cafile=self.ca_file)
        conn = http.client.HTTPSConnection(self.http_host, self.http_port, context=ctx,
                                           timeout=20)
        try:
            for trace in self.trace_ids[:3]:
                conn.request("GET", f"/api/public/traces/{trace}",
                             headers={"Authorization": f"Bearer {self.bearer(trace)}"})
                resp = conn.getresponse()
                body = json.loads(resp.read())
                self.assertEqual((resp.status, body["id"]), (200, trace))
        finally:
            conn.close()

    def test_oversize_request_is_413_or_431(self):
        bearer = self.bearer(self.trace_ids[0])
        status, body, _ = self.curl(f"/api/public/traces/{self.trace_ids[0]}", bearer,
                                    "-H", "X-Padding: " + "a" * 70000)
        self.assertIn(status, (413, 431), body)

    # -- the store's answer, read right (issue 16) --

    def test_interim_1xx_responses_are_skipped(self):
        self.store.set(interim_statuses=[100, 103])
        status, body, _ = self.curl(f"/api/public/traces/{PII}", self.bearer(PII))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["id"], PII)
        self.assertNotIn(EMAIL, json.dumps(body))
        # The connection is still in step: the next answer on it is the next trace's.
        self.store.set(interim_statuses=[100])
        t0 = self.trace_ids[0]
        status, body, _ = self.curl(f"/api/public/traces/{t0}", self.bearer(t0))
        self.assertEqual((status, body.get("id")), (200, t0), body)

    def test_101_switching_protocols_is_refused(self):
        # tracegate never asks to upgrade: a store that switches protocols is broken.
        self.store.set(interim_statuses=[101])
        self.assert_refused(self.curl(f"/api/public/traces/{PII}", self.bearer(PII)),
                            502, "bad_upstream_response")

    def test_a_close_delimited_body_does_not_stay_in_the_keep_alive_pool(self):
        t0 = self.trace_ids[0]
        self.store.set(close_delimited=True)
        self.store.clear_requests()
        status, body, _ = self.curl(f"/api/public/traces/{t0}", self.bearer(t0))
        self.assertEqual((status, body.get("id")), (200, t0), body)
        (first,) = self.store_requests_for(t0)
        self.store.set(close_delimited=False)
        # One request per worker (new client connections go round robin), so the worker
        # that read the close-delimited body is asked again.
        followers = self.trace_ids[1:2 + WORKERS]
        for trace in followers:
            status, body, _ = self.curl(f"/api/public/traces/{trace}", self.bearer(trace))
            self.assertEqual((status, body.get("id")), (200, trace), body)

        def on_closed_connection() -> list:
            return [(r.target, r.seq) for r in self.store.requests()
                    if r.connection == first.connection and r.seq > first.seq]

        # A request written on the finished connection would reach the store at once; give
        # it a moment to show up before concluding that none was sent.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and not on_closed_connection():
            time.sleep(0.05)
        self.assertEqual(on_closed_connection(), [])
        for trace in followers:
            self.assertEqual(len(self.store_requests_for(trace)), 1, trace)

    def test_a_gzip_body_cut_off_at_the_limit_is_truncated_not_too_large(self):
        # Exactly max_response_bytes (1 MiB) decode, then the gzip stream just stops.
        self.store.set(gzip_truncated_at=1024 * 1024)
        body = self.assert_refused(self.curl(f"/api/public/traces/{PII}", self.bearer(PII)),
                                   502, "bad_upstream_response")
        self.assertIn("truncated", body["message"])
        # One byte more than the limit is too large, cut off or not.
        self.store.set(gzip_truncated_at=1024 * 1024 + 1)
        self.assert_refused(self.curl(f"/api/public/traces/{PII}", self.bearer(PII)),
                            502, "response_too_large")

    def test_a_404_with_an_unreadable_encoding_is_still_404(self):
        # The body of an error answer is never forwarded, so it is never decoded either.
        for encoding in ("br", "zstd", "gzip"):  # gzip: GARBAGE_BODY is no gzip stream
            self.store.set(encoding_override=encoding)
            self.assert_refused(self.curl("/api/public/traces/no-such-trace",
                                          self.bearer("no-such-trace")), 404, "not_found")
        self.store.set(encoding_override="br", status_override=500)
        self.assert_refused(self.curl(f"/api/public/traces/{PII}", self.bearer(PII)),
                            502, "upstream_error")
        # A 200 the gateway cannot decode is still refused.
        self.store.set(encoding_override="br", status_override=None)
        self.assert_refused(self.curl(f"/api/public/traces/{PII}", self.bearer(PII)),
                            502, "unsupported_encoding")

    def revoke_while_in_flight(self, call, trace: str, grant_id: str, token: str):
        """Runs call() in a thread against a store that answers after 1.8 s; once the store has
        the request, revokes grant_id. Returns (call's result, seconds from the revocation
        to the answer)."""
        self.store.set(delay_seconds=1.8)  # under the upstream timeout (2 s)
        self.store.clear_requests()
        result: dict = {}

        def run() -> None:
            try:
                result["answer"] = call()
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                result["error"] = e

        caller = threading.Thread(target=run)
        caller.start()
        try:
            wait_for(lambda: self.store_requests_for(trace), 10, what="the store being asked")
            revoked_at = time.monotonic()
            status, out, _ = self.api.call("DELETE", f"/v1/grants/{grant_id}", token)
            self.assertEqual(status, 200, out)
        finally:
            caller.join(30)
        answered_after = time.monotonic() - revoked_at
        self.assertNotIn("error", result, result.get("error"))
        return result["answer"], answered_after

    def replay_when_ended(self, session: str) -> tuple[dict, str]:
        """The session's replay once its end record is in the file. The end is queued before
        the answer is written and reaches the file with the writer thread's next batch."""
        def ended() -> tuple[dict, str] | None:
            out = audit(self.gw.config_path, "replay", session, "--format", "json")
            self.assertEqual(out.returncode, 0, out.stderr)
            replay = json.loads(out.stdout)
            return (replay, out.stdout) if replay.get("end") else None
        return wait_for(ended, 10, what=f"the end record of session {session}")

    def test_a_grant_revoked_while_its_one_call_fetch_is_in_flight_is_cut(self):
        path = f"/v1/connections/traces-http/traces/{PII}"
        status, pending, _ = self.api.call("GET", path, self.idp.token("careful"))
        self.assertEqual(status, 202, pending)
        grant_id, bearer = pending["grant_id"], pending["http"]["bearer"]
        status, out, _ = self.api.call("POST", f"/v1/grants/{grant_id}/approve",
                                       self.idp.token("approver"), {"comment": "ok"})
        self.assertEqual(status, 200, out)
        (status, out, _), answered_after = self.revoke_while_in_flight(
            lambda: self.api.call("GET", path, self.idp.token("careful"),
                                  headers={"X-Tracegate-Grant": bearer}),
            PII, grant_id, self.idp.token("careful"))
        self.assertEqual((status, out.get("error")), (403, "grant_revoked"), out)
        self.assertNotIn(EMAIL, json.dumps(out))
        self.assertNotIn("trace", out)
        self.assertLess(answered_after, 1.2)

    def test_a_grant_revoked_while_its_request_is_in_flight_is_cut(self):
        t0 = self.trace_ids[0]
        status, grant = self.api.grant(self.idp.token("agent"), t0, connection="traces-http")
        self.assertEqual(status, 201, grant)
        (status, body, headers), answered_after = self.revoke_while_in_flight(
            lambda: self.curl(f"/api/public/traces/{t0}", grant["http"]["bearer"]),
            t0, grant["grant_id"], self.idp.token("agent"))
        self.assertEqual((status, body.get("error")), (403, "grant_revoked"), body)
        self.assertIn("revoked", body["message"])
        # Cut at once, not after the store's answer came in.
        self.assertLess(answered_after, 1.2)
        replay, _ = self.replay_when_ended(headers["x-tracegate-session"])
        self.assertIn("grant_revoked", replay["end"]["reason"])
        self.assertEqual(replay["end"]["outcome"], "error")  # not the caller's violation
        status, after, _ = self.api.call("GET", f"/v1/grants/{grant['grant_id']}",
                                         self.idp.token("agent"))
        self.assertEqual(after["state"], "revoked", after)

    # -- one-call fetch --

    def test_one_call_fetch_over_http(self):
        status, out, headers = self.api.call("GET", f"/v1/connections/traces-http/traces/{PII}"
                                             "?reason=incident-7", self.idp.token("agent"))
        self.assertEqual(status, 200, out)
        self.assertEqual((out["connection"], out["trace_id"]), ("traces-http", PII))
        self.assertEqual(out["trace"]["id"], PII)
        self.assertGreater(out["masked"].get("EMAIL", 0), 0, out["masked"])
        self.assertNotIn(EMAIL, json.dumps(out))
        self.assertEqual(headers["x-tracegate-session"], out["session_id"])
        status, grant, _ = self.api.call("GET", f"/v1/grants/{out['grant_id']}",
                                         self.idp.token("agent"))
        self.assertEqual(grant["state"], "completed", grant)

    def test_one_call_fetch_over_postgres(self):
        status, out, _ = self.api.call(
            "GET", f"/v1/connections/traces-pg/traces/{self.pg_trace}", self.idp.token("agent"))
        self.assertEqual(status, 200, out)
        self.assertEqual(len(out["trace"]), 1, out)
        self.assertEqual(out["trace"][0]["id"], self.pg_trace)
        self.assertIsInstance(out["trace"][0]["input"], (dict, list), out["trace"][0])

    def test_one_call_fetch_refusals(self):
        token = self.idp.token("agent")
        status, out, _ = self.api.call("GET", f"/v1/connections/nope/traces/{PII}", token)
        self.assertEqual(status, 404, out)
        status, out, _ = self.api.call("GET", f"/v1/connections/other-pg/traces/{PII}", token)
        self.assertIn(status, (403, 409), out)
        status, out, _ = self.api.call("GET", f"/v1/connections/traces-http/traces/{PII}",
                                       self.idp.token("stranger"))
        self.assertEqual(status, 403, out)
        status, out, _ = self.api.call("GET", f"/v1/connections/traces-http/traces/{PII}", None)
        self.assertEqual(status, 401, out)
        status, out, _ = self.api.call("POST", f"/v1/connections/traces-http/traces/{PII}", token)
        self.assertEqual(status, 405, out)

    def test_one_call_fetch_refuses_a_trace_id_that_is_a_path_step(self):
        # %2E%2E is "..": put into /api/public/traces/{trace_id} it would name the list.
        self.store.clear_requests()
        status, out, _ = self.api.call("GET", "/v1/connections/traces-http/traces/%2E%2E",
                                       self.idp.token("agent"))
        self.assertEqual((status, out["error"]), (400, "bad_trace_id"), out)
        self.assertEqual(self.store.requests(), [])

    def test_one_call_fetch_with_approval(self):
        path = f"/v1/connections/traces-http/traces/{PII}"
        status, pending, _ = self.api.call("GET", path, self.idp.token("careful"))
        self.assertEqual(status, 202, pending)
        self.assertEqual(pending["state"], "pending")
        grant_id, bearer = pending["grant_id"], pending["http"]["bearer"]
        # Not before the approval.
        status, out, _ = self.api.call("GET", path, self.idp.token("careful"),
                                       headers={"X-Tracegate-Grant": bearer})
        self.assertEqual(status, 403, out)
        self.assertIn("approval", out["message"])
        status, out, _ = self.api.call("POST", f"/v1/grants/{grant_id}/approve",
                                       self.idp.token("approver"), {"comment": "ok"})
        self.assertEqual(status, 200, out)
        # Someone else cannot use it.
        status, out, _ = self.api.call("GET", path, self.idp.token("agent"),
                                       headers={"X-Tracegate-Grant": bearer})
        self.assertEqual(status, 404, out)
        status, out, _ = self.api.call("GET", path, self.idp.token("careful"),
                                       headers={"X-Tracegate-Grant": bearer})
        self.assertEqual(status, 200, out)
        self.assertEqual((out["grant_id"], out["trace"]["id"]), (grant_id, PII))

    # -- evidence --

    def test_sessions_are_recorded_without_credentials(self):
        bearer = self.bearer(PII)
        status, _, headers = self.curl(f"/api/public/traces/{PII}", bearer)
        self.assertEqual(status, 200)
        session = headers["x-tracegate-session"]
        replay, text = self.replay_when_ended(session)
        self.assertEqual(replay["session"]["kind"], "http")
        kinds = [s["kind"] for s in replay["steps"]]
        self.assertIn("http_request", kinds)
        self.assertIn("http_response", kinds)
        response = next(s for s in replay["steps"] if s["kind"] == "http_response")
        self.assertEqual(response["status"], 200)
        self.assertIn("[REDACTED:EMAIL]", response["body"])
        self.assertNotIn(EMAIL, text)
        secret = bearer.split("_", 2)[2]
        self.assertNotIn(secret, text)
        self.assertEqual(replay["end"]["outcome"], "completed")


if __name__ == "__main__":
    unittest.main()
