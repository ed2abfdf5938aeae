#include "pgproxy/frame_buffer.h"

#include <algorithm>

namespace tracegate::pgproxy {

void FrameBuffer::DropDecoded() {
  begin_ = cursor_;
  if (begin_ == end_) {
    begin_ = cursor_ = end_ = 0;
    // A huge frame went through: give the memory back rather than keep it per session.
    if (data_.size() > 4 * kDefaultCapacity) {
      data_.resize(kDefaultCapacity);
      data_.shrink_to_fit();
    }
  }
}

asio::mutable_buffer FrameBuffer::PrepareRead(size_t bytes_needed) {
  const size_t pending = cursor_ - begin_;  // decoded, awaiting forward: keep in place
  const size_t partial = end_ - cursor_;    // the frame being assembled
  // Room needed after `end_` so that the partial frame can complete.
  const size_t want_free =
      std::max<size_t>(bytes_needed > partial ? bytes_needed - partial : 0, 4096);
  if (data_.size() - end_ < want_free && begin_ > 0) {
    std::memmove(data_.data(), data_.data() + begin_, end_ - begin_);
    cursor_ -= begin_;
    end_ -= begin_;
    begin_ = 0;
  }
  if (data_.size() - end_ < want_free) {
    data_.resize(std::max(data_.size() * 2, pending + partial + want_free));
  }
  return asio::buffer(data_.data() + end_, data_.size() - end_);
}

}  // namespace tracegate::pgproxy
