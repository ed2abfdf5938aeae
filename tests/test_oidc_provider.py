"""Self-tests of the test OpenID provider (tests/oidc/provider.js via oidc.OidcProvider) and
the token forge (tests/oidc/forge.js). No gateway needed; needs Node 20 and
tests/oidc/node_modules (scripts/install-deps.sh).

Run from the repository root: python3 -m unittest tests/test_oidc_provider.py -v
or from tests/:               python3 -m unittest -v test_oidc_provider
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import oidc  # noqa: E402
from oidc import OidcProvider, StaticJsonServer, decode_jwt, public_jwks  # noqa: E402

harness.install_sigterm_cleanup()

CLIENTS = {
    "agent": {"secret": "agent-secret", "groups": ["trace-readers", "ml-eng"]},
    "narrow": {"secret": "narrow-secret", "groups": "single-group-string",
               "audiences": ["tracegate"], "ttl": 30, "claims": {"team": "search"}},
    "nogroups": {"secret": "nogroups-secret"},
    "opaque": {"secret": "opaque-secret", "groups": ["g"], "token_format": "opaque"},
    "tracegate": {"secret": "gateway-secret"},
}


def public_pem(jwk: dict) -> bytes:
    """SPKI PEM of a JWK's public half, computed by node (Python has no RSA)."""
    code = ("const c=require('crypto');process.stdout.write(c.createPublicKey("
            "{key:JSON.parse(process.argv[1]),format:'jwk'}).export({type:'spki',format:'pem'}))")
    p = subprocess.run([oidc.NODE, "-e", code, json.dumps(oidc.public_jwk(jwk))],
                       capture_output=True, timeout=30, check=True)
    return p.stdout


def hs256(secret: bytes, token: str) -> bytes:
    signing_input = token.rsplit(".", 1)[0].encode()
    return hmac.new(secret, signing_input, hashlib.sha256).digest()


def get_status(url: str, timeout: float = 2.0) -> int | str:
    """HTTP status, or the class name of the connection failure."""
    try:
        return harness.http_get(url, timeout=timeout)[0]
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return type(reason).__name__


class ProviderTest(unittest.TestCase):
    """Read-only checks against one shared provider."""

    @classmethod
    def setUpClass(cls):
        cls.idp = OidcProvider(clients=CLIENTS, ttl=300)
        cls.idp.__enter__()
        cls.addClassCleanup(cls.idp.cleanup)

    def test_discovery(self):
        status, body = harness.http_get(self.idp.discovery_url)
        self.assertEqual(status, 200)
        doc = json.loads(body)
        self.assertEqual(doc["issuer"], self.idp.issuer)
        self.assertEqual(self.idp.issuer, f"http://127.0.0.1:{self.idp.port}")
        self.assertEqual(doc["jwks_uri"], self.idp.issuer + "/jwks")
        self.assertEqual(doc["token_endpoint"], self.idp.issuer + "/token")
        self.assertIn("client_credentials", doc["grant_types_supported"])
        self.assertIn("client_secret_basic", doc["token_endpoint_auth_methods_supported"])

    def test_jwks_publishes_only_the_public_signing_key(self):
        jwks = self.idp.jwks()
        self.assertEqual(len(jwks["keys"]), 1)
        key = jwks["keys"][0]
        self.assertEqual(key["kid"], self.idp.signing_kid)
        self.assertEqual((key["kty"], key["alg"], key["use"]), ("RSA", "RS256", "sig"))
        for private in ("d", "p", "q", "dp", "dq", "qi"):
            self.assertNotIn(private, key)

    def test_access_token_shape_and_signature(self):
        before = int(time.time())
        token = self.idp.token("agent", scope="traces:read")
        header, claims, sig = decode_jwt(token)
        self.assertEqual(header, {"alg": "RS256", "typ": "at+jwt", "kid": self.idp.signing_kid})
        self.assertEqual(len(sig), 256)  # RSA-2048
        self.assertEqual(claims["iss"], self.idp.issuer)
        self.assertEqual(claims["aud"], "tracegate")
        self.assertEqual(claims["client_id"], "agent")
        self.assertEqual(claims["sub"], "agent")
        self.assertEqual(claims["groups"], ["trace-readers", "ml-eng"])
        self.assertEqual(claims["scope"], "traces:read")
        self.assertEqual(claims["exp"] - claims["iat"], 300)
        self.assertLessEqual(abs(claims["iat"] - before), 5)
        self.assertTrue(claims["jti"])
        result = self.idp.verify(token)
        self.assertTrue(result["valid"], result)
        self.assertEqual(result["kid"], self.idp.signing_kid)

    def test_default_audience_without_resource(self):
        _, claims, _ = decode_jwt(self.idp.token("agent", resource=None))
        self.assertEqual(claims["aud"], "tracegate")
        self.assertNotIn("scope", claims)

    def test_other_audiences_for_wrong_aud_tests(self):
        _, claims, _ = decode_jwt(self.idp.token("agent", resource="billing-api"))
        self.assertEqual(claims["aud"], "billing-api")
        _, claims, _ = decode_jwt(self.idp.token("agent", resource="https://api.example/x"))
        self.assertEqual(claims["aud"], "https://api.example/x")
        status, body = self.idp.token_response("narrow", resource="billing-api")
        self.assertEqual((status, body["error"]), (400, "invalid_target"))

    def test_per_client_claims_ttl_and_groups_shapes(self):
        _, claims, _ = decode_jwt(self.idp.token("narrow"))
        self.assertEqual(claims["groups"], "single-group-string")
        self.assertEqual(claims["team"], "search")
        self.assertEqual(claims["exp"] - claims["iat"], 30)
        _, claims, _ = decode_jwt(self.idp.token("nogroups"))
        self.assertNotIn("groups", claims)

    def test_client_authentication_failures(self):
        status, body = self.idp.token_response("agent", secret="wrong")
        self.assertEqual((status, body["error"]), (401, "invalid_client"))
        status, body = self.idp.token_response("nobody", secret="x")
        self.assertEqual((status, body["error"]), (401, "invalid_client"))
        with self.assertRaises(oidc.OidcError) as cm:
            self.idp.token("agent", secret="wrong")
        self.assertEqual(cm.exception.status, 401)

    def test_opaque_tokens_introspect_and_jwt_tokens_do_not(self):
        opaque = self.idp.token("opaque")
        self.assertNotIn(".", opaque)
        info = self.idp.introspect(opaque, "tracegate")
        self.assertTrue(info["active"])
        self.assertEqual((info["client_id"], info["aud"], info["groups"]), ("opaque", "tracegate", ["g"]))
        self.assertEqual(self.idp.introspect(self.idp.token("agent"), "tracegate"), {"active": False})

    def test_request_counts(self):
        self.idp.reset_counts()
        self.idp.jwks()
        self.idp.jwks()
        self.assertEqual(self.idp.request_counts().get("/jwks"), 2)


class KeyLifecycleTest(unittest.TestCase):
    """Rotation, removal, outages: a provider per test."""

    def setUp(self):
        self.idp = OidcProvider(clients={"agent": {"groups": ["r"]}})
        self.idp.__enter__()
        self.addCleanup(self.idp.cleanup)

    def published_kids(self) -> list[str]:
        return [k["kid"] for k in self.idp.jwks()["keys"]]

    def test_rotation_changes_signing_kid_and_keeps_old_key(self):
        old_kid = self.idp.signing_kid
        old_token = self.idp.token("agent")
        new_kid = self.idp.rotate_keys()
        self.assertNotEqual(new_kid, old_kid)
        self.assertEqual(self.idp.signing_kid, new_kid)
        self.assertEqual(self.published_kids(), [old_kid, new_kid])
        new_token = self.idp.token("agent")
        self.assertEqual(decode_jwt(new_token)[0]["kid"], new_kid)
        self.assertTrue(self.idp.verify(new_token)["valid"])
        self.assertTrue(self.idp.verify(old_token)["valid"])
        # forge.js sees the rotated key file: "real" means the new signing key.
        self.assertEqual(decode_jwt(self.idp.forge())[0]["kid"], new_kid)

    def test_rotation_to_other_algorithms(self):
        for alg, sig_len in (("ES256", 64), ("EdDSA", 64), ("PS256", 256)):
            kid = self.idp.rotate_keys(alg=alg)
            header, _, sig = decode_jwt(self.idp.token("agent"))
            self.assertEqual((header["alg"], header["kid"], len(sig)), (alg, kid, sig_len))

    def test_remove_key(self):
        old_kid = self.idp.signing_kid
        old_token = self.idp.token("agent")
        new_kid = self.idp.rotate_keys()
        self.idp.remove_key(old_kid)
        self.assertEqual(self.published_kids(), [new_kid])
        result = self.idp.verify(old_token)
        self.assertFalse(result["valid"])
        self.assertIn("no unique key", result["reason"])
        # Removing the signing key: the newest remaining key signs; the last key stays.
        third = self.idp.rotate_keys()
        self.idp.remove_key(third)
        self.assertEqual(self.idp.signing_kid, new_kid)
        with self.assertRaises(oidc.OidcError) as cm:
            self.idp.remove_key(new_kid)
        self.assertEqual(cm.exception.status, 409)

    def test_down_refuse_and_up(self):
        self.idp.down()
        self.assertEqual(get_status(self.idp.discovery_url), "ConnectionRefusedError")
        with self.assertRaises(OSError):
            self.idp.token("agent")
        self.idp.up()
        self.assertEqual(get_status(self.idp.discovery_url), 200)
        self.assertTrue(self.idp.verify(self.idp.token("agent"))["valid"])

    def test_down_503_and_hang(self):
        with self.idp.outage("503"):
            self.assertEqual(get_status(self.idp.discovery_url), 503)
            self.assertEqual(get_status(self.idp.jwks_uri), 503)
            self.assertEqual(self.idp.token_response("agent")[0], 503)
        self.assertEqual(get_status(self.idp.discovery_url), 200)
        with self.idp.outage("hang"):
            started = time.monotonic()
            self.assertIn(get_status(self.idp.jwks_uri, timeout=0.5), ("timeout", "TimeoutError"))
            self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(get_status(self.idp.jwks_uri), 200)

    def test_set_ttl(self):
        self.idp.set_ttl(2)
        _, claims, _ = decode_jwt(self.idp.token("agent"))
        self.assertEqual(claims["exp"] - claims["iat"], 2)

    def test_stop_leaves_no_process(self):
        pid = self.idp.proc.pid
        self.idp.stop()
        self.assertFalse(self.idp.alive())
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)
        self.assertFalse(harness.port_accepts("127.0.0.1", self.idp.port))


class ForgeTest(unittest.TestCase):
    """forge.js outputs carry exactly the intended headers, claims and signatures."""

    @classmethod
    def setUpClass(cls):
        cls.idp = OidcProvider(clients={"agent": {"groups": ["r"]}})
        cls.idp.__enter__()
        cls.addClassCleanup(cls.idp.cleanup)
        with open(cls.idp.jwks_path) as f:
            cls.real_jwk = json.load(f)["keys"][0]

    def test_default_is_validly_signed_with_plausible_claims(self):
        token = self.idp.forge()
        header, claims, _ = decode_jwt(token)
        self.assertEqual(header, {"alg": "RS256", "typ": "at+jwt", "kid": self.idp.signing_kid})
        self.assertEqual((claims["iss"], claims["aud"]), (self.idp.issuer, "tracegate"))
        self.assertGreater(claims["exp"], time.time())
        self.assertTrue(self.idp.verify(token)["valid"])

    def test_alg_none(self):
        token = self.idp.forge(alg="none", claims={"groups": ["admin"]})
        header, claims, sig = decode_jwt(token)
        self.assertEqual(header, {"alg": "none", "typ": "at+jwt"})
        self.assertEqual(sig, b"")
        self.assertTrue(token.endswith("."))
        self.assertEqual(claims["groups"], ["admin"])
        # Lying header: says RS256, is unsigned.
        header, _, sig = decode_jwt(self.idp.forge(alg="none", header={"alg": "RS256"}))
        self.assertEqual((header["alg"], sig), ("RS256", b""))

    def test_hs256_key_confusion_uses_the_public_key_pem(self):
        pem = public_pem(self.real_jwk)
        self.assertTrue(pem.startswith(b"-----BEGIN PUBLIC KEY-----"))
        token = self.idp.forge(alg="HS256", hmac_secret="pem")
        header, _, sig = decode_jwt(token)
        self.assertEqual((header["alg"], header["kid"]), ("HS256", self.idp.signing_kid))
        self.assertEqual(sig, hs256(pem, token))
        token = self.idp.forge(alg="HS256", hmac_secret="pem-nonl")
        self.assertEqual(decode_jwt(token)[2], hs256(pem.rstrip(), token))
        token = self.idp.forge(alg="HS256", hmac_secret={"text": "literal"})
        self.assertEqual(decode_jwt(token)[2], hs256(b"literal", token))

    def test_hostile_kid_values(self):
        for kid in ("../../etc/passwd", "' OR 1=1 --", "", "\u0000"):
            token = self.idp.forge(kid=kid)
            self.assertEqual(decode_jwt(token)[0]["kid"], kid)
            self.assertFalse(self.idp.verify(token)["valid"])  # no such key in the JWKS
        self.assertNotIn("kid", decode_jwt(self.idp.forge(kid=None))[0])

    def test_attacker_key_via_jku_jwk_x5u(self):
        attacker = self.idp.gen_key("RS256", kid=self.idp.signing_kid)  # same kid as real key
        attacker_jwks = public_jwks(attacker)
        with StaticJsonServer({"/jwks.json": attacker_jwks}) as evil:
            token = self.idp.forge(key=attacker, jku=evil.url + "/jwks.json",
                                   x5u=evil.url + "/cert.pem", embed_jwk=True, typ="JWT")
            header, _, _ = decode_jwt(token)
            self.assertEqual(header["jku"], evil.url + "/jwks.json")
            self.assertEqual(header["x5u"], evil.url + "/cert.pem")
            self.assertEqual(header["jwk"], attacker_jwks["keys"][0])
            self.assertEqual(header["typ"], "JWT")
            self.assertNotIn("d", header["jwk"])
            self.assertTrue(self.idp.verify(token, attacker_jwks)["valid"])
            self.assertFalse(self.idp.verify(token)["valid"])  # not the provider's key
            # The server really serves the attacker JWKS (and counts fetches).
            with urllib.request.urlopen(evil.url + "/jwks.json", timeout=5) as r:
                self.assertEqual(json.loads(r.read()), attacker_jwks)
            self.assertEqual(evil.counts, {"/jwks.json": 1})

    def test_bad_claims_with_a_valid_signature(self):
        now = time.time()
        cases = {
            "no aud": ({"claims": {"aud": None}}, lambda c: "aud" not in c),
            "wrong aud": ({"aud": "other"}, lambda c: c["aud"] == "other"),
            "aud list": ({"claims": {"aud": ["other", "tracegate"]}},
                         lambda c: c["aud"] == ["other", "tracegate"]),
            "wrong iss": ({"iss": "http://evil.example"}, lambda c: c["iss"] == "http://evil.example"),
            "no iss": ({"claims": {"iss": None}}, lambda c: "iss" not in c),
            "expired": ({"exp_in": -60}, lambda c: c["exp"] < now),
            "not yet valid": ({"nbf_in": 3600}, lambda c: c["nbf"] > now + 3000),
            "iat in future": ({"iat_in": 3600}, lambda c: c["iat"] > now + 3000),
            "no exp": ({"claims": {"exp": None}}, lambda c: "exp" not in c),
        }
        for name, (options, check) in cases.items():
            with self.subTest(name):
                token = self.idp.forge(**options)
                self.assertTrue(check(decode_jwt(token)[1]), decode_jwt(token)[1])
                self.assertTrue(self.idp.verify(token)["valid"])

    def test_base_on_a_real_token(self):
        real = self.idp.token("agent")
        token = self.idp.forge(base=real, claims={"groups": ["admin"]})
        _, real_claims, _ = decode_jwt(real)
        _, claims, _ = decode_jwt(token)
        self.assertEqual(claims, {**real_claims, "groups": ["admin"]})
        self.assertTrue(self.idp.verify(token)["valid"])

    def test_tampered_payload_and_broken_signatures(self):
        token = self.idp.forge(tamper={"groups": ["admin"]})
        self.assertEqual(decode_jwt(token)[1]["groups"], ["admin"])
        result = self.idp.verify(token)
        self.assertEqual((result["valid"], result["reason"]), (False, "bad signature"))
        self.assertEqual(self.idp.forge(signature="strip").count("."), 1)
        self.assertTrue(self.idp.forge(signature="empty").endswith("."))
        for mode in ("bitflip", "garbage"):
            self.assertFalse(self.idp.verify(self.idp.forge(signature=mode))["valid"])

    def test_oversize_and_raw_json(self):
        token = self.idp.forge(pad=300_000)
        self.assertGreater(len(token), 400_000)
        self.assertEqual(len(decode_jwt(token)[1]["pad"]), 300_000)
        token = self.idp.forge(raw_header='{"alg":"RS256","alg":"none","kid":"x"}')
        self.assertEqual(oidc.b64url_decode(token.split(".")[0]),
                         b'{"alg":"RS256","alg":"none","kid":"x"}')

    def test_es256_and_eddsa_with_a_given_key(self):
        for alg in ("ES256", "EdDSA"):
            with self.subTest(alg):
                key = self.idp.gen_key(alg)
                token = self.idp.forge(key=key)
                header, _, sig = decode_jwt(token)
                self.assertEqual(header["alg"], alg)
                self.assertEqual(len(sig), 64)
                self.assertTrue(self.idp.verify(token, public_jwks(key))["valid"])
                self.assertFalse(self.idp.verify(token)["valid"])

    def test_forge_cli_flags(self):
        p = oidc.run_node(oidc.FORGE_JS, "--jwks", self.idp.jwks_path, "--iss", "http://x",
                          "--kid", "' OR 1=1 --", "--exp-in", "-10", "--claims",
                          '{"aud":null}')
        self.assertEqual(p.returncode, 0, p.stderr)
        header, claims, _ = decode_jwt(p.stdout)
        self.assertEqual(header["kid"], "' OR 1=1 --")
        self.assertNotIn("aud", claims)
        self.assertLess(claims["exp"], time.time())


class StandaloneTest(unittest.TestCase):
    def test_context_manager_cleans_up(self):
        with OidcProvider() as idp:
            tmp, port, pid = idp.tmp, idp.port, idp.proc.pid
            self.assertTrue(os.path.exists(idp.jwks_path))
            self.assertTrue(decode_jwt(idp.token("agent"))[1]["groups"], ["trace-readers"])
        if not harness.KEEP_TMP:
            self.assertFalse(os.path.exists(tmp))
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex(("127.0.0.1", port)), 0)


if __name__ == "__main__":
    unittest.main()
