#pragma once
// Private to the config module: the keys of `audit:`, the session recorder's settings.

#include "config/config.h"
#include "config/schema.h"

namespace tracegate::config::internal {

// The secret's sources, resolved by AuditKeys' check.
struct AuditExtra {
  std::string signing_key_file;
  std::string signing_key_env;
};

const Table<Audit, AuditExtra>& AuditKeys();

}  // namespace tracegate::config::internal
