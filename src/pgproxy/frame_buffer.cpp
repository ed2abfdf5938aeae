#include "pgproxy/frame_buffer.h"

#include <algorithm>

namespace tracegate::pgproxy {

void FrameBuffer::DropDecoded() {
  begin_ = cursor_;
  if (begin_ == end_) {
    begin_ = cursor_ = end_ = 0;
    // A huge frame went through: give the memory back rather than keep it per session.
    if (capacity_ > 4 * std::max(initial_capacity_, kDefaultCapacity)) {
      data_.reset();
      capacity_ = 0;
    }
  }
}

asio::mutable_buffer FrameBuffer::PrepareRead(size_t bytes_needed) {
  const size_t held = end_ - begin_;      // decoded (awaiting forward) + the partial frame
  const size_t partial = end_ - cursor_;  // the frame being assembled
  const size_t missing = bytes_needed > partial ? bytes_needed - partial : 0;
  const size_t min_free = std::clamp<size_t>(missing, 1, kMinRead);
  if (capacity_ - end_ < min_free && begin_ > 0) {
    std::memmove(data_.get(), data_.get() + begin_, held);
    cursor_ -= begin_;
    end_ = held;
    begin_ = 0;
  }
  if (capacity_ - end_ < min_free) {
    // Double, but only because the bytes received filled what we have; never to the size a
    // header announces, and never past the frame being assembled (plus one read's room).
    size_t target =
        std::max(initial_capacity_, std::min(capacity_ * 2, held + std::max(missing, kMinRead)));
    target = std::max(target, held + min_free);
    std::unique_ptr<uint8_t[]> grown(new uint8_t[target]);
    if (held > 0) {
      std::memcpy(grown.get(), data_.get() + begin_, held);
    }
    cursor_ -= begin_;
    end_ = held;
    begin_ = 0;
    data_ = std::move(grown);
    capacity_ = target;
  }
  return asio::buffer(data_.get() + end_, capacity_ - end_);
}

}  // namespace tracegate::pgproxy
