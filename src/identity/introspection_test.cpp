// RFC 7662 responses: active, and the same claim checks as a JWT.
#include "identity/introspection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/status.h"
#include "identity/jose_testing.h"

namespace tracegate::identity {
namespace {

using ::testing::HasSubstr;
using namespace tracegate::identity::testkit;

const std::string kUrl = "https://idp.example.com/introspect";

config::Issuer Issuer() {
  config::Issuer issuer;
  issuer.name = "corp";
  issuer.issuer = "https://idp.example.com";
  issuer.audiences = {"tracegate"};
  issuer.introspection_client_id = "gw";
  issuer.introspection_client_secret = "pw";
  return issuer;
}

class IntrospectionTest : public ::testing::Test {
 protected:
  absl::StatusOr<Principal> Ask(const json& response, config::Issuer issuer = Issuer()) {
    idp_.Set(kUrl, response.dump());
    return Introspect(issuer, kUrl, "tok+en/=", idp_, clock_.AsClock());
  }
  json Good() const {
    return {{"active", true},       {"sub", "user-1"},
            {"aud", {"tracegate"}}, {"exp", clock_.millis / 1000 + 60},
            {"client_id", "cli"},   {"groups", {"g1"}}};
  }
  FakeIdp idp_;
  FakeClock clock_;
};

TEST_F(IntrospectionTest, ActiveTokenBecomesPrincipal) {
  absl::StatusOr<Principal> p = Ask(Good());
  ASSERT_TRUE(p.ok()) << MessageOf(p.status());
  EXPECT_EQ(p->subject, "user-1");
  EXPECT_EQ(p->client_id, "cli");
  EXPECT_EQ(p->issuer, "https://idp.example.com");  // iss absent: the configured issuer
  EXPECT_THAT(p->groups, ::testing::ElementsAre("g1"));
  ASSERT_EQ(idp_.Posts().size(), 1u);
  EXPECT_EQ(idp_.Posts()[0].form, "token=tok%2Ben%2F%3D&token_type_hint=access_token");
}

TEST_F(IntrospectionTest, RefusesWhatAJwtWouldBeRefusedFor) {
  struct Case {
    std::string name;
    std::function<json(json)> edit;
    std::string error;
  };
  std::vector<Case> cases = {
      {"inactive",
       [](json r) {
         r["active"] = false;
         return r;
       },
       "not active"},
      {"active_missing",
       [](json r) {
         r.erase("active");
         return r;
       },
       "not active"},
      {"active_string",
       [](json r) {
         r["active"] = "true";
         return r;
       },
       "not active"},
      {"wrong_iss",
       [](json r) {
         r["iss"] = "https://other";
         return r;
       },
       "issuer mismatch"},
      {"wrong_aud",
       [](json r) {
         r["aud"] = "other";
         return r;
       },
       "audience mismatch"},
      {"no_aud",
       [](json r) {
         r.erase("aud");
         return r;
       },
       "token has no aud"},
      {"no_exp",
       [](json r) {
         r.erase("exp");
         return r;
       },
       "token has no exp"},
      {"expired",
       [&](json r) {
         r["exp"] = clock_.millis / 1000 - 100;
         return r;
       },
       "token expired"},
      {"no_sub_no_client",
       [](json r) {
         r.erase("sub");
         r.erase("client_id");
         return r;
       },
       "token has no sub"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Principal> p = Ask(c.edit(Good()));
    ASSERT_FALSE(p.ok()) << c.name;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kUnauthenticated) << c.name;
    EXPECT_THAT(std::string(MessageOf(p.status())), HasSubstr(c.error)) << c.name;
  }
}

TEST_F(IntrospectionTest, IdpFailureIsUnavailable) {
  idp_.SetDown(true);
  absl::StatusOr<Principal> p = Introspect(Issuer(), kUrl, "t", idp_, clock_.AsClock());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kUnavailable);
  idp_.SetDown(false);
  idp_.Set(kUrl, "not json");
  p = Introspect(Issuer(), kUrl, "t", idp_, clock_.AsClock());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tracegate::identity
