"""The approval queue under a flood (issue 17, items 6 and 9), end to end: a real gateway, the
real OpenID provider (npm oidc-provider), real PostgreSQL, the local webhook receiver and two
hostile hooks.

- One requester is capped at approvals.max_pending_per_requester pending requests: one more is
  429 `too_many_pending`, and nothing is created for it (no request, no webhook).
- GET /v1/approvals pages (limit, after → next) and filters (state, connection, trace_id,
  requester); `tracegate approvals list` does the same (--limit, --after, --all, filters).
  An approver always reaches another requester's request, however many the flooder made.
- Webhooks: a hook that answers 503 with Retry-After and a hook that never answers get their
  own bounded queues; the healthy hook gets every event regardless; the full queues drop
  their oldest deliveries (metric `tracegate_webhook_deliveries{outcome="dropped"}`, a log
  line), and the dead hook is not retried before its Retry-After.
- A vote on a request the voter may not see answers 404 exactly as GET does (item 9).
- Revoking a pending grant cancels its request: approvers no longer see it, a vote answers as
  for any settled request, and webhooks hear "decided" with state cancelled (item 9).

Run from this folder: python3 -m unittest -v test_approval_queue
(CTest sets TRACEGATE_BIN and TRACEGATE_ROOT; see harness.py.)
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler

import harness
from harness import gateway_binary, http_get, wait_for
from test_approvals import APPROVERS, WEBHOOK_SECRET_ENV, ApprovalsCase

harness.install_sigterm_cleanup()

MAX_PENDING = 4
DEAD_QUEUE = 3
HUNG_QUEUE = 2
RETRY_AFTER_SECONDS = 3600


class HostileHook(harness.LocalHttpServer):
    """A webhook endpoint on loopback that is no use to anyone: `mode` "dead" answers every POST
    503 with Retry-After; "hung" reads the request and never answers. Records each POST's
    X-Tracegate-Delivery."""

    def __init__(self, mode: str):
        self.mode = mode
        self._lock = threading.Lock()
        self.delivery_ids: list[str] = []
        self._release = threading.Event()
        super().__init__(self._post, protocol_version="HTTP/1.1")
        self.url += "/hook"

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        harness.read_body(handler)
        with self._lock:
            self.delivery_ids.append(handler.headers.get("X-Tracegate-Delivery", ""))
        if self.mode == "hung":
            self._release.wait()
            return
        harness.reply(handler, 503, b"busy", content_type=None,
                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    def ids(self) -> list[str]:
        with self._lock:
            return list(self.delivery_ids)

    def close(self) -> None:
        self._release.set()
        super().close()


def jwt_subject(token: str) -> str:
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))["sub"]


def metric(admin_url: str, series: str) -> float:
    """The value of one series in /metrics (e.g. 'name{label="x"}'), or -1."""
    status, text = http_get(admin_url + "/metrics")
    if status != 200:
        return -1
    match = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(match.group(1)) if match else -1


def dropped_deliveries(admin_url: str) -> float:
    return metric(admin_url, 'tracegate_webhook_deliveries{outcome="dropped"}')


class ApprovalQueueTest(ApprovalsCase):
    """"sensitive" floods; "selfish" (also a requester) is the one whose request must not get
    lost; approver1 decides; outsider may see nothing."""

    @classmethod
    def make_approvals_config(cls) -> dict:
        cls.dead = cls.enter(HostileHook("dead"))
        cls.hung = cls.enter(HostileHook("hung"))
        return {
            "timeout": "15m",
            "force_groups": ["security-leads"],
            "max_pending_per_requester": MAX_PENDING,
            "webhooks": [
                {"name": "live", "url": cls.hooks.url + "/live", "secret_env": WEBHOOK_SECRET_ENV,
                 "events": ["requested", "decided"], "timeout": "5s", "max_attempts": 3},
                {"name": "dead", "url": cls.dead.url, "secret_env": WEBHOOK_SECRET_ENV,
                 "timeout": "5s", "max_attempts": 3, "queue_size": DEAD_QUEUE},
                # Each attempt hangs for ten minutes: longer than this whole module runs.
                {"name": "hung", "url": cls.hung.url, "secret_env": WEBHOOK_SECRET_ENV,
                 "timeout": "10m", "max_attempts": 1, "queue_size": HUNG_QUEUE},
            ],
        }

    def setUp(self) -> None:
        self.tokens = {c: self.token(c) for c in ("sensitive", "selfish", "approver1",
                                                  "outsider")}
        self.addCleanup(self.withdraw_all)

    # -- helpers ---------------------------------------------------------------------------

    def call(self, client: str, method: str, path: str, body=None):
        status, out, _ = self.api.call(method, path, self.tokens[client], body)
        return status, out

    def ask(self, client: str, connection: str = "traces-pg") -> tuple[int, dict]:
        return self.api.grant(self.tokens[client], self.trace, connection=connection,
                              reason=f"queue test by {client}")

    def list_ids(self, client: str, query: str = "") -> tuple[list[str], str | None]:
        status, out = self.call(client, "GET", "/v1/approvals" + query)
        self.assertEqual(status, 200, out)
        return [a["id"] for a in out["approvals"]], out.get("next")

    def all_pages(self, client: str, query: str) -> list[str]:
        ids: list[str] = []
        after = None
        for _ in range(100):
            suffix = "" if after is None else "&after=" + urllib.parse.quote(after, safe="")
            page, after = self.list_ids(client, query + suffix)
            ids += page
            if after is None:
                return ids
        self.fail("the cursor never ended")

    def withdraw_all(self) -> None:
        """Revokes every pending grant of the requesters, so each test starts under the cap."""
        for client in ("sensitive", "selfish"):
            ids = self.all_pages(client, "?requester=me&state=pending&limit=200")
            for gid in ids:
                self.call(client, "DELETE", f"/v1/grants/{gid}")

    def requested_on_live(self, gid: str) -> list:
        return [d for d in self.hooks.deliveries("/live")
                if d.event == "approval.requested" and d.data.get("id") == gid]

    # -- item 6: the cap -------------------------------------------------------------------

    def test_a_flood_is_capped_and_what_is_refused_leaves_nothing(self):
        accepted: list[str] = []
        refused = []
        for _ in range(MAX_PENDING + 8):
            status, out = self.ask("sensitive")
            if status == 202:
                accepted.append(out["grant_id"])
            else:
                refused.append((status, out))
        self.assertEqual(len(accepted), MAX_PENDING)
        self.assertEqual(len(refused), 8)
        for status, out in refused:
            self.assertEqual((status, out["error"]), (429, "too_many_pending"), out)
            self.assertIn("max_pending_per_requester", out["message"])
            self.assertNotIn("grant_id", out)
        # Only the accepted requests exist.
        mine = self.all_pages("sensitive", "?requester=me&state=all&limit=200")
        self.assertEqual(sorted(set(mine) & set(accepted)), sorted(accepted))
        pending = self.all_pages("sensitive", "?requester=me&limit=200")
        self.assertEqual(sorted(pending), sorted(accepted))

        # Another requester is not held back, and its request reaches approvers and webhooks.
        status, victim = self.ask("selfish")
        self.assertEqual(status, 202, victim)
        first_page, _ = self.list_ids("approver1")
        self.assertIn(victim["grant_id"], first_page)
        # The live hook's deliveries keep publish order: once the victim's has arrived, any
        # webhook for a refused request would have too.
        self.hooks.wait_for(lambda d: d.event == "approval.requested"
                            and d.data.get("id") == victim["grant_id"], path="/live",
                            what="the second requester's webhook")
        flood_events = [d for d in self.hooks.deliveries("/live")
                        if d.event == "approval.requested"
                        and d.data.get("reason") == "queue test by sensitive"
                        and d.data.get("id") not in accepted]
        self.assertEqual(flood_events, [], "a refused request was announced")
        for gid in accepted:
            self.assertEqual(len(self.requested_on_live(gid)), 1, gid)

        # A settled request frees a place.
        status, out = self.call("approver1", "POST", f"/v1/approvals/{accepted[0]}/deny",
                                 {"comment": "one is enough"})
        self.assertEqual((status, out["state"]), (200, "denied"), out)
        status, out = self.ask("sensitive")
        self.assertEqual(status, 202, out)
        status, out = self.ask("sensitive")
        self.assertEqual(status, 429, out)

    # -- item 6: paging and filters --------------------------------------------------------

    def test_paging_and_filters_reach_every_request(self):
        status, victim = self.ask("selfish")
        self.assertEqual(status, 202, victim)
        flood = []
        for connection in ("traces-pg", "other-pg") * (MAX_PENDING // 2):
            status, out = self.ask("sensitive", connection)
            self.assertEqual(status, 202, out)
            flood.append(out["grant_id"])
        expected = list(reversed(flood)) + [victim["grant_id"]]  # newest first

        # One page at a time, two per page: every request exactly once, in order.
        seen = self.all_pages("approver1", "?limit=2")
        self.assertEqual(seen, expected)
        page, after = self.list_ids("approver1", "?limit=2")
        self.assertEqual(page, expected[:2])
        self.assertIsNotNone(after)

        # Filters.
        issuer = self.gw.config["identity"]["issuers"][0]["name"]
        who = urllib.parse.quote(f"{issuer}:{jwt_subject(self.tokens['selfish'])}", safe="")
        self.assertEqual(self.all_pages("approver1", f"?requester={who}"), [victim["grant_id"]])
        self.assertEqual(self.all_pages("approver1", "?connection=other-pg"),
                         [g for g in expected if g in flood[1::2]])
        self.assertEqual(self.all_pages("approver1", f"?trace_id={self.trace}&limit=200"),
                         expected)
        self.assertEqual(self.all_pages("approver1", "?trace_id=no-such-trace"), [])
        self.assertEqual(self.all_pages("selfish", "?requester=me"), [victim["grant_id"]])
        # An outsider sees nothing, on any page.
        self.assertEqual(self.all_pages("outsider", "?state=all&limit=1"), [])

        for bad in ("?limit=0", "?limit=201", "?limit=x", "?limit=-1", "?after=nonsense",
                    "?after=12.a%20b", "?requester=nobody", "?requester=unknown-idp:x",
                    "?state=open", "?page=2"):
            status, out = self.call("approver1", "GET", "/v1/approvals" + bad)
            self.assertEqual((status, out["error"]), (400, "bad_request"), (bad, out))

        # The CLI: --all follows the cursor; without it, the next page is named.
        listed = self.cli("approver1", "list", "--limit", "2", "--all", "--json")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertEqual([a["id"] for a in json.loads(listed.stdout)["approvals"]], expected)
        one = self.cli("approver1", "list", "--limit", "2")
        self.assertEqual(one.returncode, 0, one.stderr)
        self.assertIn(expected[0], one.stdout)
        self.assertNotIn(expected[2], one.stdout)
        more = re.search(r"^more: --after (\S+)", one.stdout, re.M)
        self.assertIsNotNone(more, one.stdout)
        rest = self.cli("approver1", "list", "--limit", "200", "--after", more.group(1), "--json")
        self.assertEqual(rest.returncode, 0, rest.stderr)
        self.assertEqual([a["id"] for a in json.loads(rest.stdout)["approvals"]], expected[2:])
        filtered = self.cli("approver1", "list", "--connection", "other-pg", "--json")
        self.assertEqual([a["id"] for a in json.loads(filtered.stdout)["approvals"]],
                         [g for g in expected if g in flood[1::2]])
        self.assertNotEqual(self.cli("approver1", "list", "--limit", "0").returncode, 0)

    # -- item 6: webhooks ------------------------------------------------------------------

    def test_dead_and_hung_hooks_starve_no_one(self):
        gids = []
        for _ in range(MAX_PENDING):
            status, out = self.ask("sensitive")
            self.assertEqual(status, 202, out)
            gids.append(out["grant_id"])
        for gid in gids:
            status, out = self.call("approver1", "POST", f"/v1/approvals/{gid}/approve")
            self.assertEqual((status, out["state"]), (200, "approved"), out)
        # The healthy hook gets every event while the hung one holds its first attempt for ten
        # minutes and the dead one asks for an hour (honoured up to the 10 min cap).
        for gid in gids:
            for event in ("approval.requested", "approval.decided"):
                self.hooks.wait_for(lambda d, gid=gid, event=event: d.event == event
                                    and d.data.get("id") == gid, path="/live",
                                    what=f"{event} of {gid} on the healthy hook")
        wait_for(lambda: len(self.hung.ids()) >= 1, 30, what="the hung hook's first attempt")
        self.assertEqual(len(self.hung.ids()), 1, "the hung hook's lane is stuck on one attempt")
        # The dead hook: each delivery attempted once (Retry-After: 1 h, backoff 1 s), and its
        # queue of DEAD_QUEUE overflowed: the oldest were dropped, counted and logged.
        wait_for(lambda: len(self.dead.ids()) >= DEAD_QUEUE, 30, what="the dead hook's attempts")
        wait_for(lambda: dropped_deliveries(self.gw.admin_url) > 0, 30,
                 what="dropped deliveries in /metrics")
        ids = self.dead.ids()
        self.assertEqual(len(ids), len(set(ids)), f"retried before Retry-After: {ids}")
        # Per hook: the hostile hooks' queues are full and dropping; the healthy one's is not.
        admin = self.gw.admin_url
        wait_for(lambda: metric(admin, 'tracegate_webhook_dropped{hook="dead"}') > 0, 30,
                 what="the dead hook's drops in /metrics")
        wait_for(lambda: metric(admin, 'tracegate_webhook_queued{hook="hung"}')
                 == HUNG_QUEUE + 1, 30, what="the hung hook's full queue in /metrics")
        self.assertEqual(metric(admin, 'tracegate_webhook_dropped{hook="live"}'), 0)
        self.assertLessEqual(metric(admin, 'tracegate_webhook_queued{hook="dead"}'),
                             DEAD_QUEUE + 1)
        log = self.gw.stderr_text()
        self.assertIn("notify: webhook dead: queue full", log)
        self.assertIn("notify: webhook hung: queue full", log)
        self.assertRegex(log, r"webhook dead: .* attempt 1/3 failed \(HTTP 503\); retrying in "
                              r"600000 ms \(Retry-After\)")
        self.assertNotIn(self.dead.url, log)

    # -- item 9 ----------------------------------------------------------------------------

    def test_a_vote_on_an_unseen_request_is_a_404_like_get(self):
        status, victim = self.ask("selfish")
        self.assertEqual(status, 202, victim)
        gid = victim["grant_id"]
        for target in (gid, "g_doesnotexist"):
            get_status, got = self.call("outsider", "GET", f"/v1/approvals/{target}")
            self.assertEqual(get_status, 404, got)
            for path in (f"/v1/approvals/{target}/approve", f"/v1/approvals/{target}/deny",
                         f"/v1/grants/{target}/approve"):
                status, out = self.call("outsider", "POST", path, {"comment": "let me"})
                self.assertEqual(status, 404, (path, out))
                self.assertEqual((out["error"], out["message"]), (got["error"], got["message"]),
                                 path)
                self.assertNotIn(APPROVERS, json.dumps(out))
        # The request was not touched.
        status, out = self.call("approver1", "GET", f"/v1/approvals/{gid}")
        self.assertEqual((status, out["state"], out["decisions"]), (200, "pending", []), out)

    def test_revoking_a_pending_grant_cancels_its_request(self):
        status, grant = self.ask("selfish")
        self.assertEqual(status, 202, grant)
        gid = grant["grant_id"]
        self.assertIn(gid, self.all_pages("approver1", "?limit=200"))
        status, out = self.call("selfish", "DELETE", f"/v1/grants/{gid}")
        self.assertEqual((status, out["state"]), (200, "revoked"), out)

        self.assertNotIn(gid, self.all_pages("approver1", "?limit=200"))
        self.assertIn(gid, self.all_pages("approver1", "?state=cancelled&limit=200"))
        status, out = self.call("approver1", "GET", f"/v1/approvals/{gid}")
        self.assertEqual((status, out["state"]), (200, "cancelled"), out)
        self.assertIn("decided_at", out)
        [decided] = self.hooks.wait_for(lambda d: d.event == "approval.decided"
                                        and d.data.get("id") == gid, path="/live",
                                        what="approval.decided for the revoked grant")
        self.assertEqual(decided.data["state"], "cancelled")

        # A vote now gets what a vote on any settled request gets.
        status, denied = self.ask("selfish")
        self.assertEqual(status, 202, denied)
        self.call("approver1", "POST", f"/v1/approvals/{denied['grant_id']}/deny",
                  {"comment": "no"})
        settled_status, settled = self.call("approver1", "POST",
                                            f"/v1/approvals/{denied['grant_id']}/approve")
        status, out = self.call("approver1", "POST", f"/v1/approvals/{gid}/approve")
        self.assertEqual((status, out["error"]), (settled_status, settled["error"]), out)
        self.assertEqual(status, 409)
        self.assertIn("cancelled", out["message"])
        # The grant stays revoked.
        status, out = self.call("selfish", "GET", f"/v1/grants/{gid}")
        self.assertEqual((status, out["state"]), (200, "revoked"), out)


if __name__ == "__main__":
    unittest.main()
