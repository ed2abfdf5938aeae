#include "identity/key_cache.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <iterator>

#include "common/status.h"
#include "common/strings.h"
#include "identity/log_safe.h"
#include "identity/strict_json.h"

namespace tracegate::identity {
namespace {

using std::chrono::milliseconds;
using std::chrono::system_clock;

// A caller waiting on a token fetches with a short timeout; the background thread may wait
// longer (and is cancelled on Stop).
constexpr milliseconds kOnDemandTimeout{2000};
constexpr milliseconds kBackgroundTimeout{5000};

std::string Label(const config::Issuer& issuer) {
  return issuer.development ? Cat(issuer.name, " [development]") : issuer.name;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::UnavailableError(Cat("cannot read ", path));
  }
  std::string data;
  data.resize(max_bytes + 1);
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  if (in.bad()) {
    return absl::UnavailableError(Cat("cannot read ", path));
  }
  data.resize(static_cast<size_t>(in.gcount()));
  if (data.size() > max_bytes) {
    return absl::InvalidArgumentError(Cat(path, " is larger than ", max_bytes, " bytes"));
  }
  return data;
}

bool IsHttpUrl(const std::string& url) {
  return url.rfind("https://", 0) == 0 || url.rfind("http://", 0) == 0;
}

std::string DiscoveryUrl(std::string issuer) {
  if (!issuer.empty() && issuer.back() == '/') {
    issuer.pop_back();
  }
  return issuer + "/.well-known/openid-configuration";
}

}  // namespace

Clock SystemClock() {
  return [] { return system_clock::now(); };
}

struct IssuerKeyCache::FetchResult {
  absl::StatusOr<JwkSet> keys = absl::UnknownError("not fetched");
  bool discovered = false;  // discovery ran and succeeded in this fetch
  bool used_discovered_uri = false;
  std::string jwks_uri;
  std::string introspection_endpoint;
};

IssuerKeyCache::IssuerKeyCache(config::Issuer issuer, std::shared_ptr<Fetcher> fetcher, Clock clock)
    : issuer_(std::move(issuer)), fetcher_(std::move(fetcher)), clock_(std::move(clock)) {}

IssuerKeyCache::FetchResult IssuerKeyCache::Fetch(std::string discovered_jwks_uri,
                                                  milliseconds timeout,
                                                  const std::atomic<bool>* cancel) const {
  FetchResult result;
  if (!issuer_.jwks_file.empty()) {
    absl::StatusOr<std::string> body = ReadSmallFile(issuer_.jwks_file, kMaxJwksBytes);
    if (!body.ok()) {
      result.keys = body.status();
      return result;
    }
    result.keys = ParseJwks(*body);
    return result;
  }
  FetchOptions options{.ca_file = issuer_.ca_file, .timeout = timeout, .cancel = cancel};
  std::string uri = issuer_.jwks_uri;
  if (uri.empty()) {
    if (!issuer_.discovery) {
      result.keys = absl::FailedPreconditionError("no jwks_file, jwks_uri or discovery");
      return result;
    }
    if (!discovered_jwks_uri.empty()) {
      uri = std::move(discovered_jwks_uri);
      result.used_discovered_uri = true;
    } else {
      std::string url = DiscoveryUrl(issuer_.issuer);
      absl::StatusOr<std::string> body =
          fetcher_ ? fetcher_->Get(url, options) : absl::UnavailableError("no fetcher");
      if (!body.ok()) {
        result.keys = absl::UnavailableError(Cat("discovery: ", MessageOf(body.status())));
        return result;
      }
      absl::StatusOr<nlohmann::json> doc = ParseStrictJson(*body);
      if (!doc.ok() || !doc->is_object()) {
        result.keys = absl::InvalidArgumentError(Cat(url, " is not a JSON object"));
        return result;
      }
      auto iss = doc->find("issuer");
      if (iss == doc->end() || !iss->is_string() || *iss != issuer_.issuer) {
        result.keys = absl::InvalidArgumentError(
            Cat(url, ": issuer ",
                iss != doc->end() && iss->is_string() ? LogSafe(iss->get<std::string>()) : "?",
                " differs from the configured ", LogSafe(issuer_.issuer)));
        return result;
      }
      auto jwks = doc->find("jwks_uri");
      if (jwks == doc->end() || !jwks->is_string() || !IsHttpUrl(jwks->get<std::string>())) {
        result.keys = absl::InvalidArgumentError(Cat(url, " has no http(s) jwks_uri"));
        return result;
      }
      result.discovered = true;
      result.jwks_uri = jwks->get<std::string>();
      if (auto it = doc->find("introspection_endpoint");
          it != doc->end() && it->is_string() && IsHttpUrl(it->get<std::string>())) {
        result.introspection_endpoint = it->get<std::string>();
      }
      uri = result.jwks_uri;
    }
  }
  absl::StatusOr<std::string> body =
      fetcher_ ? fetcher_->Get(uri, options) : absl::UnavailableError("no fetcher");
  if (!body.ok()) {
    result.keys = absl::UnavailableError(Cat("JWKS: ", MessageOf(body.status())));
    return result;
  }
  result.keys = ParseJwks(*body);
  return result;
}

void IssuerKeyCache::FetchOrWait(Trigger trigger, const std::atomic<bool>* cancel) {
  std::string discovered_uri;
  {
    absl::MutexLock lock(&mu_);
    if (fetching_) {
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](bool* fetching) { return !*fetching; }, &fetching_),
                           absl::Milliseconds(2 * kBackgroundTimeout.count() + 1000));
      return;
    }
    system_clock::time_point now = clock_();
    if (trigger == Trigger::kOnDemand && now - last_attempt_ < issuer_.unknown_kid_min_interval) {
      return;
    }
    fetching_ = true;
    last_attempt_ = now;
    discovered_uri = discovered_jwks_uri_;
  }

  FetchResult result =
      Fetch(std::move(discovered_uri),
            trigger == Trigger::kOnDemand ? kOnDemandTimeout : kBackgroundTimeout, cancel);

  absl::MutexLock lock(&mu_);
  fetching_ = false;
  ++fetches_;
  if (result.discovered) {
    discovered_ = true;
    discovered_jwks_uri_ = result.jwks_uri;
    discovered_introspection_ = result.introspection_endpoint;
  }
  if (!result.keys.ok()) {
    ++failures_;
    last_attempt_failed_ = true;
    last_error_ = std::string(MessageOf(result.keys.status()));
    if (result.used_discovered_uri) {
      discovered_jwks_uri_.clear();  // the IdP may have moved it: discover again next time
    }
    spdlog::warn("identity: issuer {}: key refresh failed ({} kept): {}", Label(issuer_),
                 keys_ ? "old keys" : "no keys", last_error_);
    return;
  }
  last_attempt_failed_ = false;
  last_error_.clear();
  last_success_ = clock_();
  for (const std::string& skipped : result.keys->skipped) {
    spdlog::warn("identity: issuer {}: JWKS key skipped: {}", Label(issuer_), skipped);
  }
  if (keys_ && keys_->SameKeysAs(*result.keys)) {
    return;
  }
  keys_ = std::make_shared<const JwkSet>(std::move(*result.keys));
  ++generation_;
  spdlog::info("identity: issuer {}: {} signing keys loaded (generation {})", Label(issuer_),
               keys_->keys.size(), generation_);
}

bool IssuerKeyCache::StaleLocked(system_clock::time_point now) const {
  return now - last_success_ > issuer_.jwks_stale_max;
}

absl::StatusOr<IssuerKeyCache::Snapshot> IssuerKeyCache::UsableLocked(
    system_clock::time_point now) const {
  std::string why = last_error_.empty() ? std::string() : Cat(": ", last_error_);
  if (!keys_) {
    return absl::UnavailableError(Cat("keys for issuer ", issuer_.name, " are not available", why));
  }
  if (StaleLocked(now)) {
    return absl::UnavailableError(
        Cat("keys for issuer ", issuer_.name, " are stale since ", FormatUtc(last_success_), why));
  }
  return Snapshot{keys_, generation_};
}

absl::StatusOr<IssuerKeyCache::Snapshot> IssuerKeyCache::Keys() {
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Snapshot> usable = UsableLocked(clock_());
    if (usable.ok()) {
      return usable;
    }
  }
  FetchOrWait(Trigger::kOnDemand, nullptr);
  absl::MutexLock lock(&mu_);
  return UsableLocked(clock_());
}

absl::StatusOr<IssuerKeyCache::Snapshot> IssuerKeyCache::KeysAfterUnknownKid(
    uint64_t seen_generation) {
  {
    absl::MutexLock lock(&mu_);
    if (keys_ && generation_ != seen_generation) {
      return UsableLocked(clock_());
    }
  }
  FetchOrWait(Trigger::kOnDemand, nullptr);
  absl::MutexLock lock(&mu_);
  return UsableLocked(clock_());
}

absl::StatusOr<IssuerKeyCache::Snapshot> IssuerKeyCache::UsableKeys() const {
  absl::MutexLock lock(&mu_);
  return UsableLocked(clock_());
}

uint64_t IssuerKeyCache::UsableGeneration() const {
  absl::MutexLock lock(&mu_);
  return keys_ && !StaleLocked(clock_()) ? generation_ : 0;
}

absl::Status IssuerKeyCache::Refresh(const std::atomic<bool>* cancel) {
  FetchOrWait(Trigger::kBackground, cancel);
  absl::MutexLock lock(&mu_);
  return last_attempt_failed_ ? absl::UnavailableError(last_error_) : absl::OkStatus();
}

std::chrono::milliseconds IssuerKeyCache::RetryAfterFailure() const {
  return std::max(milliseconds(1000),
                  std::min(issuer_.jwks_refresh, issuer_.unknown_kid_min_interval));
}

system_clock::time_point IssuerKeyCache::NextRefreshAt() const {
  absl::MutexLock lock(&mu_);
  if (fetches_ == 0) {
    return system_clock::time_point{};
  }
  return last_attempt_ + (last_attempt_failed_ ? RetryAfterFailure() : issuer_.jwks_refresh);
}

absl::StatusOr<std::string> IssuerKeyCache::IntrospectionEndpoint() {
  if (!issuer_.introspection_endpoint.empty()) {
    return issuer_.introspection_endpoint;
  }
  auto none = [this] {
    return absl::NotFoundError(Cat("issuer ", issuer_.name, " has no introspection endpoint"));
  };
  if (!issuer_.jwks_file.empty() || !issuer_.jwks_uri.empty() || !issuer_.discovery) {
    return none();
  }
  bool discovered;
  {
    absl::MutexLock lock(&mu_);
    discovered = discovered_;
  }
  if (!discovered) {
    (void)Keys();  // runs discovery; its outcome is reported by whoever needs the keys
  }
  absl::MutexLock lock(&mu_);
  if (discovered_introspection_.empty()) {
    return none();
  }
  return discovered_introspection_;
}

IssuerKeyCache::Stats IssuerKeyCache::stats() const {
  absl::MutexLock lock(&mu_);
  return Stats{fetches_, failures_, last_success_, last_error_};
}

}  // namespace tracegate::identity
