#include "app/serve.h"

#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <thread>

#include "admin/admin_server.h"
#include "common/status.h"
#include "pgproxy/gateway.h"

namespace tracegate::app {

namespace asio = boost::asio;

namespace {

// Takes SIGINT and SIGTERM from the moment it exists, so a signal during start-up is
// not lost (nor fatal).
class ShutdownSignal {
 public:
  ShutdownSignal() : signals_(context_, SIGINT, SIGTERM) {}
  // Blocks until one arrives; returns the signal number.
  int Wait() {
    int received = 0;
    signals_.async_wait([&](boost::system::error_code, int signal) { received = signal; });
    context_.run();
    return received;
  }

 private:
  asio::io_context context_;
  asio::signal_set signals_;
};

}  // namespace

int Serve(std::shared_ptr<const config::Config> config) {
  std::signal(SIGPIPE, SIG_IGN);
  ShutdownSignal shutdown_signal;
  auto registry = std::make_shared<prometheus::Registry>();
  pgproxy::Gateway gateway(config, *registry);
  if (absl::Status started = gateway.Start(); !started.ok()) {
    spdlog::error("cannot start: {}", MessageOf(started));
    return 1;
  }
  std::unique_ptr<admin::AdminServer> admin_server;
  if (config->admin.has_value()) {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(config->admin->host, ec);
    if (ec) {
      spdlog::error("admin.listen: \"{}\" is not an IP address", config->admin->host);
      gateway.Shutdown();
      return 1;
    }
    admin_server = std::make_unique<admin::AdminServer>(gateway.aux_executor(), registry,
                                                        [&gateway] { return gateway.accepting(); });
    if (absl::Status s = admin_server->Start({address, config->admin->port}); !s.ok()) {
      spdlog::error("cannot start: {}", MessageOf(s));
      gateway.Shutdown();
      return 1;
    }
    spdlog::info("admin: listening on {}:{}", admin_server->endpoint().address().to_string(),
                 admin_server->endpoint().port());
  }
  spdlog::info("tracegate is ready");

  const int signal = shutdown_signal.Wait();
  spdlog::info("received {}: no new sessions; draining {} open session(s) for up to {} ms",
               signal == SIGINT ? "SIGINT" : "SIGTERM", gateway.active_sessions(),
               config->shutdown_grace.count());
  gateway.StopAccepting();
  const auto deadline = std::chrono::steady_clock::now() + config->shutdown_grace;
  while (gateway.active_sessions() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (gateway.active_sessions() > 0) {
    spdlog::info("terminating {} session(s) still open", gateway.active_sessions());
  }
  if (admin_server) {
    admin_server->Stop();
  }
  gateway.Shutdown();
  spdlog::info("stopped");
  return 0;
}

}  // namespace tracegate::app
