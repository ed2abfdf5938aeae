#pragma once
// Parsing a JWK Set (RFC 7517) into verification keys.
//
// Why OpenSSL EVP directly and not cjose: Debian's cjose 0.6 has no EdDSA (Ed25519), pulls in
// jansson as a second JSON library, and would hide the exact checks RFC 8725 asks for. Only
// public keys are imported, with EVP_PKEY_fromdata (RSA from n/e, EC P-256 from x/y) and
// EVP_PKEY_new_raw_public_key (OKP Ed25519 from x), each checked with EVP_PKEY_public_check.
//
// What is kept: keys with `use` absent or "sig", `key_ops` absent or containing "verify",
// kty RSA (2048..8192 bits), EC (crv P-256), OKP (crv Ed25519), and an `alg` that is absent
// or a signature algorithm fitting the kty. Everything else is skipped with a reason (see
// JwkSet::skipped), so one odd key published by an IdP does not take the others down. A
// document with no usable key, more than kMaxJwksKeys keys, more than kMaxJwksBytes bytes, or
// two usable keys with the same kid and kty (ambiguous) is an error.

#include <openssl/evp.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tracegate::identity {

inline constexpr size_t kMaxJwksBytes = 256 * 1024;
inline constexpr size_t kMaxJwksKeys = 100;

struct Jwk {
  std::string kid;                // may be empty: then only a token without `kid` can select it
  std::string kty;                // "RSA", "EC" or "OKP"
  std::string crv;                // "P-256" or "Ed25519"; empty for RSA
  std::string alg;                // the algorithm the JWK pins, or empty
  int bits = 0;                   // key size in bits
  std::shared_ptr<EVP_PKEY> key;  // public key; shared by snapshots, read-only after parse
};

struct JwkSet {
  std::vector<Jwk> keys;
  std::vector<std::string> skipped;  // "kid \"x\": use is enc", one per ignored key

  // The keys with this kid, in document order (at most one per kty).
  [[nodiscard]] std::vector<const Jwk*> WithKid(std::string_view kid) const;
  // Same keys (kid, kty, crv, alg and public key material), in any order.
  [[nodiscard]] bool SameKeysAs(const JwkSet& other) const;
};

// InvalidArgumentError describing the first structural problem.
[[nodiscard]] absl::StatusOr<JwkSet> ParseJwks(std::string_view document);

}  // namespace tracegate::identity
