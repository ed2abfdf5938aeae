// approvals.* and the approval keys of policy rules: what loads, the defaults, the errors.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "config/config.h"

namespace tracegate::config {
namespace {

using ::testing::HasSubstr;
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

}  // namespace
}  // namespace tracegate::config
