#include "store/sqlite_store.h"

#include <algorithm>
#include <array>
#include <limits>
#include <mutex>
#include <string>
#include <utility>

#include "common/status.h"
#include "common/strings.h"
#include "store/sqlite_db.h"

namespace tracegate::store {
namespace {

using internal::Db;
using internal::Statement;
using internal::Transaction;

// Migration step i takes the schema from version i to i + 1. Append only: never edit a step
// that has shipped. Times are microseconds since the Unix epoch (UTC).
constexpr std::array<std::string_view, 2> kMigrations = {
    // 1: grants and their transitions.
    R"sql(
CREATE TABLE grants (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'active', 'in_use',
                                       'completed', 'revoked', 'expired')),
  connection TEXT NOT NULL,
  trace_id TEXT NOT NULL,
  issuer TEXT NOT NULL,
  subject TEXT NOT NULL,
  client_id TEXT NOT NULL,
  groups BLOB NOT NULL,
  reason TEXT NOT NULL,
  rule TEXT NOT NULL,
  client_address TEXT NOT NULL,
  masking_profile TEXT NOT NULL,
  created_at_us INTEGER NOT NULL,
  expires_at_us INTEGER NOT NULL,
  uses_allowed INTEGER NOT NULL CHECK (uses_allowed >= 0),
  uses_left INTEGER NOT NULL CHECK (uses_left >= 0 AND uses_left <= uses_allowed),
  max_session_ms INTEGER NOT NULL,
  max_rows INTEGER NOT NULL,
  max_bytes INTEGER NOT NULL,
  scram_verifier TEXT NOT NULL,
  bearer_hash BLOB NOT NULL
) STRICT;
CREATE INDEX grants_live_by_expiry ON grants (expires_at_us)
  WHERE state IN ('pending', 'approved', 'active', 'in_use');
CREATE TABLE grant_events (
  seq INTEGER PRIMARY KEY,
  grant_id TEXT NOT NULL REFERENCES grants (id),
  from_state TEXT,
  to_state TEXT NOT NULL,
  at_us INTEGER NOT NULL,
  actor TEXT NOT NULL,
  detail TEXT NOT NULL
) STRICT;
CREATE INDEX grant_events_by_grant ON grant_events (grant_id, seq);
)sql",
    // 2: the audit log's session index and its newest checkpoint. The counters and seqs are
    // uint64 kept in INTEGER (int64) columns by a two's-complement cast. Kinds and outcomes
    // are checked by ValidateSessionSummary, not here, so that a new one needs no migration.
    R"sql(
CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  connection TEXT NOT NULL,
  trace_id TEXT NOT NULL,
  grant_id TEXT NOT NULL,
  issuer TEXT NOT NULL,
  subject TEXT NOT NULL,
  client_id TEXT NOT NULL,
  login_user TEXT NOT NULL,
  client_address TEXT NOT NULL,
  started_at_us INTEGER NOT NULL,
  ended_at_us INTEGER,
  outcome TEXT NOT NULL CHECK ((ended_at_us IS NULL) = (outcome = '')),
  reason TEXT NOT NULL,
  statements INTEGER NOT NULL,
  blocked INTEGER NOT NULL,
  row_count INTEGER NOT NULL,
  bytes_to_client INTEGER NOT NULL,
  first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_start ON sessions (started_at_us);
CREATE INDEX sessions_by_trace ON sessions (trace_id, started_at_us);
CREATE INDEX sessions_by_subject ON sessions (subject, started_at_us);
CREATE INDEX sessions_by_connection ON sessions (connection, started_at_us);
CREATE INDEX sessions_open ON sessions (started_at_us) WHERE ended_at_us IS NULL;
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  checkpoint TEXT NOT NULL
) STRICT;
)sql",
};

// SessionQuery::outcome's word for "not ended yet".
constexpr std::string_view kOpenOutcome = "open";

constexpr char kLiveStates[] = "('pending', 'approved', 'active', 'in_use')";

// The columns of a grant row, in the order ReadGrant expects them.
constexpr char kGrantColumns[] =
    "id, state, connection, trace_id, issuer, subject, client_id, groups, reason, rule, "
    "client_address, masking_profile, created_at_us, expires_at_us, uses_allowed, uses_left, "
    "max_session_ms, max_rows, max_bytes, scram_verifier, bearer_hash";

// The columns of a session row, in the order ReadSession expects them.
constexpr char kSessionColumns[] =
    "id, kind, connection, trace_id, grant_id, issuer, subject, client_id, login_user, "
    "client_address, started_at_us, ended_at_us, outcome, reason, statements, blocked, "
    "row_count, bytes_to_client, first_seq, last_seq";

int64_t ToMicros(TimePoint t) {
  return std::chrono::floor<std::chrono::microseconds>(t.time_since_epoch()).count();
}
TimePoint FromMicros(int64_t us) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::microseconds(us)));
}

absl::Status Corrupt(std::string_view grant_id, std::string_view what) {
  return absl::UnavailableError(
      Cat("state store: grant ", grant_id, " has a corrupt row (", what, ")"));
}

// Groups as a sequence of "<length>:<bytes>," (netstrings): any bytes, one unambiguous form.
std::string EncodeGroups(const std::vector<std::string>& groups) {
  std::string out;
  for (const std::string& group : groups) {
    out += Cat(group.size(), ":", group, ",");
  }
  return out;
}

std::optional<std::vector<std::string>> DecodeGroups(std::string_view text) {
  std::vector<std::string> groups;
  while (!text.empty()) {
    size_t colon = text.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon > 9) {
      return std::nullopt;
    }
    size_t length = 0;
    for (char c : text.substr(0, colon)) {
      if (c < '0' || c > '9') {
        return std::nullopt;
      }
      length = length * 10 + static_cast<size_t>(c - '0');
    }
    text.remove_prefix(colon + 1);
    if (text.size() < length + 1 || text[length] != ',') {
      return std::nullopt;
    }
    groups.emplace_back(text.substr(0, length));
    text.remove_prefix(length + 1);
  }
  return groups;
}

std::optional<GrantState> OptionalState(const Statement& stmt, int column) {
  if (stmt.IsNull(column)) {
    return std::nullopt;
  }
  return ParseGrantState(stmt.Text(column));
}

absl::StatusOr<GrantRecord> ReadGrant(const Statement& stmt) {
  GrantRecord r;
  r.id = stmt.Text(0);
  std::optional<GrantState> state = ParseGrantState(stmt.Text(1));
  if (!state.has_value()) {
    return Corrupt(r.id, "state");
  }
  r.state = *state;
  r.connection = stmt.Text(2);
  r.trace_id = stmt.Text(3);
  r.issuer = stmt.Text(4);
  r.subject = stmt.Text(5);
  r.client_id = stmt.Text(6);
  std::optional<std::vector<std::string>> groups = DecodeGroups(stmt.Text(7));
  if (!groups.has_value()) {
    return Corrupt(r.id, "groups");
  }
  r.groups = std::move(*groups);
  r.reason = stmt.Text(8);
  r.rule = stmt.Text(9);
  r.client_address = stmt.Text(10);
  r.masking_profile = stmt.Text(11);
  r.created_at = FromMicros(stmt.Int(12));
  r.expires_at = FromMicros(stmt.Int(13));
  r.uses_allowed = static_cast<uint32_t>(stmt.Int(14));
  r.uses_left = static_cast<uint32_t>(stmt.Int(15));
  r.max_session = std::chrono::milliseconds(stmt.Int(16));
  r.max_rows = static_cast<uint64_t>(stmt.Int(17));
  r.max_bytes = static_cast<uint64_t>(stmt.Int(18));
  r.scram_verifier = stmt.Text(19);
  r.bearer_hash = stmt.Text(20);
  return r;
}

// uint64 counters round-trip through SQLite's int64 by a two's-complement cast.
int64_t FromUnsigned(uint64_t value) { return static_cast<int64_t>(value); }
uint64_t ToUnsigned(int64_t value) { return static_cast<uint64_t>(value); }

SessionSummary ReadSession(const Statement& stmt) {
  SessionSummary s;
  s.id = stmt.Text(0);
  s.kind = stmt.Text(1);
  s.connection = stmt.Text(2);
  s.trace_id = stmt.Text(3);
  s.grant_id = stmt.Text(4);
  s.issuer = stmt.Text(5);
  s.subject = stmt.Text(6);
  s.client_id = stmt.Text(7);
  s.user = stmt.Text(8);
  s.client_address = stmt.Text(9);
  s.started_at = FromMicros(stmt.Int(10));
  if (!stmt.IsNull(11)) {
    s.ended_at = FromMicros(stmt.Int(11));
  }
  s.outcome = stmt.Text(12);
  s.reason = stmt.Text(13);
  s.statements = ToUnsigned(stmt.Int(14));
  s.blocked = ToUnsigned(stmt.Int(15));
  s.rows = ToUnsigned(stmt.Int(16));
  s.bytes_to_client = ToUnsigned(stmt.Int(17));
  s.first_seq = ToUnsigned(stmt.Int(18));
  s.last_seq = ToUnsigned(stmt.Int(19));
  return s;
}

// The SELECT for `query`: the filters it sets, each with its own fixed parameter number
// (?1..?6; ?7 is the limit), so one cached statement per distinct shape.
std::string ListSessionsSql(const SessionQuery& query) {
  std::string where;
  auto add = [&where](std::string_view condition) {
    where += Cat(where.empty() ? " WHERE " : " AND ", condition);
  };
  if (query.trace_id.has_value()) {
    add("trace_id = ?1");
  }
  if (query.subject.has_value()) {
    add("subject = ?2");
  }
  if (query.connection.has_value()) {
    add("connection = ?3");
  }
  if (query.outcome.has_value()) {
    add(*query.outcome == kOpenOutcome ? "ended_at_us IS NULL" : "outcome = ?4");
  }
  if (query.since.has_value()) {
    add("started_at_us >= ?5");
  }
  if (query.until.has_value()) {
    add("started_at_us < ?6");
  }
  return Cat("SELECT ", kSessionColumns, " FROM sessions", where,
             " ORDER BY started_at_us DESC, id DESC LIMIT ?7");
}

absl::Status InsertEvent(Db& db, std::string_view grant_id, std::optional<GrantState> from,
                         GrantState to, TimePoint at, std::string_view actor,
                         std::string_view detail) {
  TG_ASSIGN_OR_RETURN(Statement stmt,
                      db.Prepare("INSERT INTO grant_events (grant_id, from_state, to_state, "
                                 "at_us, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
  stmt.Bind(1, grant_id);
  if (from.has_value()) {
    stmt.Bind(2, GrantStateName(*from));
  } else {
    stmt.BindNull(2);
  }
  stmt.Bind(3, GrantStateName(to)).Bind(4, ToMicros(at)).Bind(5, actor).Bind(6, detail);
  return stmt.Run();
}

// The conditional UPDATE for `request`. The state names come from the enum, never from a
// caller, so they are written into the text; one cached statement per distinct shape.
std::string TransitionSql(const TransitionRequest& request) {
  std::string states;
  for (GrantState s : request.from) {
    states += Cat(states.empty() ? "" : ", ", "'", GrantStateName(s), "'");
  }
  return Cat(
      "UPDATE grants SET state = ?1, uses_left = uses_left - ?2 WHERE id = ?3 AND state IN (",
      states, ")", request.unexpired_at.has_value() ? " AND expires_at_us > ?4" : "",
      request.take_use ? " AND uses_left > 0" : "", " RETURNING ", kGrantColumns);
}

}  // namespace

// std::mutex rather than absl::Mutex: Debian's Abseil is not built for ThreadSanitizer, so
// TSan cannot see absl::Mutex's ordering and would report every guarded access as a race.
struct SqliteStore::Impl {
  std::mutex mu;
  std::unique_ptr<Db> db;  // guarded by mu
};

int SqliteStore::SchemaVersion() { return static_cast<int>(kMigrations.size()); }

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path,
                                                               SqliteOptions options) {
  TG_ASSIGN_OR_RETURN(std::unique_ptr<Db> db, Db::Open(path, options.busy_timeout));
  TG_RETURN_IF_ERROR(internal::ApplyMigrations(*db, kMigrations, path));
  auto impl = std::make_unique<Impl>();
  impl->db = std::move(db);
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(impl)));
}

SqliteStore::SqliteStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SqliteStore::~SqliteStore() = default;

absl::Status SqliteStore::CreateGrant(const GrantRecord& record, const GrantEvent& event) {
  if (event.from.has_value() || event.to != record.state ||
      (!event.grant_id.empty() && event.grant_id != record.id)) {
    return absl::InvalidArgumentError(
        Cat("state store: the creation event of grant ", record.id,
            " must have no from state, to = the grant's state and the grant's id"));
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  TG_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(db));
  {
    TG_ASSIGN_OR_RETURN(
        Statement stmt,
        db.Prepare(Cat("INSERT INTO grants (", kGrantColumns,
                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
                       "?15, ?16, ?17, ?18, ?19, ?20, ?21)")));
    stmt.Bind(1, record.id)
        .Bind(2, GrantStateName(record.state))
        .Bind(3, record.connection)
        .Bind(4, record.trace_id)
        .Bind(5, record.issuer)
        .Bind(6, record.subject)
        .Bind(7, record.client_id)
        .BindBlob(8, EncodeGroups(record.groups))
        .Bind(9, record.reason)
        .Bind(10, record.rule)
        .Bind(11, record.client_address)
        .Bind(12, record.masking_profile)
        .Bind(13, ToMicros(record.created_at))
        .Bind(14, ToMicros(record.expires_at))
        .Bind(15, static_cast<int64_t>(record.uses_allowed))
        .Bind(16, static_cast<int64_t>(record.uses_left))
        .Bind(17, static_cast<int64_t>(record.max_session.count()))
        .Bind(18, static_cast<int64_t>(record.max_rows))
        .Bind(19, static_cast<int64_t>(record.max_bytes))
        .Bind(20, record.scram_verifier)
        .BindBlob(21, record.bearer_hash);
    TG_RETURN_IF_ERROR(stmt.Run());
  }
  TG_RETURN_IF_ERROR(
      InsertEvent(db, record.id, std::nullopt, record.state, event.at, event.actor, event.detail));
  return txn.Commit();
}

absl::StatusOr<GrantRecord> SqliteStore::GetGrant(std::string_view grant_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  TG_ASSIGN_OR_RETURN(Statement stmt, impl_->db->Prepare(Cat("SELECT ", kGrantColumns,
                                                             " FROM grants WHERE id = ?1")));
  stmt.Bind(1, grant_id);
  TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) {
    return absl::NotFoundError(Cat("no grant ", grant_id));
  }
  return ReadGrant(stmt);
}

absl::StatusOr<GrantRecord> SqliteStore::Transition(const TransitionRequest& request) {
  if (request.from.empty()) {
    return absl::InvalidArgumentError("state store: a transition needs at least one from state");
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  // The write lock first: the state read here is the one the UPDATE sees.
  TG_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(db));
  GrantState before;
  {
    TG_ASSIGN_OR_RETURN(Statement stmt, db.Prepare("SELECT state FROM grants WHERE id = ?1"));
    stmt.Bind(1, request.grant_id);
    TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) {
      return absl::NotFoundError(Cat("no grant ", request.grant_id));
    }
    std::optional<GrantState> state = ParseGrantState(stmt.Text(0));
    if (!state.has_value()) {
      return Corrupt(request.grant_id, "state");
    }
    before = *state;
  }
  GrantRecord updated;
  {
    TG_ASSIGN_OR_RETURN(Statement stmt, db.Prepare(TransitionSql(request)));
    stmt.Bind(1, GrantStateName(request.to))
        .Bind(2, int64_t{request.take_use ? 1 : 0})
        .Bind(3, request.grant_id);
    if (request.unexpired_at.has_value()) {
      stmt.Bind(4, ToMicros(*request.unexpired_at));
    }
    TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) {
      return TransitionRefused(request.grant_id, before);
    }
    TG_ASSIGN_OR_RETURN(updated, ReadGrant(stmt));
    TG_RETURN_IF_ERROR(stmt.Run());  // finish the UPDATE before the next statement
  }
  TG_RETURN_IF_ERROR(InsertEvent(db, request.grant_id, before, request.to, request.at,
                                 request.actor, request.detail));
  TG_RETURN_IF_ERROR(txn.Commit());
  return updated;
}

absl::StatusOr<std::vector<ExpiredGrant>> SqliteStore::ExpireDue(TimePoint now) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  TG_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(db));
  std::vector<ExpiredGrant> expired;
  {
    TG_ASSIGN_OR_RETURN(Statement stmt,
                        db.Prepare(Cat("SELECT id, state FROM grants WHERE state IN ", kLiveStates,
                                       " AND expires_at_us <= ?1 ORDER BY expires_at_us")));
    stmt.Bind(1, ToMicros(now));
    while (true) {
      TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
      if (!row) {
        break;
      }
      std::string id = stmt.Text(0);
      std::optional<GrantState> state = ParseGrantState(stmt.Text(1));
      if (!state.has_value()) {
        return Corrupt(id, "state");
      }
      expired.push_back(ExpiredGrant{std::move(id), *state});
    }
  }
  if (expired.empty()) {
    return expired;
  }
  for (const ExpiredGrant& grant : expired) {
    TG_ASSIGN_OR_RETURN(Statement stmt,
                        db.Prepare("UPDATE grants SET state = 'expired' WHERE id = ?1"));
    stmt.Bind(1, grant.grant_id);
    TG_RETURN_IF_ERROR(stmt.Run());
    TG_RETURN_IF_ERROR(InsertEvent(db, grant.grant_id, grant.previous, GrantState::kExpired, now,
                                   "tracegate", "time to live elapsed"));
  }
  TG_RETURN_IF_ERROR(txn.Commit());
  return expired;
}

absl::StatusOr<std::vector<GrantEvent>> SqliteStore::ListEvents(std::string_view grant_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  TG_ASSIGN_OR_RETURN(Statement stmt,
                      impl_->db->Prepare("SELECT from_state, to_state, at_us, actor, detail "
                                         "FROM grant_events WHERE grant_id = ?1 ORDER BY seq"));
  stmt.Bind(1, grant_id);
  std::vector<GrantEvent> events;
  while (true) {
    TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) {
      break;
    }
    GrantEvent event;
    event.grant_id = std::string(grant_id);
    std::optional<GrantState> to = ParseGrantState(stmt.Text(1));
    event.from = OptionalState(stmt, 0);
    if (!to.has_value() || (!stmt.IsNull(0) && !event.from.has_value())) {
      return Corrupt(grant_id, "event state");
    }
    event.to = *to;
    event.at = FromMicros(stmt.Int(2));
    event.actor = stmt.Text(3);
    event.detail = stmt.Text(4);
    events.push_back(std::move(event));
  }
  // Every grant has its creation event, so no events means no grant.
  if (events.empty()) {
    return absl::NotFoundError(Cat("no grant ", grant_id));
  }
  return events;
}

absl::Status SqliteStore::PutSession(const SessionSummary& session) {
  TG_RETURN_IF_ERROR(ValidateSessionSummary(session));
  std::lock_guard<std::mutex> lock(impl_->mu);
  // One statement: its own (autocommit) write transaction, taken when the statement starts.
  TG_ASSIGN_OR_RETURN(
      Statement stmt,
      impl_->db->Prepare(
          Cat("INSERT INTO sessions (", kSessionColumns,
              ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
              "?17, ?18, ?19, ?20) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, "
              "connection = excluded.connection, trace_id = excluded.trace_id, "
              "grant_id = excluded.grant_id, issuer = excluded.issuer, subject = excluded.subject, "
              "client_id = excluded.client_id, login_user = excluded.login_user, "
              "client_address = excluded.client_address, started_at_us = excluded.started_at_us, "
              "ended_at_us = excluded.ended_at_us, outcome = excluded.outcome, "
              "reason = excluded.reason, statements = excluded.statements, "
              "blocked = excluded.blocked, row_count = excluded.row_count, "
              "bytes_to_client = excluded.bytes_to_client, first_seq = excluded.first_seq, "
              "last_seq = excluded.last_seq")));
  stmt.Bind(1, session.id)
      .Bind(2, session.kind)
      .Bind(3, session.connection)
      .Bind(4, session.trace_id)
      .Bind(5, session.grant_id)
      .Bind(6, session.issuer)
      .Bind(7, session.subject)
      .Bind(8, session.client_id)
      .Bind(9, session.user)
      .Bind(10, session.client_address)
      .Bind(11, ToMicros(session.started_at));
  if (session.ended_at.has_value()) {
    stmt.Bind(12, ToMicros(*session.ended_at));
  } else {
    stmt.BindNull(12);
  }
  stmt.Bind(13, session.outcome)
      .Bind(14, session.reason)
      .Bind(15, FromUnsigned(session.statements))
      .Bind(16, FromUnsigned(session.blocked))
      .Bind(17, FromUnsigned(session.rows))
      .Bind(18, FromUnsigned(session.bytes_to_client))
      .Bind(19, FromUnsigned(session.first_seq))
      .Bind(20, FromUnsigned(session.last_seq));
  return stmt.Run();
}

absl::StatusOr<SessionSummary> SqliteStore::GetSession(std::string_view id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  TG_ASSIGN_OR_RETURN(Statement stmt, impl_->db->Prepare(Cat("SELECT ", kSessionColumns,
                                                             " FROM sessions WHERE id = ?1")));
  stmt.Bind(1, id);
  TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) {
    return absl::NotFoundError(Cat("no session ", id));
  }
  return ReadSession(stmt);
}

absl::StatusOr<std::vector<SessionSummary>> SqliteStore::ListSessions(const SessionQuery& query) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  TG_ASSIGN_OR_RETURN(Statement stmt, impl_->db->Prepare(ListSessionsSql(query)));
  if (query.trace_id.has_value()) {
    stmt.Bind(1, *query.trace_id);
  }
  if (query.subject.has_value()) {
    stmt.Bind(2, *query.subject);
  }
  if (query.connection.has_value()) {
    stmt.Bind(3, *query.connection);
  }
  if (query.outcome.has_value() && *query.outcome != kOpenOutcome) {
    stmt.Bind(4, *query.outcome);
  }
  if (query.since.has_value()) {
    stmt.Bind(5, ToMicros(*query.since));
  }
  if (query.until.has_value()) {
    stmt.Bind(6, ToMicros(*query.until));
  }
  // LIMIT takes an int64; anything larger means "all" anyway.
  stmt.Bind(7, static_cast<int64_t>(
                   std::min<uint64_t>(query.limit, std::numeric_limits<int64_t>::max())));
  std::vector<SessionSummary> sessions;
  while (true) {
    TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) {
      break;
    }
    sessions.push_back(ReadSession(stmt));
  }
  return sessions;
}

absl::Status SqliteStore::PutAuditHead(std::string_view checkpoint) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  TG_ASSIGN_OR_RETURN(Statement stmt,
                      impl_->db->Prepare("INSERT INTO audit_head (id, checkpoint) VALUES (1, ?1) "
                                         "ON CONFLICT (id) DO UPDATE SET "
                                         "checkpoint = excluded.checkpoint"));
  stmt.Bind(1, checkpoint);
  return stmt.Run();
}

absl::StatusOr<std::optional<std::string>> SqliteStore::GetAuditHead() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  TG_ASSIGN_OR_RETURN(Statement stmt,
                      impl_->db->Prepare("SELECT checkpoint FROM audit_head WHERE id = 1"));
  TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(stmt.Text(0));
}

absl::Status SqliteStore::CheckHealth() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  TG_ASSIGN_OR_RETURN(Statement stmt, impl_->db->Prepare("SELECT count(*) FROM grants WHERE 0"));
  return stmt.Run();
}

namespace internal {

std::span<const std::string_view> SqliteMigrationSteps() { return kMigrations; }

}  // namespace internal

}  // namespace tracegate::store
