#include "pgproxy/pool.h"

#include <sys/socket.h>

#include <cerrno>

#include "common/strings.h"
#include "pgproxy/pg_error.h"

namespace tracegate::pgproxy {

BackendPool::BackendPool(asio::io_context& context, BackendTarget target, ConnectionMetrics metrics,
                         uint32_t max_size)
    : context_(context), target_(target), metrics_(metrics), max_size_(max_size) {}

bool BackendPool::LooksAlive(BackendConn& conn) {
  if (conn.broken || !conn.buffer().Empty()) {
    return false;
  }
  // An idle backend has nothing to say; readable means EOF or an unsolicited message.
  char byte;
  ssize_t n = ::recv(conn.stream().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

awaitable<absl::StatusOr<std::unique_ptr<BackendConn>>> BackendPool::Acquire() {
  const auto deadline =
      std::chrono::steady_clock::now() + target_.connection->backend.connect_timeout;
  for (;;) {
    while (!idle_.empty()) {
      std::unique_ptr<BackendConn> conn = std::move(idle_.back());
      idle_.pop_back();
      if (LooksAlive(*conn)) {
        metrics_.pool_reuses->Increment();
        co_return conn;
      }
      conn->stream().Close();
      --open_;
    }
    if (open_ < max_size_) {
      ++open_;
      metrics_.backend_connects->Increment();
      absl::StatusOr<std::unique_ptr<BackendConn>> conn = co_await BackendConn::Open(target_);
      if (!conn.ok()) {
        --open_;
        metrics_.backend_errors->Increment();
        WakeOneWaiter();
      }
      co_return conn;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      co_return PgError(absl::StatusCode::kResourceExhausted, sqlstate::kTooManyConnections,
                        Cat("tracegate: all ", max_size_, " backend connections of \"",
                            target_.connection->name, "\" are busy"));
    }
    asio::steady_timer wake(context_);
    wake.expires_at(deadline);
    auto it = waiters_.insert(waiters_.end(), &wake);
    error_code ec;
    co_await wake.async_wait(Redirect(ec));  // cancelled = woken by Release/Discard
    waiters_.erase(it);
  }
}

void BackendPool::Release(std::unique_ptr<BackendConn> conn) {
  conn->idle_since = BackendConn::Clock::now();
  idle_.push_back(std::move(conn));
  WakeOneWaiter();
}

void BackendPool::Discard(std::unique_ptr<BackendConn> conn) {
  if (conn) {
    conn->stream().Close();
  }
  --open_;
  WakeOneWaiter();
}

void BackendPool::WakeOneWaiter() {
  if (!waiters_.empty()) {
    waiters_.front()->cancel();
  }
}

void BackendPool::Reap() {
  const auto cutoff = BackendConn::Clock::now() - target_.connection->pool.idle_timeout;
  // Oldest first: the front of the deque has been idle longest.
  while (!idle_.empty() && idle_.front()->idle_since < cutoff) {
    idle_.front()->stream().Close();
    idle_.pop_front();
    --open_;
  }
}

void BackendPool::CloseIdle() {
  for (auto& conn : idle_) {
    conn->stream().Close();
  }
  open_ -= idle_.size();
  idle_.clear();
}

}  // namespace tracegate::pgproxy
