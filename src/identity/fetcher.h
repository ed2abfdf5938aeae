#pragma once
// How identity talks to IdPs (discovery, JWKS, introspection) and tells time: both injected,
// so tests run with a fake IdP and a fake clock. Production: http_fetch.h, SystemClock().

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace tracegate::identity {

using Clock = std::function<std::chrono::system_clock::time_point()>;
[[nodiscard]] Clock SystemClock();

struct FetchOptions {
  std::string ca_file;                        // PEM bundle for TLS; empty = system default
  std::chrono::milliseconds timeout{5000};    // whole request, connect included
  const std::atomic<bool>* cancel = nullptr;  // when it turns true, give up promptly
};

struct BasicAuth {
  std::string user;
  std::string password;  // a secret: never logged
};

class Fetcher {
 public:
  virtual ~Fetcher() = default;
  // The body of a 200 response; any other outcome is an error naming the URL and why.
  [[nodiscard]] virtual absl::StatusOr<std::string> Get(const std::string& url,
                                                        const FetchOptions& options) = 0;
  // POSTs an application/x-www-form-urlencoded `form` with HTTP Basic client authentication.
  [[nodiscard]] virtual absl::StatusOr<std::string> Post(const std::string& url,
                                                         const std::string& form,
                                                         const BasicAuth& auth,
                                                         const FetchOptions& options) = 0;
};

}  // namespace tracegate::identity
