#include "identity/token_validator.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/cord.h"
#include "common/status.h"
#include "common/strings.h"
#include "identity/introspection.h"
#include "identity/jwt.h"
#include "identity/key_cache.h"
#include "identity/log_safe.h"
#include "identity/validator.h"

namespace tracegate::identity {
namespace {

using std::chrono::system_clock;

constexpr std::chrono::minutes kJwtCacheBound{5};
constexpr std::chrono::seconds kIntrospectionCacheBound{60};

// RFC 6750 b64token characters: anything else cannot be a bearer token.
bool IsB64Token(std::string_view token) {
  return std::all_of(token.begin(), token.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=';
  });
}

std::string Sha256(std::string_view data) {
  static const EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, sha256, nullptr);
  return std::string(reinterpret_cast<char*>(digest), len);
}

bool NeedsKeys(const config::Issuer& issuer) {
  return std::any_of(issuer.algorithms.begin(), issuer.algorithms.end(), [](const auto& name) {
    std::optional<JwsAlgorithm> alg = AlgorithmFromName(name);
    return alg && !IsHmac(*alg);
  });
}

constexpr char kNeedsIdpPayload[] = "tracegate.identity/needs-idp";

bool CanIntrospect(const config::Issuer& issuer) {
  return !issuer.introspection_client_id.empty() &&
         (!issuer.introspection_endpoint.empty() ||
          (issuer.discovery && issuer.jwks_uri.empty() && issuer.jwks_file.empty()));
}

}  // namespace

absl::Status NeedsIdpError(std::string_view why) {
  absl::Status status = absl::UnavailableError(Cat("validating this token needs the IdP: ", why));
  status.SetPayload(kNeedsIdpPayload, absl::Cord("1"));
  return status;
}

bool NeedsIdp(const absl::Status& status) {
  return absl::IsUnavailable(status) && status.GetPayload(kNeedsIdpPayload).has_value();
}

struct TokenValidator::IssuerState {
  IssuerState(const config::Issuer& issuer, std::shared_ptr<Fetcher> fetcher, Clock clock)
      : validator(issuer),
        keys(issuer, std::move(fetcher), std::move(clock)),
        needs_keys(NeedsKeys(issuer)),
        can_introspect(CanIntrospect(issuer)) {}

  JwtValidator validator;
  IssuerKeyCache keys;
  const bool needs_keys;
  const bool can_introspect;
  bool shared_iss = false;  // another issuer has the same iss: refuse its tokens
};

TokenValidator::TokenValidator(const config::Identity& identity, std::shared_ptr<Fetcher> fetcher,
                               Clock clock)
    : fetcher_(std::move(fetcher)),
      clock_(std::move(clock)),
      max_entries_(identity.token_cache_entries) {
  for (const config::Issuer& issuer : identity.issuers) {
    size_t index = issuers_.size();
    issuers_.push_back(std::make_unique<IssuerState>(issuer, fetcher_, clock_));
    auto [it, inserted] = by_iss_.emplace(issuer.issuer, index);
    if (!inserted) {
      issuers_[it->second]->shared_iss = true;
      issuers_[index]->shared_iss = true;
      spdlog::error("identity: issuers {} and {} have the same iss; tokens of it are refused",
                    issuers_[it->second]->validator.issuer().name, issuer.name);
    }
    if (issuer.development) {
      spdlog::warn("identity: issuer {} [development] is trusted: not for production", issuer.name);
    }
  }
}

TokenValidator::~TokenValidator() { Stop(); }

absl::StatusOr<Principal> TokenValidator::Validate(std::string_view token, IdpAccess access) {
  ++validations_;
  system_clock::time_point now = clock_();
  absl::StatusOr<Principal> result;
  if (token.empty()) {
    result = absl::UnauthenticatedError("no token");
  } else if (token.size() > kMaxTokenBytes) {
    result = absl::UnauthenticatedError(Cat("token longer than ", kMaxTokenBytes, " bytes"));
  } else if (!IsB64Token(token)) {
    result = absl::UnauthenticatedError("token has characters a bearer token cannot have");
  } else {
    std::string key = Sha256(token);
    Principal cached;
    if (LookUp(key, now, cached)) {
      ++cache_hits_;
      return cached;
    }
    CacheEntry entry;
    result = LooksLikeJws(token) ? ValidateJwt(token, now, access, entry)
                                 : ValidateOpaque(token, now, access, entry);
    if (result.ok()) {
      entry.principal = *result;
      Remember(std::move(key), std::move(entry), now);
    }
  }
  if (!result.ok() && NeedsIdp(result.status())) {
    ++needs_idp_;  // not a failure: the caller decides whether the IdP may be asked
  } else if (!result.ok()) {
    ++failures_;
  }
  return result;
}

absl::StatusOr<Principal> TokenValidator::ValidateJwt(std::string_view token,
                                                      system_clock::time_point now,
                                                      IdpAccess access, CacheEntry& entry) {
  TG_ASSIGN_OR_RETURN(Jws jws, ParseJws(token));
  auto iss = jws.payload.find("iss");
  if (iss == jws.payload.end()) {
    return absl::UnauthenticatedError("token has no iss");
  }
  if (!iss->is_string()) {
    return absl::UnauthenticatedError("claim iss is not a string");
  }
  auto found = by_iss_.find(iss->get_ref<const std::string&>());
  if (found == by_iss_.end()) {
    return absl::UnauthenticatedError(
        Cat("token issuer ", LogSafe(iss->get_ref<const std::string&>()), " is not trusted"));
  }
  IssuerState& issuer = *issuers_[found->second];
  const std::string& name = issuer.validator.issuer().name;
  if (issuer.shared_iss) {
    return absl::UnauthenticatedError(
        Cat("iss of issuer ", name, " is configured for more than one issuer"));
  }
  TG_ASSIGN_OR_RETURN(JwsAlgorithm alg, issuer.validator.CheckHeader(jws));
  const Jwk* key = nullptr;
  std::shared_ptr<const JwkSet> hold;  // keeps `key` alive
  if (!IsHmac(alg)) {
    const bool local = access == IdpAccess::kLocalOnly;
    absl::StatusOr<IssuerKeyCache::Snapshot> usable =
        local ? issuer.keys.UsableKeys() : issuer.keys.Keys();
    if (local && !usable.ok()) {
      return NeedsIdpError(Cat("the keys of issuer ", name, " are not loaded or stale"));
    }
    TG_ASSIGN_OR_RETURN(IssuerKeyCache::Snapshot snapshot, std::move(usable));
    absl::StatusOr<const Jwk*> selected = issuer.validator.SelectKey(jws, alg, *snapshot.keys);
    if (absl::IsNotFound(selected.status()) && local) {
      return NeedsIdpError(Cat("its key is not among issuer ", name, "'s loaded keys"));
    }
    if (absl::IsNotFound(selected.status())) {
      TG_ASSIGN_OR_RETURN(snapshot, issuer.keys.KeysAfterUnknownKid(snapshot.generation));
      selected = issuer.validator.SelectKey(jws, alg, *snapshot.keys);
    }
    if (!selected.ok()) {
      return absl::UnauthenticatedError(selected.status().message());
    }
    key = *selected;
    hold = snapshot.keys;
    entry.generation = snapshot.generation;
  }
  ++verifications_;
  TG_RETURN_IF_ERROR(issuer.validator.VerifySignature(jws, alg, key));
  TG_ASSIGN_OR_RETURN(Principal principal, issuer.validator.CheckClaims(jws.payload, now));
  entry.issuer = found->second;
  entry.valid_until =
      std::min<system_clock::time_point>(principal.expires_at, now + kJwtCacheBound);
  return principal;
}

absl::StatusOr<Principal> TokenValidator::ValidateOpaque(std::string_view token,
                                                         system_clock::time_point now,
                                                         IdpAccess access, CacheEntry& entry) {
  if (access == IdpAccess::kLocalOnly) {
    for (const auto& issuer : issuers_) {
      if (issuer->can_introspect && fetcher_) {
        return NeedsIdpError("an opaque token is checked by introspection");
      }
    }
  }
  absl::Status last =
      absl::UnauthenticatedError("not a JWT, and no issuer has token introspection configured");
  for (size_t i = 0; i < issuers_.size(); ++i) {
    IssuerState& issuer = *issuers_[i];
    if (!issuer.can_introspect || !fetcher_) {
      continue;
    }
    absl::StatusOr<std::string> endpoint = issuer.keys.IntrospectionEndpoint();
    if (!endpoint.ok()) {
      last = absl::UnavailableError(endpoint.status().message());
      continue;
    }
    ++introspections_;
    absl::StatusOr<Principal> principal =
        Introspect(issuer.validator.issuer(), *endpoint, token, *fetcher_, clock_);
    if (principal.ok()) {
      entry.issuer = i;
      entry.generation = 0;
      entry.valid_until =
          std::min<system_clock::time_point>(principal->expires_at, now + kIntrospectionCacheBound);
      return principal;
    }
    last = principal.status();
  }
  return last;
}

bool TokenValidator::LookUp(const std::string& key, system_clock::time_point now, Principal& out) {
  size_t issuer;
  uint64_t generation;
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      return false;
    }
    if (now >= it->second.valid_until) {
      cache_.erase(it);
      return false;
    }
    issuer = it->second.issuer;
    generation = it->second.generation;
    out = it->second.principal;
  }
  // A key rotated out, or keys gone stale, end the entry's life early.
  if (generation != 0 && issuers_[issuer]->keys.UsableGeneration() != generation) {
    absl::MutexLock lock(&cache_mu_);
    cache_.erase(key);
    return false;
  }
  return true;
}

void TokenValidator::Remember(std::string key, CacheEntry entry, system_clock::time_point now) {
  if (max_entries_ == 0 || entry.valid_until <= now) {
    return;
  }
  absl::MutexLock lock(&cache_mu_);
  if (cache_.size() >= max_entries_) {
    absl::erase_if(cache_, [now](const auto& kv) { return now >= kv.second.valid_until; });
  }
  if (cache_.size() >= max_entries_) {
    // Still full: drop the eighth closest to expiry, so eviction runs once per many inserts.
    std::vector<std::pair<system_clock::time_point, std::string>> order;
    order.reserve(cache_.size());
    for (const auto& [k, v] : cache_) {
      order.emplace_back(v.valid_until, k);
    }
    size_t drop = std::max<size_t>(1, cache_.size() / 8);
    std::nth_element(order.begin(), order.begin() + static_cast<ptrdiff_t>(drop - 1), order.end());
    for (size_t i = 0; i < drop; ++i) {
      cache_.erase(order[i].second);
    }
  }
  cache_.insert_or_assign(std::move(key), std::move(entry));
}

void TokenValidator::Start() {
  std::lock_guard lock(thread_mu_);
  if (thread_.joinable()) {
    return;
  }
  stopping_ = false;
  thread_ = std::jthread([this](std::stop_token stop) { RefreshLoop(stop); });
}

void TokenValidator::Stop() {
  std::lock_guard lock(thread_mu_);
  if (!thread_.joinable()) {
    return;
  }
  stopping_ = true;  // cancels a fetch in flight
  thread_.request_stop();
  wake_.notify_all();
  thread_.join();
  thread_ = std::jthread();
}

void TokenValidator::RefreshLoop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    system_clock::time_point next = system_clock::time_point::max();
    for (const auto& issuer : issuers_) {
      if (!issuer->needs_keys) {
        continue;
      }
      if (issuer->keys.NextRefreshAt() <= clock_()) {
        (void)issuer->keys.Refresh(&stopping_);  // failures are logged and counted there
        if (stop.stop_requested()) {
          return;
        }
      }
      next = std::min(next, issuer->keys.NextRefreshAt());
    }
    // The clock may be injected (tests): look again at least every second.
    auto wait = std::chrono::milliseconds(1000);
    if (next != system_clock::time_point::max()) {
      wait = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(next - clock_()),
                        std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
    }
    std::unique_lock lock(wake_mu_);
    wake_.wait_for(lock, stop, wait, [] { return false; });
  }
}

absl::Status TokenValidator::KeysUsable() const {
  for (const auto& issuer : issuers_) {
    if (issuer->needs_keys && issuer->keys.UsableGeneration() == 0) {
      IssuerKeyCache::Stats stats = issuer->keys.stats();
      return absl::UnavailableError(Cat("keys for issuer ", issuer->validator.issuer().name,
                                        " are not usable", stats.last_error.empty() ? "" : ": ",
                                        stats.last_error));
    }
  }
  return absl::OkStatus();
}

TokenValidator::Stats TokenValidator::stats() const {
  Stats out;
  out.validations = validations_;
  out.cache_hits = cache_hits_;
  out.signature_verifications = verifications_;
  out.introspections = introspections_;
  out.failures = failures_;
  out.needs_idp = needs_idp_;
  absl::MutexLock lock(&cache_mu_);
  out.cache_entries = cache_.size();
  return out;
}

}  // namespace tracegate::identity
