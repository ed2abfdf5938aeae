#pragma once
// A masking profile: which detectors run, what each kind of value becomes, and which fields
// are kept, masked whole or scanned. The config module maps YAML onto it one to one (every
// member is a YAML key of the same name, enums are lower-case strings; see
// tracegate.example.yaml), and policy rules pick a profile by name:
//
//   masking_profiles:
//     - name: support
//       detectors: [email, phone, card, iban, ssn, ipv4, ipv6, mac, aws_access_key]  # absent: all
//       min_score: 0.5
//       default_strategy: {kind: redact}
//       strategies:
//         EMAIL: {kind: pseudonymize}
//         CARD: {kind: partial, keep_last: 4}
//       pseudonym_key_file: /run/secrets/pseudonym_key   # or pseudonym_key_env: VAR
//       field_rules:
//         - {path: "$.metadata.user.email", action: mask, entity: EMAIL}
//         - {path: "$..signature", action: keep}
//         - {column: notes, action: scan}
//       custom_detectors:
//         - {name: employee_id, entity: EMPLOYEE_ID, regex: 'EMP-\d{6}', score: 0.9}
//         - {name: staff, entity: PERSON, dictionary: [Jane Doe, John Smith],
//            case_insensitive: true}
//
// Person names and postal addresses cannot be found reliably by patterns: that needs a
// named-entity-recognition model, which tracegate does not ship. Use a dictionary detector
// (known names, street names) and field rules (`$..customer.name` → mask) for them.

#include <map>
#include <string>
#include <vector>

namespace tracegate::masking {

// What a detected value (or a field masked whole) is replaced with.
enum class StrategyKind {
  kRedact,        // [REDACTED:EMAIL]
  kPseudonymize,  // [EMAIL:3f9a1c2b]: HMAC-SHA256(pseudonym_key, entity, value); the same
                  // value gives the same token under one key, so analyses can still join
  kPartial,       // keeps the last `keep_last` letters/digits: **** **** **** 1111
  kHash,          // [EMAIL:sha256:9f86d081884c7d65]: unkeyed, so low-entropy values (phone
                  // numbers, SSNs) can be brute-forced; prefer pseudonymize
};

struct Strategy {
  StrategyKind kind = StrategyKind::kRedact;
  int keep_last = 4;  // kPartial only
};

enum class FieldAction {
  kScan,  // run the detectors (the default everywhere)
  kKeep,  // pass byte for byte, not scanned
  kMask,  // replace every string/number value under the field with `entity`'s strategy
};

// A rule for a column and/or a JSON path. For one value, the rule matching the innermost
// node on its path wins (a rule on `$..input.signature` beats one on `$..input`); among
// rules matching the same node, the first listed wins, and the user's rules come before
// the default keep-list. Values with no matching rule on their path are scanned.
struct FieldRule {
  // Column (or JSON document field in an HTTP body) name, compared case-insensitively;
  // empty: any column.
  std::string column;
  // JSONPath subset: `$`, `.name`, `['name']`, `[n]`, `.*`, `[*]`, `..name`, `..*`.
  // Empty: the whole column value (same as `$`).
  std::string path;
  FieldAction action = FieldAction::kScan;
  // kMask: the entity whose strategy applies and under which the values are counted.
  std::string entity = "FIELD";
  // kKeep only: the rule applies to a string only if it looks like an opaque blob
  // (base64/base64url/hex, at least 16 bytes, no spaces). Such a value is still checked
  // against the detectors as a whole: a value that is *entirely* a secret (say an
  // `sk-ant-...` key placed in a `data` field) is masked; anything that merely contains
  // a match passes byte for byte.
  bool only_if_opaque = false;
};

struct CustomDetector {
  std::string name;    // unique among detectors, e.g. "employee_id"
  std::string entity;  // e.g. "EMPLOYEE_ID", "PERSON"
  // Exactly one of `regex` (Hyperscan syntax: no back-references or look-around) and
  // `dictionary` (literal terms matched as whole words).
  std::string regex;
  std::vector<std::string> dictionary;
  bool case_insensitive = false;
  double score = 0.9;
  // Words that raise the score by Profile::context_boost when found within
  // Profile::context_window bytes before the match or in the JSON key holding it.
  std::vector<std::string> context;
  // "" (none), "luhn", "mod97" (IBAN), "entropy" (at least 3 bits per byte).
  std::string validator;
};

struct Profile {
  std::string name;  // what policy rules' masking_profile refers to
  // Built-in detectors to run (see BuiltinDetectorNames()); default: all of them.
  std::vector<std::string> detectors;
  bool all_builtin_detectors = true;  // when true, `detectors` is ignored

  // A candidate is masked when its score reaches min_score. Validated patterns score
  // 0.6–1.0; weak shapes (a bare 9-digit number as SSN, a bare 10-digit phone number)
  // score below 0.5 and need a context word.
  double min_score = 0.5;
  double context_boost = 0.35;
  int context_window = 48;

  Strategy default_strategy;
  std::map<std::string, Strategy> strategies;  // by entity name
  // Key for kPseudonymize (at least 16 bytes); required when any strategy uses it.
  std::string pseudonym_key;
  int pseudonym_hex_chars = 8;  // 4..32

  std::vector<FieldRule> field_rules;
  // Appends DefaultKeepList() after field_rules: opaque reasoning fields pass untouched.
  bool default_keep_list = true;

  std::vector<CustomDetector> custom_detectors;

  // JSON found inside a JSON string is parsed and masked field by field up to this many
  // levels; deeper, it is scanned as text.
  int max_json_depth = 4;
  // Also scan object keys. Without custom detectors only keys that could hold a built-in
  // match are scanned (a digit, '@', ':', '=', non-ASCII, or 15+ bytes).
  bool scan_keys = true;
};

// Names accepted in Profile::detectors, in a stable order.
const std::vector<std::string>& BuiltinDetectorNames();

// `$..signature`, `$..thought_signature`, `$..thoughtSignature`, `$..encrypted_content`,
// `$..data`, all kKeep with only_if_opaque.
std::vector<FieldRule> DefaultKeepList();

}  // namespace tracegate::masking
