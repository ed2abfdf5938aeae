#pragma once
// Private to the policy module: matching one rule, and the text helpers Evaluate and Explain
// share.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "policy/policy.h"

namespace tracegate::policy::internal {

struct RuleMatch {
  bool matched = false;
  // Matched: what made it match, "group contractors, connection traces-pg", or
  // "every request" when the rule has no selectors.
  // Not matched: every selector that failed, "; "-separated.
  std::string detail;
};

RuleMatch MatchRule(const config::PolicyRule& rule, const Request& request);

// Every rule's match (in file order) and the decision they lead to.
struct Evaluation {
  std::vector<RuleMatch> matches;
  Decision decision;
  std::optional<size_t> deciding_rule;  // index into policy.rules
};
Evaluation Evaluate(const config::Policy& policy, const Request& request);

// Empty when the trace id is acceptable, else why not.
std::string TraceIdProblem(std::string_view trace_id);
// True when `text` is empty or only ASCII whitespace.
bool IsBlank(std::string_view text);

// `text` with control characters (C0, DEL) written as \xNN.
std::string Printable(std::string_view text);
// "[a, b]" with each item Printable; "[]" when empty.
std::string ListText(const std::vector<std::string>& items);
// "250ms", "30s", "5m", "2h", or the largest unit that divides exactly.
std::string DurationText(std::chrono::milliseconds duration);

}  // namespace tracegate::policy::internal
