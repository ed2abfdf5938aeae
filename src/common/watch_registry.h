#pragma once
// Who wants to hear, once, that something keyed by an id changed: a session that must end
// when its grant is revoked, a long-poll or a held session waiting for an approval.
//
// Callbacks run without the registry lock held, each under its own small lock, so that
// removing a watch waits for its callback if it is running on another thread: once Remove
// returns, the callback is not running and never runs again (a session may then free what
// the callback touches). Remove from inside the watch's own callback is fine; removing
// another watch from inside a callback could deadlock and is not allowed.

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace tracegate {

template <typename Value>
class WatchRegistry {
 public:
  using Callback = std::function<void(Value)>;

  struct Entry {
    std::mutex mu;                         // held while the callback runs
    bool live = true;                      // guarded by mu
    std::atomic<std::thread::id> running;  // the thread running the callback, if any
    Callback callback;
  };

  [[nodiscard]] std::shared_ptr<Entry> Add(std::string_view id, Callback callback) {
    auto entry = std::make_shared<Entry>();
    entry->callback = std::move(callback);
    std::lock_guard<std::mutex> lock(mu_);
    by_id_[std::string(id)].push_back(entry);
    return entry;
  }

  void Remove(std::string_view id, const std::shared_ptr<Entry>& entry) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = by_id_.find(std::string(id));
      if (it != by_id_.end()) {
        std::erase(it->second, entry);
        if (it->second.empty()) {
          by_id_.erase(it);
        }
      }
    }
    if (entry->running.load() == std::this_thread::get_id()) {
      // Inside this watch's own callback: this thread holds entry->mu already.
      entry->live = false;
      return;
    }
    std::lock_guard<std::mutex> lock(entry->mu);
    entry->live = false;
  }

  // Runs every live callback for `id` once with `value`; each callback runs at most once in
  // its life.
  void Notify(std::string_view id, const Value& value) {
    std::vector<std::shared_ptr<Entry>> entries;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = by_id_.find(std::string(id));
      if (it == by_id_.end()) {
        return;
      }
      entries = it->second;
    }
    for (const std::shared_ptr<Entry>& entry : entries) {
      std::lock_guard<std::mutex> lock(entry->mu);
      if (!entry->live) {
        continue;
      }
      entry->live = false;  // at most once
      entry->running.store(std::this_thread::get_id());
      entry->callback(value);
      entry->running.store(std::thread::id());
    }
  }

  // How many watches `id` has (tests).
  size_t Count(std::string_view id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_id_.find(std::string(id));
    return it == by_id_.end() ? 0 : it->second.size();
  }

 private:
  // std::mutex: Debian's Abseil is not built for ThreadSanitizer (see sqlite_store.cpp).
  std::mutex mu_;
  absl::flat_hash_map<std::string, std::vector<std::shared_ptr<Entry>>> by_id_;  // mu_
};

// Unregisters on destruction (see Remove).
template <typename Value>
class WatchHandle {
 public:
  WatchHandle(std::shared_ptr<WatchRegistry<Value>> registry, std::string id,
              std::shared_ptr<typename WatchRegistry<Value>::Entry> entry)
      : registry_(std::move(registry)), id_(std::move(id)), entry_(std::move(entry)) {}
  ~WatchHandle() { registry_->Remove(id_, entry_); }
  WatchHandle(const WatchHandle&) = delete;
  WatchHandle& operator=(const WatchHandle&) = delete;

 private:
  std::shared_ptr<WatchRegistry<Value>> registry_;
  std::string id_;
  std::shared_ptr<typename WatchRegistry<Value>::Entry> entry_;
};

}  // namespace tracegate
