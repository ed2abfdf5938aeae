#include "httpapi/api.h"

#include <fmt/chrono.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "approvals/risk.h"
#include "common/json_text.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "httpapi/query_string.h"

namespace tracegate::httpapi {

using json = nlohmann::json;

namespace {

constexpr std::string_view kGrantsPath = "/v1/grants";
constexpr std::string_view kSessionsPath = "/v1/sessions";
constexpr size_t kMaxReasonBytes = 1024;

constexpr std::string_view kApprovalsPath = "/v1/approvals";
constexpr std::string_view kConnectionsPath = "/v1/connections";
constexpr auto kMaxWait = std::chrono::seconds(60);
constexpr auto kRiskQueryTimeout = std::chrono::seconds(5);
// The reasons of tracegate_auth_failures_total{path="api"}: a fixed set, so no cardinality
// grows with what callers send.
constexpr const char* kAuthFailureReasons[] = {"missing_token", "invalid_token", "idp_unavailable",
                                               "throttled"};

ApiResponse Error(unsigned status, std::string_view code, std::string_view message,
                  const ApiRequest& request) {
  return ErrorResponse(status, code, message, request);
}

// Percent-encodes everything but unreserved characters (RFC 3986), for the credential URI.
std::string UriEncode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

json GrantJson(const store::GrantRecord& grant) {
  return json{
      {"grant_id", grant.id},
      {"state", std::string(store::GrantStateName(grant.state))},
      {"connection", grant.connection},
      {"trace_id", grant.trace_id},
      {"subject", grant.subject},
      {"rule", grant.rule},
      {"reason", grant.reason},
      {"created_at", Rfc3339(grant.created_at)},
      {"expires_at", Rfc3339(grant.expires_at)},
      {"uses_allowed", grant.uses_allowed},
      {"uses_left", grant.uses_left},
      {"max_session_seconds", grant.max_session.count() / 1000.0},
  };
}

// The requester's view of its own approval request (RequesterDetail).
json HideRiskScore(json approval) {
  approval["detail"] = RequesterDetail(approval.value("detail", std::string()));
  return approval;
}

// The policy's and the state store's errors, as HTTP.
ApiResponse StoreError(const absl::Status& status, const ApiRequest& request) {
  if (absl::IsNotFound(status)) {
    return Error(404, "not_found", MessageOf(status), request);
  }
  if (absl::IsFailedPrecondition(status) || absl::IsPermissionDenied(status)) {
    return Error(409, "conflict", MessageOf(status), request);
  }
  spdlog::error("api request={}: state store: {}", request.request_id,
                LogEscape(MessageOf(status), 1024));
  return Error(503, "unavailable", "the state store is unavailable; nothing was changed", request);
}

// "30s", "1500ms", "2m" → a duration; nullopt for anything else.
std::optional<std::chrono::milliseconds> ParseWait(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  uint64_t count = 0;
  if (digits == 0 || digits > 9 ||
      !absl::SimpleAtoi(absl::string_view(text.data(), digits), &count)) {
    return std::nullopt;
  }
  const std::string_view unit = text.substr(digits);
  const uint64_t factor = unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60000 : 0;
  if (factor == 0) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(count * factor);
}

}  // namespace

std::string Rfc3339(std::chrono::system_clock::time_point t) {
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z",
                     fmt::gmtime(std::chrono::system_clock::to_time_t(t)), millis);
}

std::string RequesterDetail(std::string_view detail) {
  if (const size_t at = detail.find(": trace risk "); at != std::string_view::npos) {
    return Cat(detail.substr(0, at), ": the trace's risk is at or above the rule's");
  }
  return std::string(detail);
}

ApiResponse StatusResponse(const absl::Status& status, const ApiRequest& request) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return ErrorResponse(404, "not_found", MessageOf(status), request);
    case absl::StatusCode::kPermissionDenied:
      return ErrorResponse(403, "forbidden", MessageOf(status), request);
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
      return ErrorResponse(409, "conflict", MessageOf(status), request);
    case absl::StatusCode::kInvalidArgument:
      return ErrorResponse(400, "bad_request", MessageOf(status), request);
    default:
      spdlog::error("api request={}: {}", request.request_id, LogEscape(MessageOf(status), 1024));
      return ErrorResponse(503, "unavailable",
                           "the state store is unavailable; nothing was changed", request);
  }
}

ApiResponse ErrorResponse(unsigned status, std::string_view code, std::string_view message,
                          const ApiRequest& request) {
  return ApiResponse{.status = status, .body = ErrorBody(code, message, request.request_id)};
}

std::string ErrorBody(std::string_view code, std::string_view message,
                      std::string_view request_id) {
  return DumpJson(json{{"error", code}, {"message", message}, {"request_id", request_id}});
}

ApiService::ApiService(std::shared_ptr<const config::Config> config, Authenticator authenticate,
                       grants::GrantService& grants, ListenerAddress listener_address,
                       grants::Clock clock, store::StateStore* sessions,
                       approvals::ApprovalService* approvals, audit::Recorder* recorder,
                       prometheus::Registry* metrics)
    : config_(std::move(config)),
      authenticate_(std::move(authenticate)),
      grants_(grants),
      listener_address_(std::move(listener_address)),
      clock_(std::move(clock)),
      sessions_(sessions),
      approvals_(approvals),
      recorder_(recorder),
      policy_(config_),
      limiter_(config_->api ? config_->api->auth_failures_per_minute : 30),
      slow_calls_(config_->api ? config_->api->max_slow_calls : 2) {
  if (metrics != nullptr) {
    // The Postgres listeners add their series to the same family ({connection}).
    auth_failures_ = &prometheus::BuildCounter()
                          .Name("tracegate_auth_failures_total")
                          .Help("Client authentications refused")
                          .Register(*metrics);
    for (const char* reason : kAuthFailureReasons) {
      auth_failures_->Add({{"path", "api"}, {"reason", reason}, {"connection", ""}});
    }
    busy_ = &prometheus::BuildCounter()
                 .Name("tracegate_api_busy_total")
                 .Help("API requests answered 503 busy: api.max_slow_calls were in flight")
                 .Register(*metrics);
    for (const char* dependency : {"risk", "idp"}) {
      busy_->Add({{"dependency", dependency}});
    }
  }
}

void ApiService::CountAuthFailure(std::string_view reason) {
  if (auth_failures_ != nullptr) {
    auth_failures_->Add({{"path", "api"}, {"reason", std::string(reason)}, {"connection", ""}})
        .Increment();
  }
}

std::variant<ApiResponse, identity::Principal> ApiService::Authenticate(const ApiRequest& request) {
  const auto now = std::chrono::steady_clock::now();
  std::chrono::seconds retry_after{0};
  // Over budget is a throttle, not a lock-out: what can be checked here still is.
  const bool throttled = limiter_.Blocked(request.client_address, now, &retry_after);
  auto too_many = [&](std::string_view message) {
    ApiResponse response = Error(429, "too_many_requests", message, request);
    response.headers.emplace_back("Retry-After", std::to_string(retry_after.count()));
    return response;
  };
  std::string_view authorization = request.authorization;
  absl::StatusOr<identity::Principal> principal = absl::UnauthenticatedError(
      "missing bearer token: send \"Authorization: Bearer <OIDC access token>\"");
  std::string_view reason = "missing_token";
  if (authorization.size() > 7 &&
      absl::AsciiStrToLower(std::string(authorization.substr(0, 7))) == "bearer ") {
    std::string_view token = authorization.substr(7);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) {
      token.remove_prefix(1);
    }
    principal = authenticate_(token, identity::IdpAccess::kLocalOnly);
    if (!principal.ok() && identity::NeedsIdp(principal.status())) {
      if (throttled) {
        // Nothing is sent to the IdP for an address that is over its budget.
        CountAuthFailure("throttled");
        spdlog::info("api request={} peer={}: throttled before contacting the IdP: {}",
                     request.request_id, LogEscape(request.client_address, 64),
                     LogEscape(MessageOf(principal.status()), 1024));
        return too_many(
            "too many failed authentications from this address; a token that needs the "
            "identity provider (unknown key, opaque token) is not checked until Retry-After");
      }
      std::optional<SlowCalls::Slot> slot = slow_calls_.TryAcquire();
      if (!slot.has_value()) {
        if (busy_ != nullptr) {
          busy_->Add({{"dependency", "idp"}}).Increment();
        }
        ApiResponse response = Error(
            503, "busy", "too many requests are waiting for the identity provider; retry shortly",
            request);
        response.headers.emplace_back("Retry-After", "1");
        return response;
      }
      principal = authenticate_(token, identity::IdpAccess::kAllowed);
    }
    reason = "invalid_token";
  }
  if (principal.ok()) {
    return *std::move(principal);
  }
  // Every failure counts against the address, IdP-unavailable and introspection failures
  // included: an opaque token that makes the gateway wait on a slow IdP costs its sender.
  const bool unavailable = absl::IsUnavailable(principal.status());
  if (unavailable) {
    reason = "idp_unavailable";
  }
  limiter_.RecordFailure(request.client_address, now);
  CountAuthFailure(reason);
  spdlog::info("api request={} peer={}: authentication failed ({}): {}", request.request_id,
               LogEscape(request.client_address, 64), reason,
               LogEscape(MessageOf(principal.status()), 1024));
  if (throttled) {
    return too_many("too many failed authentications from this address; try again later");
  }
  if (unavailable) {
    return Error(503, "unavailable", MessageOf(principal.status()), request);
  }
  ApiResponse response = Error(401, "invalid_token", MessageOf(principal.status()), request);
  response.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
  return response;
}

ApiResponse ApiService::Handle(const ApiRequest& request) {
  const std::string_view target = request.target;
  const std::string_view path = target.substr(0, target.find('?'));
  // /v1/grants, /v1/grants/{id}, /v1/grants/{id}/approve|deny, /v1/sessions…, /v1/approvals…
  enum class Route { kGrants, kGrant, kGrantVote, kSessions, kApprovals, kFetch } route;
  std::string_view grant_id;
  bool approve = false;
  std::string_view allow;
  if (path == kGrantsPath) {
    route = Route::kGrants;
    allow = "POST";
  } else if (path.starts_with(Cat(kGrantsPath, "/")) && path.size() > kGrantsPath.size() + 1) {
    grant_id = path.substr(kGrantsPath.size() + 1);
    const size_t slash = grant_id.find('/');
    if (slash == std::string_view::npos) {
      route = Route::kGrant;
      allow = "GET, DELETE";
    } else if (grant_id.substr(slash) == "/approve" || grant_id.substr(slash) == "/deny") {
      approve = grant_id.substr(slash) == "/approve";
      grant_id = grant_id.substr(0, slash);
      route = Route::kGrantVote;
      allow = "POST";
    } else {
      return Error(404, "not_found", Cat("no such endpoint: ", path.substr(0, 128)), request);
    }
  } else if (path == kSessionsPath || path.starts_with(Cat(kSessionsPath, "/"))) {
    route = Route::kSessions;
    allow = "GET";
  } else if (path.starts_with(Cat(kConnectionsPath, "/"))) {
    route = Route::kFetch;
    allow = "GET";
  } else if (path == kApprovalsPath || path.starts_with(Cat(kApprovalsPath, "/"))) {
    route = Route::kApprovals;
    allow = path.ends_with("/approve") || path.ends_with("/deny") ? "POST" : "GET";
  } else {
    return Error(404, "not_found", Cat("no such endpoint: ", path.substr(0, 128)), request);
  }
  bool allowed = false;
  for (absl::string_view method :
       absl::StrSplit(absl::string_view(allow.data(), allow.size()), ", ")) {
    allowed = allowed || method == request.method;
  }
  if (!allowed) {
    ApiResponse response =
        Error(405, "method_not_allowed",
              Cat(request.method, " is not allowed on ", path.substr(0, 128)), request);
    response.headers.emplace_back("Allow", std::string(allow));
    return response;
  }

  std::variant<ApiResponse, identity::Principal> authenticated = Authenticate(request);
  if (ApiResponse* refused = std::get_if<ApiResponse>(&authenticated)) {
    return std::move(*refused);
  }
  const identity::Principal* principal = &std::get<identity::Principal>(authenticated);
  switch (route) {
    case Route::kSessions:
      return Sessions(request, *principal, path.substr(kSessionsPath.size()));
    case Route::kApprovals:
      return Approvals(request, *principal, path.substr(kApprovalsPath.size()));
    case Route::kGrants:
      return CreateGrant(request, *principal);
    case Route::kFetch:
      return FetchTrace(request, *principal, path.substr(kConnectionsPath.size() + 1));
    case Route::kGrantVote:
      return DecideGrant(request, *principal, grant_id, approve);
    case Route::kGrant:
      break;
  }
  return request.method == "GET" ? GetGrant(request, *principal, grant_id)
                                 : RevokeGrant(request, *principal, grant_id);
}

ApiResponse ApiService::CreateGrant(const ApiRequest& request,
                                    const identity::Principal& principal) {
  const json body = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return Error(400, "bad_request",
                 "the body must be a JSON object like "
                 "{\"connection\":\"traces-pg\",\"trace_id\":\"…\",\"reason\":\"…\"}",
                 request);
  }
  for (const auto& [key, value] : body.items()) {
    if (key != "connection" && key != "trace_id" && key != "reason") {
      return Error(
          400, "bad_request",
          Cat("unknown field \"", key.substr(0, 64), "\" (expected connection, trace_id, reason)"),
          request);
    }
    if (!value.is_string()) {
      return Error(400, "bad_request", Cat("field \"", key, "\" must be a string"), request);
    }
  }
  if (!body.contains("connection") || !body.contains("trace_id")) {
    return Error(400, "bad_request", "connection and trace_id are required", request);
  }
  const std::string connection = body["connection"].get<std::string>();
  const std::string trace_id = body["trace_id"].get<std::string>();
  const std::string reason = body.value("reason", std::string());
  if (absl::Status valid = ValidateTraceId(trace_id); !valid.ok()) {
    return Error(400, kInvalidTraceIdCode, MessageOf(valid), request);
  }
  if (reason.size() > kMaxReasonBytes) {
    return Error(400, "bad_request", Cat("reason is longer than ", kMaxReasonBytes, " bytes"),
                 request);
  }
  std::variant<ApiResponse, Issued> issued =
      Issue(request, principal, connection, trace_id, reason);
  if (ApiResponse* refused = std::get_if<ApiResponse>(&issued)) {
    return std::move(*refused);
  }
  return IssuedResponse(std::get<Issued>(issued));
}

std::variant<ApiResponse, ApiService::Issued> ApiService::Issue(
    const ApiRequest& request, const identity::Principal& principal, const std::string& connection,
    const std::string& trace_id, const std::string& reason) {
  // Every caller validates first; this is the last line before anything is stored.
  if (absl::Status valid = ValidateTraceId(trace_id); !valid.ok()) {
    return Error(400, kInvalidTraceIdCode, MessageOf(valid), request);
  }
  const config::Connection* target = nullptr;
  for (const config::Connection& c : config_->connections) {
    if (c.name == connection) {
      target = &c;
    }
  }
  if (target == nullptr) {
    return Error(404, "not_found", Cat("no connection named \"", connection.substr(0, 64), "\""),
                 request);
  }

  const policy::Decision decision = policy_.Evaluate(
      {.principal = principal, .connection = connection, .trace_id = trace_id, .reason = reason});
  spdlog::info("api request={} principal={} connection={} trace={}: {} ({})", request.request_id,
               LogEscape(principal.Describe()), LogEscape(connection, 64), LogEscape(trace_id, 64),
               policy::OutcomeName(decision.outcome),
               decision.rule.empty() ? "no rule" : decision.rule);
  bool needs_approval = decision.outcome == policy::Decision::Outcome::kApprovalRequired;
  if (!decision.allowed() && !needs_approval) {
    return Error(403, "forbidden", decision.reason, request);
  }
  std::string approval_reason = decision.reason;
  if (decision.allowed() && decision.terms.approve_if_risk_at_least.has_value()) {
    // Risk decides: read it with the gateway's own credential. Unknown risk is not low risk.
    // The query may take seconds: it holds one of the few slow-call slots (slow_calls.h).
    std::optional<SlowCalls::Slot> slot = slow_calls_.TryAcquire();
    if (!slot.has_value()) {
      if (busy_ != nullptr) {
        busy_->Add({{"dependency", "risk"}}).Increment();
      }
      spdlog::info("api request={} connection={}: busy, {} slow calls in flight",
                   request.request_id, LogEscape(connection, 64), slow_calls_.in_use());
      ApiResponse response =
          Error(503, "busy",
                "too many requests are waiting for a trace's risk; no grant was issued, retry "
                "shortly",
                request);
      response.headers.emplace_back("Retry-After", "1");
      return response;
    }
    absl::StatusOr<double> risk =
        approvals::QueryRisk(target->backend, target->risk_query, trace_id, kRiskQueryTimeout);
    if (!risk.ok()) {
      // The backend's text (and whether the trace exists) is for the log only: every risk
      // failure looks the same to the caller.
      spdlog::warn("api request={} connection={} trace={}: {}", request.request_id,
                   LogEscape(connection, 64), LogEscape(trace_id, 64),
                   LogEscape(MessageOf(risk.status()), 1024));
      return Error(503, "risk_unavailable",
                   Cat("the trace's risk could not be evaluated; no grant was issued (rule ",
                       decision.rule, " needs it)"),
                   request);
    }
    spdlog::info("api request={} connection={} trace={}: risk {} (approval at {})",
                 request.request_id, LogEscape(connection, 64), LogEscape(trace_id, 64), *risk,
                 *decision.terms.approve_if_risk_at_least);
    if (*risk >= *decision.terms.approve_if_risk_at_least) {
      needs_approval = true;
      // Approvers see the score in the request; the requester does not (HideRiskScore).
      approval_reason = Cat("rule ", decision.rule, " requires approval: trace risk ", *risk,
                            " is at least ", *decision.terms.approve_if_risk_at_least);
    }
  }
  if (needs_approval && approvals_ == nullptr) {
    return Error(503, "unavailable", Cat(approval_reason, "; approvals are not available"),
                 request);
  }
  if (needs_approval) {
    // One requester's flood must not bury everyone else's requests: past
    // approvals.max_pending_per_requester nothing is stored (no grant, request or webhook).
    if (absl::Status room = approvals_->AdmitRequester(principal); !room.ok()) {
      return absl::IsResourceExhausted(room)
                 ? Error(429, "too_many_pending", MessageOf(room), request)
                 : StatusResponse(room, request);
    }
  }

  grants::GrantRequest grant_request{
      .principal = principal,
      .connection = connection,
      .trace_id = trace_id,
      .reason = reason,
      .client_address = request.client_address,
      .terms = {.rule = decision.rule,
                .ttl = decision.terms.ttl,
                .uses = decision.terms.uses,
                .max_session = decision.terms.max_session,
                .max_rows = decision.terms.max_rows,
                .max_bytes = decision.terms.max_bytes,
                .masking_profile = decision.terms.masking_profile,
                .require_approval = needs_approval,
                .approval_timeout = config_->approvals.timeout},
  };
  absl::StatusOr<grants::IssuedGrant> issued = grants_.Issue(grant_request);
  if (!issued.ok()) {
    return StoreError(issued.status(), request);
  }
  Issued out{.issued = *std::move(issued), .approval = std::nullopt, .target = target};
  if (needs_approval) {
    absl::StatusOr<store::ApprovalRequest> opened =
        approvals_->OpenForGrant(out.issued.grant, principal.Describe(), approval_reason);
    if (!opened.ok()) {
      // Without its request nobody could approve the grant: withdraw it (fail closed). (Over
      // the cap here: another request of the same requester won the race since AdmitRequester.)
      (void)grants_.Revoke(out.issued.grant.id, "tracegate");
      return absl::IsResourceExhausted(opened.status())
                 ? Error(429, "too_many_pending", MessageOf(opened.status()), request)
                 : StatusResponse(opened.status(), request);
    }
    out.approval = *std::move(opened);
  }
  return out;
}

ApiResponse ApiService::IssuedResponse(const Issued& issued_grant) {
  const grants::IssuedGrant* issued = &issued_grant.issued;
  const std::optional<store::ApprovalRequest>& approval = issued_grant.approval;
  const config::Connection* target = issued_grant.target;
  const std::string& connection = target->name;
  const auto [host, port] = listener_address_(connection);
  const std::string& dbname = target->backend.database;
  const bool tls = !config_->tls.cert_file.empty();
  const std::string authority =
      Cat(host.find(':') == std::string::npos ? host : Cat("[", host, "]"), ":", port);
  json out = GrantJson(issued->grant);
  if (target->type == config::ConnectionType::kHttp) {
    out["http"] =
        json{{"bearer", issued->bearer}, {"url", Cat(tls ? "https://" : "http://", authority)}};
  } else {
    out["postgres"] = json{
        {"host", host},
        {"port", port},
        {"user", issued->postgres_user},
        {"password", issued->secret},
        {"dbname", dbname},
        {"sslmode", tls ? "require" : "disable"},
        {"uri",
         Cat("postgresql://", UriEncode(issued->postgres_user), ":", UriEncode(issued->secret), "@",
             host.find(':') == std::string::npos ? host : Cat("[", host, "]"), ":", port, "/",
             UriEncode(dbname), "?sslmode=", tls ? "require" : "disable")},
    };
    out["http"] = json{{"bearer", issued->bearer}};
  }
  if (approval.has_value()) {
    out["approvers"] = approval->approver_groups;
    out["approvals_required"] = approval->required;
    out["approval"] = HideRiskScore(approvals::ViewJson({*approval, {}}));
  }
  ApiResponse response{.status = approval.has_value() ? 202u : 201u, .body = DumpJson(out)};
  response.headers.emplace_back("Location", Cat(kGrantsPath, "/", issued->grant.id));
  response.headers.emplace_back("Cache-Control", "no-store");  // the body holds a secret
  return response;
}

absl::StatusOr<store::GrantRecord> ApiService::OwnGrant(const identity::Principal& principal,
                                                        std::string_view id) {
  absl::StatusOr<store::GrantRecord> grant = grants_.Get(id);
  if (!grant.ok()) {
    return grant.status();
  }
  if (grant->issuer != principal.issuer || grant->subject != principal.subject) {
    return absl::NotFoundError(Cat("no grant ", id.substr(0, 64), " for this caller"));
  }
  return grant;
}

ApiResponse ApiService::GetGrant(const ApiRequest& request, const identity::Principal& principal,
                                 std::string_view id) {
  const size_t question = request.target.find('?');
  absl::StatusOr<std::map<std::string, std::string>> query = ParseQuery(
      question == std::string::npos ? std::string_view()
                                    : std::string_view(request.target).substr(question + 1));
  if (!query.ok()) {
    return Error(400, "bad_request", MessageOf(query.status()), request);
  }
  std::optional<std::chrono::milliseconds> wait;
  for (const auto& [name, value] : *query) {
    if (name != "wait") {
      return Error(400, "bad_request",
                   Cat("unknown query parameter \"", name.substr(0, 64), "\" (expected wait)"),
                   request);
    }
    wait = ParseWait(value);
    if (!wait.has_value()) {
      return Error(400, "bad_request", "wait must be a duration such as 30s, 1500ms or 1m",
                   request);
    }
  }
  absl::StatusOr<store::GrantRecord> grant = OwnGrant(principal, id);
  if (!grant.ok()) {
    return StoreError(grant.status(), request);
  }
  json out = GrantJson(*grant);
  if (approvals_ != nullptr) {
    absl::StatusOr<approvals::ApprovalView> view = approvals_->Get(grant->id);
    if (view.ok()) {
      out["approval"] = HideRiskScore(approvals::ViewJson(*view));
    } else if (!absl::IsNotFound(view.status())) {
      return StatusResponse(view.status(), request);
    }
  }
  ApiResponse response{.status = 200, .body = DumpJson(out)};
  if (wait.has_value() && wait->count() > 0 && request.may_wait &&
      grant->state == store::GrantState::kPending) {
    response.wait = LongPoll{.grant_id = grant->id,
                             .timeout = std::min<std::chrono::milliseconds>(*wait, kMaxWait)};
  }
  return response;
}

ApiResponse ApiService::DecideGrant(const ApiRequest& request, const identity::Principal& principal,
                                    std::string_view id, bool approve) {
  if (approvals_ == nullptr) {
    return Error(404, "not_found", "approvals are not enabled", request);
  }
  absl::StatusOr<approvals::ApprovalView> pending = approvals_->PendingForGrant(id);
  if (absl::IsNotFound(pending.status())) {
    // Nothing waits: a vote on the grant's own (settled) request says why it cannot count.
    return Vote(request, principal, id, approve);
  }
  if (!pending.ok()) {
    return StatusResponse(pending.status(), request);
  }
  return Vote(request, principal, pending->request.id, approve);
}

namespace {

class GrantChangeWatch final : public ApiService::ChangeWatch {
 public:
  std::unique_ptr<grants::GrantService::Watch> grant;
  std::unique_ptr<approvals::ApprovalService::Watch> approval;
};

}  // namespace

std::unique_ptr<ApiService::ChangeWatch> ApiService::WatchGrant(const std::string& grant_id,
                                                                std::function<void()> on_change) {
  auto watch = std::make_unique<GrantChangeWatch>();
  // Revocation and expiry arrive through the grant, decisions through its approval (and the
  // grant too); whichever comes first wakes the caller, once.
  auto fire = std::make_shared<std::function<void()>>(std::move(on_change));
  auto once = std::make_shared<std::once_flag>();
  watch->grant = grants_.WatchGrant(
      grant_id, [fire, once](store::GrantState) { std::call_once(*once, *fire); });
  if (approvals_ != nullptr) {
    watch->approval = approvals_->WaitFor(
        grant_id, [fire, once](const store::ApprovalRequest&) { std::call_once(*once, *fire); });
  }
  return watch;
}

ApiResponse ApiService::RevokeGrant(const ApiRequest& request, const identity::Principal& principal,
                                    std::string_view id) {
  absl::StatusOr<store::GrantRecord> grant = OwnGrant(principal, id);
  if (!grant.ok()) {
    return StoreError(grant.status(), request);
  }
  if (absl::Status revoked = grants_.Revoke(id, principal.Describe()); !revoked.ok()) {
    return StoreError(revoked, request);
  }
  spdlog::info("api request={} principal={}: revoked grant {}", request.request_id,
               LogEscape(principal.Describe()), LogEscape(id, 64));
  if (approvals_ != nullptr) {
    // Whatever of the grant still waits for approvers is moot: close it, so that it leaves
    // their queue and a vote gets the answer any settled request gets. The grant is revoked
    // either way; a store failure here leaves the request to expire with it (logged).
    absl::StatusOr<size_t> closed =
        approvals_->CancelForGrant(id, principal.Describe(), "its grant was revoked");
    if (!closed.ok()) {
      spdlog::error("api request={}: grant {} revoked, but its approval requests stay open: {}",
                    request.request_id, LogEscape(id, 64),
                    LogEscape(MessageOf(closed.status()), 1024));
    }
  }
  grant = grants_.Get(id);
  if (!grant.ok()) {
    return StoreError(grant.status(), request);
  }
  return ApiResponse{.status = 200, .body = DumpJson(GrantJson(*grant))};
}

}  // namespace tracegate::httpapi
