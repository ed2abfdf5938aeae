#include "pgproxy/frame_buffer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "pgwire/messages.h"

namespace tracegate::pgproxy {
namespace {

using pgwire::DecodeFrame;
using pgwire::DecodeStatus;
using pgwire::Direction;

// Copies `bytes` into the buffer as a read of at most `chunk` bytes at a time would.
void Feed(FrameBuffer& buffer, const std::string& bytes, size_t needed) {
  auto space = buffer.PrepareRead(needed);
  ASSERT_GE(space.size(), bytes.size());
  std::memcpy(space.data(), bytes.data(), bytes.size());
  buffer.CommitRead(bytes.size());
}

TEST(FrameBufferTest, DecodesFramesAndForwardsTheValidatedRun) {
  std::string wire;
  pgwire::EncodeQuery("select 1", wire);
  pgwire::EncodeEmpty('S', wire);
  FrameBuffer buffer;
  Feed(buffer, wire, 0);

  pgwire::Limits limits;
  size_t frames = 0;
  for (;;) {
    auto result = DecodeFrame(buffer.Undecoded(), Direction::kFrontend, limits);
    if (result.status != DecodeStatus::kFrame) {
      break;
    }
    buffer.MarkDecoded(result.frame.wire_size);
    ++frames;
  }
  EXPECT_EQ(frames, 2u);
  ASSERT_TRUE(buffer.HasDecoded());
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>(buffer.Decoded().data()), buffer.Decoded().size()),
      wire);
  buffer.DropDecoded();
  EXPECT_TRUE(buffer.Empty());
  EXPECT_FALSE(buffer.HasDecoded());
}

TEST(FrameBufferTest, GrowsToHoldOneLargeFrameAndKeepsPartialBytes) {
  const std::string big(300 * 1024, 'x');
  std::string wire;
  pgwire::EncodeQuery(big, wire);
  FrameBuffer buffer;
  // First the header only: the decoder tells how much the whole frame needs.
  Feed(buffer, wire.substr(0, 5), 0);
  pgwire::Limits limits;
  auto header = DecodeFrame(buffer.Undecoded(), Direction::kFrontend, limits);
  ASSERT_EQ(header.status, DecodeStatus::kNeedMoreData);
  EXPECT_EQ(header.bytes_needed, wire.size());
  Feed(buffer, wire.substr(5), header.bytes_needed);
  auto frame = DecodeFrame(buffer.Undecoded(), Direction::kFrontend, limits);
  ASSERT_EQ(frame.status, DecodeStatus::kFrame);
  EXPECT_EQ(frame.frame.wire_size, wire.size());
  buffer.MarkDecoded(frame.frame.wire_size);
  buffer.DropDecoded();
  EXPECT_TRUE(buffer.Empty());
  // The memory of the large frame is given back once it has been forwarded.
  EXPECT_LE(buffer.PrepareRead(0).size(), 4 * FrameBuffer::kDefaultCapacity);
}

TEST(FrameBufferTest, CompactsAfterForwardingSoPartialFramesStayContiguous) {
  std::string first;
  pgwire::EncodeQuery(std::string(FrameBuffer::kDefaultCapacity - 100, 'a'), first);
  std::string second;
  pgwire::EncodeQuery("select 2", second);
  FrameBuffer buffer;
  Feed(buffer, first + second.substr(0, 3), 0);
  pgwire::Limits limits;
  auto r = DecodeFrame(buffer.Undecoded(), Direction::kFrontend, limits);
  ASSERT_EQ(r.status, DecodeStatus::kFrame);
  buffer.MarkDecoded(r.frame.wire_size);
  buffer.DropDecoded();
  Feed(buffer, second.substr(3), second.size());
  r = DecodeFrame(buffer.Undecoded(), Direction::kFrontend, limits);
  ASSERT_EQ(r.status, DecodeStatus::kFrame);
  auto query = pgwire::ParseQuery(r.frame.body);
  ASSERT_TRUE(query.ok());
  EXPECT_EQ(query->sql, "select 2");
}

}  // namespace
}  // namespace tracegate::pgproxy
