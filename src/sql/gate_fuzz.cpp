// Fuzzes the statement gate with arbitrary statement text: the classifier must not crash,
// and the cached path must agree with the uncached one on every input, for unmasked and
// masked sessions alike (the shape cache may never turn a block into an allow); masking may
// only turn an allow into masking_bypass.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "sql/gate.h"

namespace {

const tracegate::sql::Gate& TheGate() {
  static const auto* const gate = [] {
    tracegate::config::Gate g;
    g.trace_tables = {{.schema = "public", .name = "traces", .id_column = "id"},
                      {.schema = "public", .name = "observations", .id_column = "trace_id"}};
    g.cache_entries = 4096;
    auto created = tracegate::sql::Gate::Create(g);
    if (!created.ok()) {
      std::abort();
    }
    return new std::shared_ptr<const tracegate::sql::Gate>(*created);
  }();
  return **gate;
}

}  // namespace

// Any size: the gate refuses statements past kMaxStatementBytes itself (run-fuzzers.sh gives
// this target a max_len past that limit).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view sql(reinterpret_cast<const char*>(data), size);
  const tracegate::sql::Gate& gate = TheGate();
  const auto uncached = gate.CheckUncached(sql, "tr-1");
  const auto cached = gate.Check(sql, "tr-1");
  if (uncached.rule != cached.rule || uncached.trace_params != cached.trace_params) {
    std::abort();
  }
  const auto masked_uncached = gate.CheckUncached(sql, "tr-1", /*masked=*/true);
  const auto masked_cached = gate.Check(sql, "tr-1", /*masked=*/true);
  if (masked_uncached.rule != masked_cached.rule ||
      masked_uncached.trace_params != masked_cached.trace_params) {
    std::abort();
  }
  if (masked_uncached.rule != uncached.rule &&
      !(uncached.allowed() && masked_uncached.rule == tracegate::sql::Rule::kMaskingBypass)) {
    std::abort();
  }
  return 0;
}
