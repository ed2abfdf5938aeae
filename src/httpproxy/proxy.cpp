#include "httpproxy/proxy.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/peer_gone.h"
#include "common/server_tls.h"
#include "common/socket_deadline.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "httpproxy/grant_cut.h"
#include "httpproxy/one_shot.h"
#include "httpproxy/recording.h"
#include "httpproxy/upstream.h"
#include "httproute/route.h"

namespace tracegate::httpproxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto kFirstRequestTimeout = std::chrono::seconds(10);
constexpr int kMaxRequestsPerConnection = 1000;

std::string_view SV(beast::string_view s) { return {s.data(), s.size()}; }

// Headers never written into the record: they carry credentials.
bool IsCredentialHeader(std::string_view name) {
  const std::string lower = absl::AsciiStrToLower(absl::string_view(name.data(), name.size()));
  return lower == "authorization" || lower == "proxy-authorization" || lower == "cookie";
}

// The request as the record keeps it: request line and headers, credentials replaced.
std::string RequestText(const http::request<http::string_body>& request) {
  std::string text = Cat(SV(request.method_string()), " ", SV(request.target()), " HTTP/",
                         request.version() / 10, ".", request.version() % 10, "\r\n");
  for (const auto& field : request) {
    const std::string_view name(field.name_string().data(), field.name_string().size());
    if (IsCredentialHeader(name)) {
      text += Cat(name, ": [not recorded]\r\n");
    } else {
      text += Cat(name, ": ", std::string_view(field.value().data(), field.value().size()), "\r\n");
    }
  }
  text += "\r\n";
  text += request.body();
  return text;
}

http::response<http::string_body> MakeResponse(const Outcome& outcome, unsigned version,
                                               bool keep_alive, const std::string& session_id) {
  http::response<http::string_body> response{static_cast<http::status>(outcome.status), version};
  response.set(http::field::server, "tracegate");
  response.set(http::field::content_type, "application/json");
  response.set(http::field::cache_control, "no-store");
  if (!session_id.empty()) {
    response.set("X-Tracegate-Session", session_id);
  }
  if (outcome.status == 401) {
    response.set(http::field::www_authenticate, "Bearer realm=\"tracegate\"");
  }
  if (outcome.masked.Total() > 0) {
    response.set("X-Tracegate-Masked", std::to_string(outcome.masked.Total()));
  }
  response.keep_alive(keep_alive);
  response.body() = outcome.body;
  response.prepare_payload();
  return response;
}

std::string Serialize(const http::response<http::string_body>& response) {
  std::ostringstream out;
  out << response;
  return std::move(out).str();
}

// A refused bearer, kept as evidence (audit::Recorder::AuthFailure aggregates it): the
// grant id when the bearer is shaped tgb_<id>_<secret>, never any part of the secret.
void RecordAuthFailure(audit::Recorder* recorder, audit::AuthPath path, std::string_view reason,
                       std::string_view connection, std::string_view peer,
                       std::string_view bearer) {
  if (recorder == nullptr) {
    return;
  }
  const std::string grant_id = grants::BearerGrantId(bearer);
  recorder->AuthFailure({.path = path,
                         .reason = reason.empty() ? std::string_view("other") : reason,
                         .connection = connection,
                         .client_address = peer,
                         .grant_id = grant_id});
}

// "Bearer <token>" (scheme case-insensitive, RFC 7235) → token; "" if absent or another scheme.
std::string_view BearerOf(std::string_view header) {
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(absl::string_view(header.data(), kScheme.size()),
                              absl::string_view(kScheme.data(), kScheme.size()))) {
    return {};
  }
  header.remove_prefix(kScheme.size());
  while (!header.empty() && header.front() == ' ') {
    header.remove_prefix(1);
  }
  return header;
}

}  // namespace

struct HttpProxy::Impl : std::enable_shared_from_this<Impl> {
  struct Worker {
    asio::io_context context{1};
    std::map<std::string, std::unique_ptr<UpstreamClient>, std::less<>> clients;
    std::map<std::string, masking::Scanner, std::less<>> scanners;
    std::thread thread;
  };
  struct Listener {
    const config::Connection* connection = nullptr;
    std::unique_ptr<tcp::acceptor> acceptor;
    tcp::endpoint endpoint;
  };

  Impl(std::shared_ptr<const config::Config> cfg, grants::GrantService* g, audit::Recorder* r,
       approvals::ApprovalService* a)
      : config(std::move(cfg)), grants(g), recorder(r), approvals(a) {}

  Worker& NextWorker() { return *workers[next_worker++ % workers.size()]; }

  // The worker's scanner for `profile`, created on first use; null when the grant is unmasked.
  absl::StatusOr<masking::Scanner*> ScannerFor(Worker& worker, const std::string& profile) {
    if (profile.empty()) {
      return nullptr;
    }
    auto it = worker.scanners.find(profile);
    if (it == worker.scanners.end()) {
      auto masker = config->maskers.find(profile);
      if (masker == config->maskers.end()) {
        return absl::FailedPreconditionError(
            Cat("masking profile \"", profile, "\" is no longer configured"));
      }
      absl::StatusOr<masking::Scanner> scanner = masking::Scanner::Create(masker->second);
      if (!scanner.ok()) {
        return scanner.status();
      }
      it = worker.scanners.emplace(profile, *std::move(scanner)).first;
    }
    return &it->second;
  }

  UpstreamClient& ClientFor(Worker& worker, const config::Connection& connection) {
    auto it = worker.clients.find(connection.name);
    if (it == worker.clients.end()) {
      it = worker.clients
               .emplace(connection.name, std::make_unique<UpstreamClient>(
                                             worker.context.get_executor(), connection.upstream,
                                             tls_clients.at(connection.name)))
               .first;
    }
    return *it->second;
  }

  const config::Connection* ConnectionNamed(std::string_view name) const {
    for (const config::Connection& c : config->connections) {
      if (c.name == name) {
        return &c;
      }
    }
    return nullptr;
  }

  // The store's answer for a redeemed grant: route match (or the fetch route), upstream
  // request, check, mask. Runs on `worker`. A grant that ends meanwhile cuts the exchange
  // and turns the outcome into its refusal.
  asio::awaitable<Outcome> Exchange(Worker& worker, const config::Connection& connection,
                                    const store::GrantRecord& grant, const std::string* method,
                                    const std::string* target, GrantCut& cut) {
    const config::HttpRoute* route = nullptr;
    std::string upstream_target;
    if (method != nullptr) {
      httproute::MatchResult match =
          httproute::MatchRequest(connection.routes, *method, *target, grant.trace_id);
      if (!match.ok) {
        co_return Refuse(match.refusal.status, match.refusal.code, match.refusal.message);
      }
      route = match.match.route;
      upstream_target = std::move(match.match.upstream_target);
    } else {
      for (const config::HttpRoute& r : connection.routes) {
        if (r.name == connection.fetch_route) {
          route = &r;
        }
      }
      if (route == nullptr) {
        co_return Refuse(503, "unavailable",
                         Cat("connection ", connection.name, " has no fetch route"));
      }
      if (!httproute::TraceFitsRoute(*route, grant.trace_id)) {
        // "..", "." or an id with '/' would name another resource once in the path.
        co_return Refuse(400, "bad_trace_id",
                         Cat("trace id \"", grant.trace_id.substr(0, 128),
                             "\" cannot be put into route ", route->name, "'s path"));
      }
      upstream_target = httproute::BuildTarget(*route, grant.trace_id);
    }
    absl::StatusOr<masking::Scanner*> scanner = ScannerFor(worker, grant.masking_profile);
    if (!scanner.ok()) {
      Outcome refused = Refuse(503, "masking_unavailable", MessageOf(scanner.status()));
      refused.masking_error = true;
      co_return refused;
    }
    absl::StatusOr<UpstreamResponse> response =
        co_await ClientFor(worker, connection).Get(upstream_target, cut.cut());
    Outcome outcome = Examine(response, *route, grant.trace_id, *scanner);
    if (std::optional<Outcome> refusal = cut.Refusal()) {
      co_return *std::move(refusal);
    }
    if (grant.max_bytes > 0 && outcome.error.empty() && outcome.body.size() > grant.max_bytes) {
      outcome =
          Refuse(403, "byte_cap",
                 Cat("the response is larger than the grant's max_bytes (", grant.max_bytes, ")"));
    }
    co_return outcome;
  }

  // One listener request, after it was read.
  template <typename Stream>
  asio::awaitable<bool> HandleRequest(Stream& stream, tcp::socket& socket, Worker& worker,
                                      const Listener& listener,
                                      const http::request<http::string_body>& request,
                                      const std::string& peer, const std::string& tls_version,
                                      const std::string& tls_cipher, bool keep_alive) {
    const config::Connection& connection = *listener.connection;
    const std::string_view authorization(request[http::field::authorization].data(),
                                         request[http::field::authorization].size());
    const std::string_view bearer = BearerOf(authorization);
    Outcome early;
    store::GrantRecord grant;
    absl::Status redeem_status;
    if (bearer.empty()) {
      early = Refuse(401, "missing_credential",
                     "send the grant's credential as Authorization: Bearer tgb_<grant>_<secret>");
    } else if (grants == nullptr) {
      early = Refuse(503, "unavailable", "grants are not enabled on this gateway (no api section)");
    } else {
      absl::StatusOr<store::GrantRecord> redeemed =
          grants->RedeemBearer(bearer, connection.name, Cat("http request from ", peer));
      redeem_status = redeemed.status();
      if (redeemed.ok()) {
        grant = *std::move(redeemed);
      } else if (absl::IsUnauthenticated(redeemed.status()) ||
                 absl::IsNotFound(redeemed.status())) {
        early = Refuse(401, "invalid_credential", MessageOf(redeemed.status()));
      } else if (absl::IsPermissionDenied(redeemed.status())) {
        early = Refuse(403, "grant_unusable", MessageOf(redeemed.status()));
      } else {
        spdlog::error("http connection={} peer={}: redeeming a grant failed: {}", connection.name,
                      peer, MessageOf(redeemed.status()));
        early = Refuse(503, "unavailable", "the state store is unavailable; try again");
      }
    }
    error_code ec;
    if (!early.error.empty() && early.status != 503) {
      // A refused bearer is evidence: why, from where, the grant if the bearer names one.
      const std::string reason = bearer.empty() ? std::string("missing_credential")
                                                : grants::RefusalReasonOf(redeem_status);
      RecordAuthFailure(recorder, audit::AuthPath::kHttp, reason, connection.name, peer, bearer);
    }
    if (!early.error.empty()) {
      spdlog::info("http connection={} peer={} {} {}: {} {}", connection.name, peer,
                   LogEscape(SV(request.method_string()), 16), LogEscape(SV(request.target()), 200),
                   early.status, early.error);
      auto response = MakeResponse(early, request.version(), keep_alive, "");
      co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
      co_return !ec;
    }

    const ExchangeRecording::Start start{.session_id = NewSessionId(),
                                         .kind = "http",
                                         .client_address = peer,
                                         .tls_version = tls_version,
                                         .tls_cipher = tls_cipher};
    OneShotSession session({.grants = *grants, .recorder = recorder, .approvals = approvals}, grant,
                           start, worker.context.get_executor());
    const std::string& session_id = session.id();
    const std::string request_text = RequestText(request);
    Outcome outcome;
    if (session.begin_refusal()) {
      outcome = *session.begin_refusal();
      keep_alive = false;
    } else if (absl::Status recorded = session.Request(request_text); !recorded.ok()) {
      outcome = Refuse(503, "recording_unavailable",
                       "the request could not be recorded (audit log unavailable)");
    } else {
      const std::string method(request.method_string());
      const std::string target(request.target());
      outcome = co_await Exchange(worker, connection, grant, &method, &target, session.cut());
    }
    std::string bytes;
    if (session.begin_refusal()) {
      bytes = Serialize(MakeResponse(outcome, request.version(), false, ""));
    } else {
      // A named serializer: g++ 12 mishandles temporaries that live across a co_await.
      const OneShotSession::Serializer serialize = [&](const Outcome& o, bool replaced) {
        return Serialize(MakeResponse(o, request.version(), keep_alive && !replaced, session_id));
      };
      const std::function<bool()> client_gone = [&socket] { return PeerGone(socket); };
      OneShotSession::Answer answer =
          co_await session.Release(std::move(outcome), serialize, client_gone);
      keep_alive = keep_alive && !answer.replaced;
      outcome = std::move(answer.outcome);
      bytes = std::move(answer.bytes);
    }
    spdlog::info("session={} http connection={} grant={} trace={} {} {}: {}{}{}", session_id,
                 connection.name, grant.id, LogEscape(grant.trace_id, 64),
                 LogEscape(SV(request.method_string()), 16), LogEscape(SV(request.target()), 200),
                 outcome.status, outcome.error.empty() ? "" : " ", outcome.error);
    // The session's end is on record before the caller hears the answer, so whoever reads the
    // recording after the answer finds the whole session.
    session.End(outcome, request_text.size());
    co_await asio::async_write(stream, asio::buffer(bytes),
                               asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec && keep_alive;
  }

  template <typename Stream>
  asio::awaitable<void> Serve(Stream& stream, tcp::socket& socket, Worker& worker,
                              const Listener& listener, const std::string& peer,
                              const std::string& tls_version, const std::string& tls_cipher) {
    const config::Connection& connection = *listener.connection;
    beast::flat_buffer buffer;
    for (int served = 0; served < kMaxRequestsPerConnection && !stopping.load(); ++served) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(connection.max_request_bytes);
      parser.body_limit(connection.max_request_bytes);
      error_code ec;
      {
        SocketDeadline deadline(socket.get_executor(), socket,
                                served == 0 ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  kFirstRequestTimeout)
                                            : connection.idle_timeout);
        co_await http::async_read(stream, buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec) {
        if (ec == http::error::end_of_stream || ec == asio::error::eof ||
            ec == asio::error::operation_aborted || ec == asio::ssl::error::stream_truncated ||
            ec == asio::error::connection_reset || ec == asio::error::bad_descriptor) {
          co_return;
        }
        Outcome refusal = Refuse(400, "bad_request", Cat("malformed HTTP request: ", ec.message()));
        if (ec == http::error::body_limit) {
          refusal =
              Refuse(413, "payload_too_large",
                     Cat("the request is larger than ", connection.max_request_bytes, " bytes"));
        } else if (ec == http::error::header_limit) {
          refusal = Refuse(
              431, "request_header_fields_too_large",
              Cat("the request headers are larger than ", connection.max_request_bytes, " bytes"));
        }
        auto response = MakeResponse(refusal, 11, false, "");
        co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
        co_return;
      }
      const http::request<http::string_body>& request = parser.get();
      const bool keep_alive = request.keep_alive() && served + 1 < kMaxRequestsPerConnection;
      ++active;
      const bool more = co_await HandleRequest(stream, socket, worker, listener, request, peer,
                                               tls_version, tls_cipher, keep_alive);
      --active;
      if (!more) {
        co_return;
      }
    }
  }

  asio::awaitable<void> Connection(tcp::socket socket, Worker& worker, const Listener& listener) {
    auto self = shared_from_this();
    error_code ec;
    const tcp::endpoint remote = socket.remote_endpoint(ec);
    const std::string peer = ec ? std::string("unknown") : remote.address().to_string();
    socket.set_option(tcp::no_delay(true), ec);
    if (tls_server) {
      beast::ssl_stream<tcp::socket&> stream(socket, *tls_server);
      {
        SocketDeadline deadline(
            socket.get_executor(), socket,
            std::chrono::duration_cast<std::chrono::milliseconds>(kFirstRequestTimeout));
        co_await stream.async_handshake(asio::ssl::stream_base::server,
                                        asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec) {
        spdlog::debug("http peer={}: TLS handshake failed: {}", peer, ec.message());
        co_return;
      }
      const SSL* ssl = stream.native_handle();
      co_await Serve(stream, socket, worker, listener, peer, SSL_get_version(ssl),
                     SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
      co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
    } else if (listener.connection->require_tls) {
      // Never reached: Start() refuses require_tls without a certificate.
      co_return;
    } else {
      co_await Serve(socket, socket, worker, listener, peer, "", "");
    }
    socket.shutdown(tcp::socket::shutdown_both, ec);
  }

  asio::awaitable<void> Accept(Listener& listener) {
    auto self = shared_from_this();
    for (;;) {
      Worker& worker = NextWorker();
      error_code ec;
      tcp::socket socket = co_await listener.acceptor->async_accept(
          worker.context, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (!listener.acceptor->is_open() || stopping.load()) {
          co_return;
        }
        spdlog::warn("http connection {}: accept failed: {}", listener.connection->name,
                     ec.message());
        continue;
      }
      asio::co_spawn(worker.context, Connection(std::move(socket), worker, listener),
                     asio::detached);
    }
  }

  // `request` lives in the spawning lambda (Fetch) until this completes.
  asio::awaitable<FetchResult> RunFetch(Worker& worker, const FetchRequest& request) {
    FetchResult result;
    const ExchangeRecording::Start start{
        .session_id = NewSessionId(), .kind = "fetch", .client_address = request.client_address};
    OneShotSession session({.grants = *grants, .recorder = recorder, .approvals = approvals},
                           request.grant, start, worker.context.get_executor());
    const config::Connection* connection = ConnectionNamed(request.grant.connection);
    if (session.begin_refusal() || connection == nullptr ||
        connection->type != config::ConnectionType::kHttp) {
      result.outcome = session.begin_refusal()
                           ? *session.begin_refusal()
                           : Refuse(503, "unavailable", "the connection is not an http connection");
      session.End(result.outcome, 0);
      co_return result;
    }
    result.session_id = session.id();
    const std::string request_text =
        Cat("GET /v1/connections/", connection->name, "/traces/", request.grant.trace_id,
            " (one-call fetch, api request ", request.request_id, ", route ",
            connection->fetch_route, ")");
    Outcome outcome;
    if (absl::Status recorded = session.Request(request_text); !recorded.ok()) {
      outcome = Refuse(503, "recording_unavailable",
                       "the fetch could not be recorded (audit log unavailable)");
    } else {
      outcome =
          co_await Exchange(worker, *connection, request.grant, nullptr, nullptr, session.cut());
    }
    const OneShotSession::Serializer body = [](const Outcome& o, bool) { return o.body; };
    OneShotSession::Answer answer = co_await session.Release(std::move(outcome), body);
    result.outcome = std::move(answer.outcome);
    result.approval_id = std::move(answer.approval_id);
    session.End(result.outcome, request_text.size());
    co_return result;
  }

  std::shared_ptr<const config::Config> config;
  grants::GrantService* grants;
  audit::Recorder* recorder;
  approvals::ApprovalService* approvals;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::unique_ptr<Listener>> listeners;
  std::map<std::string, std::shared_ptr<asio::ssl::context>, std::less<>> tls_clients;
  std::unique_ptr<asio::ssl::context> tls_server;
  std::atomic<size_t> next_worker{0};
  std::atomic<size_t> active{0};
  std::atomic<bool> stopping{false};
  std::vector<std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>>> guards;
};

HttpProxy::HttpProxy(std::shared_ptr<const config::Config> config, prometheus::Registry& registry,
                     grants::GrantService* grants, audit::Recorder* recorder,
                     approvals::ApprovalService* approvals)
    : impl_(std::make_shared<Impl>(std::move(config), grants, recorder, approvals)) {
  (void)registry;
}

HttpProxy::~HttpProxy() { Shutdown(); }

absl::Status HttpProxy::Start(unsigned workers) {
  Impl& impl = *impl_;
  std::vector<const config::Connection*> http_connections;
  for (const config::Connection& c : impl.config->connections) {
    if (c.type == config::ConnectionType::kHttp) {
      http_connections.push_back(&c);
    }
  }
  if (http_connections.empty()) {
    return absl::OkStatus();
  }
  if (!impl.config->tls.cert_file.empty()) {
    absl::StatusOr<std::unique_ptr<asio::ssl::context>> tls =
        MakeServerTlsContext(impl.config->tls.cert_file, impl.config->tls.key_file);
    if (!tls.ok()) {
      return tls.status();
    }
    impl.tls_server = *std::move(tls);
  }
  for (unsigned i = 0; i < std::max(1u, workers); ++i) {
    impl.workers.push_back(std::make_unique<Impl::Worker>());
  }
  for (const config::Connection* c : http_connections) {
    if (c->require_tls && !impl.tls_server) {
      return absl::InvalidArgumentError(
          Cat("connection ", c->name, ": require_tls needs tls.cert_file and tls.key_file"));
    }
    absl::StatusOr<std::shared_ptr<asio::ssl::context>> client =
        MakeUpstreamTlsContext(c->upstream);
    if (!client.ok()) {
      return absl::InvalidArgumentError(
          Cat("connection ", c->name, ": ", MessageOf(client.status())));
    }
    impl.tls_clients.emplace(c->name, *std::move(client));
    error_code ec;
    const auto address = asio::ip::make_address(c->listen.host, ec);
    if (ec) {
      return absl::InvalidArgumentError(Cat("connection ", c->name, ": listen host \"",
                                            c->listen.host, "\" is not an IP address"));
    }
    auto listener = std::make_unique<Impl::Listener>();
    listener->connection = c;
    listener->acceptor = std::make_unique<tcp::acceptor>(impl.workers[0]->context);
    const tcp::endpoint endpoint(address, c->listen.port);
    tcp::acceptor& acceptor = *listener->acceptor;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(Cat("connection ", c->name, ": cannot listen on ",
                                        c->listen.host, ":", c->listen.port, ": ", ec.message()));
    }
    listener->endpoint = acceptor.local_endpoint(ec);
    spdlog::info("http connection {}: listening on {}://{}:{} for {}", c->name,
                 impl.tls_server ? "https" : "http", listener->endpoint.address().to_string(),
                 listener->endpoint.port(), c->upstream.url);
    impl.listeners.push_back(std::move(listener));
  }
  for (auto& listener : impl.listeners) {
    asio::co_spawn(impl.workers[0]->context, impl.Accept(*listener), asio::detached);
  }
  for (auto& worker : impl.workers) {
    impl.guards.push_back(
        std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
            worker->context.get_executor()));
    worker->thread = std::thread([context = &worker->context] { context->run(); });
  }
  return absl::OkStatus();
}

std::optional<tcp::endpoint> HttpProxy::endpoint(std::string_view name) const {
  for (const auto& listener : impl_->listeners) {
    if (listener->connection->name == name) {
      return listener->endpoint;
    }
  }
  return std::nullopt;
}

asio::awaitable<FetchResult> HttpProxy::Fetch(const FetchRequest& request) {
  if (impl_->workers.empty()) {
    FetchResult result;
    result.outcome = Refuse(503, "unavailable", "no http connection is running");
    co_return result;
  }
  Impl::Worker& worker = impl_->NextWorker();
  // The fetch's coroutine is created on the worker's thread (inside the spawned function), so
  // its frame lives and dies with that worker; the function holds only pointers.
  Impl* impl = impl_.get();
  const FetchRequest* fetch = &request;
  const auto run = [impl, &worker, fetch] { return impl->RunFetch(worker, *fetch); };
  co_return co_await asio::co_spawn(worker.context, run, asio::use_awaitable);
}

void HttpProxy::StopAccepting() {
  impl_->stopping = true;
  for (auto& listener : impl_->listeners) {
    asio::post(impl_->workers[0]->context, [acceptor = listener->acceptor.get()] {
      error_code ignored;
      acceptor->close(ignored);
    });
  }
}

size_t HttpProxy::active_requests() const { return impl_->active.load(); }

void HttpProxy::Shutdown() {
  if (impl_->workers.empty()) {
    return;
  }
  StopAccepting();
  impl_->guards.clear();
  for (auto& worker : impl_->workers) {
    worker->context.stop();
  }
  for (auto& worker : impl_->workers) {
    if (worker->thread.joinable()) {
      worker->thread.join();
    }
  }
  impl_->listeners.clear();
  // Destroying the io_contexts destroys the coroutines still suspended on them (they hold
  // references to the Impl), then the clients.
  for (auto& worker : impl_->workers) {
    worker->clients.clear();
  }
  impl_->workers.clear();
}

}  // namespace tracegate::httpproxy
