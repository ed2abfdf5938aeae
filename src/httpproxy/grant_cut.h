#pragma once
// Cuts an HTTP request in flight when its grant is revoked or expires (invariant 3: a grant's
// life bounds its sessions'). The grant is watched with GrantService::WatchGrant, the
// mechanism the Postgres sessions use; the callback runs on whichever thread ended the grant
// and only posts to the request's executor, where the request is marked ended and its
// upstream exchange is cut (ExchangeCut: the store's socket closed, the lookup abandoned).
// Whoever releases an answer asks Refusal() first: nothing of the store's answer goes out
// once the grant has ended.
#include <boost/asio/any_io_executor.hpp>
#include <memory>
#include <optional>
#include <string>

#include "grants/grants.h"
#include "httpproxy/exchange.h"
#include "httpproxy/upstream.h"
#include "store/state_store.h"

namespace tracegate::httpproxy {

class GrantCut {
 public:
  // Watches `grant` (already redeemed), then reads its state once, so that a revocation
  // between the redemption and the watch counts too. All other calls on `executor`'s thread.
  GrantCut(grants::GrantService& grants, const store::GrantRecord& grant,
           boost::asio::any_io_executor executor);
  ~GrantCut();
  GrantCut(const GrantCut&) = delete;
  GrantCut& operator=(const GrantCut&) = delete;

  // For UpstreamClient::Get.
  [[nodiscard]] ExchangeCut* cut() { return &state_->cut; }
  // 403 grant_revoked / grant_expired once the grant has ended (503 unavailable if its state
  // could not be read after redemption), else nullopt.
  [[nodiscard]] std::optional<Outcome> Refusal() const;

 private:
  struct State {
    std::string grant_id;
    std::optional<store::GrantState> ended;  // revoked or expired
    bool unreadable = false;                 // the state store failed: served nothing either
    ExchangeCut cut;
    void End(store::GrantState state);
  };
  std::shared_ptr<State> state_;
  // Destroyed first: once gone, its callback is not running and never runs.
  std::unique_ptr<grants::GrantService::Watch> watch_;
};

}  // namespace tracegate::httpproxy
