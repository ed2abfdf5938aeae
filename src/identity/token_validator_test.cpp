// The façade: routing by iss, the token cache, rotation and staleness end to end,
// introspection of opaque tokens, the background refresh thread.
#include "identity/token_validator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "common/status.h"
#include "identity/jose_testing.h"

namespace tracegate::identity {
namespace {

using ::testing::HasSubstr;
using namespace tracegate::identity::testkit;
using std::chrono::seconds;

const std::string kOkta = "https://okta.example.com";
const std::string kKeycloak = "https://kc.example.com/realms/agents";
const std::string kOpaque = "https://opaque.example.com";
const std::string kOktaJwks = "https://okta.example.com/v1/keys";
const std::string kKeycloakJwks = "https://kc.example.com/realms/agents/certs";
const std::string kIntrospect = "https://opaque.example.com/introspect";

std::string Message(const absl::Status& s) { return std::string(MessageOf(s)); }

config::Identity Identity() {
  config::Issuer okta;
  okta.name = "okta";
  okta.issuer = kOkta;
  okta.audiences = {"tracegate"};
  okta.algorithms = {"RS256"};

  config::Issuer keycloak;
  keycloak.name = "keycloak";
  keycloak.issuer = kKeycloak;
  keycloak.audiences = {"tracegate"};
  keycloak.discovery = false;
  keycloak.jwks_uri = kKeycloakJwks;
  keycloak.algorithms = {"ES256"};
  keycloak.typ = "at+jwt";
  keycloak.groups_claim = "realm_access.roles";

  config::Issuer opaque;
  opaque.name = "opaque";
  opaque.issuer = kOpaque;
  opaque.audiences = {"tracegate"};
  opaque.discovery = false;
  opaque.jwks_uri = kOpaque + "/jwks";
  opaque.introspection_endpoint = kIntrospect;
  opaque.introspection_client_id = "gateway";
  opaque.introspection_client_secret = "s3cret&=";

  config::Identity identity;
  identity.issuers = {okta, keycloak, opaque};
  identity.token_cache_entries = 1000;
  return identity;
}

class TokenValidatorTest : public ::testing::Test {
 protected:
  TokenValidatorTest() {
    idp_->Set(kOkta + "/.well-known/openid-configuration",
              json{{"issuer", kOkta}, {"jwks_uri", kOktaJwks}}.dump());
    PublishOkta({PublicJwk(okta1_.get(), "o1")});
    idp_->Set(kKeycloakJwks, Jwks({PublicJwk(kc_.get(), "kc1")}));
    idp_->Set(kOpaque + "/jwks", Jwks({PublicJwk(kc_.get(), "op1")}));
  }
  void PublishOkta(const std::vector<json>& keys) { idp_->Set(kOktaJwks, Jwks(keys)); }
  int64_t Now() const { return clock_.millis / 1000; }
  json OktaClaims() const {
    return {{"iss", kOkta},        {"sub", "agent-7"}, {"aud", "tracegate"},
            {"exp", Now() + 600},  {"iat", Now()},     {"groups", {"trace-readers"}},
            {"client_id", "agent"}};
  }
  std::string OktaToken(const std::string& kid = "o1", EVP_PKEY* key = nullptr,
                        json claims = nullptr) {
    if (claims.is_null()) claims = OktaClaims();
    return MakeToken({{"alg", "RS256"}, {"kid", kid}}, claims,
                     {.alg = "RS256", .key = key != nullptr ? key : okta1_.get()});
  }
  std::string KeycloakToken() const {
    json claims = {
        {"iss", kKeycloak},   {"sub", "svc-1"},      {"aud", {"account", "tracegate"}},
        {"exp", Now() + 300}, {"azp", "svc-client"}, {"realm_access", {{"roles", {"auditors"}}}}};
    return MakeToken({{"alg", "ES256"}, {"kid", "kc1"}, {"typ", "at+jwt"}}, claims,
                     {.alg = "ES256", .key = kc_.get()});
  }
  std::unique_ptr<TokenValidator> Make(config::Identity identity = Identity()) {
    return std::make_unique<TokenValidator>(identity, idp_, clock_.AsClock());
  }

  std::shared_ptr<FakeIdp> idp_ = std::make_shared<FakeIdp>();
  FakeClock clock_;
  Key okta1_ = GenerateRsa();
  Key okta2_ = GenerateRsa();
  Key kc_ = GenerateEc();
};

TEST_F(TokenValidatorTest, RoutesEachTokenToTheIssuerNamedByIss) {
  auto v = Make();
  absl::StatusOr<Principal> okta = v->Validate(OktaToken());
  ASSERT_TRUE(okta.ok()) << Message(okta.status());
  EXPECT_EQ(okta->issuer_name, "okta");
  EXPECT_EQ(okta->subject, "agent-7");
  EXPECT_THAT(okta->groups, ::testing::ElementsAre("trace-readers"));

  absl::StatusOr<Principal> kc = v->Validate(KeycloakToken());
  ASSERT_TRUE(kc.ok()) << Message(kc.status());
  EXPECT_EQ(kc->issuer_name, "keycloak");
  EXPECT_EQ(kc->client_id, "svc-client");
  EXPECT_THAT(kc->groups, ::testing::ElementsAre("auditors"));
  EXPECT_EQ(idp_->Gets(kOpaque + "/jwks"), 0);  // nobody asked the third issuer
}

TEST_F(TokenValidatorTest, KeysComeOnlyFromTheRoutedIssuer) {
  auto v = Make();
  // Claims okta, signed with keycloak's key under keycloak's kid.
  std::string token = MakeToken({{"alg", "RS256"}, {"kid", "kc1"}}, OktaClaims(),
                                {.alg = "RS256", .key = okta2_.get()});
  absl::StatusOr<Principal> p = v->Validate(token);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(Message(p.status()), HasSubstr("unknown key id \"kc1\" for issuer okta"));
}

TEST_F(TokenValidatorTest, RefusesUnknownIssuerAndJunk) {
  auto v = Make();
  json claims = OktaClaims();
  claims["iss"] = "https://evil.example.com";
  absl::StatusOr<Principal> p = v->Validate(OktaToken("o1", nullptr, claims));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(Message(p.status()),
              HasSubstr("token issuer \"https://evil.example.com\" is not trusted"));

  EXPECT_THAT(Message(v->Validate("").status()), HasSubstr("no token"));
  EXPECT_THAT(Message(v->Validate("abc def").status()), HasSubstr("characters"));
  EXPECT_THAT(Message(v->Validate("a.b\n.c").status()), HasSubstr("characters"));
  EXPECT_THAT(Message(v->Validate(std::string(20000, 'a')).status()), HasSubstr("longer than"));
  EXPECT_THAT(Message(v->Validate("a.b.c").status()), HasSubstr("malformed JWT"));
}

TEST_F(TokenValidatorTest, CacheHitDoesNotReverify) {
  auto v = Make();
  std::string token = OktaToken();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(v->Validate(token).ok());
  }
  TokenValidator::Stats stats = v->stats();
  EXPECT_EQ(stats.signature_verifications, 1u);
  EXPECT_EQ(stats.cache_hits, 4u);
  EXPECT_EQ(stats.cache_entries, 1u);
  // A different token is verified.
  ASSERT_TRUE(v->Validate(KeycloakToken()).ok());
  EXPECT_EQ(v->stats().signature_verifications, 2u);
}

TEST_F(TokenValidatorTest, CachedTokenStillExpires) {
  auto v = Make();
  std::string token = OktaToken();
  ASSERT_TRUE(v->Validate(token).ok());
  clock_.Advance(seconds(600 + 31));
  absl::StatusOr<Principal> p = v->Validate(token);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(Message(p.status()), HasSubstr("token expired at"));
}

TEST_F(TokenValidatorTest, RotationNewKidAcceptedRemovedKidRefusedEvenIfCached) {
  auto v = Make();
  std::string old_token = OktaToken("o1");
  ASSERT_TRUE(v->Validate(old_token).ok());
  int jwks_gets = idp_->Gets(kOktaJwks);

  // The IdP rotates: o2 is published, o1 withdrawn.
  PublishOkta({PublicJwk(okta2_.get(), "o2")});
  clock_.Advance(seconds(11));
  absl::StatusOr<Principal> fresh = v->Validate(OktaToken("o2", okta2_.get()));
  ASSERT_TRUE(fresh.ok()) << Message(fresh.status());
  EXPECT_EQ(idp_->Gets(kOktaJwks), jwks_gets + 1);

  absl::StatusOr<Principal> old = v->Validate(old_token);
  ASSERT_FALSE(old.ok());
  EXPECT_THAT(Message(old.status()), HasSubstr("unknown key id \"o1\""));
}

TEST_F(TokenValidatorTest, ForgedKidsRefetchAtMostOncePerInterval) {
  auto v = Make();
  ASSERT_TRUE(v->Validate(OktaToken()).ok());
  int jwks_gets = idp_->Gets(kOktaJwks);
  clock_.Advance(seconds(11));
  for (int i = 0; i < 30; ++i) {
    absl::StatusOr<Principal> p = v->Validate(OktaToken("forged-" + std::to_string(i)));
    ASSERT_FALSE(p.ok());
    EXPECT_THAT(Message(p.status()), HasSubstr("unknown key id"));
  }
  EXPECT_EQ(idp_->Gets(kOktaJwks), jwks_gets + 1);
}

// Issue 17 item 4: a throttled caller's token is still checked when that is local, and
// nothing reaches the IdP for it.
TEST_F(TokenValidatorTest, LocalOnlyVerifiesWithLoadedKeysAndNeverContactsTheIdp) {
  auto v = Make();
  // No keys loaded yet: only the IdP could decide, and it is not asked.
  absl::StatusOr<Principal> cold = v->Validate(OktaToken(), IdpAccess::kLocalOnly);
  ASSERT_FALSE(cold.ok());
  EXPECT_TRUE(NeedsIdp(cold.status()));
  EXPECT_EQ(cold.status().code(), absl::StatusCode::kUnavailable);  // fails closed if ignored
  EXPECT_EQ(idp_->TotalGets(), 0);

  ASSERT_TRUE(v->Validate(OktaToken("o1", nullptr, OktaClaims())).ok());  // loads the keys
  const int gets = idp_->TotalGets();
  clock_.Advance(seconds(11));  // past unknown_kid_min_interval: kAllowed would refetch
  json claims = OktaClaims();
  claims["sub"] = "agent-8";  // a token never seen: verified with the loaded key
  absl::StatusOr<Principal> fresh =
      v->Validate(OktaToken("o1", nullptr, claims), IdpAccess::kLocalOnly);
  ASSERT_TRUE(fresh.ok()) << Message(fresh.status());
  EXPECT_EQ(fresh->subject, "agent-8");

  // A bad signature under a loaded kid is refused locally, as any invalid token.
  absl::StatusOr<Principal> forged =
      v->Validate(OktaToken("o1", okta2_.get()), IdpAccess::kLocalOnly);
  ASSERT_FALSE(forged.ok());
  EXPECT_FALSE(NeedsIdp(forged.status()));
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kUnauthenticated);

  // An unknown kid and an opaque token would need the IdP: refused without a request.
  absl::StatusOr<Principal> unknown =
      v->Validate(OktaToken("forged-kid", okta2_.get()), IdpAccess::kLocalOnly);
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(NeedsIdp(unknown.status()));
  absl::StatusOr<Principal> opaque = v->Validate("opaque-token", IdpAccess::kLocalOnly);
  ASSERT_FALSE(opaque.ok());
  EXPECT_TRUE(NeedsIdp(opaque.status()));
  EXPECT_EQ(idp_->TotalGets(), gets);
  EXPECT_TRUE(idp_->Posts().empty());
  EXPECT_EQ(v->stats().needs_idp, 3u);
  EXPECT_EQ(v->stats().failures, 1u);  // only the forged signature

  // The same unknown kid with access allowed does go to the IdP.
  ASSERT_FALSE(v->Validate(OktaToken("forged-kid", okta2_.get())).ok());
  EXPECT_EQ(idp_->TotalGets(), gets + 1);
}

TEST_F(TokenValidatorTest, IdpDownCachedKeysWorkUntilStaleThenFailClosed) {
  auto v = Make();
  std::string cached = OktaToken();
  ASSERT_TRUE(v->Validate(cached).ok());
  idp_->SetDown(true);
  clock_.Advance(std::chrono::minutes(30));
  json claims = OktaClaims();  // a new token, still verifiable with the cached keys
  std::string late = OktaToken("o1", nullptr, claims);
  ASSERT_TRUE(v->Validate(late).ok());
  clock_.Advance(std::chrono::minutes(31));
  for (const std::string& token : {late, OktaToken("o1", nullptr, OktaClaims())}) {
    absl::StatusOr<Principal> p = v->Validate(token);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(Message(p.status()), HasSubstr("keys for issuer okta are stale since"));
  }
  EXPECT_FALSE(v->KeysUsable().ok());
  // The IdP comes back: the next use past the rate limit recovers.
  idp_->SetDown(false);
  clock_.Advance(seconds(11));
  EXPECT_TRUE(v->Validate(OktaToken("o1", nullptr, OktaClaims())).ok());
}

TEST_F(TokenValidatorTest, OpaqueTokenGoesToIntrospection) {
  auto v = Make();
  idp_->Set(kIntrospect, json{{"active", true},
                              {"client_id", "batch-agent"},
                              {"aud", "tracegate"},
                              {"exp", Now() + 3600},
                              {"scope", "traces:read"}}
                             .dump());
  absl::StatusOr<Principal> p = v->Validate("opaque-token_123~x");
  ASSERT_TRUE(p.ok()) << Message(p.status());
  EXPECT_EQ(p->issuer_name, "opaque");
  EXPECT_EQ(p->issuer, kOpaque);
  EXPECT_EQ(p->subject, "batch-agent");
  std::vector<FakeIdp::PostCall> posts = idp_->Posts();
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].url, kIntrospect);
  EXPECT_EQ(posts[0].form, "token=opaque-token_123~x&token_type_hint=access_token");
  EXPECT_EQ(posts[0].auth.user, "gateway");
  EXPECT_EQ(posts[0].auth.password, "s3cret&=");

  ASSERT_TRUE(v->Validate("opaque-token_123~x").ok());  // cached
  EXPECT_EQ(idp_->Posts().size(), 1u);
  clock_.Advance(seconds(61));  // introspection results are cached 60 s at most
  ASSERT_TRUE(v->Validate("opaque-token_123~x").ok());
  EXPECT_EQ(idp_->Posts().size(), 2u);

  idp_->Set(kIntrospect, R"({"active":false})");
  absl::StatusOr<Principal> inactive = v->Validate("revoked-token");
  ASSERT_FALSE(inactive.ok());
  EXPECT_THAT(Message(inactive.status()), HasSubstr("token is not active at issuer opaque"));
}

TEST_F(TokenValidatorTest, OpaqueTokenWithoutIntrospectionIsNotAJwt) {
  config::Identity identity = Identity();
  identity.issuers.pop_back();
  auto v = Make(identity);
  absl::StatusOr<Principal> p = v->Validate("opaque-token");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(Message(p.status()), HasSubstr("not a JWT"));
  EXPECT_TRUE(idp_->Posts().empty());
}

TEST_F(TokenValidatorTest, SameIssConfiguredTwiceIsRefused) {
  config::Identity identity = Identity();
  identity.issuers[1].issuer = kOkta;
  auto v = Make(identity);
  absl::StatusOr<Principal> p = v->Validate(OktaToken());
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(Message(p.status()), HasSubstr("configured for more than one issuer"));
}

TEST_F(TokenValidatorTest, HmacIssuerNeedsNoKeyFetch) {
  config::Issuer dev;
  dev.name = "hs";
  dev.issuer = "hs-issuer";
  dev.audiences = {"tracegate"};
  dev.discovery = false;
  dev.algorithms = {"HS256"};
  dev.hmac_secret = std::string(32, 'z');
  config::Identity identity;
  identity.issuers = {dev};
  auto v = Make(identity);
  json claims = OktaClaims();
  claims["iss"] = "hs-issuer";
  std::string token =
      MakeToken({{"alg", "HS256"}}, claims, {.alg = "HS256", .secret = dev.hmac_secret});
  absl::StatusOr<Principal> p = v->Validate(token);
  ASSERT_TRUE(p.ok()) << Message(p.status());
  EXPECT_EQ(idp_->TotalGets(), 0);
  EXPECT_TRUE(v->KeysUsable().ok());
}

TEST_F(TokenValidatorTest, CacheIsBounded) {
  config::Identity identity = Identity();
  identity.token_cache_entries = 8;
  auto v = Make(identity);
  for (int i = 0; i < 40; ++i) {
    json claims = OktaClaims();
    claims["jti"] = std::to_string(i);
    ASSERT_TRUE(v->Validate(OktaToken("o1", nullptr, claims)).ok());
    EXPECT_LE(v->stats().cache_entries, 8u);
  }
}

// A fetcher that hangs until it is cancelled, like an IdP that accepts and never answers.
class HangingIdp : public FakeIdp {
 public:
  absl::StatusOr<std::string> Get(const std::string& url, const FetchOptions& options) override {
    started = true;
    for (int i = 0; i < 1000; ++i) {
      if (options.cancel != nullptr && options.cancel->load()) {
        return absl::CancelledError("cancelled");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return FakeIdp::Get(url, options);
  }
  std::atomic<bool> started{false};
};

TEST_F(TokenValidatorTest, BackgroundRefreshLoadsKeysAndStopsPromptly) {
  auto v = Make();
  EXPECT_FALSE(v->KeysUsable().ok());
  v->Start();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!v->KeysUsable().ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(v->KeysUsable().ok()) << Message(v->KeysUsable());
  int gets = idp_->Gets(kOktaJwks);
  clock_.Advance(std::chrono::minutes(5));  // due again: the thread refetches
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (idp_->Gets(kOktaJwks) == gets && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GT(idp_->Gets(kOktaJwks), gets);
  auto start = std::chrono::steady_clock::now();
  v->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(TokenValidatorTest, StopCancelsAFetchInFlight) {
  auto hanging = std::make_shared<HangingIdp>();
  TokenValidator v(Identity(), hanging, clock_.AsClock());
  v.Start();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!hanging->started && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(hanging->started);
  auto start = std::chrono::steady_clock::now();
  v.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

}  // namespace
}  // namespace tracegate::identity
