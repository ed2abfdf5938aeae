#include "sql/gate.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sql/shape.h"

namespace tracegate::sql {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

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
                          "SELECT 'open", "SELECT /* open", "SELECT U&\"a\" UESCAPE '!'"}) {
    EXPECT_FALSE(ShapeOf(sql, s)) << sql;
  }
  EXPECT_TRUE(ShapeOf("SELECT a$b, \"q''\", 'x' FROM t /* /* nested */ */", s));
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

}  // namespace
}  // namespace tracegate::sql
