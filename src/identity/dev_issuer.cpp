#include "identity/dev_issuer.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "common/status.h"
#include "common/strings.h"
#include "identity/base64url.h"
#include "identity/openssl_ptr.h"
#include "nlohmann/json.hpp"

namespace tracegate::identity {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

absl::Status OpenSslError(std::string_view what) {
  unsigned long code = ERR_get_error();
  char buf[256] = {0};
  if (code != 0) {
    ERR_error_string_n(code, buf, sizeof(buf));
  }
  ERR_clear_error();
  return absl::InternalError(Cat(what, code != 0 ? ": " : "", buf));
}

absl::StatusOr<OpenSslPtr<EVP_PKEY>> ReadPrivateKey(std::string_view pem) {
  OpenSslPtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  OpenSslPtr<EVP_PKEY> key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
                               : nullptr);
  if (!key) {
    return OpenSslError("cannot read the development private key");
  }
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA || EVP_PKEY_get_bits(key.get()) < 2048) {
    return absl::InvalidArgumentError("the development private key must be RSA, 2048 bits or more");
  }
  return key;
}

absl::StatusOr<std::string> BnParam(EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) {
    return OpenSslError("cannot read an RSA parameter");
  }
  OpenSslPtr<BIGNUM> bn(raw);
  std::string out(static_cast<size_t>(BN_num_bytes(bn.get())), '\0');
  BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

// {"e","kty","n"} in RFC 7638 member order; the thumbprint is SHA-256 of that exact text.
absl::StatusOr<json> PublicJwk(EVP_PKEY* key) {
  TG_ASSIGN_OR_RETURN(std::string n, BnParam(key, OSSL_PKEY_PARAM_RSA_N));
  TG_ASSIGN_OR_RETURN(std::string e, BnParam(key, OSSL_PKEY_PARAM_RSA_E));
  return json{{"e", Base64UrlEncode(e)}, {"kty", "RSA"}, {"n", Base64UrlEncode(n)}};
}

std::string Thumbprint(const json& jwk) {
  std::string canonical = jwk.dump();  // nlohmann orders members by name, no whitespace
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(canonical.data(), canonical.size(), digest, &len, EVP_sha256(), nullptr);
  return Base64UrlEncode(std::string_view(reinterpret_cast<char*>(digest), len));
}

absl::Status WriteFile(const fs::path& path, std::string_view data, mode_t mode) {
  fs::path tmp = path;
  tmp += ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::UnavailableError(Cat("cannot create ", tmp.string(), ": ", std::strerror(errno)));
  }
  bool ok = ::fchmod(fd, mode) == 0;
  size_t done = 0;
  while (ok && done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    ok = n > 0;
    done += ok ? static_cast<size_t>(n) : 0;
  }
  ok = ::fsync(fd) == 0 && ok;
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return absl::UnavailableError(Cat("cannot write ", path.string(), ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GeneratePrivateKeyPem() {
  OpenSslPtr<EVP_PKEY> key(EVP_RSA_gen(2048));
  if (!key) {
    return OpenSslError("cannot generate an RSA key");
  }
  OpenSslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("cannot write the RSA key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::string> ReadPrivateKeyFile(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::UnavailableError(Cat("cannot stat ", path.string(), ": ", std::strerror(errno)));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(
        Cat(path.string(), " may be read by group or others; chmod 600 it"));
  }
  std::ifstream in(path, std::ios::binary);
  std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return absl::UnavailableError(Cat("cannot read ", path.string()));
  }
  return pem;
}

}  // namespace

absl::StatusOr<DevIssuerKeys> LoadOrCreateDevIssuerKeys(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) {
      return absl::UnavailableError(Cat("cannot create ", dir.string(), ": ", ec.message()));
    }
    fs::permissions(dir, fs::perms::owner_all, ec);
  }
  DevIssuerKeys keys;
  keys.private_key_path = dir / kDevPrivateKeyFile;
  keys.jwks_path = dir / kDevJwksFile;
  if (fs::exists(keys.private_key_path, ec)) {
    TG_ASSIGN_OR_RETURN(keys.private_key_pem, ReadPrivateKeyFile(keys.private_key_path));
  } else {
    TG_ASSIGN_OR_RETURN(keys.private_key_pem, GeneratePrivateKeyPem());
    TG_RETURN_IF_ERROR(WriteFile(keys.private_key_path, keys.private_key_pem, 0600));
  }
  TG_ASSIGN_OR_RETURN(OpenSslPtr<EVP_PKEY> key, ReadPrivateKey(keys.private_key_pem));
  TG_ASSIGN_OR_RETURN(json jwk, PublicJwk(key.get()));
  keys.kid = Thumbprint(jwk);
  jwk["kid"] = keys.kid;
  jwk["alg"] = "RS256";
  jwk["use"] = "sig";
  json jwks = {{"keys", json::array({jwk})}};
  TG_RETURN_IF_ERROR(WriteFile(keys.jwks_path, jwks.dump(2) + "\n", 0644));
  return keys;
}

config::Issuer DevIssuerConfig(const DevIssuerKeys& keys, std::string audience) {
  config::Issuer issuer;
  issuer.name = "dev";
  issuer.issuer = std::string(kDevIssuer);
  issuer.audiences = {std::move(audience)};
  issuer.discovery = false;
  issuer.jwks_file = keys.jwks_path.string();
  issuer.algorithms = {"RS256"};
  issuer.typ = "at+jwt";
  issuer.development = true;
  return issuer;
}

absl::StatusOr<std::string> SignDevToken(std::string_view private_key_pem, std::string_view kid,
                                         std::string_view issuer, std::string_view audience,
                                         std::string_view sub,
                                         const std::vector<std::string>& groups,
                                         std::string_view client_id, std::chrono::seconds ttl,
                                         std::chrono::system_clock::time_point now) {
  if (ttl.count() <= 0) {
    return absl::InvalidArgumentError("ttl must be positive");
  }
  if (sub.empty()) {
    return absl::InvalidArgumentError("sub must not be empty");
  }
  TG_ASSIGN_OR_RETURN(OpenSslPtr<EVP_PKEY> key, ReadPrivateKey(private_key_pem));
  unsigned char jti[16];
  if (RAND_bytes(jti, sizeof(jti)) != 1) {
    return OpenSslError("RAND_bytes failed");
  }
  int64_t iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  json header = {{"alg", "RS256"}, {"typ", "at+jwt"}, {"kid", kid}};
  json claims = {{"iss", issuer},
                 {"sub", sub},
                 {"aud", audience},
                 {"iat", iat},
                 {"exp", iat + ttl.count()},
                 {"jti", Base64UrlEncode(std::string_view(reinterpret_cast<char*>(jti), 16))},
                 {"groups", groups}};
  if (!client_id.empty()) {
    claims["client_id"] = client_id;
  }
  std::string input = Cat(Base64UrlEncode(header.dump()), ".", Base64UrlEncode(claims.dump()));
  OpenSslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, nullptr, 0) != 1) {
    return OpenSslError("cannot sign the development token");
  }
  std::string signature(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    return OpenSslError("cannot sign the development token");
  }
  signature.resize(len);
  return Cat(input, ".", Base64UrlEncode(signature));
}

}  // namespace tracegate::identity
