#pragma once
// What the control plane calls: bearer token in, Principal out.
//
// Routing: a JWT goes to exactly the issuer configured with its (unverified) `iss`, and is
// then verified by that issuer's rules and keys only (validator.h, key_cache.h); an `iss` no
// issuer has, or that two issuers share, is refused. A token that is not a JWT goes to RFC 7662
// introspection at the issuers that have it (an endpoint configured or discovered, and a
// client id), in configuration order; note that this shows the token to each of them until
// one says it is active. Without such an issuer: "not a JWT".
//
// Caching: a validated token is remembered under its SHA-256 until min(exp, now + 5 min) for
// JWTs and min(exp, now + 60 s) for introspected tokens, in at most `token_cache_entries`
// entries (expired ones go first, then the ones closest to expiry). A cached JWT counts only
// while its issuer's key set is the one it was verified with and not stale, so a key removed
// from the JWKS or an IdP outage past `jwks_stale_max` takes effect on cached tokens too.
// A repeated token costs a hash and a lookup.
//
// IdP access: Validate(token, IdpAccess::kLocalOnly) answers only from what is already here
// (the cache, or a JWT whose issuer's keys are loaded, fresh and hold its kid): a token that
// would need the IdP (a JWKS fetch for an unknown kid or missing/stale keys, discovery, or
// introspection of an opaque token) is refused with NeedsIdp(status) true and nothing is
// sent. The API validates every token this way first and contacts the IdP only for callers
// that are within their failure budget and get a slow-call slot (httpapi/api.h).
//
// Thread-safe. Start() runs a background thread that refreshes each issuer's keys when due;
// Stop() (also run by the destructor) ends it promptly, cancelling a fetch in flight.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "config/config.h"
#include "identity/fetcher.h"
#include "identity/principal.h"

namespace tracegate::identity {

enum class IdpAccess {
  kAllowed,    // fetch keys or introspect as needed (may block on the network)
  kLocalOnly,  // never contact the IdP: NeedsIdp(status) when that would be needed
};

// True for the status Validate(…, kLocalOnly) returns when only the IdP could decide (an
// UnavailableError, so a caller that ignores the distinction still fails closed).
[[nodiscard]] bool NeedsIdp(const absl::Status& status);
// The status NeedsIdp recognises (for Validate and for test doubles of it).
[[nodiscard]] absl::Status NeedsIdpError(std::string_view why);

class TokenValidator {
 public:
  TokenValidator(const config::Identity& identity, std::shared_ptr<Fetcher> fetcher, Clock clock);
  ~TokenValidator();
  TokenValidator(const TokenValidator&) = delete;
  TokenValidator& operator=(const TokenValidator&) = delete;

  // UnauthenticatedError with a precise, non-secret reason; UnavailableError when the issuer's
  // keys or introspection endpoint cannot be had (fail closed).
  [[nodiscard]] absl::StatusOr<Principal> Validate(std::string_view token,
                                                   IdpAccess access = IdpAccess::kAllowed);

  void Start();
  void Stop();

  // OK when every issuer that verifies with a JWKS has usable (loaded, not stale) keys; for
  // /readyz. Never fetches.
  [[nodiscard]] absl::Status KeysUsable() const;

  struct Stats {
    uint64_t validations = 0;  // Validate calls
    uint64_t cache_hits = 0;
    uint64_t signature_verifications = 0;  // JWT signatures checked
    uint64_t introspections = 0;           // introspection requests sent
    uint64_t needs_idp = 0;                // kLocalOnly validations that would need the IdP
    uint64_t failures = 0;
    size_t cache_entries = 0;
  };
  [[nodiscard]] Stats stats() const;

 private:
  struct IssuerState;
  struct CacheEntry {
    Principal principal;
    size_t issuer = 0;
    uint64_t generation = 0;  // key set generation it was verified with; 0 = no JWKS involved
    std::chrono::system_clock::time_point valid_until;
  };

  [[nodiscard]] absl::StatusOr<Principal> ValidateJwt(std::string_view token,
                                                      std::chrono::system_clock::time_point now,
                                                      IdpAccess access, CacheEntry& entry);
  [[nodiscard]] absl::StatusOr<Principal> ValidateOpaque(std::string_view token,
                                                         std::chrono::system_clock::time_point now,
                                                         IdpAccess access, CacheEntry& entry);
  [[nodiscard]] bool LookUp(const std::string& key, std::chrono::system_clock::time_point now,
                            Principal& out);
  void Remember(std::string key, CacheEntry entry, std::chrono::system_clock::time_point now);
  void RefreshLoop(std::stop_token stop);

  std::vector<std::unique_ptr<IssuerState>> issuers_;
  absl::flat_hash_map<std::string, size_t> by_iss_;  // exact iss -> index into issuers_
  std::shared_ptr<Fetcher> fetcher_;
  Clock clock_;
  size_t max_entries_;

  mutable absl::Mutex cache_mu_;
  absl::flat_hash_map<std::string, CacheEntry> cache_ ABSL_GUARDED_BY(cache_mu_);

  std::atomic<uint64_t> validations_{0};
  std::atomic<uint64_t> cache_hits_{0};
  std::atomic<uint64_t> verifications_{0};
  std::atomic<uint64_t> introspections_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> needs_idp_{0};

  std::mutex thread_mu_;  // Start/Stop
  std::atomic<bool> stopping_{false};
  std::condition_variable_any wake_;
  std::mutex wake_mu_;
  std::jthread thread_;
};

}  // namespace tracegate::identity
