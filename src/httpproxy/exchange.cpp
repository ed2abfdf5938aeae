#include "httpproxy/exchange.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "httproute/trace_check.h"

namespace tracegate::httpproxy {

namespace {

// application/json, application/<anything>+json, with or without parameters.
bool IsJson(std::string_view content_type) {
  std::string type = absl::AsciiStrToLower(absl::string_view(
      content_type.data(), content_type.substr(0, content_type.find(';')).size()));
  type = std::string(absl::StripAsciiWhitespace(type));
  return type == "application/json" ||
         (absl::StartsWith(type, "application/") && absl::EndsWith(type, "+json"));
}

}  // namespace

std::string ErrorJson(std::string_view code, std::string_view message) {
  return nlohmann::json{{"error", code}, {"message", message}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Outcome Refuse(unsigned status, std::string_view code, std::string_view message) {
  return Outcome{.status = status,
                 .body = ErrorJson(code, message),
                 .error = std::string(code),
                 .message = std::string(message)};
}

Outcome Examine(const absl::StatusOr<UpstreamResponse>& response, const config::HttpRoute& route,
                std::string_view trace_id, masking::Scanner* scanner) {
  if (!response.ok()) {
    // The store's address and the transport's text are for the operator's log; the caller
    // gets the code and a fixed message.
    const std::string why(MessageOf(response.status()));
    spdlog::warn("route {}: the trace store's answer for trace {} failed: {}", route.name,
                 LogEscape(trace_id, 64), LogEscape(why, 1024));
    switch (response.status().code()) {
      case absl::StatusCode::kDeadlineExceeded:
        return Refuse(504, "upstream_timeout", "the trace store did not answer in time");
      case absl::StatusCode::kResourceExhausted:
        return Refuse(502, "response_too_large", why);  // the gateway's own limit, no store text
      case absl::StatusCode::kFailedPrecondition:
        return Refuse(502, "unsupported_encoding", why);  // names the encoding only
      case absl::StatusCode::kInvalidArgument:
        return Refuse(502, "bad_upstream_response", why);  // the decoder's words, no address
      default:
        return Refuse(502, "upstream_unavailable", "the trace store cannot be reached");
    }
  }
  const unsigned status = response->status;
  if (status == 404) {
    return Refuse(404, "not_found", Cat("the trace store has no trace ", trace_id));
  }
  if (status == 401 || status == 403) {
    return Refuse(502, "upstream_refused",
                  Cat("the trace store refused the gateway's own credential (HTTP ", status,
                      "); tell the operator"));
  }
  if (status < 200 || status > 299) {
    return Refuse(502, "upstream_error", Cat("the trace store answered HTTP ", status));
  }
  if (!IsJson(response->content_type)) {
    spdlog::warn("route {}: the trace store answered with Content-Type {}", route.name,
                 LogEscape(response->content_type, 64));
    return Refuse(502, "unsupported_content_type",
                  "the trace store's answer is not JSON; only JSON can be checked and masked");
  }
  if (absl::Status checked =
          httproute::CheckResponseTrace(response->body, route.trace_path, trace_id);
      !checked.ok()) {
    if (absl::IsInvalidArgument(checked)) {
      return Refuse(502, "bad_upstream_response",
                    Cat("the trace store's response is not valid JSON: ", MessageOf(checked)));
    }
    // Which path and which other id stay in the log: the caller learns only that the answer
    // was not its trace, not which other trace exists.
    spdlog::warn("route {}: the store's answer for trace {} failed the trace check: {}", route.name,
                 LogEscape(trace_id, 64), LogEscape(MessageOf(checked), 1024));
    return Refuse(
        403, "response_trace_mismatch",
        Cat("the trace store's response is not only trace ", trace_id, "; it was withheld"));
  }
  Outcome out;
  out.status = 200;
  if (scanner == nullptr) {
    out.body = response->body;
    return out;
  }
  std::string masked;
  absl::StatusOr<bool> changed =
      scanner->MaskJson(response->body, {.column = route.name, .kind = masking::ValueKind::kJson},
                        masked, out.masked);
  if (!changed.ok()) {
    Outcome refused =
        Refuse(502, "masking_failed",
               Cat("the response could not be masked: ", MessageOf(changed.status())));
    refused.masking_error = true;
    return refused;
  }
  out.body = *changed ? std::move(masked) : response->body;
  return out;
}

}  // namespace tracegate::httpproxy
