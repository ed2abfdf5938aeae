#pragma once
// The claim checks a JWT and an introspection response share (private to identity):
// `iss` exact, `aud` present and one of the issuer's audiences, `exp` required, `nbf` and `iat`
// with the issuer's leeway, `sub`; then the mapping to a Principal.

#include <chrono>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "identity/principal.h"
#include "nlohmann/json.hpp"

namespace tracegate::identity {

enum class ClaimSource {
  kJwt,            // `iss` and `sub` required
  kIntrospection,  // RFC 7662: `iss` may be absent (then it is the issuer asked); `sub` falls
                   // back to `client_id` (a client-credentials token's subject is its client)
};

// UnauthenticatedError with a precise reason ("token expired at 2026-...", "audience
// mismatch ...") on the first failed check.
[[nodiscard]] absl::StatusOr<Principal> PrincipalFromClaims(
    const nlohmann::json& claims, const config::Issuer& issuer,
    std::chrono::system_clock::time_point now, ClaimSource source);

}  // namespace tracegate::identity
