#include "grants/grants.h"

#include <openssl/crypto.h>

#include <utility>

#include "absl/strings/cord.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "grants/credentials.h"
#include "grants/watch_registry.h"

namespace tracegate::grants {
namespace {

using store::GrantRecord;
using store::GrantState;
using store::TimePoint;

// The actor of transitions tracegate makes on its own.
constexpr char kSystemActor[] = "tracegate";

constexpr char kRefusalPayload[] = "tracegate.dev/refusal";

// A refusal of a credential: PermissionDenied / Unauthenticated / NotFound with `message`,
// carrying `reason` (the audit vocabulary of failed attempts) for RefusalReasonOf.
absl::Status Refused(absl::StatusCode code, std::string_view reason, std::string_view message) {
  absl::Status status(code, std::string(message));
  status.SetPayload(kRefusalPayload, absl::Cord(std::string(reason)));
  return status;
}

// Why a grant in `state` cannot be redeemed (a redemption from `active` was refused).
absl::Status RefusalOf(const GrantRecord& grant, GrantState state, TimePoint now) {
  std::string_view id = grant.id;
  auto denied = [&](std::string_view reason, std::string_view what) {
    return Refused(absl::StatusCode::kPermissionDenied, reason, Cat("grant ", id, " ", what));
  };
  switch (state) {
    case GrantState::kActive:
    case GrantState::kApproved:
      // Still active (or approved) but refused: past its expiry (not swept yet), or out of uses.
      return grant.expires_at <= now ? denied("grant_expired", "has expired")
                                     : denied("grant_used", "was already used");
    case GrantState::kInUse:
      return grant.uses_allowed > 1 ? denied("grant_in_use", "is in use by another session")
                                    : denied("grant_used", "was already used");
    case GrantState::kCompleted:
      return denied("grant_used", "was already used");
    case GrantState::kExpired:
      return denied("grant_expired", "has expired");
    case GrantState::kRevoked:
      return denied("grant_revoked", "was revoked");
    case GrantState::kPending:
      return denied("grant_pending", "is waiting for approval");
    case GrantState::kDenied:
      return denied("grant_denied", "was denied");
  }
  return denied("grant_unusable", "cannot be used");
}

// An unknown grant and a wrong secret look alike to the caller; the audit record tells them
// apart (it is not shown to the caller).
absl::Status InvalidCredential(std::string_view reason) {
  return Refused(absl::StatusCode::kUnauthenticated, reason, "invalid grant credential");
}

class WatchHandle final : public GrantService::Watch {
 public:
  WatchHandle(std::shared_ptr<internal::WatchRegistry> registry, std::string grant_id,
              std::shared_ptr<internal::WatchRegistry::Entry> entry)
      : handle_(std::move(registry), std::move(grant_id), std::move(entry)) {}

 private:
  tracegate::WatchHandle<GrantState> handle_;
};

}  // namespace

struct GrantService::Impl {
  store::StateStore& store;
  Clock clock;
  pgwire::RandomBytes random;
  std::shared_ptr<internal::WatchRegistry> watches = std::make_shared<internal::WatchRegistry>();

  // Whole microseconds, as the store keeps them.
  TimePoint Now() const { return std::chrono::floor<std::chrono::microseconds>(clock()); }

  absl::StatusOr<GrantRecord> Redeem(const GrantRecord& grant, std::string_view connection,
                                     std::string_view actor);
};

absl::StatusOr<GrantRecord> GrantService::Impl::Redeem(const GrantRecord& grant,
                                                       std::string_view connection,
                                                       std::string_view actor) {
  if (grant.connection != connection) {
    return Refused(absl::StatusCode::kPermissionDenied, "grant_other_connection",
                   Cat("grant ", grant.id, " is for connection ", grant.connection));
  }
  TimePoint now = Now();
  auto redeemed = store.Transition(store::TransitionRequest{
      .grant_id = grant.id,
      .from = {GrantState::kActive, GrantState::kApproved},
      .to = GrantState::kInUse,
      .unexpired_at = now,
      .take_use = true,
      .at = now,
      .actor = std::string(actor),
      .detail = Cat("session on connection ", connection),
  });
  if (redeemed.ok()) {
    return redeemed;
  }
  std::optional<GrantState> state = store::RefusedState(redeemed.status());
  if (!state.has_value()) {
    return redeemed.status();  // NotFound or Unavailable
  }
  return RefusalOf(grant, *state, now);
}

std::string RefusalReasonOf(const absl::Status& status) {
  if (status.ok()) {
    return "";
  }
  absl::optional<absl::Cord> reason = status.GetPayload(kRefusalPayload);
  return reason.has_value() ? std::string(*reason) : std::string();
}

std::string BearerGrantId(std::string_view bearer) {
  std::optional<internal::BearerParts> parts = internal::ParseBearer(bearer);
  return parts.has_value() ? std::string(parts->grant_id) : std::string();
}

GrantService::GrantService(store::StateStore& store, Clock clock, pgwire::RandomBytes random)
    : impl_(new Impl{store, std::move(clock), std::move(random)}) {}

GrantService::~GrantService() = default;

absl::StatusOr<IssuedGrant> GrantService::Issue(const GrantRequest& request) {
  const GrantTerms& terms = request.terms;
  if (request.connection.empty() || request.trace_id.empty()) {
    return absl::InvalidArgumentError("a grant needs a connection and a trace id");
  }
  // The callers check first (ApiService::Issue answers 400 invalid_trace_id); this is the one
  // funnel every grant passes, so no caller can store an id that ValidateTraceId refuses.
  TG_RETURN_IF_ERROR(ValidateTraceId(request.trace_id));
  if (terms.uses < 1 || terms.ttl.count() <= 0) {
    return absl::InvalidArgumentError(
        Cat("a grant needs at least one use and a positive time to live (rule ", terms.rule, ")"));
  }
  TimePoint now = impl_->Now();
  TG_ASSIGN_OR_RETURN(std::string id, internal::NewGrantId(impl_->random));
  TG_ASSIGN_OR_RETURN(std::string raw_secret,
                      internal::RandomExactly(impl_->random, internal::kSecretBytes));
  TG_ASSIGN_OR_RETURN(std::string salt,
                      internal::RandomExactly(impl_->random, internal::kSaltBytes));
  std::string secret = internal::EncodeSecret(raw_secret);
  OPENSSL_cleanse(raw_secret.data(), raw_secret.size());

  const identity::Principal& principal = request.principal;
  GrantRecord record;
  record.id = id;
  record.state = terms.require_approval ? GrantState::kPending : GrantState::kActive;
  record.connection = request.connection;
  record.trace_id = request.trace_id;
  record.issuer = principal.issuer;
  record.subject = principal.subject;
  record.client_id = principal.client_id;
  record.groups = principal.groups;
  record.reason = request.reason;
  record.rule = terms.rule;
  record.client_address = request.client_address;
  record.masking_profile = terms.masking_profile;
  record.created_at = now;
  record.expires_at = now + (terms.require_approval ? terms.approval_timeout : terms.ttl);
  record.uses_allowed = terms.uses;
  record.uses_left = terms.uses;
  record.max_session = terms.max_session;
  record.max_rows = terms.max_rows;
  record.max_bytes = terms.max_bytes;
  record.scram_verifier =
      pgwire::FormatScramVerifier(pgwire::MakeScramVerifier(secret, salt, kGrantScramIterations));
  record.bearer_hash = internal::Sha256(secret);

  store::GrantEvent event{
      .grant_id = id,
      .from = std::nullopt,
      .to = record.state,
      .at = now,
      .actor = principal.Describe(),
      .detail = Cat("issued for trace ", request.trace_id, " under rule ", terms.rule,
                    terms.require_approval ? ", waiting for approval" : ""),
  };
  TG_RETURN_IF_ERROR(impl_->store.CreateGrant(record, event));

  IssuedGrant issued;
  issued.postgres_user = Cat(internal::kPostgresUserPrefix, id);
  issued.bearer = Cat(internal::kBearerPrefix, id, "_", secret);
  issued.secret = std::move(secret);
  issued.grant = std::move(record);
  return issued;
}

absl::StatusOr<store::GrantRecord> GrantService::Get(std::string_view grant_id) {
  if (!internal::IsGrantId(grant_id)) {
    return absl::NotFoundError("no such grant (malformed id)");
  }
  return impl_->store.GetGrant(grant_id);
}

absl::Status GrantService::Revoke(std::string_view grant_id, std::string_view actor) {
  if (!internal::IsGrantId(grant_id)) {
    return absl::NotFoundError("no such grant (malformed id)");
  }
  TimePoint now = impl_->Now();
  auto revoked = impl_->store.Transition(store::TransitionRequest{
      .grant_id = std::string(grant_id),
      .from = {GrantState::kPending, GrantState::kApproved, GrantState::kActive,
               GrantState::kInUse},
      .to = GrantState::kRevoked,
      .at = now,
      .actor = std::string(actor),
      .detail = "revoked",
  });
  if (!revoked.ok()) {
    std::optional<GrantState> state = store::RefusedState(revoked.status());
    if (state.has_value()) {
      return absl::FailedPreconditionError(
          Cat("grant ", grant_id, " is already ", store::GrantStateName(*state)));
    }
    return revoked.status();
  }
  impl_->watches->Notify(grant_id, GrantState::kRevoked);
  return absl::OkStatus();
}

absl::StatusOr<PostgresLogin> GrantService::LookupPostgresUser(std::string_view user) const {
  if (!user.starts_with(internal::kPostgresUserPrefix) ||
      !internal::IsGrantId(user.substr(internal::kPostgresUserPrefix.size()))) {
    return absl::NotFoundError("not a grant user name");
  }
  std::string_view id = user.substr(internal::kPostgresUserPrefix.size());
  TG_ASSIGN_OR_RETURN(GrantRecord grant, impl_->store.GetGrant(id));
  auto verifier = pgwire::ParseScramVerifier(grant.scram_verifier);
  if (!verifier.ok()) {
    return absl::InternalError(Cat("grant ", id, " has a malformed stored verifier"));
  }
  return PostgresLogin{std::string(id), grant.state, *std::move(verifier)};
}

absl::StatusOr<store::GrantRecord> GrantService::RedeemPostgres(std::string_view grant_id,
                                                                std::string_view connection,
                                                                std::string_view actor) {
  if (!internal::IsGrantId(grant_id)) {
    return Refused(absl::StatusCode::kNotFound, "unknown_grant", "no such grant (malformed id)");
  }
  absl::StatusOr<GrantRecord> grant = impl_->store.GetGrant(grant_id);
  if (absl::IsNotFound(grant.status())) {
    return Refused(absl::StatusCode::kNotFound, "unknown_grant", MessageOf(grant.status()));
  }
  if (!grant.ok()) {
    return grant.status();
  }
  return impl_->Redeem(*grant, connection, actor);
}

absl::StatusOr<store::GrantRecord> GrantService::RedeemBearer(std::string_view bearer,
                                                              std::string_view connection,
                                                              std::string_view actor) {
  std::optional<internal::BearerParts> parts = internal::ParseBearer(bearer);
  if (!parts.has_value()) {
    return Refused(absl::StatusCode::kUnauthenticated, "malformed_credential",
                   "malformed grant credential");
  }
  std::string hash = internal::Sha256(parts->secret);
  auto grant = impl_->store.GetGrant(parts->grant_id);
  if (!grant.ok()) {
    // An unknown grant looks like a wrong secret: nothing about the grant before the proof.
    return absl::IsNotFound(grant.status()) ? InvalidCredential("unknown_grant") : grant.status();
  }
  if (!pgwire::ConstantTimeEquals(hash, grant->bearer_hash)) {
    return InvalidCredential("wrong_secret");
  }
  return impl_->Redeem(*grant, connection, actor);
}

absl::Status GrantService::EndSession(std::string_view grant_id, std::string_view outcome) {
  if (!internal::IsGrantId(grant_id)) {
    return absl::NotFoundError("no such grant (malformed id)");
  }
  TG_ASSIGN_OR_RETURN(GrantRecord grant, impl_->store.GetGrant(grant_id));
  if (store::IsFinal(grant.state)) {
    return absl::OkStatus();  // revoked or expired under the session: already recorded
  }
  if (grant.state != GrantState::kInUse) {
    return absl::FailedPreconditionError(Cat("grant ", grant_id, " has no session in use (it is ",
                                             store::GrantStateName(grant.state), ")"));
  }
  TimePoint now = impl_->Now();
  GrantState to = grant.uses_left == 0      ? GrantState::kCompleted
                  : grant.expires_at <= now ? GrantState::kExpired
                                            : GrantState::kActive;
  auto ended = impl_->store.Transition(store::TransitionRequest{
      .grant_id = std::string(grant_id),
      .from = {GrantState::kInUse},
      .to = to,
      .unexpired_at = to == GrantState::kActive ? std::optional<TimePoint>(now) : std::nullopt,
      .at = now,
      .actor = kSystemActor,
      .detail = std::string(outcome),
  });
  if (ended.ok()) {
    return absl::OkStatus();
  }
  std::optional<GrantState> state = store::RefusedState(ended.status());
  if (state.has_value() && store::IsFinal(*state)) {
    return absl::OkStatus();  // revoked or expired meanwhile
  }
  if (state.has_value()) {
    return absl::FailedPreconditionError(Cat("grant ", grant_id, " has no session in use (it is ",
                                             store::GrantStateName(*state), ")"));
  }
  return ended.status();
}

absl::StatusOr<size_t> GrantService::ExpireDue() {
  TG_ASSIGN_OR_RETURN(std::vector<store::ExpiredGrant> expired,
                      impl_->store.ExpireDue(impl_->Now()));
  for (const store::ExpiredGrant& grant : expired) {
    impl_->watches->Notify(grant.grant_id, GrantState::kExpired);
  }
  return expired.size();
}

std::unique_ptr<GrantService::Watch> GrantService::WatchGrant(
    std::string_view grant_id, std::function<void(store::GrantState)> on_end) {
  auto entry = impl_->watches->Add(grant_id, std::move(on_end));
  return std::make_unique<WatchHandle>(impl_->watches, std::string(grant_id), std::move(entry));
}

void GrantService::Announce(std::string_view grant_id, GrantState state) {
  impl_->watches->Notify(grant_id, state);
}

}  // namespace tracegate::grants
