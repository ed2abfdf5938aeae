#pragma once
// A profile compiled for scanning: entity and detector tables, the Hyperscan databases,
// field rules as path programs. Immutable after Masker::Create.

#include <hs/hs.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "masking/class_scanner.h"
#include "masking/detectors.h"
#include "masking/json_path.h"
#include "masking/profile.h"

namespace tracegate::masking {

inline constexpr uint32_t kUnbounded = UINT32_MAX;

enum class Check : uint8_t { kNone, kLuhn, kMod97, kEntropy };

struct DetectorDef {
  std::string name;
  uint16_t entity = 0;
  float score = 0;
  std::vector<std::string> context;  // lower case
  int builtin = -1;                  // a Builtin, or -1 for a custom detector
  Check check = Check::kNone;
};

struct PatternDef {  // one per Hyperscan expression id
  uint16_t detector = 0;
  LocateKind locate = LocateKind::kSom;
  uint32_t fixed_len = 0;
  uint32_t max_width = kUnbounded;
  float score = 0;  // the detector's score unless set
};

struct CompiledRule {
  std::string column;  // lower case; empty: any
  PathProgram path;
  // `$..name`: matches exactly the members called `name`, whatever the state, so the walker
  // compares names instead of running the program (the default keep-list is all such).
  bool simple_descendant = false;
  std::string descendant_name;
  int slot = -1;  // index among the non-simple rules' states
  FieldAction action = FieldAction::kScan;
  uint16_t entity = 0;
  bool only_if_opaque = false;
};

struct HsDatabaseFree {
  void operator()(hs_database_t* db) const { hs_free_database(db); }
};
using HsDatabase = std::unique_ptr<hs_database_t, HsDatabaseFree>;

class CompiledProfile {
 public:
  Profile profile;  // scalars; lists are compiled below

  std::vector<std::string> entity_names;
  std::vector<Strategy> entity_strategy;  // by entity id
  std::vector<DetectorDef> detectors;
  std::array<int, kBuiltinCount> builtin_detector{};  // detector index, -1 if disabled
  std::vector<PatternDef> patterns;                   // by Hyperscan id
  HsDatabase detect_db;                               // all patterns, end offsets only
  HsDatabase som_db;  // custom regexes again with start of match (same ids)
  ClassConfig classes;
  std::vector<CompiledRule> rules;
  size_t rule_slots = 0;  // rules that need NFA state
  bool any_pseudonymize = false;
  // Strings shorter than this cannot hold any detector's match and are not scanned.
  uint32_t min_scan_len = 1;

  int DetectorOf(Builtin b) const { return builtin_detector[static_cast<size_t>(b)]; }
  bool Enabled(Builtin b) const { return DetectorOf(b) >= 0; }
  int EntityId(std::string_view name) const;
};

}  // namespace tracegate::masking
