// Deep and long statements: the gate refuses what it cannot examine within a bounded stack,
// and nothing any statement up to the protocol's message limit does can crash it.

#include "sql/nesting.h"

#include <pthread.h>

#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "sql/gate.h"

namespace tracegate::sql {
namespace {

// The stack a classification may use. Postgres workers and API threads have 8 MiB; the gate
// must fit well inside that at kMaxNesting (sanitizers make frames several times larger).
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kStack = 8u << 20;
#else
constexpr size_t kStack = 2u << 20;
#endif

// Runs `fn` on a thread whose stack is `kStack` bytes: overflowing it crashes the test.
void OnSmallStack(const std::function<void()>& fn) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, kStack), 0);
  pthread_t thread;
  auto* task = new std::function<void()>(fn);
  ASSERT_EQ(pthread_create(
                &thread, &attr,
                [](void* arg) -> void* {
                  auto* f = static_cast<std::function<void()>*>(arg);
                  (*f)();
                  delete f;
                  return nullptr;
                },
                task),
            0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}

std::shared_ptr<const Gate> TheGate() {
  config::Gate g;
  g.trace_tables = {{.schema = "public", .name = "traces", .id_column = "id"}};
  auto gate = Gate::Create(g);
  EXPECT_TRUE(gate.ok()) << gate.status();
  return *gate;
}

std::string Repeat(std::string_view s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) {
    out.append(s);
  }
  return out;
}

// Deep structures of every kind the grammar nests, `n` levels each.
std::vector<std::pair<std::string, std::string>> DeepStatements(size_t n) {
  const std::string pin = " FROM traces WHERE id = 'tr-1'";
  return {
      {"operator chain", "SELECT 1" + Repeat("+1", n) + pin},
      {"right-nested power", "SELECT 2" + Repeat("^2", n) + pin},
      {"unary minus", "SELECT " + Repeat("- ", n) + "1" + pin},
      {"NOT chain", "SELECT " + Repeat("NOT ", n) + "true" + pin},
      {"parentheses", "SELECT " + Repeat("(", n) + "1" + Repeat(")", n) + pin},
      {"nested CASE",
       "SELECT " + Repeat("CASE WHEN true THEN 1 ELSE ", n) + "0" + Repeat(" END", n) + pin},
      {"nested calls", "SELECT " + Repeat("abs(", n) + "1" + Repeat(")", n) + pin},
      {"nested arrays", "SELECT " + Repeat("ARRAY[", n) + "1" + Repeat("]", n) + pin},
      {"JSON path chain", "SELECT metadata" + Repeat("->'a'", n) + pin},
      {"cast chain", "SELECT 1" + Repeat("::int", n) + pin},
      {"AND chain", "SELECT 1" + pin + Repeat(" AND true", n)},
      {"right-nested AND",
       "SELECT 1" + pin + " AND " + Repeat("(true AND ", n) + "true" + Repeat(")", n)},
      {"OR chain", "SELECT 1" + pin + " AND (false" + Repeat(" OR false", n) + ")"},
      {"scalar subqueries", "SELECT " + Repeat("(SELECT ", n) + "1" + Repeat(")", n) + pin},
      {"UNION chain", "SELECT 1, 2" + Repeat(" UNION SELECT 1, 2", n)},
      {"JOIN chain",
       "SELECT 1 FROM traces t0" + Repeat(" JOIN traces t ON true", n) + " WHERE t0.id = 'tr-1'"},
      {"IN list", "SELECT 1" + pin + " AND id IN ('a'" + Repeat(", 'a'", n) + ")"},
      {"row constructors", "SELECT " + Repeat("ROW(", n) + "1" + Repeat(")", n) + pin},
      {"subscripts", "SELECT metadata" + Repeat("['a']", n) + pin},
      {"COALESCE nesting", "SELECT " + Repeat("coalesce(", n) + "1" + Repeat(", 1)", n) + pin},
      {"derived tables",
       "SELECT * FROM " + Repeat("(SELECT * FROM ", n) + "traces" + Repeat(") s", n)},
      {"unclosed parentheses", "SELECT " + Repeat("(", n)},
      {"comment-hidden depth", "SELECT 1 /*" + Repeat("(", n) + "*/" + pin},
  };
}

bool CleanVerdict(const Verdict& v) {
  return v.allowed() || v.rule == Rule::kTooComplex || v.rule == Rule::kSyntax ||
         v.rule == Rule::kUnsupported || v.rule == Rule::kTraceScope || v.rule == Rule::kFunction ||
         v.rule == Rule::kMaskingBypass;
}

TEST(Nesting, OrdinaryStatementsAreShallow) {
  EXPECT_LT(BoundNesting("SELECT * FROM traces WHERE id = 'tr-1'").bound, 20);
  EXPECT_LT(BoundNesting("SELECT o.id, o.input->'messages'->0->>'content' FROM observations o "
                         "JOIN traces t ON o.trace_id = t.id WHERE t.id = $1 AND o.type IN "
                         "('GENERATION', 'SPAN') ORDER BY o.start_time LIMIT 100")
                .bound,
            60);
  // Long flat lists cost nothing per element.
  EXPECT_LT(
      BoundNesting(("SELECT 1 WHERE x IN ('a'" + Repeat(", 'a'", 100000) + ")").c_str()).bound, 20);
}

TEST(Nesting, TheBoundGrowsWithEveryKindOfNesting) {
  for (const auto& [name, sql] : DeepStatements(2000)) {
    if (name == "IN list" || name == "subscripts" || name == "comment-hidden depth") {
      continue;  // flat
    }
    EXPECT_GT(BoundNesting(sql.c_str()).bound, kMaxNesting) << name;
  }
}

TEST(Nesting, TheIssueReproductionIsRefusedWith54001) {
  auto gate = TheGate();
  const std::string sql = "SELECT 1" + Repeat("+1", 6000);
  const Verdict v = gate->Check(sql, "tr-1");
  EXPECT_EQ(v.rule, Rule::kTooComplex) << v.message;
  EXPECT_EQ(v.SqlState(), "54001");
  EXPECT_NE(v.message.find("levels"), std::string::npos) << v.message;
}

// Every kind of deep structure, at depths around the limit and far past it, classified on a
// small stack, cached and uncached, masked and not: a clean verdict, never a crash.
TEST(Nesting, DeepStructuresGetACleanVerdictOnABoundedStack) {
  auto gate = TheGate();
  OnSmallStack([&] {
    for (size_t n : {10u, 100u, 240u, 500u, 990u, 1000u, 2000u, 6000u, 50000u}) {
      for (const auto& [name, sql] : DeepStatements(n)) {
        for (bool masked : {false, true}) {
          const Verdict cached = gate->Check(sql, "tr-1", masked);
          const Verdict uncached = gate->CheckUncached(sql, "tr-1", masked);
          EXPECT_TRUE(CleanVerdict(cached)) << name << " n=" << n << ": " << cached.message;
          EXPECT_EQ(cached.rule, uncached.rule) << name << " n=" << n;
        }
      }
    }
  });
}

// At exactly the limit, the statements the gate still parses fit the bounded stack.
TEST(Nesting, StatementsJustUnderTheLimitAreParsedOnABoundedStack) {
  auto gate = TheGate();
  OnSmallStack([&] {
    int parsed = 0;
    for (size_t n = 50; n < 2000; n += 25) {
      for (const auto& [name, sql] : DeepStatements(n)) {
        const NestingBound b = BoundNesting(sql.c_str());
        if (b.bound <= kMaxNesting && b.bound > kMaxNesting - 100) {
          const Verdict v = gate->CheckUncached(sql, "tr-1", true);
          EXPECT_NE(v.rule, Rule::kTooComplex) << name << " n=" << n << ": " << v.message;
          ++parsed;
        }
      }
    }
    EXPECT_GT(parsed, 10);
  });
}

// PostgreSQL's lexer is quadratic in the length of a run of operator characters; runs long
// enough to cost more than milliseconds are refused before it sees them.
TEST(Nesting, LongOperatorRunsAreRefusedBeforeTheLexerSeesThem) {
  EXPECT_EQ(OperatorRunCost("SELECT a->>'b' FROM t WHERE x <= 1"), 9u + 4u);
  auto gate = TheGate();
  const std::vector<std::string> quadratic = {
      "SELECT 1 " + Repeat("+", 200000) + " 1",
      "SELECT " + Repeat("/*", 20000) + "1" + Repeat("*/", 20000) + " 1",
      "SELECT 1 " + Repeat("+/*", 80000),
      "SELECT 1 " + Repeat("/**/", 60000),
      "SELECT 1 " + Repeat("/*" + Repeat("+", 100), 2000) + Repeat("*/", 2000),
  };
  for (const std::string& sql : quadratic) {
    const Verdict v = gate->CheckUncached(sql, "tr-1");
    EXPECT_EQ(v.rule, Rule::kTooComplex) << sql.substr(0, 40);
    EXPECT_NE(v.message.find("operator characters"), std::string::npos) << v.message;
  }
  // Runs inside a literal count too (the safe side), and the cache must not answer for them
  // from a shape whose literal was short: same shape, different verdicts.
  const std::string short_literal = "SELECT * FROM traces WHERE id = 'tr-1' AND name = 'x'";
  const std::string long_literal =
      "SELECT * FROM traces WHERE id = 'tr-1' AND name = '" + Repeat("/*", 1500) + "'";
  EXPECT_TRUE(gate->Check(short_literal, "tr-1").allowed());
  EXPECT_EQ(gate->Check(long_literal, "tr-1").rule, Rule::kTooComplex);
  EXPECT_EQ(gate->CheckUncached(long_literal, "tr-1").rule, Rule::kTooComplex);
  // A long comment banner is fine.
  const std::string banner = "/*" + Repeat("*", 1500) + "*/ SELECT * FROM traces WHERE id = 'tr-1'";
  EXPECT_TRUE(gate->Check(banner, "tr-1").allowed());
}

// Up to the protocol's message limit (64 MiB): long statements are refused before they are
// scanned, with their size in the message.
TEST(Nesting, StatementsPastTheSizeLimitAreRefusedUnscanned) {
  auto gate = TheGate();
  for (size_t size : {kMaxStatementBytes + 1, size_t{16} << 20, size_t{64} << 20}) {
    std::string sql = "SELECT 1";
    sql.append(size - sql.size(), ' ');
    const Verdict v = gate->Check(sql, "tr-1");
    EXPECT_EQ(v.rule, Rule::kTooComplex) << size;
    EXPECT_NE(v.message.find(std::to_string(size)), std::string::npos) << v.message;
  }
  std::string ok = "SELECT 1 FROM traces WHERE id = 'tr-1'";
  ok.append(kMaxStatementBytes - ok.size(), ' ');
  EXPECT_TRUE(gate->Check(ok, "tr-1").allowed());
}

}  // namespace
}  // namespace tracegate::sql
