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

// The value of one hex digit (either case), or -1 if `c` is not one.
constexpr int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

}  // namespace tracegate
