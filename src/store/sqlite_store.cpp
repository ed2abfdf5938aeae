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
constexpr std::array<std::string_view, 4> kMigrations = {
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
    // 3: approval requests and their votes. A request leaves pending exactly when it gets
    // its decided_at; one vote per approver (issuer, subject) and request.
    R"sql(
CREATE TABLE approvals (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('grant', 'response')),
  state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired',
                                       'cancelled')),
  grant_id TEXT NOT NULL REFERENCES grants (id),
  session_id TEXT NOT NULL,
  connection TEXT NOT NULL,
  trace_id TEXT NOT NULL,
  requester_issuer TEXT NOT NULL,
  requester_subject TEXT NOT NULL,
  requester TEXT NOT NULL,
  reason TEXT NOT NULL,
  detail TEXT NOT NULL,
  approver_groups BLOB NOT NULL,
  force_groups BLOB NOT NULL,
  required INTEGER NOT NULL CHECK (required >= 1),
  created_at_us INTEGER NOT NULL,
  expires_at_us INTEGER NOT NULL CHECK (expires_at_us > created_at_us),
  decided_at_us INTEGER CHECK ((decided_at_us IS NULL) = (state = 'pending'))
) STRICT;
CREATE INDEX approvals_by_state ON approvals (state, created_at_us, id);
CREATE INDEX approvals_by_grant ON approvals (grant_id, created_at_us, id);
CREATE INDEX approvals_by_created ON approvals (created_at_us, id);
CREATE TABLE approval_decisions (
  seq INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL REFERENCES approvals (id),
  approve INTEGER NOT NULL CHECK (approve IN (0, 1)),
  issuer TEXT NOT NULL,
  subject TEXT NOT NULL,
  approver TEXT NOT NULL,
  comment TEXT NOT NULL,
  forced INTEGER NOT NULL CHECK (forced IN (0, 1)),
  at_us INTEGER NOT NULL,
  UNIQUE (request_id, issuer, subject)
) STRICT;
)sql",
    // 4: a requester's requests (the pending cap counts them; the list filters by them).
    R"sql(
CREATE INDEX approvals_by_requester ON approvals (requester_issuer, requester_subject, state,
                                                  created_at_us, id);
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

// The columns of an approval row, in the order ReadApproval expects them.
constexpr char kApprovalColumns[] =
    "id, kind, state, grant_id, session_id, connection, trace_id, requester_issuer, "
    "requester_subject, requester, reason, detail, approver_groups, force_groups, required, "
    "created_at_us, expires_at_us, decided_at_us";

// The columns of a vote, in the order ReadDecision expects them.
constexpr char kDecisionColumns[] =
    "request_id, approve, issuer, subject, approver, comment, forced, at_us";

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

absl::Status CorruptApproval(std::string_view id, std::string_view what) {
  return absl::UnavailableError(
      Cat("state store: approval ", id, " has a corrupt row (", what, ")"));
}

absl::Status NoApproval(std::string_view id) {
  return absl::NotFoundError(Cat("no approval ", id));
}

// The FailedPrecondition for a vote or close on a request that has left pending.
absl::Status NotPending(const ApprovalRequest& request) {
  return absl::FailedPreconditionError(
      Cat("approval ", request.id, " is ", ApprovalStateName(request.state)));
}

absl::StatusOr<ApprovalRequest> ReadApproval(const Statement& stmt) {
  ApprovalRequest r;
  r.id = stmt.Text(0);
  std::optional<ApprovalKind> kind = ParseApprovalKind(stmt.Text(1));
  std::optional<ApprovalState> state = ParseApprovalState(stmt.Text(2));
  if (!kind.has_value() || !state.has_value()) {
    return CorruptApproval(r.id, "kind or state");
  }
  r.kind = *kind;
  r.state = *state;
  r.grant_id = stmt.Text(3);
  r.session_id = stmt.Text(4);
  r.connection = stmt.Text(5);
  r.trace_id = stmt.Text(6);
  r.requester_issuer = stmt.Text(7);
  r.requester_subject = stmt.Text(8);
  r.requester = stmt.Text(9);
  r.reason = stmt.Text(10);
  r.detail = stmt.Text(11);
  std::optional<std::vector<std::string>> approver_groups = DecodeGroups(stmt.Text(12));
  std::optional<std::vector<std::string>> force_groups = DecodeGroups(stmt.Text(13));
  if (!approver_groups.has_value() || !force_groups.has_value()) {
    return CorruptApproval(r.id, "groups");
  }
  r.approver_groups = std::move(*approver_groups);
  r.force_groups = std::move(*force_groups);
  r.required = static_cast<uint32_t>(stmt.Int(14));
  r.created_at = FromMicros(stmt.Int(15));
  r.expires_at = FromMicros(stmt.Int(16));
  if (!stmt.IsNull(17)) {
    r.decided_at = FromMicros(stmt.Int(17));
  }
  return r;
}

ApprovalDecision ReadDecision(const Statement& stmt) {
  ApprovalDecision d;
  d.request_id = stmt.Text(0);
  d.approve = stmt.Int(1) != 0;
  d.issuer = stmt.Text(2);
  d.subject = stmt.Text(3);
  d.approver = stmt.Text(4);
  d.comment = stmt.Text(5);
  d.forced = stmt.Int(6) != 0;
  d.at = FromMicros(stmt.Int(7));
  return d;
}

absl::StatusOr<ApprovalRequest> LoadApproval(Db& db, std::string_view id) {
  TG_ASSIGN_OR_RETURN(Statement stmt, db.Prepare(Cat("SELECT ", kApprovalColumns,
                                                     " FROM approvals WHERE id = ?1")));
  stmt.Bind(1, id);
  TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) {
    return NoApproval(id);
  }
  return ReadApproval(stmt);
}

// The request's votes, oldest first (without checking that the request exists).
absl::StatusOr<std::vector<ApprovalDecision>> LoadDecisions(Db& db, std::string_view request_id) {
  TG_ASSIGN_OR_RETURN(Statement stmt, db.Prepare(Cat("SELECT ", kDecisionColumns,
                                                     " FROM approval_decisions "
                                                     "WHERE request_id = ?1 ORDER BY seq")));
  stmt.Bind(1, request_id);
  std::vector<ApprovalDecision> decisions;
  while (true) {
    TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) {
      break;
    }
    decisions.push_back(ReadDecision(stmt));
  }
  return decisions;
}

// The grant's state, NotFound if there is none.
absl::StatusOr<GrantState> LoadGrantState(Db& db, std::string_view grant_id) {
  TG_ASSIGN_OR_RETURN(Statement stmt, db.Prepare("SELECT state FROM grants WHERE id = ?1"));
  stmt.Bind(1, grant_id);
  TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) {
    return absl::NotFoundError(Cat("no grant ", grant_id));
  }
  std::optional<GrantState> state = ParseGrantState(stmt.Text(0));
  if (!state.has_value()) {
    return Corrupt(grant_id, "state");
  }
  return *state;
}

absl::Status ValidateApproval(const ApprovalRequest& request) {
  auto refuse = [&](std::string_view why) {
    return absl::InvalidArgumentError(Cat("state store: approval ", request.id, ": ", why));
  };
  if (request.id.empty()) {
    return refuse("no id");
  }
  if (request.grant_id.empty()) {
    return refuse("no grant id");
  }
  if (request.required < 1) {
    return refuse("needs at least one approval");
  }
  if (ToMicros(request.expires_at) <= ToMicros(request.created_at)) {
    return refuse("expires before it is created");
  }
  if (request.state != ApprovalState::kPending || request.decided_at.has_value()) {
    return refuse("a new request must be pending and undecided");
  }
  return absl::OkStatus();
}

// The state one more vote leaves `request` in, given the approvals it has now (this vote
// included).
ApprovalState Settle(const ApprovalRequest& request, const ApprovalDecision& vote,
                     int64_t approvals) {
  if (!vote.approve) {
    return ApprovalState::kDenied;
  }
  if (vote.forced || approvals >= static_cast<int64_t>(request.required)) {
    return ApprovalState::kApproved;
  }
  return ApprovalState::kPending;
}

// Moves the grant of a settled kGrant request out of pending, with its event; inside the
// caller's transaction.
absl::StatusOr<GrantRecord> SettleGrant(Db& db, std::string_view grant_id, ApprovalState settled,
                                        const DecideRequest& request) {
  const ApprovalDecision& vote = request.decision;
  TG_ASSIGN_OR_RETURN(GrantState before, LoadGrantState(db, grant_id));
  if (before != GrantState::kPending) {
    return TransitionRefused(grant_id, before);
  }
  GrantState to = settled == ApprovalState::kApproved ? GrantState::kApproved : GrantState::kDenied;
  GrantRecord updated;
  {
    // A denied grant keeps its expiry; an approved one lives grant_ttl from consent.
    TG_ASSIGN_OR_RETURN(Statement stmt,
                        db.Prepare(Cat("UPDATE grants SET state = ?1, expires_at_us = "
                                       "coalesce(?2, expires_at_us) WHERE id = ?3 AND state = "
                                       "'pending' RETURNING ",
                                       kGrantColumns)));
    stmt.Bind(1, GrantStateName(to)).Bind(3, grant_id);
    if (to == GrantState::kApproved) {
      stmt.Bind(2, ToMicros(vote.at + request.grant_ttl));
    } else {
      stmt.BindNull(2);
    }
    TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) {
      return TransitionRefused(grant_id, before);
    }
    TG_ASSIGN_OR_RETURN(updated, ReadGrant(stmt));
    TG_RETURN_IF_ERROR(stmt.Run());  // finish the UPDATE before the next statement
  }
  std::string_view verdict = GrantStateName(to);
  std::string detail =
      vote.comment.empty() ? std::string(verdict) : Cat(verdict, ": ", vote.comment);
  TG_RETURN_IF_ERROR(
      InsertEvent(db, grant_id, GrantState::kPending, to, vote.at, vote.approver, detail));
  return updated;
}

// The SELECT for `query`: ?1 the state, ?2 the grant id, ?3 the limit, ?4 ?5 the requester,
// ?6 the connection, ?7 the trace id, ?8 ?9 the cursor (created_at_us, id).
std::string ListApprovalsSql(const ApprovalQuery& query) {
  std::string where;
  auto add = [&where](std::string_view condition) {
    where += Cat(where.empty() ? " WHERE " : " AND ", condition);
  };
  if (query.state.has_value()) {
    add("state = ?1");
  }
  if (query.grant_id.has_value()) {
    add("grant_id = ?2");
  }
  if (query.requester_issuer.has_value() || query.requester_subject.has_value()) {
    add("requester_issuer = ?4 AND requester_subject = ?5");
  }
  if (query.connection.has_value()) {
    add("connection = ?6");
  }
  if (query.trace_id.has_value()) {
    add("trace_id = ?7");
  }
  if (query.after.has_value()) {
    add("(created_at_us < ?8 OR (created_at_us = ?8 AND id < ?9))");
  }
  return Cat("SELECT ", kApprovalColumns, " FROM approvals", where,
             " ORDER BY created_at_us DESC, id DESC LIMIT ?3");
}

// Binds what ListApprovalsSql(query) asks for.
void BindApprovalQuery(Statement& stmt, const ApprovalQuery& query) {
  if (query.state.has_value()) {
    stmt.Bind(1, ApprovalStateName(*query.state));
  }
  if (query.grant_id.has_value()) {
    stmt.Bind(2, *query.grant_id);
  }
  stmt.Bind(3, static_cast<int64_t>(
                   std::min<uint64_t>(query.limit, std::numeric_limits<int64_t>::max())));
  if (query.requester_issuer.has_value() || query.requester_subject.has_value()) {
    // Both or neither: a missing half matches nothing rather than everything.
    stmt.Bind(4, query.requester_issuer.value_or(std::string()))
        .Bind(5, query.requester_subject.value_or(std::string()));
  }
  if (query.connection.has_value()) {
    stmt.Bind(6, *query.connection);
  }
  if (query.trace_id.has_value()) {
    stmt.Bind(7, *query.trace_id);
  }
  if (query.after.has_value()) {
    stmt.Bind(8, ToMicros(query.after->created_at)).Bind(9, query.after->id);
  }
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

absl::Status SqliteStore::CreateApproval(const ApprovalRequest& request) {
  return CreateApprovalWithin(request, 0);
}

// max_pending 0: no cap.
absl::Status SqliteStore::CreateApprovalWithin(const ApprovalRequest& request, size_t max_pending) {
  TG_RETURN_IF_ERROR(ValidateApproval(request));
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  TG_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(db));
  if (max_pending > 0) {
    // In the insert's transaction (BEGIN IMMEDIATE takes the write lock): another process
    // sharing the file cannot slip a request in between the count and the insert.
    TG_ASSIGN_OR_RETURN(Statement stmt,
                        db.Prepare("SELECT COUNT(*) FROM approvals WHERE requester_issuer = ?1 "
                                   "AND requester_subject = ?2 AND state = 'pending'"));
    stmt.Bind(1, request.requester_issuer).Bind(2, request.requester_subject);
    TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (row && stmt.Int(0) >= static_cast<int64_t>(max_pending)) {
      return TooManyPending(request, max_pending);
    }
  }
  {
    // A taken id first: a retried create reads AlreadyExists even once the grant has moved on.
    TG_ASSIGN_OR_RETURN(Statement stmt, db.Prepare("SELECT 1 FROM approvals WHERE id = ?1"));
    stmt.Bind(1, request.id);
    TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (row) {
      return absl::AlreadyExistsError(Cat("state store: approval ", request.id, " exists"));
    }
  }
  TG_ASSIGN_OR_RETURN(GrantState grant_state, LoadGrantState(db, request.grant_id));
  if (request.kind == ApprovalKind::kGrant && grant_state != GrantState::kPending) {
    return TransitionRefused(request.grant_id, grant_state);
  }
  {
    TG_ASSIGN_OR_RETURN(
        Statement stmt,
        db.Prepare(Cat("INSERT INTO approvals (", kApprovalColumns,
                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
                       "?15, ?16, ?17, NULL)")));
    stmt.Bind(1, request.id)
        .Bind(2, ApprovalKindName(request.kind))
        .Bind(3, ApprovalStateName(request.state))
        .Bind(4, request.grant_id)
        .Bind(5, request.session_id)
        .Bind(6, request.connection)
        .Bind(7, request.trace_id)
        .Bind(8, request.requester_issuer)
        .Bind(9, request.requester_subject)
        .Bind(10, request.requester)
        .Bind(11, request.reason)
        .Bind(12, request.detail)
        .BindBlob(13, EncodeGroups(request.approver_groups))
        .BindBlob(14, EncodeGroups(request.force_groups))
        .Bind(15, static_cast<int64_t>(request.required))
        .Bind(16, ToMicros(request.created_at))
        .Bind(17, ToMicros(request.expires_at));
    TG_RETURN_IF_ERROR(stmt.Run());
  }
  return txn.Commit();
}

absl::StatusOr<ApprovalRequest> SqliteStore::GetApproval(std::string_view id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return LoadApproval(*impl_->db, id);
}

absl::StatusOr<std::vector<ApprovalRequest>> SqliteStore::ListApprovals(
    const ApprovalQuery& query) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  TG_ASSIGN_OR_RETURN(Statement stmt, impl_->db->Prepare(ListApprovalsSql(query)));
  BindApprovalQuery(stmt, query);
  std::vector<ApprovalRequest> requests;
  while (true) {
    TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) {
      break;
    }
    TG_ASSIGN_OR_RETURN(ApprovalRequest request, ReadApproval(stmt));
    requests.push_back(std::move(request));
  }
  return requests;
}

absl::StatusOr<std::vector<ApprovalDecision>> SqliteStore::ListDecisions(
    std::string_view request_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  {
    // Requests are never deleted, so one that exists now existed for the votes read next.
    TG_ASSIGN_OR_RETURN(Statement stmt, db.Prepare("SELECT 1 FROM approvals WHERE id = ?1"));
    stmt.Bind(1, request_id);
    TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) {
      return NoApproval(request_id);
    }
  }
  return LoadDecisions(db, request_id);
}

absl::StatusOr<DecideResult> SqliteStore::Decide(const DecideRequest& request) {
  const ApprovalDecision& vote = request.decision;
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  // The write lock first: the state and votes read here are the ones the writes build on.
  TG_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(db));
  TG_ASSIGN_OR_RETURN(ApprovalRequest approval, LoadApproval(db, vote.request_id));
  if (approval.state != ApprovalState::kPending) {
    return NotPending(approval);
  }
  if (ToMicros(approval.expires_at) <= ToMicros(vote.at)) {
    // Left pending: ExpireApprovals moves it, with the time it ran.
    return absl::FailedPreconditionError(Cat("approval ", approval.id, " has expired"));
  }
  {
    TG_ASSIGN_OR_RETURN(Statement stmt,
                        db.Prepare("SELECT 1 FROM approval_decisions WHERE request_id = ?1 AND "
                                   "issuer = ?2 AND subject = ?3"));
    stmt.Bind(1, approval.id).Bind(2, vote.issuer).Bind(3, vote.subject);
    TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (row) {
      return absl::AlreadyExistsError(
          Cat(vote.approver, " already decided approval ", approval.id));
    }
  }
  {
    TG_ASSIGN_OR_RETURN(Statement stmt,
                        db.Prepare(Cat("INSERT INTO approval_decisions (", kDecisionColumns,
                                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")));
    stmt.Bind(1, approval.id)
        .Bind(2, int64_t{vote.approve ? 1 : 0})
        .Bind(3, vote.issuer)
        .Bind(4, vote.subject)
        .Bind(5, vote.approver)
        .Bind(6, vote.comment)
        .Bind(7, int64_t{vote.forced ? 1 : 0})
        .Bind(8, ToMicros(vote.at));
    TG_RETURN_IF_ERROR(stmt.Run());
  }
  DecideResult result;
  TG_ASSIGN_OR_RETURN(result.decisions, LoadDecisions(db, approval.id));
  int64_t approvals =
      std::ranges::count_if(result.decisions, [](const ApprovalDecision& d) { return d.approve; });
  ApprovalState settled = Settle(approval, vote, approvals);
  if (settled != ApprovalState::kPending) {
    {
      TG_ASSIGN_OR_RETURN(Statement stmt,
                          db.Prepare("UPDATE approvals SET state = ?1, decided_at_us = ?2 "
                                     "WHERE id = ?3 AND state = 'pending'"));
      stmt.Bind(1, ApprovalStateName(settled)).Bind(2, ToMicros(vote.at)).Bind(3, approval.id);
      TG_RETURN_IF_ERROR(stmt.Run());
    }
    approval.state = settled;
    approval.decided_at = FromMicros(ToMicros(vote.at));
    if (approval.kind == ApprovalKind::kGrant) {
      TG_ASSIGN_OR_RETURN(result.grant, SettleGrant(db, approval.grant_id, settled, request));
    }
  }
  TG_RETURN_IF_ERROR(txn.Commit());
  result.request = std::move(approval);
  return result;
}

absl::StatusOr<ApprovalRequest> SqliteStore::CloseApproval(std::string_view id, ApprovalState to,
                                                           TimePoint at) {
  if (to != ApprovalState::kExpired && to != ApprovalState::kCancelled) {
    return absl::InvalidArgumentError(Cat("state store: approval ", id,
                                          " can be closed as expired or cancelled, not ",
                                          ApprovalStateName(to)));
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  TG_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(db));
  TG_ASSIGN_OR_RETURN(ApprovalRequest approval, LoadApproval(db, id));
  if (approval.state != ApprovalState::kPending) {
    return NotPending(approval);
  }
  {
    TG_ASSIGN_OR_RETURN(Statement stmt,
                        db.Prepare("UPDATE approvals SET state = ?1, decided_at_us = ?2 "
                                   "WHERE id = ?3 AND state = 'pending'"));
    stmt.Bind(1, ApprovalStateName(to)).Bind(2, ToMicros(at)).Bind(3, approval.id);
    TG_RETURN_IF_ERROR(stmt.Run());
  }
  TG_RETURN_IF_ERROR(txn.Commit());
  approval.state = to;
  approval.decided_at = FromMicros(ToMicros(at));
  return approval;
}

absl::StatusOr<std::vector<ApprovalRequest>> SqliteStore::ExpireApprovals(TimePoint now) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Db& db = *impl_->db;
  TG_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(db));
  std::vector<ApprovalRequest> expired;
  {
    TG_ASSIGN_OR_RETURN(Statement stmt,
                        db.Prepare(Cat("SELECT ", kApprovalColumns,
                                       " FROM approvals WHERE state = 'pending' AND "
                                       "expires_at_us <= ?1 ORDER BY expires_at_us, id")));
    stmt.Bind(1, ToMicros(now));
    while (true) {
      TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
      if (!row) {
        break;
      }
      TG_ASSIGN_OR_RETURN(ApprovalRequest request, ReadApproval(stmt));
      request.state = ApprovalState::kExpired;
      request.decided_at = FromMicros(ToMicros(now));
      expired.push_back(std::move(request));
    }
  }
  if (expired.empty()) {
    return expired;
  }
  {
    // The same condition under the same write lock: exactly the rows read above.
    TG_ASSIGN_OR_RETURN(Statement stmt,
                        db.Prepare("UPDATE approvals SET state = 'expired', decided_at_us = ?1 "
                                   "WHERE state = 'pending' AND expires_at_us <= ?1"));
    stmt.Bind(1, ToMicros(now));
    TG_RETURN_IF_ERROR(stmt.Run());
  }
  TG_RETURN_IF_ERROR(txn.Commit());
  return expired;
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
