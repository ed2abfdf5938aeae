#include "audit/auth_failures.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "audit/recorder.h"
#include "common/status.h"
#include "common/strings.h"

namespace tracegate::audit {

namespace {

using TimePoint = std::chrono::system_clock::time_point;

std::string Cut(std::string_view text) {
  return std::string(text.substr(0, AuthFailures::kMaxFieldBytes));
}

std::string_view KnownReason(std::string_view reason) {
  auto it = std::find(kAuthFailureReasons.begin(), kAuthFailureReasons.end(), reason);
  return it != kAuthFailureReasons.end() ? *it : std::string_view("other");
}

// "10.0.0.1:5432" → "10.0.0.1"; "[::1]:5432" → "::1"; an address without a port as it is.
std::string HostOf(std::string_view address) {
  if (address.starts_with('[')) {
    const size_t close = address.find(']');
    return Cut(close == std::string_view::npos ? address : address.substr(1, close - 1));
  }
  const size_t colon = address.rfind(':');
  if (colon != std::string_view::npos && address.find(':') == colon) {
    return Cut(address.substr(0, colon));  // one colon: ipv4:port (a bare IPv6 has several)
  }
  return Cut(address);
}

}  // namespace

std::string_view AuthPathName(AuthPath path) {
  switch (path) {
    case AuthPath::kPostgres:
      return "postgres";
    case AuthPath::kHttp:
      return "http";
    case AuthPath::kFetch:
      return "fetch";
  }
  return "unknown";
}

std::string AuthFailureRecord::ToJson() const {
  using Json = nlohmann::json;
  const Json out = {
      {"event", event},
      {"path", AuthPathName(path)},
      {"reason", reason},
      {"connection", connection},
      {"client_address", client_address},
      {"grant_id", grant_id},
      {"user", user},
      {"session", session},
      {"count", count},
      {"first_at", FormatTime(first_at)},
      {"last_at", FormatTime(last_at)},
      {"window_start", FormatTime(window_start)},
      {"window_end", FormatTime(window_end)},
  };
  return out.dump(-1, ' ', false, Json::error_handler_t::replace);
}

AuthFailures::AuthFailures(Options options, Sink sink)
    : options_(std::move(options)), sink_(std::move(sink)) {
  if (options_.background) {
    thread_ = std::thread([this] { Run(); });
  }
}

AuthFailures::~AuthFailures() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
  Close();
}

void AuthFailures::Report(const AuthFailure& failure) {
  const TimePoint now = options_.clock ? options_.clock() : std::chrono::system_clock::now();
  std::vector<AuthFailureRecord> out;
  {
    std::lock_guard lock(mu_);
    ++stats_.reported;
    if (window_open_ && now >= window_start_ + options_.window) {
      out = TakeWindow(now);
    }
    if (!window_open_) {
      window_open_ = true;
      window_start_ = now;
      wake_.notify_all();
    }
    const std::string_view reason = KnownReason(failure.reason);
    Key key{failure.path,
            std::string(reason),
            Cut(failure.connection),
            HostOf(failure.client_address),
            Cut(failure.grant_id),
            Cut(failure.user)};
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      Entry& entry = it->second;
      if (entry.more++ == 0) {
        entry.first_more = now;
      }
      entry.last_more = now;
    } else if (entries_.size() < options_.max_keys) {
      Entry& entry = entries_[key];
      entry.session = Cut(failure.session);
      entry.address = Cut(failure.client_address);
      out.push_back(AuthFailureRecord{.event = "failure",
                                      .path = failure.path,
                                      .reason = std::string(reason),
                                      .connection = std::get<2>(key),
                                      .client_address = entry.address,
                                      .grant_id = std::get<4>(key),
                                      .user = std::get<5>(key),
                                      .session = entry.session,
                                      .count = 1,
                                      .first_at = now,
                                      .last_at = now,
                                      .window_start = window_start_,
                                      .window_end = window_start_ + options_.window});
    } else {
      Overflow& overflow = overflow_[{failure.path, std::string(reason)}];
      if (overflow.count++ == 0) {
        overflow.first_at = now;
      }
      overflow.last_at = now;
    }
    stats_.tracked_keys = entries_.size();
  }
  Write(out);
}

std::vector<AuthFailureRecord> AuthFailures::TakeWindow(TimePoint now) {
  std::vector<AuthFailureRecord> out;
  if (!window_open_) {
    return out;
  }
  // A window closed late (nothing reported, the thread woke late) ends at its nominal end.
  const TimePoint end = std::min(now, window_start_ + options_.window);
  for (auto& [key, entry] : entries_) {
    if (entry.more == 0) {
      continue;
    }
    out.push_back(AuthFailureRecord{.event = "summary",
                                    .path = std::get<0>(key),
                                    .reason = std::get<1>(key),
                                    .connection = std::get<2>(key),
                                    .client_address = entry.address,
                                    .grant_id = std::get<4>(key),
                                    .user = std::get<5>(key),
                                    .session = entry.session,
                                    .count = entry.more,
                                    .first_at = entry.first_more,
                                    .last_at = entry.last_more,
                                    .window_start = window_start_,
                                    .window_end = end});
  }
  for (auto& [key, overflow] : overflow_) {
    out.push_back(AuthFailureRecord{.event = "overflow",
                                    .path = key.first,
                                    .reason = key.second,
                                    .count = overflow.count,
                                    .first_at = overflow.first_at,
                                    .last_at = overflow.last_at,
                                    .window_start = window_start_,
                                    .window_end = end});
  }
  entries_.clear();
  overflow_.clear();
  window_open_ = false;
  stats_.tracked_keys = 0;
  return out;
}

void AuthFailures::Write(const std::vector<AuthFailureRecord>& records) {
  for (const AuthFailureRecord& record : records) {
    absl::Status written = sink_(record);
    std::lock_guard lock(mu_);
    ++stats_.records;
    if (!written.ok()) {
      ++stats_.unwritten;
      spdlog::error("audit: a failed {} attempt ({}, {} attempt(s)) could not be recorded: {}",
                    AuthPathName(record.path), record.reason, record.count, MessageOf(written));
    }
  }
}

void AuthFailures::CloseIfDue() {
  const TimePoint now = options_.clock ? options_.clock() : std::chrono::system_clock::now();
  std::vector<AuthFailureRecord> out;
  {
    std::lock_guard lock(mu_);
    if (window_open_ && now >= window_start_ + options_.window) {
      out = TakeWindow(now);
    }
  }
  Write(out);
}

void AuthFailures::Close() {
  const TimePoint now = options_.clock ? options_.clock() : std::chrono::system_clock::now();
  std::vector<AuthFailureRecord> out;
  {
    std::lock_guard lock(mu_);
    out = TakeWindow(now);
  }
  Write(out);
}

AuthFailures::Stats AuthFailures::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void AuthFailures::Run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (!window_open_) {
      wake_.wait(lock);
      continue;
    }
    // The window's end on the system clock (an injected clock is for tests without the thread).
    wake_.wait_until(lock, window_start_ + options_.window);
    if (stopping_) {
      break;
    }
    const TimePoint now = options_.clock ? options_.clock() : std::chrono::system_clock::now();
    if (window_open_ && now >= window_start_ + options_.window) {
      std::vector<AuthFailureRecord> out = TakeWindow(now);
      lock.unlock();
      Write(out);
      lock.lock();
    }
  }
}

}  // namespace tracegate::audit
