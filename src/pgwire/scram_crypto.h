#pragma once
// Private to pgwire: the primitives SCRAM-SHA-256 and md5 auth are built from, over
// OpenSSL. Exposed in a header so tests can check them against the RFC vectors directly.
// OpenSSL failures here can only mean memory exhaustion or a broken library (nothing the
// network controls), so they abort instead of returning a Status.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tracegate::pgwire::internal {

inline constexpr size_t kSha256Size = 32;

// Standard base64 (RFC 4648 section 4) with padding.
[[nodiscard]] std::string Base64Encode(std::string_view data);
// Strict: length a multiple of 4, only the standard alphabet, '=' only as final padding,
// and unused bits of the last symbol zero (so every input has one canonical encoding).
[[nodiscard]] std::optional<std::string> Base64Decode(std::string_view text);

[[nodiscard]] std::string Sha256(std::string_view data);
[[nodiscard]] std::string HmacSha256(std::string_view key, std::string_view data);
// Hi() from RFC 5802: PBKDF2-HMAC-SHA-256 with a 32-byte output. `iterations` >= 1.
[[nodiscard]] std::string Pbkdf2Sha256(std::string_view password, std::string_view salt,
                                       uint32_t iterations);
// Lowercase hex of md5(data).
[[nodiscard]] std::string Md5Hex(std::string_view data);
// a XOR b; the sizes must match.
[[nodiscard]] std::string XorBytes(std::string_view a, std::string_view b);

}  // namespace tracegate::pgwire::internal
