#include "httpapi/client_address.h"

#include <arpa/inet.h>

#include <optional>

#include "absl/strings/numbers.h"
#include "common/strings.h"

namespace tracegate::httpapi {

namespace {

struct Address {
  std::array<uint8_t, 16> bytes{};
  bool v4 = false;
};

// An IP address; IPv4-mapped IPv6 (::ffff:a.b.c.d, what a dual-stack socket reports) is
// taken as the IPv4 address it carries.
std::optional<Address> ParseAddress(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (text.empty() || text.size() > 45) {  // the longest IPv6 text form
    return std::nullopt;
  }
  const std::string copy(text);
  Address out;
  if (inet_pton(AF_INET, copy.c_str(), out.bytes.data()) == 1) {
    out.v4 = true;
    return out;
  }
  if (inet_pton(AF_INET6, copy.c_str(), out.bytes.data()) != 1) {
    return std::nullopt;
  }
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(kMapped, kMapped + 12, out.bytes.begin())) {
    std::array<uint8_t, 16> v4{};
    std::copy(out.bytes.begin() + 12, out.bytes.end(), v4.begin());
    out.bytes = v4;
    out.v4 = true;
  }
  return out;
}

std::string Format(const Address& address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(address.v4 ? AF_INET : AF_INET6, address.bytes.data(), text, sizeof text) ==
      nullptr) {
    return "unknown";
  }
  return text;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

}  // namespace

absl::StatusOr<TrustedProxies> TrustedProxies::Parse(const std::vector<std::string>& cidrs) {
  TrustedProxies out;
  for (const std::string& cidr : cidrs) {
    const size_t slash = cidr.find('/');
    std::optional<Address> address = ParseAddress(std::string_view(cidr).substr(0, slash));
    if (!address.has_value()) {
      return absl::InvalidArgumentError(
          Cat("api.trusted_proxies: \"", cidr.substr(0, 64), "\" is not an IP address or CIDR"));
    }
    const uint32_t bits = address->v4 ? 32 : 128;
    uint32_t prefix = bits;
    if (slash != std::string::npos &&
        (!absl::SimpleAtoi(cidr.substr(slash + 1), &prefix) || prefix > bits)) {
      return absl::InvalidArgumentError(
          Cat("api.trusted_proxies: \"", cidr.substr(0, 64), "\" has a bad prefix length"));
    }
    out.networks_.push_back({.bytes = address->bytes, .v4 = address->v4, .prefix = prefix});
  }
  return out;
}

bool TrustedProxies::Contains(std::string_view text) const {
  std::optional<Address> address = ParseAddress(text);
  if (!address.has_value()) {
    return false;
  }
  for (const Network& network : networks_) {
    if (network.v4 != address->v4) {
      continue;
    }
    bool inside = true;
    for (uint32_t bit = 0; bit < network.prefix && inside; ++bit) {
      const uint8_t mask = static_cast<uint8_t>(0x80u >> (bit % 8));
      inside = (network.bytes[bit / 8] & mask) == (address->bytes[bit / 8] & mask);
    }
    if (inside) {
      return true;
    }
  }
  return false;
}

std::string TrustedProxies::ClientAddress(std::string_view peer,
                                          const std::vector<std::string_view>& forwarded) const {
  std::optional<Address> peer_address = ParseAddress(peer);
  const std::string peer_text = peer_address ? Format(*peer_address) : std::string(peer);
  if (forwarded.empty() || !Contains(peer_text)) {
    return peer_text;
  }
  std::vector<Address> hops;
  for (std::string_view value : forwarded) {
    size_t start = 0;
    for (;;) {
      const size_t comma = value.find(',', start);
      std::optional<Address> hop = ParseAddress(Trim(value.substr(start, comma - start)));
      if (!hop.has_value() || hops.size() == kMaxForwardedEntries) {
        return peer_text;  // malformed or oversized: believe none of it
      }
      hops.push_back(*hop);
      if (comma == std::string_view::npos) {
        break;
      }
      start = comma + 1;
    }
  }
  for (auto hop = hops.rbegin(); hop != hops.rend(); ++hop) {
    std::string text = Format(*hop);
    if (!Contains(text)) {
      return text;
    }
  }
  return hops.empty() ? peer_text : Format(hops.front());
}

}  // namespace tracegate::httpapi
