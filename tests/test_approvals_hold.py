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

import os
import unittest
import urllib.parse

import harness
from harness import PgServer, wait_for
from oidc import OidcProvider
from test_approvals import HeldPsql
from test_grants import grants_config, start_api_gateway
from test_mask import EMAIL, EMAIL2, TRACE, plant_trace, sql_literal

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


class ContentHoldTest(harness.ClassFixtures, unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.start_fixtures("tg-hold-")
        cls.pg = cls.enter(PgServer(traces=5))
        plant_trace(cls.pg)
        cls.idp = cls.enter(OidcProvider(clients=CLIENTS))
        cfg = grants_config(cls.pg, cls.idp, cls.tmp, policy=POLICY,
                            approvals={"timeout": "4s"})
        cfg["masking_profiles"] = [{"name": "default"}]
        cfg["audit"] = {"dir": os.path.join(cls.tmp, "audit")}
        start_api_gateway(cls, cfg)

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
