#pragma once
// A bound on how deep PostgreSQL's parse tree of a statement can be, from its tokens alone,
// computed before anything recurses over the statement.
//
// libpg_query's output (pg_query's _outNode, protobuf-c's unpack) and the gate's own walk all
// recurse once per tree level, on whatever thread asks; `SELECT 1+1+…+1` with 6,000 terms
// (12 KB) is 6,000 levels and overflowed an 8 MiB worker stack. So the gate refuses a
// statement whose bound exceeds kMaxNesting (54001, like PostgreSQL's "stack depth limit
// exceeded") before parsing it, and nothing that follows can recurse deeper than that.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tracegate::sql {

// The largest nesting bound the gate parses. At this bound, parsing, unpacking and walking
// need well under 2 MiB of stack (nesting_test measures it on a 2 MiB thread).
inline constexpr int kMaxNesting = 1000;

// Statements longer than this are refused before they are scanned (54001): a trace read is
// never near it, and libpg_query's tree costs up to ~100 bytes per byte of text (`a.a.a…`
// of 1 MiB took 105 MB and 0.6 s to classify).
inline constexpr size_t kMaxStatementBytes = 256u << 10;

// PostgreSQL's lexer rescans a run of operator characters (`+-*/<>=~!@#%^&|`?`) once per
// token it cuts from it (a trailing `+` or `-` is given back, a `/*` inside starts a comment
// and the rest is lexed again), so its work grows with the square of a run's length: 200,000
// `+` took over a minute, nested `/*…*/` 20,000 deep two seconds. The sum of the squares of
// the runs' lengths bounds that work; past this budget (a few milliseconds of lexing) the
// statement is refused before PostgreSQL's lexer sees it. A 2,000-character run fits.
inline constexpr uint64_t kMaxOperatorRunCost = uint64_t{1} << 22;

// Sum over every run of operator characters in `sql` (quoted or not) of its length squared.
uint64_t OperatorRunCost(std::string_view sql);

struct NestingBound {
  bool scanned = false;  // false: PostgreSQL's lexer refused the text (a syntax error)
  int bound = 0;         // an upper bound on the parse tree's depth, in tree levels
};

// Scans `sql` (NUL-terminated) with PostgreSQL's own lexer (pg_query_scan) and bounds the
// parse tree's depth. Within one bracket level, any node of the tree can sit under every
// operator, cast and keyword of that level (a left-deep chain puts a bracketed group at the
// bottom of all of them), so a level's depth is at most: a constant (the nodes a level makes
// without tokens of its own: the bracket's node, a list, a target), plus one per such token
// in it, plus the deepest bracketed group inside it. Identifiers, constants, parameters,
// commas and dots add nothing (lists and qualified names are flat). Nothing is reset at a
// comma or AND: `SELECT 1, 2 UNION SELECT 3, 4 UNION …` nests across commas.
NestingBound BoundNesting(const char* sql);

}  // namespace tracegate::sql
