"""Keeps machine paths out of committed benchmark results.

A result JSON names binaries, configuration sections and log lines, and those carry the
paths of the machine the bench ran on (/home/<user>/src/tracegate/build/tracegate, the
mktemp work directory). scrub() rewrites every string in a result before it is written:

    <repository root>/x        -> x            (repo-relative)
    <repository root>          -> .
    <parent of the root>/x     -> ../x         (../shared/data, next to the repository)
    <work dir>/x               -> $WORK/x      (the run's scratch directory)
    <temp dir>/<name>/x        -> $WORK/x      (any other scratch directory of the run)
    <home>/x                   -> ~/x

System paths (/usr/lib/postgresql/15/bin, /dev/null) are the same on every machine that
installs the same packages and stay as they are.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any

REPO_DIR = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def _at(path: str) -> str:
    # `path` where a path starts: at the beginning of the string or after a character that
    # cannot be part of a path (a space, a quote, '=', ':', '(').
    return r"(?<![\w.~$/-])" + re.escape(path.rstrip("/"))


def _rules(work: str | None) -> list[tuple[re.Pattern[str], str]]:
    named: dict[str, str] = {}
    for w in (work, os.environ.get("WORK")):
        if w:
            named[os.path.realpath(w)] = "$WORK"
            named[os.path.abspath(w)] = "$WORK"
    named[REPO_DIR] = "."
    rules: list[tuple[re.Pattern[str], str]] = []
    # Longest first, so the work dir wins over a temp dir or home that contains it.
    for path, name in sorted(named.items(), key=lambda d: -len(d[0])):
        rules.append((re.compile(_at(path) + "/"), "" if name == "." else name + "/"))
        rules.append((re.compile(_at(path) + r"(?![\w./-])"), name))
    parent = os.path.dirname(REPO_DIR)
    if parent not in ("", "/"):
        rules.append((re.compile(_at(parent) + "/"), "../"))
    for tmp in sorted({tempfile.gettempdir(), "/tmp", "/var/tmp"}, key=len, reverse=True):
        rules.append((re.compile(_at(tmp) + r"/[^/\s'\"]+/"), "$WORK/"))
        rules.append((re.compile(_at(tmp) + r"/[^/\s'\"]+"), "$WORK"))
    home = os.path.expanduser("~")
    if home not in ("", "/", "~"):
        rules.append((re.compile(_at(home) + "/"), "~/"))
    return rules


def _scrub_str(s: str, rules: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, repl in rules:
        s = pattern.sub(lambda _m, r=repl: r, s)
    return s


def scrub(obj: Any, work: str | None = None) -> Any:
    """obj with machine paths rewritten in every string (keys included); see the module doc."""
    rules = _rules(work)

    def walk(o: Any) -> Any:
        if isinstance(o, str):
            return _scrub_str(o, rules)
        if isinstance(o, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v) for v in o]
        return o

    return walk(obj)
