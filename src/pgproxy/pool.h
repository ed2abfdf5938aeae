#pragma once
// Backend connections for one configured connection on one worker thread. Each worker
// has its own pool, so a pooled connection is only ever touched by the thread whose
// event loop owns its socket, and checkout takes no lock.
//
// A session takes a connection with Acquire and, when it ends, either hands it back
// through Release (only after the session reset it: idle, nothing in flight, DISCARD ALL
// done) or drops it with Discard. When max_size connections are out, Acquire waits up to
// connect_timeout for one to come back, then fails with 53300.

#include <deque>
#include <list>
#include <memory>

#include "absl/status/statusor.h"
#include "pgproxy/asio.h"
#include "pgproxy/backend.h"

namespace tracegate::pgproxy {

class BackendPool {
 public:
  BackendPool(asio::io_context& context, BackendTarget target, ConnectionMetrics metrics,
              uint32_t max_size);

  awaitable<absl::StatusOr<std::unique_ptr<BackendConn>>> Acquire();
  void Release(std::unique_ptr<BackendConn> conn);
  void Discard(std::unique_ptr<BackendConn> conn);

  // Closes connections idle longer than pool.idle_timeout. Called periodically.
  void Reap();
  // Closes every idle connection (shutdown).
  void CloseIdle();

  [[nodiscard]] size_t idle_count() const { return idle_.size(); }
  [[nodiscard]] uint32_t open_count() const { return open_; }

 private:
  // Whether a pooled connection is still usable: the server may have closed it (restart,
  // idle timeout on its side) or sent something unprompted (a FATAL before closing).
  static bool LooksAlive(BackendConn& conn);
  void WakeOneWaiter();

  asio::io_context& context_;
  BackendTarget target_;
  ConnectionMetrics metrics_;
  uint32_t max_size_;
  uint32_t open_ = 0;                              // idle + checked out + being opened
  std::deque<std::unique_ptr<BackendConn>> idle_;  // most recently used at the back
  std::list<asio::steady_timer*> waiters_;
};

}  // namespace tracegate::pgproxy
