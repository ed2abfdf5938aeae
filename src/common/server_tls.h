#pragma once
// The server-side TLS context every tracegate listener uses (Postgres and the API): TLS 1.2+
// with the certificate chain and key from the config's `tls` section, and the channel-binding
// data SCRAM-SHA-256-PLUS needs on either end of a TLS link.

#include <openssl/x509.h>

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tracegate {

// TLS 1.2 suites offered: forward secrecy (ECDHE) and AEAD only, the Mozilla "intermediate"
// list. No RSA key exchange, no CBC, no SHA-1 MACs. TLS 1.3 keeps OpenSSL's defaults (all
// AEAD with forward secrecy).
inline constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

[[nodiscard]] absl::StatusOr<std::unique_ptr<boost::asio::ssl::context>> MakeServerTlsContext(
    const std::string& cert_file, const std::string& key_file);

// RFC 5929 tls-server-end-point: the hash of `cert` (DER) with the hash function of its
// signature algorithm, SHA-256 when that is MD5 or SHA-1. Fails for signature algorithms
// without a single hash (Ed25519), as PostgreSQL does.
[[nodiscard]] absl::StatusOr<std::string> TlsServerEndPoint(X509* cert);

}  // namespace tracegate
