#pragma once
// The API's query strings: "a=1&b=%2F" → {a: "1", b: "/"}.

#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tracegate::httpapi {

// Decodes each name and value (%XX, '+' for space). InvalidArgument names a malformed
// escape or a parameter given twice. Written here because Boost 1.74 has no Boost.URL and
// the API needs nothing else of one.
[[nodiscard]] absl::StatusOr<std::map<std::string, std::string>> ParseQuery(std::string_view query);

}  // namespace tracegate::httpapi
