"""Content-triggered holds, end to end: a policy rule with `hold_if_masked_at_least` makes the
gateway keep a result in which masking found that many values (before masking) until an
approver decides. Approved: the client gets the result, masked. Denied or expired: the
result is discarded, the client gets an ERROR (42501) with the approver's comment, and the
session stays usable. Results with fewer findings pass at once. A real PostgreSQL holds a
trace planted with personal data (test_mask's), a real OpenID provider issues the tokens,
psql is the client and the approver decides over the HTTPS API.

Run from this folder: python3 -m unittest -v test_approvals_hold
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest
import urllib.parse

import harness
from harness import Gateway, PgServer, wait_for
from oidc import OidcProvider
from test_approvals import HeldPsql
from test_grants import Api, grants_config
from test_mask import EMAIL, EMAIL2, INPUT, METADATA, OUTPUT, TRACE, sql_literal

harness.install_sigterm_cleanup()

CLIENTS = {
    "reader": {"groups": ["held-readers"]},
    "approver": {"groups": ["trace-approvers"]},
}
POLICY = {
    "max_ttl": "5m",
    "rules": [
        {"name": "held", "groups": ["held-readers"], "connections": ["traces-pg"],
         "masking_profile": "default", "hold_if_masked_at_least": 3,
         "approvers": ["trace-approvers"], "ttl": "60s", "uses": 1, "max_session": "5m"},
    ],
}
# What the planted trace's name/input/metadata hold that masking finds: more than 3 values.
SELECT_PII = f"select name, input, metadata from traces where id = {sql_literal(TRACE)}"
SELECT_CLEAN = f"select id from traces where id = {sql_literal(TRACE)}"


class ContentHoldTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="tg-hold-")
        cls.pg = cls.idp = cls.gw = None
        try:
            cls.pg = PgServer(traces=5)
            cls.pg.__enter__()
            cls.pg.psql(
                "INSERT INTO traces (id, name, user_id, session_id, input, output, metadata) "
                f"VALUES ({sql_literal(TRACE)}, {sql_literal('contact ' + EMAIL)}, 'u1', "
                f"'sess-1', {sql_literal(json.dumps(INPUT))}::jsonb, "
                f"{sql_literal(json.dumps(OUTPUT))}::jsonb, "
                f"{sql_literal(json.dumps(METADATA))}::jsonb);")
            cls.idp = OidcProvider(clients=CLIENTS)
            cls.idp.__enter__()
            cfg = grants_config(cls.pg, cls.idp, cls.tmp, policy=POLICY,
                                approvals={"timeout": "4s"})
            cfg["masking_profiles"] = [{"name": "default"}]
            cfg["audit"] = {"dir": os.path.join(cls.tmp, "audit")}
            cls.gw = Gateway(cfg, env={Gateway.BACKEND_PASSWORD_ENV:
                                       cls.pg.password_for("tracegate")})
            cls.gw.__enter__()
            cls.ca_file = cfg["tls"]["cert_file"]
            cls.api = Api(cls.gw, cls.ca_file)
            wait_for(lambda: harness.port_accepts(cls.api.host, cls.api.port), 30,
                     what="api listening")
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
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def session(self, script: str) -> tuple[HeldPsql, str]:
        status, grant = self.api.grant(self.idp.token("reader"), TRACE)
        self.assertEqual(status, 201, grant)
        uri = grant["postgres"]["uri"] + "&sslrootcert=" + urllib.parse.quote(self.ca_file)
        psql = HeldPsql(uri, script=script, on_error_stop=False)
        self.addCleanup(psql.kill)
        return psql, grant["grant_id"]

    def wait_held(self, psql: HeldPsql, request_id: str) -> None:
        wait_for(lambda: f"waits for approval {request_id}" in psql.stderr
                 or psql.proc.poll() is not None, 30, what="the held-result notice")
        self.assertIn(f"waits for approval {request_id}", psql.stderr,
                      f"psql ended: {psql.stdout!r} {psql.stderr!r}")

    def vote(self, request_id: str, approve: bool, comment: str) -> dict:
        status, out, _ = self.api.call(
            "POST", f"/v1/approvals/{request_id}/{'approve' if approve else 'deny'}",
            self.idp.token("approver"), {"comment": comment})
        self.assertEqual(status, 200, out)
        return out

    def test_a_result_without_findings_passes_at_once(self):
        psql, _ = self.session(SELECT_CLEAN + ";\n")
        self.assertEqual(psql.finish()[0], 0, psql.stderr)
        self.assertEqual(psql.stdout.strip(), TRACE)
        self.assertNotIn("waits for approval", psql.stderr)

    def test_an_approved_result_is_released_masked(self):
        psql, grant_id = self.session(SELECT_PII + ";\n")
        request_id = f"{grant_id}.r1"
        self.wait_held(psql, request_id)
        self.assertEqual(psql.stdout, "", "nothing may reach the client before the decision")
        # The request shows the approver what is held and why.
        status, pending, _ = self.api.call("GET", f"/v1/approvals/{request_id}",
                                           self.idp.token("approver"))
        self.assertEqual(status, 200, pending)
        self.assertEqual((pending["kind"], pending["state"]), ("response", "pending"))
        self.assertIn("masking found", pending["detail"])
        self.assertEqual(self.vote(request_id, True, "ok for incident 12")["state"], "approved")
        self.assertEqual(psql.finish()[0], 0, psql.stderr)
        self.assertIn("[REDACTED:EMAIL]", psql.stdout)
        for planted in (EMAIL, EMAIL2):
            self.assertNotIn(planted, psql.stdout)

    def test_a_denied_result_is_discarded_and_the_session_goes_on(self):
        psql, grant_id = self.session(SELECT_PII + ";\nselect 'still-here';\n")
        request_id = f"{grant_id}.r1"
        self.wait_held(psql, request_id)
        self.vote(request_id, False, "not for this ticket")
        self.assertEqual(psql.finish()[0], 0, psql.stderr)
        self.assertIn("42501", psql.stderr)
        self.assertIn("withheld", psql.stderr)
        self.assertIn("not for this ticket", psql.stderr)
        self.assertEqual(psql.stdout.strip(), "still-here")
        for planted in (EMAIL, EMAIL2, "REDACTED"):
            self.assertNotIn(planted, psql.stdout)

    def test_an_undecided_result_expires_and_is_discarded(self):
        psql, grant_id = self.session(SELECT_PII + ";\n")
        request_id = f"{grant_id}.r1"
        self.wait_held(psql, request_id)
        psql.finish(60)
        self.assertIn("42501", psql.stderr)
        self.assertIn(f"approval {request_id} expired", psql.stderr)
        self.assertNotIn(EMAIL, psql.stdout)
        status, out, _ = self.api.call("POST", f"/v1/approvals/{request_id}/approve",
                                       self.idp.token("approver"), {})
        self.assertEqual(status, 409, out)

    def test_a_client_that_leaves_cancels_its_request(self):
        psql, grant_id = self.session(SELECT_PII + ";\n")
        request_id = f"{grant_id}.r1"
        self.wait_held(psql, request_id)
        psql.kill()

        def cancelled() -> bool:
            _, out, _ = self.api.call("GET", f"/v1/approvals/{request_id}",
                                      self.idp.token("approver"))
            return out.get("state") == "cancelled"

        wait_for(cancelled, 15, what="the held request cancelled")


if __name__ == "__main__":
    unittest.main()
