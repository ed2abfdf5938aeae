"""Roles and rules trust only the issuers they name (issue 17, item 2), end to end: two real
OpenID providers (npm oidc-provider), a "workforce" IdP and an "agents" realm, each with its
own clients and groups, in front of one gateway.

The review's three cases are refused: agents/alice in the agents' trace-approvers cannot
approve workforce/alice's request; agents/mallory in the agents' security-leads cannot
force-approve; agents/eve in the agents' auditors cannot read /v1/sessions. The same person
under two issuers (identity.people) never decides their own request. `tracegate config check`
refuses a two-issuer config with an unscoped role, naming it and its line.

Run from this folder: python3 -m unittest -v test_issuer_scope
(CTest sets TRACEGATE_BIN, LIBPQ_CLIENT and TRACEGATE_ROOT; see harness.py.)
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import unittest

import harness
from harness import PgServer, gateway_binary
from oidc import OidcProvider
from test_grants import grants_config, issuer_config, start_api_gateway

harness.install_sigterm_cleanup()

WORKFORCE_CLIENTS = {
    "alice": {"groups": ["sensitive", "trace-approvers"]},
    "wanda": {"groups": ["trace-approvers"]},
    "lena": {"groups": ["security-leads"]},
    "auditor": {"groups": ["auditors"]},
}
# The agents realm has groups with the same names: they must count for nothing here.
AGENT_CLIENTS = {
    "alice": {"groups": ["trace-approvers", "sensitive"]},
    "mallory": {"groups": ["security-leads"]},
    "eve": {"groups": ["auditors"]},
    "alice-bot": {"groups": ["agent-sensitive"]},
}
POLICY = {
    "max_ttl": "5m",
    "rules": [
        {"name": "no-contractors", "effect": "deny", "groups": ["contractors"]},
        {"name": "people-sensitive", "issuers": ["workforce"], "groups": ["sensitive"],
         "connections": ["traces-pg"], "require_approval": True, "ttl": "30s"},
        {"name": "agents-sensitive", "issuers": ["agents"], "groups": ["agent-sensitive"],
         "connections": ["traces-pg"], "require_approval": True, "ttl": "30s"},
    ],
}


class IssuerScopeTest(harness.ClassFixtures, unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.start_fixtures("tg-issuer-scope-")
        cls.pg = cls.enter(PgServer(traces=4))
        cls.workforce = cls.enter(OidcProvider(clients=WORKFORCE_CLIENTS))
        cls.agents = cls.enter(OidcProvider(clients=AGENT_CLIENTS))
        cfg = grants_config(cls.pg, cls.workforce, cls.tmp, policy=POLICY, approvals={
            "timeout": "15m", "approver_groups": ["trace-approvers"],
            "force_groups": ["security-leads"], "issuers": ["workforce"]})
        cfg["identity"] = {
            "issuers": [issuer_config(cls.workforce, name="workforce"),
                        issuer_config(cls.agents, name="agents")],
            "people": [{"name": "alice",
                        "identities": ["workforce:alice", "agents:alice-bot"]}],
        }
        cfg["audit"] = {"dir": os.path.join(cls.tmp, "audit"),
                        "auditor_groups": ["auditors"], "auditor_issuers": ["workforce"]}
        start_api_gateway(cls, cfg)
        cls.trace = cls.pg.psql("select id from traces order by id limit 1").strip()

    # -- helpers ---------------------------------------------------------------------------

    def request(self, idp: OidcProvider, client: str) -> str:
        status, out = self.api.grant(idp.token(client), self.trace, connection="traces-pg",
                                     reason="incident 17")
        self.assertEqual(status, 202, out)
        self.assertEqual(out["state"], "pending", out)
        return out["grant_id"]

    def vote(self, grant_id: str, idp: OidcProvider, client: str) -> tuple[int, dict]:
        status, out, _ = self.api.call("POST", f"/v1/grants/{grant_id}/approve",
                                       idp.token(client), {})
        return status, out

    def state_of(self, grant_id: str, idp: OidcProvider, client: str) -> str:
        status, out, _ = self.api.call("GET", f"/v1/grants/{grant_id}", idp.token(client))
        self.assertEqual(status, 200, out)
        return out["state"]

    def assert_refused(self, status: int, out: dict, why: str = "") -> None:
        # 403 (or 404, which hides the request from whoever may not decide it).
        self.assertIn(status, (403, 404), out)
        if status == 403 and why:
            self.assertIn(why, out["message"], out)

    # -- the review's cases ----------------------------------------------------------------

    def test_agents_alice_cannot_approve_workforce_alices_request(self):
        grant = self.request(self.workforce, "alice")
        status, out = self.vote(grant, self.agents, "alice")
        self.assert_refused(status, out, "groups from issuer agents do not count")
        self.assertEqual(self.state_of(grant, self.workforce, "alice"), "pending")
        # agents/alice does not see it in her queue either.
        status, listed, _ = self.api.call("GET", "/v1/approvals", self.agents.token("alice"))
        self.assertEqual(status, 200, listed)
        self.assertNotIn(grant, [a["id"] for a in listed["approvals"]])
        # A workforce approver's vote counts.
        status, out = self.vote(grant, self.workforce, "wanda")
        self.assertEqual(status, 200, out)
        self.assertEqual(self.state_of(grant, self.workforce, "alice"), "approved")

    def test_agents_force_group_cannot_force_approve(self):
        grant = self.request(self.workforce, "alice")
        status, out = self.vote(grant, self.agents, "mallory")
        self.assert_refused(status, out, "groups from issuer agents do not count")
        self.assertEqual(self.state_of(grant, self.workforce, "alice"), "pending")
        status, out = self.vote(grant, self.workforce, "lena")
        self.assertEqual(status, 200, out)
        self.assertEqual(out.get("state"), "approved", out)
        self.assertTrue(any(d["forced"] for d in out["decisions"]), out)

    def test_agents_auditor_cannot_read_sessions(self):
        status, out, _ = self.api.call("GET", "/v1/sessions", self.agents.token("eve"))
        self.assertEqual(status, 403, out)
        status, out, _ = self.api.call("GET", "/v1/sessions", self.workforce.token("auditor"))
        self.assertEqual(status, 200, out)

    def test_agent_rules_apply_to_agents_only(self):
        # agents/alice is in the agents' "sensitive" group: the workforce rule is not hers.
        status, out = self.api.grant(self.agents.token("alice"), self.trace,
                                     connection="traces-pg", reason="x")
        self.assertEqual(status, 403, out)

    def test_one_person_under_two_issuers_never_approves_her_own_request(self):
        # alice asks through her agents identity; her workforce identity is an approver.
        grant = self.request(self.agents, "alice-bot")
        status, out = self.vote(grant, self.workforce, "alice")
        self.assert_refused(status, out, "never decides its own request")
        self.assertEqual(self.state_of(grant, self.agents, "alice-bot"), "pending")
        status, out = self.vote(grant, self.workforce, "wanda")
        self.assertEqual(status, 200, out)
        self.assertEqual(self.state_of(grant, self.agents, "alice-bot"), "approved")


class ConfigCheckTest(unittest.TestCase):
    """`tracegate config check` names an unscoped role and its line when two issuers exist."""

    YAML = """\
connections:
  - name: traces-pg
    listen: 127.0.0.1:0
    backend: {host: db, database: traces, user: tg, password: pw, allow_inline_password: true}
identity:
  issuers:
    - {name: workforce, issuer: "https://wf.example", audiences: [tg], jwks_uri: "https://wf.example/k"}
    - {name: agents, issuer: "https://ag.example", audiences: [tg], jwks_uri: "https://ag.example/k"}
approvals:
  approver_groups: [trace-approvers]
audit:
  auditor_groups: [auditors]
  auditor_issuers: [okta]
policy:
  rules:
    - name: agents-read
      groups: [ai-agents]
"""

    def test_unscoped_roles_are_refused_with_their_lines(self):
        with tempfile.TemporaryDirectory(prefix="tg-scope-check-") as tmp:
            path = os.path.join(tmp, "two.yaml")
            with open(path, "w") as f:
                f.write(self.YAML)
            run = subprocess.run([gateway_binary(), "config", "check", path],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(run.returncode, 1, run)
            err = run.stderr
            self.assertIn(f"{path}:10:20: approvals.approver_groups: is honoured from every "
                          "issuer, and 2 are configured (workforce, agents): name the issuers "
                          "it trusts in approvals.issuers", err)
            self.assertIn(f"{path}:13:20: audit.auditor_issuers: no issuer is named \"okta\"",
                          err)
            self.assertIn(f"{path}:16:13: policy.rules[0].issuers: allow rule \"agents-read\" "
                          "applies to callers of every issuer", err)
            # Scoped, the same file passes.
            scoped = (self.YAML.replace("approver_groups: [trace-approvers]",
                                        "approver_groups: [trace-approvers]\n  issuers: [workforce]")
                      .replace("[okta]", "[workforce]")
                      .replace("      groups: [ai-agents]", "      issuers: [agents]\n"
                               "      groups: [ai-agents]"))
            with open(path, "w") as f:
                f.write(scoped)
            run = subprocess.run([gateway_binary(), "config", "check", path],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(run.returncode, 0, run)


if __name__ == "__main__":
    unittest.main()
