#pragma once
// Counts failed authentications per client address in fixed one-minute windows. An address
// over the limit is refused (429) before its token is even looked at, so a client cannot use
// the API to grind through forged tokens or make the gateway hammer the IdP for unknown keys.
//
// Memory is bounded: at most `max_addresses` are tracked; when full, windows that have ended
// are dropped first, and if none has, the address with the oldest window.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace tracegate::httpapi {

class AuthLimiter {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  AuthLimiter(uint32_t failures_per_minute, size_t max_addresses = 100000)
      : limit_(failures_per_minute), max_addresses_(max_addresses) {}

  // Whether `address` has used up its failures in the current window; if so, how long until
  // the window ends (for Retry-After).
  [[nodiscard]] bool Blocked(std::string_view address, TimePoint now,
                             std::chrono::seconds* retry_after);
  void RecordFailure(std::string_view address, TimePoint now);

 private:
  struct Window {
    TimePoint start;
    uint32_t failures = 0;
  };
  void MakeRoom(TimePoint now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint32_t limit_;
  const size_t max_addresses_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Window> windows_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tracegate::httpapi
