#pragma once
// String building for messages. Debian's Abseil has its own string_view, which
// absl::StrCat will not take from std::string_view; Cat formats anything fmt knows.

#include <fmt/format.h>

#include <iterator>
#include <string>

namespace tracegate {

template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (fmt::format_to(std::back_inserter(out), "{}", args), ...);
  return out;
}

}  // namespace tracegate
