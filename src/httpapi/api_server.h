#pragma once
// Serves an ApiService over HTTP/1.1, with TLS unless the config turns it off (local demos).
//
// The API runs on its own threads, not on the Postgres workers: validating a token may fetch
// an issuer's keys and issuing a grant waits for the state store's fsync, and neither may
// stall a data-path session. Each connection is bounded: 8 KiB of headers, api.max_body_bytes
// of body, 10 s to send a request, keep-alive for at most 100 requests.

#include <boost/asio/ip/tcp.hpp>
#include <memory>

#include "absl/status/status.h"
#include "config/config.h"
#include "httpapi/api.h"

namespace tracegate::httpapi {

class ApiServer {
 public:
  ApiServer(std::shared_ptr<const config::Config> config, ApiService& service);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Loads the TLS certificate (if api.tls), binds api.listen and starts `threads` threads.
  [[nodiscard]] absl::Status Start(unsigned threads = 2);
  [[nodiscard]] boost::asio::ip::tcp::endpoint endpoint() const;
  // Closes the listener and open connections, and joins the threads.
  void Stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tracegate::httpapi
