#include "approvals/approvals.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"

namespace tracegate::approvals {

using json = nlohmann::json;
using store::ApprovalDecision;
using store::ApprovalKind;
using store::ApprovalRequest;
using store::ApprovalState;
using TimePoint = std::chrono::system_clock::time_point;

namespace {

constexpr size_t kMaxCommentBytes = 1024;

bool InAny(const std::vector<std::string>& mine, const std::vector<std::string>& wanted) {
  return std::any_of(mine.begin(), mine.end(), [&](const std::string& group) {
    return std::find(wanted.begin(), wanted.end(), group) != wanted.end();
  });
}

size_t Approvals(const std::vector<ApprovalDecision>& decisions) {
  return static_cast<size_t>(std::count_if(decisions.begin(), decisions.end(),
                                           [](const ApprovalDecision& d) { return d.approve; }));
}

std::string GroupList(const std::vector<std::string>& groups) {
  std::string out;
  for (const std::string& group : groups) {
    out += Cat(out.empty() ? "" : ", ", group);
  }
  return out;
}

// Store pages ListFor reads while it looks for requests the caller may see.
constexpr size_t kScanChunk = 256;
constexpr size_t kMaxCursorIdBytes = 256;

}  // namespace

absl::Status NoSuchApproval(std::string_view id) {
  return absl::NotFoundError(Cat("no approval ", id.substr(0, 64), " for this caller"));
}

std::string FormatCursor(const store::ApprovalCursor& cursor) {
  const int64_t micros =
      std::chrono::floor<std::chrono::microseconds>(cursor.created_at.time_since_epoch()).count();
  return Cat(micros, ".", cursor.id);
}

absl::StatusOr<store::ApprovalCursor> ParseCursor(std::string_view text) {
  const auto bad = [] {
    return absl::InvalidArgumentError(
        "after must be a cursor from a previous page's \"next\" (\"<microseconds>.<id>\")");
  };
  const size_t dot = text.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 18) {
    return bad();
  }
  int64_t micros = 0;
  for (const char c : text.substr(0, dot)) {
    if (c < '0' || c > '9') {
      return bad();
    }
    micros = micros * 10 + (c - '0');
  }
  const std::string_view id = text.substr(dot + 1);
  if (id.empty() || id.size() > kMaxCursorIdBytes ||
      !std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return bad();
  }
  return store::ApprovalCursor{
      .created_at = TimePoint(
          std::chrono::duration_cast<TimePoint::duration>(std::chrono::microseconds(micros))),
      .id = std::string(id)};
}

json ViewJson(const ApprovalView& view) {
  const ApprovalRequest& r = view.request;
  json decisions = json::array();
  for (const ApprovalDecision& d : view.decisions) {
    decisions.push_back({{"approver", d.approver},
                         {"decision", d.approve ? "approve" : "deny"},
                         {"comment", d.comment},
                         {"forced", d.forced},
                         {"at", audit::FormatTime(d.at)}});
  }
  json out = {{"id", r.id},
              {"kind", store::ApprovalKindName(r.kind)},
              {"state", store::ApprovalStateName(r.state)},
              {"grant_id", r.grant_id},
              {"connection", r.connection},
              {"trace_id", r.trace_id},
              {"requester", r.requester},
              {"reason", r.reason},
              {"detail", r.detail},
              {"approvers", r.approver_groups},
              {"force_groups", r.force_groups},
              {"required", r.required},
              {"approvals", Approvals(view.decisions)},
              {"created_at", audit::FormatTime(r.created_at)},
              {"expires_at", audit::FormatTime(r.expires_at)},
              {"decisions", decisions}};
  if (!r.session_id.empty()) {
    out["session_id"] = r.session_id;
  }
  if (r.decided_at.has_value()) {
    out["decided_at"] = audit::FormatTime(*r.decided_at);
  }
  return out;
}

ApprovalService::ApprovalService(std::shared_ptr<const config::Config> config,
                                 store::StateStore& store, grants::GrantService& grants,
                                 audit::Recorder* recorder, notify::Webhooks* webhooks,
                                 grants::Clock clock)
    : config_(std::move(config)),
      store_(store),
      grants_(grants),
      recorder_(recorder),
      webhooks_(webhooks),
      clock_(std::move(clock)),
      waiters_(std::make_shared<WatchRegistry<ApprovalRequest>>()) {}

ApprovalService::~ApprovalService() = default;

ApprovalTerms ApprovalService::TermsFor(std::string_view rule) const {
  for (const config::PolicyRule& r : config_->policy.rules) {
    if (r.name == rule) {
      return ApprovalTerms{
          .approver_groups = r.approvers.empty() ? config_->approvals.approver_groups : r.approvers,
          .required = r.approvals_required,
          .hold_if_masked_at_least = r.hold_if_masked_at_least,
      };
    }
  }
  return ApprovalTerms{};
}

absl::StatusOr<ApprovalRequest> ApprovalService::OpenForGrant(const store::GrantRecord& grant,
                                                              std::string_view requester,
                                                              std::string_view detail) {
  const ApprovalTerms terms = TermsFor(grant.rule);
  if (terms.approver_groups.empty()) {
    return absl::FailedPreconditionError(
        Cat("rule ", grant.rule, " requires approval but names no approver group"));
  }
  ApprovalRequest request{
      .id = grant.id,
      .kind = ApprovalKind::kGrant,
      .grant_id = grant.id,
      .connection = grant.connection,
      .trace_id = grant.trace_id,
      .requester_issuer = grant.issuer,
      .requester_subject = grant.subject,
      .requester = std::string(requester),
      .reason = grant.reason,
      .detail = std::string(detail),
      .approver_groups = terms.approver_groups,
      .force_groups = config_->approvals.force_groups,
      .required = terms.required,
      .created_at = grant.created_at,
      .expires_at = grant.expires_at,  // the pending grant expires with its request
  };
  TG_RETURN_IF_ERROR(
      store_.CreateApprovalWithin(request, config_->approvals.max_pending_per_requester));
  Record(request, "requested", request.requester, "");
  Publish(request, "requested", {});
  spdlog::info("approvals: grant {} for trace {} waits for {} approval(s) from {}", grant.id,
               LogEscape(grant.trace_id, 64), request.required, GroupList(request.approver_groups));
  return request;
}

absl::StatusOr<ApprovalRequest> ApprovalService::OpenForResponse(const store::GrantRecord& grant,
                                                                 std::string_view session_id,
                                                                 std::string_view detail) {
  const ApprovalTerms terms = TermsFor(grant.rule);
  if (terms.approver_groups.empty()) {
    return absl::FailedPreconditionError(
        Cat("rule ", grant.rule, " holds results but names no approver group"));
  }
  TG_ASSIGN_OR_RETURN(std::vector<ApprovalRequest> earlier,
                      store_.ListApprovals({.grant_id = grant.id, .limit = 100000}));
  const size_t n = static_cast<size_t>(
      std::count_if(earlier.begin(), earlier.end(),
                    [](const ApprovalRequest& r) { return r.kind == ApprovalKind::kResponse; }));
  const TimePoint now = std::chrono::floor<std::chrono::microseconds>(clock_());
  ApprovalRequest request{
      .id = Cat(grant.id, ".r", n + 1),
      .kind = ApprovalKind::kResponse,
      .grant_id = grant.id,
      .session_id = std::string(session_id),
      .connection = grant.connection,
      .trace_id = grant.trace_id,
      .requester_issuer = grant.issuer,
      .requester_subject = grant.subject,
      .requester = Cat(grant.subject, " (", grant.issuer, ")"),
      .reason = grant.reason,
      .detail = std::string(detail),
      .approver_groups = terms.approver_groups,
      .force_groups = config_->approvals.force_groups,
      .required = terms.required,
      .created_at = now,
      .expires_at = now + config_->approvals.timeout,
  };
  TG_RETURN_IF_ERROR(
      store_.CreateApprovalWithin(request, config_->approvals.max_pending_per_requester));
  Record(request, "requested", "tracegate", "");
  Publish(request, "requested", {});
  spdlog::info("approvals: session {} holds a result of grant {}: {}", session_id, grant.id,
               detail);
  return request;
}

absl::Status ApprovalService::AdmitRequester(const identity::Principal& principal) {
  const size_t cap = config_->approvals.max_pending_per_requester;
  TG_ASSIGN_OR_RETURN(std::vector<ApprovalRequest> pending,
                      store_.ListApprovals({.state = ApprovalState::kPending,
                                            .requester_issuer = principal.issuer,
                                            .requester_subject = principal.subject,
                                            .limit = cap}));
  if (pending.size() >= cap) {
    return store::TooManyPending(ApprovalRequest{.requester = principal.Describe()}, cap);
  }
  return absl::OkStatus();
}

absl::StatusOr<ApprovalView> ApprovalService::Get(std::string_view id) {
  TG_ASSIGN_OR_RETURN(ApprovalRequest request, store_.GetApproval(id));
  TG_ASSIGN_OR_RETURN(std::vector<ApprovalDecision> decisions, store_.ListDecisions(id));
  return ApprovalView{std::move(request), std::move(decisions)};
}

absl::StatusOr<ApprovalView> ApprovalService::PendingForGrant(std::string_view grant_id) {
  TG_ASSIGN_OR_RETURN(
      std::vector<ApprovalRequest> pending,
      store_.ListApprovals(
          {.state = ApprovalState::kPending, .grant_id = std::string(grant_id), .limit = 1}));
  if (pending.empty()) {
    return absl::NotFoundError(Cat("nothing of grant ", grant_id, " waits for approval"));
  }
  return Get(pending.front().id);
}

bool ApprovalService::IsRequester(const identity::Principal& principal,
                                  const ApprovalRequest& request) const {
  return config::SamePerson(config_->identity, principal.issuer, principal.subject,
                            request.requester_issuer, request.requester_subject);
}

bool ApprovalService::RolesCount(const identity::Principal& principal) const {
  return config::TrustsIssuer(config_->identity, config_->approvals.issuers, principal.issuer_name);
}

bool ApprovalService::MayDecide(const identity::Principal& principal,
                                const ApprovalRequest& request) const {
  if (IsRequester(principal, request) || !RolesCount(principal)) {
    return false;
  }
  return InAny(principal.groups, request.approver_groups) ||
         InAny(principal.groups, request.force_groups);
}

absl::StatusOr<ApprovalView> ApprovalService::Decide(std::string_view id,
                                                     const identity::Principal& approver,
                                                     bool approve, std::string_view comment) {
  if (comment.size() > kMaxCommentBytes) {
    return absl::InvalidArgumentError(
        Cat("the comment is longer than ", kMaxCommentBytes, " bytes"));
  }
  absl::StatusOr<ApprovalRequest> found = store_.GetApproval(id);
  if (absl::IsNotFound(found.status())) {
    return NoSuchApproval(id);
  }
  TG_RETURN_IF_ERROR(found.status());
  ApprovalRequest request = *std::move(found);
  // Whoever may not see the request hears what a GET says: no such request. Naming its
  // approver groups, or that the voter's issuer does not count, would tell that it exists.
  if (!MaySee(approver, request)) {
    return NoSuchApproval(id);
  }
  if (IsRequester(approver, request)) {
    return absl::PermissionDeniedError(
        Cat("you requested ", id, ": a requester never decides its own request"));
  }
  const bool forced = InAny(approver.groups, request.force_groups);
  if (!config_->identity.people.empty()) {
    // Distinct approvers are distinct people: one person's second identity does not add a
    // vote. (The store's UNIQUE key catches the same identity twice; a race between two
    // identities of one person voting at the same instant is not closed here.)
    TG_ASSIGN_OR_RETURN(std::vector<ApprovalDecision> earlier, store_.ListDecisions(id));
    for (const ApprovalDecision& d : earlier) {
      if (config::SamePerson(config_->identity, d.issuer, d.subject, approver.issuer,
                             approver.subject)) {
        return absl::AlreadyExistsError(
            Cat("you already voted on ", id, " as ", d.approver, " (the same person)"));
      }
    }
  }
  const TimePoint now = std::chrono::floor<std::chrono::microseconds>(clock_());
  std::chrono::milliseconds grant_ttl{0};
  if (request.kind == ApprovalKind::kGrant && approve) {
    // The credential's life starts at consent, with the rule's ttl. (A deny needs no rule.)
    TG_ASSIGN_OR_RETURN(store::GrantRecord grant, store_.GetGrant(request.grant_id));
    for (const config::PolicyRule& rule : config_->policy.rules) {
      if (rule.name == grant.rule) {
        grant_ttl = std::min(rule.ttl, config_->policy.max_ttl);
      }
    }
    if (grant_ttl.count() <= 0) {
      return absl::FailedPreconditionError(
          Cat("the rule of grant ", request.grant_id, " no longer exists; it cannot be approved"));
    }
  }
  TG_ASSIGN_OR_RETURN(store::DecideResult result,
                      store_.Decide({.decision = {.request_id = std::string(id),
                                                  .approve = approve,
                                                  .issuer = approver.issuer,
                                                  .subject = approver.subject,
                                                  .approver = approver.Describe(),
                                                  .comment = std::string(comment),
                                                  .forced = forced,
                                                  .at = now},
                                     .grant_ttl = grant_ttl}));
  spdlog::info("approvals: {} {} {}{}: {} ({} of {} approvals)", approver.Describe(),
               approve ? "approved" : "denied", id, forced ? " (force group)" : "",
               store::ApprovalStateName(result.request.state), Approvals(result.decisions),
               result.request.required);
  Record(result.request, "vote", approver.Describe(), comment);
  if (result.request.state != ApprovalState::kPending) {
    if (result.grant.has_value()) {
      grants_.Announce(result.grant->id, result.grant->state);
    }
    Settled(result.request, result.decisions);
  }
  return ApprovalView{std::move(result.request), std::move(result.decisions)};
}

bool ApprovalService::MaySee(const identity::Principal& principal,
                             const ApprovalRequest& request) const {
  const bool own = principal.issuer == request.requester_issuer &&
                   principal.subject == request.requester_subject;
  return own || MayDecide(principal, request);
}

absl::StatusOr<ListPage> ApprovalService::ListFor(const identity::Principal& principal,
                                                  const ListQuery& query) {
  // Approver groups are per request, so visibility is decided here; the store narrows by
  // everything else and pages by the cursor. Reading stops at kMaxScanned rows, so a caller who
  // may see little of a long history still gets an answer promptly, with a cursor to go on.
  ListPage page;
  if (query.limit == 0) {
    return page;
  }
  store::ApprovalQuery chunk{.state = query.state,
                             .requester_issuer = query.requester_issuer,
                             .requester_subject = query.requester_subject,
                             .connection = query.connection,
                             .trace_id = query.trace_id,
                             .after = query.after,
                             .limit = kScanChunk};
  size_t scanned = 0;
  while (scanned < kMaxScanned) {
    chunk.limit = std::min(kScanChunk, kMaxScanned - scanned);
    TG_ASSIGN_OR_RETURN(std::vector<ApprovalRequest> rows, store_.ListApprovals(chunk));
    for (ApprovalRequest& row : rows) {
      ++scanned;
      chunk.after = store::ApprovalCursor{row.created_at, row.id};
      if (!MaySee(principal, row)) {
        continue;
      }
      page.requests.push_back(std::move(row));
      if (page.requests.size() == query.limit) {
        // Full: the next page starts after this request (it may turn out empty).
        page.next = chunk.after;
        return page;
      }
    }
    if (rows.size() < chunk.limit) {
      return page;  // the end: nothing older matches
    }
  }
  page.next = chunk.after;  // out of scan budget: go on from the last row read
  return page;
}

absl::StatusOr<size_t> ApprovalService::ExpireDue() {
  const TimePoint now = std::chrono::floor<std::chrono::microseconds>(clock_());
  TG_ASSIGN_OR_RETURN(std::vector<ApprovalRequest> expired, store_.ExpireApprovals(now));
  for (const ApprovalRequest& request : expired) {
    Record(request, "expired", "tracegate", "");
    absl::StatusOr<std::vector<ApprovalDecision>> decisions = store_.ListDecisions(request.id);
    Settled(request, decisions.ok() ? *decisions : std::vector<ApprovalDecision>{});
  }
  return expired.size();
}

void ApprovalService::Cancel(std::string_view id, std::string_view why) {
  const TimePoint now = std::chrono::floor<std::chrono::microseconds>(clock_());
  absl::StatusOr<ApprovalRequest> closed = store_.CloseApproval(id, ApprovalState::kCancelled, now);
  if (!closed.ok()) {
    if (!absl::IsFailedPrecondition(closed.status())) {
      spdlog::error("approvals: cannot cancel {}: {}", id, MessageOf(closed.status()));
    }
    return;
  }
  Record(*closed, "cancelled", "tracegate", why);
  Settled(*closed, {});
}

absl::StatusOr<size_t> ApprovalService::CancelForGrant(std::string_view grant_id,
                                                       std::string_view actor,
                                                       std::string_view why) {
  // A grant has at most its own request and one held result pending at a time; read a few
  // more in case of an older store's leftovers.
  TG_ASSIGN_OR_RETURN(
      std::vector<ApprovalRequest> pending,
      store_.ListApprovals(
          {.state = ApprovalState::kPending, .grant_id = std::string(grant_id), .limit = 64}));
  const TimePoint now = std::chrono::floor<std::chrono::microseconds>(clock_());
  size_t closed_count = 0;
  for (const ApprovalRequest& request : pending) {
    absl::StatusOr<ApprovalRequest> closed =
        store_.CloseApproval(request.id, ApprovalState::kCancelled, now);
    if (absl::IsFailedPrecondition(closed.status())) {
      continue;  // settled in the meantime (a vote, the sweep): its own path told everyone
    }
    TG_RETURN_IF_ERROR(closed.status());
    spdlog::info("approvals: {} cancelled: {}", closed->id, why);
    Record(*closed, "cancelled", actor, why);
    absl::StatusOr<std::vector<ApprovalDecision>> decisions = store_.ListDecisions(closed->id);
    Settled(*closed, decisions.ok() ? *decisions : std::vector<ApprovalDecision>{});
    ++closed_count;
  }
  return closed_count;
}

std::unique_ptr<ApprovalService::Watch> ApprovalService::WaitFor(
    std::string_view id, std::function<void(ApprovalRequest)> on_settled) {
  auto entry = waiters_->Add(id, std::move(on_settled));
  return std::make_unique<Watch>(waiters_, std::string(id), std::move(entry));
}

void ApprovalService::Settled(const ApprovalRequest& request,
                              const std::vector<ApprovalDecision>& decisions) {
  waiters_->Notify(request.id, request);
  Publish(request, "decided", decisions);
}

void ApprovalService::Record(const ApprovalRequest& request, std::string_view event,
                             std::string_view actor, std::string_view comment) {
  if (recorder_ == nullptr) {
    return;
  }
  json payload = {{"event", event},
                  {"request_id", request.id},
                  {"kind", store::ApprovalKindName(request.kind)},
                  {"state", store::ApprovalStateName(request.state)},
                  {"grant_id", request.grant_id},
                  {"trace_id", request.trace_id},
                  {"connection", request.connection},
                  {"requester", request.requester},
                  {"actor", actor},
                  {"comment", comment},
                  {"detail", request.detail},
                  {"approvers", request.approver_groups},
                  {"required", request.required},
                  {"expires_at", audit::FormatTime(request.expires_at)}};
  absl::StatusOr<uint64_t> seq = recorder_->Approval(
      request.session_id, payload.dump(-1, ' ', false, json::error_handler_t::replace));
  if (!seq.ok()) {
    // The store holds the decision (it is the authority); the log is the evidence and its
    // failure already refuses new sessions (health).
    spdlog::error("approvals: {} of {} not recorded in the audit log: {}", event, request.id,
                  MessageOf(seq.status()));
  }
}

void ApprovalService::Publish(const ApprovalRequest& request, std::string_view type,
                              const std::vector<ApprovalDecision>& decisions) {
  if (webhooks_ == nullptr) {
    return;
  }
  json payload = ViewJson({request, decisions});
  std::string text;
  const std::string what =
      request.kind == ApprovalKind::kGrant
          ? Cat("read trace ", request.trace_id, " on ", request.connection)
          : Cat("release a held result of trace ", request.trace_id, " (", request.detail, ")");
  if (type == "requested") {
    text = Cat("tracegate: ", request.requester, " asks to ", what,
               request.reason.empty() ? "" : Cat(" because \"", request.reason, "\""), ". ",
               request.required, " approval(s) needed from ", GroupList(request.approver_groups),
               ". Decide: tracegate approvals approve ", request.id, " (or deny ", request.id,
               " --comment ...)");
  } else {
    std::string comments;
    for (const ApprovalDecision& d : decisions) {
      if (!d.comment.empty()) {
        comments += Cat(" ", d.approver, ": \"", d.comment, "\"");
      }
    }
    text = Cat("tracegate: request ", request.id, " by ", request.requester, " to ", what, " was ",
               store::ApprovalStateName(request.state), ".", comments);
  }
  webhooks_->Publish(
      notify::Event{.type = std::string(type), .payload = std::move(payload), .text = text});
}

}  // namespace tracegate::approvals
