#include "httpapi/auth_limiter.h"

#include <algorithm>

namespace tracegate::httpapi {

namespace {
constexpr std::chrono::minutes kWindow{1};
}

bool AuthLimiter::Blocked(std::string_view address, TimePoint now,
                          std::chrono::seconds* retry_after) {
  absl::MutexLock lock(&mu_);
  auto it = windows_.find(std::string(address));
  if (it == windows_.end() || now - it->second.start >= kWindow || it->second.failures < limit_) {
    return false;
  }
  if (retry_after != nullptr) {
    *retry_after =
        std::max(std::chrono::seconds(1),
                 std::chrono::ceil<std::chrono::seconds>(it->second.start + kWindow - now));
  }
  return true;
}

void AuthLimiter::RecordFailure(std::string_view address, TimePoint now) {
  absl::MutexLock lock(&mu_);
  auto it = windows_.find(std::string(address));
  if (it == windows_.end()) {
    MakeRoom(now);
    it = windows_.emplace(std::string(address), Window{now, 0}).first;
  }
  if (now - it->second.start >= kWindow) {
    it->second = Window{now, 0};
  }
  ++it->second.failures;
}

void AuthLimiter::MakeRoom(TimePoint now) {
  if (windows_.size() < max_addresses_) {
    return;
  }
  absl::erase_if(windows_,
                 [now](const auto& entry) { return now - entry.second.start >= kWindow; });
  if (windows_.size() < max_addresses_) {
    return;
  }
  auto oldest = std::min_element(
      windows_.begin(), windows_.end(),
      [](const auto& a, const auto& b) { return a.second.start < b.second.start; });
  windows_.erase(oldest);
}

}  // namespace tracegate::httpapi
