#pragma once
// tracegate's configuration: YAML in, one validated immutable Config out.
//
// Every key is declared once in config.cpp (type, default, whether reload may change it).
// Unknown keys, wrong types, out-of-range values and missing required keys are errors
// reported together, each as "<file>:<line>:<column>: <key path>: <reason>". Secrets are
// never in the file itself in production: a backend password is read from a file or an
// environment variable named in the config (password_file / password_env), and the
// loaded value never appears in an error message.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tracegate::config {

using Duration = std::chrono::milliseconds;

struct Endpoint {
  std::string host;   // literal address or name
  uint16_t port = 0;  // 0 = pick a free port (tests)

  bool operator==(const Endpoint&) const = default;
};

enum class BackendTlsMode { kDisable, kRequire, kVerifyFull };

struct Backend {
  std::string host;
  uint16_t port = 5432;
  std::string database;
  std::string user;
  // The gateway's own password for the backend, already loaded from password_file or
  // password_env (exactly one of them must be set; a literal `password` key is accepted
  // only with `allow_inline_password: true` for demos and tests).
  std::string password;
  BackendTlsMode tls = BackendTlsMode::kDisable;
  std::string ca_file;  // verify-full: CA bundle (empty = system default)
  Duration connect_timeout{5000};
  Duration statement_timeout{30000};  // 0 = off
  bool read_only = true;              // default_transaction_read_only on backend sessions
};

struct Pool {
  uint32_t max_size = 32;        // backend connections per connection entry
  Duration idle_timeout{60000};  // close pooled backends idle longer than this
};

// A statically configured client credential (issue 2); JIT grants replace this source.
struct StaticUser {
  std::string name;
  std::string scram_verifier;  // "SCRAM-SHA-256$<iter>:<salt>$<stored>:<server>"
};

struct PostgresConnection {
  std::string name;
  Endpoint listen;
  bool require_tls = false;
  Duration idle_timeout{300000};      // no client traffic for this long ends the session
  Duration session_timeout{3600000};  // hard bound on a session's life; 0 = off
  // Client sessions open at once on this listener (handshakes included); one more is
  // refused with 53300 before any other work, so a flood cannot exhaust the gateway.
  uint32_t max_sessions = 1000;
  Backend backend;
  Pool pool;
  std::vector<StaticUser> users;
};

struct Tls {
  std::string cert_file;  // PEM; both empty = TLS not offered
  std::string key_file;
};

struct Limits {
  uint32_t max_startup_length = 10000;
  uint32_t max_message_length = 64u << 20;
};

struct Config {
  std::string source;              // path it was loaded from, for messages
  uint32_t workers = 0;            // event-loop threads; 0 = number of cores
  Duration shutdown_grace{10000};  // SIGTERM: drain this long, then close
  std::string log_level = "info";
  std::optional<Endpoint> admin;  // /healthz, /readyz, /metrics
  Tls tls;
  Limits limits;
  std::vector<PostgresConnection> connections;
};

// Loads and validates. On failure the status message lists every error, one per line.
[[nodiscard]] absl::StatusOr<std::shared_ptr<const Config>> LoadFile(const std::string& path);
// Same, from text (tests, fuzzing); `source` names it in messages.
[[nodiscard]] absl::StatusOr<std::shared_ptr<const Config>> LoadString(const std::string& yaml,
                                                                       const std::string& source);

// The key paths (e.g. "workers", "connections[traces-pg].listen") whose values differ between
// two loaded configs and which a reload cannot apply (declared per key in config.cpp); a
// connection added or removed shows as "connections[<name>] (added)" / "(removed)". Empty
// means `after` may simply replace `before`.
[[nodiscard]] std::vector<std::string> RestartRequiredChanges(const Config& before,
                                                              const Config& after);

}  // namespace tracegate::config
