#include "grants/grants.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/strings.h"
#include "grants/credentials.h"
#include "grants/watch_registry.h"
#include "pgwire/scram_crypto.h"
#include "store/sqlite_store.h"

namespace tracegate::grants {
namespace {

using std::chrono::seconds;
using store::GrantState;
using store::TimePoint;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

const TimePoint kT0 = TimePoint(std::chrono::microseconds(1'767'225'600'000'000));

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tg_grants_XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

class FakeClock {
 public:
  TimePoint Now() const { return TimePoint(std::chrono::microseconds(us_.load())); }
  void Set(TimePoint t) {
    us_ = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  }
  void Advance(std::chrono::microseconds d) { us_ += d.count(); }
  Clock AsClock() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<int64_t> us_{
      std::chrono::duration_cast<std::chrono::microseconds>(kT0.time_since_epoch()).count()};
};

// A seeded generator: the same bytes on every run, safe to call from several threads.
pgwire::RandomBytes SeededRandom(uint64_t seed) {
  auto state = std::make_shared<std::pair<std::mutex, std::mt19937_64>>();
  state->second.seed(seed);
  return [state](size_t n) {
    std::lock_guard<std::mutex> lock(state->first);
    std::string out(n, '\0');
    for (char& c : out) {
      c = static_cast<char>(state->second() & 0xff);
    }
    return out;
  };
}

identity::Principal Agent() {
  identity::Principal p;
  p.issuer_name = "test-idp";
  p.issuer = "https://idp.example";
  p.subject = "agent-7";
  p.client_id = "agent-client";
  p.groups = {"ml", "readers"};
  return p;
}

GrantRequest Request(uint32_t uses = 1) {
  GrantRequest r;
  r.principal = Agent();
  r.connection = "traces";
  r.trace_id = "trace-42";
  r.reason = "debugging a bad answer";
  r.client_address = "127.0.0.1:40000";
  r.terms.rule = "agents-read";
  r.terms.ttl = std::chrono::milliseconds(30000);
  r.terms.uses = uses;
  r.terms.max_rows = 100;
  r.terms.max_bytes = 1 << 20;
  r.terms.masking_profile = "default";
  return r;
}

class GrantServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = store::SqliteStore::Open(dir_.File("state.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    service_ = std::make_unique<GrantService>(*store_, clock_.AsClock(), SeededRandom(7));
  }

  IssuedGrant MustIssue(const GrantRequest& request = Request()) {
    auto issued = service_->Issue(request);
    EXPECT_TRUE(issued.ok()) << issued.status();
    return *std::move(issued);
  }
  GrantState StateOf(const std::string& id) { return store_->GetGrant(id)->state; }
  absl::Status Redeem(const IssuedGrant& g) {
    return service_->RedeemPostgres(g.grant.id, "traces", "agent-7 via test").status();
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<GrantService> service_;
};

// ---- Issue -----------------------------------------------------------------------------------

TEST_F(GrantServiceTest, IssueCreatesAnActiveGrantAndItsCredential) {
  IssuedGrant g = MustIssue();
  const std::string& id = g.grant.id;
  EXPECT_EQ(id.size(), 26u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdefghjkmnpqrstvwxyz"), std::string::npos);
  EXPECT_EQ(g.secret.size(), 43u);
  EXPECT_EQ(g.secret.find_first_not_of(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  EXPECT_EQ(g.postgres_user, "g_" + id);
  EXPECT_EQ(g.bearer, "tgb_" + id + "_" + g.secret);

  auto stored = store_->GetGrant(id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, g.grant);
  EXPECT_EQ(stored->state, GrantState::kActive);
  EXPECT_EQ(stored->created_at, kT0);
  EXPECT_EQ(stored->expires_at, kT0 + seconds(30));
  EXPECT_EQ(stored->uses_allowed, 1u);
  EXPECT_EQ(stored->uses_left, 1u);
  EXPECT_EQ(stored->connection, "traces");
  EXPECT_EQ(stored->trace_id, "trace-42");
  EXPECT_EQ(stored->subject, "agent-7");
  EXPECT_EQ(stored->client_id, "agent-client");
  EXPECT_EQ(stored->issuer, "https://idp.example");
  EXPECT_EQ(stored->groups, (std::vector<std::string>{"ml", "readers"}));
  EXPECT_EQ(stored->rule, "agents-read");
  EXPECT_EQ(stored->max_rows, 100u);
  EXPECT_EQ(stored->bearer_hash, pgwire::internal::Sha256(g.secret));

  auto verifier = pgwire::ParseScramVerifier(stored->scram_verifier);
  ASSERT_TRUE(verifier.ok());
  EXPECT_EQ(verifier->iterations, kGrantScramIterations);
  EXPECT_EQ(verifier->salt.size(), 16u);
  EXPECT_EQ(stored->scram_verifier, pgwire::FormatScramVerifier(pgwire::MakeScramVerifier(
                                        g.secret, verifier->salt, kGrantScramIterations)));

  auto events = store_->ListEvents(id);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].from, std::nullopt);
  EXPECT_EQ((*events)[0].to, GrantState::kActive);
  EXPECT_EQ((*events)[0].at, kT0);
  EXPECT_EQ((*events)[0].actor, Agent().Describe());

  // The secret is stored nowhere, in no form but the verifier and the hash.
  for (const std::string& field :
       {stored->scram_verifier, stored->bearer_hash, stored->reason, (*events)[0].detail}) {
    EXPECT_THAT(field, Not(HasSubstr(g.secret)));
  }
}

TEST_F(GrantServiceTest, EachGrantHasItsOwnIdSecretAndSalt) {
  IssuedGrant a = MustIssue();
  IssuedGrant b = MustIssue();
  EXPECT_NE(a.grant.id, b.grant.id);
  EXPECT_NE(a.secret, b.secret);
  EXPECT_NE(pgwire::ParseScramVerifier(a.grant.scram_verifier)->salt,
            pgwire::ParseScramVerifier(b.grant.scram_verifier)->salt);
}

TEST(GrantIdTest, SystemRandomIdsAreCanonicalAndDistinct) {
  pgwire::RandomBytes random = pgwire::SystemRandom();
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    auto id = internal::NewGrantId(random);
    ASSERT_TRUE(id.ok());
    EXPECT_TRUE(internal::IsGrantId(*id)) << *id;
    ids.insert(*id);
  }
  EXPECT_EQ(ids.size(), 1000u);
  EXPECT_EQ(*internal::NewGrantId([](size_t n) { return std::string(n, '\0'); }),
            std::string(26, '0'));
  EXPECT_EQ(*internal::NewGrantId([](size_t n) { return std::string(n, '\xff'); }),
            std::string(25, 'z') + "w");  // the last character's two spare bits are zero
  EXPECT_FALSE(internal::IsGrantId(std::string(25, 'z') + "z"));
  EXPECT_FALSE(internal::NewGrantId([](size_t) { return std::string(3, 'x'); }).ok());
}

TEST_F(GrantServiceTest, RequireApprovalStartsPending) {
  GrantRequest request = Request();
  request.terms.require_approval = true;
  IssuedGrant g = MustIssue(request);
  EXPECT_EQ(StateOf(g.grant.id), GrantState::kPending);
  absl::Status redeemed = Redeem(g);
  EXPECT_EQ(redeemed.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Msg(redeemed), Cat("grant ", g.grant.id, " is waiting for approval"));
}

TEST_F(GrantServiceTest, IssueRefusesRequestsWithoutScopeOrUses) {
  GrantRequest no_connection = Request();
  no_connection.connection.clear();
  GrantRequest no_trace = Request();
  no_trace.trace_id.clear();
  GrantRequest no_uses = Request(0);
  GrantRequest no_ttl = Request();
  no_ttl.terms.ttl = std::chrono::milliseconds(0);
  for (const GrantRequest& r : {no_connection, no_trace, no_uses, no_ttl}) {
    EXPECT_EQ(service_->Issue(r).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

// Issue 18 item 9: whoever calls Issue, a trace id ValidateTraceId refuses is never stored.
TEST_F(GrantServiceTest, IssueRefusesTraceIdsValidateTraceIdRefuses) {
  for (const std::string id :
       {"t\xC2\x85", "t\xC2\x9B", "t\xE2\x80\xAE", "t\xE2\x80\xA8", "t\r\nx", "t\xFF"}) {
    GrantRequest r = Request();
    r.trace_id = id;
    EXPECT_EQ(service_->Issue(r).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

// ---- Postgres login --------------------------------------------------------------------------

// The client half of SCRAM-SHA-256 written out by hand, because pgwire::ScramClient refuses
// the low iteration count grants use (it guards the gateway's own backend logins).
absl::Status ScramLogin(const pgwire::ScramVerifier& verifier, std::string_view password) {
  namespace crypto = pgwire::internal;
  pgwire::ScramServer server(verifier, SeededRandom(99));
  std::string bare = "n=,r=clientnonce0123456789";
  TG_ASSIGN_OR_RETURN(std::string server_first, server.HandleClientFirst("n,," + bare));
  // "r=<nonce>,s=<salt>,i=<iterations>"
  std::vector<std::string> attrs;
  for (size_t pos = 0; pos <= server_first.size();) {
    size_t comma = std::min(server_first.find(',', pos), server_first.size());
    attrs.push_back(server_first.substr(pos + 2, comma - pos - 2));
    pos = comma + 1;
  }
  if (attrs.size() != 3) {
    return absl::InvalidArgumentError(server_first);
  }
  std::string salted = crypto::Pbkdf2Sha256(password, *crypto::Base64Decode(attrs[1]),
                                            static_cast<uint32_t>(std::stoul(attrs[2])));
  std::string client_key = crypto::HmacSha256(salted, "Client Key");
  std::string without_proof = "c=biws,r=" + attrs[0];
  std::string auth_message = bare + "," + server_first + "," + without_proof;
  std::string proof =
      crypto::XorBytes(client_key, crypto::HmacSha256(crypto::Sha256(client_key), auth_message));
  TG_ASSIGN_OR_RETURN(
      std::string server_final,
      server.HandleClientFinal(without_proof + ",p=" + crypto::Base64Encode(proof)));
  std::string expected = "v=" + crypto::Base64Encode(crypto::HmacSha256(
                                    crypto::HmacSha256(salted, "Server Key"), auth_message));
  return server_final == expected ? absl::OkStatus()
                                  : absl::DataLossError("server signature mismatch");
}

TEST_F(GrantServiceTest, ScramWithTheSecretSucceedsAgainstTheStoredVerifier) {
  IssuedGrant g = MustIssue();
  auto login = service_->LookupPostgresUser(g.postgres_user);
  ASSERT_TRUE(login.ok()) << login.status();
  EXPECT_EQ(login->grant_id, g.grant.id);
  EXPECT_EQ(login->verifier.iterations, kGrantScramIterations);
  EXPECT_EQ(pgwire::FormatScramVerifier(
                pgwire::MakeScramVerifier(g.secret, login->verifier.salt, kGrantScramIterations)),
            g.grant.scram_verifier);
  EXPECT_TRUE(ScramLogin(login->verifier, g.secret).ok());

  absl::Status wrong = ScramLogin(login->verifier, MustIssue().secret);
  EXPECT_EQ(wrong.code(), absl::StatusCode::kPermissionDenied) << wrong;
}

TEST_F(GrantServiceTest, LookupFindsOnlyGrantUsersAndIgnoresTheState) {
  IssuedGrant g = MustIssue();
  ASSERT_TRUE(service_->Revoke(g.grant.id, "admin").ok());
  EXPECT_TRUE(service_->LookupPostgresUser(g.postgres_user).ok())
      << "SCRAM must run the same way whatever the grant's state";

  std::string upper = g.postgres_user;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string unknown = "g_" + std::string(26, '0');
  for (const std::string& user :
       {std::string("postgres"), std::string("g_"), g.grant.id, "G_" + g.grant.id, upper,
        g.postgres_user + "0", g.postgres_user.substr(0, 27), " " + g.postgres_user, unknown,
        "g_" + g.grant.id.substr(0, 25) + "i"}) {
    EXPECT_EQ(service_->LookupPostgresUser(user).status().code(), absl::StatusCode::kNotFound)
        << user;
  }
}

// ---- Redemption ------------------------------------------------------------------------------

TEST_F(GrantServiceTest, RedeemOnceThenAlreadyUsed) {
  IssuedGrant g = MustIssue();
  auto first = service_->RedeemPostgres(g.grant.id, "traces", "agent-7 via test");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->state, GrantState::kInUse);
  EXPECT_EQ(first->uses_left, 0u);

  absl::Status second = Redeem(g);
  EXPECT_EQ(second.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Msg(second), Cat("grant ", g.grant.id, " was already used"));

  ASSERT_TRUE(service_->EndSession(g.grant.id, "client closed").ok());
  EXPECT_EQ(StateOf(g.grant.id), GrantState::kCompleted);
  EXPECT_EQ(Msg(Redeem(g)), Cat("grant ", g.grant.id, " was already used"));

  auto events = store_->ListEvents(g.grant.id);
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[1].actor, "agent-7 via test");
  EXPECT_EQ((*events)[1].to, GrantState::kInUse);
  EXPECT_EQ((*events)[2].to, GrantState::kCompleted);
  EXPECT_EQ((*events)[2].detail, "client closed");
}

TEST_F(GrantServiceTest, WrongConnectionIsRefusedWithoutTakingAUse) {
  IssuedGrant g = MustIssue();
  auto result = service_->RedeemPostgres(g.grant.id, "other", "agent-7");
  EXPECT_EQ(result.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Msg(result.status()), Cat("grant ", g.grant.id, " is for connection traces"));
  EXPECT_EQ(StateOf(g.grant.id), GrantState::kActive);
  EXPECT_EQ(store_->GetGrant(g.grant.id)->uses_left, 1u);
  EXPECT_TRUE(Redeem(g).ok());
}

TEST_F(GrantServiceTest, UnknownGrantIsNotFound) {
  EXPECT_EQ(service_->RedeemPostgres(std::string(26, '0'), "traces", "a").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(service_->RedeemPostgres("not an id", "traces", "a").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(service_->Get(std::string(26, '0')).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(GrantServiceTest, ExpiredGrantCannotBeRedeemedBeforeOrAfterTheSweep) {
  IssuedGrant g = MustIssue();
  IssuedGrant later = MustIssue();
  clock_.Advance(seconds(30));  // exactly at expires_at: expired
  EXPECT_EQ(Msg(Redeem(g)), Cat("grant ", g.grant.id, " has expired"));
  EXPECT_EQ(StateOf(g.grant.id), GrantState::kActive) << "not swept yet";

  auto swept = service_->ExpireDue();
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(*swept, 2u);
  EXPECT_EQ(StateOf(g.grant.id), GrantState::kExpired);
  absl::Status after = Redeem(g);
  EXPECT_EQ(after.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Msg(after), Cat("grant ", g.grant.id, " has expired"));
  EXPECT_EQ(*service_->ExpireDue(), 0u);
}

TEST_F(GrantServiceTest, OneMicrosecondBeforeExpiryStillRedeems) {
  IssuedGrant g = MustIssue();
  clock_.Advance(seconds(30) - std::chrono::microseconds(1));
  EXPECT_TRUE(Redeem(g).ok());
}

TEST_F(GrantServiceTest, RevokeFiresTheWatchOnce) {
  IssuedGrant g = MustIssue();
  std::vector<GrantState> seen;
  auto watch = service_->WatchGrant(g.grant.id, [&](GrantState s) { seen.push_back(s); });
  ASSERT_TRUE(Redeem(g).ok());
  ASSERT_TRUE(service_->Revoke(g.grant.id, "admin@example").ok());
  EXPECT_EQ(seen, std::vector<GrantState>{GrantState::kRevoked});
  EXPECT_EQ(StateOf(g.grant.id), GrantState::kRevoked);
  EXPECT_EQ(store_->ListEvents(g.grant.id)->back().actor, "admin@example");

  absl::Status again = service_->Revoke(g.grant.id, "admin@example");
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Msg(again), Cat("grant ", g.grant.id, " is already revoked"));
  EXPECT_EQ(seen.size(), 1u);
  EXPECT_EQ(Msg(Redeem(g)), Cat("grant ", g.grant.id, " was revoked"));
  // The session that was cut reports its end; nothing changes any more.
  EXPECT_TRUE(service_->EndSession(g.grant.id, "grant revoked").ok());
  EXPECT_EQ(StateOf(g.grant.id), GrantState::kRevoked);
  EXPECT_EQ(service_->Revoke(std::string(26, '0'), "admin").code(), absl::StatusCode::kNotFound);
}

TEST_F(GrantServiceTest, PendingAndActiveGrantsCanBeRevoked) {
  GrantRequest pending = Request();
  pending.terms.require_approval = true;
  IssuedGrant a = MustIssue(pending);
  IssuedGrant b = MustIssue();
  EXPECT_TRUE(service_->Revoke(a.grant.id, "admin").ok());
  EXPECT_TRUE(service_->Revoke(b.grant.id, "admin").ok());
  EXPECT_EQ(StateOf(a.grant.id), GrantState::kRevoked);
  EXPECT_EQ(StateOf(b.grant.id), GrantState::kRevoked);
}

TEST_F(GrantServiceTest, ExpiryFiresTheWatchOfALiveSession) {
  IssuedGrant g = MustIssue();
  IssuedGrant other = MustIssue();
  std::atomic<int> fired{0};
  GrantState seen = GrantState::kActive;
  auto watch = service_->WatchGrant(g.grant.id, [&](GrantState s) {
    seen = s;
    ++fired;
  });
  auto other_watch = service_->WatchGrant(other.grant.id, [&](GrantState) { ++fired; });
  other_watch.reset();  // unregistered: never called
  ASSERT_TRUE(Redeem(g).ok());
  clock_.Advance(seconds(31));
  EXPECT_EQ(*service_->ExpireDue(), 2u);
  EXPECT_EQ(fired.load(), 1);
  EXPECT_EQ(seen, GrantState::kExpired);
  EXPECT_TRUE(service_->EndSession(g.grant.id, "grant expired").ok());
  EXPECT_EQ(StateOf(g.grant.id), GrantState::kExpired);
}

TEST_F(GrantServiceTest, CallbacksRunWithoutTheRegistryLock) {
  IssuedGrant g = MustIssue();
  std::unique_ptr<GrantService::Watch> self;
  std::unique_ptr<GrantService::Watch> added;
  bool ran = false;
  self = service_->WatchGrant(g.grant.id, [&](GrantState) {
    // Both would deadlock if the registry lock were held here.
    added = service_->WatchGrant(g.grant.id, [](GrantState) {});
    self.reset();
    ran = true;
  });
  ASSERT_TRUE(service_->Revoke(g.grant.id, "admin").ok());
  EXPECT_TRUE(ran);
  EXPECT_EQ(self, nullptr);
  EXPECT_NE(added, nullptr);
}

TEST_F(GrantServiceTest, WatchesOutliveTheServiceSafely) {
  IssuedGrant g = MustIssue();
  auto watch = service_->WatchGrant(g.grant.id, [](GrantState) {});
  service_.reset();
  watch.reset();  // must not touch the destroyed service
}

// Destroying a watch on one thread while another notifies: once the destructor has returned
// the callback never runs, so a session may free what its callback touches.
TEST(WatchRegistryTest, NoCallbackRunsAfterRemoveReturns) {
  auto registry = std::make_shared<internal::WatchRegistry>();
  for (int round = 0; round < 300; ++round) {
    auto alive = std::make_unique<std::atomic<bool>>(true);
    std::atomic<bool> ran_dead{false};
    std::atomic<bool>* flag = alive.get();
    auto entry = registry->Add("g", [flag, &ran_dead](GrantState) {
      if (!flag->load()) {
        ran_dead = true;
      }
    });
    std::barrier start(2);
    std::thread notifier([&] {
      start.arrive_and_wait();
      registry->Notify("g", GrantState::kRevoked);
    });
    start.arrive_and_wait();
    registry->Remove("g", entry);
    alive->store(false);
    notifier.join();
    EXPECT_FALSE(ran_dead.load()) << "round " << round;
    EXPECT_EQ(registry->Count("g"), 0u);
  }
}

// ---- Multi-use -------------------------------------------------------------------------------

TEST_F(GrantServiceTest, EndSessionWithUsesLeftGoesBackToActive) {
  IssuedGrant g = MustIssue(Request(2));
  ASSERT_TRUE(Redeem(g).ok());
  EXPECT_EQ(Msg(Redeem(g)), Cat("grant ", g.grant.id, " is in use by another session"));
  ASSERT_TRUE(service_->EndSession(g.grant.id, "client closed").ok());
  auto grant = store_->GetGrant(g.grant.id);
  EXPECT_EQ(grant->state, GrantState::kActive);
  EXPECT_EQ(grant->uses_left, 1u);

  ASSERT_TRUE(Redeem(g).ok());
  ASSERT_TRUE(service_->EndSession(g.grant.id, "client closed").ok());
  EXPECT_EQ(StateOf(g.grant.id), GrantState::kCompleted);
  EXPECT_EQ(Msg(Redeem(g)), Cat("grant ", g.grant.id, " was already used"));

  absl::Status not_in_use = service_->EndSession(MustIssue().grant.id, "?");
  EXPECT_EQ(not_in_use.code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(GrantServiceTest, EndSessionAfterExpiryWithUsesLeftExpires) {
  IssuedGrant g = MustIssue(Request(3));
  ASSERT_TRUE(Redeem(g).ok());
  clock_.Advance(seconds(45));
  ASSERT_TRUE(service_->EndSession(g.grant.id, "client closed").ok());
  EXPECT_EQ(StateOf(g.grant.id), GrantState::kExpired);
  EXPECT_EQ(store_->ListEvents(g.grant.id)->back().detail, "client closed");
}

// ---- Bearer ----------------------------------------------------------------------------------

TEST_F(GrantServiceTest, BearerRedeemsOnce) {
  IssuedGrant g = MustIssue();
  auto first = service_->RedeemBearer(g.bearer, "traces", "agent-7");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->state, GrantState::kInUse);
  auto second = service_->RedeemBearer(g.bearer, "traces", "agent-7");
  EXPECT_EQ(second.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Msg(second.status()), Cat("grant ", g.grant.id, " was already used"));
}

TEST_F(GrantServiceTest, BearerWithAnotherSecretRevealsNothing) {
  IssuedGrant g = MustIssue();
  IssuedGrant h = MustIssue();
  ASSERT_TRUE(service_->Revoke(g.grant.id, "admin").ok());
  // g's id with h's secret: the grant is revoked, but the caller must not learn that.
  for (const std::string& bearer :
       {"tgb_" + g.grant.id + "_" + h.secret, "tgb_" + std::string(26, '0') + "_" + h.secret}) {
    auto result = service_->RedeemBearer(bearer, "traces", "agent-7");
    EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(Msg(result.status()), "invalid grant credential");
  }
  // A wrong secret takes no use.
  auto hijack =
      service_->RedeemBearer("tgb_" + h.grant.id + "_" + MustIssue().secret, "traces", "agent-7");
  EXPECT_EQ(hijack.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(store_->GetGrant(h.grant.id)->uses_left, 1u);
}

TEST_F(GrantServiceTest, MalformedBearersAreRefused) {
  IssuedGrant g = MustIssue();
  const std::string& id = g.grant.id;
  const std::string& s = g.secret;
  std::string non_canonical = s;
  // The last of 43 characters carries 4 bits: any character with low bits set is not canonical.
  non_canonical.back() = non_canonical.back() == 'B' ? 'C' : 'B';
  std::string upper_id = id;
  for (char& c : upper_id) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::vector<std::string> malformed = {
      "",
      "tgb_",
      "tgb_" + id,
      "tgb_" + id + "_",
      "tgb_" + id + "_" + s.substr(1),
      "tgb_" + id + "_" + s + "A",
      "tgb_" + id + "_" + s + "=",
      "tgb_" + id + "-" + s,
      "tgb_" + id + s + "_",
      "TGB_" + id + "_" + s,
      "tgb-" + id + "_" + s,
      "Bearer tgb_" + id + "_" + s,
      "tgb_" + id + "_" + s + " ",
      "tgb_" + id + "_" + s + "\n",
      " tgb_" + id + "_" + s,
      "tgb_" + upper_id + "_" + s,
      "tgb_" + id.substr(0, 25) + "i_" + s,
      "tgb_" + id.substr(0, 25) + "_" + s + "x",
      "tgb_" + id + "_" + s.substr(0, 42) + "+",
      "tgb_" + id + "_" + s.substr(0, 42) + "/",
      "tgb_" + id + "_" + non_canonical,
      "g_" + id,
      s,
  };
  for (const std::string& bearer : malformed) {
    auto result = service_->RedeemBearer(bearer, "traces", "agent-7");
    EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated) << bearer;
    EXPECT_EQ(Msg(result.status()), "malformed grant credential") << bearer;
  }
  EXPECT_EQ(StateOf(id), GrantState::kActive);
  EXPECT_TRUE(service_->RedeemBearer(g.bearer, "traces", "agent-7").ok());
}

// ---- Races -----------------------------------------------------------------------------------

TEST_F(GrantServiceTest, EightThreadsRaceToRedeemAndExactlyOneWins) {
  constexpr int kThreads = 8;
  for (int round = 0; round < 10; ++round) {
    IssuedGrant g = MustIssue();
    std::atomic<int> wins{0};
    std::atomic<int> already_used{0};
    std::barrier start(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        absl::Status s = Redeem(g);
        if (s.ok()) {
          ++wins;
        } else if (Msg(s) == Cat("grant ", g.grant.id, " was already used")) {
          ++already_used;
        }
      });
    }
    for (std::thread& t : threads) {
      t.join();
    }
    EXPECT_EQ(wins.load(), 1);
    EXPECT_EQ(already_used.load(), kThreads - 1);
  }
}

// ---- Secrets and failures --------------------------------------------------------------------

TEST_F(GrantServiceTest, NoStatusMessageEverContainsASecret) {
  IssuedGrant g = MustIssue();
  IssuedGrant used = MustIssue();
  ASSERT_TRUE(service_->RedeemBearer(used.bearer, "traces", "a").ok());
  ASSERT_TRUE(service_->Revoke(g.grant.id, "admin").ok());
  IssuedGrant expiring = MustIssue();
  std::vector<absl::Status> statuses;
  for (const IssuedGrant* grant : {&g, &used}) {
    const std::string& s = grant->secret;
    for (const std::string& text :
         {s, grant->bearer, grant->bearer + " ", "Bearer " + grant->bearer, "g_" + s,
          "tgb_" + s + "_" + s, "tgb_" + grant->grant.id + "_" + s.substr(1) + "A"}) {
      statuses.push_back(service_->RedeemBearer(text, "traces", "a").status());
      statuses.push_back(service_->RedeemBearer(text, "other", "a").status());
      statuses.push_back(service_->LookupPostgresUser(text).status());
      statuses.push_back(service_->RedeemPostgres(text, "traces", "a").status());
      statuses.push_back(service_->Get(text).status());
      statuses.push_back(service_->Revoke(text, "a"));
      statuses.push_back(service_->EndSession(text, "x"));
    }
  }
  clock_.Advance(seconds(60));
  statuses.push_back(service_->RedeemBearer(expiring.bearer, "traces", "a").status());
  statuses.push_back(service_->RedeemBearer(expiring.bearer, "other", "a").status());
  int failures = 0;
  for (const absl::Status& status : statuses) {
    failures += status.ok() ? 0 : 1;
    for (const IssuedGrant* grant : {&g, &used, &expiring}) {
      EXPECT_THAT(Msg(status), Not(HasSubstr(grant->secret))) << status;
      EXPECT_THAT(Msg(status), Not(HasSubstr(grant->secret.substr(0, 16)))) << status;
    }
  }
  EXPECT_EQ(failures, static_cast<int>(statuses.size()));
}

// A store whose database is gone: every call fails as a real outage would.
class UnavailableStore final : public store::StateStore {
 public:
  absl::Status CreateGrant(const store::GrantRecord&, const store::GrantEvent&) override {
    return Down();
  }
  absl::StatusOr<store::GrantRecord> GetGrant(std::string_view) override { return Down(); }
  absl::StatusOr<store::GrantRecord> Transition(const store::TransitionRequest&) override {
    return Down();
  }
  absl::StatusOr<std::vector<store::ExpiredGrant>> ExpireDue(TimePoint) override { return Down(); }
  absl::StatusOr<std::vector<store::GrantEvent>> ListEvents(std::string_view) override {
    return Down();
  }
  absl::Status CheckHealth() override { return Down(); }
  absl::Status PutSession(const store::SessionSummary&) override { return Down(); }
  absl::StatusOr<store::SessionSummary> GetSession(std::string_view) override { return Down(); }
  absl::StatusOr<std::vector<store::SessionSummary>> ListSessions(
      const store::SessionQuery&) override {
    return Down();
  }
  absl::Status PutAuditHead(std::string_view) override { return Down(); }
  absl::StatusOr<std::optional<std::string>> GetAuditHead() override { return Down(); }
  absl::Status CreateApproval(const store::ApprovalRequest&) override { return Down(); }
  absl::StatusOr<store::ApprovalRequest> GetApproval(std::string_view) override { return Down(); }
  absl::StatusOr<std::vector<store::ApprovalRequest>> ListApprovals(
      const store::ApprovalQuery&) override {
    return Down();
  }
  absl::StatusOr<std::vector<store::ApprovalDecision>> ListDecisions(std::string_view) override {
    return Down();
  }
  absl::StatusOr<store::DecideResult> Decide(const store::DecideRequest&) override {
    return Down();
  }
  absl::StatusOr<store::ApprovalRequest> CloseApproval(std::string_view, store::ApprovalState,
                                                       TimePoint) override {
    return Down();
  }
  absl::StatusOr<std::vector<store::ApprovalRequest>> ExpireApprovals(TimePoint) override {
    return Down();
  }

 private:
  static absl::Status Down() { return absl::UnavailableError("state store: disk I/O error"); }
};

TEST(GrantServiceFailureTest, AStoreOutageFailsClosed) {
  UnavailableStore store;
  FakeClock clock;
  GrantService service(store, clock.AsClock(), SeededRandom(1));
  std::string id(26, '0');
  auto unavailable = absl::StatusCode::kUnavailable;
  EXPECT_EQ(service.Issue(Request()).status().code(), unavailable);
  EXPECT_EQ(service.LookupPostgresUser("g_" + id).status().code(), unavailable);
  EXPECT_EQ(service.RedeemPostgres(id, "traces", "a").status().code(), unavailable);
  EXPECT_EQ(service.RedeemBearer("tgb_" + id + "_" + std::string(42, 'A') + "A", "traces", "a")
                .status()
                .code(),
            unavailable);
  EXPECT_EQ(service.Revoke(id, "a").code(), unavailable);
  EXPECT_EQ(service.EndSession(id, "x").code(), unavailable);
  EXPECT_EQ(service.ExpireDue().status().code(), unavailable);
}

// ---- Refusal reasons (the audit record of a failed attempt) ---------------------------------

TEST_F(GrantServiceTest, EveryRefusalCarriesItsReasonAndBearerGrantIdNeverTheSecret) {
  IssuedGrant g = MustIssue();
  IssuedGrant other = MustIssue();
  auto reason = [](const auto& result) { return RefusalReasonOf(result.status()); };
  EXPECT_EQ(reason(service_->RedeemBearer("tgb_nonsense", "traces", "a")), "malformed_credential");
  EXPECT_EQ(reason(service_->RedeemBearer("tgb_" + g.grant.id + "_" + other.secret, "traces", "a")),
            "wrong_secret");
  EXPECT_EQ(
      reason(service_->RedeemBearer("tgb_" + std::string(26, '0') + "_" + g.secret, "traces", "a")),
      "unknown_grant");
  EXPECT_EQ(reason(service_->RedeemPostgres(std::string(26, '0'), "traces", "a")), "unknown_grant");
  EXPECT_EQ(reason(service_->RedeemPostgres("not-an-id", "traces", "a")), "unknown_grant");
  EXPECT_EQ(reason(service_->RedeemBearer(g.bearer, "elsewhere", "a")), "grant_other_connection");
  ASSERT_TRUE(service_->RedeemBearer(g.bearer, "traces", "a").ok());
  EXPECT_EQ(reason(service_->RedeemBearer(g.bearer, "traces", "a")), "grant_used");
  EXPECT_EQ(reason(service_->RedeemPostgres(g.grant.id, "traces", "a")), "grant_used");
  ASSERT_TRUE(service_->Revoke(other.grant.id, "admin").ok());
  EXPECT_EQ(reason(service_->RedeemPostgres(other.grant.id, "traces", "a")), "grant_revoked");
  IssuedGrant late = MustIssue();
  clock_.Advance(seconds(30));
  EXPECT_EQ(reason(service_->RedeemPostgres(late.grant.id, "traces", "a")), "grant_expired");
  EXPECT_EQ(RefusalReasonOf(absl::UnavailableError("store down")), "");

  EXPECT_EQ(BearerGrantId(g.bearer), g.grant.id);
  EXPECT_EQ(BearerGrantId("tgb_" + g.grant.id + "_short"), "");
  EXPECT_EQ(BearerGrantId(g.secret), "");
}

}  // namespace
}  // namespace tracegate::grants
