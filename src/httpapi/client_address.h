#pragma once
// The client address the API acts on: the failed-authentication limiter, logs and audit
// records all use it (issue 17 item 4).
//
// By default it is the TCP peer, and X-Forwarded-For is ignored: anyone can write that
// header. Only when the peer is one of `api.trusted_proxies` is the header believed, and then
// only as far as the chain of trusted hops goes: the client is the right-most entry that is not
// itself a trusted proxy (entries to its left were written by the client and prove nothing).
// If every entry is trusted, the left-most one. A header that is not a comma-separated list of
// IP addresses (IPv6 may be bracketed), or has more than kMaxForwardedEntries entries, is
// ignored as a whole: the peer's address is used.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tracegate::httpapi {

inline constexpr size_t kMaxForwardedEntries = 64;

class TrustedProxies {
 public:
  TrustedProxies() = default;
  // CIDRs as config accepts them ("10.0.0.0/8", "::1/128", "192.0.2.7").
  static absl::StatusOr<TrustedProxies> Parse(const std::vector<std::string>& cidrs);

  [[nodiscard]] bool empty() const { return networks_.empty(); }
  // Whether `address` (an IP address in text form; IPv4-mapped IPv6 counts as IPv4) is in one
  // of the networks. False for anything that is not an address.
  [[nodiscard]] bool Contains(std::string_view address) const;

  // The client's address in canonical text form. `peer`: the TCP peer's address; `forwarded`:
  // the X-Forwarded-For header values in the order they arrived.
  [[nodiscard]] std::string ClientAddress(std::string_view peer,
                                          const std::vector<std::string_view>& forwarded) const;

 private:
  struct Network {
    std::array<uint8_t, 16> bytes{};
    bool v4 = false;
    uint32_t prefix = 0;
  };
  std::vector<Network> networks_;
};

}  // namespace tracegate::httpapi
