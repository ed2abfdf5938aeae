#include "audit/replay.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/text_safety.h"
#include "pgwire/messages.h"

namespace tracegate::audit {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;
namespace pg = ::tracegate::pgwire;

pg::Bytes B(std::string_view s) {
  return pg::Bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

constexpr int64_t kStartUs = 1796083141123456;  // 2026-11-30T23:59:01.123456Z
constexpr uint32_t kInt4 = 23, kText = 25, kBytea = 17;

// ---- Frames, built with pgwire's encoders -----------------------------------------------------

struct Col {
  std::string name;
  uint32_t type_oid = kText;
  int16_t format = 0;
};

std::string RowDesc(const std::vector<Col>& cols) {
  pg::RowDescription msg;
  for (const Col& c : cols) {
    msg.fields.push_back(pg::FieldDescription{
        .name = c.name, .type_oid = c.type_oid, .type_size = -1, .format = c.format});
  }
  pg::Buffer out;
  pg::EncodeRowDescription(msg, out);
  return out;
}

std::string Row(const std::vector<std::optional<std::string>>& values) {
  pg::DataRow msg;
  for (const auto& v : values) {
    msg.values.push_back(v.has_value() ? std::optional<pg::Bytes>(B(*v)) : std::nullopt);
  }
  pg::Buffer out;
  pg::EncodeDataRow(msg, out);
  return out;
}

std::string Complete(std::string_view tag) {
  pg::Buffer out;
  pg::EncodeCommandComplete(tag, out);
  return out;
}

std::string Ready(char status = 'I') {
  pg::Buffer out;
  pg::EncodeReadyForQuery(pg::ReadyForQuery{status}, out);
  return out;
}

std::string Empty(char type) {
  pg::Buffer out;
  pg::EncodeEmpty(type, out);
  return out;
}

std::string Query(std::string_view sql) {
  pg::Buffer out;
  pg::EncodeQuery(sql, out);
  return out;
}

std::string Error(std::vector<std::pair<char, std::string>> fields) {
  pg::Buffer out;
  pg::EncodeErrorResponse(pg::ErrorFields{std::move(fields)}, out);
  return out;
}

std::string ParseMsg(std::string_view statement, std::string_view sql) {
  pg::Buffer out;
  pg::EncodeParse(pg::Parse{.statement = std::string(statement), .query = std::string(sql)}, out);
  return out;
}

std::string Describe(char kind, std::string_view name) {
  pg::Buffer out;
  pg::EncodeDescribe(pg::DescribeOrClose{.kind = kind, .name = std::string(name)}, out);
  return out;
}

std::string Execute(std::string_view portal, int32_t max_rows = 0) {
  pg::Buffer out;
  pg::EncodeExecute(pg::Execute{.portal = std::string(portal), .max_rows = max_rows}, out);
  return out;
}

std::string BindMsg(std::string_view portal, std::string_view statement,
                    std::vector<int16_t> param_formats,
                    const std::vector<std::optional<std::string>>& params,
                    std::vector<int16_t> result_formats) {
  pg::Bind msg{.portal = std::string(portal),
               .statement = std::string(statement),
               .param_formats = std::move(param_formats),
               .params = {},
               .result_formats = std::move(result_formats)};
  for (const auto& p : params) {
    msg.params.push_back(p.has_value() ? std::optional<pg::Bytes>(B(*p)) : std::nullopt);
  }
  pg::Buffer out;
  pg::EncodeBind(msg, out);
  return out;
}

// ---- Records ------------------------------------------------------------------------------------

// Feeds records of one session with increasing seq and time (1 ms apart unless told).
class Session {
 public:
  Session& Client(std::string frames) { return Add(RecordType::kClientFrames, std::move(frames)); }
  Session& Server(std::string frames) { return Add(RecordType::kServerFrames, std::move(frames)); }
  Session& Json(RecordType type, const json& payload) { return Add(type, payload.dump()); }
  Session& Add(RecordType type, std::string payload) {
    replay_.Add(Record{.seq = seq_++,
                       .time_us = time_us_,
                       .type = type,
                       .session = "s-1",
                       .prev_hash = {},
                       .payload = std::move(payload)});
    time_us_ = time_us_ > INT64_MAX - 1000 ? time_us_ : time_us_ + 1000;
    return *this;
  }
  Session& At(int64_t time_us) {
    time_us_ = time_us;
    return *this;
  }
  SessionReplay& replay() { return replay_; }

 private:
  SessionReplay replay_;
  uint64_t seq_ = 1;
  int64_t time_us_ = kStartUs;
};

json Steps(SessionReplay& replay) { return replay.ToJson()["steps"]; }

std::vector<std::string> Kinds(SessionReplay& replay) {
  std::vector<std::string> kinds;
  for (const json& step : Steps(replay)) {
    kinds.push_back(step["kind"].get<std::string>());
  }
  return kinds;
}

json StartPayload() {
  return json{{"session", "7f3a9c"},
              {"kind", "postgres"},
              {"connection", "pg-main"},
              {"user", "alice"},
              {"database", "traces"},
              {"grant_id", "g-42"},
              {"trace_id", "T"},
              {"principal",
               {{"issuer", "okta"},
                {"subject", "alice@example.com"},
                {"client_id", "agent-x"},
                {"groups", {"eng"}}}},
              {"rule", "agents"},
              {"masking_profile", "pii"},
              {"client_address", "10.0.0.5:51234"},
              {"tls", {{"version", "TLSv1.3"}, {"cipher", "TLS_AES_256_GCM_SHA384"}}},
              {"started_at", "2026-11-30T23:59:01.123456Z"}};
}

json EndPayload() {
  return json{{"session", "7f3a9c"},
              {"outcome", "completed"},
              {"reason", "client closed"},
              {"statements", 3},
              {"blocked", 1},
              {"rows", 12},
              {"bytes_to_client", 8123},
              {"bytes_from_client", 512},
              {"masked", {{"EMAIL", 3}}},
              {"masking_errors", 0},
              {"ended_at", "2026-11-30T23:59:09.000001Z"}};
}

// ---- CSV: what psql --csv prints ---------------------------------------------------------------
//
// The expected outputs below are what PostgreSQL 15's psql printed, byte for byte, for
//   psql -X -q --csv -c "<the SQL in each test>"
// against a scratch cluster. The server frames are what that server sends for the SQL.

TEST(SessionReplayCsvTest, QuotesLikePsql) {
  // select 'a,b' as "comma", 'say "hi"' as "quote", E'line1\nline2' as "newline",
  //   E'cr\rhere' as "cr", '  padded  ' as "spaces", '' as "empty", NULL as "null",
  //   'héllo ✓ 日本' as "unicode", '\.' as "backslash_dot", 'plain' as "a,b col",
  //   E'tab\there' as "tab", '"' as "q1", '\' as "bs", ';semi' as semi,
  //   'x' as "has ""quote"" name", '.' as dot, 'a''b' as apos
  std::vector<Col> cols;
  for (std::string name :
       {"comma", "quote", "newline", "cr", "spaces", "empty", "null", "unicode", "backslash_dot",
        "a,b col", "tab", "q1", "bs", "semi", "has \"quote\" name", "dot", "apos"}) {
    cols.push_back(Col{name});
  }
  Session s;
  s.Client(Query("select ..."))
      .Server(RowDesc(cols) +
              Row({"a,b", "say \"hi\"", "line1\nline2", "cr\rhere", "  padded  ", "", std::nullopt,
                   "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac", "\\.", "plain",
                   "tab\there", "\"", "\\", ";semi", "x", ".", "a'b"}) +
              Complete("SELECT 1") + Ready());
  EXPECT_EQ(s.replay().RenderCsv(),
            "comma,quote,newline,cr,spaces,empty,null,unicode,backslash_dot,\"a,b col\",tab,q1,"
            "bs,semi,\"has \"\"quote\"\" name\",dot,apos\n"
            "\"a,b\",\"say \"\"hi\"\"\",\"line1\nline2\",\"cr\rhere\",  padded  ,,,"
            "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac,\"\\.\",plain,tab\there,\"\"\"\","
            "\\,;semi,x,.,a'b\n");
}

TEST(SessionReplayCsvTest, BackslashDotHeaderAndNullVersusEmpty) {
  // select 1 as "\.", '\.' as x, NULL::text as n, '' as e
  Session s;
  s.Client(Query("select ..."))
      .Server(RowDesc({{"\\.", kInt4}, {"x"}, {"n"}, {"e"}}) + Row({"1", "\\.", std::nullopt, ""}) +
              Complete("SELECT 1") + Ready());
  EXPECT_EQ(s.replay().RenderCsv(), "\"\\.\",x,n,e\n1,\"\\.\",,\n");
}

TEST(SessionReplayCsvTest, SeveralStatementsLikePsql) {
  // select 1 as a, 2 as b; select 'x' as c where false; create temp table t(i int);
  // insert into t values (1),(2); select i from t; select;
  // select 1/(3-i) as x from generate_series(1,5) i; select 9 as never
  // psql prints no line for the commands (with -q), only the header for the empty result and
  // a bare newline for the one without columns, and nothing of the result the error cut.
  Session s;
  s.Client(Query("select 1 as a, ..."))
      .Server(RowDesc({{"a", kInt4}, {"b", kInt4}}) + Row({"1", "2"}) + Complete("SELECT 1") +
              RowDesc({{"c"}}) + Complete("SELECT 0") + Complete("CREATE TABLE") +
              Complete("INSERT 0 2") + RowDesc({{"i", kInt4}}) + Row({"1"}) + Row({"2"}) +
              Complete("SELECT 2") + RowDesc({}) + Row({}) + Complete("SELECT 1") +
              RowDesc({{"x", kInt4}}) + Row({"0"}) + Row({"1"}) +
              Error({{'S', "ERROR"}, {'V', "ERROR"}, {'C', "22012"}, {'M', "division by zero"}}) +
              Ready('E'));
  EXPECT_EQ(s.replay().RenderCsv(), "a,b\n1,2\nc\ni\n1\n2\n\n");
  // Every result is a step all the same, with how it ended.
  json steps = Steps(s.replay());
  ASSERT_EQ(steps.size(), 9u);
  EXPECT_EQ(steps[3]["command"], "CREATE TABLE");
  EXPECT_EQ(steps[3]["columns"], nullptr);
  EXPECT_EQ(steps[7]["status"], "error");
  EXPECT_EQ(steps[7]["rows"], json::parse(R"([["0"],["1"]])"));
  EXPECT_EQ(steps[8]["kind"], "error");
}

TEST(SessionReplayCsvTest, ColumnNameWithComma) {
  // select * from (values (1,'a'),(2,'b')) v(id, "na,me")
  Session s;
  s.Client(Query("select ..."))
      .Server(RowDesc({{"id", kInt4}, {"na,me"}}) + Row({"1", "a"}) + Row({"2", "b"}) +
              Complete("SELECT 2") + Ready());
  EXPECT_EQ(s.replay().RenderCsv(), "id,\"na,me\"\n1,a\n2,b\n");
}

// ---- Framing across records ------------------------------------------------------------------

TEST(SessionReplayTest, FrameSplitAcrossRecordsAtEveryByte) {
  const std::string client = Query("SELECT id, input FROM traces WHERE id = 'T'");
  const std::string server = RowDesc({{"id"}, {"input"}}) + Row({"T", "hello"}) +
                             Row({"U", std::nullopt}) + Complete("SELECT 2") + Ready();
  const std::string want_csv = "id,input\nT,hello\nU,\n";
  for (size_t cut = 1; cut < server.size(); ++cut) {
    Session s;
    size_t client_cut = std::min(cut, client.size() - 1);
    s.Client(client.substr(0, client_cut))
        .Client(client.substr(client_cut))
        .Server(server.substr(0, cut))
        .Server(server.substr(cut));
    ASSERT_EQ(s.replay().RenderCsv(), want_csv) << "cut at " << cut;
    ASSERT_EQ(Kinds(s.replay()), (std::vector<std::string>{"query", "result"})) << cut;
  }
}

TEST(SessionReplayTest, StepTimeIsTheRecordThatCompletesTheFrame) {
  const std::string query = Query("SELECT 1");
  Session s;
  s.At(kStartUs).Client(query.substr(0, 3)).At(kStartUs + 76678).Client(query.substr(3));
  EXPECT_EQ(Steps(s.replay())[0]["at"], "2026-11-30T23:59:01.200134Z");
  EXPECT_EQ(Steps(s.replay())[0]["seq"], 2);
}

// ---- Extended protocol ---------------------------------------------------------------------

TEST(SessionReplayTest, ExtendedProtocolWithBinaryParams) {
  Session s;
  s.Client(
       ParseMsg("s1", "select $1::text as t, $2::bytea as b where $3::int is null") +
       BindMsg("p1", "s1", {0, 1, 0}, {"abc", std::string("\x01\x02", 2), std::nullopt}, {0, 1}) +
       Describe('P', "p1") + Execute("p1") + Empty(pg::frontend::kSync))
      .Server(Empty(pg::backend::kParseComplete) + Empty(pg::backend::kBindComplete) +
              RowDesc({{"t", kText, 0}, {"b", kBytea, 1}}) +
              Row({"abc", std::string("\x01\x02", 2)}) + Complete("SELECT 1") + Ready());
  json steps = Steps(s.replay());
  ASSERT_EQ(Kinds(s.replay()), (std::vector<std::string>{"parse", "bind", "execute", "result"}));
  EXPECT_EQ(steps[0]["statement"], "s1");
  EXPECT_EQ(steps[0]["sql"], "select $1::text as t, $2::bytea as b where $3::int is null");
  EXPECT_EQ(steps[1]["portal"], "p1");
  EXPECT_EQ(steps[1]["statement"], "s1");
  EXPECT_EQ(steps[1]["params"], json::parse(R"(["abc", {"hex": "0102"}, null])"));
  EXPECT_EQ(steps[2]["portal"], "p1");
  EXPECT_EQ(steps[2]["max_rows"], 0);
  EXPECT_EQ(steps[3]["columns"], json::parse(R"([{"name": "t", "type_oid": 25, "format": "text"},
                                                 {"name": "b", "type_oid": 17, "format": "binary"}])"));
  EXPECT_EQ(steps[3]["rows"], json::parse(R"([["abc", {"hex": "0102"}]])"));
  EXPECT_EQ(steps[3]["command"], "SELECT 1");
  EXPECT_EQ(steps[3]["status"], "complete");
  EXPECT_EQ(s.replay().RenderCsv(), "t,b\nabc,\\x0102\n");
  EXPECT_THAT(s.replay().RenderText(),
              HasSubstr("bind portal p1 to statement s1: $1 = 'abc', $2 = \\x0102, $3 = NULL"));
}

TEST(SessionReplayTest, DescribedStatementThenChunkedPortal) {
  // pgx's way: Parse + Describe S first, then Bind (binary results) and Execute in chunks.
  const std::string one("\0\0\0\1", 4), two("\0\0\0\2", 4), three("\0\0\0\3", 4);
  Session s;
  s.Client(ParseMsg("", "select generate_series(1,3) as n") + Describe('S', "") +
           Empty(pg::frontend::kSync))
      .Server(Empty(pg::backend::kParseComplete) + pg::Buffer("t\0\0\0\6\0\0", 7) +
              RowDesc({{"n", kInt4, 0}}) + Ready())
      .Client(BindMsg("c1", "", {}, {}, {1}) + Execute("c1", 2) + Empty(pg::frontend::kSync))
      .Server(Empty(pg::backend::kBindComplete) + Row({one}) + Row({two}) +
              Empty(pg::backend::kPortalSuspended) + Ready('T'))
      .Client(Execute("c1", 2) + Empty(pg::frontend::kSync))
      .Server(Row({three}) + Complete("SELECT 1") + Ready('T'));
  ASSERT_EQ(Kinds(s.replay()),
            (std::vector<std::string>{"parse", "bind", "execute", "result", "execute", "result"}));
  json steps = Steps(s.replay());
  EXPECT_EQ(steps[3]["columns"],
            json::parse(R"([{"name": "n", "type_oid": 23, "format": "binary"}])"));
  EXPECT_EQ(steps[3]["rows"], json::parse(R"([[{"hex": "00000001"}], [{"hex": "00000002"}]])"));
  EXPECT_EQ(steps[3]["status"], "suspended");
  EXPECT_EQ(steps[3]["command"], nullptr);
  EXPECT_EQ(steps[4]["max_rows"], 2);
  EXPECT_EQ(steps[5]["columns"], steps[3]["columns"]);
  EXPECT_EQ(steps[5]["status"], "complete");
  // One result set for the portal: one header.
  EXPECT_EQ(s.replay().RenderCsv(), "n\n\\x00000001\n\\x00000002\n\\x00000003\n");
}

TEST(SessionReplayTest, ExtendedErrorSkipsToSyncAndTheNextBatchMatches) {
  Session s;
  s.Client(ParseMsg("", "selec 1") + BindMsg("", "", {}, {}, {}) + Describe('P', "") + Execute("") +
           Empty(pg::frontend::kSync) + ParseMsg("", "select 1 as one") +
           BindMsg("", "", {}, {}, {}) + Describe('P', "") + Execute("") +
           Empty(pg::frontend::kSync))
      .Server(Error({{'S', "ERROR"}, {'C', "42601"}, {'M', "syntax error at or near \"selec\""}}) +
              Ready() + Empty(pg::backend::kParseComplete) + Empty(pg::backend::kBindComplete) +
              RowDesc({{"one", kInt4}}) + Row({"1"}) + Complete("SELECT 1") + Ready());
  ASSERT_EQ(Kinds(s.replay()), (std::vector<std::string>{"parse", "bind", "execute", "parse",
                                                         "bind", "execute", "error", "result"}));
  json result = Steps(s.replay())[7];
  EXPECT_EQ(result["columns"][0]["name"], "one");
  EXPECT_EQ(result["rows"], json::parse(R"([["1"]])"));
  EXPECT_EQ(s.replay().RenderCsv(), "one\n1\n");
}

// ---- Errors, notices, events ------------------------------------------------------------------

TEST(SessionReplayTest, ErrorAndNoticeSteps) {
  Session s;
  s.Client(Query("COPY traces TO STDOUT"))
      .Server(Error({{'S', "ERROR"},
                     {'V', "ERROR"},
                     {'C', "42501"},
                     {'M', "tracegate: statement blocked (bulk_export): COPY is not allowed"},
                     {'D', "rule agents"},
                     {'H', "ask for an export grant"}}) +
              Ready());
  pg::Buffer notice;
  pg::EncodeNoticeResponse(
      pg::ErrorFields{{{'S', "WARNING"}, {'C', "01000"}, {'M', "masking applied"}}}, notice);
  s.Client(Query("SELECT 1"))
      .Server(notice + RowDesc({{"?column?", kInt4}}) + Row({"1"}) + Complete("SELECT 1") +
              Ready());
  json steps = Steps(s.replay());
  ASSERT_EQ(Kinds(s.replay()),
            (std::vector<std::string>{"query", "error", "query", "notice", "result"}));
  EXPECT_EQ(steps[1]["severity"], "ERROR");
  EXPECT_EQ(steps[1]["sqlstate"], "42501");
  EXPECT_EQ(steps[1]["message"], "tracegate: statement blocked (bulk_export): COPY is not allowed");
  EXPECT_EQ(steps[1]["detail"], "rule agents");
  EXPECT_EQ(steps[1]["hint"], "ask for an export grant");
  EXPECT_EQ(steps[3]["severity"], "WARNING");
  EXPECT_FALSE(steps[3].contains("detail"));
  EXPECT_EQ(steps[4]["rows"], json::parse(R"([["1"]])"));
  std::string text = s.replay().RenderText();
  EXPECT_THAT(text,
              HasSubstr("] error 42501: tracegate: statement blocked (bulk_export): COPY is "
                        "not allowed\nDETAIL:  rule agents\nHINT:  ask for an export grant\n"));
  EXPECT_THAT(text, HasSubstr("] notice WARNING 01000: masking applied\n"));
}

TEST(SessionReplayTest, TruncatedRecordEndsTheFrames) {
  const std::string row = Row({"T", "hello"});
  Session s;
  s.Client(Query("SELECT id, input FROM traces"))
      .Server(RowDesc({{"id"}, {"input"}}) + Row({"S", "first"}) + row.substr(0, 5))
      .Json(RecordType::kTruncated,
            {{"session", "s-1"}, {"limit_bytes", 1024}, {"recorded_bytes", 1030}});
  json steps = Steps(s.replay());
  ASSERT_EQ(Kinds(s.replay()),
            (std::vector<std::string>{"query", "result", "undecodable", "truncated"}));
  EXPECT_EQ(steps[1]["status"], "incomplete");
  EXPECT_EQ(steps[1]["rows"], json::parse(R"([["S", "first"]])"));
  EXPECT_THAT(steps[2]["reason"].get<std::string>(),
              HasSubstr("5 bytes of an incomplete frame before the truncation"));
  EXPECT_EQ(steps[3]["limit_bytes"], 1024);
  EXPECT_EQ(steps[3]["recorded_bytes"], 1030);
  EXPECT_FALSE(steps[3].contains("session"));
  EXPECT_EQ(s.replay().RenderCsv(), "");  // psql would print nothing of an unfinished result
  EXPECT_THAT(s.replay().RenderText(),
              HasSubstr("recording truncated at 1024 bytes (1030 recorded)"));
}

// Issue 18 item 3: frames the gate dropped are a summary step, never their bytes, and the
// statement after them replays as usual.
TEST(SessionReplayTest, UnforwardedFramesAreASummaryStep) {
  Session s;
  s.Json(RecordType::kUnforwarded,
         {{"session", "s-1"},
          {"frames",
           {{{"type", "d"}, {"verdict", "dropped"}, {"count", 27}, {"bytes", 283115655}},
            {{"type", "Q"},
             {"verdict", "refused"},
             {"count", 1},
             {"bytes", 31457320},
             {"head", "SELECT count(*) FROM traces /* xx\nx"}}}}})
      .Client(Query("SELECT 1"))
      .Server(RowDesc({{"?column?"}}) + Row({"1"}) + Complete("SELECT 1") + Ready());
  ASSERT_EQ(Kinds(s.replay()), (std::vector<std::string>{"unforwarded", "query", "result"}));
  json step = Steps(s.replay())[0];
  EXPECT_EQ(step["frames"][0]["count"], 27);
  EXPECT_FALSE(step.contains("session"));
  const std::string text = s.replay().RenderText();
  EXPECT_THAT(text,
              HasSubstr("client frames not forwarded (summary; their bytes are not "
                        "recorded)\n  27 x 'd' (283115655 bytes) dropped\n  1 x 'Q' (31457320 "
                        "bytes) refused: SELECT count(*) FROM traces /* xx\\nx\n"));
}

TEST(SessionReplayTest, GrantEventStep) {
  Session s;
  s.Json(RecordType::kGrantEvent, {{"grant_id", "g-42"},
                                   {"from", "approved"},
                                   {"to", "active"},
                                   {"actor", "alice"},
                                   {"detail", "first use"}});
  json step = Steps(s.replay())[0];
  EXPECT_EQ(step, json::parse(R"({"kind": "grant_event", "at": "2026-11-30T23:59:01.123456Z",
      "seq": 1, "grant_id": "g-42", "from": "approved", "to": "active", "actor": "alice",
      "detail": "first use"})"));
  EXPECT_THAT(s.replay().RenderText(),
              HasSubstr("[23:59:01.123456] grant g-42: approved -> active by alice (first use)"));
}

TEST(SessionReplayTest, ApprovalSteps) {
  // What the approval service writes (a request, a vote) and what a session that waited
  // records (the approval with its votes).
  Session s;
  s.Json(RecordType::kApproval, {{"event", "vote"},
                                 {"request_id", "g-42.r1"},
                                 {"state", "denied"},
                                 {"actor", "alice"},
                                 {"comment", "not this ticket"}});
  s.Json(RecordType::kApproval,
         {{"id", "g-42"},
          {"state", "approved"},
          {"decisions",
           json::array({json{{"approver", "bob"}, {"decision", "approve"}, {"comment", "ok"}},
                        json{{"approver", "carol"}, {"decision", "approve"}}})}});
  json steps = Steps(s.replay());
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0]["kind"], "approval");
  EXPECT_EQ(steps[0]["comment"], "not this ticket");
  EXPECT_EQ(steps[1]["kind"], "approval");
  EXPECT_EQ(steps[1]["decisions"].size(), 2u);
  const std::string text = s.replay().RenderText();
  EXPECT_THAT(text, HasSubstr("approval g-42.r1: vote denied by alice (not this ticket)"));
  EXPECT_THAT(text, HasSubstr("approval g-42: approved (bob approve \"ok\"; carol approve)"));
}

// ---- Whole session: JSON shape and text
// ----------------------------------------------------------

Session& SampleSession(Session& s) {
  s.Json(RecordType::kSessionStart, StartPayload())
      .At(kStartUs + 76678)
      .Client(Query("SELECT id, input FROM traces WHERE id = 'T'"))
      .Server(RowDesc({{"id"}, {"input"}, {"n", kInt4}}) + Row({"T", "hello", "7"}) +
              Row({"T2", "two\nlines", std::nullopt}) + Complete("SELECT 2") + Ready())
      .Client(Query("COPY traces TO STDOUT"))
      .Server(Error({{'S', "ERROR"},
                     {'C', "42501"},
                     {'M', "tracegate: statement blocked (bulk_export): COPY is not allowed"}}) +
              Ready())
      .Client(Query("INSERT INTO notes VALUES (1)"))
      .Server(Complete("INSERT 0 1") + Ready())
      .At(1796083149000001)
      .Json(RecordType::kSessionEnd, EndPayload());
  return s;
}

TEST(SessionReplayTest, JsonShape) {
  Session s;
  json j = SampleSession(s).replay().ToJson();
  EXPECT_EQ(j["session"], StartPayload());
  EXPECT_EQ(j["end"], EndPayload());
  ASSERT_EQ(j["steps"].size(), 6u);
  EXPECT_EQ(j["steps"][0], json::parse(R"({"kind": "query", "at": "2026-11-30T23:59:01.200134Z",
      "seq": 2, "sql": "SELECT id, input FROM traces WHERE id = 'T'"})"));
  EXPECT_EQ(j["steps"][1], json::parse(R"({"kind": "result", "at": "2026-11-30T23:59:01.201134Z",
      "seq": 3, "columns": [{"name": "id", "type_oid": 25, "format": "text"},
                            {"name": "input", "type_oid": 25, "format": "text"},
                            {"name": "n", "type_oid": 23, "format": "text"}],
      "rows": [["T", "hello", "7"], ["T2", "two\nlines", null]], "command": "SELECT 2",
      "status": "complete"})"));
  EXPECT_EQ(j["steps"][3], json::parse(R"({"kind": "error", "at": "2026-11-30T23:59:01.203134Z",
      "seq": 5, "severity": "ERROR", "sqlstate": "42501",
      "message": "tracegate: statement blocked (bulk_export): COPY is not allowed"})"));
  EXPECT_EQ(j["steps"][5]["command"], "INSERT 0 1");
  EXPECT_EQ(j["steps"][5]["columns"], nullptr);
  EXPECT_EQ(j["steps"][5]["rows"], json::array());
}

TEST(SessionReplayTest, NoStartOrEnd) {
  Session s;
  s.Client(Query("SELECT 1"));
  json j = s.replay().ToJson();
  EXPECT_EQ(j["session"], nullptr);
  EXPECT_EQ(j["end"], nullptr);
  EXPECT_THAT(s.replay().RenderText(), HasSubstr("session s-1 (no session_start record)"));
  EXPECT_THAT(s.replay().RenderText(), HasSubstr("not ended: no session_end record"));
}

TEST(SessionReplayTest, TextLikePsql) {
  Session s;
  EXPECT_EQ(SampleSession(s).replay().RenderText(),
            "session 7f3a9c on pg-main: alice (client agent-x) via okta, grant g-42, trace T, "
            "from 10.0.0.5:51234\n"
            "database traces, rule agents, masking pii, TLSv1.3 TLS_AES_256_GCM_SHA384\n"
            "started 2026-11-30 23:59:01.123456 UTC\n"
            "\n"
            "[23:59:01.200134] query\n"
            "  SELECT id, input FROM traces WHERE id = 'T'\n"
            // psql -c "select 'T' as id, 'hello' as input, 7 as n union all
            //   select 'T2', E'two\nlines', NULL" prints this table exactly.
            " id | input | n \n"
            "----+-------+---\n"
            " T  | hello | 7\n"
            " T2 | two  +|  \n"
            "    | lines | \n"
            "(2 rows)\n"
            "\n"
            "[23:59:01.202134] query\n"
            "  COPY traces TO STDOUT\n"
            "\n"
            "[23:59:01.203134] error 42501: tracegate: statement blocked (bulk_export): COPY is "
            "not allowed\n"
            "\n"
            "[23:59:01.204134] query\n"
            "  INSERT INTO notes VALUES (1)\n"
            "INSERT 0 1\n"
            "\n"
            "ended 2026-11-30 23:59:09.000001 UTC: completed (client closed); 3 statements, "
            "1 blocked, 12 rows, 8123 bytes sent, 512 received; masked EMAIL=3\n");
}

TEST(SessionReplayTest, TextEscapesControlCharactersAndMeasuresWideOnes) {
  Session s;
  s.Client(Query("SELECT '\x1b]0;owned\x07'"))
      .Server(RowDesc({{"v"}}) + Row({"\xe6\x97\xa5\xe6\x9c\xac"}) + Row({"a\tb\rc"}) +
              Complete("SELECT 2") + Ready());
  std::string text = s.replay().RenderText();
  EXPECT_THAT(text, Not(HasSubstr("\x1b")));
  EXPECT_THAT(text, HasSubstr("  SELECT '\\x1B]0;owned\\x07'\n"));
  // The wide characters take 4 columns, the tab runs to column 8, CR shows as \r: width 12.
  EXPECT_THAT(text, HasSubstr("      v       \n--------------\n \xe6\x97\xa5\xe6\x9c\xac\n"
                              " a       b\\rc\n(2 rows)\n"));
}

// ---- What does not decode
// ------------------------------------------------------------------------

TEST(SessionReplayTest, UndecodableInputIsAStepAndReplayGoesOn) {
  Session s;
  s.Add(RecordType::kSessionStart, "{not json")
      .Client("\xff\x00\x00\x00\x08garbage")
      .Client(Query("SELECT 1"))
      .Server(std::string("T\0\0\0\x08\0\x01", 8) + "x")  // a RowDescription cut short
      .Server(std::string("Z\0\0\0\x05I", 6))
      .Client(Query("SELECT '\xff\xfe'"))
      .Server(RowDesc({{"v"}}) + Row({"\xff\xfe"}) + Complete("SELECT 1") + Ready())
      .Add(RecordType::kSessionEnd, "[1, 2]")
      .Add(RecordType::kCheckpoint, "ignored");
  ASSERT_EQ(Kinds(s.replay()),
            (std::vector<std::string>{"undecodable", "undecodable", "query", "undecodable", "query",
                                      "result", "undecodable"}));
  json steps = Steps(s.replay());
  EXPECT_EQ(steps[0]["reason"], "session_start payload is not a JSON object");
  EXPECT_THAT(steps[1]["reason"].get<std::string>(), HasSubstr("client frames: "));
  EXPECT_THAT(steps[3]["reason"].get<std::string>(), HasSubstr("server RowDescription: "));
  EXPECT_EQ(steps[4]["sql"], "SELECT '\xef\xbf\xbd\xef\xbf\xbd'");  // U+FFFD for bad bytes
  EXPECT_EQ(steps[5]["rows"], json::parse(R"([[{"hex": "fffe"}]])"));
  EXPECT_EQ(steps[6]["reason"], "session_end payload is not a JSON object");
  EXPECT_NO_THROW(s.replay().ToJson().dump());
  EXPECT_THAT(s.replay().RenderText(), HasSubstr("SELECT '\\xFF\\xFE'"));
}

TEST(SessionReplayTest, OversizedLengthIsRejectedBeforeBuffering) {
  Session s;
  s.Server(std::string("D\x7f\xff\xff\xff", 5)).Client(Query("SELECT 1"));
  EXPECT_EQ(Kinds(s.replay()), (std::vector<std::string>{"undecodable", "query"}));
}

TEST(SessionReplayTest, OutOfRangeTimesDoNotBreakRendering) {
  Session s;
  s.At(INT64_MIN).Client(Query("SELECT 1")).At(INT64_MAX).Client(Query("SELECT 2"));
  json steps = Steps(s.replay());
  EXPECT_EQ(steps[0]["at"], "@-9223372036854775808us");
  EXPECT_EQ(steps[1]["at"], "@9223372036854775807us");
  EXPECT_THAT(s.replay().RenderText(), HasSubstr("[@9223372036854775807us] query"));
}

// Issue 18 item 4: recorded bytes cannot forge a line of the replay's own. A step header is a
// line that starts with '['; recorded text sits inside one line of the replay's (newlines as
// \n) or on lines indented by two spaces, whatever the bytes.
TEST(SessionReplayTest, RecordedTextCannotForgeAStepHeader) {
  const std::string forged =
      "[00:00:00.000001] recording truncated at 1 bytes (1 recorded): nothing after this was "
      "recorded";
  const std::string nasty =
      "\x1b]0;title\x07\x1b]52;c;aGk=\x1b\\\x1b[2J\xc2\x9b"
      "2J\xc2\x85\xe2\x80\xae";
  Session s;
  s.Client(Query("SELECT 1\n" + forged + "\r\n" + forged + "\xe2\x80\xa8" + forged))
      .Server(RowDesc({{"c\n" + forged + nasty}}) + Row({nasty + "\n" + forged}) +
              Complete("SELECT 1") +
              Error({{'S', "ERROR"},
                     {'C', "42501"},
                     {'M', "no\n" + forged + nasty},
                     {'D', "d\n" + forged},
                     {'H', forged}}) +
              Ready())
      .Client(Query(forged))
      .Server(Complete("[00:00:00.000002] query") + Ready())
      .Client(ParseMsg("s\n" + forged, forged + nasty))
      .Json(RecordType::kUnforwarded, {{"frames",
                                        {{{"type", "Q\n" + forged},
                                          {"verdict", "refused"},
                                          {"count", 1},
                                          {"bytes", 9},
                                          {"head", forged + "\r\n" + forged}}}}})
      .Json(RecordType::kGrantEvent, {{"grant_id", "g\n" + forged},
                                      {"from", "a"},
                                      {"to", "b"},
                                      {"actor", nasty},
                                      {"detail", "x\n" + forged}});
  const std::string text = s.replay().RenderText();
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(text.find('\x07'), std::string::npos);
  EXPECT_EQ(text.find("\xc2\x9b"), std::string::npos);
  EXPECT_EQ(text.find("\xc2\x85"), std::string::npos);
  EXPECT_EQ(text.find("\xe2\x80\xae"), std::string::npos);
  EXPECT_EQ(text.find("\xe2\x80\xa8"), std::string::npos);
  size_t headers = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    const std::string line = text.substr(start, nl == std::string::npos ? nl : nl - start);
    start = nl == std::string::npos ? text.size() : nl + 1;
    EXPECT_FALSE(line.starts_with("[00:")) << line;
    if (line.starts_with("[")) {
      ++headers;
      EXPECT_TRUE(line.starts_with("[23:59:01.")) << line;
    }
    // Only the replay's own lines start in column 0 with a letter; recorded ones are indented.
    EXPECT_FALSE(line.starts_with("recording")) << line;
  }
  // query, error, query, parse, unforwarded, grant: six headers, no more.
  EXPECT_EQ(headers, 6u) << text;
  EXPECT_THAT(text, HasSubstr("\n  SELECT 1\n  [00:00:00.000001] recording truncated"));
  EXPECT_THAT(text, HasSubstr("\n\\x5B00:00:00.000002] query\n"));  // the forged tag

  // JSON: the same content, valid whatever the bytes.
  const std::string dumped = s.replay().ToJson().dump();
  EXPECT_TRUE(json::accept(dumped));
  // CSV stays psql's bytes (for a pipe or a file); on a terminal the CLI escapes them.
  const std::string csv = s.replay().RenderCsv();
  EXPECT_NE(csv.find('\x1b'), std::string::npos);
  const std::string shown = TerminalEscape(csv);
  EXPECT_EQ(shown.find('\x1b'), std::string::npos);
  EXPECT_EQ(shown.find("\xc2\x9b"), std::string::npos);
  EXPECT_EQ(shown.find('\r'), std::string::npos);
}

}  // namespace
}  // namespace tracegate::audit
