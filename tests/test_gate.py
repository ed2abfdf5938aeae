"""The statement gate, end to end: a grant for one trace T (real OIDC provider, the grants
API over HTTPS), used with psql, libpq and a raw pgwire client through the real gateway
against a real PostgreSQL. A grant's session reads T and nothing else: other traces, bulk
exports, writes, DDL, session-state changes and read-only bypasses are refused with 42501
and the rule in the message; the row/byte caps end a statement with 54000; the session stays
usable after every refusal.

Run from this folder: python3 -m unittest -v test_gate
(CTest sets TRACEGATE_BIN, LIBPQ_CLIENT and TRACEGATE_ROOT; see harness.py.)

Each class starts one PostgreSQL, one OpenID provider and one gateway (setUpClass). Grants
allow 50 sessions; a test reuses its client's grant for the next session once the previous
session has ended (a grant serves one session at a time).
"""

from __future__ import annotations

import re
import subprocess
import unittest
import urllib.parse
from typing import Any

import harness
from harness import PgServer, RawPgConn, run_libpq_client, run_psql, sqlstate_of, wait_for
from oidc import OidcProvider
from test_grants import Api, access_config, start_access_plane

harness.install_sigterm_cleanup()

ROW_CAP = 5
BYTE_CAP = 4096

CLIENTS = {
    "agent": {"groups": ["trace-readers"]},
    "rowcap": {"groups": ["row-capped"]},
    "bytecap": {"groups": ["byte-capped"]},
}

# One grant serves several sessions (uses: 50) within its ttl.
_TERMS = {"connections": ["traces-pg"], "ttl": "5m", "uses": 50, "max_session": "5m"}
POLICY = {
    "max_ttl": "5m",
    "rules": [
        {"name": "readers", "groups": ["trace-readers"], **_TERMS},
        {"name": "row-capped", "groups": ["row-capped"], "max_rows": ROW_CAP, **_TERMS},
        {"name": "byte-capped", "groups": ["byte-capped"], "max_bytes": BYTE_CAP, **_TERMS},
    ],
}

ERROR_RE = re.compile(r"ERROR:\s+([0-9A-Z]{5}):\s+(.*)")


def errors_of(stderr: str) -> list[tuple[str, str]]:
    """(SQLSTATE, message) of every ERROR line psql printed with VERBOSITY=verbose."""
    return [(m.group(1), m.group(2).strip()) for m in ERROR_RE.finditer(stderr)]


def raw_query(conn: RawPgConn, sql: bytes) -> tuple[int, dict[str, str] | None]:
    """Sends one simple Query of raw bytes; returns (rows received, error fields or None)."""
    conn.send(harness.message(b"Q", sql + b"\0"))
    rows, error = 0, None
    while True:
        mtype, body = conn.recv_message()
        if mtype == b"D":
            rows += 1
        elif mtype == b"E":
            error = harness.parse_error_fields(body)
        elif mtype == b"Z":
            return rows, error


def gate_config(pg: PgServer, idp: OidcProvider, tmp: str) -> dict:
    return access_config(pg, idp, tmp, POLICY)


class GateCase(harness.ClassFixtures, unittest.TestCase):
    """One PostgreSQL, one OpenID provider and one gateway (with the statement gate on the
    default trace tables traces(id), observations(trace_id), scores(trace_id)) per class."""

    @classmethod
    def setUpClass(cls) -> None:
        start_access_plane(cls, "tg-gate-", lambda: gate_config(cls.pg, cls.idp, cls.tmp),
                           clients=CLIENTS)
        ids = cls.pg.psql("select id from traces order by id").split()
        # T has the most observations (all have more than ROW_CAP; checked below).
        cls.trace = cls.pg.psql("select trace_id from observations group by trace_id "
                                "order by count(*) desc, trace_id limit 1").strip()
        cls.others = [i for i in ids if i != cls.trace]
        cls.other_trace = cls.others[0]
        cls.tokens: dict[str, str] = {}
        cls.grants: dict[str, dict[str, Any]] = {}

    # -- grants --

    def token(self, client: str) -> str:
        if client not in self.tokens:
            self.tokens[client] = self.idp.token(client)
        return self.tokens[client]

    def new_grant(self, client: str = "agent", trace: str | None = None) -> dict:
        status, out = self.api.grant(self.token(client), trace or self.trace)
        if status == 401:  # the cached token expired: fetch a new one
            self.tokens.pop(client, None)
            status, out = self.api.grant(self.token(client), trace or self.trace)
        self.assertEqual(status, 201, out)
        self.assertEqual(out["uses_allowed"], 50)
        return out

    def grant_state(self, grant: dict, client: str) -> str:
        status, out, _ = self.api.call("GET", f"/v1/grants/{grant['grant_id']}",
                                       self.token(client))
        self.assertEqual(status, 200, out)
        return out["state"]

    def session_grant(self, client: str = "agent") -> dict:
        """The client's grant for T, ready for one more session: reused while it has uses
        left and its previous session has ended (state back to active), else a new one."""
        cached = self.grants.get(client)
        if cached is not None and cached["sessions"] < 45:
            try:
                wait_for(lambda: self.grant_state(cached["grant"], client) == "active", 10,
                         what="grant active again")
                cached["sessions"] += 1
                return cached["grant"]
            except TimeoutError:
                pass  # a session of it is still open (a failed test): start afresh
        cached = {"grant": self.new_grant(client), "sessions": 1}
        self.grants[client] = cached
        return cached["grant"]

    def uri(self, client: str = "agent") -> str:
        grant = self.session_grant(client)
        return grant["postgres"]["uri"] + "&sslrootcert=" + urllib.parse.quote(self.ca_file)

    # -- clients --

    def psql(self, sql: str, client: str = "agent", *, keep_going: bool = False,
             script: bool = False, extra: tuple[str, ...] = (),
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """psql -qAt through a grant (one session). keep_going: ON_ERROR_STOP off, so every
        statement runs. script: sql goes in on stdin (psql sends each statement as its own
        Query); otherwise with -c (one Query), after any `-c` in `extra`."""
        args = ["-qAt"]
        if keep_going:
            args += ["-v", "ON_ERROR_STOP=0"]
        args += list(extra)
        return run_psql(self.uri(client), sql, args=args, stdin_script=script, env=env)

    def psql_ok(self, sql: str, client: str = "agent") -> str:
        p = self.psql(sql, client)
        self.assertEqual(p.returncode, 0, f"{sql}: {p.stderr}")
        self.assertEqual(p.stderr.strip(), "", sql)
        return p.stdout

    def direct(self, sql: str) -> str:
        """The same statement as the superuser, directly (no gateway)."""
        return self.pg.psql(sql)

    def assert_no_other_trace(self, text: str, what: str = "") -> None:
        for other in self.others:
            self.assertNotIn(other, text, f"another trace's id in the output {what}")

    def assert_blocked(self, p: subprocess.CompletedProcess, rule: str, what: str = "",
                       sqlstate: str = "42501") -> str:
        """One statement refused by the gate (psql -c, ON_ERROR_STOP): the SQLSTATE, the
        rule in the message, nothing on stdout, no other trace's id anywhere on stdout."""
        self.assertNotEqual(p.returncode, 0, f"{what}: not refused; stdout {p.stdout[:300]!r}")
        self.assertEqual(sqlstate_of(p.stderr), sqlstate, f"{what}: {p.stderr}")
        self.assertIn(f"tracegate: statement blocked ({rule}): ", p.stderr, what)
        self.assertEqual(p.stdout.strip(), "", what)
        self.assert_no_other_trace(p.stdout, what)
        errors = errors_of(p.stderr)
        self.assertEqual(len(errors), 1, f"{what}: {p.stderr}")
        return errors[0][1]

    def observations_of(self, trace: str) -> set[str]:
        return set(self.direct(f"select id from observations where trace_id = '{trace}'")
                   .split())


class GateReadTest(GateCase):
    """What a grant's session may read, and that it stays usable after a refusal."""

    def test_select_granted_trace_row(self):
        sql = f"SELECT * FROM traces WHERE id = '{self.trace}'"
        got = self.psql_ok(sql)
        self.assertTrue(got.startswith(self.trace + "|"), got[:200])
        self.assertEqual(got, self.direct(sql))
        self.assert_no_other_trace(got)

    def test_join_returns_the_granted_traces_observations(self):
        sql = (f"SELECT o.* FROM observations o JOIN traces t ON o.trace_id = t.id "
               f"WHERE t.id = '{self.trace}'")
        got = self.psql_ok(sql)
        want = self.direct(sql)
        self.assertEqual(sorted(got.splitlines()), sorted(want.splitlines()))
        ids = {line.split("|", 1)[0] for line in got.splitlines()}
        self.assertEqual(ids, self.observations_of(self.trace))
        self.assertGreater(len(ids), ROW_CAP)
        self.assert_no_other_trace(got)

    def test_json_operators_on_the_granted_row(self):
        sql = (f"SELECT input->'messages'->0->>'role', jsonb_array_length(input->'messages'), "
               f"metadata #>> '{{sdk,name}}', input ? 'messages', "
               f"jsonb_typeof(output), (input->'messages'->-1) IS NOT NULL, "
               f"input @> '{{}}'::jsonb "
               f"FROM traces WHERE id = '{self.trace}'")
        got = self.psql_ok(sql)
        self.assertEqual(got, self.direct(sql))
        fields = got.strip().split("|")
        self.assertEqual(len(fields), 7, got)
        self.assertGreater(int(fields[1]), 0)
        self.assertEqual(fields[3], "t")

    def test_other_allowed_read_shapes_match_direct(self):
        t = self.trace
        for sql in [
                f"SELECT count(*) FROM observations WHERE trace_id = '{t}'",
                f"SELECT o.id FROM traces t LEFT JOIN observations o ON o.trace_id = t.id "
                f"WHERE t.id = '{t}' ORDER BY o.id",
                f"SELECT s.name, s.value FROM scores s WHERE s.trace_id = '{t}' ORDER BY s.id",
                f"SELECT type, count(*) FROM observations WHERE trace_id = '{t}' "
                f"GROUP BY type ORDER BY type",
                f"SELECT id FROM public.traces WHERE id = U&'{t}'"]:
            with self.subTest(sql=sql):
                self.assertEqual(self.psql_ok(sql), self.direct(sql))

    def test_a_blocked_statement_aborts_the_transaction_block_like_any_error(self):
        # PostgreSQL semantics: after an error in BEGIN ... the rest fails with 25P02 until
        # ROLLBACK; the refusal is an error of the backend's own transaction, not a fake one.
        t = self.trace
        script = ("BEGIN;\n"
                  "SELECT * FROM traces;\n"                              # blocked
                  f"SELECT id FROM traces WHERE id = '{t}';\n"           # 25P02
                  "ROLLBACK;\n"
                  f"SELECT id FROM traces WHERE id = '{t}';\n")          # works again
        p = self.psql(script, keep_going=True, script=True)
        self.assertEqual([e[0] for e in errors_of(p.stderr)], ["42501", "25P02"], p.stderr)
        self.assertEqual(p.stdout.split(), [t], p.stderr)

    def test_session_stays_usable_after_blocked_statements(self):
        t = self.trace
        # Several -c: each is its own Query in ONE session; ON_ERROR_STOP off.
        statements = [
            "SELECT * FROM traces",                                # blocked
            f"SELECT id FROM traces WHERE id = '{t}'",              # allowed
            "COPY traces TO STDOUT",                               # blocked
            f"SELECT count(*) FROM observations WHERE trace_id = '{t}'",  # allowed
            "select 1; select 2",                                  # blocked (one Query)
            f"SELECT id FROM traces WHERE id = '{self.other_trace}'",  # blocked
        ]
        extra: list[str] = []
        for sql in statements:
            extra += ["-c", sql]
        p = self.psql("SELECT 'still usable'", keep_going=True, extra=tuple(extra))
        self.assertEqual(p.returncode, 0, p.stderr)
        count = self.direct(f"SELECT count(*) FROM observations WHERE trace_id = '{t}'").strip()
        self.assertEqual(p.stdout.splitlines(), [t, count, "still usable"])
        errors = errors_of(p.stderr)
        self.assertEqual([e[0] for e in errors], ["42501"] * 4, p.stderr)
        for (_, msg), rule in zip(errors, ["trace_scope", "bulk_export", "multi_statement",
                                           "other_trace"]):
            self.assertIn(f"({rule})", msg)
        self.assert_no_other_trace(p.stdout)

        # The same as a script on stdin (psql sends each statement as its own Query).
        script = (f"SELECT * FROM traces WHERE id LIKE '%';\n"
                  f"SELECT name FROM traces WHERE id = '{t}';\n"
                  f"DELETE FROM traces WHERE id = '{t}';\n"
                  f"SELECT id FROM traces WHERE id = '{t}';\n")
        p = self.psql(script, keep_going=True, script=True)
        name = self.direct(f"SELECT name FROM traces WHERE id = '{t}'").strip()
        self.assertEqual(p.stdout.splitlines(), [name, t], p.stderr)
        self.assertEqual([e[0] for e in errors_of(p.stderr)], ["42501", "42501"], p.stderr)

    def test_client_only_encoding_is_refused_at_startup(self):
        grant = self.session_grant()
        pg = grant["postgres"]
        for encoding in ("SJIS", "BIG5", "GBK"):
            with self.subTest(encoding=encoding):
                with RawPgConn(self.gw.host, self.gw.port) as conn:
                    conn.start_tls()
                    with self.assertRaises(harness.PgProtocolError) as caught:
                        conn.startup(pg["user"], pg["password"],
                                     extra={"client_encoding": encoding})
                fields = caught.exception.fields
                self.assertEqual(fields["C"], "0A000", fields)
                self.assertIn(f"client_encoding {encoding} is not supported", fields["M"])
        # psql with PGCLIENTENCODING=SJIS is refused as well (no SQLSTATE shown at startup).
        p = run_psql(self.uri(), "select 1",
                     env={"PGCLIENTENCODING": "SJIS"})
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("client_encoding SJIS is not supported", p.stderr)
        # The refusals came before the grant was redeemed: it still opens a UTF8 session.
        p = run_psql(self.uri(), f"SELECT id FROM traces WHERE id = '{self.trace}'",
                     env={"PGCLIENTENCODING": "UTF8"})
        self.assertEqual((p.returncode, p.stdout.strip()), (0, self.trace), p.stderr)


    def test_psql_fetch_count_cursor_reads(self):
        # psql with FETCH_COUNT wraps the query in BEGIN / DECLARE _psql_cursor / FETCH /
        # CLOSE / COMMIT: the gate lets that through for a pinned query.
        sql = f"SELECT id, type FROM observations WHERE trace_id = '{self.trace}' ORDER BY id"
        p = self.psql(sql, extra=("-v", "FETCH_COUNT=3"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, self.direct(sql))

    # PostgreSQL has more spellings of the client-only encodings than any list: windows932
    # (SJIS), windows936 (GBK), windows949 (UHC), windows950 (BIG5). Were one accepted, the
    # gate (reading UTF-8) and the server (reading SJIS) would tokenise differently: in
    #   SELECT name, user_id FROM traces WHERE id = 'T' AND name <> E'<0x95 0x5C>' OR true --'
    # the gate sees 0x5C escaping the quote (one string, statement pinned) while the server
    # sees the SJIS character 表 and then `OR true`: every trace's row. The gateway checks the
    # canonical name the server reports, so each is refused with 0A000 at startup.
    def test_client_only_encoding_windows_aliases_are_refused_at_startup(self):
        # A character whose second byte is 0x5C (backslash), or None (startup check only).
        smuggle = {"windows932": b"\x95\x5c",   # SJIS
                   "windows936": b"\x95\x5c",   # GBK
                   "windows950": b"\xb3\x5c",   # BIG5
                   "windows949": None}          # UHC (0x5C is no trail byte there)
        for alias, char in smuggle.items():
            with self.subTest(alias=alias):
                pg = self.session_grant()["postgres"]  # waits for the last session's end
                with RawPgConn(self.gw.host, self.gw.port) as conn:
                    conn.start_tls()
                    try:
                        conn.startup(pg["user"], pg["password"],
                                     extra={"client_encoding": alias})
                    except harness.PgProtocolError as e:
                        self.assertEqual(e.fields["C"], "0A000", e.fields)
                        self.assertIn("is not supported", e.fields["M"])
                        continue
                    detail = (f"client_encoding={alias} accepted at startup (server "
                              f"client_encoding {conn.parameters.get('client_encoding')})")
                    if char is not None:
                        sql = (f"SELECT name, user_id FROM traces WHERE id = '{self.trace}' "
                               f"AND name <> E'").encode() + char + b"' OR true --'"
                        rows, error = raw_query(conn, sql)
                        detail += (f"; the smuggled statement returned {rows} row(s) "
                                   f"({1 + len(self.others)} traces exist)" if error is None
                                   else f"; the smuggled statement failed: {error}")
                    self.fail(detail)

class GateClientEncodingTest(GateCase):
    """Issue 16, hole 4: the backend role's default client_encoding is SJIS (a client-only
    encoding whose characters can hide ' and \\). Sessions still run in UTF8 (pinned in the
    backend's startup packet), cannot RESET or DEFAULT their way back to SJIS, and ask for
    nothing but UTF8 at startup. (A ParameterStatus of another encoding ending the session
    has no allowed SQL path to it: protocol_gate_test covers it with frames.)"""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.pg.psql("ALTER ROLE tracegate SET client_encoding = 'SJIS'")
        # Pooled backends opened before (none should be) would carry the old default.
        cls.pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE usename = 'tracegate'")

    def connect(self, extra: dict[str, str] | None = None) -> RawPgConn:
        pg = self.session_grant()["postgres"]
        conn = RawPgConn(self.gw.host, self.gw.port)
        try:
            conn.start_tls()
            conn.startup(pg["user"], pg["password"], extra=extra)
        except BaseException:
            conn.close()
            raise
        return conn

    def test_the_role_default_is_sjis_without_the_gateway(self):
        with RawPgConn(self.pg.host, self.pg.port) as conn:
            conn.startup("tracegate", self.pg.password_for("tracegate"))
            self.assertEqual(conn.parameters["client_encoding"], "SJIS")
            self.assertEqual(conn.simple_query("RESET client_encoding; SHOW client_encoding"),
                             [("SJIS",)])

    def test_sessions_run_in_utf8_and_cannot_return_to_the_default(self):
        with self.connect() as conn:
            self.assertEqual(conn.parameters["client_encoding"], "UTF8")
            for sql in ("RESET client_encoding", "SET client_encoding TO DEFAULT",
                        "SET client_encoding = DEFAULT", "SET SESSION client_encoding TO DEFAULT",
                        "SET NAMES DEFAULT", "RESET CLIENT_ENCODING",
                        "SET client_encoding FROM CURRENT"):
                with self.subTest(sql=sql):
                    rows, error = raw_query(conn, sql.encode())
                    self.assertIsNotNone(error, sql)
                    self.assertEqual(error["C"], "42501", error)
                    self.assertIn("statement blocked (session_state): client_encoding must stay "
                                  "UTF8", error["M"])
            # The same through the extended protocol.
            out = conn.exchange(harness.pg_run("RESET client_encoding") + harness.pg_sync())
            errors = [harness.parse_error_fields(b) for t, b in out if t == b"E"]
            self.assertEqual([e["C"] for e in errors], ["42501"], out)
            self.assertEqual(conn.simple_query("SHOW client_encoding"), [("UTF8",)])
            self.assertEqual(conn.simple_query("SET client_encoding TO 'UTF8'"), [])
            self.assertEqual(conn.simple_query("SHOW client_encoding"), [("UTF8",)])
            # The statement of the issue: read as SJIS, 0x95 0x5C is one character and the
            # quote after it ends the string, so `OR true` would return every trace.
            sql = (f"SELECT id FROM traces WHERE id = '{self.trace}' AND name <> E'".encode()
                   + b"\x95\x5c' OR true --'")
            rows, error = raw_query(conn, sql)
            self.assertLessEqual(rows, 1, error)
            self.assertEqual(conn.simple_query("SELECT 'usable'"), [("usable",)])

    def test_only_utf8_may_be_asked_for_at_startup(self):
        for encoding in ("UTF8", "utf-8", "unicode", "SQL_ASCII"):
            with self.subTest(encoding=encoding), self.connect({"client_encoding": encoding}) as c:
                self.assertEqual(c.parameters["client_encoding"], "UTF8")
                self.assertEqual(c.simple_query("SHOW client_encoding"), [("UTF8",)])
        for encoding in ("LATIN1", "EUC_JP", "WIN1252"):
            with self.subTest(encoding=encoding):
                with self.assertRaises(harness.PgProtocolError) as caught:
                    self.connect({"client_encoding": encoding}).close()
                self.assertEqual(caught.exception.fields["C"], "0A000")
                self.assertIn(f"client_encoding {encoding} is not supported",
                              caught.exception.fields["M"])


class GateBlockTest(GateCase):
    """Every refused statement: 42501, the rule in the message, no other trace's data."""

    def blocked_cases(self) -> list[tuple[str, str, str]]:
        t, u = self.trace, self.other_trace
        return [
            # (sql, rule, expected message or "" for just the rule)
            ("SELECT * FROM traces", "trace_scope", ""),
            (f"SELECT * FROM traces WHERE id = '{t}' OR true", "trace_scope", ""),
            (f"SELECT * FROM traces WHERE id IN ('{t}','{u}')", "trace_scope", ""),
            ("SELECT * FROM traces WHERE id LIKE '%'", "trace_scope", ""),
            (f"SELECT * FROM traces WHERE id = '{u}'", "other_trace",
             f"tracegate: statement blocked (other_trace): the statement reads trace '{u}', "
             f"not the granted one"),
            ("COPY traces TO STDOUT", "bulk_export",
             "tracegate: statement blocked (bulk_export): COPY is not allowed"),
            (f"COPY (SELECT * FROM traces WHERE id = '{t}') TO STDOUT", "bulk_export",
             "tracegate: statement blocked (bulk_export): COPY is not allowed"),
            ("INSERT INTO traces (id) VALUES ('evil')", "write", ""),
            (f"UPDATE traces SET name = 'x' WHERE id = '{t}'", "write", ""),
            (f"DELETE FROM traces WHERE id = '{t}'", "write", ""),
            ("INSERT INTO write_probe VALUES (1, 'x')", "write", ""),
            ("CREATE TABLE evil (id int)", "ddl", ""),
            ("DROP TABLE traces", "ddl", ""),
            ("ALTER TABLE traces ADD COLUMN evil int", "ddl", ""),
            ("TRUNCATE traces", "ddl", ""),
            ("SET ROLE postgres", "session_state", ""),
            ("SET SESSION AUTHORIZATION postgres", "session_state", ""),
            ("SET search_path = pg_catalog", "session_state", ""),
            ("SET standard_conforming_strings = off", "session_state", ""),
            ("SET client_encoding = 'SJIS'", "session_state", ""),
            ("SELECT pg_read_file('/etc/passwd')", "function", ""),
            ("SELECT lo_import('/etc/passwd')", "function", ""),
            ("SELECT set_config('role', 'postgres', false)", "function", ""),
            ("select 1; select 2", "multi_statement", ""),
            (f"SELECT id FROM traces WHERE id = '{t}'; SELECT id FROM traces WHERE id = '{u}'",
             "multi_statement", ""),
            (f"WITH d AS (DELETE FROM traces WHERE id = '{t}' RETURNING *) SELECT * FROM d",
             "write", ""),
            (f"SELECT * INTO newtab FROM traces WHERE id = '{t}'", "write", ""),
            (f"SELECT * FROM traces WHERE id = '{t}' FOR UPDATE", "write", ""),
            ("TABLE traces", "trace_scope", ""),
            (f"select string_agg(id, ',') from traces where id = '{t}'", "function", ""),
            (f"SELECT * FROM traces WHERE id = '{t}' UNION SELECT * FROM traces", "trace_scope",
             ""),
            (f"WITH x AS (SELECT * FROM traces) SELECT id FROM x WHERE id = '{t}'",
             "trace_scope", ""),
            (f"SELECT (SELECT count(*) FROM observations) FROM traces WHERE id = '{t}'",
             "trace_scope", ""),
            (f"SELECT o.id FROM traces t RIGHT JOIN observations o ON o.trace_id = t.id "
             f"WHERE t.id = '{t}'", "trace_scope", ""),
            (f"SELECT id FROM traces WHERE id = $${u}$$", "other_trace", ""),
            (f"SELECT id FROM traces WHERE id = E'{u}'", "other_trace", ""),
            ("SELECT * FROM write_probe", "relation", ""),
            ("SELECT * FROM pg_authid", "relation", ""),
            (f"EXPLAIN SELECT * FROM traces WHERE id = '{t}'", "unsupported", ""),
            ("PREPARE p AS SELECT id FROM traces WHERE id = $1", "unsupported", ""),
            ("DO $$ BEGIN END $$", "unsupported", ""),
        ]

    def test_blocked_statements(self):
        before = self.direct("SELECT md5(string_agg(t::text, '' ORDER BY id)) FROM traces t")
        for sql, rule, message in self.blocked_cases():
            with self.subTest(sql=sql):
                p = self.psql(sql)
                got = self.assert_blocked(p, rule, sql)
                if message:
                    self.assertEqual(got, message)
        # Nothing was written, created or dropped.
        self.assertEqual(self.direct("SELECT md5(string_agg(t::text, '' ORDER BY id)) "
                                     "FROM traces t"), before)
        self.assertEqual(self.direct("SELECT count(*) FROM write_probe").strip(), "0")
        self.assertEqual(self.direct("SELECT to_regclass('newtab') IS NULL, "
                                     "to_regclass('evil') IS NULL").strip(), "t|t")

    def test_copy_message_is_exact(self):
        p = self.psql("COPY traces TO STDOUT")
        self.assertEqual(errors_of(p.stderr),
                         [("42501", "tracegate: statement blocked (bulk_export): "
                                    "COPY is not allowed")])
        self.assertEqual(p.stdout, "")
        self.assert_no_other_trace(p.stdout)

    def test_cached_shape_still_checks_the_literal(self):
        # The same statement shape, allowed for T, then with other traces' ids (the verdict
        # cache must not carry the allowance over to other literals).
        sql = "SELECT id, name FROM traces WHERE id = '{}'"
        self.assertTrue(self.psql_ok(sql.format(self.trace)).startswith(self.trace))
        for other in self.others[:3]:
            with self.subTest(other=other):
                self.assert_blocked(self.psql(sql.format(other)), "other_trace", other)

    def test_blocked_statements_are_counted_in_metrics(self):
        def blocked_total() -> float:
            status, body = harness.http_get(self.gw.admin_url + "/metrics")
            self.assertEqual(status, 200)
            values = [float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                      if line.startswith("tracegate_statements_blocked_total{")]
            self.assertTrue(values, "tracegate_statements_blocked_total not exported")
            return sum(values)

        before = blocked_total()
        p = self.psql("SELECT 1", keep_going=True,
                      extra=("-c", "SELECT * FROM traces", "-c", "COPY traces TO STDOUT",
                             "-c", "SET ROLE postgres"))
        self.assertEqual(len(errors_of(p.stderr)), 3, p.stderr)
        # Counted when the session ends.
        wait_for(lambda: blocked_total() >= before + 3, 10, what="blocked statements counted")
        self.assertGreater(blocked_total(), 0)


class GateReadOnlyTest(GateCase):
    """The ways around default_transaction_read_only (DESIGN.md, pgproxy), each sent as
    separate statements in one psql session through the grant, against write_probe, which
    the backend role may INSERT into."""

    def probe_rows(self) -> str:
        return self.direct("SELECT count(*) FROM write_probe").strip()

    def test_backend_role_may_write_write_probe(self):
        # The control: directly (no gateway), the backend role can insert, so a refusal
        # below is the gateway's doing, not a missing privilege.
        out = self.pg.psql("BEGIN; INSERT INTO write_probe VALUES (0, 'control') RETURNING id; "
                           "ROLLBACK;", user="tracegate")
        self.assertEqual(out.strip(), "0")
        self.assertEqual(self.probe_rows(), "0")

    def test_read_only_bypasses_are_refused(self):
        cases = [
            ("begin read write", "begin read write;\ninsert into write_probe values (1,'x');\n"
                                 "commit;\n", 2),
            ("set default_transaction_read_only", "set default_transaction_read_only = off;\n"
                                                  "insert into write_probe values (2,'x');\n", 2),
            ("session characteristics", "set session characteristics as transaction read "
                                        "write;\ninsert into write_probe values (3,'x');\n", 2),
            ("set_config", "select set_config('default_transaction_read_only','off',false);\n"
                           "insert into write_probe values (4,'x');\n", 2),
            ("DO + EXECUTE", "DO $$ BEGIN EXECUTE 'SET default_transaction' || "
                             "'_read_only = off'; END $$;\n"
                             "insert into write_probe values (5,'x');\n", 2),
            # More spellings of the same.
            ("start transaction read write", "start transaction read write;\n"
                                             "insert into write_probe values (6,'x');\n"
                                             "commit;\n", 2),
            ("set transaction read write", "begin;\nset transaction read write;\n"
                                           "insert into write_probe values (7,'x');\n"
                                           "commit;\n", 2),
            ("set local", "begin;\nset local default_transaction_read_only = off;\n"
                          "set local transaction_read_only = off;\n"
                          "insert into write_probe values (8,'x');\ncommit;\n", 3),
            ("reset", "reset default_transaction_read_only;\nreset all;\n"
                      "insert into write_probe values (9,'x');\n", 3),
            ("set_config transaction", "begin;\n"
                                       "select set_config('transaction_read_only','off',true);\n"
                                       "insert into write_probe values (10,'x');\ncommit;\n", 2),
            ("set to 0", "set default_transaction_read_only to 0;\n"
                         "insert into write_probe values (11,'x');\n", 2),
        ]
        for name, script, refusals in cases:
            with self.subTest(name):
                # Ends with a check that the session is still read-only and usable.
                p = self.psql(script + "show transaction_read_only;\n", keep_going=True,
                              script=True)
                errors = errors_of(p.stderr)
                self.assertEqual([e[0] for e in errors], ["42501"] * refusals, p.stderr)
                self.assertTrue(all(m.startswith("tracegate: statement blocked (")
                                    for _, m in errors), p.stderr)
                self.assertEqual(p.stdout.splitlines(), ["on"], p.stderr)
                self.assertEqual(self.probe_rows(), "0", f"{name}: write_probe gained rows")

    def test_read_write_in_one_query_is_refused(self):
        p = self.psql("begin read write; insert into write_probe values (1,'x'); commit")
        self.assert_blocked(p, "multi_statement")
        self.assertEqual(self.probe_rows(), "0")


class GateProtocolTest(GateCase):
    """The extended query protocol through libpq (tests/libpq_client.cpp, gate modes)."""

    def libpq(self, mode: str) -> subprocess.CompletedProcess:
        p = run_libpq_client(self.uri(), mode, self.trace, self.other_trace)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_no_other_trace(p.stdout)
        return p

    def blocked_line(self, label: str, rule: str, message: str) -> str:
        return (f"{label}: PGRES_FATAL_ERROR 42501 tracegate: statement blocked ({rule}): "
                f"{message} (0 row(s))")

    def test_prepared_statement_bound_to_another_trace_is_refused(self):
        t, u = self.trace, self.other_trace
        name = self.direct(f"SELECT name FROM traces WHERE id = '{t}'").strip()
        p = self.libpq("gate-params")
        bind_other = "parameter $1 must be bound to the granted trace id"
        scope = ("traces is not restricted to the granted trace: add traces.id = '<trace id>' "
                 "to WHERE (AND-ed at the top) or to an inner JOIN's ON")
        want = [
            "prepare by_id: PGRES_COMMAND_OK",
            "execute by_id granted: 1 row(s), 1 column(s): id", f"  {t}",
            self.blocked_line("execute by_id other", "other_trace", bind_other),
            "execute by_id granted again: 1 row(s), 1 column(s): id", f"  {t}",
            "exec-params granted: 1 row(s), 2 column(s): id name", f"  {t}|{name}",
            self.blocked_line("exec-params other", "other_trace", bind_other),
            "exec-params granted again: 1 row(s), 2 column(s): id name", f"  {t}|{name}",
            self.blocked_line("prepare all_ids", "trace_scope", scope),
            # The refused Parse created nothing on the server.
            "execute all_ids: PGRES_FATAL_ERROR 26000 prepared statement \"all_ids\" does not "
            "exist (0 row(s))",
            self.blocked_line("sql EXECUTE by_id other", "unsupported",
                              "Execute statements are not allowed"),
            "execute by_id at the end: 1 row(s), 1 column(s): id", f"  {t}",
        ]
        self.assertEqual(p.stdout.splitlines(), want, p.stdout)
        self.assertNotIn(u, p.stdout)

    def test_pipeline_with_a_blocked_middle_query(self):
        # one-sync: granted, refused at Parse, granted; one Sync. The refusal is an error
        # like any other: the rest of the batch up to the Sync is aborted (as PostgreSQL
        # does), and libpq reports it as PGRES_PIPELINE_ABORTED.
        # per-sync: granted, refused at Bind (other trace), granted; a Sync after each: the
        # third query runs.
        t, u = self.trace, self.other_trace
        p = self.libpq("gate-pipeline")
        scope = ("traces is not restricted to the granted trace: add traces.id = '<trace id>' "
                 "to WHERE (AND-ed at the top) or to an inner JOIN's ON")
        want = [
            "one-sync result 0: 1 row(s), 1 column(s): id", f"  {t}",
            self.blocked_line("one-sync result 1", "trace_scope", scope),
            "one-sync result 2: PGRES_PIPELINE_ABORTED   (0 row(s))",
            "one-sync result 3: PGRES_PIPELINE_SYNC",
            "per-sync result 0: 1 row(s), 1 column(s): id", f"  {t}",
            "per-sync result 1: PGRES_PIPELINE_SYNC",
            self.blocked_line("per-sync result 2", "other_trace",
                              "parameter $1 must be bound to the granted trace id"),
            "per-sync result 3: PGRES_PIPELINE_SYNC",
            "per-sync result 4: 1 row(s), 1 column(s): id", f"  {t}",
            "per-sync result 5: PGRES_PIPELINE_SYNC",
            "after pipeline: 1 row(s), 1 column(s): status", "  usable after pipeline",
        ]
        self.assertEqual(p.stdout.splitlines(), want, p.stdout)
        self.assertNotIn(u, p.stdout)


class GateCapTest(GateCase):
    """The grant's row and byte caps (per session) end the statement that crosses them."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        counts = cls.pg.psql("SELECT count(*) FROM observations GROUP BY trace_id").split()
        assert min(int(c) for c in counts) > ROW_CAP, counts

    def test_row_cap_ends_the_statement_and_the_session_stays_usable(self):
        t = self.trace
        script = (f"SELECT * FROM observations WHERE trace_id = '{t}';\n"
                  "SELECT 1 WHERE false;\n"   # no rows: runs normally
                  "BEGIN READ ONLY;\nCOMMIT;\n"
                  "SELECT 'alive';\n")        # the cap is per session: already reached
        p = self.psql(script, "rowcap", keep_going=True, script=True)
        cap = (f"tracegate: statement ended (row_cap): the grant allows at most {ROW_CAP} "
               f"rows per session")
        self.assertEqual(errors_of(p.stderr), [("54000", cap), ("54000", cap)], p.stderr)
        self.assertIn("row_cap", p.stderr)
        # psql drops a result that ends in an error: nothing of the capped statement shows.
        self.assertEqual(p.stdout.strip(), "")
        # Within the cap the same session reads normally.
        # (the -c in extra runs first)
        p = self.psql(f"SELECT * FROM observations WHERE trace_id = '{t}'", "rowcap",
                      keep_going=True, extra=("-c", f"SELECT id FROM traces WHERE id = '{t}'"))
        self.assertEqual(p.stdout.splitlines(), [t], p.stderr)
        self.assertEqual(errors_of(p.stderr), [("54000", cap)])

    def test_a_capped_statement_is_cancelled_on_the_backend(self):
        # Billions of rows: without a cancel the backend would grind on until statement_timeout
        # while the gateway drops them. The gateway sends a CancelRequest at the cap.
        def cancels() -> float:
            status, body = harness.http_get(self.gw.admin_url + "/metrics")
            self.assertEqual(status, 200)
            return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                       if line.startswith("tracegate_cancel_requests_total{"))

        before = cancels()
        t = self.trace
        # (generate_series in the select list streams; in FROM it would be materialised first)
        p = self.psql(f"SELECT o.id, generate_series(1, 2000000000) FROM observations o "
                      f"WHERE o.trace_id = '{t}'", "rowcap", keep_going=True,
                      extra=("-c", "SELECT 'alive'"))
        self.assertEqual([e[0] for e in errors_of(p.stderr)], ["54000"], p.stderr)
        self.assertEqual(p.stdout.split(), ["alive"], p.stderr)
        harness.wait_for(lambda: cancels() > before, timeout=10)

    def test_row_cap_with_a_cursor_hits_on_the_third_fetch(self):
        t = self.trace
        script = ("BEGIN;\n"
                  f"DECLARE c CURSOR FOR SELECT * FROM observations WHERE trace_id = '{t}';\n"
                  "FETCH 2 FROM c;\nFETCH 2 FROM c;\nFETCH 2 FROM c;\n"
                  "CLOSE c;\nCOMMIT;\n")
        p = self.psql(script, "rowcap", keep_going=True, script=True)
        errors = errors_of(p.stderr)
        self.assertEqual([e[0] for e in errors], ["54000"], p.stderr)
        self.assertIn("row_cap", errors[0][1])
        self.assertIn("psql:<stdin>:5:", p.stderr)  # the third FETCH
        rows = p.stdout.splitlines()
        self.assertEqual(len(rows), 4, p.stdout)
        ids = {row.split("|", 2)[0] for row in rows}
        self.assertEqual({row.split("|", 2)[1] for row in rows}, {t})
        self.assertTrue(ids <= self.observations_of(t), ids)
        self.assertEqual(len(ids), 4)
        self.assert_no_other_trace(p.stdout)

    def test_byte_cap_ends_the_statement_and_the_session_stays_usable(self):
        t = self.trace
        size = int(self.direct(f"SELECT octet_length(t::text) FROM traces t WHERE id = '{t}'"))
        self.assertGreater(size, BYTE_CAP)
        script = (f"SELECT * FROM traces WHERE id = '{t}';\n"
                  "SELECT 1;\n"
                  f"SELECT id FROM traces WHERE id = '{t}';\n"
                  f"SELECT * FROM observations WHERE trace_id = '{t}';\n")
        p = self.psql(script, "bytecap", keep_going=True, script=True)
        cap = (f"tracegate: statement ended (byte_cap): the grant allows at most {BYTE_CAP} "
               f"bytes of rows per session")
        self.assertEqual(errors_of(p.stderr), [("54000", cap), ("54000", cap)], p.stderr)
        self.assertEqual(p.stdout.splitlines(), ["1", t], p.stderr)
        self.assert_no_other_trace(p.stdout)


if __name__ == "__main__":
    unittest.main()
