#include "httpapi/api_server.h"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <thread>
#include <vector>

#include "common/on_pool.h"
#include "common/server_tls.h"
#include "common/socket_deadline.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "httpapi/client_address.h"

namespace tracegate::httpapi {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto kRequestTimeout = std::chrono::seconds(10);
constexpr auto kIdleTimeout = std::chrono::seconds(30);
// Above identity's 16 KiB token cap, so an oversize token gets its precise 401.
constexpr size_t kHeaderLimit = 24 * 1024;
constexpr int kMaxRequestsPerConnection = 100;

std::string NewRequestId() {
  unsigned char bytes[8];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    return "0000000000000000";
  }
  return fmt::format("{:02x}", fmt::join(bytes, ""));
}

http::response<http::string_body> ToHttp(const ApiResponse& api, unsigned version, bool keep_alive,
                                         const std::string& request_id) {
  http::response<http::string_body> response{static_cast<http::status>(api.status), version};
  response.set(http::field::server, "tracegate");
  response.set(http::field::content_type, "application/json");
  response.set("X-Request-Id", request_id);
  for (const auto& [name, value] : api.headers) {
    response.set(name, value);
  }
  response.keep_alive(keep_alive);
  response.body() = api.body;
  response.prepare_payload();
  return response;
}

}  // namespace

asio::awaitable<ApiResponse> OnHandlerThread(asio::thread_pool& pool,
                                             const std::function<ApiResponse()>& work) {
  return OnPool<ApiResponse>(pool, work);
}

asio::awaitable<ApiResponse> AnswerAlways(std::string request_id,
                                          std::function<asio::awaitable<ApiResponse>()> handle) {
  std::string failure;
  try {
    co_return co_await handle();
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "an exception that is not a std::exception";
  }
  spdlog::error("api request={}: the handler failed: {}", request_id, LogEscape(failure, 1024));
  co_return ApiResponse{
      .status = 500,
      .body =
          ErrorBody("internal_error",
                    "the gateway failed to answer this request; quote its request id", request_id)};
}

struct ApiServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(std::shared_ptr<const config::Config> cfg, ApiService& svc, Fetcher f)
      : config(std::move(cfg)),
        service(svc),
        fetcher(std::move(f)),
        context(std::make_unique<asio::io_context>()),
        acceptor(std::make_unique<tcp::acceptor>(*context)) {}

  asio::awaitable<void> Accept() {
    auto self = shared_from_this();
    for (;;) {
      error_code ec;
      // Each connection gets its own strand: the API's threads share one io_context.
      auto strand = asio::make_strand(*context);
      tcp::socket socket =
          co_await acceptor->async_accept(strand, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (!acceptor->is_open()) {
          co_return;
        }
        spdlog::warn("api: accept failed: {}", ec.message());
        continue;
      }
      // An answer goes out as more than one TLS record: without this, Nagle holds the last
      // one until the client's delayed ACK (40 ms on Linux) for every request.
      socket.set_option(tcp::no_delay(true), ec);
      asio::co_spawn(strand, Connection(std::move(socket)), [](std::exception_ptr failure) {
        if (failure) {
          try {
            std::rethrow_exception(failure);
          } catch (const std::exception& e) {
            spdlog::error("api: a connection ended on an exception: {}", LogEscape(e.what(), 1024));
          } catch (...) {
            spdlog::error("api: a connection ended on an exception that is not a std::exception");
          }
        }
      });
    }
  }

  asio::awaitable<void> Connection(tcp::socket socket) {
    auto self = shared_from_this();
    error_code ec;
    const tcp::endpoint remote = socket.remote_endpoint(ec);
    const std::string peer = ec ? std::string("unknown") : remote.address().to_string();
    if (tls_context) {
      beast::ssl_stream<tcp::socket&> stream(socket, *tls_context);
      {
        SocketDeadline deadline(socket.get_executor(), socket, kRequestTimeout);
        co_await stream.async_handshake(asio::ssl::stream_base::server,
                                        asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec) {
        spdlog::debug("api peer={}: TLS handshake failed: {}", peer, ec.message());
        co_return;
      }
      co_await Serve(stream, socket, peer);
      co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await Serve(socket, socket, peer);
    }
    socket.shutdown(tcp::socket::shutdown_both, ec);  // the peer may be gone already
  }

  template <typename Stream>
  asio::awaitable<void> Serve(Stream& stream, tcp::socket& socket, const std::string& peer) {
    beast::flat_buffer buffer;  // bounded by the parser's header and body limits
    const uint32_t body_limit = config->api->max_body_bytes;
    for (int served = 0; served < kMaxRequestsPerConnection; ++served) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(body_limit);
      error_code ec;
      {
        SocketDeadline deadline(socket.get_executor(), socket,
                                served == 0 ? kRequestTimeout : kIdleTimeout);
        co_await http::async_read(stream, buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
      }
      const std::string request_id = NewRequestId();
      if (ec) {
        if (ec == http::error::end_of_stream || ec == asio::error::eof ||
            ec == asio::error::operation_aborted || ec == asio::ssl::error::stream_truncated ||
            ec == asio::error::connection_reset || ec == asio::error::bad_descriptor) {
          co_return;
        }
        ApiResponse refusal{
            .status = 400,
            .body = ErrorBody("bad_request", Cat("malformed HTTP request: ", ec.message()),
                              request_id)};
        if (ec == http::error::body_limit) {
          refusal = {
              .status = 413,
              .body = ErrorBody("payload_too_large",
                                Cat("the body is larger than ", body_limit, " bytes"), request_id)};
        } else if (ec == http::error::header_limit) {
          refusal = {.status = 431,
                     .body = ErrorBody("request_header_fields_too_large",
                                       Cat("the headers are larger than ", kHeaderLimit, " bytes"),
                                       request_id)};
        }
        auto response = ToHttp(refusal, 11, false, request_id);
        co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
        co_return;
      }
      const http::request<http::string_body>& request = parser.get();
      std::vector<std::string_view> forwarded;
      if (!trusted_proxies.empty()) {
        const auto [first, last] = request.equal_range("X-Forwarded-For");
        for (auto field = first; field != last; ++field) {
          forwarded.emplace_back(field->value().data(), field->value().size());
        }
      }
      ApiRequest api_request{
          .method = std::string(request.method_string()),
          .target = std::string(request.target()),
          .authorization = std::string(request[http::field::authorization]),
          .body = request.body(),
          .client_address = trusted_proxies.ClientAddress(peer, forwarded),
          .request_id = request_id,
          .grant_credential = std::string(request["X-Tracegate-Grant"]),
      };
      ApiResponse api_response =
          co_await AnswerAlways(request_id, [&]() -> asio::awaitable<ApiResponse> {
            ApiResponse answer = co_await Handle(api_request);
            if (answer.wait.has_value()) {
              answer = co_await LongPoll(api_request, *answer.wait);
            }
            if (answer.fetch.has_value()) {
              const FetchJob job = *std::move(answer.fetch);
              answer = co_await Fetch(api_request, job);
            }
            co_return answer;
          });
      const bool keep_alive = request.keep_alive() && served + 1 < kMaxRequestsPerConnection;
      auto response = ToHttp(api_response, request.version(), keep_alive, request_id);
      co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !keep_alive) {
        co_return;
      }
    }
  }

  // The service may block (state store, risk query, IdP): it runs on a handler thread while
  // this connection's coroutine waits without holding an I/O thread.
  asio::awaitable<ApiResponse> Handle(const ApiRequest& request) {
    // Named, not a temporary across the co_await (see common/on_pool.h).
    const std::function<ApiResponse()> work = [this, &request] { return service.Handle(request); };
    ApiResponse answer = co_await OnHandlerThread(*handlers, work);
    co_return answer;
  }

  // Waits, without holding a thread, until the grant changes or the poll's time is up, then
  // asks the service again for the answer.
  asio::awaitable<ApiResponse> LongPoll(ApiRequest request, const httpapi::LongPoll& poll) {
    auto executor = co_await asio::this_coro::executor;
    auto timer = std::make_shared<asio::steady_timer>(executor, poll.timeout);
    std::unique_ptr<ApiService::ChangeWatch> watch = service.WatchGrant(
        poll.grant_id, [timer, executor] { asio::post(executor, [timer] { timer->cancel(); }); });
    // A decision may have landed between the first answer and the watch: look again first.
    ApiResponse now = co_await Handle(request);
    if (now.wait.has_value()) {
      error_code ec;
      co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      watch.reset();
      request.may_wait = false;
      now = co_await Handle(request);
    }
    now.wait.reset();
    co_return now;
  }

  // Runs the one-call fetch the service prepared (the grant is already redeemed).
  asio::awaitable<ApiResponse> Fetch(const ApiRequest& request, const FetchJob& job) {
    FetchOutcome outcome;
    if (fetcher) {
      outcome = co_await fetcher(job);
    } else {
      spdlog::error("api request={}: one-call fetch without a fetcher", request.request_id);
      outcome = {
          .status = 503,
          .body = ErrorBody("unavailable", "one-call fetch is not available", request.request_id),
          .error = "unavailable"};
    }
    co_return FetchResponse(job, outcome, request);
  }

  std::shared_ptr<const config::Config> config;
  ApiService& service;
  Fetcher fetcher;
  // Both are destroyed by Stop(): destroying the io_context destroys the coroutines still
  // suspended on it, which hold references to this Impl (no cycle outlives Stop).
  std::unique_ptr<asio::io_context> context;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<asio::ssl::context> tls_context;
  std::vector<std::thread> threads;
  // Runs ApiService::Handle (api.handler_threads). Stopped and destroyed before `context`:
  // a finished handler posts its answer to a connection's strand.
  std::unique_ptr<asio::thread_pool> handlers;
  TrustedProxies trusted_proxies;
};

ApiServer::ApiServer(std::shared_ptr<const config::Config> config, ApiService& service,
                     Fetcher fetcher)
    : impl_(std::make_shared<Impl>(std::move(config), service, std::move(fetcher))) {}

ApiServer::~ApiServer() { Stop(); }

absl::Status ApiServer::Start(unsigned threads) {
  const config::Api& api = *impl_->config->api;
  absl::StatusOr<TrustedProxies> trusted = TrustedProxies::Parse(api.trusted_proxies);
  if (!trusted.ok()) {
    return trusted.status();
  }
  impl_->trusted_proxies = *std::move(trusted);
  if (api.tls) {
    absl::StatusOr<std::unique_ptr<asio::ssl::context>> tls =
        MakeServerTlsContext(impl_->config->tls.cert_file, impl_->config->tls.key_file);
    if (!tls.ok()) {
      return tls.status();
    }
    impl_->tls_context = *std::move(tls);
  }
  error_code ec;
  const auto address = asio::ip::make_address(api.listen.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        Cat("api.listen: \"", api.listen.host, "\" is not an IP address"));
  }
  const tcp::endpoint endpoint(address, api.listen.port);
  tcp::acceptor& acceptor = *impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        Cat("api: cannot listen on ", api.listen.host, ":", api.listen.port, ": ", ec.message()));
  }
  impl_->handlers = std::make_unique<asio::thread_pool>(std::max<uint32_t>(2, api.handler_threads));
  asio::co_spawn(*impl_->context, impl_->Accept(), asio::detached);
  for (unsigned i = 0; i < std::max(1u, threads); ++i) {
    impl_->threads.emplace_back([context = impl_->context.get()] { context->run(); });
  }
  return absl::OkStatus();
}

tcp::endpoint ApiServer::endpoint() const {
  error_code ec;
  return impl_->acceptor ? impl_->acceptor->local_endpoint(ec) : tcp::endpoint();
}

void ApiServer::Stop() {
  if (impl_->threads.empty()) {
    return;
  }
  impl_->context->stop();
  for (std::thread& t : impl_->threads) {
    t.join();
  }
  impl_->threads.clear();
  // A handler still running (a risk query, an IdP call) finishes within its own timeout; its
  // answer goes to the stopped context and is destroyed with it. Handlers not yet started are
  // destroyed with the pool, while the context they refer to still exists.
  impl_->handlers->stop();
  impl_->handlers->join();
  impl_->handlers.reset();
  error_code ignored;  // closing during shutdown
  impl_->acceptor->close(ignored);
  impl_->acceptor.reset();
  impl_->context.reset();
}

}  // namespace tracegate::httpapi
