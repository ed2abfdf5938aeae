#include "store/sqlite_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/strings.h"
#include "store/sqlite_db.h"

namespace tracegate::store {
namespace {

using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// 2026-01-01T00:00:00Z, whole microseconds like everything the store keeps.
const TimePoint kT0 = TimePoint(std::chrono::microseconds(1'767'225'600'000'000));

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tg_store_XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

GrantRecord Record(std::string id, GrantState state = GrantState::kActive, uint32_t uses = 1) {
  GrantRecord r;
  r.id = std::move(id);
  r.state = state;
  r.connection = "traces";
  r.trace_id = "trace-42";
  r.issuer = "https://idp.example";
  r.subject = "agent-7";
  r.client_id = "agent-client";
  r.groups = {"ml", "on-call", "", "with:colon,and comma", std::string("nul\0byte", 8)};
  r.reason = "debugging a bad answer";
  r.rule = "agents-read-own";
  r.client_address = "10.0.0.7:51234";
  r.masking_profile = "default";
  r.created_at = kT0;
  r.expires_at = kT0 + seconds(30);
  r.uses_allowed = uses;
  r.uses_left = uses;
  r.max_session = std::chrono::milliseconds(300000);
  r.max_rows = 18'446'744'073'709'551'615ULL;  // survives the int64 column
  r.max_bytes = 1 << 20;
  r.scram_verifier = "SCRAM-SHA-256$16:c2FsdA==$c3RvcmVk:c2VydmVy";
  r.bearer_hash = std::string("\x00\x01\xff hash", 8);
  return r;
}

GrantEvent Created(const GrantRecord& r) {
  return GrantEvent{r.id, std::nullopt, r.state, r.created_at, "agent-7 via test", "issued"};
}

TransitionRequest Redeem(std::string id, TimePoint now = kT0 + seconds(1)) {
  return TransitionRequest{.grant_id = std::move(id),
                           .from = {GrantState::kActive},
                           .to = GrantState::kInUse,
                           .unexpired_at = now,
                           .take_use = true,
                           .at = now,
                           .actor = "agent-7 via test",
                           .detail = "session on traces"};
}

SessionSummary Session(std::string id, TimePoint started_at = kT0) {
  SessionSummary s;
  s.id = std::move(id);
  s.kind = "postgres";
  s.connection = "traces";
  s.trace_id = "trace-42";
  s.grant_id = "01JGRANT";
  s.issuer = "https://idp.example";
  s.subject = "agent-7";
  s.client_id = "agent-client";
  s.user = "g_01JGRANT";
  s.client_address = "10.0.0.7:51234";
  s.started_at = started_at;
  s.first_seq = 7;
  s.last_seq = 7;
  return s;
}

SessionSummary Ended(SessionSummary s, std::string outcome = "completed") {
  s.ended_at = s.started_at + seconds(5);
  s.outcome = std::move(outcome);
  s.reason = "client closed the connection";
  s.statements = 12;
  s.blocked = 1;
  s.rows = 340;
  s.bytes_to_client = 56'789;
  s.last_seq = s.first_seq + 14;
  return s;
}

int64_t Micros(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

std::vector<std::string> Ids(const std::vector<SessionSummary>& sessions) {
  std::vector<std::string> ids;
  for (const SessionSummary& s : sessions) {
    ids.push_back(s.id);
  }
  return ids;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = SqliteStore::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void Create(const GrantRecord& r) { ASSERT_TRUE(store_->CreateGrant(r, Created(r)).ok()); }

  TempDir dir_;
  std::string path_ = dir_.File("state.db");
  std::unique_ptr<SqliteStore> store_;
};

// ---- Names -----------------------------------------------------------------------------------

TEST(GrantStateTest, NamesRoundTripAndFinalStates) {
  const std::vector<std::pair<GrantState, std::string_view>> table = {
      {GrantState::kPending, "pending"}, {GrantState::kApproved, "approved"},
      {GrantState::kDenied, "denied"},   {GrantState::kActive, "active"},
      {GrantState::kInUse, "in_use"},    {GrantState::kCompleted, "completed"},
      {GrantState::kRevoked, "revoked"}, {GrantState::kExpired, "expired"}};
  for (const auto& [state, name] : table) {
    EXPECT_EQ(GrantStateName(state), name);
    EXPECT_EQ(ParseGrantState(name), state);
  }
  for (std::string_view bad : {"", "Active", "in-use", "inuse", "active "}) {
    EXPECT_FALSE(ParseGrantState(bad).has_value()) << bad;
  }
  EXPECT_FALSE(IsFinal(GrantState::kPending));
  EXPECT_FALSE(IsFinal(GrantState::kApproved));
  EXPECT_FALSE(IsFinal(GrantState::kActive));
  EXPECT_FALSE(IsFinal(GrantState::kInUse));
  EXPECT_TRUE(IsFinal(GrantState::kDenied));
  EXPECT_TRUE(IsFinal(GrantState::kCompleted));
  EXPECT_TRUE(IsFinal(GrantState::kRevoked));
  EXPECT_TRUE(IsFinal(GrantState::kExpired));
}

TEST(GrantStateTest, RefusedStateOnlyReadsRefusals) {
  absl::Status refused = TransitionRefused("g1", GrantState::kRevoked);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(refused), HasSubstr("grant g1 is revoked"));
  EXPECT_EQ(RefusedState(refused), GrantState::kRevoked);
  EXPECT_FALSE(RefusedState(absl::FailedPreconditionError("other")).has_value());
  EXPECT_FALSE(RefusedState(absl::OkStatus()).has_value());
}

// ---- Create / get ----------------------------------------------------------------------------

TEST_F(SqliteStoreTest, CreateThenGetReturnsTheSameRecord) {
  GrantRecord r = Record("g1");
  Create(r);
  auto got = store_->GetGrant("g1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, r);

  auto events = store_->ListEvents("g1");
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_THAT(*events, ElementsAre(Created(r)));
}

TEST_F(SqliteStoreTest, UnknownGrantIsNotFound) {
  EXPECT_EQ(store_->GetGrant("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ListEvents("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Transition(Redeem("nope")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, DuplicateIdIsAlreadyExistsAndChangesNothing) {
  GrantRecord r = Record("g1");
  Create(r);
  GrantRecord other = Record("g1", GrantState::kPending);
  other.trace_id = "another";
  EXPECT_EQ(store_->CreateGrant(other, Created(other)).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(*store_->GetGrant("g1"), r);
  EXPECT_EQ(store_->ListEvents("g1")->size(), 1u);
}

TEST_F(SqliteStoreTest, CreateRejectsAnEventThatIsNotACreation) {
  GrantRecord r = Record("g1");
  GrantEvent event = Created(r);
  event.from = GrantState::kPending;
  EXPECT_EQ(store_->CreateGrant(r, event).code(), absl::StatusCode::kInvalidArgument);
  event = Created(r);
  event.to = GrantState::kPending;
  EXPECT_EQ(store_->CreateGrant(r, event).code(), absl::StatusCode::kInvalidArgument);
  r.uses_left = 2;  // more than allowed: the schema refuses it
  EXPECT_EQ(store_->CreateGrant(r, Created(r)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetGrant("g1").status().code(), absl::StatusCode::kNotFound);
}

// ---- Transitions -----------------------------------------------------------------------------

struct TransitionCase {
  GrantState from;
  GrantState to;
  bool take_use;
};

TEST_F(SqliteStoreTest, EveryTransitionOfTheStateMachine) {
  const std::vector<TransitionCase> cases = {
      {GrantState::kPending, GrantState::kApproved, false},
      {GrantState::kPending, GrantState::kDenied, false},
      {GrantState::kPending, GrantState::kExpired, false},
      {GrantState::kPending, GrantState::kRevoked, false},
      {GrantState::kApproved, GrantState::kActive, false},
      {GrantState::kApproved, GrantState::kRevoked, false},
      {GrantState::kApproved, GrantState::kExpired, false},
      {GrantState::kActive, GrantState::kInUse, true},
      {GrantState::kActive, GrantState::kRevoked, false},
      {GrantState::kActive, GrantState::kExpired, false},
      {GrantState::kInUse, GrantState::kCompleted, false},
      {GrantState::kInUse, GrantState::kActive, false},
      {GrantState::kInUse, GrantState::kRevoked, false},
      {GrantState::kInUse, GrantState::kExpired, false},
  };
  int n = 0;
  for (const TransitionCase& c : cases) {
    SCOPED_TRACE(Cat(GrantStateName(c.from), " -> ", GrantStateName(c.to)));
    GrantRecord r = Record(Cat("g", n++), c.from, 2);
    Create(r);
    TimePoint at = kT0 + seconds(2);
    auto updated = store_->Transition(TransitionRequest{.grant_id = r.id,
                                                        .from = {c.from},
                                                        .to = c.to,
                                                        .unexpired_at = at,
                                                        .take_use = c.take_use,
                                                        .at = at,
                                                        .actor = "someone",
                                                        .detail = "because"});
    ASSERT_TRUE(updated.ok()) << updated.status();
    GrantRecord expected = r;
    expected.state = c.to;
    expected.uses_left = c.take_use ? 1 : 2;
    EXPECT_EQ(*updated, expected);
    EXPECT_EQ(*store_->GetGrant(r.id), expected);
    EXPECT_THAT(*store_->ListEvents(r.id),
                ElementsAre(Created(r), GrantEvent{r.id, c.from, c.to, at, "someone", "because"}));
  }
}

TEST_F(SqliteStoreTest, RefusedTransitionCarriesTheCurrentStateAndChangesNothing) {
  GrantRecord r = Record("g1", GrantState::kRevoked);
  Create(r);
  auto result = store_->Transition(Redeem("g1"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RefusedState(result.status()), GrantState::kRevoked);
  EXPECT_THAT(Msg(result.status()), HasSubstr("grant g1 is revoked"));
  EXPECT_EQ(*store_->GetGrant("g1"), r);
  EXPECT_EQ(store_->ListEvents("g1")->size(), 1u);
}

TEST_F(SqliteStoreTest, RedemptionRefusedAtAndAfterExpiry) {
  Create(Record("g1"));
  for (TimePoint now : {kT0 + seconds(30), kT0 + seconds(31)}) {
    auto result = store_->Transition(Redeem("g1", now));
    EXPECT_EQ(RefusedState(result.status()), GrantState::kActive);
  }
  EXPECT_TRUE(
      store_->Transition(Redeem("g1", kT0 + seconds(30) - std::chrono::microseconds(1))).ok());
}

TEST_F(SqliteStoreTest, RedemptionRefusedWithoutUsesLeft) {
  GrantRecord r = Record("g1");
  r.uses_left = 0;
  Create(r);
  EXPECT_EQ(RefusedState(store_->Transition(Redeem("g1")).status()), GrantState::kActive);
}

TEST_F(SqliteStoreTest, MultiUseGrantCountsDown) {
  Create(Record("g1", GrantState::kActive, 3));
  TransitionRequest take = Redeem("g1");
  take.from = {GrantState::kActive, GrantState::kInUse};
  EXPECT_EQ(store_->Transition(take)->uses_left, 2u);
  EXPECT_EQ(store_->Transition(take)->uses_left, 1u);
  EXPECT_EQ(store_->Transition(take)->uses_left, 0u);
  EXPECT_EQ(RefusedState(store_->Transition(take).status()), GrantState::kInUse);
  auto events = store_->ListEvents("g1");
  ASSERT_EQ(events->size(), 4u);
  EXPECT_EQ((*events)[1].from, GrantState::kActive);
  EXPECT_EQ((*events)[2].from, GrantState::kInUse);
}

TEST_F(SqliteStoreTest, TransitionNeedsAFromState) {
  Create(Record("g1"));
  TransitionRequest request = Redeem("g1");
  request.from.clear();
  EXPECT_EQ(store_->Transition(request).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- Expiry ----------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, ExpireDueMovesLiveGrantsPastTheirExpiry) {
  TimePoint now = kT0 + seconds(60);
  std::vector<GrantRecord> due = {
      Record("pending", GrantState::kPending), Record("approved", GrantState::kApproved),
      Record("active", GrantState::kActive), Record("in_use", GrantState::kInUse)};
  for (GrantRecord& r : due) {
    r.expires_at = now - seconds(1);
    Create(r);
  }
  GrantRecord exactly_now = Record("exactly_now");
  exactly_now.expires_at = now;
  Create(exactly_now);
  GrantRecord later = Record("later");
  later.expires_at = now + std::chrono::microseconds(1);
  Create(later);
  GrantRecord done = Record("done", GrantState::kCompleted);
  Create(done);

  auto expired = store_->ExpireDue(now);
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_THAT(*expired, UnorderedElementsAre(ExpiredGrant{"pending", GrantState::kPending},
                                             ExpiredGrant{"approved", GrantState::kApproved},
                                             ExpiredGrant{"active", GrantState::kActive},
                                             ExpiredGrant{"in_use", GrantState::kInUse},
                                             ExpiredGrant{"exactly_now", GrantState::kActive}));
  for (const char* id : {"pending", "approved", "active", "in_use", "exactly_now"}) {
    EXPECT_EQ(store_->GetGrant(id)->state, GrantState::kExpired) << id;
    auto events = store_->ListEvents(id);
    ASSERT_EQ(events->size(), 2u);
    EXPECT_EQ(events->back().to, GrantState::kExpired);
    EXPECT_EQ(events->back().at, now);
    EXPECT_EQ(events->back().actor, "tracegate");
  }
  EXPECT_EQ(store_->GetGrant("later")->state, GrantState::kActive);
  EXPECT_EQ(store_->GetGrant("done")->state, GrantState::kCompleted);
  EXPECT_TRUE(store_->ExpireDue(now)->empty());
}

// ---- Sessions --------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, OpenSessionRoundTrips) {
  SessionSummary open = Session("s1");
  ASSERT_TRUE(store_->PutSession(open).ok());
  auto got = store_->GetSession("s1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, open);
  EXPECT_FALSE(got->ended_at.has_value());
  EXPECT_EQ(got->outcome, "");
}

TEST_F(SqliteStoreTest, EndedSessionRoundTripsEveryFieldAndFull64BitCounters) {
  SessionSummary s = Ended(Session("s1"), "violation");
  s.kind = "http";
  s.trace_id = "";  // a static user's session
  s.grant_id = "";
  s.issuer = "";
  s.user = std::string("odd\0user", 8);
  s.reason = "blocked: COPY ... TO PROGRAM";
  s.statements = std::numeric_limits<uint64_t>::max();
  s.blocked = uint64_t{1} << 63;
  s.rows = (uint64_t{1} << 63) - 1;
  s.bytes_to_client = 18'000'000'000'000'000'000ULL;
  s.first_seq = std::numeric_limits<uint64_t>::max() - 1;
  s.last_seq = std::numeric_limits<uint64_t>::max();
  ASSERT_TRUE(store_->PutSession(s).ok());
  auto got = store_->GetSession("s1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, s);
}

TEST_F(SqliteStoreTest, SessionTimesKeepWholeMicroseconds) {
  SessionSummary s = Ended(Session("s1", kT0 + std::chrono::nanoseconds(1'999)));
  s.ended_at = kT0 + seconds(1) + std::chrono::nanoseconds(500);
  ASSERT_TRUE(store_->PutSession(s).ok());
  auto got = store_->GetSession("s1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->started_at, kT0 + std::chrono::microseconds(1));
  EXPECT_EQ(got->ended_at, kT0 + seconds(1));
}

TEST_F(SqliteStoreTest, PutSessionReplacesTheSummaryWithTheSameId) {
  SessionSummary start = Session("s1");
  ASSERT_TRUE(store_->PutSession(start).ok());
  ASSERT_TRUE(store_->PutSession(Session("s2", kT0 + seconds(1))).ok());
  SessionSummary end = Ended(start, "interrupted");
  end.reason = "gateway shut down";
  ASSERT_TRUE(store_->PutSession(end).ok());
  EXPECT_EQ(*store_->GetSession("s1"), end);
  EXPECT_EQ(*store_->GetSession("s2"), Session("s2", kT0 + seconds(1)));
  auto all = store_->ListSessions({});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(Ids(*all), ElementsAre("s2", "s1"));
}

TEST_F(SqliteStoreTest, UnknownSessionIsNotFound) {
  EXPECT_EQ(store_->GetSession("nope").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->PutSession(Session("s1")).ok());
  EXPECT_EQ(store_->GetSession("s").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, PutSessionRefusesAMalformedSummaryAndKeepsNothing) {
  struct Case {
    std::string name;
    SessionSummary session;
  };
  SessionSummary no_id = Session("");
  SessionSummary bad_kind = Session("s1");
  bad_kind.kind = "ftp";
  SessionSummary open_with_outcome = Session("s1");
  open_with_outcome.outcome = "completed";
  SessionSummary ended_without_outcome = Ended(Session("s1"), "");
  SessionSummary ended_as_open = Ended(Session("s1"), "open");
  SessionSummary unknown_outcome = Ended(Session("s1"), "Completed");
  const std::vector<Case> cases = {{"no id", no_id},
                                   {"unknown kind", bad_kind},
                                   {"open with an outcome", open_with_outcome},
                                   {"ended without an outcome", ended_without_outcome},
                                   {"ended as 'open'", ended_as_open},
                                   {"unknown outcome", unknown_outcome}};
  for (const Case& c : cases) {
    EXPECT_EQ(store_->PutSession(c.session).code(), absl::StatusCode::kInvalidArgument) << c.name;
  }
  EXPECT_EQ(store_->GetSession("s1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->ListSessions({})->empty());
  for (std::string outcome : {"completed", "refused", "violation", "error", "interrupted"}) {
    EXPECT_TRUE(store_->PutSession(Ended(Session(outcome), outcome)).ok()) << outcome;
  }
}

TEST_F(SqliteStoreTest, TheSchemaRefusesAnOutcomeThatDisagreesWithTheEndTime) {
  // Another writer that skips ValidateSessionSummary still cannot store a half-ended row.
  ASSERT_TRUE(store_->PutSession(Session("s1")).ok());
  auto db = internal::Db::Open(path_, std::chrono::milliseconds(1000));
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_FALSE((*db)->Exec("UPDATE sessions SET outcome = 'completed' WHERE id = 's1'").ok());
  EXPECT_FALSE((*db)->Exec("UPDATE sessions SET ended_at_us = 1 WHERE id = 's1'").ok());
  EXPECT_EQ(*store_->GetSession("s1"), Session("s1"));
}

// Seven sessions, one second apart (s1 oldest), varied in every field a query filters on.
class SessionQueryTest : public SqliteStoreTest {
 protected:
  void SetUp() override {
    SqliteStoreTest::SetUp();
    auto put = [&](SessionSummary s) { ASSERT_TRUE(store_->PutSession(s).ok()) << s.id; };
    SessionSummary s1 = Ended(Session("s1", kT0 + seconds(1)));
    SessionSummary s2 = Ended(Session("s2", kT0 + seconds(2)), "violation");
    s2.trace_id = "trace-9";
    SessionSummary s3 = Session("s3", kT0 + seconds(3));
    s3.subject = "agent-8";
    SessionSummary s4 = Ended(Session("s4", kT0 + seconds(4)), "refused");
    s4.connection = "billing";
    s4.subject = "agent-8";
    SessionSummary s5 = Session("s5", kT0 + seconds(5));
    s5.trace_id = "";
    s5.grant_id = "";
    s5.subject = "";
    s5.kind = "http";
    SessionSummary s6 = Ended(Session("s6", kT0 + seconds(6)), "error");
    s6.trace_id = "trace-9";
    s6.connection = "billing";
    SessionSummary s7 = Ended(Session("s7", kT0 + seconds(7)), "interrupted");
    for (const SessionSummary& s : {s1, s2, s3, s4, s5, s6, s7}) {
      put(s);
    }
  }
};

TEST_F(SessionQueryTest, EachFilterAloneAndTogether) {
  struct Case {
    std::string name;
    SessionQuery query;
    std::vector<std::string> ids;
  };
  const std::vector<Case> cases = {
      {"everything", {}, {"s7", "s6", "s5", "s4", "s3", "s2", "s1"}},
      {"trace", {.trace_id = "trace-42"}, {"s7", "s4", "s3", "s1"}},
      {"other trace", {.trace_id = "trace-9"}, {"s6", "s2"}},
      {"no trace: static users", {.trace_id = ""}, {"s5"}},
      {"unknown trace", {.trace_id = "trace-"}, {}},
      {"subject", {.subject = "agent-8"}, {"s4", "s3"}},
      {"connection", {.connection = "billing"}, {"s6", "s4"}},
      {"outcome", {.outcome = "violation"}, {"s2"}},
      {"outcome completed", {.outcome = "completed"}, {"s1"}},
      {"open", {.outcome = "open"}, {"s5", "s3"}},
      {"since (inclusive)", {.since = kT0 + seconds(5)}, {"s7", "s6", "s5"}},
      {"until (exclusive)", {.until = kT0 + seconds(3)}, {"s2", "s1"}},
      {"since and until", {.since = kT0 + seconds(3), .until = kT0 + seconds(5)}, {"s4", "s3"}},
      {"empty window", {.since = kT0 + seconds(4), .until = kT0 + seconds(4)}, {}},
      {"until one microsecond after a start",
       {.until = kT0 + seconds(1) + std::chrono::microseconds(1)},
       {"s1"}},
      {"trace and connection", {.trace_id = "trace-9", .connection = "billing"}, {"s6"}},
      {"subject and open", {.subject = "agent-8", .outcome = "open"}, {"s3"}},
      {"trace, outcome and window",
       {.trace_id = "trace-42", .outcome = "refused", .since = kT0, .until = kT0 + seconds(60)},
       {"s4"}},
      {"all filters, no match",
       {.trace_id = "trace-42",
        .subject = "agent-7",
        .connection = "traces",
        .outcome = "open",
        .since = kT0 + seconds(4)},
       {}},
  };
  for (const Case& c : cases) {
    auto got = store_->ListSessions(c.query);
    ASSERT_TRUE(got.ok()) << c.name << ": " << got.status();
    EXPECT_EQ(Ids(*got), c.ids) << c.name;
  }
}

TEST_F(SessionQueryTest, LimitKeepsTheNewest) {
  EXPECT_THAT(Ids(*store_->ListSessions({.limit = 3})), ElementsAre("s7", "s6", "s5"));
  EXPECT_THAT(Ids(*store_->ListSessions({.trace_id = "trace-42", .limit = 2})),
              ElementsAre("s7", "s4"));
  EXPECT_TRUE(store_->ListSessions({.limit = 0})->empty());
  EXPECT_EQ(store_->ListSessions({.limit = std::numeric_limits<size_t>::max()})->size(), 7u);
  EXPECT_EQ(store_->ListSessions({})->size(), 7u);  // the default limit is 100
}

TEST_F(SqliteStoreTest, DefaultLimitIsAHundredNewestFirst) {
  for (int i = 0; i < 105; ++i) {
    ASSERT_TRUE(store_->PutSession(Session(Cat("s", i), kT0 + seconds(i))).ok());
  }
  auto got = store_->ListSessions({});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 100u);
  EXPECT_EQ(got->front().id, "s104");
  EXPECT_EQ(got->back().id, "s5");
}

TEST_F(SqliteStoreTest, SessionsStartedAtTheSameMicrosecondListInAStableOrder) {
  for (std::string id : {"b", "c", "a"}) {
    ASSERT_TRUE(store_->PutSession(Session(id)).ok());
  }
  EXPECT_THAT(Ids(*store_->ListSessions({})), ElementsAre("c", "b", "a"));
  // Ending a session does not move it.
  ASSERT_TRUE(store_->PutSession(Ended(Session("a"))).ok());
  EXPECT_THAT(Ids(*store_->ListSessions({})), ElementsAre("c", "b", "a"));
}

// The queries here have the shape ListSessions builds (filters, then newest first).
TEST_F(SqliteStoreTest, SessionQueriesUseTheIndexes) {
  auto plan = [&](std::string_view sql) {
    auto db = internal::Db::Open(path_, std::chrono::milliseconds(1000));
    EXPECT_TRUE(db.ok());
    auto stmt = (*db)->Prepare(Cat("EXPLAIN QUERY PLAN ", sql));
    EXPECT_TRUE(stmt.ok()) << stmt.status();
    std::string text;
    while (*stmt->Step()) {
      text += Cat(stmt->Text(3), "\n");
    }
    return text;
  };
  const std::string cols = "SELECT id FROM sessions";
  const std::string order = " ORDER BY started_at_us DESC, id DESC LIMIT 10";
  EXPECT_THAT(plan(cols + " WHERE trace_id = 't'" + order), HasSubstr("sessions_by_trace"));
  EXPECT_THAT(plan(cols + " WHERE subject = 's'" + order), HasSubstr("sessions_by_subject"));
  EXPECT_THAT(plan(cols + " WHERE connection = 'c'" + order), HasSubstr("sessions_by_connection"));
  EXPECT_THAT(plan(cols + " WHERE started_at_us >= 5" + order), HasSubstr("sessions_by_start"));
  EXPECT_THAT(plan(cols + " WHERE ended_at_us IS NULL" + order), HasSubstr("sessions_open"));
}

// ---- Audit head ------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, AuditHeadIsAbsentUntilPutThenTheLatestOne) {
  auto none = store_->GetAuditHead();
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  const std::string first = R"({"seq":7,"hash":"ab12","sig":"c2lnbmF0dXJl"})";
  ASSERT_TRUE(store_->PutAuditHead(first).ok());
  EXPECT_EQ(*store_->GetAuditHead(), first);
  const std::string second = R"({"seq":21,"hash":"cd34","sig":"b3RoZXI="})";
  ASSERT_TRUE(store_->PutAuditHead(second).ok());
  EXPECT_EQ(*store_->GetAuditHead(), second);

  auto db = internal::Db::Open(path_, std::chrono::milliseconds(1000));
  ASSERT_TRUE(db.ok());
  auto count = (*db)->Prepare("SELECT count(*) FROM audit_head");
  ASSERT_TRUE(count.ok() && *count->Step());
  EXPECT_EQ(count->Int(0), 1) << "the head is a single row";
}

// ---- Approvals -------------------------------------------------------------------------------

TEST(ApprovalNamesTest, NamesRoundTrip) {
  const std::vector<std::pair<ApprovalKind, std::string_view>> kinds = {
      {ApprovalKind::kGrant, "grant"}, {ApprovalKind::kResponse, "response"}};
  for (const auto& [kind, name] : kinds) {
    EXPECT_EQ(ApprovalKindName(kind), name);
    EXPECT_EQ(ParseApprovalKind(name), kind);
  }
  const std::vector<std::pair<ApprovalState, std::string_view>> states = {
      {ApprovalState::kPending, "pending"},
      {ApprovalState::kApproved, "approved"},
      {ApprovalState::kDenied, "denied"},
      {ApprovalState::kExpired, "expired"},
      {ApprovalState::kCancelled, "cancelled"}};
  for (const auto& [state, name] : states) {
    EXPECT_EQ(ApprovalStateName(state), name);
    EXPECT_EQ(ParseApprovalState(name), state);
  }
  for (std::string_view bad : {"", "Grant", "grants", "canceled", "pending ", "in_use"}) {
    EXPECT_FALSE(ParseApprovalKind(bad).has_value()) << bad;
    EXPECT_FALSE(ParseApprovalState(bad).has_value()) << bad;
  }
}

constexpr std::chrono::milliseconds kGrantTtl = std::chrono::minutes(10);

ApprovalRequest Approval(std::string id, std::string grant_id, uint32_t required = 1,
                         ApprovalKind kind = ApprovalKind::kGrant) {
  ApprovalRequest a;
  a.id = std::move(id);
  a.kind = kind;
  a.grant_id = std::move(grant_id);
  a.session_id = kind == ApprovalKind::kResponse ? "s-17" : "";
  a.connection = "traces";
  a.trace_id = "trace-42";
  a.requester_issuer = "https://idp.example";
  a.requester_subject = "agent-7";
  a.requester = "agent-7 via test";
  a.reason = "debugging a bad answer";
  a.detail = "rule agents-read-own requires approval";
  a.approver_groups = {"sre", "", "with:colon,and comma", std::string("nul\0byte", 8)};
  a.force_groups = {"security"};
  a.required = required;
  a.created_at = kT0;
  a.expires_at = kT0 + seconds(30);
  return a;
}

// A vote by https://idp.example's `subject`.
ApprovalDecision Vote(std::string request_id, std::string subject, bool approve,
                      TimePoint at = kT0 + seconds(5)) {
  ApprovalDecision d;
  d.request_id = std::move(request_id);
  d.approve = approve;
  d.issuer = "https://idp.example";
  d.approver = Cat(subject, " via test");
  d.subject = std::move(subject);
  d.at = at;
  return d;
}

DecideRequest Decision(ApprovalDecision vote) {
  return DecideRequest{.decision = std::move(vote), .grant_ttl = kGrantTtl};
}

std::vector<std::string> Ids(const std::vector<ApprovalRequest>& requests) {
  std::vector<std::string> ids;
  for (const ApprovalRequest& r : requests) {
    ids.push_back(r.id);
  }
  return ids;
}

class SqliteApprovalsTest : public SqliteStoreTest {
 protected:
  // A pending grant `id` and its kGrant approval needing `required` approvals.
  ApprovalRequest PendingGrantApproval(const std::string& id, uint32_t required) {
    Create(Record(id, GrantState::kPending));
    ApprovalRequest a = Approval(id, id, required);
    absl::Status created = store_->CreateApproval(a);
    EXPECT_TRUE(created.ok()) << created;
    return a;
  }
};

TEST_F(SqliteApprovalsTest, CreateThenGetRoundTripsEveryField) {
  Create(Record("g1", GrantState::kPending));
  ApprovalRequest grant = Approval("g1", "g1", 2);
  ASSERT_TRUE(store_->CreateApproval(grant).ok());
  // A held result on the same grant, with sub-microsecond times (dropped on the way in).
  ApprovalRequest response = Approval("g1.r1", "g1", 1, ApprovalKind::kResponse);
  response.detail = "result of statement 3 holds an email address";
  response.force_groups = {};
  response.approver_groups = {"dpo"};
  response.created_at = kT0 + std::chrono::nanoseconds(1'999);
  response.expires_at = kT0 + seconds(60) + std::chrono::nanoseconds(500);
  ASSERT_TRUE(store_->CreateApproval(response).ok());

  auto got = store_->GetApproval("g1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, grant);
  got = store_->GetApproval("g1.r1");
  ASSERT_TRUE(got.ok()) << got.status();
  ApprovalRequest expected = response;
  expected.created_at = kT0 + std::chrono::microseconds(1);
  expected.expires_at = kT0 + seconds(60);
  EXPECT_EQ(*got, expected);
  EXPECT_FALSE(got->decided_at.has_value());
  EXPECT_TRUE(store_->ListDecisions("g1")->empty());
}

TEST_F(SqliteApprovalsTest, CreateRefusesAMalformedRequestAndKeepsNothing) {
  Create(Record("g1", GrantState::kPending));
  struct Case {
    std::string name;
    ApprovalRequest request;
  };
  std::vector<Case> cases;
  auto add = [&](std::string name, auto change) {
    ApprovalRequest a = Approval("g1", "g1");
    change(a);
    cases.push_back({std::move(name), std::move(a)});
  };
  add("no id", [](ApprovalRequest& a) { a.id = ""; });
  add("no grant id", [](ApprovalRequest& a) { a.grant_id = ""; });
  add("no approvals required", [](ApprovalRequest& a) { a.required = 0; });
  add("expires when created", [](ApprovalRequest& a) { a.expires_at = a.created_at; });
  add("expires before created", [](ApprovalRequest& a) { a.expires_at = kT0 - seconds(1); });
  add("expires within the creation microsecond",
      [](ApprovalRequest& a) { a.expires_at = a.created_at + std::chrono::nanoseconds(999); });
  add("already approved", [](ApprovalRequest& a) { a.state = ApprovalState::kApproved; });
  add("already decided", [](ApprovalRequest& a) { a.decided_at = kT0; });
  for (const Case& c : cases) {
    EXPECT_EQ(store_->CreateApproval(c.request).code(), absl::StatusCode::kInvalidArgument)
        << c.name;
  }
  EXPECT_EQ(store_->GetApproval("g1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->ListApprovals({})->empty());
  EXPECT_TRUE(store_->CreateApproval(Approval("g1", "g1")).ok());
}

TEST_F(SqliteApprovalsTest, CreateChecksTheGrantAndTheId) {
  // kGrant: the grant must exist and be pending.
  EXPECT_EQ(store_->CreateApproval(Approval("nope", "nope")).code(), absl::StatusCode::kNotFound);
  Create(Record("active", GrantState::kActive));
  absl::Status refused = store_->CreateApproval(Approval("active", "active"));
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RefusedState(refused), GrantState::kActive);
  // kResponse: the grant must exist, in any state.
  EXPECT_EQ(store_->CreateApproval(Approval("nope.r1", "nope", 1, ApprovalKind::kResponse)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(
      store_->CreateApproval(Approval("active.r1", "active", 1, ApprovalKind::kResponse)).ok());
  EXPECT_EQ(store_->ListApprovals({})->size(), 1u);

  // A taken id, even once its grant has moved on (a retried create).
  ApprovalRequest a = PendingGrantApproval("g1", 1);
  ApprovalRequest again = a;
  again.detail = "another";
  EXPECT_EQ(store_->CreateApproval(again).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(store_->Decide(Decision(Vote("g1", "alice", true))).ok());
  EXPECT_EQ(store_->CreateApproval(again).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->GetApproval("g1")->detail, a.detail);
}

TEST_F(SqliteApprovalsTest, UnknownApprovalIsNotFound) {
  PendingGrantApproval("g1", 1);
  EXPECT_EQ(store_->GetApproval("g2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ListDecisions("g2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Decide(Decision(Vote("g2", "alice", true))).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->CloseApproval("g2", ApprovalState::kCancelled, kT0).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetApproval("g1")->state, ApprovalState::kPending);
}

// Five requests on three grants, varied in state, one pair created at the same microsecond.
class ApprovalQueryTest : public SqliteApprovalsTest {
 protected:
  void SetUp() override {
    SqliteApprovalsTest::SetUp();
    Create(Record("g1", GrantState::kPending));
    Create(Record("g2", GrantState::kPending));
    Create(Record("g3", GrantState::kInUse));
    auto put = [&](ApprovalRequest a, int created) {
      a.created_at = kT0 + seconds(created);
      a.expires_at = a.created_at + seconds(30);
      ASSERT_TRUE(store_->CreateApproval(a).ok()) << a.id;
    };
    put(Approval("g1", "g1"), 1);
    put(Approval("g2", "g2"), 2);
    put(Approval("g3.r2", "g3", 1, ApprovalKind::kResponse), 3);
    put(Approval("g3.r1", "g3", 1, ApprovalKind::kResponse), 3);
    put(Approval("g3.r3", "g3", 1, ApprovalKind::kResponse), 4);
    ASSERT_TRUE(store_->Decide(Decision(Vote("g2", "alice", false))).ok());
    ASSERT_TRUE(store_->CloseApproval("g3.r2", ApprovalState::kCancelled, kT0 + seconds(5)).ok());
  }
};

// (GCC 12 reports designated optional<string> members in a table as maybe-uninitialized.)
ApprovalQuery Query(std::optional<ApprovalState> state, std::optional<std::string> grant_id,
                    size_t limit = 100) {
  ApprovalQuery query;
  query.state = state;
  query.grant_id = std::move(grant_id);
  query.limit = limit;
  return query;
}

TEST_F(ApprovalQueryTest, FiltersOrderAndLimit) {
  struct Case {
    std::string name;
    ApprovalQuery query;
    std::vector<std::string> ids;
  };
  const auto all = std::nullopt;
  const std::vector<Case> cases = {
      {"everything, newest first, ties by greater id",
       Query(all, all),
       {"g3.r3", "g3.r2", "g3.r1", "g2", "g1"}},
      {"pending", Query(ApprovalState::kPending, all), {"g3.r3", "g3.r1", "g1"}},
      {"denied", Query(ApprovalState::kDenied, all), {"g2"}},
      {"cancelled", Query(ApprovalState::kCancelled, all), {"g3.r2"}},
      {"approved", Query(ApprovalState::kApproved, all), {}},
      {"grant", Query(all, "g3"), {"g3.r3", "g3.r2", "g3.r1"}},
      {"grant and state", Query(ApprovalState::kPending, "g3"), {"g3.r3", "g3.r1"}},
      {"grant and other state", Query(ApprovalState::kDenied, "g3"), {}},
      {"other grant", Query(all, "g1"), {"g1"}},
      {"unknown grant", Query(all, "g"), {}},
      {"limit", Query(all, all, 2), {"g3.r3", "g3.r2"}},
      {"grant and limit", Query(all, "g3", 1), {"g3.r3"}},
      {"limit 0", Query(all, all, 0), {}},
      {"no limit",
       Query(all, all, std::numeric_limits<size_t>::max()),
       {"g3.r3", "g3.r2", "g3.r1", "g2", "g1"}},
  };
  for (const Case& c : cases) {
    auto got = store_->ListApprovals(c.query);
    ASSERT_TRUE(got.ok()) << c.name << ": " << got.status();
    EXPECT_EQ(Ids(*got), c.ids) << c.name;
  }
  // Listed requests are whole: the oldest is g1 exactly as created.
  ApprovalRequest g1 = Approval("g1", "g1");
  g1.created_at = kT0 + seconds(1);
  g1.expires_at = kT0 + seconds(31);
  auto listed = store_->ListApprovals({});
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->back(), g1);
  EXPECT_EQ(listed->front().kind, ApprovalKind::kResponse);
  EXPECT_EQ((*listed)[3].decided_at, kT0 + seconds(5)) << "g2 was denied";
}

// Pages follow the cursor: every request is listed exactly once, in order, even with two
// created at the same microsecond (g3.r1 and g3.r2) and a page boundary between them.
TEST_F(ApprovalQueryTest, TheCursorWalksEveryRequestOnce) {
  for (size_t page = 1; page <= 6; ++page) {
    std::vector<std::string> seen;
    std::optional<ApprovalCursor> after;
    for (int guard = 0; guard < 10; ++guard) {
      ApprovalQuery query = Query(std::nullopt, std::nullopt, page);
      query.after = after;
      auto got = store_->ListApprovals(query);
      ASSERT_TRUE(got.ok()) << got.status();
      for (const ApprovalRequest& r : *got) {
        seen.push_back(r.id);
      }
      if (got->size() < page) {
        break;
      }
      after = ApprovalCursor{got->back().created_at, got->back().id};
    }
    EXPECT_EQ(seen, (std::vector<std::string>{"g3.r3", "g3.r2", "g3.r1", "g2", "g1"}))
        << "page size " << page;
  }
}

TEST_F(ApprovalQueryTest, FiltersByRequesterConnectionAndTrace) {
  Create(Record("g9", GrantState::kPending));
  ApprovalRequest other = Approval("g9", "g9");
  other.requester_subject = "someone-else";
  other.connection = "other-db";
  other.trace_id = "trace-9";
  other.created_at = kT0 + seconds(9);
  other.expires_at = other.created_at + seconds(30);
  ASSERT_TRUE(store_->CreateApproval(other).ok());

  ApprovalQuery mine = Query(std::nullopt, std::nullopt);
  mine.requester_issuer = "https://idp.example";
  mine.requester_subject = "agent-7";
  EXPECT_EQ(Ids(*store_->ListApprovals(mine)),
            (std::vector<std::string>{"g3.r3", "g3.r2", "g3.r1", "g2", "g1"}));
  ApprovalQuery theirs = mine;
  theirs.requester_subject = "someone-else";
  EXPECT_EQ(Ids(*store_->ListApprovals(theirs)), std::vector<std::string>{"g9"});
  ApprovalQuery half = Query(std::nullopt, std::nullopt);
  half.requester_subject = "agent-7";  // no issuer: matches nothing, never everything
  EXPECT_TRUE(store_->ListApprovals(half)->empty());
  ApprovalQuery by_connection = Query(ApprovalState::kPending, std::nullopt);
  by_connection.connection = "other-db";
  EXPECT_EQ(Ids(*store_->ListApprovals(by_connection)), std::vector<std::string>{"g9"});
  ApprovalQuery by_trace = Query(std::nullopt, std::nullopt);
  by_trace.trace_id = "trace-42";
  EXPECT_EQ(store_->ListApprovals(by_trace)->size(), 5u);
  by_trace.trace_id = "trace-4";  // exact, not a prefix
  EXPECT_TRUE(store_->ListApprovals(by_trace)->empty());
}

TEST_F(SqliteApprovalsTest, ARequesterAtTheCapGetsResourceExhaustedAndNothingIsStored) {
  for (int i = 0; i < 3; ++i) {
    const std::string id = Cat("p", i);
    Create(Record(id, GrantState::kPending));
    ASSERT_TRUE(store_->CreateApprovalWithin(Approval(id, id), 3).ok()) << id;
  }
  Create(Record("p3", GrantState::kPending));
  absl::Status refused = store_->CreateApprovalWithin(Approval("p3", "p3"), 3);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(Msg(refused), HasSubstr("max_pending_per_requester"));
  EXPECT_EQ(store_->GetApproval("p3").status().code(), absl::StatusCode::kNotFound);
  // Another requester is not held back by the first one's requests.
  ApprovalRequest other = Approval("p3", "p3");
  other.requester_subject = "agent-8";
  EXPECT_TRUE(store_->CreateApprovalWithin(other, 3).ok());
  // A settled request frees its place.
  ASSERT_TRUE(store_->CloseApproval("p0", ApprovalState::kCancelled, kT0 + seconds(1)).ok());
  Create(Record("p4", GrantState::kPending));
  EXPECT_TRUE(store_->CreateApprovalWithin(Approval("p4", "p4"), 3).ok());
  // The base class's two-step version agrees.
  Create(Record("p5", GrantState::kPending));
  EXPECT_EQ(store_->StateStore::CreateApprovalWithin(Approval("p5", "p5"), 3).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(SqliteApprovalsTest, TwoOfThreeApprovalsSettleOnTheSecondAndApproveTheGrant) {
  ApprovalRequest a = PendingGrantApproval("g1", 2);
  GrantRecord grant = *store_->GetGrant("g1");

  ApprovalDecision first = Vote("g1", "alice", true, kT0 + seconds(5));
  auto r1 = store_->Decide(Decision(first));
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->request, a) << "one approval of two leaves it pending";
  EXPECT_THAT(r1->decisions, ElementsAre(first));
  EXPECT_FALSE(r1->grant.has_value());
  EXPECT_EQ(*store_->GetGrant("g1"), grant);
  EXPECT_EQ(store_->ListEvents("g1")->size(), 1u);

  ApprovalDecision second = Vote("g1", "bob", true, kT0 + seconds(6));
  second.comment = "looks fine";
  auto r2 = store_->Decide(Decision(second));
  ASSERT_TRUE(r2.ok()) << r2.status();
  ApprovalRequest approved = a;
  approved.state = ApprovalState::kApproved;
  approved.decided_at = kT0 + seconds(6);
  EXPECT_EQ(r2->request, approved);
  EXPECT_THAT(r2->decisions, ElementsAre(first, second));
  GrantRecord approved_grant = grant;
  approved_grant.state = GrantState::kApproved;
  approved_grant.expires_at = kT0 + seconds(6) + kGrantTtl;
  ASSERT_TRUE(r2->grant.has_value());
  EXPECT_EQ(*r2->grant, approved_grant);
  EXPECT_EQ(*store_->GetGrant("g1"), approved_grant);
  EXPECT_EQ(*store_->GetApproval("g1"), approved);
  EXPECT_THAT(*store_->ListDecisions("g1"), ElementsAre(first, second));
  EXPECT_THAT(*store_->ListEvents("g1"),
              ElementsAre(Created(grant),
                          GrantEvent{"g1", GrantState::kPending, GrantState::kApproved,
                                     kT0 + seconds(6), "bob via test", "approved: looks fine"}));

  // The third approver is too late, whatever the vote, and nothing changes.
  for (bool approve : {true, false}) {
    auto late = store_->Decide(Decision(Vote("g1", "carol", approve, kT0 + seconds(7))));
    EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(Msg(late.status()), "approval g1 is approved");
  }
  EXPECT_EQ(*store_->GetApproval("g1"), approved);
  EXPECT_EQ(store_->ListDecisions("g1")->size(), 2u);
  EXPECT_EQ(*store_->GetGrant("g1"), approved_grant);
  EXPECT_EQ(store_->ListEvents("g1")->size(), 2u);
}

TEST_F(SqliteApprovalsTest, ADenySettlesAtOnceAndDeniesTheGrant) {
  ApprovalRequest a = PendingGrantApproval("g1", 2);
  GrantRecord grant = *store_->GetGrant("g1");
  ApprovalDecision approve = Vote("g1", "alice", true, kT0 + seconds(5));
  ASSERT_TRUE(store_->Decide(Decision(approve)).ok());
  ApprovalDecision deny = Vote("g1", "bob", false, kT0 + seconds(6));
  auto result = store_->Decide(Decision(deny));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->request.state, ApprovalState::kDenied);
  EXPECT_EQ(result->request.decided_at, kT0 + seconds(6));
  EXPECT_THAT(result->decisions, ElementsAre(approve, deny));
  GrantRecord denied = grant;
  denied.state = GrantState::kDenied;  // its expiry stays as it was
  ASSERT_TRUE(result->grant.has_value());
  EXPECT_EQ(*result->grant, denied);
  EXPECT_EQ(*store_->GetGrant("g1"), denied);
  EXPECT_EQ(store_->ListEvents("g1")->back(),
            (GrantEvent{"g1", GrantState::kPending, GrantState::kDenied, kT0 + seconds(6),
                        "bob via test", "denied"}));
  EXPECT_EQ(store_->GetApproval("g1")->state, ApprovalState::kDenied);
}

TEST_F(SqliteApprovalsTest, AFirstVoteDenyingSettlesAloneAndKeepsTheComment) {
  PendingGrantApproval("g1", 3);
  ApprovalDecision deny = Vote("g1", "alice", false);
  deny.comment = "not during the freeze";
  auto result = store_->Decide(Decision(deny));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->request.state, ApprovalState::kDenied);
  EXPECT_EQ(store_->ListEvents("g1")->back().detail, "denied: not during the freeze");
}

TEST_F(SqliteApprovalsTest, AForcedApprovalSettlesAlone) {
  PendingGrantApproval("g1", 3);
  ApprovalDecision forced = Vote("g1", "security-lead", true, kT0 + seconds(9));
  forced.forced = true;
  forced.comment = "incident 77";
  auto result = store_->Decide(Decision(forced));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->request.state, ApprovalState::kApproved);
  EXPECT_EQ(result->request.decided_at, kT0 + seconds(9));
  EXPECT_THAT(result->decisions, ElementsAre(forced));
  EXPECT_TRUE(result->decisions[0].forced);
  ASSERT_TRUE(result->grant.has_value());
  EXPECT_EQ(result->grant->state, GrantState::kApproved);
  EXPECT_EQ(result->grant->expires_at, kT0 + seconds(9) + kGrantTtl);
  EXPECT_EQ(store_->ListEvents("g1")->back(),
            (GrantEvent{"g1", GrantState::kPending, GrantState::kApproved, kT0 + seconds(9),
                        "security-lead via test", "approved: incident 77"}));
}

TEST_F(SqliteApprovalsTest, ASecondVoteByTheSameApproverIsAlreadyExistsAndChangesNothing) {
  ApprovalRequest a = PendingGrantApproval("g1", 2);
  ApprovalDecision first = Vote("g1", "alice", true);
  ASSERT_TRUE(store_->Decide(Decision(first)).ok());
  for (bool approve : {true, false}) {
    ApprovalDecision again = Vote("g1", "alice", approve, kT0 + seconds(6));
    again.forced = true;
    auto result = store_->Decide(Decision(again));
    EXPECT_EQ(result.status().code(), absl::StatusCode::kAlreadyExists);
    EXPECT_EQ(Msg(result.status()), "alice via test already decided approval g1");
  }
  EXPECT_EQ(*store_->GetApproval("g1"), a);
  EXPECT_THAT(*store_->ListDecisions("g1"), ElementsAre(first));
  EXPECT_EQ(store_->GetGrant("g1")->state, GrantState::kPending);
  EXPECT_EQ(store_->ListEvents("g1")->size(), 1u);

  // An approver is (issuer, subject): the same subject at another issuer is someone else.
  ApprovalDecision other = Vote("g1", "alice", true, kT0 + seconds(7));
  other.issuer = "https://other-idp.example";
  auto result = store_->Decide(Decision(other));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->request.state, ApprovalState::kApproved);
}

TEST_F(SqliteApprovalsTest, AVoteAtOrAfterExpiryIsRefusedAndLeavesTheRequestPending) {
  ApprovalRequest a = PendingGrantApproval("g1", 1);
  for (TimePoint at :
       {a.expires_at, a.expires_at + seconds(1), a.expires_at + std::chrono::nanoseconds(999)}) {
    auto result = store_->Decide(Decision(Vote("g1", "alice", true, at)));
    EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(Msg(result.status()), "approval g1 has expired");
  }
  EXPECT_EQ(*store_->GetApproval("g1"), a) << "ExpireApprovals moves it, not Decide";
  EXPECT_TRUE(store_->ListDecisions("g1")->empty());
  EXPECT_EQ(store_->GetGrant("g1")->state, GrantState::kPending);
  auto last_moment = store_->Decide(
      Decision(Vote("g1", "alice", true, a.expires_at - std::chrono::microseconds(1))));
  ASSERT_TRUE(last_moment.ok()) << last_moment.status();
  EXPECT_EQ(last_moment->request.state, ApprovalState::kApproved);
}

// The grant left pending behind the approval's back (revoked, expired by the sweeper): the
// settling vote fails as a whole and is not kept.
TEST_F(SqliteApprovalsTest, ASettlingVoteOnAGrantThatLeftPendingChangesNothing) {
  ApprovalRequest a = PendingGrantApproval("g1", 2);
  ApprovalDecision first = Vote("g1", "alice", true);
  ASSERT_TRUE(store_->Decide(Decision(first)).ok());
  ASSERT_TRUE(store_
                  ->Transition(TransitionRequest{.grant_id = "g1",
                                                 .from = {GrantState::kPending},
                                                 .to = GrantState::kRevoked,
                                                 .at = kT0 + seconds(5),
                                                 .actor = "admin",
                                                 .detail = "revoked"})
                  .ok());
  for (bool approve : {true, false}) {
    auto result = store_->Decide(Decision(Vote("g1", "bob", approve, kT0 + seconds(6))));
    EXPECT_EQ(RefusedState(result.status()), GrantState::kRevoked) << result.status();
  }
  EXPECT_EQ(*store_->GetApproval("g1"), a);
  EXPECT_THAT(*store_->ListDecisions("g1"), ElementsAre(first));
  EXPECT_EQ(store_->GetGrant("g1")->state, GrantState::kRevoked);
  EXPECT_EQ(store_->ListEvents("g1")->size(), 2u);
}

TEST_F(SqliteApprovalsTest, ExpireApprovalsMovesOnlyDuePendingRequests) {
  TimePoint now = kT0 + seconds(60);
  Create(Record("g1", GrantState::kInUse));
  auto put = [&](std::string id, TimePoint expires_at) {
    ApprovalRequest a = Approval(id, "g1", 1, ApprovalKind::kResponse);
    a.expires_at = expires_at;
    EXPECT_TRUE(store_->CreateApproval(a).ok()) << id;
    return a;
  };
  ApprovalRequest due = put("g1.r1", now - seconds(1));
  ApprovalRequest exactly_now = put("g1.r2", now);
  ApprovalRequest later = put("g1.r3", now + std::chrono::microseconds(1));
  put("g1.r4", now - seconds(2));
  ASSERT_TRUE(store_->Decide(Decision(Vote("g1.r4", "alice", true))).ok());
  put("g1.r5", now - seconds(3));
  ASSERT_TRUE(store_->CloseApproval("g1.r5", ApprovalState::kCancelled, kT0 + seconds(1)).ok());

  auto expired = store_->ExpireApprovals(now);
  ASSERT_TRUE(expired.ok()) << expired.status();
  for (ApprovalRequest* a : {&due, &exactly_now}) {
    a->state = ApprovalState::kExpired;
    a->decided_at = now;
  }
  EXPECT_THAT(*expired, ElementsAre(due, exactly_now));
  EXPECT_EQ(*store_->GetApproval("g1.r1"), due);
  EXPECT_EQ(*store_->GetApproval("g1.r2"), exactly_now);
  EXPECT_EQ(*store_->GetApproval("g1.r3"), later);
  EXPECT_EQ(store_->GetApproval("g1.r4")->state, ApprovalState::kApproved);
  EXPECT_EQ(store_->GetApproval("g1.r5")->state, ApprovalState::kCancelled);
  EXPECT_EQ(store_->GetGrant("g1")->state, GrantState::kInUse) << "grants are not touched";
  EXPECT_EQ(store_->ListEvents("g1")->size(), 1u);
  EXPECT_TRUE(store_->ExpireApprovals(now)->empty());
  auto late = store_->Decide(Decision(Vote("g1.r1", "bob", true, kT0)));
  EXPECT_EQ(Msg(late.status()), "approval g1.r1 is expired");
}

TEST_F(SqliteApprovalsTest, ExpireApprovalsLeavesAPendingGrantToTheGrantSweeper) {
  ApprovalRequest a = PendingGrantApproval("g1", 1);
  auto expired = store_->ExpireApprovals(a.expires_at);
  ASSERT_TRUE(expired.ok()) << expired.status();
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ(store_->GetApproval("g1")->state, ApprovalState::kExpired);
  EXPECT_EQ(store_->GetGrant("g1")->state, GrantState::kPending);
}

TEST_F(SqliteApprovalsTest, CloseApprovalCancelsOrExpiresOnlyAPendingRequest) {
  ApprovalRequest a = PendingGrantApproval("g1", 2);
  ASSERT_TRUE(store_->Decide(Decision(Vote("g1", "alice", true))).ok());
  for (ApprovalState bad :
       {ApprovalState::kPending, ApprovalState::kApproved, ApprovalState::kDenied}) {
    EXPECT_EQ(store_->CloseApproval("g1", bad, kT0 + seconds(7)).status().code(),
              absl::StatusCode::kInvalidArgument)
        << ApprovalStateName(bad);
  }
  EXPECT_EQ(store_->GetApproval("g1")->state, ApprovalState::kPending);

  auto closed = store_->CloseApproval("g1", ApprovalState::kCancelled,
                                      kT0 + seconds(7) + std::chrono::nanoseconds(1));
  ASSERT_TRUE(closed.ok()) << closed.status();
  ApprovalRequest cancelled = a;
  cancelled.state = ApprovalState::kCancelled;
  cancelled.decided_at = kT0 + seconds(7);
  EXPECT_EQ(*closed, cancelled);
  EXPECT_EQ(*store_->GetApproval("g1"), cancelled);
  EXPECT_EQ(store_->ListDecisions("g1")->size(), 1u) << "votes are kept";
  EXPECT_EQ(store_->GetGrant("g1")->state, GrantState::kPending) << "the grant is not touched";
  EXPECT_EQ(store_->ListEvents("g1")->size(), 1u);

  for (ApprovalState to : {ApprovalState::kCancelled, ApprovalState::kExpired}) {
    auto again = store_->CloseApproval("g1", to, kT0 + seconds(8));
    EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(Msg(again.status()), "approval g1 is cancelled");
  }
  EXPECT_EQ(*store_->GetApproval("g1"), cancelled);
  EXPECT_EQ(Msg(store_->Decide(Decision(Vote("g1", "bob", true))).status()),
            "approval g1 is cancelled");

  Create(Record("g2", GrantState::kInUse));
  ASSERT_TRUE(store_->CreateApproval(Approval("g2.r1", "g2", 1, ApprovalKind::kResponse)).ok());
  auto expired = store_->CloseApproval("g2.r1", ApprovalState::kExpired, kT0 + seconds(9));
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(expired->state, ApprovalState::kExpired);
  EXPECT_EQ(expired->decided_at, kT0 + seconds(9));
}

TEST_F(SqliteApprovalsTest, ASettledResponseApprovalDoesNotTouchTheGrant) {
  GrantRecord grant = Record("g1", GrantState::kInUse);
  Create(grant);
  ASSERT_TRUE(store_->CreateApproval(Approval("g1.r1", "g1", 1, ApprovalKind::kResponse)).ok());
  ASSERT_TRUE(store_->CreateApproval(Approval("g1.r2", "g1", 1, ApprovalKind::kResponse)).ok());

  auto approved = store_->Decide(Decision(Vote("g1.r1", "dpo", true)));
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->request.state, ApprovalState::kApproved);
  EXPECT_FALSE(approved->grant.has_value());
  auto denied = store_->Decide(Decision(Vote("g1.r2", "dpo", false)));
  ASSERT_TRUE(denied.ok()) << denied.status();
  EXPECT_EQ(denied->request.state, ApprovalState::kDenied);
  EXPECT_FALSE(denied->grant.has_value());

  EXPECT_EQ(*store_->GetGrant("g1"), grant);
  EXPECT_THAT(*store_->ListEvents("g1"), ElementsAre(Created(grant)));
}

TEST_F(SqliteApprovalsTest, TheSchemaKeepsDecidedAtWithTheStateAndOneVotePerApprover) {
  PendingGrantApproval("g1", 2);
  ASSERT_TRUE(store_->Decide(Decision(Vote("g1", "alice", true))).ok());
  auto db = internal::Db::Open(path_, std::chrono::milliseconds(1000));
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_FALSE((*db)->Exec("UPDATE approvals SET state = 'approved' WHERE id = 'g1'").ok());
  EXPECT_FALSE((*db)->Exec("UPDATE approvals SET decided_at_us = 1 WHERE id = 'g1'").ok());
  EXPECT_FALSE((*db)->Exec("UPDATE approvals SET state = 'maybe', decided_at_us = 1").ok());
  EXPECT_FALSE((*db)->Exec("UPDATE approvals SET kind = 'session'").ok());
  EXPECT_FALSE((*db)
                   ->Exec("INSERT INTO approval_decisions (request_id, approve, issuer, subject, "
                          "approver, comment, forced, at_us) SELECT request_id, 1, issuer, "
                          "subject, approver, comment, forced, at_us FROM approval_decisions")
                   .ok());
  EXPECT_FALSE((*db)
                   ->Exec("INSERT INTO approval_decisions (request_id, approve, issuer, subject, "
                          "approver, comment, forced, at_us) VALUES ('nope', 1, 'i', 's', 'a', "
                          "'', 0, 1)")
                   .ok());
  EXPECT_EQ(store_->GetApproval("g1")->state, ApprovalState::kPending);
  EXPECT_EQ(store_->ListDecisions("g1")->size(), 1u);
}

// The queries here have the shape ListApprovals, ExpireApprovals and the vote look-ups build.
TEST_F(SqliteApprovalsTest, ApprovalQueriesUseTheIndexes) {
  auto plan = [&](std::string_view sql) {
    auto db = internal::Db::Open(path_, std::chrono::milliseconds(1000));
    EXPECT_TRUE(db.ok());
    auto stmt = (*db)->Prepare(Cat("EXPLAIN QUERY PLAN ", sql));
    EXPECT_TRUE(stmt.ok()) << stmt.status();
    std::string text;
    while (*stmt->Step()) {
      text += Cat(stmt->Text(3), "\n");
    }
    return text;
  };
  const std::string cols = "SELECT id FROM approvals";
  const std::string order = " ORDER BY created_at_us DESC, id DESC LIMIT 10";
  EXPECT_THAT(plan(cols + " WHERE state = 'pending'" + order), HasSubstr("approvals_by_state"));
  EXPECT_THAT(plan(cols + " WHERE grant_id = 'g'" + order), HasSubstr("approvals_by_grant"));
  EXPECT_THAT(plan(cols + order), HasSubstr("approvals_by_created"));
  EXPECT_THAT(plan("SELECT COUNT(*) FROM approvals WHERE requester_issuer = 'i' AND "
                   "requester_subject = 's' AND state = 'pending'"),
              HasSubstr("approvals_by_requester"));
  EXPECT_THAT(plan(cols + " WHERE state = 'pending' AND expires_at_us <= 5"),
              HasSubstr("approvals_by_state"));
  EXPECT_THAT(plan("SELECT approve FROM approval_decisions WHERE request_id = 'r' ORDER BY seq"),
              HasSubstr("INDEX sqlite_autoindex_approval_decisions"));
}

// ---- Schema ----------------------------------------------------------------------------------

int UserVersionOf(const std::string& path) {
  auto db = internal::Db::Open(path, std::chrono::milliseconds(1000));
  EXPECT_TRUE(db.ok()) << db.status();
  return *(*db)->UserVersion();
}

void SetUserVersion(const std::string& path, int version) {
  auto db = internal::Db::Open(path, std::chrono::milliseconds(1000));
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)->Exec(Cat("PRAGMA user_version = ", version)).ok());
}

TEST(SqliteSchemaTest, MigratesAnEmptyFileToTheCurrentVersion) {
  TempDir dir;
  std::string path = dir.File("fresh.db");
  ASSERT_TRUE(SqliteStore::Open(path).ok());
  EXPECT_EQ(UserVersionOf(path), SqliteStore::SchemaVersion());
  EXPECT_GE(SqliteStore::SchemaVersion(), 1);
  // Opening again at the current version changes nothing.
  ASSERT_TRUE(SqliteStore::Open(path).ok());
  EXPECT_EQ(UserVersionOf(path), SqliteStore::SchemaVersion());
}

TEST(SqliteSchemaTest, RefusesADatabaseFromANewerTracegate) {
  TempDir dir;
  std::string path = dir.File("newer.db");
  ASSERT_TRUE(SqliteStore::Open(path).ok());
  int newer = SqliteStore::SchemaVersion() + 1;
  SetUserVersion(path, newer);
  auto store = SqliteStore::Open(path);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(store.status()), HasSubstr(Cat("schema version ", newer)));
  EXPECT_THAT(Msg(store.status()), HasSubstr("newer tracegate"));
  EXPECT_EQ(UserVersionOf(path), newer);
}

TEST(SqliteSchemaTest, MigrationStepsApplyInOrderAndAllOrNothing) {
  TempDir dir;
  std::string path = dir.File("steps.db");
  auto db = internal::Db::Open(path, std::chrono::milliseconds(1000));
  ASSERT_TRUE(db.ok()) << db.status();
  const std::vector<std::string_view> broken = {
      "CREATE TABLE a (x INTEGER)", "CREATE TABLE b (x INTEGER) STRICT", "CREATE TABLE c (x"};
  absl::Status failed = internal::ApplyMigrations(**db, broken, path);
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Msg(failed), HasSubstr("migration to version 3 failed"));
  EXPECT_EQ(*(*db)->UserVersion(), 0);
  EXPECT_FALSE((*db)->Exec("SELECT x FROM a").ok()) << "step 1 must have been rolled back";

  const std::vector<std::string_view> first = {broken[0]};
  ASSERT_TRUE(internal::ApplyMigrations(**db, first, path).ok());
  EXPECT_EQ(*(*db)->UserVersion(), 1);
  // Version 1 → 2 applies only the second step (the first would fail: table a exists).
  const std::vector<std::string_view> two = {broken[0], broken[1]};
  ASSERT_TRUE(internal::ApplyMigrations(**db, two, path).ok());
  EXPECT_EQ(*(*db)->UserVersion(), 2);
  EXPECT_TRUE((*db)->Exec("SELECT x FROM b").ok());
}

// A grant and its creation event as tracegate's first schema (unchanged since) kept them,
// written with SQL so that the test does not depend on today's code.
GrantRecord OldGrant(std::string id, GrantState state) {
  GrantRecord r = Record(std::move(id), state);
  r.groups = {"ml"};
  r.max_rows = 1000;
  r.bearer_hash = "hash";
  return r;
}

std::string OldGrantSql(const GrantRecord& r) {
  return Cat("INSERT INTO grants VALUES ('", r.id, "', '", GrantStateName(r.state),
             "', 'traces', 'trace-42', 'https://idp.example', 'agent-7', 'agent-client', "
             "X'323A6D6C2C', 'debugging a bad answer', 'agents-read-own', '10.0.0.7:51234', "
             "'default', ",
             Micros(r.created_at), ", ", Micros(r.expires_at),
             ", 1, 1, 300000, 1000, 1048576, 'SCRAM-SHA-256$16:c2FsdA==$c3RvcmVk:c2VydmVy', "
             "X'68617368');"
             "INSERT INTO grant_events (grant_id, from_state, to_state, at_us, actor, detail) "
             "VALUES ('",
             r.id, "', NULL, '", GrantStateName(r.state), "', ", Micros(r.created_at),
             ", 'agent-7 via test', 'issued')");
}

// A file as tracegate left it at schema version 1 (grants only) opens, keeps its grants and
// gains the session index and the audit head.
TEST(SqliteSchemaTest, MigratesAVersionOneFileWithItsGrants) {
  TempDir dir;
  std::string path = dir.File("v1.db");
  std::span<const std::string_view> steps = internal::SqliteMigrationSteps();
  ASSERT_EQ(steps.size(), static_cast<size_t>(SqliteStore::SchemaVersion()));
  ASSERT_GE(steps.size(), 2u);
  GrantRecord r = OldGrant("g1", GrantState::kActive);
  {
    auto db = internal::Db::Open(path, std::chrono::milliseconds(1000));
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE(internal::ApplyMigrations(**db, steps.first(1), path).ok());
    ASSERT_EQ(*(*db)->UserVersion(), 1);
    ASSERT_TRUE((*db)->Exec(OldGrantSql(r)).ok());
    EXPECT_FALSE((*db)->Exec("SELECT id FROM sessions").ok());
  }
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(UserVersionOf(path), SqliteStore::SchemaVersion());
  EXPECT_EQ(*(*store)->GetGrant("g1"), r);
  EXPECT_THAT(*(*store)->ListEvents("g1"), ElementsAre(Created(r)));
  EXPECT_TRUE((*store)->Transition(Redeem("g1")).ok());

  EXPECT_TRUE((*store)->ListSessions({})->empty());
  EXPECT_FALSE((*store)->GetAuditHead()->has_value());
  SessionSummary s = Ended(Session("s1"));
  ASSERT_TRUE((*store)->PutSession(s).ok());
  ASSERT_TRUE((*store)->PutAuditHead("{}").ok());
  EXPECT_EQ(*(*store)->GetSession("s1"), s);
  EXPECT_EQ(*(*store)->GetAuditHead(), "{}");
  EXPECT_TRUE((*store)->ListApprovals({})->empty());
}

// A file as tracegate left it at schema version 2 (grants, sessions, audit head) opens at the
// current version, keeps all of it and gains approvals.
TEST(SqliteSchemaTest, MigratesAVersionTwoFileWithItsData) {
  TempDir dir;
  std::string path = dir.File("v2.db");
  std::span<const std::string_view> steps = internal::SqliteMigrationSteps();
  ASSERT_GE(steps.size(), 3u);
  GrantRecord r = OldGrant("g1", GrantState::kPending);
  {
    auto db = internal::Db::Open(path, std::chrono::milliseconds(1000));
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE(internal::ApplyMigrations(**db, steps.first(2), path).ok());
    ASSERT_EQ(*(*db)->UserVersion(), 2);
    ASSERT_TRUE((*db)->Exec(OldGrantSql(r)).ok());
    ASSERT_TRUE((*db)
                    ->Exec(Cat("INSERT INTO sessions VALUES ('s1', 'postgres', 'traces', "
                               "'trace-42', '01JGRANT', 'https://idp.example', 'agent-7', "
                               "'agent-client', 'g_01JGRANT', '10.0.0.7:51234', ",
                               Micros(kT0),
                               ", NULL, '', '', 0, 0, 0, 0, 7, 7);"
                               "INSERT INTO audit_head VALUES (1, '{\"seq\":3}')"))
                    .ok());
    EXPECT_FALSE((*db)->Exec("SELECT id FROM approvals").ok());
  }
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(UserVersionOf(path), SqliteStore::SchemaVersion());
  EXPECT_EQ(SqliteStore::SchemaVersion(), 4);
  EXPECT_EQ(*(*store)->GetGrant("g1"), r);
  EXPECT_THAT(*(*store)->ListEvents("g1"), ElementsAre(Created(r)));
  EXPECT_EQ(*(*store)->GetSession("s1"), Session("s1"));
  EXPECT_EQ(*(*store)->GetAuditHead(), R"({"seq":3})");

  // The old pending grant can now wait for approval and be approved.
  EXPECT_TRUE((*store)->ListApprovals({})->empty());
  ApprovalRequest a = Approval("g1", "g1");
  ASSERT_TRUE((*store)->CreateApproval(a).ok());
  auto decided = (*store)->Decide(Decision(Vote("g1", "alice", true)));
  ASSERT_TRUE(decided.ok()) << decided.status();
  EXPECT_EQ(decided->request.state, ApprovalState::kApproved);
  EXPECT_EQ((*store)->GetGrant("g1")->state, GrantState::kApproved);
  // Version 4's requester index serves the pending cap.
  ApprovalRequest held = Approval("g1.r1", "g1", 1, ApprovalKind::kResponse);
  ASSERT_TRUE((*store)->CreateApprovalWithin(held, 1).ok());
  held.id = "g1.r2";
  EXPECT_EQ((*store)->CreateApprovalWithin(held, 1).code(), absl::StatusCode::kResourceExhausted);
}

TEST(SqliteSchemaTest, UsesWalAndFullSync) {
  TempDir dir;
  auto db = internal::Db::Open(dir.File("pragmas.db"), std::chrono::milliseconds(1000));
  ASSERT_TRUE(db.ok()) << db.status();
  for (auto [pragma, expected] :
       {std::pair{"PRAGMA journal_mode", "wal"}, std::pair{"PRAGMA synchronous", "2"},  // FULL
        std::pair{"PRAGMA foreign_keys", "1"}}) {
    auto stmt = (*db)->Prepare(pragma);
    ASSERT_TRUE(stmt.ok());
    ASSERT_TRUE(*stmt->Step());
    EXPECT_EQ(stmt->Text(0), expected) << pragma;
  }
}

TEST(SqliteSchemaTest, ReopeningTheFileKeepsState) {
  TempDir dir;
  std::string path = dir.File("keep.db");
  GrantRecord r = Record("g1");
  {
    auto store = SqliteStore::Open(path);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->CreateGrant(r, Created(r)).ok());
    ASSERT_TRUE((*store)->Transition(Redeem("g1")).ok());
  }
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto got = (*store)->GetGrant("g1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->state, GrantState::kInUse);
  EXPECT_EQ(got->uses_left, 0u);
  EXPECT_EQ(got->trace_id, r.trace_id);
  EXPECT_EQ((*store)->ListEvents("g1")->size(), 2u);
  EXPECT_EQ(RefusedState((*store)->Transition(Redeem("g1")).status()), GrantState::kInUse);
}

TEST(SqliteSchemaTest, ReopeningTheFileKeepsSessionsAndTheAuditHead) {
  TempDir dir;
  std::string path = dir.File("keep_sessions.db");
  SessionSummary open = Session("s1");
  SessionSummary ended = Ended(Session("s2", kT0 + seconds(1)));
  {
    auto store = SqliteStore::Open(path);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->PutSession(open).ok());
    ASSERT_TRUE((*store)->PutSession(ended).ok());
    ASSERT_TRUE((*store)->PutAuditHead(R"({"seq":3})").ok());
  }
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*(*store)->GetSession("s1"), open);
  EXPECT_EQ(*(*store)->GetSession("s2"), ended);
  EXPECT_EQ(*(*store)->GetAuditHead(), R"({"seq":3})");
}

// ---- Database failures -----------------------------------------------------------------------

TEST(SqliteFailureTest, AFileThatIsNotADatabaseIsUnavailable) {
  TempDir dir;
  std::string path = dir.File("garbage.db");
  std::ofstream(path) << std::string(8192, 'x');
  EXPECT_EQ(SqliteStore::Open(path).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(SqliteStore::Open(dir.File("no/such/dir.db")).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(SqliteFailureTest, AWriterHoldingTheLockTooLongMakesWritesUnavailable) {
  TempDir dir;
  std::string path = dir.File("locked.db");
  auto store =
      SqliteStore::Open(path, SqliteOptions{.busy_timeout = std::chrono::milliseconds(50)});
  ASSERT_TRUE(store.ok());
  GrantRecord r = Record("g1");
  ASSERT_TRUE((*store)->CreateGrant(r, Created(r)).ok());

  auto other = internal::Db::Open(path, std::chrono::milliseconds(50));
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Exec("BEGIN IMMEDIATE").ok());
  auto result = (*store)->Transition(Redeem("g1"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable) << result.status();
  EXPECT_EQ((*store)->ExpireDue(kT0 + seconds(60)).status().code(), absl::StatusCode::kUnavailable);
  GrantRecord r2 = Record("g2");
  EXPECT_EQ((*store)->CreateGrant(r2, Created(r2)).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE((*store)->GetGrant("g1").ok()) << "WAL readers do not wait for the writer";
  ASSERT_TRUE((*other)->Exec("ROLLBACK").ok());

  EXPECT_TRUE((*store)->Transition(Redeem("g1")).ok()) << "the store recovers";
  EXPECT_TRUE((*store)->CheckHealth().ok());
}

TEST(SqliteFailureTest, ALockedDatabaseMakesSessionAndHeadWritesUnavailable) {
  TempDir dir;
  std::string path = dir.File("locked_sessions.db");
  auto store =
      SqliteStore::Open(path, SqliteOptions{.busy_timeout = std::chrono::milliseconds(50)});
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->PutSession(Session("s1")).ok());
  ASSERT_TRUE((*store)->PutAuditHead("one").ok());

  auto other = internal::Db::Open(path, std::chrono::milliseconds(50));
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Exec("BEGIN IMMEDIATE").ok());
  absl::Status put = (*store)->PutSession(Ended(Session("s1")));
  EXPECT_EQ(put.code(), absl::StatusCode::kUnavailable) << put;
  EXPECT_EQ((*store)->PutAuditHead("two").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(*(*store)->GetSession("s1"), Session("s1")) << "WAL readers do not wait";
  EXPECT_EQ((*store)->ListSessions({})->size(), 1u);
  EXPECT_EQ(*(*store)->GetAuditHead(), "one");
  ASSERT_TRUE((*other)->Exec("ROLLBACK").ok());

  EXPECT_TRUE((*store)->PutSession(Ended(Session("s1"))).ok()) << "the store recovers";
  EXPECT_EQ(*(*store)->GetSession("s1"), Ended(Session("s1")));
  EXPECT_TRUE((*store)->PutAuditHead("two").ok());
  EXPECT_EQ(*(*store)->GetAuditHead(), "two");
}

// ---- Races -----------------------------------------------------------------------------------

constexpr int kRacers = 8;

// kRacers threads, each with its own connection to the file, redeem the grant at once.
int RaceToRedeem(const std::string& path, const std::string& id, bool multi_use) {
  std::vector<std::unique_ptr<SqliteStore>> stores;
  for (int i = 0; i < kRacers; ++i) {
    auto store = SqliteStore::Open(path);
    EXPECT_TRUE(store.ok()) << store.status();
    stores.push_back(std::move(*store));
  }
  std::atomic<int> wins{0};
  std::atomic<int> errors{0};
  std::barrier start(kRacers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      TransitionRequest take = Redeem(id);
      if (multi_use) {
        take.from = {GrantState::kActive, GrantState::kInUse};
      }
      start.arrive_and_wait();
      auto result = stores[i]->Transition(take);
      if (result.ok()) {
        ++wins;
      } else if (!RefusedState(result.status()).has_value()) {
        ++errors;
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(errors.load(), 0);
  return wins.load();
}

TEST_F(SqliteStoreTest, EightThreadsRaceForASingleUseGrantAndExactlyOneWins) {
  for (int round = 0; round < 10; ++round) {
    std::string id = Cat("single", round);
    Create(Record(id));
    EXPECT_EQ(RaceToRedeem(path_, id, false), 1);
    EXPECT_EQ(store_->GetGrant(id)->uses_left, 0u);
    EXPECT_EQ(store_->ListEvents(id)->size(), 2u);
  }
}

TEST_F(SqliteStoreTest, EightThreadsRaceForAThreeUseGrantAndExactlyThreeWin) {
  for (int round = 0; round < 5; ++round) {
    std::string id = Cat("triple", round);
    Create(Record(id, GrantState::kActive, 3));
    EXPECT_EQ(RaceToRedeem(path_, id, true), 3);
    EXPECT_EQ(store_->GetGrant(id)->uses_left, 0u);
    EXPECT_EQ(store_->ListEvents(id)->size(), 4u);
  }
}

TEST_F(SqliteStoreTest, ThreadsSharingOneStoreAlsoHaveOneWinner) {
  Create(Record("shared"));
  std::atomic<int> wins{0};
  std::barrier start(kRacers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      wins += store_->Transition(Redeem("shared")).ok() ? 1 : 0;
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(wins.load(), 1);
}

// Two processes, each with its own connection, redeem the same grants in the same order.
TEST_F(SqliteStoreTest, TwoProcessesRaceAndEachGrantIsRedeemedExactlyOnce) {
  constexpr int kGrants = 40;
  constexpr int kProcesses = 2;
  for (int g = 0; g < kGrants; ++g) {
    Create(Record(Cat("proc", g)));
  }
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  std::vector<pid_t> children;
  std::vector<int> results;
  for (int p = 0; p < kProcesses; ++p) {
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(go[1]);
      close(out[0]);
      auto store = SqliteStore::Open(path_);
      char c;
      if (!store.ok() || read(go[0], &c, 1) != 0) {  // wait for the parent to close `go`
        _exit(2);
      }
      std::string outcome;
      for (int g = 0; g < kGrants; ++g) {
        auto result = (*store)->Transition(Redeem(Cat("proc", g)));
        outcome += result.ok() ? 'W' : RefusedState(result.status()).has_value() ? 'L' : 'E';
      }
      ssize_t n = write(out[1], outcome.data(), outcome.size());
      _exit(n == static_cast<ssize_t>(outcome.size()) ? 0 : 3);
    }
    close(out[1]);
    children.push_back(pid);
    results.push_back(out[0]);
  }
  close(go[0]);
  close(go[1]);  // both children start now
  std::vector<std::string> outcomes;
  for (int p = 0; p < kProcesses; ++p) {
    std::string outcome(kGrants, '?');
    size_t got = 0;
    while (got < outcome.size()) {
      ssize_t n = read(results[p], outcome.data() + got, outcome.size() - got);
      if (n <= 0) {
        break;
      }
      got += static_cast<size_t>(n);
    }
    close(results[p]);
    int status = 0;
    ASSERT_EQ(waitpid(children[p], &status, 0), children[p]);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    outcomes.push_back(outcome);
  }
  for (int g = 0; g < kGrants; ++g) {
    int wins = 0;
    for (const std::string& outcome : outcomes) {
      EXPECT_NE(outcome[g], 'E') << "grant " << g;
      wins += outcome[g] == 'W' ? 1 : 0;
    }
    EXPECT_EQ(wins, 1) << "grant " << g;
    EXPECT_EQ(store_->GetGrant(Cat("proc", g))->uses_left, 0u);
    EXPECT_EQ(store_->ListEvents(Cat("proc", g))->size(), 2u);
  }
}

// Recorders on several threads start and end sessions at once, half through the shared store
// and half through their own connections (as other processes would): every write lands.
TEST_F(SqliteStoreTest, ConcurrentSessionWritesAllLand) {
  constexpr int kSessionsPerThread = 5;
  std::vector<std::unique_ptr<SqliteStore>> own;
  for (int i = 0; i < kRacers / 2; ++i) {
    auto store = SqliteStore::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    own.push_back(std::move(*store));
  }
  std::atomic<int> errors{0};
  std::barrier start(kRacers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      SqliteStore& store = i % 2 == 0 ? *store_ : *own[static_cast<size_t>(i / 2)];
      start.arrive_and_wait();
      for (int n = 0; n < kSessionsPerThread; ++n) {
        SessionSummary s = Session(Cat("t", i, "-", n), kT0 + seconds(n));
        errors += store.PutSession(s).ok() ? 0 : 1;
        errors += store.PutSession(Ended(s)).ok() ? 0 : 1;
        errors += store.PutAuditHead(Cat(i, "-", n)).ok() ? 0 : 1;
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(errors.load(), 0);
  auto all = store_->ListSessions({.limit = 1000});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), static_cast<size_t>(kRacers * kSessionsPerThread));
  for (const SessionSummary& s : *all) {
    EXPECT_EQ(s.outcome, "completed") << s.id;
  }
  EXPECT_TRUE(store_->ListSessions({.outcome = "open"})->empty());
  EXPECT_TRUE(store_->GetAuditHead()->has_value());
}

// kRacers approvers, each on its own connection (as other replicas would), vote at once on a
// request that needs kRacers - 1 approvals: exactly kRacers - 1 votes land, exactly one of
// them settles it and approves the grant, and the last is told the request is approved.
TEST_F(SqliteApprovalsTest, EightApproversRaceOnARequestNeedingSevenAndExactlyOneSettlesIt) {
  std::vector<std::unique_ptr<SqliteStore>> stores;
  for (int i = 0; i < kRacers; ++i) {
    auto store = SqliteStore::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    stores.push_back(std::move(*store));
  }
  for (int round = 0; round < 5; ++round) {
    std::string id = Cat("race", round);
    PendingGrantApproval(id, kRacers - 1);
    std::atomic<int> landed{0};
    std::atomic<int> settled{0};
    std::atomic<int> too_late{0};
    std::atomic<int> errors{0};
    std::barrier start(kRacers);
    std::vector<std::thread> threads;
    for (int i = 0; i < kRacers; ++i) {
      threads.emplace_back([&, i] {
        ApprovalDecision vote = Vote(id, Cat("approver-", i), true, kT0 + seconds(5));
        start.arrive_and_wait();
        auto result = stores[static_cast<size_t>(i)]->Decide(Decision(vote));
        if (result.ok()) {
          ++landed;
          if (result->request.state == ApprovalState::kApproved) {
            ++settled;
            errors += result->grant.has_value() && result->decisions.size() == kRacers - 1 ? 0 : 1;
          } else {
            errors += result->grant.has_value() ? 1 : 0;
          }
        } else if (Msg(result.status()) == Cat("approval ", id, " is approved")) {
          ++too_late;
        } else {
          ++errors;
        }
      });
    }
    for (std::thread& t : threads) {
      t.join();
    }
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(landed.load(), kRacers - 1);
    EXPECT_EQ(settled.load(), 1);
    EXPECT_EQ(too_late.load(), 1);
    EXPECT_EQ(store_->GetApproval(id)->state, ApprovalState::kApproved);
    EXPECT_EQ(store_->ListDecisions(id)->size(), static_cast<size_t>(kRacers - 1));
    EXPECT_EQ(store_->GetGrant(id)->state, GrantState::kApproved);
    EXPECT_EQ(store_->ListEvents(id)->size(), 2u);
  }
}

}  // namespace
}  // namespace tracegate::store
