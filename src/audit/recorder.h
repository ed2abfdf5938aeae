#pragma once
// The session recorder: what the data path calls to put a session into the audit log
// (log.h) and the session index (the state store), and to learn when a record is durable.
//
// One Recorder per gateway; one Recorder::Session per recorded client session, used from
// that session's thread only. Records of a session:
//   kSessionStart  who (principal, grant, trace), where from, over what (TLS), when
//   kClientFrames  the client's protocol messages, verbatim, as the gateway accepted them
//   kServerFrames  the messages sent to the client, byte for byte (masked, refusals included)
//   kGrantEvent    the grant transitions the session caused
//   kTruncated     the session reached max_session_bytes: it is ended (nothing more is recorded
//                  or released; the client frames that crossed the cap are still recorded)
//   kSessionEnd    outcome, reason, counters
// Nothing secret is ever passed in: the client's frames after authentication carry no
// credential (password messages are refused before they would be recorded), and the
// backend's credential never travels on the client side.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "audit/auth_failures.h"
#include "audit/log.h"
#include "config/config.h"
#include "store/state_store.h"

namespace tracegate::audit {

struct SessionInfo {
  std::string id;
  std::string kind = "postgres";
  std::string connection;
  std::string user;
  std::string database;
  std::string grant_id;  // empty: a static user
  std::string trace_id;
  std::string issuer;
  std::string subject;
  std::string client_id;
  std::vector<std::string> groups;
  std::string rule;
  std::string masking_profile;
  std::string client_address;
  std::string tls_version;  // empty: plaintext
  std::string tls_cipher;
  std::chrono::system_clock::time_point started_at;
};

// The most frame bytes one log record holds. Longer runs are split into several records at
// frame boundaries; a single frame longer than this cannot be recorded, so the gateway's
// message limit is never above it (pgproxy lowers max_message_length to it when recording).
[[nodiscard]] size_t MaxFramesPerRecord();

// Client frames the gateway did not pass on: dropped by the gate (CopyData outside COPY,
// messages skipped to the next Sync after an error), or refused and too long to keep
// verbatim. Consecutive frames of one type and verdict are counted together.
struct UnforwardedFrames {
  char type = 0;
  std::string verdict;  // "dropped" | "refused"
  uint64_t count = 0;
  uint64_t bytes = 0;  // wire bytes, headers included
  std::string head;    // refused statements: their first bytes (at most kUnforwardedHead)
};
inline constexpr size_t kUnforwardedHead = 1024;
// Per session: summaries of unforwarded frames are written while their payloads stay within
// this; later ones are only counted (session_end "unforwarded"). Kept apart from
// max_session_bytes, so that bytes PostgreSQL never saw cannot use up the session's record.
inline constexpr size_t kUnforwardedSummaryBudget = 64 * 1024;

struct SessionOutcome {
  std::string outcome;  // "completed" | "refused" | "violation" | "error" | "interrupted"
  std::string reason;
  uint64_t statements = 0;
  uint64_t blocked = 0;
  uint64_t rows = 0;
  uint64_t bytes_to_client = 0;
  uint64_t bytes_from_client = 0;
  std::map<std::string, uint64_t> masked;  // values masked, by entity
  uint64_t masking_errors = 0;
};

class Recorder {
 public:
  // Opens the log in config.dir (key: config.signing_key, else the generated key file in the
  // directory, created on first start), and closes sessions an earlier run left open in the
  // index (crash): each gets a kSessionEnd "interrupted".
  // `auth_failures` sets the aggregation of failed attempts (window, keys; tests inject a
  // clock).
  static absl::StatusOr<std::unique_ptr<Recorder>> Open(
      const config::Audit& config, store::StateStore& store,
      AuthFailures::Options auth_failures = AuthFailures::Options{});
  ~Recorder();

  [[nodiscard]] Durability durability() const { return log_->durability(); }
  // OK, or why nothing can be recorded (new sessions are then refused).
  [[nodiscard]] absl::Status health() const { return log_->health(); }
  [[nodiscard]] LogWriter& log() { return *log_; }
  // Retention: prunes what is older than retention_days (no-op when 0).
  absl::StatusOr<size_t> Prune();

  class Session {
   public:
    // Each returns the seq of the record that holds the bytes, for LogWriter::WhenDurable.
    // An error means the bytes are not recorded: the caller must not release them, and ends
    // the session. ResourceExhausted: the session reached audit.max_session_bytes (a
    // kTruncated record says so; client frames that crossed it were still recorded).
    absl::StatusOr<uint64_t> ClientFrames(std::string_view frames);
    absl::StatusOr<uint64_t> ServerFrames(std::string_view frames);
    // A bounded summary (type, count, length, verdict; never the bytes beyond `head`) of
    // client frames that did not reach the backend, in the order they came. Not charged to
    // max_session_bytes; past kUnforwardedSummaryBudget only counted. Returns the seq of the
    // record written, or of the last record when only counted.
    absl::StatusOr<uint64_t> Unforwarded(const std::vector<UnforwardedFrames>& frames);
    absl::StatusOr<uint64_t> GrantEvent(std::string_view from, std::string_view to,
                                        std::string_view actor, std::string_view detail);
    // An approval that concerns this session (a held result, or the decision its grant
    // waited for): `payload` is a JSON object (src/approvals writes it).
    absl::StatusOr<uint64_t> Approval(std::string payload);
    // Appends kSessionEnd and updates the index. Call once.
    absl::Status End(const SessionOutcome& outcome);

    [[nodiscard]] uint64_t last_seq() const { return last_seq_; }
    [[nodiscard]] const std::string& id() const { return summary_.id; }

   private:
    friend class Recorder;
    Session(Recorder& recorder, store::SessionSummary summary);
    absl::StatusOr<uint64_t> Frames(RecordType type, std::string_view frames);
    // Appends `frames` in as many records as MaxFramesPerRecord needs, split between frames.
    absl::StatusOr<uint64_t> AppendFrames(RecordType type, std::string_view frames);

    Recorder& recorder_;
    store::SessionSummary summary_;
    uint64_t last_seq_ = 0;
    uint64_t recorded_bytes_ = 0;
    bool truncated_ = false;
    uint64_t unforwarded_frames_ = 0;
    uint64_t unforwarded_bytes_ = 0;
    uint64_t unforwarded_unsummarized_ = 0;  // counted only: the summary budget was spent
    size_t unforwarded_summary_bytes_ = 0;
  };

  // An approval record (a request opened, a vote, a settlement), from any thread: `session`
  // is the held session it concerns, or empty (a pending grant has no session yet);
  // `payload` is a JSON object. Returns its seq.
  absl::StatusOr<uint64_t> Approval(std::string_view session, std::string payload);

  // A refused credential on any data path (wrong secret, unknown user, a used, expired or
  // revoked grant, a refused bearer), from any thread: aggregated (auth_failures.h) into
  // kAuthFailure records, each also indexed as a session of kind `path` with outcome
  // "refused" (reason, client, grant; `blocked` holds the attempts it stands for). Never
  // blocks on the log's sync and never changes the refusal: a record that cannot be written
  // is logged.
  void AuthFailure(const audit::AuthFailure& failure);
  [[nodiscard]] AuthFailures::Stats auth_failure_stats() const;
  // Index writes refused because the row belonged to another session (logged; never done).
  [[nodiscard]] uint64_t index_conflicts() const { return index_conflicts_.load(); }

  // Appends kSessionStart and indexes the session. Errors: the recorder is broken, or the
  // index could not be written (the session must be refused).
  absl::StatusOr<std::unique_ptr<Session>> Begin(const SessionInfo& info);

 private:
  Recorder(const config::Audit& config, store::StateStore& store, std::unique_ptr<LogWriter> log,
           AuthFailures::Options auth_failure_options);
  absl::Status CloseInterruptedSessions();
  absl::Status WriteAuthFailure(const AuthFailureRecord& record);
  // Logs and counts a refused index write; returns the AlreadyExists error to report.
  absl::Status IndexConflict(std::string_view id, std::string_view what);

  const uint64_t max_session_bytes_;
  const uint32_t retention_days_;
  store::StateStore& store_;
  std::unique_ptr<LogWriter> log_;
  std::atomic<uint64_t> index_conflicts_{0};
  // After log_: destroyed first, so its last summaries reach the log.
  std::unique_ptr<AuthFailures> auth_failures_;
};

// "2026-11-30T23:59:01.123456Z"
std::string FormatTime(std::chrono::system_clock::time_point at);

}  // namespace tracegate::audit
