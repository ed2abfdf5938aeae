// Masking throughput and latency on trace JSON, all default detectors, redact strategy.
// Uses the real framework traces (../shared/data/langfuse-framework-traces next to the
// repository root, or $TRACEGATE_TRACE_DIR; test_support::TraceDir) when present, else
// generated Langfuse-shaped traces, and says on stderr which. Targets (DESIGN.md):
// >= 300 MB/s per core; p99 <= 2 ms for a 10 KB trace. bench/masking.sh runs it and reports
// MB/s, p50/p99 and the memcpy ceiling.
//
//   build-masking/src/masking/masking_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "masking/masker.h"
#include "masking/test_support.h"

namespace tracegate::masking {
namespace {

using test_support::GeneratedTrace;
using test_support::LoadTraceFiles;

std::shared_ptr<const Masker> DefaultMasker() {
  static std::shared_ptr<const Masker> m = [] {
    auto r = Masker::Create(Profile{});
    if (!r.ok()) {
      std::abort();
    }
    return *r;
  }();
  return m;
}

// The corpus as one value per file (one row each), real if present.
const std::vector<std::string>& Corpus() {
  static std::vector<std::string> docs = [] {
    std::vector<std::string> out;
    for (auto& [name, body] : LoadTraceFiles()) {
      out.push_back(std::move(body));
    }
    if (out.empty()) {
      for (uint32_t i = 0; i < 13; ++i) {
        out.push_back(GeneratedTrace(4096u << (i % 7), 0, i + 1));
      }
    }
    return out;
  }();
  return docs;
}

// The same corpus with about one planted value per 400 bytes.
const std::vector<std::string>& DenseCorpus() {
  static std::vector<std::string> docs = [] {
    std::vector<std::string> out;
    for (uint32_t i = 0; i < 13; ++i) {
      out.push_back(GeneratedTrace(4096u << (i % 7), 1, i + 1));
    }
    return out;
  }();
  return docs;
}

// `json` with one planted value (cycling through test_support::DensePiiValues()) after a space
// inside a JSON string value about every `every` bytes: keys, numbers and strings without spaces
// (ids, base64 signatures) stay as they are. The values carry no quote or backslash, and a
// literal space is never part of an escape, so the result is valid JSON whenever `json` is.
std::string PlantPii(std::string_view json, size_t every) {
  const std::vector<std::string>& pii = test_support::DensePiiValues();
  std::string out;
  out.reserve(json.size() + json.size() / 8);
  std::vector<char> containers;  // '{' or '['
  bool in_string = false, escaped = false, expect_key = false, value_string = false;
  size_t since = 0, planted = 0;
  for (char c : json) {
    out += c;
    ++since;
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      } else if (c == ' ' && value_string && since >= every) {
        out += "contact " + pii[planted++ % pii.size()] + " now ";
        since = 0;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        value_string = !(expect_key && !containers.empty() && containers.back() == '{');
        break;
      case '{':
        containers.push_back('{');
        expect_key = true;
        break;
      case '[':
        containers.push_back('[');
        expect_key = false;
        break;
      case '}':
      case ']':
        if (!containers.empty()) {
          containers.pop_back();
        }
        expect_key = false;
        break;
      case ':':
        expect_key = false;
        break;
      case ',':
        expect_key = !containers.empty() && containers.back() == '{';
        break;
      default:
        break;
    }
  }
  return out;
}

// The framework traces (or the generated corpus) with a planted value about every 400
// bytes of string values: real structure, dense PII. Aborts if planting broke the JSON.
const std::vector<std::string>& PlantedCorpus() {
  static std::vector<std::string> docs = [] {
    std::vector<std::string> out;
    for (const std::string& d : Corpus()) {
      out.push_back(PlantPii(d, 400));
      if (!test_support::ValidJson(out.back())) {
        std::abort();
      }
    }
    return out;
  }();
  return docs;
}

void RunCorpus(benchmark::State& state, const std::vector<std::string>& docs) {
  auto scanner = Scanner::Create(DefaultMasker());
  if (!scanner.ok()) {
    state.SkipWithError("scanner");
    return;
  }
  std::string out;
  Counts counts;
  size_t bytes = 0;
  for (const std::string& d : docs) {
    bytes += d.size();
  }
  for (auto _ : state) {
    for (const std::string& d : docs) {
      auto r = scanner->MaskJson(d, {"trace", ValueKind::kJson}, out, counts);
      if (!r.ok()) {
        state.SkipWithError(std::string(r.status().message()).c_str());
        return;
      }
      benchmark::DoNotOptimize(out.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.counters["masked_per_pass"] =
      static_cast<double>(counts.Total()) / static_cast<double>(state.iterations());
}

void BM_MaskTraceCorpus(benchmark::State& state) { RunCorpus(state, Corpus()); }
BENCHMARK(BM_MaskTraceCorpus)->Unit(benchmark::kMillisecond);

void BM_MaskDensePii(benchmark::State& state) { RunCorpus(state, DenseCorpus()); }
BENCHMARK(BM_MaskDensePii)->Unit(benchmark::kMillisecond);

// The trace corpus of BM_MaskTraceCorpus with a value planted about every 400 bytes.
void BM_MaskTraceCorpusPlanted(benchmark::State& state) { RunCorpus(state, PlantedCorpus()); }
BENCHMARK(BM_MaskTraceCorpusPlanted)->Unit(benchmark::kMillisecond);

// Each corpus file on its own (the label names it).
void BM_MaskTraceFile(benchmark::State& state) {
  const auto& docs = Corpus();
  size_t i = static_cast<size_t>(state.range(0));
  if (i >= docs.size()) {
    state.SkipWithError("no such file");
    return;
  }
  std::vector<std::string> one = {docs[i]};
  static const auto names = LoadTraceFiles();
  state.SetLabel(i < names.size() ? names[i].first : "generated");
  RunCorpus(state, one);
}
BENCHMARK(BM_MaskTraceFile)->DenseRange(0, 12)->Unit(benchmark::kMicrosecond);

// The ceiling: one memcpy of the same bytes.
void BM_MemcpyCorpus(benchmark::State& state) {
  const auto& docs = Corpus();
  std::string out;
  size_t bytes = 0;
  for (const std::string& d : docs) {
    bytes += d.size();
  }
  for (auto _ : state) {
    for (const std::string& d : docs) {
      out.resize(d.size());
      std::memcpy(out.data(), d.data(), d.size());
      benchmark::DoNotOptimize(out.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}
BENCHMARK(BM_MemcpyCorpus)->Unit(benchmark::kMillisecond);

// One ~10 KB trace: the real openai-assistants trace (9970 bytes) when present, else a
// generated one with planted values.
const std::string& Trace10KB() {
  static const std::string doc = [] {
    std::string d;
    for (auto& [name, body] : LoadTraceFiles()) {
      if (body.size() >= 9000 && body.size() <= 11000) {
        d = body;
      }
    }
    return d.empty() ? GeneratedTrace(10000, 4) : d;
  }();
  return doc;
}

// One document per call, timed one by one: reports p50/p99/max per call.
void RunLatency(benchmark::State& state, const std::string& doc) {
  auto scanner = Scanner::Create(DefaultMasker());
  if (!scanner.ok()) {
    state.SkipWithError("scanner");
    return;
  }
  std::string out;
  Counts counts;
  std::vector<double> us;
  us.reserve(1 << 20);
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = scanner->MaskJson(doc, {"trace", ValueKind::kJson}, out, counts);
    auto t1 = std::chrono::steady_clock::now();
    if (!r.ok()) {
      state.SkipWithError("mask failed");
      return;
    }
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(us.begin(), us.end());
  state.counters["p50_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[us.size() * 99 / 100];
  state.counters["max_us"] = us.back();
  state.counters["doc_bytes"] = static_cast<double>(doc.size());
  state.counters["masked_per_call"] =
      static_cast<double>(counts.Total()) / static_cast<double>(us.size());
  state.SetBytesProcessed(static_cast<int64_t>(doc.size()) * state.iterations());
}

void BM_Trace10KB(benchmark::State& state) { RunLatency(state, Trace10KB()); }
BENCHMARK(BM_Trace10KB)->Unit(benchmark::kMicrosecond);

// The same trace with a value planted about every 400 bytes (about 10.5 KB).
void BM_Trace10KBPlanted(benchmark::State& state) {
  static const std::string doc = PlantPii(Trace10KB(), 400);
  RunLatency(state, doc);
}
BENCHMARK(BM_Trace10KBPlanted)->Unit(benchmark::kMicrosecond);

// Plain text (a text column): prose with an address, a card and a phone per ~1 KB.
void BM_MaskText(benchmark::State& state) {
  std::string text;
  while (text.size() < (256u << 10)) {
    text += test_support::Rep("The agent looked up the order history and summarised it. ", 900);
    text += " reach jane.doe@example.com or +1 415 555 2671, card 4111 1111 1111 1111. ";
  }
  auto scanner = Scanner::Create(DefaultMasker());
  std::string out;
  Counts counts;
  for (auto _ : state) {
    auto r = scanner->MaskText(text, {"notes", ValueKind::kText}, out, counts);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(text.size()) * state.iterations());
}
BENCHMARK(BM_MaskText)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tracegate::masking
