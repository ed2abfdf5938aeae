#include "identity/strict_json.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "common/strings.h"
#include "identity/log_safe.h"

namespace tracegate::identity {

absl::StatusOr<nlohmann::json> ParseStrictJson(std::string_view text, int max_depth) {
  using nlohmann::json;
  // One set of member names per open object, innermost last.
  std::vector<absl::flat_hash_set<std::string>> open_objects;
  std::string duplicate;
  bool too_deep = false;
  json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= max_depth) {
          too_deep = true;
        }
        if (event == json::parse_event_t::object_start) {
          open_objects.emplace_back();
        }
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) {
          open_objects.pop_back();
        }
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get_ref<const std::string&>()).second &&
            duplicate.empty()) {
          duplicate = parsed.get_ref<const std::string&>();
        }
        break;
      default:
        break;
    }
    // Keep parsing to the end (so syntax errors still win) but drop deep values early.
    return !too_deep;
  };
  json value = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
  if (too_deep) {
    return absl::InvalidArgumentError(Cat("nested deeper than ", max_depth, " levels"));
  }
  if (value.is_discarded()) {
    return absl::InvalidArgumentError("not valid JSON");
  }
  if (!duplicate.empty()) {
    return absl::InvalidArgumentError(Cat("duplicate member ", LogSafe(duplicate, 32)));
  }
  return value;
}

}  // namespace tracegate::identity
