#include "pgproxy/cancel.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstdlib>

namespace tracegate::pgproxy {

namespace {

int32_t RandomInt32() {
  int32_t value = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&value), sizeof value) != 1) {
    // No randomness means no unguessable cancel keys; the process cannot run safely.
    std::abort();
  }
  return value;
}

}  // namespace

pgwire::BackendKeyData CancelRegistry::Register(CancelTarget target) {
  absl::MutexLock lock(&mu_);
  for (;;) {
    // Positive process ids, like PostgreSQL's: some clients print or parse them.
    const int32_t pid = RandomInt32() & 0x7fffffff;
    if (pid == 0 || entries_.contains(pid)) {
      continue;
    }
    const int32_t secret = RandomInt32();
    entries_.emplace(pid, Entry{secret, std::move(target)});
    return {.process_id = pid, .secret_key = secret};
  }
}

void CancelRegistry::Unregister(const pgwire::BackendKeyData& client_key) {
  absl::MutexLock lock(&mu_);
  entries_.erase(client_key.process_id);
}

std::optional<CancelTarget> CancelRegistry::Find(const pgwire::CancelRequest& request) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(request.process_id);
  if (it == entries_.end()) {
    return std::nullopt;
  }
  if (CRYPTO_memcmp(&it->second.secret_key, &request.secret_key, sizeof(int32_t)) != 0) {
    return std::nullopt;
  }
  return it->second.target;
}

}  // namespace tracegate::pgproxy
