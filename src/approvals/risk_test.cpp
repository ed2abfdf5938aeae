// QueryRisk against a fake PostgreSQL on a local socket: what it sends, how it reads the
// answer, its deadline and its errors. The real server is driven by tests/test_approvals.py.

#include "approvals/risk.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace tracegate::approvals {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;

constexpr const char* kPassword = "s3cret-risk-pw";
constexpr const char* kSql = "select risk from trace_risk where trace_id = $1";

// What the fake server does with the one connection it serves.
struct Script {
  enum class Mode {
    kSilent,      // never accepts: the kernel completes the connect, nothing answers
    kRefuseAuth,  // answers the startup packet with `error`
    kAnswer,      // authenticates, then answers the query with `columns`/`rows` or `error`
  };
  Mode mode = Mode::kAnswer;
  std::vector<std::string> columns = {"risk"};
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::string error;  // an ErrorResponse message
};

void PutInt32(std::string& out, int32_t v) {
  const uint32_t u = htonl(static_cast<uint32_t>(v));
  out.append(reinterpret_cast<const char*>(&u), 4);
}

void PutInt16(std::string& out, int16_t v) {
  const uint16_t u = htons(static_cast<uint16_t>(v));
  out.append(reinterpret_cast<const char*>(&u), 2);
}

std::string Message(char type, const std::string& body) {
  std::string out(1, type);
  PutInt32(out, static_cast<int32_t>(body.size() + 4));
  return out + body;
}

std::string ErrorResponse(const std::string& severity, const std::string& code,
                          const std::string& text) {
  return Message('E', 'S' + severity + '\0' + 'V' + severity + '\0' + 'C' + code + '\0' + 'M' +
                          text + '\0' + '\0');
}

class FakePostgres {
 public:
  explicit FakePostgres(Script script) : script_(std::move(script)) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(listener_, 4) != 0 ||
        getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
    }
    port_ = ntohs(addr.sin_port);
    if (script_.mode != Script::Mode::kSilent) {
      thread_ = std::thread([this] { Serve(); });
    }
  }

  ~FakePostgres() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
    close(listener_);
  }

  uint16_t port() const { return port_; }
  // Everything the client sent, once it has gone (the startup packet and the query).
  std::string received() {
    if (thread_.joinable()) {
      thread_.join();
    }
    return received_;
  }

 private:
  bool Readable(int fd) {
    for (int waited = 0; waited < 10000 && !stop_; waited += 50) {
      pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
      if (poll(&p, 1, 50) > 0) {
        return true;
      }
    }
    return false;
  }

  bool ReadExactly(int fd, size_t n, std::string& out) {
    while (n > 0) {
      char buf[4096];
      if (!Readable(fd)) {
        return false;
      }
      const ssize_t got = read(fd, buf, std::min(n, sizeof(buf)));
      if (got <= 0) {
        return false;
      }
      out.append(buf, static_cast<size_t>(got));
      received_.append(buf, static_cast<size_t>(got));
      n -= static_cast<size_t>(got);
    }
    return true;
  }

  static int32_t Int32At(const std::string& s, size_t at) {
    uint32_t v = 0;
    memcpy(&v, s.data() + at, 4);
    return static_cast<int32_t>(ntohl(v));
  }

  void Send(int fd, const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = write(fd, bytes.data() + sent, bytes.size() - sent);
      if (n <= 0) {
        return;
      }
      sent += static_cast<size_t>(n);
    }
  }

  std::string Answer() const {
    if (!script_.error.empty()) {
      return ErrorResponse("ERROR", "42P01", script_.error) + Message('Z', "I");
    }
    std::string description;
    PutInt16(description, static_cast<int16_t>(script_.columns.size()));
    for (const std::string& name : script_.columns) {
      description += name + '\0';
      PutInt32(description, 0);
      PutInt16(description, 0);
      PutInt32(description, 1700);  // numeric
      PutInt16(description, -1);
      PutInt32(description, -1);
      PutInt16(description, 0);
    }
    std::string out = Message('1', "") + Message('2', "") + Message('T', description);
    for (const auto& row : script_.rows) {
      std::string data;
      PutInt16(data, static_cast<int16_t>(row.size()));
      for (const auto& value : row) {
        PutInt32(data, value.has_value() ? static_cast<int32_t>(value->size()) : -1);
        data += value.value_or("");
      }
      out += Message('D', data);
    }
    return out + Message('C', "SELECT " + std::to_string(script_.rows.size()) + '\0') +
           Message('Z', "I");
  }

  void Serve() {
    if (!Readable(listener_)) {
      return;
    }
    const int fd = accept(listener_, nullptr, nullptr);
    if (fd < 0) {
      return;
    }
    std::string startup;
    if (ReadExactly(fd, 4, startup) && ReadExactly(fd, Int32At(startup, 0) - 4, startup)) {
      if (script_.mode == Script::Mode::kRefuseAuth) {
        Send(fd, ErrorResponse("FATAL", "28P01", script_.error));
      } else {
        std::string ok;
        PutInt32(ok, 0);
        Send(fd, Message('R', ok) + Message('Z', "I"));
        // Parse, Bind, Describe, Execute, then Sync: answer once the Sync is in.
        for (;;) {
          std::string header;
          if (!ReadExactly(fd, 5, header) || !ReadExactly(fd, Int32At(header, 1) - 4, header)) {
            break;
          }
          if (header[0] == 'S') {
            Send(fd, Answer());
          }
          if (header[0] == 'X') {
            break;
          }
        }
      }
    }
    close(fd);
  }

  Script script_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::string received_;
};

config::Backend BackendAt(uint16_t port) {
  config::Backend backend;
  backend.host = "127.0.0.1";
  backend.port = port;
  backend.database = "traces";
  backend.user = "tg_risk";
  backend.password = kPassword;
  return backend;
}

Script Rows(std::vector<std::vector<std::optional<std::string>>> rows,
            std::vector<std::string> columns = {"risk"}) {
  return Script{
      .mode = Script::Mode::kAnswer, .columns = std::move(columns), .rows = std::move(rows)};
}

TEST(QueryRisk, ReadsTheOneValueAndSendsTheTraceIdAsTheParameter) {
  FakePostgres server(Rows({{"0.75"}}));
  absl::StatusOr<double> risk = QueryRisk(BackendAt(server.port()), kSql, "trace-42", 5s);
  ASSERT_TRUE(risk.ok()) << risk.status();
  EXPECT_DOUBLE_EQ(*risk, 0.75);
  const std::string sent = server.received();
  EXPECT_THAT(sent, HasSubstr(kSql));
  EXPECT_THAT(sent, HasSubstr("trace-42"));
  EXPECT_THAT(sent, HasSubstr(std::string("user\0tg_risk", 12)));
  EXPECT_THAT(sent, HasSubstr("default_transaction_read_only=on"));
  EXPECT_THAT(sent, HasSubstr("statement_timeout=5000"));
}

TEST(QueryRisk, NumbersInAnyPostgresSpellingParse) {
  for (const auto& [text, value] : std::vector<std::pair<std::string, double>>{
           {"0", 0}, {"-2.5", -2.5}, {"1e3", 1000}, {"0.800000000000000000000", 0.8}}) {
    SCOPED_TRACE(text);
    FakePostgres server(Rows({{text}}));
    absl::StatusOr<double> risk = QueryRisk(BackendAt(server.port()), kSql, "t", 5s);
    ASSERT_TRUE(risk.ok()) << risk.status();
    EXPECT_DOUBLE_EQ(*risk, value);
  }
}

TEST(QueryRisk, AnythingButOneFiniteNumberIsAFailedPrecondition) {
  struct Case {
    Script script;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {Rows({}), "the risk query returned 0 rows (expected exactly one)"},
      {Rows({{"0.1"}, {"0.9"}}), "the risk query returned 2 rows"},
      {Rows({{"0.1", "x"}}, {"risk", "note"}), "the risk query returned 2 columns"},
      {Rows({{std::nullopt}}), "the risk query returned NULL, which is not a number"},
      {Rows({{"high"}}), "the risk query returned \"high\", which is not a number"},
      {Rows({{"NaN"}}), "\"NaN\", which is not a number"},
      {Rows({{"Infinity"}}), "\"Infinity\", which is not a number"},
      {Rows({{""}}), "\"\", which is not a number"},
      {Rows({{"0.5 "}}), "which is not a number"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expected);
    FakePostgres server(c.script);
    absl::StatusOr<double> risk = QueryRisk(BackendAt(server.port()), kSql, "t1", 5s);
    ASSERT_FALSE(risk.ok());
    EXPECT_EQ(risk.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(MessageOf(risk.status()), StartsWith("cannot evaluate the risk of trace t1: "));
    EXPECT_THAT(MessageOf(risk.status()), HasSubstr(c.expected));
  }
}

TEST(QueryRisk, AQueryErrorIsUnavailable) {
  FakePostgres server(
      Script{.mode = Script::Mode::kAnswer, .error = "relation \"trace_risk\" does not exist"});
  absl::StatusOr<double> risk = QueryRisk(BackendAt(server.port()), kSql, "t1", 5s);
  ASSERT_FALSE(risk.ok());
  EXPECT_EQ(risk.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(MessageOf(risk.status()),
              HasSubstr("t1: the risk query failed: ERROR:  relation \"trace_risk\" does not "
                        "exist"));
}

TEST(QueryRisk, ARefusedConnectionIsUnavailableAndNeverShowsThePassword) {
  uint16_t port = 0;
  {
    FakePostgres closed(Script{.mode = Script::Mode::kSilent});
    port = closed.port();
  }  // nothing listens there any more
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<double> risk = QueryRisk(BackendAt(port), kSql, "t1", 2s);
  ASSERT_FALSE(risk.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(risk.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(MessageOf(risk.status()),
              StartsWith("cannot evaluate the risk of trace t1: connecting to the backend "
                         "failed: "));
  EXPECT_THAT(MessageOf(risk.status()), Not(HasSubstr(kPassword)));
  EXPECT_THAT(MessageOf(risk.status()), Not(HasSubstr("\n")));
}

TEST(QueryRisk, ASilentServerTimesOutOnTime) {
  FakePostgres server(Script{.mode = Script::Mode::kSilent});
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<double> risk = QueryRisk(BackendAt(server.port()), kSql, "t1", 300ms);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(risk.ok());
  EXPECT_EQ(risk.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(MessageOf(risk.status()),
              HasSubstr("t1: connecting to the backend timed out after 300 ms"));
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

TEST(QueryRisk, APasswordInAServersMessageIsCutOut) {
  FakePostgres server(Script{.mode = Script::Mode::kRefuseAuth,
                             .error = std::string("no such password: ") + kPassword});
  absl::StatusOr<double> risk = QueryRisk(BackendAt(server.port()), kSql, "t1", 5s);
  ASSERT_FALSE(risk.ok());
  EXPECT_EQ(risk.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(MessageOf(risk.status()), HasSubstr("no such password: [password]"));
  EXPECT_THAT(MessageOf(risk.status()), Not(HasSubstr(kPassword)));
}

TEST(QueryRisk, ANulInTheTraceIdIsRefusedBeforeConnecting) {
  absl::StatusOr<double> risk = QueryRisk(BackendAt(1), kSql, std::string_view("t1\0other", 8), 1s);
  ASSERT_FALSE(risk.ok());
  EXPECT_EQ(risk.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(MessageOf(risk.status()), HasSubstr("trace id contains a NUL byte"));
}

}  // namespace
}  // namespace tracegate::approvals
