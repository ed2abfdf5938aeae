#pragma once
// One client connection on a Postgres listener, from the first byte to the close:
//
//   Negotiate    SSLRequest / GSSENCRequest / CancelRequest / StartupMessage
//   Authenticate SCRAM-SHA-256 against the connection's client credentials
//   Attach       a pooled backend, the client's parameters applied, the startup replies
//   Relay        both directions, every frame framed and validated before it moves on
//   Finish       the final ErrorResponse if any, backend reset into the pool or closed
//
// Everything a session does runs on one worker's event loop, so its state needs no lock.

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "approvals/approvals.h"
#include "audit/recorder.h"
#include "config/config.h"
#include "grants/grants.h"
#include "masking/masker.h"
#include "pgproxy/asio.h"
#include "pgproxy/backend.h"
#include "pgproxy/cancel.h"
#include "pgproxy/frame_buffer.h"
#include "pgproxy/metrics.h"
#include "pgproxy/pool.h"
#include "pgproxy/protocol_gate.h"
#include "pgproxy/stream.h"
#include "pgwire/messages.h"
#include "pgwire/scram.h"
#include "sql/gate.h"

namespace tracegate::pgproxy {

// Read-only state shared by every session of one configured connection.
struct ConnectionRuntime {
  const config::Connection* config = nullptr;
  ConnectionMetrics metrics;
  absl::flat_hash_map<std::string, pgwire::ScramVerifier> users;
  // Keys the fake SCRAM salt of unknown users, so probing cannot tell them apart.
  std::string unknown_user_salt_key;
  asio::ssl::context* client_tls = nullptr;  // null when no server certificate is configured
  grants::GrantService* grants = nullptr;    // null: static users only
  std::shared_ptr<const sql::Gate> gate;     // what a grant's session may run
  // Compiled masking profiles by name; a grant names the one its session's answers pass.
  std::map<std::string, std::shared_ptr<const masking::Masker>, std::less<>> maskers;
  // Records every authenticated session (null: recording is disabled in the config).
  audit::Recorder* recorder = nullptr;
  // Holds sessions on pending grants, and results that need consent (null: no grants API).
  approvals::ApprovalService* approvals = nullptr;
  BackendTarget backend;
  pgwire::Limits limits;
  // Before authentication: the startup packet's limit, and typed messages (SCRAM) capped at
  // limits.max_auth_message_length.
  pgwire::Limits auth_limits;
  // Clients not yet authenticated, over all listeners (the gateway's; AcceptLoop counts a
  // client in, its session counts it out when authentication ends either way).
  std::atomic<uint32_t>* unauthenticated = nullptr;
  // Sessions open on this listener, handshakes included (all workers); see max_sessions.
  std::atomic<uint32_t> open_sessions{0};
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  using Clock = std::chrono::steady_clock;

  Session(tcp::socket socket, const ConnectionRuntime& runtime, BackendPool& pool,
          CancelRegistry& cancels, std::string id);

  // Runs the session to its end. `on_done` is called last, on the session's thread.
  awaitable<void> Run(std::function<void(Session*)> on_done);

  // Ends the session with `reason` sent to the client as a FATAL ErrorResponse (gateway
  // shutdown). Must be called on the session's thread.
  void Terminate(absl::Status reason);

  [[nodiscard]] const std::string& id() const { return id_; }

 private:
  // Startup phase. Returns the StartupMessage, or an error to send; nullopt when the
  // connection was a CancelRequest (already handled) or the client went away.
  awaitable<absl::StatusOr<std::optional<pgwire::StartupMessage>>> Negotiate();
  awaitable<absl::Status> CheckStartup(const pgwire::StartupMessage& startup);
  awaitable<absl::Status> Authenticate();
  // After the caller proved a grant's secret: takes one use of the grant, atomically.
  absl::Status RedeemGrant(const std::string& grant_id);
  // A pending grant's credential was proven: tells the client it waits (AuthenticationOk, a
  // NoticeResponse), holds the session until approvers decide, then redeems the grant or
  // ends with the decision (and the approver's comment).
  awaitable<absl::Status> AwaitApproval(const std::string& grant_id);
  // Waits in one-second ticks until `settled()` (asked when woken, and every few ticks)
  // returns true. Cancelled when the client leaves; the end reason when the session stops.
  awaitable<absl::Status> Hold(const std::function<bool()>& settled);
  // A result in which masking found `found` values (at least the rule's threshold) waits for
  // approval: OK to release it, or the error to send instead.
  awaitable<absl::Status> AwaitResultApproval(uint64_t found);
  // Why a grant that was waiting ended without approval, for the client.
  std::string NotApprovedReason(const std::string& grant_id, store::GrantState state);
  awaitable<absl::Status> AttachBackend();
  awaitable<absl::Status> ApplyClientParameters();
  // Grant sessions: learns the trace-id columns from the backend's catalog (once per
  // backend connection) and puts the statement gate in the data path.
  awaitable<absl::Status> StartGate();
  // Recording (when the runtime has a recorder). Begin after the backend is attached; a
  // failure refuses the session. Frames to the client are released only once recorded (and,
  // in strict mode, durable): the caller must not send them on an error.
  absl::Status BeginRecording();
  absl::Status RecordClientFrames(pgwire::Bytes frames);
  // Records the frames of one read the gate judged (client_frames_ with verdicts_): what
  // reaches the backend verbatim, what the gate dropped (or refused, when long) as a summary.
  absl::Status RecordClientRun();
  awaitable<absl::Status> RecordServerFrames(pgwire::Bytes frames);
  void EndRecording();
  awaitable<void> ForwardCancel(const pgwire::CancelRequest& request);
  enum class CancelOutcome {
    kNotSent,      // no connection, or the request could not be written
    kDelivered,    // PostgreSQL read it and closed the connection: the signal was sent
    kUnconfirmed,  // written, but the close did not come in time: it may still land
  };
  // Sends a CancelRequest for `target`'s backend (the target by value: the session may end
  // while this runs).
  awaitable<CancelOutcome> SendCancel(std::optional<CancelTarget> target);
  // The gate capped a statement: cancel it while the client's next messages wait.
  void CancelCappedStatement();

  awaitable<void> RelayClientToBackend();
  awaitable<void> RelayBackendToClient();
  awaitable<void> Watchdog();
  // Records why the session ends (first reason wins) and interrupts both relays.
  void Stop(absl::Status reason, bool tell_client);
  awaitable<void> Finish();
  void ReturnBackend();

  // Client reads: the next startup-phase packet, or the next typed frame (validated).
  // An error status means a protocol violation; nullopt means the client went away.
  awaitable<absl::StatusOr<std::optional<pgwire::Frame>>> ReadClientFrame(bool startup);
  awaitable<bool> WriteClient(const pgwire::Buffer& bytes);

  tcp::socket& client_socket() { return client_.socket(); }

  const std::string id_;
  const ConnectionRuntime& runtime_;
  BackendPool& pool_;
  CancelRegistry& cancels_;
  Stream client_;
  FrameBuffer client_buffer_;
  std::unique_ptr<BackendConn> backend_;
  std::optional<pgwire::BackendKeyData> client_key_;

  std::string user_;
  std::string database_;
  std::string peer_;
  std::vector<std::pair<std::string, std::string>> client_parameters_;

  // Relay bookkeeping, to know whether the backend is idle and clean when we are done.
  int outstanding_syncs_ = 0;  // Query/Sync/FunctionCall sent, ReadyForQuery not yet back
  bool unsynced_ = false;      // extended-protocol messages sent since the last Sync
  bool client_write_torn_ = false;
  bool backend_sent_fatal_ = false;
  std::deque<Clock::time_point> statement_starts_;
  Clock::time_point started_ = Clock::now();
  // When the session last became idle: the client's last message, or the ReadyForQuery
  // that answered its last outstanding statement, whichever is later (as PostgreSQL's
  // idle_session_timeout counts).
  Clock::time_point idle_since_ = Clock::now();
  uint64_t bytes_from_client_ = 0;
  uint64_t bytes_to_client_ = 0;

  // Set when the client logged in with a grant's credential ("g_<id>"): the grant is in use
  // until Finish ends it, and the session is cut when the grant expires or is revoked.
  std::optional<store::GrantRecord> grant_;
  // Grant sessions only: every message in both directions goes through it.
  std::unique_ptr<ProtocolGate> gate_;
  pgwire::Buffer gate_to_backend_;
  // The client's validated frames of one read, with their bytes: all judged by the gate, then
  // recorded (a statement that ends the session included), then forwarded.
  std::vector<std::pair<pgwire::Frame, pgwire::Bytes>> client_frames_;
  std::vector<ProtocolGate::Action> verdicts_;  // the gate's, per frame of client_frames_
  pgwire::Buffer gate_to_client_;
  std::unique_ptr<grants::GrantService::Watch> grant_watch_;
  std::unique_ptr<audit::Recorder::Session> recording_;
  std::optional<std::string> pending_grant_;  // set by Authenticate: AwaitApproval runs next
  bool auth_ok_sent_ = false;                 // AwaitApproval sent AuthenticationOk already
  std::string approval_note_;                 // JSON: the decision waited for, recorded at start
  std::shared_ptr<asio::steady_timer> approval_timer_;  // wakes Hold; Stop cancels it
  bool approval_woken_ = false;                         // a decision arrived: look now
  bool holding_ = false;  // waiting for approvers: the idle timeout does not apply
  // Results held for approval (rule hold_if_masked_at_least; 0 = never): each answer up to
  // its ReadyForQuery is kept in held_ until released.
  uint32_t hold_threshold_ = 0;
  uint64_t masked_released_ = 0;  // masked values in what was released so far
  std::string held_;
  uint64_t statements_ = 0;  // Query / Sync messages the client sent (for the record)
  Clock::time_point grant_deadline_ = Clock::time_point::max();
  bool stopping_ = false;
  bool tell_client_ = false;
  absl::Status end_reason_;
  asio::steady_timer watchdog_timer_;
  asio::steady_timer backend_relay_done_;
  bool backend_relay_running_ = false;
  // While a cancel of a capped statement is on its way, nothing more goes to the backend:
  // the cancel must not land on a later statement.
  bool cancel_in_flight_ = false;
  asio::steady_timer cancel_done_;
};

}  // namespace tracegate::pgproxy
