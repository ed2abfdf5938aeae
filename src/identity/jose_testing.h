#pragma once
// Test-only helpers: in-process keys, JWKs and signed tokens (any alg, any header, wrong
// ones included), a fake IdP behind the Fetcher interface, and a settable clock.

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "identity/base64url.h"
#include "identity/fetcher.h"
#include "nlohmann/json.hpp"

namespace tracegate::identity::testkit {

using nlohmann::json;
using Key = std::shared_ptr<EVP_PKEY>;

inline Key Own(EVP_PKEY* p) {
  return Key(p, [](EVP_PKEY* k) { EVP_PKEY_free(k); });
}
inline Key GenerateRsa(unsigned bits = 2048) { return Own(EVP_RSA_gen(bits)); }
inline Key GenerateEc() { return Own(EVP_EC_gen("P-256")); }
inline Key GenerateEd25519() { return Own(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")); }

inline std::string Bin(const BIGNUM* bn, int pad = 0) {
  std::string out(static_cast<size_t>(pad > 0 ? pad : BN_num_bytes(bn)), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  return out;
}

inline std::string BnParam(EVP_PKEY* key, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(key, name, &bn);
  std::string out = Bin(bn, pad);
  BN_free(bn);
  return out;
}

// The public JWK of `key` (RSA, EC P-256 or Ed25519).
inline json PublicJwk(EVP_PKEY* key, const std::string& kid, const std::string& alg = "") {
  json jwk;
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
      jwk = {{"kty", "RSA"},
             {"n", Base64UrlEncode(BnParam(key, OSSL_PKEY_PARAM_RSA_N))},
             {"e", Base64UrlEncode(BnParam(key, OSSL_PKEY_PARAM_RSA_E))}};
      break;
    case EVP_PKEY_EC:
      jwk = {{"kty", "EC"},
             {"crv", "P-256"},
             {"x", Base64UrlEncode(BnParam(key, OSSL_PKEY_PARAM_EC_PUB_X, 32))},
             {"y", Base64UrlEncode(BnParam(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32))}};
      break;
    case EVP_PKEY_ED25519: {
      std::string x(32, '\0');
      size_t len = x.size();
      EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(x.data()), &len);
      jwk = {{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", Base64UrlEncode(x)}};
      break;
    }
  }
  jwk["kid"] = kid;
  jwk["use"] = "sig";
  if (!alg.empty()) {
    jwk["alg"] = alg;
  }
  return jwk;
}

inline std::string Jwks(const std::vector<json>& keys) { return json{{"keys", keys}}.dump(); }

inline std::string PublicPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  return out;
}

inline std::string PublicDer(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key, &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

struct Signer {
  std::string alg;          // what to sign with: RS256, PS256, ES256, EdDSA, HS256, ...
  EVP_PKEY* key = nullptr;  // for public-key algorithms
  std::string secret;       // for HS*
  bool ecdsa_der = false;   // ES256: leave the signature DER-encoded (wrong for JWS)
};

inline const EVP_MD* MdFor(const std::string& alg) {
  if (alg.ends_with("384")) return EVP_sha384();
  if (alg.ends_with("512")) return EVP_sha512();
  if (alg == "EdDSA") return nullptr;
  return EVP_sha256();
}

inline std::string Sign(const Signer& s, const std::string& input) {
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (s.alg.starts_with("HS")) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(MdFor(s.alg), s.secret.data(), static_cast<int>(s.secret.size()), in, input.size(), mac,
         &len);
    return std::string(reinterpret_cast<char*>(mac), len);
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  EVP_DigestSignInit(ctx, &pctx, MdFor(s.alg), nullptr, s.key);
  if (s.alg.starts_with("PS")) {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
  }
  size_t len = 0;
  EVP_DigestSign(ctx, nullptr, &len, in, input.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size());
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  if (s.alg == "ES256" && !s.ecdsa_der) {
    const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* ecdsa = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
    sig = Bin(ECDSA_SIG_get0_r(ecdsa), 32) + Bin(ECDSA_SIG_get0_s(ecdsa), 32);
    ECDSA_SIG_free(ecdsa);
  }
  return sig;
}

inline std::string MakeToken(const json& header, const json& payload, const Signer& signer) {
  std::string input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(payload.dump());
  return input + "." + Base64UrlEncode(Sign(signer, input));
}

// A clock tests move by hand.
struct FakeClock {
  std::atomic<int64_t> millis{1'800'000'000'000};  // 2027-01-15T08:00:00Z
  std::chrono::system_clock::time_point now() const {
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(millis.load()));
  }
  void Advance(std::chrono::milliseconds d) { millis += d.count(); }
  Clock AsClock() {
    return [this] { return now(); };
  }
};

// An IdP behind the Fetcher interface: a map from URL to body, switchable to "down".
class FakeIdp : public Fetcher {
 public:
  void Set(const std::string& url, std::string body) {
    std::lock_guard lock(mu_);
    bodies_[url] = std::move(body);
  }
  void SetDown(bool down) { down_ = down; }
  int Gets(const std::string& url) {
    std::lock_guard lock(mu_);
    return gets_[url];
  }
  int TotalGets() {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& [url, count] : gets_) n += count;
    return n;
  }
  struct PostCall {
    std::string url, form;
    BasicAuth auth;
  };
  std::vector<PostCall> Posts() {
    std::lock_guard lock(mu_);
    return posts_;
  }

  absl::StatusOr<std::string> Get(const std::string& url, const FetchOptions&) override {
    std::lock_guard lock(mu_);
    ++gets_[url];
    auto it = bodies_.find(url);
    if (down_ || it == bodies_.end()) {
      return absl::UnavailableError("GET " + url + ": connection refused");
    }
    return it->second;
  }
  absl::StatusOr<std::string> Post(const std::string& url, const std::string& form,
                                   const BasicAuth& auth, const FetchOptions&) override {
    std::lock_guard lock(mu_);
    posts_.push_back({url, form, auth});
    auto it = bodies_.find(url);
    if (down_ || it == bodies_.end()) {
      return absl::UnavailableError("POST " + url + ": connection refused");
    }
    return it->second;
  }

 private:
  std::mutex mu_;
  std::atomic<bool> down_{false};
  std::map<std::string, std::string> bodies_;
  std::map<std::string, int> gets_;
  std::vector<PostCall> posts_;
};

}  // namespace tracegate::identity::testkit
