#include "fetch/fetcher.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>

#include "approvals/backend_query.h"
#include "common/on_pool.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "httpproxy/exchange.h"
#include "httpproxy/one_shot.h"
#include "httpproxy/recording.h"
#include "sql/gate.h"

namespace tracegate::fetch {

namespace asio = boost::asio;

namespace {

httpapi::FetchOutcome ToFetchOutcome(const httpproxy::Outcome& outcome, std::string session_id,
                                     std::string approval_id) {
  httpapi::FetchOutcome out;
  out.approval_id = std::move(approval_id);
  out.status = outcome.status;
  out.body = outcome.body;
  out.error = outcome.error;
  out.masked.insert(outcome.masked.by_entity.begin(), outcome.masked.by_entity.end());
  out.session_id = std::move(session_id);
  return out;
}

// The backend's answer to the fetch query, checked and masked.
httpproxy::Outcome QueryTrace(const config::Connection& connection, const sql::Gate& gate,
                              const store::GrantRecord& grant,
                              const std::shared_ptr<const config::Config>& config) {
  using httpproxy::Refuse;
  const config::NamedQuery* query = nullptr;
  for (const config::NamedQuery& q : connection.gate.queries) {
    if (q.name == connection.fetch_query) {
      query = &q;
    }
  }
  if (query == nullptr) {
    return Refuse(
        503, "unavailable",
        Cat("connection ", connection.name, " has no query named ", connection.fetch_query));
  }
  // The statement gate holds the fetch query to what a grant's psql session may run: every
  // trace table pinned, here to $1, which is bound to the granted trace below.
  const sql::Verdict verdict =
      gate.Check(query->sql, grant.trace_id, !grant.masking_profile.empty());
  if (!verdict.allowed() || verdict.trace_params != std::vector<int>{1}) {
    spdlog::error("fetch connection={} grant={}: the fetch query {} is not a read pinned to $1: {}",
                  connection.name, grant.id, query->name,
                  verdict.allowed() ? "its trace tables are not pinned to $1"
                                    : LogEscape(verdict.ErrorMessage(), 1024));
    return Refuse(503, "fetch_query_refused",
                  "the connection's fetch query is not allowed by its statement gate");
  }
  const std::chrono::milliseconds timeout = connection.backend.statement_timeout.count() > 0
                                                ? connection.backend.statement_timeout
                                                : std::chrono::milliseconds(30000);
  absl::StatusOr<approvals::QueryRows> rows =
      approvals::QueryBackend(connection.backend, query->sql, grant.trace_id, timeout, "fetch",
                              Cat("cannot fetch trace ", grant.trace_id, ": "),
                              {.max_rows = grant.max_rows, .max_bytes = grant.max_bytes});
  if (!rows.ok()) {
    if (absl::IsResourceExhausted(rows.status())) {
      return Refuse(403, "cap_exceeded", MessageOf(rows.status()));
    }
    // libpq's and the server's text (host, port, user, SQL context) is for the log only.
    spdlog::warn("fetch connection={} grant={}: {}", connection.name, grant.id,
                 LogEscape(MessageOf(rows.status()), 1024));
    return Refuse(502, "fetch_failed", "the trace store could not be read; nothing was returned");
  }
  absl::StatusOr<std::string> json = approvals::RowsToJson(*rows);
  if (!json.ok()) {
    spdlog::warn("fetch connection={} grant={}: the rows cannot be sent: {}", connection.name,
                 grant.id, LogEscape(MessageOf(json.status()), 1024));
    return Refuse(502, "bad_backend_response",
                  "the trace store's answer cannot be sent as JSON; nothing was returned");
  }
  httpproxy::Outcome out;
  if (grant.masking_profile.empty()) {
    out.body = *std::move(json);
    return out;
  }
  // One scanner per pool thread and profile (Hyperscan scratch is per thread).
  thread_local std::map<std::string, masking::Scanner, std::less<>> scanners;
  auto it = scanners.find(grant.masking_profile);
  if (it == scanners.end()) {
    auto masker = config->maskers.find(grant.masking_profile);
    if (masker == config->maskers.end()) {
      httpproxy::Outcome refused =
          Refuse(503, "masking_unavailable",
                 Cat("masking profile \"", grant.masking_profile, "\" is no longer configured"));
      refused.masking_error = true;
      return refused;
    }
    absl::StatusOr<masking::Scanner> scanner = masking::Scanner::Create(masker->second);
    if (!scanner.ok()) {
      httpproxy::Outcome refused = Refuse(503, "masking_unavailable", MessageOf(scanner.status()));
      refused.masking_error = true;
      return refused;
    }
    it = scanners.emplace(grant.masking_profile, *std::move(scanner)).first;
  }
  std::string masked;
  absl::StatusOr<bool> changed = it->second.MaskJson(
      *json, {.column = query->name, .kind = masking::ValueKind::kJson}, masked, out.masked);
  if (!changed.ok()) {
    spdlog::error("fetch connection={} grant={}: the rows could not be masked: {}", connection.name,
                  grant.id, LogEscape(MessageOf(changed.status()), 1024));
    httpproxy::Outcome refused =
        Refuse(502, "masking_failed", "the rows could not be masked; nothing was returned");
    refused.masking_error = true;
    return refused;
  }
  out.body = *changed ? std::move(masked) : *std::move(json);
  return out;
}

}  // namespace

TraceFetcher::TraceFetcher(std::shared_ptr<const config::Config> config,
                           grants::GrantService& grants, audit::Recorder* recorder,
                           approvals::ApprovalService* approvals, httpproxy::HttpProxy& proxy)
    : config_(std::move(config)),
      grants_(grants),
      recorder_(recorder),
      approvals_(approvals),
      proxy_(proxy),
      sessions_guard_(std::make_unique<SessionsGuard>(sessions_.get_executor())),
      sessions_thread_([this] { sessions_.run(); }) {}

TraceFetcher::~TraceFetcher() {
  // Sessions still held for approvers end with the gateway (their API connections are gone).
  sessions_guard_.reset();
  sessions_.stop();
  if (sessions_thread_.joinable()) {
    sessions_thread_.join();
  }
  pool_.join();
}

std::shared_ptr<const sql::Gate> TraceFetcher::GateFor(const config::Connection& connection) {
  std::lock_guard lock(gates_mu_);
  auto it = gates_.find(connection.name);
  if (it == gates_.end()) {
    absl::StatusOr<std::shared_ptr<const sql::Gate>> gate = sql::Gate::Create(connection.gate);
    if (!gate.ok()) {
      spdlog::error("fetch connection={}: gate: {}", connection.name, MessageOf(gate.status()));
      return nullptr;
    }
    it = gates_.emplace(connection.name, *std::move(gate)).first;
  }
  return it->second;
}

asio::awaitable<httpapi::FetchOutcome> TraceFetcher::Fetch(const httpapi::FetchJob& job) {
  if (job.type == config::ConnectionType::kHttp) {
    const httpproxy::FetchRequest request{
        .grant = job.grant, .client_address = job.client_address, .request_id = job.request_id};
    httpproxy::FetchResult result = co_await proxy_.Fetch(request);
    co_return ToFetchOutcome(result.outcome, std::move(result.session_id),
                             std::move(result.approval_id));
  }
  // The session lives on the fetcher's own one-thread event loop (a hold waits on a timer
  // there), as an HTTP fetch lives on a proxy worker; only the blocking libpq query goes to
  // the pool (FetchPostgres). The function holds only pointers (see proxy.h), and is named,
  // not a temporary across the co_await.
  const httpapi::FetchJob* pending = &job;
  const auto run = [this, pending] { return FetchPostgres(*pending); };
  co_return co_await asio::co_spawn(sessions_, run, asio::use_awaitable);
}

asio::awaitable<httpapi::FetchOutcome> TraceFetcher::FetchPostgres(const httpapi::FetchJob& job) {
  using httpproxy::OneShotSession;
  using httpproxy::Outcome;
  using httpproxy::Refuse;
  const store::GrantRecord& grant = job.grant;
  // Named locals, not temporaries: g++ 12 mishandles temporaries that live across a
  // co_await in the same full-expression (see proxy.h).
  const asio::any_io_executor executor = co_await asio::this_coro::executor;
  const httpproxy::ExchangeRecording::Start start{.session_id = httpproxy::NewSessionId(),
                                                  .kind = "fetch",
                                                  .client_address = job.client_address};
  OneShotSession session({.grants = grants_, .recorder = recorder_, .approvals = approvals_}, grant,
                         start, executor);
  const config::Connection* connection = nullptr;
  for (const config::Connection& c : config_->connections) {
    if (c.name == grant.connection) {
      connection = &c;
    }
  }
  if (session.begin_refusal() || connection == nullptr) {
    const Outcome refused =
        session.begin_refusal()
            ? *session.begin_refusal()
            : Refuse(503, "unavailable", "the connection is no longer configured");
    session.End(refused, 0);
    co_return ToFetchOutcome(refused, "", "");
  }
  const std::string request_text =
      Cat("GET /v1/connections/", grant.connection, "/traces/", grant.trace_id,
          " (one-call fetch, api request ", job.request_id, ", fetch_query ",
          connection->fetch_query, ")");
  std::shared_ptr<const sql::Gate> gate = GateFor(*connection);
  Outcome outcome;
  if (absl::Status recorded = session.Request(request_text); !recorded.ok()) {
    outcome = Refuse(503, "recording_unavailable",
                     "the fetch could not be recorded (audit log unavailable)");
  } else if (gate == nullptr) {
    outcome = Refuse(503, "unavailable", "the connection's statement gate is unusable");
  } else {
    // libpq blocks: the query runs on the pool and the session resumes here. Named, not a
    // temporary across the co_await (common/on_pool.h).
    const std::function<Outcome()> query = [connection, &gate, &grant, this] {
      return QueryTrace(*connection, *gate, grant, config_);
    };
    outcome = co_await OnPool<Outcome>(pool_, query);
  }
  const OneShotSession::Serializer body = [](const Outcome& o, bool) { return o.body; };
  OneShotSession::Answer answer = co_await session.Release(std::move(outcome), body);
  spdlog::info("session={} fetch connection={} grant={} trace={}: {}{}{}", session.id(),
               grant.connection, grant.id, LogEscape(grant.trace_id, 64), answer.outcome.status,
               answer.outcome.error.empty() ? "" : " ", answer.outcome.error);
  session.End(answer.outcome, request_text.size());
  co_return ToFetchOutcome(answer.outcome, session.id(), std::move(answer.approval_id));
}

}  // namespace tracegate::fetch
