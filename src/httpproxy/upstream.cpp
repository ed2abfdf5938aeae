#include "httpproxy/upstream.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>

#include "common/status.h"
#include "common/strings.h"
#include "httpproxy/decode.h"

namespace tracegate::httpproxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kResponseHeaderLimit = 64 * 1024;
// 100 Continue, 103 Early Hints ... before the answer; more than this is a broken store.
constexpr int kMaxInterimResponses = 8;

std::string Base64(std::string_view in) {
  std::string out(beast::detail::base64::encoded_size(in.size()), '\0');
  out.resize(beast::detail::base64::encode(out.data(), in.data(), in.size()));
  return out;
}

bool IsIpLiteral(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// A transport failure as the caller is told it (the store's address is the operator's, not
// a secret; the credential never appears).
absl::Status TransportError(const error_code& ec, std::string_view what) {
  if (ec == beast::error::timeout) {
    return absl::DeadlineExceededError(Cat("the trace store did not answer in time (", what, ")"));
  }
  if (ec == http::error::body_limit) {
    return absl::ResourceExhaustedError("the trace store's response is larger than allowed");
  }
  if (ec == http::error::header_limit) {
    return absl::UnavailableError("the trace store's response headers are larger than 64 KiB");
  }
  if (ec.category() == error_code(http::error::end_of_stream).category() &&
      ec != http::error::end_of_stream) {
    return absl::UnavailableError(Cat("the trace store sent a malformed response: ", ec.message()));
  }
  return absl::UnavailableError(
      Cat("the trace store's connection failed (", what, "): ", ec.message()));
}

// A name lookup raced against a deadline and a cut. getaddrinfo cannot be interrupted
// (tcp::resolver::cancel() only discards its result once it returns), so whichever comes
// first completes the wait, and a lookup that hangs finishes later on its own, unobserved:
// the race's state lives until both the lookup and the timer are done.
template <typename Handler>
struct LookupRace {
  LookupRace(Handler h, const asio::any_io_executor& executor)
      : handler(std::move(h)), executor(executor), timer(executor), resolver(executor) {}
  void Complete(error_code ec, tcp::resolver::results_type results) {
    if (done) {
      return;
    }
    done = true;
    timer.cancel();
    asio::post(executor, [h = std::move(handler), ec, results = std::move(results)]() mutable {
      std::move(h)(ec, std::move(results));
    });
  }
  Handler handler;
  asio::any_io_executor executor;
  asio::steady_timer timer;
  tcp::resolver resolver;
  bool done = false;
};

}  // namespace

void ExchangeCut::Cut(std::string reason) {
  if (cut_) {
    return;
  }
  cut_ = true;
  reason_ = std::move(reason);
  if (abort_) {
    std::function<void()> abort = std::move(abort_);
    abort_ = nullptr;
    abort();
  }
}

absl::StatusOr<std::shared_ptr<asio::ssl::context>> MakeUpstreamTlsContext(
    const config::HttpUpstream& upstream) {
  if (!upstream.https) {
    return std::shared_ptr<asio::ssl::context>();
  }
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
  error_code ec;
  if (upstream.ca_file.empty()) {
    context->set_default_verify_paths(ec);
  } else {
    context->load_verify_file(upstream.ca_file, ec);
  }
  if (ec) {
    return absl::InvalidArgumentError(
        Cat("upstream ca_file ", upstream.ca_file, ": ", ec.message()));
  }
  context->set_verify_mode(upstream.verify_tls ? asio::ssl::verify_peer : asio::ssl::verify_none);
  return context;
}

struct UpstreamClient::Conn {
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;

  beast::tcp_stream& lowest() { return plain ? *plain : beast::get_lowest_layer(*secure); }
};

UpstreamClient::UpstreamClient(asio::any_io_executor executor, const config::HttpUpstream& upstream,
                               std::shared_ptr<asio::ssl::context> tls)
    : executor_(std::move(executor)), upstream_(upstream), tls_(std::move(tls)) {
  switch (upstream.auth.scheme) {
    case config::UpstreamAuthScheme::kBasic:
      authorization_name_ = "Authorization";
      authorization_value_ =
          Cat("Basic ", Base64(Cat(upstream.auth.username, ":", upstream.auth.secret)));
      break;
    case config::UpstreamAuthScheme::kBearer:
      authorization_name_ = "Authorization";
      authorization_value_ = Cat("Bearer ", upstream.auth.secret);
      break;
    case config::UpstreamAuthScheme::kHeader:
      authorization_name_ = upstream.auth.header;
      authorization_value_ = upstream.auth.secret;
      break;
  }
}

UpstreamClient::~UpstreamClient() = default;

size_t UpstreamClient::idle_connections() const { return idle_.size(); }

void UpstreamClient::CloseIdle() {
  for (auto& conn : idle_) {
    error_code ignored;
    conn->lowest().socket().close(ignored);
  }
  idle_.clear();
}

asio::awaitable<absl::StatusOr<std::unique_ptr<UpstreamClient::Conn>>> UpstreamClient::Connect(
    Clock::time_point deadline, ExchangeCut* cut) {
  auto conn = std::make_unique<Conn>();
  error_code ec;
  // Lookup, connect and handshake share connect_timeout (and the request's deadline).
  const Clock::time_point connect_deadline =
      std::min(deadline, Clock::now() + upstream_.connect_timeout);
  using Results = tcp::resolver::results_type;
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  const Results endpoints =
      co_await asio::async_initiate<decltype(token), void(error_code, Results)>(
          [this, connect_deadline, cut](auto handler) {
            using Race = LookupRace<decltype(handler)>;
            auto race = std::make_shared<Race>(std::move(handler), executor_);
            race->timer.expires_at(connect_deadline);
            race->timer.async_wait([race](error_code timer_ec) {
              if (!timer_ec) {
                race->resolver.cancel();
                race->Complete(asio::error::timed_out, Results());
              }
            });
            race->resolver.async_resolve(upstream_.host, std::to_string(upstream_.port),
                                         [race](error_code resolve_ec, Results results) {
                                           race->Complete(resolve_ec, std::move(results));
                                         });
            if (cut != nullptr) {
              cut->abort_ = [weak = std::weak_ptr<Race>(race)] {
                if (std::shared_ptr<Race> alive = weak.lock()) {
                  alive->resolver.cancel();
                  alive->Complete(asio::error::operation_aborted, Results());
                }
              };
            }
          },
          token);
  if (cut != nullptr) {
    cut->abort_ = nullptr;
  }
  if (ec == asio::error::timed_out) {
    co_return absl::UnavailableError(Cat("cannot resolve the trace store's host ", upstream_.host,
                                         ": timed out after ", upstream_.connect_timeout.count(),
                                         " ms"));
  }
  if (ec) {
    co_return absl::UnavailableError(
        Cat("cannot resolve the trace store's host ", upstream_.host, ": ", ec.message()));
  }
  if (tls_) {
    conn->secure.emplace(executor_, *tls_);
  } else {
    conn->plain.emplace(executor_);
  }
  beast::tcp_stream& lowest = conn->lowest();
  const CutScope scope(cut, [&lowest] {
    error_code ignored;
    lowest.socket().close(ignored);
  });
  lowest.expires_at(connect_deadline);
  co_await lowest.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return ec == beast::error::timeout
        ? absl::UnavailableError(Cat("cannot connect to the trace store at ", upstream_.host, ":",
                                     upstream_.port, ": timed out"))
        : absl::UnavailableError(Cat("cannot connect to the trace store at ", upstream_.host, ":",
                                     upstream_.port, ": ", ec.message()));
  }
  lowest.socket().set_option(tcp::no_delay(true), ec);
  if (conn->secure) {
    SSL* ssl = conn->secure->native_handle();
    if (!IsIpLiteral(upstream_.host) &&
        SSL_set_tlsext_host_name(ssl, upstream_.host.c_str()) != 1) {
      co_return absl::InternalError("cannot set the TLS server name");
    }
    if (upstream_.verify_tls) {
      conn->secure->set_verify_callback(asio::ssl::host_name_verification(upstream_.host));
    }
    lowest.expires_at(connect_deadline);
    co_await conn->secure->async_handshake(asio::ssl::stream_base::client,
                                           asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return absl::UnavailableError(Cat("TLS with the trace store at ", upstream_.host, ":",
                                           upstream_.port, " failed: ", ec.message()));
    }
  }
  co_return conn;
}

asio::awaitable<absl::StatusOr<UpstreamResponse>> UpstreamClient::Exchange(
    Conn& conn, const std::string& target, Clock::time_point deadline, bool& keep,
    bool& nothing_read) {
  keep = false;
  nothing_read = false;
  http::request<http::empty_body> request{http::verb::get, target, 11};
  const bool default_port = upstream_.port == (upstream_.https ? 443 : 80);
  const std::string host = upstream_.host.find(':') == std::string::npos
                               ? upstream_.host
                               : Cat("[", upstream_.host, "]");
  request.set(http::field::host, default_port ? host : Cat(host, ":", upstream_.port));
  request.set(authorization_name_, authorization_value_);
  request.set(http::field::accept, "application/json");
  request.set(http::field::accept_encoding, "gzip, deflate");
  request.set(http::field::user_agent, "tracegate");
  request.keep_alive(true);

  error_code ec;
  conn.lowest().expires_at(deadline);
  if (conn.secure) {
    co_await http::async_write(*conn.secure, request,
                               asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await http::async_write(*conn.plain, request, asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) {
    nothing_read = true;
    co_return TransportError(ec, "sending the request");
  }
  // Interim answers (100 Continue, 103 Early Hints) come before the answer; each has only a
  // header, and a parser reads one message, so each gets its own.
  std::optional<http::response_parser<http::string_body>> parser;
  for (int interim = 0;; ++interim) {
    parser.emplace();
    parser->header_limit(kResponseHeaderLimit);
    parser->body_limit(upstream_.max_response_bytes);
    conn.lowest().expires_at(deadline);
    if (conn.secure) {
      co_await http::async_read_header(*conn.secure, conn.buffer, *parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await http::async_read_header(*conn.plain, conn.buffer, *parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      nothing_read = interim == 0 && !parser->got_some();
      co_return TransportError(ec, "reading the response");
    }
    const unsigned status = parser->get().result_int();
    if (status >= 200) {
      break;
    }
    if (status == 101) {
      co_return absl::InvalidArgumentError(
          "the trace store switched protocols (HTTP 101), which tracegate never asks for");
    }
    if (status < 100 || interim + 1 >= kMaxInterimResponses) {
      co_return absl::InvalidArgumentError(
          Cat("the trace store sent HTTP ", status, " before its answer ",
              status < 100 ? std::string("(not a status)")
                           : Cat("after ", interim, " other interim answers")));
    }
  }
  UpstreamResponse out;
  out.status = parser->get().result_int();
  out.content_type = std::string(parser->get()[http::field::content_type]);
  if (out.status < 200 || out.status > 299) {
    // Never forwarded, so never read: the connection is dropped with its body unread (an
    // error page may be large, or in an encoding nobody can read).
    conn.lowest().expires_never();
    co_return out;
  }
  conn.lowest().expires_at(deadline);
  if (conn.secure) {
    co_await http::async_read(*conn.secure, conn.buffer, *parser,
                              asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await http::async_read(*conn.plain, conn.buffer, *parser,
                              asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) {
    co_return TransportError(ec, "reading the response");
  }
  conn.lowest().expires_never();
  // need_eof: the body ended with the connection (no Content-Length, not chunked), so the
  // connection is finished even when the header did not say "close".
  const bool close_delimited = parser->need_eof();
  http::response<http::string_body> response = parser->release();
  keep = response.keep_alive() && !close_delimited && conn.buffer.size() == 0;
  const beast::string_view encoding = response[http::field::content_encoding];
  absl::StatusOr<std::string> body =
      DecodeBody(std::string_view(encoding.data(), encoding.size()), std::move(response.body()),
                 upstream_.max_response_bytes);
  if (!body.ok()) {
    keep = false;
    co_return body.status();
  }
  out.body = *std::move(body);
  co_return out;
}

asio::awaitable<absl::StatusOr<UpstreamResponse>> UpstreamClient::Get(std::string target,
                                                                      ExchangeCut* cut) {
  const Clock::time_point deadline = Clock::now() + upstream_.timeout;
  const std::string full_target = Cat(upstream_.prefix, target);
  for (int attempt = 0;; ++attempt) {
    if (cut != nullptr && cut->cut()) {
      co_return absl::CancelledError(cut->reason());
    }
    std::unique_ptr<Conn> conn;
    bool reused = false;
    if (attempt == 0 && !idle_.empty()) {
      conn = std::move(idle_.back());
      idle_.pop_back();
      reused = true;
    } else {
      absl::StatusOr<std::unique_ptr<Conn>> fresh = co_await Connect(deadline, cut);
      if (cut != nullptr && cut->cut()) {
        co_return absl::CancelledError(cut->reason());
      }
      if (!fresh.ok()) {
        co_return fresh.status();
      }
      conn = *std::move(fresh);
    }
    bool keep = false;
    bool nothing_read = false;
    absl::StatusOr<UpstreamResponse> result;
    {
      beast::tcp_stream& lowest = conn->lowest();
      const CutScope scope(cut, [&lowest] {
        error_code ignored;
        lowest.socket().close(ignored);
      });
      result = co_await Exchange(*conn, full_target, deadline, keep, nothing_read);
    }
    if (cut != nullptr && cut->cut()) {
      co_return absl::CancelledError(cut->reason());  // its connection is closed
    }
    if (!result.ok() && reused && nothing_read && Clock::now() < deadline) {
      continue;  // the store closed a kept-alive connection: GET is safe to repeat once
    }
    if (result.ok()) {
      result->reused_connection = reused;
      if (keep && idle_.size() < upstream_.max_idle_connections) {
        idle_.push_back(std::move(conn));
      }
    }
    co_return result;
  }
}

}  // namespace tracegate::httpproxy
