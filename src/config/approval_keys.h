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

// A rule that asks for approval (require_approval, approve_if_risk_at_least,
// hold_if_masked_at_least) must name approver groups (its own or approvals.approver_groups:
// otherwise nobody could ever approve); holding needs a masking profile; a risk condition
// needs a risk_query ($1 = the trace id) on every connection the rule applies to.
void CheckApprovalRules(const Item& root, const Config& config, Context& ctx);

}  // namespace tracegate::config::internal
