#include "sql/gate.h"

#include <algorithm>
#include <array>
#include <initializer_list>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "common/strings.h"
#include "sql/classify.h"
#include "sql/nesting.h"
#include "sql/shape.h"

namespace tracegate::sql {

std::string_view RuleName(Rule rule) {
  switch (rule) {
    case Rule::kNone:
      return "none";
    case Rule::kSyntax:
      return "syntax";
    case Rule::kMultiStatement:
      return "multi_statement";
    case Rule::kBulkExport:
      return "bulk_export";
    case Rule::kWrite:
      return "write";
    case Rule::kDdl:
      return "ddl";
    case Rule::kRelation:
      return "relation";
    case Rule::kFunction:
      return "function";
    case Rule::kTraceScope:
      return "trace_scope";
    case Rule::kOtherTrace:
      return "other_trace";
    case Rule::kSessionState:
      return "session_state";
    case Rule::kStrict:
      return "strict";
    case Rule::kMaskingBypass:
      return "masking_bypass";
    case Rule::kUnsupported:
      return "unsupported";
    case Rule::kTooComplex:
      return "too_complex";
  }
  return "unknown";
}

std::string Verdict::ErrorMessage() const {
  return Cat("tracegate: statement blocked (", RuleName(rule), "): ", message);
}

std::string_view Verdict::SqlState() const {
  switch (rule) {
    case Rule::kSyntax:
      return "42601";
    case Rule::kTooComplex:
      return "54001";  // statement_too_complex
    default:
      return "42501";
  }
}

namespace {

// The function groups both lists below share.
constexpr std::string_view kJsonFunctions[] = {"jsonb_array_elements",
                                               "jsonb_array_elements_text",
                                               "json_array_elements",
                                               "json_array_elements_text",
                                               "jsonb_each",
                                               "jsonb_each_text",
                                               "json_each",
                                               "json_each_text",
                                               "jsonb_object_keys",
                                               "json_object_keys",
                                               "jsonb_typeof",
                                               "json_typeof",
                                               "jsonb_array_length",
                                               "json_array_length",
                                               "jsonb_extract_path",
                                               "jsonb_extract_path_text",
                                               "json_extract_path",
                                               "json_extract_path_text",
                                               "jsonb_pretty",
                                               "jsonb_strip_nulls",
                                               "json_strip_nulls",
                                               "jsonb_build_object",
                                               "json_build_object",
                                               "jsonb_build_array",
                                               "json_build_array",
                                               "to_jsonb",
                                               "to_json",
                                               "row_to_json",
                                               "jsonb_path_query",
                                               "jsonb_path_query_first",
                                               "jsonb_path_exists",
                                               "jsonb_path_match"};
constexpr std::string_view kArrayAndRowFunctions[] = {
    "array_length", "cardinality", "array_position", "unnest", "generate_series",
    "coalesce",     "nullif",      "greatest",       "least",  "pg_typeof"};
constexpr std::string_view kWindowFunctions[] = {"row_number", "rank",        "dense_rank", "lag",
                                                 "lead",       "first_value", "last_value"};
// Time: inputs are timestamps, dates and intervals (to_char's only other input is a number;
// there is no to_char(text)).
constexpr std::string_view kTimeFunctions[] = {"now",
                                               "clock_timestamp",
                                               "statement_timestamp",
                                               "transaction_timestamp",
                                               "date_trunc",
                                               "date_part",
                                               "extract",
                                               "to_char",
                                               "age",
                                               "make_interval",
                                               "justify_interval",
                                               "timezone"};
constexpr std::string_view kNumberFunctions[] = {"abs",     "round", "trunc", "floor", "ceil",
                                                 "ceiling", "sign",  "mod",   "power", "sqrt"};

std::vector<std::string>* Join(std::initializer_list<std::span<const std::string_view>> groups) {
  auto* out = new std::vector<std::string>;
  for (std::span<const std::string_view> group : groups) {
    out->insert(out->end(), group.begin(), group.end());
  }
  return out;
}

}  // namespace

const std::vector<std::string>& DefaultAllowedFunctions() {
  // aggregates that return one value
  static constexpr std::string_view kAggregates[] = {"count", "sum",      "min",     "max",
                                                     "avg",   "bool_and", "bool_or", "every"};
  static constexpr std::string_view kText[] = {"lower",
                                               "upper",
                                               "initcap",
                                               "length",
                                               "char_length",
                                               "character_length",
                                               "octet_length",
                                               "bit_length",
                                               "substr",
                                               "substring",
                                               "left",
                                               "right",
                                               "trim",
                                               "btrim",
                                               "ltrim",
                                               "rtrim",
                                               "lpad",
                                               "rpad",
                                               "replace",
                                               "position",
                                               "strpos",
                                               "split_part",
                                               "starts_with",
                                               "concat",
                                               "concat_ws",
                                               "format",
                                               "reverse",
                                               "repeat",
                                               "regexp_replace",
                                               "regexp_match",
                                               "regexp_matches",
                                               "similar_to_escape",
                                               "md5"};
  // Time functions that read text: they pick digits out of it (not masked-safe).
  static constexpr std::string_view kTextToTime[] = {"to_date", "to_timestamp", "to_number"};
  static const auto* const kDefaults =
      Join({kAggregates, kText, kNumberFunctions, kTimeFunctions, kTextToTime, kJsonFunctions,
            kArrayAndRowFunctions, kWindowFunctions});
  return *kDefaults;
}

// A masked session's responses pass the masker, which finds personal data and secrets by
// their text (an address's '@', a key's AKIA prefix, a card's digit run standing alone). A
// function that rewrites a value before it leaves the database can hide it: substr, left,
// right, split_part, regexp_match, trim with a character set and lpad/rpad cut or pad it;
// replace, translate, reverse, repeat, format, concat, concat_ws, initcap, lower and upper
// rearrange or re-case it (secret formats are case-sensitive); md5 hides it and
// confirms a guess; to_number, to_date and to_timestamp pick digits out of text; strpos,
// position and starts_with search it for a needle the client chooses. None of those is here.
// Kept, because none of them can produce a value's text in another shape:
const std::vector<std::string>& MaskedSafeFunctions() {
  // Select one of the values, or a boolean/count about them.
  static constexpr std::string_view kSelect[] = {"count",    "min",     "max",
                                                 "bool_and", "bool_or", "every"};
  // A number whole, or its sign. Not sum, avg, round, trunc, floor, ceil, mod, power, sqrt:
  // they compute a new number from a stored one (round(card, -1) is 15 digits of a card
  // that fail the Luhn check), like + - * / (refused on stored data too).
  static constexpr std::string_view kNumeric[] = {"abs", "sign"};
  // Measure a value: its length, nothing of its content.
  static constexpr std::string_view kLengths[] = {"length", "char_length", "character_length",
                                                  "octet_length", "bit_length"};
  // Time: their inputs are timestamps, dates and intervals, and stored data becomes one
  // only through a cast the gate refuses in masked sessions (the masker passes time types
  // unread). Not to_char (to_char(card, '9999999999999999V9') prints the digits shifted) nor
  // make_interval (numbers in, an unread interval out).
  // JSON: select, expand, measure or (re)build documents. A string inside JSON is only
  // escaped, and the masker decodes JSON strings (object keys too) before it scans them.
  // jsonpath can call .double() and .datetime(template) on a string: numbers and dates
  // only, the numeric gap. Arrays, rows and selectors: a value comes out whole, or an
  // index/size/type about it (array_position tells no more than `=`). Window functions:
  // positions, or another row's value whole.
  static constexpr std::string_view kTime[] = {"now",
                                               "clock_timestamp",
                                               "statement_timestamp",
                                               "transaction_timestamp",
                                               "date_trunc",
                                               "date_part",
                                               "extract",
                                               "age",
                                               "justify_interval",
                                               "timezone"};
  // generate_series is not here: a series up to a stored number tells the number by its
  // length, and one over stored timestamps computes new ones.
  static constexpr std::string_view kArraysAndRows[] = {
      "array_length", "cardinality", "array_position", "unnest",   "coalesce",
      "nullif",       "greatest",    "least",          "pg_typeof"};
  static const auto* const kSafe =
      Join({kSelect, kNumeric, kLengths, kTime, kJsonFunctions, kArraysAndRows, kWindowFunctions});
  return *kSafe;
}

namespace {

// A classification kept for a statement shape: the verdict, and which of the shape's
// literals pin a trace table (their values are checked on every use).
struct CachedVerdict {
  Verdict verdict;
  std::vector<size_t> trace_literals;  // indexes into Shape::literals
  std::string masking_hazard;          // Classification::masking_hazard
};

constexpr size_t kShards = 16;

}  // namespace

struct Gate::Impl {
  internal::Rules rules;
  size_t per_shard = 0;
  struct Shard {
    std::mutex mu;
    absl::flat_hash_map<std::string, std::shared_ptr<const CachedVerdict>> entries;
  };
  mutable std::array<Shard, kShards> shards;
};

Gate::Gate(const config::Gate& config) : config_(config), impl_(std::make_unique<Impl>()) {}
Gate::~Gate() = default;

absl::StatusOr<std::shared_ptr<const Gate>> Gate::Create(const config::Gate& config) {
  std::shared_ptr<Gate> gate(new Gate(config));
  internal::Rules& rules = gate->impl_->rules;
  rules.config = &gate->config_;
  rules.tables = config.trace_tables;
  for (const std::string& f : DefaultAllowedFunctions()) {
    rules.functions.insert(f);
  }
  for (const std::string& f : MaskedSafeFunctions()) {
    rules.masked_functions.insert(f);
  }
  // A function the operator names is trusted in masked sessions too: listing a default one
  // (say `lower`) is how an operator lets masked sessions use it.
  for (const std::string& f : config.allow_functions) {
    if (const size_t dot = f.find('.'); dot != std::string::npos) {
      if (f.substr(0, dot) == "pg_catalog") {
        rules.functions.insert(f.substr(dot + 1));
        rules.masked_functions.insert(f.substr(dot + 1));
      } else {
        rules.qualified_functions.insert(f);
      }
    } else {
      rules.functions.insert(f);
      rules.masked_functions.insert(f);
    }
  }
  gate->impl_->per_shard = (config.cache_entries + kShards - 1) / kShards;
  if (config.mode == config::GateMode::kStrict) {
    // Classify every declared query first (with an empty fingerprint set, so they are
    // judged as reads), then admit their fingerprints. (Admitting each as it passed made
    // the second query of a connection fail as `strict`.)
    absl::flat_hash_set<std::string> fingerprints;
    for (const config::NamedQuery& q : config.queries) {
      internal::Classification c = internal::Classify(q.sql, rules);
      if (!c.verdict.allowed()) {
        return absl::InvalidArgumentError(Cat("query ", q.name, ": ", c.verdict.ErrorMessage()));
      }
      if (c.verdict.kind != StatementKind::kSelect) {
        return absl::InvalidArgumentError(Cat("query ", q.name, ": is not a SELECT"));
      }
      if (!c.trace_literals.empty() || c.verdict.trace_params.empty()) {
        return absl::InvalidArgumentError(Cat(
            "query ", q.name, ": must pin its trace tables with a parameter ($1), not a literal"));
      }
      const std::string fingerprint = internal::Fingerprint(q.sql);
      if (fingerprint.empty()) {
        return absl::InvalidArgumentError(Cat("query ", q.name, ": cannot be fingerprinted"));
      }
      fingerprints.insert(fingerprint);
    }
    rules.strict_fingerprints = std::move(fingerprints);
  }
  return std::shared_ptr<const Gate>(std::move(gate));
}

namespace {

// At 10,000 cache entries, shapes of at most 4 KiB keep the cache's keys within 40 MiB.
constexpr size_t kMaxCachedStatementBytes = 4096;

Verdict OtherTrace(std::string_view found) {
  Verdict v;
  v.rule = Rule::kOtherTrace;
  v.message = Cat("the statement reads trace '", found, "', not the granted one");
  return v;
}

Verdict MaskingBypass(const std::string& hazard) {
  Verdict v;
  v.rule = Rule::kMaskingBypass;
  v.message = hazard;
  return v;
}

}  // namespace

Verdict Gate::CheckUncached(std::string_view sql, std::string_view trace_id, bool masked) const {
  internal::Classification c = internal::Classify(sql, impl_->rules);
  for (const internal::TraceLiteral& literal : c.trace_literals) {
    if (literal.value != trace_id) {
      return OtherTrace(literal.value);
    }
  }
  if (masked && !c.masking_hazard.empty()) {
    return MaskingBypass(c.masking_hazard);
  }
  return std::move(c.verdict);
}

Verdict Gate::Check(std::string_view sql, std::string_view trace_id, bool masked) const {
  if (impl_->per_shard == 0) {
    return CheckUncached(sql, trace_id, masked);
  }
  // Long statements are classified without the cache: their shapes would make large keys.
  // So are statements refused for their operator runs: the runs are counted inside string
  // literals too (over-approximating the lexer's work is the safe side), and literals are
  // cut out of the shape, so that verdict is not the shape's (gate_fuzz found it).
  if (sql.size() > kMaxCachedStatementBytes || OperatorRunCost(sql) > kMaxOperatorRunCost) {
    return CheckUncached(sql, trace_id, masked);
  }
  thread_local Shape shape;
  if (!ShapeOf(sql, shape)) {
    return CheckUncached(sql, trace_id, masked);
  }
  const size_t hash = absl::HashOf(shape.key);
  Impl::Shard& shard = impl_->shards[hash % kShards];
  std::shared_ptr<const CachedVerdict> cached;
  {
    std::lock_guard lock(shard.mu);
    if (auto it = shard.entries.find(shape.key); it != shard.entries.end()) {
      cached = it->second;
    }
  }
  if (cached == nullptr) {
    internal::Classification c = internal::Classify(sql, impl_->rules);
    auto entry = std::make_shared<CachedVerdict>();
    entry->verdict = c.verdict;
    entry->masking_hazard = c.masking_hazard;
    bool cacheable = c.cacheable;
    // Map each pinning literal to the shape's literal at the same offset; the shape must
    // have seen the same value, or the two scanners disagree and nothing is cached.
    for (const internal::TraceLiteral& literal : c.trace_literals) {
      auto it = std::find_if(
          shape.literals.begin(), shape.literals.end(),
          [&](const ShapeLiteral& l) { return l.offset == static_cast<size_t>(literal.location); });
      if (it == shape.literals.end() || it->value != literal.value) {
        cacheable = false;
        break;
      }
      entry->trace_literals.push_back(static_cast<size_t>(it - shape.literals.begin()));
    }
    if (!cacheable) {
      for (const internal::TraceLiteral& literal : c.trace_literals) {
        if (literal.value != trace_id) {
          return OtherTrace(literal.value);
        }
      }
      if (masked && !c.masking_hazard.empty()) {
        return MaskingBypass(c.masking_hazard);
      }
      return std::move(c.verdict);
    }
    {
      std::lock_guard lock(shard.mu);
      if (shard.entries.size() >= impl_->per_shard) {
        shard.entries.clear();  // crude but bounded; one workload has few statement shapes
      }
      shard.entries.emplace(shape.key, entry);
    }
    cached = std::move(entry);
  }
  for (size_t index : cached->trace_literals) {
    if (shape.literals[index].value != trace_id) {
      return OtherTrace(shape.literals[index].value);
    }
  }
  if (masked && !cached->masking_hazard.empty()) {
    return MaskingBypass(cached->masking_hazard);
  }
  return cached->verdict;
}

}  // namespace tracegate::sql
