"""The statement gate checked against PostgreSQL's own plan (a differential oracle).

The gate allows a read only when it believes every occurrence of a declared trace table is
pinned to the granted trace. PostgreSQL is the authority on what a statement reads: for
every statement the gate allows, `EXPLAIN (VERBOSE, FORMAT JSON)` on a real PostgreSQL 15
must show the trace-id condition on every scan of a declared trace table. Any scan without
it is a statement the gate let through that reads other traces, and fails the test.

The statements: the gate corpus (src/sql/statements.txt), the fuzzer's corpus
(src/sql/gate_corpus/), and a generator of statements that nest FROM items, joins with and
without aliases, derived tables, LATERAL, scalar subqueries, CTEs and set operations, with
pins placed at random through names that PostgreSQL may resolve elsewhere (an outer query's
alias, a table hidden inside an aliased join, an ON clause that cannot see a sibling). The
generator's seed is fixed (GATE_ORACLE_SEED and GATE_ORACLE_COUNT change it and its size).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import unittest

import harness
from harness import ROOT as TRACEGATE_ROOT, PgProtocolError, PgServer, RawPgConn, gateway_binary

TRACE = "tr-1"
OTHER = "tr-2"
ID_COLUMNS = {"traces": "id", "observations": "trace_id", "scores": "trace_id"}

CONFIG = """\
connections:
  - name: oracle
    listen: 127.0.0.1:6432
    backend: {host: 127.0.0.1, database: traces, user: tracegate, password_env: TG_ORACLE_PW}
    gate:
      trace_tables:
        - {table: traces, id_column: id}
        - {table: observations, id_column: trace_id}
        - {table: scores, id_column: trace_id}
"""


# ---- the statements ----------------------------------------------------------------------

def corpus_statements() -> list[str]:
    out = []
    path = os.path.join(TRACEGATE_ROOT, "src", "sql", "statements.txt")
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#") or " | " not in line:
                continue
            sql = line.split(" | ", 1)[1].replace("\\n", "\n")
            out.append(sql)
    return out


def fuzz_corpus_statements() -> list[str]:
    out = []
    directory = os.path.join(TRACEGATE_ROOT, "src", "sql", "gate_corpus")
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if "\0" in text or len(text) > 20000:
            continue
        out.append(text)
    return out


class StatementGenerator:
    """Random reads over the three trace tables, built to probe name resolution: pins go
    through every name a place might see, the ones PostgreSQL lets it see and the ones it
    does not (a table hidden inside an aliased join, a sibling of a join seen from its ON,
    an outer query's alias that an inner one reuses)."""

    TABLES = ("traces", "observations", "scores", "public.traces")
    ALIASES = ("t", "u", "o", "s", "x", "j", "traces", "observations")

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.outer: list[tuple[str, str]] = []  # names of the enclosing queries

    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def value(self) -> str:
        return self.pick([f"'{TRACE}'", f"'{TRACE}'", f"'{TRACE}'", f"'{OTHER}'"])

    @staticmethod
    def column_of(ref: str, table: str) -> str:
        return f"{ref}.{ID_COLUMNS.get(table.split('.')[-1], 'id')}"

    def name(self, near: list[tuple[str, str]]) -> str:
        """An id column through a name from `near`, an outer query, or bare."""
        r = self.rng.random()
        if near and r < 0.75:
            return self.column_of(*self.pick(near))
        if self.outer and r < 0.95:
            return self.column_of(*self.pick(self.outer))
        return self.pick(["id", "trace_id"])

    def condition(self, near: list[tuple[str, str]]) -> str:
        r = self.rng.random()
        if r < 0.7:
            return f"{self.name(near)} = {self.value()}"
        if r < 0.9:
            return f"{self.name(near)} = {self.name(near)}"
        return self.pick(["true", f"{self.name(near)} IS NOT NULL"])

    def conjunction(self, near: list[tuple[str, str]], n: int) -> str:
        return " AND ".join(self.condition(near) for _ in range(max(n, 1)))

    def alias(self) -> str:
        """A fresh alias, or (often) one an enclosing query already uses: reusing a name is
        how a statement makes two places mean different tables by it."""
        if self.outer and self.rng.random() < 0.5:
            return self.pick(self.outer)[0]
        return self.pick(self.ALIASES)

    def table_item(self, tables: list[tuple[str, str]]) -> str:
        table = self.pick(self.TABLES)
        r = self.rng.random()
        if r < 0.25:
            ref, text = table.split(".")[-1], table
        else:
            ref = self.alias()
            text = f"{table} {ref}" if r < 0.6 else f"{table} AS {ref}"
        tables.append((ref, table))
        return text

    def from_item(self, depth: int, tables: list[tuple[str, str]],
                  siblings: list[tuple[str, str]]) -> str:
        """One FROM item; every table it names (hidden or not) goes to `tables`."""
        r = self.rng.random()
        if depth <= 0 or r < 0.35:
            return self.table_item(tables)
        if r < 0.75:
            inner: list[tuple[str, str]] = []
            left = self.from_item(depth - 1, inner, siblings)
            right = self.from_item(depth - 1, inner, siblings) \
                if self.rng.random() < 0.7 else "generate_series(1, 1) g"
            kind = self.pick(["JOIN", "INNER JOIN", "LEFT JOIN", "RIGHT JOIN", "CROSS JOIN",
                              "FULL JOIN"])
            # The ON names its own items, and sometimes a sibling it cannot see.
            near = inner + (siblings if self.rng.random() < 0.3 else [])
            on = "" if kind == "CROSS JOIN" else \
                f" ON {self.conjunction(near, self.rng.randrange(1, 4))}"
            join = f"{left} {kind} {right}{on}"
            tables.extend(inner)
            if self.rng.random() < 0.5:
                alias = self.alias()
                tables.append((alias, self.pick(self.TABLES)))
                return f"({join}) AS {alias}"
            return join if self.rng.random() < 0.5 else f"({join})"
        alias = self.pick(self.ALIASES)
        lateral = "LATERAL " if self.rng.random() < 0.4 else ""
        saved = self.outer
        self.outer = saved + siblings
        sub = self.select(depth - 1)
        self.outer = saved
        tables.append((alias, self.pick(self.TABLES)))
        return f"{lateral}({sub}) AS {alias}"

    def target(self, depth: int, tables: list[tuple[str, str]]) -> str:
        r = self.rng.random()
        if depth > 0 and r < 0.35:
            saved = self.outer
            self.outer = saved + tables
            sub = self.select(depth - 1, scalar=True)
            self.outer = saved
            return f"({sub})"
        if tables and r < 0.8:
            ref, _ = self.pick(tables)
            return f"{ref}.{self.pick(['input', 'id', 'name'])}" \
                if self.rng.random() < 0.5 else f"{ref}.*"
        return self.pick(["1", "count(*)", "now()"])

    def select(self, depth: int, scalar: bool = False) -> str:
        tables: list[tuple[str, str]] = []
        froms = []
        for _ in range(1 if self.rng.random() < 0.7 else 2):
            froms.append(self.from_item(depth, tables, list(tables)))
        n_targets = 1 if scalar else self.rng.randrange(1, 3)
        targets = [self.target(depth, tables) for _ in range(n_targets)]
        where = self.conjunction(tables, self.rng.randrange(1, 5))
        sql = f"SELECT {', '.join(targets)} FROM {', '.join(froms)} WHERE {where}"
        return sql + " LIMIT 1" if scalar else sql

    def statement(self) -> str:
        self.outer = []
        r = self.rng.random()
        depth = self.rng.randrange(1, 4)
        if r < 0.1:
            name = self.pick(["c", "traces", "w"])
            return f"WITH {name} AS ({self.select(depth - 1)}) SELECT * FROM {name}"
        if r < 0.18:
            return f"{self.select(depth - 1)} UNION ALL {self.select(depth - 1)}"
        return self.select(depth)


def generated_statements(seed: int, count: int) -> list[str]:
    gen = StatementGenerator(random.Random(seed))
    out = set()
    while len(out) < count:
        out.add(gen.statement())
    return sorted(out)


# ---- the plan check ----------------------------------------------------------------------

def split_conjuncts(cond: str) -> list[str]:
    """Top-level AND-ed parts of a deparsed condition."""
    cond = cond.strip()
    while cond.startswith("(") and matching_paren(cond, 0) == len(cond) - 1:
        cond = cond[1:-1].strip()
    parts, depth, start, i, quoted = [], 0, 0, 0, False
    while i < len(cond):
        c = cond[i]
        if c == "'":
            quoted = not quoted
        elif not quoted:
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif depth == 0 and cond.startswith(" AND ", i):
                parts.append(cond[start:i])
                start = i + 5
                i += 5
                continue
        i += 1
    parts.append(cond[start:])
    return [p.strip() for p in parts]


def matching_paren(s: str, i: int) -> int:
    depth, quoted = 0, False
    for j in range(i, len(s)):
        c = s[j]
        if c == "'":
            quoted = not quoted
        elif not quoted and c == "(":
            depth += 1
        elif not quoted and c == ")":
            depth -= 1
            if depth == 0:
                return j
    return -1


def pinned_by(cond: str | None, alias: str, column: str) -> bool:
    if not cond:
        return False
    quoted_alias = re.escape(alias)
    pin = re.compile(rf"^\(*({quoted_alias}\.{column}|\({quoted_alias}\.{column}\)::text) = "
                     rf"'{re.escape(TRACE)}'::text\)*$")
    flipped = re.compile(rf"^\(*'{re.escape(TRACE)}'::text = {quoted_alias}\.{column}\)*$")
    return any(pin.match(p) or flipped.match(p) for p in split_conjuncts(cond))


def unpinned_scans(plan: dict) -> list[str]:
    """Scans of a declared trace table whose own conditions lack the trace-id pin."""
    problems = []

    def walk(node: dict) -> None:
        if node.get("One-Time Filter") == "false":
            return  # contradictory constants: PostgreSQL never runs what is under it
        table = node.get("Relation Name")
        if table in ID_COLUMNS and node.get("Schema", "public") == "public":
            alias = node.get("Alias", table)
            column = ID_COLUMNS[table]
            conds = [node.get("Filter"), node.get("Index Cond"), node.get("Recheck Cond")]
            for child in node.get("Plans", []):
                if child.get("Node Type") in ("Bitmap Index Scan", "BitmapAnd"):
                    conds.append(child.get("Index Cond"))
            if not any(pinned_by(c, alias, column) for c in conds):
                problems.append(f"{node.get('Node Type')} on {table} {alias}: "
                                f"{[c for c in conds if c]}")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return problems


DECLARE = re.compile(r"^\s*DECLARE\s+\S+\s+(?:[A-Z ]*?)CURSOR\s+(?:WITH(?:OUT)?\s+HOLD\s+)?FOR\s+",
                     re.IGNORECASE | re.DOTALL)
PARAM = re.compile(r"\$(\d+)")


class GateOracleTest(harness.ClassFixtures, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_fixtures("tg-oracle-")
        cls.pg = cls.enter(PgServer(traces=3, payload_bytes=256))
        cls.config = os.path.join(cls.tmp, "oracle.yaml")
        with open(cls.config, "w") as f:
            f.write(CONFIG)
        cls.conn = cls.enter(RawPgConn(cls.pg.host, cls.pg.port))
        cls.conn.startup("tracegate", cls.pg.password_for("tracegate"))

    def verdicts(self, statements: list[str]) -> list[tuple[str, str, list[int]]]:
        """(statement, verdict line, trace params) for each statement, from the CLI."""
        lines = [s for s in statements if len(s.splitlines()) == 1 and s.strip()]
        p = subprocess.run([gateway_binary(), "gate", "check", "-c", self.config,
                            "--connection", "oracle", "--trace", TRACE],
                           input="\n".join(lines) + "\n", capture_output=True, text=True,
                           env={**os.environ, "TG_ORACLE_PW": "unused"}, timeout=600)
        self.assertIn(p.returncode, (0, 3), p.stderr)
        out = p.stdout.split("\n")[:-1]
        self.assertEqual(len(out), len(lines), p.stderr[-2000:])
        result = []
        for sql, line in zip(lines, out):
            verdict = line.split("  | ", 1)[0]
            params = [int(m) for m in re.findall(r"\$(\d+)=trace", verdict)]
            result.append((sql, verdict, params))
        return result

    def explain(self, sql: str, params: list[int]) -> dict | None:
        """The plan, or None when PostgreSQL refuses the statement."""
        body = DECLARE.sub("", sql).rstrip().rstrip(";")
        n = max([int(m) for m in PARAM.findall(body)] + [0])
        try:
            if n == 0:
                rows = self.conn.simple_query(f"EXPLAIN (VERBOSE, FORMAT JSON) {body}")
            else:
                self.conn.simple_query(f"PREPARE oracle_p AS {body}")
                try:
                    args = ", ".join(f"'{TRACE}'" for _ in range(n))
                    rows = self.conn.simple_query(
                        f"EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE oracle_p({args})")
                finally:
                    self.conn.simple_query("DEALLOCATE oracle_p")
        except PgProtocolError:
            return None
        return json.loads(rows[0][0])[0]["Plan"]

    def check(self, statements: list[str], min_checked: int) -> None:
        checked, refused_by_pg, disagreements = 0, 0, []
        for sql, verdict, params in self.verdicts(statements):
            if not verdict.startswith("allow"):
                continue
            head = DECLARE.sub("", sql).lstrip().lower()
            if not head.startswith(("select", "with", "values", "table", "(")):
                continue
            plan = self.explain(sql, params)
            if plan is None:
                refused_by_pg += 1
                continue
            checked += 1
            problems = unpinned_scans(plan)
            if problems:
                disagreements.append(f"{sql}\n    " + "\n    ".join(problems))
        print(f"\n  {checked} allowed statements checked against the plan; "
              f"{refused_by_pg} refused by PostgreSQL itself")
        self.assertEqual(disagreements, [], "the gate allowed scans PostgreSQL does not pin:\n"
                         + "\n".join(disagreements[:20]))
        self.assertGreaterEqual(checked, min_checked)

    def test_the_issue_reproductions_are_refused(self):
        for sql in [
            "SELECT (SELECT j.input FROM (traces u CROSS JOIN generate_series(1,1) g) AS j "
            "WHERE u.id = 'tr-1' AND j.id = 'tr-2') FROM traces u WHERE u.id = 'tr-1'",
            "SELECT x.user_id, x.input FROM traces u, LATERAL (SELECT j.user_id, j.input FROM "
            "(traces u CROSS JOIN generate_series(1,1) g) AS j WHERE u.id = 'tr-1') x "
            "WHERE u.id = 'tr-1'",
            # An ON clause sees only its join's items: u here is the outer query's.
            "SELECT (SELECT u.input FROM traces u, traces x JOIN traces y ON u.id = 'tr-1' AND "
            "x.id = u.id AND y.id = u.id LIMIT 1) FROM traces u WHERE u.id = 'tr-1'",
        ]:
            [(_, verdict, _)] = self.verdicts([sql])
            self.assertTrue(verdict.startswith("block trace_scope"), f"{verdict}\n{sql}")

    def test_corpus_statements_agree_with_the_plan(self):
        self.check(corpus_statements(), min_checked=150)

    def test_fuzz_corpus_statements_agree_with_the_plan(self):
        self.check(fuzz_corpus_statements(), min_checked=20)

    def test_generated_statements_agree_with_the_plan(self):
        seed = int(os.environ.get("GATE_ORACLE_SEED", "16"))
        count = int(os.environ.get("GATE_ORACLE_COUNT", "20000"))
        self.check(generated_statements(seed, count), min_checked=count // 20)


if __name__ == "__main__":
    unittest.main()
