#pragma once
// A small blocking HTTPS client (libcurl) for the CLI's calls to the control-plane API.

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tracegate::app {

struct HttpResult {
  long status = 0;
  std::string body;
};

struct HttpCall {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;
  std::string ca_file;  // PEM bundle to verify the server with; empty = system default
};

// Performs the call (TLS peer and host verified, 10 s timeout, 1 MiB response cap). An error
// status only when no HTTP response arrived; any HTTP status is a result.
[[nodiscard]] absl::StatusOr<HttpResult> Perform(const HttpCall& call);

}  // namespace tracegate::app
