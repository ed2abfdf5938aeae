"""Nothing blocks an API I/O thread (issue 17, item 5): while grant requests wait on a slow
risk query, the API answers everyone else.

Real PostgreSQL, a real OpenID provider (npm oidc-provider), the gateway. The rule's risk
query reads a table the test holds an ACCESS EXCLUSIVE lock on, so each risk query waits in
PostgreSQL for as long as the test wants (until the lock is released, or the gateway's 5 s
risk timeout). With the risk queries visibly waiting in pg_stat_activity, the test asks for
an approver's list, /healthz and a grant that needs no risk, and checks that they were
answered while the risky grants were still in flight, and that a request past
api.max_slow_calls is answered 503 `busy` at once rather than queued. Only ordering and
completion are asserted, never durations.

Run from this folder: python3 -m unittest -v test_api_threads
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import threading
import unittest
from http.server import BaseHTTPRequestHandler
from typing import Any

import harness
from harness import http_get, wait_for
from test_grants import (Api, FakeIntrospection, grants_config, start_access_plane,
                         use_introspection)

harness.install_sigterm_cleanup()

APPROVERS = "trace-approvers"
CLIENTS = {
    "sensitive": {"groups": ["sensitive"]},
    "reader": {"groups": ["trace-readers"]},
    "approver": {"groups": [APPROVERS]},
}
POLICY = {
    "max_ttl": "5m",
    "rules": [
        {"name": "risky", "groups": ["sensitive"], "connections": ["traces-pg"],
         "approve_if_risk_at_least": 0.5, "approvers": [APPROVERS], "ttl": "30s"},
        {"name": "plain", "groups": ["trace-readers"], "connections": ["traces-pg"],
         "ttl": "30s"},
    ],
}
RISK_QUERY = "select risk from trace_risk where trace_id = $1"
SLOW_CALLS = 2  # api.max_slow_calls


class TableLock:
    """Holds ACCESS EXCLUSIVE on a table in an open transaction of a psql session until
    release(): every query that reads the table waits in PostgreSQL meanwhile."""

    def __init__(self, pg: harness.PgServer, table: str):
        self.proc = subprocess.Popen(
            ["psql", "-qAt", "-v", "ON_ERROR_STOP=1", pg.super_dsn()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;"
                              " SELECT 'locked';\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if line != "locked":
            raise RuntimeError(f"could not lock {table}: {line} {self.proc.stderr.read()}")

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("COMMIT;\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class HeldIntrospection(FakeIntrospection):
    """An RFC 7662 endpoint that holds every request until release(), then says the token is
    not active. Counts the requests it holds."""

    def __init__(self) -> None:
        self.release_event = threading.Event()
        super().__init__()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        self.release_event.wait(30)
        harness.reply(handler, 200, b'{"active":false}')

    def close(self) -> None:
        self.release_event.set()
        super().close()


class ApiThreadsTest(harness.ClassFixtures, unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        def make_config() -> dict:
            cls.introspection = cls.enter(HeldIntrospection())
            ids = cls.pg.psql("select id from traces order by id limit 2").split()
            cls.risky_trace, cls.plain_trace = ids
            cls.pg.psql("CREATE TABLE trace_risk (trace_id text PRIMARY KEY, risk numeric);"
                        f"INSERT INTO trace_risk VALUES ('{cls.risky_trace}', 0.9);"
                        "GRANT SELECT ON trace_risk TO tracegate;")
            cfg = grants_config(cls.pg, cls.idp, cls.tmp, policy=POLICY,
                                approvals={"timeout": "15m"})
            cfg["connections"][0]["risk_query"] = RISK_QUERY
            cfg["api"]["handler_threads"] = 4
            cfg["api"]["max_slow_calls"] = SLOW_CALLS
            use_introspection(cfg, cls.tmp, "introspector-secret", cls.introspection.url)
            return cfg

        start_access_plane(cls, "tg-apithreads-", make_config, clients=CLIENTS)

    def waiting_risk_queries(self) -> int:
        return int(self.pg.psql(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
            " and query like 'select risk from trace_risk%'").strip())

    def risky_grant(self) -> tuple[int, Any, dict[str, str]]:
        return self.api.call("POST", "/v1/grants", self.idp.token("sensitive"),
                             {"connection": "traces-pg", "trace_id": self.risky_trace,
                              "reason": "slow risk"})

    def test_slow_risk_queries_do_not_stall_other_callers(self):
        # Tokens first, so that nothing below waits on the IdP.
        approver = self.idp.token("approver")
        reader = self.idp.token("reader")
        lock = TableLock(self.pg, "trace_risk")
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=SLOW_CALLS)
        try:
            risky = [pool.submit(self.risky_grant) for _ in range(SLOW_CALLS)]
            # Both risk queries are inside PostgreSQL, blocked on the lock: each holds a
            # handler thread of the gateway (and, before the fix, one of its two API threads).
            wait_for(lambda: self.waiting_risk_queries() == SLOW_CALLS, 30,
                     what="risk queries waiting on the lock")

            # Meanwhile everyone else is served.
            got, out, _ = self.api.call("GET", "/v1/approvals", approver)
            self.assertEqual(got, 200, out)
            approvals_done_first = not any(f.done() for f in risky)
            status, body = http_get(self.gw.admin_url + "/healthz", timeout=10)
            self.assertEqual(status, 200, body)
            got, out, _ = self.api.call("POST", "/v1/grants", reader,
                                        {"connection": "traces-pg",
                                         "trace_id": self.plain_trace})
            self.assertEqual(got, 201, out)
            # One more risky request finds both slow-call slots taken: refused at once, not
            # queued behind the others (and no third risk query reaches PostgreSQL).
            got, out, headers = self.risky_grant()
            self.assertEqual(got, 503, out)
            self.assertEqual(out["error"], "busy")
            self.assertGreaterEqual(int(headers["retry-after"]), 1)
            self.assertEqual(self.waiting_risk_queries(), SLOW_CALLS)
            others_done_first = not any(f.done() for f in risky)
        finally:
            lock.release()
        results = [f.result(timeout=60) for f in risky]
        pool.shutdown()
        self.assertTrue(approvals_done_first, "the approver's list waited for the risk queries")
        self.assertTrue(others_done_first, "other callers waited for the risk queries")
        # The risky grants complete once their risk can be read: high risk asks approvers.
        for got, out, _ in results:
            self.assertEqual(got, 202, out)
            self.assertEqual(out["state"], "pending", out)
        # The approver now sees them, and the busy one left nothing behind.
        got, out, _ = self.api.call("GET", "/v1/approvals", approver)
        self.assertEqual(got, 200, out)
        text = json.dumps(out)
        for _, grant, _ in results:
            self.assertIn(grant["grant_id"], text)
        status, metrics = http_get(self.gw.admin_url + "/metrics")
        self.assertIn('tracegate_api_busy_total{dependency="risk"} 1', metrics)
        # The slow-call slots were returned: a risky grant works again.
        got, out, _ = self.risky_grant()
        self.assertEqual(got, 202, out)


    def test_slow_introspection_does_not_stall_other_callers(self):
        approver = self.idp.token("approver")
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=SLOW_CALLS)
        held_before = self.introspection.count()
        try:
            opaque = [pool.submit(self.api.call, "GET", "/v1/approvals", f"opaque-{i:04d}")
                      for i in range(SLOW_CALLS)]
            wait_for(lambda: self.introspection.count() == held_before + SLOW_CALLS, 30,
                     what="introspections held by the endpoint")
            got, out, _ = self.api.call("GET", "/v1/approvals", approver)
            self.assertEqual(got, 200, out)
            status, body = http_get(self.gw.admin_url + "/healthz", timeout=10)
            self.assertEqual(status, 200, body)
            # A third opaque token would need the IdP too: busy, and never sent there.
            got, out, headers = self.api.call("GET", "/v1/approvals", "opaque-9999")
            self.assertEqual(got, 503, out)
            self.assertEqual(out["error"], "busy")
            self.assertGreaterEqual(int(headers["retry-after"]), 1)
            others_done_first = not any(f.done() for f in opaque)
            self.assertEqual(self.introspection.count(), held_before + SLOW_CALLS)
        finally:
            self.introspection.release_event.set()
        results = [f.result(timeout=60) for f in opaque]
        pool.shutdown()
        self.introspection.release_event.clear()
        self.assertTrue(others_done_first, "other callers waited for the introspections")
        for got, out, _ in results:
            self.assertEqual(got, 401, out)  # the endpoint said: not active


if __name__ == "__main__":
    unittest.main()
