#include "pgproxy/frame_buffer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "pgwire/messages.h"

namespace tracegate::pgproxy {
namespace {

using pgwire::DecodeFrame;
using pgwire::DecodeStatus;
using pgwire::Direction;

// Copies `bytes` into the buffer as successive reads would, each filling the room offered.
void Feed(FrameBuffer& buffer, const std::string& bytes, size_t needed) {
  size_t done = 0;
  while (done < bytes.size()) {
    auto space = buffer.PrepareRead(needed);
    ASSERT_GT(space.size(), 0u);
    const size_t n = std::min(space.size(), bytes.size() - done);
    std::memcpy(space.data(), bytes.data() + done, n);
    buffer.CommitRead(n);
    done += n;
  }
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

// Issue 18 item 1: a header announcing 64 MiB made the buffer allocate (and zero) 64 MiB
// before a single body byte arrived. Memory now follows the bytes received.
TEST(FrameBufferTest, AnAnnouncedLengthAllocatesNothingBeforeTheBytesArrive) {
  FrameBuffer buffer(4096);
  EXPECT_EQ(buffer.capacity(), 0u);  // nothing before the first read
  std::string header = {'p'};
  const uint32_t length = (64u << 20) + 4;
  for (int shift = 24; shift >= 0; shift -= 8) {
    header.push_back(static_cast<char>((length >> shift) & 0xff));
  }
  Feed(buffer, header, 5);
  EXPECT_LE(buffer.capacity(), 4096u);
  // However often the peer asks, the room offered stays small until bytes fill it.
  for (int i = 0; i < 100; ++i) {
    EXPECT_LE(buffer.PrepareRead(size_t{length} + 1).size(), 8192u);
  }
  EXPECT_LE(buffer.capacity(), 8192u);
}

TEST(FrameBufferTest, GrowsAtMostToTwiceWhatWasReceived) {
  FrameBuffer buffer(4096);
  const size_t announced = 64u << 20;
  size_t received = 0;
  while (received < (3u << 20)) {
    auto space = buffer.PrepareRead(announced);
    const size_t n = std::min<size_t>(space.size(), 1000);  // a slow, trickling peer
    std::memset(space.data(), 'x', n);
    buffer.CommitRead(n);
    received += n;
    ASSERT_LE(buffer.capacity(), 2 * received + 2 * FrameBuffer::kMinRead) << received;
  }
  EXPECT_EQ(buffer.Undecoded().size(), received);
}

}  // namespace
}  // namespace tracegate::pgproxy
