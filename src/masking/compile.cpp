// Masker::Create: profile → CompiledProfile (tables, Hyperscan databases, path programs).
#include <algorithm>
#include <cstdlib>
#include <set>

#include "common/status.h"
#include "common/strings.h"
#include "masking/compiled_profile.h"
#include "masking/masker.h"
#include "masking/validators.h"

namespace tracegate::masking {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = ToLower(c);
  }
  return out;
}

// A dictionary term as a Hyperscan expression matching exactly its bytes.
std::string EscapeLiteral(std::string_view term) {
  std::string out;
  for (char c : term) {
    if (IsAlnum(c)) {
      out += c;
    } else {
      out += Cat("\\x", fmt::format("{:02x}", static_cast<unsigned char>(c)));
    }
  }
  return out;
}

class Compiler {
 public:
  explicit Compiler(const Profile& p) : p_(p), c_(std::make_unique<CompiledProfile>()) {}

  absl::StatusOr<std::unique_ptr<CompiledProfile>> Run() {
    TG_RETURN_IF_ERROR(CheckScalars());
    c_->profile = p_;
    c_->builtin_detector.fill(-1);
    TG_RETURN_IF_ERROR(AddBuiltins());
    TG_RETURN_IF_ERROR(AddCustom());
    TG_RETURN_IF_ERROR(AddRules());
    TG_RETURN_IF_ERROR(AssignStrategies());
    TG_RETURN_IF_ERROR(CompileDatabases());
    return std::move(c_);
  }

 private:
  absl::Status CheckScalars() {
    if (!(p_.min_score > 0 && p_.min_score <= 1.5)) {
      return absl::InvalidArgumentError(Cat("min_score ", p_.min_score, " is not in (0, 1.5]"));
    }
    if (p_.context_window < 0 || p_.context_window > 1024) {
      return absl::InvalidArgumentError("context_window must be in [0, 1024]");
    }
    if (p_.max_json_depth < 0 || p_.max_json_depth > 16) {
      return absl::InvalidArgumentError("max_json_depth must be in [0, 16]");
    }
    if (p_.pseudonym_hex_chars < 4 || p_.pseudonym_hex_chars > 32) {
      return absl::InvalidArgumentError("pseudonym_hex_chars must be in [4, 32]");
    }
    return absl::OkStatus();
  }

  uint16_t Entity(std::string_view name) {
    int id = c_->EntityId(name);
    if (id >= 0) {
      return static_cast<uint16_t>(id);
    }
    c_->entity_names.emplace_back(name);
    return static_cast<uint16_t>(c_->entity_names.size() - 1);
  }

  absl::Status AddBuiltins() {
    std::set<std::string, std::less<>> wanted;
    if (p_.all_builtin_detectors) {
      wanted.insert(BuiltinDetectorNames().begin(), BuiltinDetectorNames().end());
    } else {
      for (const std::string& name : p_.detectors) {
        if (std::find(BuiltinDetectorNames().begin(), BuiltinDetectorNames().end(), name) ==
            BuiltinDetectorNames().end()) {
          return absl::InvalidArgumentError(Cat("unknown detector '", name, "'"));
        }
        wanted.insert(name);
      }
    }
    for (int i = 0; i < kBuiltinCount; ++i) {
      const BuiltinInfo& info = GetBuiltin(static_cast<Builtin>(i));
      if (!wanted.contains(info.name)) {
        continue;
      }
      DetectorDef d;
      d.name = std::string(info.name);
      d.entity = Entity(info.entity);
      d.score = info.score;
      d.builtin = i;
      for (std::string_view w : info.context) {
        d.context.emplace_back(w);
      }
      c_->builtin_detector[i] = static_cast<int>(c_->detectors.size());
      c_->detectors.push_back(std::move(d));
    }
    ClassConfig& k = c_->classes;
    k.card = c_->Enabled(Builtin::kCard);
    k.phone = c_->Enabled(Builtin::kPhone);
    k.ssn = c_->Enabled(Builtin::kSsn);
    k.ipv4 = c_->Enabled(Builtin::kIpv4);
    k.ipv6 = c_->Enabled(Builtin::kIpv6);
    k.mac = c_->Enabled(Builtin::kMac);
    k.iban = c_->Enabled(Builtin::kIban);
    for (const BuiltinPattern& bp : BuiltinPatterns()) {
      int det = c_->DetectorOf(bp.detector);
      if (det < 0) {
        continue;
      }
      exprs_.emplace_back(bp.regex);
      flags_.push_back(bp.flags);
      float score = bp.score > 0 ? bp.score : c_->detectors[det].score;
      c_->patterns.push_back({static_cast<uint16_t>(det), bp.locate, 0, kUnbounded, score});
    }
    return absl::OkStatus();
  }

  absl::Status AddCustom() {
    for (const CustomDetector& cd : p_.custom_detectors) {
      if (cd.name.empty() || cd.entity.empty()) {
        return absl::InvalidArgumentError("custom detector needs a name and an entity");
      }
      for (const DetectorDef& d : c_->detectors) {
        if (d.name == cd.name) {
          return absl::InvalidArgumentError(Cat("detector '", cd.name, "' defined twice"));
        }
      }
      if (cd.regex.empty() == cd.dictionary.empty()) {
        return absl::InvalidArgumentError(
            Cat("custom detector '", cd.name, "': exactly one of regex and dictionary"));
      }
      DetectorDef d;
      d.name = cd.name;
      d.entity = Entity(cd.entity);
      d.score = static_cast<float>(cd.score);
      for (const std::string& w : cd.context) {
        d.context.push_back(Lower(w));
      }
      if (cd.validator == "luhn") {
        d.check = Check::kLuhn;
      } else if (cd.validator == "mod97") {
        d.check = Check::kMod97;
      } else if (cd.validator == "entropy") {
        d.check = Check::kEntropy;
      } else if (!cd.validator.empty()) {
        return absl::InvalidArgumentError(
            Cat("custom detector '", cd.name, "': unknown validator '", cd.validator, "'"));
      }
      uint16_t det = static_cast<uint16_t>(c_->detectors.size());
      c_->detectors.push_back(std::move(d));
      unsigned flags = cd.case_insensitive ? HS_FLAG_CASELESS : 0;
      if (!cd.regex.empty()) {
        som_ids_.push_back(static_cast<unsigned>(c_->patterns.size()));
        exprs_.push_back(cd.regex);
        flags_.push_back(flags);
        c_->patterns.push_back({det, LocateKind::kSom, 0, kUnbounded, c_->detectors[det].score});
        continue;
      }
      for (const std::string& term : cd.dictionary) {
        if (term.empty() || term.size() > 256) {
          return absl::InvalidArgumentError(
              Cat("custom detector '", cd.name, "': dictionary terms must be 1..256 bytes"));
        }
        exprs_.push_back(EscapeLiteral(term));
        flags_.push_back(flags);
        c_->patterns.push_back({det, LocateKind::kFixed, static_cast<uint32_t>(term.size()),
                                kUnbounded, c_->detectors[det].score});
      }
    }
    return absl::OkStatus();
  }

  absl::Status AddRules() {
    std::vector<FieldRule> rules = p_.field_rules;
    if (p_.default_keep_list) {
      for (FieldRule& r : DefaultKeepList()) {
        rules.push_back(std::move(r));
      }
    }
    for (const FieldRule& r : rules) {
      CompiledRule cr;
      cr.column = Lower(r.column);
      auto path = PathProgram::Parse(r.path.empty() ? "$" : r.path);
      if (!path.ok()) {
        return path.status();
      }
      cr.path = *std::move(path);
      const auto& steps = cr.path.steps();
      if (steps.size() == 1 && steps[0].descendant && steps[0].kind == PathStep::Kind::kName) {
        cr.simple_descendant = true;
        cr.descendant_name = steps[0].name;
      } else {
        cr.slot = static_cast<int>(c_->rule_slots++);
      }
      cr.action = r.action;
      cr.only_if_opaque = r.only_if_opaque && r.action == FieldAction::kKeep;
      if (r.action == FieldAction::kMask) {
        if (r.entity.empty()) {
          return absl::InvalidArgumentError(Cat("field rule '", r.path, "': mask needs an entity"));
        }
        cr.entity = Entity(r.entity);
      }
      c_->rules.push_back(std::move(cr));
    }
    return absl::OkStatus();
  }

  absl::Status AssignStrategies() {
    for (const auto& [name, strategy] : p_.strategies) {
      if (c_->EntityId(name) < 0) {
        std::string known;
        for (const std::string& e : c_->entity_names) {
          known += known.empty() ? e : Cat(", ", e);
        }
        return absl::InvalidArgumentError(
            Cat("strategy for unknown entity '", name, "' (known: ", known, ")"));
      }
    }
    for (const std::string& name : c_->entity_names) {
      auto it = p_.strategies.find(name);
      Strategy s = it == p_.strategies.end() ? p_.default_strategy : it->second;
      if (s.keep_last < 0 || s.keep_last > 64) {
        return absl::InvalidArgumentError(Cat("entity ", name, ": keep_last must be in [0, 64]"));
      }
      c_->any_pseudonymize |= s.kind == StrategyKind::kPseudonymize;
      c_->entity_strategy.push_back(s);
    }
    if (c_->any_pseudonymize && p_.pseudonym_key.size() < 16) {
      return absl::InvalidArgumentError("pseudonymize needs a pseudonym_key of at least 16 bytes");
    }
    return absl::OkStatus();
  }

  absl::Status CompileOne(const std::vector<unsigned>& ids, bool som, HsDatabase* out) {
    std::vector<const char*> exprs;
    std::vector<unsigned> flags;
    for (unsigned id : ids) {
      exprs.push_back(exprs_[id].c_str());
      flags.push_back(flags_[id] | (som ? HS_FLAG_SOM_LEFTMOST : 0));
    }
    hs_database_t* db = nullptr;
    hs_compile_error_t* err = nullptr;
    if (hs_compile_multi(exprs.data(), flags.data(), ids.data(),
                         static_cast<unsigned>(exprs.size()), HS_MODE_BLOCK, nullptr, &db,
                         &err) != HS_SUCCESS) {
      std::string what = err != nullptr ? err->message : "unknown error";
      int expr = err != nullptr ? err->expression : -1;
      hs_free_compile_error(err);
      std::string who = "profile";
      if (expr >= 0 && static_cast<size_t>(expr) < ids.size()) {
        who = Cat("detector '", c_->detectors[c_->patterns[ids[expr]].detector].name, "'");
      }
      return absl::InvalidArgumentError(
          Cat(who, ": Hyperscan rejected the pattern", som ? " (start-of-match)" : "", ": ", what));
    }
    out->reset(db);
    return absl::OkStatus();
  }

  absl::Status CompileDatabases() {
    uint32_t min_len = UINT32_MAX;
    const ClassConfig& k = c_->classes;
    if (k.ipv6) {
      min_len = 4;
    } else if (k.ipv4 || k.phone) {
      min_len = 7;
    } else if (k.ssn) {
      min_len = 9;
    } else if (k.card) {
      min_len = 13;
    } else if (k.iban) {
      min_len = 15;
    } else if (k.mac) {
      min_len = 17;
    }
    std::vector<unsigned> ids;
    for (size_t i = 0; i < c_->patterns.size(); ++i) {
      ids.push_back(static_cast<unsigned>(i));
      hs_expr_info_t* info = nullptr;
      hs_compile_error_t* err = nullptr;
      if (hs_expression_info(exprs_[i].c_str(), flags_[i], &info, &err) != HS_SUCCESS) {
        std::string what = err != nullptr ? err->message : "unknown error";
        hs_free_compile_error(err);
        return absl::InvalidArgumentError(Cat("detector '",
                                              c_->detectors[c_->patterns[i].detector].name,
                                              "': Hyperscan rejected the pattern: ", what));
      }
      c_->patterns[i].max_width = info->max_width == UINT_MAX ? kUnbounded : info->max_width;
      min_len = std::min<uint32_t>(min_len, std::max(1u, info->min_width));
      free(info);
    }
    // A secret-named field's value is checked whole (SecretValuePlausible needs >= 6).
    if (c_->Enabled(Builtin::kGenericSecret)) {
      min_len = std::min<uint32_t>(min_len, 6);
    }
    c_->min_scan_len = min_len == UINT32_MAX ? 1 : min_len;
    if (!ids.empty()) {
      TG_RETURN_IF_ERROR(CompileOne(ids, false, &c_->detect_db));
    }
    if (!som_ids_.empty()) {
      TG_RETURN_IF_ERROR(CompileOne(som_ids_, true, &c_->som_db));
    }
    return absl::OkStatus();
  }

  const Profile& p_;
  std::unique_ptr<CompiledProfile> c_;
  std::vector<std::string> exprs_;
  std::vector<unsigned> flags_;
  std::vector<unsigned> som_ids_;
};

}  // namespace

int CompiledProfile::EntityId(std::string_view name) const {
  for (size_t i = 0; i < entity_names.size(); ++i) {
    if (entity_names[i] == name) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

const std::vector<std::string>& BuiltinDetectorNames() {
  static const std::vector<std::string>* names = [] {
    auto* v = new std::vector<std::string>;
    for (int i = 0; i < kBuiltinCount; ++i) {
      v->emplace_back(GetBuiltin(static_cast<Builtin>(i)).name);
    }
    return v;
  }();
  return *names;
}

std::vector<FieldRule> DefaultKeepList() {
  std::vector<FieldRule> rules;
  for (const char* path : {"$..signature", "$..thought_signature", "$..thoughtSignature",
                           "$..encrypted_content", "$..data"}) {
    FieldRule r;
    r.path = path;
    r.action = FieldAction::kKeep;
    r.only_if_opaque = true;
    rules.push_back(std::move(r));
  }
  return rules;
}

Masker::Masker(std::unique_ptr<CompiledProfile> compiled) : compiled_(std::move(compiled)) {}
Masker::~Masker() = default;

absl::StatusOr<std::shared_ptr<const Masker>> Masker::Create(const Profile& profile) {
  TG_ASSIGN_OR_RETURN(std::unique_ptr<CompiledProfile> compiled, Compiler(profile).Run());
  return std::shared_ptr<const Masker>(new Masker(std::move(compiled)));
}

}  // namespace tracegate::masking
