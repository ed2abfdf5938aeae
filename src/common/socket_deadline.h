#pragma once
// Closes a socket if a deadline passes first, so whatever operation is pending on it
// fails at once. Scoped: destroying the SocketDeadline disarms it, and a timer handler
// that was already queued finds the state gone and does nothing.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>

namespace tracegate {

class SocketDeadline {
 public:
  SocketDeadline(const boost::asio::any_io_executor& executor, boost::asio::ip::tcp::socket& socket,
                 std::chrono::steady_clock::duration timeout)
      : state_(std::make_shared<State>(State{&socket, false})), timer_(executor) {
    timer_.expires_after(timeout);
    timer_.async_wait([weak = std::weak_ptr<State>(state_)](boost::system::error_code ec) {
      std::shared_ptr<State> state = weak.lock();
      if (ec || !state) {
        return;
      }
      state->expired = true;
      boost::system::error_code ignored;  // the socket may be closed already; nothing to report
      state->socket->close(ignored);
    });
  }
  ~SocketDeadline() { timer_.cancel(); }
  SocketDeadline(const SocketDeadline&) = delete;
  SocketDeadline& operator=(const SocketDeadline&) = delete;

  [[nodiscard]] bool expired() const { return state_->expired; }

 private:
  struct State {
    boost::asio::ip::tcp::socket* socket;
    bool expired;
  };
  std::shared_ptr<State> state_;
  boost::asio::steady_timer timer_;
};

}  // namespace tracegate
