#pragma once
// The risk of one trace, for policy rules with `approve_if_risk_at_least`: the connection's
// `risk_query` run on its backend with the gateway's own credential (config::Backend).
//
// Each call opens one libpq connection, runs the query with the trace id as its only
// parameter ($1, text), and closes it. It blocks the calling thread, at most about `timeout`
// for the whole call (connect, TLS, authentication, query); the backend is also told to
// cancel the statement after `timeout` (statement_timeout). Name resolution happens before
// the deadline starts counting, as libpq does it synchronously.
//
// The connection is made the way the gateway's own backend connections are (src/pgproxy):
// backend.tls disable / require / verify-full become libpq's sslmode of the same name, with
// backend.ca_file as sslrootcert (the system CA bundle when empty); sessions are read-only
// when backend.read_only. No GSSAPI, no connection string: parameters go to libpq one by one.
//
// Errors (the message always starts "cannot evaluate the risk of trace <id>: "):
//   Unavailable         connecting, authenticating or running the query failed, or the
//                       deadline passed (libpq's reason; the backend password is never in it)
//   FailedPrecondition  the query did not return exactly one row with one column whose text is
//                       a finite number ("the risk query returned 0 rows", "... is not a number")
//   InvalidArgument     the trace id or the SQL contains a NUL byte
// A caller must fail closed on any error: an unknown risk is not a low one.
//
// Thread safety: calls are independent and may run concurrently.

#include <chrono>
#include <string_view>

#include "absl/status/statusor.h"
#include "config/config.h"

namespace tracegate::approvals {

[[nodiscard]] absl::StatusOr<double> QueryRisk(const config::Backend& backend, std::string_view sql,
                                               std::string_view trace_id,
                                               std::chrono::milliseconds timeout);

}  // namespace tracegate::approvals
