#include "httpapi/client_address.h"

#include <gtest/gtest.h>

namespace tracegate::httpapi {
namespace {

TrustedProxies Trust(std::vector<std::string> cidrs) {
  absl::StatusOr<TrustedProxies> parsed = TrustedProxies::Parse(cidrs);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? *parsed : TrustedProxies();
}

TEST(TrustedProxies, ContainsByPrefix) {
  TrustedProxies trusted = Trust({"10.0.0.0/8", "192.0.2.7", "fd00::/8"});
  EXPECT_TRUE(trusted.Contains("10.200.1.2"));
  EXPECT_TRUE(trusted.Contains("::ffff:10.1.1.1"));  // a dual-stack socket's form
  EXPECT_TRUE(trusted.Contains("192.0.2.7"));
  EXPECT_FALSE(trusted.Contains("192.0.2.8"));
  EXPECT_TRUE(trusted.Contains("fd12::1"));
  EXPECT_FALSE(trusted.Contains("fe80::1"));
  EXPECT_FALSE(trusted.Contains("11.0.0.1"));
  EXPECT_FALSE(trusted.Contains("not an address"));
  EXPECT_FALSE(trusted.Contains(""));
  EXPECT_FALSE(TrustedProxies::Parse({"10.0.0.0/40"}).ok());
  EXPECT_FALSE(TrustedProxies::Parse({"proxy"}).ok());
}

struct Case {
  const char* name;
  std::vector<std::string> trusted;
  std::string peer;
  std::vector<std::string_view> forwarded;
  std::string expected;
};

TEST(TrustedProxies, ClientAddress) {
  const std::vector<Case> cases = {
      {"no proxies: the header is ignored", {}, "203.0.113.9", {"198.51.100.1"}, "203.0.113.9"},
      {"untrusted peer forging the header",
       {"10.0.0.0/8"},
       "203.0.113.9",
       {"10.0.0.5, 1.2.3.4"},
       "203.0.113.9"},
      {"trusted peer, one hop", {"10.0.0.0/8"}, "10.0.0.2", {"198.51.100.1"}, "198.51.100.1"},
      {"right-most untrusted wins over a forged left part",
       {"10.0.0.0/8"},
       "10.0.0.2",
       {"6.6.6.6, 198.51.100.1, 10.0.0.3"},
       "198.51.100.1"},
      {"several header lines are one list",
       {"10.0.0.0/8"},
       "10.0.0.2",
       {"6.6.6.6", "198.51.100.1,10.0.0.3"},
       "198.51.100.1"},
      {"every hop trusted: the left-most",
       {"10.0.0.0/8"},
       "10.0.0.2",
       {"10.1.1.1, 10.2.2.2"},
       "10.1.1.1"},
      {"trusted peer without the header", {"10.0.0.0/8"}, "10.0.0.2", {}, "10.0.0.2"},
      {"garbage entry: the peer", {"10.0.0.0/8"}, "10.0.0.2", {"198.51.100.1, evil"}, "10.0.0.2"},
      {"host:port is not an address", {"10.0.0.0/8"}, "10.0.0.2", {"198.51.100.1:443"}, "10.0.0.2"},
      {"empty entry", {"10.0.0.0/8"}, "10.0.0.2", {"198.51.100.1,,1.1.1.1"}, "10.0.0.2"},
      {"empty header", {"10.0.0.0/8"}, "10.0.0.2", {""}, "10.0.0.2"},
      {"CR/LF and NUL",
       {"10.0.0.0/8"},
       "10.0.0.2",
       {std::string_view("1.1.1.1\r\n\0x", 11)},
       "10.0.0.2"},
      {"bracketed IPv6, canonical form", {"::1/128"}, "::1", {"[2001:DB8::0001]"}, "2001:db8::1"},
      {"mapped peer", {"127.0.0.0/8"}, "::ffff:127.0.0.1", {"192.0.2.1"}, "192.0.2.1"},
      {"mapped peer, untrusted", {}, "::ffff:127.0.0.1", {"192.0.2.1"}, "127.0.0.1"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Trust(c.trusted).ClientAddress(c.peer, c.forwarded), c.expected) << c.name;
  }
}

TEST(TrustedProxies, TooManyEntriesMeanThePeer) {
  TrustedProxies trusted = Trust({"10.0.0.0/8"});
  std::string many;
  for (size_t i = 0; i <= kMaxForwardedEntries; ++i) {
    many += i == 0 ? "192.0.2.1" : ", 192.0.2.1";
  }
  EXPECT_EQ(trusted.ClientAddress("10.0.0.2", {many}), "10.0.0.2");
  std::string huge(100000, '1');
  EXPECT_EQ(trusted.ClientAddress("10.0.0.2", {huge}), "10.0.0.2");
}

}  // namespace
}  // namespace tracegate::httpapi
