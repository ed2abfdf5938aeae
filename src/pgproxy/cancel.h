#pragma once
// Maps the BackendKeyData tracegate hands a client to the backend connection serving it,
// so a CancelRequest (which arrives on a new connection, possibly on another worker)
// cancels the right backend query. Each session gets a fresh random key: a client can
// never cancel a query of a later session that happens to reuse the same backend.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "pgwire/messages.h"

namespace tracegate::pgproxy {

struct CancelTarget {
  std::string host;
  uint16_t port = 0;
  pgwire::BackendKeyData backend_key;
  std::string connection;  // for metrics and logs
};

class CancelRegistry {
 public:
  // Registers `target` under a new random client key and returns that key.
  pgwire::BackendKeyData Register(CancelTarget target);
  void Unregister(const pgwire::BackendKeyData& client_key);
  // The target for a client's CancelRequest; the secret is compared in constant time.
  std::optional<CancelTarget> Find(const pgwire::CancelRequest& request) const;

 private:
  struct Entry {
    int32_t secret_key;
    CancelTarget target;
  };
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int32_t, Entry> entries_ ABSL_GUARDED_BY(mu_);  // by process id
};

}  // namespace tracegate::pgproxy
