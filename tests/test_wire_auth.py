"""Issue 18, items 6 and 7: how the gateway authenticates on both of its links.

Backend link: the gateway answers only the methods `backend.auth` lists (default SCRAM only),
refuses iteration counts above `backend.max_scram_iterations`, and binds SCRAM to the
backend's certificate (SCRAM-SHA-256-PLUS) when the link is TLS. Client link: modern TLS 1.2
suites only, and SCRAM-SHA-256-PLUS offered over TLS so `channel_binding=require` works.

Every check asks the real systems: PostgreSQL 15 (with md5 / password / scram pg_hba lines,
TLS on), psql/libpq as the client, `openssl s_client` for the cipher suites.

Run from this folder: python3 -m unittest -v test_wire_auth
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import unittest
from typing import Any

import harness
from harness import (ConnectionClosed, Gateway, PgProtocolError, PgServer, RawPgConn,
                     parse_error_fields, run_psql, scram_verifier, ssl_request,
                     startup_message, wait_for)

harness.install_sigterm_cleanup()

ALICE = "alice"
ALICE_PW = "alice-Secret-1"


class BackendAuthTest(unittest.TestCase):
    """A PostgreSQL with TLS and one role per authentication method (tg_md5: md5, tg_plain:
    cleartext `password`, tracegate: SCRAM, tg_ssl: SCRAM over TLS only, tg_slow: SCRAM with
    200,000 iterations)."""

    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer(traces=5, ssl=True)
        cls.pg.__enter__()
        try:
            cls.pg.add_auth_roles()
            # A stored verifier with many iterations: PostgreSQL 15 takes a pre-hashed SCRAM
            # secret as the password and uses its iteration count in the exchange.
            cls.slow_pw = "slow-" + secrets.token_hex(8)
            verifier = scram_verifier(cls.slow_pw, iterations=200_000)
            cls.pg.psql(f"CREATE ROLE tg_slow LOGIN PASSWORD '{verifier}';", dbname="postgres")
            cls.pg._grant_reader("tg_slow")
            cls.pg._passwords["tg_slow"] = cls.slow_pw
        except BaseException:
            cls.pg.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pg.__exit__(None, None, None)

    def gateway(self, user: str, tls: str = "disable", **backend: Any) -> Gateway:
        cfg = Gateway.config_for(self.pg, {ALICE: ALICE_PW}, backend_user=user,
                                 backend_tls=tls, log_level="info")
        cfg["connections"][0]["backend"].update(backend)
        return Gateway(cfg, env={Gateway.BACKEND_PASSWORD_ENV: self.pg.password_for(user)})

    def refused(self, gw: Gateway) -> dict[str, str]:
        with RawPgConn(gw.host, gw.port, timeout=30) as conn:
            try:
                conn.startup(ALICE, ALICE_PW)
            except PgProtocolError as e:
                return e.fields
            except ConnectionClosed:
                self.fail("connection closed without an ErrorResponse")
        self.fail("session started although the backend login must be refused")

    def assert_no_secret(self, gw: Gateway, user: str) -> None:
        password = self.pg.password_for(user)
        log = gw.stderr_text()
        self.assertNotIn(password, log)
        self.assertNotIn(hashlib.md5((password + user).encode()).hexdigest(), log)

    def test_refused_methods_end_the_login_with_28000_and_are_never_answered(self):
        cases = [
            # (backend.user, backend.auth, what the backend asks for)
            ("tg_md5", None, "md5"),                          # default: SCRAM only
            ("tg_plain", None, "password (cleartext)"),
            ("tg_md5", ["scram-sha-256", "password"], "md5"),
            ("tg_plain", ["scram-sha-256", "md5"], "password (cleartext)"),
            ("tracegate", ["md5"], "SCRAM-SHA-256"),
        ]
        for user, auth, method in cases:
            with self.subTest(user=user, auth=auth):
                extra = {} if auth is None else {"auth": auth}
                with self.gateway(user, **extra) as gw:
                    fields = self.refused(gw)
                    self.assertEqual(fields.get("C"), "28000", fields)
                    self.assertEqual(
                        fields.get("M"),
                        f'tracegate: the backend asked for {method}, which backend.auth does '
                        f'not allow (connection "traces-pg")')
                    wait_for(lambda: "which backend.auth does not allow; login refused"
                             in gw.stderr_text(), 10, what="the refusal log line")
                    self.assert_no_secret(gw, user)
                    # psql shows the same message (it prints no SQLSTATE during startup).
                    p = run_psql(gw.dsn(ALICE, ALICE_PW), "select 1", timeout=60)
                    self.assertNotEqual(p.returncode, 0)
                    self.assertIn(f"the backend asked for {method}", p.stderr)
        # PostgreSQL never received an answer: no failed password check for these roles.
        log = self.pg.log_tail(200_000)
        for user in ["tg_md5", "tg_plain"]:
            self.assertNotIn(f'password authentication failed for user "{user}"', log)

    def test_listed_methods_log_in(self):
        sql = "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()"
        cases = [
            ("tg_md5", "disable", ["md5"], "md5"),
            ("tg_md5", "require", ["scram-sha-256", "md5"], "md5"),
            ("tg_plain", "disable", ["password"], "password"),   # loopback host
            ("tg_plain", "require", ["password"], "password"),
        ]
        for user, tls, auth, method in cases:
            with self.subTest(user=user, tls=tls):
                with self.gateway(user, tls, auth=auth) as gw:
                    p = run_psql(gw.dsn(ALICE, ALICE_PW), sql, timeout=60)
                    self.assertEqual(p.returncode, 0, p.stderr + gw.stderr_text()[-2000:])
                    self.assertEqual(p.stdout,
                                     f"{user}|{'f' if tls == 'disable' else 't'}\n")
                    self.assertIn(f"authenticating with {method} (tls={str(tls != 'disable').lower()})",
                                  gw.stderr_text())
                    self.assert_no_secret(gw, user)

    def test_scram_is_channel_bound_over_tls(self):
        # PostgreSQL checks the binding against its own certificate: a wrong hash would fail
        # there ("SCRAM channel binding check failed"), so success is the differential check.
        sql = "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()"
        cases = [("tracegate", "disable", "SCRAM-SHA-256 (tls=false)", "f"),
                 ("tracegate", "require", "SCRAM-SHA-256-PLUS (tls=true)", "t"),
                 ("tg_ssl", "verify-full", "SCRAM-SHA-256-PLUS (tls=true)", "t")]
        for user, tls, logged, encrypted in cases:
            with self.subTest(tls=tls):
                with self.gateway(user, tls) as gw:
                    p = run_psql(gw.dsn(ALICE, ALICE_PW), sql, timeout=60)
                    self.assertEqual(p.returncode, 0, p.stderr + gw.stderr_text()[-2000:])
                    self.assertEqual(p.stdout, f"{user}|{encrypted}\n")
                    self.assertIn(f"authenticated with {logged}", gw.stderr_text())
        self.assertNotIn("channel binding check failed", self.pg.log_tail(200_000))

    def test_iteration_count_is_bounded(self):
        with self.gateway("tg_slow") as gw:
            fields = self.refused(gw)
            self.assertEqual(fields.get("C"), "28000", fields)
            self.assertEqual(fields.get("M"),
                             "tracegate: the backend asked for 200000 SCRAM iterations, more "
                             "than backend.max_scram_iterations (100000) "
                             '(connection "traces-pg")')
            self.assert_no_secret(gw, "tg_slow")
        with self.gateway("tg_slow", max_scram_iterations=200_000) as gw:
            p = run_psql(gw.dsn(ALICE, ALICE_PW), "select current_user", timeout=60)
            self.assertEqual((p.returncode, p.stdout), (0, "tg_slow\n"), p.stderr)

    def test_startup_warns_about_unverified_links_that_leave_the_host(self):
        cases = [({"host": "192.0.2.1", "tls": "disable"}, "is unencrypted and not local"),
                 ({"host": "192.0.2.1", "tls": "require"},
                  "is TLS without certificate verification and not local")]
        for backend, warning in cases:
            with self.subTest(**backend):
                with self.gateway("tracegate", **backend) as gw:
                    wait_for(lambda: "listening on" in gw.stderr_text(), 20, what="listening")
                    self.assertIn(f"the backend link to 192.0.2.1:{self.pg.port} {warning}",
                                  gw.stderr_text())
        with self.gateway("tg_ssl", "verify-full") as gw:  # loopback and verified
            wait_for(lambda: "listening on" in gw.stderr_text(), 20, what="listening")
            self.assertNotIn("the backend link to", gw.stderr_text())
        with self.gateway("tracegate") as gw:  # plain, but loopback
            wait_for(lambda: "listening on" in gw.stderr_text(), 20, what="listening")
            self.assertNotIn("the backend link to", gw.stderr_text())


def read_message(sock) -> tuple[bytes, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionClosed("closed")
            data += chunk
        return data
    header = exactly(5)
    length = struct.unpack("!I", header[1:])[0]
    return header[:1], exactly(length - 4)


class ClientTlsTest(unittest.TestCase):
    """The gateway's listener with a certificate (require_tls off, as on loopback by
    default)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tg-wire-auth-")
        cls.cert, cls.key = harness.make_self_signed_cert(cls.tmp)
        cls.pg = PgServer(traces=5)
        cls.pg.__enter__()
        try:
            cfg = Gateway.config_for(cls.pg, {ALICE: ALICE_PW},
                                     tls={"cert_file": cls.cert, "key_file": cls.key})
            cls.gw = Gateway(cfg, env={Gateway.BACKEND_PASSWORD_ENV:
                                       cls.pg.password_for("tracegate")})
            cls.gw.__enter__()
        except BaseException:
            cls.pg.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw.__exit__(None, None, None)
            cls.pg.__exit__(None, None, None)
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def s_client(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["openssl", "s_client", "-connect", f"{self.gw.host}:{self.gw.port}",
             "-starttls", "postgres", "-brief", *args],
            input=b"", capture_output=True, timeout=30)

    def test_libpq_channel_binding_require(self):
        for sslmode in ["require", "verify-full"]:
            with self.subTest(sslmode=sslmode):
                p = run_psql(self.gw.dsn(ALICE, ALICE_PW, sslmode=sslmode,
                                         channel_binding="require", sslrootcert=self.cert),
                             "select count(*) > 0 from traces", timeout=60)
                self.assertEqual((p.returncode, p.stdout), (0, "t\n"), p.stderr)
        # libpq itself refuses channel_binding=require without TLS: nothing to bind to.
        p = run_psql(self.gw.dsn(ALICE, ALICE_PW, sslmode="disable", channel_binding="require"),
                     "select 1", timeout=60)
        self.assertNotEqual(p.returncode, 0)
        # A wrong password over PLUS is still a wrong password.
        p = run_psql(self.gw.dsn(ALICE, "wrong", sslmode="require", channel_binding="require"),
                     "select 1", timeout=60)
        self.assertIn("password authentication failed", p.stderr)

    def tls_login(self, mechanism: str, client_first: bytes) -> tuple[list[str], dict]:
        """SSLRequest, TLS, startup; reads the offered mechanisms, answers with `mechanism`
        and `client_first`, returns (mechanisms, the error fields or the next message)."""
        with socket.create_connection((self.gw.host, self.gw.port), timeout=20) as raw:
            raw.sendall(ssl_request())
            self.assertEqual(raw.recv(1), b"S")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with ctx.wrap_socket(raw) as sock:
                sock.sendall(startup_message({"user": ALICE, "database": "traces"}))
                mtype, body = read_message(sock)
                self.assertEqual((mtype, body[:4]), (b"R", struct.pack("!I", 10)))
                mechanisms = [m.decode() for m in body[4:].split(b"\0") if m]
                payload = (mechanism.encode() + b"\0" + struct.pack("!i", len(client_first))
                           + client_first)
                sock.sendall(b"p" + struct.pack("!I", 4 + len(payload)) + payload)
                mtype, body = read_message(sock)
                if mtype == b"E":
                    return mechanisms, parse_error_fields(body)
                return mechanisms, {"type": mtype.decode()}

    def test_plus_is_offered_over_tls_and_a_stripped_offer_is_detected(self):
        # 'y': "I could bind, but you did not offer it": with PLUS offered, that means the
        # offer was removed on the way (RFC 5802 section 6).
        mechanisms, fields = self.tls_login("SCRAM-SHA-256", b"y,,n=,r=abcdefghijkl")
        self.assertEqual(mechanisms, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
        self.assertEqual(fields.get("C"), "08P01", fields)
        self.assertIn("downgrade", fields.get("M", ""))
        # PLUS chosen but bound to another certificate's hash: the proof step refuses it; the
        # server-first still comes (the binding is checked in client-final).
        mechanisms, reply = self.tls_login("SCRAM-SHA-256-PLUS",
                                           b"p=tls-server-end-point,,n=,r=abcdefghijkl")
        self.assertEqual(reply, {"type": "R"})
        # Without TLS, PLUS is not offered.
        with RawPgConn(self.gw.host, self.gw.port) as conn:
            conn.send(startup_message({"user": ALICE, "database": "traces"}))
            mtype, body = conn.recv_message()
            self.assertEqual(mtype, b"R")
            self.assertEqual([m for m in body[4:].split(b"\0") if m], [b"SCRAM-SHA-256"])

    def test_weak_tls12_suites_are_refused(self):
        for cipher in ["AES128-SHA", "AES256-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA",
                       "ECDHE-RSA-AES256-SHA384", "DES-CBC3-SHA"]:
            with self.subTest(cipher=cipher):
                p = self.s_client("-tls1_2", "-cipher", cipher)
                self.assertNotEqual(p.returncode, 0, p.stdout.decode(errors="replace"))
                self.assertNotIn(b"Cipher is", p.stdout + p.stderr)
        # Control: the same client with a modern suite, and TLS 1.3 as it comes.
        for args, expected in [(("-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"),
                                b"ECDHE-RSA-AES128-GCM-SHA256"),
                               (("-tls1_3",), b"TLS_AES_")]:
            with self.subTest(args=args):
                p = self.s_client(*args)
                self.assertEqual(p.returncode, 0, (p.stdout + p.stderr).decode(errors="replace"))
                self.assertIn(expected, p.stdout + p.stderr)
        # TLS 1.1 and older are off.
        p = self.s_client("-tls1_1")
        self.assertNotEqual(p.returncode, 0)


if __name__ == "__main__":
    unittest.main()
