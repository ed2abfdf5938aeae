// Runs statements.txt: every statement with its expected verdict, rule and pinning
// parameters, through the uncached classifier, the cache (cold and warm), and the cache after
// a statement of the same shape for another trace was classified. `masked` cases run as a
// session whose responses are masked; every case also runs the other way round, through the
// same cache entry.

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sql/gate.h"

namespace tracegate::sql {
namespace {

constexpr std::string_view kTrace = "tr-1";

struct Case {
  int line = 0;
  bool masked = false;
  bool allow = false;
  std::string rule;
  std::vector<int> params;
  std::string sql;
};

std::vector<Case> LoadCorpus() {
  std::ifstream in(TRACEGATE_GATE_STATEMENTS);
  EXPECT_TRUE(in.good()) << TRACEGATE_GATE_STATEMENTS;
  std::vector<Case> cases;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const size_t bar = line.find(" | ");
    if (bar == std::string::npos) {
      ADD_FAILURE() << "line " << number << ": no ' | ' separator";
      continue;
    }
    Case c;
    c.line = number;
    std::vector<std::string> expect = absl::StrSplit(line.substr(0, bar), ' ', absl::SkipEmpty());
    std::string sql = line.substr(bar + 3);
    for (size_t pos = 0; (pos = sql.find("\\n", pos)) != std::string::npos;) {
      sql.replace(pos, 2, "\n");
    }
    c.sql = sql;
    if (!expect.empty() && expect[0] == "masked") {
      c.masked = true;
      expect.erase(expect.begin());
    }
    if (expect.empty()) {
      ADD_FAILURE() << "line " << number << ": no expectation";
      continue;
    }
    if (expect[0] == "allow") {
      c.allow = true;
      if (expect.size() > 1) {
        if (!expect[1].starts_with("params=")) {
          ADD_FAILURE() << "line " << number << ": bad allow clause " << expect[1];
          continue;
        }
        for (const auto& p : absl::StrSplit(expect[1].substr(7), ',')) {
          c.params.push_back(std::stoi(std::string(p)));
        }
      }
    } else if (expect[0] == "block" && expect.size() == 2) {
      c.rule = expect[1];
    } else {
      ADD_FAILURE() << "line " << number << ": bad expectation";
      continue;
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

config::Gate CorpusConfig() {
  config::Gate g;
  g.trace_tables = {{.schema = "public", .name = "traces", .id_column = "id"},
                    {.schema = "public", .name = "observations", .id_column = "trace_id"},
                    {.schema = "public", .name = "scores", .id_column = "trace_id"}};
  return g;
}

std::string Describe(const Verdict& v) {
  std::ostringstream out;
  if (v.allowed()) {
    out << "allow";
    if (!v.trace_params.empty()) {
      out << " params=";
      for (size_t i = 0; i < v.trace_params.size(); ++i) {
        out << (i ? "," : "") << v.trace_params[i];
      }
    }
  } else {
    out << "block " << RuleName(v.rule) << " (" << v.message << ")";
  }
  return out.str();
}

bool Matches(const Case& c, const Verdict& v) {
  if (c.allow) {
    return v.allowed() && v.trace_params == c.params;
  }
  return !v.allowed() && RuleName(v.rule) == c.rule;
}

TEST(GateCorpus, EveryStatementGetsItsExpectedVerdict) {
  const std::vector<Case> cases = LoadCorpus();
  EXPECT_GE(cases.size(), 200u);
  auto gate = Gate::Create(CorpusConfig());
  ASSERT_TRUE(gate.ok()) << gate.status();
  int failures = 0;
  for (const Case& c : cases) {
    const Verdict uncached = (*gate)->CheckUncached(c.sql, kTrace, c.masked);
    const Verdict cold = (*gate)->Check(c.sql, kTrace, c.masked);
    const Verdict warm = (*gate)->Check(c.sql, kTrace, c.masked);
    if (!Matches(c, uncached)) {
      ++failures;
      ADD_FAILURE() << "line " << c.line << (c.masked ? " (masked)" : "") << ": " << c.sql
                    << "\n  got " << Describe(uncached);
      continue;
    }
    EXPECT_EQ(Describe(cold), Describe(uncached)) << "line " << c.line << " (cold cache)";
    EXPECT_EQ(Describe(warm), Describe(uncached)) << "line " << c.line << " (warm cache)";
    // The entry the case's session left in the cache serves the other kind of session.
    EXPECT_EQ(Describe((*gate)->Check(c.sql, kTrace, !c.masked)),
              Describe((*gate)->CheckUncached(c.sql, kTrace, !c.masked)))
        << "line " << c.line << " (cached for the other kind of session)";
  }
  EXPECT_EQ(failures, 0);
}

// Masking only adds refusals, all of them masking_bypass: a statement refused unmasked is
// refused masked for the same reason, and an allowed one keeps its parameters or is refused
// with masking_bypass. A masked case refused with masking_bypass runs unmasked, so that is
// its only problem.
TEST(GateCorpus, MaskingOnlyAddsMaskingBypass) {
  auto gate = Gate::Create(CorpusConfig());
  ASSERT_TRUE(gate.ok());
  int masked_cases = 0;
  for (const Case& c : LoadCorpus()) {
    masked_cases += c.masked ? 1 : 0;
    const Verdict plain = (*gate)->CheckUncached(c.sql, kTrace, false);
    const Verdict masked = (*gate)->CheckUncached(c.sql, kTrace, true);
    if (!plain.allowed() || masked.rule != Rule::kMaskingBypass) {
      EXPECT_EQ(Describe(masked), Describe(plain)) << "line " << c.line << ": " << c.sql;
    } else {
      EXPECT_THAT(masked.message, ::testing::HasSubstr("while responses are masked"));
    }
    if (c.masked && c.rule == "masking_bypass") {
      EXPECT_TRUE(plain.allowed()) << "line " << c.line << ": " << Describe(plain);
    }
  }
  EXPECT_GE(masked_cases, 30);
}

// The cache is keyed by shape: the same statement for another trace must not ride on a
// cached "allow", and a cached "allow" must not leak to a statement of a different shape.
TEST(GateCorpus, CachedVerdictsStillCheckTheTraceId) {
  auto gate = Gate::Create(CorpusConfig());
  ASSERT_TRUE(gate.ok());
  for (const Case& c : LoadCorpus()) {
    if (!c.allow || c.sql.find("tr-1") == std::string::npos) {
      continue;
    }
    std::string other = c.sql;
    for (size_t pos = 0; (pos = other.find("tr-1", pos)) != std::string::npos; pos += 4) {
      other.replace(pos, 4, "tr-9");
    }
    ASSERT_TRUE((*gate)->Check(c.sql, kTrace, c.masked).allowed()) << "line " << c.line;
    const Verdict v = (*gate)->Check(other, kTrace, c.masked);
    EXPECT_FALSE(v.allowed()) << "line " << c.line << ": " << other;
    EXPECT_EQ(Describe(v), Describe((*gate)->CheckUncached(other, kTrace, c.masked)))
        << "line " << c.line;
  }
}

}  // namespace
}  // namespace tracegate::sql
