#pragma once
// The control-plane REST API, without its transport (api_server.h serves it over HTTPS):
//
//   POST   /v1/grants        {"connection","trace_id","reason"} → 201 grant + one-time credential,
//                            or 202 the same, pending, when the rule requires approval
//   GET    /v1/grants/{id}[?wait=30s]
//                            → 200 the grant (never the credential) and its approval; only its
//                            requester. With wait (up to 60s) a pending grant long-polls until
//                            it is decided.
//   DELETE /v1/grants/{id}   → 200 the revoked grant; only its requester
//   POST   /v1/grants/{id}/approve|deny  {"comment": "…"}
//                            → 200 the approval after this vote: the grant's own if pending,
//                            else its held result's; approvers only, never the requester
//   GET    /v1/approvals[?state=pending|approved|denied|expired|cancelled|all&limit=&after=
//                            &connection=&trace_id=&requester=me|<issuer>:<subject>]
//                            → 200 {"approvals":[…],"next":"<cursor>"}: the requests the caller
//                            may decide or has made, newest first, a page at a time
//   GET    /v1/approvals/{id}, POST /v1/approvals/{id}/approve|deny: one request; 404 alike
//                            for an unknown id and one the caller may not see
//   GET    /v1/connections/{name}/traces/{trace_id}[?reason=]
//                            → 200 the masked trace as JSON, in one call: a grant is minted
//                            under the same policy, used by the gateway itself (the
//                            connection's fetch_query or fetch_route), recorded and completed.
//                            202 the pending grant when the rule needs approval; once approved,
//                            repeat the call with `X-Tracegate-Grant: <its bearer>`.
//   GET    /v1/sessions?trace=&subject=&connection=&outcome=&since=&until=&limit=
//                            → 200 recorded sessions, newest first; auditors only
//   GET    /v1/sessions/{id}        → 200 the session's index entry; auditors only
//   GET    /v1/sessions/{id}/events → 200 its replay (statements, rows as sent); auditors only
//
// Every request carries `Authorization: Bearer <OIDC access token>`. Errors are JSON:
// {"error": "<code>", "message": "<why>", "request_id": "<id>"}, with the HTTP status that fits
// (400 bad request, 401 invalid token, 403 policy, 404, 405, 413, 429 too many failed
// authentications from one address or `too_many_pending` approval requests of one requester,
// 503 state store down or `busy`). Messages never contain a
// token, a credential or a backend password.
//
// Failed authentications (issue 17 item 4) are counted per client address (client_address.h:
// the TCP peer, or what a trusted proxy forwarded), IdP-unavailable and introspection failures
// included. An address over its budget is throttled, not locked out: its tokens are still
// checked where that is local (the token cache, or a JWT whose key is loaded), so a valid one
// is served; only what would contact the IdP (an unknown kid's JWKS fetch, introspection of an
// opaque token) and every failure are answered 429 with Retry-After, without asking the IdP.
// Counted in tracegate_auth_failures_total{path="api",reason}.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "approvals/approvals.h"
#include "audit/recorder.h"
#include "config/config.h"
#include "grants/grants.h"
#include "httpapi/auth_limiter.h"
#include "httpapi/slow_calls.h"
#include "identity/principal.h"
#include "identity/token_validator.h"
#include "policy/policy.h"

namespace tracegate::httpapi {

struct ApiRequest {
  std::string method;         // "GET", "POST", ...
  std::string target;         // path and query
  std::string authorization;  // the Authorization header, verbatim
  std::string body;
  std::string client_address;
  std::string request_id;
  // False on the transport's second look at a long-poll: answer now, do not ask to wait.
  bool may_wait = true;
  // The X-Tracegate-Grant header (one-call fetch with an approved grant), verbatim.
  std::string grant_credential;
};

// A one-call fetch the transport runs (it waits on I/O) once the grant is redeemed.
struct FetchJob {
  store::GrantRecord grant;  // in_use: the fetch must end its use
  config::ConnectionType type = config::ConnectionType::kPostgres;
  std::string client_address;
  std::string request_id;
};

// What the fetch produced: `body` is the masked trace (JSON) when `error` is empty, else a
// JSON error object {"error", "message"} with `status`.
struct FetchOutcome {
  unsigned status = 200;
  std::string body;
  std::string error;
  std::map<std::string, uint64_t> masked;
  std::string session_id;
  std::string approval_id;  // the result was held for this approval request (and released)
};

// A long-poll: the transport waits (without a thread) until the grant changes or `timeout`
// passes, then asks again with may_wait = false.
struct LongPoll {
  std::string grant_id;
  std::chrono::milliseconds timeout{0};
};

struct ApiResponse {
  unsigned status = 200;
  std::string body;  // JSON
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<LongPoll> wait;   // set: this answer stands only if nothing changes meanwhile
  std::optional<FetchJob> fetch;  // set: the transport runs it and answers FetchResponse(...)
};

// The answer to a one-call fetch: {"grant_id", "connection", "trace_id", "session_id",
// "masked": {entity: n}, "trace": <the masked trace>} or the error as it came.
ApiResponse FetchResponse(const FetchJob& job, const FetchOutcome& outcome,
                          const ApiRequest& request);

// Validates a bearer token (identity::TokenValidator in production). With kLocalOnly it must
// not contact the IdP and answers identity::NeedsIdp(status) when only the IdP could decide.
using Authenticator = std::function<absl::StatusOr<identity::Principal>(
    std::string_view token, identity::IdpAccess access)>;
// Where a connection's listener (Postgres or HTTP) can be reached by clients ("host", port).
using ListenerAddress = std::function<std::pair<std::string, uint16_t>(const std::string& name)>;

class ApiService {
 public:
  // `sessions` (may be null: recording disabled) is the state store holding the session
  // index; the log is read from config->audit.dir. `recorder` (may be null) keeps the
  // one-call fetch's refused X-Tracegate-Grant bearers as evidence.
  ApiService(std::shared_ptr<const config::Config> config, Authenticator authenticate,
             grants::GrantService& grants, ListenerAddress listener_address, grants::Clock clock,
             store::StateStore* sessions = nullptr, approvals::ApprovalService* approvals = nullptr,
             audit::Recorder* recorder = nullptr, prometheus::Registry* metrics = nullptr);

  ApiResponse Handle(const ApiRequest& request);

  // For LongPoll: `on_change` runs once (on any thread) when the grant is decided, revoked or
  // expires. Destroy the result to stop watching.
  class ChangeWatch {
   public:
    virtual ~ChangeWatch() = default;
  };
  [[nodiscard]] std::unique_ptr<ChangeWatch> WatchGrant(const std::string& grant_id,
                                                        std::function<void()> on_change);

 private:
  // The caller's principal, or the refusal (401, 429, 503) to send; counts failures.
  std::variant<ApiResponse, identity::Principal> Authenticate(const ApiRequest& request);
  void CountAuthFailure(std::string_view reason);
  ApiResponse CreateGrant(const ApiRequest& request, const identity::Principal& principal);
  // The policy decision, risk, grant and approval request behind POST /v1/grants and the
  // one-call fetch. An error response, or the issued grant.
  struct Issued {
    grants::IssuedGrant issued;
    std::optional<store::ApprovalRequest> approval;
    const config::Connection* target = nullptr;
  };
  std::variant<ApiResponse, Issued> Issue(const ApiRequest& request,
                                          const identity::Principal& principal,
                                          const std::string& connection,
                                          const std::string& trace_id, const std::string& reason);
  // The 201/202 body of an issued grant (credential included).
  ApiResponse IssuedResponse(const Issued& issued);
  // GET /v1/connections/{name}/traces/{trace_id} (api_fetch.cpp).
  ApiResponse FetchTrace(const ApiRequest& request, const identity::Principal& principal,
                         std::string_view rest);
  ApiResponse GetGrant(const ApiRequest& request, const identity::Principal& principal,
                       std::string_view id);
  ApiResponse RevokeGrant(const ApiRequest& request, const identity::Principal& principal,
                          std::string_view id);
  // /v1/sessions[/{id}[/events]] (api_sessions.cpp): `rest` is what follows /v1/sessions.
  ApiResponse Sessions(const ApiRequest& request, const identity::Principal& principal,
                       std::string_view rest);
  // POST /v1/grants/{id}/approve|deny.
  ApiResponse DecideGrant(const ApiRequest& request, const identity::Principal& principal,
                          std::string_view id, bool approve);
  // /v1/approvals[/{id}[/approve|deny]] (api_approvals.cpp): `rest` follows /v1/approvals.
  ApiResponse Approvals(const ApiRequest& request, const identity::Principal& principal,
                        std::string_view rest);
  ApiResponse Vote(const ApiRequest& request, const identity::Principal& principal,
                   std::string_view request_id, bool approve);
  // The grant if `principal` requested it; a 404 response otherwise (existence is not leaked).
  absl::StatusOr<store::GrantRecord> OwnGrant(const identity::Principal& principal,
                                              std::string_view id);

  // A refused X-Tracegate-Grant (or a grant the fetch could not redeem), as evidence.
  void FetchRefused(const ApiRequest& request, const identity::Principal& principal,
                    std::string_view reason, std::string_view connection, std::string_view bearer);

  std::shared_ptr<const config::Config> config_;
  Authenticator authenticate_;
  grants::GrantService& grants_;
  ListenerAddress listener_address_;
  grants::Clock clock_;
  store::StateStore* sessions_;
  approvals::ApprovalService* approvals_;
  audit::Recorder* recorder_;
  policy::PolicyEngine policy_;
  AuthLimiter limiter_;
  SlowCalls slow_calls_;  // risk queries and IdP calls in flight (slow_calls.h)
  prometheus::Family<prometheus::Counter>* auth_failures_ = nullptr;
  prometheus::Family<prometheus::Counter>* busy_ = nullptr;
};

// The JSON error body, also used by the transport for errors it produces itself.
std::string ErrorBody(std::string_view code, std::string_view message, std::string_view request_id);
ApiResponse ErrorResponse(unsigned status, std::string_view code, std::string_view message,
                          const ApiRequest& request);
// The state store's and the approval service's errors as HTTP: NotFound 404,
// PermissionDenied 403, FailedPrecondition / AlreadyExists 409, InvalidArgument 400,
// anything else 503 (logged, not shown).
ApiResponse StatusResponse(const absl::Status& status, const ApiRequest& request);
// RFC 3339 with milliseconds, UTC.
std::string Rfc3339(std::chrono::system_clock::time_point t);
// An approval request's `detail` as its requester may see it: the trace's risk score stays
// with those who decide ("rule r requires approval: trace risk 0.9 is at least 0.5" → the
// same without the numbers); any other detail is returned unchanged.
std::string RequesterDetail(std::string_view detail);

}  // namespace tracegate::httpapi
