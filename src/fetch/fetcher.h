#pragma once
// The one-call fetch (GET /v1/connections/{name}/traces/{trace_id}) after the API redeemed
// the grant: runs the connection's declared fetch — its fetch_query on the PostgreSQL backend
// (libpq, on a small pool of blocking threads) or its fetch_route on the HTTP trace store
// (httpproxy) — checks the rows or the JSON against the granted trace, masks, and lives the
// life every one-shot grant session lives (httpproxy::OneShotSession: recorded as audit kind
// "fetch", cut when the grant ends, held for approvers when the rule holds results, the
// grant's use ended).
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "approvals/approvals.h"
#include "audit/recorder.h"
#include "config/config.h"
#include "grants/grants.h"
#include "httpapi/api.h"
#include "httpproxy/proxy.h"
#include "sql/gate.h"

namespace tracegate::fetch {

class TraceFetcher {
 public:
  // Everything must outlive the fetcher; `recorder` may be null (recording disabled), and so
  // may `approvals` (then no rule holds results).
  TraceFetcher(std::shared_ptr<const config::Config> config, grants::GrantService& grants,
               audit::Recorder* recorder, approvals::ApprovalService* approvals,
               httpproxy::HttpProxy& proxy);
  ~TraceFetcher();

  // Completes on the caller's executor.
  // `job` must stay alive until the returned awaitable completes.
  boost::asio::awaitable<httpapi::FetchOutcome> Fetch(const httpapi::FetchJob& job);

 private:
  boost::asio::awaitable<httpapi::FetchOutcome> FetchPostgres(const httpapi::FetchJob& job);
  // The connection's statement gate, built on first use (null if it cannot be).
  std::shared_ptr<const sql::Gate> GateFor(const config::Connection& connection);

  std::shared_ptr<const config::Config> config_;
  grants::GrantService& grants_;
  audit::Recorder* recorder_;
  approvals::ApprovalService* approvals_;
  httpproxy::HttpProxy& proxy_;
  std::mutex gates_mu_;
  std::map<std::string, std::shared_ptr<const sql::Gate>, std::less<>> gates_;
  boost::asio::thread_pool pool_{2};  // libpq blocks
  // The sessions of PostgreSQL fetches: one thread, so no strand is needed (Boost 1.74's
  // any_io_executor over a strand freed it under a completing co_spawn; ASan).
  boost::asio::io_context sessions_;
  using SessionsGuard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
  std::unique_ptr<SessionsGuard> sessions_guard_;
  std::thread sessions_thread_;
};

}  // namespace tracegate::fetch
