#include "policy/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "common/strings.h"

namespace tracegate::policy {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using testing::HasSubstr;
using Outcome = Decision::Outcome;

config::PolicyRule Allow(std::string name) { return {.name = std::move(name)}; }
config::PolicyRule Deny(std::string name) {
  return {.name = std::move(name), .effect = config::Effect::kDeny};
}

// The policy most rows run against. Order matters: the deny rules sit both after and before
// allow rules that the same principals match.
config::Policy MainPolicy() {
  config::Policy policy{.max_ttl = minutes(5)};
  auto& rules = policy.rules;

  rules.push_back(Allow("eng-read"));
  rules.back().groups = {"eng"};
  rules.back().connections = {"traces-pg"};
  rules.back().ttl = seconds(60);
  rules.back().masking_profile = "default";

  rules.push_back(Deny("block-contractors"));
  rules.back().groups = {"contractors"};

  rules.push_back(Allow("sre-any"));
  rules.back().groups = {"sre", "oncall"};
  rules.back().ttl = minutes(10);  // above max_ttl
  rules.back().uses = 3;

  rules.push_back(Allow("etl-clients"));
  rules.back().subjects = {"*"};
  rules.back().clients = {"ingest-bot", "etl"};
  rules.back().connections = {"traces-http"};

  rules.push_back(Allow("alice-anywhere"));
  rules.back().subjects = {"alice"};
  rules.back().require_reason = true;

  rules.push_back(Allow("sensitive"));
  rules.back().groups = {"eng"};
  rules.back().connections = {"traces-sensitive"};
  rules.back().require_approval = true;
  rules.back().require_reason = true;

  rules.push_back(Deny("no-mallory"));
  rules.back().subjects = {"mallory"};

  rules.push_back(Allow("audit-any-group"));
  rules.back().groups = {"*"};
  rules.back().connections = {"audit-pg"};

  rules.push_back(Allow("public"));  // only a connection selector
  rules.back().connections = {"public-pg", "public-http"};

  rules.push_back(Allow("approval-only"));
  rules.back().clients = {"reviewer"};
  rules.back().require_approval = true;
  return policy;
}

config::Policy OpenPolicy() {  // one rule with no selectors at all
  config::Policy policy;
  policy.rules.push_back(Allow("open"));
  return policy;
}

config::Policy EmptyPolicy() { return {}; }

config::Policy EmptyEntryPolicy() {  // an empty selector entry (config should refuse it)
  config::Policy policy;
  policy.rules.push_back(Allow("empty-client"));
  policy.rules.back().clients = {""};
  return policy;
}

config::Policy DenyTwicePolicy() {  // two deny rules match: the first in file order is named
  config::Policy policy;
  policy.rules.push_back(Allow("everyone"));
  policy.rules.push_back(Deny("first-deny"));
  policy.rules.back().connections = {"traces-pg"};
  policy.rules.push_back(Deny("second-deny"));
  policy.rules.back().groups = {"eng"};
  return policy;
}

identity::Principal Person(std::string sub, std::vector<std::string> groups,
                           std::string client = "") {
  return {.issuer_name = "okta",
          .issuer = "https://idp.example",
          .subject = std::move(sub),
          .client_id = std::move(client),
          .groups = std::move(groups)};
}

struct Case {
  const char* name;
  config::Policy (*policy)();
  identity::Principal principal;
  std::string connection;
  std::string trace;
  std::string reason;
  Outcome outcome;
  std::string rule;
  milliseconds ttl{0};  // checked when the outcome is not deny
};

std::vector<Case> Cases() {
  const std::string t = "trace-0001";
  return {
      {"first allow wins", MainPolicy, Person("alice", {"eng"}, "cli"), "traces-pg", t, "",
       Outcome::kAllow, "eng-read", seconds(60)},
      {"group selector, any of", MainPolicy, Person("carol", {"oncall"}), "traces-pg", t, "",
       Outcome::kAllow, "sre-any", minutes(5)},
      {"ttl capped at max_ttl", MainPolicy, Person("carol", {"sre"}), "traces-http", t, "",
       Outcome::kAllow, "sre-any", minutes(5)},
      {"deny after a matching allow still wins", MainPolicy, Person("bob", {"eng", "contractors"}),
       "traces-pg", t, "", Outcome::kDeny, "block-contractors"},
      {"deny before a matching allow wins", MainPolicy, Person("dave", {"contractors", "sre"}),
       "traces-pg", t, "", Outcome::kDeny, "block-contractors"},
      {"subject deny late in the file wins", MainPolicy, Person("mallory", {"sre"}), "traces-pg", t,
       "", Outcome::kDeny, "no-mallory"},
      {"deny wins over wildcard allow", MainPolicy, Person("bob", {"contractors"}), "audit-pg", t,
       "", Outcome::kDeny, "block-contractors"},
      {"client selector", MainPolicy, Person("svc-1", {}, "ingest-bot"), "traces-http", t, "",
       Outcome::kAllow, "etl-clients", seconds(30)},
      {"client selector, second entry", MainPolicy, Person("svc-2", {}, "etl"), "traces-http", t,
       "", Outcome::kAllow, "etl-clients", seconds(30)},
      {"client selector, other client", MainPolicy, Person("svc-3", {}, "scraper"), "traces-http",
       t, "", Outcome::kDeny, ""},
      {"client selector, no client", MainPolicy, Person("svc-4", {}), "traces-http", t, "",
       Outcome::kDeny, ""},
      {"empty client id never equals an empty entry", EmptyEntryPolicy, Person("svc-5", {}), "c", t,
       "", Outcome::kDeny, ""},
      {"client rule scoped to its connection", MainPolicy, Person("svc-1", {}, "ingest-bot"),
       "traces-pg", t, "", Outcome::kDeny, ""},
      {"group rule scoped to its connection", MainPolicy, Person("erin", {"eng"}), "traces-http", t,
       "", Outcome::kDeny, ""},
      {"connection name is exact", MainPolicy, Person("erin", {"eng"}), "traces-pg2", t, "",
       Outcome::kDeny, ""},
      {"group name is exact", MainPolicy, Person("erin", {"Eng", "eng-ops"}), "traces-pg", t, "",
       Outcome::kDeny, ""},
      {"subject selector with a reason", MainPolicy, Person("alice", {}), "traces-http", t,
       "incident 42", Outcome::kAllow, "alice-anywhere", seconds(30)},
      {"require_reason, no reason", MainPolicy, Person("alice", {}), "traces-http", t, "",
       Outcome::kDeny, "alice-anywhere"},
      {"require_reason, blank reason", MainPolicy, Person("alice", {}), "traces-http", t, " \t\n",
       Outcome::kDeny, "alice-anywhere"},
      {"require_approval", MainPolicy, Person("erin", {"eng"}), "traces-sensitive", t, "ticket 7",
       Outcome::kApprovalRequired, "sensitive", seconds(30)},
      {"require_reason checked before approval", MainPolicy, Person("erin", {"eng"}),
       "traces-sensitive", t, "", Outcome::kDeny, "sensitive"},
      {"require_approval without reason rule", MainPolicy, Person("rev", {}, "reviewer"),
       "anything", t, "", Outcome::kApprovalRequired, "approval-only", seconds(30)},
      {"wildcard group matches a principal with no groups", MainPolicy, Person("zed", {}),
       "audit-pg", t, "", Outcome::kAllow, "audit-any-group", seconds(30)},
      {"empty selectors match everyone", MainPolicy, Person("zed", {}), "public-http", t, "",
       Outcome::kAllow, "public", seconds(30)},
      {"no groups, no match: default deny", MainPolicy, Person("zed", {}), "traces-pg", t, "",
       Outcome::kDeny, ""},
      {"unknown connection: default deny", MainPolicy, Person("carol", {"eng"}), "nope", t, "",
       Outcome::kDeny, ""},
      {"empty trace id", MainPolicy, Person("alice", {"eng"}), "traces-pg", "", "", Outcome::kDeny,
       ""},
      {"newline in trace id", MainPolicy, Person("alice", {"eng"}), "traces-pg", "t-1\nx", "",
       Outcome::kDeny, ""},
      {"NUL in trace id", MainPolicy, Person("alice", {"eng"}), "traces-pg",
       std::string("t-1\0x", 5), "", Outcome::kDeny, ""},
      {"DEL in trace id", MainPolicy, Person("alice", {"eng"}), "traces-pg", "t\x7f", "",
       Outcome::kDeny, ""},
      {"trace id of 256 bytes", MainPolicy, Person("alice", {"eng"}), "traces-pg",
       std::string(256, 'a'), "", Outcome::kAllow, "eng-read", seconds(60)},
      {"trace id of 257 bytes", MainPolicy, Person("alice", {"eng"}), "traces-pg",
       std::string(257, 'a'), "", Outcome::kDeny, ""},
      {"non-ASCII trace id is fine", MainPolicy, Person("alice", {"eng"}), "traces-pg",
       "trace-\xc3\xa9", "", Outcome::kAllow, "eng-read", seconds(60)},
      {"bad trace id beats a deny rule", MainPolicy, Person("mallory", {}), "traces-pg", "", "",
       Outcome::kDeny, ""},
      {"rule with no selectors matches all", OpenPolicy, Person("x", {}), "any", t, "",
       Outcome::kAllow, "open", seconds(30)},
      {"no rules: default deny", EmptyPolicy, Person("alice", {"eng"}), "traces-pg", t, "",
       Outcome::kDeny, ""},
      {"first of two matching deny rules is named", DenyTwicePolicy, Person("a", {"eng"}),
       "traces-pg", t, "", Outcome::kDeny, "first-deny"},
      {"later deny rule alone", DenyTwicePolicy, Person("a", {"eng"}), "traces-http", t, "",
       Outcome::kDeny, "second-deny"},
  };
}

TEST(PolicyEngineTest, DecisionTable) {
  const std::vector<Case> cases = Cases();
  ASSERT_GE(cases.size(), 25u);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    PolicyEngine engine(c.policy());
    const Decision d = engine.Evaluate({c.principal, c.connection, c.trace, c.reason});
    EXPECT_EQ(OutcomeName(d.outcome), OutcomeName(c.outcome)) << d.reason;
    EXPECT_EQ(d.rule, c.rule) << d.reason;
    EXPECT_FALSE(d.reason.empty());
    if (c.outcome != Outcome::kDeny) {
      EXPECT_EQ(d.terms.ttl, c.ttl);
    }
  }
}

TEST(PolicyEngineTest, AllowCarriesTheRuleTerms) {
  config::Policy policy{.max_ttl = minutes(1)};
  policy.rules.push_back(Allow("r"));
  policy.rules.back().ttl = minutes(3);
  policy.rules.back().uses = 4;
  policy.rules.back().max_session = minutes(20);
  policy.rules.back().max_rows = 10;
  policy.rules.back().max_bytes = 2048;
  policy.rules.back().masking_profile = "strict";
  const identity::Principal p = Person("alice", {});
  const Decision d = PolicyEngine(policy).Evaluate({p, "c", "t", ""});
  ASSERT_TRUE(d.allowed()) << d.reason;
  // max_session stays as written: the grant's expiry cuts a session anyway.
  EXPECT_EQ(d.terms, (Terms{.ttl = minutes(1),
                            .uses = 4,
                            .max_session = minutes(20),
                            .max_rows = 10,
                            .max_bytes = 2048,
                            .masking_profile = "strict"}));
}

TEST(PolicyEngineTest, ARiskThresholdIsCarriedAndLeavesTheOutcomeToTheCaller) {
  config::Policy policy;
  policy.rules.push_back(Allow("risky"));
  policy.rules.back().approve_if_risk_at_least = 0.8;
  policy.rules.push_back(Allow("plain"));
  policy.rules.back().subjects = {"bob"};
  policy.rules.front().subjects = {"alice"};
  const PolicyEngine engine(policy);

  const identity::Principal alice = Person("alice", {});
  const Decision risky = engine.Evaluate({alice, "c", "t", ""});
  // Policy cannot know the risk (that needs a query): it allows and says what to check.
  EXPECT_EQ(risky.outcome, Outcome::kAllow) << risky.reason;
  EXPECT_EQ(risky.terms.approve_if_risk_at_least, std::optional<double>(0.8));

  const identity::Principal bob = Person("bob", {});
  const Decision plain = engine.Evaluate({bob, "c", "t", ""});
  EXPECT_EQ(plain.outcome, Outcome::kAllow) << plain.reason;
  EXPECT_EQ(plain.terms.approve_if_risk_at_least, std::nullopt);
  EXPECT_FALSE(risky.terms == plain.terms);
}

TEST(PolicyEngineTest, ReasonsSayWhy) {
  PolicyEngine engine(MainPolicy());
  const identity::Principal bob = Person("bob", {"eng", "contractors"});
  EXPECT_EQ(engine.Evaluate({bob, "traces-pg", "t", ""}).reason,
            "denied by rule block-contractors (group contractors)");

  const identity::Principal zed = Person("zed", {"x", "y"}, "cli");
  EXPECT_EQ(engine.Evaluate({zed, "traces-pg", "t", ""}).reason,
            "no rule allows subject zed (client cli, groups [x, y]) on connection traces-pg");
  const identity::Principal lonely = Person("lonely", {});
  EXPECT_EQ(engine.Evaluate({lonely, "traces-pg", "t", ""}).reason,
            "no rule allows subject lonely (no groups) on connection traces-pg");

  const identity::Principal alice = Person("alice", {});
  EXPECT_EQ(engine.Evaluate({alice, "traces-http", "t", " "}).reason,
            "rule alice-anywhere requires a reason");
  EXPECT_EQ(engine.Evaluate({alice, "x", "", ""}).reason, "trace id is empty");
  EXPECT_EQ(engine.Evaluate({alice, "x", std::string(300, 'a'), ""}).reason,
            "trace id is 300 bytes, more than 256");
  EXPECT_EQ(engine.Evaluate({alice, "x", "ab\tc", ""}).reason,
            "trace id has a control character (\\x09) at byte 2");

  const identity::Principal erin = Person("erin", {"eng"});
  EXPECT_EQ(engine.Evaluate({erin, "traces-sensitive", "t", "why"}).reason,
            "rule sensitive requires approval (group eng, connection traces-sensitive)");
  EXPECT_EQ(engine.Evaluate({erin, "traces-pg", "t", ""}).reason,
            "allowed by rule eng-read (group eng, connection traces-pg)");
}

TEST(PolicyEngineTest, TokenStringsAreEscapedInReasons) {
  PolicyEngine engine(EmptyPolicy());
  const identity::Principal p = Person("eve\nforged: yes", {"g\x1b[31m"});
  const std::string reason = engine.Evaluate({p, "c", "t", ""}).reason;
  EXPECT_EQ(reason.find('\n'), std::string::npos);
  EXPECT_EQ(reason.find('\x1b'), std::string::npos);
  EXPECT_THAT(reason, HasSubstr("eve\\x0aforged: yes"));
  EXPECT_THAT(reason, HasSubstr("g\\x1b[31m"));
}

TEST(PolicyEngineTest, UsesThePolicyOfASharedConfig) {
  auto config = std::make_shared<config::Config>();
  config->policy = OpenPolicy();
  PolicyEngine engine{std::shared_ptr<const config::Config>(config)};
  const identity::Principal p = Person("a", {});
  EXPECT_EQ(engine.Evaluate({p, "c", "t", ""}).rule, "open");
}

TEST(PolicyEngineTest, NullConfigDeniesEverything) {
  PolicyEngine engine(std::shared_ptr<const config::Config>{});
  const identity::Principal p = Person("a", {"admins"});
  const Decision d = engine.Evaluate({p, "c", "t", "r"});
  EXPECT_EQ(d.outcome, Outcome::kDeny);
  EXPECT_EQ(d.rule, "");
}

TEST(PolicyEngineTest, ExplainNamesTheDecidingRuleAndEachSelectorThatFailed) {
  PolicyEngine engine(MainPolicy());
  identity::Principal p = Person("erin", {"eng"}, "cli");
  p.development = true;
  const std::string text = engine.Evaluate({p, "traces-pg", "trace-9", ""}).rule;
  ASSERT_EQ(text, "eng-read");

  const std::string explain = engine.Explain({p, "traces-pg", "trace-9", ""});
  EXPECT_THAT(explain, HasSubstr("subject:    erin\n"));
  EXPECT_THAT(explain, HasSubstr("client:     cli\n"));
  EXPECT_THAT(explain, HasSubstr("groups:     [eng]\n"));
  EXPECT_THAT(explain, HasSubstr("issuer:     okta (https://idp.example) [development issuer]"));
  EXPECT_THAT(explain, HasSubstr("connection: traces-pg\n"));
  EXPECT_THAT(explain, HasSubstr("trace:      trace-9\n"));
  EXPECT_THAT(explain, HasSubstr("max_ttl 5m"));
  EXPECT_THAT(explain, HasSubstr("1. eng-read (allow): matched: group eng, connection traces-pg"
                                 "  <- decides\n"));
  EXPECT_THAT(explain, HasSubstr("2. block-contractors (deny): not matched: groups [eng] "
                                 "include none of [contractors]\n"));
  EXPECT_THAT(explain, HasSubstr("4. etl-clients (allow): not matched: client cli is not one of "
                                 "[ingest-bot, etl]; connection traces-pg is not one of "
                                 "[traces-http]\n"));
  EXPECT_THAT(explain, HasSubstr("8. audit-any-group (allow): not matched: connection "
                                 "traces-pg is not one of [audit-pg]\n"));
  EXPECT_THAT(explain, HasSubstr("decision: allow by rule eng-read\n"));
  EXPECT_THAT(explain, HasSubstr("terms:   ttl 1m, uses 1, max_session 5m, max_rows 100000, "
                                 "max_bytes 67108864, masking default\n"));
  EXPECT_EQ(explain.find("<- decides"), explain.rfind("<- decides"));  // only one rule decides
}

TEST(PolicyEngineTest, ExplainADenyByALaterRule) {
  PolicyEngine engine(MainPolicy());
  const identity::Principal p = Person("bob", {"eng", "contractors"});
  const std::string explain = engine.Explain({p, "traces-pg", "t", ""});
  EXPECT_THAT(explain, HasSubstr("1. eng-read (allow): matched: group eng, connection "
                                 "traces-pg\n"));
  EXPECT_THAT(explain, HasSubstr("2. block-contractors (deny): matched: group contractors"
                                 "  <- decides\n"));
  EXPECT_THAT(explain, HasSubstr("decision: deny by rule block-contractors\n"));
  EXPECT_THAT(explain, testing::Not(HasSubstr("terms:")));
}

TEST(PolicyEngineTest, ExplainADefaultDenyAndABadTraceId) {
  PolicyEngine engine(MainPolicy());
  const identity::Principal p = Person("zed", {});
  std::string explain = engine.Explain({p, "traces-pg", "t", ""});
  EXPECT_THAT(explain, HasSubstr("groups:     (none)\n"));
  EXPECT_THAT(explain, HasSubstr("client:     (none)\n"));
  EXPECT_THAT(explain, HasSubstr("not matched: principal has no groups, rule needs one of [eng]"));
  EXPECT_THAT(explain, HasSubstr("decision: deny (no deciding rule)\n"));
  EXPECT_THAT(explain, testing::Not(HasSubstr("<- decides")));

  explain = engine.Explain({p, "audit-pg", "a\nb", "why"});
  EXPECT_THAT(explain, HasSubstr("trace:      a\\x0ab\n"));
  EXPECT_THAT(explain, HasSubstr("reason:     \"why\"\n"));
  EXPECT_THAT(explain, HasSubstr("matched: any group, connection audit-pg\n"));
  EXPECT_THAT(explain, HasSubstr("because: trace id has a control character (\\x0a) at byte 1"));
}

// ---- issuer scopes (issue 17): a rule's subjects, groups and clients count only from the
// issuers it names; an unscoped deny rule refuses callers of every issuer.

config::Policy TwoIssuerPolicy() {
  config::Policy policy{.max_ttl = minutes(5)};
  policy.rules.push_back(Deny("no-contractors"));  // unscoped: every issuer
  policy.rules.back().groups = {"contractors"};
  policy.rules.push_back(Allow("agents-read"));
  policy.rules.back().issuers = {"agents"};
  policy.rules.back().groups = {"ai-agents"};
  policy.rules.push_back(Allow("alice-anywhere"));
  policy.rules.back().issuers = {"workforce"};
  policy.rules.back().subjects = {"alice"};
  policy.rules.push_back(Allow("etl"));
  policy.rules.back().issuers = {"agents", "workforce"};
  policy.rules.back().clients = {"etl"};
  return policy;
}

identity::Principal From(std::string issuer_name, std::string sub, std::vector<std::string> groups,
                         std::string client = "") {
  identity::Principal p = Person(std::move(sub), std::move(groups), std::move(client));
  p.issuer = Cat("https://", issuer_name, ".example");
  p.issuer_name = std::move(issuer_name);
  return p;
}

TEST(PolicyEngineTest, RulesHonourSelectorsOnlyFromTheirIssuers) {
  const PolicyEngine engine(TwoIssuerPolicy());
  struct Row {
    identity::Principal principal;
    Outcome outcome;
    std::string rule;
  } rows[] = {
      {From("agents", "bot-1", {"ai-agents"}), Outcome::kAllow, "agents-read"},
      // The same group from the workforce issuer is not the agents' group.
      {From("workforce", "bot-1", {"ai-agents"}), Outcome::kDeny, ""},
      {From("workforce", "alice", {}), Outcome::kAllow, "alice-anywhere"},
      // agents/alice is not workforce/alice.
      {From("agents", "alice", {}), Outcome::kDeny, ""},
      {From("agents", "alice", {"ai-agents"}), Outcome::kAllow, "agents-read"},
      {From("other", "alice", {"ai-agents"}, "etl"), Outcome::kDeny, ""},
      {From("agents", "x", {}, "etl"), Outcome::kAllow, "etl"},
      {From("workforce", "x", {}, "etl"), Outcome::kAllow, "etl"},
      // The unscoped deny rule refuses contractors whatever their issuer.
      {From("agents", "bot-2", {"ai-agents", "contractors"}), Outcome::kDeny, "no-contractors"},
      {From("workforce", "alice", {"contractors"}), Outcome::kDeny, "no-contractors"},
      {From("other", "alice", {"contractors"}), Outcome::kDeny, "no-contractors"},
  };
  for (const Row& row : rows) {
    const Decision d = engine.Evaluate(
        {.principal = row.principal, .connection = "traces-pg", .trace_id = "t-1", .reason = ""});
    EXPECT_EQ(d.outcome, row.outcome) << row.principal.Describe() << ": " << d.reason;
    EXPECT_EQ(d.rule, row.rule) << row.principal.Describe() << ": " << d.reason;
  }
  const identity::Principal wrong = From("workforce", "bot-1", {"ai-agents"});
  EXPECT_THAT(engine.Explain(
                  {.principal = wrong, .connection = "traces-pg", .trace_id = "t-1", .reason = ""}),
              HasSubstr("issuer workforce is not one of [agents]"));
}

}  // namespace
}  // namespace tracegate::policy
