#pragma once
// The cache key of a statement: its text with the contents of plain string literals cut out,
// so `... WHERE id = 'a'` and `... WHERE id = 'b'` share one classification. The literals'
// values come out alongside, for the value checks a cached verdict still needs.
//
// The scanner follows PostgreSQL's lexer (src/backend/parser/scan.l) only as far as it must
// to find plain literals, and gives up (returns false: classify without the cache) on anything
// whose tokenisation depends on more: E'', U&'', B'', X'', N'' and dollar quoting, a backslash
// in a literal, a literal continued on the next line, an unterminated literal, quoted
// identifier or comment, and NUL bytes. Two texts with the same key then tokenise alike except
// for those literals' contents, so their parse trees differ only in those constants' values.

#include <string>
#include <string_view>
#include <vector>

namespace tracegate::sql {

struct ShapeLiteral {
  size_t offset = 0;  // byte offset of the opening quote in the original text
  std::string value;  // decoded ('' → ')
};

struct Shape {
  std::string key;
  std::vector<ShapeLiteral> literals;
};

// Fills `shape` and returns true, or returns false when the text is outside the subset above.
bool ShapeOf(std::string_view sql, Shape& shape);

}  // namespace tracegate::sql
