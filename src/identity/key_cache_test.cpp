// One issuer's key cache: discovery, rotation, the unknown-kid rate limit, staleness.
#include "identity/key_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/status.h"
#include "identity/jose_testing.h"

namespace tracegate::identity {
namespace {

using ::testing::HasSubstr;
using namespace tracegate::identity::testkit;
using std::chrono::seconds;

const std::string kIss = "https://idp.example.com/";  // trailing slash: stripped for discovery
const std::string kDiscovery = "https://idp.example.com/.well-known/openid-configuration";
const std::string kJwksUri = "https://idp.example.com/keys";

std::string Message(const absl::Status& s) { return std::string(MessageOf(s)); }

config::Issuer Issuer() {
  config::Issuer issuer;
  issuer.name = "okta";
  issuer.issuer = kIss;
  issuer.audiences = {"tracegate"};
  issuer.jwks_refresh = std::chrono::minutes(5);
  issuer.jwks_stale_max = std::chrono::hours(1);
  issuer.unknown_kid_min_interval = seconds(10);
  return issuer;
}

class KeyCacheTest : public ::testing::Test {
 protected:
  KeyCacheTest() {
    idp_->Set(kDiscovery, json{{"issuer", kIss},
                               {"jwks_uri", kJwksUri},
                               {"introspection_endpoint", "https://idp.example.com/introspect"}}
                              .dump());
    Publish({PublicJwk(k1_.get(), "k1")});
  }
  void Publish(const std::vector<json>& keys) { idp_->Set(kJwksUri, Jwks(keys)); }
  IssuerKeyCache Cache(config::Issuer issuer = Issuer()) {
    return IssuerKeyCache(std::move(issuer), idp_, clock_.AsClock());
  }
  static std::vector<std::string> Kids(const IssuerKeyCache::Snapshot& s) {
    std::vector<std::string> out;
    for (const Jwk& k : s.keys->keys) out.push_back(k.kid);
    return out;
  }

  std::shared_ptr<FakeIdp> idp_ = std::make_shared<FakeIdp>();
  FakeClock clock_;
  Key k1_ = GenerateEc();
  Key k2_ = GenerateEc();
};

TEST_F(KeyCacheTest, DiscoversThenLoadsKeysOnFirstUse) {
  IssuerKeyCache cache = Cache();
  EXPECT_EQ(cache.UsableGeneration(), 0u);
  absl::StatusOr<IssuerKeyCache::Snapshot> keys = cache.Keys();
  ASSERT_TRUE(keys.ok()) << Message(keys.status());
  EXPECT_THAT(Kids(*keys), ::testing::ElementsAre("k1"));
  EXPECT_EQ(idp_->Gets(kDiscovery), 1);
  EXPECT_EQ(idp_->Gets(kJwksUri), 1);
  EXPECT_EQ(cache.UsableGeneration(), keys->generation);
  // The next lookups are served from memory.
  ASSERT_TRUE(cache.Keys().ok());
  EXPECT_EQ(idp_->TotalGets(), 2);
  EXPECT_EQ(*cache.IntrospectionEndpoint(), "https://idp.example.com/introspect");
}

TEST_F(KeyCacheTest, DiscoveryMustNameTheConfiguredIssuerExactly) {
  idp_->Set(kDiscovery, json{{"issuer", "https://idp.example.com"}, {"jwks_uri", kJwksUri}}.dump());
  IssuerKeyCache cache = Cache();
  absl::StatusOr<IssuerKeyCache::Snapshot> keys = cache.Keys();
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Message(keys.status()), HasSubstr("keys for issuer okta are not available"));
  EXPECT_THAT(Message(keys.status()), HasSubstr("differs from the configured"));
  EXPECT_EQ(idp_->Gets(kJwksUri), 0);
}

TEST_F(KeyCacheTest, ConfiguredJwksUriSkipsDiscovery) {
  config::Issuer issuer = Issuer();
  issuer.jwks_uri = kJwksUri;
  IssuerKeyCache cache = Cache(issuer);
  ASSERT_TRUE(cache.Keys().ok());
  EXPECT_EQ(idp_->Gets(kDiscovery), 0);
  EXPECT_EQ(cache.IntrospectionEndpoint().status().code(), absl::StatusCode::kNotFound);
}

TEST_F(KeyCacheTest, RotationNewKeyAfterRefetchOldKeyGoneAfterRefresh) {
  IssuerKeyCache cache = Cache();
  IssuerKeyCache::Snapshot first = *cache.Keys();
  Publish({PublicJwk(k1_.get(), "k1"), PublicJwk(k2_.get(), "k2")});
  clock_.Advance(seconds(11));
  absl::StatusOr<IssuerKeyCache::Snapshot> second = cache.KeysAfterUnknownKid(first.generation);
  ASSERT_TRUE(second.ok());
  EXPECT_THAT(Kids(*second), ::testing::ElementsAre("k1", "k2"));
  EXPECT_NE(second->generation, first.generation);

  Publish({PublicJwk(k2_.get(), "k2")});
  clock_.Advance(std::chrono::minutes(5));
  EXPECT_LE(cache.NextRefreshAt(), clock_.now());
  ASSERT_TRUE(cache.Refresh().ok());
  EXPECT_THAT(Kids(*cache.Keys()), ::testing::ElementsAre("k2"));
}

TEST_F(KeyCacheTest, UnchangedKeysKeepTheirGeneration) {
  IssuerKeyCache cache = Cache();
  uint64_t generation = cache.Keys()->generation;
  clock_.Advance(std::chrono::minutes(5));
  ASSERT_TRUE(cache.Refresh().ok());
  EXPECT_EQ(cache.Keys()->generation, generation);
}

TEST_F(KeyCacheTest, UnknownKidRefetchIsRateLimited) {
  IssuerKeyCache cache = Cache();
  uint64_t generation = cache.Keys()->generation;
  int before = idp_->Gets(kJwksUri);
  clock_.Advance(seconds(11));
  for (int i = 0; i < 50; ++i) {  // a flood of forged kids
    ASSERT_TRUE(cache.KeysAfterUnknownKid(generation).ok());
    clock_.Advance(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(idp_->Gets(kJwksUri), before + 1);  // 5 s passed: one refetch only
  clock_.Advance(seconds(6));
  ASSERT_TRUE(cache.KeysAfterUnknownKid(generation).ok());
  EXPECT_EQ(idp_->Gets(kJwksUri), before + 2);
}

TEST_F(KeyCacheTest, IdpDownServesCachedKeysUntilStaleThenRefuses) {
  IssuerKeyCache cache = Cache();
  ASSERT_TRUE(cache.Keys().ok());
  idp_->SetDown(true);
  clock_.Advance(std::chrono::minutes(5));
  absl::Status refreshed = cache.Refresh();
  EXPECT_FALSE(refreshed.ok());
  // After a failure the background retry comes sooner than jwks_refresh.
  EXPECT_EQ(cache.NextRefreshAt(), clock_.now() + seconds(10));
  clock_.Advance(std::chrono::minutes(54));
  EXPECT_TRUE(cache.Keys().ok());  // 59 min after the last success
  clock_.Advance(std::chrono::minutes(2));
  absl::StatusOr<IssuerKeyCache::Snapshot> keys = cache.Keys();
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Message(keys.status()),
              HasSubstr("keys for issuer okta are stale since 2027-01-15T08:00:00Z"));
  EXPECT_THAT(Message(keys.status()), HasSubstr("connection refused"));
  EXPECT_EQ(cache.UsableGeneration(), 0u);
  EXPECT_GE(cache.stats().failures, 2u);

  idp_->SetDown(false);  // back: the next use (past the rate limit) recovers
  clock_.Advance(seconds(11));
  EXPECT_TRUE(cache.Keys().ok());
}

TEST_F(KeyCacheTest, InvalidOrEmptySetKeepsOldKeysAndCountsAsFailure) {
  IssuerKeyCache cache = Cache();
  uint64_t generation = cache.Keys()->generation;
  for (std::string body : {std::string(R"({"keys":[]})"), std::string("<html>"),
                           Jwks({PublicJwk(GenerateRsa(1024).get(), "weak")})}) {
    idp_->Set(kJwksUri, body);
    clock_.Advance(std::chrono::minutes(5));
    EXPECT_FALSE(cache.Refresh().ok());
    absl::StatusOr<IssuerKeyCache::Snapshot> keys = cache.Keys();
    ASSERT_TRUE(keys.ok());
    EXPECT_EQ(keys->generation, generation);
    EXPECT_THAT(Kids(*keys), ::testing::ElementsAre("k1"));
  }
  EXPECT_EQ(cache.stats().failures, 3u);
}

TEST_F(KeyCacheTest, FailedJwksFetchRediscovers) {
  IssuerKeyCache cache = Cache();
  ASSERT_TRUE(cache.Keys().ok());
  const std::string moved = "https://idp.example.com/keys-v2";
  idp_->Set(kDiscovery, json{{"issuer", kIss}, {"jwks_uri", moved}}.dump());
  idp_->Set(kJwksUri, "gone");
  idp_->Set(moved, Jwks({PublicJwk(k2_.get(), "k2")}));
  clock_.Advance(std::chrono::minutes(5));
  EXPECT_FALSE(cache.Refresh().ok());
  clock_.Advance(seconds(10));
  ASSERT_TRUE(cache.Refresh().ok());
  EXPECT_THAT(Kids(*cache.Keys()), ::testing::ElementsAre("k2"));
  EXPECT_EQ(idp_->Gets(kDiscovery), 2);
}

TEST_F(KeyCacheTest, JwksFileIsReReadOnRefresh) {
  std::filesystem::path path =
      std::filesystem::path(::testing::TempDir()) / "key_cache_test_jwks.json";
  auto write = [&](const std::string& body) { std::ofstream(path) << body; };
  write(Jwks({PublicJwk(k1_.get(), "k1")}));
  config::Issuer issuer = Issuer();
  issuer.discovery = false;
  issuer.jwks_file = path.string();
  IssuerKeyCache cache = Cache(issuer);
  EXPECT_THAT(Kids(*cache.Keys()), ::testing::ElementsAre("k1"));
  write(Jwks({PublicJwk(k2_.get(), "k2")}));
  clock_.Advance(std::chrono::minutes(5));
  ASSERT_TRUE(cache.Refresh().ok());
  EXPECT_THAT(Kids(*cache.Keys()), ::testing::ElementsAre("k2"));
  std::filesystem::remove(path);
  clock_.Advance(std::chrono::minutes(5));
  EXPECT_FALSE(cache.Refresh().ok());
  EXPECT_THAT(Kids(*cache.Keys()), ::testing::ElementsAre("k2"));  // kept
  EXPECT_EQ(idp_->TotalGets(), 0);
}

}  // namespace
}  // namespace tracegate::identity
