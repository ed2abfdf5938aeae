#include "httpapi/auth_limiter.h"

#include <gtest/gtest.h>

#include "httpapi/slow_calls.h"

namespace tracegate::httpapi {
namespace {

using namespace std::chrono_literals;

TEST(AuthLimiter, BlocksAnAddressAfterItsFailuresUntilTheWindowEnds) {
  AuthLimiter limiter(3);
  const auto t0 = std::chrono::steady_clock::time_point() + 1h;
  std::chrono::seconds retry{0};
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(limiter.Blocked("10.0.0.1", t0, &retry));
    limiter.RecordFailure("10.0.0.1", t0);
  }
  EXPECT_TRUE(limiter.Blocked("10.0.0.1", t0 + 20s, &retry));
  EXPECT_EQ(retry, 40s);
  EXPECT_FALSE(limiter.Blocked("10.0.0.2", t0 + 20s, &retry));  // others are unaffected
  EXPECT_FALSE(limiter.Blocked("10.0.0.1", t0 + 60s, &retry));  // a new window
  limiter.RecordFailure("10.0.0.1", t0 + 60s);
  EXPECT_FALSE(limiter.Blocked("10.0.0.1", t0 + 61s, &retry));
}

TEST(AuthLimiter, TracksABoundedNumberOfAddresses) {
  AuthLimiter limiter(1, /*max_addresses=*/2);
  const auto t0 = std::chrono::steady_clock::time_point() + 1h;
  limiter.RecordFailure("a", t0);
  limiter.RecordFailure("b", t0 + 1s);
  limiter.RecordFailure("c", t0 + 2s);  // evicts "a", the oldest window
  EXPECT_FALSE(limiter.Blocked("a", t0 + 3s, nullptr));
  EXPECT_TRUE(limiter.Blocked("b", t0 + 3s, nullptr));
  EXPECT_TRUE(limiter.Blocked("c", t0 + 3s, nullptr));
}

TEST(SlowCalls, RefusesPastTheLimitAndFreesOnRelease) {
  SlowCalls calls(2);
  std::optional<SlowCalls::Slot> a = calls.TryAcquire();
  std::optional<SlowCalls::Slot> b = calls.TryAcquire();
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_FALSE(calls.TryAcquire().has_value());
  EXPECT_EQ(calls.in_use(), 2u);
  a.reset();
  std::optional<SlowCalls::Slot> c = calls.TryAcquire();
  EXPECT_TRUE(c.has_value());
  EXPECT_FALSE(calls.TryAcquire().has_value());
  b.reset();
  c.reset();
  EXPECT_EQ(calls.in_use(), 0u);
}

}  // namespace
}  // namespace tracegate::httpapi
