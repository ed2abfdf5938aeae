#include "sql/gate.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sql/shape.h"

namespace tracegate::sql {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSubsetOf;
using ::testing::Not;

config::Gate TraceTables() {
  config::Gate g;
  g.trace_tables = {{.schema = "public", .name = "traces", .id_column = "id"},
                    {.schema = "public", .name = "observations", .id_column = "trace_id"}};
  return g;
}

std::shared_ptr<const Gate> Make(const config::Gate& g) {
  auto gate = Gate::Create(g);
  EXPECT_TRUE(gate.ok()) << gate.status();
  return gate.ok() ? *gate : nullptr;
}

TEST(Shape, CutsPlainLiteralsAndKeepsTheirValues) {
  Shape s;
  ASSERT_TRUE(ShapeOf("SELECT * FROM traces WHERE id = 'it''s' -- c\n AND x = $1", s));
  EXPECT_EQ(s.key, "SELECT * FROM traces WHERE id = '' -- c\n AND x = $1");
  ASSERT_EQ(s.literals.size(), 1u);
  EXPECT_EQ(s.literals[0].value, "it's");
  EXPECT_EQ(s.literals[0].offset, 32u);
}

TEST(Shape, GivesUpWhereTokenisingNeedsMore) {
  Shape s;
  for (const char* sql : {"SELECT E'a'", "SELECT U&'a'", "SELECT x'1f'", "SELECT $$a$$",
                          "SELECT 'a\\'", "SELECT 'a'\n'b'", "SELECT 'a' /* c */ 'b'",
                          "SELECT 'open", "SELECT /* open", "SELECT U&\"a\" UESCAPE '!'",
                          // After a number or a parameter, `$` starts a new token (a dollar
                          // quote here), not the rest of an identifier.
                          "SELECT 1$$ 'x' $$", "SELECT $1$$ 'x' $$", "SELECT 1e5$$ 'x' $$",
                          "SELECT 0x1F$a$ 'x' $a$"}) {
    EXPECT_FALSE(ShapeOf(sql, s)) << sql;
  }
  EXPECT_TRUE(ShapeOf("SELECT a$b, a1$, _9$$, \"q''\", 'x' FROM t /* /* nested */ */", s));
  EXPECT_EQ(s.literals.size(), 1u);
}

TEST(Gate, PinningLiteralMustBeTheGrantedTrace) {
  auto gate = Make(TraceTables());
  EXPECT_TRUE(gate->Check("SELECT * FROM traces WHERE id = 'T'", "T").allowed());
  const Verdict other = gate->Check("SELECT * FROM traces WHERE id = 'U'", "T");
  EXPECT_EQ(other.rule, Rule::kOtherTrace);
  EXPECT_EQ(other.ErrorMessage(),
            "tracegate: statement blocked (other_trace): the statement reads trace 'U', not the "
            "granted one");
  EXPECT_EQ(other.SqlState(), "42501");
  // The same shape for another grant: still checked against that grant's trace.
  EXPECT_TRUE(gate->Check("SELECT * FROM traces WHERE id = 'U'", "U").allowed());
  // A literal that does not pin stays free.
  EXPECT_TRUE(gate->Check("SELECT * FROM traces WHERE id = 'T' AND name = 'x'", "T").allowed());
  EXPECT_TRUE(gate->Check("SELECT * FROM traces WHERE id = 'T' AND name = 'y'", "T").allowed());
}

TEST(Gate, ParametersThatPinAreReported) {
  auto gate = Make(TraceTables());
  const Verdict v = gate->Check(
      "SELECT o.* FROM observations o JOIN traces t ON o.trace_id = t.id "
      "WHERE t.id = $2 AND o.name = $1",
      "T");
  ASSERT_TRUE(v.allowed()) << v.ErrorMessage();
  EXPECT_THAT(v.trace_params, ElementsAre(2));
}

TEST(Gate, BlocksCOPYWithTheIssueWording) {
  auto gate = Make(TraceTables());
  const Verdict v = gate->Check("COPY traces TO STDOUT", "T");
  EXPECT_EQ(v.ErrorMessage(), "tracegate: statement blocked (bulk_export): COPY is not allowed");
}

TEST(Gate, SyntaxErrorsCarry42601) {
  auto gate = Make(TraceTables());
  const Verdict v = gate->Check("SELEC 1", "T");
  EXPECT_EQ(v.rule, Rule::kSyntax);
  EXPECT_EQ(v.SqlState(), "42601");
  EXPECT_THAT(v.message, HasSubstr("syntax error"));
}

TEST(Gate, ClientEncodingVerdictIsNotReusedAcrossValues) {
  auto gate = Make(TraceTables());
  EXPECT_TRUE(gate->Check("SET client_encoding = 'UTF8'", "T").allowed());
  EXPECT_EQ(gate->Check("SET client_encoding = 'SJIS'", "T").rule, Rule::kSessionState);
}

// Issue 16, hole 4: RESET / DEFAULT returned to the role's or database's SJIS.
TEST(Gate, ClientEncodingCannotGoBackToADefault) {
  auto gate = Make(TraceTables());
  for (const char* sql :
       {"RESET client_encoding", "SET client_encoding TO DEFAULT", "SET client_encoding = DEFAULT",
        "SET SESSION client_encoding TO DEFAULT", "SET LOCAL client_encoding TO DEFAULT",
        "SET client_encoding FROM CURRENT", "SET NAMES DEFAULT", "SET NAMES"}) {
    const Verdict v = gate->Check(sql, "T");
    EXPECT_EQ(v.rule, Rule::kSessionState) << sql;
    EXPECT_THAT(v.message, HasSubstr("client_encoding must stay UTF8")) << sql;
    EXPECT_EQ(v.SqlState(), "42501") << sql;
  }
  EXPECT_TRUE(gate->Check("SET client_encoding TO 'UTF8'", "T").allowed());
  EXPECT_TRUE(gate->Check("SET NAMES 'utf-8'", "T").allowed());
}

TEST(Gate, AllowFunctionsExtendsTheDefaults) {
  config::Gate g = TraceTables();
  EXPECT_EQ(Make(g)->Check("SELECT string_agg(name, ',') FROM traces WHERE id = 'T'", "T").rule,
            Rule::kFunction);
  g.allow_functions = {"string_agg", "myschema.myfn"};
  auto gate = Make(g);
  EXPECT_TRUE(
      gate->Check("SELECT string_agg(name, ',') FROM traces WHERE id = 'T'", "T").allowed());
  EXPECT_TRUE(gate->Check("SELECT myschema.myfn(name) FROM traces WHERE id = 'T'", "T").allowed());
  EXPECT_EQ(gate->Check("SELECT myfn(name) FROM traces WHERE id = 'T'", "T").rule, Rule::kFunction);
}

TEST(Gate, StrictModeRunsOnlyTheDeclaredQueries) {
  config::Gate g = TraceTables();
  g.mode = config::GateMode::kStrict;
  g.queries = {{.name = "trace", .sql = "SELECT * FROM traces WHERE id = $1"}};
  auto gate = Make(g);
  const Verdict v = gate->Check("select *  from traces where id = $1", "T");
  ASSERT_TRUE(v.allowed()) << v.ErrorMessage();
  EXPECT_THAT(v.trace_params, ElementsAre(1));
  EXPECT_EQ(gate->Check("SELECT name FROM traces WHERE id = $1", "T").rule, Rule::kStrict);
  EXPECT_TRUE(gate->Check("BEGIN", "T").allowed());
}

TEST(Gate, StrictModeRefusesQueriesThatDoNotPinByParameter) {
  config::Gate g = TraceTables();
  g.mode = config::GateMode::kStrict;
  g.queries = {{.name = "all", .sql = "SELECT * FROM traces"}};
  auto gate = Gate::Create(g);
  ASSERT_FALSE(gate.ok());
  EXPECT_THAT(std::string(gate.status().message()), HasSubstr("query all"));
  g.queries = {{.name = "lit", .sql = "SELECT * FROM traces WHERE id = 'x'"}};
  EXPECT_FALSE(Gate::Create(g).ok());
}

TEST(Gate, CacheDisabledStillClassifies) {
  config::Gate g = TraceTables();
  g.cache_entries = 0;
  auto gate = Make(g);
  EXPECT_TRUE(gate->Check("SELECT * FROM traces WHERE id = 'T'", "T").allowed());
  EXPECT_EQ(gate->Check("SELECT * FROM traces", "T").rule, Rule::kTraceScope);
}

constexpr bool kMasked = true;

TEST(GateMasked, RefusesFunctionsThatRewriteValuesWithTheRuleAndWording) {
  auto gate = Make(TraceTables());
  const std::string sql = "SELECT substr(name, 1, 4) FROM traces WHERE id = 'T'";
  EXPECT_TRUE(gate->Check(sql, "T").allowed());
  const Verdict v = gate->Check(sql, "T", kMasked);
  EXPECT_EQ(v.rule, Rule::kMaskingBypass);
  EXPECT_EQ(v.kind, StatementKind::kOther);
  EXPECT_EQ(v.SqlState(), "42501");
  EXPECT_EQ(v.ErrorMessage(),
            "tracegate: statement blocked (masking_bypass): substr() could rewrite masked "
            "values; it is not allowed while responses are masked");
  EXPECT_EQ(gate->Check("SELECT name::varchar(4) FROM traces WHERE id = 'T'", "T", kMasked).message,
            "a cast to varchar(4) could rewrite masked values; it is not allowed while "
            "responses are masked");
  EXPECT_THAT(
      gate->Check("SELECT CAST(name AS bytea) FROM traces WHERE id = 'T'", "T", kMasked).message,
      HasSubstr("a cast to bytea could rewrite"));
  EXPECT_THAT(gate->Check("SELECT 'x' || name FROM traces WHERE id = 'T'", "T", kMasked).message,
              HasSubstr("the || operator on stored data could rewrite"));
}

// One cache entry per shape serves both kinds of session, in either order, and with a new
// trace-id literal in the same shape.
TEST(GateMasked, OneCacheEntryGivesMaskedAndUnmaskedVerdicts) {
  auto gate = Make(TraceTables());
  const std::string a = "SELECT lower(name) FROM traces WHERE id = 'T'";
  const std::string b = "SELECT lower(name) FROM traces WHERE id = 'U'";
  EXPECT_TRUE(gate->Check(a, "T").allowed());                          // miss
  EXPECT_EQ(gate->Check(a, "T", kMasked).rule, Rule::kMaskingBypass);  // hit
  EXPECT_EQ(gate->Check(b, "U", kMasked).rule, Rule::kMaskingBypass);  // hit, new literal
  EXPECT_TRUE(gate->Check(b, "U").allowed());                          // hit
  const std::string c = "SELECT metadata->>'user' FROM traces WHERE id = $1";
  const Verdict masked = gate->Check(c, "T", kMasked);  // miss, masked first
  ASSERT_TRUE(masked.allowed()) << masked.ErrorMessage();
  EXPECT_THAT(masked.trace_params, ElementsAre(1));
  const std::string d = "SELECT upper(name) FROM traces WHERE id = $1";
  EXPECT_EQ(gate->Check(d, "T", kMasked).rule, Rule::kMaskingBypass);  // miss, masked first
  const Verdict plain = gate->Check(d, "T");                           // hit
  ASSERT_TRUE(plain.allowed()) << plain.ErrorMessage();
  EXPECT_THAT(plain.trace_params, ElementsAre(1));
}

TEST(GateMasked, AnotherTraceIsReportedBeforeMasking) {
  auto gate = Make(TraceTables());
  const std::string sql = "SELECT md5(name) FROM traces WHERE id = 'U'";
  EXPECT_EQ(gate->CheckUncached(sql, "T", kMasked).rule, Rule::kOtherTrace);
  EXPECT_EQ(gate->Check(sql, "T", kMasked).rule, Rule::kOtherTrace);
  EXPECT_EQ(gate->Check(sql, "T", kMasked).rule, Rule::kOtherTrace);
  EXPECT_EQ(gate->Check(sql, "U", kMasked).rule, Rule::kMaskingBypass);
}

TEST(GateMasked, UncachedAndUncacheablePathsRefuseToo) {
  config::Gate g = TraceTables();
  g.cache_entries = 0;
  EXPECT_EQ(Make(g)->Check("SELECT md5(name) FROM traces WHERE id = 'T'", "T", kMasked).rule,
            Rule::kMaskingBypass);
  auto gate = Make(TraceTables());
  // E'' strings are outside the shape scanner's subset: classified without the cache.
  EXPECT_EQ(gate->Check("SELECT md5(name) FROM traces WHERE id = E'T'", "T", kMasked).rule,
            Rule::kMaskingBypass);
  EXPECT_TRUE(gate->Check("SELECT md5(name) FROM traces WHERE id = E'T'", "T").allowed());
}

// allow_functions is the operator's word: it counts in masked sessions too, also for a
// default function (that is how an operator lets masked sessions use `lower`).
TEST(GateMasked, OperatorAllowFunctionsCountInMaskedSessions) {
  config::Gate g = TraceTables();
  g.allow_functions = {"lower", "pg_catalog.upper", "myschema.myfn", "string_agg"};
  auto gate = Make(g);
  for (const char* sql : {"SELECT lower(name) FROM traces WHERE id = 'T'",
                          "SELECT pg_catalog.lower(name) FROM traces WHERE id = 'T'",
                          "SELECT upper(name) FROM traces WHERE id = 'T'",
                          "SELECT myschema.myfn(name) FROM traces WHERE id = 'T'",
                          "SELECT string_agg(name, ',') FROM traces WHERE id = 'T'"}) {
    const Verdict v = gate->Check(sql, "T", kMasked);
    EXPECT_TRUE(v.allowed()) << sql << ": " << v.ErrorMessage();
  }
  EXPECT_EQ(gate->Check("SELECT initcap(name) FROM traces WHERE id = 'T'", "T", kMasked).rule,
            Rule::kMaskingBypass);
}

TEST(GateMasked, StrictModeQueriesAreHeldToTheRuleToo) {
  config::Gate g = TraceTables();
  g.mode = config::GateMode::kStrict;
  g.queries = {{.name = "short", .sql = "SELECT left(name, 8) FROM traces WHERE id = $1"},
               {.name = "doc", .sql = "SELECT metadata->'input' FROM traces WHERE id = $1"}};
  auto gate = Make(g);
  EXPECT_TRUE(gate->Check("SELECT left(name, 8) FROM traces WHERE id = $1", "T").allowed());
  EXPECT_EQ(gate->Check("SELECT left(name, 8) FROM traces WHERE id = $1", "T", kMasked).rule,
            Rule::kMaskingBypass);
  EXPECT_TRUE(
      gate->Check("SELECT metadata->'input' FROM traces WHERE id = $1", "T", kMasked).allowed());
  EXPECT_EQ(gate->Check("SELECT md5(name) FROM traces WHERE id = $1", "T", kMasked).rule,
            Rule::kStrict);
}

TEST(GateMasked, SafeListIsASubsetOfTheDefaultsWithoutTheRewriters) {
  EXPECT_THAT(MaskedSafeFunctions(), IsSubsetOf(DefaultAllowedFunctions()));
  for (const char* f :
       {"substr",  "substring",    "left",           "right",          "lower",
        "upper",   "initcap",      "reverse",        "replace",        "split_part",
        "lpad",    "rpad",         "ltrim",          "rtrim",          "btrim",
        "trim",    "format",       "concat",         "concat_ws",      "repeat",
        "md5",     "regexp_match", "regexp_matches", "regexp_replace", "to_number",
        "to_date", "to_timestamp", "strpos",         "position",       "starts_with"}) {
    EXPECT_THAT(MaskedSafeFunctions(), Not(testing::Contains(std::string(f)))) << f;
  }
}

}  // namespace
}  // namespace tracegate::sql
