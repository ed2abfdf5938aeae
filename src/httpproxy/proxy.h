#pragma once
// The HTTP side of `tracegate serve`: one listener per `type: http` connection, worker threads
// each running an event loop with its own keep-alive clients to the trace stores (so a
// connection to a store is only ever used by one thread).
//
// A request carries `Authorization: Bearer tgb_<grant>_<secret>`. The gateway redeems the
// grant (one use, atomically), matches the request against the connection's routes for the
// granted trace (httproute), asks the store with its own credential, checks that the answer
// holds only the granted trace, masks it, records the exchange (audit kind "http") and ends
// the grant's use — a single-use grant is then spent. Every refusal is JSON
// {"error", "message"} with a precise status (400, 401, 403, 404, 405, 413, 431, 502, 503,
// 504). A refused request still uses up the credential: whoever holds it gets one try.
#include <prometheus/registry.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "approvals/approvals.h"
#include "audit/recorder.h"
#include "config/config.h"
#include "grants/grants.h"
#include "httpproxy/exchange.h"
#include "store/state_store.h"

namespace tracegate::httpproxy {

// A grant's fetch through its connection's fetch_route, for the one-call API.
struct FetchRequest {
  store::GrantRecord grant;  // redeemed (in_use)
  std::string client_address;
  std::string request_id;  // the API request, for the record
};

struct FetchResult {
  Outcome outcome;  // body: the masked store body (not yet wrapped) or an error object
  std::string session_id;
  std::string approval_id;  // the approval the result was held for, if it was
};

class HttpProxy {
 public:
  // `grants`, `recorder` and `approvals` (any may be null) must outlive the proxy. Results
  // a rule holds (hold_if_masked_at_least) wait for `approvals` (OneShotSession).
  HttpProxy(std::shared_ptr<const config::Config> config, prometheus::Registry& registry,
            grants::GrantService* grants, audit::Recorder* recorder,
            approvals::ApprovalService* approvals);
  ~HttpProxy();
  HttpProxy(const HttpProxy&) = delete;
  HttpProxy& operator=(const HttpProxy&) = delete;

  // Binds a listener per http connection and starts `workers` threads (none when the config
  // has no http connection). Fails, starting nothing, if a listener cannot bind or TLS
  // material cannot be loaded.
  [[nodiscard]] absl::Status Start(unsigned workers);

  // Where the http connection `name` listens (port 0 resolved); nullopt if it is not one.
  [[nodiscard]] std::optional<boost::asio::ip::tcp::endpoint> endpoint(std::string_view name) const;

  // One-call fetch on an http connection: runs on a proxy worker, completes on the caller's
  // executor. Ends the grant's use and records the session like a listener request.
  // `request` must stay alive until the returned awaitable completes. (Coroutine parameters
  // are references here on purpose: g++ 12 has been seen to relocate a by-value class
  // parameter bitwise on its way into a coroutine frame, which breaks strings that keep
  // their characters inline.)
  boost::asio::awaitable<FetchResult> Fetch(const FetchRequest& request);

  // Graceful shutdown: close the listeners (requests in flight finish), then stop the
  // workers and join them.
  void StopAccepting();
  [[nodiscard]] size_t active_requests() const;
  void Shutdown();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tracegate::httpproxy
