#include "grants/watch_registry.h"

#include <algorithm>
#include <utility>

namespace tracegate::grants::internal {

std::shared_ptr<WatchRegistry::Entry> WatchRegistry::Add(std::string_view grant_id,
                                                         Callback callback) {
  auto entry = std::make_shared<Entry>();
  entry->callback = std::move(callback);
  std::lock_guard<std::mutex> lock(mu_);
  by_grant_[std::string(grant_id)].push_back(entry);
  return entry;
}

void WatchRegistry::Remove(std::string_view grant_id, const std::shared_ptr<Entry>& entry) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_grant_.find(std::string(grant_id));
    if (it != by_grant_.end()) {
      std::erase(it->second, entry);
      if (it->second.empty()) {
        by_grant_.erase(it);
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

void WatchRegistry::Notify(std::string_view grant_id, store::GrantState state) {
  std::vector<std::shared_ptr<Entry>> entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_grant_.find(std::string(grant_id));
    if (it == by_grant_.end()) {
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
    entry->callback(state);
    entry->running.store(std::thread::id());
  }
}

size_t WatchRegistry::Count(std::string_view grant_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_grant_.find(std::string(grant_id));
  return it == by_grant_.end() ? 0 : it->second.size();
}

}  // namespace tracegate::grants::internal
