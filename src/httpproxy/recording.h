#pragma once
// One recorded HTTP exchange (a listener request or a one-call fetch) as an audit session:
// kSessionStart, the grant's in_use event, the request as accepted (never its credential),
// the response as sent, the grant's end state and kSessionEnd. Strict durability: the caller
// awaits Durable() before releasing the response, as the Postgres relay does.
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "audit/recorder.h"
#include "grants/grants.h"
#include "httpproxy/exchange.h"
#include "store/state_store.h"

namespace tracegate::httpproxy {

// A fresh random session id: "h" + 16 hex digits.
std::string NewSessionId();

class ExchangeRecording {
 public:
  struct Start {
    std::string session_id;
    std::string kind;  // "http" | "fetch"
    std::string client_address;
    std::string tls_version;
    std::string tls_cipher;
  };
  // `recorder` null: nothing is recorded and every call succeeds.
  static absl::StatusOr<ExchangeRecording> Begin(audit::Recorder* recorder,
                                                 const store::GrantRecord& grant,
                                                 const Start& start);
  absl::Status Request(std::string_view text);
  // Records the bytes about to be sent; then await Durable() in strict mode.
  absl::Status Response(std::string_view bytes);
  // Completes once the response's record is on disk (immediately unless strict).
  boost::asio::awaitable<absl::Status> Durable();
  // Records the grant's state now and the session's end.
  void End(const Outcome& outcome, std::string_view grant_state, uint64_t bytes_from_client);

 private:
  audit::Recorder* recorder_ = nullptr;
  std::unique_ptr<audit::Recorder::Session> session_;
  uint64_t last_seq_ = 0;
  uint64_t bytes_to_client_ = 0;
};

// Ends the grant's use after the exchange (logged, never fatal: an expired or revoked grant
// already has its final state) and returns the grant's state for the record.
std::string EndGrantUse(grants::GrantService& grants, const store::GrantRecord& grant,
                        const Outcome& outcome, std::string_view session_id);

}  // namespace tracegate::httpproxy
