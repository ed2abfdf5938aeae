// Adversarial table for one issuer's JWT rules (RFC 8725), plus the claim mapping.
#include "identity/validator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

#include "common/status.h"
#include "identity/jose_testing.h"

namespace tracegate::identity {
namespace {

using ::testing::HasSubstr;
using namespace tracegate::identity::testkit;
using std::chrono::seconds;
using std::chrono::system_clock;

constexpr int64_t kNow = 1'800'000'000;
const system_clock::time_point kNowTp{seconds(kNow)};
const std::string kIss = "https://idp.example.com";
const std::string kHmacSecret = "an-hmac-secret-of-at-least-32-bytes!!";

struct Keys {
  Key rsa = GenerateRsa();
  Key ec = GenerateEc();
  Key ed = GenerateEd25519();
  Key attacker = GenerateRsa();
  Key rsa_pinned = GenerateRsa();
  JwkSet set;
  Keys() {
    set = ParseJwks(Jwks({PublicJwk(rsa.get(), "rsa-1"), PublicJwk(ec.get(), "ec-1"),
                          PublicJwk(ed.get(), "ed-1"),
                          PublicJwk(rsa_pinned.get(), "rsa-pinned", "RS256")}))
              .value();
  }
};

const Keys& K() {
  static const Keys* keys = new Keys();
  return *keys;
}

config::Issuer Okta() {
  config::Issuer issuer;
  issuer.name = "okta";
  issuer.issuer = kIss;
  issuer.audiences = {"tracegate", "api://tracegate"};
  issuer.algorithms = {"RS256", "PS256", "ES256", "EdDSA"};
  return issuer;
}

json Claims() {
  return {{"iss", kIss},           {"sub", "agent-1"},
          {"aud", "tracegate"},    {"exp", kNow + 300},
          {"iat", kNow - 5},       {"client_id", "agent-client"},
          {"groups", {"readers"}}, {"scope", "traces:read openid"}};
}

json Header(const std::string& alg, const std::string& kid) {
  json h = {{"alg", alg}, {"typ", "JWT"}};
  if (!kid.empty()) {
    h["kid"] = kid;
  }
  return h;
}

std::string Rs256(const json& claims, const std::string& kid = "rsa-1") {
  return MakeToken(Header("RS256", kid), claims, {.alg = "RS256", .key = K().rsa.get()});
}

absl::StatusOr<Principal> Check(const std::string& token, const config::Issuer& issuer = Okta()) {
  TG_ASSIGN_OR_RETURN(Jws jws, ParseJws(token));
  return JwtValidator(issuer).Validate(jws, K().set, kNowTp);
}

json With(json claims, const std::string& name, json value) {
  claims[name] = std::move(value);
  return claims;
}

json Without(json claims, const std::string& name) {
  claims.erase(name);
  return claims;
}

std::string FlipLastSignatureChar(std::string token) {
  char& c = token[token.size() - 3];
  c = c == 'A' ? 'B' : 'A';
  return token;
}

struct Case {
  std::string name;
  std::function<std::string()> token;
  std::string error;  // substring of the expected message; empty = accepted
  std::function<config::Issuer()> issuer = Okta;
};

std::vector<Case> Cases() {
  const Keys& k = K();
  return {
      {"rs256_ok", [] { return Rs256(Claims()); }, ""},
      {"ps256_ok",
       [&] {
         return MakeToken(Header("PS256", "rsa-1"), Claims(), {.alg = "PS256", .key = k.rsa.get()});
       },
       ""},
      {"es256_ok",
       [&] {
         return MakeToken(Header("ES256", "ec-1"), Claims(), {.alg = "ES256", .key = k.ec.get()});
       },
       ""},
      {"eddsa_ok",
       [&] {
         return MakeToken(Header("EdDSA", "ed-1"), Claims(), {.alg = "EdDSA", .key = k.ed.get()});
       },
       ""},
      {"no_kid_single_fitting_key_ok",
       [&] {
         return MakeToken(Header("ES256", ""), Claims(), {.alg = "ES256", .key = k.ec.get()});
       },
       ""},
      {"no_kid_ambiguous",
       [&] {
         return MakeToken(Header("RS256", ""), Claims(), {.alg = "RS256", .key = k.rsa.get()});
       },
       "token has no kid and issuer okta has 2 keys for RS256"},
      {"alg_none",
       [] {
         json h = {{"alg", "none"}, {"kid", "rsa-1"}};
         return Base64UrlEncode(h.dump()) + "." + Base64UrlEncode(Claims().dump()) + ".";
       },
       "algorithm none is refused"},
      {"alg_None_capitalised",
       [] {
         json h = {{"alg", "None"}};
         return Base64UrlEncode(h.dump()) + "." + Base64UrlEncode(Claims().dump()) + ".";
       },
       "algorithm none is refused"},
      {"hs256_with_rsa_public_pem",
       [&] {
         return MakeToken(Header("HS256", "rsa-1"), Claims(),
                          {.alg = "HS256", .secret = PublicPem(k.rsa.get())});
       },
       "algorithm HS256 not allowed for issuer okta"},
      {"hs256_with_rsa_public_der",
       [&] {
         return MakeToken(Header("HS256", "rsa-1"), Claims(),
                          {.alg = "HS256", .secret = PublicDer(k.rsa.get())});
       },
       "algorithm HS256 not allowed for issuer okta"},
      {"hs256_listed_without_secret",
       [&] {
         return MakeToken(Header("HS256", "rsa-1"), Claims(),
                          {.alg = "HS256", .secret = PublicPem(k.rsa.get())});
       },
       "algorithm HS256 not allowed for issuer okta (no hmac_secret configured)",
       [] {
         config::Issuer i = Okta();
         i.algorithms.push_back("HS256");
         return i;
       }},
      {"hs256_rsa_pem_when_hmac_configured",
       [&] {
         return MakeToken(Header("HS256", "rsa-1"), Claims(),
                          {.alg = "HS256", .secret = PublicPem(k.rsa.get())});
       },
       "invalid signature",
       [] {
         config::Issuer i = Okta();
         i.algorithms.push_back("HS256");
         i.hmac_secret = kHmacSecret;
         return i;
       }},
      {"hs256_with_configured_secret_ok",
       [] {
         return MakeToken(Header("HS256", "whatever"), Claims(),
                          {.alg = "HS256", .secret = kHmacSecret});
       },
       "",
       [] {
         config::Issuer i = Okta();
         i.algorithms = {"HS256"};
         i.hmac_secret = kHmacSecret;
         return i;
       }},
      {"hs256_short_secret",
       [] { return MakeToken(Header("HS256", ""), Claims(), {.alg = "HS256", .secret = "short"}); },
       "hmac_secret of issuer okta is shorter than 32 bytes",
       [] {
         config::Issuer i = Okta();
         i.algorithms = {"HS256"};
         i.hmac_secret = "short";
         return i;
       }},
      {"alg_not_pinned",
       [&] {
         return MakeToken(Header("ES256", "ec-1"), Claims(), {.alg = "ES256", .key = k.ec.get()});
       },
       "algorithm ES256 not allowed for issuer okta",
       [] {
         config::Issuer i = Okta();
         i.algorithms = {"RS256"};
         return i;
       }},
      {"alg_unsupported",
       [&] {
         return MakeToken(Header("RS1", "rsa-1"), Claims(), {.alg = "RS256", .key = k.rsa.get()});
       },
       "algorithm \"RS1\" not supported"},
      {"rsa_kid_for_es256",
       [&] {
         return MakeToken(Header("ES256", "rsa-1"), Claims(), {.alg = "ES256", .key = k.ec.get()});
       },
       "key \"rsa-1\" of issuer okta is a RSA key; it cannot verify ES256"},
      {"ec_kid_for_rs256",
       [&] {
         return MakeToken(Header("RS256", "ec-1"), Claims(), {.alg = "RS256", .key = k.rsa.get()});
       },
       "is a EC key; it cannot verify RS256"},
      {"key_pinned_to_rs256_used_for_ps256",
       [&] {
         return MakeToken(Header("PS256", "rsa-pinned"), Claims(),
                          {.alg = "PS256", .key = k.rsa_pinned.get()});
       },
       "is a RSA RS256 key; it cannot verify PS256"},
      {"wrong_iss", [] { return Rs256(With(Claims(), "iss", "https://evil.example.com")); },
       "issuer mismatch"},
      {"missing_iss", [] { return Rs256(Without(Claims(), "iss")); }, "token has no iss"},
      {"wrong_aud", [] { return Rs256(With(Claims(), "aud", "other-api")); }, "audience mismatch"},
      {"wrong_aud_array",
       [] {
         return Rs256(With(Claims(), "aud", {"a", "b"}));
       },
       "audience mismatch: token aud \"a\" and 1 more"},
      {"aud_array_with_ours_ok",
       [] {
         return Rs256(With(Claims(), "aud", {"x", "api://tracegate"}));
       },
       ""},
      {"missing_aud", [] { return Rs256(Without(Claims(), "aud")); }, "token has no aud"},
      {"aud_number", [] { return Rs256(With(Claims(), "aud", 7)); },
       "claim aud is not a string or an array of strings"},
      {"expired", [] { return Rs256(With(Claims(), "exp", kNow - 31)); },
       "token expired at 2027-01-15T07:59:29Z"},
      {"expired_within_leeway_ok", [] { return Rs256(With(Claims(), "exp", kNow - 29)); }, ""},
      {"missing_exp", [] { return Rs256(Without(Claims(), "exp")); }, "token has no exp"},
      {"exp_string", [] { return Rs256(With(Claims(), "exp", "never")); },
       "claim exp is not a number"},
      {"exp_huge", [] { return Rs256(With(Claims(), "exp", 1e300)); }, "claim exp is out of range"},
      {"nbf_future", [] { return Rs256(With(Claims(), "nbf", kNow + 60)); },
       "token not valid before"},
      {"nbf_within_leeway_ok", [] { return Rs256(With(Claims(), "nbf", kNow + 20)); }, ""},
      {"iat_future", [] { return Rs256(With(Claims(), "iat", kNow + 60)); },
       "token issued in the future"},
      {"missing_sub", [] { return Rs256(Without(Claims(), "sub")); }, "token has no sub"},
      {"unknown_kid", [] { return Rs256(Claims(), "nope"); },
       "unknown key id \"nope\" for issuer okta"},
      {"kid_path_traversal", [] { return Rs256(Claims(), "../../../etc/passwd"); },
       "unknown key id \"../../../etc/passwd\""},
      {"kid_sql", [] { return Rs256(Claims(), "' OR 1=1; DROP TABLE keys; --"); },
       "unknown key id \"' OR 1=1; DROP TABLE keys; --\""},
      {"kid_control_chars_escaped", [] { return Rs256(Claims(), "a\nb\"c"); },
       "unknown key id \"a\\x0ab\\\"c\""},
      {"kid_long_truncated", [] { return Rs256(Claims(), std::string(500, 'k')); },
       "unknown key id \"" + std::string(64, 'k') + "...\""},
      {"tampered_payload",
       [] {
         std::string good = Rs256(Claims());
         std::string evil = Base64UrlEncode(With(Claims(), "sub", "admin").dump());
         size_t a = good.find('.');
         size_t b = good.find('.', a + 1);
         return good.substr(0, a + 1) + evil + good.substr(b);
       },
       "invalid signature"},
      {"tampered_signature", [] { return FlipLastSignatureChar(Rs256(Claims())); },
       "invalid signature"},
      {"signature_from_other_issuer_key",
       [&] {
         return MakeToken(Header("RS256", "rsa-1"), Claims(),
                          {.alg = "RS256", .key = k.attacker.get()});
       },
       "invalid signature"},
      {"embedded_jwk_attacker_key",
       [&] {
         json h = Header("RS256", "rsa-1");
         h["jwk"] = PublicJwk(k.attacker.get(), "rsa-1");
         return MakeToken(h, Claims(), {.alg = "RS256", .key = k.attacker.get()});
       },
       "invalid signature"},
      {"embedded_jwk_attacker_kid",
       [&] {
         json h = Header("RS256", "evil");
         h["jwk"] = PublicJwk(k.attacker.get(), "evil");
         return MakeToken(h, Claims(), {.alg = "RS256", .key = k.attacker.get()});
       },
       "unknown key id \"evil\""},
      {"jku_x5u_attacker",
       [&] {
         json h = Header("RS256", "rsa-1");
         h["jku"] = "https://evil.example.com/jwks.json";
         h["x5u"] = "https://evil.example.com/cert.pem";
         h["x5c"] = {"MIIB"};
         return MakeToken(h, Claims(), {.alg = "RS256", .key = k.attacker.get()});
       },
       "invalid signature"},
      {"jku_ignored_with_real_key_ok",
       [&] {
         json h = Header("RS256", "rsa-1");
         h["jku"] = "https://evil.example.com/jwks.json";
         return MakeToken(h, Claims(), {.alg = "RS256", .key = k.rsa.get()});
       },
       ""},
      {"crit_present",
       [&] {
         json h = Header("RS256", "rsa-1");
         h["crit"] = {"exp"};
         return MakeToken(h, Claims(), {.alg = "RS256", .key = k.rsa.get()});
       },
       "header crit present"},
      {"es256_der_signature",
       [&] {
         return MakeToken(Header("ES256", "ec-1"), Claims(),
                          {.alg = "ES256", .key = k.ec.get(), .ecdsa_der = true});
       },
       "ES256 needs 64 bytes (raw r||s)"},
      {"es256_signature_from_other_key",
       [&] {
         Key other = GenerateEc();
         return MakeToken(Header("ES256", "ec-1"), Claims(), {.alg = "ES256", .key = other.get()});
       },
       "invalid signature"},
      {"eddsa_tampered",
       [&] {
         return FlipLastSignatureChar(
             MakeToken(Header("EdDSA", "ed-1"), Claims(), {.alg = "EdDSA", .key = k.ed.get()}));
       },
       "invalid signature"},
      {"oversize_token", [] { return Rs256(With(Claims(), "pad", std::string(17 * 1024, 'x'))); },
       "malformed JWT: longer than 16384 bytes"},
      {"typ_wrong", [] { return Rs256(Claims()); },  // typ "JWT"
       "typ mismatch: token typ \"JWT\", issuer okta requires \"at+jwt\"",
       [] {
         config::Issuer i = Okta();
         i.typ = "at+jwt";
         return i;
       }},
      {"typ_missing",
       [&] {
         return MakeToken({{"alg", "RS256"}, {"kid", "rsa-1"}}, Claims(),
                          {.alg = "RS256", .key = k.rsa.get()});
       },
       "token has no typ",
       [] {
         config::Issuer i = Okta();
         i.typ = "at+jwt";
         return i;
       }},
      {"typ_application_prefix_and_case_ok",
       [&] {
         return MakeToken({{"alg", "RS256"}, {"kid", "rsa-1"}, {"typ", "Application/AT+JWT"}},
                          Claims(), {.alg = "RS256", .key = k.rsa.get()});
       },
       "",
       [] {
         config::Issuer i = Okta();
         i.typ = "at+jwt";
         return i;
       }},
  };
}

class ValidatorTable : public ::testing::TestWithParam<Case> {};

TEST_P(ValidatorTable, Decides) {
  const Case& c = GetParam();
  absl::StatusOr<Principal> result = Check(c.token(), c.issuer());
  if (c.error.empty()) {
    EXPECT_TRUE(result.ok()) << MessageOf(result.status());
  } else {
    ASSERT_FALSE(result.ok()) << "accepted";
    EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(std::string(MessageOf(result.status())), HasSubstr(c.error));
  }
}

INSTANTIATE_TEST_SUITE_P(Rfc8725, ValidatorTable, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Validator, ErrorsNeverEchoTheToken) {
  std::string token = FlipLastSignatureChar(Rs256(Claims()));
  absl::StatusOr<Principal> result = Check(token);
  ASSERT_FALSE(result.ok());
  std::string message(MessageOf(result.status()));
  EXPECT_EQ(message.find(token.substr(token.rfind('.') + 1, 20)), std::string::npos);
  EXPECT_EQ(message.find(token.substr(0, 20)), std::string::npos);
}

TEST(Validator, MapsClaimsToPrincipal) {
  absl::StatusOr<Principal> p = Check(Rs256(Claims()));
  ASSERT_TRUE(p.ok()) << MessageOf(p.status());
  EXPECT_EQ(p->issuer_name, "okta");
  EXPECT_EQ(p->issuer, kIss);
  EXPECT_EQ(p->subject, "agent-1");
  EXPECT_EQ(p->client_id, "agent-client");
  EXPECT_THAT(p->groups, ::testing::ElementsAre("readers"));
  EXPECT_THAT(p->scopes, ::testing::ElementsAre("traces:read", "openid"));
  EXPECT_EQ(p->expires_at, system_clock::time_point(seconds(kNow + 300)));
  EXPECT_FALSE(p->development);
  EXPECT_EQ(p->Describe(), "agent-1 (client agent-client) via okta");
}

TEST(Validator, GroupsFromDottedPathAndScopesFromScp) {
  config::Issuer issuer = Okta();
  issuer.groups_claim = "realm_access.roles";
  json claims = Without(Without(Without(Claims(), "groups"), "scope"), "client_id");
  claims["azp"] = "kc-client";
  claims["realm_access"] = {{"roles", {"trace-readers", "auditors"}}};
  claims["scp"] = {"a", "b"};
  absl::StatusOr<Principal> p = Check(Rs256(claims), issuer);
  ASSERT_TRUE(p.ok()) << MessageOf(p.status());
  EXPECT_EQ(p->client_id, "kc-client");
  EXPECT_THAT(p->groups, ::testing::ElementsAre("trace-readers", "auditors"));
  EXPECT_THAT(p->scopes, ::testing::ElementsAre("a", "b"));

  claims["realm_access"] = {{"roles", "solo"}};
  p = Check(Rs256(claims), issuer);
  ASSERT_TRUE(p.ok()) << MessageOf(p.status());
  EXPECT_THAT(p->groups, ::testing::ElementsAre("solo"));

  claims["realm_access"] = {{"roles", {"ok", 5}}};
  p = Check(Rs256(claims), issuer);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(MessageOf(p.status())),
              HasSubstr("claim realm_access.roles is not a string or an array of strings"));

  claims.erase("realm_access");
  p = Check(Rs256(claims), issuer);
  ASSERT_TRUE(p.ok()) << MessageOf(p.status());
  EXPECT_TRUE(p->groups.empty());
}

TEST(Validator, GroupsClaimNameWithDotsIsLookedUpLiterallyFirst) {
  config::Issuer issuer = Okta();
  issuer.groups_claim = "https://tracegate.example.com/groups";
  json claims = With(Claims(), "https://tracegate.example.com/groups", {"namespaced"});
  absl::StatusOr<Principal> p = Check(Rs256(claims), issuer);
  ASSERT_TRUE(p.ok()) << MessageOf(p.status());
  EXPECT_THAT(p->groups, ::testing::ElementsAre("namespaced"));
}

TEST(Validator, DescribeEscapesControlCharacters) {
  Principal p;
  p.subject = "evil\nINFO forged line";
  p.issuer_name = "dev";
  p.development = true;
  EXPECT_EQ(p.Describe(), "evil\\x0aINFO forged line via dev [development issuer]");
}

}  // namespace
}  // namespace tracegate::identity
