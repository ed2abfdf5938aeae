#include "identity/principal.h"

#include "common/strings.h"

namespace tracegate::identity {
namespace {

// Control characters in a subject must not be able to forge a log line.
std::string Printable(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::string Principal::Describe() const {
  std::string out = Printable(subject);
  if (!client_id.empty()) {
    out += Cat(" (client ", Printable(client_id), ")");
  }
  out += Cat(" via ", issuer_name);
  if (development) {
    out += " [development issuer]";
  }
  return out;
}

}  // namespace tracegate::identity
