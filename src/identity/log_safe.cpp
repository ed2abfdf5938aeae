#include "identity/log_safe.h"

#include <ctime>

#include "common/strings.h"

namespace tracegate::identity {

std::string LogSafe(std::string_view text, size_t max_chars) {
  std::string out = "\"";
  size_t n = 0;
  for (char c : text) {
    if (n++ == max_chars) {
      out += "...";
      break;
    }
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u >= 0x7F) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

std::string FormatUtc(std::chrono::system_clock::time_point t) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  if (gmtime_r(&seconds, &tm) == nullptr) {
    return Cat("@", static_cast<long long>(seconds));
  }
  char buf[32];
  size_t len = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, len);
}

}  // namespace tracegate::identity
