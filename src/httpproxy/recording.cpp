#include "httpproxy/recording.h"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/session_id.h"
#include "common/status.h"
#include "common/strings.h"

namespace tracegate::httpproxy {

namespace asio = boost::asio;

std::string NewSessionId() { return tracegate::NewSessionId('h'); }

absl::StatusOr<ExchangeRecording> ExchangeRecording::Begin(audit::Recorder* recorder,
                                                           const store::GrantRecord& grant,
                                                           const Start& start) {
  ExchangeRecording out;
  out.recorder_ = recorder;
  if (recorder == nullptr) {
    return out;
  }
  audit::SessionInfo info;
  info.id = start.session_id;
  info.kind = start.kind;
  info.connection = grant.connection;
  info.user = Cat("tgb_", grant.id);
  info.grant_id = grant.id;
  info.trace_id = grant.trace_id;
  info.issuer = grant.issuer;
  info.subject = grant.subject;
  info.client_id = grant.client_id;
  info.groups = grant.groups;
  info.rule = grant.rule;
  info.masking_profile = grant.masking_profile;
  info.client_address = start.client_address;
  info.tls_version = start.tls_version;
  info.tls_cipher = start.tls_cipher;
  info.started_at = std::chrono::system_clock::now();
  absl::StatusOr<std::unique_ptr<audit::Recorder::Session>> began = recorder->Begin(info);
  if (!began.ok()) {
    return began.status();
  }
  out.session_ = *std::move(began);
  absl::StatusOr<uint64_t> event = out.session_->GrantEvent(
      store::GrantStateName(grant.state) == std::string_view("in_use")
          ? "active"
          : store::GrantStateName(grant.state),
      "in_use", Cat("session ", start.session_id, " from ", start.client_address),
      "redeemed by this request");
  if (!event.ok()) {
    return event.status();
  }
  return out;
}

absl::Status ExchangeRecording::Request(std::string_view text) {
  if (!session_) {
    return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> seq = session_->ClientFrames(text);
  return seq.status();
}

absl::Status ExchangeRecording::Response(std::string_view bytes) {
  bytes_to_client_ += bytes.size();
  if (!session_) {
    return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> seq = session_->ServerFrames(bytes);
  if (!seq.ok()) {
    return seq.status();
  }
  last_seq_ = *seq;
  return absl::OkStatus();
}

asio::awaitable<absl::Status> ExchangeRecording::Durable() {
  if (!session_ || recorder_->durability() != audit::Durability::kStrict) {
    co_return absl::OkStatus();
  }
  auto executor = co_await asio::this_coro::executor;
  audit::LogWriter& log = recorder_->log();
  const uint64_t seq = last_seq_;
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(absl::Status)>(
      [&log, seq, executor](auto handler) {
        log.WhenDurable(seq, [executor, handler = std::move(handler)](absl::Status done) mutable {
          asio::post(executor, [handler = std::move(handler), done = std::move(done)]() mutable {
            std::move(handler)(std::move(done));
          });
        });
      },
      asio::use_awaitable);
}

void ExchangeRecording::End(const Outcome& outcome, std::string_view grant_state,
                            uint64_t bytes_from_client) {
  if (!session_) {
    return;
  }
  (void)session_->GrantEvent("in_use", grant_state, "tracegate",
                             Cat("session ", session_->id(), " ended"));
  audit::SessionOutcome end;
  // A grant that ended under the request is not the caller's violation (as a Postgres session
  // cut by a revocation ends in "error", 57P01).
  const bool grant_ended = outcome.error == "grant_revoked" || outcome.error == "grant_expired";
  const bool violation = !grant_ended && (outcome.status == 403 || outcome.status == 405);
  end.outcome = outcome.error.empty() ? "completed" : violation ? "violation" : "error";
  end.reason = outcome.error.empty() ? std::string() : Cat(outcome.error, ": ", outcome.message);
  end.statements = 1;
  end.blocked = violation ? 1 : 0;
  end.bytes_to_client = bytes_to_client_;
  end.bytes_from_client = bytes_from_client;
  end.masked.insert(outcome.masked.by_entity.begin(), outcome.masked.by_entity.end());
  end.masking_errors = outcome.masking_error ? 1 : 0;
  if (absl::Status ended = session_->End(end); !ended.ok()) {
    spdlog::error("session={}: recording the session's end failed: {}", session_->id(),
                  MessageOf(ended));
  }
  session_.reset();
}

std::string EndGrantUse(grants::GrantService& grants, const store::GrantRecord& grant,
                        const Outcome& outcome, std::string_view session_id) {
  const std::string how = outcome.error.empty()
                              ? Cat("session ", session_id, " completed")
                              : Cat("session ", session_id, " refused: ", outcome.error);
  if (absl::Status ended = grants.EndSession(grant.id, how); !ended.ok()) {
    spdlog::log(absl::IsFailedPrecondition(ended) ? spdlog::level::debug : spdlog::level::warn,
                "session={} grant={}: ending the grant's use: {}", session_id, grant.id,
                MessageOf(ended));
  }
  absl::StatusOr<store::GrantRecord> now = grants.Get(grant.id);
  return now.ok() ? std::string(store::GrantStateName(now->state)) : std::string("unknown");
}

}  // namespace tracegate::httpproxy
