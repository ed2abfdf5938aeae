#pragma once
// Decoding a compact JWS (RFC 7515 §7.1): BASE64URL(header) "." BASE64URL(payload) "."
// BASE64URL(signature). A pure function over bytes, with no key and no clock: it says what
// the token claims to be and nothing about whether to believe it (validator.h decides).
//
// Strict on purpose, so that tracegate and the IdP cannot read one token two ways:
// exactly three parts; base64url without padding and with canonical trailing bits; header and
// payload are JSON objects without repeated member names; `alg` is a non-empty string;
// `kid`, `typ`, `cty` are strings when present; at most kMaxTokenBytes in all.

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tracegate::identity {

inline constexpr size_t kMaxTokenBytes = 16 * 1024;

struct Jws {
  std::string alg;            // header `alg`, as written (validator.h pins it per issuer)
  std::string kid;            // header `kid`; empty when absent
  std::string typ;            // header `typ`; empty when absent
  nlohmann::json header;      // the whole protected header (an object)
  nlohmann::json payload;     // the claims (an object)
  std::string signing_input;  // ASCII(BASE64URL(header) "." BASE64URL(payload))
  std::string signature;      // raw signature bytes; empty for `alg: none`
};

// True when `token` has the compact JWS shape (exactly two dots); says nothing about
// validity. Routing uses it to tell JWTs from opaque tokens.
[[nodiscard]] bool LooksLikeJws(std::string_view token);

// UnauthenticatedError "malformed JWT: <reason>" on any violation; the reason never contains
// token bytes beyond a cut-short, escaped member name.
[[nodiscard]] absl::StatusOr<Jws> ParseJws(std::string_view token);

}  // namespace tracegate::identity
