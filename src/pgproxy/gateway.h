#pragma once
// The Postgres side of `tracegate serve`: one listener per configured postgres
// connection, a fixed set of worker threads each running its own event loop, and each
// worker's backend pools. Accepted connections are spread over the workers round-robin;
// a session then lives entirely on its worker.

#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "approvals/approvals.h"
#include "audit/recorder.h"
#include "config/config.h"
#include "grants/grants.h"
#include "pgproxy/asio.h"

namespace tracegate::pgproxy {

class Gateway {
 public:
  // `grants` (may be null: static users only) must outlive the gateway; with it, the user
  // "g_<grant id>" logs in with the grant's one-time credential. `recorder` (may be null:
  // recording disabled) records every authenticated session; it must outlive the gateway.
  // `approvals` (may be null) holds sessions on pending grants and results that need consent.
  Gateway(std::shared_ptr<const config::Config> config, prometheus::Registry& registry,
          grants::GrantService* grants = nullptr, audit::Recorder* recorder = nullptr,
          approvals::ApprovalService* approvals = nullptr);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Loads TLS material, binds every listener and starts the workers. Fails (and starts
  // nothing) if any listener cannot bind or a certificate cannot be loaded.
  [[nodiscard]] absl::Status Start();

  // Where the postgres connection `name` listens (port 0 resolved); nullopt if it is not one.
  [[nodiscard]] std::optional<tcp::endpoint> endpoint(std::string_view name) const;

  // Graceful shutdown, step 1: close the listeners; open sessions carry on.
  void StopAccepting();
  [[nodiscard]] size_t active_sessions() const { return active_sessions_.load(); }
  // Step 2: end every remaining session with 57P01, close idle backends, stop the
  // workers and join their threads.
  void Shutdown();

  // Whether listeners are open and accepting.
  [[nodiscard]] bool accepting() const { return accepting_.load(); }

  // An executor for auxiliary services (the admin listener) to share worker 0's loop.
  [[nodiscard]] asio::any_io_executor aux_executor();

 private:
  struct Worker;
  struct Listener;

  awaitable<void> AcceptLoop(Listener& listener);

  std::shared_ptr<const config::Config> config_;
  prometheus::Registry& registry_;
  grants::GrantService* grants_;
  audit::Recorder* recorder_;
  approvals::ApprovalService* approvals_;
  struct State;
  std::unique_ptr<State> state_;
  std::atomic<size_t> active_sessions_{0};
  std::atomic<bool> accepting_{false};
};

}  // namespace tracegate::pgproxy
