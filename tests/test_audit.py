"""Session recording and audit, end to end: sessions through the real gateway (real OIDC
provider, the grants API, psql and libpq against a real PostgreSQL) land in the audit log and
its index; `tracegate audit sessions|replay|verify|export` and GET /v1/sessions answer from
them; the replay equals, byte for byte, what psql printed; the log survives kill -9 with
every answered statement in it; edits to the log are named by verify; a full disk refuses
sessions instead of answering them unrecorded.

Run from this folder: python3 -m unittest -v test_audit
(CTest sets TRACEGATE_BIN, LIBPQ_CLIENT and TRACEGATE_ROOT; see harness.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import unittest
import urllib.parse

import harness
from harness import (Gateway, PgServer, free_port, gateway_binary, make_self_signed_cert,
                     run_libpq_client, run_psql, scram_verifier, sqlstate_of, to_yaml, wait_for)
from oidc import OidcProvider
from test_grants import issuer_config, start_access_plane, stop_access_plane

harness.install_sigterm_cleanup()

CLIENTS = {
    "reader": {"groups": ["trace-readers"]},
    "masked": {"groups": ["masked-readers"]},
    "auditor": {"groups": ["auditors"]},
}
_TERMS = {"connections": ["traces-pg"], "ttl": "5m", "uses": 20, "max_session": "5m"}
POLICY = {
    "max_ttl": "5m",
    "rules": [
        {"name": "read", "groups": ["trace-readers"], **_TERMS},
        {"name": "read-masked", "groups": ["masked-readers"], "masking_profile": "default",
         **_TERMS},
    ],
}
PII_TRACE = "tr-audit-pii"
EMAIL = "jane.doe@example.com"


def generate_key(path: str) -> str:
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", path], check=True,
                   capture_output=True)
    pub = path + ".pub"
    subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-out", pub], check=True,
                   capture_output=True)
    return pub


def tracegate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([gateway_binary(), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def audit(config_path: str, *args: str) -> subprocess.CompletedProcess:
    return tracegate("audit", args[0], "-c", config_path, *args[1:])


def audit_config(pg: PgServer, idp: OidcProvider, tmp: str) -> dict:
    cert, key = make_self_signed_cert(tmp, "gateway")
    signing_key = os.path.join(tmp, "audit-signing.pem")
    generate_key(signing_key)
    cfg = Gateway.config_for(pg, users={}, tls={"cert_file": cert, "key_file": key})
    del cfg["connections"][0]["users"]
    cfg["api"] = {"listen": f"127.0.0.1:{free_port()}", "tls": True,
                  "auth_failures_per_minute": 100000}
    cfg["state"] = {"path": os.path.join(tmp, "state.db")}
    cfg["audit"] = {"dir": os.path.join(tmp, "audit"), "durability": "strict",
                    "checkpoint_interval": "200ms", "signing_key_file": signing_key,
                    "auditor_groups": ["auditors"]}
    cfg["identity"] = {"issuers": [issuer_config(idp)]}
    cfg["masking_profiles"] = [{"name": "default"}]
    cfg["policy"] = POLICY
    return cfg


class AuditCase(unittest.TestCase):
    audit_overrides: dict = {}  # merged into the config's audit section

    @classmethod
    def setUpClass(cls) -> None:
        def config() -> dict:
            cfg = audit_config(cls.pg, cls.idp, cls.tmp)
            cfg["audit"].update(cls.audit_overrides)
            return cfg

        start_access_plane(cls, "tg-audit-", config, clients=CLIENTS)
        cls.trace = cls.pg.psql("select id from traces order by id limit 1").strip()
        cls.pg.psql(f"INSERT INTO traces (id, name) VALUES ('{PII_TRACE}', 'mail {EMAIL}')")
        cls.config_path = cls.gw.config_path
        cls.secrets: list[str] = [cls.pg.password_for("tracegate")]

    @classmethod
    def tearDownClass(cls) -> None:
        stop_access_plane(cls)

    def grant(self, client: str = "reader", trace: str | None = None) -> dict:
        token = self.idp.token(client)
        self.secrets.append(token)
        status, out = self.api.grant(token, trace or self.trace)
        self.assertEqual(status, 201, out)
        self.secrets.append(out["postgres"]["password"])
        return out

    def uri(self, grant: dict) -> str:
        return grant["postgres"]["uri"] + "&sslrootcert=" + urllib.parse.quote(self.ca_file)

    def session_of(self, grant_id: str) -> dict:
        """The index entry of the (ended) session that used the grant."""
        found: list[dict] = []

        def ended() -> bool:
            p = audit(self.config_path, "sessions", "--format", "json", "--limit", "1000")
            self.assertEqual(p.returncode, 0, p.stderr)
            found[:] = [s for s in json.loads(p.stdout) if s["grant_id"] == grant_id]
            return bool(found) and found[0]["ended_at"] is not None

        wait_for(ended, 30, what="the session's end in the index")
        return found[0]

    def replay(self, session: str, fmt: str) -> str:
        p = audit(self.config_path, "replay", session, "--format", fmt)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout


class RecordAndReplayTest(AuditCase):
    SCRIPT = ("SELECT id, name, input FROM traces WHERE id = '{t}';\n"
              "SELECT id, type, name FROM observations WHERE trace_id = '{t}' ORDER BY id;\n"
              "SELECT count(*) FROM traces;\n"
              "SELECT id, E'comma, \"quote\"\\nnewline' AS tricky, NULL AS nothing, '' AS empty "
              "FROM traces WHERE id = '{t}';\n")

    def test_replay_is_what_psql_received_byte_for_byte(self):
        grant = self.grant()
        p = run_psql(self.uri(grant), self.SCRIPT.format(t=self.trace),
                     args=["--csv", "-q", "-v", "ON_ERROR_STOP=0"], stdin_script=True)
        self.assertEqual(sqlstate_of(p.stderr), "42501", p.stderr)  # count(*) is blocked
        self.assertIn(self.trace, p.stdout)
        session = self.session_of(grant["grant_id"])
        self.assertEqual(self.replay(session["id"], "csv"), p.stdout)

        # The index: who, which grant and trace, from where, what happened.
        self.assertEqual(session["trace_id"], self.trace)
        self.assertEqual(session["connection"], "traces-pg")
        self.assertEqual(session["principal"]["subject"], grant["subject"])
        self.assertEqual(session["outcome"], "completed")
        self.assertEqual((session["statements"], session["blocked"]), (4, 1))
        self.assertGreater(session["rows"], 2)
        self.assertTrue(session["client_address"].startswith("127.0.0.1:"))

        # JSON: the statements with their text, the refusal with its rule, the rows.
        replay = json.loads(self.replay(session["id"], "json"))
        self.assertEqual(replay["session"]["grant_id"], grant["grant_id"])
        self.assertEqual(replay["session"]["tls"]["version"][:4], "TLSv")
        queries = [s["sql"] for s in replay["steps"] if s["kind"] == "query"]
        self.assertEqual(queries, self.SCRIPT.format(t=self.trace).splitlines())
        errors = [s for s in replay["steps"] if s["kind"] == "error"]
        self.assertEqual([e["sqlstate"] for e in errors], ["42501"])
        self.assertIn("statement blocked (trace_scope)", errors[0]["message"])
        results = [s for s in replay["steps"] if s["kind"] == "result"]
        self.assertEqual(results[-1]["rows"],
                         [[self.trace, 'comma, "quote"\nnewline', None, ""]])
        self.assertEqual(replay["end"]["outcome"], "completed")
        grant_steps = [(s["from"], s["to"]) for s in replay["steps"] if s["kind"] == "grant_event"]
        self.assertEqual(grant_steps[0], ("active", "in_use"))

        # Text, for people.
        text = self.replay(session["id"], "text")
        self.assertIn("SELECT count(*) FROM traces", text)
        self.assertIn("42501", text)
        self.assertIn(grant["subject"], text)

    def test_extended_protocol_parameters_are_recorded(self):
        grant = self.grant()
        p = run_libpq_client(self.uri(grant), "answer-loop", self.trace, "mark", "3")
        self.assertEqual(p.stdout.split(),
                         ["answered", "mark-0", "answered", "mark-1", "answered", "mark-2"],
                         p.stderr)
        session = self.session_of(grant["grant_id"])
        replay = json.loads(self.replay(session["id"], "json"))
        binds = [s["params"] for s in replay["steps"] if s["kind"] == "bind"]
        self.assertEqual(binds, [[f"mark-{n}", self.trace] for n in range(3)])
        rows = [r for s in replay["steps"] if s["kind"] == "result" for r in s["rows"]]
        self.assertEqual(rows, [[self.trace, f"mark-{n}"] for n in range(3)])

    def test_a_masked_session_is_recorded_masked(self):
        grant = self.grant("masked", PII_TRACE)
        p = run_psql(self.uri(grant), f"SELECT name FROM traces WHERE id = '{PII_TRACE}'",
                     args=["--csv", "-q"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "name\nmail [REDACTED:EMAIL]\n")
        session = self.session_of(grant["grant_id"])
        self.assertEqual(self.replay(session["id"], "csv"), p.stdout)
        replay = self.replay(session["id"], "json")
        self.assertNotIn(EMAIL, replay)
        self.assertEqual(json.loads(replay)["end"]["masked"], {"EMAIL": 1})

    def test_sessions_filters(self):
        grant = self.grant()
        run_psql(self.uri(grant), f"SELECT id FROM traces WHERE id = '{self.trace}'")
        session = self.session_of(grant["grant_id"])
        for args, expect in [
            (["--trace", self.trace], True), (["--trace", "no-such-trace"], False),
            (["--subject", grant["subject"]], True), (["--subject", "nobody"], False),
            (["--connection", "traces-pg"], True), (["--outcome", "violation"], False),
            (["--since", "1h"], True), (["--until", "2000-01-01T00:00:00Z"], False),
        ]:
            p = audit(self.config_path, "sessions", "--format", "json", "--limit", "1000", *args)
            self.assertEqual(p.returncode, 0, p.stderr)
            ids = [s["id"] for s in json.loads(p.stdout)]
            self.assertEqual(session["id"] in ids, expect, args)
        p = audit(self.config_path, "sessions", "--trace", self.trace)
        self.assertIn(session["id"], p.stdout)
        self.assertIn("completed", p.stdout)
        p = audit(self.config_path, "sessions", "--since", "yesterday-ish")
        self.assertEqual(p.returncode, 2)
        self.assertIn("neither an RFC 3339 time", p.stderr)

    def test_api_serves_auditors_only(self):
        grant = self.grant()
        run_psql(self.uri(grant), f"SELECT id FROM traces WHERE id = '{self.trace}'")
        session = self.session_of(grant["grant_id"])
        auditor = self.idp.token("auditor")
        status, out, _ = self.api.call("GET", f"/v1/sessions?trace={self.trace}&limit=1000",
                                       auditor)
        self.assertEqual(status, 200, out)
        self.assertIn(session["id"], [s["id"] for s in out["sessions"]])
        status, out, _ = self.api.call("GET", f"/v1/sessions/{session['id']}", auditor)
        self.assertEqual((status, out["grant_id"]), (200, grant["grant_id"]), out)
        status, out, _ = self.api.call("GET", f"/v1/sessions/{session['id']}/events", auditor)
        self.assertEqual(status, 200, out)
        self.assertEqual(out["session"]["trace_id"], self.trace)
        self.assertTrue(any(s["kind"] == "result" for s in out["steps"]))
        # Not an auditor: refused whatever the session (a reader's own included).
        reader = self.idp.token("reader")
        for path in ["/v1/sessions", f"/v1/sessions/{session['id']}",
                     f"/v1/sessions/{session['id']}/events"]:
            status, out, _ = self.api.call("GET", path, reader)
            self.assertEqual((status, out["error"]), (403, "forbidden"), path)
        status, out, _ = self.api.call("GET", "/v1/sessions", None)
        self.assertEqual(status, 401)
        status, out, _ = self.api.call("GET", "/v1/sessions/no-such-session", auditor)
        self.assertEqual(status, 404)
        status, out, _ = self.api.call("GET", "/v1/sessions?color=blue", auditor)
        self.assertEqual(status, 400)
        status, out, _ = self.api.call("GET", "/v1/sessions?limit=%zz", auditor)
        self.assertEqual(status, 400)
        status, out, _ = self.api.call("DELETE", f"/v1/sessions/{session['id']}", auditor)
        self.assertEqual(status, 405)

    def test_verify_live_and_export_carry_no_secret(self):
        grant = self.grant()
        run_psql(self.uri(grant), f"SELECT id FROM traces WHERE id = '{self.trace}'")
        self.session_of(grant["grant_id"])
        p = audit(self.config_path, "verify", "--live")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("OK", p.stdout)
        p = audit(self.config_path, "export", "--since", "1h")
        self.assertEqual(p.returncode, 0, p.stderr)
        events = [json.loads(line) for line in p.stdout.splitlines()]
        types = {e["type"] for e in events}
        self.assertTrue({"session_start", "client_frames", "server_frames", "session_end",
                         "checkpoint"} <= types, types)
        for secret in self.secrets:
            self.assertNotIn(secret, p.stdout)
        # Nor in the raw segment files.
        for name in os.listdir(self.gw.config["audit"]["dir"]):
            with open(os.path.join(self.gw.config["audit"]["dir"], name), "rb") as f:
                raw = f.read()
            for secret in self.secrets:
                self.assertNotIn(secret.encode(), raw, name)


# ---- a gateway of static users, stopped and started at will --------------------------------

USERS = {"agent": "agent-password-1"}


def raw_session(case: AuditCase, grant: dict) -> harness.RawPgConn:
    conn = harness.RawPgConn(case.gw.host, case.gw.port)
    try:
        conn.start_tls()
        conn.startup(grant["postgres"]["user"], grant["postgres"]["password"])
    except BaseException:
        conn.close()
        raise
    return conn


def answer_or_end(conn: harness.RawPgConn, sql: str) -> tuple[list, dict | None]:
    """Sends one Query; returns (rows, None) when it was answered, or (rows so far, the
    FATAL's fields) when the gateway ended the session instead (the connection then closes)."""
    conn.send(harness.message(b"Q", sql.encode() + b"\0"))
    rows: list = []
    while True:
        try:
            mtype, body = conn.recv_message()
        except harness.ConnectionClosed:
            return rows, {"S": "(closed without an error)"}
        if mtype == b"D":
            rows.append(harness.parse_data_row(body))
        elif mtype == b"E":
            fields = harness.parse_error_fields(body)
            if fields.get("S") == "FATAL":
                conn.expect_closed()
                return rows, fields
        elif mtype == b"Z":
            return rows, None


class RecordingCapTest(AuditCase):
    """The recording cap fails closed: a session that reaches audit.max_session_bytes is
    ended with 54000, never kept going unrecorded (issue 16: huge comments pushed a session
    past the cap, and what followed was not recorded). The client's frames are recorded
    before the gate judges them, so the statement that ended the session, and refused ones,
    are in the replay."""

    CAP = 65536
    audit_overrides = {"max_session_bytes": "64KiB"}

    def ended_session(self, grant: dict) -> tuple[dict, dict]:
        session = self.session_of(grant["grant_id"])
        return session, json.loads(self.replay(session["id"], "json"))

    def test_huge_comments_end_the_session_at_the_cap_and_the_log_says_so(self):
        grant = self.grant()
        padding = "x" * 20000
        with raw_session(self, grant) as conn:
            # A refused statement first: it is recorded like any other.
            rows, fatal = answer_or_end(conn, "SELECT id FROM traces")
            self.assertIsNone(fatal)
            fatal = None
            sent = []
            for n in range(10):
                sql = (f"SELECT 'marker-{n}' AS m, id FROM traces WHERE id = '{self.trace}' "
                       f"/* {padding} */")
                sent.append(f"marker-{n}")
                rows, fatal = answer_or_end(conn, sql)
                if fatal is not None:
                    break
                self.assertEqual(rows, [(f"marker-{n}", self.trace)])
            self.assertIsNotNone(fatal, "the session went on past the recording cap")
            self.assertEqual(fatal["C"], "54000", fatal)
            self.assertEqual(fatal["M"],
                             f"tracegate: the session's recording reached "
                             f"audit.max_session_bytes ({self.CAP} bytes); the session is ended")
            self.assertEqual(rows, [], "the statement that crossed the cap was answered")
        self.assertLess(len(sent), 10)
        session, replay = self.ended_session(grant)
        self.assertEqual(session["outcome"], "error")
        self.assertIn("[54000]", replay["end"]["reason"])
        self.assertIn("max_session_bytes", replay["end"]["reason"])
        queries = [s["sql"] for s in replay["steps"] if s["kind"] == "query"]
        self.assertEqual(queries[0], "SELECT id FROM traces")
        # Every statement sent is in the log, the one that crossed the cap included.
        self.assertEqual([next(m for m in sent if f"'{m}'" in q) for q in queries[1:]], sent)
        truncated = [s for s in replay["steps"] if s["kind"] == "truncated"]
        self.assertEqual(len(truncated), 1, replay["steps"])
        self.assertEqual(truncated[0]["limit_bytes"], self.CAP)
        self.assertEqual(truncated[0]["action"], "session ended")
        errors = [s for s in replay["steps"] if s["kind"] == "error"]
        self.assertEqual(errors[0]["sqlstate"], "42501")  # the refusal, as sent
        text = self.replay(session["id"], "text")
        self.assertIn("recording truncated at 65536 bytes", text)
        self.assertIn("max_session_bytes", self.gw.stderr_text())

    def test_an_answer_that_would_cross_the_cap_is_not_released(self):
        grant = self.grant()
        sql = f"SELECT id, input FROM traces WHERE id = '{self.trace}'"
        received = 0
        with raw_session(self, grant) as conn:
            for _ in range(40):
                rows, fatal = answer_or_end(conn, sql)
                if fatal is not None:
                    break
                received += sum(len(v or "") for r in rows for v in r)
            self.assertIsNotNone(fatal, "the session went on past the recording cap")
            self.assertEqual(fatal["C"], "54000", fatal)
            self.assertEqual(rows, [])
        self.assertLess(received, self.CAP)
        session, replay = self.ended_session(grant)
        self.assertEqual(session["outcome"], "error")
        results = [s for s in replay["steps"] if s["kind"] == "result"]
        queries = [s for s in replay["steps"] if s["kind"] == "query"]
        # The last statement is recorded; its answer was neither recorded nor sent.
        self.assertEqual(len(queries), len(results) + 1)

    def test_the_statements_before_a_protocol_violation_are_recorded(self):
        grant = self.grant()
        marker = "before-the-violation"
        with raw_session(self, grant) as conn:
            # One write: a valid Query, then a Bind whose body is cut short.
            conn.send(harness.message(b"Q", f"SELECT '{marker}'".encode() + b"\0")
                      + harness.message(b"B", b"\0\0\0"))
            fields = conn.read_until_error_or_close()
        self.assertIsNotNone(fields)
        self.assertEqual(fields["C"], "08P01", fields)
        session, replay = self.ended_session(grant)
        queries = [s["sql"] for s in replay["steps"] if s["kind"] == "query"]
        self.assertEqual(queries, [f"SELECT '{marker}'"])
        self.assertIn("[08P01]", replay["end"]["reason"])


class StaticGateway:
    """A gateway with static users and recording, for the crash, tamper and disk tests."""

    def __init__(self, pg: PgServer, tmp: str, audit_dir: str, **audit_overrides):
        self.tmp = tmp
        self.signing_key = os.path.join(tmp, "signing.pem")
        if not os.path.exists(self.signing_key):
            self.public_key = generate_key(self.signing_key)
        else:
            self.public_key = self.signing_key + ".pub"
        cfg = Gateway.config_for(pg, users=USERS)
        cfg["state"] = {"path": os.path.join(tmp, "state.db")}
        cfg["audit"] = {"dir": audit_dir, "checkpoint_interval": "100ms",
                        "segment_bytes": "64KiB", "signing_key_file": self.signing_key,
                        **audit_overrides}
        self.gw = Gateway(cfg, env={Gateway.BACKEND_PASSWORD_ENV: pg.password_for("tracegate")})
        self.gw.start()
        self.config_path = self.gw.config_path

    def dsn(self) -> str:
        return self.gw.dsn("agent", USERS["agent"])

    def verify(self, config_path: str | None = None, *extra: str) -> subprocess.CompletedProcess:
        return audit(config_path or self.config_path, "verify", "--public-key", self.public_key,
                     *extra)

    def config_with_dir(self, audit_dir: str) -> str:
        cfg = json.loads(json.dumps(self.gw.config))
        cfg["audit"]["dir"] = audit_dir
        path = os.path.join(self.tmp, f"config-{os.path.basename(audit_dir)}.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(cfg))
        return path

    def close(self) -> None:
        self.gw.cleanup()


def answered_markers(outputs: list[str]) -> set[str]:
    return {line.split()[1] for out in outputs for line in out.splitlines()
            if line.startswith("answered ")}


def recorded_markers(config_path: str) -> set[str]:
    p = audit(config_path, "sessions", "--format", "json", "--limit", "100000")
    assert p.returncode == 0, p.stderr
    markers = set()
    for session in json.loads(p.stdout):
        r = audit(config_path, "replay", session["id"], "--format", "json")
        assert r.returncode == 0, r.stderr
        for step in json.loads(r.stdout)["steps"]:
            if step["kind"] == "result":
                markers.update(row[1] for row in step["rows"] if len(row) == 2)
    return markers


# The block layout of a segment file (src/audit/log.h), enough to cut and move whole blocks.
SEGMENT_HEADER = 8 + 8 + 32 + 8 + 4
BLOCK_HEADER = 4 + 4 + 4 + 8 + 4 + 4


def blocks_of(path: str) -> list[tuple[int, int, int]]:
    """(offset, size, first_seq) of every block in a segment file."""
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], SEGMENT_HEADER
    while off + BLOCK_HEADER <= len(data):
        assert data[off:off + 4] == b"TGB1", (path, off)
        clen, _raw, first_seq = struct.unpack_from("<IIQ", data, off + 4)
        out.append((off, BLOCK_HEADER + clen, first_seq))
        off += BLOCK_HEADER + clen
    return out


class CrashAndTamperTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="tg-audit-crash-")
        cls.pg = PgServer(traces=5)
        cls.pg.__enter__()
        cls.trace = cls.pg.psql("select id from traces order by id limit 1").strip()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.pg.__exit__(None, None, None)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_kill_9_under_load_loses_no_answered_statement(self):
        tmp = tempfile.mkdtemp(dir=self.tmp)
        g = StaticGateway(self.pg, tmp, os.path.join(tmp, "audit"))
        try:
            procs = [subprocess.Popen([harness.libpq_client_binary(), g.dsn(), "answer-loop",
                                       self.trace, f"c{i}", "0"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for i in range(4)]
            outputs = [""] * len(procs)

            def drain(i: int) -> None:
                outputs[i] = procs[i].communicate(timeout=120)[0]

            readers = [threading.Thread(target=drain, args=(i,)) for i in range(len(procs))]
            for t in readers:
                t.start()
            # Let the clients get well into their loops, then kill the gateway mid-flight.
            wait_for(lambda: audit_records(g.config_path) >= 200, 60, interval=0.2,
                     what="records written under load")
            os.kill(g.gw.proc.pid, signal.SIGKILL)
            g.gw.proc.wait(10)
            for t in readers:
                t.join(60)
            answered = answered_markers(outputs)
            self.assertGreater(len(answered), 20, outputs)
            for out in outputs:
                self.assertIn("ended:", out)  # every client saw the connection go

            g.gw.start()  # restart: recovery closes the interrupted sessions
            p = audit(g.config_path, "sessions", "--outcome", "interrupted", "--format", "json")
            self.assertEqual(len(json.loads(p.stdout)), 4, p.stdout)
            missing = answered - recorded_markers(g.config_path)
            self.assertEqual(missing, set(), "answered but not in the log")
            g.gw.stop()
            p = g.verify()
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        finally:
            g.close()

    def tamper_fixture(self) -> tuple[StaticGateway, str]:
        """A stopped gateway whose log holds a few sessions in several blocks and segments."""
        tmp = tempfile.mkdtemp(dir=self.tmp)
        g = StaticGateway(self.pg, tmp, os.path.join(tmp, "audit"))
        for i in range(6):
            p = run_libpq_client(g.dsn(), "answer-loop", self.trace, f"t{i}", "30")
            self.assertEqual(p.returncode, 0, p.stderr)
        g.gw.stop()
        p = g.verify()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return g, os.path.join(tmp, "audit")

    def tampered(self, g: StaticGateway, original: str, name: str) -> tuple[str, str]:
        copy = os.path.join(g.tmp, name)
        shutil.copytree(original, copy)
        return copy, g.config_with_dir(copy)

    def segments(self, audit_dir: str) -> list[str]:
        return sorted(os.path.join(audit_dir, n) for n in os.listdir(audit_dir)
                      if n.startswith("seg-"))

    def assert_verify_fails(self, g: StaticGateway, config_path: str, *expected: str) -> None:
        p = g.verify(config_path)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("FAILED", p.stdout)
        for text in expected:
            self.assertIn(text, p.stdout)

    def test_verify_names_each_edit(self):
        g, original = self.tamper_fixture()
        try:
            segments = self.segments(original)
            self.assertGreater(len(segments), 1, "the fixture should span segments")
            first = segments[0]
            blocks = blocks_of(first)
            self.assertGreater(len(blocks), 3)

            # A flipped byte inside a block.
            copy, cfg = self.tampered(g, original, "flip")
            seg = os.path.join(copy, os.path.basename(first))
            off, size, _ = blocks[1]
            with open(seg, "r+b") as f:
                f.seek(off + BLOCK_HEADER + size // 2 - BLOCK_HEADER // 2)
                b = f.read(1)
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([b[0] ^ 0x01]))
            self.assert_verify_fails(g, cfg, os.path.basename(first), "CRC")

            # A whole block dropped: its records are missing.
            copy, cfg = self.tampered(g, original, "drop")
            seg = os.path.join(copy, os.path.basename(first))
            with open(seg, "rb") as f:
                data = f.read()
            off, size, first_seq = blocks[2]
            with open(seg, "wb") as f:
                f.write(data[:off] + data[off + size:])
            p = g.verify(cfg)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertRegex(p.stdout, rf"FAIL records? {first_seq}(\.\.\d+)? missing")

            # Two blocks swapped: records out of order.
            copy, cfg = self.tampered(g, original, "swap")
            seg = os.path.join(copy, os.path.basename(first))
            (o1, s1, _), (o2, s2, _) = blocks[1], blocks[2]
            with open(seg, "rb") as f:
                data = f.read()
            with open(seg, "wb") as f:
                f.write(data[:o1] + data[o2:o2 + s2] + data[o1:o1 + s1] + data[o2 + s2:])
            self.assert_verify_fails(g, cfg, "out of order")

            # A block inserted twice (a replayed copy of real records).
            copy, cfg = self.tampered(g, original, "insert")
            seg = os.path.join(copy, os.path.basename(first))
            with open(seg, "rb") as f:
                data = f.read()
            off, size, _ = blocks[1]
            with open(seg, "wb") as f:
                f.write(data[:off + size] + data[off:off + size] + data[off + size:])
            self.assert_verify_fails(g, cfg)

            # The tail cut at a block boundary: the final checkpoint alone (the records
            # after the last checkpoint left are unsigned), then records too (the state
            # store's signed head says where the log ended).
            copy, cfg = self.tampered(g, original, "cut-checkpoint")
            last = os.path.join(copy, os.path.basename(segments[-1]))
            last_blocks = blocks_of(last)
            self.assertGreater(len(last_blocks), 2)
            with open(last, "r+b") as f:
                f.truncate(last_blocks[-1][0])
            self.assert_verify_fails(g, cfg, "after the last checkpoint")
            copy, cfg = self.tampered(g, original, "cut-records")
            last = os.path.join(copy, os.path.basename(segments[-1]))
            with open(last, "r+b") as f:
                f.truncate(last_blocks[-2][0])
            self.assert_verify_fails(g, cfg, "tail was cut")

            # The tail cut in the middle of a block.
            copy, cfg = self.tampered(g, original, "torn")
            last = os.path.join(copy, os.path.basename(segments[-1]))
            with open(last, "r+b") as f:
                f.truncate(os.path.getsize(last) - 7)
            self.assert_verify_fails(g, cfg)
        finally:
            g.close()

    def test_a_self_consistent_forgery_fails_on_the_signature(self):
        g, original = self.tamper_fixture()
        forger_tmp = tempfile.mkdtemp(dir=self.tmp)
        try:
            # Another gateway, another key, a log of its own: internally consistent.
            forger = StaticGateway(self.pg, forger_tmp, os.path.join(forger_tmp, "audit"))
            p = run_libpq_client(forger.dsn(), "answer-loop", self.trace, "forged", "5")
            self.assertEqual(p.returncode, 0, p.stderr)
            forger.gw.stop()
            self.assertEqual(forger.verify().returncode, 0)
            copy = os.path.join(g.tmp, "forged")
            shutil.copytree(os.path.join(forger_tmp, "audit"), copy)
            cfg = g.config_with_dir(copy)
            self.assert_verify_fails(g, cfg, "signature")
            forger.close()
        finally:
            g.close()

    def test_an_unusable_log_directory_stops_startup(self):
        tmp = tempfile.mkdtemp(dir=self.tmp)
        blocker = os.path.join(tmp, "not-a-dir")
        with open(blocker, "w") as f:
            f.write("x")
        with self.assertRaises((RuntimeError, TimeoutError)) as ctx:
            StaticGateway(self.pg, tmp, os.path.join(blocker, "audit"))
        self.assertIn("gateway exited with 1", str(ctx.exception))
        self.assertIn("cannot start: audit log", str(ctx.exception))
        self.assertIn("Not a directory", str(ctx.exception))

    def test_a_full_disk_refuses_sessions_and_answers_nothing_unrecorded(self):
        tmp = tempfile.mkdtemp(dir=self.tmp)
        mount = os.path.join(tmp, "small")
        os.mkdir(mount)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount], check=True)
        try:
            g = StaticGateway(self.pg, tmp, os.path.join(mount, "audit"))
            try:
                # Fill what is left, so the log's next block cannot fit.
                filler = os.path.join(mount, "filler")
                subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"],
                               capture_output=True)
                p = run_libpq_client(g.dsn(), "answer-loop", self.trace, "full", "0")
                self.assertIn("ended:", p.stdout)
                self.assertIn("FATAL:  tracegate: the session could not be recorded", p.stdout)
                answered = answered_markers([p.stdout])
                # New sessions are refused with the reason.
                q = run_psql(g.dsn(), "SELECT 1")
                self.assertNotEqual(q.returncode, 0)
                self.assertIn("FATAL:  tracegate: sessions cannot be recorded right now "
                              "(audit log unavailable)", q.stderr)
                g.gw.stop(expect_code=None)
                os.remove(filler)
                g.gw.start()  # recovery cuts the block the full disk tore
                self.assertEqual(answered - recorded_markers(g.config_path), set())
                g.gw.stop()
                p = g.verify()
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            finally:
                g.close()
        finally:
            subprocess.run(["umount", "-l", mount], check=False)


def audit_records(config_path: str) -> int:
    p = audit(config_path, "export")
    return p.stdout.count("\n") if p.returncode == 0 else 0


if __name__ == "__main__":
    unittest.main()
