"""The failed-authentication limiter throttles attackers without refusing valid tokens, and
knows which address a request comes from (issue 17, item 4).

One PostgreSQL, one real OpenID provider (npm oidc-provider), a fake introspection endpoint
that is slow and failing, and one gateway with `api.auth_failures_per_minute: 5` and
`api.trusted_proxies: [127.0.0.2]`. Linux routes all of 127.0.0.0/8 to the loopback, so each
test speaks from its own source address (an untrusted peer) or through "the proxy" 127.0.0.2
with X-Forwarded-For, and every address starts with a fresh budget.

Run from this folder: python3 -m unittest -v test_auth_limits
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import time
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

import harness
from harness import http_get, wait_for
from test_grants import (FakeIntrospection, grants_config, read_response, start_access_plane,
                         use_introspection)

harness.install_sigterm_cleanup()

LIMIT = 5
PROXY = "127.0.0.2"
CLIENTS = {"agent": {"groups": ["trace-readers"]}}


class FailingIntrospection(FakeIntrospection):
    """An RFC 7662 endpoint that is slow and down: every POST waits a little, then 503.
    Counts the POSTs, so a test can tell whether the gateway asked it at all."""

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        time.sleep(0.2)
        harness.reply(handler, 503, b'{"error":"temporarily_unavailable"}')


class AuthLimitsTest(harness.ClassFixtures, unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        def make_config() -> dict:
            cls.introspection = cls.enter(FailingIntrospection())
            cfg = grants_config(cls.pg, cls.idp, cls.tmp)
            cfg["api"]["auth_failures_per_minute"] = LIMIT
            cfg["api"]["trusted_proxies"] = [PROXY]
            cfg["identity"]["issuers"][0].update(
                # Background refreshes would blur the JWKS request count; unknown kids
                # refetch every time (no rate limit), so a fetch shows up at once.
                {"jwks_refresh": "10m", "jwks_stale_max": "1h",
                 "unknown_kid_min_interval": "0ms"})
            use_introspection(cfg, cls.tmp, "introspector-secret", cls.introspection.url)
            return cfg

        start_access_plane(cls, "tg-authlimits-", make_config, clients=CLIENTS)
        cls.trace = cls.pg.psql("select id from traces order by id limit 1").strip()
        cls.ctx = ssl.create_default_context(cafile=cls.ca_file)
        cls.jwks_path = urllib.parse.urlparse(cls.idp.jwks_uri).path
        attacker = cls.idp.gen_key(kid="attacker-kid")
        cls.unknown_kid_token = cls.idp.forge(key=attacker, kid="attacker-kid",
                                              groups=["trace-readers"])

    # -- helpers --

    def call(self, source: str, token: str | None, method: str = "POST",
             path: str = "/v1/grants", forwarded: list[str] | None = None,
             ) -> tuple[int, Any, dict[str, str]]:
        """One request from `source` (a loopback address), optionally with X-Forwarded-For
        header lines."""
        conn = http.client.HTTPSConnection(self.api.host, self.api.port, context=self.ctx,
                                           timeout=20, source_address=(source, 0))
        try:
            conn.putrequest(method, path)
            if token is not None:
                conn.putheader("Authorization", f"Bearer {token}")
            for value in forwarded or []:
                conn.putheader("X-Forwarded-For", value)
            body = b""
            if method == "POST":
                body = json.dumps({"connection": "traces-pg", "trace_id": self.trace,
                                   "reason": "auth limits test"}).encode()
                conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            return read_response(conn)
        finally:
            conn.close()

    def bogus(self, n: int) -> str:
        """A JWT of the real issuer, with the real kid, whose signature is wrong: refused
        locally, with no IdP call."""
        header, payload, _sig = self.idp.token("agent").split(".")
        return f"{header}.{payload}.{'A' * 340}{n:04d}"

    def exhaust(self, source: str, forwarded: list[str] | None = None) -> None:
        """Uses up `source`'s budget (or the forwarded client's) with bogus tokens."""
        for i in range(LIMIT):
            got, out, _ = self.call(source, self.bogus(i), forwarded=forwarded)
            self.assertEqual(got, 401, out)
        got, out, headers = self.call(source, self.bogus(99), forwarded=forwarded)
        self.assertEqual(got, 429, out)
        self.assertEqual(out["error"], "too_many_requests")
        self.assertGreaterEqual(int(headers["retry-after"]), 1)

    def jwks_fetches(self) -> int:
        return self.idp.request_counts().get(self.jwks_path, 0)

    def metric(self, reason: str) -> float:
        status, text = http_get(self.gw.admin_url + "/metrics")
        self.assertEqual(status, 200)
        total = 0.0
        for line in text.splitlines():
            if (line.startswith("tracegate_auth_failures_total{") and 'path="api"' in line
                    and f'reason="{reason}"' in line):
                total += float(line.rsplit(" ", 1)[1])
        return total

    # -- tests --

    def test_hundred_bogus_tokens_then_a_valid_one_gets_its_grant(self):
        source = "127.0.0.11"
        statuses = [self.call(source, self.bogus(i))[0] for i in range(100)]
        self.assertEqual(statuses[:LIMIT], [401] * LIMIT)
        self.assertEqual(set(statuses[LIMIT:]), {429})
        # The same address, a valid token the gateway has never seen: verified locally.
        got, out, _ = self.call(source, self.idp.token("agent"))
        self.assertEqual(got, 201, out)
        got, out, _ = self.call(source, self.idp.token("agent"), method="GET",
                                path="/v1/approvals")
        self.assertEqual(got, 200, out)
        # Still throttled for bogus ones, and for no token at all.
        self.assertEqual(self.call(source, self.bogus(1))[0], 429)
        self.assertEqual(self.call(source, None)[0], 429)

    def test_throttled_address_cannot_make_the_gateway_fetch_keys(self):
        # Within budget, an unknown kid makes the gateway refetch the issuer's JWKS.
        before = self.jwks_fetches()
        got, out, _ = self.call("127.0.0.12", self.unknown_kid_token)
        self.assertEqual(got, 401, out)
        self.assertEqual(self.jwks_fetches(), before + 1)
        # Over budget, the same token is refused without a fetch, however often it comes.
        source = "127.0.0.13"
        self.exhaust(source)
        before = self.jwks_fetches()
        for _ in range(20):
            got, out, headers = self.call(source, self.unknown_kid_token)
            self.assertEqual(got, 429, out)
            self.assertGreaterEqual(int(headers["retry-after"]), 1)
        self.assertEqual(self.jwks_fetches(), before)
        self.assertGreater(self.metric("throttled"), 0)
        # A valid token from there still works.
        got, out, _ = self.call(source, self.idp.token("agent"))
        self.assertEqual(got, 201, out)

    def test_opaque_tokens_against_a_failing_introspection_endpoint_are_throttled(self):
        source = "127.0.0.14"
        before = self.introspection.count()
        unavailable_before = self.metric("idp_unavailable")
        statuses = []
        for i in range(3 * LIMIT):
            got, out, _ = self.call(source, f"opaque-token-{i:03d}")
            statuses.append((got, out["error"]))
        # Each failure the IdP caused counts: LIMIT introspections, then no more.
        self.assertEqual(statuses[:LIMIT], [(503, "unavailable")] * LIMIT)
        self.assertEqual(set(statuses[LIMIT:]), {(429, "too_many_requests")})
        self.assertEqual(self.introspection.count(), before + LIMIT)
        self.assertEqual(self.metric("idp_unavailable"), unavailable_before + LIMIT)
        got, out, _ = self.call(source, self.idp.token("agent"))
        self.assertEqual(got, 201, out)

    def test_forged_forwarded_for_from_an_untrusted_peer_is_ignored(self):
        source = "127.0.0.15"
        # A new X-Forwarded-For each time: still one address, the peer's.
        for i in range(LIMIT):
            got, out, _ = self.call(source, self.bogus(i), forwarded=[f"198.51.100.{i}"])
            self.assertEqual(got, 401, out)
        got, out, _ = self.call(source, self.bogus(9), forwarded=["198.51.100.77"])
        self.assertEqual(got, 429, out)
        log = self.gw.stderr_text()
        self.assertIn(f"peer={source}: authentication failed", log)
        self.assertNotIn("peer=198.51.100.", log)
        got, out, _ = self.call(source, self.idp.token("agent"), forwarded=["198.51.100.1"])
        self.assertEqual(got, 201, out)

    def test_trusted_proxy_forwards_the_client_address(self):
        client = "203.0.113.5"
        self.exhaust(PROXY, forwarded=[client])
        self.assertIn(f"peer={client}: authentication failed", self.gw.stderr_text())
        # The right-most address the proxy did not add itself is the client, whatever the
        # client wrote to the left of it.
        got, out, _ = self.call(PROXY, self.bogus(1), forwarded=[f"6.6.6.6, {client}"])
        self.assertEqual(got, 429, out)
        got, out, _ = self.call(PROXY, self.bogus(1), forwarded=["6.6.6.6", f"{client}, {PROXY}"])
        self.assertEqual(got, 429, out)
        # Another client behind the same proxy has its own budget: the proxy is not one user.
        got, out, _ = self.call(PROXY, self.bogus(1), forwarded=["203.0.113.6"])
        self.assertEqual(got, 401, out)
        # And the throttled client's valid token passes.
        got, out, _ = self.call(PROXY, self.idp.token("agent"), forwarded=[client])
        self.assertEqual(got, 201, out)

    def test_malformed_forwarded_for_means_the_peer_address(self):
        weird = ["not-an-address", "203.0.113.9:443", "1.1.1.1,,2.2.2.2", "", " , ",
                 "[::1", "1.1.1.1;2.2.2.2", "x" * 8000, ", ".join(["192.0.2.1"] * 100)]
        # Counted against the proxy's own address: LIMIT of them use up its budget.
        for i, value in enumerate(weird[:LIMIT]):
            got, out, _ = self.call(PROXY, self.bogus(i), forwarded=[value])
            self.assertEqual(got, 401, (value[:40], out))
        for value in weird[LIMIT:]:
            got, out, _ = self.call(PROXY, self.bogus(7), forwarded=[value])
            self.assertEqual(got, 429, (value[:40], out))
        self.assertEqual(self.call(PROXY, self.bogus(8))[0], 429)
        # A well-formed header names a client that has its own budget.
        got, out, _ = self.call(PROXY, self.bogus(9), forwarded=["192.0.2.200"])
        self.assertEqual(got, 401, out)
        self.assertTrue(self.gw.alive())
        got, out, _ = self.call(PROXY, self.idp.token("agent"), forwarded=["not-an-address"])
        self.assertEqual(got, 201, out)

    def test_no_token_or_secret_in_the_log(self):
        token = self.idp.token("agent")
        got, _, _ = self.call("127.0.0.16", token[:-3] + "xyz")
        self.assertEqual(got, 401)
        log = self.gw.stderr_text()
        self.assertNotIn(token[:-3], log)
        self.assertNotIn("introspector-secret", log)
        self.assertIsNone(re.search(r"Bearer [A-Za-z0-9]", log))


if __name__ == "__main__":
    unittest.main()
