#pragma once
// The admin listener: GET /healthz (the process is up), GET /readyz (listeners open and
// not draining) and GET /metrics (Prometheus text exposition of the registry). Plain
// HTTP/1.1 on a separate address meant for the operator's network only.

#include <prometheus/registry.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>

#include "absl/status/status.h"

namespace tracegate::admin {

class AdminServer {
 public:
  AdminServer(boost::asio::any_io_executor executor, std::shared_ptr<prometheus::Registry> registry,
              std::function<bool()> ready);
  ~AdminServer();

  // Binds and starts serving on `endpoint` (port 0 picks one; see endpoint()).
  [[nodiscard]] absl::Status Start(const boost::asio::ip::tcp::endpoint& endpoint);
  [[nodiscard]] boost::asio::ip::tcp::endpoint endpoint() const;
  void Stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tracegate::admin
