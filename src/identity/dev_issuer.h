#pragma once
// The embedded development issuer behind `tracegate dev token`: a local RS256 key pair (RS256
// because every JWT library and IdP speaks it) whose public half is a JWKS file the gateway
// trusts through an ordinary `jwks_file` issuer marked `development: true`.
//
// Its `iss` is kDevIssuer ("tracegate-dev"): not a URL, so it can never be mistaken for, or
// collide with, a real IdP; and every Principal it vouches for carries development = true.

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"

namespace tracegate::identity {

inline constexpr std::string_view kDevIssuer = "tracegate-dev";
inline constexpr std::string_view kDevPrivateKeyFile = "dev-issuer-key.pem";  // mode 0600
inline constexpr std::string_view kDevJwksFile = "dev-issuer-jwks.json";

struct DevIssuerKeys {
  std::string private_key_pem;  // PKCS#8; a secret
  std::string kid;              // RFC 7638 thumbprint of the public key
  std::filesystem::path private_key_path;
  std::filesystem::path jwks_path;
};

// Loads the key pair from `dir`, or creates it there (the directory with mode 0700 if it
// does not exist, the private key with 0600, written atomically). An existing private key that
// group or others may read is refused. The JWKS file is (re)written from the private key.
[[nodiscard]] absl::StatusOr<DevIssuerKeys> LoadOrCreateDevIssuerKeys(
    const std::filesystem::path& dir);

// The issuer entry that trusts these keys: iss kDevIssuer, RS256 only, typ at+jwt,
// jwks_file, development = true.
[[nodiscard]] config::Issuer DevIssuerConfig(const DevIssuerKeys& keys, std::string audience);

// A signed access token: header {alg RS256, typ at+jwt, kid}; claims iss, sub, aud, iat, exp
// (now + ttl), jti, groups, and client_id when not empty.
[[nodiscard]] absl::StatusOr<std::string> SignDevToken(
    std::string_view private_key_pem, std::string_view kid, std::string_view issuer,
    std::string_view audience, std::string_view sub, const std::vector<std::string>& groups,
    std::string_view client_id, std::chrono::seconds ttl,
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

}  // namespace tracegate::identity
