// Strategies: redact, pseudonymize (stable under one key, different under another, joins
// across formats), partial, hash; per-entity choice.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

#include "masking/masker.h"
#include "masking/test_support.h"

namespace tracegate::masking {
namespace {

using ::testing::ContainsRegex;
using ::testing::MatchesRegex;

const std::string kKey = "0123456789abcdef0123456789abcdef";

Scanner MakeScanner(const Profile& p) {
  auto masker = Masker::Create(p);
  EXPECT_TRUE(masker.ok()) << masker.status();
  auto scanner = Scanner::Create(*masker);
  EXPECT_TRUE(scanner.ok());
  return std::move(*scanner);
}

std::string Mask(Scanner& s, std::string_view in) {
  std::string out;
  Counts counts;
  auto r = s.MaskText(in, {}, out, counts);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() && *r ? out : std::string(in);
}

std::string Hex(const unsigned char* p, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += kHex[p[i] >> 4];
    out += kHex[p[i] & 0xf];
  }
  return out;
}

Profile Pseudonymizing(const std::string& key) {
  Profile p;
  p.default_strategy.kind = StrategyKind::kPseudonymize;
  p.pseudonym_key = key;
  return p;
}

TEST(Pseudonymize, StableTokenUnderOneKey) {
  Scanner s = MakeScanner(Pseudonymizing(kKey));
  std::string a = Mask(s, "jane@example.com");
  EXPECT_THAT(a, MatchesRegex(R"(\[EMAIL:[0-9a-f]{8}\])")) << a;
  EXPECT_EQ(Mask(s, "jane@example.com"), a);
  EXPECT_EQ(Mask(s, "to JANE@Example.com!"), "to " + a + "!");  // case-normalised
  EXPECT_NE(Mask(s, "john@example.com"), a);

  // The token is HMAC-SHA256(key, entity 0x1f normalised value), truncated.
  unsigned char md[32];
  unsigned md_len = 0;
  std::string msg = std::string("EMAIL") + '\x1f' + "jane@example.com";
  HMAC(EVP_sha256(), kKey.data(), static_cast<int>(kKey.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), md, &md_len);
  EXPECT_EQ(a, "[EMAIL:" + Hex(md, 4) + "]");
}

TEST(Pseudonymize, SameAcrossScannersAndFormats) {
  Scanner s1 = MakeScanner(Pseudonymizing(kKey));
  Scanner s2 = MakeScanner(Pseudonymizing(kKey));
  EXPECT_EQ(Mask(s1, "4111 1111 1111 1111"), Mask(s2, "4111111111111111"));
  EXPECT_EQ(Mask(s1, "+1 415 555 2671"), Mask(s2, "+1-415-555-2671"));
  // The entity is part of the input: the same digits as another kind differ.
  Scanner other = MakeScanner(Pseudonymizing("another key of enough length!!"));
  EXPECT_NE(Mask(s1, "jane@example.com"), Mask(other, "jane@example.com"));
}

TEST(Pseudonymize, InJsonTheTokenIsAString) {
  Scanner s = MakeScanner(Pseudonymizing(kKey));
  std::string out;
  Counts counts;
  auto r = s.MaskJson(R"({"a":"jane@example.com","b":4111111111111111})", {"t"}, out, counts);
  ASSERT_TRUE(r.ok() && *r);
  EXPECT_THAT(out, MatchesRegex(R"(\{"a":"\[EMAIL:[0-9a-f]{8}\]","b":"\[CARD:[0-9a-f]{8}\]"\})"))
      << out;
}

TEST(Pseudonymize, LengthIsConfigurable) {
  Profile p = Pseudonymizing(kKey);
  p.pseudonym_hex_chars = 16;
  Scanner s = MakeScanner(p);
  EXPECT_THAT(Mask(s, "jane@example.com"), MatchesRegex(R"(\[EMAIL:[0-9a-f]{16}\])"));
}

TEST(Partial, KeepsTheLastFour) {
  Profile p;
  p.default_strategy = {StrategyKind::kPartial, 4};
  Scanner s = MakeScanner(p);
  EXPECT_EQ(Mask(s, "4111 1111 1111 1111"), "**** **** **** 1111");
  EXPECT_EQ(Mask(s, "card 4111-1111-1111-1111 ok"), "card ****-****-****-1111 ok");
  EXPECT_EQ(Mask(s, "+1 415 555 2671"), "+* *** *** 2671");
  EXPECT_EQ(Mask(s, "536-22-8726"), "***-**-8726");
  EXPECT_EQ(Mask(s, "jane@example.com"), "****@******e.com");
  EXPECT_EQ(Mask(s, "GB82 WEST 1234 5698 7654 32"), "**** **** **** **** **54 32");
}

TEST(Partial, KeepLastIsPerEntity) {
  Profile p;
  p.strategies["CARD"] = {StrategyKind::kPartial, 6};
  p.strategies["EMAIL"] = {StrategyKind::kPartial, 0};
  Scanner s = MakeScanner(p);
  EXPECT_EQ(Mask(s, "4111111111111111"), "**********111111");
  EXPECT_EQ(Mask(s, "jö@example.com"), "**@*******.***");
  EXPECT_EQ(Mask(s, "536-22-8726"), "[REDACTED:SSN]");
}

TEST(Hash, UnkeyedSha256OfTheNormalisedValue) {
  Profile p;
  p.default_strategy.kind = StrategyKind::kHash;
  Scanner s = MakeScanner(p);
  unsigned char md[32];
  unsigned md_len = 0;
  std::string v = "jane@example.com";
  EVP_Digest(v.data(), v.size(), md, &md_len, EVP_sha256(), nullptr);
  EXPECT_EQ(Mask(s, "Jane@Example.com"), "[EMAIL:sha256:" + Hex(md, 8) + "]");
}

TEST(Strategies, PerEntityChoice) {
  Profile p;
  p.pseudonym_key = kKey;
  p.strategies["EMAIL"] = {StrategyKind::kPseudonymize};
  p.strategies["CARD"] = {StrategyKind::kPartial, 4};
  Scanner s = MakeScanner(p);
  std::string out = Mask(s, "jane@example.com 4111111111111111 536-22-8726");
  EXPECT_THAT(out, MatchesRegex(R"(\[EMAIL:[0-9a-f]{8}\] \*{12}1111 \[REDACTED:SSN\])")) << out;
}

TEST(Strategies, WholeFieldMaskUsesTheEntityStrategy) {
  Profile p;
  p.pseudonym_key = kKey;
  p.strategies["PERSON"] = {StrategyKind::kPseudonymize};
  p.field_rules = {{.path = "$..name", .action = FieldAction::kMask, .entity = "PERSON"}};
  Scanner s = MakeScanner(p);
  std::string out1, out2;
  Counts counts;
  ASSERT_TRUE(s.MaskJson(R"({"name":"Jane Roe"})", {"t"}, out1, counts).ok());
  ASSERT_TRUE(s.MaskJson(R"({"user":{"name":"Jane Roe"}})", {"t"}, out2, counts).ok());
  ASSERT_THAT(out1, ContainsRegex(R"(\[PERSON:[0-9a-f]{8}\])"));
  const size_t at = out1.find("[PERSON:");
  const std::string token = out1.substr(at, out1.find(']', at) - at + 1);
  EXPECT_NE(out2.find(token), std::string::npos) << "the same name joins: " << out2;
  EXPECT_EQ(counts.Of("PERSON"), 2u);
}

}  // namespace
}  // namespace tracegate::masking
