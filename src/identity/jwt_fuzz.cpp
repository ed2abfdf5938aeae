// Fuzzes the JWT decoder and everything that reads a decoded token without a key: the
// header checks, key selection against a fixed set, and the claim checks and mapping.
// Traps when a result breaks the decoder's contract.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "identity/base64url.h"
#include "identity/jwks.h"
#include "identity/jwt.h"
#include "identity/validator.h"

namespace {

using tracegate::identity::Base64UrlDecode;
using tracegate::identity::Base64UrlEncode;
using tracegate::identity::Jws;
using tracegate::identity::JwtValidator;

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

tracegate::config::Issuer FuzzIssuer() {
  tracegate::config::Issuer issuer;
  issuer.name = "fuzz";
  issuer.issuer = "https://idp.example.com";
  issuer.audiences = {"tracegate"};
  issuer.algorithms = {"RS256", "PS256", "ES256", "EdDSA", "HS256"};
  issuer.hmac_secret = "0123456789abcdef0123456789abcdef";
  issuer.typ = "at+jwt";
  issuer.groups_claim = "realm_access.roles";
  return issuer;
}

// A fixed P-256 public key (the RFC 7515 appendix A.3 example), so the fuzzer needs no keygen.
const tracegate::identity::JwkSet& FuzzKeys() {
  static const tracegate::identity::JwkSet* keys = new tracegate::identity::JwkSet(
      *tracegate::identity::ParseJwks(R"({"keys":[{"kty":"EC","crv":"P-256","kid":"ec",)"
                                      R"("x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",)"
                                      R"("y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})"));
  return *keys;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  // base64url: whatever decodes re-encodes to the same text (one spelling per value).
  if (std::optional<std::string> bytes = Base64UrlDecode(input.substr(0, 4096))) {
    Check(Base64UrlEncode(*bytes) == input.substr(0, 4096));
  }

  absl::StatusOr<Jws> jws = tracegate::identity::ParseJws(input);
  if (!jws.ok()) {
    Check(jws.status().code() == absl::StatusCode::kUnauthenticated);
    return 0;
  }
  Check(size <= tracegate::identity::kMaxTokenBytes);
  Check(jws->header.is_object() && jws->payload.is_object());
  Check(!jws->alg.empty());
  Check(input.substr(0, jws->signing_input.size()) == jws->signing_input);
  Check(input.size() > jws->signing_input.size() && input[jws->signing_input.size()] == '.');

  static const JwtValidator* validator = new JwtValidator(FuzzIssuer());
  auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
  absl::StatusOr<tracegate::identity::JwsAlgorithm> alg = validator->CheckHeader(*jws);
  if (alg.ok() && !tracegate::identity::IsHmac(*alg)) {
    absl::StatusOr<const tracegate::identity::Jwk*> key =
        validator->SelectKey(*jws, *alg, FuzzKeys());
    if (key.ok()) {
      Check(*key != nullptr);
      // A fuzzer cannot forge a P-256 signature.
      Check(!validator->VerifySignature(*jws, *alg, *key).ok());
    }
  }
  absl::StatusOr<tracegate::identity::Principal> principal =
      validator->CheckClaims(jws->payload, now);
  if (principal.ok()) {
    Check(!principal->subject.empty());
    Check(principal->expires_at + std::chrono::seconds(30) > now);
    (void)principal->Describe();
  } else {
    Check(principal.status().code() == absl::StatusCode::kUnauthenticated);
  }
  return 0;
}
