// Issuer scopes of roles and rules (approvals.issuers, audit.auditor_issuers,
// policy.rules[].issuers) and identity.people: what loads, what is refused (with file:line),
// and TrustsIssuer / SamePerson.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "config/config.h"

namespace tracegate::config {
namespace {

using ::testing::HasSubstr;

constexpr const char* kConnection = R"(connections:
  - name: traces-pg
    listen: 127.0.0.1:6432
    backend: {host: db, database: traces, user: tg, password: pw, allow_inline_password: true}
)";

constexpr const char* kOneIssuer = R"(identity:
  issuers:
    - {name: workforce, issuer: "https://wf.example", audiences: [tg], jwks_uri: "https://wf.example/jwks"}
)";

constexpr const char* kTwoIssuers = R"(identity:
  issuers:
    - {name: workforce, issuer: "https://wf.example", audiences: [tg], jwks_uri: "https://wf.example/jwks"}
    - {name: agents, issuer: "https://agents.example", audiences: [tg], jwks_uri: "https://agents.example/jwks"}
)";

std::string Full(const std::string& identity, const std::string& tail) {
  return absl::StrCat(kConnection, identity, tail);
}

// "t.yaml:<n>:" for the first line of `yaml` holding `marker` (1-based, as errors count).
std::string At(const std::string& yaml, const std::string& marker) {
  std::istringstream in(yaml);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find(marker) != std::string::npos) {
      return absl::StrCat("t.yaml:", n, ":");
    }
  }
  return "marker not found: " + marker;
}

struct ScopeCase {
  std::string name;
  std::string identity;
  std::string tail;
  // Empty: loads. Otherwise each must appear in the error text.
  std::string marker;  // the line the error must point at
  std::string error;   // "<key path>: <reason start>"
};

std::vector<ScopeCase> Cases() {
  const std::string scoped_roles = R"(approvals:
  approver_groups: [trace-approvers]
  force_groups: [security-leads]
  issuers: [workforce]
audit:
  auditor_groups: [auditors]
  auditor_issuers: [workforce]
policy:
  rules:
    - {name: no-contractors, effect: deny, groups: [contractors]}
    - {name: agents-read, issuers: [agents], groups: [ai-agents], require_approval: true,
       approvers: [leads]}
)";
  return {
      {"OneIssuerUnscopedRolesLoad", kOneIssuer, R"(approvals:
  approver_groups: [trace-approvers]
  force_groups: [security-leads]
audit: {auditor_groups: [auditors]}
policy:
  rules: [{name: r, groups: [ai-agents], require_approval: true, approvers: [leads]}]
)",
       "", ""},
      {"NoIssuerUnscopedRolesLoad", "", R"(approvals: {approver_groups: [a], force_groups: [f]}
policy: {rules: [{name: r, groups: [g]}]}
)",
       "", ""},
      {"TwoIssuersScopedRolesLoad", kTwoIssuers, scoped_roles, "", ""},
      {"UnscopedApproverGroups", kTwoIssuers, R"(approvals:
  approver_groups: [trace-approvers]
)",
       "approver_groups:",
       "approvals.approver_groups: is honoured from every issuer, and 2 are configured "
       "(workforce, agents): name the issuers it trusts in approvals.issuers"},
      {"UnscopedForceGroups", kTwoIssuers, R"(approvals:
  force_groups: [security-leads]
)",
       "force_groups:", "approvals.force_groups: is honoured from every issuer"},
      {"UnscopedAuditors", kTwoIssuers, R"(audit:
  auditor_groups: [auditors]
)",
       "auditor_groups:",
       "audit.auditor_groups: is honoured from every issuer, and 2 are configured (workforce, "
       "agents): name the issuers it trusts in audit.auditor_issuers"},
      {"UnscopedAllowRule", kTwoIssuers, R"(policy:
  rules:
    - name: agents-read
      groups: [ai-agents]
)",
       "name: agents-read",
       "policy.rules[0].issuers: allow rule \"agents-read\" applies to callers of every issuer"},
      {"UnscopedRuleWithOnlySubjects", kTwoIssuers, R"(policy:
  rules:
    - name: alice
      subjects: [alice]
)",
       "name: alice", "policy.rules[0].issuers: allow rule \"alice\""},
      {"UnscopedRuleApprovers", kTwoIssuers, R"(policy:
  rules:
    - name: r
      issuers: [agents]
      require_approval: true
      approvers: [leads]
)",
       "approvers:", "policy.rules[0].approvers: is honoured from every issuer"},
      {"UnscopedDenyRuleLoads", kTwoIssuers, R"(policy:
  rules: [{name: d, effect: deny, groups: [contractors]}]
)",
       "", ""},
      {"UnknownApprovalsIssuer", kTwoIssuers, R"(approvals:
  approver_groups: [a]
  issuers: [okta]
)",
       "issuers: [okta]",
       "approvals.issuers: no issuer is named \"okta\" (identity.issuers names workforce, "
       "agents)"},
      {"UnknownAuditorIssuer", kOneIssuer, R"(audit:
  auditor_issuers: [agents]
)",
       "auditor_issuers:", "audit.auditor_issuers: no issuer is named \"agents\""},
      {"UnknownRuleIssuer", kTwoIssuers, R"(policy:
  rules:
    - name: r
      issuers: [agent]
)",
       "issuers: [agent]", "policy.rules[0].issuers: no issuer is named \"agent\""},
      {"MalformedIssuerName", kTwoIssuers, R"(approvals:
  issuers: ["Work Force"]
)",
       "Work Force", "approvals.issuers[0]:"},
      {"PeopleLoad", kTwoIssuers, R"(  people:
    - {name: alice, identities: ["workforce:alice", "agents:alice:bot"]}
)",
       "", ""},
      {"PersonIdentityWithoutIssuer", kTwoIssuers, R"(  people:
    - name: alice
      identities: [alice]
)",
       "identities: [alice]",
       "identity.people[0].identities: expected <issuer name>:<subject>, got \"alice\""},
      {"PersonIdentityOfUnknownIssuer", kTwoIssuers, R"(  people:
    - name: alice
      identities: ["okta:alice"]
)",
       "okta:alice", "identity.people[0].identities: no issuer is named \"okta\""},
      {"IdentityOfTwoPeople", kTwoIssuers, R"(  people:
    - {name: alice, identities: ["workforce:a"]}
    - {name: bob, identities: ["agents:b", "workforce:a"]}
)",
       "name: bob",
       "identity.people[1].identities: \"workforce:a\" is also listed under "
       "identity.people[0]"},
  };
}

class IssuerScopeLoadTest : public ::testing::TestWithParam<ScopeCase> {};

TEST_P(IssuerScopeLoadTest, LoadsOrNamesTheRoleAndItsLine) {
  const ScopeCase& c = GetParam();
  // A tail starting "  people:" continues the identity section.
  const std::string yaml = Full(c.identity, c.tail);
  auto loaded = LoadString(yaml, "t.yaml");
  if (c.error.empty()) {
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    return;
  }
  ASSERT_FALSE(loaded.ok()) << yaml;
  const std::string message(loaded.status().message());
  // The error's position and text sit on one line of the report.
  bool found = false;
  std::istringstream lines(message);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(At(yaml, c.marker), 0) == 0 && line.find(c.error) != std::string::npos) {
      found = true;
    }
  }
  EXPECT_TRUE(found) << "want " << At(yaml, c.marker) << "...: " << c.error << "\ngot:\n"
                     << message;
}

INSTANTIATE_TEST_SUITE_P(Config, IssuerScopeLoadTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

std::shared_ptr<const Config> MustLoad(const std::string& identity, const std::string& tail) {
  auto loaded = LoadString(Full(identity, tail), "t.yaml");
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.ok() ? *loaded : std::make_shared<const Config>();
}

TEST(TrustsIssuer, AScopeCountsOnlyItsIssuers) {
  auto two = MustLoad(kTwoIssuers, "");
  auto one = MustLoad(kOneIssuer, "");
  const std::vector<std::string> workforce = {"workforce"};
  struct Row {
    const Config* config;
    std::vector<std::string> scope;
    std::string issuer;
    bool trusted;
  } rows[] = {
      {two.get(), workforce, "workforce", true},
      {two.get(), workforce, "agents", false},
      {two.get(), {"workforce", "agents"}, "agents", true},
      {two.get(), {}, "workforce", false},  // unscoped with two issuers: nobody
      {two.get(), {}, "agents", false},
      {one.get(), {}, "workforce", true},  // unscoped with one issuer: that one
      {one.get(), workforce, "workforce", true},
      {one.get(), {"agents"}, "workforce", false},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(TrustsIssuer(row.config->identity, row.scope, row.issuer), row.trusted)
        << row.issuer << " with " << row.config->identity.issuers.size() << " issuer(s)";
  }
}

TEST(SamePerson, ComparesPeopleNotIssuerSubjectPairs) {
  auto config = MustLoad(kTwoIssuers, R"(  people:
    - {name: alice, identities: ["workforce:alice", "agents:alice-bot"]}
    - {name: bob, identities: ["workforce:bob"]}
)");
  const Identity& id = config->identity;
  const std::string wf = "https://wf.example";
  const std::string ag = "https://agents.example";
  EXPECT_TRUE(SamePerson(id, wf, "alice", wf, "alice"));
  EXPECT_TRUE(SamePerson(id, wf, "alice", ag, "alice-bot"));
  EXPECT_TRUE(SamePerson(id, ag, "alice-bot", wf, "alice"));
  // The same subject text under another issuer is not the same person unless listed.
  EXPECT_FALSE(SamePerson(id, wf, "alice", ag, "alice"));
  EXPECT_FALSE(SamePerson(id, wf, "bob", ag, "alice-bot"));
  EXPECT_FALSE(SamePerson(id, wf, "bob", wf, "alice"));
  // Unlisted identities are only themselves; an unknown iss never maps.
  EXPECT_FALSE(SamePerson(id, ag, "carol", wf, "carol"));
  EXPECT_FALSE(SamePerson(id, "https://evil.example", "alice", wf, "alice"));
}

}  // namespace
}  // namespace tracegate::config
