// Statement gate cost per statement (DESIGN.md "Performance targets": the gate must keep a
// trace fetch >= 0.8 x direct tps; the budget is <= 5 us per cached statement).
//
//   BM_Uncached/<stmt>          CheckUncached: libpg_query parse + classification, the cold
//                               path (a statement shape seen for the first time)
//   BM_Cached/<stmt>            Check on a warm cache: the same text every time (a driver's
//                               repeated Parse, or psql repeating a query)
//   BM_CachedNewLiteral/<stmt>  Check where every call carries another trace id literal in
//                               the same shape (the simple-protocol case: each agent session
//                               sends its own trace id; must be a cache hit, not a parse)
//   BM_CachedMasked/<stmt>      Check on a warm cache for a session whose responses are
//                               masked (the entry an unmasked check left; one more branch)
//
// Config: trace tables traces(id), observations(trace_id), scores(trace_id), classify mode,
// default function list, default cache size. Every statement's verdict is checked once
// before timing (allowed, or blocked with the expected rule), so a gate change that alters a
// verdict fails the benchmark instead of timing something else.
//
// Run: build*/src/sql/gate_bench, or `make bench-gate` (JSON to bench/results/gate_bench.json).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "sql/gate.h"
#include "sql/shape.h"

namespace tracegate::sql {
namespace {

// A Langfuse-style trace id (UUID), the granted one.
constexpr char kTrace[] = "0f8fad5b-d9cb-469f-a165-70867728950e";

struct Statement {
  const char* name;
  // "{T}" stands for the trace id literal's contents.
  const char* sql;
  Rule want;
};

const Statement kStatements[] = {
    {"trace_by_literal", "SELECT t.* FROM traces t WHERE t.id = '{T}'", Rule::kNone},
    {"observations_join_param",
     "SELECT o.id, o.type, o.name, o.start_time, o.input, o.output FROM observations o "
     "JOIN traces t ON o.trace_id = t.id WHERE t.id = $1 ORDER BY o.start_time",
     Rule::kNone},
    {"cte_subquery",
     "WITH obs AS (SELECT o.id, o.name, o.trace_id FROM observations o "
     "WHERE o.trace_id = '{T}') "
     "SELECT t.id, t.name, (SELECT count(*) FROM scores s WHERE s.trace_id = '{T}') AS n_scores, "
     "(SELECT count(*) FROM obs) AS n_observations FROM traces t WHERE t.id = '{T}'",
     Rule::kNone},
    {"copy_blocked", "COPY traces TO STDOUT", Rule::kBulkExport},
    {"or_true_blocked", "SELECT * FROM traces WHERE id = '{T}' OR true", Rule::kTraceScope},
};

// Checked as a masked session would be.
const Statement kMaskedStatements[] = {
    {"trace_by_literal", "SELECT t.* FROM traces t WHERE t.id = '{T}'", Rule::kNone},
    {"json_accessors",
     "SELECT t.metadata->>'user', jsonb_array_length(t.metadata->'tags') FROM traces t "
     "WHERE t.id = '{T}'",
     Rule::kNone},
    {"substr_blocked", "SELECT substr(t.name, 1, 4) FROM traces t WHERE t.id = '{T}'",
     Rule::kMaskingBypass},
};

std::string Fill(const char* sql, const std::string& trace) {
  return absl::StrReplaceAll(sql, {{"{T}", trace}});
}

std::shared_ptr<const Gate> MakeGate() {
  config::Gate g;
  g.trace_tables = {{.schema = "public", .name = "traces", .id_column = "id"},
                    {.schema = "public", .name = "observations", .id_column = "trace_id"},
                    {.schema = "public", .name = "scores", .id_column = "trace_id"}};
  auto gate = Gate::Create(g);
  if (!gate.ok()) {
    std::fprintf(stderr, "gate_bench: Gate::Create: %s\n", gate.status().ToString().c_str());
    std::abort();
  }
  return *gate;
}

// Empty when `v` is what `s` expects, else why not.
std::string Mismatch(const Statement& s, const Verdict& v) {
  if (v.rule == s.want) return {};
  return std::string(s.name) + ": expected " + std::string(RuleName(s.want)) + ", got " +
         std::string(RuleName(v.rule)) + (v.allowed() ? "" : " (" + v.ErrorMessage() + ")");
}

void BM_Uncached(benchmark::State& state, const Statement* s) {
  auto gate = MakeGate();
  const std::string sql = Fill(s->sql, kTrace);
  if (std::string m = Mismatch(*s, gate->CheckUncached(sql, kTrace)); !m.empty()) {
    state.SkipWithError(m.c_str());
    return;
  }
  for (auto _ : state) {
    Verdict v = gate->CheckUncached(sql, kTrace);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Cached(benchmark::State& state, const Statement* s) {
  auto gate = MakeGate();
  const std::string sql = Fill(s->sql, kTrace);
  if (std::string m = Mismatch(*s, gate->Check(sql, kTrace)); !m.empty()) {  // warms the cache
    state.SkipWithError(m.c_str());
    return;
  }
  for (auto _ : state) {
    Verdict v = gate->Check(sql, kTrace);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_CachedMasked(benchmark::State& state, const Statement* s) {
  auto gate = MakeGate();
  const std::string sql = Fill(s->sql, kTrace);
  if (!gate->Check(sql, kTrace).allowed()) {  // warms the cache as an unmasked session
    state.SkipWithError((std::string(s->name) + ": refused unmasked").c_str());
    return;
  }
  if (std::string m = Mismatch(*s, gate->Check(sql, kTrace, true)); !m.empty()) {
    state.SkipWithError(m.c_str());
    return;
  }
  for (auto _ : state) {
    Verdict v = gate->Check(sql, kTrace, true);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

// Each call: another trace id, granted to "this session", in the same statement shape.
void BM_CachedNewLiteral(benchmark::State& state, const Statement* s) {
  constexpr size_t kVariants = 4096;
  auto gate = MakeGate();
  std::vector<std::string> ids;
  std::vector<std::string> sqls;
  ids.reserve(kVariants);
  sqls.reserve(kVariants);
  char buf[64];
  for (size_t i = 0; i < kVariants; ++i) {
    std::snprintf(buf, sizeof buf, "%08zx-d9cb-469f-a165-%012zx", i * 2654435761u % 0xffffffffu, i);
    ids.emplace_back(buf);
    sqls.push_back(Fill(s->sql, ids.back()));
  }
  // Every variant must map to one cache entry: the same shape key. Otherwise this would
  // time a parse per call and call it a cache hit.
  Shape first, other;
  if (!ShapeOf(sqls[0], first)) {
    state.SkipWithError((std::string(s->name) + ": no shape (never cached)").c_str());
    return;
  }
  for (size_t i = 0; i < kVariants; ++i) {
    if (!ShapeOf(sqls[i], other) || other.key != first.key) {
      state.SkipWithError((std::string(s->name) + ": variants differ in shape").c_str());
      return;
    }
    if (std::string m = Mismatch(*s, gate->Check(sqls[i], ids[i])); !m.empty()) {
      state.SkipWithError(m.c_str());
      return;
    }
  }
  // A literal that is not the granted trace is still refused through the cache.
  if (s->want == Rule::kNone && gate->Check(sqls[1], ids[0]).rule != Rule::kOtherTrace) {
    state.SkipWithError(
        (std::string(s->name) + ": another trace's literal was not refused").c_str());
    return;
  }
  size_t i = 0;
  for (auto _ : state) {
    const size_t k = i++ % kVariants;
    Verdict v = gate->Check(sqls[k], ids[k]);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

const bool kRegistered = [] {
  for (const Statement& s : kStatements) {
    benchmark::RegisterBenchmark((std::string("BM_Uncached/") + s.name).c_str(), BM_Uncached, &s)
        ->Unit(benchmark::kMicrosecond);
  }
  for (const Statement& s : kStatements) {
    benchmark::RegisterBenchmark((std::string("BM_Cached/") + s.name).c_str(), BM_Cached, &s)
        ->Unit(benchmark::kMicrosecond);
  }
  for (const Statement& s : kMaskedStatements) {
    benchmark::RegisterBenchmark((std::string("BM_CachedMasked/") + s.name).c_str(),
                                 BM_CachedMasked, &s)
        ->Unit(benchmark::kMicrosecond);
  }
  for (const Statement& s : kStatements) {
    if (std::string(s.sql).find("{T}") == std::string::npos) continue;  // no literal to vary
    benchmark::RegisterBenchmark((std::string("BM_CachedNewLiteral/") + s.name).c_str(),
                                 BM_CachedNewLiteral, &s)
        ->Unit(benchmark::kMicrosecond);
  }
  return true;
}();

}  // namespace
}  // namespace tracegate::sql
