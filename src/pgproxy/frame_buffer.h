#pragma once
// The read buffer of one side of a session. Bytes arrive at the end; the decoder walks
// them frame by frame (validating each) and the relay forwards the validated run in one
// write, so a burst of small messages costs one syscall each way. Memory is bounded by
// the largest frame the limits allow: the buffer grows only to hold one frame whose
// header already passed the length check.

#include <cstdint>
#include <cstring>
#include <vector>

#include "pgproxy/asio.h"
#include "pgwire/framing.h"

namespace tracegate::pgproxy {

class FrameBuffer {
 public:
  static constexpr size_t kDefaultCapacity = 64 * 1024;

  FrameBuffer() : data_(kDefaultCapacity) {}

  // Bytes received and not yet decoded.
  [[nodiscard]] pgwire::Bytes Undecoded() const { return {data_.data() + cursor_, end_ - cursor_}; }
  // Marks the next `n` undecoded bytes as a decoded (validated) frame.
  void MarkDecoded(size_t n) { cursor_ += n; }

  // Decoded frames not yet handed on.
  [[nodiscard]] pgwire::Bytes Decoded() const { return {data_.data() + begin_, cursor_ - begin_}; }
  [[nodiscard]] bool HasDecoded() const { return cursor_ > begin_; }
  // Forgets the decoded frames (after forwarding or consuming them).
  void DropDecoded();

  [[nodiscard]] bool Empty() const { return begin_ == end_; }

  // Space to read into, at least enough that the frame being assembled (of
  // `bytes_needed` total bytes, from the decoder) fits once complete.
  asio::mutable_buffer PrepareRead(size_t bytes_needed);
  void CommitRead(size_t n) { end_ += n; }

 private:
  std::vector<uint8_t> data_;
  size_t begin_ = 0;   // first byte not yet forwarded
  size_t cursor_ = 0;  // first byte not yet decoded
  size_t end_ = 0;     // one past the last byte received
};

}  // namespace tracegate::pgproxy
