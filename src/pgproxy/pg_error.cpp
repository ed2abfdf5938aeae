#include "pgproxy/pg_error.h"

#include <optional>

#include "absl/strings/cord.h"

namespace tracegate::pgproxy {

namespace {
constexpr char kPayloadUrl[] = "tracegate/sqlstate";
}  // namespace

absl::Status PgError(absl::StatusCode code, std::string_view state, std::string_view message) {
  absl::Status status(code, std::string(message));
  status.SetPayload(kPayloadUrl, absl::Cord(std::string(state)));
  return status;
}

std::string SqlStateOf(const absl::Status& status) {
  if (auto payload = status.GetPayload(kPayloadUrl); payload.has_value()) {
    return std::string(*payload);
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return std::string(sqlstate::kProtocolViolation);
    case absl::StatusCode::kPermissionDenied:
      return std::string(sqlstate::kInvalidPassword);
    case absl::StatusCode::kUnauthenticated:
      return std::string(sqlstate::kInvalidAuthorization);
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return std::string(sqlstate::kConnectionFailure);
    case absl::StatusCode::kResourceExhausted:
      return std::string(sqlstate::kTooManyConnections);
    default:
      return std::string(sqlstate::kInternalError);
  }
}

}  // namespace tracegate::pgproxy
