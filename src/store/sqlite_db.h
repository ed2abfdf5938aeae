#pragma once
// Private to store: a thin layer over the SQLite C API (one connection, cached prepared
// statements, transactions, schema migrations) with every error as an absl::Status.
// Not thread-safe: SqliteStore serializes all use of a Db.

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tracegate::store::internal {

// A cached prepared statement in use. Reset (bindings cleared) when it goes out of scope, so
// the next user of the same SQL starts clean and no read transaction is left open.
class Statement {
 public:
  Statement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;

  // Parameters are 1-based. A binding error is reported by the next Step().
  Statement& Bind(int index, std::string_view text);
  Statement& BindBlob(int index, std::string_view bytes);
  Statement& Bind(int index, int64_t value);
  Statement& BindNull(int index);

  // true: a row is ready; false: done.
  [[nodiscard]] absl::StatusOr<bool> Step();
  // Steps to the end, ignoring rows.
  [[nodiscard]] absl::Status Run();

  // Columns are 0-based.
  [[nodiscard]] bool IsNull(int column) const;
  [[nodiscard]] int64_t Int(int column) const;
  [[nodiscard]] std::string Text(int column) const;  // TEXT or BLOB bytes

 private:
  sqlite3_stmt* stmt_;
  sqlite3* db_;
  int bind_error_ = SQLITE_OK;
};

class Db {
 public:
  // Opens or creates `path`: WAL journal, synchronous=FULL, foreign keys, busy timeout.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Db>> Open(
      const std::string& path, std::chrono::milliseconds busy_timeout);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // A prepared statement for `sql`, compiled once per distinct text and cached.
  [[nodiscard]] absl::StatusOr<Statement> Prepare(std::string_view sql);
  // Runs one or more statements that take no parameters (DDL, pragmas). Not cached.
  [[nodiscard]] absl::Status Exec(std::string_view sql);

  // PRAGMA user_version.
  [[nodiscard]] absl::StatusOr<int> UserVersion();

  sqlite3* handle() { return db_; }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  absl::flat_hash_map<std::string, sqlite3_stmt*> statements_;
};

// BEGIN IMMEDIATE (the write lock now, so that reads inside see what the writes will
// change); rolled back on destruction unless Commit() succeeded.
class Transaction {
 public:
  [[nodiscard]] static absl::StatusOr<Transaction> Begin(Db& db);
  Transaction(Transaction&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  [[nodiscard]] absl::Status Commit();

 private:
  explicit Transaction(Db* db) : db_(db) {}
  Db* db_;
};

// The status for SQLite result code `rc` while doing `what`: AlreadyExists for a primary
// key conflict, InvalidArgument for other constraint violations (a bad record), Unavailable
// for everything else (the database failed; callers fail closed).
[[nodiscard]] absl::Status SqliteError(sqlite3* db, int rc, std::string_view what);

// Brings the schema from PRAGMA user_version to steps.size(): applies the missing steps
// (step i takes version i to i + 1) and sets user_version, all in one transaction.
// FailedPrecondition if the database is newer than steps.size().
[[nodiscard]] absl::Status ApplyMigrations(Db& db, std::span<const std::string_view> steps,
                                           std::string_view path);

}  // namespace tracegate::store::internal
