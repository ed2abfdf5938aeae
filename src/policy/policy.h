#pragma once
// Policy evaluation: (principal, connection, trace, reason) → Decision. Pure: no I/O, no
// clock, no logging; the caller records and enforces the decision.
//
// Rules (config::PolicyRule) are evaluated like this:
//   1. The trace id must be 1..256 bytes with no control characters (C0 or DEL); otherwise
//      deny with an empty `rule`. Checking that the trace exists is not policy's job.
//   2. A rule matches when every non-empty selector matches. Each selector is "any of" its
//      entries, compared as exact strings: issuers against the name of the issuer that
//      vouched for the token (so subjects, groups and clients count only from those
//      issuers), subjects against `sub`, clients against `client_id`, groups against any of
//      the principal's groups, connections against the connection name. "*" matches
//      anything, also an empty client id or no groups at all. An empty selector matches
//      everything; an empty value (no client id) only matches "*". The loader refuses an
//      allow rule without issuers once more than one issuer is configured.
//   3. Deny wins: if any matching rule denies, the first such rule (file order) decides,
//      whatever allow rules precede it.
//   4. Otherwise the first matching allow rule decides. With `require_reason` and a blank
//      reason it denies; with `require_approval` the outcome is kApprovalRequired. With
//      `approve_if_risk_at_least` the outcome stays kAllow and Terms carries the threshold:
//      the trace's risk needs a query, which is the caller's job.
//   5. No matching rule: deny, `rule` empty.
//
// Terms (only on kAllow / kApprovalRequired): ttl is min(rule ttl, policy max_ttl). The other
// terms are the rule's as written. In particular max_session is not capped by ttl: ttl bounds
// when the credential may be redeemed, and a live session is cut anyway when its grant
// expires or is revoked (DESIGN.md invariant 3), so enforcement stays in one place.
//
// Strings from the token (subject, groups, client) are shown with control characters
// escaped (\xNN) in `Decision::reason` and in Explain, so they cannot forge log lines.
//
// Thread safety: a PolicyEngine is immutable; Evaluate and Explain may run concurrently.
// A config reload builds a new engine.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"
#include "identity/principal.h"

namespace tracegate::policy {

inline constexpr size_t kMaxTraceIdLength = 256;

struct Request {
  const identity::Principal& principal;
  std::string_view connection;
  std::string_view trace_id;
  std::string_view reason;  // the caller's justification; may be empty
};

// What an allowing rule grants (mirrors grants::GrantTerms).
struct Terms {
  std::chrono::milliseconds ttl{0};  // capped at the policy's max_ttl
  uint32_t uses = 0;
  std::chrono::milliseconds max_session{0};
  uint64_t max_rows = 0;        // 0 = unlimited
  uint64_t max_bytes = 0;       // 0 = unlimited
  std::string masking_profile;  // empty = no masking
  // Set: the caller must look up the trace's risk (approvals/risk.h) and treat a kAllow as
  // kApprovalRequired when the risk is at least this, refusing when it cannot be known.
  // Policy itself never reads it (no I/O here).
  std::optional<double> approve_if_risk_at_least;

  bool operator==(const Terms&) const = default;
};

struct Decision {
  enum class Outcome { kAllow, kDeny, kApprovalRequired };

  Outcome outcome = Outcome::kDeny;
  std::string rule;    // the rule that decided; empty for the default deny and a bad trace id
  std::string reason;  // for humans: "denied by rule block-contractors (group contractors)"
  Terms terms;         // set when outcome is kAllow or kApprovalRequired

  bool allowed() const { return outcome == Outcome::kAllow; }
};

std::string_view OutcomeName(Decision::Outcome outcome);  // "allow", "deny", "approval required"

class PolicyEngine {
 public:
  // Keeps the config alive and evaluates its `policy`. A null config denies everything.
  explicit PolicyEngine(std::shared_ptr<const config::Config> config);
  // Copies `policy` (tests, `tracegate policy explain` on a file).
  explicit PolicyEngine(const config::Policy& policy);

  [[nodiscard]] Decision Evaluate(const Request& request) const;

  // Multi-line text for `tracegate policy explain`: the principal, the connection and trace,
  // every rule with "matched" or the selector that failed, and the decision with its terms.
  [[nodiscard]] std::string Explain(const Request& request) const;

 private:
  std::shared_ptr<const config::Policy> policy_;  // never null
};

}  // namespace tracegate::policy
