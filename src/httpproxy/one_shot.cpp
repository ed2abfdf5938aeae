#include "httpproxy/one_shot.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "absl/strings/str_join.h"
#include "approvals/result_hold.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"

namespace tracegate::httpproxy {

namespace asio = boost::asio;

namespace {

// A held result looks at the store every kPollTicks ticks, besides being woken the moment a
// decision is made in this process (a decision on another replica, an expiry the sweeper
// settled late); every tick it looks whether its client is still there.
constexpr auto kTick = std::chrono::seconds(1);
constexpr int kPollTicks = 5;
// How long past the request's expiry a held result waits for the sweeper to settle it.
constexpr auto kExpiryGrace = std::chrono::seconds(2);

}  // namespace

OneShotSession::OneShotSession(const Services& services, const store::GrantRecord& grant,
                               const ExchangeRecording::Start& start,
                               asio::any_io_executor executor)
    : services_(services),
      grant_(grant),
      id_(start.session_id),
      cut_(services.grants, grant, std::move(executor)) {
  absl::StatusOr<ExchangeRecording> recording =
      id_.empty() ? absl::StatusOr<ExchangeRecording>(absl::UnavailableError("no randomness"))
                  : ExchangeRecording::Begin(services_.recorder, grant_, start);
  if (!recording.ok()) {
    spdlog::error("session={} grant={}: recording failed, refusing the request: {}", id_, grant_.id,
                  MessageOf(recording.status()));
    begin_refusal_ = Refuse(503, "recording_unavailable",
                            "the request could not be recorded (audit log unavailable)");
    return;
  }
  recording_ = *std::move(recording);
}

absl::Status OneShotSession::Request(std::string_view text) {
  if (!recording_) {
    return absl::FailedPreconditionError("the session was not recorded from its start");
  }
  return recording_->Request(text);
}

asio::awaitable<Outcome> OneShotSession::HoldIfNeeded(Outcome&& outcome, std::string& approval_id,
                                                      const std::function<bool()>& client_gone) {
  const uint64_t found = outcome.masked.Total();
  if (!outcome.error.empty() || found == 0) {
    co_return outcome;
  }
  if (services_.approvals == nullptr) {
    co_return outcome;  // no approvals on this gateway: no rule can hold (config check)
  }
  const approvals::ApprovalTerms terms = services_.approvals->TermsFor(grant_.rule);
  if (!approvals::MustHold(terms, found)) {
    co_return outcome;
  }
  const uint64_t max_bytes = services_.approvals->settings().hold_max_bytes;
  if (outcome.body.size() > max_bytes) {
    co_return Refuse(403, "hold_too_large",
                     Cat("a result that needs approval is larger than approvals.hold_max_bytes (",
                         max_bytes, " bytes); it was discarded"));
  }
  const std::string detail = approvals::HeldDetail(found, terms.hold_if_masked_at_least);
  absl::StatusOr<store::ApprovalRequest> opened =
      services_.approvals->OpenForResponse(grant_, id_, detail);
  if (absl::IsResourceExhausted(opened.status())) {
    // approvals.max_pending_per_requester: the requester already waits on enough.
    co_return Refuse(429, "too_many_pending",
                     Cat("the result needs approval, and you already have the most pending "
                         "requests allowed; it was discarded (",
                         MessageOf(opened.status()), ")"));
  }
  if (!opened.ok()) {
    spdlog::error("session={} grant={}: cannot open an approval for a held result: {}", id_,
                  grant_.id, MessageOf(opened.status()));
    co_return Refuse(503, "approval_unavailable",
                     "the result needs approval, which cannot be asked for right now; it was "
                     "discarded");
  }
  approval_id = opened->id;
  spdlog::info("session={} grant={}: the result waits for approval {} by {}", id_, grant_.id,
               approval_id, absl::StrJoin(opened->approver_groups, ", "));

  // Woken by a decision in this process, by the grant's end, or by the poll.
  struct Wait {
    explicit Wait(const asio::any_io_executor& executor) : timer(executor) {}
    asio::steady_timer timer;
    std::optional<store::ApprovalRequest> settled;
  };
  auto executor = co_await asio::this_coro::executor;
  auto wait = std::make_shared<Wait>(executor);
  std::unique_ptr<approvals::ApprovalService::Watch> watch =
      services_.approvals->WaitFor(approval_id, [wait, executor](store::ApprovalRequest request) {
        asio::post(executor, [wait, request = std::move(request)]() mutable {
          wait->settled = std::move(request);
          wait->timer.cancel();
        });
      });
  const CutScope scope(cut_.cut(), [wait] { wait->timer.cancel(); });
  const auto give_up = std::chrono::steady_clock::now() +
                       std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           opened->expires_at - std::chrono::system_clock::now()) +
                       kExpiryGrace;
  bool client_left = false;
  for (int tick = 1; !wait->settled && !cut_.cut()->cut(); ++tick) {
    if (std::chrono::steady_clock::now() >= give_up) {
      services_.approvals->Cancel(approval_id, "not decided before it expired");
      break;
    }
    wait->timer.expires_at(std::min(give_up, std::chrono::steady_clock::now() + kTick));
    boost::system::error_code ec;
    co_await wait->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!wait->settled && client_gone && client_gone()) {
      client_left = true;
      break;
    }
    if (!wait->settled && !cut_.cut()->cut() && tick % kPollTicks == 0) {
      if (absl::StatusOr<approvals::ApprovalView> now = services_.approvals->Get(approval_id);
          now.ok() && now->request.state != store::ApprovalState::kPending) {
        wait->settled = now->request;
      }
    }
  }
  watch.reset();
  if (client_left) {
    services_.approvals->Cancel(approval_id, "the client left");
    spdlog::info("session={} grant={}: the client left while its result waited for {}", id_,
                 grant_.id, approval_id);
    // Nobody reads this answer; the record says why the session ended.
    co_return Refuse(499, "client_left", "the client left while the result waited for approval");
  }
  if (std::optional<Outcome> refusal = cut_.Refusal()) {
    services_.approvals->Cancel(approval_id, "the grant ended while the result was held");
    co_return *std::move(refusal);
  }
  if (wait->settled && wait->settled->state == store::ApprovalState::kApproved) {
    spdlog::info("session={} grant={}: held result released ({} approved)", id_, grant_.id,
                 approval_id);
    co_return outcome;
  }
  store::ApprovalRequest settled = wait->settled.value_or(*opened);
  if (!wait->settled) {
    settled.state = store::ApprovalState::kExpired;
  }
  const std::string why = approvals::WithheldWhy(*services_.approvals, settled);
  spdlog::info("session={} grant={}: held result discarded: {}", id_, grant_.id,
               LogEscape(why, 1024));
  co_return Refuse(403, "result_withheld", Cat("the result was withheld (", detail, "): ", why));
}

asio::awaitable<OneShotSession::Answer> OneShotSession::Release(
    Outcome&& outcome, const Serializer& serialize, const std::function<bool()>& client_gone) {
  Answer answer;
  const std::string exchange_error = outcome.error;
  answer.outcome = co_await HoldIfNeeded(std::move(outcome), answer.approval_id, client_gone);
  answer.replaced = answer.outcome.error != exchange_error;
  if (std::optional<Outcome> refusal = cut_.Refusal();
      refusal && answer.outcome.error != refusal->error) {
    answer.outcome = *std::move(refusal);
    answer.replaced = true;
  }
  answer.bytes = serialize(answer.outcome, answer.replaced);
  absl::Status released =
      recording_ ? recording_->Response(answer.bytes) : absl::FailedPreconditionError("unrecorded");
  if (released.ok()) {
    released = co_await recording_->Durable();
  }
  std::optional<Outcome> refusal = cut_.Refusal();
  if (released.ok() && refusal && answer.outcome.error != refusal->error) {
    // The grant ended while the answer was being made durable: it stays unsent, and the
    // refusal sent instead is recorded after it.
    answer.outcome = *std::move(refusal);
    answer.replaced = true;
    answer.bytes = serialize(answer.outcome, true);
    released = recording_->Response(answer.bytes);
    if (released.ok()) {
      released = co_await recording_->Durable();
    }
  }
  if (!released.ok()) {
    // Nothing of an answer that is not on record goes out.
    spdlog::error("session={}: recording failed, withholding the answer: {}", id_,
                  MessageOf(released));
    answer.outcome = Refuse(503, "recording_unavailable",
                            "the answer could not be recorded (audit log unavailable)");
    answer.replaced = true;
    answer.bytes = serialize(answer.outcome, true);
  }
  co_return answer;
}

void OneShotSession::End(const Outcome& outcome, uint64_t bytes_from_client) {
  if (ended_) {
    return;
  }
  ended_ = true;
  const std::string state = EndGrantUse(services_.grants, grant_, outcome, id_);
  if (recording_) {
    recording_->End(outcome, state, bytes_from_client);
  }
}

}  // namespace tracegate::httpproxy
