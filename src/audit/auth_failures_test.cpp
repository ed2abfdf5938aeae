#include "audit/auth_failures.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace tracegate::audit {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using TimePoint = std::chrono::system_clock::time_point;

struct Fixture {
  TimePoint now = TimePoint(seconds(1'800'000'000));
  std::mutex mu;
  std::vector<AuthFailureRecord> written;
  bool fail = false;

  AuthFailures::Options Options(size_t max_keys = 4) {
    return AuthFailures::Options{.window = milliseconds(10000),
                                 .max_keys = max_keys,
                                 .clock = [this] { return now; },
                                 .background = false};
  }
  AuthFailures::Sink Sink() {
    return [this](const AuthFailureRecord& r) {
      std::lock_guard lock(mu);
      written.push_back(r);
      return fail ? absl::UnavailableError("disk gone") : absl::OkStatus();
    };
  }
  uint64_t Total() {
    uint64_t total = 0;
    for (const AuthFailureRecord& r : written) {
      total += r.count;
    }
    return total;
  }
};

AuthFailure Wrong(std::string_view address, std::string_view grant = "") {
  return AuthFailure{.path = AuthPath::kPostgres,
                     .reason = "wrong_secret",
                     .connection = "traces",
                     .client_address = address,
                     .grant_id = grant,
                     .user = grant.empty() ? "alice" : "g_x",
                     .session = "s-1"};
}

TEST(AuthFailuresTest, FirstFailureIsWrittenAtOnceTheRestAsOneSummary) {
  Fixture f;
  {
    AuthFailures failures(f.Options(), f.Sink());
    failures.Report(Wrong("10.0.0.1:40000"));
    ASSERT_EQ(f.written.size(), 1u);
    EXPECT_EQ(f.written[0].event, "failure");
    EXPECT_EQ(f.written[0].count, 1u);
    EXPECT_EQ(f.written[0].client_address, "10.0.0.1:40000");
    // Another port of the same host is the same key.
    for (int i = 0; i < 999; ++i) {
      f.now += milliseconds(5);
      failures.Report(Wrong(i % 2 == 0 ? "10.0.0.1:40001" : "10.0.0.1:40002"));
    }
    EXPECT_EQ(f.written.size(), 1u);
    EXPECT_EQ(failures.stats().tracked_keys, 1u);
    f.now += seconds(10);
    failures.CloseIfDue();
    ASSERT_EQ(f.written.size(), 2u);
    EXPECT_EQ(f.written[1].event, "summary");
    EXPECT_EQ(f.written[1].count, 999u);
    EXPECT_EQ(f.written[1].last_at - f.written[1].first_at, milliseconds(5 * 998));
    EXPECT_EQ(failures.stats().tracked_keys, 0u);
  }
  EXPECT_EQ(f.Total(), 1000u);
}

TEST(AuthFailuresTest, ANewWindowWritesTheFirstFailureAgain) {
  Fixture f;
  AuthFailures failures(f.Options(), f.Sink());
  failures.Report(Wrong("10.0.0.1"));
  failures.Report(Wrong("10.0.0.1"));
  f.now += seconds(11);
  failures.Report(Wrong("10.0.0.1"));  // closes the first window on the way
  ASSERT_EQ(f.written.size(), 3u);
  EXPECT_EQ(f.written[1].event, "summary");
  EXPECT_EQ(f.written[1].count, 1u);
  EXPECT_EQ(f.written[2].event, "failure");
  failures.Close();
  EXPECT_EQ(f.written.size(), 3u);  // nothing more was counted in the second window
  EXPECT_EQ(f.Total(), 3u);
}

TEST(AuthFailuresTest, DistinctKeysPastTheCapAreCountedInOneOverflowPerReason) {
  Fixture f;
  {
    AuthFailures failures(f.Options(/*max_keys=*/4), f.Sink());
    for (int i = 0; i < 5000; ++i) {
      // A flood from many addresses, each naming another grant: every failure a new key.
      failures.Report(Wrong("192.0.2." + std::to_string(i % 250), "grant" + std::to_string(i)));
      AuthFailure bearer{.path = AuthPath::kHttp,
                         .reason = "malformed_credential",
                         .connection = "api",
                         .client_address = "192.0.2.7:1"};
      failures.Report(bearer);
    }
    EXPECT_LE(failures.stats().tracked_keys, 4u);
  }
  // 4 first failures (3 postgres keys + the bearer key), the bearer's summary, and one
  // overflow for the postgres failures past the cap.
  size_t failures_written = 0, summaries = 0, overflows = 0;
  uint64_t bearer_total = 0;
  for (const AuthFailureRecord& r : f.written) {
    failures_written += r.event == "failure";
    summaries += r.event == "summary";
    overflows += r.event == "overflow";
    if (r.path == AuthPath::kHttp) {
      bearer_total += r.count;
    }
    if (r.event == "overflow") {
      EXPECT_EQ(r.reason, "wrong_secret");
      EXPECT_EQ(r.client_address, "");
    }
  }
  EXPECT_EQ(failures_written, 4u);
  EXPECT_EQ(summaries, 1u);
  EXPECT_EQ(overflows, 1u);
  EXPECT_EQ(bearer_total, 5000u);
  EXPECT_EQ(f.Total(), 10000u);
}

TEST(AuthFailuresTest, AFloodFromManyThreadsAddsUpExactlyInBoundedRecords) {
  Fixture f;
  constexpr int kThreads = 4;
  constexpr int kEach = 2500;
  {
    AuthFailures::Options options = f.Options(/*max_keys=*/8);
    options.clock = {};  // the system clock: windows of 10 s do not close during the test
    AuthFailures failures(options, f.Sink());
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&failures, t] {
        for (int i = 0; i < kEach; ++i) {
          const std::string address = "198.51.100." + std::to_string((t * kEach + i) % 40);
          failures.Report(Wrong(address));
        }
      });
    }
    for (std::thread& thread : threads) {
      thread.join();
    }
    EXPECT_EQ(failures.stats().reported, uint64_t{kThreads * kEach});
  }
  EXPECT_EQ(f.Total(), uint64_t{kThreads * kEach});
  EXPECT_LE(f.written.size(), 2u * 8 + 1);
}

TEST(AuthFailuresTest, UnknownReasonsBecomeOtherAndLongFieldsAreCut) {
  Fixture f;
  AuthFailures failures(f.Options(), f.Sink());
  const std::string huge(10000, 'u');
  failures.Report(AuthFailure{.path = AuthPath::kFetch,
                              .reason = "made up",
                              .connection = huge,
                              .client_address = huge,
                              .grant_id = huge,
                              .user = huge,
                              .session = huge});
  ASSERT_EQ(f.written.size(), 1u);
  const AuthFailureRecord& r = f.written[0];
  EXPECT_EQ(r.reason, "other");
  EXPECT_EQ(r.connection.size(), AuthFailures::kMaxFieldBytes);
  EXPECT_EQ(r.user.size(), AuthFailures::kMaxFieldBytes);
  EXPECT_EQ(r.grant_id.size(), AuthFailures::kMaxFieldBytes);
  EXPECT_EQ(r.client_address.size(), AuthFailures::kMaxFieldBytes);
  const nlohmann::json j = nlohmann::json::parse(r.ToJson());
  EXPECT_EQ(j["path"], "fetch");
  EXPECT_EQ(j["event"], "failure");
  EXPECT_EQ(j["count"], 1);
}

TEST(AuthFailuresTest, ASinkThatFailsIsCountedAndTheWindowStillCloses) {
  Fixture f;
  f.fail = true;
  AuthFailures failures(f.Options(), f.Sink());
  failures.Report(Wrong("10.0.0.9"));
  failures.Report(Wrong("10.0.0.9"));
  failures.Close();
  EXPECT_EQ(failures.stats().records, 2u);
  EXPECT_EQ(failures.stats().unwritten, 2u);
  EXPECT_EQ(failures.stats().tracked_keys, 0u);
}

TEST(AuthFailuresTest, TheBackgroundThreadClosesAWindowAtItsEnd) {
  Fixture f;
  AuthFailures::Options options{.window = milliseconds(50), .max_keys = 4};
  AuthFailures failures(options, f.Sink());
  failures.Report(Wrong("10.0.0.3"));
  failures.Report(Wrong("10.0.0.3"));
  const auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(f.mu);
      if (f.written.size() == 2) {
        break;
      }
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  std::lock_guard lock(f.mu);
  ASSERT_EQ(f.written.size(), 2u);
  EXPECT_EQ(f.written[1].event, "summary");
  EXPECT_EQ(f.written[1].count, 1u);
}

TEST(AuthFailuresTest, IPv6AddressesKeyOnTheHost) {
  Fixture f;
  AuthFailures failures(f.Options(), f.Sink());
  failures.Report(Wrong("[::1]:5000"));
  failures.Report(Wrong("[::1]:5001"));
  failures.Report(Wrong("::1"));
  EXPECT_EQ(failures.stats().tracked_keys, 1u);
}

}  // namespace
}  // namespace tracegate::audit
