#pragma once
// Failed attempts to use a credential, kept as evidence (DESIGN.md "How recording is built").
// Every data path reports each refusal through Recorder::AuthFailure, which lands here; the
// audit log gets kAuthFailure records, aggregated so that a flood cannot fill the disk:
//
// Time is cut into windows of `window`. Within a window the first failure of a key (path,
// reason, connection, client address without its port, grant id, user) is written at once
// (event "failure", count 1). Later ones with the same key are only counted, and written as
// one "summary" record (count, first_at, last_at) when the window closes. At most `max_keys`
// keys are tracked per window; failures past that are counted per (path, reason) and written
// as one "overflow" record each when the window closes. So one window writes at most
// 2 × max_keys + paths × reasons records and holds as many entries, whatever arrives. Every
// record's `count` is the number of attempts it stands for, and no other record counts them:
// the counts add up to the attempts exactly.
//
// A window closes at its end (on the background thread, or on the next report if that comes
// first) and at destruction (shutdown). What is written never holds a secret: callers pass
// names, ids and addresses only, and every field is cut to kMaxFieldBytes.

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"

namespace tracegate::audit {

// Where the credential was presented.
enum class AuthPath : uint8_t { kPostgres, kHttp, kFetch };
std::string_view AuthPathName(AuthPath path);  // "postgres" | "http" | "fetch"

// The fixed vocabulary of reasons. Anything else is recorded as "other".
inline constexpr std::array<std::string_view, 16> kAuthFailureReasons = {
    "wrong_secret",          // SCRAM proof or bearer secret wrong (grant or static user)
    "unknown_user",          // a Postgres user that is neither static nor a grant (g_… too)
    "unknown_grant",         // a bearer naming a grant that does not exist
    "malformed_credential",  // a bearer that is not tgb_<id>_<secret>
    "missing_credential",    // no bearer at all
    "grant_used",            // single use already taken
    "grant_expired",
    "grant_revoked",
    "grant_other_connection",  // the grant is for another connection
    "grant_other_trace",       // one-call fetch: the grant is for another trace
    "grant_other_principal",   // one-call fetch: the grant is another caller's
    "grant_in_use",            // multi-use grant busy with another session
    "grant_pending",           // still waiting for approval
    "grant_denied",
    "grant_unusable",  // a grant state no other reason covers
    "other",
};

struct AuthFailure {
  AuthPath path = AuthPath::kPostgres;
  std::string_view reason;          // from kAuthFailureReasons
  std::string_view connection;      // the configured connection's name
  std::string_view client_address;  // "ip" or "ip:port"; the key uses the ip only
  std::string_view grant_id;        // when known ("" otherwise): never the secret
  std::string_view user;            // the Postgres user name presented ("" for HTTP)
  std::string_view session;         // the refused connection's id in the gateway's logs, if any
};

// What AuthFailures hands its sink: one kAuthFailure record.
struct AuthFailureRecord {
  std::string event;  // "failure" | "summary" | "overflow"
  AuthPath path = AuthPath::kPostgres;
  std::string reason;
  std::string connection, client_address, grant_id, user, session;  // empty for "overflow"
  uint64_t count = 0;
  std::chrono::system_clock::time_point first_at, last_at;
  std::chrono::system_clock::time_point window_start, window_end;
  // {"event","path","reason","connection","client_address","grant_id","user","session",
  //  "count","first_at","last_at","window_start","window_end","window_seconds"}
  [[nodiscard]] std::string ToJson() const;
};

class AuthFailures {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;
  // Writes one record (the recorder appends it to the log and indexes it). Called without
  // AuthFailures' lock held, from the reporting thread, the background thread or the
  // destructor, possibly from several at once. An error is logged and counted; the attempt stays
  // refused either way.
  using Sink = std::function<absl::Status(const AuthFailureRecord&)>;

  struct Options {
    std::chrono::milliseconds window{10000};
    size_t max_keys = 64;
    Clock clock;             // default: system clock
    bool background = true;  // close windows on a thread at their end (tests turn it off)
  };
  static constexpr size_t kMaxFieldBytes = 128;

  AuthFailures(Options options, Sink sink);
  // Closes the current window (its summaries are written) and stops the thread.
  ~AuthFailures();
  AuthFailures(const AuthFailures&) = delete;
  AuthFailures& operator=(const AuthFailures&) = delete;

  void Report(const AuthFailure& failure);
  // Closes the window if its end has passed (the background thread calls it).
  void CloseIfDue();
  // Closes the window now, whatever the time (shutdown, tests).
  void Close();

  struct Stats {
    uint64_t reported = 0;    // attempts reported
    uint64_t records = 0;     // records handed to the sink
    uint64_t unwritten = 0;   // records the sink failed to write
    size_t tracked_keys = 0;  // keys in the current window
  };
  [[nodiscard]] Stats stats() const;

 private:
  using Key = std::tuple<AuthPath, std::string, std::string, std::string, std::string,
                         std::string>;  // path, reason, connection, address, grant, user
  struct Entry {
    std::string session;  // of the first failure
    std::string address;  // as reported first (with port)
    uint64_t more = 0;    // failures after the first, not written yet
    std::chrono::system_clock::time_point first_more, last_more;
  };
  struct Overflow {
    uint64_t count = 0;
    std::chrono::system_clock::time_point first_at, last_at;
  };

  // Takes the window's summaries out (lock held); the caller writes them unlocked.
  std::vector<AuthFailureRecord> TakeWindow(std::chrono::system_clock::time_point now);
  void Write(const std::vector<AuthFailureRecord>& records);
  void Run();

  const Options options_;
  const Sink sink_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool window_open_ = false;
  std::chrono::system_clock::time_point window_start_;
  std::map<Key, Entry> entries_;
  std::map<std::pair<AuthPath, std::string>, Overflow> overflow_;
  Stats stats_;
  std::thread thread_;
};

}  // namespace tracegate::audit
