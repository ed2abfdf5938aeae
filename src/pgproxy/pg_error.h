#pragma once
// Errors that end up in an ErrorResponse carry their SQLSTATE with them as an absl::Status
// payload, so one error type flows from the backend handshake, the client handshake and
// the relay to the single place that writes the ErrorResponse.

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace tracegate::pgproxy {

// Well-known SQLSTATEs tracegate sends.
namespace sqlstate {
inline constexpr std::string_view kProtocolViolation = "08P01";
inline constexpr std::string_view kConnectionFailure = "08006";
inline constexpr std::string_view kCannotConnectNow = "57P03";
inline constexpr std::string_view kInvalidAuthorization = "28000";
inline constexpr std::string_view kInvalidPassword = "28P01";
inline constexpr std::string_view kInvalidCatalogName = "3D000";
inline constexpr std::string_view kTooManyConnections = "53300";
inline constexpr std::string_view kConfigurationLimitExceeded = "53400";
inline constexpr std::string_view kAdminShutdown = "57P01";
inline constexpr std::string_view kIdleSessionTimeout = "57P05";
inline constexpr std::string_view kFeatureNotSupported = "0A000";
inline constexpr std::string_view kInternalError = "XX000";
inline constexpr std::string_view kInsufficientPrivilege = "42501";
inline constexpr std::string_view kProgramLimitExceeded = "54000";
inline constexpr std::string_view kInvalidStatementName = "26000";
inline constexpr std::string_view kIoError = "58030";
}  // namespace sqlstate

// A status whose SQLSTATE is `state`. The message is what the client will read: it must
// never contain a secret.
[[nodiscard]] absl::Status PgError(absl::StatusCode code, std::string_view state,
                                   std::string_view message);

// The SQLSTATE attached by PgError, or one derived from the status code.
[[nodiscard]] std::string SqlStateOf(const absl::Status& status);

}  // namespace tracegate::pgproxy
