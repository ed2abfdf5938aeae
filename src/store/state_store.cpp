#include "store/state_store.h"

#include <algorithm>
#include <array>
#include <string>
#include <utility>

#include "absl/strings/cord.h"
#include "common/strings.h"

namespace tracegate::store {
namespace {

constexpr std::array<std::pair<GrantState, std::string_view>, 8> kNames = {{
    {GrantState::kPending, "pending"},
    {GrantState::kApproved, "approved"},
    {GrantState::kDenied, "denied"},
    {GrantState::kActive, "active"},
    {GrantState::kInUse, "in_use"},
    {GrantState::kCompleted, "completed"},
    {GrantState::kRevoked, "revoked"},
    {GrantState::kExpired, "expired"},
}};

constexpr std::array<std::pair<ApprovalKind, std::string_view>, 2> kApprovalKinds = {{
    {ApprovalKind::kGrant, "grant"},
    {ApprovalKind::kResponse, "response"},
}};

constexpr std::array<std::pair<ApprovalState, std::string_view>, 5> kApprovalStates = {{
    {ApprovalState::kPending, "pending"},
    {ApprovalState::kApproved, "approved"},
    {ApprovalState::kDenied, "denied"},
    {ApprovalState::kExpired, "expired"},
    {ApprovalState::kCancelled, "cancelled"},
}};

// Where a refused transition keeps the grant's state (absl::Status payload type URL).
constexpr char kRefusedStateUrl[] = "tracegate/store.RefusedState";

constexpr std::array<std::string_view, 3> kSessionKinds = {"postgres", "http", "fetch"};
// The outcomes of an ended session ("" is the open session's).
constexpr std::array<std::string_view, 5> kSessionOutcomes = {"completed", "refused", "violation",
                                                              "error", "interrupted"};

}  // namespace

std::string_view GrantStateName(GrantState state) {
  for (const auto& [s, name] : kNames) {
    if (s == state) {
      return name;
    }
  }
  return "unknown";
}

std::optional<GrantState> ParseGrantState(std::string_view name) {
  for (const auto& [s, n] : kNames) {
    if (n == name) {
      return s;
    }
  }
  return std::nullopt;
}

bool IsFinal(GrantState state) {
  switch (state) {
    case GrantState::kDenied:
    case GrantState::kCompleted:
    case GrantState::kRevoked:
    case GrantState::kExpired:
      return true;
    case GrantState::kPending:
    case GrantState::kApproved:
    case GrantState::kActive:
    case GrantState::kInUse:
      return false;
  }
  return true;
}

std::string_view ApprovalKindName(ApprovalKind kind) {
  for (const auto& [k, name] : kApprovalKinds) {
    if (k == kind) {
      return name;
    }
  }
  return "unknown";
}

std::string_view ApprovalStateName(ApprovalState state) {
  for (const auto& [s, name] : kApprovalStates) {
    if (s == state) {
      return name;
    }
  }
  return "unknown";
}

std::optional<ApprovalKind> ParseApprovalKind(std::string_view name) {
  for (const auto& [k, n] : kApprovalKinds) {
    if (n == name) {
      return k;
    }
  }
  return std::nullopt;
}

std::optional<ApprovalState> ParseApprovalState(std::string_view name) {
  for (const auto& [s, n] : kApprovalStates) {
    if (n == name) {
      return s;
    }
  }
  return std::nullopt;
}

absl::Status TooManyPending(const ApprovalRequest& request, size_t max_pending) {
  return absl::ResourceExhaustedError(
      Cat(request.requester.empty() ? std::string("the requester") : request.requester, " has ",
          max_pending,
          " pending approval request(s), the most one requester may have "
          "(approvals.max_pending_per_requester); wait for one to be decided, or withdraw one"));
}

absl::Status StateStore::CreateApprovalWithin(const ApprovalRequest& request, size_t max_pending) {
  absl::StatusOr<std::vector<ApprovalRequest>> pending =
      ListApprovals({.state = ApprovalState::kPending,
                     .requester_issuer = request.requester_issuer,
                     .requester_subject = request.requester_subject,
                     .limit = max_pending});
  if (!pending.ok()) {
    return pending.status();
  }
  if (pending->size() >= max_pending) {
    return TooManyPending(request, max_pending);
  }
  return CreateApproval(request);
}

absl::Status TransitionRefused(std::string_view grant_id, GrantState current) {
  absl::Status status = absl::FailedPreconditionError(
      Cat("grant ", grant_id, " is ", GrantStateName(current), ": transition refused"));
  std::string_view name = GrantStateName(current);
  status.SetPayload(kRefusedStateUrl, absl::Cord(absl::string_view(name.data(), name.size())));
  return status;
}

std::optional<GrantState> RefusedState(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kFailedPrecondition) {
    return std::nullopt;
  }
  auto payload = status.GetPayload(kRefusedStateUrl);
  if (!payload.has_value()) {
    return std::nullopt;
  }
  return ParseGrantState(std::string(*payload));
}

absl::Status ValidateSessionSummary(const SessionSummary& session) {
  auto refuse = [&](std::string_view why) {
    return absl::InvalidArgumentError(Cat("state store: session ", session.id, ": ", why));
  };
  if (session.id.empty()) {
    return refuse("no id");
  }
  if (std::ranges::find(kSessionKinds, session.kind) == kSessionKinds.end()) {
    return refuse(Cat("unknown kind '", session.kind, "'"));
  }
  if (!session.ended_at.has_value()) {
    if (!session.outcome.empty()) {
      return refuse(Cat("outcome '", session.outcome, "' but no end time"));
    }
    return absl::OkStatus();
  }
  if (std::ranges::find(kSessionOutcomes, session.outcome) == kSessionOutcomes.end()) {
    return refuse(Cat("ended with unknown outcome '", session.outcome, "'"));
  }
  return absl::OkStatus();
}

}  // namespace tracegate::store
