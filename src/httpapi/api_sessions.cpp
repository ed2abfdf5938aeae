// GET /v1/sessions[/{id}[/events]]: the audit index and replays, for principals in one of
// audit.auditor_groups. Everyone else gets 403, whatever the session: recordings hold what
// other callers read, so there is no "own sessions" view.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "audit/query.h"
#include "common/json_text.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "httpapi/api.h"
#include "httpapi/query_string.h"

namespace tracegate::httpapi {

namespace {

using json = nlohmann::json;

constexpr size_t kMaxSessionsPerPage = 1000;

}  // namespace

ApiResponse ApiService::Sessions(const ApiRequest& request, const identity::Principal& principal,
                                 std::string_view rest) {
  const std::vector<std::string>& auditors = config_->audit.auditor_groups;
  // Groups count only from the issuers audit.auditor_issuers trusts (issue 17).
  const bool auditor =
      config::TrustsIssuer(config_->identity, config_->audit.auditor_issuers,
                           principal.issuer_name) &&
      std::any_of(principal.groups.begin(), principal.groups.end(), [&](const std::string& group) {
        return std::find(auditors.begin(), auditors.end(), group) != auditors.end();
      });
  if (!auditor) {
    spdlog::info("api request={} subject={}: sessions refused: not an auditor", request.request_id,
                 LogEscape(principal.subject));
    return ErrorResponse(403, "forbidden",
                         auditors.empty()
                             ? "no auditor groups are configured (audit.auditor_groups)"
                             : "only members of audit.auditor_groups may read recorded sessions",
                         request);
  }
  if (sessions_ == nullptr) {
    return ErrorResponse(404, "not_found", "recording is disabled (audit.enabled: false)", request);
  }
  const std::string_view target = request.target;
  const size_t question = target.find('?');
  absl::StatusOr<std::map<std::string, std::string>> params = ParseQuery(
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1));
  if (!params.ok()) {
    return ErrorResponse(400, "bad_request", MessageOf(params.status()), request);
  }

  if (rest.empty() || rest == "/") {
    store::SessionQuery query;
    const auto now = std::chrono::system_clock::now();
    for (const auto& [name, value] : *params) {
      if (name == "trace") {
        query.trace_id = value;
      } else if (name == "subject") {
        query.subject = value;
      } else if (name == "connection") {
        query.connection = value;
      } else if (name == "outcome") {
        query.outcome = value;
      } else if (name == "since" || name == "until") {
        absl::StatusOr<std::chrono::system_clock::time_point> at = audit::ParseTimeArg(value, now);
        if (!at.ok()) {
          return ErrorResponse(400, "bad_request", Cat(name, ": ", MessageOf(at.status())),
                               request);
        }
        (name == "since" ? query.since : query.until) = *at;
      } else if (name == "limit") {
        size_t limit = 0;
        if (!absl::SimpleAtoi(value, &limit) || limit == 0 || limit > kMaxSessionsPerPage) {
          return ErrorResponse(400, "bad_request",
                               Cat("limit must be a number from 1 to ", kMaxSessionsPerPage),
                               request);
        }
        query.limit = limit;
      } else {
        return ErrorResponse(400, "bad_request",
                             Cat("unknown query parameter \"", name.substr(0, 64),
                                 "\" (trace, subject, connection, outcome, since, until, limit)"),
                             request);
      }
    }
    absl::StatusOr<std::vector<store::SessionSummary>> found = sessions_->ListSessions(query);
    if (!found.ok()) {
      spdlog::error("api request={}: session index: {}", request.request_id,
                    MessageOf(found.status()));
      return ErrorResponse(503, "unavailable", "the session index is unavailable", request);
    }
    json list = json::array();
    for (const store::SessionSummary& s : *found) {
      list.push_back(audit::SessionSummaryJson(s));
    }
    return ApiResponse{
        .status = 200,
        .body = json{{"sessions", list}}.dump(-1, ' ', false, json::error_handler_t::replace)};
  }

  // "/{id}" or "/{id}/events"
  std::string_view id = rest.substr(1);
  bool events = false;
  if (const size_t slash = id.find('/'); slash != std::string_view::npos) {
    if (id.substr(slash) != "/events") {
      return ErrorResponse(404, "not_found", Cat("no such endpoint: ", target.substr(0, 128)),
                           request);
    }
    events = true;
    id = id.substr(0, slash);
  }
  if (id.empty() || id.size() > 128) {
    return ErrorResponse(404, "not_found", "no such session", request);
  }
  if (!events) {
    absl::StatusOr<store::SessionSummary> session = sessions_->GetSession(id);
    if (absl::IsNotFound(session.status())) {
      return ErrorResponse(404, "not_found", "no such session", request);
    }
    if (!session.ok()) {
      spdlog::error("api request={}: session index: {}", request.request_id,
                    MessageOf(session.status()));
      return ErrorResponse(503, "unavailable", "the session index is unavailable", request);
    }
    return ApiResponse{.status = 200,
                       .body = audit::SessionSummaryJson(*session).dump(
                           -1, ' ', false, json::error_handler_t::replace)};
  }
  absl::StatusOr<audit::SessionReplay> replay =
      audit::ReplaySession(config_->audit.dir, *sessions_, id);
  if (absl::IsNotFound(replay.status())) {
    return ErrorResponse(404, "not_found", "no such session", request);
  }
  if (!replay.ok()) {
    spdlog::error("api request={} session={}: replay: {}", request.request_id, LogEscape(id, 64),
                  LogEscape(MessageOf(replay.status()), 1024));
    // The reader's text (paths, offsets) is for the log; the caller gets the request id.
    return ErrorResponse(503, "unavailable",
                         "the session's records cannot be read right now; the gateway's log has "
                         "the details under this request id",
                         request);
  }
  return ApiResponse{.status = 200,
                     .body = replay->ToJson().dump(-1, ' ', false, json::error_handler_t::replace)};
}

}  // namespace tracegate::httpapi
