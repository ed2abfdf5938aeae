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
      {"abc\xC2\x85", false},      // NEL (C1)
      {"abc\xC2\x9B", false},      // CSI (C1)
      {"abc\xC2\xA0", true},       // NBSP is printable
      {"abc\xC2\x80", false},      // U+0080, first C1
      {"abc\xC2\x9F", false},      // U+009F, last C1
      {"abc\xE2\x80\xA8", false},  // U+2028 line separator
      {"abc\xE2\x80\xA9", false},  // U+2029 paragraph separator
      {"abc\xE2\x80\xAE", false},  // U+202E right-to-left override
      {"abc\xE2\x80\xAA", false},  // U+202A
      {"abc\xE2\x81\xA6", false},  // U+2066 left-to-right isolate
      {"abc\xE2\x81\xA9", false},  // U+2069 pop directional isolate
      {"abc\xE2\x80\x8F", false},  // U+200F right-to-left mark
      {"abc\xE2\x80\x8B", false},  // U+200B zero width space
      {"abc\xEF\xBB\xBF", false},  // U+FEFF
      {"abc\xE2\x80\xA7", true},   // U+2027 hyphenation point, printable
      {"abc\xE2\x81\xAA", true},   // U+206A is deprecated but not a bidi control
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
  EXPECT_EQ(LogEscape("\xC2\x9B"
                      "2J"),
            "\\xC2\\x9B2J");  // C1 CSI
  EXPECT_EQ(LogEscape("a\xE2\x80\xAE"
                      "b"),
            "a\\xE2\\x80\\xAEb");  // RLO
  EXPECT_EQ(LogEscape("a\xE2\x80\xA8"
                      "b"),
            "a\\xE2\\x80\\xA8b");  // U+2028
}

TEST(TerminalEscape, KeepsLinesEscapesEverySequenceATerminalActsOn) {
  size_t escaped = 0;
  EXPECT_EQ(TerminalEscape("a,b\n1,2\n", &escaped), "a,b\n1,2\n");
  EXPECT_EQ(escaped, 0u);
  // Window title (OSC 0, BEL), clipboard write (OSC 52, ST), screen clear (CSI 2J), C1 CSI.
  EXPECT_EQ(TerminalEscape("\x1B]0;t\x07|\x1B]52;c;aGk=\x1B\\|\x1B[2J|\xC2\x9B"
                           "2J|\r",
                           &escaped),
            "\\x1B]0;t\\x07|\\x1B]52;c;aGk=\\x1B\\|\\x1B[2J|\\u009B2J|\\x0D");
  EXPECT_EQ(escaped, 7u);
  EXPECT_EQ(TerminalEscape("\xFF\xE2\x80\xAE\xC2\xA0"), "\\xFF\\u202E\xC2\xA0");
}

TEST(TerminalEscape, NeverLeavesAControlByteOrC1) {
  std::string all;
  for (int b = 0; b < 256; ++b) {
    all.push_back(static_cast<char>(b));
  }
  for (uint32_t cp = 0x80; cp < 0xA0; ++cp) {
    all.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    all.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  const std::string out = TerminalEscape(all);
  for (size_t i = 0; i < out.size(); ++i) {
    const auto u = static_cast<unsigned char>(out[i]);
    EXPECT_FALSE((u < 0x20 && u != '\n') || u == 0x7F) << static_cast<int>(u);
    if (u == 0xC2 && i + 1 < out.size()) {
      EXPECT_FALSE(static_cast<unsigned char>(out[i + 1]) < 0xA0) << i;
    }
  }
  EXPECT_TRUE(IsValidUtf8(out));
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

TEST(JsonEscapeInvisible, SameValueNoRawC1) {
  const nlohmann::json j = {{"v",
                             "a\xC2\x9B"
                             "2J\xE2\x80\xAE\x1B]0;t\x07"},
                            {"k\xC2\x85", 1}};
  const std::string out = JsonEscapeInvisible(DumpJson(j));
  EXPECT_EQ(out.find("\xC2\x9B"), std::string::npos);
  EXPECT_EQ(out.find("\xC2\x85"), std::string::npos);
  EXPECT_EQ(out.find("\xE2\x80\xAE"), std::string::npos);
  EXPECT_EQ(out.find('\x1B'), std::string::npos);
  EXPECT_NE(out.find("\\u009b"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(out), j);
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
