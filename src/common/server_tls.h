#pragma once
// The server-side TLS context every tracegate listener uses (Postgres and the API): TLS 1.2+
// with the certificate chain and key from the config's `tls` section.

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tracegate {

[[nodiscard]] absl::StatusOr<std::unique_ptr<boost::asio::ssl::context>> MakeServerTlsContext(
    const std::string& cert_file, const std::string& key_file);

}  // namespace tracegate
