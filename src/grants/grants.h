#pragma once
// Just-in-time grants: one principal may read one trace on one connection, for seconds,
// a bounded number of times. This is the only module that mints or checks credentials.
//
// States (DESIGN.md "Vocabulary"):
//   pending → approved | denied | expired | revoked   (src/approvals decides)
//   active | approved → in_use → completed | revoked | expired
//   in_use → active   when a multi-use grant's session ends with uses left
// Every transition is written to the state store with its time, actor and detail.
//
// A credential is 256 random bits, shown once (IssuedGrant) and stored only as a SCRAM-SHA-256
// verifier (for the Postgres listener) and a SHA-256 hash (for bearer use over HTTP).
// Postgres user name: "g_<grant id>"; HTTP bearer: "tgb_<grant id>_<secret>".
//
// Thread safety: every method may be called from any thread (so may `clock` and `random`).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "identity/principal.h"
#include "pgwire/scram.h"
#include "store/state_store.h"

namespace tracegate::grants {

using Clock = std::function<std::chrono::system_clock::time_point()>;

// What the policy decided, as the grant carries it.
struct GrantTerms {
  std::string rule;  // the policy rule that allowed it
  std::chrono::milliseconds ttl{30000};
  uint32_t uses = 1;
  std::chrono::milliseconds max_session{300000};
  uint64_t max_rows = 0;
  uint64_t max_bytes = 0;
  std::string masking_profile;
  // The grant starts `pending` and expires after `approval_timeout` unless approved; once
  // approved its `ttl` starts (src/approvals).
  bool require_approval = false;
  std::chrono::milliseconds approval_timeout{900000};
};

struct GrantRequest {
  identity::Principal principal;
  std::string connection;
  std::string trace_id;
  std::string reason;
  std::string client_address;  // where the request came from, for the record
  GrantTerms terms;
};

// Returned exactly once, when the grant is created. `secret` is never stored or logged.
struct IssuedGrant {
  store::GrantRecord grant;
  std::string secret;         // base64url, 43 characters (256 bits)
  std::string postgres_user;  // "g_<id>"
  std::string bearer;         // "tgb_<id>_<secret>"
};

// A Postgres login attempt, before its password is checked.
struct PostgresLogin {
  std::string grant_id;
  store::GrantState state = store::GrantState::kActive;  // at lookup (a pending one is held)
  pgwire::ScramVerifier verifier;  // present whatever the grant's state, so that SCRAM runs
                                   // the same way and only a caller who proved the secret
                                   // learns why the grant cannot be used
};

class GrantService {
 public:
  // `store` must outlive the service. `random` yields cryptographically random bytes.
  GrantService(store::StateStore& store, Clock clock, pgwire::RandomBytes random);
  ~GrantService();

  // Mints a grant and its credential. The record is durable when this returns.
  [[nodiscard]] absl::StatusOr<IssuedGrant> Issue(const GrantRequest& request);

  [[nodiscard]] absl::StatusOr<store::GrantRecord> Get(std::string_view grant_id);

  // Revokes a grant that is pending, approved, active or in use. A live session on it is cut
  // (the callbacks registered with Watch run). FailedPrecondition if already final.
  [[nodiscard]] absl::Status Revoke(std::string_view grant_id, std::string_view actor);

  // "g_<id>" → the grant's verifier. NotFound for anything else (the caller then runs SCRAM
  // against an unsatisfiable verifier, exactly as for an unknown static user).
  [[nodiscard]] absl::StatusOr<PostgresLogin> LookupPostgresUser(std::string_view user) const;

  // Called after the caller proved the secret: atomically takes one use (of N racing
  // redemptions exactly one wins) and moves the grant from active or approved to in_use. Errors,
  // each with a message naming the reason and never the secret:
  //   PermissionDenied  "grant <id> was already used" / "... has expired" / "... was revoked" /
  //                     "... is waiting for approval" / "... is for connection X" /
  //                     "... was denied" / "... is in use by another session" (multi-use)
  //   NotFound          no such grant
  //   Unavailable       the state store failed (fail closed)
  // Every refusal carries its reason for RefusalReasonOf.
  [[nodiscard]] absl::StatusOr<store::GrantRecord> RedeemPostgres(std::string_view grant_id,
                                                                  std::string_view connection,
                                                                  std::string_view actor);

  // The same for HTTP: parses "tgb_<id>_<secret>", compares the hash in constant time.
  // Unauthenticated "malformed grant credential" / "invalid grant credential" (unknown grant
  // or wrong secret: the two look alike) before anything about the grant is revealed.
  [[nodiscard]] absl::StatusOr<store::GrantRecord> RedeemBearer(std::string_view bearer,
                                                                std::string_view connection,
                                                                std::string_view actor);

  // A session on the grant ended: in_use → completed (no uses left) or → active (uses left,
  // not expired; → expired if it has). `outcome` is recorded ("client closed", "grant
  // expired", an error...). OK without a change if the grant is already final (revoked or
  // expired under the session: that transition is recorded); FailedPrecondition if it is not
  // in use. Watches are not notified: the session has ended.
  [[nodiscard]] absl::Status EndSession(std::string_view grant_id, std::string_view outcome);

  // Moves every grant whose expiry has passed and that is not final to expired (in_use too:
  // its live session is cut through Watch). Returns how many changed. Run periodically.
  [[nodiscard]] absl::StatusOr<size_t> ExpireDue();

  // Live sessions register here to be told when their grant is revoked or expires.
  // The callback runs on the thread that made the transition; it must only post work to the
  // session's own executor. It runs at most once. Register *before* redeeming, so that a
  // revocation between the redemption and the registration cannot go unnoticed.
  // Destroying the Watch unregisters it; once the destructor returns the callback is not
  // running and never runs (it may destroy its own Watch, but no other).
  class Watch {
   public:
    virtual ~Watch() = default;
  };
  [[nodiscard]] std::unique_ptr<Watch> WatchGrant(std::string_view grant_id,
                                                  std::function<void(store::GrantState)> on_end);

  // Tells the grant's watches that it is now in `state`: the approvals module calls it after
  // a decision moved a pending grant to approved or denied.
  void Announce(std::string_view grant_id, store::GrantState state);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Why RedeemPostgres or RedeemBearer refused a credential, in the fixed vocabulary of failed
// attempts the audit log records (audit/auth_failures.h): "unknown_grant",
// "malformed_credential", "wrong_secret" (bearer), "grant_used", "grant_expired",
// "grant_revoked", "grant_other_connection", "grant_in_use", "grant_pending", "grant_denied".
// "" for an error that is not a refusal (the state store failed) or for OK.
[[nodiscard]] std::string RefusalReasonOf(const absl::Status& status);

// The grant id of a credential shaped "tgb_<id>_<secret>" (canonical id and secret), else "".
// Never any part of the secret: what a refused bearer may leave in the audit log.
[[nodiscard]] std::string BearerGrantId(std::string_view bearer);

// SCRAM iteration count for grant secrets. The secret has 256 bits of entropy, so PBKDF2
// stretching adds nothing against guessing; a low count keeps the client's login cheap.
inline constexpr uint32_t kGrantScramIterations = 16;

}  // namespace tracegate::grants
