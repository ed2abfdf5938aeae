#include "pgproxy/gateway.h"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <deque>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_format.h"
#include "common/server_tls.h"
#include "common/session_id.h"
#include "common/status.h"
#include "common/strings.h"
#include "pgproxy/cancel.h"
#include "pgproxy/metrics.h"
#include "pgproxy/pg_error.h"
#include "pgproxy/pool.h"
#include "pgproxy/session.h"

namespace tracegate::pgproxy {

struct Gateway::Worker {
  asio::io_context context{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{context.get_executor()};
  std::vector<std::unique_ptr<BackendPool>> pools;  // one per connection, config order
  std::unordered_map<Session*, std::shared_ptr<Session>> sessions;
  asio::steady_timer reaper{context};
  std::thread thread;
};

struct Gateway::Listener {
  ConnectionRuntime* runtime;
  size_t index;  // connection index in config order
  std::unique_ptr<tcp::acceptor> acceptor;
};

struct Gateway::State {
  std::unique_ptr<ProxyMetrics> metrics;
  std::unique_ptr<asio::ssl::context> client_tls;
  std::deque<asio::ssl::context> backend_tls;
  std::deque<ConnectionRuntime> runtimes;
  std::vector<std::unique_ptr<Worker>> workers;
  // SCRAM's PBKDF2 for backend logins, off the workers' loops. Declared after `workers` so it
  // is joined first: a derivation still running posts its result to a live io_context.
  asio::thread_pool scram_pool{1};
  std::vector<Listener> listeners;
  CancelRegistry cancels;
  // Clients connected and not yet authenticated, all listeners (limits.max_unauthenticated).
  std::atomic<uint32_t> unauthenticated{0};
  std::atomic<size_t> next_worker{0};
};

namespace {

absl::Status ConfigureBackendTls(const config::Backend& backend, asio::ssl::context& ctx) {
  ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                  asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                  asio::ssl::context::no_tlsv1_1);
  // The backend is ours to choose: the same modern suites the listeners offer.
  if (SSL_CTX_set_cipher_list(ctx.native_handle(), kTls12Ciphers) != 1) {
    return absl::InternalError("the TLS library accepts none of the TLS 1.2 cipher suites");
  }
  if (backend.tls != config::BackendTlsMode::kVerifyFull) {
    ctx.set_verify_mode(asio::ssl::verify_none);  // `require`: encrypted, not authenticated
    return absl::OkStatus();
  }
  error_code ec;
  ctx.set_verify_mode(asio::ssl::verify_peer, ec);
  if (backend.ca_file.empty()) {
    ctx.set_default_verify_paths(ec);
  } else {
    ctx.load_verify_file(backend.ca_file, ec);
  }
  if (ec) {
    return absl::InvalidArgumentError(Cat("backend.ca_file ", backend.ca_file, ": ", ec.message()));
  }
  return absl::OkStatus();
}

// Loud at startup: a link that is neither verified TLS nor local lets anyone on the path
// read traces, or answer in the backend's place (issue 18, items 6 and 7).
void WarnAboutPlainLinks(const config::Connection& conn) {
  const config::Backend& backend = conn.backend;
  if (backend.tls != config::BackendTlsMode::kVerifyFull && !config::IsLoopbackHost(backend.host)) {
    spdlog::warn(
        "connection {}: the backend link to {}:{} is {} and not local: anyone on the path can "
        "read the traces{}; set backend.tls: verify-full with backend.ca_file",
        conn.name, backend.host, backend.port,
        backend.tls == config::BackendTlsMode::kRequire ? "TLS without certificate verification"
                                                        : "unencrypted",
        backend.tls == config::BackendTlsMode::kRequire
            ? " (SCRAM-SHA-256-PLUS still keeps an impostor from logging in)"
            : " and answer in the trace store's place");
  }
  if (!conn.require_tls && !config::IsLoopbackHost(conn.listen.host)) {
    spdlog::warn(
        "connection {}: listens on {} with require_tls: false: clients may read traces "
        "without TLS",
        conn.name, conn.listen.host);
  }
}

std::string RandomKey() {
  std::string key(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), 32) != 1) {
    std::abort();  // no CSPRNG: nothing secret can be generated safely
  }
  return key;
}

// Answers a connection over a limit the way PostgreSQL answers one over max_connections:
// an ErrorResponse (libpq shows it whatever it sent first), then close. Nothing is read.
awaitable<void> Refuse(tcp::socket socket, std::string_view sqlstate, std::string message) {
  pgwire::Buffer out;
  pgwire::EncodeError("FATAL", sqlstate, message, out);
  error_code ec;
  co_await asio::async_write(socket, asio::buffer(out), Redirect(ec));
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

}  // namespace

Gateway::Gateway(std::shared_ptr<const config::Config> config, prometheus::Registry& registry,
                 grants::GrantService* grants, audit::Recorder* recorder,
                 approvals::ApprovalService* approvals)
    : config_(std::move(config)),
      registry_(registry),
      grants_(grants),
      recorder_(recorder),
      approvals_(approvals),
      state_(std::make_unique<State>()) {}

Gateway::~Gateway() {
  if (!state_->workers.empty() && state_->workers.front()->thread.joinable()) {
    Shutdown();
  }
}

absl::Status Gateway::Start() {
  const config::Config& cfg = *config_;
  State& st = *state_;
  st.metrics = std::make_unique<ProxyMetrics>(registry_);
  if (!cfg.tls.cert_file.empty()) {
    absl::StatusOr<std::unique_ptr<asio::ssl::context>> tls =
        MakeServerTlsContext(cfg.tls.cert_file, cfg.tls.key_file);
    if (!tls.ok()) {
      return tls.status();
    }
    st.client_tls = std::move(*tls);
  }

  pgwire::Limits limits{.max_startup_length = cfg.limits.max_startup_length,
                        .max_message_length = cfg.limits.max_message_length};
  if (recorder_ != nullptr) {
    // Every frame the gateway accepts must fit one audit record (otherwise recording it fails
    // and the session ends with 58030): the message limit is at most what a record holds.
    const auto recordable = static_cast<uint32_t>(audit::MaxFramesPerRecord() - 5);
    if (limits.max_message_length > recordable) {
      spdlog::info(
          "limits.max_message_length {} is above what one audit record holds; Postgres "
          "messages are limited to {} bytes",
          limits.max_message_length, recordable);
      limits.max_message_length = recordable;
    }
  }
  const pgwire::Limits auth_limits{
      .max_startup_length = cfg.limits.max_startup_length,
      .max_message_length =
          std::min(cfg.limits.max_auth_message_length, cfg.limits.max_message_length)};
  const std::string salt_key = RandomKey();
  for (const config::Connection& conn : cfg.connections) {
    if (conn.type != config::ConnectionType::kPostgres) {
      continue;  // src/httpproxy serves http connections
    }
    ConnectionRuntime& runtime = st.runtimes.emplace_back();
    runtime.config = &conn;
    runtime.metrics = st.metrics->ForConnection(conn.name);
    runtime.unknown_user_salt_key = salt_key;
    runtime.client_tls = st.client_tls.get();
    runtime.limits = limits;
    runtime.auth_limits = auth_limits;
    runtime.unauthenticated = &st.unauthenticated;
    runtime.grants = grants_;
    runtime.recorder = recorder_;
    runtime.approvals = approvals_;
    absl::StatusOr<std::shared_ptr<const sql::Gate>> gate = sql::Gate::Create(conn.gate);
    if (!gate.ok()) {
      return absl::InvalidArgumentError(
          Cat("connection ", conn.name, " gate: ", MessageOf(gate.status())));
    }
    runtime.gate = *std::move(gate);
    runtime.maskers.insert(cfg.maskers.begin(), cfg.maskers.end());
    for (const config::StaticUser& user : conn.users) {
      absl::StatusOr<pgwire::ScramVerifier> verifier =
          pgwire::ParseScramVerifier(user.scram_verifier);
      if (!verifier.ok()) {
        return absl::InvalidArgumentError(
            Cat("connection ", conn.name, " user ", user.name, ": ", MessageOf(verifier.status())));
      }
      runtime.users.emplace(user.name, std::move(*verifier));
    }
    WarnAboutPlainLinks(conn);
    runtime.backend = BackendTarget{
        .connection = &conn, .tls = nullptr, .limits = limits, .scram_pool = &st.scram_pool};
    if (conn.backend.tls != config::BackendTlsMode::kDisable) {
      asio::ssl::context& ctx = st.backend_tls.emplace_back(asio::ssl::context::tls_client);
      if (absl::Status s = ConfigureBackendTls(conn.backend, ctx); !s.ok()) {
        return s;
      }
      runtime.backend.tls = &ctx;
    }
  }

  const unsigned workers =
      cfg.workers > 0 ? cfg.workers : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < workers; ++i) {
    auto worker = std::make_unique<Worker>();
    for (ConnectionRuntime& runtime : st.runtimes) {
      // Split the pool limit over the workers, rounding up so each gets at least one.
      const uint32_t share = (runtime.config->pool.max_size + workers - 1) / workers;
      worker->pools.push_back(
          std::make_unique<BackendPool>(worker->context, runtime.backend, runtime.metrics, share));
    }
    st.workers.push_back(std::move(worker));
  }

  // Bind everything before serving anything: a half-started gateway is worse than none.
  for (size_t i = 0; i < st.runtimes.size(); ++i) {
    const config::Connection& conn = *st.runtimes[i].config;
    error_code ec;
    auto address = asio::ip::make_address(conn.listen.host, ec);
    if (ec) {
      return absl::InvalidArgumentError(Cat("connection ", conn.name, ": listen host \"",
                                            conn.listen.host, "\" is not an IP address"));
    }
    auto acceptor = std::make_unique<tcp::acceptor>(st.workers[0]->context);
    tcp::endpoint endpoint(address, conn.listen.port);
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(Cat("connection ", conn.name, ": cannot listen on ",
                                        conn.listen.host, ":", conn.listen.port, ": ",
                                        ec.message()));
    }
    st.listeners.push_back(Listener{&st.runtimes[i], i, std::move(acceptor)});
  }

  accepting_ = true;
  for (Listener& listener : st.listeners) {
    asio::co_spawn(st.workers[0]->context, AcceptLoop(listener), asio::detached);
    spdlog::info("connection {}: listening on {}", listener.runtime->config->name,
                 Cat(listener.acceptor->local_endpoint().address().to_string(), ":",
                     listener.acceptor->local_endpoint().port()));
  }
  for (auto& worker : st.workers) {
    Worker* w = worker.get();
    asio::co_spawn(
        w->context,
        [w]() -> awaitable<void> {
          for (;;) {
            w->reaper.expires_after(std::chrono::seconds(1));
            error_code ec;
            co_await w->reaper.async_wait(Redirect(ec));
            if (ec) {
              co_return;
            }
            for (auto& pool : w->pools) {
              pool->Reap();
            }
          }
        },
        asio::detached);
    w->thread = std::thread([w] { w->context.run(); });
  }
  return absl::OkStatus();
}

std::optional<tcp::endpoint> Gateway::endpoint(std::string_view name) const {
  for (const Listener& listener : state_->listeners) {
    if (listener.runtime->config->name == name) {
      error_code ec;
      return listener.acceptor->local_endpoint(ec);
    }
  }
  return std::nullopt;
}

asio::any_io_executor Gateway::aux_executor() {
  return state_->workers.front()->context.get_executor();
}

awaitable<void> Gateway::AcceptLoop(Listener& listener) {
  State& st = *state_;
  for (;;) {
    Worker& worker = *st.workers[st.next_worker++ % st.workers.size()];
    error_code ec;
    tcp::socket socket = co_await listener.acceptor->async_accept(worker.context, Redirect(ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !listener.acceptor->is_open()) {
        co_return;
      }
      // EMFILE and friends: keep serving the sessions we have; retry shortly.
      spdlog::warn("connection {}: accept failed: {}", listener.runtime->config->name,
                   ec.message());
      asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
      co_await pause.async_wait(Redirect(ec));
      continue;
    }
    ConnectionRuntime& runtime = *listener.runtime;
    const std::string& name = runtime.config->name;
    if (runtime.open_sessions.load() >= runtime.config->max_sessions) {
      runtime.metrics.sessions_refused->Increment();
      spdlog::warn("connection {}: refusing a client: {} sessions open (max_sessions)", name,
                   runtime.config->max_sessions);
      asio::co_spawn(worker.context,
                     Refuse(std::move(socket), sqlstate::kTooManyConnections,
                            Cat("tracegate: sorry, too many clients already on connection \"", name,
                                "\" (max_sessions ", runtime.config->max_sessions, ")")),
                     asio::detached);
      continue;
    }
    // Only this loop counts clients in (one acceptor thread), so load-then-add cannot
    // overshoot; sessions count themselves out from their workers.
    const uint32_t max_unauthenticated = config_->limits.max_unauthenticated;
    if (st.unauthenticated.load() >= max_unauthenticated) {
      runtime.metrics.sessions_refused->Increment();
      runtime.metrics.preauth_refused->Increment();
      spdlog::warn(
          "connection {}: refusing a client: {} clients are still authenticating "
          "(limits.max_unauthenticated)",
          name, max_unauthenticated);
      asio::co_spawn(
          worker.context,
          Refuse(std::move(socket), sqlstate::kTooManyConnections,
                 Cat("tracegate: sorry, too many clients are authenticating (", max_unauthenticated,
                     ", limits.max_unauthenticated); try again shortly")),
          asio::detached);
      continue;
    }
    // Random, not counted: ids stay unique across restarts and replicas sharing one index.
    const std::string id = NewSessionId('p');
    if (id.empty()) {
      spdlog::error("connection {}: refusing a client: no randomness for a session id", name);
      asio::co_spawn(worker.context,
                     Refuse(std::move(socket), sqlstate::kInternalError,
                            "tracegate: cannot start a session right now (no randomness)"),
                     asio::detached);
      continue;
    }
    ++runtime.open_sessions;
    ++st.unauthenticated;
    ++active_sessions_;
    asio::post(worker.context, [this, &worker, &listener, id,
                                socket = std::move(socket)]() mutable {
      auto session = std::make_shared<Session>(std::move(socket), *listener.runtime,
                                               *worker.pools[listener.index], state_->cancels, id);
      worker.sessions.emplace(session.get(), session);
      asio::co_spawn(worker.context, session->Run([this, &worker, &listener](Session* done) {
        worker.sessions.erase(done);
        --listener.runtime->open_sessions;
        --active_sessions_;
      }),
                     asio::detached);
    });
  }
}

void Gateway::StopAccepting() {
  accepting_ = false;
  for (Listener& listener : state_->listeners) {
    asio::post(state_->workers[0]->context, [&listener] {
      error_code ignored;  // closing an acceptor that failed is not worth reporting
      listener.acceptor->close(ignored);
    });
  }
}

void Gateway::Shutdown() {
  StopAccepting();
  for (auto& worker : state_->workers) {
    Worker* w = worker.get();
    asio::post(w->context, [w] {
      for (auto& [raw, session] : w->sessions) {
        session->Terminate(PgError(absl::StatusCode::kUnavailable, sqlstate::kAdminShutdown,
                                   "tracegate: terminating the session: the gateway is "
                                   "shutting down"));
      }
      w->reaper.cancel();
    });
  }
  // Let sessions write their goodbye, then drop idle backends and stop the loops.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (active_sessions_ > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& worker : state_->workers) {
    Worker* w = worker.get();
    asio::post(w->context, [w] {
      for (auto& pool : w->pools) {
        pool->CloseIdle();
      }
      w->guard.reset();
      w->context.stop();
    });
  }
  for (auto& worker : state_->workers) {
    if (worker->thread.joinable()) {
      worker->thread.join();
    }
  }
}

}  // namespace tracegate::pgproxy
