#include "approvals/risk.h"

#include <charconv>
#include <cmath>
#include <string>
#include <system_error>

#include "absl/status/status.h"
#include "approvals/backend_query.h"
#include "common/status.h"
#include "common/strings.h"

namespace tracegate::approvals {
namespace {

absl::StatusOr<double> RiskOf(const QueryRows& result, std::string_view prefix,
                              std::string_view password) {
  if (result.rows.size() != 1) {
    return absl::FailedPreconditionError(Cat(prefix, "the risk query returned ", result.rows.size(),
                                             " rows (expected exactly one)"));
  }
  if (result.columns.size() != 1) {
    return absl::FailedPreconditionError(Cat(prefix, "the risk query returned ",
                                             result.columns.size(),
                                             " columns (expected exactly one)"));
  }
  const std::optional<std::string>& value = result.rows[0][0];
  if (!value.has_value()) {
    return absl::FailedPreconditionError(
        Cat(prefix, "the risk query returned NULL, which is not a number"));
  }
  const std::string_view text = *value;
  double risk = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), risk);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      !std::isfinite(risk)) {
    return absl::FailedPreconditionError(Cat(prefix, "the risk query returned \"",
                                             CleanBackendText(text.substr(0, 64), password),
                                             "\", which is not a number"));
  }
  return risk;
}

}  // namespace

absl::StatusOr<double> QueryRisk(const config::Backend& backend, std::string_view sql,
                                 std::string_view trace_id, std::chrono::milliseconds timeout) {
  // A trace id with a NUL byte stays out of the message (QueryBackend refuses it).
  const bool nul =
      trace_id.find('\0') != std::string_view::npos || sql.find('\0') != std::string_view::npos;
  const std::string prefix =
      nul ? std::string("cannot evaluate the risk of a trace: ")
          : Cat("cannot evaluate the risk of trace ", trace_id.substr(0, 64), ": ");
  absl::StatusOr<QueryRows> rows = QueryBackend(backend, sql, trace_id, timeout, "risk", prefix);
  if (rows.status().code() == absl::StatusCode::kFailedPrecondition) {
    // A statement without rows has always been a failed risk query here (Unavailable).
    return absl::UnavailableError(
        Cat(prefix, "the risk query failed: ", MessageOf(rows.status()).substr(prefix.size())));
  }
  if (!rows.ok()) {
    return rows.status();
  }
  return RiskOf(*rows, prefix, backend.password);
}

}  // namespace tracegate::approvals
