// ApiService's authentication (issue 17 item 4 and the IdP half of item 5): an address over
// its failure budget is throttled, not locked out; the IdP is asked only within budget and
// with a slow-call slot; IdP failures count. The authenticator is a double that says which
// IdpAccess it was asked with.
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "common/strings.h"
#include "grants/grants.h"
#include "httpapi/api.h"
#include "pgwire/scram.h"
#include "store/sqlite_store.h"

namespace tracegate::httpapi {
namespace {

using identity::IdpAccess;

class ApiAuthTest : public ::testing::Test {
 protected:
  ApiAuthTest() {
    dir_ = std::filesystem::temp_directory_path() /
           Cat("tg-api-auth-", ::testing::UnitTest::GetInstance()->current_test_info()->name(), "-",
               ::getpid());
    std::filesystem::create_directories(dir_);
    auto store = store::SqliteStore::Open((dir_ / "state.db").string());
    EXPECT_TRUE(store.ok());
    store_ = *std::move(store);
    grants_ = std::make_unique<grants::GrantService>(
        *store_, [] { return std::chrono::system_clock::now(); }, pgwire::SystemRandom());
    auto config = std::make_shared<config::Config>();
    config->api = config::Api{};
    config->api->auth_failures_per_minute = 3;
    config->api->max_slow_calls = 1;
    service_ = std::make_unique<ApiService>(
        config,
        [this](std::string_view token, IdpAccess access) { return Authenticate(token, access); },
        *grants_, [](const std::string&) { return std::pair<std::string, uint16_t>("", 0); },
        [] { return std::chrono::system_clock::now(); }, nullptr, nullptr, nullptr, &registry_);
  }
  ~ApiAuthTest() override {
    service_.reset();
    grants_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // "good": valid and local. "remote": only the IdP knows (valid). "forged": invalid, local.
  // "idp-down": only the IdP knows, and it is down. "slow": like remote, but the IdP call
  // waits for `release_`.
  absl::StatusOr<identity::Principal> Authenticate(std::string_view token, IdpAccess access) {
    {
      std::lock_guard lock(mu_);
      calls_.emplace_back(token, access);
    }
    const identity::Principal principal{
        .issuer_name = "test", .issuer = "https://idp", .subject = std::string(token)};
    if (token == "good") {
      return principal;
    }
    if (token == "forged") {
      return absl::UnauthenticatedError("signature does not verify");
    }
    if (access == IdpAccess::kLocalOnly) {
      return identity::NeedsIdpError("unknown kid");
    }
    if (token == "idp-down") {
      return absl::UnavailableError("keys for issuer test are not available");
    }
    if (token == "slow") {
      in_idp_.set_value();
      release_.get_future().wait();
    }
    return principal;
  }
  int IdpCalls(std::string_view token) {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& [t, access] : calls_) {
      n += t == token && access == IdpAccess::kAllowed;
    }
    return n;
  }
  ApiResponse Get(const std::string& token, const std::string& address = "10.0.0.1") {
    return service_->Handle({.method = "GET",
                             .target = "/v1/grants/no-such-grant",
                             .authorization = "Bearer " + token,
                             .client_address = address,
                             .request_id = "r"});
  }
  std::string Metrics() { return prometheus::TextSerializer().Serialize(registry_.Collect()); }
  static std::string Header(const ApiResponse& r, const std::string& name) {
    for (const auto& [n, v] : r.headers) {
      if (n == name) return v;
    }
    return "";
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<grants::GrantService> grants_;
  prometheus::Registry registry_;
  std::unique_ptr<ApiService> service_;
  std::mutex mu_;
  std::vector<std::pair<std::string, IdpAccess>> calls_;
  std::promise<void> in_idp_;
  std::promise<void> release_;
};

TEST_F(ApiAuthTest, OverBudgetAValidLocalTokenPassesAndTheIdpIsNotAsked) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Get("forged").status, 401u);
  }
  const ApiResponse refused = Get("forged");
  EXPECT_EQ(refused.status, 429u);
  EXPECT_GE(std::stoi(Header(refused, "Retry-After")), 1);
  EXPECT_EQ(Get("").status, 429u);
  // Authenticated: the grant lookup answers (404), not the limiter.
  EXPECT_EQ(Get("good").status, 404u);
  // A token only the IdP could check: refused without asking it.
  EXPECT_EQ(Get("remote").status, 429u);
  EXPECT_EQ(IdpCalls("remote"), 0);
  // Another address is within its budget: the IdP is asked.
  EXPECT_EQ(Get("remote", "10.0.0.2").status, 404u);
  EXPECT_EQ(IdpCalls("remote"), 1);
  const std::string metrics = Metrics();
  EXPECT_NE(
      metrics.find(
          R"(tracegate_auth_failures_total{connection="",path="api",reason="invalid_token"} 4)"),
      std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find(
                R"(tracegate_auth_failures_total{connection="",path="api",reason="throttled"} 1)"),
            std::string::npos)
      << metrics;
  EXPECT_NE(
      metrics.find(
          R"(tracegate_auth_failures_total{connection="",path="api",reason="missing_token"} 1)"),
      std::string::npos)
      << metrics;
}

TEST_F(ApiAuthTest, IdpFailuresCountAgainstTheAddress) {
  for (int i = 0; i < 3; ++i) {
    const ApiResponse down = Get("idp-down");
    EXPECT_EQ(down.status, 503u);
  }
  EXPECT_EQ(IdpCalls("idp-down"), 3);
  EXPECT_EQ(Get("idp-down").status, 429u);
  EXPECT_EQ(IdpCalls("idp-down"), 3);  // not asked again
  EXPECT_EQ(Get("good").status, 404u);
  EXPECT_NE(Metrics().find(R"(reason="idp_unavailable"} 3)"), std::string::npos);
}

TEST_F(ApiAuthTest, IdpCallsPastTheSlowCallLimitAreBusyNotQueued) {
  std::future<void> in_idp = in_idp_.get_future();
  std::thread slow([this] { EXPECT_EQ(Get("slow", "10.0.0.3").status, 404u); });
  in_idp.wait();  // the one slot is taken
  const ApiResponse busy = Get("remote", "10.0.0.4");
  EXPECT_EQ(busy.status, 503u);
  EXPECT_NE(busy.body.find("\"busy\""), std::string::npos) << busy.body;
  EXPECT_EQ(Header(busy, "Retry-After"), "1");
  EXPECT_EQ(IdpCalls("remote"), 0);
  EXPECT_EQ(Get("good", "10.0.0.4").status, 404u);  // local tokens need no slot
  release_.set_value();
  slow.join();
  EXPECT_EQ(Get("remote", "10.0.0.4").status, 404u);  // the slot is back
  EXPECT_NE(Metrics().find(R"(tracegate_api_busy_total{dependency="idp"} 1)"), std::string::npos);
  // Busy is not the caller's failure.
  EXPECT_NE(Metrics().find(R"(reason="invalid_token"} 0)"), std::string::npos);
}

}  // namespace
}  // namespace tracegate::httpapi
