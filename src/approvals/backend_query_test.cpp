// RowsToJson on hand-built rows; QueryBackend against a fake PostgreSQL on a
// local socket (risk_test.cpp's approach, with typed columns and a streamed answer): what it
// sends, the rows it reads, its caps, its deadline and its errors.

#include "approvals/backend_query.h"

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
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "approvals/risk.h"
#include "common/status.h"

namespace tracegate::approvals {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;

using Row = std::vector<std::optional<std::string>>;

constexpr uint32_t kText = 25;
constexpr uint32_t kInt4 = 23;
constexpr const char* kPassword = "s3cret-fetch-pw";
constexpr const char* kSql = "select * from spans where trace_id = $1";
constexpr const char* kPrefix = "cannot fetch trace t1: ";

// ---- RowsToJson ---------------------------------------------------------------------------------

QueryRows OneColumn(uint32_t type, std::optional<std::string> value, std::string name = "v") {
  return QueryRows{.columns = {std::move(name)}, .types = {type}, .rows = {{std::move(value)}}};
}

TEST(RowsToJson, EachTypeBecomesItsJsonValue) {
  struct Case {
    uint32_t type;
    std::optional<std::string> text;
    std::string json;  // the value in {"v": ...}
  };
  const std::vector<Case> cases = {
      {16, "t", "true"},
      {16, "f", "false"},
      {21, "-32768", "-32768"},
      {23, "42", "42"},
      {20, "9223372036854775807", "9223372036854775807"},  // exact, though no double holds it
      {26, "4294967295", "4294967295"},
      {700, "1.5", "1.5"},
      {701, "-2.5e-05", "-2.5e-05"},
      {701, "1e+308", "1e+308"},
      {701, "0.10000000000000001", "0.10000000000000001"},  // extra_float_digits=3 spelling
      {701, "NaN", "\"NaN\""},
      {701, "Infinity", "\"Infinity\""},
      {700, "-Infinity", "\"-Infinity\""},
      {1700, "12.50", "12.50"},
      {1700, "0.1", "0.1"},
      {1700, "-0.000001", "-0.000001"},
      {1700, "123456789012345678", "\"123456789012345678\""},  // beyond 2^53
      {1700, "12345678901234567890123.45", "\"12345678901234567890123.45\""},
      {1700, "0.1000000000000000055511151231257827", "\"0.1000000000000000055511151231257827\""},
      {1700, "NaN", "\"NaN\""},
      {1700, "Infinity", "\"Infinity\""},
      {114, R"({"b": [1, 2.50], "a": 1, "a": 2})", R"({"b": [1, 2.50], "a": 1, "a": 2})"},
      {3802, R"({"n": 123456789012345678901234567890})",
       R"({"n": 123456789012345678901234567890})"},
      {3802, "null", "null"},
      {kText, "plain", "\"plain\""},
      {kText, "quote \" backslash \\ newline \n tab \t",
       R"("quote \" backslash \\ newline \n tab \t")"},
      {kText, "caf\xc3\xa9 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\""},
      {kText, "", "\"\""},
      {1082, "2024-05-01", "\"2024-05-01\""},  // date: a string
      {16, "yes", "\"yes\""},                  // not what the type promises: kept as a string
      {23, "007", "\"007\""},
      {23, "12a", "\"12a\""},
      {701, "1e999", "\"1e999\""},
      {kText, std::nullopt, "null"},
      {3802, std::nullopt, "null"},
      {23, std::nullopt, "null"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.type << " " << c.text.value_or("NULL"));
    absl::StatusOr<std::string> json = RowsToJson(OneColumn(c.type, c.text));
    ASSERT_TRUE(json.ok()) << json.status();
    EXPECT_EQ(*json, "[{\"v\":" + c.json + "}]");
    EXPECT_TRUE(nlohmann::json::accept(*json));
  }
}

TEST(RowsToJson, RowsAndColumnsKeepTheirOrder) {
  const QueryRows rows{.columns = {"zeta", "alpha", "mid"},
                       .types = {kInt4, kText, 16},
                       .rows = {{"1", "a", "t"}, {"2", std::nullopt, std::nullopt}}};
  absl::StatusOr<std::string> json = RowsToJson(rows);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(*json, R"([{"zeta":1,"alpha":"a","mid":true},{"zeta":2,"alpha":null,"mid":null}])");
}

TEST(RowsToJson, NoRowsIsAnEmptyArray) {
  absl::StatusOr<std::string> json = RowsToJson(QueryRows{.columns = {"a"}, .types = {kText}});
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(*json, "[]");
}

TEST(RowsToJson, RepeatedColumnNamesGetSuffixesThatHideNoOtherColumn) {
  struct Case {
    std::vector<std::string> columns;
    std::string json;
  };
  const std::vector<Case> cases = {
      {{"a", "a", "a"}, R"([{"a":"0","a_2":"1","a_3":"2"}])"},
      {{"a", "b", "a"}, R"([{"a":"0","b":"1","a_2":"2"}])"},
      {{"a", "a", "a_2"}, R"([{"a":"0","a_3":"1","a_2":"2"}])"},  // a_2 is a real column
      {{"a_2", "a", "a"}, R"([{"a_2":"0","a":"1","a_3":"2"}])"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    QueryRows rows{.columns = c.columns, .types = {kText, kText, kText}, .rows = {{"0", "1", "2"}}};
    absl::StatusOr<std::string> json = RowsToJson(rows);
    ASSERT_TRUE(json.ok()) << json.status();
    EXPECT_EQ(*json, c.json);
  }
}

TEST(RowsToJson, InvalidUtf8IsRefusedNeverReplaced) {
  for (const std::string& bad : std::vector<std::string>{
           "\xff", "ab\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
           "\xf8\x88\x80\x80\x80", std::string("ok\x80")}) {
    SCOPED_TRACE(::testing::PrintToString(bad));
    absl::StatusOr<std::string> json = RowsToJson(OneColumn(kText, bad, "payload"));
    ASSERT_FALSE(json.ok());
    EXPECT_EQ(json.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(MessageOf(json.status()),
                HasSubstr("the value in row 1, column \"payload\" is not valid UTF-8"));
    // A number column checks too: its text goes out as is.
    EXPECT_FALSE(RowsToJson(OneColumn(1700, bad)).ok());
  }
  absl::StatusOr<std::string> name = RowsToJson(OneColumn(kText, "x", "bad\xff"));
  ASSERT_FALSE(name.ok());
  EXPECT_EQ(name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(MessageOf(name.status()), HasSubstr("the name of column 1 is not valid UTF-8"));
}

TEST(RowsToJson, AJsonValueThatDoesNotParseIsAnError) {
  // 1e400 is a valid jsonb number (numeric) that nlohmann cannot read: refused, not rounded.
  for (const std::string& bad :
       std::vector<std::string>{"{", "", "{\"a\":1} x", "NaN", "{\"a\": 1e400}"}) {
    SCOPED_TRACE(bad);
    absl::StatusOr<std::string> json = RowsToJson(OneColumn(3802, bad, "doc"));
    ASSERT_FALSE(json.ok());
    EXPECT_EQ(json.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(MessageOf(json.status()), HasSubstr("column \"doc\" is not valid JSON"));
  }
}

TEST(RowsToJson, RowsUnlikeTheirColumnsAreAnError) {
  EXPECT_FALSE(RowsToJson(QueryRows{.columns = {"a"}, .types = {}, .rows = {}}).ok());
  EXPECT_FALSE(
      RowsToJson(QueryRows{.columns = {"a"}, .types = {kText}, .rows = {{"1", "2"}}}).ok());
}

// ---- QueryBackend against a fake PostgreSQL ----------------------------------------------------

struct Column {
  std::string name;
  uint32_t type = kText;
};

// What the fake server does with the one connection it serves.
struct Script {
  enum class Mode {
    kSilent,   // never accepts: the kernel completes the connect, nothing answers
    kHang,     // authenticates, then never answers the query
    kCommand,  // authenticates, then answers with a command tag and no rows (an UPDATE)
    kAnswer,   // authenticates, then answers with `columns` and `rows` (or `error`)
  };
  Mode mode = Mode::kAnswer;
  std::vector<Column> columns = {{"trace_id"}, {"n", kInt4}};
  std::vector<Row> rows;
  size_t repeat = 1;  // `rows` are sent this many times over
  std::string error;  // an ErrorResponse message instead of rows
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
    Finish();
    return received_;
  }

  // Whether the whole answer went out (false: the client stopped reading and hung up).
  bool sent_everything() {
    Finish();
    return sent_everything_;
  }

 private:
  void Finish() {
    if (thread_.joinable()) {
      thread_.join();
    }
  }

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

  // False once the client has gone (MSG_NOSIGNAL: no SIGPIPE for the test process).
  static bool Send(int fd, const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  std::string DataRows() const {
    std::string out;
    for (const Row& row : script_.rows) {
      std::string data;
      PutInt16(data, static_cast<int16_t>(row.size()));
      for (const auto& value : row) {
        PutInt32(data, value.has_value() ? static_cast<int32_t>(value->size()) : -1);
        data += value.value_or("");
      }
      out += Message('D', data);
    }
    return out;
  }

  bool Answer(int fd) const {
    if (script_.mode == Script::Mode::kCommand) {
      return Send(fd, Message('1', "") + Message('2', "") + Message('n', "") +
                          Message('C', std::string("UPDATE 0") + '\0') + Message('Z', "I"));
    }
    if (!script_.error.empty()) {
      return Send(fd, ErrorResponse("ERROR", "42P01", script_.error) + Message('Z', "I"));
    }
    std::string description;
    PutInt16(description, static_cast<int16_t>(script_.columns.size()));
    for (const Column& column : script_.columns) {
      description += column.name + '\0';
      PutInt32(description, 0);
      PutInt16(description, 0);
      PutInt32(description, static_cast<int32_t>(column.type));
      PutInt16(description, -1);
      PutInt32(description, -1);
      PutInt16(description, 0);
    }
    if (!Send(fd, Message('1', "") + Message('2', "") + Message('T', description))) {
      return false;
    }
    const std::string rows = DataRows();
    for (size_t i = 0; i < script_.repeat; ++i) {
      if (!Send(fd, rows)) {
        return false;
      }
    }
    const size_t count = script_.rows.size() * script_.repeat;
    return Send(fd, Message('C', "SELECT " + std::to_string(count) + '\0') + Message('Z', "I"));
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
      std::string ok;
      PutInt32(ok, 0);
      Send(fd, Message('R', ok) + Message('Z', "I"));
      // Parse, Bind, Describe, Execute, then Sync: answer once the Sync is in.
      for (;;) {
        std::string header;
        if (!ReadExactly(fd, 5, header) || !ReadExactly(fd, Int32At(header, 1) - 4, header)) {
          break;
        }
        if (header[0] == 'S' && script_.mode != Script::Mode::kHang) {
          sent_everything_ = Answer(fd);
        }
        if (header[0] == 'X') {
          break;
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
  bool sent_everything_ = false;
};

config::Backend BackendAt(uint16_t port) {
  config::Backend backend;
  backend.host = "127.0.0.1";
  backend.port = port;
  backend.database = "traces";
  backend.user = "tg_fetch";
  backend.password = kPassword;
  return backend;
}

absl::StatusOr<QueryRows> Fetch(uint16_t port, std::chrono::milliseconds timeout = 5s,
                                QueryLimits limits = {}) {
  return QueryBackend(BackendAt(port), kSql, "t1", timeout, "fetch", kPrefix, limits);
}

TEST(QueryBackend, ReadsTheRowsAndSendsTheTraceIdAsTheParameter) {
  FakePostgres server(Script{.rows = {{"t1", "1"}, {"t1", std::nullopt}}});
  absl::StatusOr<QueryRows> rows = Fetch(server.port());
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->columns, (std::vector<std::string>{"trace_id", "n"}));
  EXPECT_EQ(rows->types, (std::vector<uint32_t>{kText, kInt4}));
  EXPECT_EQ(rows->rows, (std::vector<Row>{{"t1", "1"}, {"t1", std::nullopt}}));
  EXPECT_EQ(rows->bytes, 5u);
  const std::string sent = server.received();
  EXPECT_THAT(sent, HasSubstr(kSql));
  EXPECT_THAT(sent, HasSubstr(std::string("user\0tg_fetch", 13)));
  EXPECT_THAT(sent, HasSubstr(std::string("application_name\0tracegate-fetch\0", 33)));
  EXPECT_THAT(sent, HasSubstr("default_transaction_read_only=on"));
  EXPECT_THAT(sent, HasSubstr("statement_timeout=5000"));
  EXPECT_THAT(sent, HasSubstr(std::string("\0\0\0\x02t1", 6)));  // $1: length 2, "t1"
}

TEST(QueryBackend, NoRowsStillNameTheColumns) {
  FakePostgres server(Script{.rows = {}});
  absl::StatusOr<QueryRows> rows = Fetch(server.port());
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->columns, (std::vector<std::string>{"trace_id", "n"}));
  EXPECT_TRUE(rows->rows.empty());
}

TEST(QueryBackend, AWritableBackendIsNotMadeReadOnly) {
  FakePostgres server(Script{.rows = {{"t1", "1"}}});
  config::Backend backend = BackendAt(server.port());
  backend.read_only = false;
  ASSERT_TRUE(QueryBackend(backend, kSql, "t1", 5s, "fetch", kPrefix).ok());
  EXPECT_THAT(server.received(), Not(HasSubstr("default_transaction_read_only")));
}

TEST(QueryBackend, RowsUpToTheCapsAreRead) {
  FakePostgres server(Script{.rows = {{"t1", "1234"}}, .repeat = 10});  // 6 bytes a row
  absl::StatusOr<QueryRows> rows =
      Fetch(server.port(), 5s, QueryLimits{.max_rows = 10, .max_bytes = 60});
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->rows.size(), 10u);
  EXPECT_EQ(rows->bytes, 60u);
}

TEST(QueryBackend, MoreRowsThanTheCapStopReading) {
  // 2 million rows (~40 MB): far more than the socket buffers, so the server can only send it
  // all if the client reads it all.
  FakePostgres server(Script{.rows = {{"t1", "1"}}, .repeat = 2'000'000});
  absl::StatusOr<QueryRows> rows = Fetch(server.port(), 5s, QueryLimits{.max_rows = 10});
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(MessageOf(rows.status()),
            "cannot fetch trace t1: the fetch query returned more than the limit of 10 rows");
  EXPECT_FALSE(server.sent_everything());
}

TEST(QueryBackend, MoreBytesThanTheCapStopReading) {
  const std::string big(1000, 'x');
  FakePostgres server(Script{.rows = {{"t1", big}}, .repeat = 100'000});  // ~100 MB
  absl::StatusOr<QueryRows> rows = Fetch(server.port(), 5s, QueryLimits{.max_bytes = 2500});
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(MessageOf(rows.status()),
            "cannot fetch trace t1: the fetch query returned more than the limit of 2500 bytes");
  EXPECT_FALSE(server.sent_everything());
}

TEST(QueryBackend, AStatementWithoutRowsIsAFailedPrecondition) {
  FakePostgres server(Script{.mode = Script::Mode::kCommand});
  absl::StatusOr<QueryRows> rows = Fetch(server.port());
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(MessageOf(rows.status()),
            "cannot fetch trace t1: the fetch query is not a query that returns rows "
            "(PGRES_COMMAND_OK)");
}

TEST(QueryBackend, AQueryErrorIsUnavailable) {
  FakePostgres server(Script{.error = "relation \"spans\" does not exist"});
  absl::StatusOr<QueryRows> rows = Fetch(server.port());
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(MessageOf(rows.status()),
            "cannot fetch trace t1: the fetch query failed: ERROR:  relation \"spans\" does not "
            "exist");
}

TEST(QueryBackend, ARefusedConnectionIsUnavailableAndNeverShowsThePassword) {
  uint16_t port = 0;
  {
    FakePostgres closed(Script{.mode = Script::Mode::kSilent});
    port = closed.port();
  }  // nothing listens there any more
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<QueryRows> rows = Fetch(port, 2s);
  ASSERT_FALSE(rows.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(MessageOf(rows.status()),
              StartsWith("cannot fetch trace t1: connecting to the backend failed: "));
  EXPECT_THAT(MessageOf(rows.status()), Not(HasSubstr(kPassword)));
  EXPECT_THAT(MessageOf(rows.status()), Not(HasSubstr("\n")));
}

TEST(QueryBackend, ASilentServerTimesOutOnTime) {
  FakePostgres server(Script{.mode = Script::Mode::kSilent});
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<QueryRows> rows = Fetch(server.port(), 300ms);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(MessageOf(rows.status()),
            "cannot fetch trace t1: connecting to the backend timed out after 300 ms");
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

TEST(QueryBackend, AQueryThatNeverAnswersTimesOutOnTime) {
  FakePostgres server(Script{.mode = Script::Mode::kHang});
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<QueryRows> rows = Fetch(server.port(), 300ms);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(MessageOf(rows.status()),
            "cannot fetch trace t1: running the fetch query timed out after 300 ms");
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

TEST(QueryBackend, ANulInTheSqlOrTraceIdIsRefusedBeforeConnecting) {
  absl::StatusOr<QueryRows> id = QueryBackend(BackendAt(1), kSql, std::string_view("t1\0t2", 5), 1s,
                                              "fetch", "cannot fetch a trace: ");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MessageOf(id.status()), "cannot fetch a trace: the trace id contains a NUL byte");
  absl::StatusOr<QueryRows> sql =
      QueryBackend(BackendAt(1), std::string_view("select 1\0", 9), "t1", 1s, "fetch", kPrefix);
  ASSERT_FALSE(sql.ok());
  EXPECT_EQ(sql.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MessageOf(sql.status()), "cannot fetch trace t1: the fetch query contains a NUL byte");
}

// QueryRisk goes through QueryBackend but keeps its own rules: a statement without rows is a
// failed risk query (Unavailable), as it always was.
TEST(QueryBackend, QueryRiskStillCallsAStatementWithoutRowsUnavailable) {
  FakePostgres server(Script{.mode = Script::Mode::kCommand});
  absl::StatusOr<double> risk = QueryRisk(BackendAt(server.port()), kSql, "t1", 5s);
  ASSERT_FALSE(risk.ok());
  EXPECT_EQ(risk.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(MessageOf(risk.status()),
            "cannot evaluate the risk of trace t1: the risk query failed: the risk query is not a "
            "query that returns rows (PGRES_COMMAND_OK)");
  EXPECT_THAT(server.received(), HasSubstr(std::string("application_name\0tracegate-risk\0", 32)));
}

}  // namespace
}  // namespace tracegate::approvals
