#include "pgproxy/session.h"

#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "approvals/result_hold.h"
#include "common/peer_gone.h"
#include "common/socket_deadline.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "pgproxy/pg_error.h"

namespace tracegate::pgproxy {

namespace {

using pgwire::Direction;

// The whole startup phase (TLS, startup packet, SCRAM) must finish within this.
constexpr auto kHandshakeTimeout = std::chrono::seconds(30);
// A client's read buffer starts this small before authentication (a startup packet and
// SCRAM's messages are a few hundred bytes); it grows only as bytes arrive.
constexpr size_t kPreauthBufferCapacity = 4096;

// Counts a client out of ConnectionRuntime::unauthenticated once, when authentication ends
// (either way) or the session is destroyed before that.
class UnauthenticatedSlot {
 public:
  explicit UnauthenticatedSlot(std::atomic<uint32_t>* counter) : counter_(counter) {}
  UnauthenticatedSlot(const UnauthenticatedSlot&) = delete;
  UnauthenticatedSlot& operator=(const UnauthenticatedSlot&) = delete;
  ~UnauthenticatedSlot() { Release(); }
  void Release() {
    if (counter_ != nullptr) {
      counter_->fetch_sub(1);
      counter_ = nullptr;
    }
  }

 private:
  std::atomic<uint32_t>* counter_;
};

// Startup parameters a client may set, in PostgreSQL's spelling. They are applied to the
// pooled backend with SET. Anything else in a startup packet is refused: `options` could
// turn off read-only mode, `replication` would open a replication connection.
constexpr std::array<std::string_view, 6> kRelayedParameters = {
    "application_name", "client_encoding", "DateStyle",
    "TimeZone",         "IntervalStyle",   "extra_float_digits"};
// Parameters PostgreSQL reports with ParameterStatus; others must be tracked by us.
constexpr std::array<std::string_view, 5> kReportedParameters = {
    "application_name", "client_encoding", "DateStyle", "TimeZone", "IntervalStyle"};

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return absl::ascii_tolower(static_cast<unsigned char>(x)) ==
                  absl::ascii_tolower(static_cast<unsigned char>(y));
         });
}

// client_encoding values a client may ask for at startup. Sessions run in UTF8, pinned in
// the backend's startup packet: the statement gate reads statements as UTF-8 (as libpg_query
// does) and must see the same tokens as the server, and client-only encodings (SJIS, BIG5,
// GBK, …) can hide ' and \ inside multi-byte characters. SQL_ASCII (what libpq sends for
// "auto" in the C locale) means "no conversion", which on a UTF8 session reads the same
// bytes: it is accepted and the session stays UTF8. Anything else is refused.
bool AcceptedClientEncoding(std::string_view name) {
  return IsUtf8EncodingName(name) || EqualsIgnoreCase(name, "SQL_ASCII");
}

absl::Status ProtocolViolation(std::string_view message) {
  return PgError(absl::StatusCode::kInvalidArgument, sqlstate::kProtocolViolation,
                 Cat("tracegate: ", message));
}

// E'...' literal: correct whatever standard_conforming_strings says.
std::string QuoteLiteral(std::string_view value) {
  std::string out = "E'";
  for (char c : value) {
    if (c == '\'' || c == '\\') {
      out.push_back(c);
    }
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char digest[32];
  unsigned int len = sizeof digest;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest, &len);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

// A refused credential, kept as evidence (audit::Recorder::AuthFailure, aggregated there):
// the user name, the grant id and the peer, never the secret. The refusal stands whatever
// happens to the record.
struct LoginFailure {
  audit::Recorder* recorder;
  std::string_view connection, peer, session, user;
  void operator()(std::string_view reason, std::string_view grant_id) const {
    if (recorder == nullptr) {
      return;
    }
    recorder->AuthFailure({.path = audit::AuthPath::kPostgres,
                           .reason = reason,
                           .connection = connection,
                           .client_address = peer,
                           .grant_id = grant_id,
                           .user = user,
                           .session = session});
  }
};

// The decision a held grant waited for, as a reason of the audit vocabulary.
std::string_view NotApprovedReasonCode(store::GrantState state) {
  switch (state) {
    case store::GrantState::kDenied:
      return "grant_denied";
    case store::GrantState::kExpired:
      return "grant_expired";
    case store::GrantState::kRevoked:
      return "grant_revoked";
    default:
      return "grant_unusable";
  }
}

}  // namespace

Session::Session(tcp::socket socket, const ConnectionRuntime& runtime, BackendPool& pool,
                 CancelRegistry& cancels, std::string id)
    : id_(std::move(id)),
      runtime_(runtime),
      pool_(pool),
      cancels_(cancels),
      client_(std::move(socket)),
      client_buffer_(kPreauthBufferCapacity),
      watchdog_timer_(client_.socket().get_executor()),
      backend_relay_done_(client_.socket().get_executor()),
      cancel_done_(client_.socket().get_executor()) {
  error_code ec;
  tcp::endpoint remote = client_.socket().remote_endpoint(ec);
  peer_ = ec ? "unknown" : Cat(remote.address().to_string(), ":", remote.port());
  client_.socket().set_option(tcp::no_delay(true), ec);
}

awaitable<void> Session::Run(std::function<void(Session*)> on_done) {
  auto self = shared_from_this();
  const ConnectionMetrics& metrics = runtime_.metrics;
  metrics.sessions_total->Increment();
  metrics.sessions_active->Increment();

  absl::Status status;
  {
    UnauthenticatedSlot unauthenticated(runtime_.unauthenticated);
    SocketDeadline handshake_deadline(client_.socket().get_executor(), client_.socket(),
                                      kHandshakeTimeout);
    absl::StatusOr<std::optional<pgwire::StartupMessage>> startup = co_await Negotiate();
    if (!startup.ok()) {
      status = startup.status();
    } else if (!startup->has_value()) {
      status = absl::CancelledError("client left during startup");
    } else {
      status = co_await CheckStartup(**startup);
      if (status.ok() && runtime_.recorder != nullptr) {
        // Checked before a grant's use is taken: a session that cannot be recorded is
        // refused without spending the credential.
        if (absl::Status health = runtime_.recorder->health(); !health.ok()) {
          spdlog::error("session={} peer={}: refused: {}", id_, peer_, MessageOf(health));
          status = PgError(absl::StatusCode::kUnavailable, sqlstate::kIoError,
                           "tracegate: sessions cannot be recorded right now (audit log "
                           "unavailable), so none are admitted");
        }
      }
      if (status.ok()) {
        status = co_await Authenticate();
      }
    }
    if (handshake_deadline.expired()) {
      status = absl::DeadlineExceededError("startup did not complete in time");
    }
  }
  // Authenticated (or ending): the relay's buffer sizes apply from here.
  client_buffer_.set_initial_capacity(FrameBuffer::kDefaultCapacity);
  if (status.ok() && pending_grant_.has_value()) {
    status = co_await AwaitApproval(*pending_grant_);
  }
  if (status.ok()) {
    status = co_await AttachBackend();
  }
  if (status.ok()) {
    status = BeginRecording();
  }

  if (status.ok()) {
    metrics.sessions_authenticated->Increment();
    if (grant_) {
      spdlog::info("session={} connection={} peer={} grant={} trace={} subject={} tls={}: started",
                   id_, runtime_.config->name, peer_, grant_->id, LogEscape(grant_->trace_id, 64),
                   LogEscape(grant_->subject), client_.tls());
    } else {
      spdlog::info("session={} connection={} peer={} user={} database={} tls={}: started", id_,
                   runtime_.config->name, peer_, LogEscape(user_, 64), LogEscape(database_, 64),
                   client_.tls());
    }
    backend_relay_running_ = true;
    backend_relay_done_.expires_at(Clock::time_point::max());
    asio::co_spawn(client_.socket().get_executor(), RelayBackendToClient(), asio::detached);
    asio::co_spawn(client_.socket().get_executor(), Watchdog(), asio::detached);
    co_await RelayClientToBackend();
    if (backend_relay_running_) {
      error_code ec;
      co_await backend_relay_done_.async_wait(Redirect(ec));
    }
  } else {
    const bool client_left = absl::IsCancelled(status);
    Stop(status, !client_left && !absl::IsDeadlineExceeded(status));
    if (SqlStateOf(status) == sqlstate::kInvalidPassword) {
      metrics.auth_failures_password->Increment();
    } else if (SqlStateOf(status) == sqlstate::kInvalidAuthorization) {
      metrics.auth_failures_authorization->Increment();
    }
  }
  co_await Finish();
  metrics.sessions_active->Decrement();
  on_done(this);
}

void Session::Terminate(absl::Status reason) { Stop(std::move(reason), true); }

void Session::Stop(absl::Status reason, bool tell_client) {
  if (stopping_) {
    return;
  }
  stopping_ = true;
  end_reason_ = std::move(reason);
  tell_client_ = tell_client;
  error_code ignored;  // cancelling idle sockets is not an error
  client_.socket().cancel(ignored);
  if (backend_) {
    backend_->stream().socket().cancel(ignored);
  }
  watchdog_timer_.cancel();
  cancel_done_.cancel();
  if (approval_timer_) {
    approval_timer_->cancel();
  }
}

namespace {

// Resumes the calling coroutine, on its own executor, once the log has synced record `seq`.
awaitable<absl::Status> AwaitDurable(audit::LogWriter& log, uint64_t seq) {
  auto executor = co_await asio::this_coro::executor;
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(absl::Status)>(
      [&log, seq, executor](auto handler) {
        log.WhenDurable(seq, [executor, handler = std::move(handler)](absl::Status done) mutable {
          asio::post(executor, [handler = std::move(handler), done = std::move(done)]() mutable {
            std::move(handler)(std::move(done));
          });
        });
      },
      asio::use_awaitable);
}

absl::Status RecordingFailed(std::string_view session, const absl::Status& why) {
  if (absl::IsResourceExhausted(why)) {
    // audit.max_session_bytes: fail closed, nothing goes on unrecorded.
    spdlog::warn("session={}: {}; ending the session", session, MessageOf(why));
    return PgError(absl::StatusCode::kResourceExhausted, sqlstate::kProgramLimitExceeded,
                   Cat("tracegate: ", MessageOf(why), "; the session is ended"));
  }
  spdlog::error("session={}: recording failed, ending the session: {}", session, MessageOf(why));
  return PgError(absl::StatusCode::kUnavailable, sqlstate::kIoError,
                 "tracegate: the session could not be recorded (audit log unavailable); "
                 "nothing more is released");
}

std::string_view AsText(pgwire::Bytes bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

absl::Status Session::BeginRecording() {
  if (runtime_.recorder == nullptr) {
    return absl::OkStatus();
  }
  audit::SessionInfo info;
  info.id = id_;
  info.connection = runtime_.config->name;
  info.user = user_;
  info.database = database_;
  info.client_address = peer_;
  info.tls_version = client_.TlsVersion();
  info.tls_cipher = client_.TlsCipher();
  info.started_at =
      std::chrono::system_clock::now() -
      std::chrono::duration_cast<std::chrono::system_clock::duration>(Clock::now() - started_);
  if (grant_) {
    info.grant_id = grant_->id;
    info.trace_id = grant_->trace_id;
    info.issuer = grant_->issuer;
    info.subject = grant_->subject;
    info.client_id = grant_->client_id;
    info.groups = grant_->groups;
    info.rule = grant_->rule;
    info.masking_profile = grant_->masking_profile;
  }
  absl::StatusOr<std::unique_ptr<audit::Recorder::Session>> began = runtime_.recorder->Begin(info);
  if (!began.ok()) {
    return RecordingFailed(id_, began.status());
  }
  recording_ = *std::move(began);
  if (grant_) {
    absl::StatusOr<uint64_t> event =
        recording_->GrantEvent(pending_grant_ ? "approved" : "active", "in_use",
                               Cat("session ", id_, " from ", peer_), "redeemed by this session");
    if (!event.ok()) {
      return RecordingFailed(id_, event.status());
    }
  }
  if (!approval_note_.empty()) {
    if (absl::StatusOr<uint64_t> note = recording_->Approval(approval_note_); !note.ok()) {
      return RecordingFailed(id_, note.status());
    }
  }
  return absl::OkStatus();
}

absl::Status Session::RecordClientFrames(pgwire::Bytes frames) {
  if (!recording_) {
    return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> seq = recording_->ClientFrames(AsText(frames));
  return seq.ok() ? absl::OkStatus() : RecordingFailed(id_, seq.status());
}

absl::Status Session::RecordClientRun() {
  if (!recording_ || verdicts_.empty()) {
    return absl::OkStatus();
  }
  // Refused statements are evidence and are kept verbatim up to this size; a longer one is
  // summarised with its first bytes (audit::kUnforwardedHead).
  constexpr size_t kRefusedVerbatimMax = 64 * 1024;
  const uint8_t* run_begin = nullptr;
  const uint8_t* run_end = nullptr;
  std::vector<audit::UnforwardedFrames> summary;
  auto flush_run = [&]() -> absl::Status {
    if (run_begin == nullptr) {
      return absl::OkStatus();
    }
    absl::Status recorded =
        RecordClientFrames(pgwire::Bytes(run_begin, static_cast<size_t>(run_end - run_begin)));
    run_begin = run_end = nullptr;
    return recorded;
  };
  auto flush_summary = [&]() -> absl::Status {
    if (summary.empty()) {
      return absl::OkStatus();
    }
    uint64_t frames = 0;
    for (const audit::UnforwardedFrames& f : summary) {
      frames += f.count;
    }
    runtime_.metrics.unforwarded_frames->Increment(static_cast<double>(frames));
    absl::StatusOr<uint64_t> seq = recording_->Unforwarded(summary);
    summary.clear();
    return seq.ok() ? absl::OkStatus() : RecordingFailed(id_, seq.status());
  };
  for (size_t i = 0; i < verdicts_.size(); ++i) {
    const auto& [frame, raw] = client_frames_[i];
    const bool dropped = verdicts_[i] == ProtocolGate::Action::kDropped;
    const bool refused_long =
        verdicts_[i] == ProtocolGate::Action::kSubstituted && raw.size() > kRefusedVerbatimMax;
    if (!dropped && !refused_long) {
      TG_RETURN_IF_ERROR(flush_summary());
      if (run_begin == nullptr) {
        run_begin = raw.data();
      }
      run_end = raw.data() + raw.size();
      continue;
    }
    TG_RETURN_IF_ERROR(flush_run());
    const std::string verdict = dropped ? "dropped" : "refused";
    if (!summary.empty() && summary.back().type == frame.type &&
        summary.back().verdict == verdict && !refused_long) {
      ++summary.back().count;
      summary.back().bytes += raw.size();
      continue;
    }
    audit::UnforwardedFrames entry{
        .type = frame.type, .verdict = verdict, .count = 1, .bytes = raw.size()};
    if (refused_long) {
      entry.head = std::string(
          AsText(frame.body.first(std::min(frame.body.size(), audit::kUnforwardedHead))));
    }
    summary.push_back(std::move(entry));
  }
  TG_RETURN_IF_ERROR(flush_run());
  return flush_summary();
}

awaitable<absl::Status> Session::RecordServerFrames(pgwire::Bytes frames) {
  if (!recording_) {
    co_return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> seq = recording_->ServerFrames(AsText(frames));
  if (!seq.ok()) {
    co_return RecordingFailed(id_, seq.status());
  }
  if (runtime_.recorder->durability() == audit::Durability::kStrict) {
    absl::Status durable = co_await AwaitDurable(runtime_.recorder->log(), *seq);
    if (!durable.ok()) {
      co_return RecordingFailed(id_, durable);
    }
  }
  co_return absl::OkStatus();
}

void Session::EndRecording() {
  if (!recording_) {
    return;
  }
  audit::SessionOutcome outcome;
  if (end_reason_.ok() || absl::IsCancelled(end_reason_)) {
    outcome.outcome = "completed";
    outcome.reason =
        end_reason_.ok() ? "client sent Terminate" : std::string(MessageOf(end_reason_));
  } else {
    outcome.outcome =
        SqlStateOf(end_reason_) == sqlstate::kInsufficientPrivilege ? "violation" : "error";
    outcome.reason = Cat("[", SqlStateOf(end_reason_), "] ", MessageOf(end_reason_));
  }
  outcome.statements = statements_;
  outcome.bytes_to_client = bytes_to_client_;
  outcome.bytes_from_client = bytes_from_client_;
  if (gate_) {
    const GateStats& stats = gate_->stats();
    outcome.blocked = stats.blocked;
    outcome.rows = stats.rows;
    outcome.masking_errors = stats.masking_errors;
    if (const masking::Counts* masked = gate_->masked(); masked != nullptr) {
      outcome.masked.insert(masked->by_entity.begin(), masked->by_entity.end());
    }
  }
  if (grant_) {
    absl::StatusOr<store::GrantRecord> now = runtime_.grants->Get(grant_->id);
    const std::string state =
        now.ok() ? std::string(store::GrantStateName(now->state)) : std::string("unknown");
    (void)recording_->GrantEvent("in_use", state, "tracegate",
                                 Cat("session ", id_, " ended (", outcome.outcome, ")"));
  }
  if (absl::Status ended = recording_->End(outcome); !ended.ok()) {
    spdlog::error("session={}: recording the session's end failed: {}", id_, MessageOf(ended));
  }
  recording_.reset();
}

awaitable<absl::StatusOr<std::optional<pgwire::Frame>>> Session::ReadClientFrame(bool startup) {
  client_buffer_.DropDecoded();
  for (;;) {
    // Before authentication only SCRAM's small messages are read (auth_limits), and only
    // password-type ones: anything else is refused at its first byte, before it is buffered.
    if (!startup && !client_buffer_.Undecoded().empty() &&
        client_buffer_.Undecoded()[0] != static_cast<uint8_t>(pgwire::frontend::kPassword)) {
      co_return ProtocolViolation(Cat("expected a SASL response, got message type ",
                                      LogEscape(AsText(client_buffer_.Undecoded().first(1)))));
    }
    pgwire::FrameResult result =
        startup ? pgwire::DecodeStartupFrame(client_buffer_.Undecoded(), runtime_.auth_limits)
                : pgwire::DecodeFrame(client_buffer_.Undecoded(), Direction::kFrontend,
                                      runtime_.auth_limits);
    if (result.status == pgwire::DecodeStatus::kFrame) {
      client_buffer_.MarkDecoded(result.frame.wire_size);
      co_return std::optional<pgwire::Frame>(result.frame);
    }
    if (result.status == pgwire::DecodeStatus::kError) {
      co_return ProtocolViolation(MessageOf(result.error));
    }
    error_code ec;
    size_t n = co_await client_.ReadSome(client_buffer_.PrepareRead(result.bytes_needed), ec);
    if (ec) {
      co_return std::optional<pgwire::Frame>();
    }
    client_buffer_.CommitRead(n);
    bytes_from_client_ += n;
  }
}

awaitable<bool> Session::WriteClient(const pgwire::Buffer& bytes) {
  error_code ec;
  co_await client_.WriteAll(asio::buffer(bytes), ec);
  if (ec) {
    client_write_torn_ = true;
    co_return false;
  }
  bytes_to_client_ += bytes.size();
  co_return true;
}

awaitable<absl::StatusOr<std::optional<pgwire::StartupMessage>>> Session::Negotiate() {
  bool ssl_done = false;
  bool gss_done = false;
  for (;;) {
    absl::StatusOr<std::optional<pgwire::Frame>> frame = co_await ReadClientFrame(true);
    if (!frame.ok()) {
      co_return frame.status();
    }
    if (!frame->has_value()) {
      co_return std::optional<pgwire::StartupMessage>();
    }
    absl::StatusOr<pgwire::StartupPacket> packet = pgwire::ParseStartupPacket((*frame)->body);
    if (!packet.ok()) {
      co_return ProtocolViolation(MessageOf(packet.status()));
    }
    switch (packet->kind) {
      case pgwire::StartupKind::kSslRequest:
      case pgwire::StartupKind::kGssEncRequest: {
        const bool ssl = packet->kind == pgwire::StartupKind::kSslRequest;
        // PostgreSQL allows GSSENCRequest, then SSLRequest (after an 'N'), never a repeat
        // and never GSS after SSL.
        const bool repeated = ssl ? ssl_done : (gss_done || ssl_done);
        if (repeated) {
          co_return ProtocolViolation(ssl ? "duplicate SSLRequest" : "duplicate GSSENCRequest");
        }
        // Anything behind the request was sent before encryption was agreed; a man in the
        // middle may have put it there (CVE-2021-23214). Refuse rather than interpret it.
        if (!client_buffer_.Undecoded().empty()) {
          co_return ProtocolViolation("received unencrypted data after SSL/GSS request");
        }
        const bool accept_tls = ssl && runtime_.client_tls != nullptr;
        pgwire::Buffer answer(1, accept_tls ? 'S' : 'N');
        if (!co_await WriteClient(answer)) {
          co_return std::optional<pgwire::StartupMessage>();
        }
        if (ssl) {
          ssl_done = true;
        } else {
          gss_done = true;
        }
        if (accept_tls) {
          error_code ec =
              co_await client_.StartTls(*runtime_.client_tls, asio::ssl::stream_base::server, "");
          if (ec) {
            spdlog::info("session={} peer={}: TLS handshake failed: {}", id_, peer_, ec.message());
            co_return std::optional<pgwire::StartupMessage>();
          }
        }
        break;
      }
      case pgwire::StartupKind::kCancel:
        co_await ForwardCancel(packet->cancel);
        co_return std::optional<pgwire::StartupMessage>();
      case pgwire::StartupKind::kStartup:
        if (!client_buffer_.Undecoded().empty()) {
          // The client must wait for our authentication request before saying more.
          co_return ProtocolViolation("unexpected data after the startup packet");
        }
        co_return std::optional<pgwire::StartupMessage>(std::move(packet->startup));
    }
  }
}

awaitable<absl::Status> Session::CheckStartup(const pgwire::StartupMessage& startup) {
  const std::string* user = startup.Find("user");
  if (user == nullptr || user->empty()) {
    co_return PgError(absl::StatusCode::kUnauthenticated, sqlstate::kInvalidAuthorization,
                      "tracegate: no user name in the startup packet");
  }
  user_ = *user;
  const std::string* database = startup.Find("database");
  if (database == nullptr || database->empty()) {
    co_return PgError(absl::StatusCode::kUnauthenticated, sqlstate::kInvalidAuthorization,
                      "tracegate: no database name in the startup packet");
  }
  database_ = *database;
  if (runtime_.config->require_tls && !client_.tls()) {
    co_return PgError(absl::StatusCode::kUnauthenticated, sqlstate::kInvalidAuthorization,
                      Cat("tracegate: connection \"", runtime_.config->name,
                          "\" requires TLS (use sslmode=require or stronger)"));
  }
  if (database_ != runtime_.config->name && database_ != runtime_.config->backend.database) {
    co_return PgError(
        absl::StatusCode::kNotFound, sqlstate::kInvalidCatalogName,
        Cat("tracegate: database \"", database_, "\" does not exist on this listener (use \"",
            runtime_.config->backend.database, "\")"));
  }
  for (const auto& [name, value] : startup.parameters) {
    if (name == "user" || name == "database") {
      continue;
    }
    if (name == "options" && absl::StripAsciiWhitespace(value).empty()) {
      continue;
    }
    auto relayed = std::find_if(
        kRelayedParameters.begin(), kRelayedParameters.end(),
        [&name = name](std::string_view known) { return EqualsIgnoreCase(known, name); });
    if (relayed == kRelayedParameters.end()) {
      co_return PgError(absl::StatusCode::kInvalidArgument, sqlstate::kFeatureNotSupported,
                        Cat("tracegate: unsupported startup parameter: ", name));
    }
    if (*relayed == "client_encoding") {
      if (!AcceptedClientEncoding(value)) {
        co_return PgError(absl::StatusCode::kInvalidArgument, sqlstate::kFeatureNotSupported,
                          Cat("tracegate: client_encoding ", value,
                              " is not supported (statements are checked as UTF-8); use UTF8"));
      }
      continue;  // the backend session is UTF8 already (its startup packet says so)
    }
    client_parameters_.emplace_back(*relayed, value);
  }
  co_return absl::OkStatus();
}

awaitable<absl::Status> Session::Authenticate() {
  auto known = runtime_.users.find(user_);
  pgwire::ScramVerifier verifier;
  std::optional<std::string> grant_id;  // the grant whose credential is being presented
  const bool grant_user = runtime_.grants != nullptr && user_.starts_with("g_");
  absl::StatusOr<grants::PostgresLogin> login = absl::NotFoundError("not a grant user");
  if (grant_user) {
    login = runtime_.grants->LookupPostgresUser(user_);
    if (!login.ok() && !absl::IsNotFound(login.status())) {
      spdlog::error("session={} peer={}: state store: {}", id_, peer_, MessageOf(login.status()));
      co_return PgError(absl::StatusCode::kUnavailable, sqlstate::kCannotConnectNow,
                        "tracegate: grants cannot be checked right now (state store unavailable)");
    }
  }
  if (login.ok()) {
    verifier = login->verifier;
    grant_id = login->grant_id;
  } else if (known != runtime_.users.end() && !grant_user) {
    verifier = known->second;
  } else {
    // Run the same exchange with a verifier nobody can satisfy: the reply looks the same
    // as for a real user (stable salt, same iteration count), so user names cannot be
    // probed. The final check fails like a wrong password.
    verifier.iterations = grant_user ? grants::kGrantScramIterations : 4096;
    verifier.salt = HmacSha256(runtime_.unknown_user_salt_key, user_).substr(0, 16);
    verifier.stored_key = pgwire::SystemRandom()(32);
    verifier.server_key = pgwire::SystemRandom()(32);
  }
  const absl::Status wrong_password =
      PgError(absl::StatusCode::kPermissionDenied, sqlstate::kInvalidPassword,
              Cat("password authentication failed for user \"", user_, "\""));
  const LoginFailure failed{runtime_.recorder, runtime_.config->name, peer_, id_, user_};
  // A failed proof: a wrong secret for a grant or a static user, or a user nobody knows
  // (a g_ name is a grant id, not a secret: it is kept).
  auto proof_failed = [&] {
    if (grant_id.has_value()) {
      failed("wrong_secret", *grant_id);
    } else if (grant_user) {
      failed("unknown_user", std::string_view(user_).substr(2));
    } else {
      failed(known != runtime_.users.end() ? "wrong_secret" : "unknown_user", "");
    }
  };

  // Over TLS, SCRAM-SHA-256-PLUS binds the exchange to our certificate (RFC 5929
  // tls-server-end-point), so libpq's channel_binding=require works and a client can tell
  // that nobody terminated TLS in between. It is offered first, as PostgreSQL does.
  std::string end_point;
  if (client_.tls()) {
    absl::StatusOr<std::string> hash = client_.TlsServerEndPoint(/*peer=*/false);
    if (hash.ok()) {
      end_point = *std::move(hash);
    } else {
      spdlog::debug("session={}: SCRAM-SHA-256-PLUS not offered: {}", id_,
                    MessageOf(hash.status()));
    }
  }
  std::vector<std::string> mechanisms;
  if (!end_point.empty()) {
    mechanisms.emplace_back("SCRAM-SHA-256-PLUS");
  }
  mechanisms.emplace_back("SCRAM-SHA-256");
  pgwire::Buffer out;
  pgwire::EncodeAuthentication({.code = pgwire::AuthCode::kSasl, .mechanisms = mechanisms}, out);
  if (!co_await WriteClient(out)) {
    co_return absl::CancelledError("client left");
  }

  pgwire::ScramServer scram(std::move(verifier), pgwire::SystemRandom());
  for (int step = 0; step < 2; ++step) {
    absl::StatusOr<std::optional<pgwire::Frame>> frame = co_await ReadClientFrame(false);
    if (!frame.ok()) {
      co_return frame.status();
    }
    if (!frame->has_value()) {
      // psql does this when it has to prompt for the password: not an error.
      co_return absl::CancelledError("client left during authentication");
    }
    const pgwire::Frame& msg = **frame;
    if (msg.type != pgwire::frontend::kPassword) {
      co_return ProtocolViolation(
          Cat("expected a SASL response, got message type '", std::string(1, msg.type), "'"));
    }
    absl::StatusOr<std::string> reply;
    if (step == 0) {
      absl::StatusOr<pgwire::SaslInitialResponse> initial =
          pgwire::ParseSaslInitialResponse(msg.body);
      if (!initial.ok()) {
        co_return ProtocolViolation(MessageOf(initial.status()));
      }
      const bool plus = initial->mechanism == "SCRAM-SHA-256-PLUS" && !end_point.empty();
      if (initial->mechanism != "SCRAM-SHA-256" && !plus) {
        co_return ProtocolViolation(
            Cat("client selected an unsupported SASL mechanism: ", initial->mechanism));
      }
      scram.SetChannelBinding(end_point, plus);
      if (!initial->data.has_value()) {
        co_return ProtocolViolation("SASLInitialResponse without data");
      }
      reply = scram.HandleClientFirst(*initial->data);
    } else {
      reply = scram.HandleClientFinal(pgwire::ParseSaslResponse(msg.body));
    }
    if (!reply.ok()) {
      if (absl::IsPermissionDenied(reply.status())) {
        spdlog::info("session={} peer={} user={}: authentication failed", id_, peer_,
                     LogEscape(user_, 64));
        proof_failed();
        co_return wrong_password;
      }
      co_return ProtocolViolation(MessageOf(reply.status()));
    }
    if (step == 1 && !grant_id.has_value() && (grant_user || known == runtime_.users.end())) {
      proof_failed();
      co_return wrong_password;  // unreachable in practice: the proof cannot match
    }
    if (step == 1 && grant_id.has_value()) {
      // The caller proved the secret; only now may it learn why the grant cannot be used.
      if (login->state == store::GrantState::kPending && runtime_.approvals != nullptr) {
        pending_grant_ = *grant_id;  // held after the handshake, outside its deadline
      } else if (login->state == store::GrantState::kDenied && runtime_.approvals != nullptr) {
        failed("grant_denied", *grant_id);
        co_return PgError(absl::StatusCode::kPermissionDenied, sqlstate::kInvalidAuthorization,
                          Cat("tracegate: ", NotApprovedReason(*grant_id, login->state)));
      } else {
        TG_CO_RETURN_IF_ERROR(RedeemGrant(*grant_id));
      }
    }
    out.clear();
    pgwire::EncodeAuthentication(
        {.code = step == 0 ? pgwire::AuthCode::kSaslContinue : pgwire::AuthCode::kSaslFinal,
         .data = *reply},
        out);
    if (!co_await WriteClient(out)) {
      co_return absl::CancelledError("client left");
    }
  }
  co_return absl::OkStatus();
}

awaitable<absl::Status> Session::Hold(const std::function<bool()>& settled) {
  // How often a held session checks that its client is still there, and (every
  // kPollTicks) asks `settled` with a look at the store.
  constexpr auto kTick = std::chrono::seconds(1);
  constexpr int kPollTicks = 5;
  holding_ = true;
  for (int tick = 1; !stopping_; ++tick) {
    approval_timer_->expires_after(kTick);
    error_code ec;
    co_await approval_timer_->async_wait(Redirect(ec));
    if (stopping_) {
      break;
    }
    if (approval_woken_ || tick % kPollTicks == 0) {
      approval_woken_ = false;
      if (settled()) {
        holding_ = false;
        co_return absl::OkStatus();
      }
    }
    if (PeerGone(client_.socket())) {
      holding_ = false;
      co_return absl::CancelledError("client left while waiting for approval");
    }
  }
  holding_ = false;
  co_return end_reason_;
}

awaitable<absl::Status> Session::AwaitApproval(const std::string& grant_id) {
  auto executor = co_await asio::this_coro::executor;
  approval_timer_ = std::make_shared<asio::steady_timer>(executor);
  // Written only on this session's thread (the callbacks post here).
  auto decided = std::make_shared<std::optional<store::GrantState>>();
  auto wake = [self = weak_from_this(), decided, executor](store::GrantState state) {
    asio::post(executor, [self, decided, state] {
      if (!decided->has_value()) {
        *decided = state;
      }
      if (std::shared_ptr<Session> session = self.lock(); session && session->approval_timer_) {
        session->approval_woken_ = true;
        session->approval_timer_->cancel();
      }
    });
  };
  // Watch first, then read: a decision in between cannot go unnoticed.
  std::unique_ptr<grants::GrantService::Watch> watch = runtime_.grants->WatchGrant(grant_id, wake);
  absl::StatusOr<store::GrantRecord> grant = runtime_.grants->Get(grant_id);
  if (!grant.ok()) {
    co_return PgError(absl::StatusCode::kUnavailable, sqlstate::kCannotConnectNow,
                      "tracegate: grants cannot be checked right now (state store unavailable)");
  }
  if (grant->state == store::GrantState::kPending) {
    std::string approvers;
    uint32_t required = 1;
    if (absl::StatusOr<approvals::ApprovalView> view = runtime_.approvals->Get(grant_id);
        view.ok()) {
      approvers = absl::StrJoin(view->request.approver_groups, ", ");
      required = view->request.required;
    }
    pgwire::Buffer out;
    pgwire::EncodeAuthentication({.code = pgwire::AuthCode::kOk}, out);
    pgwire::EncodeNoticeResponse(
        {.fields = {{'S', "NOTICE"},
                    {'V', "NOTICE"},
                    {'C', "01000"},
                    {'M', Cat("waiting for approval of grant ", grant_id, " by ", approvers)},
                    {'D', Cat(required, " approval(s) needed; the request expires at ",
                              audit::FormatTime(grant->expires_at))}}},
        out);
    if (!co_await WriteClient(out)) {
      co_return absl::CancelledError("client left");
    }
    auth_ok_sent_ = true;
    spdlog::info("session={} peer={} grant={}: held until approvers decide", id_, peer_, grant_id);
    TG_CO_RETURN_IF_ERROR(co_await Hold([&] {
      if (!decided->has_value()) {
        // Another gateway process sharing the store may have decided.
        if (absl::StatusOr<store::GrantRecord> now = runtime_.grants->Get(grant_id);
            now.ok() && now->state != store::GrantState::kPending) {
          *decided = now->state;
        }
      }
      return decided->has_value();
    }));
  } else {
    *decided = grant->state;
  }
  watch.reset();
  approval_timer_.reset();
  absl::StatusOr<approvals::ApprovalView> view = runtime_.approvals->Get(grant_id);
  if (view.ok()) {
    approval_note_ =
        approvals::ViewJson(*view).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  if (**decided != store::GrantState::kApproved) {
    const std::string reason = NotApprovedReason(grant_id, **decided);
    spdlog::info("session={} peer={} grant={}: refused: {}", id_, peer_, grant_id, reason);
    LoginFailure{runtime_.recorder, runtime_.config->name, peer_, id_, user_}(
        NotApprovedReasonCode(**decided), grant_id);
    co_return PgError(absl::StatusCode::kPermissionDenied, sqlstate::kInvalidAuthorization,
                      Cat("tracegate: ", reason));
  }
  co_return RedeemGrant(grant_id);
}

awaitable<absl::Status> Session::AwaitResultApproval(uint64_t found) {
  const std::string detail = approvals::HeldDetail(found, hold_threshold_);
  absl::StatusOr<store::ApprovalRequest> opened =
      runtime_.approvals->OpenForResponse(*grant_, id_, detail);
  if (!opened.ok()) {
    spdlog::error("session={} grant={}: cannot open an approval for a held result: {}", id_,
                  grant_->id, MessageOf(opened.status()));
    co_return PgError(absl::StatusCode::kUnavailable, sqlstate::kInsufficientPrivilege,
                      "tracegate: the result needs approval, which cannot be asked for right "
                      "now; it was discarded");
  }
  const std::string request_id = opened->id;
  auto executor = co_await asio::this_coro::executor;
  approval_timer_ = std::make_shared<asio::steady_timer>(executor);
  auto settled = std::make_shared<std::optional<store::ApprovalRequest>>();
  std::unique_ptr<approvals::ApprovalService::Watch> watch = runtime_.approvals->WaitFor(
      request_id, [self = weak_from_this(), settled, executor](store::ApprovalRequest request) {
        asio::post(executor, [self, settled, request = std::move(request)] {
          *settled = request;
          if (std::shared_ptr<Session> session = self.lock(); session && session->approval_timer_) {
            session->approval_woken_ = true;
            session->approval_timer_->cancel();
          }
        });
      });
  // The client hears why its answer is late (a notice may come at any time).
  pgwire::Buffer notice;
  pgwire::EncodeNoticeResponse(
      {.fields = {{'S', "NOTICE"},
                  {'V', "NOTICE"},
                  {'C', "01000"},
                  {'M', Cat("the result waits for approval ", request_id, " by ",
                            absl::StrJoin(opened->approver_groups, ", "))},
                  {'D', Cat(detail, "; the request expires at ",
                            audit::FormatTime(opened->expires_at))}}},
      notice);
  if (absl::Status recorded = co_await RecordServerFrames(
          pgwire::Bytes(reinterpret_cast<const uint8_t*>(notice.data()), notice.size()));
      !recorded.ok()) {
    runtime_.approvals->Cancel(request_id, "the session could not be recorded");
    co_return recorded;
  }
  if (!co_await WriteClient(notice)) {
    runtime_.approvals->Cancel(request_id, "the client left");
    co_return absl::CancelledError("client left while a result waited for approval");
  }
  absl::Status held = co_await Hold([&] {
    if (!settled->has_value()) {
      if (absl::StatusOr<approvals::ApprovalView> now = runtime_.approvals->Get(request_id);
          now.ok() && now->request.state != store::ApprovalState::kPending) {
        *settled = now->request;
      }
    }
    return settled->has_value();
  });
  watch.reset();
  approval_timer_.reset();
  if (!held.ok()) {
    runtime_.approvals->Cancel(request_id,
                               absl::IsCancelled(held) ? "the client left" : "the session ended");
    co_return held;
  }
  if ((*settled)->state == store::ApprovalState::kApproved) {
    spdlog::info("session={} grant={}: held result released ({} approved)", id_, grant_->id,
                 request_id);
    co_return absl::OkStatus();
  }
  const std::string why = approvals::WithheldWhy(*runtime_.approvals, **settled);
  spdlog::info("session={} grant={}: held result discarded: {}", id_, grant_->id,
               LogEscape(why, 1024));
  co_return PgError(absl::StatusCode::kPermissionDenied, sqlstate::kInsufficientPrivilege,
                    Cat("tracegate: the result was withheld (", detail, "): ", why));
}

std::string Session::NotApprovedReason(const std::string& grant_id, store::GrantState state) {
  if (state == store::GrantState::kDenied) {
    absl::StatusOr<approvals::ApprovalView> view = runtime_.approvals->Get(grant_id);
    if (view.ok()) {
      for (const store::ApprovalDecision& d : view->decisions) {
        if (!d.approve) {
          return Cat("grant ", grant_id, " was denied by ", d.approver,
                     d.comment.empty() ? "" : Cat(": ", d.comment));
        }
      }
    }
    return Cat("grant ", grant_id, " was denied");
  }
  if (state == store::GrantState::kExpired) {
    return Cat("grant ", grant_id, " expired before approvers decided");
  }
  return Cat("grant ", grant_id, " is ", store::GrantStateName(state));
}

absl::Status Session::RedeemGrant(const std::string& grant_id) {
  // Watch before redeeming: a revocation between the two would otherwise go unnoticed.
  // Revocation (and expiry noticed by the sweeper) arrives from another thread.
  grant_watch_ = runtime_.grants->WatchGrant(grant_id, [weak = weak_from_this(),
                                                        executor = client_.socket().get_executor(),
                                                        id = grant_id](store::GrantState state) {
    asio::post(executor, [weak, id, state] {
      if (std::shared_ptr<Session> self = weak.lock()) {
        self->Stop(
            PgError(absl::StatusCode::kPermissionDenied, sqlstate::kAdminShutdown,
                    Cat("tracegate: terminating the session: grant ", id,
                        state == store::GrantState::kRevoked ? " was revoked" : " has expired")),
            true);
      }
    });
  });
  absl::StatusOr<store::GrantRecord> grant = runtime_.grants->RedeemPostgres(
      grant_id, runtime_.config->name, Cat("session ", id_, " from ", peer_));
  if (!grant.ok()) {
    grant_watch_.reset();
    if (absl::IsUnavailable(grant.status())) {
      spdlog::error("session={} peer={} grant={}: state store: {}", id_, peer_, grant_id,
                    MessageOf(grant.status()));
      return PgError(absl::StatusCode::kUnavailable, sqlstate::kCannotConnectNow,
                     "tracegate: grants cannot be checked right now (state store unavailable)");
    }
    spdlog::info("session={} peer={} grant={}: refused: {}", id_, peer_, grant_id,
                 MessageOf(grant.status()));
    const std::string reason = grants::RefusalReasonOf(grant.status());
    LoginFailure{runtime_.recorder, runtime_.config->name, peer_, id_, user_}(
        reason.empty() ? "grant_unusable" : reason, grant_id);
    return PgError(absl::StatusCode::kPermissionDenied, sqlstate::kInvalidAuthorization,
                   Cat("tracegate: ", MessageOf(grant.status())));
  }
  grant_ = *std::move(grant);
  // The grant's expiry bounds the session's life (and so does the policy's max_session).
  const auto until_expiry = grant_->expires_at - std::chrono::system_clock::now();
  grant_deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(until_expiry);
  if (grant_->max_session.count() > 0) {
    grant_deadline_ = std::min(grant_deadline_, started_ + grant_->max_session);
  }
  return absl::OkStatus();
}

awaitable<absl::Status> Session::AttachBackend() {
  absl::StatusOr<std::unique_ptr<BackendConn>> backend = co_await pool_.Acquire();
  if (!backend.ok()) {
    spdlog::warn("session={} connection={}: {}", id_, runtime_.config->name,
                 MessageOf(backend.status()));
    co_return backend.status();
  }
  backend_ = std::move(*backend);
  TG_CO_RETURN_IF_ERROR(co_await ApplyClientParameters());
  // The backend's startup packet pins client_encoding to UTF8: check what the server says.
  if (const std::string* encoding = backend_->Parameter("client_encoding");
      encoding == nullptr || !IsUtf8EncodingName(*encoding)) {
    co_return PgError(absl::StatusCode::kInvalidArgument, sqlstate::kFeatureNotSupported,
                      Cat("tracegate: the trace store's client_encoding is ",
                          encoding != nullptr ? *encoding : std::string("not reported"),
                          ", not UTF8 (statements are checked as UTF-8)"));
  }
  if (grant_.has_value()) {
    TG_CO_RETURN_IF_ERROR(co_await StartGate());
  }

  const config::Backend& cfg = runtime_.config->backend;
  client_key_ = cancels_.Register(CancelTarget{.host = cfg.host,
                                               .port = cfg.port,
                                               .backend_key = backend_->key(),
                                               .connection = runtime_.config->name});
  pgwire::Buffer out;
  if (!auth_ok_sent_) {
    pgwire::EncodeAuthentication({.code = pgwire::AuthCode::kOk}, out);
  }
  for (const auto& [name, value] : backend_->parameters()) {
    pgwire::EncodeParameterStatus({.name = name, .value = value}, out);
  }
  pgwire::EncodeBackendKeyData(*client_key_, out);
  pgwire::EncodeReadyForQuery({.status = backend_->transaction_status}, out);
  if (!co_await WriteClient(out)) {
    co_return absl::CancelledError("client left");
  }
  co_return absl::OkStatus();
}

awaitable<absl::Status> Session::ApplyClientParameters() {
  std::string sql;
  std::vector<std::pair<std::string, std::string>> unreported;
  for (const auto& [name, value] : client_parameters_) {
    const bool reported = std::find(kReportedParameters.begin(), kReportedParameters.end(), name) !=
                          kReportedParameters.end();
    if (reported) {
      const std::string* current = backend_->Parameter(name);
      if (current != nullptr && *current == value) {
        continue;
      }
    } else {
      auto& settings = backend_->unreported_settings;
      auto same = std::find(settings.begin(), settings.end(), std::pair(name, value));
      if (same != settings.end()) {
        continue;
      }
      unreported.emplace_back(name, value);
    }
    // `name` comes from kRelayedParameters, never from the client.
    absl::StrAppend(&sql, "SET ", name, " TO ", QuoteLiteral(value), ";");
  }
  if (sql.empty()) {
    co_return absl::OkStatus();
  }
  absl::Status status = co_await backend_->Exec(sql);
  if (!status.ok()) {
    co_return status;  // e.g. 22023 invalid value for parameter "client_encoding"
  }
  for (auto& setting : unreported) {
    backend_->unreported_settings.push_back(std::move(setting));
  }
  co_return absl::OkStatus();
}

awaitable<absl::Status> Session::StartGate() {
  const config::Gate& cfg = runtime_.config->gate;
  if (!backend_->trace_columns.has_value()) {
    TraceColumns columns;
    ColumnNames names;
    if (!cfg.trace_tables.empty()) {
      std::vector<std::vector<std::string>> rows;
      absl::Status status = co_await backend_->Exec(TraceColumnsQuery(cfg.trace_tables), &rows);
      if (!status.ok()) {
        co_return status;
      }
      bool catalog_garbled = false;
      auto key_of = [&catalog_garbled](const std::vector<std::string>& row) {
        uint32_t oid = 0;
        int attnum = 0;
        if (row.size() != 5 || !absl::SimpleAtoi(row[3], &oid) ||
            !absl::SimpleAtoi(row[4], &attnum) || attnum <= 0 || attnum > INT16_MAX) {
          catalog_garbled = true;
        }
        return TraceColumnKey(oid, static_cast<int16_t>(attnum));
      };
      // Fail closed: a declared table the server does not have would go unchecked.
      for (const config::TraceTable& t : cfg.trace_tables) {
        auto found = std::find_if(rows.begin(), rows.end(), [&](const auto& row) {
          return row.size() == 5 && row[0] == t.schema && row[1] == t.name && row[2] == t.id_column;
        });
        if (found == rows.end()) {
          spdlog::error(
              "session={} connection={}: declared trace table {}.{} has no column {} in "
              "the trace store",
              id_, runtime_.config->name, t.schema, t.name, t.id_column);
          co_return PgError(absl::StatusCode::kFailedPrecondition, sqlstate::kInternalError,
                            Cat("tracegate: trace table ", t.schema, ".", t.name, " (column ",
                                t.id_column, ") is not in the trace store; see the gateway log"));
        }
        columns.insert(key_of(*found));
      }
      for (const std::vector<std::string>& row : rows) {
        names.emplace(key_of(row), row.size() == 5 ? row[2] : std::string());
      }
      if (catalog_garbled) {
        co_return PgError(absl::StatusCode::kInternal, sqlstate::kInternalError,
                          "tracegate: unexpected answer from the trace store's catalog");
      }
    }
    backend_->trace_columns = std::move(columns);
    backend_->trace_table_columns = std::move(names);
  }
  std::unique_ptr<RowMasker> masker;
  if (!grant_->masking_profile.empty()) {
    // The grant was issued under a profile: without it nothing may be answered.
    auto it = runtime_.maskers.find(grant_->masking_profile);
    if (it == runtime_.maskers.end()) {
      spdlog::error("session={} grant={}: masking profile \"{}\" is not configured", id_,
                    grant_->id, grant_->masking_profile);
      co_return PgError(absl::StatusCode::kFailedPrecondition, sqlstate::kInternalError,
                        Cat("tracegate: the grant's masking profile \"", grant_->masking_profile,
                            "\" is not configured; see the gateway log"));
    }
    absl::StatusOr<masking::Scanner> scanner = masking::Scanner::Create(it->second);
    if (!scanner.ok()) {
      spdlog::error("session={} grant={}: masking: {}", id_, grant_->id,
                    MessageOf(scanner.status()));
      co_return PgError(absl::StatusCode::kInternal, sqlstate::kInternalError,
                        "tracegate: masking is not available; see the gateway log");
    }
    masker = std::make_unique<RowMasker>(*std::move(scanner), backend_->trace_table_columns);
  }
  gate_ = std::make_unique<ProtocolGate>(
      *runtime_.gate, grant_->trace_id, *backend_->trace_columns,
      GateLimits{.max_rows = grant_->max_rows, .max_bytes = grant_->max_bytes}, std::move(masker));
  if (runtime_.approvals != nullptr && gate_->masked() != nullptr) {
    hold_threshold_ = runtime_.approvals->TermsFor(grant_->rule).hold_if_masked_at_least;
  }
  co_return absl::OkStatus();
}

awaitable<void> Session::ForwardCancel(const pgwire::CancelRequest& request) {
  std::optional<CancelTarget> target = cancels_.Find(request);
  if (!target.has_value()) {
    // Like PostgreSQL: no answer either way, so keys cannot be probed.
    spdlog::debug("session={} peer={}: cancel request for an unknown key", id_, peer_);
    co_return;
  }
  co_await SendCancel(*target);  // the client learns the outcome from its query, if at all
}

awaitable<Session::CancelOutcome> Session::SendCancel(std::optional<CancelTarget> target) {
  auto executor = co_await asio::this_coro::executor;
  tcp::socket socket(executor);
  SocketDeadline deadline(executor, socket, runtime_.config->backend.connect_timeout);
  error_code ec = co_await ConnectTcp(socket, target->host, target->port);
  if (!ec) {
    pgwire::Buffer out;
    pgwire::EncodeCancelRequest({.process_id = target->backend_key.process_id,
                                 .secret_key = target->backend_key.secret_key},
                                out);
    co_await asio::async_write(socket, asio::buffer(out), Redirect(ec));
  }
  if (ec) {
    spdlog::warn("session={} connection={}: forwarding a cancel request failed: {}", id_,
                 target->connection, ec.message());
    co_return CancelOutcome::kNotSent;
  }
  runtime_.metrics.cancels->Increment();
  // PostgreSQL signals the backend, then closes the connection; wait for the close so we
  // know the signal was sent.
  char byte;
  co_await socket.async_read_some(asio::buffer(&byte, 1), Redirect(ec));
  if (ec == asio::error::eof || ec == asio::error::connection_reset) {
    co_return CancelOutcome::kDelivered;
  }
  co_return CancelOutcome::kUnconfirmed;
}

void Session::CancelCappedStatement() {
  const config::Backend& cfg = runtime_.config->backend;
  CancelTarget target{.host = cfg.host,
                      .port = cfg.port,
                      .backend_key = backend_->key(),
                      .connection = runtime_.config->name};
  cancel_in_flight_ = true;
  asio::co_spawn(
      client_.socket().get_executor(),
      [self = shared_from_this(), target = std::move(target)]() -> awaitable<void> {
        const CancelOutcome outcome = co_await self->SendCancel(target);
        self->cancel_in_flight_ = false;
        self->cancel_done_.cancel();
        if (outcome == CancelOutcome::kUnconfirmed) {
          // It may still land on whatever runs next; end the session rather than let it.
          if (self->backend_) {
            self->backend_->broken = true;
          }
          self->Stop(PgError(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
                             "tracegate: the trace store did not confirm the cancel of a "
                             "capped statement; the session is ended"),
                     true);
        }
      },
      asio::detached);
}

awaitable<void> Session::RelayClientToBackend() {
  const ConnectionMetrics& metrics = runtime_.metrics;
  client_buffer_.DropDecoded();  // the handshake's frames were consumed, not relayed
  for (;;) {
    if (stopping_) {
      co_return;
    }
    // Validate every complete frame we have and record them, before the gate judges any:
    // a statement that ends the session (or worse) is evidence. Then gate them and forward
    // what goes on to the backend in one write.
    bool terminate = false;
    size_t bytes_needed = 0;
    absl::Status invalid;
    client_frames_.clear();
    for (;;) {
      pgwire::FrameResult result =
          pgwire::DecodeFrame(client_buffer_.Undecoded(), Direction::kFrontend, runtime_.limits);
      if (result.status == pgwire::DecodeStatus::kNeedMoreData) {
        bytes_needed = result.bytes_needed;
        break;
      }
      if (result.status == pgwire::DecodeStatus::kError) {
        invalid = ProtocolViolation(MessageOf(result.error));
        break;
      }
      const pgwire::Frame& frame = result.frame;
      if (absl::Status valid = pgwire::ValidateFrame(frame, Direction::kFrontend); !valid.ok()) {
        invalid = ProtocolViolation(MessageOf(valid));
        break;
      }
      if (frame.type == pgwire::frontend::kTerminate) {
        terminate = true;
        break;  // Terminate itself is not forwarded: the backend stays in the pool.
      }
      if (frame.type == pgwire::frontend::kPassword) {
        // Never recorded: it could carry a secret.
        invalid = ProtocolViolation("unexpected password message after authentication");
        break;
      }
      client_frames_.emplace_back(frame, client_buffer_.Undecoded().first(frame.wire_size));
      client_buffer_.MarkDecoded(frame.wire_size);
    }
    // Gate every frame first (no I/O: what the backend is to receive only goes into
    // gate_to_backend_), then record, then forward. Frames the gate drops, and refused ones
    // too long to keep verbatim, are recorded as a bounded summary, not their bytes: bytes
    // PostgreSQL never sees cannot fill the session's record.
    verdicts_.clear();
    absl::Status gate_error;
    for (const auto& [frame, raw] : client_frames_) {
      if (!gate_) {
        verdicts_.push_back(ProtocolGate::Action::kForwarded);
        continue;
      }
      absl::StatusOr<ProtocolGate::Action> action =
          gate_->OnClientFrame(frame, raw, gate_to_backend_);
      if (!action.ok()) {
        gate_error = ProtocolViolation(MessageOf(action.status()));
        verdicts_.push_back(ProtocolGate::Action::kForwarded);  // recorded: it is the evidence
        break;
      }
      verdicts_.push_back(*action);
    }
    if (absl::Status recorded = RecordClientRun(); !recorded.ok()) {
      Stop(recorded, true);
      co_return;
    }
    if (!invalid.ok() || !gate_error.ok()) {
      metrics.protocol_errors->Increment();
      Stop(!invalid.ok() ? invalid : gate_error, true);
      co_return;
    }
    for (size_t i = 0; i < client_frames_.size(); ++i) {
      const pgwire::Frame& frame = client_frames_[i].first;
      char sent = frame.type;  // what the backend receives in its place, for the bookkeeping
      if (verdicts_[i] == ProtocolGate::Action::kDropped) {
        sent = 0;
      } else if (verdicts_[i] == ProtocolGate::Action::kSubstituted) {
        // A refused Query / FunctionCall became a Query that fails to parse; a refused
        // extended message such a Parse, part of the run its Sync ends.
        sent =
            frame.type == pgwire::frontend::kQuery || frame.type == pgwire::frontend::kFunctionCall
                ? pgwire::frontend::kQuery
                : pgwire::frontend::kParse;
      }
      if (frame.type == pgwire::frontend::kExecute) {
        ++statements_;
      }
      switch (sent) {
        case pgwire::frontend::kQuery:
        case pgwire::frontend::kFunctionCall:
          ++statements_;
          ++outstanding_syncs_;
          statement_starts_.push_back(Clock::now());
          break;
        case pgwire::frontend::kSync:
          ++outstanding_syncs_;
          unsynced_ = false;
          statement_starts_.push_back(Clock::now());
          break;
        case pgwire::frontend::kParse:
        case pgwire::frontend::kBind:
        case pgwire::frontend::kDescribe:
        case pgwire::frontend::kExecute:
        case pgwire::frontend::kClose:
        case pgwire::frontend::kFlush:
          unsynced_ = true;
          break;
        default:  // CopyData / CopyDone / CopyFail: part of a Query already counted
          break;
      }
    }
    client_frames_.clear();
    while (cancel_in_flight_ && !stopping_) {
      error_code woken;  // cancelled = the cancel request is done
      cancel_done_.expires_at(asio::steady_timer::time_point::max());
      co_await cancel_done_.async_wait(Redirect(woken));
    }
    if (stopping_) {
      co_return;
    }
    if (client_buffer_.HasDecoded()) {
      error_code ec;
      pgwire::Bytes out =
          gate_ ? pgwire::Bytes(reinterpret_cast<const uint8_t*>(gate_to_backend_.data()),
                                gate_to_backend_.size())
                : client_buffer_.Decoded();
      if (!out.empty()) {
        co_await backend_->stream().WriteAll(asio::buffer(out.data(), out.size()), ec);
      }
      if (ec) {
        backend_->broken = true;
        if (!stopping_) {
          metrics.backend_errors->Increment();
          Stop(PgError(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
                       "tracegate: lost the connection to the trace store"),
               true);
        }
        co_return;
      }
      metrics.bytes_from_client->Increment(static_cast<double>(out.size()));
      client_buffer_.DropDecoded();
      gate_to_backend_.clear();
    }
    if (terminate) {
      Stop(absl::OkStatus(), false);
      co_return;
    }
    if (stopping_) {
      co_return;
    }
    error_code ec;
    size_t n = co_await client_.ReadSome(client_buffer_.PrepareRead(bytes_needed), ec);
    if (ec) {
      Stop(absl::CancelledError("client closed the connection"), false);
      co_return;
    }
    client_buffer_.CommitRead(n);
    bytes_from_client_ += n;
    idle_since_ = Clock::now();
  }
}

awaitable<void> Session::RelayBackendToClient() {
  auto self = shared_from_this();
  const ConnectionMetrics& metrics = runtime_.metrics;
  FrameBuffer& buffer = backend_->buffer();
  buffer.DropDecoded();
  absl::Status end;
  bool tell_client = true;
  for (;;) {
    if (stopping_) {
      break;
    }
    size_t bytes_needed = 0;
    bool failed = false;
    bool answer_complete = false;  // holding results: the batch ends with a ReadyForQuery
    for (;;) {
      pgwire::FrameResult result =
          pgwire::DecodeFrame(buffer.Undecoded(), Direction::kBackend, runtime_.limits);
      if (result.status == pgwire::DecodeStatus::kNeedMoreData) {
        bytes_needed = result.bytes_needed;
        break;
      }
      absl::Status valid = result.status == pgwire::DecodeStatus::kError
                               ? result.error
                               : pgwire::ValidateFrame(result.frame, Direction::kBackend);
      const pgwire::Frame& frame = result.frame;
      if (valid.ok()) {
        switch (frame.type) {
          case pgwire::backend::kReadyForQuery: {
            backend_->transaction_status = static_cast<char>(frame.body[0]);
            if (outstanding_syncs_ > 0) {
              --outstanding_syncs_;
            }
            if (outstanding_syncs_ == 0) {
              idle_since_ = Clock::now();  // the last answer is out: idle from here
            }
            if (!statement_starts_.empty()) {
              std::chrono::duration<double> took = Clock::now() - statement_starts_.front();
              statement_starts_.pop_front();
              metrics.statement_seconds->Observe(took.count());
            }
            break;
          }
          case pgwire::backend::kParameterStatus: {
            absl::StatusOr<pgwire::ParameterStatus> param =
                pgwire::ParseParameterStatus(frame.body);
            if (param.ok()) {
              backend_->SetParameter(param->name, param->value);
            }
            break;
          }
          case pgwire::backend::kErrorResponse: {
            absl::StatusOr<pgwire::ErrorFields> fields = pgwire::ParseErrorFields(frame.body);
            const std::string* severity = fields.ok() ? fields->Find('V') : nullptr;
            if (severity != nullptr && (*severity == "FATAL" || *severity == "PANIC")) {
              backend_sent_fatal_ = true;
              backend_->broken = true;
            }
            break;
          }
          case pgwire::backend::kAuthentication:
          case pgwire::backend::kBackendKeyData:
          case pgwire::backend::kNegotiateProtocolVersion:
            valid = absl::InvalidArgumentError(
                Cat("unexpected message '", std::string(1, frame.type), "' after startup"));
            break;
          default:
            break;
        }
      }
      if (!valid.ok()) {
        backend_->broken = true;
        metrics.backend_errors->Increment();
        end = PgError(absl::StatusCode::kInternal, sqlstate::kConnectionFailure,
                      Cat("tracegate: refused a message from the trace store: ", MessageOf(valid)));
        failed = true;
        break;
      }
      if (gate_) {
        const pgwire::Bytes raw = buffer.Undecoded().first(frame.wire_size);
        if (backend_sent_fatal_ && frame.type == pgwire::backend::kErrorResponse) {
          // The backend's FATAL answers no request (e.g. an administrator's termination):
          // pass it on (masked, like every message). Only the error itself: anything after
          // it still meets the gate.
          gate_->ForwardMessage(frame, raw, gate_to_client_);
        } else if (absl::Status checked = gate_->OnBackendFrame(frame, raw, gate_to_client_);
                   !checked.ok()) {
          backend_->broken = true;  // answers are still in flight: never pool it
          if (SqlStateOf(checked) == sqlstate::kInsufficientPrivilege) {
            metrics.gate_violations->Increment();
            spdlog::warn("session={} connection={} grant={}: {}", id_, runtime_.config->name,
                         grant_->id, LogEscape(MessageOf(checked), 1024));
            end = checked;
          } else {
            metrics.backend_errors->Increment();
            end = PgError(
                absl::StatusCode::kInternal, sqlstate::kConnectionFailure,
                Cat("tracegate: refused a message from the trace store: ", MessageOf(checked)));
          }
          buffer.MarkDecoded(frame.wire_size);
          failed = true;
          break;
        }
      }
      buffer.MarkDecoded(frame.wire_size);
      if (hold_threshold_ > 0 && frame.type == pgwire::backend::kReadyForQuery) {
        answer_complete = true;  // decide on this answer before reading the next
        break;
      }
    }
    if (gate_ && gate_->TakeCancel()) {
      // A statement crossed the grant's row or byte cap: its remaining rows are dropped, so
      // stop the backend producing them.
      CancelCappedStatement();
    }
    // Forward what was validated, even when a later frame failed: those bytes are good.
    if (hold_threshold_ > 0 && buffer.HasDecoded()) {
      // Results may need approval: keep the answer until its ReadyForQuery, then decide.
      held_.append(gate_to_client_);
      buffer.DropDecoded();
      gate_to_client_.clear();
      if (held_.size() > runtime_.approvals->settings().hold_max_bytes) {
        backend_->broken = true;
        end = PgError(
            absl::StatusCode::kResourceExhausted, sqlstate::kConfigurationLimitExceeded,
            Cat("tracegate: a result that may need approval is larger than "
                "approvals.hold_max_bytes (",
                runtime_.approvals->settings().hold_max_bytes, " bytes); it was discarded"));
        held_.clear();
        break;
      }
      if (!answer_complete && !failed) {
        // Read the rest of the answer first.
      } else {
        const uint64_t total = gate_->masked()->Total();
        const uint64_t found = total - masked_released_;
        masked_released_ = total;
        if (found >= hold_threshold_) {
          absl::Status approved = co_await AwaitResultApproval(found);
          if (absl::IsCancelled(approved) || stopping_) {
            held_.clear();
            end = approved;
            tell_client = !absl::IsCancelled(approved);
            break;
          }
          if (!approved.ok()) {
            // Discarded: the client gets the refusal, and the session stays usable.
            held_.clear();
            pgwire::Buffer refusal;
            pgwire::EncodeError("ERROR", SqlStateOf(approved), MessageOf(approved), refusal);
            pgwire::EncodeReadyForQuery({.status = backend_->transaction_status}, refusal);
            held_ = std::move(refusal);
          }
        }
        gate_to_client_ = std::move(held_);
        held_.clear();
      }
    }
    if (hold_threshold_ > 0 ? !gate_to_client_.empty() : buffer.HasDecoded()) {
      pgwire::Bytes out =
          gate_ ? pgwire::Bytes(reinterpret_cast<const uint8_t*>(gate_to_client_.data()),
                                gate_to_client_.size())
                : buffer.Decoded();
      if (absl::Status recorded = co_await RecordServerFrames(out); !recorded.ok()) {
        backend_->broken = true;  // answers may be in flight: never pool it
        end = recorded;
        break;
      }
      error_code ec;
      if (!out.empty()) {
        co_await client_.WriteAll(asio::buffer(out.data(), out.size()), ec);
      }
      if (ec) {
        client_write_torn_ = true;
        end = absl::CancelledError("client stopped reading");
        tell_client = false;
        break;
      }
      metrics.bytes_to_client->Increment(static_cast<double>(out.size()));
      bytes_to_client_ += out.size();
      buffer.DropDecoded();
      gate_to_client_.clear();
    }
    if (failed || stopping_) {
      break;
    }
    if (answer_complete) {
      continue;  // the buffer may hold the next answer already
    }
    error_code ec;
    size_t n = co_await backend_->stream().ReadSome(buffer.PrepareRead(bytes_needed), ec);
    if (ec) {
      if (stopping_) {
        break;
      }
      backend_->broken = true;
      if (backend_sent_fatal_) {
        end = absl::AbortedError("the trace store ended the session");
        tell_client = false;  // the client already has the backend's FATAL
      } else {
        metrics.backend_errors->Increment();
        end = PgError(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
                      "tracegate: lost the connection to the trace store");
      }
      break;
    }
    buffer.CommitRead(n);
  }
  if (!stopping_) {
    Stop(end, tell_client);
  }
  backend_relay_running_ = false;
  backend_relay_done_.cancel();
}

awaitable<void> Session::Watchdog() {
  auto self = shared_from_this();
  const config::Connection& cfg = *runtime_.config;
  const bool session_limited = cfg.session_timeout.count() > 0;
  const Clock::time_point session_deadline =
      session_limited ? started_ + cfg.session_timeout : Clock::time_point::max();
  while (!stopping_) {
    const Clock::time_point idle_deadline = idle_since_ + cfg.idle_timeout;
    watchdog_timer_.expires_at(std::min({idle_deadline, session_deadline, grant_deadline_}));
    error_code ec;
    co_await watchdog_timer_.async_wait(Redirect(ec));
    if (stopping_) {
      co_return;
    }
    const Clock::time_point now = Clock::now();
    if (now >= grant_deadline_) {
      Stop(PgError(absl::StatusCode::kDeadlineExceeded, sqlstate::kAdminShutdown,
                   Cat("tracegate: terminating the session: grant ", grant_->id,
                       " reached its expiry or max_session")),
           true);
    } else if (now >= session_deadline) {
      Stop(PgError(absl::StatusCode::kDeadlineExceeded, sqlstate::kAdminShutdown,
                   "tracegate: terminating the session: it reached session_timeout"),
           true);
    } else if (now >= idle_since_ + cfg.idle_timeout && outstanding_syncs_ == 0 && !holding_) {
      Stop(PgError(absl::StatusCode::kDeadlineExceeded, sqlstate::kIdleSessionTimeout,
                   "tracegate: terminating the session: idle for longer than idle_timeout"),
           true);
    } else if (now >= idle_since_ + cfg.idle_timeout) {
      idle_since_ = now;  // a statement is running: not idle
    }
  }
}

awaitable<void> Session::Finish() {
  // The grant first: a client that sent Terminate may reconnect with the same grant (uses
  // left) at once, and must find it free again.
  if (grant_) {
    grant_watch_.reset();
    const std::string outcome = end_reason_.ok() || absl::IsCancelled(end_reason_)
                                    ? Cat("session ", id_, " ended by the client")
                                    : Cat("session ", id_, " ended: [", SqlStateOf(end_reason_),
                                          "] ", MessageOf(end_reason_));
    if (absl::Status ended = runtime_.grants->EndSession(grant_->id, outcome); !ended.ok()) {
      // Already revoked or expired is expected here; anything else is worth a line.
      spdlog::log(absl::IsFailedPrecondition(ended) ? spdlog::level::debug : spdlog::level::warn,
                  "session={} grant={}: ending the grant's session: {}", id_, grant_->id,
                  MessageOf(ended));
    }
  }
  if (!end_reason_.ok() && tell_client_ && !client_write_torn_) {
    pgwire::Buffer out;
    pgwire::EncodeError("FATAL", SqlStateOf(end_reason_), MessageOf(end_reason_), out);
    // Recorded like every answer; if it cannot be, the client still learns why the session
    // ends (the FATAL carries no trace data).
    (void)co_await RecordServerFrames(
        pgwire::Bytes(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
    co_await WriteClient(out);
  }
  EndRecording();
  const std::chrono::duration<double> lasted = Clock::now() - started_;
  if (end_reason_.ok() || absl::IsCancelled(end_reason_)) {
    spdlog::info(
        "session={} connection={} peer={} user={}: ended by the client after {:.3f} s "
        "({}; in {} B, out {} B)",
        id_, runtime_.config->name, peer_, LogEscape(user_, 64), lasted.count(),
        end_reason_.ok() ? std::string("Terminate") : LogEscape(MessageOf(end_reason_), 1024),
        bytes_from_client_, bytes_to_client_);
  } else {
    spdlog::info(
        "session={} connection={} peer={} user={}: ended after {:.3f} s: [{}] {} "
        "(in {} B, out {} B)",
        id_, runtime_.config->name, peer_, LogEscape(user_, 64), lasted.count(),
        SqlStateOf(end_reason_), LogEscape(MessageOf(end_reason_), 1024), bytes_from_client_,
        bytes_to_client_);
  }
  client_.Close();
  if (gate_) {
    const GateStats& stats = gate_->stats();
    runtime_.metrics.statements_blocked->Increment(static_cast<double>(stats.blocked));
    spdlog::info("session={} grant={} trace={}: {} statements, {} blocked, {} rows ({} B) sent",
                 id_, grant_->id, LogEscape(grant_->trace_id, 64), stats.statements, stats.blocked,
                 stats.rows, stats.bytes);
    if (const masking::Counts* masked = gate_->masked(); masked != nullptr) {
      runtime_.metrics.masking_errors->Increment(static_cast<double>(stats.masking_errors));
      std::string by_entity;
      for (const auto& [entity, n] : masked->by_entity) {
        runtime_.metrics.AddMasked(entity, static_cast<double>(n));
        absl::StrAppend(&by_entity, by_entity.empty() ? "" : " ", entity, "=", n);
      }
      spdlog::info("session={} grant={} masking={}: {} values masked ({}), {} unreadable", id_,
                   grant_->id, grant_->masking_profile, masked->Total(),
                   by_entity.empty() ? "none" : by_entity, stats.masking_errors);
    }
  }
  if (client_key_.has_value()) {
    cancels_.Unregister(*client_key_);
  }
  ReturnBackend();
  co_return;
}

void Session::ReturnBackend() {
  if (!backend_) {
    return;
  }
  // (A cancel still on its way could land on the next session's statement.)
  const bool clean = !backend_->broken && !cancel_in_flight_ && outstanding_syncs_ == 0 &&
                     !unsynced_ && backend_->transaction_status == 'I' &&
                     backend_->buffer().Empty();
  if (!clean) {
    pool_.Discard(std::move(backend_));
    return;
  }
  // Reset off the session's critical path; the backend goes back only if that works.
  asio::co_spawn(
      client_.socket().get_executor(),
      [pool = &pool_, conn = std::move(backend_)]() mutable -> awaitable<void> {
        absl::Status reset = co_await conn->Exec("DISCARD ALL");
        if (reset.ok() && conn->transaction_status == 'I') {
          conn->unreported_settings.clear();
          pool->Release(std::move(conn));
        } else {
          pool->Discard(std::move(conn));
        }
      },
      asio::detached);
}

}  // namespace tracegate::pgproxy
