#pragma once
// The uncached classification of one statement with libpg_query's parse tree (internal to
// the gate; gate.h is the interface).

#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "config/config.h"
#include "sql/gate.h"

namespace tracegate::sql::internal {

// The gate's configuration, prepared for lookups.
struct Rules {
  const config::Gate* config = nullptr;
  // "schema.name" of every declared trace table → its id column.
  std::vector<config::TraceTable> tables;
  absl::flat_hash_set<std::string> functions;            // unqualified names
  absl::flat_hash_set<std::string> qualified_functions;  // "schema.name"
  // Unqualified names a masked session may apply to its data: MaskedSafeFunctions() and
  // the operator's allow_functions (qualified ones are all the operator's, so all count).
  absl::flat_hash_set<std::string> masked_functions;
  absl::flat_hash_set<std::string> strict_fingerprints;  // strict mode: the declared queries
};

// A string literal that pins a trace table; its value must be the granted trace id.
struct TraceLiteral {
  int location = 0;  // byte offset of the token in the text
  std::string value;
};

struct Classification {
  // Rule, message and kind; trace_params filled. Independent of the literals' values.
  Verdict verdict;
  std::vector<TraceLiteral> trace_literals;
  // Empty when the statement is safe under masking; else why it is not (the message of a
  // kMaskingBypass refusal in a masked session). Empty when the verdict is a refusal.
  std::string masking_hazard;
  // False when the verdict depended on a literal's value other than the trace literals
  // (e.g. SET client_encoding): such a verdict must not be reused for another text.
  bool cacheable = true;
};

Classification Classify(std::string_view sql, const Rules& rules);

// The libpg_query fingerprint of `sql`, or an empty string when it does not parse.
std::string Fingerprint(std::string_view sql);

}  // namespace tracegate::sql::internal
