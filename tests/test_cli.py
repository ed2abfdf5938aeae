"""The tracegate command line: `config check`, `serve` refusing to start on bad input, and
`scram-verifier`. Real binary, real files, no PostgreSQL needed."""

import os
import re
import socket
import subprocess
import tempfile
import unittest

BIN = os.environ.get("TRACEGATE_BIN", os.path.join(os.path.dirname(__file__), "..", "build",
                                                    "tracegate"))
ROOT = os.environ.get("TRACEGATE_ROOT", os.path.join(os.path.dirname(__file__), ".."))
SECRET = "s3cr3t-backend-password-do-not-print"


def run(*args, env=None, stdin=None, timeout=30):
    return subprocess.run([BIN, *args], capture_output=True, text=True, input=stdin,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


class CliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="tg-cli-")
        self.addCleanup(self.tmp.cleanup)

    def write(self, name, text):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_example_config_checks_ok(self):
        p = run("config", "check", os.path.join(ROOT, "tracegate.example.yaml"),
                env={"TRACEGATE_BACKEND_PASSWORD": SECRET,
                     "TRACEGATE_LANGFUSE_SECRET_KEY": SECRET + "-store"})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("OK", p.stdout)
        self.assertIn("connection traces-pg", p.stdout)
        self.assertIn("connection traces-http: http", p.stdout)
        self.assertNotIn(SECRET, p.stdout + p.stderr)

    def test_every_error_is_reported_with_file_line_and_column(self):
        self.write("backend.pw", SECRET + "\n")
        path = self.write("bad.yaml", "\n".join([
            "workerz: 2",                         # line 1: unknown key
            "connections:",
            "  - name: traces-pg",
            "    listen: 127.0.0.1:6432",
            "    idle_timeout: 30",               # line 5: duration without a unit
            "    backend:",
            "      host: 127.0.0.1",
            "      database: traces",
            "      user: tracegate",
            "      password_file: backend.pw",
            "      tls: sometimes",               # line 11: not a mode
            "",
        ]))
        p = run("config", "check", path)
        self.assertEqual(p.returncode, 1, p.stdout)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 3, p.stderr)
        for line, key in [(1, "workerz"), (5, "idle_timeout"), (11, "tls")]:
            with self.subTest(key=key):
                self.assertTrue(any(re.match(rf"{re.escape(path)}:{line}:\d+: .*{key}", l)
                                    for l in lines), p.stderr)
        self.assertIn('did you mean "workers"', p.stderr)
        self.assertNotIn(SECRET, p.stdout + p.stderr)

    def test_serve_refuses_a_bad_config(self):
        path = self.write("bad.yaml", "connections: []\n")
        p = run("serve", "--config", path)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(path, p.stderr)

    def test_serve_refuses_to_start_when_the_listen_port_is_taken(self):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        path = self.write("t.yaml", "\n".join([
            "connections:",
            "  - name: traces-pg",
            f"    listen: 127.0.0.1:{port}",
            "    backend:",
            "      host: 127.0.0.1",
            "      database: traces",
            "      user: tracegate",
            "      password_env: TG_CLI_TEST_PW",
            "",
        ]))
        p = run("serve", "--config", path, env={"TG_CLI_TEST_PW": SECRET})
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("cannot listen", p.stderr)
        self.assertNotIn(SECRET, p.stdout + p.stderr)

    GATED = "\n".join([
        "connections:",
        "  - name: traces-pg",
        "    listen: 127.0.0.1:6432",
        "    backend: {host: 127.0.0.1, database: traces, user: tracegate,",
        "              password_env: TG_CLI_TEST_PW}",
        "    gate:",
        "      trace_tables:",
        "        - {table: traces, id_column: id}",
        "        - {table: observations, id_column: trace_id}",
        "",
    ])

    def test_gate_check_shows_each_verdict_and_its_rule(self):
        path = self.write("g.yaml", self.GATED)
        env = {"TG_CLI_TEST_PW": SECRET}
        ok = run("gate", "check", "-c", path, "--connection", "traces-pg", "--trace", "T",
                 "SELECT * FROM traces WHERE id = 'T'",
                 "SELECT o.* FROM observations o WHERE o.trace_id = $1", env=env)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.assertEqual(ok.stdout.splitlines()[1].split("  |")[0], "allow $1=trace")
        blocked = run("gate", "check", "-c", path, "--connection", "traces-pg", "--trace", "T",
                      stdin="COPY traces TO STDOUT\nSELECT * FROM traces WHERE id = 'U'\n",
                      env=env)
        self.assertEqual(blocked.returncode, 3, blocked.stdout + blocked.stderr)
        lines = blocked.stdout.splitlines()
        self.assertTrue(lines[0].startswith("block bulk_export [42501] COPY is not allowed"),
                        lines)
        self.assertTrue(lines[1].startswith("block other_trace [42501]"), lines)

    def test_gate_check_masked_refuses_sql_that_rewrites_values(self):
        path = self.write("g.yaml", self.GATED)
        env = {"TG_CLI_TEST_PW": SECRET}
        statements = ["SELECT substr(name, 1, 4) FROM traces WHERE id = 'T'",
                      "SELECT name::bytea FROM traces WHERE id = 'T'",
                      "SELECT metadata->>'user', count(*) FROM traces WHERE id = 'T' GROUP BY 1"]
        masked = run("gate", "check", "-c", path, "--connection", "traces-pg", "--trace", "T",
                     "--masked", *statements, env=env)
        self.assertEqual(masked.returncode, 3, masked.stdout + masked.stderr)
        lines = masked.stdout.splitlines()
        self.assertTrue(lines[0].startswith(
            "block masking_bypass [42501] substr() could rewrite masked values; it is not "
            "allowed while responses are masked"), lines)
        self.assertTrue(lines[1].startswith(
            "block masking_bypass [42501] a cast to bytea could rewrite masked values"), lines)
        self.assertEqual(lines[2].split("  |")[0], "allow", lines)
        plain = run("gate", "check", "-c", path, "--connection", "traces-pg", "--trace", "T",
                    *statements, env=env)
        self.assertEqual(plain.returncode, 0, plain.stdout + plain.stderr)
        self.assertEqual([l.split("  |")[0] for l in plain.stdout.splitlines()], ["allow"] * 3)

    def test_config_check_refuses_a_strict_query_that_does_not_pin_the_trace(self):
        path = self.write("s.yaml", self.GATED + "\n".join([
            "      mode: strict",
            "      queries:",
            "        - {name: everything, sql: SELECT * FROM traces}",
            "",
        ]))
        p = run("config", "check", path, env={"TG_CLI_TEST_PW": SECRET})
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("connections[traces-pg].gate: query everything", p.stderr)
        self.assertIn("trace_scope", p.stderr)

    def test_scram_verifier_prints_a_fresh_postgres_style_verifier(self):
        first = run("scram-verifier", stdin="correct horse\n")
        second = run("scram-verifier", stdin="correct horse\n")
        self.assertEqual(first.returncode, 0, first.stderr)
        pattern = r"^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$"
        self.assertRegex(first.stdout.strip(), pattern)
        self.assertNotEqual(first.stdout, second.stdout, "the salt must be random")
        self.assertNotIn("correct horse", first.stdout + first.stderr)
        empty = run("scram-verifier", stdin="")
        self.assertNotEqual(empty.returncode, 0)


if __name__ == "__main__":
    unittest.main()
