// Fuzzes the statement gate with deep and long structures built from a small recipe:
// recursion is where parsers die, and random bytes rarely nest 6,000 levels. Each pair of
// recipe bytes picks a construct and how many times to nest it (up to 65,535), so inputs
// reach far past kMaxNesting and past kMaxStatementBytes. The gate must give every one a
// clean verdict (never crash, whatever the stack), and the cached and uncached paths agree.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "sql/gate.h"
#include "sql/nesting.h"

namespace {

const tracegate::sql::Gate& TheGate() {
  static const auto* const gate = [] {
    tracegate::config::Gate g;
    g.trace_tables = {{.schema = "public", .name = "traces", .id_column = "id"}};
    g.cache_entries = 1024;
    auto created = tracegate::sql::Gate::Create(g);
    if (!created.ok()) {
      std::abort();
    }
    return new std::shared_ptr<const tracegate::sql::Gate>(*created);
  }();
  return **gate;
}

// A construct: text before the inner part and after it, nested `n` times.
struct Construct {
  std::string_view open;
  std::string_view close;
};

constexpr Construct kConstructs[] = {
    {"1+", ""},
    {"(", ")"},
    {"- ", ""},
    {"NOT ", ""},
    {"abs(", ")"},
    {"ARRAY[", "]"},
    {"CASE WHEN true THEN 1 ELSE ", " END"},
    {"(SELECT ", ")"},
    {"coalesce(", ", 1)"},
    {"ROW(", ")"},
    {"", "::int"},
    {"", "->'a'"},
    {"", "['a']"},
    {"", " AND true"},
    {"(true AND ", ")"},
    {"2^", ""},
    {"", " UNION SELECT 1"},
    {"", " IS NULL"},
    {"x IN (", ")"},
    {"'a' || ", ""},
    {"/*", "*/"},
    {"", "[1:2]"},
    {"jsonb_build_array(", ")"},
    {"(SELECT 1 FROM traces t WHERE t.id = 'tr-1' AND ", ")"},
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The closing parts are kept innermost-first and joined in reverse at the end (inserting
  // each at the front was quadratic: the harness timed out, not the gate).
  std::string open;
  std::vector<std::string_view> closes;
  size_t close_bytes = 0;
  constexpr size_t kCap = tracegate::sql::kMaxStatementBytes + 4096;
  for (size_t i = 0; i + 2 < size && open.size() + close_bytes < kCap; i += 3) {
    const Construct& c = kConstructs[data[i] % std::size(kConstructs)];
    const size_t n = (size_t{data[i + 1]} << 8) | data[i + 2];
    for (size_t k = 0; k < n && open.size() + close_bytes < kCap; ++k) {
      open.append(c.open);
      closes.push_back(c.close);
      close_bytes += c.close.size();
    }
  }
  std::string sql = "SELECT " + open + "1";
  for (auto it = closes.rbegin(); it != closes.rend(); ++it) {
    sql.append(*it);
  }
  sql.append(" FROM traces WHERE id = 'tr-1'");
  const tracegate::sql::Gate& gate = TheGate();
  for (bool masked : {false, true}) {
    const auto uncached = gate.CheckUncached(sql, "tr-1", masked);
    const auto cached = gate.Check(sql, "tr-1", masked);
    if (uncached.rule != cached.rule || uncached.trace_params != cached.trace_params) {
      std::abort();
    }
  }
  return 0;
}
