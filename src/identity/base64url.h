#pragma once
// base64url (RFC 4648 §5) as JOSE uses it: no padding, and decoding is strict, so one token
// has exactly one spelling (RFC 7515 §2, "Base64url Encoding").

#include <optional>
#include <string>
#include <string_view>

namespace tracegate::identity {

// Encodes without padding.
[[nodiscard]] std::string Base64UrlEncode(std::string_view bytes);

// Decodes; nullopt on padding, characters outside [A-Za-z0-9_-], a length of 1 mod 4, or
// non-zero trailing bits (a second spelling of the same bytes).
[[nodiscard]] std::optional<std::string> Base64UrlDecode(std::string_view text);

}  // namespace tracegate::identity
