#include "httproute/message_text.h"

#include "common/strings.h"

namespace tracegate::httproute {
namespace {

void Escape(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte > 0x7e || c == '\\' || c == '\'') {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
}

std::string Render(std::string_view text, size_t max_bytes, std::string_view quote) {
  const bool cut = text.size() > max_bytes;
  std::string out(quote);
  Escape(out, cut ? text.substr(0, max_bytes) : text);
  if (cut) {
    out += "...";
  }
  out += quote;
  if (cut) {
    out += Cat(" (", text.size(), " bytes)");
  }
  return out;
}

}  // namespace

std::string EscapeForMessage(std::string_view text, size_t max_bytes) {
  return Render(text, max_bytes, "");
}

std::string QuoteForMessage(std::string_view text, size_t max_bytes) {
  return Render(text, max_bytes, "'");
}

}  // namespace tracegate::httproute
