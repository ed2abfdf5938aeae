#include "identity/validator.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "common/status.h"
#include "common/strings.h"
#include "identity/claims.h"
#include "identity/log_safe.h"
#include "identity/openssl_ptr.h"

namespace tracegate::identity {
namespace {

struct AlgorithmInfo {
  JwsAlgorithm alg;
  std::string_view name;
  int sha_bits;  // 0 for EdDSA (no separate digest)
};

constexpr std::array<AlgorithmInfo, 11> kAlgorithms = {{
    {JwsAlgorithm::kRS256, "RS256", 256},
    {JwsAlgorithm::kRS384, "RS384", 384},
    {JwsAlgorithm::kRS512, "RS512", 512},
    {JwsAlgorithm::kPS256, "PS256", 256},
    {JwsAlgorithm::kPS384, "PS384", 384},
    {JwsAlgorithm::kPS512, "PS512", 512},
    {JwsAlgorithm::kES256, "ES256", 256},
    {JwsAlgorithm::kEdDSA, "EdDSA", 0},
    {JwsAlgorithm::kHS256, "HS256", 256},
    {JwsAlgorithm::kHS384, "HS384", 384},
    {JwsAlgorithm::kHS512, "HS512", 512},
}};

const AlgorithmInfo& Info(JwsAlgorithm alg) { return kAlgorithms[static_cast<size_t>(alg)]; }

// Fetched once: the legacy EVP_sha256() getters fetch implicitly on every use in OpenSSL 3.
const EVP_MD* Digest(int bits) {
  static const EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  static const EVP_MD* const sha384 = EVP_MD_fetch(nullptr, "SHA384", nullptr);
  static const EVP_MD* const sha512 = EVP_MD_fetch(nullptr, "SHA512", nullptr);
  switch (bits) {
    case 256:
      return sha256;
    case 384:
      return sha384;
    case 512:
      return sha512;
    default:
      return nullptr;
  }
}

bool IsRsa(JwsAlgorithm alg) { return alg <= JwsAlgorithm::kPS512; }
bool IsPss(JwsAlgorithm alg) { return alg >= JwsAlgorithm::kPS256 && alg <= JwsAlgorithm::kPS512; }

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// RFC 7515 §4.1.9: a typ without "/" means "application/<typ>".
std::string NormalizeTyp(std::string_view typ) {
  std::string out = Lower(typ);
  constexpr std::string_view kPrefix = "application/";
  if (out.compare(0, kPrefix.size(), kPrefix) == 0) {
    out.erase(0, kPrefix.size());
  }
  return out;
}

bool KeyFits(const Jwk& key, JwsAlgorithm alg) {
  if (!key.alg.empty() && key.alg != Info(alg).name) {
    return false;
  }
  if (IsRsa(alg)) {
    return key.kty == "RSA";
  }
  if (alg == JwsAlgorithm::kES256) {
    return key.kty == "EC" && key.crv == "P-256";
  }
  return alg == JwsAlgorithm::kEdDSA && key.kty == "OKP" && key.crv == "Ed25519";
}

absl::Status BadSignature() { return absl::UnauthenticatedError("invalid signature"); }

// JWS ES256 is r||s, 32 bytes each (RFC 7518 §3.4); EVP wants DER.
std::optional<std::string> RawEcdsaToDer(std::string_view raw) {
  if (raw.size() != 64) {
    return std::nullopt;
  }
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  OpenSslPtr<ECDSA_SIG> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(bytes, 32, nullptr);
  BIGNUM* s = BN_bin2bn(bytes + 32, 32, nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig.get(), &der);
  if (len <= 0) {
    return std::nullopt;
  }
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

absl::Status VerifyHmac(const Jws& jws, JwsAlgorithm alg, const std::string& secret) {
  const EVP_MD* md = Digest(Info(alg).sha_bits);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (md == nullptr || HMAC(md, secret.data(), static_cast<int>(secret.size()),
                            reinterpret_cast<const unsigned char*>(jws.signing_input.data()),
                            jws.signing_input.size(), mac, &mac_len) == nullptr) {
    ERR_clear_error();
    return absl::InternalError("HMAC failed");
  }
  if (jws.signature.size() != mac_len || CRYPTO_memcmp(mac, jws.signature.data(), mac_len) != 0) {
    return BadSignature();
  }
  return absl::OkStatus();
}

absl::Status VerifyPublicKey(const Jws& jws, JwsAlgorithm alg, EVP_PKEY* pkey) {
  std::string der;
  std::string_view signature = jws.signature;
  if (alg == JwsAlgorithm::kES256) {
    std::optional<std::string> converted = RawEcdsaToDer(signature);
    if (!converted) {
      return absl::UnauthenticatedError("invalid signature: ES256 needs 64 bytes (raw r||s)");
    }
    der = std::move(*converted);
    signature = der;
  } else if (alg == JwsAlgorithm::kEdDSA && signature.size() != 64) {
    return absl::UnauthenticatedError("invalid signature: EdDSA needs 64 bytes");
  }
  OpenSslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  const EVP_MD* md = alg == JwsAlgorithm::kEdDSA ? nullptr : Digest(Info(alg).sha_bits);
  bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, pkey) == 1;
  if (ok && IsPss(alg)) {
    // RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash.
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1;
  }
  ok = ok && EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                              signature.size(),
                              reinterpret_cast<const unsigned char*>(jws.signing_input.data()),
                              jws.signing_input.size()) == 1;
  if (!ok) {
    ERR_clear_error();
    return BadSignature();
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<JwsAlgorithm> AlgorithmFromName(std::string_view name) {
  for (const AlgorithmInfo& info : kAlgorithms) {
    if (info.name == name) {
      return info.alg;
    }
  }
  return std::nullopt;
}

std::string_view AlgorithmName(JwsAlgorithm alg) { return Info(alg).name; }

bool IsHmac(JwsAlgorithm alg) { return alg >= JwsAlgorithm::kHS256; }

JwtValidator::JwtValidator(config::Issuer issuer) : issuer_(std::move(issuer)) {
  for (const std::string& name : issuer_.algorithms) {
    std::optional<JwsAlgorithm> alg = AlgorithmFromName(name);
    if (alg && (!IsHmac(*alg) || !issuer_.hmac_secret.empty())) {
      allowed_.push_back(*alg);
    }
  }
  if (!issuer_.typ.empty()) {
    typ_ = NormalizeTyp(issuer_.typ);
  }
}

absl::StatusOr<JwsAlgorithm> JwtValidator::CheckHeader(const Jws& jws) const {
  if (Lower(jws.alg) == "none") {
    return absl::UnauthenticatedError("algorithm none is refused");
  }
  std::optional<JwsAlgorithm> alg = AlgorithmFromName(jws.alg);
  if (!alg) {
    return absl::UnauthenticatedError(Cat("algorithm ", LogSafe(jws.alg, 16), " not supported"));
  }
  if (std::find(allowed_.begin(), allowed_.end(), *alg) == allowed_.end()) {
    bool listed = std::find(issuer_.algorithms.begin(), issuer_.algorithms.end(), jws.alg) !=
                  issuer_.algorithms.end();
    return absl::UnauthenticatedError(Cat("algorithm ", jws.alg, " not allowed for issuer ",
                                          issuer_.name,
                                          listed ? " (no hmac_secret configured)" : ""));
  }
  if (IsHmac(*alg) && issuer_.hmac_secret.size() * 8 < static_cast<size_t>(Info(*alg).sha_bits)) {
    return absl::UnauthenticatedError(Cat("hmac_secret of issuer ", issuer_.name,
                                          " is shorter than ", Info(*alg).sha_bits / 8,
                                          " bytes; refusing ", jws.alg));
  }
  if (jws.header.contains("crit")) {
    return absl::UnauthenticatedError("header crit present; no JWS extension is supported");
  }
  if (!typ_.empty()) {
    if (jws.typ.empty()) {
      return absl::UnauthenticatedError(
          Cat("token has no typ; issuer ", issuer_.name, " requires ", LogSafe(issuer_.typ, 32)));
    }
    if (NormalizeTyp(jws.typ) != typ_) {
      return absl::UnauthenticatedError(Cat("typ mismatch: token typ ", LogSafe(jws.typ, 32),
                                            ", issuer ", issuer_.name, " requires ",
                                            LogSafe(issuer_.typ, 32)));
    }
  }
  return *alg;
}

absl::StatusOr<const Jwk*> JwtValidator::SelectKey(const Jws& jws, JwsAlgorithm alg,
                                                   const JwkSet& keys) const {
  std::string_view alg_name = Info(alg).name;
  if (!jws.header.contains("kid")) {
    const Jwk* only = nullptr;
    int fitting = 0;
    for (const Jwk& key : keys.keys) {
      if (KeyFits(key, alg)) {
        only = &key;
        ++fitting;
      }
    }
    if (fitting != 1) {
      return absl::UnauthenticatedError(Cat("token has no kid and issuer ", issuer_.name, " has ",
                                            fitting, " keys for ", alg_name));
    }
    return only;
  }
  std::vector<const Jwk*> candidates = keys.WithKid(jws.kid);
  if (candidates.empty()) {
    return absl::NotFoundError(
        Cat("unknown key id ", LogSafe(jws.kid), " for issuer ", issuer_.name));
  }
  for (const Jwk* key : candidates) {
    if (KeyFits(*key, alg)) {
      return key;
    }
  }
  const Jwk& first = *candidates.front();
  return absl::UnauthenticatedError(
      Cat("key ", LogSafe(jws.kid), " of issuer ", issuer_.name, " is a ", first.kty,
          first.alg.empty() ? "" : Cat(" ", first.alg), " key; it ", "cannot verify ", alg_name));
}

absl::Status JwtValidator::VerifySignature(const Jws& jws, JwsAlgorithm alg, const Jwk* key) const {
  if (IsHmac(alg)) {
    return VerifyHmac(jws, alg, issuer_.hmac_secret);
  }
  if (key == nullptr || !key->key || !KeyFits(*key, alg)) {
    return absl::UnauthenticatedError(Cat("no fitting key for ", Info(alg).name));
  }
  return VerifyPublicKey(jws, alg, key->key.get());
}

absl::StatusOr<Principal> JwtValidator::CheckClaims(
    const nlohmann::json& claims, std::chrono::system_clock::time_point now) const {
  return PrincipalFromClaims(claims, issuer_, now, ClaimSource::kJwt);
}

absl::StatusOr<Principal> JwtValidator::Validate(const Jws& jws, const JwkSet& keys,
                                                 std::chrono::system_clock::time_point now) const {
  TG_ASSIGN_OR_RETURN(JwsAlgorithm alg, CheckHeader(jws));
  const Jwk* key = nullptr;
  if (!IsHmac(alg)) {
    absl::StatusOr<const Jwk*> selected = SelectKey(jws, alg, keys);
    if (!selected.ok()) {
      return absl::UnauthenticatedError(selected.status().message());
    }
    key = *selected;
  }
  TG_RETURN_IF_ERROR(VerifySignature(jws, alg, key));
  return CheckClaims(jws.payload, now);
}

}  // namespace tracegate::identity
