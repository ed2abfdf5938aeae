// masking_profiles[]: what loads (and compiles into a Masker), the defaults, and the errors.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "config/config.h"
#include "config/scalars.h"
#include "masking/masker.h"

namespace tracegate::config {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Four lines; masking_profiles written after it starts on line 5.
constexpr const char* kConnection = R"(connections:
  - name: traces-pg
    listen: 127.0.0.1:6432
    backend: {host: db, database: traces, user: tg, password: pw, allow_inline_password: true}
)";

absl::StatusOr<std::shared_ptr<const Config>> Load(const std::string& tail) {
  return LoadString(absl::StrCat(kConnection, tail), "t.yaml");
}

std::string ErrorOf(const std::string& tail) {
  auto config = Load(tail);
  return config.ok() ? "<loaded>" : std::string(config.status().message());
}

std::filesystem::path WriteTempFile(const std::string& name, const std::string& content) {
  std::string pattern = (std::filesystem::path(::testing::TempDir()) / "masking_keys.XXXXXX");
  EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
  std::filesystem::path path = std::filesystem::path(pattern) / name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

TEST(MaskingProfiles, FullProfileLoadsAndCompiles) {
  const std::filesystem::path key = WriteTempFile("pseudonym.key", "0123456789abcdef0123\n");
  auto config = Load(absl::StrCat(R"(masking_profiles:
  - name: support
    detectors: [email, card, phone]
    min_score: 0.6
    context_boost: 0.25
    context_window: 32
    default_strategy: {kind: partial, keep_last: 2}
    strategies:
      EMAIL: {kind: pseudonymize}
      CARD: {kind: partial, keep_last: 4}
      EMPLOYEE_ID: {kind: hash}
      PERSON: {kind: redact}
    pseudonym_key_file: )",
                                  key.string(), R"(
    pseudonym_hex_chars: 12
    field_rules:
      - {path: "$.metadata.user.email", action: mask, entity: EMAIL}
      - {path: "$..signature", action: keep, only_if_opaque: true}
      - {column: notes, action: scan}
    default_keep_list: false
    custom_detectors:
      - name: employee_id
        entity: EMPLOYEE_ID
        regex: 'EMP-\d{6}'
        score: 0.8
        context: [employee, staff]
        validator: ""
      - {name: staff, entity: PERSON, dictionary: [Jane Doe, John Smith], case_insensitive: true}
      - {name: card_ref, entity: CARD, regex: '\d{16}', validator: luhn}
    max_json_depth: 2
    scan_keys: false
  - name: plain
policy:
  rules:
    - {name: agents, groups: [ai-agents], masking_profile: support}
    - {name: sre, groups: [sre], masking_profile: plain}
)"));
  ASSERT_TRUE(config.ok()) << config.status();
  const Config& c = **config;
  ASSERT_EQ(c.masking_profiles.size(), 2u);
  const masking::Profile& p = c.masking_profiles[0];
  EXPECT_EQ(p.name, "support");
  EXPECT_FALSE(p.all_builtin_detectors);
  EXPECT_THAT(p.detectors, ElementsAre("email", "card", "phone"));
  EXPECT_DOUBLE_EQ(p.min_score, 0.6);
  EXPECT_DOUBLE_EQ(p.context_boost, 0.25);
  EXPECT_EQ(p.context_window, 32);
  EXPECT_EQ(p.default_strategy.kind, masking::StrategyKind::kPartial);
  EXPECT_EQ(p.default_strategy.keep_last, 2);
  ASSERT_EQ(p.strategies.size(), 4u);
  EXPECT_EQ(p.strategies.at("EMAIL").kind, masking::StrategyKind::kPseudonymize);
  EXPECT_EQ(p.strategies.at("CARD").kind, masking::StrategyKind::kPartial);
  EXPECT_EQ(p.strategies.at("CARD").keep_last, 4);
  EXPECT_EQ(p.strategies.at("EMPLOYEE_ID").kind, masking::StrategyKind::kHash);
  EXPECT_EQ(p.strategies.at("PERSON").kind, masking::StrategyKind::kRedact);
  EXPECT_EQ(p.pseudonym_key, "0123456789abcdef0123");  // trailing newline stripped
  EXPECT_EQ(p.pseudonym_hex_chars, 12);
  ASSERT_EQ(p.field_rules.size(), 3u);
  EXPECT_EQ(p.field_rules[0].path, "$.metadata.user.email");
  EXPECT_EQ(p.field_rules[0].action, masking::FieldAction::kMask);
  EXPECT_EQ(p.field_rules[0].entity, "EMAIL");
  EXPECT_EQ(p.field_rules[1].action, masking::FieldAction::kKeep);
  EXPECT_TRUE(p.field_rules[1].only_if_opaque);
  EXPECT_EQ(p.field_rules[2].column, "notes");
  EXPECT_EQ(p.field_rules[2].path, "");
  EXPECT_EQ(p.field_rules[2].action, masking::FieldAction::kScan);
  EXPECT_FALSE(p.default_keep_list);
  ASSERT_EQ(p.custom_detectors.size(), 3u);
  const masking::CustomDetector& emp = p.custom_detectors[0];
  EXPECT_EQ(emp.name, "employee_id");
  EXPECT_EQ(emp.entity, "EMPLOYEE_ID");
  EXPECT_EQ(emp.regex, "EMP-\\d{6}");
  EXPECT_TRUE(emp.dictionary.empty());
  EXPECT_FALSE(emp.case_insensitive);
  EXPECT_DOUBLE_EQ(emp.score, 0.8);
  EXPECT_THAT(emp.context, ElementsAre("employee", "staff"));
  EXPECT_EQ(emp.validator, "");
  const masking::CustomDetector& staff = p.custom_detectors[1];
  EXPECT_THAT(staff.dictionary, ElementsAre("Jane Doe", "John Smith"));
  EXPECT_TRUE(staff.case_insensitive);
  EXPECT_DOUBLE_EQ(staff.score, masking::CustomDetector().score);
  EXPECT_EQ(p.custom_detectors[2].validator, "luhn");
  EXPECT_EQ(p.max_json_depth, 2);
  EXPECT_FALSE(p.scan_keys);
  EXPECT_EQ(c.policy.rules[0].masking_profile, "support");

  // One compiled masker per profile, and it masks as configured.
  ASSERT_EQ(c.maskers.size(), 2u);
  ASSERT_TRUE(c.maskers.contains("plain"));
  auto it = c.maskers.find("support");
  ASSERT_NE(it, c.maskers.end());
  ASSERT_NE(it->second, nullptr);
  absl::StatusOr<masking::Scanner> scanner = masking::Scanner::Create(it->second);
  ASSERT_TRUE(scanner.ok()) << scanner.status();
  std::string out;
  masking::Counts counts;
  absl::StatusOr<bool> changed =
      scanner->MaskText("mail jane@example.com, staff jane doe, EMP-123456",
                        {"notes", masking::ValueKind::kText}, out, counts);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_THAT(out, AllOf(Not(HasSubstr("jane@example.com")), Not(HasSubstr("jane doe")),
                         Not(HasSubstr("EMP-123456")), HasSubstr("[EMAIL:"),
                         HasSubstr("[REDACTED:PERSON]")));
  EXPECT_EQ(counts.Of("EMAIL"), 1u);
  EXPECT_EQ(counts.Of("PERSON"), 1u);
  EXPECT_EQ(counts.Of("EMPLOYEE_ID"), 1u);
}

TEST(MaskingProfiles, OmittedKeysTakeTheEngineDefaults) {
  auto config = Load("masking_profiles: [{name: plain}, {name: custom-only, detectors: []}]\n");
  ASSERT_TRUE(config.ok()) << config.status();
  const masking::Profile defaults;
  const masking::Profile& p = (*config)->masking_profiles[0];
  EXPECT_TRUE(p.all_builtin_detectors);
  EXPECT_TRUE(p.detectors.empty());
  EXPECT_EQ(p.min_score, defaults.min_score);
  EXPECT_EQ(p.context_boost, defaults.context_boost);
  EXPECT_EQ(p.context_window, defaults.context_window);
  EXPECT_EQ(p.default_strategy.kind, defaults.default_strategy.kind);
  EXPECT_EQ(p.default_strategy.keep_last, defaults.default_strategy.keep_last);
  EXPECT_TRUE(p.strategies.empty());
  EXPECT_TRUE(p.pseudonym_key.empty());
  EXPECT_EQ(p.pseudonym_hex_chars, defaults.pseudonym_hex_chars);
  EXPECT_TRUE(p.field_rules.empty());
  EXPECT_EQ(p.default_keep_list, defaults.default_keep_list);
  EXPECT_TRUE(p.custom_detectors.empty());
  EXPECT_EQ(p.max_json_depth, defaults.max_json_depth);
  EXPECT_EQ(p.scan_keys, defaults.scan_keys);
  // An explicit empty list means "no built-in detectors".
  EXPECT_FALSE((*config)->masking_profiles[1].all_builtin_detectors);
  EXPECT_EQ((*config)->maskers.size(), 2u);

  auto none = Load("");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE((*none)->masking_profiles.empty());
  EXPECT_TRUE((*none)->maskers.empty());
}

struct ErrorCase {
  const char* name;
  std::string tail;      // appended to kConnection
  std::string expected;  // a substring of the error report
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

class MaskingProfileErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(MaskingProfileErrors, AreReportedAtTheirKey) {
  EXPECT_THAT(ErrorOf(GetParam().tail), HasSubstr(GetParam().expected));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MaskingProfileErrors,
    ::testing::Values(
        ErrorCase{"UnknownDetector", "masking_profiles: [{name: p, detectors: [email, emial]}]\n",
                  "t.yaml:5:49: masking_profiles[0].detectors[1]: unknown detector \"emial\"; "
                  "the built-in detectors are email, phone"},
        ErrorCase{"BadDefaultStrategyKind",
                  "masking_profiles: [{name: p, default_strategy: {kind: shred}}]\n",
                  "masking_profiles[0].default_strategy.kind: expected one of "
                  "redact|pseudonymize|partial|hash, got \"shred\""},
        ErrorCase{"BadStrategyKind",
                  "masking_profiles: [{name: p, strategies: {EMAIL: {kind: blur}}}]\n",
                  "masking_profiles[0].strategies.EMAIL.kind: expected one of "
                  "redact|pseudonymize|partial|hash, got \"blur\""},
        ErrorCase{"StrategyWithoutKind",
                  "masking_profiles: [{name: p, strategies: {CARD: {keep_last: 4}}}]\n",
                  "masking_profiles[0].strategies.CARD.kind: missing required key"},
        ErrorCase{"LowerCaseEntity",
                  "masking_profiles: [{name: p, strategies: {email: {kind: redact}}}]\n",
                  "masking_profiles[0].strategies: expected an entity name of 1 to 64 characters "
                  "A-Z, 0-9 and '_' (like EMAIL), got \"email\""},
        ErrorCase{"StrategiesNotAMap", "masking_profiles: [{name: p, strategies: [EMAIL]}]\n",
                  "masking_profiles[0].strategies: expected a map of entity names to "
                  "strategies, got a list"},
        ErrorCase{"KeepLastWithoutPartial",
                  "masking_profiles: [{name: p, default_strategy: {kind: hash, keep_last: 2}}]\n",
                  "masking_profiles[0].default_strategy.keep_last: applies only to kind: partial"},
        ErrorCase{"KeepLastOutOfRange",
                  "masking_profiles: [{name: p, strategies: {CARD: {kind: partial, "
                  "keep_last: 65}}}]\n",
                  "masking_profiles[0].strategies.CARD.keep_last: expected an integer from 0 to "
                  "64, got \"65\""},
        ErrorCase{"PseudonymizeWithoutKey",
                  "masking_profiles:\n  - name: p\n    strategies:\n"
                  "      EMAIL: {kind: pseudonymize}\n",
                  "t.yaml:8:21: masking_profiles[0].strategies.EMAIL.kind: pseudonymize needs "
                  "pseudonym_key_file or pseudonym_key_env"},
        ErrorCase{"DefaultPseudonymizeWithoutKey",
                  "masking_profiles: [{name: p, default_strategy: {kind: pseudonymize}}]\n",
                  "masking_profiles[0].default_strategy.kind: pseudonymize needs "
                  "pseudonym_key_file or pseudonym_key_env"},
        ErrorCase{"KeyFileMissing",
                  "masking_profiles: [{name: p, pseudonym_key_file: /nonexistent/tg.key}]\n",
                  "masking_profiles[0].pseudonym_key_file: cannot read \"/nonexistent/tg.key\""},
        ErrorCase{"KeyEnvNotSet",
                  "masking_profiles: [{name: p, pseudonym_key_env: TG_MASKING_TEST_UNSET}]\n",
                  "masking_profiles[0].pseudonym_key_env: environment variable "
                  "TG_MASKING_TEST_UNSET is not set"},
        ErrorCase{"BadRegex",
                  "masking_profiles:\n  - name: p\n    custom_detectors:\n"
                  "      - {name: emp, entity: EMPLOYEE_ID, regex: 'EMP-(\\d{6}'}\n",
                  "t.yaml:6:5: masking_profiles[0]: masking profile \"p\" does not compile: "
                  "detector 'emp': Hyperscan rejected the pattern"},
        ErrorCase{"BackReference",
                  "masking_profiles: [{name: p, custom_detectors: [{name: rep, entity: REP, "
                  "regex: '(ab)\\1'}]}]\n",
                  "masking profile \"p\" does not compile: detector 'rep': Hyperscan rejected"},
        ErrorCase{"RegexAndDictionary",
                  "masking_profiles: [{name: p, custom_detectors: [{name: x, entity: X, "
                  "regex: 'a+', dictionary: [a]}]}]\n",
                  "masking_profiles[0].custom_detectors[0].dictionary: set only one of regex "
                  "and dictionary"},
        ErrorCase{"NeitherRegexNorDictionary",
                  "masking_profiles: [{name: p, custom_detectors: [{name: x, entity: X}]}]\n",
                  "masking_profiles[0].custom_detectors[0]: needs regex or dictionary"},
        ErrorCase{"EmptyDictionary",
                  "masking_profiles: [{name: p, custom_detectors: [{name: x, entity: X, "
                  "dictionary: []}]}]\n",
                  "masking_profiles[0].custom_detectors[0].dictionary: needs at least one term"},
        ErrorCase{"UnknownValidator",
                  "masking_profiles: [{name: p, custom_detectors: [{name: x, entity: X, "
                  "regex: 'a+', validator: crc}]}]\n",
                  "masking_profiles[0].custom_detectors[0].validator: expected \"\" (none), luhn, "
                  "mod97 or entropy, got \"crc\""},
        ErrorCase{"DetectorNamedLikeABuiltin",
                  "masking_profiles: [{name: p, custom_detectors: [{name: email, entity: X, "
                  "regex: 'a+'}]}]\n",
                  "masking_profiles[0].custom_detectors[0].name: \"email\" is the name of a "
                  "built-in detector"},
        ErrorCase{"DuplicateDetectorName",
                  "masking_profiles: [{name: p, custom_detectors: [{name: x, entity: X, "
                  "regex: 'a+'}, {name: x, entity: Y, regex: 'b+'}]}]\n",
                  "masking_profiles[0].custom_detectors[1].name: duplicate detector name \"x\""},
        ErrorCase{"MinScoreZero", "masking_profiles: [{name: p, min_score: 0}]\n",
                  "masking_profiles[0].min_score: expected a decimal above 0 up to 1 like 0.5, "
                  "got \"0\""},
        ErrorCase{"ContextBoostAboveOne", "masking_profiles: [{name: p, context_boost: 1.5}]\n",
                  "masking_profiles[0].context_boost: expected a decimal from 0 up to 1 like "
                  "0.5, got \"1.5\""},
        ErrorCase{"HexCharsOutOfRange", "masking_profiles: [{name: p, pseudonym_hex_chars: 2}]\n",
                  "masking_profiles[0].pseudonym_hex_chars: expected an integer from 4 to 32"},
        ErrorCase{"FieldRuleWithoutTarget",
                  "masking_profiles: [{name: p, field_rules: [{action: keep}]}]\n",
                  "masking_profiles[0].field_rules[0]: needs column or path"},
        ErrorCase{"FieldRuleBadAction",
                  "masking_profiles: [{name: p, field_rules: [{column: c, action: drop}]}]\n",
                  "masking_profiles[0].field_rules[0].action: expected one of keep|mask|scan, "
                  "got \"drop\""},
        ErrorCase{"EntityWithoutMask",
                  "masking_profiles: [{name: p, field_rules: [{column: c, action: keep, "
                  "entity: EMAIL}]}]\n",
                  "masking_profiles[0].field_rules[0].entity: applies only to action: mask"},
        ErrorCase{"BadJsonPath",
                  "masking_profiles: [{name: p, field_rules: [{path: '$..', action: keep}]}]\n",
                  "masking_profiles[0]: masking profile \"p\" does not compile: "},
        ErrorCase{"StrategyForUnknownEntity",
                  "masking_profiles: [{name: p, detectors: [email], strategies: "
                  "{CARD: {kind: redact}}}]\n",
                  "does not compile: strategy for unknown entity 'CARD' (known: EMAIL"},
        ErrorCase{"UnknownKey", "masking_profiles: [{name: p, min_scor: 0.5}]\n",
                  "masking_profiles[0]: unknown key \"min_scor\" (did you mean \"min_score\"?)"},
        ErrorCase{"NotAList", "masking_profiles: {name: p}\n",
                  "t.yaml:5:19: masking_profiles: expected a list of profiles, got a map"},
        ErrorCase{"MissingName", "masking_profiles: [{min_score: 0.5}]\n",
                  "masking_profiles[0].name: missing required key"},
        ErrorCase{"DuplicateName", "masking_profiles:\n  - name: p\n  - name: q\n  - name: p\n",
                  "t.yaml:8:11: masking_profiles[2].name: duplicate masking profile name \"p\" "
                  "(also masking_profiles[0])"},
        ErrorCase{"UnknownProfileInRule",
                  "masking_profiles: [{name: default}]\npolicy:\n  rules:\n"
                  "    - {name: r, masking_profile: defualt}\n",
                  "t.yaml:8:34: policy.rules[0].masking_profile: no masking profile is named "
                  "\"defualt\""},
        ErrorCase{"ProfileInRuleWithoutAnyProfiles",
                  "policy: {rules: [{name: r, masking_profile: default}]}\n",
                  "policy.rules[0].masking_profile: no masking profile is named \"default\" "
                  "(masking_profiles defines none)"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return std::string(info.param.name); });

TEST(MaskingProfiles, AProfileWithErrorsIsNotAlsoReportedAsNotCompiling) {
  std::string error = ErrorOf("masking_profiles: [{name: p, detectors: [nope]}]\n");
  EXPECT_THAT(error, HasSubstr("unknown detector \"nope\""));
  EXPECT_THAT(error, Not(HasSubstr("does not compile")));
}

TEST(MaskingProfiles, ShortKeyIsRefusedByTheEngineAndNeverQuoted) {
  // 15 bytes after the newline is stripped: Masker::Create wants 16.
  const std::string kFileSecret = "Fs-3c0a9e7b5d1f";
  const std::filesystem::path key = WriteTempFile("short.key", kFileSecret + "\n");
  std::string error = ErrorOf(
      absl::StrCat("masking_profiles:\n  - name: p\n    default_strategy: {kind: pseudonymize}\n"
                   "    pseudonym_key_file: ",
                   key.string(), "\n"));
  EXPECT_THAT(error, HasSubstr("t.yaml:6:5: masking_profiles[0]: masking profile \"p\" does not "
                               "compile: pseudonymize needs a pseudonym_key of at least 16 bytes"));
  EXPECT_THAT(error, Not(HasSubstr(kFileSecret)));

  const char* const kEnvSecret = "Es-short-7d2";
  ::setenv("TG_MASKING_TEST_KEY", kEnvSecret, 1);
  error = ErrorOf(
      "masking_profiles: [{name: p, strategies: {EMAIL: {kind: pseudonymize}}, "
      "pseudonym_key_env: TG_MASKING_TEST_KEY}]\n");
  ::unsetenv("TG_MASKING_TEST_KEY");
  EXPECT_THAT(error, HasSubstr("pseudonymize needs a pseudonym_key of at least 16 bytes"));
  EXPECT_THAT(error, Not(HasSubstr(kEnvSecret)));
}

TEST(MaskingProfiles, KeySecretsNeverAppearInErrors) {
  const char* const kSecret = "Ks-1f2e3d4c5b6a7988-masking";
  ::setenv("TG_MASKING_TEST_KEY", kSecret, 1);
  const std::filesystem::path key = WriteTempFile("k.key", kSecret);
  // Errors all around the loaded key: both sources, a bad regex, an unknown rule reference.
  std::string error =
      ErrorOf(absl::StrCat("masking_profiles:\n"
                           "  - name: p\n"
                           "    strategies: {EMAIL: {kind: pseudonymize}}\n"
                           "    pseudonym_key_env: TG_MASKING_TEST_KEY\n"
                           "    pseudonym_key_file: ",
                           key.string(),
                           "\n"
                           "  - name: q\n"
                           "    strategies: {EMAIL: {kind: pseudonymize}}\n"
                           "    pseudonym_key_env: TG_MASKING_TEST_KEY\n"
                           "    custom_detectors: [{name: x, entity: X, regex: '(('}]\n"
                           "policy: {rules: [{name: r, masking_profile: nope}]}\n"));
  auto good = Load(
      "masking_profiles: [{name: p, strategies: {EMAIL: {kind: pseudonymize}}, "
      "pseudonym_key_env: TG_MASKING_TEST_KEY}]\n");
  ::unsetenv("TG_MASKING_TEST_KEY");
  EXPECT_THAT(error, HasSubstr("masking_profiles[0].pseudonym_key_env: set only one of "
                               "pseudonym_key_file and pseudonym_key_env"));
  EXPECT_THAT(error, HasSubstr("masking profile \"q\" does not compile"));
  EXPECT_THAT(error, HasSubstr("policy.rules[0].masking_profile: no masking profile is named"));
  EXPECT_THAT(error, Not(HasSubstr(kSecret)));
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ((*good)->masking_profiles[0].pseudonym_key, kSecret);
}

TEST(MaskingProfiles, AreReloadable) {
  auto before = Load(R"(masking_profiles: [{name: default}]
policy: {rules: [{name: r, masking_profile: default}]}
)");
  auto after = Load(R"(masking_profiles:
  - name: default
    detectors: [email]
    strategies: {EMAIL: {kind: hash}}
  - name: strict
    min_score: 0.3
policy: {rules: [{name: r, masking_profile: strict}]}
)");
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_THAT(RestartRequiredChanges(**before, **after), IsEmpty());
  EXPECT_THAT(RestartRequiredChanges(**after, **before), IsEmpty());
}

TEST(Scalars, Fractions) {
  using internal::ParseFraction;
  EXPECT_EQ(*ParseFraction("0", false), 0.0);
  EXPECT_EQ(*ParseFraction("1", true), 1.0);
  EXPECT_EQ(*ParseFraction("0.35", false), 0.35);
  EXPECT_EQ(*ParseFraction("1.000", false), 1.0);
  for (const char* bad : {"", "-0.1", "+0.5", ".5", "1.", "1.01", "2", "0.5x", "5e-1", "nan", "inf",
                          "0,5", " 0.5", "0x1"}) {
    EXPECT_FALSE(ParseFraction(bad, false).ok()) << bad;
  }
  EXPECT_FALSE(ParseFraction("0", true).ok());
  EXPECT_FALSE(ParseFraction("0.000", true).ok());
  EXPECT_THAT(ParseFraction("2", false).status().message(),
              HasSubstr("expected a decimal from 0 up to 1 like 0.5, got \"2\""));
}

}  // namespace
}  // namespace tracegate::config
