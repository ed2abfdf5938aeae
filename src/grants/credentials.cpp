#include "grants/credentials.h"

#include <openssl/sha.h>

#include <cstdint>

#include "common/strings.h"

namespace tracegate::grants::internal {
namespace {

constexpr std::string_view kBase32 = "0123456789abcdefghjkmnpqrstvwxyz";
constexpr std::string_view kBase64Url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// `bits_per_char`-bit groups of `raw`, most significant first, the last padded with zeros.
std::string EncodeBits(std::string_view raw, std::string_view alphabet, int bits_per_char) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  const uint32_t mask = (1u << bits_per_char) - 1;
  for (char c : raw) {
    buffer = (buffer << 8) | static_cast<uint8_t>(c);
    bits += 8;
    while (bits >= bits_per_char) {
      bits -= bits_per_char;
      out += alphabet[(buffer >> bits) & mask];
    }
  }
  if (bits > 0) {
    out += alphabet[(buffer << (bits_per_char - bits)) & mask];
  }
  return out;
}

// `text` has `length` characters of `alphabet` and the unused low bits of the last are zero.
bool IsCanonical(std::string_view text, std::string_view alphabet, size_t length, int bits_per_char,
                 size_t payload_bits) {
  if (text.size() != length) {
    return false;
  }
  for (char c : text) {
    if (alphabet.find(c) == std::string_view::npos) {
      return false;
    }
  }
  const size_t unused = length * static_cast<size_t>(bits_per_char) - payload_bits;
  const size_t last = alphabet.find(text.back());
  return (last & ((size_t{1} << unused) - 1)) == 0;
}

}  // namespace

absl::StatusOr<std::string> RandomExactly(const pgwire::RandomBytes& random, size_t n) {
  std::string bytes = random(n);
  if (bytes.size() != n) {
    return absl::InternalError(
        Cat("random source returned ", bytes.size(), " bytes instead of ", n));
  }
  return bytes;
}

absl::StatusOr<std::string> NewGrantId(const pgwire::RandomBytes& random) {
  auto raw = RandomExactly(random, 16);
  if (!raw.ok()) {
    return raw.status();
  }
  return EncodeBits(*raw, kBase32, 5);
}

bool IsGrantId(std::string_view text) { return IsCanonical(text, kBase32, kGrantIdLength, 5, 128); }

std::string EncodeSecret(std::string_view raw) { return EncodeBits(raw, kBase64Url, 6); }

bool IsSecret(std::string_view text) {
  return IsCanonical(text, kBase64Url, kSecretLength, 6, kSecretBytes * 8);
}

std::optional<BearerParts> ParseBearer(std::string_view bearer) {
  if (bearer.size() != kBearerPrefix.size() + kGrantIdLength + 1 + kSecretLength ||
      bearer.substr(0, kBearerPrefix.size()) != kBearerPrefix) {
    return std::nullopt;
  }
  std::string_view rest = bearer.substr(kBearerPrefix.size());
  BearerParts parts{rest.substr(0, kGrantIdLength), rest.substr(kGrantIdLength + 1)};
  if (rest[kGrantIdLength] != '_' || !IsGrantId(parts.grant_id) || !IsSecret(parts.secret)) {
    return std::nullopt;
  }
  return parts;
}

std::string Sha256(std::string_view data) {
  std::string digest(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         reinterpret_cast<unsigned char*>(digest.data()));
  return digest;
}

}  // namespace tracegate::grants::internal
