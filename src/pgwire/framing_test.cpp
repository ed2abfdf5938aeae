#include "pgwire/framing.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace tracegate::pgwire {
namespace {

using ::testing::HasSubstr;

Bytes B(std::string_view s) { return Bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

std::string Be32(uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string Typed(char type, uint32_t length, std::string_view body = "") {
  return std::string(1, type) + Be32(length) + std::string(body);
}

std::string ErrorText(const FrameResult& r) { return std::string(r.error.message()); }

// ---- IsKnownType ---------------------------------------------------------------------------

TEST(IsKnownTypeTest, ExactlyTheProtocolTypesForEachDirection) {
  const std::string frontend = "QPBDESHCXdcfFp";
  const std::string backend = "RSKZTDCIEN123tnsAGHWdcVv";
  for (int b = 0; b < 256; ++b) {
    char c = static_cast<char>(b);
    EXPECT_EQ(IsKnownType(c, Direction::kFrontend), frontend.find(c) != std::string::npos)
        << "byte " << b;
    EXPECT_EQ(IsKnownType(c, Direction::kBackend), backend.find(c) != std::string::npos)
        << "byte " << b;
  }
}

// ---- DecodeStartupFrame -------------------------------------------------------------------

TEST(DecodeStartupFrameTest, NeedsTheLengthFirst) {
  std::string packet = Be32(8) + Be32(kSslRequestCode);
  for (size_t n = 0; n < 4; ++n) {
    FrameResult r = DecodeStartupFrame(B(packet).first(n), Limits{});
    EXPECT_EQ(r.status, DecodeStatus::kNeedMoreData) << n;
    EXPECT_EQ(r.bytes_needed, 4u) << n;
  }
}

TEST(DecodeStartupFrameTest, NeedsTheWholeBodyOnceTheLengthIsKnown) {
  std::string packet = Be32(16) + Be32(kCancelRequestCode) + Be32(7) + Be32(9);
  for (size_t n = 4; n < packet.size(); ++n) {
    FrameResult r = DecodeStartupFrame(B(packet).first(n), Limits{});
    EXPECT_EQ(r.status, DecodeStatus::kNeedMoreData) << n;
    EXPECT_EQ(r.bytes_needed, 16u) << n;
  }
}

TEST(DecodeStartupFrameTest, ReturnsTheBodyAfterTheLength) {
  std::string packet = Be32(8) + Be32(kSslRequestCode) + "trailing";
  FrameResult r = DecodeStartupFrame(B(packet), Limits{});
  ASSERT_EQ(r.status, DecodeStatus::kFrame) << r.error;
  EXPECT_EQ(r.frame.type, 0);
  EXPECT_EQ(r.frame.wire_size, 8u);
  ASSERT_EQ(r.frame.body.size(), 4u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r.frame.body.data()), 4),
            Be32(kSslRequestCode));
}

TEST(DecodeStartupFrameTest, RejectsBadLengthsFromTheHeaderAlone) {
  Limits limits;
  limits.max_startup_length = 10000;
  for (uint32_t length : {0u, 1u, 4u, 7u, 10001u, 1u << 31, 0xFFFFFFFFu}) {
    std::string header = Be32(length);  // only the 4 length bytes
    FrameResult r = DecodeStartupFrame(B(header), limits);
    EXPECT_EQ(r.status, DecodeStatus::kError) << length;
    EXPECT_TRUE(absl::IsInvalidArgument(r.error)) << length;
    EXPECT_THAT(ErrorText(r), HasSubstr("invalid startup packet length")) << length;
  }
}

TEST(DecodeStartupFrameTest, AcceptsTheBoundaryLengths) {
  Limits limits;
  limits.max_startup_length = 20;
  std::string max_packet = Be32(20) + std::string(16, 'x');
  EXPECT_EQ(DecodeStartupFrame(B(max_packet), limits).status, DecodeStatus::kFrame);
  std::string min_packet = Be32(8) + std::string(4, 'x');
  EXPECT_EQ(DecodeStartupFrame(B(min_packet), limits).status, DecodeStatus::kFrame);
}

// ---- DecodeFrame --------------------------------------------------------------------------

TEST(DecodeFrameTest, EmptyBufferNeedsAHeader) {
  for (Direction d : {Direction::kFrontend, Direction::kBackend}) {
    FrameResult r = DecodeFrame(Bytes(), d, Limits{});
    EXPECT_EQ(r.status, DecodeStatus::kNeedMoreData);
    EXPECT_EQ(r.bytes_needed, 5u);
  }
}

TEST(DecodeFrameTest, RejectsUnknownTypesFromTheFirstByte) {
  struct Case {
    char type;
    Direction direction;
  };
  // Backend-only types sent by a frontend and vice versa, and junk.
  for (Case c : {Case{'R', Direction::kFrontend}, Case{'Z', Direction::kFrontend},
                 Case{'T', Direction::kFrontend}, Case{'\0', Direction::kFrontend},
                 Case{'q', Direction::kFrontend}, Case{'Q', Direction::kBackend},
                 Case{'P', Direction::kBackend}, Case{'p', Direction::kBackend},
                 Case{'X', Direction::kBackend}, Case{'\xff', Direction::kBackend}}) {
    std::string one(1, c.type);
    FrameResult r = DecodeFrame(B(one), c.direction, Limits{});
    EXPECT_EQ(r.status, DecodeStatus::kError) << c.type;
    EXPECT_THAT(ErrorText(r), HasSubstr("unknown")) << c.type;
  }
}

TEST(DecodeFrameTest, EveryTypeByteIsJudgedFromTheFirstByte) {
  for (Direction d : {Direction::kFrontend, Direction::kBackend}) {
    for (int b = 0; b < 256; ++b) {
      std::string one(1, static_cast<char>(b));
      FrameResult r = DecodeFrame(B(one), d, Limits{});
      if (IsKnownType(one[0], d)) {
        EXPECT_EQ(r.status, DecodeStatus::kNeedMoreData) << b;
        EXPECT_EQ(r.bytes_needed, 5u) << b;
      } else {
        EXPECT_EQ(r.status, DecodeStatus::kError) << b;
      }
    }
  }
}

TEST(DecodeFrameTest, NeedsTheHeaderThenTheWholeMessage) {
  std::string msg = Typed('Q', 13, std::string_view("SELECT 1\0", 9));
  for (size_t n = 1; n < 5; ++n) {
    FrameResult r = DecodeFrame(B(msg).first(n), Direction::kFrontend, Limits{});
    EXPECT_EQ(r.status, DecodeStatus::kNeedMoreData) << n;
    EXPECT_EQ(r.bytes_needed, 5u) << n;
  }
  for (size_t n = 5; n < msg.size(); ++n) {
    FrameResult r = DecodeFrame(B(msg).first(n), Direction::kFrontend, Limits{});
    EXPECT_EQ(r.status, DecodeStatus::kNeedMoreData) << n;
    EXPECT_EQ(r.bytes_needed, 14u) << n;
  }
  std::string with_next = msg + "S";
  FrameResult r = DecodeFrame(B(with_next), Direction::kFrontend, Limits{});
  ASSERT_EQ(r.status, DecodeStatus::kFrame);
  EXPECT_EQ(r.frame.type, 'Q');
  EXPECT_EQ(r.frame.wire_size, 14u);
  EXPECT_EQ(r.frame.body.size(), 9u);
  EXPECT_EQ(r.frame.body.data(), reinterpret_cast<const uint8_t*>(with_next.data()) + 5);
}

TEST(DecodeFrameTest, RejectsLengthsBelowFour) {
  for (uint32_t length : {0u, 1u, 2u, 3u}) {
    std::string header = Typed('Q', length);
    FrameResult r = DecodeFrame(B(header), Direction::kFrontend, Limits{});
    EXPECT_EQ(r.status, DecodeStatus::kError) << length;
    EXPECT_THAT(ErrorText(r), HasSubstr("invalid length")) << length;
  }
}

TEST(DecodeFrameTest, RejectsHugeLengthsBeforeTheBodyArrives) {
  for (Direction d : {Direction::kFrontend, Direction::kBackend}) {
    for (uint32_t length : {1u << 31, 0xFFFFFFFFu, (64u << 20) + 5}) {
      std::string header = Typed('d', length);  // only the 5 header bytes
      FrameResult r = DecodeFrame(B(header), d, Limits{});
      EXPECT_EQ(r.status, DecodeStatus::kError) << length;
      EXPECT_THAT(ErrorText(r), HasSubstr("exceeds the limit")) << length;
    }
  }
}

TEST(DecodeFrameTest, MaxMessageLengthBoundsTheBody) {
  Limits limits;
  limits.max_message_length = 10;
  std::string ok = Typed('d', 14, std::string(10, 'x'));
  EXPECT_EQ(DecodeFrame(B(ok), Direction::kFrontend, limits).status, DecodeStatus::kFrame);
  std::string too_big = Typed('d', 15);
  EXPECT_EQ(DecodeFrame(B(too_big), Direction::kFrontend, limits).status, DecodeStatus::kError);
}

TEST(DecodeFrameTest, FixedSizeMessagesAreCheckedFromTheHeader) {
  struct Case {
    char type;
    Direction direction;
    uint32_t body;
  };
  for (Case c : {Case{'S', Direction::kFrontend, 0}, Case{'H', Direction::kFrontend, 0},
                 Case{'X', Direction::kFrontend, 0}, Case{'c', Direction::kFrontend, 0},
                 Case{'K', Direction::kBackend, 8}, Case{'Z', Direction::kBackend, 1},
                 Case{'I', Direction::kBackend, 0}, Case{'1', Direction::kBackend, 0},
                 Case{'2', Direction::kBackend, 0}, Case{'3', Direction::kBackend, 0},
                 Case{'n', Direction::kBackend, 0}, Case{'s', Direction::kBackend, 0},
                 Case{'c', Direction::kBackend, 0}}) {
    std::string good = Typed(c.type, 4 + c.body, std::string(c.body, 'I'));
    EXPECT_EQ(DecodeFrame(B(good), c.direction, Limits{}).status, DecodeStatus::kFrame) << c.type;
    std::string bad = Typed(c.type, 4 + c.body + 1000);  // header only
    FrameResult r = DecodeFrame(B(bad), c.direction, Limits{});
    EXPECT_EQ(r.status, DecodeStatus::kError) << c.type;
    EXPECT_THAT(ErrorText(r), HasSubstr("must be exactly")) << c.type;
  }
}

TEST(DecodeFrameTest, ConsumesASequenceOfFrames) {
  std::string stream = Typed('1', 4) + Typed('2', 4) +
                       Typed('C', 13, std::string("SELECT 1\0", 9)) + Typed('Z', 5, "I");
  Bytes rest = B(stream);
  std::string types;
  while (!rest.empty()) {
    FrameResult r = DecodeFrame(rest, Direction::kBackend, Limits{});
    ASSERT_EQ(r.status, DecodeStatus::kFrame) << r.error;
    types.push_back(r.frame.type);
    rest = rest.subspan(r.frame.wire_size);
  }
  EXPECT_EQ(types, "12CZ");
}

}  // namespace
}  // namespace tracegate::pgwire
