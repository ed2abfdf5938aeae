#pragma once
// The embedded state store: one SQLite file.
//
// Durability: WAL journal with synchronous=FULL, so a commit (a redemption above all) is on
// disk when the call returns; otherwise a crash could forget that a single-use credential
// was used, and it could be used again after the restart.
//
// Concurrency: one connection behind a mutex. SQLite admits one writer at a time anyway,
// every operation here is a handful of indexed statements plus at most one fsync, and one
// connection keeps the prepared-statement cache simple. Several processes may share the
// file: writes run in BEGIN IMMEDIATE transactions and wait (busy_timeout) for each other,
// and the redemption is one conditional UPDATE … RETURNING, so racing redemptions from any
// number of processes still have exactly one winner per use.
//
// Schema: versioned with PRAGMA user_version; Open applies the missing migration steps in
// one transaction and refuses a file written by a newer tracegate.

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "store/state_store.h"

namespace tracegate::store {

struct SqliteOptions {
  std::chrono::milliseconds busy_timeout{5000};  // how long to wait for another writer
};

class SqliteStore final : public StateStore {
 public:
  // Opens (creating if needed) the database file at `path` and brings its schema up to date.
  // FailedPrecondition for a schema newer than this binary knows; Unavailable when the file
  // cannot be opened or migrated.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const std::string& path, SqliteOptions options = {});

  // The schema version this binary writes.
  static int SchemaVersion();

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  [[nodiscard]] absl::Status CreateGrant(const GrantRecord& record,
                                         const GrantEvent& event) override;
  [[nodiscard]] absl::StatusOr<GrantRecord> GetGrant(std::string_view grant_id) override;
  [[nodiscard]] absl::StatusOr<GrantRecord> Transition(const TransitionRequest& request) override;
  [[nodiscard]] absl::StatusOr<std::vector<ExpiredGrant>> ExpireDue(TimePoint now) override;
  [[nodiscard]] absl::StatusOr<std::vector<GrantEvent>> ListEvents(
      std::string_view grant_id) override;
  [[nodiscard]] absl::Status PutSession(const SessionSummary& session) override;
  [[nodiscard]] absl::StatusOr<SessionSummary> GetSession(std::string_view id) override;
  [[nodiscard]] absl::StatusOr<std::vector<SessionSummary>> ListSessions(
      const SessionQuery& query) override;
  [[nodiscard]] absl::Status PutAuditHead(std::string_view checkpoint) override;
  [[nodiscard]] absl::StatusOr<std::optional<std::string>> GetAuditHead() override;
  [[nodiscard]] absl::Status CreateApproval(const ApprovalRequest& request) override;
  // The count and the insert in one transaction: concurrent requests cannot pass the cap.
  [[nodiscard]] absl::Status CreateApprovalWithin(const ApprovalRequest& request,
                                                  size_t max_pending) override;
  [[nodiscard]] absl::StatusOr<ApprovalRequest> GetApproval(std::string_view id) override;
  [[nodiscard]] absl::StatusOr<std::vector<ApprovalRequest>> ListApprovals(
      const ApprovalQuery& query) override;
  [[nodiscard]] absl::StatusOr<std::vector<ApprovalDecision>> ListDecisions(
      std::string_view request_id) override;
  [[nodiscard]] absl::StatusOr<DecideResult> Decide(const DecideRequest& request) override;
  [[nodiscard]] absl::StatusOr<ApprovalRequest> CloseApproval(std::string_view id, ApprovalState to,
                                                              TimePoint at) override;
  [[nodiscard]] absl::StatusOr<std::vector<ApprovalRequest>> ExpireApprovals(
      TimePoint now) override;
  [[nodiscard]] absl::Status CheckHealth() override;

 private:
  struct Impl;
  explicit SqliteStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

namespace internal {

// The migration steps Open applies (step i takes the schema from version i to i + 1), for
// tests that build a file as an older tracegate left it.
[[nodiscard]] std::span<const std::string_view> SqliteMigrationSteps();

}  // namespace internal

}  // namespace tracegate::store
