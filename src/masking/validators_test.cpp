// Validators and path programs on their own.
#include "masking/validators.h"

#include <gtest/gtest.h>

#include "masking/json_path.h"

namespace tracegate::masking {
namespace {

TEST(Validators, Luhn) {
  EXPECT_TRUE(LuhnValid("4111111111111111"));
  EXPECT_TRUE(LuhnValid("4111 1111 1111 1111"));
  EXPECT_TRUE(LuhnValid("378282246310005"));
  EXPECT_FALSE(LuhnValid("4111111111111112"));
  EXPECT_FALSE(LuhnValid(""));
}

TEST(Validators, CardPrefixes) {
  EXPECT_TRUE(CardNumberPlausible("4111111111111111"));
  EXPECT_TRUE(CardNumberPlausible("5500000000000004"));
  EXPECT_TRUE(CardNumberPlausible("2221000000000009"));
  EXPECT_TRUE(CardNumberPlausible("378282246310005"));
  EXPECT_FALSE(CardNumberPlausible("37828224631000"));    // Amex is 15
  EXPECT_FALSE(CardNumberPlausible("1749650400123"));     // epoch millis
  EXPECT_FALSE(CardNumberPlausible("0000000000000000"));  // all same
  EXPECT_FALSE(CardNumberPlausible("411111111111"));      // too short
}

TEST(Validators, Iban) {
  EXPECT_TRUE(IbanValid("GB82WEST12345698765432"));
  EXPECT_TRUE(IbanValid("DE89370400440532013000"));
  EXPECT_FALSE(IbanValid("GB82WEST12345698765433"));
  EXPECT_FALSE(IbanValid("XX82WEST12345698765432"));
  EXPECT_FALSE(IbanValid("DE8937040044053201300"));
  EXPECT_EQ(IbanLength('N', 'O'), 15);
  EXPECT_EQ(IbanLength('Z', 'Z'), 0);
}

TEST(Validators, Ssn) {
  EXPECT_TRUE(SsnValid("536228726"));
  EXPECT_FALSE(SsnValid("000228726"));
  EXPECT_FALSE(SsnValid("666228726"));
  EXPECT_FALSE(SsnValid("900228726"));
  EXPECT_FALSE(SsnValid("536008726"));
  EXPECT_FALSE(SsnValid("536220000"));
  EXPECT_FALSE(SsnValid("111111111"));
}

TEST(Validators, SecretsAndPlaceholders) {
  EXPECT_LT(ShannonEntropy("aaaa"), 0.01);
  EXPECT_NEAR(ShannonEntropy("abcd"), 2.0, 1e-9);
  EXPECT_TRUE(SecretValuePlausible("Tr0ub4dor!3x"));
  EXPECT_FALSE(SecretValuePlausible("aaaa"));
  EXPECT_FALSE(SecretValuePlausible("abababab"));
  EXPECT_FALSE(SecretValuePlausible("${DB_PASSWORD}"));
  EXPECT_FALSE(SecretValuePlausible("[REDACTED:SECRET]"));
  EXPECT_FALSE(SecretValuePlausible("undefined"));
  for (const char* k : {"password", "DB_PASSWORD", "api_key", "X-Api-Key", "client_secret",
                        "Authorization", "accessToken", "aws_secret_access_key", "token"}) {
    EXPECT_TRUE(IsSecretKeyName(k)) << k;
  }
  for (const char* k : {"max_tokens", "tokenizer", "input_tokens", "public_key", "secrets", "id",
                        "passage", "token_type", "keyboard"}) {
    EXPECT_FALSE(IsSecretKeyName(k)) << k;
  }
}

TEST(Validators, OpaqueAndAddresses) {
  EXPECT_TRUE(IsOpaqueBlob("EqQBCkgIARABGAIiQL7ZpXhW=="));
  EXPECT_TRUE(IsOpaqueBlob("data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="));
  EXPECT_FALSE(IsOpaqueBlob("short"));
  EXPECT_FALSE(IsOpaqueBlob("Best regards, Jane Doe"));
  EXPECT_FALSE(IsOpaqueBlob("abc=def=ghijklmnopq"));
  int groups = 0;
  EXPECT_TRUE(ParseIpv6("2001:db8::8a2e:370:7334", &groups));
  EXPECT_EQ(groups, 5);
  EXPECT_FALSE(ParseIpv6("12:30:45", &groups));
  EXPECT_TRUE(EmailDomainValid("mail.example.co.uk"));
  EXPECT_FALSE(EmailDomainValid("2x.png"));
  EXPECT_FALSE(EmailDomainValid("localhost"));
  EXPECT_FALSE(EmailDomainValid("-a.com"));
  EXPECT_FALSE(EmailLocalValid("a..b"));
}

uint64_t Walk(const PathProgram& p, std::initializer_list<PathComponent> path) {
  uint64_t s = p.Start();
  for (const PathComponent& c : path) {
    s = p.Advance(s, c);
  }
  return s;
}

PathComponent K(std::string_view name) { return {name, -1, false}; }
PathComponent I(int64_t i) { return {{}, i, true}; }

TEST(JsonPath, Matching) {
  auto exact = PathProgram::Parse("$.metadata.user.email");
  ASSERT_TRUE(exact.ok());
  EXPECT_TRUE(exact->Accepts(Walk(*exact, {K("metadata"), K("user"), K("email")})));
  EXPECT_FALSE(exact->Accepts(Walk(*exact, {K("x"), K("metadata"), K("user"), K("email")})));
  EXPECT_FALSE(exact->Accepts(Walk(*exact, {K("metadata"), K("user")})));

  auto desc = PathProgram::Parse("$..input..signature");
  ASSERT_TRUE(desc.ok());
  EXPECT_TRUE(desc->Accepts(Walk(*desc, {K("a"), K("input"), I(0), K("b"), K("signature")})));
  EXPECT_FALSE(desc->Accepts(Walk(*desc, {K("signature")})));

  auto idx = PathProgram::Parse("$.rows[1]['a b'][*]");
  ASSERT_TRUE(idx.ok());
  EXPECT_TRUE(idx->Accepts(Walk(*idx, {K("rows"), I(1), K("a b"), I(7)})));
  EXPECT_FALSE(idx->Accepts(Walk(*idx, {K("rows"), I(0), K("a b"), I(7)})));

  auto root = PathProgram::Parse("$");
  ASSERT_TRUE(root.ok());
  EXPECT_TRUE(root->Accepts(root->Start()));

  for (const char* bad : {"", "metadata", "$.", "$..", "$[", "$[x]", "$.a[-1]"}) {
    EXPECT_FALSE(PathProgram::Parse(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace tracegate::masking
