"""Evidence that survives restarts, and records that bytes PostgreSQL never saw cannot fill
(issue 18, items 2 and 3), through the real gateway, grants API, psql and raw sockets
against a real PostgreSQL.

Item 2: Postgres session ids were a counter restarting at 000001 with every process start,
and the index row of the earlier session was overwritten. Ids are now random ("p" + 16 hex,
like the HTTP path's "h" ids) and the index refuses to replace another session's row. Two
gateway runs over one audit directory and one state store, one psql read each: both
sessions are found by `audit sessions --trace`, both replay, and `audit verify` is OK.

Item 3: CopyData frames dropped by the gate were recorded verbatim and counted against
audit.max_session_bytes, and a frame the message limit allowed could be larger than an audit
record. Dropped frames are now recorded as a bounded summary (type, count, bytes, verdict),
and the client message limit is at most what one record holds, so such a frame is refused at
its header (08P01) instead of ending the session with 58030.

Run from this folder: python3 -m unittest -v test_session_ids
(CTest sets TRACEGATE_BIN, LIBPQ_CLIENT and TRACEGATE_ROOT; see harness.py.)
"""

from __future__ import annotations

import json
import re
import struct
import unittest

import harness
from harness import run_psql, wait_for
from test_audit import AuditCase, answer_or_end, audit, raw_session

harness.install_sigterm_cleanup()

SESSION_ID = re.compile(r"^p[0-9a-f]{16}$")


class SessionIdsAcrossRestartsTest(AuditCase):
    def read_once(self, trace: str) -> dict:
        grant = self.grant(trace=trace)
        p = run_psql(self.uri(grant), f"SELECT id FROM traces WHERE id = '{trace}'")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), trace)
        return self.session_of(grant["grant_id"])

    def sessions_of_trace(self, trace: str) -> list[dict]:
        p = audit(self.config_path, "sessions", "--trace", trace, "--format", "json",
                  "--limit", "1000")
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def test_two_runs_over_one_audit_directory_keep_both_sessions(self):
        first_trace, second_trace = self.pg.psql(
            "select id from traces order by id limit 2").split()
        first = self.read_once(first_trace)
        # A restart: the same audit directory, the same state store, a new process.
        self.gw.stop()
        self.gw.start()
        wait_for(lambda: harness.port_accepts(self.api.host, self.api.port), 30,
                 what="api listening after the restart")
        second = self.read_once(second_trace)

        self.assertRegex(first["id"], SESSION_ID)
        self.assertRegex(second["id"], SESSION_ID)
        self.assertNotEqual(first["id"], second["id"])
        # Each trace's reader is found, with its own session.
        self.assertIn(first["id"], [s["id"] for s in self.sessions_of_trace(first_trace)])
        self.assertIn(second["id"], [s["id"] for s in self.sessions_of_trace(second_trace)])
        # Both replay, each with its own trace's row.
        for session, trace in [(first, first_trace), (second, second_trace)]:
            replay = json.loads(self.replay(session["id"], "json"))
            self.assertEqual(replay["session"]["trace_id"], trace)
            rows = [r for s in replay["steps"] if s["kind"] == "result" for r in s["rows"]]
            self.assertEqual(rows, [[trace]])
        p = audit(self.config_path, "verify", "--live")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("OK", p.stdout)


def copy_data(size: int) -> bytes:
    return b"d" + struct.pack("!I", size + 4) + b"\0" * size


class UnforwardedFramesTest(AuditCase):
    def ended_replay(self, grant: dict) -> tuple[dict, dict]:
        session = self.session_of(grant["grant_id"])
        return session, json.loads(self.replay(session["id"], "json"))

    def test_dropped_copy_data_is_summarised_and_cannot_fill_the_record(self):
        # The reproduction: 27 x 10 MiB CopyData (no COPY is running: the gate drops
        # them, as PostgreSQL would ignore them), then a SELECT. 270 MiB is past the default
        # 256 MiB cap; none of it reached PostgreSQL, so none of it is charged to the record.
        grant = self.grant()
        frame = copy_data(10 << 20)
        sql = f"SELECT 'after-the-copy-data' AS m, id FROM traces WHERE id = '{self.trace}'"
        with raw_session(self, grant) as conn:
            for _ in range(27):
                conn.send(frame)
            rows, fatal = answer_or_end(conn, sql)
            self.assertIsNone(fatal, fatal)
            self.assertEqual(rows, [("after-the-copy-data", self.trace)])
            conn.terminate()
        session, replay = self.ended_replay(grant)
        self.assertEqual(session["outcome"], "completed", session)
        kinds = [s["kind"] for s in replay["steps"]]
        self.assertNotIn("truncated", kinds)
        summaries = [s for s in replay["steps"] if s["kind"] == "unforwarded"]
        self.assertTrue(summaries, kinds)
        frames = [f for s in summaries for f in s["frames"]]
        self.assertEqual({(f["type"], f["verdict"]) for f in frames}, {("d", "dropped")})
        self.assertEqual(sum(f["count"] for f in frames), 27)
        self.assertEqual(sum(f["bytes"] for f in frames), 27 * len(frame))
        # The statement after them, and its answer, are in the record.
        self.assertEqual([s["sql"] for s in replay["steps"] if s["kind"] == "query"], [sql])
        results = [s for s in replay["steps"] if s["kind"] == "result"]
        self.assertEqual(results[-1]["rows"], [["after-the-copy-data", self.trace]])
        self.assertEqual(replay["end"]["unforwarded"]["frames"], 27)
        # The log holds a summary, not 270 MiB of zeros.
        self.assertLess(sum(len(s.get("frames", [])) for s in summaries), 27 + 1)
        p = audit(self.config_path, "verify", "--live")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_a_frame_larger_than_a_record_is_refused_at_its_header(self):
        # The second reproduction: one 60 MiB frame (allowed by the configured
        # 64 MiB limit) ended the session with 58030, because a record holds at most 32 MiB.
        # The message limit is now at most what a record holds: 08P01 at the header, before
        # anything is buffered, and the session's record says why.
        grant = self.grant()
        with raw_session(self, grant) as conn:
            conn.send(b"d" + struct.pack("!I", (60 << 20) + 4))
            fields = conn.read_until_error_or_close()
        self.assertIsNotNone(fields)
        self.assertEqual(fields["C"], "08P01", fields)
        self.assertIn("exceeds the limit of", fields["M"])
        session, replay = self.ended_replay(grant)
        self.assertIn("[08P01]", replay["end"]["reason"])
        self.assertNotIn("58030", replay["end"]["reason"])

    def test_a_frame_just_under_the_record_limit_is_accepted_and_recorded(self):
        # 30 MiB of CopyData is within both limits: dropped (summarised), and the session
        # goes on. A 30 MiB refused statement is summarised with its first bytes (refused
        # statements up to 64 KiB are kept verbatim).
        grant = self.grant()
        refused = "SELECT count(*) FROM traces /* " + "x" * (30 << 20) + " */"
        with raw_session(self, grant) as conn:
            conn.send(copy_data(30 << 20))
            rows, fatal = answer_or_end(conn, refused)
            self.assertIsNone(fatal, fatal)
            rows, fatal = answer_or_end(conn, f"SELECT id FROM traces WHERE id = '{self.trace}'")
            self.assertIsNone(fatal, fatal)
            self.assertEqual(rows, [(self.trace,)])
            conn.terminate()
        session, replay = self.ended_replay(grant)
        self.assertEqual(session["outcome"], "completed", session)
        frames = [f for s in replay["steps"] if s["kind"] == "unforwarded" for f in s["frames"]]
        self.assertEqual([(f["type"], f["verdict"], f["count"]) for f in frames],
                         [("d", "dropped", 1), ("Q", "refused", 1)])
        self.assertTrue(frames[1]["head"].startswith("SELECT count(*) FROM traces /* xxx"))
        self.assertLessEqual(len(frames[1]["head"]), 1024)
        # The refusal, as sent: the gate refuses a statement this long before parsing it.
        errors = [s for s in replay["steps"] if s["kind"] == "error"]
        self.assertEqual([e["sqlstate"] for e in errors], ["54001"])


if __name__ == "__main__":
    unittest.main()
