#include "identity/jwks.h"

#include <openssl/core_names.h>
#include <openssl/err.h>

#include <algorithm>
#include <optional>

#include "common/status.h"
#include "common/strings.h"
#include "identity/base64url.h"
#include "identity/log_safe.h"
#include "identity/openssl_ptr.h"
#include "identity/strict_json.h"

namespace tracegate::identity {
namespace {

using nlohmann::json;

constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 8192;

// Why a key was skipped; an error of ParseJwks is a plain absl::Status instead.
struct Skip {
  std::string reason;
};

template <typename T>
struct KeyOr {
  std::optional<T> value;
  Skip skip;
};

std::shared_ptr<EVP_PKEY> Share(EVP_PKEY* pkey) {
  return std::shared_ptr<EVP_PKEY>(pkey, [](EVP_PKEY* p) { EVP_PKEY_free(p); });
}

// A member that must be a string when present; nullopt = wrong type.
std::optional<std::string> StringMember(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end()) {
    return std::string();
  }
  if (!it->is_string()) {
    return std::nullopt;
  }
  return it->get<std::string>();
}

std::optional<std::string> Base64Member(const json& object, const char* name) {
  std::optional<std::string> text = StringMember(object, name);
  if (!text || text->empty()) {
    return std::nullopt;
  }
  return Base64UrlDecode(*text);
}

bool PublicCheck(EVP_PKEY* pkey) {
  OpenSslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
  return ctx && EVP_PKEY_public_check(ctx.get()) == 1;
}

EVP_PKEY* FromData(const char* type, OSSL_PARAM_BLD* bld) {
  OpenSslPtr<OSSL_PARAM> params(OSSL_PARAM_BLD_to_param(bld));
  OpenSslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* pkey = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return nullptr;
  }
  return pkey;
}

std::optional<std::string> RsaKey(const json& entry, Jwk& jwk) {
  std::optional<std::string> n = Base64Member(entry, "n");
  std::optional<std::string> e = Base64Member(entry, "e");
  if (!n || !e) {
    return "n or e missing or not base64url";
  }
  if (e->size() > 8) {
    return "e longer than 64 bits";
  }
  OpenSslPtr<BIGNUM> bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()),
                                    static_cast<int>(n->size()), nullptr));
  OpenSslPtr<BIGNUM> bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()),
                                    static_cast<int>(e->size()), nullptr));
  if (!bn_n || !bn_e) {
    return "cannot read n or e";
  }
  int bits = BN_num_bits(bn_n.get());
  if (bits < kMinRsaBits) {
    return Cat("RSA key has ", bits, " bits; at least ", kMinRsaBits, " required");
  }
  if (bits > kMaxRsaBits) {
    return Cat("RSA key has ", bits, " bits; at most ", kMaxRsaBits, " accepted");
  }
  if (!BN_is_odd(bn_e.get()) || BN_is_one(bn_e.get())) {
    return "RSA exponent is not an odd number above 1";
  }
  OpenSslPtr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    return "cannot build RSA parameters";
  }
  EVP_PKEY* pkey = FromData("RSA", bld.get());
  if (pkey == nullptr) {
    return "OpenSSL refused the RSA key";
  }
  jwk.key = Share(pkey);
  jwk.bits = bits;
  if (!PublicCheck(pkey)) {
    return "RSA public key check failed";
  }
  return std::nullopt;
}

std::optional<std::string> EcKey(const json& entry, Jwk& jwk) {
  if (jwk.crv != "P-256") {
    return Cat("EC curve ", LogSafe(jwk.crv, 16), " not supported (only P-256)");
  }
  std::optional<std::string> x = Base64Member(entry, "x");
  std::optional<std::string> y = Base64Member(entry, "y");
  if (!x || !y || x->size() != 32 || y->size() != 32) {
    return "x and y must be 32-byte base64url";
  }
  std::string point = "\x04" + *x + *y;
  OpenSslPtr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
          1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return "cannot build EC parameters";
  }
  EVP_PKEY* pkey = FromData("EC", bld.get());
  if (pkey == nullptr) {
    return "OpenSSL refused the EC key (point not on P-256?)";
  }
  jwk.key = Share(pkey);
  jwk.bits = 256;
  if (!PublicCheck(pkey)) {
    return "EC public key check failed";
  }
  return std::nullopt;
}

std::optional<std::string> OkpKey(const json& entry, Jwk& jwk) {
  if (jwk.crv != "Ed25519") {
    return Cat("OKP curve ", LogSafe(jwk.crv, 16), " not supported (only Ed25519)");
  }
  std::optional<std::string> x = Base64Member(entry, "x");
  if (!x || x->size() != 32) {
    return "x must be 32-byte base64url";
  }
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(x->data()), x->size());
  if (pkey == nullptr) {
    return "OpenSSL refused the Ed25519 key";
  }
  jwk.key = Share(pkey);
  jwk.bits = 256;
  return std::nullopt;
}

// Whether a JWK's `alg` can go with its kty (an absent alg fits any).
bool AlgFitsKty(std::string_view alg, std::string_view kty) {
  if (alg.empty()) {
    return true;
  }
  if (kty == "RSA") {
    return alg == "RS256" || alg == "RS384" || alg == "RS512" || alg == "PS256" || alg == "PS384" ||
           alg == "PS512";
  }
  if (kty == "EC") {
    return alg == "ES256";
  }
  return kty == "OKP" && alg == "EdDSA";
}

// The usable key in `entry`, or why it was skipped.
std::optional<std::string> ReadKey(const json& entry, Jwk& jwk) {
  std::optional<std::string> kid = StringMember(entry, "kid");
  std::optional<std::string> kty = StringMember(entry, "kty");
  std::optional<std::string> alg = StringMember(entry, "alg");
  std::optional<std::string> use = StringMember(entry, "use");
  std::optional<std::string> crv = StringMember(entry, "crv");
  if (!kid || !kty || !alg || !use || !crv) {
    return "kid, kty, alg, use or crv is not a string";
  }
  jwk.kid = *kid;
  jwk.kty = *kty;
  jwk.alg = *alg;
  jwk.crv = *crv;
  if (!use->empty() && *use != "sig") {
    return Cat("use is ", LogSafe(*use, 16));
  }
  if (auto ops = entry.find("key_ops"); ops != entry.end()) {
    if (!ops->is_array() || std::find(ops->begin(), ops->end(), json("verify")) == ops->end()) {
      return "key_ops does not allow verify";
    }
  }
  if (jwk.kty != "RSA" && jwk.kty != "EC" && jwk.kty != "OKP") {
    return Cat("kty ", LogSafe(jwk.kty, 16), " not supported");
  }
  if (!AlgFitsKty(jwk.alg, jwk.kty)) {
    return Cat("alg ", LogSafe(jwk.alg, 16), " is not a signature algorithm for kty ", jwk.kty);
  }
  if (jwk.kty == "RSA") {
    return RsaKey(entry, jwk);
  }
  if (jwk.kty == "EC") {
    return EcKey(entry, jwk);
  }
  return OkpKey(entry, jwk);
}

}  // namespace

std::vector<const Jwk*> JwkSet::WithKid(std::string_view kid) const {
  std::vector<const Jwk*> out;
  for (const Jwk& key : keys) {
    if (key.kid == kid) {
      out.push_back(&key);
    }
  }
  return out;
}

bool JwkSet::SameKeysAs(const JwkSet& other) const {
  if (keys.size() != other.keys.size()) {
    return false;
  }
  for (const Jwk& a : keys) {
    bool found = std::any_of(other.keys.begin(), other.keys.end(), [&](const Jwk& b) {
      return a.kid == b.kid && a.kty == b.kty && a.crv == b.crv && a.alg == b.alg &&
             EVP_PKEY_eq(a.key.get(), b.key.get()) == 1;
    });
    if (!found) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<JwkSet> ParseJwks(std::string_view document) {
  if (document.size() > kMaxJwksBytes) {
    return absl::InvalidArgumentError(Cat("JWKS is larger than ", kMaxJwksBytes, " bytes"));
  }
  absl::StatusOr<json> doc = ParseStrictJson(document);
  if (!doc.ok()) {
    return absl::InvalidArgumentError(Cat("JWKS: ", MessageOf(doc.status())));
  }
  if (!doc->is_object()) {
    return absl::InvalidArgumentError("JWKS is not a JSON object");
  }
  auto keys = doc->find("keys");
  if (keys == doc->end() || !keys->is_array()) {
    return absl::InvalidArgumentError("JWKS has no \"keys\" array");
  }
  if (keys->size() > kMaxJwksKeys) {
    return absl::InvalidArgumentError(
        Cat("JWKS has ", keys->size(), " keys; at most ", kMaxJwksKeys, " accepted"));
  }
  JwkSet set;
  for (const json& entry : *keys) {
    if (!entry.is_object()) {
      return absl::InvalidArgumentError("JWKS has a key that is not a JSON object");
    }
    Jwk jwk;
    std::optional<std::string> skip = ReadKey(entry, jwk);
    ERR_clear_error();
    if (skip) {
      set.skipped.push_back(Cat("kid ", LogSafe(jwk.kid), ": ", *skip));
      continue;
    }
    for (const Jwk& other : set.keys) {
      if (other.kid == jwk.kid && other.kty == jwk.kty) {
        return absl::InvalidArgumentError(
            Cat("JWKS has two ", jwk.kty, " keys with kid ", LogSafe(jwk.kid)));
      }
    }
    set.keys.push_back(std::move(jwk));
  }
  if (set.keys.empty()) {
    std::string why = set.skipped.empty() ? "no keys" : set.skipped.front();
    if (set.skipped.size() > 1) {
      why += Cat(" (and ", set.skipped.size() - 1, " more)");
    }
    return absl::InvalidArgumentError(Cat("JWKS has no usable signing key: ", why));
  }
  return set;
}

}  // namespace tracegate::identity
