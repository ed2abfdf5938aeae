"""Content-triggered holds on every path that answers in one go (issue 17, item 1).

A rule with `hold_if_masked_at_least` holds a psql result for an approver
(test_approvals_hold). The same rule and trace must hold just the same on:
  - the one-call fetch on a PostgreSQL connection (fetch_query over libpq),
  - the one-call fetch on an HTTP connection (fetch_route on the HTTP trace store),
  - the HTTP listener (a grant's bearer through the reverse proxy).
Each path is driven through the same scenarios, so a path that skips the shared lifecycle
(httpproxy::OneShotSession) fails all of them: held until an approver decides, approved →
released masked, denied → 403 result_withheld with nothing of the trace, undecided → expired
and withheld, revoked while held → 403 grant_revoked and the request closed, and a result
with fewer findings passes at once.

A real PostgreSQL, the test HTTP trace store, a real OpenID provider and the gateway binary;
curl is the HTTP listener's client.

Run from this folder: python3 -m unittest -v test_hold_all_paths
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import unittest
from typing import Any, Callable

import harness
from harness import HttpTraceStore, PgServer, wait_for
from oidc import OidcProvider
from test_audit import audit
from test_grants import grants_config
from test_http_proxy import EMAIL as STORE_EMAIL
from test_http_proxy import PII as STORE_PII
from test_http_proxy import (http_connection, start_store_gateway, use_fetch_query,
                             wait_http_listener)
from test_mask import EMAIL, EMAIL2, TRACE, plant_trace, sql_literal

harness.install_sigterm_cleanup()

CLIENTS = {
    "reader": {"groups": ["held-readers"]},
    "approver": {"groups": ["trace-approvers"]},
}
APPROVAL_TIMEOUT = "6s"
POLICY = {
    "max_ttl": "5m",
    "rules": [
        {"name": "held", "groups": ["held-readers"], "connections": ["traces-pg", "traces-http"],
         "masking_profile": "default", "hold_if_masked_at_least": 3,
         "approvers": ["trace-approvers"], "ttl": "60s", "uses": 1, "max_session": "1m"},
    ],
}
FETCH_SQL = "select id, name, user_id, input, output, metadata from traces where id = $1"
# Values that must never leave the gateway, whatever the path.
PLANTED = (EMAIL, EMAIL2, STORE_EMAIL)


class HoldOnEveryPathTest(harness.ClassFixtures, unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.start_fixtures("tg-hold-paths-")
        cls.pg = cls.enter(PgServer(traces=5))
        plant_trace(cls.pg)
        cls.store = cls.enter(HttpTraceStore(traces=5))
        cls.idp = cls.enter(OidcProvider(clients=CLIENTS))
        cfg = grants_config(cls.pg, cls.idp, cls.tmp, policy=POLICY,
                            approvals={"timeout": APPROVAL_TIMEOUT})
        use_fetch_query(cfg["connections"][0], FETCH_SQL)
        http = http_connection("traces-http", cls.store.url, cls.store.user)
        http["fetch_route"] = "trace"
        cfg["connections"].append(http)
        cfg["masking_profiles"] = [{"name": "default"}]
        cfg["audit"] = {"dir": os.path.join(cls.tmp, "audit")}
        start_store_gateway(cls, cfg)
        cls.http_host, cls.http_port = harness.split_hostport(http["listen"])
        wait_http_listener(cls.http_host, cls.http_port)
        cls.clean_store_trace = next(t for t in cls.store.trace_ids()
                                     if t not in (STORE_PII, "bench-30k"))

    # -- the three paths, each as a call that answers (status, body, headers) --

    def fetch_pg(self, trace: str = TRACE) -> tuple[int, Any, dict[str, str]]:
        return self.api.call("GET", f"/v1/connections/traces-pg/traces/{trace}",
                             self.idp.token("reader"))

    def fetch_http(self, trace: str = STORE_PII) -> tuple[int, Any, dict[str, str]]:
        return self.api.call("GET", f"/v1/connections/traces-http/traces/{trace}",
                             self.idp.token("reader"))

    def proxy_http(self, trace: str = STORE_PII) -> tuple[int, Any, dict[str, str]]:
        status, grant = self.api.grant(self.idp.token("reader"), trace,
                                       connection="traces-http")
        self.assertEqual(status, 201, grant)
        cmd = ["curl", "-sS", "--cacert", self.ca_file, "-D", "-", "--max-time", "30",
               "-H", f"Authorization: Bearer {grant['http']['bearer']}",
               f"https://127.0.0.1:{self.http_port}/api/public/traces/{trace}"]
        out = subprocess.run(cmd, capture_output=True, timeout=40)
        self.assertEqual(out.returncode, 0, out.stderr)
        head, _, body = out.stdout.decode().partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = body
        return int(lines[0].split()[1]), parsed, headers

    PATHS = ("fetch_pg", "fetch_http", "proxy_http")

    # -- helpers --

    def in_background(self, call: Callable[[], Any]) -> Callable[[], Any]:
        """Starts `call` on a thread; returns a function that joins it and gives its result."""
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["answer"] = call()
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                result["error"] = e

        thread = threading.Thread(target=run, daemon=True)
        thread.start()

        def join() -> Any:
            thread.join(60)
            self.assertFalse(thread.is_alive(), "the held call never answered")
            if "error" in result:
                raise result["error"]
            return result["answer"]
        return join

    def pending_held(self, known: set[str]) -> dict:
        """The one new held-result request (kind response) the approver sees."""
        def new_one() -> dict | None:
            status, out, _ = self.api.call("GET", "/v1/approvals?state=pending",
                                           self.idp.token("approver"))
            self.assertEqual(status, 200, out)
            fresh = [a for a in out["approvals"]
                     if a["kind"] == "response" and a["id"] not in known]
            return fresh[0] if fresh else None
        return wait_for(new_one, 30, what="a held result's approval request")

    def known_requests(self) -> set[str]:
        status, out, _ = self.api.call("GET", "/v1/approvals?state=all",
                                       self.idp.token("approver"))
        self.assertEqual(status, 200, out)
        return {a["id"] for a in out["approvals"]}

    def vote(self, request_id: str, approve: bool, comment: str) -> None:
        status, out, _ = self.api.call(
            "POST", f"/v1/approvals/{request_id}/{'approve' if approve else 'deny'}",
            self.idp.token("approver"), {"comment": comment})
        self.assertEqual(status, 200, out)

    def assert_nothing_planted(self, answer: Any) -> None:
        text = json.dumps(answer)
        for planted in PLANTED:
            self.assertNotIn(planted, text)

    def held_call(self, path: str) -> tuple[Callable[[], Any], dict]:
        known = self.known_requests()
        join = self.in_background(getattr(self, path))
        request = self.pending_held(known)
        self.assertEqual(request["state"], "pending", request)
        self.assertIn("masking found", request["detail"])
        return join, request

    def replay_with(self, session: str, text: str) -> str | None:
        out = audit(self.gw.config_path, "replay", session, "--format", "json")
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout if text in out.stdout else None

    # -- the scenarios, on every path --

    def test_an_approved_result_is_released_masked(self):
        for path in self.PATHS:
            with self.subTest(path=path):
                join, request = self.held_call(path)
                self.vote(request["id"], True, "ok for incident 12")
                status, body, headers = join()
                self.assertEqual(status, 200, body)
                self.assert_nothing_planted(body)
                self.assertIn("[REDACTED:EMAIL]", json.dumps(body))
                if path != "proxy_http":
                    self.assertEqual(body["approval_id"], request["id"])
                    self.assertEqual(headers.get("x-tracegate-approval"), request["id"])

    def test_a_denied_result_is_withheld(self):
        for path in self.PATHS:
            with self.subTest(path=path):
                join, request = self.held_call(path)
                self.vote(request["id"], False, "not for this ticket")
                status, body, _ = join()
                self.assertEqual((status, body.get("error")), (403, "result_withheld"), body)
                self.assertIn("not for this ticket", body["message"])
                self.assertIn(request["id"], body["message"])
                self.assertNotIn("trace", body)
                self.assert_nothing_planted(body)

    def test_an_undecided_result_expires_and_is_withheld(self):
        for path in self.PATHS:
            with self.subTest(path=path):
                join, request = self.held_call(path)
                status, body, _ = join()  # nobody votes: the request expires
                self.assertEqual((status, body.get("error")), (403, "result_withheld"), body)
                self.assertIn("expired", body["message"])
                self.assert_nothing_planted(body)
                status, after, _ = self.api.call("GET", f"/v1/approvals/{request['id']}",
                                                 self.idp.token("approver"))
                self.assertEqual(status, 200, after)
                self.assertIn(after["state"], ("expired", "cancelled"), after)

    def test_a_grant_revoked_while_its_result_is_held_is_cut(self):
        for path in self.PATHS:
            with self.subTest(path=path):
                join, request = self.held_call(path)
                status, out, _ = self.api.call("DELETE", f"/v1/grants/{request['grant_id']}",
                                               self.idp.token("reader"))
                self.assertEqual(status, 200, out)
                status, body, _ = join()
                self.assertEqual((status, body.get("error")), (403, "grant_revoked"), body)
                self.assert_nothing_planted(body)
                # The request is closed with the grant: approvers no longer see it pending.
                status, after, _ = self.api.call("GET", f"/v1/approvals/{request['id']}",
                                                 self.idp.token("approver"))
                self.assertEqual(status, 200, after)
                self.assertNotEqual(after["state"], "pending", after)

    def test_a_listener_client_that_leaves_cancels_its_held_request(self):
        known = self.known_requests()
        status, grant = self.api.grant(self.idp.token("reader"), STORE_PII,
                                       connection="traces-http")
        self.assertEqual(status, 201, grant)
        curl = subprocess.Popen(
            ["curl", "-sS", "--cacert", self.ca_file, "--max-time", "30",
             "-H", f"Authorization: Bearer {grant['http']['bearer']}",
             f"https://127.0.0.1:{self.http_port}/api/public/traces/{STORE_PII}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(curl.kill)
        request = self.pending_held(known)
        curl.kill()
        out, _ = curl.communicate(timeout=10)
        self.assert_nothing_planted(out.decode(errors="replace"))

        def closed() -> dict | None:
            status, now, _ = self.api.call("GET", f"/v1/approvals/{request['id']}",
                                           self.idp.token("approver"))
            self.assertEqual(status, 200, now)
            return now if now["state"] == "cancelled" else None
        wait_for(closed, 20, what="the held request cancelled after its client left")
        # Cancelled because the client left, not because nobody decided in time.
        replay = wait_for(lambda: self.replay_with(request["session_id"], "the client left"), 20,
                          what="the cancellation in the session's recording")
        self.assertIn(request["id"], replay)
        # The grant was spent on the request; its use ended with the session.
        status, after, _ = self.api.call("GET", f"/v1/grants/{grant['grant_id']}",
                                         self.idp.token("reader"))
        self.assertEqual(status, 200, after)
        self.assertNotEqual(after["state"], "in_use", after)

    def test_a_result_with_fewer_findings_passes_at_once(self):
        known = self.known_requests()
        pg_trace = self.pg.psql("select id from traces where id <> "
                                f"{sql_literal(TRACE)} order by id limit 1").strip()
        for name, call in (("fetch_pg", lambda: self.fetch_pg(pg_trace)),
                           ("fetch_http", lambda: self.fetch_http(self.clean_store_trace)),
                           ("proxy_http", lambda: self.proxy_http(self.clean_store_trace))):
            with self.subTest(path=name):
                status, body, headers = call()
                self.assertEqual(status, 200, body)
                self.assertNotIn("x-tracegate-approval", headers)
        self.assertEqual(self.known_requests(), known, "no request may be opened")


if __name__ == "__main__":
    unittest.main()
