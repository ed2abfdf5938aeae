#include "httpapi/query_string.h"

#include <optional>

#include "absl/strings/str_split.h"
#include "common/strings.h"

namespace tracegate::httpapi {

namespace {

// Decodes one query-string component (%XX, '+' for space). nullopt when malformed. Written
// here because Boost 1.74 has no Boost.URL and the API needs nothing else of one.
std::optional<std::string> QueryDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%') {
      if (i + 2 >= text.size()) {
        return std::nullopt;
      }
      const int hi = HexDigitValue(text[i + 1]);
      const int lo = HexDigitValue(text[i + 2]);
      if (hi < 0 || lo < 0) {
        return std::nullopt;
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> ParseQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  for (absl::string_view piece :
       absl::StrSplit(absl::string_view(query.data(), query.size()), '&', absl::SkipEmpty())) {
    const std::string_view part(piece.data(), piece.size());
    const size_t eq = part.find('=');
    std::optional<std::string> name = QueryDecode(part.substr(0, eq));
    std::optional<std::string> value =
        QueryDecode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
    if (!name || !value) {
      return absl::InvalidArgumentError("malformed percent-encoding in the query string");
    }
    if (!out.emplace(*name, *value).second) {
      return absl::InvalidArgumentError(
          Cat("query parameter \"", name->substr(0, 64), "\" is given more than once"));
    }
  }
  return out;
}

}  // namespace tracegate::httpapi
