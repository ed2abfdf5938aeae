// JWKS import: which keys are kept, which are skipped, which documents are refused.
#include "identity/jwks.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/status.h"
#include "identity/jose_testing.h"

namespace tracegate::identity {
namespace {

using ::testing::HasSubstr;
using namespace tracegate::identity::testkit;

std::string Message(const absl::Status& s) { return std::string(MessageOf(s)); }

TEST(ParseJwks, ImportsRsaEcAndEd25519) {
  Key rsa = GenerateRsa(), ec = GenerateEc(), ed = GenerateEd25519();
  absl::StatusOr<JwkSet> set = ParseJwks(Jwks(
      {PublicJwk(rsa.get(), "r", "RS256"), PublicJwk(ec.get(), "e"), PublicJwk(ed.get(), "o")}));
  ASSERT_TRUE(set.ok()) << Message(set.status());
  ASSERT_EQ(set->keys.size(), 3u);
  EXPECT_EQ(set->keys[0].kty, "RSA");
  EXPECT_EQ(set->keys[0].alg, "RS256");
  EXPECT_EQ(set->keys[0].bits, 2048);
  EXPECT_EQ(EVP_PKEY_eq(set->keys[0].key.get(), rsa.get()), 1);
  EXPECT_EQ(set->keys[1].crv, "P-256");
  EXPECT_EQ(EVP_PKEY_eq(set->keys[1].key.get(), ec.get()), 1);
  EXPECT_EQ(set->keys[2].crv, "Ed25519");
  EXPECT_EQ(EVP_PKEY_eq(set->keys[2].key.get(), ed.get()), 1);
  EXPECT_TRUE(set->skipped.empty());
  EXPECT_EQ(set->WithKid("e").size(), 1u);
  EXPECT_TRUE(set->WithKid("nope").empty());
}

TEST(ParseJwks, SkipsKeysItMustNotUse) {
  Key rsa = GenerateRsa(), small = GenerateRsa(1024), ec = GenerateEc();
  json enc = PublicJwk(rsa.get(), "enc");
  enc["use"] = "enc";
  json wrap_only = PublicJwk(rsa.get(), "wrap");
  wrap_only["key_ops"] = {"wrapKey"};
  json oct = {{"kty", "oct"}, {"kid", "sym"}, {"k", "c2VjcmV0"}};
  json p384 = PublicJwk(ec.get(), "p384");
  p384["crv"] = "P-384";
  json x25519 = {{"kty", "OKP"}, {"crv", "X25519"}, {"kid", "x"}, {"x", "AAAA"}};
  json oaep = PublicJwk(rsa.get(), "oaep", "RSA-OAEP");
  json mismatched = PublicJwk(ec.get(), "ec-rs", "RS256");
  absl::StatusOr<JwkSet> set =
      ParseJwks(Jwks({enc, wrap_only, oct, p384, x25519, oaep, mismatched,
                      PublicJwk(small.get(), "small"), PublicJwk(rsa.get(), "good")}));
  ASSERT_TRUE(set.ok()) << Message(set.status());
  ASSERT_EQ(set->keys.size(), 1u);
  EXPECT_EQ(set->keys[0].kid, "good");
  ASSERT_EQ(set->skipped.size(), 8u);
  EXPECT_THAT(set->skipped[0], HasSubstr("use is \"enc\""));
  EXPECT_THAT(set->skipped[1], HasSubstr("key_ops does not allow verify"));
  EXPECT_THAT(set->skipped[2], HasSubstr("kty \"oct\" not supported"));
  EXPECT_THAT(set->skipped[3], HasSubstr("EC curve \"P-384\" not supported"));
  EXPECT_THAT(set->skipped[4], HasSubstr("OKP curve \"X25519\" not supported"));
  EXPECT_THAT(set->skipped[5], HasSubstr("alg \"RSA-OAEP\" is not a signature algorithm"));
  EXPECT_THAT(set->skipped[6], HasSubstr("alg \"RS256\" is not a signature algorithm for kty EC"));
  EXPECT_THAT(set->skipped[7], HasSubstr("RSA key has 1024 bits; at least 2048 required"));
}

TEST(ParseJwks, RefusesASetWithOnlyWeakKeys) {
  Key small = GenerateRsa(1024);
  absl::StatusOr<JwkSet> set = ParseJwks(Jwks({PublicJwk(small.get(), "small")}));
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(Message(set.status()), HasSubstr("no usable signing key"));
  EXPECT_THAT(Message(set.status()), HasSubstr("1024 bits"));
}

TEST(ParseJwks, RefusesAnEcPointOffTheCurve) {
  Key ec = GenerateEc();
  json jwk = PublicJwk(ec.get(), "bad");
  std::string y = *Base64UrlDecode(jwk["y"].get<std::string>());
  y[31] ^= 1;
  jwk["y"] = Base64UrlEncode(y);
  absl::StatusOr<JwkSet> set = ParseJwks(Jwks({jwk}));
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(Message(set.status()), HasSubstr("kid \"bad\""));
}

TEST(ParseJwks, RefusesBadDocuments) {
  Key rsa = GenerateRsa();
  json jwk = PublicJwk(rsa.get(), "k");
  struct Bad {
    std::string doc;
    std::string error;
  };
  std::vector<Bad> cases = {
      {"", "not valid JSON"},
      {"[]", "not a JSON object"},
      {"{}", "no \"keys\" array"},
      {R"({"keys":{}})", "no \"keys\" array"},
      {R"({"keys":[]})", "no usable signing key: no keys"},
      {R"({"keys":[1]})", "not a JSON object"},
      {R"({"keys":[],"keys":[]})", "duplicate member"},
      {Jwks({jwk, jwk}), "two RSA keys with kid \"k\""},
      {Jwks(std::vector<json>(101, jwk)), "101 keys; at most 100"},
      {R"({"keys":[)" + std::string(kMaxJwksBytes, ' ') + "]}", "larger than"},
  };
  for (const Bad& c : cases) {
    absl::StatusOr<JwkSet> set = ParseJwks(c.doc);
    ASSERT_FALSE(set.ok()) << c.error;
    EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Message(set.status()), HasSubstr(c.error));
  }
}

TEST(ParseJwks, SkipsMalformedMembers) {
  Key rsa = GenerateRsa();
  json padded = PublicJwk(rsa.get(), "padded");
  padded["e"] = "AQAB=";
  json kid_number = PublicJwk(rsa.get(), "x");
  kid_number["kid"] = 5;
  json even_e = PublicJwk(rsa.get(), "even");
  even_e["e"] = Base64UrlEncode(std::string("\x01\x00\x00", 3));
  absl::StatusOr<JwkSet> set =
      ParseJwks(Jwks({padded, kid_number, even_e, PublicJwk(rsa.get(), "ok")}));
  ASSERT_TRUE(set.ok()) << Message(set.status());
  ASSERT_EQ(set->skipped.size(), 3u);
  EXPECT_THAT(set->skipped[0], HasSubstr("n or e missing or not base64url"));
  EXPECT_THAT(set->skipped[1], HasSubstr("not a string"));
  EXPECT_THAT(set->skipped[2], HasSubstr("exponent"));
}

TEST(JwkSet, SameKeysIgnoresOrderButNotMaterial) {
  Key a = GenerateRsa(), b = GenerateEc();
  JwkSet one = *ParseJwks(Jwks({PublicJwk(a.get(), "a"), PublicJwk(b.get(), "b")}));
  JwkSet two = *ParseJwks(Jwks({PublicJwk(b.get(), "b"), PublicJwk(a.get(), "a")}));
  JwkSet other = *ParseJwks(Jwks({PublicJwk(a.get(), "a"), PublicJwk(GenerateEc().get(), "b")}));
  EXPECT_TRUE(one.SameKeysAs(two));
  EXPECT_FALSE(one.SameKeysAs(other));
}

}  // namespace
}  // namespace tracegate::identity
