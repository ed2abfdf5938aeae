#pragma once
// Private to grants: the text forms of grant ids, secrets and bearer credentials.
//
// Grant id: 128 random bits as 26 characters of lower-case Crockford base32
// ("0123456789abcdefghjkmnpqrstvwxyz": no i, l, o, u, so nothing reads as something else),
// most significant bit first; the last character carries 3 bits and 2 zero bits. Lower-case
// alphanumerics only, so "g_<id>" is a plain Postgres user name.
// Secret: 256 random bits as 43 characters of base64url without padding (the last carries 4
// bits and 2 zero bits). Every id and secret has exactly one accepted spelling.

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "pgwire/scram.h"

namespace tracegate::grants::internal {

inline constexpr size_t kGrantIdLength = 26;
inline constexpr size_t kSecretBytes = 32;
inline constexpr size_t kSecretLength = 43;
inline constexpr size_t kSaltBytes = 16;
inline constexpr std::string_view kPostgresUserPrefix = "g_";
inline constexpr std::string_view kBearerPrefix = "tgb_";

// Internal error if `random` does not return the bytes asked for.
[[nodiscard]] absl::StatusOr<std::string> RandomExactly(const pgwire::RandomBytes& random,
                                                        size_t n);

[[nodiscard]] absl::StatusOr<std::string> NewGrantId(const pgwire::RandomBytes& random);
[[nodiscard]] bool IsGrantId(std::string_view text);

// 32 raw bytes → 43 characters.
[[nodiscard]] std::string EncodeSecret(std::string_view raw);
[[nodiscard]] bool IsSecret(std::string_view text);

struct BearerParts {
  std::string_view grant_id;
  std::string_view secret;
};
// "tgb_<id>_<secret>" exactly: no whitespace, no scheme word, canonical id and secret.
[[nodiscard]] std::optional<BearerParts> ParseBearer(std::string_view bearer);

// Raw SHA-256 (32 bytes).
[[nodiscard]] std::string Sha256(std::string_view data);

}  // namespace tracegate::grants::internal
