#include "policy/policy.h"

#include <algorithm>
#include <utility>

#include "common/strings.h"
#include "policy/rule_match.h"

namespace tracegate::policy {
namespace internal {
namespace {

Terms TermsOf(const config::PolicyRule& rule, const config::Policy& policy) {
  return {.ttl = std::min(rule.ttl, policy.max_ttl),
          .uses = rule.uses,
          .max_session = rule.max_session,
          .max_rows = rule.max_rows,
          .max_bytes = rule.max_bytes,
          .masking_profile = rule.masking_profile,
          .approve_if_risk_at_least = rule.approve_if_risk_at_least};
}

Decision Deny(std::string rule, std::string reason) {
  return {
      .outcome = Decision::Outcome::kDeny, .rule = std::move(rule), .reason = std::move(reason)};
}

std::string NoRuleAllows(const Request& request) {
  const identity::Principal& principal = request.principal;
  std::string who = Cat("subject ", Printable(principal.subject), " (");
  if (!principal.client_id.empty()) {
    who += Cat("client ", Printable(principal.client_id), ", ");
  }
  who += principal.groups.empty() ? std::string("no groups")
                                  : Cat("groups ", ListText(principal.groups));
  return Cat("no rule allows ", who, ") on connection ", Printable(request.connection));
}

}  // namespace

Evaluation Evaluate(const config::Policy& policy, const Request& request) {
  Evaluation out;
  out.matches.reserve(policy.rules.size());
  for (const config::PolicyRule& rule : policy.rules) {
    out.matches.push_back(MatchRule(rule, request));
  }

  if (std::string problem = TraceIdProblem(request.trace_id); !problem.empty()) {
    out.decision = Deny("", std::move(problem));
    return out;
  }

  const config::PolicyRule* allow = nullptr;
  size_t allow_index = 0;
  for (size_t i = 0; i < policy.rules.size(); ++i) {
    const config::PolicyRule& rule = policy.rules[i];
    if (!out.matches[i].matched) {
      continue;
    }
    if (rule.effect == config::Effect::kDeny) {
      out.deciding_rule = i;
      out.decision = Deny(rule.name, Cat("denied by rule ", Printable(rule.name), " (",
                                         out.matches[i].detail, ")"));
      return out;
    }
    if (allow == nullptr) {
      allow = &rule;
      allow_index = i;
    }
  }

  if (allow == nullptr) {
    out.decision = Deny("", NoRuleAllows(request));
    return out;
  }
  out.deciding_rule = allow_index;
  const std::string name = Printable(allow->name);
  if (allow->require_reason && IsBlank(request.reason)) {
    out.decision = Deny(allow->name, Cat("rule ", name, " requires a reason"));
    return out;
  }
  const std::string& why = out.matches[allow_index].detail;
  if (allow->require_approval) {
    out.decision = {.outcome = Decision::Outcome::kApprovalRequired,
                    .rule = allow->name,
                    .reason = Cat("rule ", name, " requires approval (", why, ")"),
                    .terms = TermsOf(*allow, policy)};
    return out;
  }
  out.decision = {.outcome = Decision::Outcome::kAllow,
                  .rule = allow->name,
                  .reason = Cat("allowed by rule ", name, " (", why, ")"),
                  .terms = TermsOf(*allow, policy)};
  return out;
}

}  // namespace internal

std::string_view OutcomeName(Decision::Outcome outcome) {
  switch (outcome) {
    case Decision::Outcome::kAllow:
      return "allow";
    case Decision::Outcome::kDeny:
      return "deny";
    case Decision::Outcome::kApprovalRequired:
      return "approval required";
  }
  return "deny";
}

PolicyEngine::PolicyEngine(std::shared_ptr<const config::Config> config)
    : policy_(config != nullptr ? std::shared_ptr<const config::Policy>(config, &config->policy)
                                : std::make_shared<const config::Policy>()) {}

PolicyEngine::PolicyEngine(const config::Policy& policy)
    : policy_(std::make_shared<const config::Policy>(policy)) {}

Decision PolicyEngine::Evaluate(const Request& request) const {
  return internal::Evaluate(*policy_, request).decision;
}

}  // namespace tracegate::policy
