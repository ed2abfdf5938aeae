"""Before authentication (issue 18, item 1): a client with no credential can make the gateway
hold only a little memory, and only so many such clients at once.

- Login messages are capped the way PostgreSQL caps them (startup packet 10000 bytes, SASL
  messages limits.max_auth_message_length, 1024 by default like PG_MAX_SASL_MESSAGE_LENGTH):
  a 'p' header announcing 64 MiB is refused (08P01) at its header, before anything is buffered.
- Memory follows the bytes that arrived, never a length a header announced.
- At most limits.max_unauthenticated clients may be authenticating at once; one more is
  refused with 53300 before anything is read from it.

The memory test opens 1,000 half-open logins (startup packet, then a partial password
message) and reads the gateway's VmRSS from /proc: a bound derived from the caps, not a
timing. A real psql login is refused with 53300 while the cap is full, and works once the
half-open logins are gone.

Run from this folder: python3 -m unittest -v test_preauth
(CTest sets TRACEGATE_BIN and TRACEGATE_ROOT; see harness.py.)
"""

from __future__ import annotations

import select
import socket
import struct
import time
import unittest

import harness
from harness import (Gateway, PgServer, RawPgConn, http_get, run_psql, split_messages,
                     startup_message, wait_for)

harness.install_sigterm_cleanup()

PASSWORD = "preauth-secret-1"
MAX_UNAUTHENTICATED = 100
HALF_OPEN = 1000


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc status")


def password_header(length: int) -> bytes:
    """The 5-byte header of a password ('p') message whose length field is `length`."""
    return b"p" + struct.pack("!I", length)


def metric(gw: Gateway, name: str) -> float:
    status, text = http_get(gw.admin_url + "/metrics")
    assert status == 200, text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class PreauthLimitsTest(harness.ClassFixtures, unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.start_fixtures("tg-preauth-")
        cls.pg = cls.enter(PgServer(traces=5))
        cfg = Gateway.config_for(cls.pg, users={"alice": PASSWORD})
        cfg["limits"] = {"max_startup_length": 10000, "max_message_length": "64MiB",
                         "max_unauthenticated": MAX_UNAUTHENTICATED}
        cls.gw = cls.enter(Gateway(cfg, env={Gateway.BACKEND_PASSWORD_ENV:
                                             cls.pg.password_for("tracegate")}))

    def psql_login_works(self) -> bool:
        p = run_psql(self.gw.dsn("alice", PASSWORD), "select 40 + 2")
        return p.returncode == 0 and p.stdout.strip() == "42"

    def login_until_sasl(self) -> RawPgConn:
        conn = RawPgConn(self.gw.host, self.gw.port)
        conn.send(startup_message({"user": "alice", "database": "traces"}))
        mtype, body = conn.recv_message()
        self.assertEqual(mtype, b"R", body)
        self.assertEqual(struct.unpack("!I", body[:4])[0], 10)  # AuthenticationSASL
        return conn

    def test_a_login_message_announcing_64_mib_is_refused_at_its_header(self):
        before = vm_rss_kib(self.gw.proc.pid)
        conns = []
        try:
            for _ in range(8):  # the reproduction: 8 connections took +512 MiB
                conn = self.login_until_sasl()
                conn.send(password_header((64 << 20) + 4))
                conns.append(conn)
            for conn in conns:
                fields = conn.read_until_error_or_close()
                self.assertIsNotNone(fields)
                self.assertEqual(fields["C"], "08P01", fields)
                self.assertIn("exceeds the limit of 1024", fields["M"])
        finally:
            for conn in conns:
                conn.close()
        # Nothing close to 64 MiB was committed for any of them.
        self.assertLess(vm_rss_kib(self.gw.proc.pid) - before, 16 * 1024)
        self.assertTrue(self.psql_login_works())

    def test_only_password_messages_are_read_during_login(self):
        conn = self.login_until_sasl()
        with conn:
            conn.send(b"Q" + struct.pack("!I", (64 << 20) + 4))  # a Query before the proof
            fields = conn.read_until_error_or_close()
        self.assertIsNotNone(fields)
        self.assertEqual(fields["C"], "08P01", fields)
        self.assertIn("expected a SASL response", fields["M"])

    def test_a_startup_packet_over_10000_bytes_is_refused(self):
        with RawPgConn(self.gw.host, self.gw.port) as conn:
            conn.send(struct.pack("!I", 10001))
            fields = conn.read_until_error_or_close()
        self.assertIsNotNone(fields)
        self.assertEqual(fields["C"], "08P01", fields)

    def half_open_login(self, s: socket.socket) -> str:
        """Startup, then a password message that announces 1000 bytes (within the limit) and
        delivers 600 of them: the login stays open, waiting for the rest. Returns "held",
        "refused" (53300, read), or "reset" (refused while the startup packet was unread)."""
        # A refusal comes at once, before anything is read: look for it first, so that the
        # startup packet does not land on a socket the gateway is closing.
        if select.select([s], [], [], 0.05)[0]:
            return self.refusal(s, b"")
        s.sendall(startup_message({"user": "alice", "database": "traces"}))
        data = b""
        try:
            while len(data) < 5 or len(data) < 1 + struct.unpack("!I", data[1:5])[0]:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            return "reset"
        if data.startswith(b"E"):
            return self.refusal(s, data)
        self.assertTrue(data.startswith(b"R"), data[:50])
        s.sendall(password_header(1004) + b"x" * 600)
        return "held"

    def refusal(self, s: socket.socket, data: bytes) -> str:
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            if not data:
                return "reset"
        fields = harness.parse_error_fields(split_messages(data)[0][1])
        self.assertEqual(fields["C"], "53300", fields)
        self.assertIn("limits.max_unauthenticated", fields["M"])
        return "refused"

    def test_1000_half_open_logins_hold_bounded_memory_and_refuse_past_the_cap(self):
        self.assertTrue(self.psql_login_works())  # warm: pool, TLS-free path, allocator
        baseline = vm_rss_kib(self.gw.proc.pid)
        refused_before = metric(self.gw, "tracegate_sessions_refused_unauthenticated_total")
        socks: list[socket.socket] = []
        outcomes = {"held": 0, "refused": 0, "reset": 0}
        started = time.monotonic()
        try:
            for _ in range(HALF_OPEN):
                s = socket.create_connection((self.gw.host, self.gw.port), timeout=10)
                socks.append(s)
                outcome = self.half_open_login(s)
                outcomes[outcome] += 1
            self.assertGreaterEqual(outcomes["refused"], HALF_OPEN // 2, outcomes)
            if time.monotonic() - started < 25:
                # No held login can have reached the 30 s login timeout yet, so none left.
                self.assertLessEqual(outcomes["held"], MAX_UNAUTHENTICATED, outcomes)
            self.assertGreater(
                metric(self.gw, "tracegate_sessions_refused_unauthenticated_total"),
                refused_before)

            # The memory bound from the caps: each held login may have up to a startup
            # packet and a SASL message buffered (at most twice each, as buffers double),
            # plus its session, socket and coroutine state; 96 KiB each is generous. Before
            # the fix one connection could commit 64 MiB.
            grown = vm_rss_kib(self.gw.proc.pid) - baseline
            bound = MAX_UNAUTHENTICATED * 96 + 24 * 1024
            self.assertLess(grown, bound,
                            f"RSS grew {grown} KiB with {outcomes['held']} logins held")

            # Meanwhile a real login is refused with the precise SQLSTATE (psql prints none
            # for start-up errors, so the raw client reads it), if the cap is still full.
            with RawPgConn(self.gw.host, self.gw.port) as probe:
                probe.send(startup_message({"user": "alice", "database": "traces"}))
                mtype, body = probe.recv_message()
                if mtype == b"E":
                    self.assertEqual(harness.parse_error_fields(body)["C"], "53300")
                else:
                    self.assertEqual(mtype, b"R")  # a held login timed out meanwhile
        finally:
            for s in socks:
                s.close()
        # Once they are gone, logins work again (sessions count out as their clients leave).
        wait_for(self.psql_login_works, 30, what="a psql login after the half-open ones left")


if __name__ == "__main__":
    unittest.main()
