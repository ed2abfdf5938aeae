"""Inline masking, end to end: grants whose policy rule names a masking profile read a trace
planted with personal data and secrets through the real gateway (real OIDC provider, the
grants API, psql and libpq against a real PostgreSQL). What the client receives has every
planted value masked, in plain columns, in jsonb, in JSON inside a JSON string and in the
backend's own error messages; opaque reasoning fields pass byte for byte; JSON stays valid;
values masking cannot read (bytea, binary numbers) end the statement instead of passing;
the session reports its counts. The same trace read under a rule without masking shows the
raw values, so the checks cannot pass on an empty trace.

Run from this folder: python3 -m unittest -v test_mask
(CTest sets TRACEGATE_BIN, LIBPQ_CLIENT and TRACEGATE_ROOT; see harness.py.)
"""

from __future__ import annotations

import json
import os
import re
import unittest
import urllib.parse

import harness
from harness import PgServer, run_libpq_client, run_psql, wait_for
from oidc import OidcProvider
from test_gate import errors_of
from test_grants import access_config, start_access_plane

harness.install_sigterm_cleanup()

CLIENTS = {
    "plain": {"groups": ["trace-readers"]},
    "masked": {"groups": ["masked-readers"]},
    "pseudo": {"groups": ["pseudo-readers"]},
}

_TERMS = {"connections": ["traces-pg"], "ttl": "5m", "uses": 50, "max_session": "5m"}
POLICY = {
    "max_ttl": "5m",
    "rules": [
        {"name": "plain", "groups": ["trace-readers"], **_TERMS},
        {"name": "masked", "groups": ["masked-readers"], "masking_profile": "default",
         **_TERMS},
        {"name": "pseudo", "groups": ["pseudo-readers"], "masking_profile": "joinable",
         **_TERMS},
    ],
}

TRACE = "tr-planted-pii"

# Planted values (synthetic: documentation ranges, test card numbers, EXAMPLE keys).
EMAIL = "jane.doe@example.com"
EMAIL2 = "john.smith@example.org"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
PHONE = "+1 415 555 0132"
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
PEM = ("-----BEGIN " + "RSA PRIVATE KEY-----\n" + "EXAMPLEKEYBODY+/" * 8 + "\n"
       + "EXAMPLEKEYBODY+/" * 4 + "==\n-----END RSA PRIVATE KEY-----")
SIGNATURE = "EqQBCkgIARABGAIiQLk9xPzq0cWt1hWJ3lq5b0Kc4yVbQ9Z2mJ3Xf0QxYz0123456789abcdefAB=="
PLANTED = [EMAIL, EMAIL2, CARD, IBAN, AWS_KEY, "EXAMPLEKEYBODY", "john.smith", "jane.doe",
           "0532 0130"]

METADATA = {
    "user": {"email": EMAIL2, "iban": IBAN, "support_email": "help@example.net"},
    # JSON that sits as a string inside JSON
    "tool_result": json.dumps({"aws_access_key_id": AWS_KEY, "card": CARD}),
    "signature": SIGNATURE,
}
INPUT = {
    "messages": [{"role": "user", "content": f"Call me at {PHONE} or mail {EMAIL}"},
                 {"role": "tool", "content": PEM}],
    "version": "numpy 1.10.23 in utils.py",
}
OUTPUT = {"content": [{"type": "thinking", "thinking": "plan", "signature": SIGNATURE}]}


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def plant_trace(pg: PgServer) -> None:
    """Inserts trace TRACE (EMAIL in its name; INPUT, OUTPUT, METADATA) into pg's traces."""
    pg.psql(
        "INSERT INTO traces (id, name, user_id, session_id, input, output, metadata) "
        f"VALUES ({sql_literal(TRACE)}, {sql_literal('contact ' + EMAIL)}, 'u1', "
        f"'sess-1', {sql_literal(json.dumps(INPUT))}::jsonb, "
        f"{sql_literal(json.dumps(OUTPUT))}::jsonb, "
        f"{sql_literal(json.dumps(METADATA))}::jsonb);")


def mask_config(pg: PgServer, idp: OidcProvider, tmp: str) -> dict:
    cfg = access_config(pg, idp, tmp, POLICY)
    key_file = os.path.join(tmp, "pseudonym.key")
    with open(key_file, "w", encoding="utf-8") as f:
        f.write("test-pseudonym-key-0123456789abcdef\n")
    cfg["masking_profiles"] = [
        {"name": "default",
         "field_rules": [
             # a column masked whole, and a JSON path kept verbatim
             {"column": "session_id", "action": "mask", "entity": "SESSION"},
             {"column": "metadata", "path": "$.user.support_email", "action": "keep"},
         ]},
        {"name": "joinable",
         "default_strategy": {"kind": "pseudonymize"},
         "strategies": {"CARD": {"kind": "partial", "keep_last": 4}},
         "pseudonym_key_file": key_file},
    ]
    return cfg


class MaskCase(harness.ClassFixtures, unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        start_access_plane(cls, "tg-mask-", lambda: mask_config(cls.pg, cls.idp, cls.tmp),
                           clients=CLIENTS)
        cls.pg.psql(
            "INSERT INTO traces (id, name, user_id, session_id, input, output, metadata) VALUES ("
            f"{sql_literal(TRACE)}, {sql_literal('contact ' + EMAIL)}, {sql_literal(CARD)}, "
            "'sess-4242', "
            f"{sql_literal(json.dumps(INPUT))}::jsonb, {sql_literal(json.dumps(OUTPUT))}::jsonb, "
            f"{sql_literal(json.dumps(METADATA))}::jsonb);"
            "INSERT INTO observations (id, trace_id, type, name, input) VALUES ("
            f"'obs-planted', {sql_literal(TRACE)}, 'GENERATION', 'llm', "
            f"{sql_literal(json.dumps({'prompt': 'card ' + CARD + ' iban ' + IBAN}))}::jsonb);"
            "INSERT INTO scores (id, trace_id, name, value, comment) VALUES ("
            f"'score-planted', {sql_literal(TRACE)}, 'quality', 0.5, "
            f"{sql_literal('reviewed by ' + EMAIL)});")
        cls.grants: dict[str, dict] = {}

    def uri(self, client: str) -> str:
        # A fresh grant per session keeps the tests independent of each other's sessions.
        status, out = self.api.grant(self.idp.token(client), TRACE)
        self.assertEqual(status, 201, out)
        return out["postgres"]["uri"] + "&sslrootcert=" + urllib.parse.quote(self.ca_file)

    def psql(self, sql: str, client: str = "masked", *, script: bool = False):
        return run_psql(self.uri(client), sql, args=["-qAt", "-v", "ON_ERROR_STOP=0"],
                        stdin_script=script)

    def assert_nothing_planted(self, text: str) -> None:
        for value in PLANTED:
            self.assertNotIn(value, text)

    def metric(self, name: str, labels: str) -> float:
        status, text = harness.http_get(self.gw.admin_url + "/metrics")
        self.assertEqual(status, 200)
        m = re.search(rf"^{name}\{{[^}}]*{labels}[^}}]*\}} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0


class MaskedReadTest(MaskCase):
    def test_without_masking_the_planted_values_are_there(self):
        p = self.psql(f"SELECT name, user_id, input, metadata FROM traces WHERE id = '{TRACE}'",
                      "plain")
        self.assertEqual(p.returncode, 0, p.stderr)
        for value in (EMAIL, CARD, IBAN, AWS_KEY, PHONE):
            self.assertIn(value, p.stdout)

    def test_plain_columns_jsonb_and_json_in_a_string_are_masked(self):
        p = self.psql(f"SELECT name, user_id, input, output, metadata FROM traces "
                      f"WHERE id = '{TRACE}'")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_nothing_planted(p.stdout)
        name, user_id, input_, output, metadata = p.stdout.rstrip("\n").split("|")
        self.assertEqual(name, "contact [REDACTED:EMAIL]")
        self.assertEqual(user_id, "[REDACTED:CARD]")
        # Valid JSON after masking; opaque fields byte for byte; traps untouched.
        input_, output, metadata = json.loads(input_), json.loads(output), json.loads(metadata)
        self.assertEqual(input_["messages"][0]["content"],
                         "Call me at [REDACTED:PHONE] or mail [REDACTED:EMAIL]")
        self.assertIn("[REDACTED:PRIVATE_KEY]", input_["messages"][1]["content"])
        self.assertEqual(input_["version"], "numpy 1.10.23 in utils.py")
        self.assertEqual(metadata["user"], {"email": "[REDACTED:EMAIL]",
                                            "iban": "[REDACTED:IBAN]",
                                            "support_email": "help@example.net"})
        self.assertEqual(json.loads(metadata["tool_result"]),
                         {"aws_access_key_id": "[REDACTED:AWS_ACCESS_KEY]",
                          "card": "[REDACTED:CARD]"})
        self.assertEqual(metadata["signature"], SIGNATURE)
        self.assertEqual(output, OUTPUT)

    def test_field_rules_mask_a_column_whole(self):
        p = self.psql(f"SELECT session_id FROM traces WHERE id = '{TRACE}'")
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "[REDACTED:SESSION]"), p.stderr)
        p = self.psql(f"SELECT session_id FROM traces WHERE id = '{TRACE}'", "plain")
        self.assertEqual(p.stdout.strip(), "sess-4242")

    def test_aliases_cannot_dodge_or_claim_a_field_rule(self):
        # Rules follow the stored column (the catalog's name), not the result's alias...
        p = self.psql(f"SELECT session_id AS x FROM traces WHERE id = '{TRACE}'")
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "[REDACTED:SESSION]"), p.stderr)
        # ...and a computed column named like a column with a keep rule, shaped like the kept
        # path, keeps nothing but opaque blobs.
        p = self.psql("SELECT jsonb_build_object('user', jsonb_build_object("
                      "'support_email', name)) AS metadata "
                      f"FROM traces WHERE id = '{TRACE}'")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout),
                         {"user": {"support_email": "contact [REDACTED:EMAIL]"}})

    def test_json_operators_and_other_trace_tables_are_masked(self):
        p = self.psql(
            f"SELECT metadata->'user'->>'email' FROM traces WHERE id = '{TRACE}';\n"
            f"SELECT input->'messages'->0->>'content' FROM traces WHERE id = '{TRACE}';\n"
            f"SELECT input->>'prompt' FROM observations WHERE trace_id = '{TRACE}';\n"
            f"SELECT comment FROM scores WHERE trace_id = '{TRACE}';\n", script=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(), [
            "[REDACTED:EMAIL]",
            "Call me at [REDACTED:PHONE] or mail [REDACTED:EMAIL]",
            "card [REDACTED:CARD] iban [REDACTED:IBAN]",
            "reviewed by [REDACTED:EMAIL]",
        ])

    def test_values_quoted_in_backend_errors_are_masked(self):
        # PostgreSQL quotes the value it could not convert: the error is masked too.
        p = self.psql(f"SELECT (metadata->'user'->>'email')::int FROM traces "
                      f"WHERE id = '{TRACE}'")
        self.assertEqual(errors_of(p.stderr),
                         [("22P02", 'invalid input syntax for type integer: "[REDACTED:EMAIL]"')],
                         p.stderr)
        self.assert_nothing_planted(p.stderr)

    def test_pseudonyms_are_stable_across_sessions_and_partial_keeps_the_last_four(self):
        sql = (f"SELECT name, user_id, metadata->'user'->>'email' FROM traces "
               f"WHERE id = '{TRACE}'")
        first = self.psql(sql, "pseudo")
        second = self.psql(sql, "pseudo")
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertEqual(first.stdout, second.stdout)
        name, user_id, email2 = first.stdout.rstrip("\n").split("|")
        self.assertRegex(name, r"^contact \[EMAIL:[0-9a-f]{8}\]$")
        self.assertRegex(email2, r"^\[EMAIL:[0-9a-f]{8}\]$")
        self.assertNotEqual(name.removeprefix("contact "), email2)  # two addresses, two tokens
        self.assertEqual(user_id, "**** **** **** 1111")
        self.assert_nothing_planted(first.stdout)

    def test_binary_format_text_is_masked_and_unreadable_values_end_the_statement(self):
        uri = self.uri("masked")
        p = run_libpq_client(uri, "binary-query",
                             f"SELECT name, metadata FROM traces WHERE id = '{TRACE}'")
        self.assertEqual(p.returncode, 0, p.stderr)
        fields = dict(part.split("=", 1) for part in p.stdout.split())
        self.assertEqual(bytes.fromhex(fields["name"]).decode(), "contact [REDACTED:EMAIL]")
        metadata = bytes.fromhex(fields["metadata"])
        self.assertEqual(metadata[0], 1)  # binary jsonb: version byte, then the text
        self.assertEqual(json.loads(metadata[1:])["user"]["email"], "[REDACTED:EMAIL]")
        # A card number held as a number cannot be masked in binary: the statement ends.
        p = run_libpq_client(self.uri("masked"), "binary-query",
                             f"SELECT 4111111111111111::int8 AS card, id FROM traces "
                             f"WHERE id = '{TRACE}'")
        self.assertIn("PGRES_FATAL_ERROR 0A000", p.stdout, p.stderr)
        self.assertIn('column "card" holds a number the masking profile masks', p.stdout)
        self.assertNotIn("4111", p.stdout.replace('"card"', ""))

    def test_sql_that_rewrites_values_before_masking_is_refused(self):
        # Each would carry a planted value past the masker in pieces or in disguise.
        attempts = [
            "SELECT substr(user_id, 1, 9), substr(user_id, 10) FROM traces WHERE id = '{t}'",
            "SELECT reverse(name) FROM traces WHERE id = '{t}'",
            "SELECT replace(name, '@', ' at ') FROM traces WHERE id = '{t}'",
            "SELECT lower(metadata->>'tool_result') FROM traces WHERE id = '{t}'",
            "SELECT name::bytea FROM traces WHERE id = '{t}'",
            "SELECT CAST(user_id AS varchar(9)) FROM traces WHERE id = '{t}'",
            "SELECT 'x' || user_id FROM traces WHERE id = '{t}'",
            "SELECT regexp_match(name, '(.*)@(.*)') FROM traces WHERE id = '{t}'",
            "WITH s AS (SELECT split_part(name, '@', 1) AS p FROM traces WHERE id = '{t}') "
            "SELECT p FROM s",
        ]
        script = "".join(a.format(t=TRACE) + ";\n" for a in attempts)
        p = self.psql(script + "SELECT 'usable';\n", script=True)
        errors = errors_of(p.stderr)
        self.assertEqual([e[0] for e in errors], ["42501"] * len(attempts), p.stderr)
        for _, message in errors:
            self.assertIn("tracegate: statement blocked (masking_bypass)", message)
        self.assertEqual(p.stdout.strip(), "usable")
        self.assert_nothing_planted(p.stdout + p.stderr)
        # Without masking the same SQL is an ordinary read.
        p = self.psql(attempts[0].format(t=TRACE), "plain")
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_session_reports_counts_by_entity(self):
        before = self.metric("tracegate_masked_values_total", 'entity="EMAIL"')
        p = self.psql(f"SELECT name, metadata FROM traces WHERE id = '{TRACE}'")
        self.assertEqual(p.returncode, 0, p.stderr)
        wait_for(lambda: self.metric("tracegate_masked_values_total", 'entity="EMAIL"')
                 >= before + 2, 10, what="masked EMAIL counted")
        wait_for(lambda: re.search(r"masking=default: \d+ values masked \(.*EMAIL=2",
                                   self.gw.stderr_text()) is not None, 10,
                 what="session log line with counts")

    def test_planted_values_never_reach_the_gateway_log(self):
        self.psql(f"SELECT name, metadata FROM traces WHERE id = '{TRACE}'")
        self.psql(f"SELECT (metadata->'user'->>'email')::int FROM traces WHERE id = '{TRACE}'")
        self.assert_nothing_planted(self.gw.stderr_text())


def _q(sql: str) -> bytes:
    return harness.message(b"Q", sql.encode() + b"\0")


def _ext(sql: str) -> bytes:
    """One extended-protocol statement in a run of its own."""
    return harness.pg_run(sql) + harness.pg_sync()


class MaskedCursorTest(MaskCase):
    """Issue 16, hole 3: a portal's columns can change under the gate (a cursor closed and
    declared again, by either protocol). Whatever the order, values of the new cursor are
    masked, and a FETCH portal bound before its cursor changed is refused. Raw pgwire, so
    the exact message sequences of the issue are sent."""

    NEW_CURSOR = f"DECLARE c CURSOR FOR SELECT name, user_id FROM traces WHERE id = '{TRACE}'"

    def connect(self, client: str = "masked") -> harness.RawPgConn:
        status, out = self.api.grant(self.idp.token(client), TRACE)
        self.assertEqual(status, 201, out)
        conn = harness.RawPgConn(self.gw.host, self.gw.port)
        conn.start_tls()
        conn.startup(out["postgres"]["user"], out["postgres"]["password"])
        return conn

    def open_timestamp_cursor(self, conn: harness.RawPgConn, describe: bool) -> None:
        """BEGIN; DECLARE c over now() (a timestamptz, passed unread by the masker); Execute c
        (the gate slips in a Describe); optionally the client's own Describe of c."""
        for sql in ("BEGIN READ ONLY",
                    f"DECLARE c CURSOR FOR SELECT now() FROM traces WHERE id = '{TRACE}'"):
            self.assertNotIn(b"E", [t for t, _ in conn.exchange(_q(sql))], sql)
        out = conn.exchange(harness.pg_execute("c") + harness.pg_sync())
        self.assertEqual([t for t, _ in out], [b"D", b"C", b"Z"])
        if describe:
            out = conn.exchange(harness.pg_describe(b"P", "c") + harness.pg_sync())
            self.assertEqual([t for t, _ in out], [b"T", b"Z"])

    def assert_masked_rows(self, out: list[tuple[bytes, bytes]], what: str) -> None:
        rows = [harness.parse_data_row(b) for t, b in out if t == b"D"]
        errors = [harness.parse_error_fields(b) for t, b in out if t == b"E"]
        self.assertEqual(errors, [], what)
        self.assertEqual(len(rows), 1, f"{what}: {out}")
        text = json.dumps(rows)
        self.assert_nothing_planted(text)
        self.assertIn("[REDACTED:EMAIL]", text, what)

    def test_a_redeclared_cursor_is_described_again_and_masked(self):
        changes = {
            "extended CLOSE, extended DECLARE (the issue)": [_ext("CLOSE c"),
                                                             _ext(self.NEW_CURSOR)],
            "simple CLOSE, extended DECLARE": [_q("CLOSE c"), _ext(self.NEW_CURSOR)],
            "extended CLOSE ALL, extended DECLARE": [_ext("CLOSE ALL"), _ext(self.NEW_CURSOR)],
            "Close message, extended DECLARE": [harness.pg_close(b"P", "c") + harness.pg_sync(),
                                                _ext(self.NEW_CURSOR)],
            "CLOSE and DECLARE in one extended run": [
                harness.pg_run("CLOSE c") + harness.pg_run(self.NEW_CURSOR) + harness.pg_sync()],
        }
        reads = {
            "Execute c": harness.pg_execute("c") + harness.pg_sync(),
            "extended FETCH bound after": _ext("FETCH ALL FROM c"),
            "simple FETCH": _q("FETCH ALL FROM c"),
        }
        for change, steps in changes.items():
            for read, frames in reads.items():
                for describe in (False, True):
                    what = f"{change}; {read}; client Describe before: {describe}"
                    with self.subTest(what), self.connect() as conn:
                        self.open_timestamp_cursor(conn, describe)
                        for step in steps:
                            out = conn.exchange(step)
                            self.assertNotIn(b"E", [t for t, _ in out], f"{what}: {out}")
                        self.assert_masked_rows(conn.exchange(frames), what)
                        conn.terminate()

    def test_the_same_sequence_unmasked_shows_the_planted_value(self):
        with self.connect("plain") as conn:
            self.open_timestamp_cursor(conn, True)
            conn.exchange(_ext("CLOSE c"))
            conn.exchange(_ext(self.NEW_CURSOR))
            out = conn.exchange(harness.pg_execute("c") + harness.pg_sync())
            rows = [harness.parse_data_row(b) for t, b in out if t == b"D"]
            self.assertEqual(rows, [("contact " + EMAIL, CARD)])

    def test_a_fetch_portal_bound_before_its_cursor_changed_is_refused(self):
        with self.connect() as conn:
            self.open_timestamp_cursor(conn, False)
            out = conn.exchange(harness.pg_parse("f", "FETCH ALL FROM c")
                                + harness.pg_bind("pf", "f") + harness.pg_sync())
            self.assertEqual([t for t, _ in out], [b"1", b"2", b"Z"])
            conn.exchange(_ext("CLOSE c"))
            conn.exchange(_ext(self.NEW_CURSOR))
            # PostgreSQL would run pf against the new c under the old (timestamptz) columns.
            out = conn.exchange(harness.pg_describe(b"P", "pf") + harness.pg_execute("pf")
                                + harness.pg_sync())
            self.assertNotIn(b"D", [t for t, _ in out], out)
            errors = [harness.parse_error_fields(b) for t, b in out if t == b"E"]
            self.assertEqual(len(errors), 1, out)
            self.assertEqual(errors[0]["C"], "42501")
            self.assertIn('statement blocked (unsupported): portal "pf" runs FETCH',
                          errors[0]["M"])
            # The session goes on: a FETCH portal executed right after its Bind works.
            conn.exchange(_q("ROLLBACK"))
            conn.exchange(_q("BEGIN READ ONLY"))
            conn.exchange(_q(self.NEW_CURSOR))
            self.assert_masked_rows(conn.exchange(harness.pg_bind("pf", "f")
                                                  + harness.pg_execute("pf") + harness.pg_sync()),
                                    "FETCH portal executed after its Bind")

    def test_a_prepared_statement_reused_after_a_declare_is_still_masked(self):
        with self.connect() as conn:
            self.open_timestamp_cursor(conn, False)
            sql = "SELECT name, user_id FROM traces WHERE id = $1"
            run = harness.pg_bind("", "s", [TRACE]) + harness.pg_execute("") + harness.pg_sync()
            self.assert_masked_rows(conn.exchange(harness.pg_parse("s", sql) + run), "first")
            conn.exchange(_ext("CLOSE c"))
            conn.exchange(_ext(self.NEW_CURSOR))
            self.assert_masked_rows(conn.exchange(run), "after DECLARE")
            # A named portal of the cursor's name, bound from the statement: described anew.
            conn.exchange(_ext("CLOSE c"))
            self.assert_masked_rows(conn.exchange(harness.pg_bind("c", "s", [TRACE])
                                                  + harness.pg_execute("c") + harness.pg_sync()),
                                    "portal c bound from s")


if __name__ == "__main__":
    unittest.main()
