"""End-to-end tests of the PostgreSQL pass-through: real PostgreSQL 15, the real gateway
binary, psql / libpq / pgbench / raw sockets.

Run from this folder: python3 -m unittest -v test_pgproxy
(CTest sets TRACEGATE_BIN, LIBPQ_CLIENT and TRACEGATE_ROOT; see harness.py.)

Every class starts its own PostgreSQL and gateway, so a test that stops the backend or
breaks a connection cannot disturb another class.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import unittest
from typing import Any

import harness
from harness import (ConnectionClosed, Gateway, PgProtocolError, PgServer, RawPgConn,
                     gssenc_request, http_get, message, parse_data_row, run_libpq_client,
                     run_psql, sqlstate_of, ssl_request, startup_message, wait_for)

harness.install_sigterm_cleanup()

ALICE = "alice"
ALICE_PW = "alice-Secret-1"
SHARED = harness.SHARED_DATA if os.path.isdir(harness.SHARED_DATA) else None


def ssl_client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def metric_sum(text: str, name: str) -> float | None:
    """Sum of all samples of `name` (any labels) in Prometheus text; None if absent."""
    total, seen = 0.0, False
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})?\s+(\S+)", text, re.M):
        total += float(m.group(1))
        seen = True
    return total if seen else None


class GatewayCase(unittest.TestCase):
    """One PgServer + one Gateway for the whole class."""

    pg_options: dict = {"traces": 60, "shared_data": SHARED}
    gateway_options: dict = {}

    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer(**cls.pg_options)
        cls.pg.__enter__()
        try:
            cls.extra_setup()
            cfg = Gateway.config_for(cls.pg, {ALICE: ALICE_PW, "bob": "bob-pw"},
                                     **cls.gateway_config_options())
            cls.gw = Gateway(cfg, env={Gateway.BACKEND_PASSWORD_ENV:
                                       cls.pg.password_for("tracegate")})
            cls.gw.__enter__()
        except BaseException:
            cls.pg.__exit__(None, None, None)
            raise

    @classmethod
    def extra_setup(cls):
        pass

    @classmethod
    def gateway_config_options(cls) -> dict:
        return dict(cls.gateway_options)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw.stop()  # asserts a clean exit on SIGTERM
        finally:
            cls.gw.cleanup()
            cls.pg.__exit__(None, None, None)

    # -- helpers --

    def gw_dsn(self, **kw) -> str:
        return self.gw.dsn(ALICE, ALICE_PW, **kw)

    def gw_psql(self, sql: str, **kw) -> subprocess.CompletedProcess:
        return run_psql(self.gw_dsn(), sql, **kw)

    def direct_psql(self, sql: str, **kw) -> subprocess.CompletedProcess:
        return run_psql(self.pg.dsn("tracegate"), sql, **kw)

    def assert_gateway_serves(self, context: str = "") -> None:
        """Proves the gateway is alive and still serves a normal client."""
        self.assertTrue(self.gw.alive(), f"gateway died {context}; stderr:\n"
                                         f"{self.gw.stderr_text()[-3000:]}")
        p = self.gw_psql("select count(*) from traces")
        direct = self.direct_psql("select count(*) from traces")
        self.assertEqual(p.returncode, 0, f"psql through gateway failed {context}: {p.stderr}")
        self.assertEqual(p.stdout, direct.stdout, f"count differs {context}")

    def raw(self, timeout: float = 10.0) -> RawPgConn:
        return RawPgConn(self.gw.host, self.gw.port, timeout=timeout)

    def raw_session(self, user: str = ALICE, password: str = ALICE_PW) -> RawPgConn:
        conn = self.raw()
        try:
            conn.startup(user, password)
        except BaseException:
            conn.close()
            raise
        return conn

    def assert_refused(self, conn: RawPgConn, allowed: set[str], context: str,
                       require_error: bool = False) -> None:
        """The gateway ends the connection (within 10 s) without authenticating it; an
        ErrorResponse, if sent, carries one of the `allowed` SQLSTATEs."""
        try:
            data = conn.expect_closed(10)
        except TimeoutError as e:
            self.fail(f"{context}: gateway kept the connection open: {e}")
        msgs = harness.split_messages(data[1:] if data[:1] in (b"S", b"N") else data)
        types = [t for t, _ in msgs]
        self.assertNotIn(b"Z", types, f"{context}: got ReadyForQuery: {data[:200]!r}")
        for mtype, body in msgs:
            if mtype == b"R":
                self.fail(f"{context}: gateway started authentication: {data[:200]!r}")
        errors = [harness.parse_error_fields(b) for t, b in msgs if t == b"E"]
        if require_error:
            self.assertTrue(errors, f"{context}: closed without an ErrorResponse: {data[:200]!r}")
        for e in errors:
            self.assertIn(e.get("C"), allowed, f"{context}: unexpected error {e}")


class PassThroughTest(GatewayCase):
    """Results through the gateway equal a direct connection's."""

    @classmethod
    def extra_setup(cls):
        ids = cls.pg.psql("select id from traces order by id").split()
        cls.trace_ids = ids
        cls.small_id = cls.pg.psql("select id from traces where id ~ '^[0-9a-f-]{36}$' "
                                   "order by id limit 1").strip()

    def compare(self, sql: str, args=("-qAt",), stdin_script: bool = False) -> None:
        gw = self.gw_psql(sql, args=args, stdin_script=stdin_script)
        direct = self.direct_psql(sql, args=args, stdin_script=stdin_script)
        self.assertEqual(direct.returncode, 0, f"direct psql failed: {direct.stderr}")
        self.assertEqual(gw.returncode, 0, f"gateway psql failed: {gw.stderr}")
        self.assertEqual(len(gw.stdout), len(direct.stdout), "output length differs")
        self.assertEqual(gw.stdout, direct.stdout, "output differs")
        self.assertEqual(gw.stderr, direct.stderr, "notices/warnings differ")

    def test_psql_queries_match_direct(self):
        tid = self.small_id
        queries = {
            "count": "select count(*) from traces",
            "trace_by_id_8kb": f"select * from traces where id = '{tid}'",
            "all_traces": "select * from traces order by id",
            "largest_row": "select id, input, output, metadata from traces t "
                           "order by pg_column_size(t.*) desc, id limit 1",
            "jsonb_ops": "select id, metadata->'sdk'->>'name', input->'messages'->0->>'role', "
                         "output #> '{content,0,type}', jsonb_typeof(output->'content'), "
                         "metadata ? 'customer' from traces order by id limit 20",
            "jsonb_containment": "select count(*) from traces where input @> "
                                 "'{\"messages\": [{\"role\": \"system\"}]}'",
            "jsonb_path": "select id, jsonb_path_query_array(output, "
                          "'$.content[*] ? (@.type == \"reasoning\").summary[*].text') "
                          "from traces order by id limit 5",
            "reasoning_blocks": "select id, b->>'type', length(b->>'signature'), "
                                "length(b->>'encrypted_content') from traces, "
                                "jsonb_array_elements(output->'content') b "
                                "where b->>'type' in ('thinking', 'reasoning') "
                                "order by 1, 2 limit 30",
            "tool_args_json_in_string": "select (b->>'arguments')::jsonb->'filters' from traces, "
                                        "jsonb_array_elements(output->'content') b where "
                                        "b->>'type' = 'function_call' order by id limit 10",
            "arrays": "select id, tags, array_length(tags, 1) from traces where tags <> '{}' "
                      "order by id limit 20",
            "join_aggregate": "select t.id, count(o.*), max(o.end_time - o.start_time), "
                              "string_agg(distinct o.type, ',' order by o.type) from traces t "
                              "join observations o on o.trace_id = t.id group by t.id "
                              "order by t.id limit 25",
            "scores": "select name, count(*), round(avg(value)::numeric, 4) from scores "
                      "group by name order by name",
            "null_and_types": "select null::int, 1.5::float8, 'x'::bytea, now() > '2000-01-01', "
                              "interval '1 day', '\u00e9\u00e8\u4e2d'::text",
            "multi_statement": "select 1; select count(*) from scores; select 'three'",
            "transaction": "begin; select count(*) from observations; commit",
            "empty_result": "select * from traces where false",
            "notice": "do $$ begin raise notice 'hello from %', 'plpgsql'; end $$",
            "describe_table": "\\d traces",
            "list_tables": "\\dt",
        }
        for name, sql in queries.items():
            with self.subTest(query=name):
                self.compare(sql)

    def test_psql_aligned_output_and_script(self):
        script = (f"\\set tid '{self.small_id}'\n"
                  "select id, name, risk from traces where id = :'tid';\n"
                  "\\x on\n"
                  "select * from observations where trace_id = :'tid' order by start_time, id;\n"
                  "\\x off\n"
                  "\\d+ observations\n"
                  "select 1 as a\\gset\n"
                  "select :a + 1;\n")
        self.compare(script, args=(), stdin_script=True)

    def test_errors_match_direct(self):
        for name, sql, state in [("division_by_zero", "select 1/0", "22012"),
                                 ("syntax", "selec 1", "42601"),
                                 ("undefined_table", "select * from nope", "42P01"),
                                 ("undefined_column", "select nope from traces", "42703")]:
            with self.subTest(error=name):
                gw = self.gw_psql(sql)
                direct = self.direct_psql(sql)
                self.assertEqual(sqlstate_of(direct.stderr), state, direct.stderr)
                self.assertEqual(sqlstate_of(gw.stderr), state,
                                 f"gateway error differs: {gw.stderr}")
                self.assertEqual(gw.stderr.splitlines()[0], direct.stderr.splitlines()[0])
                self.assertEqual(gw.returncode, direct.returncode)
        self.assert_gateway_serves("after SQL errors")

    def test_libpq_client_matches_direct(self):
        for command in ["extended", "prepared", "binary", "pipeline", "copy-out"]:
            with self.subTest(command=command):
                direct = run_libpq_client(self.pg.dsn("tracegate"), command)
                self.assertEqual(direct.returncode, 0, f"direct run failed: {direct.stderr}")
                gw = run_libpq_client(self.gw_dsn(), command)
                self.assertEqual(gw.returncode, 0, f"through gateway failed: {gw.stderr}")
                self.assertEqual(gw.stdout, direct.stdout, f"{command} output differs")

    def test_libpq_client_twice_reuses_clean_backends(self):
        # `prepared` leaves named statements behind; a pooled backend handed to the next
        # client must not carry them (a direct new connection never does).
        for round_ in range(3):
            with self.subTest(round=round_):
                p = run_libpq_client(self.gw_dsn(), "prepared")
                self.assertEqual(p.returncode, 0, p.stderr)

    def test_session_state_does_not_leak_between_clients(self):
        baseline = self.direct_psql("show work_mem; show search_path; "
                                    "select count(*) from pg_prepared_statements")
        self.assertEqual(baseline.returncode, 0, baseline.stderr)
        for round_ in range(4):
            with self.subTest(round=round_):
                dirty = self.gw_psql("set work_mem = '7MB'; set search_path = pg_catalog; "
                                     "prepare leak as select 1; "
                                     "select set_config('application_name', 'dirty', false)")
                self.assertEqual(dirty.returncode, 0, dirty.stderr)
                clean = self.gw_psql("show work_mem; show search_path; "
                                     "select count(*) from pg_prepared_statements")
                self.assertEqual(clean.returncode, 0, clean.stderr)
                self.assertEqual(clean.stdout, baseline.stdout,
                                 "session settings leaked through the backend pool")

    def test_cancel_through_gateway(self):
        p = run_libpq_client(self.gw_dsn(), "cancel", timeout=60)
        self.assertEqual(p.returncode, 0, f"cancel through gateway failed: {p.stderr}")
        self.assertIn("cancel: 57014", p.stdout)
        self.assertIn("usable after cancel", p.stdout)

    def test_pgbench_custom_script(self):
        n = len(self.trace_ids)
        with tempfile.TemporaryDirectory() as d:
            script = os.path.join(d, "fetch.sql")
            with open(script, "w") as f:
                f.write(f"\\set k random(0, {n - 1})\n"
                        "select id, input, output from traces order by id offset :k limit 1;\n")
            for mode in ["simple", "extended", "prepared"]:
                with self.subTest(mode=mode):
                    cmd = ["pgbench", "-n", "-t", "50", "-c", "4", "-M", mode, "-f", script,
                           "-h", self.gw.host, "-p", str(self.gw.port), "-U", ALICE, "traces"]
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                                       env=dict(os.environ, PGPASSWORD=ALICE_PW))
                    self.assertEqual(p.returncode, 0, f"pgbench failed:\n{p.stdout}\n{p.stderr}")
                    self.assertIn("number of transactions actually processed: 200/200",
                                  p.stdout)
                    self.assertIn("number of failed transactions: 0", p.stdout)

    def test_read_only_backend(self):
        # Direct, `tracegate` may INSERT into write_probe: the refusal below comes from the
        # gateway's read-only backend session, not from a missing privilege.
        direct = self.direct_psql("insert into write_probe values (1, 'direct')")
        self.assertEqual(direct.returncode, 0, direct.stderr)
        for name, sql in [("insert", "insert into write_probe values (2, 'gateway')"),
                          ("update", "update write_probe set note = 'x'"),
                          ("delete", "delete from write_probe"),
                          ("ddl", "create table evil (id int)")]:
            with self.subTest(statement=name):
                p = self.gw_psql(sql)
                self.assertNotEqual(p.returncode, 0, f"{name} through gateway succeeded")
                self.assertEqual(sqlstate_of(p.stderr), "25006", p.stderr)
        self.assertEqual(self.pg.psql("select count(*) from write_probe").strip(), "1")

    def test_backend_pool_reuses_connections(self):
        # Sequential sessions must be served by already-open backends, not a new
        # PostgreSQL connection each (each worker opens at most one here).
        url = self.gw.admin_url
        _, body = http_get(url + "/metrics")
        connects_before = metric_sum(body, "tracegate_backend_connects_total") or 0
        reuses_before = metric_sum(body, "tracegate_pool_reuses_total") or 0
        sessions = 8
        for i in range(sessions):
            p = self.gw_psql(f"select {i}")
            self.assertEqual(p.returncode, 0, p.stderr)
        _, body = http_get(url + "/metrics")
        reuses = (metric_sum(body, "tracegate_pool_reuses_total") or 0) - reuses_before
        connects = (metric_sum(body, "tracegate_backend_connects_total") or 0) - connects_before
        self.assertEqual(reuses + connects, sessions, body)
        self.assertGreaterEqual(reuses, sessions // 2,
                                f"only {reuses} of {sessions} sessions reused a pooled backend")

    def test_admin_endpoints(self):
        url = self.gw.admin_url
        self.assertIsNotNone(url)
        for path in ["/healthz", "/readyz"]:
            with self.subTest(path=path):
                status, _ = http_get(url + path)
                self.assertEqual(status, 200)
        status, body = http_get(url + "/metrics")
        self.assertEqual(status, 200)
        before = metric_sum(body, "tracegate_sessions_total")
        self.assertIsNotNone(before, f"tracegate_sessions_total missing:\n{body[:2000]}")
        self.assert_gateway_serves("for metrics")
        wait_for(lambda: metric_sum(http_get(url + "/metrics")[1],
                                    "tracegate_sessions_total") > before,
                 10, what="tracegate_sessions_total to count the session")
        status, _ = http_get(url + "/no-such-endpoint")
        self.assertEqual(status, 404)


class AuthTest(GatewayCase):
    """Client authentication: SCRAM against the configured users, no user enumeration."""

    pg_options = {"traces": 10}

    def auth_transcript(self, user: str, password: str) -> tuple[list[bytes], dict]:
        """Message types seen during a startup, and the final error's fields."""
        conn = self.raw()
        types: list[bytes] = []
        try:
            conn.send(startup_message({"user": user, "database": "traces"}))
            scram = harness.ScramClient(password)
            while True:
                mtype, body = conn.recv_message()
                code = struct.unpack("!I", body[:4])[0] if mtype == b"R" else None
                types.append(mtype + (b"%d" % code if code is not None else b""))
                if mtype == b"E":
                    return types, harness.parse_error_fields(body)
                if mtype == b"Z":
                    return types, {}
                if code == 10:
                    first = scram.client_first()
                    conn.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first))
                                      + first))
                elif code == 11:
                    conn.send(message(b"p", scram.client_final(body[4:])))
                elif code == 12:
                    scram.verify_server_final(body[4:])
        finally:
            conn.close()

    def test_good_password(self):
        with self.raw_session() as conn:
            self.assertEqual(conn.simple_query("select current_database()"), [("traces",)])
        for user, pw in [(ALICE, ALICE_PW), ("bob", "bob-pw")]:
            with self.subTest(user=user):
                p = run_psql(self.gw.dsn(user, pw), "select 1")
                self.assertEqual((p.returncode, p.stdout), (0, "1\n"), p.stderr)

    def test_wrong_password_is_28P01(self):
        types, err = self.auth_transcript(ALICE, "wrong")
        self.assertEqual(err.get("C"), "28P01", f"transcript {types} error {err}")
        self.assertEqual(err.get("S"), "FATAL")
        p = run_psql(self.gw.dsn(ALICE, "wrong"), "select 1")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("authentication failed", p.stderr)

    def test_unknown_user_is_28P01_and_indistinguishable(self):
        wrong_types, wrong_err = self.auth_transcript(ALICE, "wrong")
        unknown_types, unknown_err = self.auth_transcript("mallory", "whatever")
        self.assertEqual(unknown_err.get("C"), "28P01", f"{unknown_types} {unknown_err}")
        # Same exchange (a full SCRAM round with a made-up salt) and the same message,
        # modulo the user name the client sent.
        self.assertEqual(unknown_types, wrong_types)
        self.assertEqual(unknown_err.get("M", "").replace("mallory", "<u>"),
                         wrong_err.get("M", "").replace(ALICE, "<u>"))
        self.assert_gateway_serves("after unknown user")

    def test_user_from_another_config_entry_cannot_use_other_password(self):
        types, err = self.auth_transcript("bob", ALICE_PW)
        self.assertEqual(err.get("C"), "28P01", f"{types} {err}")

    def test_empty_or_missing_user_is_28000(self):
        for name, params in [("empty_user", {"user": "", "database": "traces"}),
                             ("no_user_key", {"database": "traces"})]:
            with self.subTest(case=name), self.raw() as conn:
                conn.send(startup_message(params))
                err = conn.read_until_error_or_close()
                self.assertIsNotNone(err, "closed without ErrorResponse")
                self.assertEqual(err.get("C"), "28000", err)
        self.assert_gateway_serves("after empty user")

    def test_empty_database_refused(self):
        with self.raw() as conn:
            conn.send(startup_message({"user": ALICE, "database": ""}))
            self.assert_refused(conn, {"28000", "08P01", "3D000"}, "empty database",
                                require_error=True)
        self.assert_gateway_serves("after empty database")


class ProtocolAbuseTest(GatewayCase):
    """Malformed and hostile input: the session ends cleanly and the gateway keeps serving."""

    pg_options = {"traces": 10}

    def test_startup_phase_garbage(self):
        cases = {
            "truncated_then_close": struct.pack("!I", 100) + struct.pack("!I", 196608) + b"user",
            "length_2_pow_31": struct.pack("!II", 2 ** 31, 196608),
            "length_max_uint32": struct.pack("!II", 0xFFFFFFFF, 196608),
            "length_below_minimum": struct.pack("!II", 4, 196608),
            "length_over_max_startup": struct.pack("!II", 10001, 196608) + b"a" * 10001,
            "http_request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "protocol_2": startup_message({"user": ALICE, "database": "traces"}, 0x00020000),
            "protocol_4": startup_message({"user": ALICE, "database": "traces"}, 0x00040000),
            "no_terminator": struct.pack("!II", 18, 196608) + b"user\0alice",
            "odd_key_without_value": struct.pack("!II", 14, 196608) + b"user\0\0",
            "bogus_cancel": struct.pack("!IIII", 16, 80877102, 1234, 5678),
        }
        for name, data in cases.items():
            with self.subTest(case=name):
                with self.raw() as conn:
                    conn.send(data)
                    if name == "truncated_then_close":
                        conn.sock.shutdown(socket.SHUT_WR)
                    self.assert_refused(conn, {"08P01", "0A000", "28000"}, name)
                self.assert_gateway_serves(f"after {name}")

    def test_second_ssl_request_after_N(self):
        with self.raw() as conn:
            conn.send(ssl_request())
            self.assertEqual(conn.recv_byte(), b"N", "no TLS configured: expected 'N'")
            conn.send(ssl_request())
            self.assert_refused(conn, {"08P01", "0A000"}, "second SSLRequest after N")
        self.assert_gateway_serves("after second SSLRequest")

    def test_gssenc_request_answered_N_then_normal_startup(self):
        with self.raw() as conn:
            conn.send(gssenc_request())
            self.assertEqual(conn.recv_byte(), b"N")
            conn.startup(ALICE, ALICE_PW)
            self.assertEqual(conn.simple_query("select 41 + 1"), [("42",)])
        p = run_psql(self.gw_dsn(gssencmode="prefer"), "select 1")
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_after_auth_violations_get_08P01(self):
        cases = {
            "unknown_type": message(b"!", b"xyz"),
            "length_below_4": b"Q" + struct.pack("!I", 2),
            "length_over_max": b"Q" + struct.pack("!I", 2 ** 30 + 5),
            "startup_again": startup_message({"user": ALICE, "database": "traces"}),
            "ssl_request_mid_session": ssl_request(),
        }
        for name, data in cases.items():
            with self.subTest(case=name):
                with self.raw_session() as conn:
                    conn.send(data)
                    try:
                        fields = conn.read_until_error_or_close(10)
                    except TimeoutError as e:
                        self.fail(f"{name}: connection left open: {e}")
                    self.assertIsNotNone(fields, f"{name}: closed without ErrorResponse")
                    self.assertEqual(fields.get("C"), "08P01", f"{name}: {fields}")
                self.assert_gateway_serves(f"after {name}")

    def test_client_vanishes_mid_query(self):
        with self.raw_session() as conn:
            conn.send(message(b"Q", b"select pg_sleep(2)\0"))
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.assert_gateway_serves("after client reset mid-query")

    def test_many_parallel_bad_connections(self):
        conns = []
        try:
            for _ in range(50):
                c = self.raw()
                c.send(struct.pack("!I", 50) + b"\0\3")
                conns.append(c)
        finally:
            for c in conns:
                c.close()
        self.assert_gateway_serves("after 50 half-open connections")


class TlsCases:
    """TLS towards clients; mixed into the two classes below (not a TestCase itself)."""

    pg_options = {"traces": 10}
    require_tls = False

    @classmethod
    def extra_setup(cls):
        cls.cert_dir = tempfile.mkdtemp(prefix="tg-cert-")
        cls.cert, cls.key = harness.make_self_signed_cert(cls.cert_dir)

    @classmethod
    def gateway_config_options(cls):
        return {"tls": {"cert_file": cls.cert, "key_file": cls.key},
                "require_tls": cls.require_tls}

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.cert_dir, ignore_errors=True)

    def gw_psql(self, sql, **kw):
        return run_psql(self.gw_dsn(sslmode="require"), sql, **kw)

    def test_psql_sslmode_require_and_verify_full(self):
        for mode, extra in [("require", {}), ("verify-full", {"sslrootcert": self.cert})]:
            with self.subTest(sslmode=mode):
                p = run_psql(self.gw_dsn(sslmode=mode, **extra), "\\conninfo", args=("-q",))
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn("SSL connection", p.stdout)
                q = run_psql(self.gw_dsn(sslmode=mode, **extra), "select count(*) from traces")
                self.assertEqual(q.returncode, 0, q.stderr)
                self.assertEqual(q.stdout, self.direct_psql("select count(*) from traces").stdout)

    def test_raw_tls_session(self):
        with self.raw() as conn:
            conn.start_tls()
            conn.startup(ALICE, ALICE_PW)
            self.assertEqual(conn.simple_query("select 'over tls'"), [("over tls",)])

    def test_bytes_behind_ssl_request_refused(self):
        # A startup packet in the same segment as the SSLRequest was never encrypted: a
        # man in the middle could have injected it. It must not be processed.
        # Refusing at once (PgBouncer) or after the handshake (PostgreSQL) are both fine;
        # answering the injected startup is not.
        with self.raw() as conn:
            conn.send(ssl_request() + startup_message({"user": ALICE, "database": "traces"}))
            try:
                first = conn.sock.recv(1)
            except ConnectionResetError:
                first = b""
            if first == b"S":
                try:
                    conn.buf = b""
                    conn.sock = ssl_client_context().wrap_socket(conn.sock)
                except (OSError, ssl.SSLError):
                    pass  # handshake refused: the injected bytes were not processed
                else:
                    self.assert_refused(conn, {"08P01"}, "bytes after SSLRequest (in TLS)")
            elif first:
                conn.buf = first
                self.assert_refused(conn, {"08P01"}, "bytes after SSLRequest")
        self.assert_gateway_serves("after SSLRequest injection")

    def test_second_ssl_request_inside_tls(self):
        with self.raw() as conn:
            conn.start_tls()
            conn.send(ssl_request())
            self.assert_refused(conn, {"08P01", "0A000"}, "SSLRequest inside TLS")
        self.assert_gateway_serves("after SSLRequest inside TLS")


class TlsOptionalTest(TlsCases, GatewayCase):
    """TLS offered, not required: both kinds of client get in."""

    def test_plaintext_allowed_when_not_required(self):
        p = run_psql(self.gw_dsn(sslmode="disable"), "select 1")
        self.assertEqual((p.returncode, p.stdout), (0, "1\n"), p.stderr)


class TlsRequiredTest(TlsCases, GatewayCase):
    """require_tls: plaintext clients are refused with 28000."""

    require_tls = True

    def test_plaintext_refused_with_28000(self):
        p = run_psql(self.gw_dsn(sslmode="disable"), "select 1")
        self.assertNotEqual(p.returncode, 0, "plaintext client got in")
        with self.raw() as conn:
            conn.send(startup_message({"user": ALICE, "database": "traces"}))
            err = conn.read_until_error_or_close()
            self.assertIsNotNone(err, "closed without ErrorResponse")
            self.assertEqual(err.get("C"), "28000", err)
        self.assert_gateway_serves("after plaintext refusal")


class BackendFailureTest(GatewayCase):
    """The backend goes away: clients get errors, never hangs; the gateway recovers."""

    pg_options = {"traces": 10}

    def expect_backend_error(self, context: str) -> str:
        """A new client through the gateway gets an error of class 08 or 57."""
        conn = self.raw(timeout=30)
        try:
            conn.startup(ALICE, ALICE_PW)
            conn.simple_query("select count(*) from traces")
        except PgProtocolError as e:
            self.assertIn(e.sqlstate[:2], ("08", "57"), f"{context}: {e.fields}")
            return e.sqlstate
        except ConnectionClosed:
            self.fail(f"{context}: connection closed without an ErrorResponse")
        except socket.timeout:
            self.fail(f"{context}: client hung waiting for the gateway")
        finally:
            conn.close()
        self.fail(f"{context}: query succeeded with the backend down")

    def wait_until_served(self, context: str) -> None:
        def ok():
            return self.gw_psql("select count(*) from traces").returncode == 0
        wait_for(ok, 30, interval=0.2, what=f"gateway to serve again {context}")
        self.assert_gateway_serves(context)

    def test_backend_down_then_up(self):
        self.assert_gateway_serves("before stopping the backend")
        self.pg.stop()
        try:
            self.expect_backend_error("backend stopped")
            p = self.gw_psql("select 1")
            self.assertNotEqual(p.returncode, 0, "psql succeeded with the backend down")
            self.assertTrue(self.gw.alive(), "gateway died when the backend went away")
            self.assertEqual(http_get(self.gw.admin_url + "/healthz")[0], 200)
        finally:
            self.pg.start()
        self.wait_until_served("after the backend came back")

    def test_backend_restart_mid_session(self):
        for mode in ["fast", "immediate"]:
            with self.subTest(shutdown=mode):
                conn = self.raw_session()
                sleeper = subprocess.Popen(
                    ["psql", "-X", "-qAt", "-d", self.gw_dsn(), "-c", "select pg_sleep(60)"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                try:
                    self.assertEqual(conn.simple_query("select 1"), [("1",)])
                    wait_for(lambda: self.pg.psql(
                        "select count(*) from pg_stat_activity where query = "
                        "'select pg_sleep(60)' and state = 'active'").strip() == "1",
                        15, what="pg_sleep to run on the backend")
                    self.pg.stop(mode=mode)
                    self.pg.start()
                    # The client in the middle of a query gets an error promptly.
                    try:
                        _, err = sleeper.communicate(timeout=20)
                    except subprocess.TimeoutExpired:
                        self.fail("psql hung after the backend restarted mid-query")
                    self.assertNotEqual(sleeper.returncode, 0)
                    # The idle session's next query fails (class 08/57) or the session is
                    # closed; it must not hang and must not be silently re-attached.
                    try:
                        conn.simple_query("select 2")
                        self.fail("session silently survived a backend restart")
                    except PgProtocolError as e:
                        self.assertIn(e.sqlstate[:2], ("08", "57"), e.fields)
                    except ConnectionClosed:
                        pass
                    except socket.timeout:
                        self.fail("idle session hung after the backend restarted")
                finally:
                    conn.close()
                    if sleeper.poll() is None:
                        sleeper.kill()
                        sleeper.wait()
                self.assertTrue(self.gw.alive())
                self.wait_until_served(f"after {mode} restart")


# --- robustness: backend auth, backpressure, drain, timeouts, large messages ----------------


def read_outcome(conn: RawPgConn) -> tuple[str, Any]:
    """Reads the answer to a Query already sent and says how it ended: ("rows", rows),
    ("error", fields) for a non-fatal ErrorResponse, ("fatal", fields) for a FATAL one (the
    session is over), or ("closed", None) if the connection ended without either. A hang
    raises socket.timeout (the connection's timeout)."""
    rows: list[tuple[str | None, ...]] = []
    error = None
    try:
        while True:
            mtype, body = conn.recv_message()
            if mtype == b"D":
                rows.append(parse_data_row(body))
            elif mtype == b"E":
                fields = harness.parse_error_fields(body)
                if fields.get("V", fields.get("S")) in ("FATAL", "PANIC"):
                    return "fatal", fields
                error = fields
            elif mtype == b"Z":
                return ("error", error) if error else ("rows", rows)
    except (ConnectionClosed, ConnectionResetError):
        return "closed", None


def query_outcome(conn: RawPgConn, sql: str) -> tuple[str, Any]:
    """Sends one simple Query and returns read_outcome()."""
    try:
        conn.send(message(b"Q", sql.encode() + b"\0"))
    except (BrokenPipeError, ConnectionResetError):
        return "closed", None
    return read_outcome(conn)


def session_on(gw: Gateway, timeout: float = 10.0) -> RawPgConn:
    """An authenticated raw session as alice on `gw`."""
    conn = RawPgConn(gw.host, gw.port, timeout=timeout)
    try:
        conn.startup(ALICE, ALICE_PW)
    except BaseException:
        conn.close()
        raise
    return conn


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class PgServerCase(unittest.TestCase):
    """One PgServer for the class; each test starts the gateway(s) it needs, because the
    tests change gateway configuration or stop the gateway."""

    pg_options: dict = {"traces": 10}

    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer(**cls.pg_options)
        cls.pg.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.pg.__exit__(None, None, None)

    def gateway(self, conn: dict | None = None, **overrides: Any) -> Gateway:
        """A gateway (not started; use it as a context manager) in front of self.pg, logging
        in as `tracegate`; `conn` updates the connection entry, `overrides` the top level."""
        cfg = Gateway.config_for(self.pg, {ALICE: ALICE_PW}, **overrides)
        cfg["connections"][0].update(conn or {})
        return Gateway(cfg, env={Gateway.BACKEND_PASSWORD_ENV: self.pg.password_for("tracegate")})

    def wait_exit(self, gw: Gateway, timeout: float) -> int:
        """Waits for a gateway that was already signalled; fails if it does not exit."""
        try:
            code = gw.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"gateway still running {timeout}s after SIGTERM; stderr:\n"
                      f"{gw.stderr_text()[-3000:]}")
        gw.exit_code = code
        return code


class BackendAuthModesTest(PgServerCase):
    """The gateway logs in to PostgreSQL with whatever method the server asks for (SCRAM,
    md5, cleartext), with or without TLS, and never leaks its credential."""

    pg_options = {"traces": 10, "ssl": True}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.pg.add_auth_roles()
            cls.tmp = tempfile.mkdtemp(prefix="tg-backend-auth-")
            # A CA that did not sign the server's certificate.
            cls.other_ca, _ = harness.make_self_signed_cert(cls.tmp, "other-ca")
        except BaseException:
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            shutil.rmtree(cls.tmp, ignore_errors=True)
        finally:
            super().tearDownClass()

    def backend_gateway(self, user: str, tls: str, source: str = "env",
                        password: str | None = None, ca_file: str | None = None,
                        log_level: str = "info") -> Gateway:
        """A gateway whose backend.user is `user`, its password from the environment
        (source="env") or from a file (source="file")."""
        password = self.pg.password_for(user) if password is None else password
        cfg = Gateway.config_for(self.pg, {ALICE: ALICE_PW}, backend_user=user,
                                 backend_tls=tls, log_level=log_level)
        backend = cfg["connections"][0]["backend"]
        # backend.auth is SCRAM only by default (issue 18, item 6; tests/test_wire_auth.py
        # covers the refusals): these roles exercise the other methods, so they are listed.
        backend["auth"] = {"tg_md5": ["md5"], "tg_plain": ["password"]}.get(user,
                                                                          ["scram-sha-256"])
        if ca_file is not None:
            backend["ca_file"] = ca_file
        env = {}
        if source == "file":
            del backend["password_env"]
            fd, path = tempfile.mkstemp(prefix=f"{user}-", suffix=".pw", dir=self.tmp)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
            backend["password_file"] = path
        else:
            env[Gateway.BACKEND_PASSWORD_ENV] = password
        return Gateway(cfg, env=env)

    def client_error(self, gw: Gateway, secret: str) -> dict[str, str]:
        """A client that must be refused once the gateway fails to log in to the backend.
        Returns the ErrorResponse fields (psql does not show a SQLSTATE for errors during
        connection, so a raw client reads them); asserts `secret` reached neither the raw
        client, nor psql, nor the gateway log."""
        with RawPgConn(gw.host, gw.port, timeout=30) as conn:
            try:
                conn.startup(ALICE, ALICE_PW)
                self.fail("session started although the backend login must fail")
            except PgProtocolError as e:
                fields = e.fields
            except ConnectionClosed:
                self.fail("connection closed without an ErrorResponse")
        p = run_psql(gw.dsn(ALICE, ALICE_PW), "select current_user", timeout=60)
        self.assertNotEqual(p.returncode, 0, f"psql got in: {p.stdout}")
        self.assertIn(fields.get("M", "<no message>"), p.stderr, "psql saw another error")
        self.assertNotIn(secret, repr(fields), "the backend password reached the client")
        self.assert_secret_absent(secret, gw, p.stderr)
        return fields

    def assert_secret_absent(self, secret: str, gw: Gateway, client_stderr: str) -> None:
        self.assertNotIn(secret, client_stderr, "the backend password reached the client")
        self.assertNotIn(secret, gw.stderr_text(), "the backend password is in the gateway log")

    def test_harness_roles_use_the_methods_under_test(self):
        # Guards the table below: if the harness changed, md5/cleartext would silently turn
        # into SCRAM and the backend-auth paths would go untested.
        rules = self.pg.psql("select user_name[1], type, auth_method from pg_hba_file_rules "
                             "where user_name[1] in ('tg_md5', 'tg_plain', 'tg_ssl') "
                             "order by line_number")
        self.assertEqual(rules.split(), ["tg_md5|host|md5", "tg_plain|host|password",
                                         "tg_ssl|hostnossl|reject",
                                         "tg_ssl|hostssl|scram-sha-256"])
        stored = self.pg.psql("select rolname, case when rolpassword like 'md5%' then 'md5' "
                              "when rolpassword like 'SCRAM-SHA-256$%' then 'scram' end "
                              "from pg_authid where rolname in ('tracegate', 'tg_md5') "
                              "order by 1")
        self.assertEqual(stored.split(), ["tg_md5|md5", "tracegate|scram"])

    def test_every_auth_method_and_tls_mode(self):
        cases = [
            # (backend.user, backend.tls, password source)
            ("tracegate", "disable", "env"),      # SCRAM-SHA-256
            ("tracegate", "require", "file"),
            ("tg_md5", "disable", "file"),        # md5
            ("tg_md5", "require", "env"),
            ("tg_plain", "disable", "env"),       # cleartext password
            ("tg_plain", "require", "file"),
            ("tg_ssl", "require", "env"),         # hostssl only
            ("tg_ssl", "verify-full", "file"),    # ca_file = the server's self-signed cert
        ]
        sql = "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()"
        for user, tls, source in cases:
            with self.subTest(user=user, tls=tls, password=source):
                with self.backend_gateway(user, tls, source) as gw:
                    p = run_psql(gw.dsn(ALICE, ALICE_PW), sql, timeout=60)
                    self.assertEqual(p.returncode, 0, f"{p.stderr}\ngateway log:\n"
                                                      f"{gw.stderr_text()[-2000:]}")
                    encrypted = "f" if tls == "disable" else "t"
                    self.assertEqual(p.stdout, f"{user}|{encrypted}\n",
                                     "wrong backend role or TLS state")
                    self.assert_secret_absent(self.pg.password_for(user), gw, p.stderr)

    def test_verify_full_with_another_ca_fails_with_class_08(self):
        with self.backend_gateway("tg_ssl", "verify-full", ca_file=self.other_ca,
                                  log_level="debug") as gw:
            fields = self.client_error(gw, self.pg.password_for("tg_ssl"))
            self.assertEqual(fields.get("C", "")[:2], "08", fields)
            self.assertIn("certificate verify failed", fields.get("M", ""), fields)
            self.assertTrue(gw.alive())

    def test_verify_full_checks_the_host_name(self):
        # Swap the server's certificate for one from a CA the gateway trusts but naming
        # another host. The chain verifies, the name does not: verify-full must refuse.
        wrong_cert, wrong_key = harness.make_self_signed_cert(
            self.tmp, "wrong-host", common_name="wrong.invalid", san="DNS:wrong.invalid")
        originals = {}
        for path in (self.pg.cert_file, self.pg.key_file):
            with open(path, "rb") as f:
                originals[path] = f.read()

        def server_presents(ca: str) -> bool:
            dsn = self.pg.dsn("tg_ssl", sslmode="verify-ca", sslrootcert=ca)
            return run_psql(dsn, "select 1").returncode == 0

        try:
            # copyfile rewrites the existing files: owner (postgres) and mode 0600 stay.
            shutil.copyfile(wrong_cert, self.pg.cert_file)
            shutil.copyfile(wrong_key, self.pg.key_file)
            self.pg.reload()
            wait_for(lambda: server_presents(wrong_cert), 15, interval=0.1,
                     what="postgres to serve the wrong-host certificate")
            with self.backend_gateway("tg_ssl", "require") as gw:
                p = run_psql(gw.dsn(ALICE, ALICE_PW), "select current_user", timeout=60)
                self.assertEqual((p.returncode, p.stdout), (0, "tg_ssl\n"),
                                 f"control (tls: require) failed: {p.stderr}")
            with self.backend_gateway("tg_ssl", "verify-full", ca_file=wrong_cert) as gw:
                fields = self.client_error(gw, self.pg.password_for("tg_ssl"))
                self.assertEqual(fields.get("C", "")[:2], "08", fields)
                self.assertIn("certificate verify failed", fields.get("M", ""), fields)
        finally:
            for path, data in originals.items():
                with open(path, "wb") as f:
                    f.write(data)
            self.pg.reload()
            wait_for(lambda: server_presents(self.pg.ca_file), 15, interval=0.1,
                     what="postgres to serve its own certificate again")

    def test_tls_disable_against_hostssl_only_role_relays_28000(self):
        with self.backend_gateway("tg_ssl", "disable", log_level="debug") as gw:
            fields = self.client_error(gw, self.pg.password_for("tg_ssl"))
            self.assertEqual(fields.get("C"), "28000", fields)
            self.assertIn("pg_hba.conf rejects connection", fields.get("M", ""),
                          "expected the backend's own message")

    def test_wrong_backend_password_relays_28P01_without_leaking_it(self):
        for user in ["tracegate", "tg_md5", "tg_plain"]:
            for source in ["env", "file"]:
                with self.subTest(user=user, password=source):
                    wrong = "wrong-" + secrets.token_hex(12)
                    with self.backend_gateway(user, "disable", source, password=wrong,
                                              log_level="debug") as gw:
                        fields = self.client_error(gw, wrong)
                        self.assertEqual(fields.get("C"), "28P01", fields)
                        self.assertEqual(fields.get("M"),
                                         f'password authentication failed for user "{user}"')
                        self.assertTrue(gw.alive(), "gateway died on a backend auth failure")


class BackpressureTest(GatewayCase):
    """A client that stops reading pauses the backend; the gateway does not buffer the
    result (its buffers hold one frame per direction)."""

    pg_options = {"traces": 10}
    # The ~300 MB result is recorded like any other; a recording that reaches
    # audit.max_session_bytes (256 MiB by default) ends the session, so raise it here.
    gateway_options = {"workers": 1, "audit": {"max_session_bytes": "1GiB"}}
    ROWS = 300_000
    # About 300 MB of DataRows.
    QUERY = f"select repeat('x', 1000) from generate_series(1, {ROWS})"
    # RowDescription of one text column "repeat" (32 B), DataRows (1 + 4 + 2 + 4 + 1000 B
    # each), CommandComplete "SELECT 300000" (19 B), ReadyForQuery (6 B).
    RESULT_BYTES = 32 + ROWS * 1011 + 19 + 6
    MAX_GROWTH_KIB = 64 * 1024

    def backends_in_client_write(self) -> int:
        return int(self.pg.psql("select count(*) from pg_stat_activity where usename = "
                                "'tracegate' and wait_event = 'ClientWrite'").strip())

    def stall(self, conn: RawPgConn) -> None:
        """Sends QUERY without reading; returns once the pipe is full end to end, after
        asserting the gateway's memory did not grow with the result."""
        pid = self.gw.proc.pid
        baseline = vm_rss_kib(pid)
        conn.send(message(b"Q", self.QUERY.encode() + b"\0"))
        # PostgreSQL blocks writing to the gateway only once the gateway stopped reading:
        # the pipe is full from PostgreSQL through the gateway to this socket.
        wait_for(lambda: self.backends_in_client_write() == 1, 30, interval=0.1,
                 what="the backend to wait on ClientWrite")
        stalled = vm_rss_kib(pid)
        print(f"\n  gateway VmRSS: baseline {baseline} KiB, stalled on a ~300 MB result "
              f"{stalled} KiB", flush=True)
        self.assertLess(stalled - baseline, self.MAX_GROWTH_KIB,
                        f"gateway RSS grew from {baseline} KiB to {stalled} KiB while the "
                        "client was not reading: it buffers the result")
        # Still paused: the backend may leave ClientWrite for a moment when the kernel grows
        # this socket's receive buffer (TCP autotuning) and the gateway moves a little more,
        # so this waits for it to block again instead of sampling once.
        wait_for(lambda: self.backends_in_client_write() == 1, 10, interval=0.05,
                 what="the backend to be still waiting on ClientWrite")

    @staticmethod
    def drain_result(conn: RawPgConn) -> tuple[int, bytes]:
        """Reads raw bytes up to the closing ReadyForQuery; returns (byte count, tail)."""
        total, tail = len(conn.buf), conn.buf[-64:]
        conn.buf = b""
        chunk = bytearray(1 << 20)
        while not tail.endswith(b"Z\0\0\0\x05I"):
            n = conn.sock.recv_into(chunk)
            if n == 0:
                raise ConnectionClosed(f"closed after {total} bytes of the result")
            total += n
            tail = (tail + chunk[max(0, n - 64):n])[-64:]
        return total, bytes(tail)

    def test_stalled_client_gets_the_whole_result_when_it_reads_again(self):
        self.assert_gateway_serves("before the large query")
        with self.raw_session() as conn:
            self.stall(conn)
            total, tail = self.drain_result(conn)
            self.assertEqual(total, self.RESULT_BYTES, "result size differs after the stall")
            self.assertIn(b"SELECT 300000\0", tail, "no CommandComplete at the end")
            self.assertEqual(conn.simple_query("select 'after'"), [("after",)])
        self.assert_gateway_serves("after the stalled client read its result")

    def test_client_leaving_a_stalled_result_releases_the_backend(self):
        self.assert_gateway_serves("before the large query")
        conn = self.raw_session()
        try:
            self.stall(conn)
        finally:
            # Unread data makes close() send RST: the gateway's write to us fails.
            conn.close()
        wait_for(lambda: self.backends_in_client_write() == 0, 15, interval=0.1,
                 what="the stalled backend to be released after the client left")
        self.assert_gateway_serves("after the stalled client left")


class DrainTest(PgServerCase):
    """SIGTERM: stop accepting, let open sessions finish, exit 0; after shutdown_grace the
    remaining sessions get FATAL 57P01."""

    def test_sigterm_lets_open_sessions_finish(self):
        # A long grace: the gateway must exit because the last session ended, not because
        # the grace ran out (the exit deadline below is shorter than the grace).
        with self.gateway(shutdown_grace="60s") as gw:
            conn = session_on(gw, timeout=20)
            with conn:
                self.assertEqual(conn.simple_query("select 1"), [("1",)])
                conn.send(message(b"Q", b"select 'in flight' from pg_sleep(1)\0"))
                gw.proc.send_signal(signal.SIGTERM)
                wait_for(lambda: not harness.port_accepts(gw.host, gw.port), 15,
                         what="the listener to close after SIGTERM")
                p = run_psql(gw.dsn(ALICE, ALICE_PW), "select 1", timeout=30)
                self.assertNotEqual(p.returncode, 0, "a new client got in while draining")
                self.assertEqual(read_outcome(conn), ("rows", [("in flight",)]),
                                 "the query in flight at SIGTERM did not complete")
                self.assertEqual(query_outcome(conn, "select 2"), ("rows", [("2",)]),
                                 "an open session could not run a query while draining")
                self.assertTrue(gw.alive(), "gateway exited with a session still open")
                conn.terminate()
            code = self.wait_exit(gw, 30)
            self.assertEqual(code, 0, gw.stderr_text()[-3000:])

    def test_grace_expiry_ends_sessions_with_57P01(self):
        for state in ["idle", "busy"]:
            with self.subTest(session=state), self.gateway(shutdown_grace="1s") as gw:
                conn = session_on(gw, timeout=20)
                with conn:
                    self.assertEqual(conn.simple_query("select 1"), [("1",)])
                    if state == "busy":
                        conn.send(message(b"Q", b"select pg_sleep(20)\0"))
                        wait_for(lambda: self.pg.psql(
                            "select count(*) from pg_stat_activity where "
                            "query = 'select pg_sleep(20)' and state = 'active'").strip() == "1",
                            15, what="pg_sleep to run on the backend")
                    gw.proc.send_signal(signal.SIGTERM)
                    try:
                        fields = conn.read_until_error_or_close(15)
                    except TimeoutError as e:
                        self.fail(f"session still open after shutdown_grace: {e}")
                    self.assertIsNotNone(fields, "closed without an ErrorResponse")
                    self.assertEqual((fields.get("V"), fields.get("C")), ("FATAL", "57P01"),
                                     fields)
                code = self.wait_exit(gw, 30)
                self.assertEqual(code, 0, gw.stderr_text()[-3000:])


class SessionLimitTest(PgServerCase):
    """max_sessions bounds the sessions open on one listener, handshakes included: one
    more is refused with 53300 before any other work, and a slot frees when a session
    ends."""

    def refused_sqlstate(self, gw: Gateway) -> str | None:
        conn = RawPgConn(gw.host, gw.port)
        try:
            conn.startup(ALICE, ALICE_PW)
        except PgProtocolError as e:
            return e.fields.get("C")
        finally:
            conn.close()
        return None

    def test_one_more_than_max_sessions_is_refused_with_53300(self):
        with self.gateway(conn={"max_sessions": 2}) as gw:
            # Two logged-in sessions hold both slots. (Connections that never send a startup
            # packet would hold them only until the handshake timeout, which a slow run, e.g.
            # under ASan, can reach before the checks below.)
            holders = [RawPgConn(gw.host, gw.port) for _ in range(2)]
            for holder in holders:
                holder.startup(ALICE, ALICE_PW)
            try:
                state = wait_for(lambda: self.refused_sqlstate(gw), timeout=15,
                                 what="a third connection to be refused")
                self.assertEqual(state, "53300")
                p = run_psql(gw.dsn(ALICE, ALICE_PW), "select 1")
                self.assertNotEqual(p.returncode, 0, p.stdout)
                self.assertIn("too many clients", p.stderr)
            finally:
                for holder in holders:
                    holder.close()
            # The slots come back once the holders are gone.
            ok = wait_for(lambda: run_psql(gw.dsn(ALICE, ALICE_PW), "select 'back'").stdout,
                          timeout=15, what="a session after the holders left")
            self.assertEqual(ok.strip(), "back")


class TimeoutTest(PgServerCase):
    """idle_timeout ends sessions without client traffic (57P05), never active ones;
    session_timeout ends every session (57P01)."""

    def test_idle_session_ends_with_57P05(self):
        with self.gateway(conn={"idle_timeout": "1s"}) as gw:
            with session_on(gw) as conn:
                self.assertEqual(conn.simple_query("select 1"), [("1",)])
                try:
                    fields = conn.read_until_error_or_close(15)
                except TimeoutError as e:
                    self.fail(f"idle session not ended: {e}")
                self.assertIsNotNone(fields, "closed without an ErrorResponse")
                self.assertEqual((fields.get("V"), fields.get("C")), ("FATAL", "57P05"), fields)

    def test_active_session_is_not_cut(self):
        with self.gateway(conn={"idle_timeout": "1s"}) as gw:
            with session_on(gw) as conn:
                end = time.monotonic() + 2.5
                n = 0
                while time.monotonic() < end:
                    n += 1
                    self.assertEqual(query_outcome(conn, f"select {n}"), ("rows", [(str(n),)]),
                                     f"query {n} of a session active every 200 ms failed")
                    time.sleep(0.2)  # the pacing is the stimulus, not a readiness wait
                # One statement that runs longer than idle_timeout is not idleness either.
                self.assertEqual(query_outcome(conn, "select 'slept' from pg_sleep(2.5)"),
                                 ("rows", [("slept",)]), "a long statement was cut as idle")
                conn.terminate()

    def test_idle_clock_starts_when_the_result_is_delivered(self):
        # A statement that takes most of idle_timeout, then a pause shorter than
        # idle_timeout: the session was never idle for idle_timeout and must survive.
        # (PostgreSQL's idle_session_timeout likewise counts from ReadyForQuery.)
        with self.gateway(conn={"idle_timeout": "2s"}) as gw:
            with session_on(gw) as conn:
                self.assertEqual(query_outcome(conn, "select 'slow' from pg_sleep(1.8)"),
                                 ("rows", [("slow",)]))
                time.sleep(1.0)  # idle, but for half of idle_timeout (the stimulus)
                self.assertEqual(query_outcome(conn, "select 'still here'"),
                                 ("rows", [("still here",)]),
                                 f"session cut 1 s after its last result with idle_timeout 2s; "
                                 f"gateway log:\n{gw.stderr_text()[-1500:]}")
                conn.terminate()

    def test_session_timeout_ends_active_session_with_57P01(self):
        with self.gateway(conn={"session_timeout": "2s"}) as gw:
            with session_on(gw, timeout=20) as conn:
                deadline = time.monotonic() + 15
                n = 0
                while True:
                    n += 1
                    outcome, detail = query_outcome(conn, f"select {n}")
                    if outcome != "rows":
                        break
                    self.assertLess(time.monotonic(), deadline,
                                    "session still running 15 s into a 2 s session_timeout")
                    time.sleep(0.05)
                self.assertEqual(outcome, "fatal", f"session ended without FATAL: {outcome}")
                self.assertEqual(detail.get("C"), "57P01", detail)
                try:
                    conn.expect_closed(10)
                except TimeoutError as e:
                    self.fail(f"connection left open after the FATAL: {e}")


class LargeMessagesTest(GatewayCase):
    """Messages far larger than the gateway's 64 KiB read buffer pass intact; messages over
    limits.max_message_length end the session with class 08, never a hang."""

    pg_options = {"traces": 10}
    SMALL_LIMIT = "1MiB"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cfg = Gateway.config_for(cls.pg, {ALICE: ALICE_PW})
            cfg["limits"]["max_message_length"] = cls.SMALL_LIMIT
            cls.small_gw = Gateway(cfg, env={Gateway.BACKEND_PASSWORD_ENV:
                                             cls.pg.password_for("tracegate")})
            cls.small_gw.__enter__()
        except BaseException:
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.small_gw.stop()
        finally:
            cls.small_gw.cleanup()
            super().tearDownClass()

    def compare(self, sql: str, stdin_script: bool = False) -> None:
        gw = self.gw_psql(sql, stdin_script=stdin_script)
        direct = self.direct_psql(sql, stdin_script=stdin_script)
        self.assertEqual(direct.returncode, 0, f"direct psql failed: {direct.stderr[:500]}")
        self.assertEqual(gw.returncode, 0, f"gateway psql failed: {gw.stderr[:500]}")
        self.assertEqual(len(gw.stdout), len(direct.stdout), "output length differs")
        self.assertEqual(digest(gw.stdout), digest(direct.stdout), "output differs")
        self.assertEqual(gw.stderr, direct.stderr)

    def small_gw_psql(self, sql: str, **kw) -> subprocess.CompletedProcess:
        return run_psql(self.small_gw.dsn(ALICE, ALICE_PW), sql, **kw)

    def assert_both_gateways_serve(self, context: str) -> None:
        self.assert_gateway_serves(context)
        self.assertTrue(self.small_gw.alive(), f"1MiB-limit gateway died {context}")
        p = self.small_gw_psql("select count(*) from traces")
        self.assertEqual(p.returncode, 0, f"1MiB-limit gateway fails {context}: {p.stderr}")
        self.assertEqual(p.stdout, self.direct_psql("select count(*) from traces").stdout)

    def test_large_results_match_direct(self):
        queries = {
            "one_5mb_value": "select repeat('x', 5000000)",
            "200k_small_rows": "select g, md5(g::text) from generate_series(1, 200000) g",
            "50_rows_of_60kb": "select g, repeat(chr(65 + g % 26), 60000) "
                               "from generate_series(1, 50) g",
        }
        for name, sql in queries.items():
            for round_ in range(3):
                with self.subTest(query=name, round=round_):
                    self.compare(sql)

    def test_1mb_query_text_matches_direct(self):
        big = "".join(chr(97 + i % 26) for i in range(1_000_000))
        script = (f"select length(s), md5(s) from (select '{big}'::text as s) t;\n"
                  f"select '{big}';\n")
        for round_ in range(3):
            with self.subTest(round=round_):
                self.compare(script, stdin_script=True)

    def test_query_over_max_message_length_is_08P01(self):
        under = "u" * 900_000
        p = self.small_gw_psql(f"select length('{under}');\n", stdin_script=True)
        self.assertEqual((p.returncode, p.stdout), (0, "900000\n"),
                         f"a 900 kB query under the 1MiB limit failed: {p.stderr[:500]}")
        over = "o" * 2_000_000
        with self.subTest(client="psql"):
            p = self.small_gw_psql(f"select length('{over}');\n", stdin_script=True,
                                   timeout=60)
            self.assertNotEqual(p.returncode, 0, "a 2 MB query passed a 1MiB limit")
            self.assertEqual(sqlstate_of(p.stderr), "08P01", p.stderr[:1000])
        with self.subTest(client="raw"):
            with session_on(self.small_gw) as conn:
                # Only the header and a little of the body: the limit applies before
                # the message is buffered.
                body = f"select length('{over}')\0".encode()
                conn.send(b"Q" + struct.pack("!I", len(body) + 4) + body[:4096])
                try:
                    fields = conn.read_until_error_or_close(10)
                except TimeoutError as e:
                    self.fail(f"oversized message header left the session open: {e}")
                self.assertIsNotNone(fields, "closed without an ErrorResponse")
                self.assertEqual((fields.get("V"), fields.get("C")), ("FATAL", "08P01"), fields)
        self.assert_both_gateways_serve("after an oversized query")

    def test_result_over_max_message_length_is_class_08(self):
        sql = "select repeat('r', 2000000)"
        with self.subTest(client="psql"):
            try:
                p = self.small_gw_psql(sql, timeout=30)
            except subprocess.TimeoutExpired:
                self.fail("psql hung on a result over max_message_length")
            self.assertNotEqual(p.returncode, 0, "a 2 MB DataRow passed a 1MiB limit")
            state = sqlstate_of(p.stderr)
            self.assertIsNotNone(state, f"no SQLSTATE in: {p.stderr[:1000]}")
            self.assertEqual(state[:2], "08", p.stderr[:1000])
        with self.subTest(client="raw"):
            with session_on(self.small_gw, timeout=30) as conn:
                outcome, fields = query_outcome(conn, sql)
                self.assertEqual(outcome, "fatal", f"expected a FATAL, got {outcome}")
                self.assertEqual(fields.get("C", "")[:2], "08", fields)
                try:
                    conn.expect_closed(10)
                except TimeoutError as e:
                    self.fail(f"connection left open after the FATAL: {e}")
        self.assert_both_gateways_serve("after an oversized result")


if __name__ == "__main__":
    unittest.main(verbosity=2)
