#include "common/server_tls.h"

#include "common/strings.h"

namespace tracegate {

namespace ssl = boost::asio::ssl;

absl::StatusOr<std::unique_ptr<ssl::context>> MakeServerTlsContext(const std::string& cert_file,
                                                                   const std::string& key_file) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
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

}  // namespace tracegate
