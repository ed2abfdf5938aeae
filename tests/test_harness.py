"""Self-tests of the integration harness, the trace generator and libpq_client, against
PostgreSQL directly (no gateway needed).

Run from this folder: python3 -m unittest -v test_harness
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import unittest

import harness
from harness import PgServer, run_libpq_client, run_psql, sqlstate_of

harness.install_sigterm_cleanup()

GEN = [sys.executable, harness.GEN_TRACES]


def gen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(GEN + list(args), capture_output=True, text=True, timeout=120)


def processes_using(path: str) -> list[str]:
    """Command lines of live processes that mention `path` (e.g. a data directory)."""
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as f:
                text = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if path in text:
            found.append(text)
    return found


class GeneratorTest(unittest.TestCase):
    def test_deterministic_per_seed(self):
        a, b, c = gen("--traces", "20", "--seed", "7"), gen("--traces", "20", "--seed", "7"), \
            gen("--traces", "20", "--seed", "8")
        for p in (a, b, c):
            self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(a.stdout, b.stdout, "same seed must give identical SQL")
        self.assertNotEqual(a.stdout, c.stdout, "another seed must give other data")

    def test_list_ids_matches_sql(self):
        ids = gen("--traces", "15", "--list-ids").stdout.split()
        self.assertEqual(len(ids), 15)
        self.assertEqual(len(set(ids)), 15)
        sql = gen("--traces", "15").stdout
        for tid in ids:
            self.assertRegex(tid, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                                  r"[0-9a-f]{12}$")
            self.assertIn(tid, sql)

    def test_shared_data_flag(self):
        with tempfile.TemporaryDirectory() as d:
            missing = gen("--traces", "1", "--shared-data", os.path.join(d, "nope"))
            self.assertNotEqual(missing.returncode, 0, "a missing --shared-data dir is an error")
            empty = gen("--traces", "1", "--shared-data", d)
            self.assertNotEqual(empty.returncode, 0, "a dir without *.json is an error")

    def test_manifest_values_are_test_values(self):
        with tempfile.TemporaryDirectory() as d:
            manifest = os.path.join(d, "m.json")
            p = gen("--traces", "80", "--manifest", manifest)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(manifest) as f:
                planted = json.load(f)
        self.assertGreater(len(planted), 5, "some traces carry synthetic PII")
        self.assertLess(len(planted), 60, "most traces carry none")
        kinds = {item["kind"] for items in planted.values() for item in items}
        self.assertTrue({"email", "card", "phone", "iban"} <= kinds, kinds)
        for items in planted.values():
            for item in items:
                if item["kind"] == "email":
                    self.assertTrue(item["value"].endswith("@example.com"), item)
                if item["kind"] == "card":
                    self.assertIn(item["value"].replace(" ", ""),
                                  {"4111111111111111", "5555555555554444", "378282246310005"})

    def test_payload_size_option(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location("gen_traces", harness.GEN_TRACES)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for target in (4096, 8192, 32768):  # below ~3 KB the fixed structure dominates
            with self.subTest(payload_bytes=target):
                g = mod.Generator(seed=3, payload_bytes=target)
                for i in range(5):
                    row, _, _ = g.trace(i)
                    size = (len(json.dumps(row["input"].value))
                            + len(json.dumps(row["output"].value)))
                    self.assertLess(abs(size - target), max(600, target * 0.15),
                                    f"payload {size} bytes for target {target}")

    def test_copy_escaping(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location("gen_traces", harness.GEN_TRACES)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        self.assertEqual(mod.copy_field("a\tb\nc\\d\re"), "a\\tb\\nc\\\\d\\re")
        self.assertEqual(mod.copy_field(None), "\\N")
        self.assertEqual(mod.copy_field(mod.TextArray(['x"y', "b\\s", "p,q"])),
                         '{"x\\\\"y","b\\\\\\\\s","p,q"}')


class PgServerAndDataTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer(traces=40, shared_data=harness.SHARED_DATA
                          if os.path.isdir(harness.SHARED_DATA) else None, ssl=True)
        cls.pg.__enter__()
        cls.pg.add_auth_roles()

    @classmethod
    def tearDownClass(cls):
        cls.pg.__exit__(None, None, None)

    def test_data_loaded(self):
        pg = self.pg
        n_shared = len(glob.glob(os.path.join(harness.SHARED_DATA, "*.json"))) \
            if pg.shared_data else 0
        self.assertEqual(pg.psql("select count(*) from traces").strip(), str(40 + n_shared))
        types = pg.psql("select distinct type from observations order by 1").split()
        self.assertTrue({"AGENT", "GENERATION", "TOOL", "SPAN"} <= set(types), types)
        orphans = pg.psql("select count(*) from observations o left join traces t "
                          "on t.id = o.trace_id where t.id is null").strip()
        self.assertEqual(orphans, "0")
        self.assertEqual(pg.psql("select count(*) from pg_indexes where indexname in "
                                 "('observations_trace_id_idx', 'scores_trace_id_idx')").strip(),
                         "2")
        size = int(pg.psql("select avg(length(input::text) + length(output::text))::int "
                           "from traces where id ~ '^[0-9a-f]{8}-'").strip())
        self.assertGreater(size, 7000)
        self.assertLess(size, 10000)
        for kind, sql in [
                ("anthropic thinking", "output->'content' @> '[{\"type\": \"thinking\"}]'"),
                ("openai reasoning", "output->'content' @> '[{\"type\": \"reasoning\"}]'"),
                ("test card", "input::text like '%4111%1111%1111%1111%'"),
                ("example.com email", "input::text ~ '[a-z]+\\.[a-z]+@example\\.com'")]:
            with self.subTest(kind=kind):
                n = int(pg.psql(f"select count(*) from traces where {sql}").strip())
                self.assertGreater(n, 0, kind)
        if pg.shared_data:
            self.assertEqual(pg.psql("select count(*) from traces where id = "
                                     "'080130871f53145aecf7c29d5dfb6e4c'").strip(), "1")
            self.assertEqual(pg.psql("select jsonb_typeof(metadata) from traces where id = "
                                     "'080130871f53145aecf7c29d5dfb6e4c'").strip(), "object")

    def test_roles_and_auth_methods(self):
        pg = self.pg
        for role in ["tracegate", "tg_md5", "tg_plain"]:
            with self.subTest(role=role):
                self.assertEqual(pg.psql("select current_user", user=role).strip(), role)
                with harness.RawPgConn(pg.host, pg.port) as conn:
                    conn.startup(role, pg.password_for(role))
                    self.assertEqual(conn.simple_query("select count(*) > 0 from traces"),
                                     [("t",)])
        stored = dict(line.split("|") for line in pg.psql(
            "select rolname, left(rolpassword, 5) from pg_authid where rolname like 't%'",
            dbname="postgres").split())
        self.assertEqual(stored["tg_md5"], "md5" + stored["tg_md5"][3:])
        self.assertEqual(stored["tracegate"], "SCRAM")
        p = run_psql(pg.dsn("tracegate", password="wrong"), "select 1")
        self.assertNotEqual(p.returncode, 0)

    def test_tracegate_role_is_reader_only(self):
        p = run_psql(self.pg.dsn("tracegate"), "insert into traces (id) values ('x')")
        self.assertEqual(sqlstate_of(p.stderr), "42501", p.stderr)
        p = run_psql(self.pg.dsn("tracegate", options="-c default_transaction_read_only=on"),
                     "insert into write_probe values (1)")
        self.assertEqual(sqlstate_of(p.stderr), "25006", p.stderr)

    def test_ssl_role(self):
        pg = self.pg
        p = run_psql(pg.dsn("tg_ssl", sslmode="verify-full", sslrootcert=pg.ca_file),
                     "select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        self.assertEqual((p.returncode, p.stdout), (0, "t\n"), p.stderr)
        p = run_psql(pg.dsn("tg_ssl", sslmode="disable"), "select 1")
        self.assertNotEqual(p.returncode, 0, "tg_ssl must be refused without TLS")

    def test_scram_verifier_matches_postgres(self):
        import base64
        self.pg.psql("create role verifier_probe password 'pencil'", dbname="postgres")
        stored = self.pg.psql("select rolpassword from pg_authid where rolname = "
                              "'verifier_probe'", dbname="postgres").strip()
        iterations, salt = stored.split("$")[1].split(":")
        self.assertEqual(harness.scram_verifier("pencil", base64.b64decode(salt),
                                                int(iterations)), stored)

    def test_libpq_client_direct(self):
        for command in ["extended", "prepared", "binary", "cancel", "pipeline", "copy-out"]:
            with self.subTest(command=command):
                p = run_libpq_client(self.pg.dsn("tracegate"), command)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertTrue(p.stdout.strip())
        p = run_libpq_client(self.pg.dsn("tracegate"), "cancel")
        self.assertIn("cancel: 57014", p.stdout)
        p = run_libpq_client(self.pg.dsn("tracegate", password="wrong"), "extended")
        self.assertNotEqual(p.returncode, 0)


class LifecycleTest(unittest.TestCase):
    def test_stop_restart_kill_cleanup(self):
        with PgServer(traces=2) as pg:
            datadir, tmp = pg.datadir, pg.tmp
            self.assertEqual(pg.psql("select 1").strip(), "1")
            pg.restart()
            self.assertEqual(pg.psql("select 2").strip(), "2")
            pg.kill()
            self.assertFalse(harness.port_accepts(pg.host, pg.port))
            pg.start()
            self.assertEqual(pg.psql("select 3").strip(), "3")
        harness.wait_for(lambda: not processes_using(datadir), 10,
                         what="postgres processes to exit")
        self.assertFalse(os.path.exists(tmp), "temp dir left behind")

    def test_cleanup_after_failure_inside_with(self):
        with self.assertRaises(RuntimeError):
            with PgServer(traces=1) as pg:
                datadir = pg.datadir
                raise RuntimeError("test failure")
        harness.wait_for(lambda: not processes_using(datadir), 10,
                         what="postgres processes to exit")

    def test_yaml_emitter(self):
        text = harness.to_yaml({"a": 1, "b": "10s", "c": True, "d": "yes", "e": None,
                                "f": {"g": [1, {"h": "x y", "i": []}]}, "j": {},
                                "k": "SCRAM-SHA-256$4096:a$b:c", "l": "127.0.0.1:5432"})
        self.assertEqual(text, 'a: 1\nb: 10s\nc: true\nd: "yes"\ne: null\nf:\n  g:\n    - 1\n'
                               '    - h: "x y"\n      i: []\nj: {}\n'
                               'k: "SCRAM-SHA-256$4096:a$b:c"\nl: 127.0.0.1:5432\n')

    def test_wait_for_deadline(self):
        with self.assertRaises(TimeoutError):
            harness.wait_for(lambda: False, 0.2, what="never")
        self.assertEqual(harness.wait_for(lambda: 5, 1), 5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
