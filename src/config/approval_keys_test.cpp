// approvals.* and the approval keys of policy rules: what loads, the defaults, the errors.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "config/config.h"

namespace tracegate::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr const char* kConnection = R"(connections:
  - name: traces-pg
    listen: 127.0.0.1:6432
    backend: {host: db, database: traces, user: tg, password: pw, allow_inline_password: true}
)";

absl::StatusOr<std::shared_ptr<const Config>> Load(const std::string& tail) {
  return LoadString(absl::StrCat(kConnection, tail), "/etc/tg/t.yaml");
}

std::string ErrorOf(const std::string& tail) {
  auto config = Load(tail);
  return config.ok() ? "<loaded>" : std::string(config.status().message());
}

TEST(ApprovalConfig, Defaults) {
  auto config = Load("");
  ASSERT_TRUE(config.ok()) << config.status();
  const Approvals& a = (*config)->approvals;
  EXPECT_EQ(a.timeout, 15min);
  EXPECT_TRUE(a.approver_groups.empty());
  EXPECT_TRUE(a.force_groups.empty());
  EXPECT_EQ(a.hold_max_bytes, 16u << 20);
  EXPECT_TRUE(a.webhooks.empty());
  EXPECT_EQ(a.max_pending_per_requester, 10u);
}

TEST(ApprovalConfig, FloodLimitsLoadAndAreBounded) {
  setenv("TG_APPROVAL_TEST_SECRET", "s3cret-value", 1);
  auto config = Load(R"(approvals:
  max_pending_per_requester: 3
  webhooks:
    - {name: a, url: "http://127.0.0.1:9/a", secret_env: TG_APPROVAL_TEST_SECRET, queue_size: 5}
    - {name: b, url: "http://127.0.0.1:9/b", secret_env: TG_APPROVAL_TEST_SECRET}
)");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ((*config)->approvals.max_pending_per_requester, 3u);
  ASSERT_EQ((*config)->approvals.webhooks.size(), 2u);
  EXPECT_EQ((*config)->approvals.webhooks[0].queue_size, 5u);
  EXPECT_EQ((*config)->approvals.webhooks[1].queue_size, 1000u);
  // Zero would refuse every request; a queue of zero would drop every delivery.
  EXPECT_THAT(ErrorOf("approvals: {max_pending_per_requester: 0}\n"),
              HasSubstr("approvals.max_pending_per_requester"));
  EXPECT_THAT(ErrorOf("approvals:\n  webhooks:\n    - {name: w, url: \"http://x\", "
                      "secret_env: TG_APPROVAL_TEST_SECRET, queue_size: 0}\n"),
              HasSubstr("queue_size"));
  unsetenv("TG_APPROVAL_TEST_SECRET");
}

TEST(ApprovalConfig, RuleKeysAndWebhooksLoad) {
  setenv("TG_APPROVAL_TEST_SECRET", "s3cret-value", 1);
  auto config = Load(R"(approvals:
  timeout: 2m
  approver_groups: [approvers]
  force_groups: [leads]
  webhooks:
    - {name: chat, url: "https://hooks.example.com/x", format: slack, events: [requested]}
    - {name: tickets, url: "http://127.0.0.1:9/t", secret_env: TG_APPROVAL_TEST_SECRET,
       max_attempts: 3, timeout: 2s}
policy:
  rules:
    - {name: sensitive, groups: [s], require_approval: true, approvals_required: 2,
       approvers: [a, b]}
    - {name: held, groups: [h], masking_profile: p, hold_if_masked_at_least: 5}
masking_profiles:
  - {name: p, detectors: [email]}
)");
  unsetenv("TG_APPROVAL_TEST_SECRET");
  ASSERT_TRUE(config.ok()) << config.status();
  const Config& c = **config;
  EXPECT_EQ(c.approvals.timeout, 2min);
  ASSERT_EQ(c.approvals.webhooks.size(), 2u);
  EXPECT_EQ(c.approvals.webhooks[0].format, WebhookFormat::kSlack);
  EXPECT_EQ(c.approvals.webhooks[0].events, std::vector<std::string>{"requested"});
  EXPECT_TRUE(c.approvals.webhooks[0].secret.empty());
  EXPECT_EQ(c.approvals.webhooks[1].format, WebhookFormat::kGeneric);
  EXPECT_EQ(c.approvals.webhooks[1].secret, "s3cret-value");
  EXPECT_EQ(c.approvals.webhooks[1].max_attempts, 3u);
  EXPECT_EQ((std::vector<std::string>{"requested", "decided"}), c.approvals.webhooks[1].events);
  ASSERT_EQ(c.policy.rules.size(), 2u);
  EXPECT_TRUE(c.policy.rules[0].require_approval);
  EXPECT_EQ(c.policy.rules[0].approvals_required, 2u);
  EXPECT_EQ(c.policy.rules[0].approvers, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.policy.rules[1].hold_if_masked_at_least, 5u);
}

TEST(ApprovalConfig, ARuleNobodyCouldApproveIsAnError) {
  EXPECT_THAT(ErrorOf("policy:\n  rules:\n    - {name: r, require_approval: true}\n"),
              HasSubstr("policy.rules[0].approvers: the rule asks for approval but names no "
                        "approver group"));
  // A default approver group is enough.
  EXPECT_EQ(ErrorOf("approvals: {approver_groups: [x]}\npolicy:\n  rules:\n"
                    "    - {name: r, require_approval: true}\n"),
            "<loaded>");
}

TEST(ApprovalConfig, HoldingNeedsMasking) {
  EXPECT_THAT(ErrorOf("approvals: {approver_groups: [x]}\npolicy:\n  rules:\n"
                      "    - {name: r, hold_if_masked_at_least: 3}\n"),
              HasSubstr("hold_if_masked_at_least: needs a masking_profile"));
}

TEST(ApprovalConfig, WebhookErrors) {
  EXPECT_THAT(ErrorOf("approvals:\n  webhooks:\n    - {name: w, url: \"https://x\"}\n"),
              HasSubstr("a generic webhook needs secret_file or secret_env"));
  EXPECT_THAT(
      ErrorOf("approvals:\n  webhooks:\n    - {name: w, url: \"ftp://x\", format: slack}\n"),
      HasSubstr("http://"));
  EXPECT_THAT(ErrorOf("approvals:\n  webhooks:\n    - {name: w, url: \"https://x\", format: slack, "
                      "events: [sent]}\n"),
              HasSubstr("unknown event \"sent\""));
  EXPECT_THAT(
      ErrorOf("approvals:\n  webhooks:\n    - {name: w, url: \"https://x\", format: teams}\n"),
      HasSubstr("format"));
  EXPECT_THAT(ErrorOf("approvals: {timeout: 0s}\n"), HasSubstr("approvals.timeout"));
  EXPECT_THAT(ErrorOf("policy:\n  rules:\n    - {name: r, approvals_required: 0}\n"),
              HasSubstr("approvals_required"));
}

TEST(ApprovalConfig, TheSecretNeverAppearsInErrors) {
  setenv("TG_APPROVAL_TEST_SECRET", "s3cret-value", 1);
  const std::string error = ErrorOf(
      "approvals:\n  webhooks:\n    - {name: w, url: \"https://x\", "
      "secret_env: TG_APPROVAL_TEST_SECRET, events: [nope]}\n");
  unsetenv("TG_APPROVAL_TEST_SECRET");
  EXPECT_THAT(error, HasSubstr("unknown event"));
  EXPECT_THAT(error, ::testing::Not(HasSubstr("s3cret-value")));
}

// ---- approve_if_risk_at_least and risk_query ---------------------------------------------

// Two connections: traces-pg says how to read a trace's risk, plain-pg does not.
constexpr const char* kRiskConnections = R"(connections:
  - name: traces-pg
    listen: 127.0.0.1:6432
    backend: {host: db, database: traces, user: tg, password: pw, allow_inline_password: true}
    risk_query: "select risk from trace_risk where trace_id = $1"
  - name: plain-pg
    listen: 127.0.0.1:6433
    backend: {host: db, database: traces, user: tg, password: pw, allow_inline_password: true}
approvals: {approver_groups: [approvers]}
)";

absl::StatusOr<std::shared_ptr<const Config>> LoadRisk(const std::string& rules) {
  return LoadString(absl::StrCat(kRiskConnections, "policy:\n  rules:\n", rules), "/etc/tg/t.yaml");
}

std::string RiskErrorOf(const std::string& rules) {
  auto config = LoadRisk(rules);
  return config.ok() ? "<loaded>" : std::string(config.status().message());
}

TEST(RiskConfig, ThresholdAndQueryLoad) {
  auto config = LoadRisk(
      "    - {name: risky, connections: [traces-pg], approve_if_risk_at_least: 0.8}\n"
      "    - {name: negative, connections: [traces-pg], approve_if_risk_at_least: -2.5e1}\n"
      "    - {name: plain, groups: [g]}\n");
  ASSERT_TRUE(config.ok()) << config.status();
  const Config& c = **config;
  EXPECT_EQ(c.connections[0].risk_query, "select risk from trace_risk where trace_id = $1");
  EXPECT_EQ(c.connections[1].risk_query, "");
  EXPECT_EQ(c.policy.rules[0].approve_if_risk_at_least, std::optional<double>(0.8));
  EXPECT_EQ(c.policy.rules[1].approve_if_risk_at_least, std::optional<double>(-25));
  EXPECT_EQ(c.policy.rules[2].approve_if_risk_at_least, std::nullopt);
  EXPECT_FALSE(c.policy.rules[0].require_approval);
}

TEST(RiskConfig, TheThresholdMustBeAFiniteNumber) {
  for (const char* bad : {"high", ".inf", "nan", "1e999", "0x1p3", "\"\"", "[1]"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(RiskErrorOf(absl::StrCat("    - {name: r, connections: [traces-pg], "
                                         "approve_if_risk_at_least: ",
                                         bad, "}\n")),
                HasSubstr("policy.rules[0].approve_if_risk_at_least: expected"));
  }
}

TEST(RiskConfig, EveryConnectionTheRuleCoversNeedsARiskQuery) {
  // No connections selector (and "*") means every connection, plain-pg included.
  for (const char* selector :
       {"", "connections: ['*'], ", "connections: [traces-pg, plain-pg], "}) {
    SCOPED_TRACE(selector);
    EXPECT_THAT(
        RiskErrorOf(absl::StrCat("    - {name: r, ", selector, "approve_if_risk_at_least: 0.5}\n")),
        HasSubstr("policy.rules[0].approve_if_risk_at_least: connection \"plain-pg\" "
                  "has no risk_query"));
  }
  EXPECT_THAT(RiskErrorOf("    - {name: r, approve_if_risk_at_least: 0.5}\n"),
              Not(HasSubstr("\"traces-pg\" has no risk_query")));
  // A deny rule asks nothing of anyone.
  EXPECT_EQ(RiskErrorOf("    - {name: r, effect: deny, approve_if_risk_at_least: 0.5}\n"),
            "<loaded>");
}

TEST(RiskConfig, ARiskRuleNeedsApprovers) {
  const std::string yaml = absl::StrCat(
      "connections:\n  - name: traces-pg\n    listen: 127.0.0.1:6432\n"
      "    backend: {host: db, database: traces, user: tg, password: pw, "
      "allow_inline_password: true}\n"
      "    risk_query: \"select 1 where $1 <> ''\"\n",
      "policy:\n  rules:\n    - {name: r, approve_if_risk_at_least: 0.5}\n");
  auto config = LoadString(yaml, "/etc/tg/t.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(),
              HasSubstr("policy.rules[0].approvers: the rule asks for approval but names no "
                        "approver group"));
}

TEST(RiskConfig, RequireApprovalMakesTheThresholdPointless) {
  EXPECT_THAT(RiskErrorOf("    - {name: r, connections: [traces-pg], require_approval: true, "
                          "approve_if_risk_at_least: 0.5}\n"),
              HasSubstr("approve_if_risk_at_least: has no effect with require_approval: true"));
}

TEST(RiskConfig, TheRiskQueryTakesTheTraceIdAsItsOnlyParameter) {
  const auto error_for = [](const std::string& sql) {
    const std::string yaml = absl::StrCat(
        "connections:\n  - name: traces-pg\n    listen: 127.0.0.1:6432\n"
        "    backend: {host: db, database: traces, user: tg, password: pw, "
        "allow_inline_password: true}\n"
        "    risk_query: \"",
        sql, "\"\n");
    auto config = LoadString(yaml, "/etc/tg/t.yaml");
    return config.ok() ? std::string("<loaded>") : std::string(config.status().message());
  };
  EXPECT_EQ(error_for("select risk from t where id = $1"), "<loaded>");
  EXPECT_EQ(error_for("select coalesce(max(r), 0) from t where id = $1 or parent = $1"),
            "<loaded>");
  // `a$2` is an identifier, not a parameter.
  EXPECT_EQ(error_for("select a$2 from t where id = $1"), "<loaded>");
  for (const char* bad : {"select risk from t", "select risk from t where id = $2",
                          "select risk from t where id = $1 and k = $2",
                          "select risk from t where id = $10", "select $01"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(error_for(bad), HasSubstr("connections[0].risk_query: must take the trace id as "
                                          "$1 and no other parameter"));
  }
  EXPECT_THAT(error_for(""), HasSubstr("risk_query"));
}

}  // namespace
}  // namespace tracegate::config
