#include "config/approval_keys.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "config/access_keys.h"
#include "config/scalars.h"

namespace tracegate::config::internal {

using namespace std::chrono_literals;

namespace {

constexpr size_t kMaxWebhooks = 16;

void CheckWebhook(const Item& map, Webhook& hook, WebhookExtra& extra, Context& ctx) {
  LoadOptionalSecret(map, "secret", {extra.secret_file, extra.secret_env}, hook.secret, ctx);
  if (!hook.url.empty() && !absl::StartsWith(hook.url, "http://") &&
      !absl::StartsWith(hook.url, "https://")) {
    const std::string key = ChildPath(map.path, "url");
    ctx.Error(ctx.MarkOf(key), key, "must start with http:// or https://");
  }
  // A generic receiver must be able to tell tracegate's deliveries from anyone else's.
  if (hook.format == WebhookFormat::kGeneric && extra.secret_file.empty() &&
      extra.secret_env.empty()) {
    const std::string key = ChildPath(map.path, "secret_file");
    ctx.Error(ctx.MarkOf(ChildPath(map.path, "name")), key,
              "a generic webhook needs secret_file or secret_env (its deliveries are signed)");
  }
  std::set<std::string> seen;
  for (const std::string& event : hook.events) {
    const std::string key = ChildPath(map.path, "events");
    if (event != "requested" && event != "decided") {
      ctx.Error(ctx.MarkOf(key), key,
                absl::StrCat("unknown event \"", event, "\" (expected requested, decided)"));
    } else if (!seen.insert(event).second) {
      ctx.Error(ctx.MarkOf(key), key, absl::StrCat("event \"", event, "\" is listed twice"));
    }
  }
}

const Table<Webhook, WebhookExtra>& WebhookKeys() {
  using K = Keys<Webhook, WebhookExtra>;
  static const auto* const table = new Table<Webhook, WebhookExtra>{
      .keys =
          {
              K::Required("name", &Webhook::name, kReloadable, ConnectionName()),
              K::Required("url", &Webhook::url, kReloadable, Url()),
              K::Optional("format", &Webhook::format, WebhookFormat::kGeneric, kReloadable,
                          OneOf<WebhookFormat>({{"generic", WebhookFormat::kGeneric},
                                                {"slack", WebhookFormat::kSlack}})),
              K::Optional("secret_file", &WebhookExtra::secret_file, "", kReloadable,
                          FilePath(true)),
              K::Optional("secret_env", &WebhookExtra::secret_env, "", kReloadable, EnvVarName()),
              K::Strings("events", &Webhook::events, {"requested", "decided"}, kReloadable,
                         Text("an event name"), 8),
              K::Optional("timeout", &Webhook::timeout, 5s, kReloadable, Period(100ms)),
              K::Optional("max_attempts", &Webhook::max_attempts, 5, kReloadable,
                          Count<uint32_t>(1, 100)),
              K::Optional("ca_file", &Webhook::ca_file, "", kReloadable, FilePath(true)),
              K::Optional("queue_size", &Webhook::queue_size, 1000, kReloadable,
                          Count<uint32_t>(1, 100000)),
          },
      .check = CheckWebhook,
  };
  return *table;
}

std::string WebhookIdentity(const Webhook& hook) { return hook.name; }

// A rule with approve_if_risk_at_least: every connection it can apply to must say how to
// get a trace's risk. Names that match no connection are reported by CheckAccess.
void CheckRiskRule(const std::string& path, const PolicyRule& rule, const Config& config,
                   Context& ctx) {
  const std::string key = path + ".approve_if_risk_at_least";
  const YAML::Mark mark = ctx.MarkOf(key).is_null() ? ctx.MarkOf(path + ".name") : ctx.MarkOf(key);
  if (rule.require_approval) {
    ctx.Error(mark, key,
              "has no effect with require_approval: true (that asks for approval at any risk)");
  }
  const bool every =
      rule.connections.empty() ||
      std::find(rule.connections.begin(), rule.connections.end(), "*") != rule.connections.end();
  for (const Connection& c : config.connections) {
    const bool applies = every || std::find(rule.connections.begin(), rule.connections.end(),
                                            c.name) != rule.connections.end();
    if (applies && c.type == ConnectionType::kHttp) {
      ctx.Error(mark, key,
                absl::StrCat("connection ", Quote(c.name),
                             " is type: http, which has no risk_query, so the risk of its traces "
                             "cannot be known"));
    } else if (applies && c.risk_query.empty()) {
      ctx.Error(mark, key,
                absl::StrCat("connection ", Quote(c.name),
                             " has no risk_query, so the risk of its traces cannot be known"));
    }
  }
}

}  // namespace

const Table<Approvals>& ApprovalKeys() {
  using K = Keys<Approvals>;
  static const auto* const table = new Table<Approvals>{
      .keys =
          {
              K::Optional("timeout", &Approvals::timeout, 15min, kReloadable, Period(1s)),
              K::Strings("approver_groups", &Approvals::approver_groups, {}, kReloadable,
                         Selector(), 64),
              K::Strings("force_groups", &Approvals::force_groups, {}, kReloadable, Selector(), 64),
              K::Strings("issuers", &Approvals::issuers, {}, kReloadable, ConnectionName(), 64),
              K::Optional("hold_max_bytes", &Approvals::hold_max_bytes, 16u << 20, kReloadable,
                          ByteSize<uint64_t>(4096, 1ull << 32)),
              K::List("webhooks", kOptional, &Approvals::webhooks, WebhookKeys, 0, kMaxWebhooks,
                      WebhookIdentity),
              K::Optional("max_pending_per_requester", &Approvals::max_pending_per_requester, 10,
                          kReloadable, Count<uint32_t>(1, 10000)),
          },
  };
  return *table;
}

void CheckApprovalRules(const Item& root, const Config& config, Context& ctx) {
  for (size_t i = 0; i < config.connections.size(); ++i) {
    const std::string& sql = config.connections[i].risk_query;
    if (!sql.empty() && !UsesOnlyTheTraceId(sql)) {
      const std::string key = ElementPath("connections", i) + ".risk_query";
      ctx.Error(ctx.MarkOf(key), key,
                "must take the trace id as $1 and no other parameter (e.g. \"select risk from "
                "traces where id = $1\")");
    }
  }
  for (size_t i = 0; i < config.policy.rules.size(); ++i) {
    const PolicyRule& rule = config.policy.rules[i];
    const bool asks = rule.require_approval || rule.hold_if_masked_at_least > 0 ||
                      rule.approve_if_risk_at_least.has_value();
    if (!asks || rule.effect != Effect::kAllow) {
      continue;
    }
    const std::string path = ElementPath("policy.rules", i);
    if (rule.approvers.empty() && config.approvals.approver_groups.empty()) {
      ctx.Error(ctx.MarkOf(path + ".name"), path + ".approvers",
                "the rule asks for approval but names no approver group (set approvers, or "
                "approvals.approver_groups)");
    }
    if (rule.hold_if_masked_at_least > 0 && rule.masking_profile.empty()) {
      ctx.Error(ctx.MarkOf(path + ".hold_if_masked_at_least"), path + ".hold_if_masked_at_least",
                "needs a masking_profile (masking is what finds the values)");
    }
    if (rule.approve_if_risk_at_least.has_value()) {
      CheckRiskRule(path, rule, config, ctx);
    }
  }
  (void)root;
}

}  // namespace tracegate::config::internal
