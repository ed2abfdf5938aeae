#include "store/sqlite_db.h"

#include <string>
#include <utility>

#include "common/status.h"
#include "common/strings.h"

namespace tracegate::store::internal {

absl::Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string message = Cat("state store: ", what, ": ", detail, " (sqlite ", rc, ")");
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
    return absl::AlreadyExistsError(message);
  }
  if ((rc & 0xff) == SQLITE_CONSTRAINT) {
    return absl::InvalidArgumentError(message);
  }
  return absl::UnavailableError(message);
}

// ---- Statement -------------------------------------------------------------------------------

namespace {

// SQLite binds a null pointer as NULL, so an empty view must still point somewhere.
const char* NonNull(std::string_view s) { return s.data() != nullptr ? s.data() : ""; }

}  // namespace

Statement::~Statement() {
  if (stmt_ != nullptr) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
}

Statement::Statement(Statement&& other) noexcept
    : stmt_(other.stmt_), db_(other.db_), bind_error_(other.bind_error_) {
  other.stmt_ = nullptr;
}

Statement& Statement::Bind(int index, std::string_view text) {
  int rc = sqlite3_bind_text(stmt_, index, NonNull(text), static_cast<int>(text.size()),
                             SQLITE_TRANSIENT);
  if (bind_error_ == SQLITE_OK) {
    bind_error_ = rc;
  }
  return *this;
}

Statement& Statement::BindBlob(int index, std::string_view bytes) {
  int rc = sqlite3_bind_blob(stmt_, index, NonNull(bytes), static_cast<int>(bytes.size()),
                             SQLITE_TRANSIENT);
  if (bind_error_ == SQLITE_OK) {
    bind_error_ = rc;
  }
  return *this;
}

Statement& Statement::Bind(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (bind_error_ == SQLITE_OK) {
    bind_error_ = rc;
  }
  return *this;
}

Statement& Statement::BindNull(int index) {
  int rc = sqlite3_bind_null(stmt_, index);
  if (bind_error_ == SQLITE_OK) {
    bind_error_ = rc;
  }
  return *this;
}

absl::StatusOr<bool> Statement::Step() {
  if (bind_error_ != SQLITE_OK) {
    return SqliteError(db_, bind_error_, Cat("binding parameters of ", sqlite3_sql(stmt_)));
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return SqliteError(db_, rc, sqlite3_sql(stmt_));
}

absl::Status Statement::Run() {
  while (true) {
    TG_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) {
      return absl::OkStatus();
    }
  }
}

bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string Statement::Text(int column) const {
  // sqlite3_column_blob before sqlite3_column_bytes, as the SQLite documentation requires.
  const void* data = sqlite3_column_blob(stmt_, column);
  int size = sqlite3_column_bytes(stmt_, column);
  if (data == nullptr || size <= 0) {
    return {};
  }
  return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
}

// ---- Db --------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& path,
                                             std::chrono::milliseconds busy_timeout) {
  if (sqlite3_threadsafe() == 0) {
    return absl::UnavailableError("state store: SQLite was built without thread support");
  }
  sqlite3* handle = nullptr;
  // NOMUTEX: SqliteStore serializes every use of the connection itself.
  int rc =
      sqlite3_open_v2(path.c_str(), &handle,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(handle, rc, Cat("opening ", path));
    sqlite3_close(handle);  // a handle is returned even on failure (or null: a no-op)
    return status;
  }
  std::unique_ptr<Db> db(new Db(handle));
  sqlite3_extended_result_codes(handle, 1);
  rc = sqlite3_busy_timeout(handle, static_cast<int>(busy_timeout.count()));
  if (rc != SQLITE_OK) {
    return SqliteError(handle, rc, "setting busy_timeout");
  }
  {
    TG_ASSIGN_OR_RETURN(Statement wal, db->Prepare("PRAGMA journal_mode=WAL"));
    TG_ASSIGN_OR_RETURN(bool row, wal.Step());
    std::string mode = row ? wal.Text(0) : "";
    if (mode != "wal") {
      return absl::UnavailableError(Cat(
          "state store: ", path, ": cannot use the WAL journal (journal_mode is '", mode, "')"));
    }
  }
  TG_RETURN_IF_ERROR(db->Exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON"));
  return db;
}

Db::~Db() {
  for (auto& [sql, stmt] : statements_) {
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db_);
}

absl::StatusOr<Statement> Db::Prepare(std::string_view sql) {
  auto it = statements_.find(std::string(sql));
  if (it != statements_.end()) {
    return Statement(it->second, db_);
  }
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return SqliteError(db_, rc, Cat("preparing ", sql));
  }
  statements_.emplace(std::string(sql), stmt);
  return Statement(stmt, db_);
}

absl::Status Db::Exec(std::string_view sql) {
  std::string text(sql);
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    return SqliteError(db_, rc, text);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Db::UserVersion() {
  TG_ASSIGN_OR_RETURN(Statement stmt, Prepare("PRAGMA user_version"));
  TG_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) {
    return absl::UnavailableError("state store: PRAGMA user_version returned no row");
  }
  return static_cast<int>(stmt.Int(0));
}

// ---- Transaction -----------------------------------------------------------------------------

absl::StatusOr<Transaction> Transaction::Begin(Db& db) {
  TG_ASSIGN_OR_RETURN(Statement begin, db.Prepare("BEGIN IMMEDIATE"));
  TG_RETURN_IF_ERROR(begin.Run());
  return Transaction(&db);
}

Transaction::~Transaction() {
  if (db_ != nullptr && !sqlite3_get_autocommit(db_->handle())) {
    // Nothing useful to do if the rollback itself fails: SQLite then rolls back when the
    // connection is next used or closed, and the caller already has an error to report.
    (void)db_->Exec("ROLLBACK");
  }
}

absl::Status Transaction::Commit() {
  TG_ASSIGN_OR_RETURN(Statement commit, db_->Prepare("COMMIT"));
  TG_RETURN_IF_ERROR(commit.Run());
  db_ = nullptr;
  return absl::OkStatus();
}

// ---- Migrations ------------------------------------------------------------------------------

namespace {

absl::Status NewerThanKnown(std::string_view path, int found, size_t known) {
  return absl::FailedPreconditionError(
      Cat("state store: ", path, " has schema version ", found, " but this tracegate knows ",
          "versions up to ", known, "; it was written by a newer tracegate: run that version ",
          "or restore a backup"));
}

}  // namespace

absl::Status ApplyMigrations(Db& db, std::span<const std::string_view> steps,
                             std::string_view path) {
  TG_ASSIGN_OR_RETURN(int version, db.UserVersion());
  if (version < 0 || static_cast<size_t>(version) > steps.size()) {
    return NewerThanKnown(path, version, steps.size());
  }
  if (static_cast<size_t>(version) == steps.size()) {
    return absl::OkStatus();
  }
  TG_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(db));
  // Another process may have migrated between the first look and the write lock.
  TG_ASSIGN_OR_RETURN(version, db.UserVersion());
  if (version < 0 || static_cast<size_t>(version) > steps.size()) {
    return NewerThanKnown(path, version, steps.size());
  }
  for (size_t i = static_cast<size_t>(version); i < steps.size(); ++i) {
    absl::Status status = db.Exec(steps[i]);
    if (!status.ok()) {
      return absl::UnavailableError(Cat("state store: ", path, ": schema migration to version ",
                                        i + 1, " failed: ", MessageOf(status)));
    }
  }
  TG_RETURN_IF_ERROR(db.Exec(Cat("PRAGMA user_version = ", steps.size())));
  return txn.Commit();
}

}  // namespace tracegate::store::internal
