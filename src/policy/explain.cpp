// PolicyEngine::Explain: the text behind `tracegate policy explain`.

#include <string>

#include "common/strings.h"
#include "policy/policy.h"
#include "policy/rule_match.h"

namespace tracegate::policy {
namespace {

using internal::DurationText;
using internal::ListText;
using internal::Printable;

std::string OrNone(std::string_view text) {
  return text.empty() ? std::string("(none)") : Printable(text);
}

std::string LimitText(uint64_t limit) { return limit == 0 ? std::string("unlimited") : Cat(limit); }

std::string TermsText(const Terms& terms) {
  return Cat("ttl ", DurationText(terms.ttl), ", uses ", terms.uses, ", max_session ",
             DurationText(terms.max_session), ", max_rows ", LimitText(terms.max_rows),
             ", max_bytes ", LimitText(terms.max_bytes), ", masking ",
             OrNone(terms.masking_profile));
}

}  // namespace

std::string PolicyEngine::Explain(const Request& request) const {
  const identity::Principal& principal = request.principal;
  const internal::Evaluation evaluation = internal::Evaluate(*policy_, request);
  const Decision& decision = evaluation.decision;

  std::string out;
  out += "principal\n";
  out += Cat("  subject:    ", OrNone(principal.subject), "\n");
  out += Cat("  client:     ", OrNone(principal.client_id), "\n");
  out +=
      Cat("  groups:     ", principal.groups.empty() ? "(none)" : ListText(principal.groups), "\n");
  out += Cat("  issuer:     ", OrNone(principal.issuer_name), " (", OrNone(principal.issuer), ")",
             principal.development ? " [development issuer]" : "", "\n");
  out += "request\n";
  out += Cat("  connection: ", OrNone(request.connection), "\n");
  out += Cat("  trace:      ", OrNone(request.trace_id), "\n");
  out += Cat("  reason:     ",
             request.reason.empty() ? "(none)" : Cat("\"", Printable(request.reason), "\""), "\n");

  out += Cat("rules (a matching deny rule wins; otherwise the first matching allow rule; max_ttl ",
             DurationText(policy_->max_ttl), ")\n");
  if (policy_->rules.empty()) {
    out += "  (no rules)\n";
  }
  for (size_t i = 0; i < policy_->rules.size(); ++i) {
    const config::PolicyRule& rule = policy_->rules[i];
    const internal::RuleMatch& match = evaluation.matches[i];
    out += Cat("  ", i + 1, ". ", Printable(rule.name), " (",
               rule.effect == config::Effect::kDeny ? "deny" : "allow",
               "): ", match.matched ? "matched: " : "not matched: ", match.detail);
    if (evaluation.deciding_rule == i) {
      out += "  <- decides";
    }
    out += "\n";
  }

  out += Cat("decision: ", OutcomeName(decision.outcome));
  out += decision.rule.empty() ? std::string(" (no deciding rule)")
                               : Cat(" by rule ", Printable(decision.rule));
  out += Cat("\n  because: ", decision.reason, "\n");
  if (decision.outcome != Decision::Outcome::kDeny) {
    out += Cat("  terms:   ", TermsText(decision.terms), "\n");
  }
  return out;
}

}  // namespace tracegate::policy
