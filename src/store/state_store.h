#pragma once
// The state store: where grants and their audit trail of transitions live, and the audit
// log's index of recorded sessions and its newest checkpoint.
//
// `StateStore` is the interface; `SqliteStore` (sqlite_store.h) is the embedded default and
// a PostgreSQL store shared by several gateway replicas comes later. So that both can honour
// it, every state change is a *conditional transition*: "move grant G to state T if it is
// in one of the states F (and has not expired, and has a use left)", applied atomically
// with its event. Of N racing transitions on one grant, exactly those the conditions allow
// win, whichever process or replica runs them (DESIGN.md invariant 3).
//
// Errors, for every implementation:
//   NotFound            no grant with that id
//   FailedPrecondition  a conditional transition was refused; RefusedState() reads the
//                       grant's state at the time of the refusal from the status
//   AlreadyExists       CreateGrant with an id that is taken
//   InvalidArgument     a record the store refuses to keep (a bad creation event, a session
//                       summary ValidateSessionSummary refuses)
//   Unavailable         the database itself failed (I/O, locked too long, corrupt,
//                       unreachable): callers fail closed
//
// Times are kept to the microsecond (as PostgreSQL's timestamptz): sub-microsecond parts of
// time points are dropped on the way in. Thread safety: every method may be called from any
// thread.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tracegate::store {

using TimePoint = std::chrono::system_clock::time_point;

// DESIGN.md "Vocabulary": pending → approved | denied | expired;
// active → in_use → completed | revoked | expired; in_use → active (uses left).
enum class GrantState {
  kPending,
  kApproved,
  kDenied,
  kActive,
  kInUse,
  kCompleted,
  kRevoked,
  kExpired
};

// "pending", "approved", "denied", "active", "in_use", "completed", "revoked", "expired".
[[nodiscard]] std::string_view GrantStateName(GrantState state);
// The inverse of GrantStateName (exact, lower case); nullopt for anything else.
[[nodiscard]] std::optional<GrantState> ParseGrantState(std::string_view name);
// denied, completed, revoked, expired: no transition leaves these.
[[nodiscard]] bool IsFinal(GrantState state);

struct GrantRecord {
  std::string id;
  GrantState state = GrantState::kPending;
  std::string connection;
  std::string trace_id;
  // The principal the grant was issued to.
  std::string issuer;
  std::string subject;
  std::string client_id;
  std::vector<std::string> groups;
  std::string reason;          // why the caller asked
  std::string rule;            // the policy rule that allowed it
  std::string client_address;  // where the request came from
  std::string masking_profile;
  TimePoint created_at;
  TimePoint expires_at;
  uint32_t uses_allowed = 1;
  uint32_t uses_left = 1;
  std::chrono::milliseconds max_session{0};
  uint64_t max_rows = 0;       // 0 = no cap
  uint64_t max_bytes = 0;      // 0 = no cap
  std::string scram_verifier;  // text form, as pg_authid.rolpassword
  std::string bearer_hash;     // raw SHA-256 of the secret (32 bytes)

  bool operator==(const GrantRecord&) const = default;
};

// One transition, as the audit trail keeps it.
struct GrantEvent {
  std::string grant_id;
  std::optional<GrantState> from;  // nullopt for the creation event
  GrantState to = GrantState::kPending;
  TimePoint at;
  std::string actor;   // who caused it: a principal's Describe(), "tracegate", an approver
  std::string detail;  // free text: the session outcome, the connection, ...

  bool operator==(const GrantEvent&) const = default;
};

// "Move the grant to `to` if ...". All conditions hold together, atomically with the write.
struct TransitionRequest {
  std::string grant_id;
  std::vector<GrantState> from;  // the grant must be in one of these states
  GrantState to = GrantState::kPending;
  // When set, the grant must also satisfy expires_at > unexpired_at.
  std::optional<TimePoint> unexpired_at;
  // When true, the grant must also have uses_left > 0, and uses_left is decremented.
  bool take_use = false;
  // Recorded with the transition (grant_id, from and to are filled in by the store).
  TimePoint at;
  std::string actor;
  std::string detail;
};

// A grant ExpireDue moved to expired, and the state it left.
struct ExpiredGrant {
  std::string grant_id;
  GrantState previous = GrantState::kActive;

  bool operator==(const ExpiredGrant&) const = default;
};

// One recorded session, as the audit index keeps it (the log itself is the evidence; this
// is how it is found). Written by the recorder at session start and end.
struct SessionSummary {
  std::string id;
  std::string kind = "postgres";  // "postgres" | "http" | "fetch" (one-call fetch)
  std::string connection;
  std::string trace_id;  // empty: a static user's session (no grant)
  std::string grant_id;
  std::string issuer;  // the principal (empty for static users)
  std::string subject;
  std::string client_id;
  std::string user;  // the login name
  std::string client_address;
  TimePoint started_at;
  std::optional<TimePoint> ended_at;  // nullopt while open
  // "" while open; "completed" | "refused" | "violation" | "error" | "interrupted"
  std::string outcome;
  std::string reason;  // why it ended, human text
  uint64_t statements = 0;
  uint64_t blocked = 0;
  uint64_t rows = 0;
  uint64_t bytes_to_client = 0;
  uint64_t first_seq = 0;  // its first audit log record
  uint64_t last_seq = 0;   // its last audit log record so far

  bool operator==(const SessionSummary&) const = default;
};

// Which sessions ListSessions returns. Unset fields match everything.
struct SessionQuery {
  // Exact match; outcome "open" matches the sessions that have not ended.
  std::optional<std::string> trace_id, subject, connection, outcome;
  std::optional<TimePoint> since;  // started_at >= since
  std::optional<TimePoint> until;  // started_at < until
  size_t limit = 100;              // newest first
};

// ---- approvals (src/approvals) -------------------------------------------------------------

// What waits for approvers: a pending grant, or a session's result held because masking
// found personal data in it.
enum class ApprovalKind { kGrant, kResponse };
// pending → approved | denied | expired | cancelled (the held session ended first).
enum class ApprovalState { kPending, kApproved, kDenied, kExpired, kCancelled };

// "grant", "response" / "pending", "approved", "denied", "expired", "cancelled".
[[nodiscard]] std::string_view ApprovalKindName(ApprovalKind kind);
[[nodiscard]] std::string_view ApprovalStateName(ApprovalState state);
[[nodiscard]] std::optional<ApprovalKind> ParseApprovalKind(std::string_view name);
[[nodiscard]] std::optional<ApprovalState> ParseApprovalState(std::string_view name);

struct ApprovalRequest {
  // For kind kGrant the grant's own id (one approval per grant); for kResponse
  // "<grant id>.r<n>" (n from 1, one per held result).
  std::string id;
  ApprovalKind kind = ApprovalKind::kGrant;
  ApprovalState state = ApprovalState::kPending;
  std::string grant_id;
  std::string session_id;  // kResponse: the held session; empty for kGrant
  std::string connection;
  std::string trace_id;
  // The requester (the grant's principal): never one of its approvers.
  std::string requester_issuer;
  std::string requester_subject;
  std::string requester;  // Principal::Describe() (grants); "<subject> (<issuer>)" (results)
  std::string reason;     // the requester's reason for the grant
  std::string detail;     // why approval is needed ("rule r requires approval", "result ...")
  std::vector<std::string> approver_groups;
  std::vector<std::string> force_groups;
  uint32_t required = 1;  // distinct approvals needed
  TimePoint created_at;
  TimePoint expires_at;
  std::optional<TimePoint> decided_at;  // set when it left pending

  bool operator==(const ApprovalRequest&) const = default;
};

struct ApprovalDecision {
  std::string request_id;
  bool approve = false;
  std::string issuer;  // the approver
  std::string subject;
  std::string approver;  // Principal::Describe()
  std::string comment;
  bool forced = false;  // made by a force group member: settles the request alone
  TimePoint at;

  bool operator==(const ApprovalDecision&) const = default;
};

// One approver's vote, applied by StateStore::Decide.
struct DecideRequest {
  ApprovalDecision decision;
  // kGrant, on approval: the grant leaves `pending` for `approved` with
  // expires_at = decision.at + grant_ttl (the credential's life starts at consent).
  std::chrono::milliseconds grant_ttl{0};
};

struct DecideResult {
  ApprovalRequest request;                  // after the vote
  std::vector<ApprovalDecision> decisions;  // every vote so far, oldest first
  std::optional<GrantRecord> grant;         // kGrant when the vote settled it: the grant after
};

// A position in the approvals' order (created_at, then id, newest first): a page starts
// after the last request of the one before it.
struct ApprovalCursor {
  TimePoint created_at;
  std::string id;
  bool operator==(const ApprovalCursor&) const = default;
};

struct ApprovalQuery {
  std::optional<ApprovalState> state;
  std::optional<std::string> grant_id;
  // The requester's (issuer, subject); both or neither.
  std::optional<std::string> requester_issuer;
  std::optional<std::string> requester_subject;
  std::optional<std::string> connection;
  std::optional<std::string> trace_id;
  std::optional<ApprovalCursor> after;  // only requests older than this position
  size_t limit = 100;                   // newest created first (ties: greater id first)
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // Inserts the grant and its creation event (event.from must be nullopt, event.to must be
  // record.state) in one transaction. Durable when this returns.
  [[nodiscard]] virtual absl::Status CreateGrant(const GrantRecord& record,
                                                 const GrantEvent& event) = 0;

  [[nodiscard]] virtual absl::StatusOr<GrantRecord> GetGrant(std::string_view grant_id) = 0;

  // Applies the transition if its conditions hold and returns the updated record; the
  // event is written in the same transaction. Otherwise FailedPrecondition (RefusedState
  // gives the grant's state then) or NotFound, and nothing changes.
  [[nodiscard]] virtual absl::StatusOr<GrantRecord> Transition(
      const TransitionRequest& request) = 0;

  // Moves every grant that is not final and whose expires_at <= now to expired, each with
  // an event (actor "tracegate"), in one transaction. Returns what it moved.
  [[nodiscard]] virtual absl::StatusOr<std::vector<ExpiredGrant>> ExpireDue(TimePoint now) = 0;

  // The grant's events, oldest first. NotFound if there is no such grant.
  [[nodiscard]] virtual absl::StatusOr<std::vector<GrantEvent>> ListEvents(
      std::string_view grant_id) = 0;

  // Inserts or replaces the session's summary (by id), in one short transaction: the
  // recorder calls it at every session start and end. Durable when it returns.
  // InvalidArgument for a summary ValidateSessionSummary refuses.
  [[nodiscard]] virtual absl::Status PutSession(const SessionSummary& session) = 0;
  // NotFound if there is no such session.
  [[nodiscard]] virtual absl::StatusOr<SessionSummary> GetSession(std::string_view id) = 0;
  // Matching sessions, newest started first (ties: greater id first), at most query.limit.
  [[nodiscard]] virtual absl::StatusOr<std::vector<SessionSummary>> ListSessions(
      const SessionQuery& query) = 0;

  // The audit log's newest signed checkpoint, as the recorder hands it over (opaque text,
  // JSON); verify compares the log with it to detect a cut tail. Replaces the previous one.
  [[nodiscard]] virtual absl::Status PutAuditHead(std::string_view checkpoint) = 0;
  // nullopt before the first PutAuditHead.
  [[nodiscard]] virtual absl::StatusOr<std::optional<std::string>> GetAuditHead() = 0;

  // ---- approvals ----
  // Inserts a pending request. AlreadyExists for a taken id; for kGrant the grant must exist
  // (NotFound) and be pending (FailedPrecondition).
  [[nodiscard]] virtual absl::Status CreateApproval(const ApprovalRequest& request) = 0;
  // CreateApproval, unless the requester (requester_issuer, requester_subject) already has
  // `max_pending` pending requests: then ResourceExhausted and nothing is stored. The default
  // counts, then creates (two steps); a store that can do both in one transaction overrides it.
  [[nodiscard]] virtual absl::Status CreateApprovalWithin(const ApprovalRequest& request,
                                                          size_t max_pending);
  [[nodiscard]] virtual absl::StatusOr<ApprovalRequest> GetApproval(std::string_view id) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<ApprovalRequest>> ListApprovals(
      const ApprovalQuery& query) = 0;
  // The request's votes, oldest first. NotFound if there is no such request.
  [[nodiscard]] virtual absl::StatusOr<std::vector<ApprovalDecision>> ListDecisions(
      std::string_view request_id) = 0;
  // Applies one vote atomically: the request must be pending and unexpired at decision.at
  // (FailedPrecondition "approval <id> is <state>" / "... has expired"), and this approver
  // (issuer, subject) must not have voted on it yet (AlreadyExists). The vote is stored; a
  // deny, a forced vote, or the `required`-th approval settles the request (decided_at set),
  // and for kGrant moves the grant in the same transaction: pending → approved (expires_at
  // renewed, see DecideRequest) or pending → denied, with a grant event whose actor is the
  // approver and whose detail carries the comment. Who may vote is the caller's check.
  [[nodiscard]] virtual absl::StatusOr<DecideResult> Decide(const DecideRequest& request) = 0;
  // pending → `to` (expired or cancelled) if still pending: returns the request after, or
  // FailedPrecondition when it was already settled (nothing changes).
  [[nodiscard]] virtual absl::StatusOr<ApprovalRequest> CloseApproval(std::string_view id,
                                                                      ApprovalState to,
                                                                      TimePoint at) = 0;
  // Moves every pending request whose expires_at <= now to expired (decided_at = now), in one
  // transaction, and returns them.
  [[nodiscard]] virtual absl::StatusOr<std::vector<ApprovalRequest>> ExpireApprovals(
      TimePoint now) = 0;

  // OK when the store can serve requests (for /readyz); Unavailable otherwise.
  [[nodiscard]] virtual absl::Status CheckHealth() = 0;
};

// For implementations of CreateApprovalWithin: the ResourceExhausted a full requester gets.
[[nodiscard]] absl::Status TooManyPending(const ApprovalRequest& request, size_t max_pending);

// For implementations: the FailedPrecondition a refused transition returns, naming the
// grant's current state in the message and carrying it for RefusedState().
[[nodiscard]] absl::Status TransitionRefused(std::string_view grant_id, GrantState current);
// The grant state a refused transition carried; nullopt for any other status.
[[nodiscard]] std::optional<GrantState> RefusedState(const absl::Status& status);

// For implementations of PutSession: InvalidArgument unless the summary has an id, a known
// kind and outcome, and is either open (no ended_at, outcome "") or ended (both set).
[[nodiscard]] absl::Status ValidateSessionSummary(const SessionSummary& session);

}  // namespace tracegate::store
