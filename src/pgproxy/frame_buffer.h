#pragma once
// The read buffer of one side of a session. Bytes arrive at the end; the decoder walks
// them frame by frame (validating each) and the relay forwards the validated run in one
// write, so a burst of small messages costs one syscall each way.
//
// Memory is committed only as bytes arrive: a frame header's length (which the peer chose)
// never sizes an allocation. The buffer starts at its initial capacity (allocated on the
// first read, never zero-filled) and doubles only when the bytes received have filled it,
// so it holds at most about twice what was received, and at most about twice the largest
// frame the limits allow.

#include <cstdint>
#include <cstring>
#include <memory>

#include "pgproxy/asio.h"
#include "pgwire/framing.h"

namespace tracegate::pgproxy {

class FrameBuffer {
 public:
  static constexpr size_t kDefaultCapacity = 64 * 1024;
  // A read is offered at least this much room (or what the frame being assembled misses).
  static constexpr size_t kMinRead = 4096;

  explicit FrameBuffer(size_t initial_capacity = kDefaultCapacity)
      : initial_capacity_(initial_capacity) {}

  // The capacity the next allocation starts from (e.g. small before authentication).
  void set_initial_capacity(size_t n) { initial_capacity_ = n; }
  // Bytes allocated now.
  [[nodiscard]] size_t capacity() const { return capacity_; }

  // Bytes received and not yet decoded.
  [[nodiscard]] pgwire::Bytes Undecoded() const { return {data_.get() + cursor_, end_ - cursor_}; }
  // Marks the next `n` undecoded bytes as a decoded (validated) frame.
  void MarkDecoded(size_t n) { cursor_ += n; }

  // Decoded frames not yet handed on.
  [[nodiscard]] pgwire::Bytes Decoded() const { return {data_.get() + begin_, cursor_ - begin_}; }
  [[nodiscard]] bool HasDecoded() const { return cursor_ > begin_; }
  // Forgets the decoded frames (after forwarding or consuming them).
  void DropDecoded();

  [[nodiscard]] bool Empty() const { return begin_ == end_; }

  // Space to read into. `bytes_needed` (from the decoder) is the total size of the frame
  // being assembled; the room offered may be less than it misses (the buffer grows as the
  // bytes arrive), but is never empty.
  asio::mutable_buffer PrepareRead(size_t bytes_needed);
  void CommitRead(size_t n) { end_ += n; }

 private:
  std::unique_ptr<uint8_t[]> data_;  // default-initialised: no page is touched before a read
  size_t capacity_ = 0;
  size_t initial_capacity_;
  size_t begin_ = 0;   // first byte not yet forwarded
  size_t cursor_ = 0;  // first byte not yet decoded
  size_t end_ = 0;     // one past the last byte received
};

}  // namespace tracegate::pgproxy
