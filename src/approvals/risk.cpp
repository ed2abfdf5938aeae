#include "approvals/risk.h"

#include <libpq-fe.h>
#include <openssl/x509.h>
#include <poll.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "common/strings.h"

namespace tracegate::approvals {
namespace {

using Clock = std::chrono::steady_clock;

struct ConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct ResultClearer {
  void operator()(PGresult* result) const { PQclear(result); }
};
using Conn = std::unique_ptr<PGconn, ConnCloser>;
using Result = std::unique_ptr<PGresult, ResultClearer>;

// libpq's text made one line, with the password cut out should it ever appear (libpq's own
// messages name host and user, never the password; a server's message could say anything).
std::string Clean(std::string_view text, std::string_view password) {
  std::string out;
  for (char c : text) {
    if (c == '\n' || c == '\t' || c == '\r') {
      if (!out.empty() && out.back() != ' ') {
        out += ' ';
      }
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') {
    out.pop_back();
  }
  if (!password.empty()) {
    for (size_t at = out.find(password); at != std::string::npos;
         at = out.find(password, at + 10)) {
      out.replace(at, password.size(), "[password]");
    }
  }
  return out;
}

// Where verify-full looks for CAs when backend.ca_file is empty: the system bundle, like the
// gateway's own backend TLS (OpenSSL's default paths). libpq before 16 has no
// sslrootcert=system, so it gets OpenSSL's default file (or $SSL_CERT_FILE).
std::string SystemCaFile() {
  if (PQlibVersion() >= 160000) {
    return "system";
  }
  const char* env = std::getenv(X509_get_default_cert_file_env());
  return env != nullptr && *env != '\0' ? std::string(env)
                                        : std::string(X509_get_default_cert_file());
}

std::string_view SslMode(config::BackendTlsMode mode) {
  switch (mode) {
    case config::BackendTlsMode::kDisable:
      return "disable";
    case config::BackendTlsMode::kRequire:
      return "require";
    case config::BackendTlsMode::kVerifyFull:
      return "verify-full";
  }
  return "verify-full";
}

// Waits until the socket is ready for `events` or the deadline passes (false).
bool WaitSocket(PGconn* conn, short events, Clock::time_point deadline) {
  if (PQsocket(conn) < 0) {
    return true;  // no socket (the connection broke): libpq reports why
  }
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return false;
    }
    pollfd fd{.fd = PQsocket(conn), .events = events, .revents = 0};
    const int ready = poll(&fd, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
    if (ready != 0) {
      return true;  // ready, hung up or failed: libpq finds out which
    }
  }
}

class RiskQuery {
 public:
  RiskQuery(const config::Backend& backend, std::string_view trace_id,
            std::chrono::milliseconds timeout)
      : backend_(backend),
        timeout_(std::max(timeout, std::chrono::milliseconds(1))),
        deadline_(Clock::now() + timeout_),
        prefix_(Cat("cannot evaluate the risk of trace ", trace_id.substr(0, 64), ": ")) {}

  absl::StatusOr<double> Run(const std::string& sql, const std::string& trace_id) {
    if (absl::Status connected = Connect(); !connected.ok()) {
      return connected;
    }
    const char* values[] = {trace_id.c_str()};
    if (PQsendQueryParams(conn_.get(), sql.c_str(), 1, nullptr, values, nullptr, nullptr, 0) != 1) {
      return Unavailable(Cat("sending the risk query failed: ", LibpqError()));
    }
    for (;;) {
      const int flushed = PQflush(conn_.get());
      if (flushed < 0) {
        return Unavailable(Cat("sending the risk query failed: ", LibpqError()));
      }
      if (flushed == 0) {
        break;
      }
      if (!WaitSocket(conn_.get(), POLLOUT | POLLIN, deadline_)) {
        return TimedOut("running the risk query");
      }
      if (PQconsumeInput(conn_.get()) != 1) {
        return Unavailable(Cat("the risk query failed: ", LibpqError()));
      }
    }
    Result tuples;
    std::string failure;
    for (;;) {
      while (PQisBusy(conn_.get()) == 1) {
        if (!WaitSocket(conn_.get(), POLLIN, deadline_)) {
          return TimedOut("running the risk query");
        }
        if (PQconsumeInput(conn_.get()) != 1) {
          return Unavailable(Cat("the risk query failed: ", LibpqError()));
        }
      }
      Result result(PQgetResult(conn_.get()));
      if (result == nullptr) {
        break;
      }
      const ExecStatusType status = PQresultStatus(result.get());
      if (status == PGRES_TUPLES_OK && tuples == nullptr) {
        tuples = std::move(result);
      } else if (status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR ||
                 status == PGRES_BAD_RESPONSE) {
        failure = Clean(PQresultErrorMessage(result.get()), backend_.password);
        if (failure.empty()) {
          failure = PQresStatus(status);
        }
      } else if (status != PGRES_TUPLES_OK) {
        failure =
            Cat("the risk query is not a query that returns rows (", PQresStatus(status), ")");
      }
    }
    if (!failure.empty()) {
      return Unavailable(Cat("the risk query failed: ", failure));
    }
    if (tuples == nullptr) {
      return Unavailable("the risk query returned no result");
    }
    return RiskOf(tuples.get());
  }

 private:
  absl::Status Connect() {
    const std::string port = Cat(backend_.port);
    // libpq counts whole seconds (at least 2); the deadline below is what really bounds it.
    const std::string connect_timeout = Cat(std::max<int64_t>(2, (timeout_.count() + 999) / 1000));
    std::string options = Cat("-c statement_timeout=", timeout_.count());
    if (backend_.read_only) {
      options += " -c default_transaction_read_only=on";
    }
    // `require` encrypts without checking the certificate, as the gateway's own connections
    // do (libpq verifies anyway should ~/.postgresql/root.crt exist: stricter, never weaker).
    std::string root_cert;
    if (backend_.tls == config::BackendTlsMode::kVerifyFull) {
      root_cert = backend_.ca_file.empty() ? SystemCaFile() : backend_.ca_file;
    }
    std::vector<const char*> keys = {"host",
                                     "port",
                                     "dbname",
                                     "user",
                                     "password",
                                     "sslmode",
                                     "gssencmode",
                                     "options",
                                     "connect_timeout",
                                     "application_name",
                                     "client_encoding"};
    std::vector<const char*> values = {backend_.host.c_str(),
                                       port.c_str(),
                                       backend_.database.c_str(),
                                       backend_.user.c_str(),
                                       backend_.password.c_str(),
                                       SslMode(backend_.tls).data(),
                                       "disable",
                                       options.c_str(),
                                       connect_timeout.c_str(),
                                       "tracegate-risk",
                                       "UTF8"};
    if (!root_cert.empty()) {
      keys.push_back("sslrootcert");
      values.push_back(root_cert.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    conn_.reset(PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/0));
    if (conn_ == nullptr) {
      return Unavailable("libpq could not allocate a connection");
    }
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;
    while (PQstatus(conn_.get()) != CONNECTION_BAD) {
      if (state == PGRES_POLLING_OK) {
        if (PQsetnonblocking(conn_.get(), 1) != 0) {
          return Unavailable(Cat("connecting to the backend failed: ", LibpqError()));
        }
        return absl::OkStatus();
      }
      if (state == PGRES_POLLING_FAILED) {
        break;
      }
      if (!WaitSocket(conn_.get(), state == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline_)) {
        return TimedOut("connecting to the backend");
      }
      state = PQconnectPoll(conn_.get());
    }
    return Unavailable(Cat("connecting to the backend failed: ", LibpqError()));
  }

  absl::StatusOr<double> RiskOf(const PGresult* result) const {
    const int rows = PQntuples(result);
    const int columns = PQnfields(result);
    if (rows != 1) {
      return absl::FailedPreconditionError(
          Cat(prefix_, "the risk query returned ", rows, " rows (expected exactly one)"));
    }
    if (columns != 1) {
      return absl::FailedPreconditionError(
          Cat(prefix_, "the risk query returned ", columns, " columns (expected exactly one)"));
    }
    if (PQgetisnull(result, 0, 0) == 1) {
      return absl::FailedPreconditionError(
          Cat(prefix_, "the risk query returned NULL, which is not a number"));
    }
    const std::string_view text(PQgetvalue(result, 0, 0), PQgetlength(result, 0, 0));
    double risk = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), risk);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
        !std::isfinite(risk)) {
      return absl::FailedPreconditionError(Cat(prefix_, "the risk query returned \"",
                                               Clean(text.substr(0, 64), backend_.password),
                                               "\", which is not a number"));
    }
    return risk;
  }

  std::string LibpqError() const {
    std::string text = Clean(PQerrorMessage(conn_.get()), backend_.password);
    return text.empty() ? std::string("libpq gave no reason") : text;
  }

  absl::Status Unavailable(std::string_view why) const {
    return absl::UnavailableError(Cat(prefix_, why));
  }

  absl::Status TimedOut(std::string_view what) const {
    return Unavailable(Cat(what, " timed out after ", timeout_.count(), " ms"));
  }

  const config::Backend& backend_;
  const std::chrono::milliseconds timeout_;
  const Clock::time_point deadline_;
  const std::string prefix_;
  Conn conn_;
};

}  // namespace

absl::StatusOr<double> QueryRisk(const config::Backend& backend, std::string_view sql,
                                 std::string_view trace_id, std::chrono::milliseconds timeout) {
  // libpq takes C strings: a NUL would cut the trace id short and ask about another trace.
  if (trace_id.find('\0') != std::string_view::npos || sql.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        Cat("cannot evaluate the risk of a trace: the ",
            sql.find('\0') != std::string_view::npos ? "risk query" : "trace id",
            " contains a NUL byte"));
  }
  return RiskQuery(backend, trace_id, timeout).Run(std::string(sql), std::string(trace_id));
}

}  // namespace tracegate::approvals
