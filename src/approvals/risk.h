#pragma once
// The risk of one trace, for policy rules with `approve_if_risk_at_least`: the connection's
// `risk_query` run on its backend with the gateway's own credential (config::Backend).
//
// Each call runs the query once with QueryBackend (backend_query.h: one libpq connection, the
// trace id as $1, at most about `timeout` for the whole call, statement_timeout, read-only when
// backend.read_only, the backend's TLS mode), with application_name "tracegate-risk".
//
// Errors (the message always starts "cannot evaluate the risk of trace <id>: "):
//   Unavailable         connecting, authenticating or running the query failed, or the
//                       deadline passed (libpq's reason; the backend password is never in it),
//                       or the statement returns no rows at all (an UPDATE: "... failed: the
//                       risk query is not a query that returns rows (PGRES_COMMAND_OK)")
//   FailedPrecondition  the query did not return exactly one row with one column whose text is
//                       a finite number ("the risk query returned 0 rows", "... is not a number")
//   InvalidArgument     the trace id or the SQL contains a NUL byte
// A caller must fail closed on any error: an unknown risk is not a low one. The messages
// carry backend text and tell whether the trace exists: they are for the log, never for the
// requester (the API answers 503 risk_unavailable alike for all of them).
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
