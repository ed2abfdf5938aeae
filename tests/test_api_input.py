"""Hostile input on the control plane (issue 17, items 3, 7 and 10), end to end: a real
OpenID provider, a real PostgreSQL, a webhook receiver and the gateway.

- A trace id that is not valid UTF-8, too long, or holds control characters (C0 with NUL and
  CR/LF, DEL, C1) is refused with 400 invalid_trace_id on every entry point (POST /v1/grants,
  the one-call fetch) before any grant or approval is stored or any webhook fires.
- Bytes already in the store that are not valid UTF-8 (an old row) do not break any reader:
  the approvers' list, `tracegate approvals list`, /v1/sessions, `audit sessions --format json`.
- No forged log line: a CR/LF trace id never reaches the gateway's stderr raw.
- Errors name a stable code, never the backend's text (libpq host/port/user).

Run from this folder: python3 -m unittest -v test_api_input
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import unittest
import urllib.parse

import harness
from harness import (Gateway, PgServer, RawPgConn, free_port, gateway_binary, startup_message,
                     wait_for)
from oidc import OidcProvider
from test_grants import Api, grants_config
from webhook_receiver import WebhookReceiver

harness.install_sigterm_cleanup()

APPROVERS = "trace-approvers"
CLIENTS = {
    "sensitive": {"groups": ["sensitive"]},
    "reader": {"groups": ["trace-readers"]},
    "approver": {"groups": [APPROVERS]},
    "auditor": {"groups": ["auditors"]},
}
POLICY = {
    "max_ttl": "5m",
    "rules": [
        {"name": "sensitive", "groups": ["sensitive"], "require_approval": True,
         "approvers": [APPROVERS], "ttl": "30s"},
        {"name": "readers", "groups": ["trace-readers"], "ttl": "30s"},
    ],
}
FETCH_SQL = "select id, name from traces where id = $1"
MARKER = "FORGED-LOG-LINE"

# What the path of GET /v1/connections/{c}/traces/{id} may carry, percent-encoded.
BAD_PATH_IDS = {
    "invalid UTF-8": "abc%FF",
    "overlong UTF-8": "abc%C0%AF",
    "CR/LF": f"abc%0D%0A{MARKER}",
    "LF": f"abc%0A{MARKER}",
    "NUL": "abc%00def",
    "C1 (NEL)": "abc%C2%85",
    "DEL": "abc%7F",
    "ESC": "abc%1B%5B31m",
    "C1 (U+0080)": "abc%C2%80",
    "C1 (U+009F)": "abc%C2%9F",
    "RLO (U+202E)": "abc%E2%80%AEdef",
    "LRI (U+2066)": "abc%E2%81%A6",
    "line separator (U+2028)": "abc%E2%80%A8",
    "zero width space": "abc%E2%80%8B",
    "too long": "a" * 257,
}
# What a JSON body may carry: every one of these is valid JSON.
BAD_BODY_IDS = {
    "CR/LF": f"abc\r\n{MARKER}",
    "NUL": "abc\u0000def",
    "C1 (CSI)": "abc\u009b",
    "C1 (U+0080)": "abc\u0080",
    "C1 (U+009F)": "abc\u009f",
    "RLO (U+202E)": "abc\u202edef",
    "LRE (U+202A)": "abc\u202a",
    "PDI (U+2069)": "abc\u2069",
    "paragraph separator (U+2029)": "abc\u2029",
    "BOM (U+FEFF)": "\ufeffabc",
    "tab": "abc\tdef",
    "too long": "a" * 257,
    "empty": "",
}


class ApiInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="tg-api-input-")
        cls.hooks = WebhookReceiver()
        cls.hooks.__enter__()
        cls.pg = cls.idp = cls.gw = None
        try:
            cls.pg = PgServer(traces=5)
            cls.pg.__enter__()
            cls.idp = OidcProvider(clients=CLIENTS)
            cls.idp.__enter__()
            approvals = {"timeout": "15m", "webhooks": [
                {"name": "hook", "url": cls.hooks.url + "/hook", "format": "generic",
                 "secret_env": "TG_WEBHOOK_SECRET", "events": ["requested", "decided"],
                 "timeout": "5s", "max_attempts": 2}]}
            cfg = grants_config(cls.pg, cls.idp, cls.tmp, policy=POLICY, approvals=approvals)
            pg_conn = cfg["connections"][0]
            pg_conn["gate"]["queries"] = [{"name": "trace_by_id", "sql": FETCH_SQL}]
            pg_conn["fetch_query"] = "trace_by_id"
            # The same, with a backend nobody listens on: libpq's failure text names its host,
            # port and user, and none of it may reach the caller.
            dead = json.loads(json.dumps(pg_conn))
            dead["name"] = "dead-pg"
            dead["listen"] = f"127.0.0.1:{free_port()}"
            dead["backend"]["port"] = free_port()
            dead["backend"]["connect_timeout"] = "2s"
            cfg["connections"].append(dead)
            # An HTTP store nobody listens on: the one-call fetch's answer must not name it.
            cfg["connections"].append({
                "name": "dead-http", "type": "http", "listen": f"127.0.0.1:{free_port()}",
                "upstream": {"url": f"http://127.0.0.1:{free_port()}",
                             "auth": {"scheme": "bearer", "secret_env": "TG_STORE_SECRET"},
                             "timeout": "2s"},
                "routes": [{"name": "trace", "path": "/api/public/traces/{trace_id}",
                            "response_trace_id": "id"}],
                "fetch_route": "trace"})
            cfg["audit"] = {"dir": os.path.join(cls.tmp, "audit"),
                            "auditor_groups": ["auditors"]}
            cls.gw = Gateway(cfg, env={Gateway.BACKEND_PASSWORD_ENV:
                                       cls.pg.password_for("tracegate"),
                                       "TG_WEBHOOK_SECRET": "whsec-api-input-0123456789",
                                       "TG_STORE_SECRET": "store-secret-0123456789"})
            cls.gw.__enter__()
            cls.api = Api(cls.gw, cfg["tls"]["cert_file"])
            wait_for(lambda: harness.port_accepts(cls.api.host, cls.api.port), 30,
                     what="api listening")
            cls.traces = cls.pg.psql("select id from traces order by id").split()
        except BaseException:
            cls.stop_all()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.stop_all()

    @classmethod
    def stop_all(cls) -> None:
        try:
            for part in (cls.gw, cls.idp, cls.pg):
                if part is not None:
                    part.__exit__(None, None, None)
        finally:
            cls.hooks.__exit__(None, None, None)
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------

    def token(self, client: str) -> str:
        return self.idp.token(client)

    def tracegate(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([gateway_binary(), *args], capture_output=True, timeout=120,
                              stdin=subprocess.DEVNULL, env=dict(os.environ, **self.gw.env))

    def approvals_listed(self) -> list[dict]:
        status, out, _ = self.api.call("GET", "/v1/approvals?state=all", self.token("approver"))
        self.assertEqual(status, 200, out)
        return out["approvals"]

    def grant_count(self) -> int:
        with sqlite3.connect(self.gw.config["state"]["path"], timeout=10) as db:
            return db.execute("select count(*) from grants").fetchone()[0]

    def assert_no_forged_line(self) -> None:
        for line in self.gw.stderr_text().splitlines():
            self.assertFalse(line.startswith(MARKER), line)

    def assert_refused(self, status: int, out: object, what: str) -> None:
        self.assertEqual(status, 400, (what, out))
        self.assertIsInstance(out, dict, (what, out))
        self.assertEqual(out["error"], "invalid_trace_id", (what, out))
        self.assertIn("request_id", out)
        self.assertNotIn(MARKER, out["message"])

    # -- tests -----------------------------------------------------------------------------

    def test_bad_trace_ids_are_refused_before_anything_is_stored(self):
        grants_before = self.grant_count()
        approvals_before = len(self.approvals_listed())
        hooks_before = len(self.hooks.deliveries())
        for client in ("sensitive", "reader"):  # approval needed, and auto-allow
            for what, encoded in BAD_PATH_IDS.items():
                with self.subTest(client=client, path=what):
                    status, out, _ = self.api.call(
                        "GET", f"/v1/connections/traces-pg/traces/{encoded}", self.token(client))
                    self.assert_refused(status, out, what)
            for what, trace in BAD_BODY_IDS.items():
                with self.subTest(client=client, body=what):
                    status, out = self.api.grant(self.token(client), trace)
                    self.assert_refused(status, out, what)
            with self.subTest(client=client, body="raw invalid UTF-8"):
                raw = b'{"connection":"traces-pg","trace_id":"abc\xff"}'
                status, out, _ = self.api.call("POST", "/v1/grants", self.token(client), raw)
                self.assertEqual(status, 400, out)
                self.assertIsInstance(out, dict, out)
        self.assertEqual(self.grant_count(), grants_before)
        self.assertEqual(len(self.approvals_listed()), approvals_before)
        self.assertEqual(len(self.hooks.deliveries()), hooks_before)
        self.assert_no_forged_line()
        # The longest allowed id still works (it is refused by nothing but policy).
        status, out = self.api.grant(self.token("reader"), "b" * 256)
        self.assertEqual(status, 201, out)

    def test_the_cli_refuses_a_bad_trace_id_before_asking(self):
        token_file = os.path.join(self.tmp, "reader.token")
        with open(token_file, "w") as f:
            f.write(self.token("reader") + "\n")
        p = self.tracegate("grant", "request", "--api", self.api.url, "--cacert",
                           self.gw.config["tls"]["cert_file"], "--token-file", token_file,
                           "--connection", "traces-pg", "--trace", f"abc\r\n{MARKER}")
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn(b"control character", p.stderr)
        p = self.tracegate("grant", "request", "--api", self.api.url, "--cacert",
                           self.gw.config["tls"]["cert_file"], "--token-file", token_file,
                           "--connection", "traces-pg", "--trace", "abc\u202edef")
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn(b"invisible format character", p.stderr)

    def test_invalid_utf8_in_the_store_does_not_break_any_reader(self):
        # A pending request the old way: valid now, then its row gets the bytes an older
        # gateway stored (trace id, reason, requester).
        status, out = self.api.grant(self.token("sensitive"), self.traces[0])
        self.assertEqual(status, 202, out)
        pending = out["grant_id"]
        # An auto-allowed one-call fetch records a session; its index row gets them too.
        status, fetched, _ = self.api.call(
            "GET", f"/v1/connections/traces-pg/traces/{self.traces[1]}", self.token("reader"))
        self.assertEqual(status, 200, fetched)
        bad = "CAST(x'6162630aff' AS TEXT)"  # "abc\n\xFF"
        state_db = self.gw.config["state"]["path"]

        def indexed() -> bool:
            with sqlite3.connect(state_db, timeout=10) as db:
                return db.execute("select count(*) from sessions where grant_id = ?",
                                  (fetched["grant_id"],)).fetchone()[0] == 1

        wait_for(indexed, 10, what="the fetch's session in the index")
        with sqlite3.connect(state_db, timeout=10) as db:
            db.execute(f"update approvals set trace_id = {bad}, reason = {bad}, "
                       f"requester = {bad} where id = ?", (pending,))
            db.execute(f"update grants set trace_id = {bad}, reason = {bad} where id = ?",
                       (pending,))
            db.execute(f"update sessions set trace_id = {bad}, login_user = {bad} "
                       "where grant_id = ?", (fetched["grant_id"],))
        for state in ("pending", "all"):
            with self.subTest(state=state):
                status, out, _ = self.api.call("GET", f"/v1/approvals?state={state}",
                                               self.token("approver"))
                self.assertEqual(status, 200, out)
                self.assertIn(pending, [a["id"] for a in out["approvals"]])
        status, out, _ = self.api.call("GET", f"/v1/approvals/{pending}", self.token("approver"))
        self.assertEqual(status, 200, out)
        status, out, _ = self.api.call("GET", f"/v1/grants/{pending}", self.token("sensitive"))
        self.assertEqual(status, 200, out)
        status, out, _ = self.api.call("GET", "/v1/sessions", self.token("auditor"))
        self.assertEqual(status, 200, out)
        token_file = os.path.join(self.tmp, "approver.token")
        with open(token_file, "w") as f:
            f.write(self.token("approver") + "\n")
        p = self.tracegate("approvals", "list", "--api", self.api.url, "--cacert",
                           self.gw.config["tls"]["cert_file"], "--token-file", token_file,
                           "--state", "all", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        json.loads(p.stdout)
        p = self.tracegate("audit", "sessions", "-c", self.gw.config_path, "--format", "json",
                           "--limit", "1000")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(fetched["session_id"], [s["id"] for s in json.loads(p.stdout)])
        # The table for a terminal (issue 18, item 9): a stored trace id with C1 CSI, an OSC
        # title sequence and a bidi override is shown escaped, never raw.
        hostile = "CAST(x'61c29b324a1b5d303b7407e280ae62' AS TEXT)"  # a CSI 2J ESC]0;t BEL RLO b
        with sqlite3.connect(state_db, timeout=10) as db:
            db.execute(f"update sessions set trace_id = {hostile}, login_user = {hostile} "
                       "where grant_id = ?", (fetched["grant_id"],))
        p = self.tracegate("audit", "sessions", "-c", self.gw.config_path, "--limit", "1000")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(fetched["session_id"].encode(), p.stdout)
        for raw in (b"\x1b", b"\x07", b"\xc2\x9b", b"\xe2\x80\xae"):
            self.assertNotIn(raw, p.stdout)
        self.assertIn(b"a\\xC2\\x9B2J\\x1B]0;t\\x07\\xE2\\x80\\xAEb", p.stdout)
        # The voter of a deny gets its answer (the request and its grant are settled).
        status, out, _ = self.api.call("POST", f"/v1/approvals/{pending}/deny",
                                       self.token("approver"), {"comment": "no"})
        self.assertEqual(status, 200, out)
        self.assertEqual(out["state"], "denied", out)
        status, out, _ = self.api.call("GET", "/v1/approvals?state=all", self.token("approver"))
        self.assertEqual(status, 200, out)
        self.assert_no_forged_line()

    def test_a_logged_user_name_cannot_forge_a_line(self):
        # A Postgres user name is logged (the session's start and end): CR/LF in it is
        # escaped, so the gateway's log keeps one line per event.
        with RawPgConn(self.gw.host, self.gw.port) as conn:
            conn.send(startup_message({"user": f"g_x\r\n{MARKER} user=admin",
                                       "database": "traces"}))
            try:
                conn.recv_message()
            except (OSError, EOFError, ConnectionError):
                pass
        wait_for(lambda: f"g_x\\x0D\\x0A{MARKER}" in self.gw.stderr_text(), 10,
                 what="the escaped user name in the log")
        self.assert_no_forged_line()

    def test_backend_failures_do_not_reach_the_caller(self):
        status, out, _ = self.api.call(
            "GET", f"/v1/connections/dead-pg/traces/{self.traces[2]}", self.token("reader"))
        self.assertEqual(status, 502, out)
        self.assertEqual(out["error"], "fetch_failed", out)
        dead = [c for c in self.gw.config["connections"] if c["name"] == "dead-pg"][0]
        port = str(dead["backend"]["port"])
        text = json.dumps(out)
        for leak in (port, "tracegate", "connection", "refused", "127.0.0.1", "libpq"):
            self.assertNotIn(leak, out["message"].lower(), out)
        self.assertNotIn(port, text)
        # The detail is in the log, for the operator.
        wait_for(lambda: port in self.gw.stderr_text(), 10, what="libpq's reason in the log")

        dead_http = [c for c in self.gw.config["connections"] if c["name"] == "dead-http"][0]
        store_port = dead_http["upstream"]["url"].rsplit(":", 1)[1]
        status, out, _ = self.api.call(
            "GET", f"/v1/connections/dead-http/traces/{self.traces[2]}", self.token("reader"))
        self.assertEqual(status, 502, out)
        self.assertEqual(out["error"], "upstream_unavailable", out)
        self.assertNotIn(store_port, json.dumps(out))
        self.assertNotIn("127.0.0.1", json.dumps(out))
        wait_for(lambda: store_port in self.gw.stderr_text(), 10,
                 what="the store's address in the log")


if __name__ == "__main__":
    unittest.main()
