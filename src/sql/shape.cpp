#include "sql/shape.h"

namespace tracegate::sql {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Characters that continue an identifier or keyword in scan.l ({ident_cont}), high-bit bytes
// included; a quote right after one of these is a prefixed literal (E'', U&'', x'' ...).
bool IsIdentChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '$' || u >= 0x80;
}

// Skips one comment at `i` (`--` to end of line, or a nested `/* */`). Returns false when
// there is none; sets `ok` false when a block comment does not end.
bool SkipComment(std::string_view s, size_t& i, bool& ok) {
  if (s.substr(i, 2) == "--") {
    while (i < s.size() && s[i] != '\n' && s[i] != '\r') {
      ++i;
    }
    return true;
  }
  if (s.substr(i, 2) != "/*") {
    return false;
  }
  int depth = 0;
  while (i < s.size()) {
    if (s.substr(i, 2) == "/*") {
      ++depth;
      i += 2;
    } else if (s.substr(i, 2) == "*/") {
      i += 2;
      if (--depth == 0) {
        return true;
      }
    } else {
      ++i;
    }
  }
  ok = false;
  return true;
}

}  // namespace

bool ShapeOf(std::string_view s, Shape& shape) {
  shape.key.clear();
  shape.literals.clear();
  shape.key.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\0') {
      return false;
    }
    if (c == '-' || c == '/') {
      const size_t start = i;
      bool ok = true;
      if (SkipComment(s, i, ok)) {
        if (!ok) {
          return false;
        }
        shape.key.append(s.substr(start, i - start));
        continue;
      }
    }
    if (c == '\'') {
      if (i > 0 && (IsIdentChar(s[i - 1]) || s[i - 1] == '&')) {
        return false;  // E'..', U&'..', B'..', X'..', N'..', or a literal glued to a name
      }
      ShapeLiteral literal{.offset = i, .value = {}};
      size_t j = i + 1;
      for (;;) {
        if (j >= s.size()) {
          return false;  // unterminated
        }
        if (s[j] == '\\' || s[j] == '\0') {
          return false;
        }
        if (s[j] == '\'') {
          if (j + 1 < s.size() && s[j + 1] == '\'') {
            literal.value.push_back('\'');
            j += 2;
            continue;
          }
          break;
        }
        literal.value.push_back(s[j]);
        ++j;
      }
      i = j + 1;
      // A literal followed by whitespace with a newline and another literal is one literal
      // in PostgreSQL; give up on any literal followed (past blanks and comments) by a quote.
      size_t k = i;
      for (;;) {
        while (k < s.size() && IsSpace(s[k])) {
          ++k;
        }
        bool ok = true;
        if (k < s.size() && SkipComment(s, k, ok)) {
          if (!ok) {
            return false;
          }
          continue;
        }
        break;
      }
      if (k < s.size() && s[k] == '\'') {
        return false;
      }
      shape.key.append("''");
      shape.literals.push_back(std::move(literal));
      continue;
    }
    if (c == '"') {
      if (i > 0 && s[i - 1] == '&') {
        return false;  // U&"..." (and its UESCAPE literal)
      }
      size_t j = i + 1;
      for (;;) {
        if (j >= s.size() || s[j] == '\0') {
          return false;
        }
        if (s[j] == '"') {
          if (j + 1 < s.size() && s[j + 1] == '"') {
            j += 2;
            continue;
          }
          break;
        }
        ++j;
      }
      shape.key.append(s.substr(i, j + 1 - i));
      i = j + 1;
      continue;
    }
    if (c == '$') {
      if (i > 0 && IsIdentChar(s[i - 1])) {
        // Inside an identifier such as a$b, if the run before it is one. After a number
        // (`1$$…`) or a parameter (`$1$…`) PostgreSQL starts a new token at the `$`: a
        // parameter or a dollar quote, whose text this scanner would misread. Give up.
        size_t start = i;
        while (start > 0 && IsIdentChar(s[start - 1])) {
          --start;
        }
        const char first = s[start];
        if ((first >= '0' && first <= '9') || first == '$') {
          return false;
        }
        shape.key.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9') {
        shape.key.push_back(c);  // a parameter, $1
        ++i;
        continue;
      }
      return false;  // a dollar quote
    }
    shape.key.push_back(c);
    ++i;
  }
  return true;
}

}  // namespace tracegate::sql
