#include "store/sqlite_store.h"

#include <array>
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
constexpr std::array<std::string_view, 1> kMigrations = {
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
};

constexpr char kLiveStates[] = "('pending', 'approved', 'active', 'in_use')";

// The columns of a grant row, in the order ReadGrant expects them.
constexpr char kGrantColumns[] =
    "id, state, connection, trace_id, issuer, subject, client_id, groups, reason, rule, "
    "client_address, masking_profile, created_at_us, expires_at_us, uses_allowed, uses_left, "
    "max_session_ms, max_rows, max_bytes, scram_verifier, bearer_hash";

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

absl::Status SqliteStore::CheckHealth() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  TG_ASSIGN_OR_RETURN(Statement stmt, impl_->db->Prepare("SELECT count(*) FROM grants WHERE 0"));
  return stmt.Run();
}

}  // namespace tracegate::store
