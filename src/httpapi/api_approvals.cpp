// /v1/approvals[/{id}[/approve|deny]] and the votes of /v1/grants/{id}/approve|deny.
// A request is visible to those who may decide it and to its requester; to anyone else it
// does not exist (404), so approvers' queues do not leak who asks for what.

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/json_text.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "httpapi/api.h"
#include "httpapi/query_string.h"

namespace tracegate::httpapi {

namespace {

using json = nlohmann::json;

constexpr size_t kMaxListed = 200;

bool Requested(const identity::Principal& principal, const store::ApprovalRequest& request) {
  return principal.issuer == request.requester_issuer &&
         principal.subject == request.requester_subject;
}

}  // namespace

ApiResponse ApiService::Approvals(const ApiRequest& request, const identity::Principal& principal,
                                  std::string_view rest) {
  if (approvals_ == nullptr) {
    return ErrorResponse(404, "not_found", "approvals are not enabled", request);
  }
  if (rest.empty() || rest == "/") {
    const size_t question = request.target.find('?');
    absl::StatusOr<std::map<std::string, std::string>> query = ParseQuery(
        question == std::string::npos ? std::string_view()
                                      : std::string_view(request.target).substr(question + 1));
    if (!query.ok()) {
      return ErrorResponse(400, "bad_request", MessageOf(query.status()), request);
    }
    std::optional<store::ApprovalState> state = store::ApprovalState::kPending;
    for (const auto& [name, value] : *query) {
      if (name != "state") {
        return ErrorResponse(
            400, "bad_request",
            Cat("unknown query parameter \"", name.substr(0, 64), "\" (expected state)"), request);
      }
      state = value == "all" ? std::nullopt : store::ParseApprovalState(value);
      if (value != "all" && !state.has_value()) {
        return ErrorResponse(400, "bad_request",
                             "state must be pending, approved, denied, expired, cancelled or all",
                             request);
      }
    }
    absl::StatusOr<std::vector<store::ApprovalRequest>> listed =
        approvals_->ListFor(principal, state, kMaxListed);
    if (!listed.ok()) {
      return StatusResponse(listed.status(), request);
    }
    json out = json::array();
    for (const store::ApprovalRequest& r : *listed) {
      absl::StatusOr<approvals::ApprovalView> view = approvals_->Get(r.id);
      if (!view.ok()) {
        return StatusResponse(view.status(), request);
      }
      json item = approvals::ViewJson(*view);
      const bool decider = approvals_->MayDecide(principal, r);
      if (!decider) {  // its requester: the risk score stays with the approvers
        item["detail"] = RequesterDetail(item.value("detail", std::string()));
      }
      item["may_decide"] = r.state == store::ApprovalState::kPending && decider;
      out.push_back(std::move(item));
    }
    return ApiResponse{.status = 200, .body = DumpJson(json{{"approvals", out}})};
  }
  std::string_view id = rest.substr(1);
  std::optional<bool> approve;
  if (id.ends_with("/approve")) {
    approve = true;
    id.remove_suffix(std::string_view("/approve").size());
  } else if (id.ends_with("/deny")) {
    approve = false;
    id.remove_suffix(std::string_view("/deny").size());
  }
  if (id.empty() || id.find('/') != std::string_view::npos) {
    return ErrorResponse(404, "not_found",
                         Cat("no such endpoint: /v1/approvals", rest.substr(0, 128)), request);
  }
  if (approve.has_value()) {
    return Vote(request, principal, id, *approve);
  }
  absl::StatusOr<approvals::ApprovalView> view = approvals_->Get(id);
  if (!view.ok()) {
    return StatusResponse(view.status(), request);
  }
  if (!Requested(principal, view->request) && !approvals_->MayDecide(principal, view->request)) {
    return ErrorResponse(404, "not_found",
                         Cat("no approval ", id.substr(0, 64), " for this caller"), request);
  }
  json out = approvals::ViewJson(*view);
  if (!approvals_->MayDecide(principal, view->request)) {  // its requester
    out["detail"] = RequesterDetail(out.value("detail", std::string()));
  }
  return ApiResponse{.status = 200, .body = DumpJson(out)};
}

ApiResponse ApiService::Vote(const ApiRequest& request, const identity::Principal& principal,
                             std::string_view request_id, bool approve) {
  std::string comment;
  if (!request.body.empty()) {
    const json body = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded() || !body.is_object()) {
      return ErrorResponse(400, "bad_request",
                           "the body must be a JSON object like {\"comment\":\"…\"}", request);
    }
    for (const auto& [key, value] : body.items()) {
      if (key != "comment" || !value.is_string()) {
        return ErrorResponse(400, "bad_request", "the only field is \"comment\", a string",
                             request);
      }
      comment = value.get<std::string>();
    }
  }
  if (!approve && comment.empty()) {
    return ErrorResponse(400, "bad_request", "a deny needs a comment: the requester is told why",
                         request);
  }
  absl::StatusOr<approvals::ApprovalView> view =
      approvals_->Decide(request_id, principal, approve, comment);
  if (!view.ok()) {
    spdlog::info("api request={} principal={}: vote on {} refused: {}", request.request_id,
                 LogEscape(principal.Describe()), LogEscape(request_id, 64),
                 LogEscape(MessageOf(view.status()), 1024));
    return StatusResponse(view.status(), request);
  }
  return ApiResponse{.status = 200, .body = DumpJson(approvals::ViewJson(*view))};
}

}  // namespace tracegate::httpapi
