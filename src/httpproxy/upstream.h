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
#include <functional>
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

class CutScope;

// Ends an exchange from outside while it waits (its grant was revoked): Cut() closes the
// socket, or abandons the name lookup, the upstream exchange is waiting on, and Get returns
// Cancelled with `reason` at once; a held result's wait for approvers (OneShotSession) ends
// too. A cut exchange's connection is never reused. Used on the client's thread only.
class ExchangeCut {
 public:
  void Cut(std::string reason);
  [[nodiscard]] bool cut() const { return cut_; }
  [[nodiscard]] const std::string& reason() const { return reason_; }

 private:
  friend class UpstreamClient;
  friend class CutScope;
  bool cut_ = false;
  std::string reason_;
  std::function<void()> abort_;  // what the exchange waits on now (set by the client)
};

// Points `cut` (may be null) at what the exchange waits on for as long as the scope lives.
// A cut that came before the scope does not call `abort`: check cut() after entering it.
class CutScope {
 public:
  CutScope(ExchangeCut* cut, std::function<void()> abort) : cut_(cut) {
    if (cut_ != nullptr) {
      cut_->abort_ = std::move(abort);
    }
  }
  ~CutScope() {
    if (cut_ != nullptr) {
      cut_->abort_ = nullptr;
    }
  }
  CutScope(const CutScope&) = delete;
  CutScope& operator=(const CutScope&) = delete;

 private:
  ExchangeCut* cut_;
};

class UpstreamClient {
 public:
  // `upstream` must outlive the client; all calls on `executor`'s thread.
  UpstreamClient(boost::asio::any_io_executor executor, const config::HttpUpstream& upstream,
                 std::shared_ptr<boost::asio::ssl::context> tls);
  ~UpstreamClient();
  UpstreamClient(const UpstreamClient&) = delete;
  UpstreamClient& operator=(const UpstreamClient&) = delete;

  // GET prefix + `target`. Errors, each with a message fit for the caller (no credential):
  //   Unavailable        cannot resolve (within connect_timeout), connect or do TLS, the
  //                      connection broke, malformed response
  //   DeadlineExceeded   no complete response within upstream.timeout
  //   ResourceExhausted  the response (raw or decoded) is larger than max_response_bytes
  //   FailedPrecondition a Content-Encoding that cannot be decoded
  //   InvalidArgument    a corrupt or truncated encoded body; 101 or too many 1xx answers
  //   Cancelled          `cut` was cut
  // Interim 1xx answers are skipped. Only a 2xx body is read and decoded: for any other status
  // `body` is empty and the connection is not reused. A connection is kept alive only when
  // its answer's end was not the end of the connection (no close-delimited body). A
  // kept-alive connection the store had closed is retried once on a new one.
  // connect_timeout covers the name lookup, TCP connect and TLS handshake together.
  boost::asio::awaitable<absl::StatusOr<UpstreamResponse>> Get(std::string target,
                                                               ExchangeCut* cut = nullptr);

  // Closes idle connections (shutdown).
  void CloseIdle();
  [[nodiscard]] size_t idle_connections() const;

 private:
  struct Conn;
  boost::asio::awaitable<absl::StatusOr<std::unique_ptr<Conn>>> Connect(
      std::chrono::steady_clock::time_point deadline, ExchangeCut* cut);
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
