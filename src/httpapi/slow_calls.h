#pragma once
// A bound on handlers that wait on a slow dependency at once (issue 17 item 5): the risk
// query (libpq, up to 5 s plus connect), token introspection and JWKS fetches. The API's
// handler threads are few; without this, a slow dependency could hold all of them and every
// other caller would wait. A request that finds no slot is answered 503 `busy` with
// Retry-After at once rather than queued: its caller retries, and quick requests (an
// approver's list, a vote, a grant that needs no risk) always find a free handler thread
// (config check requires api.max_slow_calls < api.handler_threads).

#include <atomic>
#include <cstdint>
#include <optional>

namespace tracegate::httpapi {

class SlowCalls {
 public:
  explicit SlowCalls(uint32_t limit) : limit_(limit) {}
  SlowCalls(const SlowCalls&) = delete;
  SlowCalls& operator=(const SlowCalls&) = delete;

  // Held while the slow call runs; releases its slot when destroyed.
  class Slot {
   public:
    explicit Slot(std::atomic<uint32_t>& in_use) : in_use_(&in_use) {}
    Slot(Slot&& other) noexcept : in_use_(other.in_use_) { other.in_use_ = nullptr; }
    Slot& operator=(Slot&&) = delete;
    Slot(const Slot&) = delete;
    ~Slot() {
      if (in_use_ != nullptr) {
        in_use_->fetch_sub(1);
      }
    }

   private:
    std::atomic<uint32_t>* in_use_;
  };

  // A slot, or nullopt when `limit` calls are already running.
  [[nodiscard]] std::optional<Slot> TryAcquire() {
    uint32_t now = in_use_.load();
    do {
      if (now >= limit_) {
        return std::nullopt;
      }
    } while (!in_use_.compare_exchange_weak(now, now + 1));
    return std::optional<Slot>(std::in_place, in_use_);
  }
  [[nodiscard]] uint32_t in_use() const { return in_use_.load(); }

 private:
  const uint32_t limit_;
  std::atomic<uint32_t> in_use_{0};
};

}  // namespace tracegate::httpapi
