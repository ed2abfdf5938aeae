#include "pgwire/scram_crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cstdio>
#include <cstdlib>

namespace tracegate::pgwire::internal {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Maps a base64 symbol to its 6-bit value, or -1.
constexpr std::array<int8_t, 256> MakeDecodeTable() {
  std::array<int8_t, 256> table{};
  for (auto& v : table) {
    v = -1;
  }
  for (int i = 0; i < 64; ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  }
  return table;
}
constexpr std::array<int8_t, 256> kDecodeTable = MakeDecodeTable();

[[noreturn]] void OpenSslFailed(const char* what) {
  std::fprintf(stderr, "tracegate: OpenSSL %s failed\n", what);
  std::abort();
}

const unsigned char* U(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (uint32_t{U(data)[i]} << 16) | (uint32_t{U(data)[i + 1]} << 8) | U(data)[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  size_t rest = data.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t{U(data)[i]} << 16;
    if (rest == 2) {
      v |= uint32_t{U(data)[i + 1]} << 8;
    }
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return std::nullopt;
  }
  size_t padding = 0;
  if (!text.empty() && text.back() == '=') {
    padding = text.size() >= 2 && text[text.size() - 2] == '=' ? 2 : 1;
  }
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    size_t symbols = last ? 4 - padding : 4;
    uint32_t v = 0;
    for (size_t j = 0; j < 4; ++j) {
      int8_t d = 0;
      if (j < symbols) {
        d = kDecodeTable[static_cast<unsigned char>(text[i + j])];
        if (d < 0) {
          return std::nullopt;
        }
      }
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    out.push_back(static_cast<char>(v >> 16));
    if (symbols >= 3) {
      out.push_back(static_cast<char>(v >> 8));
    }
    if (symbols == 4) {
      out.push_back(static_cast<char>(v));
    }
    // Non-canonical: bits beyond the decoded bytes must be zero.
    if ((symbols == 2 && (v & 0xffff) != 0) || (symbols == 3 && (v & 0xff) != 0)) {
      return std::nullopt;
    }
  }
  return out;
}

std::string Sha256(std::string_view data) {
  std::string out(kSha256Size, '\0');
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &len,
                 EVP_sha256(), nullptr) != 1 ||
      len != kSha256Size) {
    OpenSslFailed("SHA-256");
  }
  return out;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  std::string out(kSha256Size, '\0');
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), U(data), data.size(),
           reinterpret_cast<unsigned char*>(out.data()), &len) == nullptr ||
      len != kSha256Size) {
    OpenSslFailed("HMAC-SHA-256");
  }
  return out;
}

std::string Pbkdf2Sha256(std::string_view password, std::string_view salt, uint32_t iterations) {
  std::string out(kSha256Size, '\0');
  if (iterations < 1 || iterations > 0x7fffffff ||
      PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), U(salt),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(kSha256Size),
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    OpenSslFailed("PBKDF2-HMAC-SHA-256");
  }
  return out;
}

std::string Md5Hex(std::string_view data) {
  unsigned char digest[16];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1 || len != 16) {
    OpenSslFailed("MD5");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(32);
  for (unsigned char b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

std::string XorBytes(std::string_view a, std::string_view b) {
  std::string out(a.size(), '\0');
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    out[i] = static_cast<char>(a[i] ^ b[i]);
  }
  return out;
}

}  // namespace tracegate::pgwire::internal
