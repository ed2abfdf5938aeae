#pragma once
// One query about one trace, run on a connection's PostgreSQL backend with the gateway's own
// credential (config::Backend): the risk of a trace (risk.h) and the one-call trace fetch
// (`GET /v1/connections/{name}/traces/{id}`, the connection's fetch_query) both go through here.
//
// Each call opens one libpq connection, runs `sql` with the trace id as its only parameter ($1,
// text), reads the rows (text format) and closes it. It blocks the calling thread, at most about
// `timeout` for the whole call (connect, TLS, authentication, query, reading the rows); the
// backend is also told to cancel the statement after `timeout` (statement_timeout). Name
// resolution happens before the deadline starts counting, as libpq does it synchronously.
//
// The connection is made the way the gateway's own backend connections are (src/pgproxy):
// backend.tls disable / require / verify-full become libpq's sslmode of the same name, with
// backend.ca_file as sslrootcert (the system CA bundle when empty); sessions are read-only
// (default_transaction_read_only) when backend.read_only; application_name is
// "tracegate-<purpose>". No GSSAPI, no connection string: parameters go to libpq one by one.
//
// Thread safety: calls are independent and may run concurrently.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.h"

namespace tracegate::approvals {

// What a query returned, in PostgreSQL's text format.
struct QueryRows {
  std::vector<std::string> columns;  // result column names, in order (may repeat)
  std::vector<uint32_t> types;       // the columns' type OIDs
  std::vector<std::vector<std::optional<std::string>>> rows;  // nullopt = NULL
  uint64_t bytes = 0;                                         // sum of the values' sizes
};

// Caps on what one call reads; 0 = no cap. Past a cap the call stops reading and fails.
struct QueryLimits {
  uint64_t max_rows = 0;
  uint64_t max_bytes = 0;  // counted like QueryRows::bytes
};

// Runs `sql` with $1 = `trace_id` on `backend`. `purpose` names the query in messages ("the
// <purpose> query failed: ...") and in application_name. Every error's message starts with
// `prefix` as given (e.g. "cannot fetch trace <id>: "; a caller that puts the trace id there
// should bound it, and leave it out when the id contains a NUL byte):
//   Unavailable         connecting, authenticating or running the query failed, or the deadline
//                       passed (libpq's reason, made one line; the backend password is never in it)
//   ResourceExhausted   more than limits.max_rows rows or limits.max_bytes bytes (says which)
//   FailedPrecondition  the statement does not return rows (e.g. an UPDATE)
//   InvalidArgument     the SQL or the trace id contains a NUL byte (checked before connecting)
[[nodiscard]] absl::StatusOr<QueryRows> QueryBackend(
    const config::Backend& backend, std::string_view sql, std::string_view trace_id,
    std::chrono::milliseconds timeout, std::string_view purpose, std::string_view prefix,
    QueryLimits limits = {});

// The rows as a JSON array of objects, one per row, {column: value} in column order:
//   json, jsonb                  the value itself, byte for byte (validated with nlohmann, not
//                                re-encoded, so precise numbers inside stay exact; a number
//                                beyond double range, valid in jsonb, fails validation)
//   bool                         true / false
//   int2, int4, int8, oid        a number
//   float4, float8               a number when finite, else a string ("NaN", "Infinity")
//   numeric                      a number when a double holds it exactly to the digits shown
//                                (parsing it as a double and printing that back gives the same
//                                value), else a string, so no digit is lost ("NaN" too)
//   NULL                         null
//   anything else                a string
// A value whose text is not what its type promises (a bool that is not t/f, ...) becomes a
// string. A later column with the name of an earlier one gets "_2", "_3", ... (skipping names
// that other columns already have). InvalidArgument when a value or a column name is not valid
// UTF-8 or a json value does not parse: nothing is ever replaced silently.
[[nodiscard]] absl::StatusOr<std::string> RowsToJson(const QueryRows& rows);

// `text` from a backend (libpq's or the server's message, or a value) made one line, with every
// occurrence of `password` replaced by "[password]" should it ever appear.
std::string CleanBackendText(std::string_view text, std::string_view password);

}  // namespace tracegate::approvals
