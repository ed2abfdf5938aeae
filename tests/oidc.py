"""A real OpenID provider for the identity tests, plus a forge for adversarial tokens.

tests/oidc/provider.js runs npm `oidc-provider` 8.8.1 (the last major that runs on Node 20)
on a free loopback port, with clients, signing keys and token TTL from temp files, and a
test-only admin port to rotate/remove keys and take the provider down. tests/oidc/forge.js
makes the tokens a real provider never would (alg none, HS256 key confusion, jku/jwk/x5u,
bad claims, tampered payloads, oversize, ES256/EdDSA). Standard library only on this side;
anything that needs public-key crypto runs in node. Hermetic like harness.py: temp directory,
free ports, readiness polled with a deadline, the process stopped by the context manager.

    with OidcProvider(clients={"agent": {"groups": ["trace-readers"]}}) as idp:
        tok = idp.token("agent")             # RS256, typ at+jwt, aud "tracegate", groups
        header, claims, _sig = decode_jwt(tok)
        old = idp.signing_kid
        idp.rotate_keys()                    # new signing key; the old one stays in the JWKS
        idp.remove_key(old)
        with idp.outage("refuse"):           # or "503" / "hang"
            ...
        bad = idp.forge(alg="none", claims={"groups": ["admin"]})

Clients: {client_id: spec}; spec members (all optional): secret (default "<id>-secret"),
groups (any JSON; omitted = no claim), claims, audiences (list, default any), scope, ttl,
token_format ("jwt" | "opaque"), token_endpoint_auth_method. See provider.js's header.

Needs tests/oidc/node_modules: `npm ci --prefix tests/oidc` (scripts/install-deps.sh runs
it); no network at test time. Environment: NODE (default `node`), TG_KEEP_TMP=1 keeps the
temp directory (provider.log, jwks.json, clients.json).

Note: tests/oidc/ must never get an __init__.py, or `import oidc` would find the directory
instead of this module.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterator

from harness import KEEP_TMP, ROOT, LocalHttpServer, free_port, http_get, reply, wait_for

OIDC_DIR = os.path.join(ROOT, "tests", "oidc")
PROVIDER_JS = os.path.join(OIDC_DIR, "provider.js")
FORGE_JS = os.path.join(OIDC_DIR, "forge.js")
NODE = os.environ.get("NODE", "node")
AUDIENCE_URN = "urn:audience:"  # provider.js: resource urn:audience:<x> -> aud "<x>"
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class OidcError(Exception):
    """A non-2xx answer from the provider (token endpoint, admin API)."""

    def __init__(self, what: str, status: int, body: Any):
        super().__init__(f"{what}: HTTP {status}: {body}")
        self.status = status
        self.body = body


# --- JWT / JWK helpers (no crypto needed) --------------------------------------------------


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_jwt(token: str) -> tuple[dict, dict, bytes]:
    """(header, payload, signature bytes) of a compact JWS, without verifying anything."""
    parts = token.strip().split(".")
    if len(parts) not in (2, 3):
        raise ValueError(f"not a compact JWS: {len(parts)} segments")
    sig = b64url_decode(parts[2]) if len(parts) == 3 else b""
    return json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1])), sig


def public_jwk(jwk: dict) -> dict:
    return {k: v for k, v in jwk.items() if k not in PRIVATE_JWK_MEMBERS}


def public_jwks(source: str | dict) -> dict:
    """The public JWKS for a private JWK / JWKS given as a dict or a file path."""
    if isinstance(source, str):
        with open(source) as f:
            source = json.load(f)
    keys = source["keys"] if "keys" in source else [source]
    return {"keys": [public_jwk(k) for k in keys]}


def _require_node_modules() -> None:
    if shutil.which(NODE) is None:
        raise FileNotFoundError(f"`{NODE}` not found; Node 20 is needed for the test OpenID "
                                "provider (scripts/install-deps.sh installs it)")
    if not os.path.isdir(os.path.join(OIDC_DIR, "node_modules", "oidc-provider")):
        raise FileNotFoundError(f"{OIDC_DIR}/node_modules is missing; run scripts/install-deps.sh "
                                "(or `npm ci --prefix tests/oidc`)")


def run_node(script: str, *args: str, stdin: str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, script, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=OIDC_DIR)


# --- the provider --------------------------------------------------------------------------


class OidcProvider:
    """Runs tests/oidc/provider.js for a test (class). See the module docstring."""

    DEFAULT_CLIENTS: dict[str, dict] = {"agent": {"groups": ["trace-readers"]}}

    def __init__(self, clients: dict[str, dict] | None = None, ttl: int = 300,
                 default_audience: str = "tracegate", alg: str = "RS256",
                 ready_timeout: float = 30.0):
        self.clients = {cid: dict(spec) for cid, spec in
                        (clients if clients is not None else self.DEFAULT_CLIENTS).items()}
        for cid, spec in self.clients.items():
            spec.setdefault("secret", f"{cid}-secret")
        self.ttl = ttl
        self.default_audience = default_audience
        self.alg = alg
        self.ready_timeout = ready_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.admin_port = 0
        self.tmp = ""
        self.jwks_path = ""
        self.clients_path = ""
        self.log_path = ""
        self.discovery: dict = {}
        self.proc: subprocess.Popen | None = None
        self._seq = 0

    # lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "OidcProvider":
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def start(self) -> None:
        _require_node_modules()
        if not self.tmp:
            self.tmp = tempfile.mkdtemp(prefix="tg-oidc-")
            self.jwks_path = os.path.join(self.tmp, "jwks.json")
            self.clients_path = os.path.join(self.tmp, "clients.json")
            self.log_path = os.path.join(self.tmp, "provider.log")
            p = run_node(PROVIDER_JS, "--gen-key", self.jwks_path, "--alg", self.alg)
            if p.returncode != 0:
                raise RuntimeError(f"provider.js --gen-key failed: {p.stderr}")
            entries = []
            for cid, spec in self.clients.items():
                entry = {k: v for k, v in spec.items() if k != "secret"}
                entry.update(client_id=cid, client_secret=spec["secret"])
                entries.append(entry)
            with open(self.clients_path, "w") as f:
                json.dump({"clients": entries}, f, indent=2)
        self.port = free_port(self.host)
        self.admin_port = free_port(self.host)
        while self.admin_port == self.port:
            self.admin_port = free_port(self.host)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [NODE, PROVIDER_JS, "--host", self.host, "--port", str(self.port),
                 "--admin-port", str(self.admin_port), "--jwks", self.jwks_path,
                 "--clients", self.clients_path, "--ttl", str(self.ttl),
                 "--default-audience", self.default_audience],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=OIDC_DIR,
                start_new_session=True)
        finally:
            log.close()
        self.wait_ready()

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"provider.js exited with {code}; log:\n{self.log_tail()}")
            status, body = http_get(self.discovery_url, timeout=1)
            if status != 200:
                return False
            self.discovery = json.loads(body)
            return http_get(self.admin_url + "/state", timeout=1)[0] == 200

        try:
            wait_for(ready, self.ready_timeout, what="OpenID provider ready")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; log:\n{self.log_tail()}") from None

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)

    def cleanup(self) -> None:
        self.stop()
        if self.tmp and not KEEP_TMP:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = ""

    # addresses ---------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    @property
    def jwks_uri(self) -> str:
        return self.discovery.get("jwks_uri") or self.issuer + "/jwks"

    @property
    def token_endpoint(self) -> str:
        return self.discovery.get("token_endpoint") or self.issuer + "/token"

    @property
    def introspection_endpoint(self) -> str:
        return self.discovery.get("introspection_endpoint") or self.issuer + "/token/introspection"

    # tokens ------------------------------------------------------------------------------

    def secret_of(self, client_id: str) -> str:
        return self.clients.get(client_id, {}).get("secret", "")

    def _post_form(self, url: str, form: dict[str, str], client_id: str, secret: str | None,
                   auth: str = "basic", timeout: float = 10) -> tuple[int, dict]:
        secret = self.secret_of(client_id) if secret is None else secret
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        form = dict(form)
        if auth == "basic":  # RFC 6749 2.3.1: form-encode id and secret, then Basic
            pair = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif auth == "post":
            form.update(client_id=client_id, client_secret=secret)
        req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, {"raw": body.decode("utf-8", "replace")}

    def token_response(self, client_id: str, secret: str | None = None,
                       resource: str | None = "tracegate", scope: str | None = None,
                       auth: str = "basic") -> tuple[int, dict]:
        """POST grant_type=client_credentials; (status, JSON body) also for errors.
        resource: an audience name ("tracegate" -> urn:audience:tracegate -> aud "tracegate"),
        an absolute URI (sent as is; it becomes the aud), or None (the default audience)."""
        form = {"grant_type": "client_credentials"}
        if resource is not None:
            form["resource"] = resource if ":" in resource else AUDIENCE_URN + resource
        if scope is not None:
            form["scope"] = scope
        return self._post_form(self.token_endpoint, form, client_id, secret, auth)

    def token(self, client_id: str, secret: str | None = None, resource: str | None = "tracegate",
              scope: str | None = None) -> str:
        """An access token via a real client_credentials request (client_secret_basic)."""
        status, body = self.token_response(client_id, secret, resource, scope)
        if status != 200 or "access_token" not in body:
            raise OidcError(f"token for {client_id}", status, body)
        return body["access_token"]

    def introspect(self, token: str, client_id: str, secret: str | None = None) -> dict:
        """RFC 7662 introspection as client_id. oidc-provider only knows opaque tokens here:
        JWT access tokens are not stored and introspect as {"active": false}."""
        status, body = self._post_form(self.introspection_endpoint, {"token": token},
                                       client_id, secret)
        if status != 200:
            raise OidcError("introspection", status, body)
        return body

    def jwks(self) -> dict:
        status, body = http_get(self.jwks_uri)
        if status != 200:
            raise OidcError("GET jwks", status, body)
        return json.loads(body)

    def verify(self, token: str, jwks: dict | str | None = None) -> dict:
        """Signature check in node (forge.js --verify) against the live JWKS, or a given JWKS
        (dict or file). {"valid": bool, "header", "payload", "kid", "reason"}; claims are
        not checked."""
        if jwks is None:
            args = ["--verify", "--jwks-url", self.jwks_uri]
        else:
            if isinstance(jwks, dict):
                path = self._tmp_file("verify-jwks", jwks)
            else:
                path = jwks
            args = ["--verify", "--jwks", path]
        p = run_node(FORGE_JS, *args, stdin=token)
        if p.returncode not in (0, 1) or not p.stdout.strip():
            raise RuntimeError(f"forge.js --verify failed ({p.returncode}): {p.stderr}")
        return json.loads(p.stdout)

    # admin -------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request(self.admin_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise OidcError(f"admin {path}", e.code, e.read().decode("utf-8", "replace")) from None

    def state(self) -> dict:
        """{mode, issuer, signing_kid, kids, ttl, counts}"""
        return self._admin("GET", "/state")

    @property
    def signing_kid(self) -> str:
        return self.state()["signing_kid"]

    @property
    def kids(self) -> list[str]:
        return self.state()["kids"]

    def rotate_keys(self, alg: str = "RS256", kid: str | None = None) -> str:
        """Adds a new key (RS256/PS256/ES256/EdDSA...) and signs with it from now on; the old
        keys stay published. Returns the new kid."""
        body: dict[str, Any] = {"alg": alg}
        if kid:
            body["kid"] = kid
        return self._admin("POST", "/rotate", body)["kid"]

    def remove_key(self, kid: str) -> dict:
        """Drops kid from the JWKS (and from signing; the newest remaining key signs)."""
        return self._admin("POST", "/remove-key", {"kid": kid})

    def down(self, mode: str = "refuse") -> None:
        """"refuse": the issuer port refuses connections; "503": every endpoint answers 503;
        "hang": requests are accepted and never answered."""
        self._admin("POST", "/down", {"mode": mode})

    def up(self) -> None:
        self._admin("POST", "/up")
        wait_for(lambda: http_get(self.discovery_url, timeout=1)[0] == 200, 10,
                 what="OpenID provider back up")

    @contextlib.contextmanager
    def outage(self, mode: str = "refuse") -> Iterator["OidcProvider"]:
        self.down(mode)
        try:
            yield self
        finally:
            self.up()

    def set_ttl(self, seconds: int) -> None:
        """Default access token TTL from now on (per-client `ttl` still wins)."""
        self._admin("POST", "/ttl", {"ttl": seconds})

    def request_counts(self) -> dict[str, int]:
        """Requests per path received on the issuer port (also while down in 503/hang)."""
        return self.state()["counts"]

    def reset_counts(self) -> None:
        self._admin("POST", "/reset-counts")

    # forging -----------------------------------------------------------------------------

    def _tmp_file(self, stem: str, content: Any) -> str:
        self._seq += 1
        path = os.path.join(self.tmp, f"{stem}-{self._seq}.json")
        with open(path, "w") as f:
            json.dump(content, f)
        return path

    def gen_key(self, alg: str = "RS256", kid: str | None = None) -> str:
        """A fresh private JWK (e.g. the attacker's) in the temp dir; returns its path."""
        self._seq += 1
        path = os.path.join(self.tmp, f"key-{self._seq}.json")
        args = ["--gen-key", path, "--alg", alg] + (["--kid", kid] if kid else [])
        p = run_node(FORGE_JS, *args)
        if p.returncode != 0:
            raise RuntimeError(f"forge.js --gen-key failed: {p.stderr}")
        return path

    def forge(self, **options: Any) -> str:
        """A token from forge.js (options: see its header). Defaults: signed with the current
        real signing key, iss = this issuer, aud "tracegate", exp in 5 minutes."""
        spec = {"iss": self.issuer, **options}
        p = run_node(FORGE_JS, "--jwks", self.jwks_path, "--spec", "-", stdin=json.dumps(spec))
        if p.returncode != 0:
            raise RuntimeError(f"forge.js failed ({p.returncode}): {p.stderr}")
        return p.stdout.strip()


# --- a static JSON server (attacker-hosted JWKS for jku / x5u) -----------------------------


class StaticJsonServer:
    """Serves {path: JSON} on a free loopback port and counts requests per path, e.g. an
    attacker's JWKS for a jku header: the test asserts the gateway never fetched it."""

    def __init__(self, routes: dict[str, Any]):
        self.routes = dict(routes)
        self.counts: dict[str, int] = {}
        self._server: LocalHttpServer | None = None

    def __enter__(self) -> "StaticJsonServer":
        self._server = LocalHttpServer(self._get, methods=("GET",))
        return self

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        path = urllib.parse.urlsplit(handler.path).path
        self.counts[path] = self.counts.get(path, 0) + 1
        if path not in self.routes:
            handler.send_error(404)
            return
        reply(handler, 200, self.routes[path])

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return self._server.url
