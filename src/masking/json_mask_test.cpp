// JSON → masked JSON: escapes, JSON inside strings, numbers, keys, field rules, the
// default keep-list, invalid JSON (fail closed). Every output must be valid JSON.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "masking/masker.h"
#include "masking/test_support.h"

namespace tracegate::masking {
namespace {

using test_support::FakeAnthropicKey;
using test_support::FakeAwsSecret;
using test_support::FakeJwt;
using test_support::FakeOpenaiKey;
using test_support::FakePem;
using test_support::ValidJson;
using ::testing::HasSubstr;

std::shared_ptr<const Masker> JsonMasker() {
  static std::shared_ptr<const Masker> masker = [] {
    Profile p;
    p.field_rules = {
        {.path = "$.metadata.user.email", .action = FieldAction::kMask, .entity = "EMAIL"},
        {.path = "$..raw", .action = FieldAction::kKeep},
        {.path = "$..output..input", .action = FieldAction::kScan},
        {.path = "$..output", .action = FieldAction::kKeep},
        {.path = "$..customer.name", .action = FieldAction::kMask, .entity = "PERSON"},
        {.path = "$.items[*].note", .action = FieldAction::kMask, .entity = "NOTE"},
        {.path = "$.rows[1]", .action = FieldAction::kKeep},
        {.column = "other_table", .path = "$..secret_notes", .action = FieldAction::kMask},
    };
    auto m = Masker::Create(p);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }();
  return masker;
}

struct Row {
  std::string name;
  std::string in;
  std::string want;  // == in: unchanged
};

void PrintTo(const Row& r, std::ostream* os) { *os << r.name; }

std::string Escaped(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::vector<Row> Rows() {
  const std::string key = FakeAnthropicKey();
  return {
      // escapes are decoded before scanning and the string re-encoded after
      {"escape_u0040", R"({"e":"jane\u0040example.com"})", R"({"e":"[REDACTED:EMAIL]"})"},
      {"escape_split_card", R"({"c":"4111\u00201111\u00201111\u00201111"})",
       R"({"c":"[REDACTED:CARD]"})"},
      {"escape_aws_prefix", R"({"k":"\u0041KIAIOSFODNN7EXAMPLE"})",
       R"({"k":"[REDACTED:AWS_ACCESS_KEY]"})"},
      {"escape_reencoded", R"({"t":"line1\nmail jane@example.com \u00e9\t\"q\""})",
       "{\"t\":\"line1\\nmail [REDACTED:EMAIL] \xc3\xa9\\t\\\"q\\\"\"}"},
      {"escaped_slashes", R"({"u":"https:\/\/x.io\/?to=jane@example.com"})",
       R"({"u":"https://x.io/?to=[REDACTED:EMAIL]"})"},
      {"untouched_strings_keep_escapes", R"({"a":"caf\u00e9","e":"jane@example.com"})",
       R"({"a":"caf\u00e9","e":"[REDACTED:EMAIL]"})"},
      // JSON inside a JSON string
      {"nested_object", R"({"metadata":"{\"email\":\"user@langfuse.com\",\"n\":1}"})",
       R"({"metadata":"{\"email\":\"[REDACTED:EMAIL]\",\"n\":1}"})"},
      {"nested_two_levels", R"({"a":"{\"b\":\"{\\\"c\\\":\\\"jane@example.com\\\"}\"}"})",
       R"({"a":"{\"b\":\"{\\\"c\\\":\\\"[REDACTED:EMAIL]\\\"}\"}"})"},
      {"nested_escape_inside", R"({"m":"{\"e\":\"jane\\u0040example.com\"}"})",
       R"({"m":"{\"e\":\"[REDACTED:EMAIL]\"}"})"},
      {"nested_string_literal", R"({"input":"\"mail jane@example.com\""})",
       R"({"input":"\"mail [REDACTED:EMAIL]\""})"},
      {"nested_array", R"({"tools":"[{\"phone\":\"+1 415 555 2671\"}]"})",
       R"({"tools":"[{\"phone\":\"[REDACTED:PHONE]\"}]"})"},
      {"nested_invalid_is_text", R"({"t":"[not json] jane@example.com"})",
       R"({"t":"[not json] [REDACTED:EMAIL]"})"},
      {"nested_path_continues", R"({"metadata":"{\"user\":{\"email\":\"x\"}}"})",
       R"({"metadata":"{\"user\":{\"email\":\"[REDACTED:EMAIL]\"}}"})"},
      // numbers and keys
      {"number_card", R"({"card":4111111111111111})", R"({"card":"[REDACTED:CARD]"})"},
      {"number_phone_by_key", R"({"phone": 14155552671})", R"({"phone": "[REDACTED:PHONE]"})"},
      {"number_plain_id", R"({"n":4155552671})", R"({"n":4155552671})"},
      {"number_traps", R"({"x":0.0553131103515625,"t":1749650400123,"v":-1.5e10})",
       R"({"x":0.0553131103515625,"t":1749650400123,"v":-1.5e10})"},
      {"ssn_snake_key_bare", R"({"social_security_number":"536228726"})",
       R"({"social_security_number":"[REDACTED:SSN]"})"},
      {"ssn_snake_key_spaced", R"({"social_security_number":"536 22 8726"})",
       R"({"social_security_number":"[REDACTED:SSN]"})"},
      {"ssn_short_key", R"({"ssn_number":"536228726"})", R"({"ssn_number":"[REDACTED:SSN]"})"},
      {"ssn_camel_key", R"({"socialSecurityNumber":536228726})",
       R"({"socialSecurityNumber":"[REDACTED:SSN]"})"},
      {"ssn_neg_other_key", R"({"order_number":"536228726"})", R"({"order_number":"536228726"})"},
      {"ipv4_version_word_in_other_string", R"({"a":"version 2","b":"10.1.2.3"})",
       R"({"a":"version 2","b":"[REDACTED:IP_ADDRESS]"})"},
      {"ipv4_neg_version_word_same_string", R"({"a":"version 10.1.2.3"})",
       R"({"a":"version 10.1.2.3"})"},
      {"key_is_email", R"({"jane@example.com":{"v":1}})", R"({"[REDACTED:EMAIL]":{"v":1}})"},
      // secret-named fields
      {"secret_key_value", R"({"password":"Tr0ub4dor!3x","token_count":12})",
       R"({"password":"[REDACTED:SECRET]","token_count":12})"},
      {"secret_key_low_entropy", R"({"password":"aaaaaaa"})", R"({"password":"aaaaaaa"})"},
      {"secret_authorization", R"({"headers":{"Authorization":"Basic dXNlcjpwYXNz"}})",
       R"({"headers":{"Authorization":"[REDACTED:SECRET]"}})"},
      // a vendor key under a secret-named field: masked whole, labelled as the key
      {"secret_key_names_vendor", "{\"OPENAI_API_KEY\":\"" + FakeOpenaiKey() + "\"}",
       R"({"OPENAI_API_KEY":"[REDACTED:OPENAI_KEY]"})"},
      {"secret_key_jwt", "{\"id_token\":\"" + FakeJwt() + "\"}",
       R"({"id_token":"[REDACTED:JWT]"})"},
      {"secret_key_pem", "{\"private_key\":\"" + Escaped(FakePem()) + "\"}",
       R"({"private_key":"[REDACTED:PRIVATE_KEY]"})"},
      {"secret_key_aws_secret", "{\"aws_secret_access_key\":\"" + FakeAwsSecret() + "\"}",
       R"({"aws_secret_access_key":"[REDACTED:AWS_SECRET_KEY]"})"},
      {"secret_key_aws_sts", "{\"SecretAccessKey\":\"" + FakeAwsSecret() + "\"}",
       R"({"SecretAccessKey":"[REDACTED:AWS_SECRET_KEY]"})"},
      {"secret_key_key_inside_prose", "{\"token\":\"use " + FakeOpenaiKey() + " here\"}",
       R"({"token":"[REDACTED:OPENAI_KEY]"})"},
      {"secret_key_40_chars_not_aws", "{\"api_key\":\"" + FakeAwsSecret() + "\"}",
       R"({"api_key":"[REDACTED:SECRET]"})"},
      {"secret_neg_max_tokens", R"({"max_tokens":"4096","tokenizer":"cl100k_base"})",
       R"({"max_tokens":"4096","tokenizer":"cl100k_base"})"},
      // default keep-list: opaque reasoning fields pass byte for byte
      {"keep_signature", R"({"signature":"QUJD/4111111111111111+REVGRw=="})",
       R"({"signature":"QUJD/4111111111111111+REVGRw=="})"},
      {"contrast_same_value_elsewhere", R"({"other":"QUJD/4111111111111111+REVGRw=="})",
       R"({"other":"QUJD/[REDACTED:CARD]+REVGRw=="})"},
      {"keep_encrypted_content", R"({"encrypted_content":"gAAAAAB/4111111111111111+xyz0"})",
       R"({"encrypted_content":"gAAAAAB/4111111111111111+xyz0"})"},
      {"keep_nested_thought_signature",
       R"({"parts":[{"text":"hi","thoughtSignature":"CiIBVKhc/4111111111111111+Q=="}]})",
       R"({"parts":[{"text":"hi","thoughtSignature":"CiIBVKhc/4111111111111111+Q=="}]})"},
      {"keep_data_url", R"({"data":"data:image/png;base64,iVBORw0K/4111111111111111+GgoAAAA"})",
       R"({"data":"data:image/png;base64,iVBORw0K/4111111111111111+GgoAAAA"})"},
      {"opaque_whole_secret", "{\"data\":\"" + key + "\"}",
       R"({"data":"[REDACTED:ANTHROPIC_KEY]"})"},
      {"signature_not_opaque", R"({"signature":"Best regards, jane@example.com"})",
       R"({"signature":"Best regards, [REDACTED:EMAIL]"})"},
      {"data_object_scanned", R"({"data":{"email":"jane@example.com"}})",
       R"({"data":{"email":"[REDACTED:EMAIL]"}})"},
      // field rules
      {"rule_mask_path", R"({"metadata":{"user":{"email":"not-an-address","name":"x"}}})",
       R"({"metadata":{"user":{"email":"[REDACTED:EMAIL]","name":"x"}}})"},
      {"rule_keep_subtree", R"({"raw":{"e":"jane@example.com"},"e":"jane@example.com"})",
       R"({"raw":{"e":"jane@example.com"},"e":"[REDACTED:EMAIL]"})"},
      {"rule_scan_inside_keep",
       R"({"output":{"text":"jane@example.com","input":"jane@example.com"}})",
       R"({"output":{"text":"jane@example.com","input":"[REDACTED:EMAIL]"}})"},
      {"rule_mask_name", R"({"order":{"customer":{"name":"Jane Roe","age":41}}})",
       R"({"order":{"customer":{"name":"[REDACTED:PERSON]","age":41}}})"},
      {"rule_wildcard", R"({"items":[{"note":"a"},{"note":7}],"note":"c"})",
       R"({"items":[{"note":"[REDACTED:NOTE]"},{"note":"[REDACTED:NOTE]"}],"note":"c"})"},
      {"rule_index", R"({"rows":["jane@example.com","jane@example.com"]})",
       R"({"rows":["[REDACTED:EMAIL]","jane@example.com"]})"},
      {"rule_other_column_inactive", R"({"secret_notes":"plain words"})",
       R"({"secret_notes":"plain words"})"},
      // layout
      {"pretty_printed", "{\n  \"a\": [\n    1,\n    \"jane@example.com\"\n  ]\n}\n",
       "{\n  \"a\": [\n    1,\n    \"[REDACTED:EMAIL]\"\n  ]\n}\n"},
      {"top_level_string", R"("jane@example.com")", R"("[REDACTED:EMAIL]")"},
      {"empty_containers", R"({"a":[],"b":{},"c":null,"d":true})",
       R"({"a":[],"b":{},"c":null,"d":true})"},
      {"unicode_around", "{\"n\":\"Zo\xc3\xab \xe2\x9c\x93 jane@example.com\"}",
       "{\"n\":\"Zo\xc3\xab \xe2\x9c\x93 [REDACTED:EMAIL]\"}"},
  };
}

class JsonTable : public ::testing::TestWithParam<Row> {};

TEST_P(JsonTable, Masks) {
  const Row& row = GetParam();
  ASSERT_TRUE(ValidJson(row.in)) << "bad test input";
  auto scanner = Scanner::Create(JsonMasker());
  ASSERT_TRUE(scanner.ok());
  std::string out;
  Counts counts;
  auto changed = scanner->MaskJson(row.in, {"trace", ValueKind::kJson}, out, counts);
  ASSERT_TRUE(changed.ok()) << changed.status();
  if (row.want == row.in) {
    EXPECT_FALSE(*changed) << "masked to: " << out;
  } else {
    ASSERT_TRUE(*changed);
    EXPECT_EQ(out, row.want);
    EXPECT_TRUE(ValidJson(out)) << out;
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, JsonTable, ::testing::ValuesIn(Rows()),
                         [](const ::testing::TestParamInfo<Row>& info) { return info.param.name; });

TEST(JsonMask, InvalidJsonIsAnErrorNeverTheInput) {
  auto scanner = Scanner::Create(JsonMasker());
  ASSERT_TRUE(scanner.ok());
  const std::vector<std::string> bad = {"",
                                        " ",
                                        R"({"a":})",
                                        R"({"a":"x")",
                                        "[1,2,]",
                                        R"({"a":1}x)",
                                        "{'a':1}",
                                        "01",
                                        "-",
                                        "1.",
                                        "1e",
                                        "[1 2]",
                                        R"({"a" 1})",
                                        "tru",
                                        "nul",
                                        "{\"a\":\"\x01\"}",
                                        R"("\u12")",
                                        R"("\q")",
                                        "\"\xff\xfe\"",
                                        std::string(600, '['),
                                        R"({"jane@example.com":})",
                                        "{\"a\":\"jane@example.com\"",
                                        "[\"4111111111111111\",]"};
  for (const std::string& in : bad) {
    std::string out = "stale";
    Counts counts;
    auto r = scanner->MaskJson(in, {"trace", ValueKind::kJson}, out, counts);
    EXPECT_FALSE(r.ok()) << in;
    EXPECT_TRUE(out.empty()) << in;
    EXPECT_EQ(counts.Total(), 0u) << in;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("column 'trace'"));
  }
}

TEST(JsonMask, TextColumnWithBrokenJsonIsScannedAsText) {
  auto scanner = Scanner::Create(JsonMasker());
  std::string out;
  Counts counts;
  auto r = scanner->MaskText(R"({"not json" jane@example.com)", {"notes"}, out, counts);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(out, R"({"not json" [REDACTED:EMAIL])");
}

TEST(JsonMask, TextColumnHoldingJsonIsMaskedAsJson) {
  auto scanner = Scanner::Create(JsonMasker());
  std::string out;
  Counts counts;
  auto r =
      scanner->MaskText(R"({"e":"jane\u0040example.com","signature":"QUJD/4111111111111111+R"})",
                        {"notes"}, out, counts);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(out, R"({"e":"[REDACTED:EMAIL]","signature":"QUJD/4111111111111111+R"})");
}

TEST(JsonMask, ColumnRulesApplyToTheirColumnOnly) {
  auto scanner = Scanner::Create(JsonMasker());
  std::string out;
  Counts counts;
  auto r = scanner->MaskJson(R"({"x":{"secret_notes":"plain words"}})",
                             {"Other_Table", ValueKind::kJson}, out, counts);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(out, R"({"x":{"secret_notes":"[REDACTED:FIELD]"}})");
  EXPECT_EQ(counts.Of("FIELD"), 1u);
}

TEST(JsonMask, KeepRulesKeepOnlyOpaqueBlobsWhenTheClientChoseTheNames) {
  // A computed SQL column (alias, jsonb_build_object) could steer any value under `$..raw`.
  auto scanner = Scanner::Create(JsonMasker());
  std::string out;
  Counts counts;
  const std::string doc =
      R"({"raw":"mail jane.doe@example.com","blob":{"raw":"QUJDREVGR0hJSktMTU5PUA=="}})";
  auto trusted = scanner->MaskJson(doc, {"t", ValueKind::kJson}, out, counts);
  ASSERT_TRUE(trusted.ok());
  EXPECT_FALSE(*trusted);  // the keep rule holds for a stored column
  auto untrusted = scanner->MaskJson(
      doc, {.column = "t", .kind = ValueKind::kJson, .trusted_names = false}, out, counts);
  ASSERT_TRUE(untrusted.ok());
  ASSERT_TRUE(*untrusted);
  EXPECT_EQ(out, R"({"raw":"mail [REDACTED:EMAIL]","blob":{"raw":"QUJDREVGR0hJSktMTU5PUA=="}})");
  // Text: a whole-column keep rule is no different.
  Profile p;
  p.field_rules = {{.column = "notes", .action = FieldAction::kKeep}};
  auto masker = Masker::Create(p);
  ASSERT_TRUE(masker.ok());
  auto text_scanner = Scanner::Create(*masker);
  auto kept = text_scanner->MaskText("jane.doe@example.com", {"notes"}, out, counts);
  ASSERT_TRUE(kept.ok());
  EXPECT_FALSE(*kept);
  auto scanned = text_scanner->MaskText("jane.doe@example.com",
                                        {.column = "notes", .trusted_names = false}, out, counts);
  ASSERT_TRUE(scanned.ok());
  ASSERT_TRUE(*scanned);
  EXPECT_EQ(out, "[REDACTED:EMAIL]");
}

TEST(JsonMask, UserRuleOverridesTheDefaultKeepList) {
  Profile p;
  p.field_rules = {{.path = "$..signature", .action = FieldAction::kScan}};
  auto masker = Masker::Create(p);
  ASSERT_TRUE(masker.ok());
  auto scanner = Scanner::Create(*masker);
  std::string out;
  Counts counts;
  auto r =
      scanner->MaskJson(R"({"signature":"QUJD/4111111111111111+REVGRw=="})", {"t"}, out, counts);
  ASSERT_TRUE(r.ok() && *r);
  EXPECT_EQ(out, R"({"signature":"QUJD/[REDACTED:CARD]+REVGRw=="})");

  Profile no_defaults;
  no_defaults.default_keep_list = false;
  masker = Masker::Create(no_defaults);
  ASSERT_TRUE(masker.ok());
  scanner = Scanner::Create(*masker);
  r = scanner->MaskJson(R"({"signature":"QUJD/4111111111111111+REVGRw=="})", {"t"}, out, counts);
  ASSERT_TRUE(r.ok() && *r);
}

TEST(JsonMask, DepthOfJsonInStringsIsBounded) {
  Profile p;
  p.max_json_depth = 1;
  auto masker = Masker::Create(p);
  ASSERT_TRUE(masker.ok());
  auto scanner = Scanner::Create(*masker);
  std::string out;
  Counts counts;
  // Level 2 is scanned as text: the escaped '@' inside it is not decoded, a plain one is.
  auto r = scanner->MaskJson(
      R"({"a":"{\"b\":\"{\\\"c\\\":\\\"jane@example.com\\\",\\\"d\\\":\\\"x\\\\u0040y.com\\\"}\"}"})",
      {"t"}, out, counts);
  ASSERT_TRUE(r.ok() && *r);
  EXPECT_THAT(out, HasSubstr("[REDACTED:EMAIL]"));
  EXPECT_THAT(out, HasSubstr("x\\\\\\\\u0040y.com"));
  EXPECT_TRUE(ValidJson(out));
}

TEST(JsonMask, UnchangedValueIsNotCopied) {
  auto scanner = Scanner::Create(JsonMasker());
  std::string out = "previous";
  Counts counts;
  auto r = scanner->MaskJson(R"({"a":"nothing to see","n":[1,2,3]})", {"t"}, out, counts);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace tracegate::masking
