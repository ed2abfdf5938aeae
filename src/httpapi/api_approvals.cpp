// /v1/approvals[/{id}[/approve|deny]] and the votes of /v1/grants/{id}/approve|deny.
// A request is visible to those who may decide it and to its requester; to anyone else it
// does not exist (404, for a GET and a vote alike, worded as for an unknown id), so approvers'
// queues do not leak who asks for what. The list is paged (limit, after → next) and filtered
// (state, connection, trace_id, requester), so a flood of requests cannot hide one.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "common/json_text.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "httpapi/api.h"
#include "httpapi/query_string.h"

namespace tracegate::httpapi {

namespace {

using json = nlohmann::json;

constexpr size_t kDefaultListed = 100;
constexpr size_t kMaxListed = 200;
constexpr size_t kMaxFilterBytes = 256;

// GET /v1/approvals's query: state (default pending; all), limit (1..200, default 100), after
// (a cursor), connection, trace_id, requester ("me", or "<issuer name>:<subject>").
absl::StatusOr<approvals::ListQuery> ListQueryOf(const std::map<std::string, std::string>& params,
                                                 const identity::Principal& principal,
                                                 const config::Config& config) {
  approvals::ListQuery query;
  query.limit = kDefaultListed;
  for (const auto& [name, value] : params) {
    if (value.size() > kMaxFilterBytes) {
      return absl::InvalidArgumentError(
          Cat(name.substr(0, 64), " is longer than ", kMaxFilterBytes, " bytes"));
    }
    if (name == "state") {
      query.state = value == "all" ? std::nullopt : store::ParseApprovalState(value);
      if (value != "all" && !query.state.has_value()) {
        return absl::InvalidArgumentError(
            "state must be pending, approved, denied, expired, cancelled or all");
      }
    } else if (name == "limit") {
      uint32_t limit = 0;
      if (value.size() > 4 || !absl::ascii_isdigit(static_cast<unsigned char>(value[0])) ||
          !absl::SimpleAtoi(value, &limit) || limit < 1 || limit > kMaxListed) {
        return absl::InvalidArgumentError(Cat("limit must be a number from 1 to ", kMaxListed));
      }
      query.limit = limit;
    } else if (name == "after") {
      absl::StatusOr<store::ApprovalCursor> cursor = approvals::ParseCursor(value);
      if (!cursor.ok()) {
        return cursor.status();
      }
      query.after = *std::move(cursor);
    } else if (name == "connection") {
      query.connection = value;
    } else if (name == "trace_id") {
      if (absl::Status valid = ValidateTraceId(value); !valid.ok()) {
        return valid;
      }
      query.trace_id = value;
    } else if (name == "requester") {
      if (value == "me") {
        query.requester_issuer = principal.issuer;
        query.requester_subject = principal.subject;
        continue;
      }
      const size_t colon = value.find(':');
      const config::Issuer* issuer = nullptr;
      for (const config::Issuer& i : config.identity.issuers) {
        if (colon != std::string::npos && i.name == std::string_view(value).substr(0, colon)) {
          issuer = &i;
        }
      }
      if (issuer == nullptr || colon + 1 == value.size()) {
        return absl::InvalidArgumentError(
            "requester must be \"me\" or \"<issuer name>:<subject>\" with a configured issuer "
            "name");
      }
      query.requester_issuer = issuer->issuer;
      query.requester_subject = value.substr(colon + 1);
    } else {
      return absl::InvalidArgumentError(
          Cat("unknown query parameter \"", name.substr(0, 64),
              "\" (expected state, limit, after, connection, trace_id, requester)"));
    }
  }
  return query;
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
    absl::StatusOr<approvals::ListQuery> list_query = ListQueryOf(*query, principal, *config_);
    if (!list_query.ok()) {
      return ErrorResponse(400, "bad_request", MessageOf(list_query.status()), request);
    }
    absl::StatusOr<approvals::ListPage> listed = approvals_->ListFor(principal, *list_query);
    if (!listed.ok()) {
      return StatusResponse(listed.status(), request);
    }
    json out = json::array();
    for (const store::ApprovalRequest& r : listed->requests) {
      absl::StatusOr<approvals::ApprovalView> view = approvals_->Get(r.id);
      if (!view.ok()) {
        return StatusResponse(view.status(), request);
      }
      json item = approvals::ViewJson(*view);
      const bool decider = approvals_->MayDecide(principal, r);
      if (!decider) {  // its requester: the risk score stays with the approvers
        item["detail"] = RequesterDetail(item.value("detail", std::string()));
      }
      item["may_decide"] = view->request.state == store::ApprovalState::kPending && decider;
      out.push_back(std::move(item));
    }
    json page = {{"approvals", out}};
    if (listed->next.has_value()) {
      page["next"] = approvals::FormatCursor(*listed->next);
    }
    return ApiResponse{.status = 200, .body = DumpJson(page)};
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
  if (absl::IsNotFound(view.status()) ||
      (view.ok() && !approvals_->MaySee(principal, view->request))) {
    // One answer for "no such request" and "not yours to see" (a vote gets the same).
    return StatusResponse(approvals::NoSuchApproval(id), request);
  }
  if (!view.ok()) {
    return StatusResponse(view.status(), request);
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
