#pragma once
// One authenticated connection from the gateway to a backend PostgreSQL, made with the
// connection's stored credential (the client never sees it).

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "pgproxy/asio.h"
#include "pgproxy/frame_buffer.h"
#include "pgproxy/metrics.h"
#include "pgproxy/protocol_gate.h"
#include "pgproxy/stream.h"
#include "pgwire/messages.h"

namespace tracegate::pgproxy {

// Everything needed to open backend connections for one configured connection.
struct BackendTarget {
  const config::Connection* connection = nullptr;
  asio::ssl::context* tls = nullptr;  // null when backend.tls is disable
  pgwire::Limits limits;
  // Where SCRAM's PBKDF2 runs, off the worker's event loop; null = inline (unit tests).
  asio::thread_pool* scram_pool = nullptr;
};

class BackendConn {
 public:
  using Clock = std::chrono::steady_clock;

  // Connects, negotiates TLS as configured, authenticates with a method backend.auth allows
  // (SCRAM-SHA-256, SCRAM-SHA-256-PLUS over TLS, md5 or cleartext; anything else is refused
  // with 28000 and never answered) and reads up to the first ReadyForQuery,
  // all within backend.connect_timeout. Errors carry a SQLSTATE (pg_error.h); a backend
  // ErrorResponse keeps the backend's own SQLSTATE and message.
  static awaitable<absl::StatusOr<std::unique_ptr<BackendConn>>> Open(const BackendTarget& target);

  explicit BackendConn(tcp::socket socket) : stream_(std::move(socket)) {}

  Stream& stream() { return stream_; }
  FrameBuffer& buffer() { return buffer_; }
  [[nodiscard]] const pgwire::BackendKeyData& key() const { return key_; }

  // The server's current run-time parameters, as last reported by ParameterStatus.
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& parameters() const {
    return parameters_;
  }
  [[nodiscard]] const std::string* Parameter(std::string_view name) const;
  void SetParameter(std::string_view name, std::string_view value);

  // Reads the next complete frame, validated; it stays valid until the next ReadFrame.
  awaitable<absl::StatusOr<pgwire::Frame>> ReadFrame();

  // Runs one simple-protocol statement and reads up to ReadyForQuery. Returns the
  // backend's error, if it sent one. With `rows`, the result rows are kept (as text; NULL
  // as an empty string).
  awaitable<absl::Status> Exec(std::string_view sql,
                               std::vector<std::vector<std::string>>* rows = nullptr);

  // True once anything went wrong; such a connection is closed, never pooled.
  bool broken = false;
  // Transaction status from the last ReadyForQuery.
  char transaction_status = 'I';
  Clock::time_point idle_since{};
  // Parameters a session SET that the server does not report: after a reset they are
  // back to their defaults, so they must be applied again for the next session.
  std::vector<std::pair<std::string, std::string>> unreported_settings;
  // The declared trace-id columns as this server's catalog names them (looked up once per
  // connection, by the first grant session that uses it).
  std::optional<TraceColumns> trace_columns;
  ColumnNames trace_table_columns;  // every column of the trace tables, with trace_columns

 private:
  awaitable<absl::Status> Handshake(const BackendTarget& target);
  awaitable<absl::Status> Authenticate(const config::Connection& conn,
                                       const pgwire::Authentication& request);
  awaitable<absl::Status> AuthenticateScram(const config::Connection& conn,
                                            const pgwire::Authentication& request);

  Stream stream_;
  FrameBuffer buffer_;
  pgwire::Limits limits_;
  asio::thread_pool* scram_pool_ = nullptr;
  pgwire::BackendKeyData key_;
  std::vector<std::pair<std::string, std::string>> parameters_;
};

}  // namespace tracegate::pgproxy
