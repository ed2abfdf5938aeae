#pragma once
// JSON from tokens and IdPs, parsed without exceptions and more strictly than nlohmann's
// defaults: a member name that repeats inside one object is an error (two parsers could
// otherwise disagree about which value counts), and nesting is bounded.

#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tracegate::identity {

// InvalidArgument naming the problem ("not valid JSON", "duplicate member \"exp\"", "nested
// deeper than 32 levels"); never echoes more of the input than a member name, cut short.
[[nodiscard]] absl::StatusOr<nlohmann::json> ParseStrictJson(std::string_view text,
                                                             int max_depth = 32);

}  // namespace tracegate::identity
