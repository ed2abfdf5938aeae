#pragma once
// Whether a client that is waiting (held for an approver) has gone away, asked without
// reading: a held client sends nothing while it waits, a TLS close_notify would be unread
// data, and a pipelined next request must stay in the socket for its turn.

#include <poll.h>

#include <boost/asio/ip/tcp.hpp>

namespace tracegate {

// True once the peer closed its side, or the socket failed.
inline bool PeerGone(boost::asio::ip::tcp::socket& socket) {
  pollfd fd{.fd = socket.native_handle(), .events = POLLRDHUP, .revents = 0};
  return ::poll(&fd, 1, 0) > 0 && (fd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace tracegate
