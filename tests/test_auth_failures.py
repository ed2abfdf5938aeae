"""Failed attempts are evidence (issue 16): every refused credential on every data path is an
`auth_failure` record in the audit log — reason, path, connection, client address, grant id
when known, never the secret — aggregated so that a flood cannot fill the disk, shown by
`tracegate audit export` and by `GET /v1/sessions?outcome=refused`, inside the hash chain.

Real PostgreSQL, a real OpenID provider (npm oidc-provider), the HTTP test trace store, the
gateway; wrong secrets through the raw pgwire client's SCRAM (harness.RawPgConn) and psql,
bearers through http.client.

Run from this folder: python3 -m unittest -v test_auth_failures
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import time
import unittest

import harness
from harness import HttpTraceStore, PgServer, free_port, wait_for
from oidc import OidcProvider
from test_audit import audit, generate_key
from test_grants import grants_config
from test_http_proxy import (http_connection, start_store_gateway, use_fetch_query,
                             wait_http_listener)

harness.install_sigterm_cleanup()

CLIENTS = {
    "agent": {"groups": ["readers"]},
    "other": {"groups": ["readers"]},
    "shorty": {"groups": ["short-lived"]},
    "auditor": {"groups": ["auditors"]},
}
POLICY = {
    "max_ttl": "5m",
    "rules": [
        {"name": "readers", "groups": ["readers"],
         "connections": ["traces-pg", "other-pg", "traces-http"], "ttl": "60s"},
        {"name": "short", "groups": ["short-lived"], "connections": ["traces-pg"], "ttl": "1s"},
    ],
}
STATIC_USER, STATIC_PASSWORD = "alice", "alice-right-password"
FETCH_SQL = "select id, name from traces where id = $1"


def make_config(pg: PgServer, idp: OidcProvider, store: HttpTraceStore, tmp: str) -> dict:
    cfg = grants_config(pg, idp, tmp, policy=POLICY)
    signing_key = os.path.join(tmp, "audit-signing.pem")
    generate_key(signing_key)
    cfg["audit"] = {"dir": os.path.join(tmp, "audit"), "durability": "strict",
                    "checkpoint_interval": "200ms", "signing_key_file": signing_key,
                    "auditor_groups": ["auditors"]}
    # A static user beside the grants on the second listener.
    cfg["connections"][1]["users"] = [
        {"name": STATIC_USER, "scram_verifier": harness.scram_verifier(STATIC_PASSWORD)}]
    use_fetch_query(cfg["connections"][0], FETCH_SQL)
    cfg["connections"].append(http_connection("traces-http", store.url, store.user))
    return cfg


class AuthFailureCase(harness.ClassFixtures, unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.start_fixtures("tg-authfail-")
        cls.pg = cls.enter(PgServer(traces=5))
        cls.store = cls.enter(HttpTraceStore(traces=5))
        cls.idp = cls.enter(OidcProvider(clients=CLIENTS))
        cfg = make_config(cls.pg, cls.idp, cls.store, cls.tmp)
        start_store_gateway(cls, cfg)
        cls.pg_host, cls.pg_port = harness.split_hostport(cfg["connections"][0]["listen"])
        cls.other_port = harness.split_hostport(cfg["connections"][1]["listen"])[1]
        cls.http_port = harness.split_hostport(cfg["connections"][2]["listen"])[1]
        wait_http_listener("127.0.0.1", cls.http_port)
        cls.trace = cls.pg.psql("select id from traces order by id limit 1").strip()
        cls.config_path = cls.gw.config_path
        # Every secret a failed attempt used, or that a caller holds: none may be recorded.
        cls.secrets: list[str] = [STATIC_PASSWORD, cls.pg.password_for("tracegate"),
                                  cls.store.password]

    # -- helpers --

    def grant(self, client: str = "agent", connection: str = "traces-pg") -> dict:
        token = self.idp.token(client)
        status, out = self.api.grant(token, self.trace, connection=connection)
        self.assertEqual(status, 201, out)
        self.secrets.append(out["postgres"]["password"] if "postgres" in out
                            else out["http"]["bearer"].rsplit("_", 1)[1])
        if "http" in out:
            self.secrets.append(out["http"]["bearer"])
        return out

    def pg_login(self, user: str, password: str, port: int | None = None) -> dict | None:
        """A raw SCRAM login; the ErrorResponse's fields, or None if it succeeded."""
        with harness.RawPgConn("127.0.0.1", port or self.pg_port) as conn:
            try:
                conn.startup(user, password, database="traces")
            except harness.PgProtocolError as e:
                return e.fields
            return None

    def bearer_request(self, bearer: str | None, conn: http.client.HTTPSConnection | None = None,
                       ) -> int:
        own = conn is None
        if own:
            conn = self.https(self.http_port)
        headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
        conn.request("GET", f"/api/public/traces/{self.trace}", headers=headers)
        resp = conn.getresponse()
        resp.read()
        if own:
            conn.close()
        return resp.status

    def https(self, port: int) -> http.client.HTTPSConnection:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=20)

    def export(self) -> list[dict]:
        p = audit(self.config_path, "export")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.exported_text = p.stdout
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]

    def failures(self) -> list[dict]:
        return [e["data"] for e in self.export() if e["type"] == "auth_failure"]

    def refused_sessions(self) -> tuple[list[dict], str]:
        status, out, _ = self.api.call("GET", "/v1/sessions?outcome=refused&limit=1000",
                                       self.idp.token("auditor"))
        self.assertEqual(status, 200, out)
        return out["sessions"], json.dumps(out)


class EveryPathTest(AuthFailureCase):
    def test_each_refusal_is_one_record_with_its_reason_and_no_secret(self):
        wrong = "not-the-secret-" + os.urandom(8).hex()
        self.secrets.append(wrong)
        # -- Postgres --
        g = self.grant()
        gid, user, secret = g["grant_id"], g["postgres"]["user"], g["postgres"]["password"]
        self.assertEqual(self.pg_login(user, wrong)["C"], "28P01")
        # psql (libpq) with a wrong secret says the same.
        env = dict(os.environ, PGPASSWORD=wrong + "-psql", PGCONNECT_TIMEOUT="10")
        self.secrets.append(wrong + "-psql")
        p = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", user,
                            "-d", "traces", "-c", "select 1"], env=env, capture_output=True,
                           text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("password authentication failed", p.stderr)
        self.assertIsNone(self.pg_login(user, secret))  # the grant's one use
        self.assertEqual(self.pg_login(user, secret)["C"], "28000")  # used
        other = self.grant()
        self.assertEqual(self.pg_login(other["postgres"]["user"], other["postgres"]["password"],
                                       port=self.other_port)["C"], "28000")  # other connection
        revoked = self.grant()
        status, out, _ = self.api.call("DELETE", f"/v1/grants/{revoked['grant_id']}",
                                       self.idp.token("agent"))
        self.assertEqual(status, 200, out)
        self.assertEqual(self.pg_login(revoked["postgres"]["user"],
                                       revoked["postgres"]["password"])["C"], "28000")
        short = self.grant("shorty")
        time.sleep(1.3)
        self.assertEqual(self.pg_login(short["postgres"]["user"],
                                       short["postgres"]["password"])["C"], "28000")
        unknown = "g_" + "0" * 26
        self.assertEqual(self.pg_login(unknown, wrong)["C"], "28P01")
        self.assertEqual(self.pg_login(STATIC_USER, wrong, port=self.other_port)["C"], "28P01")
        self.assertEqual(self.pg_login("mallory", wrong, port=self.other_port)["C"], "28P01")
        # -- HTTP listener --
        h = self.grant(connection="traces-http")
        bearer = h["http"]["bearer"]
        hid = h["grant_id"]
        forged = f"tgb_{hid}_" + "A" * 43
        self.assertEqual(self.bearer_request(None), 401)
        self.assertEqual(self.bearer_request("tgb_garbage_" + wrong), 401)
        self.assertEqual(self.bearer_request(forged), 401)
        self.assertEqual(self.bearer_request(bearer), 200)
        self.assertEqual(self.bearer_request(bearer), 403)  # used
        # -- one-call fetch with X-Tracegate-Grant --
        path = f"/v1/connections/traces-pg/traces/{self.trace}"
        mine = self.grant()
        theirs = self.grant("other")
        for header in (f"tgb_{'0' * 26}_{'A' * 43}", theirs["http"]["bearer"],
                       f"tgb_{mine['grant_id']}_{'A' * 43}"):
            status, out, _ = self.api.call("GET", path, self.idp.token("agent"),
                                           headers={"X-Tracegate-Grant": header})
            self.assertIn(status, (401, 403, 404), out)

        expected = {
            ("postgres", "wrong_secret", gid),
            ("postgres", "grant_used", gid),
            ("postgres", "grant_other_connection", other["grant_id"]),
            ("postgres", "grant_revoked", revoked["grant_id"]),
            ("postgres", "grant_expired", short["grant_id"]),
            ("postgres", "unknown_user", "0" * 26),
            ("postgres", "wrong_secret", ""),  # the static user
            ("postgres", "unknown_user", ""),  # mallory
            ("http", "missing_credential", ""),
            ("http", "malformed_credential", ""),
            ("http", "wrong_secret", hid),
            ("http", "grant_used", hid),
            ("fetch", "unknown_grant", "0" * 26),
            ("fetch", "grant_other_principal", theirs["grant_id"]),
            ("fetch", "wrong_secret", mine["grant_id"]),
        }

        def recorded() -> set:
            return {(f["path"], f["reason"], f["grant_id"]) for f in self.failures()}

        wait_for(lambda: expected <= recorded(), 20,
                 what=f"auth_failure records for {sorted(expected - recorded())}")
        records = self.failures()
        for f in records:
            self.assertTrue(f["client_address"].startswith("127.0.0.1"), f)
            self.assertIn(f["event"], ("failure", "summary", "overflow"), f)
        static = [f for f in records if f["reason"] == "wrong_secret" and f["path"] == "postgres"
                  and f["grant_id"] == ""]
        self.assertEqual(static[0]["user"], STATIC_USER)
        self.assertEqual(static[0]["connection"], "other-pg")
        # The wrong secret twice (raw SCRAM, then psql): one "failure" now, the second counted
        # for the window's summary.
        twice = [f for f in records if (f["path"], f["reason"], f["grant_id"]) ==
                 ("postgres", "wrong_secret", gid)]
        self.assertEqual([f["event"] for f in twice], ["failure"])

        # The sessions API: one refused entry per written record, with the attempts.
        sessions, api_text = self.refused_sessions()
        reasons = {(s["kind"], s["reason"], s["grant_id"]) for s in sessions}
        self.assertLessEqual(expected, reasons)
        self.assertTrue(all(s["outcome"] == "refused" and s["attempts"] >= 1
                            for s in sessions))
        # …and one of them replays as the record it indexes.
        status, events, _ = self.api.call("GET", f"/v1/sessions/{sessions[0]['id']}/events",
                                          self.idp.token("auditor"))
        self.assertEqual(status, 200, events)
        self.assertEqual(events["steps"][0]["kind"], "auth_failure")
        text = audit(self.config_path, "replay", sessions[0]["id"]).stdout
        self.assertIn("refused", text)

        # The counters: every series of tracegate_auth_failures_total has the same labels,
        # path and reason (and connection), whichever listener counted it.
        self.assertIsNotNone(self.gw.admin_url)
        status, metrics = harness.http_get(self.gw.admin_url + "/metrics")
        self.assertEqual(status, 200)
        series = [line for line in metrics.splitlines()
                  if line.startswith("tracegate_auth_failures_total{")]
        self.assertTrue(series, metrics)
        for line in series:
            for label in ("path=", "reason=", "connection="):
                self.assertIn(label, line)
        by_labels = {line.split(" ")[0]: float(line.split(" ")[1]) for line in series}
        self.assertGreaterEqual(by_labels['tracegate_auth_failures_total{connection="traces-pg",'
                                          'path="postgres",reason="invalid_password"}'], 3)
        self.assertGreaterEqual(by_labels['tracegate_auth_failures_total{connection="traces-pg",'
                                          'path="postgres",reason="invalid_authorization"}'], 3)

        # The records are in the hash chain.
        p = audit(self.config_path, "verify", "--live")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        # Never a secret: not in the log (decompressed by export), the index the API serves,
        # the replay, or the gateway's stderr.
        stderr = self.gw.stderr_text()
        for secret in self.secrets:
            for where, text_ in (("export", self.exported_text), ("api", api_text),
                                 ("replay", text), ("stderr", stderr)):
                self.assertNotIn(secret, text_, f"a secret reached the {where}")


class FloodTest(AuthFailureCase):
    """Thousands of failures write a bounded number of records whose counts add up."""

    def test_a_flood_is_bounded_and_its_counts_add_up_after_shutdown(self):
        g = self.grant(connection="traces-http")
        user = "g_" + g["grant_id"]
        bearer_forged = f"tgb_{g['grant_id']}_" + "A" * 43
        wrong_logins, bad_bearers, strangers = 400, 2000, 300
        started = time.monotonic()
        for i in range(wrong_logins):
            self.assertEqual(self.pg_login(user, f"wrong-{i}")["C"], "28P01")
        conn = self.https(self.http_port)
        for i in range(bad_bearers):
            self.assertEqual(self.bearer_request(bearer_forged if i % 2 else None, conn), 401)
        conn.close()
        # Unknown users, each its own key: past the per-window cap they go to one overflow.
        for i in range(strangers):
            self.assertEqual(self.pg_login(f"stranger{i}", "x", port=self.other_port)["C"],
                             "28P01")
        elapsed = time.monotonic() - started
        # Shutdown closes the window: its summaries are written before the last checkpoint.
        self.gw.stop()
        p = audit(self.config_path, "verify")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        records = self.failures()

        def total(pred) -> tuple[int, int]:
            chosen = [f for f in records if pred(f)]
            return sum(f["count"] for f in chosen), len(chosen)

        windows = int(elapsed // 10) + 2  # 10 s windows the flood can touch
        count, n = total(lambda f: f["path"] == "postgres" and f["user"] == user)
        self.assertEqual(count, wrong_logins)
        self.assertLessEqual(n, 2 * windows)
        count, n = total(lambda f: f["path"] == "http")
        self.assertEqual(count, bad_bearers)
        self.assertLessEqual(n, 4 * windows)
        count, n = total(lambda f: f["path"] == "postgres" and f["reason"] == "unknown_user")
        self.assertEqual(count, strangers)
        self.assertLessEqual(n, (64 + 1) * windows)
        self.assertTrue(any(f["event"] == "overflow" for f in records), records)
        self.assertLess(len(records), 400, "the flood must not write a record per attempt")
        for f in records:
            self.assertNotIn("A" * 43, json.dumps(f))


if __name__ == "__main__":
    unittest.main()
