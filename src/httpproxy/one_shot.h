#pragma once
// The life of a grant session that answers in one go: a request on an HTTP listener, the
// one-call fetch over an HTTP or a PostgreSQL connection, and every such path to come (MCP).
// Each follows the same steps, here and nowhere else:
//
//   Begin     the session's start and the grant's in_use are recorded; the grant is watched
//             (GrantCut), so a revocation or expiry cuts the request wherever it waits;
//   Request   what was asked is recorded (never a credential);
//   Release   the answer the exchange produced is
//               - held for approvers when masking found at least the rule's
//                 hold_if_masked_at_least values (approvals::ApprovalService::OpenForResponse;
//                 the request waits, on its executor, until an approver decides, the request
//                 expires or the grant ends), then released or replaced by 403 result_withheld;
//               - recorded, and in strict mode made durable, before anything of it goes out;
//               - replaced by the grant's refusal if the grant ended meanwhile (the refusal is
//                 recorded after the answer it replaces), or by 503 recording_unavailable if
//                 it could not be recorded (nothing unrecorded goes out);
//   End       the grant's use ends (a single-use grant is spent) and the end is recorded,
//             before the caller hears the answer.
//
// psql sessions hold through pgproxy::Session, in the same approval requests and words
// (approvals/result_hold.h). All calls on the executor given to Begin.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "approvals/approvals.h"
#include "audit/recorder.h"
#include "grants/grants.h"
#include "httpproxy/exchange.h"
#include "httpproxy/grant_cut.h"
#include "httpproxy/recording.h"

namespace tracegate::httpproxy {

class OneShotSession {
 public:
  struct Services {
    grants::GrantService& grants;
    audit::Recorder* recorder = nullptr;              // null: recording disabled
    approvals::ApprovalService* approvals = nullptr;  // null: a holding rule fails closed
  };
  // What Release settled on: the outcome and the bytes that stand for it (as recorded).
  struct Answer {
    Outcome outcome;
    std::string bytes;
    bool replaced = false;    // not the exchange's own answer (held back, cut, unrecorded)
    std::string approval_id;  // the held result's approval request, if it was held
  };
  // How an outcome is put on the wire (and so in the record); `replaced` as in Answer.
  using Serializer = std::function<std::string(const Outcome&, bool replaced)>;

  // `grant` was just redeemed (in_use). If the session cannot be recorded, begin_refusal()
  // says so and End() still ends the grant's use.
  OneShotSession(const Services& services, const store::GrantRecord& grant,
                 const ExchangeRecording::Start& start, boost::asio::any_io_executor executor);
  OneShotSession(const OneShotSession&) = delete;
  OneShotSession& operator=(const OneShotSession&) = delete;

  [[nodiscard]] const std::optional<Outcome>& begin_refusal() const { return begin_refusal_; }
  [[nodiscard]] const std::string& id() const { return id_; }
  [[nodiscard]] GrantCut& cut() { return cut_; }

  // Records the request as accepted. An error: refuse with 503 recording_unavailable.
  absl::Status Request(std::string_view text);

  // `outcome` is taken by reference (see proxy.h on g++ 12 and by-value coroutine parameters).
  // `client_gone` (may be empty) says whether the caller has left: a held result then stops
  // waiting and its request is cancelled.
  boost::asio::awaitable<Answer> Release(Outcome&& outcome, const Serializer& serialize,
                                         const std::function<bool()>& client_gone = {});

  void End(const Outcome& outcome, uint64_t bytes_from_client);

 private:
  // Holds `outcome` for approvers if the rule says so; the outcome to release after.
  boost::asio::awaitable<Outcome> HoldIfNeeded(Outcome&& outcome, std::string& approval_id,
                                               const std::function<bool()>& client_gone);

  Services services_;
  store::GrantRecord grant_;
  std::string id_;
  GrantCut cut_;
  std::optional<ExchangeRecording> recording_;
  std::optional<Outcome> begin_refusal_;
  bool ended_ = false;
};

}  // namespace tracegate::httpproxy
