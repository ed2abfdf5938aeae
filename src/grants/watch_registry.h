#pragma once
// Private to grants: who wants to hear that a grant ended (revoked or expired).
//
// Callbacks run without the registry lock held, each under its own small lock, so that
// removing a watch waits for its callback if it is running on another thread: once Remove
// returns, the callback is not running and never runs again (a session may then free what
// the callback touches). Remove from inside the watch's own callback is fine; removing
// another watch from inside a callback could deadlock and is not allowed.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "store/state_store.h"

namespace tracegate::grants::internal {

class WatchRegistry {
 public:
  using Callback = std::function<void(store::GrantState)>;
  struct Entry;

  [[nodiscard]] std::shared_ptr<Entry> Add(std::string_view grant_id, Callback callback);
  void Remove(std::string_view grant_id, const std::shared_ptr<Entry>& entry);

  // Runs every live callback for `grant_id` once with `state`; each callback runs at most
  // once in its life.
  void Notify(std::string_view grant_id, store::GrantState state);

  // How many watches `grant_id` has (tests).
  size_t Count(std::string_view grant_id);

 private:
  // std::mutex: Debian's Abseil is not built for ThreadSanitizer (see sqlite_store.cpp).
  std::mutex mu_;
  absl::flat_hash_map<std::string, std::vector<std::shared_ptr<Entry>>> by_grant_;  // mu_
};

struct WatchRegistry::Entry {
  std::mutex mu;                         // held while the callback runs
  bool live = true;                      // guarded by mu
  std::atomic<std::thread::id> running;  // the thread running the callback, if any
  Callback callback;
};

}  // namespace tracegate::grants::internal
