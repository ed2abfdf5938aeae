#include "admin/admin_server.h"

#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/socket_deadline.h"
#include "common/strings.h"

namespace tracegate::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

struct AdminServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::any_io_executor ex, std::shared_ptr<prometheus::Registry> reg,
       std::function<bool()> is_ready)
      : executor(std::move(ex)),
        acceptor(executor),
        registry(std::move(reg)),
        ready(std::move(is_ready)) {}

  asio::awaitable<void> Accept() {
    auto self = shared_from_this();
    for (;;) {
      error_code ec;
      tcp::socket socket =
          co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (!acceptor.is_open()) {
          co_return;
        }
        spdlog::warn("admin: accept failed: {}", ec.message());
        continue;
      }
      asio::co_spawn(executor, Serve(std::move(socket)), asio::detached);
    }
  }

  http::response<http::string_body> Route(const http::request<http::string_body>& request) {
    http::response<http::string_body> response;
    response.version(request.version());
    response.keep_alive(request.keep_alive());
    response.set(http::field::server, "tracegate");
    response.set(http::field::content_type, "text/plain; charset=utf-8");
    const std::string_view target(request.target().data(), request.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
      response.result(http::status::method_not_allowed);
      response.set(http::field::allow, "GET, HEAD");
      response.body() = "method not allowed\n";
    } else if (path == "/healthz") {
      response.result(http::status::ok);
      response.body() = "ok\n";
    } else if (path == "/readyz") {
      const bool is_ready = ready();
      response.result(is_ready ? http::status::ok : http::status::service_unavailable);
      response.body() = is_ready ? "ready\n" : "not ready\n";
    } else if (path == "/metrics") {
      response.result(http::status::ok);
      response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      response.body() = prometheus::TextSerializer().Serialize(registry->Collect());
    } else {
      response.result(http::status::not_found);
      response.body() = "not found\n";
    }
    response.prepare_payload();
    if (request.method() == http::verb::head) {
      response.body().clear();
    }
    return response;
  }

  asio::awaitable<void> Serve(tcp::socket socket) {
    auto self = shared_from_this();
    beast::flat_buffer buffer(8192);
    for (;;) {
      // Bounded: the admin API takes no bodies and small headers.
      http::request_parser<http::string_body> parser;
      parser.header_limit(8192);
      parser.body_limit(0);
      error_code ec;
      {
        SocketDeadline deadline(executor, socket, std::chrono::seconds(30));
        co_await http::async_read(socket, buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec) {
        if (ec != http::error::end_of_stream && ec != asio::error::operation_aborted &&
            ec != asio::error::eof) {
          http::response<http::string_body> bad{http::status::bad_request, 11};
          bad.set(http::field::connection, "close");
          bad.body() = Cat("bad request: ", ec.message(), "\n");
          bad.prepare_payload();
          co_await http::async_write(socket, bad, asio::redirect_error(asio::use_awaitable, ec));
        }
        break;
      }
      http::response<http::string_body> response = Route(parser.get());
      const bool keep_alive = response.keep_alive();
      co_await http::async_write(socket, response, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !keep_alive) {
        break;
      }
    }
    error_code ignored;  // the peer may be gone already
    socket.shutdown(tcp::socket::shutdown_both, ignored);
  }

  asio::any_io_executor executor;
  tcp::acceptor acceptor;
  std::shared_ptr<prometheus::Registry> registry;
  std::function<bool()> ready;
};

AdminServer::AdminServer(asio::any_io_executor executor,
                         std::shared_ptr<prometheus::Registry> registry,
                         std::function<bool()> ready)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(registry), std::move(ready))) {}

AdminServer::~AdminServer() = default;

absl::Status AdminServer::Start(const tcp::endpoint& endpoint) {
  error_code ec;
  impl_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(endpoint, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(Cat("admin: cannot listen on ", endpoint.address().to_string(),
                                      ":", endpoint.port(), ": ", ec.message()));
  }
  asio::co_spawn(impl_->executor, impl_->Accept(), asio::detached);
  return absl::OkStatus();
}

tcp::endpoint AdminServer::endpoint() const {
  error_code ec;
  return impl_->acceptor.local_endpoint(ec);
}

void AdminServer::Stop() {
  asio::post(impl_->executor, [impl = impl_] {
    error_code ignored;  // closing an acceptor during shutdown
    impl->acceptor.close(ignored);
  });
}

}  // namespace tracegate::admin
