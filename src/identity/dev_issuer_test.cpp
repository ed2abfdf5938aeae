// The development issuer: files on disk, tokens the gateway accepts through a jwks_file issuer.
#include "identity/dev_issuer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/status.h"
#include "identity/jose_testing.h"
#include "identity/jwt.h"
#include "identity/token_validator.h"

namespace tracegate::identity {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path FreshDir(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) / ("dev_issuer_test_" + name);
  fs::remove_all(dir);
  return dir;
}

TEST(DevIssuer, WritesKeysWithSafeModesAndReloadsThem) {
  fs::path dir = FreshDir("modes");
  absl::StatusOr<DevIssuerKeys> keys = LoadOrCreateDevIssuerKeys(dir);
  ASSERT_TRUE(keys.ok()) << MessageOf(keys.status());
  struct stat st {};
  ASSERT_EQ(::stat(keys->private_key_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u);
  EXPECT_THAT(keys->private_key_pem, HasSubstr("BEGIN PRIVATE KEY"));
  EXPECT_EQ(keys->kid.size(), 43u);  // base64url SHA-256 thumbprint

  absl::StatusOr<DevIssuerKeys> again = LoadOrCreateDevIssuerKeys(dir);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->kid, keys->kid);
  EXPECT_EQ(again->private_key_pem, keys->private_key_pem);

  ::chmod(keys->private_key_path.c_str(), 0644);
  absl::StatusOr<DevIssuerKeys> exposed = LoadOrCreateDevIssuerKeys(dir);
  ASSERT_FALSE(exposed.ok());
  EXPECT_THAT(std::string(MessageOf(exposed.status())), HasSubstr("chmod 600"));
  fs::remove_all(dir);
}

TEST(DevIssuer, SignedTokensValidateThroughTheJwksFile) {
  fs::path dir = FreshDir("validate");
  DevIssuerKeys keys = *LoadOrCreateDevIssuerKeys(dir);
  config::Identity identity;
  identity.issuers = {DevIssuerConfig(keys, "tracegate")};
  TokenValidator validator(identity, nullptr, SystemClock());

  absl::StatusOr<std::string> token =
      SignDevToken(keys.private_key_pem, keys.kid, kDevIssuer, "tracegate", "dev-agent",
                   {"trace-readers", "admins"}, "dev-client", std::chrono::seconds(300));
  ASSERT_TRUE(token.ok()) << MessageOf(token.status());
  absl::StatusOr<Jws> jws = ParseJws(*token);
  ASSERT_TRUE(jws.ok());
  EXPECT_EQ(jws->typ, "at+jwt");
  EXPECT_EQ(jws->alg, "RS256");

  absl::StatusOr<Principal> p = validator.Validate(*token);
  ASSERT_TRUE(p.ok()) << MessageOf(p.status());
  EXPECT_TRUE(p->development);
  EXPECT_EQ(p->issuer, "tracegate-dev");
  EXPECT_EQ(p->subject, "dev-agent");
  EXPECT_EQ(p->client_id, "dev-client");
  EXPECT_THAT(p->groups, ::testing::ElementsAre("trace-readers", "admins"));
  EXPECT_THAT(p->Describe(), HasSubstr("[development issuer]"));

  absl::StatusOr<std::string> other_aud =
      SignDevToken(keys.private_key_pem, keys.kid, kDevIssuer, "elsewhere", "dev-agent", {}, "",
                   std::chrono::seconds(300));
  EXPECT_THAT(std::string(MessageOf(validator.Validate(*other_aud).status())),
              HasSubstr("audience mismatch"));

  absl::StatusOr<std::string> expired = SignDevToken(
      keys.private_key_pem, keys.kid, kDevIssuer, "tracegate", "dev-agent", {}, "",
      std::chrono::seconds(60), std::chrono::system_clock::now() - std::chrono::hours(1));
  EXPECT_THAT(std::string(MessageOf(validator.Validate(*expired).status())),
              HasSubstr("token expired"));
  fs::remove_all(dir);
}

TEST(DevIssuer, RefusesBadInput) {
  EXPECT_FALSE(
      SignDevToken("not a pem", "k", kDevIssuer, "a", "s", {}, "", std::chrono::seconds(60)).ok());
  fs::path dir = FreshDir("bad");
  DevIssuerKeys keys = *LoadOrCreateDevIssuerKeys(dir);
  EXPECT_FALSE(SignDevToken(keys.private_key_pem, keys.kid, kDevIssuer, "a", "s", {}, "",
                            std::chrono::seconds(0))
                   .ok());
  EXPECT_FALSE(SignDevToken(keys.private_key_pem, keys.kid, kDevIssuer, "a", "", {}, "",
                            std::chrono::seconds(60))
                   .ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tracegate::identity
