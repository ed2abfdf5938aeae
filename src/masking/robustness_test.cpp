// One Masker shared by threads, each with its own Scanner; adversarial shapes stay linear;
// buffers shrink back after a huge value.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "masking/masker.h"
#include "masking/test_support.h"

namespace tracegate::masking {
namespace {

using test_support::GeneratedTrace;
using test_support::Rep;
using test_support::ValidJson;

std::shared_ptr<const Masker> Shared() {
  static std::shared_ptr<const Masker> m = [] {
    Profile p;
    p.pseudonym_key = "0123456789abcdef0123456789abcdef";
    p.default_strategy.kind = StrategyKind::kPseudonymize;
    p.custom_detectors.push_back({.name = "ticket", .entity = "TICKET", .regex = "T-[0-9]{4,8}"});
    return *Masker::Create(p);
  }();
  return m;
}

TEST(Robustness, ThreadsShareOneMasker) {
  const std::string doc = GeneratedTrace(50000, 3, 7);
  auto first = Scanner::Create(Shared());
  ASSERT_TRUE(first.ok());
  std::string want;
  Counts counts;
  ASSERT_TRUE(first->MaskJson(doc, {"t"}, want, counts).ok());
  ASSERT_FALSE(want.empty());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto scanner = Scanner::Create(Shared());
      if (!scanner.ok()) {
        mismatches[t] = -1;
        return;
      }
      std::string out;
      Counts c;
      for (int i = 0; i < 40; ++i) {
        auto r = scanner->MaskJson(doc, {"t"}, out, c);
        mismatches[t] += (!r.ok() || out != want) ? 1 : 0;
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  for (int m : mismatches) {
    EXPECT_EQ(m, 0);
  }
}

double Seconds(Scanner& s, const std::string& in, ValueKind kind, bool* ok) {
  std::string out;
  Counts counts;
  auto t0 = std::chrono::steady_clock::now();
  auto r = s.Mask(in, {"t", kind}, out, counts);
  *ok = r.ok();
  if (r.ok() && *r && kind == ValueKind::kJson) {
    *ok = ValidJson(out);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// `unit` repeated whole, about `bytes` long.
std::string Units(std::string_view unit, size_t bytes) {
  return Rep(unit, bytes - bytes % unit.size());
}

TEST(Robustness, AdversarialShapesStayFast) {
  auto scanner = Scanner::Create(Shared());
  ASSERT_TRUE(scanner.ok());
  const size_t kMb = 1 << 20;
  const std::vector<std::pair<std::string, std::string>> texts = {
      {"digits", std::string(kMb, '7')},
      {"digit groups", Rep("4111 ", kMb)},
      {"emails glued", Rep("x@a.cox", kMb)},
      {"ats", std::string(kMb, '@')},
      {"pem headers", Rep("-----BEGIN RSA PRIVATE KEY-----", kMb)},
      {"jwt prefixes", Rep("eyJhbGciOi.eyJ", kMb)},
      {"assignments", Rep("password=", kMb)},
      {"colons", Rep("a:", kMb)},
      {"ipv6ish", Rep("fe80::", kMb)},
      {"dashes", Rep("aa-", kMb)},
      {"bare ssn with context", Rep("ssn 536228726 ", kMb)},
      {"custom regex", Rep("T-1234", kMb)},
      {"non-ascii", Rep("\xe2\x80\x8b\xc3\xa9", kMb)},
  };
  for (const auto& [name, text] : texts) {
    bool ok = false;
    double s = Seconds(*scanner, text, ValueKind::kText, &ok);
    EXPECT_TRUE(ok) << name;
    EXPECT_LT(s, 5.0) << name;  // generous: shared, loaded CI machines
    std::printf("%-22s %7.1f ms\n", name.c_str(), s * 1e3);
  }
  const std::vector<std::pair<std::string, std::string>> docs = {
      {"deep arrays", std::string(500, '[') + std::string(500, ']')},
      {"many keys", "{" + Units("\"k\":1,", kMb) + "\"z\":2}"},
      {"nested strings", "[" + Units("\"{\\\"a\\\":\\\"b@c.de\\\"}\",", kMb) + "1]"},
      {"escapes", "[\"" + Units("\\u0040", kMb) + "\"]"},
  };
  for (const auto& [name, doc] : docs) {
    bool ok = false;
    double s = Seconds(*scanner, doc, ValueKind::kJson, &ok);
    EXPECT_TRUE(ok) << name;
    EXPECT_LT(s, 5.0) << name;
    std::printf("%-22s %7.1f ms\n", name.c_str(), s * 1e3);
  }
}

TEST(Robustness, LargeValueThenSmallOne) {
  auto scanner = Scanner::Create(Shared());
  ASSERT_TRUE(scanner.ok());
  std::string big = GeneratedTrace(8 << 20, 50, 3);
  std::string out;
  Counts counts;
  auto r = scanner->MaskJson(big, {"t"}, out, counts);
  ASSERT_TRUE(r.ok() && *r);
  EXPECT_TRUE(ValidJson(out));
  r = scanner->MaskText("mail jane@example.com", {}, out, counts);
  ASSERT_TRUE(r.ok() && *r);
  EXPECT_EQ(out.find("jane"), std::string::npos);
}

}  // namespace
}  // namespace tracegate::masking
