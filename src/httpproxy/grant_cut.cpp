#include "httpproxy/grant_cut.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "common/status.h"
#include "common/strings.h"

namespace tracegate::httpproxy {

namespace {

bool Ends(store::GrantState state) {
  return state == store::GrantState::kRevoked || state == store::GrantState::kExpired;
}

std::string Why(const std::string& grant_id, store::GrantState state) {
  return Cat("grant ", grant_id,
             state == store::GrantState::kRevoked ? " was revoked" : " has expired",
             " while its request was in flight; nothing of the store's answer was released");
}

}  // namespace

void GrantCut::State::End(store::GrantState state) {
  if (ended) {
    return;
  }
  ended = state;
  cut.Cut(Why(grant_id, state));
}

GrantCut::GrantCut(grants::GrantService& grants, const store::GrantRecord& grant,
                   boost::asio::any_io_executor executor)
    : state_(std::make_shared<State>()) {
  state_->grant_id = grant.id;
  watch_ = grants.WatchGrant(
      grant.id, [state = state_, executor = std::move(executor)](store::GrantState now) {
        // Approvals announce approved/denied too; only an end cuts.
        if (Ends(now)) {
          boost::asio::post(executor, [state, now] { state->End(now); });
        }
      });
  absl::StatusOr<store::GrantRecord> current = grants.Get(grant.id);
  if (!current.ok()) {
    // Fail closed: a grant whose state cannot be read is not served.
    spdlog::error("grant={}: reading its state after redemption: {}", grant.id,
                  MessageOf(current.status()));
    state_->unreadable = true;
    state_->End(store::GrantState::kRevoked);
  } else if (Ends(current->state)) {
    state_->End(current->state);
  }
}

GrantCut::~GrantCut() { watch_.reset(); }

std::optional<Outcome> GrantCut::Refusal() const {
  if (!state_->ended) {
    return std::nullopt;
  }
  if (state_->unreadable) {
    return Refuse(503, "unavailable", "the grant's state cannot be read (state store unavailable)");
  }
  const bool revoked = *state_->ended == store::GrantState::kRevoked;
  return Refuse(403, revoked ? "grant_revoked" : "grant_expired",
                Why(state_->grant_id, *state_->ended));
}

}  // namespace tracegate::httpproxy
