#pragma once
// Private to the config module: the keys of `approvals:` (src/approvals) and its webhooks.

#include "config/config.h"
#include "config/schema.h"

namespace tracegate::config::internal {

// The webhook secret's sources, resolved by the webhook table's check.
struct WebhookExtra {
  std::string secret_file;
  std::string secret_env;
};

const Table<Approvals>& ApprovalKeys();

// Every group named as an approver (rules and approvals.approver_groups) must exist
// somewhere a rule can use it: a rule that requires approval with no approver group at all
// is an error (nobody could ever approve it).
void CheckApprovalRules(const Item& root, const Config& config, Context& ctx);

}  // namespace tracegate::config::internal
