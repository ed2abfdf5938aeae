#pragma once
// Approvals: a person in an approver group must say yes before a high-risk read goes ahead.
//
// Two things wait for approvers (store::ApprovalKind):
//   kGrant     a grant whose rule says `require_approval`: it is issued `pending` with its
//              credential, and cannot be redeemed until approved (its ttl starts then).
//              The request's id is the grant's id.
//   kResponse  a result a session's masking found personal data in (`hold_if_masked_at_least`):
//              the session buffers it and waits; approved → released (masked), otherwise
//              discarded with an error. Id "<grant id>.r<n>".
//
// Rules for votes (Decide):
//   - the requester never votes on its own request: not under the grant's issuer and
//     subject, nor under another identity identity.people lists for the same person;
//   - a voter's groups count only if its token comes from an issuer approvals.issuers names
//     (with one issuer configured and approvals.issuers empty, from that issuer);
//   - a voter must be in one of the request's approver groups, or in approvals.force_groups;
//   - one vote per approver (per person, when identity.people links identities); a deny
//     settles at once, so does a force-group member's vote;
//     otherwise `required` distinct approvals settle it as approved;
//   - a request not settled by its expires_at (approvals.timeout) expires (ExpireDue);
//   - whoever may not see a request (neither its requester nor allowed to decide it) is told
//     it does not exist, for a vote as for a GET.
// Floods: one requester has at most approvals.max_pending_per_requester requests pending
// (AdmitRequester before a grant is issued; the store's insert checks again atomically), and
// ListFor pages with a cursor, so no number of requests hides another from its approvers.
// A revoked grant's pending requests are cancelled (CancelForGrant).
// Every request, vote and settlement is written to the state store (atomically with the
// grant's transition) and to the audit log (kApproval records), and webhooks are told
// ("requested", "decided"). Whoever waits (a held psql session, a long-poll, a held result)
// is woken through WaitFor the moment the request settles in this process; no polling.
//
// Thread safety: every method may be called from any thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "audit/recorder.h"
#include "common/watch_registry.h"
#include "config/config.h"
#include "grants/grants.h"
#include "identity/principal.h"
#include "notify/webhooks.h"
#include "store/state_store.h"

namespace tracegate::approvals {

// Who must agree, as a rule asks for it.
struct ApprovalTerms {
  std::vector<std::string> approver_groups;  // the rule's, else approvals.approver_groups
  uint32_t required = 1;
  uint32_t hold_if_masked_at_least = 0;  // 0 = results are never held
};

// A request with its votes so far.
struct ApprovalView {
  store::ApprovalRequest request;
  std::vector<store::ApprovalDecision> decisions;
};

// What a caller asks ListFor for. Filters are exact matches; absent = any.
struct ListQuery {
  std::optional<store::ApprovalState> state = store::ApprovalState::kPending;
  std::optional<std::string> connection;
  std::optional<std::string> trace_id;
  // The requester as (issuer, subject); both or neither.
  std::optional<std::string> requester_issuer;
  std::optional<std::string> requester_subject;
  std::optional<store::ApprovalCursor> after;  // the previous page's `next`
  size_t limit = 100;
};

// One page of requests the caller may see, newest first. `next` is set when more may follow:
// the last request listed, or, when a page scanned kMaxScanned requests without filling up,
// the last one scanned (the page may then be short, even empty; follow `next` all the same).
struct ListPage {
  std::vector<store::ApprovalRequest> requests;
  std::optional<store::ApprovalCursor> next;
};

// How many stored requests one ListFor call reads at most, visible or not.
inline constexpr size_t kMaxScanned = 2000;

// The answer for a request that does not exist and for one the caller may not see: the same,
// so that neither a GET nor a vote tells them apart.
[[nodiscard]] absl::Status NoSuchApproval(std::string_view id);

// "<created_at µs>.<id>": the cursor as the API and the CLI pass it on. ParseCursor refuses
// anything else (InvalidArgument).
[[nodiscard]] std::string FormatCursor(const store::ApprovalCursor& cursor);
[[nodiscard]] absl::StatusOr<store::ApprovalCursor> ParseCursor(std::string_view text);

class ApprovalService {
 public:
  // `recorder` and `webhooks` may be null (recording disabled, no webhook configured).
  // Everything passed in must outlive the service.
  ApprovalService(std::shared_ptr<const config::Config> config, store::StateStore& store,
                  grants::GrantService& grants, audit::Recorder* recorder,
                  notify::Webhooks* webhooks, grants::Clock clock);
  ~ApprovalService();

  [[nodiscard]] const config::Approvals& settings() const { return config_->approvals; }

  // The terms the rule named `rule` asks for (empty approver groups: no such rule).
  [[nodiscard]] ApprovalTerms TermsFor(std::string_view rule) const;

  // A pending grant was just issued: opens its request (same id), records it, notifies.
  [[nodiscard]] absl::StatusOr<store::ApprovalRequest> OpenForGrant(const store::GrantRecord& grant,
                                                                    std::string_view requester,
                                                                    std::string_view detail);

  // A session holds a result of `grant`: opens request "<grant>.r<n>", n counting the
  // grant's held results from 1 (across its sessions: a multi-use grant has one at a time).
  // `detail` says why ("the result holds 12 values masking found (the rule holds at 5)").
  [[nodiscard]] absl::StatusOr<store::ApprovalRequest> OpenForResponse(
      const store::GrantRecord& grant, std::string_view session_id, std::string_view detail);

  [[nodiscard]] absl::StatusOr<ApprovalView> Get(std::string_view id);

  // The grant's request still waiting (its own while pending, else a held result's);
  // NotFound when nothing of the grant waits.
  [[nodiscard]] absl::StatusOr<ApprovalView> PendingForGrant(std::string_view grant_id);

  // One vote. NotFound (NoSuchApproval) when the request does not exist or the voter may not
  // see it (neither its requester nor allowed to decide it: exactly when a GET says 404),
  // PermissionDenied (the requester itself, under any identity of that person), AlreadyExists
  // (voted already), FailedPrecondition (settled, expired or cancelled), Unavailable.
  [[nodiscard]] absl::StatusOr<ApprovalView> Decide(std::string_view id,
                                                    const identity::Principal& approver,
                                                    bool approve, std::string_view comment);

  // Whether `principal` may vote on `request` (not the requester; in a group that counts).
  [[nodiscard]] bool MayDecide(const identity::Principal& principal,
                               const store::ApprovalRequest& request) const;

  // Whether `principal` may see `request`: it requested it (this identity) or may decide it.
  [[nodiscard]] bool MaySee(const identity::Principal& principal,
                            const store::ApprovalRequest& request) const;

  // Requests `principal` may vote on, or has requested, that match `query`; newest first, one
  // page at a time (see ListPage). However many requests others open, following `next` reaches
  // every one the caller may see.
  [[nodiscard]] absl::StatusOr<ListPage> ListFor(const identity::Principal& principal,
                                                 const ListQuery& query);

  // OK while `principal` has fewer pending requests than approvals.max_pending_per_requester;
  // ResourceExhausted otherwise. Asked before a grant that needs approval is issued, so that a
  // refused request leaves nothing behind. (OpenForGrant and OpenForResponse check again,
  // atomically with the insert.)
  [[nodiscard]] absl::Status AdmitRequester(const identity::Principal& principal);

  // Sweeper: pending requests past their expiry → expired; waiters and webhooks are told.
  [[nodiscard]] absl::StatusOr<size_t> ExpireDue();

  // A held session ended before its result was decided: pending → cancelled.
  void Cancel(std::string_view id, std::string_view why);

  // The grant was revoked: every request of it still pending (its own, a held result's) →
  // cancelled, recorded with `actor`, waiters woken, webhooks told ("decided", state
  // cancelled). Returns how many it closed.
  [[nodiscard]] absl::StatusOr<size_t> CancelForGrant(std::string_view grant_id,
                                                      std::string_view actor, std::string_view why);

  // `on_settled` runs once, on the thread that settled the request (a vote, the expiry
  // sweep, a cancel), with the request after. It must only post work elsewhere. Destroying
  // the handle unregisters it (see common/watch_registry.h).
  using Watch = WatchHandle<store::ApprovalRequest>;
  [[nodiscard]] std::unique_ptr<Watch> WaitFor(
      std::string_view id, std::function<void(store::ApprovalRequest)> on_settled);

 private:
  // The same person as the request's requester (config::SamePerson).
  bool IsRequester(const identity::Principal& principal,
                   const store::ApprovalRequest& request) const;
  // Whether the principal's groups count for approval roles (approvals.issuers).
  bool RolesCount(const identity::Principal& principal) const;
  void Settled(const store::ApprovalRequest& request,
               const std::vector<store::ApprovalDecision>& decisions);
  void Record(const store::ApprovalRequest& request, std::string_view event, std::string_view actor,
              std::string_view comment);
  void Publish(const store::ApprovalRequest& request, std::string_view type,
               const std::vector<store::ApprovalDecision>& decisions);

  std::shared_ptr<const config::Config> config_;
  store::StateStore& store_;
  grants::GrantService& grants_;
  audit::Recorder* recorder_;
  notify::Webhooks* webhooks_;
  grants::Clock clock_;
  std::shared_ptr<WatchRegistry<store::ApprovalRequest>> waiters_;
};

// The JSON the API, the CLI, webhooks and the audit log show for a request and its votes:
// {"id","kind","state","grant_id","session_id","connection","trace_id","requester","reason",
//  "detail","approvers","force_groups","required","approvals","created_at","expires_at",
//  "decided_at","decisions":[{"approver","decision","comment","forced","at"}]}
[[nodiscard]] nlohmann::json ViewJson(const ApprovalView& view);

}  // namespace tracegate::approvals
