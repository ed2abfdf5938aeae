#pragma once
// The Asio vocabulary pgproxy uses, in one place.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace tracegate::pgproxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using boost::system::error_code;

// `co_await op(..., Redirect(ec))`: completion errors land in `ec` instead of throwing.
inline auto Redirect(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

}  // namespace tracegate::pgproxy
