#pragma once
// Verifying one issuer's JWTs, following RFC 8725 (JWT Best Current Practices):
//
// - `alg` must be one of the issuer's pinned `algorithms`. Supported: RS256/384/512,
//   PS256/384/512, ES256, EdDSA (Ed25519); HS256/384/512 only when the issuer has an
//   `hmac_secret`, and then the HMAC key is that secret, never a JWK. `none` is always refused.
// - The key comes only from this issuer's JWKS, chosen by `kid`, and its kty (and crv, and
//   its own `alg` if it pins one) must fit the token's alg: an RSA key can never verify HS256.
//   `jku`, `x5u`, `jwk` and `x5c` header parameters are ignored; any `crit` is refused.
// - ES256 signatures are raw r||s (64 bytes), as JWS defines them; DER is refused.
// - `typ`, when the issuer configures one, compares case-insensitively, an "application/"
//   prefix ignored (so "at+jwt" also accepts "application/at+jwt").
// - Claims (claims.h): `iss` exact, `aud` required and one of the issuer's audiences, `exp`
//   required, `nbf` / `iat` with the issuer's leeway, `sub` required.
//
// Every error is absl::UnauthenticatedError with a reason that never contains the token; a
// `kid` or `iss` from the token appears only escaped and cut to 64 characters.

#include <chrono>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "identity/jwks.h"
#include "identity/jwt.h"
#include "identity/principal.h"

namespace tracegate::identity {

enum class JwsAlgorithm {
  kRS256,
  kRS384,
  kRS512,
  kPS256,
  kPS384,
  kPS512,
  kES256,
  kEdDSA,
  kHS256,
  kHS384,
  kHS512,
};

// nullopt for anything unsupported, including "none".
[[nodiscard]] std::optional<JwsAlgorithm> AlgorithmFromName(std::string_view name);
[[nodiscard]] std::string_view AlgorithmName(JwsAlgorithm alg);
[[nodiscard]] bool IsHmac(JwsAlgorithm alg);

class JwtValidator {
 public:
  explicit JwtValidator(config::Issuer issuer);

  [[nodiscard]] const config::Issuer& issuer() const { return issuer_; }

  // The steps, in the order Validate runs them; TokenValidator runs them separately to fetch
  // keys between CheckHeader and SelectKey.
  //
  // 1. `alg` pinned and supported, no `crit`, `typ` as configured.
  [[nodiscard]] absl::StatusOr<JwsAlgorithm> CheckHeader(const Jws& jws) const;
  // 2. The verification key (not for HMAC). NotFoundError when no key of the set has the
  //    token's kid (the caller may refetch the JWKS once); UnauthenticatedError otherwise.
  //    A token without `kid` selects the set's only key that fits `alg`, if there is one.
  [[nodiscard]] absl::StatusOr<const Jwk*> SelectKey(const Jws& jws, JwsAlgorithm alg,
                                                     const JwkSet& keys) const;
  // 3. The signature over the signing input; `key` is null for HMAC (the issuer's secret).
  [[nodiscard]] absl::Status VerifySignature(const Jws& jws, JwsAlgorithm alg,
                                             const Jwk* key) const;
  // 4. The claims, mapped to a Principal.
  [[nodiscard]] absl::StatusOr<Principal> CheckClaims(
      const nlohmann::json& claims, std::chrono::system_clock::time_point now) const;

  // All four against a fixed key set (tests, benchmarks; unknown kid is Unauthenticated).
  [[nodiscard]] absl::StatusOr<Principal> Validate(const Jws& jws, const JwkSet& keys,
                                                   std::chrono::system_clock::time_point now) const;

 private:
  config::Issuer issuer_;
  std::vector<JwsAlgorithm> allowed_;
  std::string typ_;  // configured typ, lower case, without "application/"
};

}  // namespace tracegate::identity
