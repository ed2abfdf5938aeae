#pragma once
// Every JSON text tracegate writes for a caller, a webhook or an export goes through DumpJson:
// strings from callers or the store may hold any byte, and nlohmann's default (strict) dump
// throws on invalid UTF-8. Invalid bytes become U+FFFD instead; nothing throws.

#include <nlohmann/json.hpp>
#include <string>

namespace tracegate {

[[nodiscard]] inline std::string DumpJson(const nlohmann::json& value, int indent = -1) {
  return value.dump(indent, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

}  // namespace tracegate
