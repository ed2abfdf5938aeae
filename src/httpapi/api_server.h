#pragma once
// Serves an ApiService over HTTP/1.1, with TLS unless the config turns it off (local demos).
//
// The API runs on its own threads, not on the Postgres workers: validating a token may fetch
// an issuer's keys and issuing a grant waits for the state store's fsync, and neither may
// stall a data-path session. Each connection is bounded: 24 KiB of headers, api.max_body_bytes
// of body, 10 s to send a request, keep-alive for at most 100 requests.
//
// Threads (issue 17 item 5): two I/O threads only accept, read, write and wait; every call
// into ApiService, which may block (SQLite's fsync, the risk query, token introspection, a JWKS
// fetch), runs on a pool of api.handler_threads while the connection's coroutine waits without
// holding an I/O thread. ApiService lets at most api.max_slow_calls handlers (fewer than the
// pool) wait on a slow dependency at once, so quick requests always find a handler thread.
// The client address is the TCP peer, or what a trusted proxy forwarded (client_address.h).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "config/config.h"
#include "httpapi/api.h"

namespace tracegate::httpapi {

// Runs `handle` and always yields an answer: an exception it throws (a handler bug, a JSON
// writer refusing a byte) becomes a 500 `internal_error` JSON answer carrying the request id,
// and the exception's text goes to the log with that id, never to the caller. Every request
// the server reads goes through this, so no failure leaves a connection without a reply.
boost::asio::awaitable<ApiResponse> AnswerAlways(
    std::string request_id, std::function<boost::asio::awaitable<ApiResponse>()> handle);

// Runs a copy of `work` on `pool` and resumes the awaiting coroutine on its own executor with
// the answer; an exception `work` throws is rethrown there. Pass a named `work` (g++ 12 and
// temporaries across a co_await, see api_server.cpp).
boost::asio::awaitable<ApiResponse> OnHandlerThread(boost::asio::thread_pool& pool,
                                                    const std::function<ApiResponse()>& work);

// Runs a one-call fetch (src/fetch), waiting on I/O without holding an API thread.
// The job must stay alive until the awaitable completes.
using Fetcher = std::function<boost::asio::awaitable<FetchOutcome>(const FetchJob&)>;

class ApiServer {
 public:
  // `fetcher` may be empty: one-call fetches then answer 503.
  ApiServer(std::shared_ptr<const config::Config> config, ApiService& service,
            Fetcher fetcher = {});
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Loads the TLS certificate (if api.tls), binds api.listen and starts `threads` threads.
  [[nodiscard]] absl::Status Start(unsigned threads = 2);
  [[nodiscard]] boost::asio::ip::tcp::endpoint endpoint() const;
  // Closes the listener and open connections, and joins the threads.
  void Stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tracegate::httpapi
