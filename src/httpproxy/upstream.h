#pragma once
// The gateway's HTTP/1.1 client for one HTTP trace store, on one event loop: keep-alive
// connections (plain or TLS with chain and host-name verification), the gateway's own
// credential added to every request, bounded responses, and errors sorted into what the
// caller is told (502 / 504).
//
// Requests are built here from scratch (method, target, Host, the store credential, Accept,
// Accept-Encoding), so nothing the caller sent — its Authorization, cookies, hop-by-hop
// headers — can reach the store.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"

namespace tracegate::httpproxy {

struct UpstreamResponse {
  unsigned status = 0;
  std::string content_type;
  std::string body;  // decoded (Content-Encoding undone), at most max_response_bytes
  bool reused_connection = false;
};

// A TLS client context for `upstream` (null for http://): TLS 1.2+, the CA bundle or the
// system's, peer verification unless verify_tls is false.
absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> MakeUpstreamTlsContext(
    const config::HttpUpstream& upstream);

class UpstreamClient {
 public:
  // `upstream` must outlive the client; all calls on `executor`'s thread.
  UpstreamClient(boost::asio::any_io_executor executor, const config::HttpUpstream& upstream,
                 std::shared_ptr<boost::asio::ssl::context> tls);
  ~UpstreamClient();
  UpstreamClient(const UpstreamClient&) = delete;
  UpstreamClient& operator=(const UpstreamClient&) = delete;

  // GET prefix + `target`. Errors, each with a message fit for the caller (no credential):
  //   Unavailable        cannot connect, TLS failed, the connection broke, malformed response
  //   DeadlineExceeded   no complete response within upstream.timeout
  //   ResourceExhausted  the response (raw or decoded) is larger than max_response_bytes
  //   FailedPrecondition a Content-Encoding that cannot be decoded
  //   InvalidArgument    a corrupt encoded body
  // A kept-alive connection the store had closed is retried once on a new one.
  boost::asio::awaitable<absl::StatusOr<UpstreamResponse>> Get(std::string target);

  // Closes idle connections (shutdown).
  void CloseIdle();
  [[nodiscard]] size_t idle_connections() const;

 private:
  struct Conn;
  boost::asio::awaitable<absl::StatusOr<std::unique_ptr<Conn>>> Connect(
      std::chrono::steady_clock::time_point deadline);
  boost::asio::awaitable<absl::StatusOr<UpstreamResponse>> Exchange(
      Conn& conn, const std::string& request, std::chrono::steady_clock::time_point deadline,
      bool& keep, bool& nothing_read);

  boost::asio::any_io_executor executor_;
  const config::HttpUpstream& upstream_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  std::string authorization_name_;   // header carrying the credential
  std::string authorization_value_;  // never logged
  std::vector<std::unique_ptr<Conn>> idle_;
};

}  // namespace tracegate::httpproxy
