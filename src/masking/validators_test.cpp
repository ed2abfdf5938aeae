// Validators and path programs on their own.
#include "masking/validators.h"

#include <gtest/gtest.h>

#include <iterator>
#include <string>

#include "masking/json_path.h"
#include "masking/test_support.h"

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

// `country` + check digits + `bban`, the check digits computed with ISO 7064 mod 97-10 (the
// IBAN with "00" as check digits, rearranged, letters as 10..35; check = 98 - remainder).
std::string WithCheckDigits(std::string_view country, std::string_view bban) {
  int rem = 0;
  for (char c : std::string(bban) + std::string(country) + "00") {
    rem = IsDigit(c) ? (rem * 10 + (c - '0')) % 97 : (rem * 100 + (c - 'A' + 10)) % 97;
  }
  const int check = 98 - rem;
  return std::string(country) + static_cast<char>('0' + check / 10) +
         static_cast<char>('0' + check % 10) + std::string(bban);
}

using test_support::IbanRegistryEntry;
using test_support::kIbanRegistry;

class IbanRegistry : public ::testing::TestWithParam<IbanRegistryEntry> {};

// One row per registry country: its length, its registry example, an IBAN built from another
// BBAN of the same shape, and near misses one character too short or too long (with check
// digits that fit, so only the length is wrong) and with a wrong checksum.
TEST_P(IbanRegistry, Country) {
  const IbanRegistryEntry& e = GetParam();
  const std::string_view country = e.country;
  const std::string example = e.example;
  ASSERT_EQ(example.size(), static_cast<size_t>(e.length)) << "registry row is inconsistent";
  ASSERT_EQ(example.substr(0, 2), country);
  EXPECT_EQ(IbanLength(country[0], country[1]), e.length);
  EXPECT_TRUE(IbanValid(example)) << example;

  // The example's BBAN with every digit shifted: same national shape, new check digits.
  std::string bban = example.substr(4);
  for (char& c : bban) {
    if (IsDigit(c)) {
      c = static_cast<char>('0' + (c - '0' + 3) % 10);
    }
  }
  const std::string built = WithCheckDigits(country, bban);
  EXPECT_TRUE(IbanValid(built)) << built;

  const std::string too_long = WithCheckDigits(country, bban + "7");
  const std::string too_short = WithCheckDigits(country, bban.substr(0, bban.size() - 1));
  EXPECT_FALSE(IbanValid(too_long)) << too_long;
  EXPECT_FALSE(IbanValid(too_short)) << too_short;

  // One changed check digit, and one changed BBAN digit: mod 97 catches every single
  // substitution.
  std::string bad_check = example;
  bad_check[3] = bad_check[3] == '9' ? '0' : static_cast<char>(bad_check[3] + 1);
  EXPECT_FALSE(IbanValid(bad_check)) << bad_check;
  std::string bad_bban = built;
  size_t last_digit = bad_bban.find_last_of("0123456789");
  ASSERT_GT(last_digit, 3u);
  bad_bban[last_digit] = bad_bban[last_digit] == '0' ? '5' : '0';
  EXPECT_FALSE(IbanValid(bad_bban)) << bad_bban;
}

INSTANTIATE_TEST_SUITE_P(Swift, IbanRegistry, ::testing::ValuesIn(kIbanRegistry),
                         [](const ::testing::TestParamInfo<IbanRegistryEntry>& info) {
                           return std::string(info.param.country);
                         });

// The validator knows exactly the registry's countries: no code outside the list has a length
// (territories such as GF or JE use their parent's prefix, FR or GB).
TEST(Validators, IbanCountriesAreTheRegistry) {
  int known = 0;
  for (char c0 = 'A'; c0 <= 'Z'; ++c0) {
    for (char c1 = 'A'; c1 <= 'Z'; ++c1) {
      if (IbanLength(c0, c1) == 0) {
        continue;
      }
      ++known;
      bool listed = false;
      for (const IbanRegistryEntry& e : kIbanRegistry) {
        listed = listed || (e.country[0] == c0 && e.country[1] == c1);
      }
      EXPECT_TRUE(listed) << c0 << c1 << " is not in the registry";
    }
  }
  EXPECT_EQ(known, static_cast<int>(std::size(kIbanRegistry)));
  EXPECT_EQ(std::size(kIbanRegistry), 89u);
  EXPECT_EQ(IbanLength('G', 'F'), 0);
  EXPECT_EQ(IbanLength('J', 'E'), 0);
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
