// GET /v1/connections/{name}/traces/{trace_id}: the one-call fetch. The policy decides exactly
// as for POST /v1/grants; the grant it mints is redeemed here and used by the gateway itself
// (the transport runs the FetchJob: src/fetch), so the agent never handles a credential unless
// approval is needed — then it gets the pending grant (202) and, once approved, repeats the
// call with `X-Tracegate-Grant: tgb_…`.

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
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

constexpr size_t kMaxReasonBytes = 1024;

// Strict %XX decoding of one path segment; nullopt for a malformed escape or a decoded '/'.
// (What the bytes may be is ValidateTraceId's to say.)
std::optional<std::string> DecodeSegment(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size() || HexDigitValue(in[i + 1]) < 0 || HexDigitValue(in[i + 2]) < 0) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(HexDigitValue(in[i + 1]) * 16 + HexDigitValue(in[i + 2])));
    i += 2;
  }
  if (out.find('/') != std::string::npos) {
    return std::nullopt;
  }
  return out;
}

// "tgb_<id>_<secret>" → "<id>"; "" if it does not look like one.
std::string_view GrantIdOf(std::string_view bearer) {
  if (!bearer.starts_with("tgb_")) {
    return {};
  }
  bearer.remove_prefix(4);
  const size_t underscore = bearer.find('_');
  return underscore == std::string_view::npos ? std::string_view() : bearer.substr(0, underscore);
}

}  // namespace

ApiResponse ApiService::FetchTrace(const ApiRequest& request, const identity::Principal& principal,
                                   std::string_view rest) {
  // rest = "{name}/traces/{trace_id}"
  const size_t slash = rest.find('/');
  constexpr std::string_view kTraces = "/traces/";
  if (slash == std::string_view::npos || rest.substr(slash, kTraces.size()) != kTraces ||
      rest.size() == slash + kTraces.size() ||
      rest.find('/', slash + kTraces.size()) != std::string_view::npos) {
    return ErrorResponse(404, "not_found",
                         Cat("no such endpoint: /v1/connections/", rest.substr(0, 128),
                             " (expected /v1/connections/{name}/traces/{trace_id})"),
                         request);
  }
  const std::string name(rest.substr(0, slash));
  const std::optional<std::string> trace_id = DecodeSegment(rest.substr(slash + kTraces.size()));
  if (!trace_id.has_value()) {
    return ErrorResponse(400, "bad_request", "the trace id in the path is not validly encoded",
                         request);
  }
  if (absl::Status valid = ValidateTraceId(*trace_id); !valid.ok()) {
    return ErrorResponse(400, kInvalidTraceIdCode, MessageOf(valid), request);
  }
  const size_t question = request.target.find('?');
  absl::StatusOr<std::map<std::string, std::string>> query = ParseQuery(
      question == std::string::npos ? std::string_view()
                                    : std::string_view(request.target).substr(question + 1));
  if (!query.ok()) {
    return ErrorResponse(400, "bad_request", MessageOf(query.status()), request);
  }
  std::string reason;
  for (const auto& [key, value] : *query) {
    if (key != "reason") {
      return ErrorResponse(400, "bad_request",
                           Cat("unknown parameter \"", key.substr(0, 64), "\" (expected reason)"),
                           request);
    }
    reason = value;
  }
  if (reason.size() > kMaxReasonBytes) {
    return ErrorResponse(400, "bad_request",
                         Cat("reason is longer than ", kMaxReasonBytes, " bytes"), request);
  }
  const config::Connection* connection = nullptr;
  for (const config::Connection& c : config_->connections) {
    if (c.name == name) {
      connection = &c;
    }
  }
  if (connection == nullptr) {
    return ErrorResponse(404, "not_found", Cat("no connection named \"", name.substr(0, 64), "\""),
                         request);
  }
  const bool offered = connection->type == config::ConnectionType::kHttp
                           ? !connection->fetch_route.empty()
                           : !connection->fetch_query.empty();
  if (!offered) {
    return ErrorResponse(
        409, "fetch_not_configured",
        Cat("connection ", name, " declares no ",
            connection->type == config::ConnectionType::kHttp ? "fetch_route" : "fetch_query",
            "; ask for a grant with POST /v1/grants instead"),
        request);
  }

  std::string bearer = request.grant_credential;
  if (!bearer.empty()) {
    // An approved grant from an earlier 202: it must be this caller's, for this trace.
    absl::StatusOr<store::GrantRecord> own = OwnGrant(principal, GrantIdOf(bearer));
    if (!own.ok()) {
      if (absl::IsNotFound(own.status())) {
        const bool malformed = grants::BearerGrantId(bearer).empty();
        const bool exists = !malformed && grants_.Get(GrantIdOf(bearer)).ok();
        FetchRefused(request, principal,
                     malformed ? "malformed_credential"
                     : exists  ? "grant_other_principal"
                               : "unknown_grant",
                     name, bearer);
      }
      return StatusResponse(own.status(), request);
    }
    if (own->connection != name || own->trace_id != *trace_id) {
      FetchRefused(request, principal,
                   own->connection != name ? "grant_other_connection" : "grant_other_trace", name,
                   bearer);
      return ErrorResponse(403, "forbidden",
                           Cat("grant ", own->id, " is for trace ", own->trace_id,
                               " on connection ", own->connection),
                           request);
    }
  } else {
    std::variant<ApiResponse, Issued> issued = Issue(request, principal, name, *trace_id, reason);
    if (ApiResponse* refused = std::get_if<ApiResponse>(&issued)) {
      return std::move(*refused);
    }
    Issued& grant = std::get<Issued>(issued);
    if (grant.approval.has_value()) {
      ApiResponse pending = IssuedResponse(grant);
      json body = json::parse(pending.body, nullptr, /*allow_exceptions=*/false);
      body["next"] = Cat("wait with GET /v1/grants/", grant.issued.grant.id,
                         "?wait=60s; once approved, repeat this request with the header "
                         "X-Tracegate-Grant: <http.bearer>");
      pending.body = DumpJson(body);
      return pending;
    }
    bearer = grant.issued.bearer;
  }
  absl::StatusOr<store::GrantRecord> redeemed = grants_.RedeemBearer(
      bearer, name,
      Cat("one-call fetch by ", principal.Describe(), " from ", request.client_address));
  if (!redeemed.ok()) {
    if (const std::string reason = grants::RefusalReasonOf(redeemed.status()); !reason.empty()) {
      FetchRefused(request, principal, reason, name, bearer);
    }
    if (absl::IsUnauthenticated(redeemed.status()) || absl::IsNotFound(redeemed.status())) {
      return ErrorResponse(401, "invalid_credential", MessageOf(redeemed.status()), request);
    }
    if (absl::IsPermissionDenied(redeemed.status())) {
      return ErrorResponse(403, "grant_unusable", MessageOf(redeemed.status()), request);
    }
    return StatusResponse(redeemed.status(), request);
  }
  ApiResponse response{.status = 200};
  response.fetch = FetchJob{.grant = *std::move(redeemed),
                            .type = connection->type,
                            .client_address = request.client_address,
                            .request_id = request.request_id};
  return response;
}

void ApiService::FetchRefused(const ApiRequest& request, const identity::Principal& principal,
                              std::string_view reason, std::string_view connection,
                              std::string_view bearer) {
  if (recorder_ == nullptr) {
    return;
  }
  // The grant id only when the bearer has the credential's shape: never a part of the secret.
  const std::string grant_id = grants::BearerGrantId(bearer);
  recorder_->AuthFailure({.path = audit::AuthPath::kFetch,
                          .reason = reason,
                          .connection = connection,
                          .client_address = request.client_address,
                          .grant_id = grant_id,
                          .user = principal.subject,
                          .session = request.request_id});
}

ApiResponse FetchResponse(const FetchJob& job, const FetchOutcome& outcome,
                          const ApiRequest& request) {
  ApiResponse response{.status = outcome.status};
  response.headers.emplace_back("Cache-Control", "no-store");
  if (!outcome.session_id.empty()) {
    response.headers.emplace_back("X-Tracegate-Session", outcome.session_id);
  }
  if (!outcome.approval_id.empty()) {
    // The result was held for approvers (rule hold_if_masked_at_least): released or withheld.
    response.headers.emplace_back("X-Tracegate-Approval", outcome.approval_id);
  }
  if (!outcome.error.empty()) {
    json body = json::parse(outcome.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      body = json{{"error", outcome.error}};
    }
    body["request_id"] = request.request_id;
    body["grant_id"] = job.grant.id;
    if (!outcome.approval_id.empty()) {
      body["approval_id"] = outcome.approval_id;
    }
    response.body = DumpJson(body);
    return response;
  }
  // The trace is embedded as it was masked, without parsing it again.
  response.body = Cat(
      "{\"grant_id\":", DumpJson(json(job.grant.id)),
      ",\"connection\":", DumpJson(json(job.grant.connection)),
      ",\"trace_id\":", DumpJson(json(job.grant.trace_id)),
      ",\"session_id\":", DumpJson(json(outcome.session_id)),
      outcome.approval_id.empty() ? std::string()
                                  : Cat(",\"approval_id\":", DumpJson(json(outcome.approval_id))),
      ",\"masked\":", DumpJson(json(outcome.masked)), ",\"trace\":", outcome.body, "}");
  return response;
}

}  // namespace tracegate::httpapi
