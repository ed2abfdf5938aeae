#pragma once
// One issuer's signing keys, kept fresh (DESIGN.md "Module map": identity).
//
// Where keys come from (first that is configured): `jwks_file` (re-read on every refresh),
// `jwks_uri`, or discovery: GET <issuer minus one trailing slash>/.well-known/
// openid-configuration, whose `issuer` must equal the configured one exactly, then its
// `jwks_uri` (and `introspection_endpoint`, used when none is configured).
//
// Freshness: a background refresh every `jwks_refresh` (TokenValidator's thread calls
// Refresh when NextRefreshAt has passed; after a failure it retries after
// min(jwks_refresh, unknown_kid_min_interval), at least 1 s). A token with an unknown kid
// triggers at most one fetch per `unknown_kid_min_interval` (any fetch attempt counts), so
// forged kids cannot hammer the IdP. A fetch that fails, or yields an invalid or empty set,
// keeps the old keys and counts as a failure. Keys are served until `jwks_stale_max` after the
// last successful fetch; after that every token of the issuer is refused (fail closed) with
// UnavailableError "keys for issuer X are stale since <time>: <last error>".
//
// Thread-safe. A lookup with the current keys never waits for network I/O; only a caller that
// needs keys that are not there (unknown kid, none loaded, stale) fetches itself (with a
// short timeout) or waits for the fetch another thread already runs.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "config/config.h"
#include "identity/fetcher.h"
#include "identity/jwks.h"

namespace tracegate::identity {

class IssuerKeyCache {
 public:
  IssuerKeyCache(config::Issuer issuer, std::shared_ptr<Fetcher> fetcher, Clock clock);

  struct Snapshot {
    std::shared_ptr<const JwkSet> keys;
    uint64_t generation = 0;  // changes only when the key material changes
  };

  // The keys to verify with now; fetches first (rate-limited) if none are loaded or they
  // are stale. UnavailableError when there are still no usable keys.
  [[nodiscard]] absl::StatusOr<Snapshot> Keys();
  // After a kid was not found in the set of `seen_generation`: returns a newer set if there
  // is one, else refetches unless rate-limited (or waits for a fetch in flight) and returns
  // whatever set is current then (possibly the same one).
  [[nodiscard]] absl::StatusOr<Snapshot> KeysAfterUnknownKid(uint64_t seen_generation);
  // The keys to verify with now if they are loaded and not stale; UnavailableError otherwise.
  // Never fetches (TokenValidator's IdP-free path, for throttled callers).
  [[nodiscard]] absl::StatusOr<Snapshot> UsableKeys() const;
  // The current generation if the keys are loaded and not stale, else 0. Never fetches.
  [[nodiscard]] uint64_t UsableGeneration() const;

  // Background refresh: fetches now unless a fetch is already in flight.
  absl::Status Refresh(const std::atomic<bool>* cancel = nullptr);
  [[nodiscard]] std::chrono::system_clock::time_point NextRefreshAt() const;

  // RFC 7662 endpoint: the configured one, else the discovered one (discovering first if
  // needed); NotFoundError when there is none.
  [[nodiscard]] absl::StatusOr<std::string> IntrospectionEndpoint();

  struct Stats {
    uint64_t fetches = 0;   // attempts, whatever their outcome
    uint64_t failures = 0;  // attempts that kept the old keys
    std::chrono::system_clock::time_point last_success{};
    std::string last_error;
  };
  [[nodiscard]] Stats stats() const;

  [[nodiscard]] const config::Issuer& issuer() const { return issuer_; }

 private:
  enum class Trigger { kOnDemand, kBackground };
  struct FetchResult;

  // Runs one fetch unless one is in flight (then waits for it) or, on demand, the rate limit
  // says no. Returns when no fetch of this call's making is outstanding.
  void FetchOrWait(Trigger trigger, const std::atomic<bool>* cancel);
  [[nodiscard]] FetchResult Fetch(std::string discovered_jwks_uri,
                                  std::chrono::milliseconds timeout,
                                  const std::atomic<bool>* cancel) const;
  [[nodiscard]] bool StaleLocked(std::chrono::system_clock::time_point now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  [[nodiscard]] absl::StatusOr<Snapshot> UsableLocked(
      std::chrono::system_clock::time_point now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  [[nodiscard]] std::chrono::milliseconds RetryAfterFailure() const;

  const config::Issuer issuer_;
  const std::shared_ptr<Fetcher> fetcher_;
  const Clock clock_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const JwkSet> keys_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool fetching_ ABSL_GUARDED_BY(mu_) = false;
  bool last_attempt_failed_ ABSL_GUARDED_BY(mu_) = false;
  std::chrono::system_clock::time_point last_attempt_ ABSL_GUARDED_BY(mu_){};
  std::chrono::system_clock::time_point last_success_ ABSL_GUARDED_BY(mu_){};
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  std::string discovered_jwks_uri_ ABSL_GUARDED_BY(mu_);
  std::string discovered_introspection_ ABSL_GUARDED_BY(mu_);
  bool discovered_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t fetches_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tracegate::identity
