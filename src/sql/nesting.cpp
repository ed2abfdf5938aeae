#include "sql/nesting.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string_view>
#include <vector>

namespace tracegate::sql {
namespace {

struct ScanDeleter {
  void operator()(PgQuery__ScanResult* r) const {
    pg_query__scan_result__free_unpacked(r, nullptr);
  }
};

// What one token does to the bound.
enum class Effect { kNone, kOpen, kClose, kLevel };

Effect EffectOf(const PgQuery__ScanToken& token) {
  switch (token.token) {
    case PG_QUERY__TOKEN__ASCII_40:  // (
    case PG_QUERY__TOKEN__ASCII_91:  // [
      return Effect::kOpen;
    case PG_QUERY__TOKEN__ASCII_41:  // )
    case PG_QUERY__TOKEN__ASCII_93:  // ]
      return Effect::kClose;
    case PG_QUERY__TOKEN__ASCII_44:  // ,
    case PG_QUERY__TOKEN__ASCII_46:  // . (qualified names, field selection: flat lists)
    case PG_QUERY__TOKEN__IDENT:
    case PG_QUERY__TOKEN__UIDENT:
    case PG_QUERY__TOKEN__FCONST:
    case PG_QUERY__TOKEN__SCONST:
    case PG_QUERY__TOKEN__USCONST:
    case PG_QUERY__TOKEN__BCONST:
    case PG_QUERY__TOKEN__XCONST:
    case PG_QUERY__TOKEN__ICONST:
    case PG_QUERY__TOKEN__PARAM:
    case PG_QUERY__TOKEN__SQL_COMMENT:
    case PG_QUERY__TOKEN__C_COMMENT:
      return Effect::kNone;
    default:
      return Effect::kLevel;  // operators, casts, keywords
  }
}

// scan.l's {op_chars}, as a table: OperatorRunCost runs on every statement, cached or not.
constexpr std::array<bool, 256> kOperatorChars = [] {
  std::array<bool, 256> table{};
  for (const unsigned char c : std::string_view("~!@#^&|`?+-*/%<>=")) {
    table[c] = true;
  }
  return table;
}();

}  // namespace

uint64_t OperatorRunCost(std::string_view sql) {
  uint64_t cost = 0;
  uint64_t run = 0;
  for (const char c : sql) {
    if (kOperatorChars[static_cast<unsigned char>(c)]) {
      ++run;
    } else {
      cost += run * run;
      run = 0;
    }
  }
  return cost + run * run;
}

NestingBound BoundNesting(const char* sql) {
  NestingBound out;
  PgQueryScanResult scanned = pg_query_scan(sql);
  struct FreeScan {
    PgQueryScanResult& r;
    ~FreeScan() { pg_query_free_scan_result(r); }
  } free_scan{scanned};
  if (scanned.error != nullptr) {
    return out;
  }
  std::unique_ptr<PgQuery__ScanResult, ScanDeleter> tokens(pg_query__scan_result__unpack(
      nullptr, scanned.pbuf.len, reinterpret_cast<const uint8_t*>(scanned.pbuf.data)));
  if (tokens == nullptr) {
    return out;
  }
  out.scanned = true;
  struct Level {
    int tokens = 0;   // level-making tokens at this level
    int deepest = 0;  // the deepest bracketed group closed inside it
  };
  // The nodes a bracket level makes without a token of its own (the group's node, a list,
  // a target or a sub-SELECT's wrapper).
  constexpr int kPerLevel = 4;
  std::vector<Level> levels(1);
  int deepest = 0;
  for (size_t i = 0; i < tokens->n_tokens; ++i) {
    switch (EffectOf(*tokens->tokens[i])) {
      case Effect::kNone:
        break;
      case Effect::kOpen:
        levels.emplace_back();
        break;
      case Effect::kClose:
        if (levels.size() > 1) {
          const Level closed = levels.back();
          levels.pop_back();
          levels.back().deepest =
              std::max(levels.back().deepest, kPerLevel + closed.tokens + closed.deepest);
        }
        break;
      case Effect::kLevel:
        ++levels.back().tokens;
        break;
    }
  }
  // Unclosed brackets (a syntax error the parser will report) still count.
  while (!levels.empty()) {
    const Level closed = levels.back();
    levels.pop_back();
    deepest = kPerLevel + closed.tokens + closed.deepest;
    if (!levels.empty()) {
      levels.back().deepest = std::max(levels.back().deepest, deepest);
    }
  }
  out.bound = deepest;
  return out;
}

}  // namespace tracegate::sql
