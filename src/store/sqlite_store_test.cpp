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

// A file as tracegate left it at schema version 1 (grants only) opens, keeps its grants and
// gains the session index and the audit head.
TEST(SqliteSchemaTest, MigratesAVersionOneFileWithItsGrants) {
  TempDir dir;
  std::string path = dir.File("v1.db");
  std::span<const std::string_view> steps = internal::SqliteMigrationSteps();
  ASSERT_EQ(steps.size(), static_cast<size_t>(SqliteStore::SchemaVersion()));
  ASSERT_GE(steps.size(), 2u);
  GrantRecord r = Record("g1", GrantState::kActive);
  r.groups = {"ml"};
  r.max_rows = 1000;
  r.bearer_hash = "hash";
  {
    auto db = internal::Db::Open(path, std::chrono::milliseconds(1000));
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE(internal::ApplyMigrations(**db, steps.first(1), path).ok());
    ASSERT_EQ(*(*db)->UserVersion(), 1);
    // The row and event a version-1 tracegate wrote for `r`.
    ASSERT_TRUE((*db)
                    ->Exec(Cat("INSERT INTO grants VALUES ('g1', 'active', 'traces', 'trace-42', "
                               "'https://idp.example', 'agent-7', 'agent-client', X'323A6D6C2C', "
                               "'debugging a bad answer', 'agents-read-own', '10.0.0.7:51234', "
                               "'default', ",
                               Micros(r.created_at), ", ", Micros(r.expires_at),
                               ", 1, 1, 300000, 1000, 1048576, "
                               "'SCRAM-SHA-256$16:c2FsdA==$c3RvcmVk:c2VydmVy', X'68617368');"
                               "INSERT INTO grant_events (grant_id, from_state, to_state, at_us, "
                               "actor, detail) VALUES ('g1', NULL, 'active', ",
                               Micros(r.created_at), ", 'agent-7 via test', 'issued')"))
                    .ok());
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

}  // namespace
}  // namespace tracegate::store
