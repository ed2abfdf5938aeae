#pragma once
// The statement gate: decides, with PostgreSQL's own parser (libpg_query), whether one SQL
// statement may run in a session scoped to one trace.
//
// A statement is allowed when it is a read (SELECT, a cursor over one, FETCH/MOVE/CLOSE),
// transaction control that keeps the transaction read-only, or a SET/SHOW of a harmless
// setting; when every relation it names is a declared trace table; when every function it
// calls is allowed; and when every occurrence of a trace table is pinned, by equalities that
// hold for every row it contributes, to `id_column = <the granted trace id>` (a literal, or a
// parameter the proxy checks at Bind). Anything else is blocked with a rule and a reason.
//
// A session whose responses are masked is held to one more rule (`masking_bypass`): the
// masker scans the values the client receives, so SQL that rewrites a value first (substr,
// lower, a cast to bytea or varchar(4), `||`) could carry it past the masker. Only the
// masked-safe functions (MaskedSafeFunctions(), plus the operator's `allow_functions`) and
// casts that keep a value's text may then touch a column; see DESIGN.md.
//
// Results are cached by the statement's *shape* (its text with plain string literals cut
// out), so a repeated statement costs a scan and a lookup even when its literals differ;
// see DESIGN.md "How the statement gate is built".

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"

namespace tracegate::sql {

// Why a statement was blocked; RuleName() is the word the client sees in the error.
enum class Rule {
  kNone,            // allowed
  kSyntax,          // "syntax": libpg_query cannot parse it (42601)
  kMultiStatement,  // "multi_statement": more than one statement in one Query/Parse
  kBulkExport,      // "bulk_export": COPY
  kWrite,           // "write": INSERT/UPDATE/DELETE/MERGE, SELECT INTO, writable CTE, FOR UPDATE
  kDdl,             // "ddl": CREATE/ALTER/DROP/GRANT/TRUNCATE/COMMENT/...
  kRelation,        // "relation": a relation that is not a declared trace table
  kFunction,        // "function": a function not on the allow list
  kTraceScope,      // "trace_scope": a trace table not pinned to the granted trace id
  kOtherTrace,      // "other_trace": pinned, but to another trace id
  kSessionState,    // "session_state": SET ROLE, read-write transactions, search_path, ...
  kStrict,          // "strict": strict mode and not one of the declared queries
  kMaskingBypass,   // "masking_bypass": a masked session, and SQL that could rewrite values
                    // before the masker sees them (a function, cast or operator)
  kUnsupported,     // "unsupported": any other statement or syntax the gate does not examine
  kTooComplex,      // "too_complex": longer than kMaxStatementBytes, or nested deeper than
                    // kMaxNesting (sql/nesting.h); 54001, refused before anything recurses
};
std::string_view RuleName(Rule rule);

enum class StatementKind {
  kEmpty,        // only whitespace/comments
  kSelect,       // SELECT / VALUES / TABLE / set operations
  kDeclare,      // DECLARE c CURSOR FOR <select>
  kFetch,        // FETCH / MOVE
  kClosePortal,  // CLOSE c
  kTransaction,  // BEGIN / START TRANSACTION / COMMIT / ROLLBACK / SAVEPOINT / ...
  kSet,          // SET / RESET of an allowed setting
  kShow,         // SHOW of an allowed setting
  kOther,        // blocked statements
};

struct Verdict {
  Rule rule = Rule::kNone;
  std::string message;  // for blocked statements, e.g. "COPY is not allowed"
  StatementKind kind = StatementKind::kOther;
  // Parameters ($n, 1-based) that pin a trace table: each must be bound to the granted trace
  // id (checked by the proxy at Bind). Sorted, unique. Empty for simple-protocol statements.
  std::vector<int> trace_params;

  [[nodiscard]] bool allowed() const { return rule == Rule::kNone; }
  // "tracegate: statement blocked (bulk_export): COPY is not allowed"
  [[nodiscard]] std::string ErrorMessage() const;
  // "42501", "42601" for kSyntax, "54001" for kTooComplex.
  [[nodiscard]] std::string_view SqlState() const;
};

class Gate {
 public:
  // Checks the declared tables/functions/queries; strict-mode queries are fingerprinted
  // here, and one that does not parse, or does not pin its trace tables to parameters, is an
  // error naming it.
  static absl::StatusOr<std::shared_ptr<const Gate>> Create(const config::Gate& config);

  // Classifies `sql` (one Query message's text, or one Parse message's) for a session whose
  // grant is for `trace_id`; `masked`: the session's responses are masked, so a statement
  // that could rewrite values before the masker sees them is refused (kMaskingBypass).
  // Masked and unmasked sessions share one cache entry per shape. Thread-safe.
  [[nodiscard]] Verdict Check(std::string_view sql, std::string_view trace_id,
                              bool masked = false) const;

  // The same without the cache (tests, the CLI and the cold-path benchmark).
  [[nodiscard]] Verdict CheckUncached(std::string_view sql, std::string_view trace_id,
                                      bool masked = false) const;

  [[nodiscard]] const config::Gate& config() const { return config_; }

  ~Gate();
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

 private:
  struct Impl;
  explicit Gate(const config::Gate& config);
  config::Gate config_;
  std::unique_ptr<Impl> impl_;
};

// Default functions allowed anywhere in a statement (pg_catalog or unqualified names).
const std::vector<std::string>& DefaultAllowedFunctions();

// The subset of DefaultAllowedFunctions() a masked session may apply to its data: functions
// that select, count, measure or restructure values without rewriting their text (the
// reasons, function by function, are in gate.cpp).
const std::vector<std::string>& MaskedSafeFunctions();

}  // namespace tracegate::sql
