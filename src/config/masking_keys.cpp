// Keys of masking_profiles[]: one YAML map per masking::Profile, key for member (see
// src/masking/profile.h for what each does, tracegate.example.yaml for the operator's view).
// Every key is reloadable. Defaults are the engine's own (a default-constructed Profile).

#include "config/masking_keys.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config/access_keys.h"
#include "config/scalars.h"
#include "masking/masker.h"

namespace tracegate::config::internal {
namespace {

using masking::CustomDetector;
using masking::FieldAction;
using masking::FieldRule;
using masking::Profile;
using masking::Strategy;
using masking::StrategyKind;

constexpr size_t kMaxProfiles = 64;  // each costs a Hyperscan compile at every load
constexpr size_t kMaxEntityNameBytes = 64;
constexpr size_t kMaxStrategies = 256;
constexpr size_t kMaxFieldRules = 1000;
constexpr size_t kMaxCustomDetectors = 256;
constexpr size_t kMaxDictionaryTerms = 100000;
constexpr size_t kMaxDictionaryTermBytes = 256;  // as Masker::Create checks
constexpr size_t kMaxRegexBytes = 4096;
constexpr size_t kMaxContextWords = 256;

// Whether `key` of `map` was written (even with an invalid value).
bool Present(const Item& map, absl::string_view key, const Context& ctx) {
  return !ctx.MarkOf(ChildPath(map.path, key)).is_null();
}

void ErrorAt(const Item& map, absl::string_view key, absl::string_view reason, Context& ctx) {
  const std::string path = ChildPath(map.path, key);
  const YAML::Mark mark = ctx.MarkOf(path);
  ctx.Error(mark.is_null() ? map.mark : mark, path, reason);
}

absl::Status CheckEntityName(absl::string_view text) {
  bool valid = !text.empty() && text.size() <= kMaxEntityNameBytes;
  for (char c : text) {
    valid = valid && (absl::ascii_isupper(static_cast<unsigned char>(c)) ||
                      absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '_');
  }
  if (!valid) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected an entity name of 1 to 64 characters A-Z, 0-9 and '_' (like EMAIL), got ",
        Quote(text)));
  }
  return absl::OkStatus();
}

ScalarType<std::string> EntityName() {
  return {"an entity name like EMAIL",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (absl::Status s = CheckEntityName(text); !s.ok()) {
              return s;
            }
            return text;
          }};
}

ScalarType<std::string> BuiltinDetector() {
  return {"a built-in detector name",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            const std::vector<std::string>& known = masking::BuiltinDetectorNames();
            if (std::find(known.begin(), known.end(), text) == known.end()) {
              return absl::InvalidArgumentError(absl::StrCat("unknown detector ", Quote(text),
                                                             "; the built-in detectors are ",
                                                             absl::StrJoin(known, ", ")));
            }
            return text;
          }};
}

// Text of at most `max_bytes` without NUL bytes (Hyperscan reads patterns as C strings).
ScalarType<std::string> BoundedText(std::string what, size_t max_bytes) {
  return {what,
          [max_bytes](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (text.empty()) {
              return absl::InvalidArgumentError("must not be empty");
            }
            if (text.size() > max_bytes) {
              return absl::InvalidArgumentError(
                  absl::StrCat("is ", text.size(), " bytes, at most ", max_bytes, " are allowed"));
            }
            if (text.find('\0') != std::string::npos) {
              return absl::InvalidArgumentError("must not contain NUL bytes");
            }
            return text;
          }};
}

ScalarType<std::string> Validator() {
  return {"a validator",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (text.empty() || text == "luhn" || text == "mod97" || text == "entropy") {
              return text;
            }
            return absl::InvalidArgumentError(
                absl::StrCat("expected \"\" (none), luhn, mod97 or entropy, got ", Quote(text)));
          }};
}

// ---- strategies --------------------------------------------------------------------------

void CheckStrategy(const Item& map, Strategy& strategy, NoExtra&, Context& ctx) {
  // Without a kind (reported as missing) there is nothing to compare keep_last with.
  if (strategy.kind != StrategyKind::kPartial && Present(map, "kind", ctx) &&
      Present(map, "keep_last", ctx)) {
    ErrorAt(map, "keep_last", "applies only to kind: partial", ctx);
  }
}

const Table<Strategy>& StrategyKeys() {
  using K = Keys<Strategy>;
  static const auto* const table = new Table<Strategy>{
      .keys =
          {
              K::Required("kind", &Strategy::kind, kReloadable,
                          OneOf<StrategyKind>({{"redact", StrategyKind::kRedact},
                                               {"pseudonymize", StrategyKind::kPseudonymize},
                                               {"partial", StrategyKind::kPartial},
                                               {"hash", StrategyKind::kHash}})),
              K::Optional("keep_last", &Strategy::keep_last, Strategy().keep_last, kReloadable,
                          Count<int>(0, 64)),
          },
      .check = CheckStrategy,
  };
  return *table;
}

struct ProfileExtra {
  std::string key_file;
  std::string key_env;
};

// `strategies:` maps entity names to strategies: {EMAIL: {kind: pseudonymize}, ...}.
void ParseStrategies(const Item& item, Profile& profile, ProfileExtra&, Context& ctx) {
  profile.strategies.clear();
  if (!item.yaml.IsMap()) {
    ctx.Error(item.mark, item.path,
              absl::StrCat("expected a map of entity names to strategies, got ",
                           DescribeKind(item.yaml)));
    return;
  }
  if (item.yaml.size() > kMaxStrategies) {
    ctx.Error(item.mark, item.path,
              absl::StrCat("has ", item.yaml.size(), " entries, at most ", kMaxStrategies,
                           " are allowed"));
    return;
  }
  for (const auto& entry : item.yaml) {
    const YAML::Node& key = entry.first;
    if (!ctx.CountKey(key.Mark())) {
      return;
    }
    if (!key.IsScalar()) {
      ctx.Error(key.Mark(), item.path,
                absl::StrCat("keys must be entity names, got ", DescribeKind(key)));
      continue;
    }
    const std::string& entity = key.Scalar();
    if (absl::Status s = CheckEntityName(entity); !s.ok()) {
      ctx.Error(key.Mark(), item.path, s.message());
      continue;
    }
    std::string path = ChildPath(item.path, entity);
    if (profile.strategies.contains(entity)) {
      ctx.Error(key.Mark(), item.path,
                absl::StrCat("duplicate entity ", Quote(entity), " (first set on line ",
                             ctx.MarkOf(path).line + 1, ")"));
      continue;
    }
    const YAML::Node& value = entry.second;
    Item sub{value, std::move(path), value.IsNull() ? key.Mark() : value.Mark()};
    ctx.Remember(sub.path, sub.mark);
    NoExtra none;
    ParseMap(StrategyKeys(), sub, profile.strategies[entity], none, ctx);
  }
}

// ---- field_rules[] -----------------------------------------------------------------------

void CheckFieldRule(const Item& map, FieldRule& rule, NoExtra&, Context& ctx) {
  if (!Present(map, "column", ctx) && !Present(map, "path", ctx)) {
    ctx.Error(map.mark, map.path,
              "needs column or path (a rule with neither would apply to every value)");
  }
  if (rule.action != FieldAction::kMask && Present(map, "entity", ctx)) {
    ErrorAt(map, "entity", "applies only to action: mask", ctx);
  }
  if (rule.action != FieldAction::kKeep && Present(map, "only_if_opaque", ctx)) {
    ErrorAt(map, "only_if_opaque", "applies only to action: keep", ctx);
  }
}

const Table<FieldRule>& FieldRuleKeys() {
  using K = Keys<FieldRule>;
  static const auto* const table = new Table<FieldRule>{
      .keys =
          {
              K::Optional("column", &FieldRule::column, "", kReloadable,
                          BoundedText("a column name", 1024)),
              K::Optional("path", &FieldRule::path, "", kReloadable,
                          BoundedText("a JSONPath like $.metadata.user.email", 1024)),
              K::Required("action", &FieldRule::action, kReloadable,
                          OneOf<FieldAction>({{"keep", FieldAction::kKeep},
                                              {"mask", FieldAction::kMask},
                                              {"scan", FieldAction::kScan}})),
              K::Optional("entity", &FieldRule::entity, FieldRule().entity, kReloadable,
                          EntityName()),
              K::Optional("only_if_opaque", &FieldRule::only_if_opaque, false, kReloadable,
                          Boolean()),
          },
      .check = CheckFieldRule,
  };
  return *table;
}

// ---- custom_detectors[] ------------------------------------------------------------------

void CheckCustomDetector(const Item& map, CustomDetector& detector, NoExtra&, Context& ctx) {
  const bool regex = Present(map, "regex", ctx);
  const bool dictionary = Present(map, "dictionary", ctx);
  if (regex && dictionary) {
    ErrorAt(map, "dictionary", "set only one of regex and dictionary", ctx);
  } else if (!regex && !dictionary) {
    ctx.Error(map.mark, map.path, "needs regex or dictionary");
  } else if (dictionary && detector.dictionary.empty()) {
    ErrorAt(map, "dictionary", "needs at least one term", ctx);
  }
}

const Table<CustomDetector>& CustomDetectorKeys() {
  using K = Keys<CustomDetector>;
  static const CustomDetector defaults;
  static const auto* const table = new Table<CustomDetector>{
      .keys =
          {
              K::Required("name", &CustomDetector::name, kReloadable, ConnectionName()),
              K::Required("entity", &CustomDetector::entity, kReloadable, EntityName()),
              K::Optional("regex", &CustomDetector::regex, "", kReloadable,
                          BoundedText("a regular expression", kMaxRegexBytes)),
              K::Strings("dictionary", &CustomDetector::dictionary, {}, kReloadable,
                         BoundedText("a term", kMaxDictionaryTermBytes), kMaxDictionaryTerms),
              K::Optional("case_insensitive", &CustomDetector::case_insensitive, false, kReloadable,
                          Boolean()),
              K::Optional("score", &CustomDetector::score, defaults.score, kReloadable,
                          Fraction(/*exclude_zero=*/true)),
              K::Strings("context", &CustomDetector::context, {}, kReloadable,
                         BoundedText("a word", 256), kMaxContextWords),
              K::Optional("validator", &CustomDetector::validator, "", kReloadable, Validator()),
          },
      .check = CheckCustomDetector,
  };
  return *table;
}

// ---- masking_profiles[] ------------------------------------------------------------------

bool UsesPseudonymize(const Profile& profile, std::string* kind_key) {
  if (profile.default_strategy.kind == StrategyKind::kPseudonymize) {
    *kind_key = "default_strategy.kind";
    return true;
  }
  for (const auto& [entity, strategy] : profile.strategies) {
    if (strategy.kind == StrategyKind::kPseudonymize) {
      *kind_key = absl::StrCat("strategies.", entity, ".kind");
      return true;
    }
  }
  return false;
}

void CheckProfile(const Item& map, Profile& profile, ProfileExtra& extra, Context& ctx) {
  // Listing detectors replaces the built-in set, even with an empty list (custom only).
  profile.all_builtin_detectors = !Present(map, "detectors", ctx);
  LoadOptionalSecret(map, "pseudonym_key", {extra.key_file, extra.key_env}, profile.pseudonym_key,
                     ctx);
  std::string kind_key;
  if (UsesPseudonymize(profile, &kind_key) && !Present(map, "pseudonym_key_file", ctx) &&
      !Present(map, "pseudonym_key_env", ctx)) {
    ErrorAt(map, kind_key,
            "pseudonymize needs pseudonym_key_file or pseudonym_key_env (an HMAC key of at "
            "least 16 bytes)",
            ctx);
  }
  const std::vector<std::string>& builtins = masking::BuiltinDetectorNames();
  std::map<std::string, std::string> first_by_name;
  for (size_t i = 0; i < profile.custom_detectors.size(); ++i) {
    const std::string& name = profile.custom_detectors[i].name;
    const std::string path = ElementPath(ChildPath(map.path, "custom_detectors"), i) + ".name";
    if (name.empty()) {
      continue;  // already reported
    }
    if (std::find(builtins.begin(), builtins.end(), name) != builtins.end()) {
      ctx.Error(ctx.MarkOf(path), path,
                absl::StrCat(Quote(name), " is the name of a built-in detector"));
      continue;
    }
    auto [it, inserted] = first_by_name.emplace(name, path);
    if (!inserted) {
      ctx.Error(ctx.MarkOf(path), path,
                absl::StrCat("duplicate detector name ", Quote(name), " (also ", it->second, ")"));
    }
  }
}

const Table<Profile, ProfileExtra>& ProfileKeys() {
  using K = Keys<Profile, ProfileExtra>;
  static const Profile defaults;
  static const auto* const table = new Table<Profile, ProfileExtra>{
      .keys =
          {
              K::Required("name", &Profile::name, kReloadable, ConnectionName()),
              K::Strings("detectors", &Profile::detectors, {}, kReloadable, BuiltinDetector(), 64),
              K::Optional("min_score", &Profile::min_score, defaults.min_score, kReloadable,
                          Fraction(/*exclude_zero=*/true)),
              K::Optional("context_boost", &Profile::context_boost, defaults.context_boost,
                          kReloadable, Fraction(/*exclude_zero=*/false)),
              K::Optional("context_window", &Profile::context_window, defaults.context_window,
                          kReloadable, Count<int>(0, 1024)),
              K::Section("default_strategy", kOptional, &Profile::default_strategy, StrategyKeys),
              K::Custom(
                  "strategies", kOptional, kReloadable, ParseStrategies,
                  [](Profile& profile, ProfileExtra&) { profile.strategies.clear(); }, nullptr),
              K::Optional("pseudonym_key_file", &ProfileExtra::key_file, "", kReloadable,
                          FilePath(true)),
              K::Optional("pseudonym_key_env", &ProfileExtra::key_env, "", kReloadable,
                          EnvVarName()),
              K::Optional("pseudonym_hex_chars", &Profile::pseudonym_hex_chars,
                          defaults.pseudonym_hex_chars, kReloadable, Count<int>(4, 32)),
              K::List("field_rules", kOptional, &Profile::field_rules, FieldRuleKeys, 0,
                      kMaxFieldRules, nullptr),
              K::Optional("default_keep_list", &Profile::default_keep_list,
                          defaults.default_keep_list, kReloadable, Boolean()),
              K::List("custom_detectors", kOptional, &Profile::custom_detectors, CustomDetectorKeys,
                      0, kMaxCustomDetectors, nullptr),
              K::Optional("max_json_depth", &Profile::max_json_depth, defaults.max_json_depth,
                          kReloadable, Count<int>(0, 16)),
              K::Optional("scan_keys", &Profile::scan_keys, defaults.scan_keys, kReloadable,
                          Boolean()),
          },
      .check = CheckProfile,
  };
  return *table;
}

}  // namespace

void ParseMaskingProfiles(const Item& item, Config& config, NoExtra&, Context& ctx) {
  config.masking_profiles.clear();
  config.maskers.clear();
  if (!item.yaml.IsSequence()) {
    ctx.Error(item.mark, item.path,
              absl::StrCat("expected a list of profiles, got ", DescribeKind(item.yaml)));
    return;
  }
  if (item.yaml.size() > kMaxProfiles) {
    ctx.Error(
        item.mark, item.path,
        absl::StrCat("has ", item.yaml.size(), " entries, at most ", kMaxProfiles, " are allowed"));
    return;
  }
  std::map<std::string, std::string> first_by_name;
  for (const YAML::Node& element : item.yaml) {
    if (ctx.exhausted()) {
      return;
    }
    Item sub{element, ElementPath(item.path, config.masking_profiles.size()),
             element.IsNull() ? item.mark : element.Mark()};
    const size_t errors_before = ctx.error_count();
    Profile& profile = config.masking_profiles.emplace_back();
    ProfileExtra extra;
    ParseMap(ProfileKeys(), sub, profile, extra, ctx);
    if (profile.name.empty()) {
      continue;  // already reported
    }
    auto [it, inserted] = first_by_name.emplace(profile.name, sub.path);
    if (!inserted) {
      const std::string path = ChildPath(sub.path, "name");
      ctx.Error(ctx.MarkOf(path), path,
                absl::StrCat("duplicate masking profile name ", Quote(profile.name), " (also ",
                             it->second, ")"));
      continue;
    }
    if (ctx.error_count() != errors_before) {
      continue;  // compiling would only repeat what is already reported
    }
    if (!ctx.secrets_required()) {
      continue;  // a tool that reads the config without its secrets masks nothing
    }
    // Hyperscan compiles here, once per profile and load. Masker::Create's reasons name
    // detectors, entities and paths, never the pseudonym key.
    absl::StatusOr<std::shared_ptr<const masking::Masker>> masker =
        masking::Masker::Create(profile);
    if (!masker.ok()) {
      ctx.Error(sub.mark, sub.path,
                absl::StrCat("masking profile ", Quote(profile.name),
                             " does not compile: ", masker.status().message()));
      continue;
    }
    config.maskers.emplace(profile.name, *std::move(masker));
  }
}

}  // namespace tracegate::config::internal
