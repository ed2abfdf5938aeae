#include "approvals/backend_query.h"

#include <libpq-fe.h>
#include <openssl/x509.h>
#include <poll.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "common/status.h"
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

// One call of QueryBackend: a connection, the query, its rows.
class BackendQuery {
 public:
  BackendQuery(const config::Backend& backend, std::chrono::milliseconds timeout,
               std::string_view purpose, std::string_view prefix, QueryLimits limits)
      : backend_(backend),
        timeout_(std::max(timeout, std::chrono::milliseconds(1))),
        deadline_(Clock::now() + timeout_),
        purpose_(purpose),
        query_(Cat("the ", purpose, " query")),
        prefix_(prefix),
        limits_(limits) {}

  absl::StatusOr<QueryRows> Run(const std::string& sql, const std::string& trace_id) {
    TG_RETURN_IF_ERROR(Connect());
    TG_RETURN_IF_ERROR(Send(sql, trace_id));
    return ReadRows();
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
    const std::string application_name = Cat("tracegate-", purpose_);
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
                                       application_name.c_str(),
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

  // Sends the query in single-row mode, so that rows are read (and counted against the
  // limits) as they arrive rather than after libpq has buffered the whole result.
  absl::Status Send(const std::string& sql, const std::string& trace_id) {
    const char* values[] = {trace_id.c_str()};
    if (PQsendQueryParams(conn_.get(), sql.c_str(), 1, nullptr, values, nullptr, nullptr, 0) != 1 ||
        PQsetSingleRowMode(conn_.get()) != 1) {
      return Unavailable(Cat("sending ", query_, " failed: ", LibpqError()));
    }
    for (;;) {
      const int flushed = PQflush(conn_.get());
      if (flushed < 0) {
        return Unavailable(Cat("sending ", query_, " failed: ", LibpqError()));
      }
      if (flushed == 0) {
        return absl::OkStatus();
      }
      if (!WaitSocket(conn_.get(), POLLOUT | POLLIN, deadline_)) {
        return TimedOut(Cat("running ", query_));
      }
      if (PQconsumeInput(conn_.get()) != 1) {
        return Unavailable(Cat(query_, " failed: ", LibpqError()));
      }
    }
  }

  // Until PQgetResult would not block.
  absl::Status AwaitResult() {
    while (PQisBusy(conn_.get()) == 1) {
      if (!WaitSocket(conn_.get(), POLLIN, deadline_)) {
        return TimedOut(Cat("running ", query_));
      }
      if (PQconsumeInput(conn_.get()) != 1) {
        return Unavailable(Cat(query_, " failed: ", LibpqError()));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<QueryRows> ReadRows() {
    QueryRows out;
    bool described = false;
    std::string failure;
    for (;;) {
      TG_RETURN_IF_ERROR(AwaitResult());
      Result result(PQgetResult(conn_.get()));
      if (result == nullptr) {
        break;
      }
      const ExecStatusType status = PQresultStatus(result.get());
      if (status == PGRES_SINGLE_TUPLE || status == PGRES_TUPLES_OK) {
        if (!described) {
          for (int column = 0; column < PQnfields(result.get()); ++column) {
            out.columns.emplace_back(PQfname(result.get(), column));
            out.types.push_back(PQftype(result.get(), column));
          }
          described = true;
        }
        TG_RETURN_IF_ERROR(Take(result.get(), out));
      } else if (status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR ||
                 status == PGRES_BAD_RESPONSE) {
        failure = CleanBackendText(PQresultErrorMessage(result.get()), backend_.password);
        if (failure.empty()) {
          failure = PQresStatus(status);
        }
      } else {
        // Not drained: a COPY would never end, and the connection is closed anyway.
        return absl::FailedPreconditionError(
            Cat(prefix_, query_, " is not a query that returns rows (", PQresStatus(status), ")"));
      }
    }
    if (!failure.empty()) {
      return Unavailable(Cat(query_, " failed: ", failure));
    }
    if (!described) {
      return Unavailable(Cat(query_, " returned no result"));
    }
    return out;
  }

  // Appends the result's rows (one in single-row mode, none in the final result) to `out`.
  absl::Status Take(const PGresult* result, QueryRows& out) const {
    const int columns = PQnfields(result);
    for (int row = 0; row < PQntuples(result); ++row) {
      if (limits_.max_rows != 0 && out.rows.size() >= limits_.max_rows) {
        return absl::ResourceExhaustedError(
            Cat(prefix_, query_, " returned more than the limit of ", limits_.max_rows, " rows"));
      }
      uint64_t bytes = 0;
      for (int column = 0; column < columns; ++column) {
        bytes += static_cast<uint64_t>(PQgetlength(result, row, column));
      }
      if (limits_.max_bytes != 0 && out.bytes + bytes > limits_.max_bytes) {
        return absl::ResourceExhaustedError(
            Cat(prefix_, query_, " returned more than the limit of ", limits_.max_bytes, " bytes"));
      }
      out.bytes += bytes;
      std::vector<std::optional<std::string>>& values = out.rows.emplace_back();
      values.reserve(static_cast<size_t>(columns));
      for (int column = 0; column < columns; ++column) {
        if (PQgetisnull(result, row, column) == 1) {
          values.emplace_back(std::nullopt);
        } else {
          values.emplace_back(std::in_place, PQgetvalue(result, row, column),
                              static_cast<size_t>(PQgetlength(result, row, column)));
        }
      }
    }
    return absl::OkStatus();
  }

  std::string LibpqError() const {
    std::string text = CleanBackendText(PQerrorMessage(conn_.get()), backend_.password);
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
  const std::string_view purpose_;
  const std::string query_;  // "the <purpose> query"
  const std::string_view prefix_;
  const QueryLimits limits_;
  Conn conn_;
};

// ---- rows as JSON ------------------------------------------------------------------------------

constexpr uint32_t kBoolOid = 16;
constexpr uint32_t kInt8Oid = 20;
constexpr uint32_t kInt2Oid = 21;
constexpr uint32_t kInt4Oid = 23;
constexpr uint32_t kOidOid = 26;
constexpr uint32_t kJsonOid = 114;
constexpr uint32_t kFloat4Oid = 700;
constexpr uint32_t kFloat8Oid = 701;
constexpr uint32_t kNumericOid = 1700;
constexpr uint32_t kJsonbOid = 3802;

// RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xBF;  // the range of the second byte
    if (byte >= 0xC2 && byte <= 0xDF) {
      length = 2;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
      length = 3;
      low = byte == 0xE0 ? 0xA0 : 0x80;
      high = byte == 0xED ? 0x9F : 0xBF;
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      length = 4;
      low = byte == 0xF0 ? 0x90 : 0x80;
      high = byte == 0xF4 ? 0x8F : 0xBF;
    } else {
      return false;
    }
    if (text.size() - i < length) {
      return false;
    }
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if (next < (k == 1 ? low : 0x80) || next > (k == 1 ? high : 0xBF)) {
        return false;
      }
    }
    i += length;
  }
  return true;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// RFC 8259's number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool IsJsonNumber(std::string_view text, bool integer_only) {
  size_t i = 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < text.size() && IsDigit(text[i])) {
      ++i;
    }
    return i - start;
  };
  if (i < text.size() && text[i] == '-') {
    ++i;
  }
  const size_t start = i;
  const size_t whole = digits();
  if (whole == 0 || (whole > 1 && text[start] == '0')) {
    return false;
  }
  if (integer_only) {
    return i == text.size();
  }
  if (i < text.size() && text[i] == '.') {
    ++i;
    if (digits() == 0) {
      return false;
    }
  }
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
      ++i;
    }
    if (digits() == 0) {
      return false;
    }
  }
  return i == text.size();
}

// A decimal's value as significant digits × 10^exponent (no leading or trailing zeros; zero is
// empty digits), so that "12.50", "1.25e1" and "12.5" compare equal. nullopt: not a decimal.
struct Decimal {
  bool negative = false;
  std::string digits;
  int64_t exponent = 0;
  bool operator==(const Decimal&) const = default;
};

std::optional<Decimal> ParseDecimal(std::string_view text) {
  Decimal out;
  size_t i = 0;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) {
    out.negative = text[i] == '-';
    ++i;
  }
  int64_t fraction_digits = 0;
  bool point = false;
  for (; i < text.size() && (IsDigit(text[i]) || (text[i] == '.' && !point)); ++i) {
    if (text[i] == '.') {
      point = true;
    } else {
      out.digits += text[i];
      fraction_digits += point ? 1 : 0;
    }
  }
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    i += i < text.size() && text[i] == '+' ? 1 : 0;
    const auto [end, ec] =
        std::from_chars(text.data() + i, text.data() + text.size(), out.exponent);
    if (ec != std::errc() || end == text.data() + i) {
      return std::nullopt;
    }
    i = static_cast<size_t>(end - text.data());
  }
  if (i != text.size() || out.digits.empty() || out.exponent > (int64_t{1} << 40) ||
      out.exponent < -(int64_t{1} << 40)) {
    return std::nullopt;
  }
  out.exponent -= fraction_digits;
  const size_t first = out.digits.find_first_not_of('0');
  if (first == std::string::npos) {
    return Decimal{};  // zero, whatever its sign
  }
  out.digits.erase(0, first);
  while (out.digits.back() == '0') {
    out.digits.pop_back();
    ++out.exponent;
  }
  return out;
}

// The finite double `text` spells, if it spells one in full.
std::optional<double> FiniteDouble(std::string_view text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

// A numeric that a double holds to every digit shown: its value is that of the shortest text
// that reads back as the same double.
bool DoubleKeepsNumeric(std::string_view text) {
  const std::optional<double> value = FiniteDouble(text);
  if (!value.has_value()) {
    return false;
  }
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), *value);
  if (ec != std::errc()) {
    return false;
  }
  const std::optional<Decimal> original = ParseDecimal(text);
  return original.has_value() &&
         original == ParseDecimal(std::string_view(buffer, static_cast<size_t>(end - buffer)));
}

// A valid UTF-8 string as a JSON string (so the strict handler has nothing to object to).
std::string JsonString(std::string_view text) {
  return nlohmann::json(std::string(text))
      .dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::strict);
}

// Appends one non-NULL value, already known to be valid UTF-8.
absl::Status AppendValue(std::string& out, uint32_t type, std::string_view text) {
  switch (type) {
    case kJsonOid:
    case kJsonbOid:
      if (!nlohmann::json::accept(text)) {
        return absl::InvalidArgumentError("is not valid JSON");
      }
      out += text;
      return absl::OkStatus();
    case kBoolOid:
      if (text == "t" || text == "f") {
        out += text == "t" ? "true" : "false";
        return absl::OkStatus();
      }
      break;
    case kInt2Oid:
    case kInt4Oid:
    case kInt8Oid:
    case kOidOid:
      if (IsJsonNumber(text, /*integer_only=*/true)) {
        out += text;
        return absl::OkStatus();
      }
      break;
    case kFloat4Oid:
    case kFloat8Oid:
      if (IsJsonNumber(text, /*integer_only=*/false) && FiniteDouble(text).has_value()) {
        out += text;
        return absl::OkStatus();
      }
      break;
    case kNumericOid:
      if (IsJsonNumber(text, /*integer_only=*/false) && DoubleKeepsNumeric(text)) {
        out += text;
        return absl::OkStatus();
      }
      break;
    default:
      break;
  }
  out += JsonString(text);
  return absl::OkStatus();
}

// The JSON keys: a repeated name gets the first free "_2", "_3", ... (names the query itself
// returned are never free, so a suffixed key cannot hide a real column).
std::vector<std::string> ColumnKeys(const std::vector<std::string>& columns) {
  std::set<std::string, std::less<>> taken(columns.begin(), columns.end());
  std::set<std::string, std::less<>> used;
  std::vector<std::string> keys;
  keys.reserve(columns.size());
  for (const std::string& name : columns) {
    std::string key = name;
    for (int n = 2; used.contains(key) || (key != name && taken.contains(key)); ++n) {
      key = Cat(name, "_", n);
    }
    used.insert(key);
    keys.push_back(std::move(key));
  }
  return keys;
}

absl::StatusOr<std::string> WriteRowsAsJson(const QueryRows& rows) {
  if (rows.types.size() != rows.columns.size()) {
    return absl::InvalidArgumentError("the rows have a type count unlike their column count");
  }
  std::vector<std::string> keys = ColumnKeys(rows.columns);
  for (size_t column = 0; column < keys.size(); ++column) {
    if (!IsValidUtf8(keys[column])) {
      return absl::InvalidArgumentError(
          Cat("the name of column ", column + 1, " is not valid UTF-8"));
    }
    keys[column] = JsonString(keys[column]);
  }
  std::string out = "[";
  for (size_t row = 0; row < rows.rows.size(); ++row) {
    const auto& values = rows.rows[row];
    if (values.size() != keys.size()) {
      return absl::InvalidArgumentError(
          Cat("row ", row + 1, " has ", values.size(), " values for ", keys.size(), " columns"));
    }
    out += row == 0 ? "{" : ",{";
    for (size_t column = 0; column < keys.size(); ++column) {
      if (column != 0) {
        out += ',';
      }
      out += keys[column];
      out += ':';
      const std::optional<std::string>& value = values[column];
      absl::Status appended = absl::OkStatus();
      if (!value.has_value()) {
        out += "null";
      } else if (!IsValidUtf8(*value)) {
        appended = absl::InvalidArgumentError("is not valid UTF-8");
      } else {
        appended = AppendValue(out, rows.types[column], *value);
      }
      if (!appended.ok()) {
        return absl::InvalidArgumentError(
            Cat("the value in row ", row + 1, ", column ", keys[column], " ", MessageOf(appended)));
      }
    }
    out += '}';
  }
  out += ']';
  return out;
}

}  // namespace

absl::StatusOr<QueryRows> QueryBackend(const config::Backend& backend, std::string_view sql,
                                       std::string_view trace_id, std::chrono::milliseconds timeout,
                                       std::string_view purpose, std::string_view prefix,
                                       QueryLimits limits) {
  // libpq takes C strings: a NUL would cut the trace id short and ask about another trace.
  if (trace_id.find('\0') != std::string_view::npos || sql.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        Cat(prefix, "the ",
            sql.find('\0') != std::string_view::npos ? Cat(purpose, " query") : "trace id",
            " contains a NUL byte"));
  }
  return BackendQuery(backend, timeout, purpose, prefix, limits)
      .Run(std::string(sql), std::string(trace_id));
}

absl::StatusOr<std::string> RowsToJson(const QueryRows& rows) {
  try {
    return WriteRowsAsJson(rows);
  } catch (const nlohmann::json::exception& e) {
    // Cannot happen (every string is checked first); a bug here must not end the process.
    return absl::InternalError(Cat("the rows cannot be written as JSON: ", e.what()));
  }
}

std::string CleanBackendText(std::string_view text, std::string_view password) {
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

}  // namespace tracegate::approvals
