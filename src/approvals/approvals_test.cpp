// ApprovalService against the real SQLite store, GrantService and audit recorder, with a fake
// clock: who may vote, what settles a request, what the grant becomes, who is told, what is
// recorded.

#include "approvals/approvals.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "audit/log.h"
#include "common/status.h"
#include "common/strings.h"
#include "store/sqlite_store.h"

namespace tracegate::approvals {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using store::ApprovalKind;
using store::ApprovalRequest;
using store::ApprovalState;
using store::GrantState;
using store::TimePoint;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

std::string Msg(const absl::Status& s) { return std::string(MessageOf(s)); }

// 2026-01-01T00:00:00Z.
const TimePoint kT0 = TimePoint(std::chrono::microseconds(1'767'225'600'000'000));

constexpr const char* kConnection = R"(connections:
  - name: traces-pg
    listen: 127.0.0.1:6432
    backend: {host: db, database: traces, user: tg, password: pw, allow_inline_password: true}
)";

// "sensitive": 2 of the groups sre, dba, security (ttl 45s); "defaulted": the default approver
// group; "held": holds results with 5 or more masked values; "plain": no approval at all.
constexpr const char* kPolicy = R"(approvals:
  timeout: 2m
  approver_groups: [approvers]
  force_groups: [leads]
policy:
  max_ttl: 5m
  rules:
    - {name: sensitive, groups: [agents], ttl: 45s, require_approval: true,
       approvals_required: 2, approvers: [sre, dba, security]}
    - {name: defaulted, groups: [agents], require_approval: true}
    - {name: held, groups: [agents], masking_profile: p, hold_if_masked_at_least: 5,
       approvers: [sre]}
    - {name: plain, groups: [agents]}
masking_profiles:
  - {name: p, detectors: [email]}
)";

// A policy with no default approver group: "plain" names no approver at all.
constexpr const char* kPolicyWithoutDefaults = R"(policy:
  rules:
    - {name: plain, groups: [agents]}
)";

std::shared_ptr<const config::Config> LoadConfig(const char* tail) {
  auto config = config::LoadString(Cat(kConnection, tail), "t.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : nullptr;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tg_approvals_XXXXXX").string();
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
  void Advance(std::chrono::microseconds d) { us_ += d.count(); }
  grants::Clock AsClock() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<int64_t> us_{
      std::chrono::duration_cast<std::chrono::microseconds>(kT0.time_since_epoch()).count()};
};

// The same bytes on every run.
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

identity::Principal Person(std::string subject, std::vector<std::string> groups) {
  identity::Principal p;
  p.issuer_name = "test-idp";
  p.issuer = "https://idp.example";
  p.subject = std::move(subject);
  p.groups = std::move(groups);
  return p;
}

// The requester: itself in an approver group of "sensitive" (sre).
identity::Principal Agent() {
  identity::Principal p = Person("agent-7", {"agents", "sre"});
  p.client_id = "agent-client";
  return p;
}
identity::Principal Alice() { return Person("alice", {"sre"}); }
identity::Principal Bob() { return Person("bob", {"dba"}); }
identity::Principal Lead() { return Person("lena", {"leads"}); }  // force group
identity::Principal Mallory() { return Person("mallory", {"readers", "agents"}); }

// Records what a WaitFor callback was given.
struct Heard {
  std::mutex mu;
  std::vector<ApprovalRequest> requests;

  std::function<void(ApprovalRequest)> Callback() {
    return [this](ApprovalRequest r) {
      std::lock_guard<std::mutex> lock(mu);
      requests.push_back(std::move(r));
    };
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return requests.size();
  }
};

class ApprovalServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = store::SqliteStore::Open(dir_.File("state.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    grants_ = std::make_unique<grants::GrantService>(*store_, clock_.AsClock(), SeededRandom(7));
    config_ = LoadConfig(kPolicy);
    ASSERT_NE(config_, nullptr);
    StartService(config_, nullptr);
  }

  void StartService(std::shared_ptr<const config::Config> config, audit::Recorder* recorder) {
    service_.reset();
    service_ = std::make_unique<ApprovalService>(std::move(config), *store_, *grants_, recorder,
                                                 nullptr, clock_.AsClock());
  }

  // Issues a grant under `rule` (pending when `require_approval`).
  grants::IssuedGrant MustIssue(const std::string& rule, bool require_approval = true,
                                const identity::Principal& who = Agent()) {
    grants::GrantRequest r;
    r.principal = who;
    r.connection = "traces-pg";
    r.trace_id = "trace-42";
    r.reason = "debugging a bad answer";
    r.client_address = "127.0.0.1:40000";
    r.terms.rule = rule;
    r.terms.ttl = milliseconds(45000);
    r.terms.require_approval = require_approval;
    r.terms.approval_timeout = config_->approvals.timeout;
    auto issued = grants_->Issue(r);
    EXPECT_TRUE(issued.ok()) << issued.status();
    return *std::move(issued);
  }

  // A pending grant under `rule` and its open request.
  store::GrantRecord MustOpen(const std::string& rule = "sensitive",
                              const identity::Principal& who = Agent()) {
    grants::IssuedGrant issued = MustIssue(rule, true, who);
    auto request = service_->OpenForGrant(issued.grant, who.Describe(),
                                          Cat("rule ", rule, " requires approval"));
    EXPECT_TRUE(request.ok()) << request.status();
    return issued.grant;
  }

  ApprovalView MustDecide(const std::string& id, const identity::Principal& who, bool approve,
                          std::string_view comment = "") {
    auto view = service_->Decide(id, who, approve, comment);
    EXPECT_TRUE(view.ok()) << view.status();
    return view.ok() ? *std::move(view) : ApprovalView{};
  }

  GrantState GrantStateOf(const std::string& id) { return store_->GetGrant(id)->state; }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<grants::GrantService> grants_;
  std::shared_ptr<const config::Config> config_;
  std::unique_ptr<ApprovalService> service_;
};

// ---- TermsFor and OpenForGrant -----------------------------------------------------------------

TEST_F(ApprovalServiceTest, TermsForTakesTheRulesApproversElseTheDefaultGroups) {
  ApprovalTerms sensitive = service_->TermsFor("sensitive");
  EXPECT_THAT(sensitive.approver_groups, ElementsAre("sre", "dba", "security"));
  EXPECT_EQ(sensitive.required, 2u);
  EXPECT_EQ(sensitive.hold_if_masked_at_least, 0u);

  ApprovalTerms defaulted = service_->TermsFor("defaulted");
  EXPECT_THAT(defaulted.approver_groups, ElementsAre("approvers"));
  EXPECT_EQ(defaulted.required, 1u);

  ApprovalTerms held = service_->TermsFor("held");
  EXPECT_THAT(held.approver_groups, ElementsAre("sre"));
  EXPECT_EQ(held.hold_if_masked_at_least, 5u);

  ApprovalTerms unknown = service_->TermsFor("no-such-rule");
  EXPECT_THAT(unknown.approver_groups, IsEmpty());
  EXPECT_EQ(unknown.hold_if_masked_at_least, 0u);

  EXPECT_EQ(service_->settings().timeout, std::chrono::minutes(2));
}

TEST_F(ApprovalServiceTest, OpenForGrantOnARuleWithoutApproversFails) {
  config_ = LoadConfig(kPolicyWithoutDefaults);
  ASSERT_NE(config_, nullptr);
  StartService(config_, nullptr);
  ASSERT_THAT(service_->TermsFor("plain").approver_groups, IsEmpty());

  grants::IssuedGrant issued = MustIssue("plain");
  auto request = service_->OpenForGrant(issued.grant, Agent().Describe(), "");
  ASSERT_EQ(request.status().code(), absl::StatusCode::kFailedPrecondition) << request.status();
  EXPECT_THAT(Msg(request.status()), HasSubstr("names no approver group"));
  EXPECT_EQ(service_->Get(issued.grant.id).status().code(), absl::StatusCode::kNotFound);

  // An unknown rule names no approver either.
  grants::IssuedGrant other = MustIssue("no-such-rule");
  EXPECT_EQ(service_->OpenForGrant(other.grant, Agent().Describe(), "").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ApprovalServiceTest, OpenForGrantOpensAPendingRequestWithTheGrantsId) {
  grants::IssuedGrant issued = MustIssue("sensitive");
  ASSERT_EQ(issued.grant.state, GrantState::kPending);
  auto request = service_->OpenForGrant(issued.grant, Agent().Describe(), "why");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->id, issued.grant.id);
  EXPECT_EQ(request->grant_id, issued.grant.id);
  EXPECT_EQ(request->kind, ApprovalKind::kGrant);
  EXPECT_EQ(request->state, ApprovalState::kPending);
  EXPECT_EQ(request->requester_issuer, "https://idp.example");
  EXPECT_EQ(request->requester_subject, "agent-7");
  EXPECT_EQ(request->requester, Agent().Describe());
  EXPECT_THAT(request->approver_groups, ElementsAre("sre", "dba", "security"));
  EXPECT_THAT(request->force_groups, ElementsAre("leads"));
  EXPECT_EQ(request->required, 2u);
  EXPECT_EQ(request->created_at, issued.grant.created_at);
  EXPECT_EQ(request->expires_at, issued.grant.expires_at);
  EXPECT_EQ(request->expires_at, kT0 + std::chrono::minutes(2));

  auto stored = service_->Get(issued.grant.id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->request, *request);
  EXPECT_THAT(stored->decisions, IsEmpty());

  // One request per grant.
  EXPECT_EQ(service_->OpenForGrant(issued.grant, Agent().Describe(), "").status().code(),
            absl::StatusCode::kAlreadyExists);
}

// ---- who may vote ------------------------------------------------------------------------------

TEST_F(ApprovalServiceTest, TheRequesterNeverVotesEvenInAnApproverOrForceGroup) {
  store::GrantRecord grant = MustOpen();
  auto request = store_->GetApproval(grant.id);
  ASSERT_TRUE(request.ok());
  EXPECT_FALSE(service_->MayDecide(Agent(), *request));

  auto vote = service_->Decide(grant.id, Agent(), true, "");
  EXPECT_EQ(vote.status().code(), absl::StatusCode::kPermissionDenied) << vote.status();
  EXPECT_THAT(Msg(vote.status()), HasSubstr("never decides its own request"));

  // The same identity with a force group's membership: still the requester.
  identity::Principal forcing = Agent();
  forcing.groups = {"leads"};
  EXPECT_FALSE(service_->MayDecide(forcing, *request));
  EXPECT_EQ(service_->Decide(grant.id, forcing, false, "").status().code(),
            absl::StatusCode::kPermissionDenied);

  EXPECT_THAT(service_->Get(grant.id)->decisions, IsEmpty());
  EXPECT_EQ(service_->Get(grant.id)->request.state, ApprovalState::kPending);
  EXPECT_EQ(GrantStateOf(grant.id), GrantState::kPending);
}

TEST_F(ApprovalServiceTest, ANonApproverCannotVote) {
  store::GrantRecord grant = MustOpen();
  auto request = store_->GetApproval(grant.id);
  ASSERT_TRUE(request.ok());
  EXPECT_FALSE(service_->MayDecide(Mallory(), *request));
  EXPECT_TRUE(service_->MayDecide(Alice(), *request));
  EXPECT_TRUE(service_->MayDecide(Lead(), *request));

  // Who may not see a request hears what a GET says, worded as for an id that does not exist:
  // nothing about its approver groups, nothing that tells it exists.
  const absl::Status unknown = service_->Decide("g_nonexistent", Mallory(), true, "").status();
  for (bool approve : {true, false}) {
    auto vote = service_->Decide(grant.id, Mallory(), approve, "");
    EXPECT_EQ(vote.status().code(), absl::StatusCode::kNotFound) << vote.status();
    EXPECT_EQ(Msg(vote.status()), Cat("no approval ", grant.id, " for this caller"));
    EXPECT_EQ(Msg(unknown), "no approval g_nonexistent for this caller");
    EXPECT_THAT(Msg(vote.status()), Not(HasSubstr("sre")));
  }
  // The same subject from another issuer is someone else, and not an approver either.
  identity::Principal elsewhere = Alice();
  elsewhere.issuer = "https://other.example";
  elsewhere.groups = {"readers"};
  EXPECT_EQ(service_->Decide(grant.id, elsewhere, true, "").status().code(),
            absl::StatusCode::kNotFound);

  EXPECT_THAT(service_->Get(grant.id)->decisions, IsEmpty());
  EXPECT_EQ(GrantStateOf(grant.id), GrantState::kPending);
}

TEST_F(ApprovalServiceTest, DecideOnAnUnknownRequestIsNotFound) {
  EXPECT_EQ(service_->Decide("nope", Alice(), true, "").status().code(),
            absl::StatusCode::kNotFound);
}

// ---- what settles a request --------------------------------------------------------------------

TEST_F(ApprovalServiceTest, AForceGroupMemberSettlesATwoOfThreeAlone) {
  store::GrantRecord grant = MustOpen();
  ApprovalView view = MustDecide(grant.id, Lead(), true, "on call lead");
  EXPECT_EQ(view.request.state, ApprovalState::kApproved);
  ASSERT_EQ(view.decisions.size(), 1u);
  EXPECT_TRUE(view.decisions[0].forced);
  EXPECT_TRUE(view.decisions[0].approve);
  EXPECT_EQ(view.decisions[0].approver, Lead().Describe());
  EXPECT_EQ(view.request.decided_at, clock_.Now());
  EXPECT_EQ(GrantStateOf(grant.id), GrantState::kApproved);
}

TEST_F(ApprovalServiceTest, TwoDistinctApproversSettleATwoOfThree) {
  store::GrantRecord grant = MustOpen();
  ApprovalView first = MustDecide(grant.id, Alice(), true);
  EXPECT_EQ(first.request.state, ApprovalState::kPending);
  EXPECT_FALSE(first.request.decided_at.has_value());
  ASSERT_EQ(first.decisions.size(), 1u);
  EXPECT_FALSE(first.decisions[0].forced);
  EXPECT_EQ(GrantStateOf(grant.id), GrantState::kPending);

  // Another member of the same group counts as another approver.
  clock_.Advance(seconds(1));
  ApprovalView second = MustDecide(grant.id, Person("carol", {"sre"}), true);
  EXPECT_EQ(second.request.state, ApprovalState::kApproved);
  EXPECT_EQ(second.decisions.size(), 2u);
  EXPECT_EQ(GrantStateOf(grant.id), GrantState::kApproved);

  // Settled: no more votes.
  auto late = service_->Decide(grant.id, Bob(), false, "");
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition) << late.status();
  EXPECT_EQ(GrantStateOf(grant.id), GrantState::kApproved);
}

TEST_F(ApprovalServiceTest, ARepeatedVoteIsAlreadyExists) {
  store::GrantRecord grant = MustOpen();
  MustDecide(grant.id, Alice(), true);
  auto again = service_->Decide(grant.id, Alice(), true, "");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
  // Not a way to settle it with one approver, nor to change one's mind.
  identity::Principal regrouped = Alice();
  regrouped.groups = {"dba"};
  EXPECT_EQ(service_->Decide(grant.id, regrouped, false, "").status().code(),
            absl::StatusCode::kAlreadyExists);
  auto view = service_->Get(grant.id);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->request.state, ApprovalState::kPending);
  EXPECT_EQ(view->decisions.size(), 1u);
  EXPECT_EQ(GrantStateOf(grant.id), GrantState::kPending);
}

TEST_F(ApprovalServiceTest, ADenySettlesAndTheGrantIsDenied) {
  store::GrantRecord grant = MustOpen();
  MustDecide(grant.id, Alice(), true);
  clock_.Advance(seconds(3));
  ApprovalView view = MustDecide(grant.id, Bob(), false, "not this trace");
  EXPECT_EQ(view.request.state, ApprovalState::kDenied);
  EXPECT_EQ(view.request.decided_at, clock_.Now());

  auto denied = store_->GetGrant(grant.id);
  ASSERT_TRUE(denied.ok());
  EXPECT_EQ(denied->state, GrantState::kDenied);
  EXPECT_EQ(denied->expires_at, grant.expires_at);  // a denied grant keeps its expiry
  auto events = store_->ListEvents(grant.id);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->back().to, GrantState::kDenied);
  EXPECT_EQ(events->back().actor, Bob().Describe());
  EXPECT_THAT(events->back().detail, HasSubstr("not this trace"));

  auto redeemed = grants_->RedeemPostgres(grant.id, "traces-pg", "agent-7");
  EXPECT_EQ(redeemed.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(Msg(redeemed.status()), HasSubstr("was denied"));
  EXPECT_EQ(service_->Decide(grant.id, Lead(), true, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ApprovalServiceTest, ACommentOver1024BytesIsRefused) {
  store::GrantRecord grant = MustOpen();
  auto vote = service_->Decide(grant.id, Alice(), true, std::string(1025, 'x'));
  EXPECT_EQ(vote.status().code(), absl::StatusCode::kInvalidArgument) << vote.status();
  EXPECT_THAT(service_->Get(grant.id)->decisions, IsEmpty());
  ApprovalView view = MustDecide(grant.id, Alice(), true, std::string(1024, 'x'));
  ASSERT_EQ(view.decisions.size(), 1u);
  EXPECT_EQ(view.decisions[0].comment.size(), 1024u);
}

// ---- the approved grant -----------------------------------------------------------------------

TEST_F(ApprovalServiceTest, ApprovalStartsTheGrantsTtlAndMakesItRedeemable) {
  store::GrantRecord grant = MustOpen();
  auto waiting = grants_->RedeemPostgres(grant.id, "traces-pg", "agent-7");
  EXPECT_EQ(waiting.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(Msg(waiting.status()), HasSubstr("waiting for approval"));

  clock_.Advance(seconds(30));
  const TimePoint decided = clock_.Now();
  MustDecide(grant.id, Lead(), true);
  auto approved = store_->GetGrant(grant.id);
  ASSERT_TRUE(approved.ok());
  EXPECT_EQ(approved->state, GrantState::kApproved);
  EXPECT_EQ(approved->expires_at, decided + seconds(45));  // the rule's ttl, from consent

  // Past the pending grant's original expiry, still within the renewed ttl.
  clock_.Advance(seconds(40));
  auto redeemed = grants_->RedeemPostgres(grant.id, "traces-pg", "agent-7");
  ASSERT_TRUE(redeemed.ok()) << redeemed.status();
  EXPECT_EQ(redeemed->state, GrantState::kInUse);
  EXPECT_EQ(GrantStateOf(grant.id), GrantState::kInUse);
}

TEST_F(ApprovalServiceTest, TheRenewedTtlIsCappedByPolicyMaxTtl) {
  // A config whose max_ttl was lowered under the rule's ttl (a loaded file cannot say so).
  auto lowered = std::make_shared<config::Config>(*config_);
  lowered->policy.max_ttl = seconds(20);
  StartService(lowered, nullptr);

  store::GrantRecord grant = MustOpen();
  clock_.Advance(seconds(5));
  MustDecide(grant.id, Lead(), true);
  auto approved = store_->GetGrant(grant.id);
  ASSERT_TRUE(approved.ok());
  EXPECT_EQ(approved->expires_at, clock_.Now() + seconds(20));
}

// ---- who is told -------------------------------------------------------------------------------

TEST_F(ApprovalServiceTest, WaitForRunsOnceWhenAVoteSettles) {
  store::GrantRecord grant = MustOpen();
  store::GrantRecord other = MustOpen();
  Heard heard, heard_other;
  auto watch = service_->WaitFor(grant.id, heard.Callback());
  auto watch_other = service_->WaitFor(other.id, heard_other.Callback());

  MustDecide(grant.id, Alice(), true);
  EXPECT_EQ(heard.count(), 0u);  // not settled yet
  MustDecide(grant.id, Bob(), true);
  ASSERT_EQ(heard.count(), 1u);
  EXPECT_EQ(heard.requests[0].id, grant.id);
  EXPECT_EQ(heard.requests[0].state, ApprovalState::kApproved);
  EXPECT_TRUE(heard.requests[0].decided_at.has_value());

  EXPECT_EQ(service_->Decide(grant.id, Lead(), false, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(service_->ExpireDue().value_or(99), 0u);
  EXPECT_EQ(heard.count(), 1u);
  EXPECT_EQ(heard_other.count(), 0u);
}

TEST_F(ApprovalServiceTest, WaitForRunsOnceWhenTheRequestExpires) {
  store::GrantRecord grant = MustOpen();
  Heard heard;
  auto watch = service_->WaitFor(grant.id, heard.Callback());

  clock_.Advance(seconds(119));
  EXPECT_EQ(service_->ExpireDue().value_or(99), 0u);
  EXPECT_EQ(heard.count(), 0u);

  clock_.Advance(seconds(2));  // past the 2m timeout
  // A vote after the expiry, before the sweep, is refused.
  auto late = service_->Decide(grant.id, Lead(), true, "");
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition) << late.status();
  EXPECT_EQ(heard.count(), 0u);

  auto expired = service_->ExpireDue();
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1u);
  ASSERT_EQ(heard.count(), 1u);
  EXPECT_EQ(heard.requests[0].state, ApprovalState::kExpired);
  EXPECT_EQ(heard.requests[0].decided_at, clock_.Now());
  EXPECT_EQ(service_->Get(grant.id)->request.state, ApprovalState::kExpired);

  EXPECT_EQ(service_->ExpireDue().value_or(99), 0u);
  EXPECT_EQ(heard.count(), 1u);
  // The pending grant expires with its request (the grants sweeper moves it).
  EXPECT_EQ(grants_->ExpireDue().value_or(99), 1u);
  EXPECT_EQ(GrantStateOf(grant.id), GrantState::kExpired);
}

TEST_F(ApprovalServiceTest, WaitForRunsOnceWhenAHeldResultIsCancelled) {
  grants::IssuedGrant issued = MustIssue("held", /*require_approval=*/false);
  ASSERT_TRUE(grants_->RedeemPostgres(issued.grant.id, "traces-pg", "agent-7").ok());
  clock_.Advance(seconds(2));
  auto held = service_->OpenForResponse(issued.grant, "sess-1",
                                        "the result holds 7 values masking found: EMAIL 7");
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->id, issued.grant.id + ".r1");
  EXPECT_EQ(held->kind, ApprovalKind::kResponse);
  EXPECT_EQ(held->session_id, "sess-1");
  EXPECT_EQ(held->grant_id, issued.grant.id);
  EXPECT_THAT(held->approver_groups, ElementsAre("sre"));
  EXPECT_EQ(held->created_at, clock_.Now());
  EXPECT_EQ(held->expires_at, clock_.Now() + std::chrono::minutes(2));

  Heard heard;
  auto watch = service_->WaitFor(held->id, heard.Callback());
  service_->Cancel(held->id, "the client went away");
  ASSERT_EQ(heard.count(), 1u);
  EXPECT_EQ(heard.requests[0].id, held->id);
  EXPECT_EQ(heard.requests[0].state, ApprovalState::kCancelled);
  EXPECT_EQ(service_->Get(held->id)->request.state, ApprovalState::kCancelled);

  service_->Cancel(held->id, "again");  // already settled: nothing happens
  EXPECT_EQ(heard.count(), 1u);
  EXPECT_EQ(service_->Decide(held->id, Alice(), true, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(heard.count(), 1u);
  EXPECT_EQ(GrantStateOf(issued.grant.id), GrantState::kInUse);  // the grant is not touched
}

TEST_F(ApprovalServiceTest, ADestroyedWatchNeverRuns) {
  store::GrantRecord grant = MustOpen();
  Heard heard, kept;
  auto watch = service_->WaitFor(grant.id, heard.Callback());
  auto kept_watch = service_->WaitFor(grant.id, kept.Callback());
  watch.reset();
  MustDecide(grant.id, Lead(), true);
  EXPECT_EQ(heard.count(), 0u);
  EXPECT_EQ(kept.count(), 1u);
}

TEST_F(ApprovalServiceTest, GrantWatchesHearApprovedAndDenied) {
  store::GrantRecord approved = MustOpen();
  store::GrantRecord denied = MustOpen();
  std::mutex mu;
  std::vector<std::pair<std::string, GrantState>> heard;
  auto on = [&](std::string id) {
    return [&mu, &heard, id](GrantState state) {
      std::lock_guard<std::mutex> lock(mu);
      heard.emplace_back(id, state);
    };
  };
  auto w1 = grants_->WatchGrant(approved.id, on(approved.id));
  auto w2 = grants_->WatchGrant(denied.id, on(denied.id));

  MustDecide(approved.id, Alice(), true);
  EXPECT_THAT(heard, IsEmpty());  // a vote that settles nothing announces nothing
  MustDecide(approved.id, Bob(), true);
  MustDecide(denied.id, Bob(), false, "no");
  EXPECT_THAT(heard, ElementsAre(std::make_pair(approved.id, GrantState::kApproved),
                                 std::make_pair(denied.id, GrantState::kDenied)));
}

// ---- listing -----------------------------------------------------------------------------------

// One page of ListFor with only a state and a limit.
absl::StatusOr<std::vector<ApprovalRequest>> List(ApprovalService& service,
                                                  const identity::Principal& who,
                                                  std::optional<ApprovalState> state,
                                                  size_t limit) {
  ListQuery query;
  query.state = state;
  query.limit = limit;
  absl::StatusOr<ListPage> page = service.ListFor(who, query);
  if (!page.ok()) {
    return page.status();
  }
  return page->requests;
}

std::vector<std::string> Ids(const absl::StatusOr<std::vector<ApprovalRequest>>& requests) {
  EXPECT_TRUE(requests.ok()) << requests.status();
  std::vector<std::string> out;
  if (requests.ok()) {
    for (const ApprovalRequest& r : *requests) {
      out.push_back(r.id);
    }
  }
  return out;
}

TEST_F(ApprovalServiceTest, ListForShowsWhatAPrincipalMayDecideOrRequested) {
  const identity::Principal dana = Person("dana", {"agents"});
  const identity::Principal approver = Person("arno", {"approvers"});
  store::GrantRecord a = MustOpen("sensitive", Agent());  // sre, dba, security
  clock_.Advance(seconds(1));
  store::GrantRecord b = MustOpen("defaulted", dana);  // approvers

  const auto all = std::nullopt;
  EXPECT_THAT(Ids(List(*service_, Alice(), all, 10)), ElementsAre(a.id));
  EXPECT_THAT(Ids(List(*service_, Bob(), all, 10)), ElementsAre(a.id));
  EXPECT_THAT(Ids(List(*service_, approver, all, 10)), ElementsAre(b.id));
  EXPECT_THAT(Ids(List(*service_, Agent(), all, 10)), ElementsAre(a.id));       // its own
  EXPECT_THAT(Ids(List(*service_, dana, all, 10)), ElementsAre(b.id));          // its own
  EXPECT_THAT(Ids(List(*service_, Lead(), all, 10)), ElementsAre(b.id, a.id));  // newest first
  EXPECT_THAT(Ids(List(*service_, Mallory(), all, 10)), IsEmpty());
  EXPECT_THAT(Ids(List(*service_, Lead(), all, 1)), ElementsAre(b.id));

  MustDecide(a.id, Lead(), true);
  EXPECT_THAT(Ids(List(*service_, Lead(), ApprovalState::kPending, 10)), ElementsAre(b.id));
  EXPECT_THAT(Ids(List(*service_, Lead(), ApprovalState::kApproved, 10)), ElementsAre(a.id));
  EXPECT_THAT(Ids(List(*service_, Alice(), ApprovalState::kPending, 10)), IsEmpty());
}

// ---- floods: the per-requester cap and paging ---------------------------------------------

// kPolicy with a cap of 3 pending requests per requester.
std::string CappedPolicy(size_t cap) {
  std::string policy = kPolicy;
  const std::string key = "  timeout: 2m\n";
  policy.replace(policy.find(key), key.size(),
                 Cat(key, "  max_pending_per_requester: ", cap, "\n"));
  return policy;
}

TEST_F(ApprovalServiceTest, ARequesterAtTheCapIsRefusedAndOthersAreNot) {
  const std::string policy = CappedPolicy(3);
  config_ = LoadConfig(policy.c_str());
  ASSERT_NE(config_, nullptr);
  StartService(config_, nullptr);
  std::vector<store::GrantRecord> opened;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(service_->AdmitRequester(Agent()).ok());
    opened.push_back(MustOpen("defaulted"));
  }
  const absl::Status full = service_->AdmitRequester(Agent());
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_THAT(Msg(full), HasSubstr("approvals.max_pending_per_requester"));

  // Past the pre-check (a race): the insert itself refuses, and stores nothing.
  grants::IssuedGrant fourth = MustIssue("defaulted");
  auto refused = service_->OpenForGrant(fourth.grant, Agent().Describe(), "rule defaulted");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_EQ(store_->GetApproval(fourth.grant.id).status().code(), absl::StatusCode::kNotFound);

  // Another requester is not held back; a held result of the full requester is.
  EXPECT_TRUE(service_->AdmitRequester(Person("dana", {"agents"})).ok());
  MustOpen("defaulted", Person("dana", {"agents"}));
  grants::IssuedGrant held = MustIssue("held", /*require_approval=*/false);
  ASSERT_TRUE(grants_->RedeemPostgres(held.grant.id, "traces-pg", "agent-7").ok());
  EXPECT_EQ(service_->OpenForResponse(held.grant, "sess-1", "7 values").status().code(),
            absl::StatusCode::kResourceExhausted);

  // A settled request frees its place.
  MustDecide(opened[0].id, Person("arno", {"approvers"}), false, "no");
  EXPECT_TRUE(service_->AdmitRequester(Agent()).ok());
  EXPECT_TRUE(service_->OpenForResponse(held.grant, "sess-1", "7 values").ok());
  EXPECT_EQ(service_->AdmitRequester(Agent()).code(), absl::StatusCode::kResourceExhausted);
}

// Everything a principal may see, following `next` page by page.
std::vector<std::string> AllPages(ApprovalService& service, const identity::Principal& who,
                                  ListQuery query, size_t* pages = nullptr) {
  std::vector<std::string> ids;
  for (size_t page = 1; page < 1000; ++page) {
    auto listed = service.ListFor(who, query);
    EXPECT_TRUE(listed.ok()) << listed.status();
    if (!listed.ok()) {
      break;
    }
    for (const ApprovalRequest& r : listed->requests) {
      ids.push_back(r.id);
    }
    if (pages != nullptr) {
      *pages = page;
    }
    if (!listed->next.has_value()) {
      break;
    }
    EXPECT_EQ(ParseCursor(FormatCursor(*listed->next)).value(), *listed->next);
    query.after = listed->next;
  }
  return ids;
}

TEST_F(ApprovalServiceTest, AFloodNeverHidesAnotherRequestFromItsApprovers) {
  const std::string policy = CappedPolicy(1000);
  config_ = LoadConfig(policy.c_str());
  ASSERT_NE(config_, nullptr);
  StartService(config_, nullptr);
  const identity::Principal dana = Person("dana", {"agents"});
  const identity::Principal arno = Person("arno", {"approvers"});  // "defaulted"'s approvers
  store::GrantRecord victim = MustOpen("defaulted", dana);
  std::vector<std::string> flood;
  for (int i = 0; i < 60; ++i) {
    clock_.Advance(milliseconds(1));
    flood.push_back(MustOpen(i % 2 == 0 ? "defaulted" : "sensitive").id);
  }
  ListQuery query;
  query.limit = 7;
  size_t pages = 0;
  const std::vector<std::string> seen = AllPages(*service_, arno, query, &pages);
  // arno sees dana's request and the flood's "defaulted" half, each once, newest first.
  std::vector<std::string> expected;
  for (int i = 59; i >= 0; --i) {
    if (i % 2 == 0) {
      expected.push_back(flood[static_cast<size_t>(i)]);
    }
  }
  expected.push_back(victim.id);
  EXPECT_EQ(seen, expected);
  EXPECT_GE(pages, 5u);

  // Filters narrow in the store: by requester, by connection and trace.
  query.limit = 100;
  query.requester_issuer = dana.issuer;
  query.requester_subject = dana.subject;
  EXPECT_EQ(AllPages(*service_, arno, query), std::vector<std::string>{victim.id});
  query.requester_subject = "agent-7";
  EXPECT_EQ(AllPages(*service_, arno, query).size(), 30u);
  query.requester_issuer.reset();
  query.requester_subject.reset();
  query.connection = "traces-pg";
  query.trace_id = "trace-42";
  EXPECT_EQ(AllPages(*service_, arno, query).size(), 31u);
  query.trace_id = "trace-43";
  EXPECT_TRUE(AllPages(*service_, arno, query).empty());
}

// A caller who may see almost nothing of a long history still gets prompt pages: each reads
// at most kMaxScanned rows and hands back a cursor, and following it reaches the one request
// it may see, past more than a page's budget of others' requests.
TEST_F(ApprovalServiceTest, APageReadsABoundedNumberOfRowsAndItsCursorGoesOn) {
  const identity::Principal dana = Person("dana", {"agents"});
  const identity::Principal arno = Person("arno", {"approvers"});  // "defaulted" only
  store::GrantRecord victim = MustOpen("defaulted", dana);
  // Requests arno may not see, straight into the store (the service's cap is per requester).
  const size_t others = kMaxScanned + 50;
  for (size_t i = 0; i < others; ++i) {
    store::GrantRecord grant = victim;
    grant.id = Cat("g_other_", i);
    grant.created_at = victim.created_at + std::chrono::microseconds(i + 1);
    grant.expires_at = grant.created_at + std::chrono::minutes(5);
    ASSERT_TRUE(store_
                    ->CreateGrant(grant, {.grant_id = grant.id,
                                          .to = GrantState::kPending,
                                          .at = grant.created_at,
                                          .actor = "test"})
                    .ok());
    ApprovalRequest request = *store_->GetApproval(victim.id);
    request.id = grant.id;
    request.grant_id = grant.id;
    request.approver_groups = {"sre"};
    request.created_at = grant.created_at;
    request.expires_at = grant.expires_at;
    ASSERT_TRUE(store_->CreateApproval(request).ok()) << i;
  }
  ListQuery query;
  query.limit = 10;
  auto first = service_->ListFor(arno, query);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(first->requests, IsEmpty());
  ASSERT_TRUE(first->next.has_value()) << "a page out of budget must say where to go on";
  query.after = first->next;
  auto second = service_->ListFor(arno, query);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(Ids(second->requests), ElementsAre(victim.id));
  EXPECT_FALSE(second->next.has_value());
}

TEST_F(ApprovalServiceTest, ACursorIsCheckedBeforeUse) {
  for (const char* bad :
       {"", ".", "12", "x.g1", "12.", "12.a b", "1234567890123456789.g", "-5.g1", "12.g\x01"}) {
    EXPECT_EQ(ParseCursor(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  auto ok = ParseCursor("1767225600000001.g_01.r2");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->id, "g_01.r2");
  EXPECT_EQ(ok->created_at, kT0 + std::chrono::microseconds(1));
  EXPECT_EQ(FormatCursor(*ok), "1767225600000001.g_01.r2");
}

// ---- a revoked grant closes what waits of it -------------------------------------------------

TEST_F(ApprovalServiceTest, CancelForGrantClosesItsRequestsAndVotesSeeASettledRequest) {
  store::GrantRecord grant = MustOpen("defaulted");
  Heard heard;
  auto watch = service_->WaitFor(grant.id, heard.Callback());
  ASSERT_TRUE(grants_->Revoke(grant.id, "agent-7").ok());
  auto closed = service_->CancelForGrant(grant.id, Agent().Describe(), "its grant was revoked");
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(*closed, 1u);
  ASSERT_EQ(heard.count(), 1u);
  EXPECT_EQ(heard.requests[0].state, ApprovalState::kCancelled);
  EXPECT_EQ(service_->Get(grant.id)->request.state, ApprovalState::kCancelled);
  const identity::Principal arno = Person("arno", {"approvers"});
  EXPECT_THAT(Ids(List(*service_, arno, ApprovalState::kPending, 10)), IsEmpty());
  EXPECT_THAT(Ids(List(*service_, arno, ApprovalState::kCancelled, 10)), ElementsAre(grant.id));
  auto vote = service_->Decide(grant.id, arno, true, "");
  EXPECT_EQ(vote.status().code(), absl::StatusCode::kFailedPrecondition) << vote.status();
  EXPECT_THAT(Msg(vote.status()), HasSubstr("is cancelled"));
  // Again: nothing left to close.
  EXPECT_EQ(service_->CancelForGrant(grant.id, "x", "again").value_or(99), 0u);
  EXPECT_EQ(heard.count(), 1u);

  // A held result of a live grant closes with it too.
  grants::IssuedGrant live = MustIssue("held", /*require_approval=*/false);
  ASSERT_TRUE(grants_->RedeemPostgres(live.grant.id, "traces-pg", "agent-7").ok());
  auto held = service_->OpenForResponse(live.grant, "sess-1", "7 values");
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_TRUE(grants_->Revoke(live.grant.id, "agent-7").ok());
  EXPECT_EQ(service_->CancelForGrant(live.grant.id, "agent-7", "revoked").value_or(99), 1u);
  EXPECT_EQ(service_->Get(held->id)->request.state, ApprovalState::kCancelled);
}

TEST_F(ApprovalServiceTest, PendingForGrantFindsTheGrantsOwnThenAHeldResult) {
  store::GrantRecord grant = MustOpen("defaulted");
  auto own = service_->PendingForGrant(grant.id);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->request.id, grant.id);
  EXPECT_EQ(own->request.kind, ApprovalKind::kGrant);

  MustDecide(grant.id, Person("arno", {"approvers"}), true);
  EXPECT_EQ(service_->PendingForGrant(grant.id).status().code(), absl::StatusCode::kNotFound);
  auto in_use = grants_->RedeemPostgres(grant.id, "traces-pg", "agent-7");
  ASSERT_TRUE(in_use.ok()) << in_use.status();
  EXPECT_EQ(service_->PendingForGrant(grant.id).status().code(), absl::StatusCode::kNotFound);

  auto held = service_->OpenForResponse(*in_use, "sess-9", "12 values");
  ASSERT_TRUE(held.ok()) << held.status();
  auto pending = service_->PendingForGrant(grant.id);
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_EQ(pending->request.id, grant.id + ".r1");
  EXPECT_EQ(pending->request.kind, ApprovalKind::kResponse);
  EXPECT_EQ(pending->request.session_id, "sess-9");

  EXPECT_EQ(service_->PendingForGrant("no-such-grant").status().code(),
            absl::StatusCode::kNotFound);

  // The next held result of the grant (this session's or a later one's) is .r2, never a
  // second .r1.
  service_->Cancel(held->id, "the session ended");
  auto next = service_->OpenForResponse(*in_use, "sess-10", "7 values");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->id, grant.id + ".r2");
}

// ---- ViewJson ----------------------------------------------------------------------------------

TEST_F(ApprovalServiceTest, ViewJsonShowsTheRequestAndItsVotes) {
  store::GrantRecord grant = MustOpen();
  ApprovalView first = MustDecide(grant.id, Alice(), true, "looks fine");
  json j = ViewJson(first);
  EXPECT_EQ(j["id"], grant.id);
  EXPECT_EQ(j["kind"], "grant");
  EXPECT_EQ(j["state"], "pending");
  EXPECT_EQ(j["grant_id"], grant.id);
  EXPECT_EQ(j["connection"], "traces-pg");
  EXPECT_EQ(j["trace_id"], "trace-42");
  EXPECT_EQ(j["requester"], Agent().Describe());
  EXPECT_EQ(j["reason"], "debugging a bad answer");
  EXPECT_EQ(j["approvers"], json({"sre", "dba", "security"}));
  EXPECT_EQ(j["force_groups"], json({"leads"}));
  EXPECT_EQ(j["required"], 2);
  EXPECT_EQ(j["approvals"], 1);
  EXPECT_EQ(j["created_at"], audit::FormatTime(kT0));
  EXPECT_EQ(j["expires_at"], audit::FormatTime(kT0 + std::chrono::minutes(2)));
  EXPECT_FALSE(j.contains("decided_at"));
  EXPECT_FALSE(j.contains("session_id"));
  ASSERT_EQ(j["decisions"].size(), 1u);
  EXPECT_EQ(j["decisions"][0]["approver"], Alice().Describe());
  EXPECT_EQ(j["decisions"][0]["decision"], "approve");
  EXPECT_EQ(j["decisions"][0]["comment"], "looks fine");
  EXPECT_EQ(j["decisions"][0]["forced"], false);
  EXPECT_EQ(j["decisions"][0]["at"], audit::FormatTime(kT0));

  clock_.Advance(seconds(5));
  json settled = ViewJson(MustDecide(grant.id, Lead(), false, "not today"));
  EXPECT_EQ(settled["state"], "denied");
  EXPECT_EQ(settled["approvals"], 1);
  EXPECT_EQ(settled["decided_at"], audit::FormatTime(kT0 + seconds(5)));
  ASSERT_EQ(settled["decisions"].size(), 2u);
  EXPECT_EQ(settled["decisions"][1]["decision"], "deny");
  EXPECT_EQ(settled["decisions"][1]["comment"], "not today");
  EXPECT_EQ(settled["decisions"][1]["forced"], true);
}

// ---- the audit log -----------------------------------------------------------------------------

TEST_F(ApprovalServiceTest, TheAuditLogHoldsRequestsVotesAndExpiries) {
  config::Audit audit_config;
  audit_config.dir = dir_.File("audit");
  auto recorder = audit::Recorder::Open(audit_config, *store_);
  ASSERT_TRUE(recorder.ok()) << recorder.status();
  StartService(config_, recorder->get());

  store::GrantRecord voted = MustOpen();
  MustDecide(voted.id, Alice(), true, "fine by me");
  store::GrantRecord expiring = MustOpen();
  clock_.Advance(std::chrono::minutes(3));
  ASSERT_EQ(service_->ExpireDue().value_or(0), 2u);
  ASSERT_TRUE((*recorder)->log().Flush().ok());

  auto reader = audit::LogReader::Open(audit_config.dir);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<json> payloads;
  absl::Status read = reader->ForEach(0, [&](const audit::Record& r) {
    if (r.type == audit::RecordType::kApproval) {
      payloads.push_back(json::parse(r.payload));
    }
    return true;
  });
  ASSERT_TRUE(read.ok()) << read;
  std::vector<std::string> seen;
  for (const json& p : payloads) {
    seen.push_back(Cat(p["event"].get<std::string>(), " ", p["request_id"].get<std::string>()));
  }
  // Both requests expired in one sweep, ordered by expiry then id.
  const auto [first, second] =
      voted.id < expiring.id ? std::pair(voted.id, expiring.id) : std::pair(expiring.id, voted.id);
  EXPECT_THAT(seen, ElementsAre(Cat("requested ", voted.id), Cat("vote ", voted.id),
                                Cat("requested ", expiring.id), Cat("expired ", first),
                                Cat("expired ", second)));
  ASSERT_EQ(payloads.size(), 5u);

  EXPECT_EQ(payloads[0]["actor"], Agent().Describe());
  EXPECT_EQ(payloads[0]["kind"], "grant");
  EXPECT_EQ(payloads[0]["state"], "pending");
  EXPECT_EQ(payloads[0]["comment"], "");

  EXPECT_EQ(payloads[1]["actor"], Alice().Describe());
  EXPECT_EQ(payloads[1]["comment"], "fine by me");
  EXPECT_EQ(payloads[1]["state"], "pending");  // one of two approvals
  EXPECT_EQ(payloads[1]["grant_id"], voted.id);
  EXPECT_EQ(payloads[1]["trace_id"], "trace-42");

  EXPECT_EQ(payloads[3]["actor"], "tracegate");
  EXPECT_EQ(payloads[3]["state"], "expired");
  EXPECT_EQ(payloads[4]["state"], "expired");
  service_.reset();  // before the recorder it writes to
}

// ---- issuer scopes (issue 17) ------------------------------------------------------------------

// A workforce IdP and an agents realm, each with a "trace-approvers", "security-leads" and
// "agents" group of its own. Only the workforce's approver and force groups count; alice is
// one person under both issuers.
constexpr const char* kTwoIssuers = R"(identity:
  issuers:
    - {name: workforce, issuer: "https://wf.example", audiences: [tg], jwks_uri: "https://wf.example/jwks"}
    - {name: agents, issuer: "https://agents.example", audiences: [tg], jwks_uri: "https://agents.example/jwks"}
  people:
    - {name: alice, identities: ["workforce:alice", "agents:alice-bot"]}
approvals:
  approver_groups: [trace-approvers]
  force_groups: [security-leads]
  issuers: [workforce]
policy:
  rules:
    - {name: sensitive, issuers: [agents, workforce], groups: [agents], require_approval: true}
)";

identity::Principal From(std::string issuer_name, std::string subject,
                         std::vector<std::string> groups) {
  identity::Principal p = Person(std::move(subject), std::move(groups));
  p.issuer = Cat("https://", issuer_name == "workforce" ? "wf" : issuer_name, ".example");
  p.issuer_name = std::move(issuer_name);
  return p;
}

TEST_F(ApprovalServiceTest, RolesCountOnlyFromTheIssuersApprovalsTrust) {
  config_ = LoadConfig(kTwoIssuers);
  ASSERT_NE(config_, nullptr);
  StartService(config_, nullptr);
  struct Row {
    identity::Principal voter;
    absl::StatusCode code;  // kOk: the vote counts
    bool forced;
  } rows[] = {
      {From("workforce", "wanda", {"trace-approvers"}), absl::StatusCode::kOk, false},
      {From("workforce", "lena", {"security-leads"}), absl::StatusCode::kOk, true},
      // Same group names from the agents realm: not approvers, not a force group.
      // (They may not see the request, so a vote is answered as a GET is: not found.)
      {From("agents", "alice", {"trace-approvers"}), absl::StatusCode::kNotFound, false},
      {From("agents", "mallory", {"security-leads"}), absl::StatusCode::kNotFound, false},
      {From("agents", "mallory", {"trace-approvers", "security-leads"}),
       absl::StatusCode::kNotFound, false},
      {From("workforce", "bob", {"agents"}), absl::StatusCode::kNotFound, false},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.voter.Describe());
    // The requester is an agent of the agents realm.
    store::GrantRecord grant = MustOpen("sensitive", From("agents", "bot-9", {"agents"}));
    auto request = store_->GetApproval(grant.id);
    ASSERT_TRUE(request.ok());
    EXPECT_EQ(service_->MayDecide(row.voter, *request), row.code == absl::StatusCode::kOk);
    auto vote = service_->Decide(grant.id, row.voter, true, "");
    EXPECT_EQ(vote.status().code(), row.code) << vote.status();
    if (vote.ok()) {
      EXPECT_EQ(vote->request.state, ApprovalState::kApproved);
      ASSERT_EQ(vote->decisions.size(), 1u);
      EXPECT_EQ(vote->decisions[0].forced, row.forced);
    } else {
      EXPECT_EQ(GrantStateOf(grant.id), GrantState::kPending);
      EXPECT_EQ(Msg(vote.status()), Cat("no approval ", grant.id, " for this caller"));
      auto listed = List(*service_, row.voter, ApprovalState::kPending, 100);
      ASSERT_TRUE(listed.ok());
      for (const ApprovalRequest& r : *listed) {
        EXPECT_NE(r.id, grant.id) << "listed for a voter whose roles do not count";
      }
    }
  }
}

TEST_F(ApprovalServiceTest, OnePersonUnderTwoIssuersNeverDecidesItsOwnRequest) {
  config_ = LoadConfig(kTwoIssuers);
  ASSERT_NE(config_, nullptr);
  StartService(config_, nullptr);
  // alice asks through her agents identity; her workforce identity is an approver and in the
  // force group, and is still the requester.
  const identity::Principal requester = From("agents", "alice-bot", {"agents"});
  const identity::Principal alice =
      From("workforce", "alice", {"trace-approvers", "security-leads"});
  store::GrantRecord grant = MustOpen("sensitive", requester);
  auto request = store_->GetApproval(grant.id);
  ASSERT_TRUE(request.ok());
  EXPECT_FALSE(service_->MayDecide(alice, *request));
  // Visibility is per identity: her workforce identity neither requested it nor may decide
  // it, so to that identity the request does not exist (as for a GET).
  EXPECT_FALSE(service_->MaySee(alice, *request));
  for (bool approve : {true, false}) {
    auto vote = service_->Decide(grant.id, alice, approve, "");
    EXPECT_EQ(vote.status().code(), absl::StatusCode::kNotFound) << vote.status();
  }
  // Under the requesting identity itself it is hers, and refused as such.
  EXPECT_THAT(Msg(service_->Decide(grant.id, requester, true, "").status()),
              HasSubstr("never decides its own request"));
  EXPECT_EQ(GrantStateOf(grant.id), GrantState::kPending);

  // Someone else with the same groups decides; so would a workforce "alice-bot" (not listed).
  EXPECT_TRUE(service_->MayDecide(From("workforce", "alice-bot", {"trace-approvers"}), *request));
  const ApprovalView view =
      MustDecide(grant.id, From("workforce", "wanda", {"trace-approvers"}), true);
  EXPECT_EQ(view.request.state, ApprovalState::kApproved);

  // The other way round: a request by workforce/alice, agents/alice-bot is her too.
  store::GrantRecord second = MustOpen("sensitive", From("workforce", "alice", {"agents"}));
  auto other = store_->GetApproval(second.id);
  ASSERT_TRUE(other.ok());
  identity::Principal bot = From("agents", "alice-bot", {"trace-approvers"});
  EXPECT_FALSE(service_->MayDecide(bot, *other));
  EXPECT_EQ(service_->Decide(second.id, bot, true, "").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(GrantStateOf(second.id), GrantState::kPending);
}

TEST_F(ApprovalServiceTest, OnePersonVotesOnceWhateverTheIdentity) {
  // Both issuers' approver groups count here; alice is one person under both.
  config_ = LoadConfig(R"(identity:
  issuers:
    - {name: workforce, issuer: "https://wf.example", audiences: [tg], jwks_uri: "https://wf.example/jwks"}
    - {name: agents, issuer: "https://agents.example", audiences: [tg], jwks_uri: "https://agents.example/jwks"}
  people:
    - {name: alice, identities: ["workforce:alice", "agents:alice-bot"]}
approvals:
  approver_groups: [trace-approvers]
  issuers: [workforce, agents]
policy:
  rules:
    - {name: two, issuers: [agents], groups: [agents], require_approval: true,
       approvals_required: 2}
)");
  ASSERT_NE(config_, nullptr);
  StartService(config_, nullptr);
  store::GrantRecord grant = MustOpen("two", From("agents", "bot-9", {"agents"}));
  MustDecide(grant.id, From("workforce", "alice", {"trace-approvers"}), true);
  auto again =
      service_->Decide(grant.id, From("agents", "alice-bot", {"trace-approvers"}), true, "");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
  EXPECT_THAT(Msg(again.status()), HasSubstr("the same person"));
  EXPECT_EQ(GrantStateOf(grant.id), GrantState::kPending);
  // Another person's vote is the second approval.
  const ApprovalView view = MustDecide(grant.id, From("agents", "bob", {"trace-approvers"}), true);
  EXPECT_EQ(view.request.state, ApprovalState::kApproved);
  EXPECT_EQ(view.decisions.size(), 2u);
}

}  // namespace
}  // namespace tracegate::approvals
