#!/usr/bin/env python3
"""Generate a Langfuse-shaped trace store as SQL for PostgreSQL.

The output is one SQL script that (re)creates the tables `traces`, `observations` and
`scores`, loads them with COPY ... FROM STDIN (text format, escaped here), builds the
indexes and runs ANALYZE. It loads with:

    python3 scripts/gen_traces.py --traces 200 --seed 1 | psql -v ON_ERROR_STOP=1 -f - traces
    python3 scripts/gen_traces.py -o /tmp/traces.sql && psql -v ON_ERROR_STOP=1 -f /tmp/traces.sql

Everything is a pure function of the options: the same --seed gives byte-identical SQL.
Generated traces look like real LLM reasoning traces (chat messages, provider-native
reasoning blocks with opaque base64 signatures, tool calls whose arguments are JSON inside
a string, nested metadata). About one trace in four carries SYNTHETIC personal data: only
documented test values (example.com mail addresses, the 4111 1111 1111 1111 test card,
555-01xx phone numbers, the DE89 3704 ... IBAN from the IBAN spec examples, AWS's
documented example key). --manifest writes which trace holds which planted value, so
masking tests know the ground truth without the data carrying a marker.

--shared-data DIR adds the real framework exports in DIR/*.json (each
{"trace": {...}, "observations": [...]}) on top of the generated rows.

Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import glob
import json
import os
import random
import sys
import uuid
from typing import Any, Iterable

OBSERVATION_TYPES = ("SPAN", "GENERATION", "EVENT", "AGENT", "TOOL", "CHAIN", "RETRIEVER",
                     "EVALUATOR", "EMBEDDING", "GUARDRAIL")

SCHEMA = """\
SET client_min_messages = warning;
SET standard_conforming_strings = on;
BEGIN;
DROP TABLE IF EXISTS scores;
DROP TABLE IF EXISTS observations;
DROP TABLE IF EXISTS traces;
CREATE TABLE traces (
  id text PRIMARY KEY,
  "timestamp" timestamptz,
  name text,
  user_id text,
  session_id text,
  release text,
  version text,
  tags text[],
  input jsonb,
  output jsonb,
  metadata jsonb,
  risk int DEFAULT 0,
  project_id text
);
CREATE TABLE observations (
  id text PRIMARY KEY,
  trace_id text NOT NULL REFERENCES traces(id),
  parent_observation_id text,
  type text CHECK (type IN ('SPAN','GENERATION','EVENT','AGENT','TOOL','CHAIN','RETRIEVER',
                            'EVALUATOR','EMBEDDING','GUARDRAIL')),
  name text,
  start_time timestamptz,
  end_time timestamptz,
  model text,
  input jsonb,
  output jsonb,
  metadata jsonb,
  usage jsonb,
  level text
);
CREATE TABLE scores (
  id text PRIMARY KEY,
  trace_id text NOT NULL REFERENCES traces(id),
  observation_id text,
  name text,
  value double precision,
  comment text,
  "timestamp" timestamptz
);
"""

TRACE_COLUMNS = ("id", "timestamp", "name", "user_id", "session_id", "release", "version",
                 "tags", "input", "output", "metadata", "risk", "project_id")
OBSERVATION_COLUMNS = ("id", "trace_id", "parent_observation_id", "type", "name",
                       "start_time", "end_time", "model", "input", "output", "metadata",
                       "usage", "level")
SCORE_COLUMNS = ("id", "trace_id", "observation_id", "name", "value", "comment", "timestamp")

# --- COPY text-format encoding -------------------------------------------------------------


class Json:
    """Marks a value that goes into a jsonb column."""

    def __init__(self, value: Any):
        self.value = value


class TextArray:
    """Marks a list that goes into a text[] column."""

    def __init__(self, items: Iterable[str]):
        self.items = list(items)


_COPY_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b",
                 "\f": "\\f", "\v": "\\v"}


def copy_escape(text: str) -> str:
    """Escapes one field for COPY ... FROM STDIN in text format (the default format)."""
    if "\x00" in text:
        raise ValueError("PostgreSQL text cannot hold NUL bytes")
    return "".join(_COPY_ESCAPES.get(ch, ch) for ch in text)


def array_literal(items: list[str]) -> str:
    """A text[] input literal: every element double-quoted, with \\ and \" escaped."""
    quoted = []
    for item in items:
        quoted.append('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(quoted) + "}"


def copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, Json):
        if value.value is None:
            return "\\N"
        # ensure_ascii=False keeps UTF-8 as is; json.dumps escapes control characters, and
        # \u0000 is rejected by jsonb, so strip NULs from strings first.
        return copy_escape(json.dumps(_strip_nul(value.value), ensure_ascii=False,
                                      separators=(",", ":")))
    if isinstance(value, TextArray):
        return copy_escape(array_literal(value.items))
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        return repr(value)
    return copy_escape(str(value))


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    return value


def write_copy(out, table: str, columns: tuple[str, ...], rows: Iterable[dict]) -> None:
    cols = ", ".join(f'"{c}"' for c in columns)
    out.write(f"COPY {table} ({cols}) FROM STDIN;\n")
    for row in rows:
        out.write("\t".join(copy_field(row.get(c)) for c in columns))
        out.write("\n")
    out.write("\\.\n")


# --- synthetic content ---------------------------------------------------------------------

WORDS = ("the agent should verify the invoice total against the ledger before replying "
         "consider whether the retrieved passage answers the question and cite the source "
         "the user asked for a refund so check the order status policy window and shipping "
         "carrier tracking then summarise options plan step tool result observation "
         "latency budget cache miss retry backoff schema field customer account balance "
         "weather forecast itinerary flight hotel booking reference confirm cancel update "
         "vector search top k rerank embedding chunk overlap context window token limit").split()

TOPICS = [
    ("refund", "I was charged twice for order {order}. Can you refund the duplicate?"),
    ("travel", "Plan a two-day trip to {city} with a budget of {amount} EUR."),
    ("support", "My dashboard shows error {code} since this morning. What should I do?"),
    ("billing", "Please update the card on file for account {account}."),
    ("research", "Summarise the three most cited papers on retrieval-augmented generation."),
    ("weather", "What's the weather in {city} tomorrow, and should I bring an umbrella?"),
]
CITIES = ["Lisbon", "Berlin", "Osaka", "Toronto", "Nairobi", "Valparaiso", "Tallinn"]
MODELS = [("anthropic", "claude-sonnet-4-20250514"), ("anthropic", "claude-3-7-sonnet-20250219"),
          ("openai", "o4-mini-2025-04-16"), ("openai", "gpt-5-2025-08-07")]
TOOLS = ["lookup_order", "search_docs", "get_weather", "issue_refund", "update_payment_method",
         "create_ticket"]
FIRST = ["jane", "john", "maria", "wei", "amara", "lukas", "sofia", "omar"]
LAST = ["doe", "roe", "smith", "mustermann", "tanaka", "okafor", "silva"]

# Documented test/example values only. Never add anything that could be a live secret.
TEST_CARDS = ["4111 1111 1111 1111", "4111111111111111", "5555 5555 5555 4444",
              "3782 822463 10005"]
TEST_PHONES = ["+1 415 555 0100", "+1-202-555-0147", "(415) 555-0199", "+44 20 7946 0958"]
TEST_IBANS = ["DE89370400440532013000", "DE89 3704 0044 0532 0130 00",
              "GB82WEST12345698765432"]
TEST_AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


assert all(luhn_valid(c) for c in TEST_CARDS)


class Generator:
    def __init__(self, seed: int, payload_bytes: int):
        self.rng = random.Random(seed)
        self.payload_bytes = payload_bytes
        self.base_time = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
        self.manifest: dict[str, list[dict]] = {}

    # Deterministic ids: uuid4-shaped values drawn from the seeded generator.
    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def hex_id(self, n: int = 16) -> str:
        return "%0*x" % (n, self.rng.getrandbits(4 * n))

    def b64(self, n: int) -> str:
        return base64.b64encode(self.rng.randbytes(n)).decode()

    def sentence(self, n: int) -> str:
        words = [self.rng.choice(WORDS) for _ in range(n)]
        return " ".join(words).capitalize() + "."

    def paragraph(self, sentences: int = 4) -> str:
        return " ".join(self.sentence(self.rng.randint(8, 18)) for _ in range(sentences))

    def fake_person(self) -> dict:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        return {"name": f"{first.capitalize()} {last.capitalize()}",
                "email": f"{first}.{last}@example.com"}

    def ts(self, base: dt.datetime, ms: int) -> dt.datetime:
        return base + dt.timedelta(milliseconds=ms)

    @staticmethod
    def fmt_ts(t: dt.datetime) -> str:
        return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "+00"

    def plant_pii(self, trace_id: str) -> tuple[list[dict], str]:
        """Picks synthetic personal data for one trace; returns (planted, prose)."""
        person = self.fake_person()
        planted = [{"kind": "email", "value": person["email"]},
                   {"kind": "person_name", "value": person["name"]}]
        extra = self.rng.sample(["card", "phone", "iban", "aws_key"], k=self.rng.randint(1, 3))
        prose = [f"My name is {person['name']}, email {person['email']}."]
        for kind in extra:
            if kind == "card":
                v = self.rng.choice(TEST_CARDS)
                prose.append(f"Charge the card {v}, expiry 12/34, CVC 123.")
            elif kind == "phone":
                v = self.rng.choice(TEST_PHONES)
                prose.append(f"Call me back on {v}.")
            elif kind == "iban":
                v = self.rng.choice(TEST_IBANS)
                prose.append(f"Refund to IBAN {v} please.")
            else:
                v = TEST_AWS_KEY
                prose.append(f"Our deploy logs show access key {v} failing.")
            planted.append({"kind": kind, "value": v})
        self.manifest[trace_id] = planted
        return planted, " ".join(prose)

    def reasoning_block(self, provider: str, text: str) -> dict:
        if provider == "anthropic":
            return {"type": "thinking", "thinking": text, "signature": self.b64(256)}
        return {"type": "reasoning", "id": "rs_" + self.hex_id(40),
                "summary": [{"type": "summary_text", "text": text}],
                "encrypted_content": "gAAAAAB" + self.b64(384)}

    def tool_call(self, provider: str, tool: str, args: dict) -> dict:
        arguments = json.dumps(args)  # JSON inside a string, as the providers send it
        if provider == "anthropic":
            # Anthropic sends input as an object; the raw streamed partial JSON is a string.
            return {"type": "tool_use", "id": "toolu_" + self.hex_id(24), "name": tool,
                    "input": args, "partial_json": arguments}
        return {"type": "function_call", "id": "fc_" + self.hex_id(40),
                "call_id": "call_" + self.hex_id(24), "name": tool, "arguments": arguments}

    def trace(self, index: int) -> tuple[dict, list[dict], list[dict]]:
        rng = self.rng
        trace_id = self.uuid()
        start = self.ts(self.base_time, rng.randint(0, 90 * 24 * 3600 * 1000))
        provider, model = rng.choice(MODELS)
        topic, template = rng.choice(TOPICS)
        question = template.format(order=f"A-{rng.randint(10000, 99999)}",
                                   city=rng.choice(CITIES), amount=rng.randint(200, 2000),
                                   code=f"E{rng.randint(100, 999)}",
                                   account=f"acct_{self.hex_id(8)}")
        has_pii = rng.random() < 0.25
        planted, pii_prose = self.plant_pii(trace_id) if has_pii else ([], "")
        tool = rng.choice(TOOLS)
        tool_args = {"query": question[:60], "limit": rng.randint(1, 10),
                     "filters": {"topic": topic, "since": "2025-01-01"}}
        for p in planted:
            if p["kind"] in ("email", "phone"):
                tool_args["customer_" + p["kind"]] = p["value"]

        messages = [
            {"role": "system", "content": "You are a careful support agent. Use tools when "
                                          "facts are needed. Never reveal internal notes."},
            {"role": "user", "content": (question + " " + pii_prose).strip()},
        ]
        tool_result = {"status": "ok",
                       "items": [{"id": self.hex_id(8), "score": round(rng.random(), 4),
                                  "text": self.paragraph(2)}
                                 for _ in range(rng.randint(1, 3))]}
        call = self.tool_call(provider, tool, tool_args)
        output_content = [self.reasoning_block(provider, self.paragraph(3)), call,
                          {"type": "text", "text": self.paragraph(3)}]
        input_doc = {"messages": messages,
                     "tools": [{"name": t, "description": self.sentence(8),
                                "parameters": {"type": "object",
                                               "properties": {"query": {"type": "string"}}}}
                               for t in rng.sample(TOOLS, 3)]}
        output_doc = {"role": "assistant", "model": model, "content": output_content,
                      "stop_reason": rng.choice(["end_turn", "tool_use", "stop"]),
                      "tool_results": [{"tool_call_id": call.get("call_id", call["id"]),
                                        "content": json.dumps(tool_result)}]}
        if has_pii and rng.random() < 0.5:
            output_doc["content"].append({"type": "text", "text": "I have noted your details: "
                                          + pii_prose})
        # Pad to the requested payload size with more conversation turns.
        budget = self.payload_bytes - len(json.dumps(input_doc)) - len(json.dumps(output_doc))
        turn = 0
        while budget > 0:
            chunk = self.paragraph(rng.randint(2, 5))[: max(budget, 40)]
            role = "user" if turn % 2 == 0 else "assistant"
            entry = {"role": role, "content": chunk}
            (input_doc["messages"] if turn % 3 != 2 else output_doc["content"]).append(
                entry if turn % 3 != 2 else {"type": "text", "text": chunk})
            budget -= len(json.dumps(entry))
            turn += 1

        metadata = {"environment": rng.choice(["production", "staging"]),
                    "sdk": {"name": "langfuse-python", "version": f"3.{rng.randint(0, 9)}.0"},
                    "request": {"region": rng.choice(["eu-west-1", "us-east-1"]),
                                "latency_ms": rng.randint(200, 9000),
                                "headers": {"x-request-id": self.uuid()}},
                    "agent": {"framework": rng.choice(["langgraph", "openai-agents",
                                                       "pydantic-ai"]),
                              "steps": rng.randint(1, 8)}}
        if has_pii:
            metadata["customer"] = {"email": planted[0]["value"],
                                    "contact": {"name": planted[1]["value"]}}
        risk = 0 if not has_pii else 40 + 15 * (len(planted) - 2)
        trace_row = {
            "id": trace_id, "timestamp": self.fmt_ts(start), "name": f"{topic}-agent",
            "user_id": f"user_{self.hex_id(8)}" if rng.random() < 0.8 else None,
            "session_id": f"sess_{self.hex_id(12)}" if rng.random() < 0.7 else None,
            "release": f"v1.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
            "version": str(rng.randint(1, 5)),
            "tags": TextArray(rng.sample(["prod", "eval", "beta", topic, "agent",
                                          'quote"tag', "back\\slash"], rng.randint(0, 3))),
            "input": Json(input_doc), "output": Json(output_doc), "metadata": Json(metadata),
            "risk": risk, "project_id": f"proj_{rng.choice(['alpha', 'beta', 'gamma'])}",
        }

        observations = self.observations(trace_id, start, provider, model, messages,
                                          output_content, call, tool_args, tool_result)
        scores = []
        for _ in range(rng.randint(0, 3)):
            name = rng.choice(["helpfulness", "hallucination", "toxicity", "correctness"])
            target = rng.choice([None] + [o["id"] for o in observations])
            scores.append({"id": self.uuid(), "trace_id": trace_id, "observation_id": target,
                           "name": name, "value": round(rng.random(), 3),
                           "comment": self.sentence(10) if rng.random() < 0.6 else None,
                           "timestamp": self.fmt_ts(self.ts(start, rng.randint(10000, 90000)))})
        return trace_row, observations, scores

    def observations(self, trace_id, start, provider, model, messages, output_content, call,
                     tool_args, tool_result) -> list[dict]:
        rng = self.rng
        obs = []
        t = 0

        def add(otype, name, parent, dur, **kw):
            nonlocal t
            row = {"id": self.hex_id(16), "trace_id": trace_id, "parent_observation_id": parent,
                   "type": otype, "name": name,
                   "start_time": self.fmt_ts(self.ts(start, t)),
                   "end_time": self.fmt_ts(self.ts(start, t + dur)), "level": "DEFAULT"}
            row.update(kw)
            obs.append(row)
            t += rng.randint(1, 50)
            return row["id"]

        root = add("AGENT", "agent.run", None, rng.randint(2000, 20000),
                   input=Json({"messages": messages[-1:]}), metadata=Json({"attempt": 1}))
        add("GUARDRAIL", "input-guardrail", root, rng.randint(5, 80),
            output=Json({"allowed": True, "checks": ["prompt_injection", "pii"]}))
        add("RETRIEVER", "vector-search", root, rng.randint(20, 300),
            input=Json({"query": messages[-1]["content"][:80], "top_k": 5}),
            output=Json({"documents": [{"id": self.hex_id(8), "text": self.sentence(14)}
                                       for _ in range(3)]}))
        add("EMBEDDING", "embed-query", root, rng.randint(10, 100), model="text-embedding-3-small",
            usage=Json({"input": rng.randint(5, 60), "total": rng.randint(5, 60)}))
        chain = add("CHAIN", "reason-and-act", root, rng.randint(500, 9000))
        in_tok, out_tok = rng.randint(200, 4000), rng.randint(50, 2000)
        add("GENERATION", f"{provider}.messages", chain, rng.randint(400, 8000), model=model,
            input=Json(messages), output=Json(output_content[:2]),
            metadata=Json({"provider": provider, "params": {"temperature": 0.2,
                                                            "max_tokens": 4096}}),
            usage=Json({"input": in_tok, "output": out_tok, "total": in_tok + out_tok,
                        "output_details": {"reasoning": rng.randint(0, out_tok)}}))
        add("TOOL", call["name"], chain, rng.randint(20, 900),
            input=Json({"arguments": json.dumps(tool_args)}), output=Json(tool_result))
        add("EVENT", "tool-result-received", chain, 0,
            metadata=Json({"bytes": rng.randint(50, 5000)}))
        if rng.random() < 0.5:
            add("SPAN", "post-process", root, rng.randint(1, 40),
                level=rng.choice(["DEFAULT", "DEBUG", "WARNING"]))
        if rng.random() < 0.3:
            add("EVALUATOR", "llm-judge", root, rng.randint(300, 3000), model="gpt-4o-mini",
                output=Json({"score": round(rng.random(), 2), "reason": self.sentence(12)}),
                level="DEFAULT")
        if rng.random() < 0.1:
            add("SPAN", "rate-limit", root, 0, level="ERROR",
                metadata=Json({"error": {"type": "RateLimitError", "retry_after_s": 2}}))
        return obs


# --- framework exports ---------------------------------------------------------------------


def _maybe_json(value: Any) -> Any:
    """Langfuse exports hold trace input/output/metadata as JSON text; decode when it is an
    object or array, keep any other string as a JSON string."""
    if isinstance(value, str):
        s = value.strip()
        if s[:1] in ("{", "["):
            try:
                return json.loads(s)
            except ValueError:
                return value
    return value


def _export_ts(value: Any) -> str | None:
    # "2025-06-11T14:01:32.598Z" is accepted by timestamptz input as is.
    return value if isinstance(value, str) and value else None


def load_shared(directory: str) -> tuple[list[dict], list[dict], list[dict]]:
    if not os.path.isdir(directory):
        raise SystemExit(f"gen_traces: --shared-data {directory}: not a directory")
    files = sorted(glob.glob(os.path.join(directory, "*.json")))
    if not files:
        raise SystemExit(f"gen_traces: --shared-data {directory}: no *.json files")
    traces, observations, scores = [], [], []
    for path in files:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        try:
            t = doc["trace"]
            obs = doc["observations"]
        except (KeyError, TypeError):
            raise SystemExit(f"gen_traces: {path}: expected {{\"trace\":..,\"observations\":..}}")
        tags = t.get("tags") or []
        traces.append({
            "id": t["id"], "timestamp": _export_ts(t.get("timestamp")), "name": t.get("name"),
            "user_id": t.get("userId"), "session_id": t.get("sessionId"),
            "release": t.get("release"), "version": t.get("version"),
            "tags": TextArray(str(x) for x in tags),
            "input": Json(_maybe_json(t.get("input"))),
            "output": Json(_maybe_json(t.get("output"))),
            "metadata": Json(_maybe_json(t.get("metadata"))),
            "risk": 0, "project_id": t.get("projectId"),
        })
        for o in obs:
            otype = o.get("type")
            observations.append({
                "id": o["id"], "trace_id": t["id"],
                "parent_observation_id": o.get("parentObservationId"),
                "type": otype if otype in OBSERVATION_TYPES else "SPAN",
                "name": o.get("name"), "start_time": _export_ts(o.get("startTime")),
                "end_time": _export_ts(o.get("endTime")), "model": o.get("model"),
                "input": Json(_maybe_json(o.get("input"))),
                "output": Json(_maybe_json(o.get("output"))),
                "metadata": Json(_maybe_json(o.get("metadata"))),
                "usage": Json(o.get("usageDetails") or o.get("usage")),
                "level": o.get("level"),
            })
        for s in t.get("scores") or []:
            value = s.get("value")
            scores.append({
                "id": s["id"], "trace_id": t["id"], "observation_id": s.get("observationId"),
                "name": s.get("name"), "value": float(value) if value is not None else None,
                "comment": s.get("comment"), "timestamp": _export_ts(s.get("timestamp")),
            })
    return traces, observations, scores


def _check_unique(rows: list[dict], what: str) -> None:
    seen = set()
    for r in rows:
        if r["id"] in seen:
            raise SystemExit(f"gen_traces: duplicate {what} id {r['id']!r}")
        seen.add(r["id"])


def build(args) -> tuple[list[dict], list[dict], list[dict], dict]:
    gen = Generator(args.seed, args.payload_bytes)
    traces, observations, scores = [], [], []
    for i in range(args.traces):
        t, o, s = gen.trace(i)
        traces.append(t)
        observations.extend(o)
        scores.extend(s)
    if args.shared_data is not None:
        t, o, s = load_shared(args.shared_data)
        traces += t
        observations += o
        scores += s
    _check_unique(traces, "trace")
    _check_unique(observations, "observation")
    _check_unique(scores, "score")
    return traces, observations, scores, gen.manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--traces", type=int, default=200, help="generated traces (default 200)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--payload-bytes", type=int, default=8192,
                   help="approximate size of each trace's input+output JSON (default 8192; "
                        "the fixed structure alone is about 3 KB)")
    p.add_argument("--shared-data", metavar="DIR", default=None,
                   help="also load the framework exports DIR/*.json (error if missing)")
    p.add_argument("-o", "--output", metavar="FILE", help="write SQL here instead of stdout")
    p.add_argument("--list-ids", action="store_true",
                   help="print the trace ids, one a line, instead of SQL")
    p.add_argument("--manifest", metavar="FILE",
                   help="write JSON {trace_id: [{kind, value}]} of the planted synthetic PII")
    args = p.parse_args(argv)
    if args.traces < 0 or args.payload_bytes < 0:
        p.error("--traces and --payload-bytes must be >= 0")

    traces, observations, scores, manifest = build(args)
    out = open(args.output, "w", encoding="utf-8", newline="\n") if args.output else sys.stdout
    try:
        if args.list_ids:
            for t in traces:
                out.write(t["id"] + "\n")
        else:
            out.write(f"-- generated by scripts/gen_traces.py --traces {args.traces} "
                      f"--seed {args.seed} --payload-bytes {args.payload_bytes}"
                      f"{' --shared-data ' + args.shared_data if args.shared_data else ''}\n")
            out.write(f"-- {len(traces)} traces, {len(observations)} observations, "
                      f"{len(scores)} scores\n")
            out.write(SCHEMA)
            write_copy(out, "traces", TRACE_COLUMNS, traces)
            write_copy(out, "observations", OBSERVATION_COLUMNS, observations)
            write_copy(out, "scores", SCORE_COLUMNS, scores)
            out.write("CREATE INDEX observations_trace_id_idx ON observations (trace_id);\n")
            out.write("CREATE INDEX scores_trace_id_idx ON scores (trace_id);\n")
            out.write("COMMIT;\nANALYZE traces;\nANALYZE observations;\nANALYZE scores;\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if args.manifest:
        with open(args.manifest, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
