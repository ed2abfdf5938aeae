#pragma once
// RFC 7662 token introspection, for opaque (non-JWT) access tokens.
//
// POSTs token=<t>&token_type_hint=access_token to the issuer's endpoint with HTTP Basic
// client authentication (introspection_client_id / _secret). The response must say
// `"active": true`; then its claims pass the same checks as a JWT's (claims.h): `iss` exact
// (when absent it is the configured issuer), `aud` present and accepted, `exp` required,
// `nbf` / `iat` with leeway. `sub` falls back to `client_id` (client-credentials tokens).

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "identity/fetcher.h"
#include "identity/principal.h"

namespace tracegate::identity {

// UnauthenticatedError when the IdP says the token is not active or a claim check fails;
// UnavailableError when the IdP cannot be asked.
[[nodiscard]] absl::StatusOr<Principal> Introspect(const config::Issuer& issuer,
                                                   const std::string& endpoint,
                                                   std::string_view token, Fetcher& fetcher,
                                                   const Clock& clock);

}  // namespace tracegate::identity
