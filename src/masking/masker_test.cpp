// Text → masked text, one row per case: every detector with true positives and near-miss
// negatives, the false-positive traps, custom detectors, column rules.
#include "masking/masker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "masking/test_support.h"

namespace tracegate::masking {
namespace {

using test_support::FakeAnthropicKey;
using test_support::FakeAwsKeyId;
using test_support::FakeAwsSecret;
using test_support::FakeGithubToken;
using test_support::FakeGitlabToken;
using test_support::FakeGoogleKey;
using test_support::FakeJwt;
using test_support::FakeOpenaiKey;
using test_support::FakePem;
using test_support::FakeSlackToken;
using test_support::FakeStripeKey;
using test_support::Rep;

std::shared_ptr<const Masker> TableMasker() {
  static std::shared_ptr<const Masker> masker = [] {
    Profile p;
    CustomDetector emp;
    emp.name = "employee_id";
    emp.entity = "EMPLOYEE_ID";
    emp.regex = R"(\bEMP-[0-9]{6}\b)";
    p.custom_detectors.push_back(emp);
    CustomDetector people;
    people.name = "staff";
    people.entity = "PERSON";
    people.dictionary = {"Jane Doe", "John Smith"};
    people.case_insensitive = true;
    p.custom_detectors.push_back(people);
    CustomDetector acct;
    acct.name = "account";
    acct.entity = "ACCOUNT";
    acct.regex = R"(ACCT[0-9]{16})";
    acct.validator = "luhn";
    p.custom_detectors.push_back(acct);
    FieldRule notes;
    notes.column = "Private_Notes";
    notes.action = FieldAction::kMask;
    notes.entity = "NOTES";
    p.field_rules.push_back(notes);
    FieldRule blob;
    blob.column = "raw_blob";
    blob.action = FieldAction::kKeep;
    p.field_rules.push_back(blob);
    auto m = Masker::Create(p);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }();
  return masker;
}

struct Row {
  std::string name;
  std::string in;
  std::string want;  // == in: must come back unchanged
  std::string column = "";
};

void PrintTo(const Row& r, std::ostream* os) { *os << r.name; }

std::vector<Row> Rows() {
  const std::string pem = FakePem();
  return {
      // email
      {"email_plain", "contact jane.doe@example.com today", "contact [REDACTED:EMAIL] today"},
      {"email_subdomain_tag", "Jane.Doe+tag@mail.example.co.uk,", "[REDACTED:EMAIL],"},
      {"email_upper", "JANE@EXAMPLE.COM", "[REDACTED:EMAIL]"},
      {"email_two", "a.b@x-y.org and c@d.io", "[REDACTED:EMAIL] and [REDACTED:EMAIL]"},
      {"email_trailing_dot", "mail jane@example.com.", "mail [REDACTED:EMAIL]."},
      {"email_neg_file_name", "see icon@2x.png", "see icon@2x.png"},
      {"email_neg_no_tld", "user@localhost", "user@localhost"},
      {"email_neg_double_dot", "a..b@example.com", "a..b@example.com"},
      {"email_neg_decorator", "@decorator.py and @types/node", "@decorator.py and @types/node"},
      // phone
      {"phone_e164_spaced", "call +1 415 555 2671 now", "call [REDACTED:PHONE] now"},
      {"phone_e164", "+14155552671", "[REDACTED:PHONE]"},
      {"phone_nanp_paren", "(415) 555-2671", "[REDACTED:PHONE]"},
      {"phone_nanp_dots", "415.555.2671", "[REDACTED:PHONE]"},
      {"phone_uk_intl", "+44 20 7946 0958", "[REDACTED:PHONE]"},
      {"phone_uk_national", "ring 020 7946 0958", "ring [REDACTED:PHONE]"},
      {"phone_fr_national", "06 12 34 56 78", "[REDACTED:PHONE]"},
      {"phone_bare_with_context", "phone: 4155552671", "phone: [REDACTED:PHONE]"},
      {"phone_nanp_paren_glued", "(415)555-2671", "[REDACTED:PHONE]"},
      {"phone_neg_context_inside_word", "hotel 4155552671", "hotel 4155552671"},
      {"phone_neg_date_then_uuid", "gpt-4o-2024-08-06 31825812-baac-4ce9-874d-b6504baf1bf1",
       "gpt-4o-2024-08-06 31825812-baac-4ce9-874d-b6504baf1bf1"},
      {"phone_neg_bare_no_context", "id 4155552671", "id 4155552671"},
      {"phone_neg_short_plus", "+123 items", "+123 items"},
      {"phone_neg_date", "on 2025-06-06 at 11:31", "on 2025-06-06 at 11:31"},
      // payment cards
      {"card_visa_spaces", "4111 1111 1111 1111", "[REDACTED:CARD]"},
      {"card_visa_dashes", "card 4111-1111-1111-1111.", "card [REDACTED:CARD]."},
      {"card_visa_plain", "4111111111111111", "[REDACTED:CARD]"},
      {"card_mastercard", "5500 0000 0000 0004", "[REDACTED:CARD]"},
      {"card_amex", "3782 822463 10005", "[REDACTED:CARD]"},
      {"card_discover", "6011 1111 1111 1117", "[REDACTED:CARD]"},
      {"card_then_expiry", "4111 1111 1111 1111 12/29", "[REDACTED:CARD] 12/29"},
      {"card_in_parens", "Your details (2234855458403749) have been saved.",
       "Your details ([REDACTED:CARD]) have been saved."},
      {"card_spaced_in_parens", "paid with (4111 1111 1111 1111)", "paid with ([REDACTED:CARD])"},
      {"card_neg_paren_area_code_shape", "(411) 1111111111111111", "(411) 1111111111111111"},
      {"card_neg_luhn", "4111 1111 1111 1112", "4111 1111 1111 1112"},
      {"card_neg_prefix", "1234 5678 9012 3452", "1234 5678 9012 3452"},
      {"card_neg_decimal", "0.0553131103515625", "0.0553131103515625"},
      {"card_neg_epoch_ms", "ts 1749650400123", "ts 1749650400123"},
      {"card_neg_in_hex", "a4111111111111111b", "a4111111111111111b"},
      {"card_neg_all_zero", "0000 0000 0000 0000", "0000 0000 0000 0000"},
      // IBAN
      {"iban_gb_spaced", "IBAN GB82 WEST 1234 5698 7654 32 ok", "IBAN [REDACTED:IBAN] ok"},
      {"iban_de_compact", "DE89370400440532013000", "[REDACTED:IBAN]"},
      {"iban_fr", "FR1420041010050500013M02606", "[REDACTED:IBAN]"},
      {"iban_neg_checksum", "GB82 WEST 1234 5698 7654 33", "GB82 WEST 1234 5698 7654 33"},
      {"iban_neg_length", "DE8937040044053201300", "DE8937040044053201300"},
      // Honduras, in the registry since release 99.
      {"iban_hn_compact", "HN88CABF00000000000250005469", "[REDACTED:IBAN]"},
      {"iban_hn_spaced", "pay to IBAN HN88 CABF 0000 0000 0002 5000 5469.",
       "pay to IBAN [REDACTED:IBAN]."},
      {"iban_hn_neg_checksum", "HN89CABF00000000000250005469", "HN89CABF00000000000250005469"},
      {"iban_hn_neg_length", "HN88CABF0000000000025000546", "HN88CABF0000000000025000546"},
      // Yemen and Oman, added in 2024.
      {"iban_ye", "YE15CBYE0001018861234567891234", "[REDACTED:IBAN]"},
      {"iban_om_spaced", "OM81 0180 0000 0129 9123 456", "[REDACTED:IBAN]"},
      // SSN
      {"ssn_dashed", "SSN 536-22-8726", "SSN [REDACTED:SSN]"},
      {"ssn_dashed_no_context", "536-22-8726", "[REDACTED:SSN]"},
      {"ssn_bare_with_context", "ssn: 536228726", "ssn: [REDACTED:SSN]"},
      {"ssn_spaced_with_context", "social security 536 22 8726", "social security [REDACTED:SSN]"},
      {"ssn_in_parens", "(536-22-8726)", "([REDACTED:SSN])"},
      {"ssn_snake_column", "536228726", "[REDACTED:SSN]", "social_security_number"},
      {"ssn_camel_column", "536228726", "[REDACTED:SSN]", "socialSecurityNumber"},
      {"ssn_kebab_text", "social-security-no 536228726", "social-security-no [REDACTED:SSN]"},
      {"ssn_neg_area_000", "000-12-3456", "000-12-3456"},
      {"ssn_neg_area_666", "666-12-3456", "666-12-3456"},
      {"ssn_neg_area_9xx", "912-34-5678", "912-34-5678"},
      {"ssn_neg_group_00", "536-00-8726", "536-00-8726"},
      {"ssn_neg_serial_0000", "536-22-0000", "536-22-0000"},
      {"ssn_neg_bare_id", "order 536228726", "order 536228726"},
      // IP and MAC
      {"ipv4", "from 192.168.1.20 port", "from [REDACTED:IP_ADDRESS] port"},
      {"ipv4_edge", "8.8.8.8", "[REDACTED:IP_ADDRESS]"},
      {"ipv4_after_sentence_number", "invoice INV-2025-000123. 192.0.2.17 was",
       "invoice INV-2025-000123. [REDACTED:IP_ADDRESS] was"},
      {"ipv4_neg_octet", "256.1.1.1", "256.1.1.1"},
      {"ipv4_neg_version_v", "v1.2.3.4", "v1.2.3.4"},
      {"ipv4_neg_version_word", "version 10.0.0.1", "version 10.0.0.1"},
      {"ipv4_neg_five_parts", "1.2.3.4.5", "1.2.3.4.5"},
      {"ipv6", "addr 2001:db8::8a2e:370:7334 ok", "addr [REDACTED:IP_ADDRESS] ok"},
      {"ipv6_link_local", "fe80::1ff:fe23:4567:890a", "[REDACTED:IP_ADDRESS]"},
      {"ipv6_neg_cpp", "std::vector<int> x", "std::vector<int> x"},
      {"ipv6_neg_clock", "at 12:30:45", "at 12:30:45"},
      {"mac_colon", "mac 00:1A:2B:3C:4D:5E", "mac [REDACTED:MAC_ADDRESS]"},
      {"mac_dash", "00-1a-2b-3c-4d-5e", "[REDACTED:MAC_ADDRESS]"},
      {"mac_neg_five_groups", "00:1A:2B:3C:4D", "00:1A:2B:3C:4D"},
      // secrets
      {"aws_key_id", "key " + FakeAwsKeyId() + " x", "key [REDACTED:AWS_ACCESS_KEY] x"},
      {"aws_key_id_neg_short", "AKIAIOSFODNN7EXAMPL", "AKIAIOSFODNN7EXAMPL"},
      {"aws_secret", "aws_secret_access_key = " + FakeAwsSecret(),
       "aws_secret_access_key = [REDACTED:AWS_SECRET_KEY]"},
      {"github", "token " + FakeGithubToken(), "token [REDACTED:GITHUB_TOKEN]"},
      {"github_neg_short", "ghp_short123", "ghp_short123"},
      {"gitlab", FakeGitlabToken(), "[REDACTED:GITLAB_TOKEN]"},
      {"slack", "bot " + FakeSlackToken(), "bot [REDACTED:SLACK_TOKEN]"},
      {"slack_webhook",
       "https://hooks.slack.com/services/T00000000/B00000000/" + Rep("EXAMPLE", 24),
       "[REDACTED:SLACK_TOKEN]"},
      {"stripe", FakeStripeKey(), "[REDACTED:STRIPE_KEY]"},
      {"google", "key=" + FakeGoogleKey(), "key=[REDACTED:GOOGLE_API_KEY]"},
      {"openai", FakeOpenaiKey(), "[REDACTED:OPENAI_KEY]"},
      {"openai_neg_kebab", "sk-this-is-not-a-real-key-at-all", "sk-this-is-not-a-real-key-at-all"},
      {"anthropic", FakeAnthropicKey(), "[REDACTED:ANTHROPIC_KEY]"},
      {"jwt", "jwt " + FakeJwt() + " end", "jwt [REDACTED:JWT] end"},
      {"jwt_neg_not_json", "eyJhbGciOi.eyJnotjson", "eyJhbGciOi.eyJnotjson"},
      {"pem", "key:\n" + pem + "\nend", "key:\n[REDACTED:PRIVATE_KEY]\nend"},
      {"pem_truncated", "-----BEGIN OPENSSH PRIVATE KEY-----\n" + Rep("b3BlbnNzaC1rZXk+/", 70),
       "[REDACTED:PRIVATE_KEY]"},
      {"pem_neg_public", "-----BEGIN PUBLIC KEY-----\nMFkw", "-----BEGIN PUBLIC KEY-----\nMFkw"},
      {"generic_password", "password=Tr0ub4dor!3x", "password=[REDACTED:SECRET]"},
      {"generic_db_password", "DB_PASSWORD: 'hunter22x'", "DB_PASSWORD: '[REDACTED:SECRET]'"},
      {"generic_api_key", "api_key: 9f8e7d6c5b4a3210", "api_key: [REDACTED:SECRET]"},
      {"generic_neg_low_entropy", "password=aaaa", "password=aaaa"},
      {"generic_neg_low_entropy_long", "password=aaaaaaaaaaaa", "password=aaaaaaaaaaaa"},
      {"generic_neg_placeholder", "password: ${DB_PASSWORD}", "password: ${DB_PASSWORD}"},
      {"generic_neg_max_tokens", "max_tokens: 4096", "max_tokens: 4096"},
      {"bearer", "Authorization: Bearer abcDEF123456ghiJKL789",
       "Authorization: Bearer [REDACTED:SECRET]"},
      {"url_credentials", "postgres://app:s3cr3tP4ss@db.internal:5432/x",
       "postgres://app:[REDACTED:SECRET]@db.internal:5432/x"},
      // false-positive traps (issue 5, item 6)
      {"trap_version", "telemetry.sdk.version 1.10.23", "telemetry.sdk.version 1.10.23"},
      {"trap_file_name", "edit utils.py and main.rs", "edit utils.py and main.rs"},
      {"trap_nine_digit_id", "row 123456789 updated", "row 123456789 updated"},
      {"trap_hex_hash", "1b72c51fabed12ae7df83bfd4a09f545", "1b72c51fabed12ae7df83bfd4a09f545"},
      {"trap_uuid", "5855d85e-3943-497e-bd10-f50ad414bcba", "5855d85e-3943-497e-bd10-f50ad414bcba"},
      {"trap_timestamp", "2025-06-06T11:31:33.965Z", "2025-06-06T11:31:33.965Z"},
      {"trap_epoch", "1749650400", "1749650400"},
      {"trap_langfuse_public_key", "pk-lf-5855d85e-3943-497e-bd10-f50ad414bcba",
       "pk-lf-5855d85e-3943-497e-bd10-f50ad414bcba"},
      // custom detectors
      {"custom_regex", "employee EMP-123456 left", "employee [REDACTED:EMPLOYEE_ID] left"},
      {"custom_regex_neg", "EMP-12345", "EMP-12345"},
      {"custom_dictionary", "ask jane doe, then John Smith.",
       "ask [REDACTED:PERSON], then [REDACTED:PERSON]."},
      {"custom_dictionary_neg_prefix", "Jane Doeson", "Jane Doeson"},
      {"custom_validator", "ACCT4111111111111111", "[REDACTED:ACCOUNT]"},
      {"custom_validator_neg", "ACCT4111111111111112", "ACCT4111111111111112"},
      // column rules and secret-named columns
      {"column_mask", "anything at all", "[REDACTED:NOTES]", "private_notes"},
      {"column_keep", "jane@example.com", "jane@example.com", "raw_blob"},
      {"column_secret_name", "xK9#mP2$vL", "[REDACTED:SECRET]", "api_key"},
      {"column_secret_name_vendor_key", FakeStripeKey(), "[REDACTED:STRIPE_KEY]", "api_key"},
      {"column_aws_secret_name", FakeAwsSecret(), "[REDACTED:AWS_SECRET_KEY]",
       "aws_secret_access_key"},
      {"empty", "", ""},
      {"utf8_around", "naïve — jane@example.com — ✓", "naïve — [REDACTED:EMAIL] — ✓"},
  };
}

class TextTable : public ::testing::TestWithParam<Row> {};

TEST_P(TextTable, Masks) {
  const Row& row = GetParam();
  auto scanner = Scanner::Create(TableMasker());
  ASSERT_TRUE(scanner.ok()) << scanner.status();
  std::string out;
  Counts counts;
  auto changed = scanner->MaskText(row.in, {row.column, ValueKind::kText}, out, counts);
  ASSERT_TRUE(changed.ok()) << changed.status();
  if (row.want == row.in) {
    EXPECT_FALSE(*changed) << "masked to: " << out;
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(counts.Total(), 0u);
  } else {
    EXPECT_TRUE(*changed);
    EXPECT_EQ(out, row.want);
    EXPECT_GT(counts.Total(), 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, TextTable, ::testing::ValuesIn(Rows()),
                         [](const ::testing::TestParamInfo<Row>& info) { return info.param.name; });

// The registry's example IBAN of every country, compact and in groups of four, is masked by
// the whole engine (class scanner and validator), not only accepted by IbanValid.
TEST(MaskerIban, EveryRegistryCountry) {
  auto scanner = Scanner::Create(TableMasker());
  ASSERT_TRUE(scanner.ok()) << scanner.status();
  for (const test_support::IbanRegistryEntry& e : test_support::kIbanRegistry) {
    const std::string compact = e.example;
    std::string grouped;
    for (size_t k = 0; k < compact.size(); ++k) {
      if (k > 0 && k % 4 == 0) {
        grouped += ' ';
      }
      grouped += compact[k];
    }
    for (const std::string& iban : {compact, grouped}) {
      std::string out;
      Counts counts;
      auto changed = scanner->MaskText("account " + iban + " ok", {}, out, counts);
      ASSERT_TRUE(changed.ok()) << changed.status();
      EXPECT_TRUE(*changed) << e.country << ": " << iban;
      EXPECT_EQ(out, "account [REDACTED:IBAN] ok") << e.country << ": " << iban;
      EXPECT_EQ(counts.Of("IBAN"), 1u) << e.country;
    }
  }
}

TEST(MaskerCounts, CountsPerEntityAcrossCalls) {
  auto scanner = Scanner::Create(TableMasker());
  ASSERT_TRUE(scanner.ok());
  std::string out;
  Counts counts;
  ASSERT_TRUE(
      scanner->MaskText("a@example.com b@example.com 4111111111111111", {}, out, counts).ok());
  ASSERT_TRUE(scanner->MaskText("c@example.com", {}, out, counts).ok());
  EXPECT_EQ(counts.Of("EMAIL"), 3u);
  EXPECT_EQ(counts.Of("CARD"), 1u);
  EXPECT_EQ(counts.Of("SSN"), 0u);
  EXPECT_EQ(counts.Total(), 4u);
}

TEST(MaskerProfile, RejectsBadProfiles) {
  Profile unknown;
  unknown.all_builtin_detectors = false;
  unknown.detectors = {"email", "emial"};
  EXPECT_THAT(std::string(Masker::Create(unknown).status().message()),
              ::testing::HasSubstr("unknown detector 'emial'"));

  Profile no_key;
  no_key.default_strategy.kind = StrategyKind::kPseudonymize;
  EXPECT_THAT(std::string(Masker::Create(no_key).status().message()),
              ::testing::HasSubstr("pseudonym_key"));

  Profile bad_path;
  bad_path.field_rules.push_back({"", "metadata.email", FieldAction::kKeep});
  EXPECT_THAT(std::string(Masker::Create(bad_path).status().message()),
              ::testing::HasSubstr("must start with '$'"));

  Profile bad_regex;
  bad_regex.custom_detectors.push_back({.name = "br", .entity = "X", .regex = "(a)\\1"});
  EXPECT_THAT(std::string(Masker::Create(bad_regex).status().message()),
              ::testing::HasSubstr("detector 'br'"));

  Profile typo;
  typo.strategies["EMAL"] = Strategy{};
  EXPECT_THAT(std::string(Masker::Create(typo).status().message()),
              ::testing::HasSubstr("unknown entity 'EMAL'"));
}

TEST(MaskerProfile, OnlyEnabledDetectorsRun) {
  Profile p;
  p.all_builtin_detectors = false;
  p.detectors = {"card"};
  auto masker = Masker::Create(p);
  ASSERT_TRUE(masker.ok());
  auto scanner = Scanner::Create(*masker);
  ASSERT_TRUE(scanner.ok());
  std::string out;
  Counts counts;
  auto changed = scanner->MaskText("jane@example.com 4111111111111111", {}, out, counts);
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(out, "jane@example.com [REDACTED:CARD]");
}

}  // namespace
}  // namespace tracegate::masking
