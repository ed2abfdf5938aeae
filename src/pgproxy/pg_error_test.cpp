#include "pgproxy/pg_error.h"

#include <gtest/gtest.h>

namespace tracegate::pgproxy {
namespace {

TEST(PgErrorTest, CarriesItsSqlState) {
  absl::Status status = PgError(absl::StatusCode::kUnavailable, "57P03", "not now");
  EXPECT_EQ(SqlStateOf(status), "57P03");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(std::string(status.message()), "not now");
}

TEST(PgErrorTest, DerivesASqlStateFromTheCodeWhenNoneWasAttached) {
  struct Case {
    absl::Status status;
    const char* sqlstate;
  };
  const Case cases[] = {
      {absl::InvalidArgumentError("x"), "08P01"},   {absl::PermissionDeniedError("x"), "28P01"},
      {absl::UnauthenticatedError("x"), "28000"},   {absl::UnavailableError("x"), "08006"},
      {absl::ResourceExhaustedError("x"), "53300"}, {absl::InternalError("x"), "XX000"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(SqlStateOf(c.status), c.sqlstate) << c.status;
  }
}

}  // namespace
}  // namespace tracegate::pgproxy
