#pragma once
// What the gateway makes of a trace store's answer, for the listener and the one-call fetch
// alike (no I/O): the store's status mapped for the caller, the JSON checked against the
// grant's trace (httproute::CheckResponseTrace), and masked. Fail closed: an answer that cannot
// be checked or masked is refused with a precise status and JSON reason, never forwarded.
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "httpproxy/upstream.h"
#include "masking/masker.h"

namespace tracegate::httpproxy {

struct Outcome {
  unsigned status = 200;
  std::string body;   // JSON sent to the caller: the (masked) store body, or an error object
  std::string error;  // "" on success, else the error code in `body`
  std::string message;
  masking::Counts masked;
  bool masking_error = false;
};

// The JSON error body every refusal carries: {"error": code, "message": message}.
std::string ErrorJson(std::string_view code, std::string_view message);
Outcome Refuse(unsigned status, std::string_view code, std::string_view message);

// `response` is the store's answer to `route` for `trace_id`; `scanner` is null when the
// grant has no masking profile.
//   transport errors        → 502 upstream_unavailable / 504 upstream_timeout /
//                             502 response_too_large / unsupported_encoding / bad_upstream_response
//   404                     → 404 not_found (the store's body is not forwarded)
//   401, 403                → 502 upstream_refused (the gateway's credential is the problem)
//   other non-2xx           → 502 upstream_error
//   2xx, not JSON           → 502 unsupported_content_type
//   invalid JSON            → 502 bad_upstream_response
//   another trace's ids     → 403 response_trace_mismatch
//   masking failed          → 502 masking_failed
Outcome Examine(const absl::StatusOr<UpstreamResponse>& response, const config::HttpRoute& route,
                std::string_view trace_id, masking::Scanner* scanner);

}  // namespace tracegate::httpproxy
