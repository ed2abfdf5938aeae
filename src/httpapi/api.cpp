#include "httpapi/api.h"

#include <fmt/chrono.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "common/status.h"
#include "common/strings.h"

namespace tracegate::httpapi {

using json = nlohmann::json;

namespace {

constexpr std::string_view kGrantsPath = "/v1/grants";
constexpr std::string_view kSessionsPath = "/v1/sessions";
constexpr size_t kMaxReasonBytes = 1024;

std::string Rfc3339(std::chrono::system_clock::time_point t) {
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z",
                     fmt::gmtime(std::chrono::system_clock::to_time_t(t)), millis);
}

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

// The policy's and the state store's errors, as HTTP.
ApiResponse StoreError(const absl::Status& status, const ApiRequest& request) {
  if (absl::IsNotFound(status)) {
    return Error(404, "not_found", MessageOf(status), request);
  }
  if (absl::IsFailedPrecondition(status) || absl::IsPermissionDenied(status)) {
    return Error(409, "conflict", MessageOf(status), request);
  }
  spdlog::error("api request={}: state store: {}", request.request_id, MessageOf(status));
  return Error(503, "unavailable", "the state store is unavailable; nothing was changed", request);
}

}  // namespace

ApiResponse ErrorResponse(unsigned status, std::string_view code, std::string_view message,
                          const ApiRequest& request) {
  return ApiResponse{.status = status, .body = ErrorBody(code, message, request.request_id)};
}

std::string ErrorBody(std::string_view code, std::string_view message,
                      std::string_view request_id) {
  return json{{"error", code}, {"message", message}, {"request_id", request_id}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

ApiService::ApiService(std::shared_ptr<const config::Config> config, Authenticator authenticate,
                       grants::GrantService& grants, ListenerAddress listener_address,
                       grants::Clock clock, store::StateStore* sessions)
    : config_(std::move(config)),
      authenticate_(std::move(authenticate)),
      grants_(grants),
      listener_address_(std::move(listener_address)),
      clock_(std::move(clock)),
      sessions_(sessions),
      policy_(config_),
      limiter_(config_->api ? config_->api->auth_failures_per_minute : 30) {}

ApiResponse ApiService::Handle(const ApiRequest& request) {
  const std::string_view target = request.target;
  const std::string_view path = target.substr(0, target.find('?'));
  const bool collection = path == kGrantsPath;
  const bool item = path.starts_with(Cat(kGrantsPath, "/")) &&
                    path.size() > kGrantsPath.size() + 1 &&
                    path.find('/', kGrantsPath.size() + 1) == std::string_view::npos;
  const bool sessions = path == kSessionsPath || path.starts_with(Cat(kSessionsPath, "/"));
  if (!collection && !item && !sessions) {
    return Error(404, "not_found", Cat("no such endpoint: ", path.substr(0, 128)), request);
  }
  if ((collection && request.method != "POST") ||
      (item && request.method != "GET" && request.method != "DELETE") ||
      (sessions && request.method != "GET")) {
    ApiResponse response =
        Error(405, "method_not_allowed",
              Cat(request.method, " is not allowed on ", path.substr(0, 128)), request);
    response.headers.emplace_back("Allow", collection ? "POST" : sessions ? "GET" : "GET, DELETE");
    return response;
  }

  const auto now = std::chrono::steady_clock::now();
  std::chrono::seconds retry_after{0};
  if (limiter_.Blocked(request.client_address, now, &retry_after)) {
    ApiResponse response =
        Error(429, "too_many_requests",
              "too many failed authentications from this address; try again later", request);
    response.headers.emplace_back("Retry-After", std::to_string(retry_after.count()));
    return response;
  }
  std::string_view authorization = request.authorization;
  absl::StatusOr<identity::Principal> principal = absl::UnauthenticatedError(
      "missing bearer token: send \"Authorization: Bearer <OIDC access token>\"");
  if (authorization.size() > 7 &&
      absl::AsciiStrToLower(std::string(authorization.substr(0, 7))) == "bearer ") {
    std::string_view token = authorization.substr(7);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) {
      token.remove_prefix(1);
    }
    principal = authenticate_(token);
  }
  if (!principal.ok() && absl::IsUnavailable(principal.status())) {
    // The issuer's keys cannot be had (IdP down past jwks_stale_max): a refusal, but not the
    // caller's failure, so it does not count against its address.
    spdlog::warn("api request={} peer={}: cannot validate: {}", request.request_id,
                 request.client_address, MessageOf(principal.status()));
    return Error(503, "unavailable", MessageOf(principal.status()), request);
  }
  if (!principal.ok()) {
    limiter_.RecordFailure(request.client_address, now);
    spdlog::info("api request={} peer={}: authentication failed: {}", request.request_id,
                 request.client_address, MessageOf(principal.status()));
    ApiResponse response = Error(401, "invalid_token", MessageOf(principal.status()), request);
    response.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
    return response;
  }
  if (sessions) {
    return Sessions(request, *principal, path.substr(kSessionsPath.size()));
  }
  if (collection) {
    return CreateGrant(request, *principal);
  }
  const std::string_view id = path.substr(kGrantsPath.size() + 1);
  return request.method == "GET" ? GetGrant(request, *principal, id)
                                 : RevokeGrant(request, *principal, id);
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
  if (reason.size() > kMaxReasonBytes) {
    return Error(400, "bad_request", Cat("reason is longer than ", kMaxReasonBytes, " bytes"),
                 request);
  }
  const config::PostgresConnection* target = nullptr;
  for (const config::PostgresConnection& c : config_->connections) {
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
               principal.Describe(), connection, trace_id.substr(0, 64),
               policy::OutcomeName(decision.outcome),
               decision.rule.empty() ? "no rule" : decision.rule);
  if (decision.outcome == policy::Decision::Outcome::kApprovalRequired) {
    // The approval flow (pending grants, approvers) is a later issue; until then such a rule
    // refuses clearly instead of granting without the consent it asks for.
    return Error(403, "approval_required",
                 Cat(decision.reason, "; approvals are not available in this version"), request);
  }
  if (!decision.allowed()) {
    return Error(403, "forbidden", decision.reason, request);
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
                .require_approval = false},
  };
  absl::StatusOr<grants::IssuedGrant> issued = grants_.Issue(grant_request);
  if (!issued.ok()) {
    return StoreError(issued.status(), request);
  }
  const auto [host, port] = listener_address_(connection);
  const std::string& dbname = target->backend.database;
  const bool tls = !config_->tls.cert_file.empty();
  json out = GrantJson(issued->grant);
  out["postgres"] = json{
      {"host", host},
      {"port", port},
      {"user", issued->postgres_user},
      {"password", issued->secret},
      {"dbname", dbname},
      {"sslmode", tls ? "require" : "disable"},
      {"uri", Cat("postgresql://", UriEncode(issued->postgres_user), ":", UriEncode(issued->secret),
                  "@", host.find(':') == std::string::npos ? host : Cat("[", host, "]"), ":", port,
                  "/", UriEncode(dbname), "?sslmode=", tls ? "require" : "disable")},
  };
  out["http"] = json{{"bearer", issued->bearer}};
  ApiResponse response{.status = 201, .body = out.dump()};
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
  absl::StatusOr<store::GrantRecord> grant = OwnGrant(principal, id);
  if (!grant.ok()) {
    return StoreError(grant.status(), request);
  }
  return ApiResponse{.status = 200, .body = GrantJson(*grant).dump()};
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
               principal.Describe(), id);
  grant = grants_.Get(id);
  if (!grant.ok()) {
    return StoreError(grant.status(), request);
  }
  return ApiResponse{.status = 200, .body = GrantJson(*grant).dump()};
}

}  // namespace tracegate::httpapi
