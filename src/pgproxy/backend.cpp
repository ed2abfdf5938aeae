#include "pgproxy/backend.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>

#include "common/socket_deadline.h"
#include "common/status.h"
#include "common/strings.h"
#include "pgproxy/pg_error.h"
#include "pgwire/scram.h"

namespace tracegate::pgproxy {

namespace {

absl::Status BackendUnavailable(const config::Connection& conn, std::string_view why) {
  return PgError(
      absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
      Cat("tracegate: cannot reach the trace store for connection \"", conn.name, "\": ", why));
}

absl::Status BackendProtocolError(std::string_view why) {
  return PgError(absl::StatusCode::kInternal, sqlstate::kConnectionFailure,
                 Cat("tracegate: trace store protocol error: ", why));
}

// The backend's own ErrorResponse, relayed with its SQLSTATE.
absl::Status FromBackendError(const pgwire::ErrorFields& fields) {
  const std::string* code = fields.Find('C');
  const std::string* message = fields.Find('M');
  return PgError(absl::StatusCode::kFailedPrecondition,
                 code != nullptr ? *code : std::string(sqlstate::kInternalError),
                 message != nullptr ? *message : "backend error");
}

bool Allows(const config::Backend& backend, std::string_view method) {
  return std::find(backend.auth.begin(), backend.auth.end(), method) != backend.auth.end();
}

// The backend asked for something backend.auth does not allow: end the login without
// answering (an answer would already hand over the password or its md5 hash).
absl::Status Refused(const config::Connection& conn, std::string_view method,
                     std::string_view why) {
  spdlog::warn("connection={} backend={}:{}: the backend asked for {}, which {}; login refused",
               conn.name, conn.backend.host, conn.backend.port, method, why);
  return PgError(absl::StatusCode::kPermissionDenied, sqlstate::kInvalidAuthorization,
                 Cat("tracegate: the backend asked for ", method, ", which ", why,
                     " (connection \"", conn.name, "\")"));
}

constexpr std::string_view kNotAllowed = "backend.auth does not allow";

// Computes the SCRAM salted password on `pool` and resumes the awaiting coroutine on its own
// executor. An ordinary function object that is copied into the operation (g++ 12 and
// coroutine temporaries, see DESIGN.md); `scram` and `derivation` belong to the awaiting
// coroutine, which stays suspended until the result is posted back.
struct SaltPasswordInitiation {
  asio::thread_pool* pool;
  const pgwire::ScramClient* scram;
  const pgwire::ScramDerivation* derivation;

  template <typename Handler>
  void operator()(Handler handler) {
    auto home = asio::prefer(asio::get_associated_executor(handler),
                             asio::execution::outstanding_work.tracked);
    asio::post(*pool, [handler = std::move(handler), scram = scram, derivation = derivation,
                       home = std::move(home)]() mutable {
      std::string salted = scram->SaltedPassword(*derivation);
      asio::post(home, [handler = std::move(handler), salted = std::move(salted)]() mutable {
        std::move(handler)(std::move(salted));
      });
    });
  }
};

awaitable<std::string> SaltPassword(asio::thread_pool& pool, const pgwire::ScramClient& scram,
                                    const pgwire::ScramDerivation& derivation) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::string)>(
      SaltPasswordInitiation{&pool, &scram, &derivation}, asio::use_awaitable);
}

}  // namespace

const std::string* BackendConn::Parameter(std::string_view name) const {
  for (const auto& [key, value] : parameters_) {
    if (key == name) {
      return &value;
    }
  }
  return nullptr;
}

void BackendConn::SetParameter(std::string_view name, std::string_view value) {
  for (auto& [key, current] : parameters_) {
    if (key == name) {
      current = value;
      return;
    }
  }
  parameters_.emplace_back(name, value);
}

awaitable<absl::StatusOr<pgwire::Frame>> BackendConn::ReadFrame() {
  buffer_.DropDecoded();
  for (;;) {
    pgwire::FrameResult result =
        pgwire::DecodeFrame(buffer_.Undecoded(), pgwire::Direction::kBackend, limits_);
    if (result.status == pgwire::DecodeStatus::kFrame) {
      absl::Status valid = pgwire::ValidateFrame(result.frame, pgwire::Direction::kBackend);
      if (!valid.ok()) {
        broken = true;
        co_return BackendProtocolError(MessageOf(valid));
      }
      buffer_.MarkDecoded(result.frame.wire_size);
      co_return result.frame;
    }
    if (result.status == pgwire::DecodeStatus::kError) {
      broken = true;
      co_return BackendProtocolError(MessageOf(result.error));
    }
    error_code ec;
    size_t n = co_await stream_.ReadSome(buffer_.PrepareRead(result.bytes_needed), ec);
    if (ec) {
      broken = true;
      co_return PgError(
          absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
          Cat("tracegate: lost the connection to the trace store (", ec.message(), ")"));
    }
    buffer_.CommitRead(n);
  }
}

awaitable<absl::Status> BackendConn::Exec(std::string_view sql,
                                          std::vector<std::vector<std::string>>* rows) {
  pgwire::Buffer out;
  pgwire::EncodeQuery(sql, out);
  error_code ec;
  co_await stream_.WriteAll(asio::buffer(out), ec);
  if (ec) {
    broken = true;
    co_return PgError(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
                      "tracegate: lost the connection to the trace store");
  }
  absl::Status first_error;
  for (;;) {
    absl::StatusOr<pgwire::Frame> frame = co_await ReadFrame();
    if (!frame.ok()) {
      co_return frame.status();
    }
    switch (frame->type) {
      case pgwire::backend::kReadyForQuery: {
        TG_CO_ASSIGN_OR_RETURN(pgwire::ReadyForQuery ready,
                               pgwire::ParseReadyForQuery(frame->body));
        transaction_status = ready.status;
        buffer_.DropDecoded();  // idle again: nothing of this exchange stays buffered
        co_return first_error;
      }
      case pgwire::backend::kErrorResponse: {
        TG_CO_ASSIGN_OR_RETURN(pgwire::ErrorFields fields, pgwire::ParseErrorFields(frame->body));
        if (first_error.ok()) {
          first_error = FromBackendError(fields);
        }
        break;
      }
      case pgwire::backend::kParameterStatus: {
        TG_CO_ASSIGN_OR_RETURN(pgwire::ParameterStatus param,
                               pgwire::ParseParameterStatus(frame->body));
        SetParameter(param.name, param.value);
        break;
      }
      case pgwire::backend::kDataRow:
        if (rows != nullptr) {
          TG_CO_ASSIGN_OR_RETURN(pgwire::DataRow row, pgwire::ParseDataRow(frame->body));
          std::vector<std::string>& out = rows->emplace_back();
          for (const std::optional<pgwire::Bytes>& value : row.values) {
            out.emplace_back(
                value.has_value()
                    ? std::string(reinterpret_cast<const char*>(value->data()), value->size())
                    : std::string());
          }
        }
        break;
      case pgwire::backend::kCommandComplete:
      case pgwire::backend::kRowDescription:
      case pgwire::backend::kEmptyQueryResponse:
      case pgwire::backend::kNoticeResponse:
        break;
      default:
        broken = true;
        co_return BackendProtocolError(Cat("unexpected message '", std::string(1, frame->type),
                                           "' in reply to an internal statement"));
    }
  }
}

awaitable<absl::StatusOr<std::unique_ptr<BackendConn>>> BackendConn::Open(
    const BackendTarget& target) {
  const config::Connection& conn = *target.connection;
  const config::Backend& backend = conn.backend;
  auto executor = co_await asio::this_coro::executor;

  // One deadline for resolve + connect + TLS + authentication: closing the socket makes
  // whatever step is pending fail at once.
  auto result = std::make_unique<BackendConn>(tcp::socket(executor));
  result->limits_ = target.limits;
  result->scram_pool_ = target.scram_pool;
  SocketDeadline deadline(executor, result->stream_.socket(), backend.connect_timeout);

  error_code ec = co_await ConnectTcp(result->stream_.socket(), backend.host, backend.port);
  if (ec || deadline.expired()) {
    co_return BackendUnavailable(conn, deadline.expired() ? "connect timed out" : ec.message());
  }

  absl::Status status = co_await result->Handshake(target);
  if (deadline.expired()) {
    co_return BackendUnavailable(conn, "handshake timed out");
  }
  if (!status.ok()) {
    co_return status;
  }
  result->idle_since = Clock::now();
  co_return result;
}

awaitable<absl::Status> BackendConn::Handshake(const BackendTarget& target) {
  const config::Connection& conn = *target.connection;
  const config::Backend& backend = conn.backend;
  error_code ec;

  if (backend.tls != config::BackendTlsMode::kDisable) {
    pgwire::Buffer request;
    pgwire::EncodeSslRequest(request);
    co_await stream_.WriteAll(asio::buffer(request), ec);
    char answer = 0;
    if (!ec) {
      // Exactly one byte: anything the server sent after it must go through TLS, never be
      // taken as plaintext protocol (CVE-2021-23222).
      co_await asio::async_read(stream_.socket(), asio::buffer(&answer, 1), Redirect(ec));
    }
    if (ec) {
      co_return BackendUnavailable(conn, ec.message());
    }
    if (answer != 'S') {
      co_return BackendUnavailable(conn, "the server refused TLS (backend.tls requires it)");
    }
    const std::string sni =
        backend.tls == config::BackendTlsMode::kVerifyFull ? backend.host : std::string();
    ec = co_await stream_.StartTls(*target.tls, asio::ssl::stream_base::client, sni);
    if (ec) {
      co_return BackendUnavailable(conn, Cat("TLS handshake failed: ", ec.message()));
    }
  }

  pgwire::StartupMessage startup;
  startup.parameters = {
      {"user", backend.user}, {"database", backend.database}, {"application_name", "tracegate"}};
  if (backend.read_only) {
    startup.parameters.emplace_back("default_transaction_read_only", "on");
  }
  // The statement gate reads '...' with standard_conforming_strings on (as libpg_query
  // does); pin it for the session whatever the role or database says.
  startup.parameters.emplace_back("standard_conforming_strings", "on");
  // Likewise client_encoding: a role, database or server default of SJIS (a client-only
  // encoding whose characters can hide ' and \) would otherwise become the session's, and
  // RESET / SET ... TO DEFAULT would return to it. A startup parameter is the session's
  // default, so RESET and DISCARD ALL come back to UTF8. (The gate refuses any change, and
  // ends the session if the server ever reports another encoding.)
  startup.parameters.emplace_back("client_encoding", "UTF8");
  if (backend.statement_timeout.count() > 0) {
    startup.parameters.emplace_back("statement_timeout",
                                    std::to_string(backend.statement_timeout.count()));
  }
  pgwire::Buffer out;
  pgwire::EncodeStartupMessage(startup, out);
  co_await stream_.WriteAll(asio::buffer(out), ec);
  if (ec) {
    co_return BackendUnavailable(conn, ec.message());
  }

  for (;;) {
    absl::StatusOr<pgwire::Frame> frame = co_await ReadFrame();
    if (!frame.ok()) {
      co_return frame.status();
    }
    switch (frame->type) {
      case pgwire::backend::kAuthentication: {
        TG_CO_ASSIGN_OR_RETURN(pgwire::Authentication auth,
                               pgwire::ParseAuthentication(frame->body));
        if (auth.code == pgwire::AuthCode::kOk) {
          break;
        }
        TG_CO_RETURN_IF_ERROR(co_await Authenticate(conn, auth));
        break;
      }
      case pgwire::backend::kErrorResponse: {
        TG_CO_ASSIGN_OR_RETURN(pgwire::ErrorFields fields, pgwire::ParseErrorFields(frame->body));
        broken = true;
        co_return FromBackendError(fields);
      }
      case pgwire::backend::kParameterStatus: {
        TG_CO_ASSIGN_OR_RETURN(pgwire::ParameterStatus param,
                               pgwire::ParseParameterStatus(frame->body));
        SetParameter(param.name, param.value);
        break;
      }
      case pgwire::backend::kBackendKeyData: {
        TG_CO_ASSIGN_OR_RETURN(key_, pgwire::ParseBackendKeyData(frame->body));
        break;
      }
      case pgwire::backend::kNoticeResponse:
        break;
      case pgwire::backend::kReadyForQuery: {
        TG_CO_ASSIGN_OR_RETURN(pgwire::ReadyForQuery ready,
                               pgwire::ParseReadyForQuery(frame->body));
        transaction_status = ready.status;
        buffer_.DropDecoded();
        co_return absl::OkStatus();
      }
      default:
        broken = true;
        co_return BackendProtocolError(
            Cat("unexpected message '", std::string(1, frame->type), "' during startup"));
    }
  }
}

awaitable<absl::Status> BackendConn::Authenticate(const config::Connection& conn,
                                                  const pgwire::Authentication& request) {
  const config::Backend& backend = conn.backend;
  pgwire::Buffer out;
  switch (request.code) {
    case pgwire::AuthCode::kCleartextPassword:
      if (!Allows(backend, "password")) {
        co_return Refused(conn, "password (cleartext)", kNotAllowed);
      }
      // The config loader refuses this combination; checked again where the password leaves.
      if (!stream_.tls() && !config::IsLoopbackHost(backend.host)) {
        co_return Refused(conn, "password (cleartext)",
                          "is never sent without TLS to a host that is not loopback");
      }
      pgwire::EncodePasswordMessage(backend.password, out);
      break;
    case pgwire::AuthCode::kMd5Password:
      if (!Allows(backend, "md5")) {
        co_return Refused(conn, "md5", kNotAllowed);
      }
      pgwire::EncodePasswordMessage(
          pgwire::Md5PasswordResponse(backend.user, backend.password, request.md5_salt), out);
      break;
    case pgwire::AuthCode::kSasl:
      co_return co_await AuthenticateScram(conn, request);
    default:
      co_return Refused(conn, Cat("authentication request ", static_cast<int>(request.code)),
                        "tracegate does not implement");
  }
  error_code ec;
  co_await stream_.WriteAll(asio::buffer(out), ec);
  if (ec) {
    co_return BackendProtocolError(ec.message());
  }
  spdlog::info("connection={} backend={}:{}: authenticating with {} (tls={})", conn.name,
               backend.host, backend.port,
               request.code == pgwire::AuthCode::kMd5Password ? "md5" : "password", stream_.tls());
  co_return absl::OkStatus();
}

awaitable<absl::Status> BackendConn::AuthenticateScram(const config::Connection& conn,
                                                       const pgwire::Authentication& request) {
  const config::Backend& backend = conn.backend;
  if (!Allows(backend, "scram-sha-256")) {
    co_return Refused(conn, "SCRAM-SHA-256", kNotAllowed);
  }
  bool offered = false;
  bool plus_offered = false;
  for (const std::string& mechanism : request.mechanisms) {
    offered = offered || mechanism == "SCRAM-SHA-256";
    plus_offered = plus_offered || mechanism == "SCRAM-SHA-256-PLUS";
  }
  // Over TLS, bind the SCRAM exchange to the certificate the backend presented: a party
  // that terminates TLS in between cannot complete it even when the certificate is not
  // verified (backend.tls: require).
  pgwire::ScramClientOptions options{.tls = stream_.tls(),
                                     .max_iterations = backend.max_scram_iterations};
  if (stream_.tls() && plus_offered) {
    absl::StatusOr<std::string> end_point = stream_.TlsServerEndPoint(/*peer=*/true);
    if (!end_point.ok()) {
      co_return BackendProtocolError(
          Cat("cannot bind SCRAM to the backend's certificate: ", MessageOf(end_point.status())));
    }
    options.end_point = *std::move(end_point);
  }
  if (!offered && options.end_point.empty()) {
    co_return BackendProtocolError("the server offers no SASL mechanism tracegate supports");
  }
  const std::string mechanism = options.end_point.empty() ? "SCRAM-SHA-256" : "SCRAM-SHA-256-PLUS";
  pgwire::ScramClient scram(backend.password, pgwire::SystemRandom(), std::move(options));
  pgwire::Buffer out;
  pgwire::EncodeSaslInitialResponse({.mechanism = mechanism, .data = scram.ClientFirst()}, out);
  error_code ec;
  co_await stream_.WriteAll(asio::buffer(out), ec);
  if (ec) {
    co_return BackendProtocolError(ec.message());
  }
  // server-first
  absl::StatusOr<pgwire::Frame> frame = co_await ReadFrame();
  if (!frame.ok()) {
    co_return frame.status();
  }
  if (frame->type == pgwire::backend::kErrorResponse) {
    TG_CO_ASSIGN_OR_RETURN(pgwire::ErrorFields fields, pgwire::ParseErrorFields(frame->body));
    co_return FromBackendError(fields);
  }
  TG_CO_ASSIGN_OR_RETURN(pgwire::Authentication cont, pgwire::ParseAuthentication(frame->body));
  if (frame->type != pgwire::backend::kAuthentication ||
      cont.code != pgwire::AuthCode::kSaslContinue) {
    co_return BackendProtocolError("expected SASLContinue");
  }
  absl::StatusOr<pgwire::ScramDerivation> derivation = scram.ParseServerFirst(cont.data);
  if (absl::IsResourceExhausted(derivation.status())) {
    const std::string why(MessageOf(derivation.status()));  // names the count, no secret
    spdlog::warn("connection={} backend={}:{}: {}; login refused", conn.name, backend.host,
                 backend.port, why);
    co_return PgError(absl::StatusCode::kPermissionDenied, sqlstate::kInvalidAuthorization,
                      Cat("tracegate: ", why, " (connection \"", conn.name, "\")"));
  }
  if (!derivation.ok()) {
    co_return BackendProtocolError(MessageOf(derivation.status()));
  }
  // Up to backend.max_scram_iterations HMACs: never on the worker's event loop, where every
  // session of the worker would wait for them.
  std::string salted;
  if (scram_pool_ != nullptr) {
    salted = co_await SaltPassword(*scram_pool_, scram, *derivation);
  } else {
    salted = scram.SaltedPassword(*derivation);
  }
  absl::StatusOr<std::string> client_final = scram.ClientFinal(salted);
  if (!client_final.ok()) {
    co_return BackendProtocolError(MessageOf(client_final.status()));
  }
  out.clear();
  pgwire::EncodeSaslResponse(*client_final, out);
  co_await stream_.WriteAll(asio::buffer(out), ec);
  if (ec) {
    co_return BackendProtocolError(ec.message());
  }
  frame = co_await ReadFrame();
  if (!frame.ok()) {
    co_return frame.status();
  }
  if (frame->type == pgwire::backend::kErrorResponse) {
    TG_CO_ASSIGN_OR_RETURN(pgwire::ErrorFields fields, pgwire::ParseErrorFields(frame->body));
    co_return FromBackendError(fields);
  }
  TG_CO_ASSIGN_OR_RETURN(pgwire::Authentication final_msg,
                         pgwire::ParseAuthentication(frame->body));
  if (frame->type != pgwire::backend::kAuthentication ||
      final_msg.code != pgwire::AuthCode::kSaslFinal) {
    co_return BackendProtocolError("expected SASLFinal");
  }
  absl::Status verified = scram.HandleServerFinal(final_msg.data);
  if (!verified.ok()) {
    // The server could not prove it knows the password: it may be an impostor.
    co_return BackendProtocolError(Cat("server signature rejected: ", MessageOf(verified)));
  }
  spdlog::info("connection={} backend={}:{}: authenticated with {} (tls={})", conn.name,
               backend.host, backend.port, mechanism, stream_.tls());
  co_return absl::OkStatus();
}

}  // namespace tracegate::pgproxy
