// Fuzzes JWKS import: structure, member types, base64url, and OpenSSL's key construction
// from attacker-chosen n/e, x/y and x. Traps when a result breaks the documented limits.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "identity/jwks.h"

namespace {

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<tracegate::identity::JwkSet> set = tracegate::identity::ParseJwks(input);
  if (!set.ok()) {
    Check(set.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  Check(size <= tracegate::identity::kMaxJwksBytes);
  Check(!set->keys.empty() && set->keys.size() <= tracegate::identity::kMaxJwksKeys);
  Check(set->keys.size() + set->skipped.size() <= tracegate::identity::kMaxJwksKeys);
  for (const tracegate::identity::Jwk& key : set->keys) {
    Check(key.key != nullptr);
    Check(key.kty == "RSA" || key.kty == "EC" || key.kty == "OKP");
    Check(key.kty != "RSA" || (key.bits >= 2048 && key.bits <= 8192));
    Check(set->WithKid(key.kid).size() <= 3);
  }
  Check(set->SameKeysAs(*set));
  return 0;
}
