#include "common/text_safety.h"

#include <gtest/gtest.h>

#include <string>

#include "common/json_text.h"

namespace tracegate {
namespace {

TEST(ValidateTraceId, Table) {
  struct Case {
    std::string id;
    bool ok;
  };
  const Case cases[] = {
      {"t-0001", true},
      {"trace_é_✓_𝄞", true},
      {std::string(kMaxTraceIdBytes, 'a'), true},
      {std::string(kMaxTraceIdBytes + 1, 'a'), false},
      {"", false},
      {"abc\xFF", false},
      {"abc\xC0\xAF", false},          // overlong '/'
      {"abc\xED\xA0\x80", false},      // surrogate
      {"abc\xF4\x90\x80\x80", false},  // above U+10FFFF
      {"abc\xE2\x82", false},          // truncated
      {std::string("abc\0def", 7), false},
      {"abc\r\nINFO forged", false},
      {"abc\t", false},
      {"abc\x7F", false},
      {"abc\xC2\x85", false},  // NEL (C1)
      {"abc\xC2\x9B", false},  // CSI (C1)
      {"abc\xC2\xA0", true},   // NBSP is printable
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ValidateTraceId(c.id).ok(), c.ok) << LogEscape(c.id);
  }
}

TEST(ValidateTraceId, MessageNeverRepeatsTheBytes) {
  const absl::Status status = ValidateTraceId("abc\r\nforged");
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_EQ(std::string(status.message()).find("forged"), std::string::npos);
}

TEST(LogEscape, Table) {
  EXPECT_EQ(LogEscape("plain-id"), "plain-id");
  EXPECT_EQ(LogEscape("a\r\nb"), "a\\x0D\\x0Ab");
  EXPECT_EQ(LogEscape("a\xFF"), "a\\xFF");
  EXPECT_EQ(LogEscape(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(LogEscape("a\\x0D"), "a\\\\x0D");  // a literal backslash cannot fake an escape
  EXPECT_EQ(LogEscape("é✓"), "é✓");
  EXPECT_EQ(LogEscape("\xC2\x85"), "\\xC2\\x85");
  EXPECT_EQ(LogEscape("\x1B[31m"), "\\x1B[31m");
  EXPECT_EQ(LogEscape("abcdef", 3), "abc...");
}

TEST(LogEscape, NeverLeavesAControlByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) {
    all.push_back(static_cast<char>(b));
  }
  const std::string out = LogEscape(all, all.size());
  for (char c : out) {
    const auto u = static_cast<unsigned char>(c);
    EXPECT_FALSE(u < 0x20 || u == 0x7F) << static_cast<int>(u);
  }
  EXPECT_TRUE(IsValidUtf8(out));
}

TEST(DumpJson, InvalidUtf8DoesNotThrow) {
  const nlohmann::json j = {{"trace_id", "abc\xFF"}};
  std::string out;
  EXPECT_NO_THROW(out = DumpJson(j));
  EXPECT_EQ(out, "{\"trace_id\":\"abc\xEF\xBF\xBD\"}");
  EXPECT_NO_THROW(out = DumpJson(j, 2));
}

}  // namespace
}  // namespace tracegate
