#include "common/server_tls.h"

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>

#include "common/strings.h"

namespace tracegate {

namespace ssl = boost::asio::ssl;

absl::StatusOr<std::unique_ptr<ssl::context>> MakeServerTlsContext(const std::string& cert_file,
                                                                   const std::string& key_file) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_cipher_list(ctx->native_handle(), kTls12Ciphers) != 1) {
    return absl::InternalError("the TLS library accepts none of the TLS 1.2 cipher suites");
  }
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) {
    return absl::InvalidArgumentError(Cat("tls.cert_file ", cert_file, ": ", ec.message()));
  }
  ctx->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(Cat("tls.key_file ", key_file, ": ", ec.message()));
  }
  return ctx;
}

absl::StatusOr<std::string> TlsServerEndPoint(X509* cert) {
  if (cert == nullptr) {
    return absl::FailedPreconditionError("no certificate to bind the channel to");
  }
  int md_nid = NID_undef;
  if (OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, nullptr) != 1) {
    return absl::FailedPreconditionError("unknown certificate signature algorithm");
  }
  if (md_nid == NID_md5 || md_nid == NID_sha1) {
    md_nid = NID_sha256;
  }
  const EVP_MD* md = EVP_get_digestbynid(md_nid);
  if (md == nullptr) {
    return absl::FailedPreconditionError(
        "the certificate's signature algorithm has no hash for tls-server-end-point");
  }
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (X509_digest(cert, md, hash, &size) != 1) {
    return absl::InternalError("could not hash the certificate");
  }
  return std::string(reinterpret_cast<const char*>(hash), size);
}

}  // namespace tracegate
