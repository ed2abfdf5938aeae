"""Replaying hostile recordings is safe for the auditor (issue 18, item 4): a real psql
session through the gateway records statements and results that carry terminal escape
sequences (OSC 0 window title, OSC 52 clipboard write, CSI 2J screen clear, C1 CSI/NEL, a bidi
override) and newlines that forge a replay step header, in the SQL, in column names and in
values. Then `tracegate audit replay`:
- text: no raw ESC/C1/bidi byte, no line that looks like a forged step header;
- csv to a pipe: psql's bytes exactly (the escapes are there: the recording has them);
- csv to a terminal (a pseudo-terminal): escaped, with a note on stderr; `--raw` writes them;
- json: parses, holds the recorded values exactly, has no raw ESC/C1/bidi byte.

Run from this folder: python3 -m unittest -v test_replay_safety
"""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import unittest

import harness
from harness import gateway_binary, run_psql, wait_for
from test_audit import AuditCase, audit

harness.install_sigterm_cleanup()

FORGED = "[00:00:00.000001] recording truncated at 1 bytes (1 recorded): nothing after this"
# OSC 0 (title, BEL), OSC 52 (clipboard, ST), CSI 2J (clear), C1 CSI, C1 NEL, RLO.
NASTY = "\x1b]0;owned\x07\x1b]52;c;aGk=\x1b\\\x1b[2J\u009b2J\u0085\u202e"
RAW_BAD = [b"\x1b", b"\x07", "\u009b".encode(), "\u0085".encode(), "\u202e".encode()]


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class ReplaySafetyTest(AuditCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        grant = cls.grant_for_class()
        t = cls.trace
        # A column name is at most 63 bytes: a short forged header plus escapes.
        column = "c\n[00:00:00.000001] rec\x1b]0;T\x07\u009b"
        cls.script = (
            f"SELECT id, {sql_literal(NASTY + chr(10) + FORGED)} AS v, "
            f"{sql_literal('x' + chr(13) + chr(10) + FORGED)} AS w "
            f"FROM traces WHERE id = '{t}';\n"
            f"SELECT id AS \"{column}\" FROM traces WHERE id = '{t}';\n"
            # The forged header inside the statement text itself (a string literal keeps the
            # newline in what psql sends).
            f"SELECT id, '\n{FORGED}\n' AS z FROM traces WHERE id = '{t}';\n")
        cls.psql = run_psql(cls.uri_of(grant), cls.script, args=["--csv", "-q"],
                            stdin_script=True)
        assert cls.psql.returncode == 0, cls.psql.stderr
        cls.session = cls.session_of_class(grant["grant_id"])

    # AuditCase's helpers are instance methods; the class fixture needs them once.
    @classmethod
    def grant_for_class(cls) -> dict:
        case = cls("run")
        return case.grant()

    @classmethod
    def uri_of(cls, grant: dict) -> str:
        return cls("run").uri(grant)

    @classmethod
    def session_of_class(cls, grant_id: str) -> dict:
        return cls("run").session_of(grant_id)

    def replay_bytes(self, fmt: str, *extra: str) -> bytes:
        p = subprocess.run([gateway_binary(), "audit", "replay", "-c", self.config_path,
                            self.session["id"], "--format", fmt, *extra],
                           capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def replay_on_terminal(self, *extra: str) -> tuple[bytes, bytes]:
        """`audit replay --format csv` with stdout on a pseudo-terminal: what the terminal
        received, and stderr."""
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([gateway_binary(), "audit", "replay", "-c", self.config_path,
                                  self.session["id"], "--format", "csv", *extra],
                                 stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        finally:
            os.close(slave)
        got = b""
        try:
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not chunk:
                    break
                got += chunk
        finally:
            os.close(master)
        err = p.stderr.read()
        p.stderr.close()
        self.assertEqual(p.wait(timeout=120), 0, err)
        return got, err

    def assert_no_raw_escape(self, out: bytes, what: str) -> None:
        for bad in RAW_BAD:
            self.assertNotIn(bad, out, f"{what}: raw {bad!r} reached the reader")

    # -- tests -----------------------------------------------------------------------------

    def test_the_recording_holds_the_escapes(self):
        # Without this the other tests could pass on a recording that lost the bytes.
        self.assertIn("\x1b]52;", self.psql.stdout)
        self.assertIn("\u009b", self.psql.stdout)
        # run_psql reads text with universal newlines, so psql's CR LF arrives as LF.
        self.assertEqual(self.replay_bytes("csv").decode().replace("\r\n", "\n"),
                         self.psql.stdout)

    def test_text_escapes_and_cannot_be_forged(self):
        out = self.replay_bytes("text")
        self.assert_no_raw_escape(out, "text")
        self.assertNotIn(b"\r", out)
        text = out.decode()
        headers = [line for line in text.splitlines() if line.startswith("[")]
        self.assertTrue(headers, text)
        for line in text.splitlines():
            self.assertFalse(line.startswith("[00:00:00.000001]"), line)
            self.assertFalse(line.startswith("recording truncated"), line)
        # The recorded text is there, shown, not lost.
        self.assertIn("\\x1B]52;c;aGk=", text)
        self.assertIn("\\u009B2J", text)
        self.assertIn("  [00:00:00.000001] recording truncated", text)

    def test_csv_on_a_terminal_is_escaped(self):
        shown, err = self.replay_on_terminal()
        self.assert_no_raw_escape(shown, "csv on a terminal")
        self.assertIn(b"\\x1B]52;c;aGk=", shown)
        self.assertIn(b"\\u009B2J", shown)
        self.assertIn(b"escaped for the terminal", err)

    def test_csv_raw_on_a_terminal_is_what_was_asked(self):
        shown, _ = self.replay_on_terminal("--raw")
        self.assertIn(b"\x1b]52;c;aGk=", shown)  # the flag works, so the test above can fail

    def test_json_parses_and_has_no_raw_escape(self):
        out = self.replay_bytes("json")
        self.assert_no_raw_escape(out, "json")
        replay = json.loads(out)
        rows = [r for s in replay["steps"] if s["kind"] == "result" for r in s["rows"]]
        self.assertIn([self.trace, NASTY + "\n" + FORGED, "x\r\n" + FORGED], rows)
        columns = [c["name"] for s in replay["steps"] if s["kind"] == "result"
                   for c in (s["columns"] or [])]
        self.assertIn("c\n[00:00:00.000001] rec\x1b]0;T\x07\u009b", columns)
        queries = [s["sql"] for s in replay["steps"] if s["kind"] == "query"]
        self.assertTrue(any(f"\n{FORGED}\n" in q for q in queries), queries)


class VerifyChecksTheIndexTest(AuditCase):
    """`tracegate audit verify` passes the session index to the log check (issue 18, item 2):
    a session whose index row is gone is named."""

    def test_a_missing_index_row_fails_verify(self):
        grant = self.grant()
        p = run_psql(self.uri(grant), f"SELECT id FROM traces WHERE id = '{self.trace}'")
        self.assertEqual(p.returncode, 0, p.stderr)
        session = self.session_of(grant["grant_id"])
        ok = audit(self.config_path, "verify", "--live")
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        with sqlite3.connect(self.gw.config["state"]["path"], timeout=10) as db:
            db.execute("DELETE FROM sessions WHERE id = ?", (session["id"],))
        found: list[str] = []

        def named() -> bool:
            # --live: a start after the last checkpoint is only a note until one signs it.
            p = audit(self.config_path, "verify", "--live")
            found[:] = [p.stdout]
            return p.returncode == 1 and f"session {session['id']} has no row" in p.stdout

        wait_for(named, 30, what="verify naming the session without an index row")
        self.assertIn("FAILED", found[0])


if __name__ == "__main__":
    unittest.main()
