#include "pgwire/messages.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tracegate::pgwire {
namespace {

using ::testing::HasSubstr;

Bytes B(std::string_view s) { return Bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }
std::string S(Bytes b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// Builds message bodies byte by byte for the malformed cases.
struct Body {
  std::string s;
  Body& U8(uint8_t v) {
    s.push_back(static_cast<char>(v));
    return *this;
  }
  Body& I16(int32_t v) {
    s.push_back(static_cast<char>(v >> 8));
    s.push_back(static_cast<char>(v));
    return *this;
  }
  Body& I32(int64_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      s.push_back(static_cast<char>(v >> shift));
    }
    return *this;
  }
  Body& Str(std::string_view v) {  // with its NUL
    s.append(v);
    s.push_back('\0');
    return *this;
  }
  Body& Raw(std::string_view v) {
    s.append(v);
    return *this;
  }
};

// ---- Round trips ---------------------------------------------------------------------------

// One encoded message, and how to parse a body of its type and encode the result again.
struct RoundTrip {
  std::string name;
  Direction direction;
  std::string wire;
  std::function<absl::StatusOr<std::string>(Bytes)> reencode;
  // A strict prefix of the body may itself be valid (data runs to the end of the message).
  bool open_tail = false;
};

template <typename Parsed, typename ParseFn, typename EncodeFn>
std::function<absl::StatusOr<std::string>(Bytes)> Via(ParseFn parse, EncodeFn encode) {
  return [parse, encode](Bytes body) -> absl::StatusOr<std::string> {
    TG_ASSIGN_OR_RETURN(Parsed msg, parse(body));
    Buffer out;
    encode(msg, out);
    return out;
  };
}

std::function<absl::StatusOr<std::string>(Bytes)> ViaEmpty(char type) {
  return [type](Bytes body) -> absl::StatusOr<std::string> {
    TG_RETURN_IF_ERROR(ParseEmpty(body));
    Buffer out;
    EncodeEmpty(type, out);
    return out;
  };
}

absl::StatusOr<std::string> ReencodeStartup(Bytes body) {
  TG_ASSIGN_OR_RETURN(StartupPacket p, ParseStartupPacket(body));
  Buffer out;
  switch (p.kind) {
    case StartupKind::kStartup:
      EncodeStartupMessage(p.startup, out);
      break;
    case StartupKind::kSslRequest:
      EncodeSslRequest(out);
      break;
    case StartupKind::kCancel:
      EncodeCancelRequest(p.cancel, out);
      break;
    case StartupKind::kGssEncRequest:
      out = std::string("\0\0\0\x08\x04\xd2\x16\x30", 8);
      break;
  }
  return out;
}

std::string Encoded(const std::function<void(Buffer&)>& encode) {
  Buffer out;
  encode(out);
  return out;
}

std::string NegotiateWire() {
  Body b;
  b.I32(0).I32(2).Str("_pq_.compression").Str("_pq_.other");
  std::string out = "v";
  Body len;
  len.I32(static_cast<int64_t>(b.s.size() + 4));
  return out + len.s + b.s;
}

absl::StatusOr<std::string> ReencodeNegotiate(Bytes body) {
  TG_ASSIGN_OR_RETURN(NegotiateProtocolVersion m, ParseNegotiateProtocolVersion(body));
  Body b;
  b.I32(m.newest_minor).I32(static_cast<int64_t>(m.unrecognized_options.size()));
  for (const auto& o : m.unrecognized_options) {
    b.Str(o);
  }
  Body len;
  len.I32(static_cast<int64_t>(b.s.size() + 4));
  return "v" + len.s + b.s;
}

std::vector<RoundTrip> RoundTrips() {
  constexpr Direction kF = Direction::kFrontend;
  constexpr Direction kB = Direction::kBackend;
  static const std::string kValue1 = "42";
  static const std::string kValue2 = std::string("\x00\x01\x02", 3);
  std::vector<RoundTrip> v;

  // Frontend, startup phase.
  StartupMessage startup;
  startup.parameters = {{"user", "g_abc"},
                        {"database", "traces"},
                        {"application_name", "psql"},
                        {"client_encoding", "UTF8"}};
  v.push_back({"StartupMessage", kF, Encoded([&](Buffer& o) { EncodeStartupMessage(startup, o); }),
               ReencodeStartup});
  v.push_back({"SSLRequest", kF, Encoded([](Buffer& o) { EncodeSslRequest(o); }), ReencodeStartup});
  v.push_back({"GSSENCRequest", kF, std::string("\0\0\0\x08\x04\xd2\x16\x30", 8), ReencodeStartup});
  v.push_back({"CancelRequest", kF, Encoded([](Buffer& o) {
                 EncodeCancelRequest({1234, -559038737}, o);
               }),
               ReencodeStartup});

  // Frontend, typed.
  v.push_back({"Query", kF, Encoded([](Buffer& o) { EncodeQuery("SELECT 1;", o); }),
               Via<Query>(ParseQuery, [](const Query& q, Buffer& o) { EncodeQuery(q.sql, o); })});
  v.push_back({"Parse", kF, Encoded([](Buffer& o) {
                 EncodeParse({"s1", "SELECT $1, $2", {23, 25}}, o);
               }),
               Via<Parse>(ParseParse, EncodeParse)});
  v.push_back({"ParseUnnamed", kF, Encoded([](Buffer& o) {
                 EncodeParse({"", "SELECT 1", {}}, o);
               }),
               Via<Parse>(ParseParse, EncodeParse)});
  Bind bind;
  bind.portal = "p1";
  bind.statement = "s1";
  bind.param_formats = {1};
  bind.params = {B(kValue1), std::nullopt, B(kValue2)};
  bind.result_formats = {0, 1};
  v.push_back({"Bind", kF, Encoded([&](Buffer& o) { EncodeBind(bind, o); }),
               Via<Bind>(ParseBind, EncodeBind)});
  Bind bind_n;
  bind_n.param_formats = {0, 1};
  bind_n.params = {B(""), B(kValue2)};
  v.push_back({"BindPerParamFormats", kF, Encoded([&](Buffer& o) { EncodeBind(bind_n, o); }),
               Via<Bind>(ParseBind, EncodeBind)});
  v.push_back({"BindEmpty", kF, Encoded([](Buffer& o) { EncodeBind(Bind{}, o); }),
               Via<Bind>(ParseBind, EncodeBind)});
  v.push_back({"DescribeStatement", kF, Encoded([](Buffer& o) {
                 EncodeDescribe({'S', "s1"}, o);
               }),
               Via<DescribeOrClose>(ParseDescribe, EncodeDescribe)});
  v.push_back({"DescribePortal", kF, Encoded([](Buffer& o) {
                 EncodeDescribe({'P', ""}, o);
               }),
               Via<DescribeOrClose>(ParseDescribe, EncodeDescribe)});
  v.push_back({"Close", kF, Encoded([](Buffer& o) {
                 EncodeClose({'P', "p1"}, o);
               }),
               Via<DescribeOrClose>(ParseClose, EncodeClose)});
  v.push_back({"Execute", kF, Encoded([](Buffer& o) {
                 EncodeExecute({"p1", 100}, o);
               }),
               Via<Execute>(ParseExecute, EncodeExecute)});
  for (char t : {'S', 'H', 'X', 'c'}) {
    v.push_back({std::string("EmptyFrontend_") + t, kF,
                 Encoded([t](Buffer& o) { EncodeEmpty(t, o); }), ViaEmpty(t)});
  }
  v.push_back({"CopyDataFrontend", kF, Encoded([](Buffer& o) { EncodeCopyData(B("1\tx\n"), o); }),
               [](Bytes b) -> absl::StatusOr<std::string> {
                 Buffer o;
                 EncodeCopyData(b, o);
                 return o;
               },
               true});
  v.push_back({"CopyFail", kF, Encoded([](Buffer& o) { EncodeCopyFail({"aborted"}, o); }),
               Via<CopyFail>(ParseCopyFail, EncodeCopyFail)});
  FunctionCall fc;
  fc.function_oid = 1598;
  fc.arg_formats = {1};
  fc.args = {B(kValue2), std::nullopt};
  fc.result_format = 1;
  v.push_back({"FunctionCall", kF, Encoded([&](Buffer& o) { EncodeFunctionCall(fc, o); }),
               Via<FunctionCall>(ParseFunctionCall, EncodeFunctionCall)});
  v.push_back({"PasswordMessage", kF, Encoded([](Buffer& o) { EncodePasswordMessage("pw", o); }),
               Via<std::string>(ParsePasswordMessage, [](const std::string& p, Buffer& o) {
                 EncodePasswordMessage(p, o);
               })});
  v.push_back({"SASLInitialResponse", kF, Encoded([](Buffer& o) {
                 EncodeSaslInitialResponse({"SCRAM-SHA-256", "n,,n=,r=abc"}, o);
               }),
               Via<SaslInitialResponse>(ParseSaslInitialResponse, EncodeSaslInitialResponse)});
  v.push_back({"SASLInitialResponseNoData", kF, Encoded([](Buffer& o) {
                 EncodeSaslInitialResponse({"SCRAM-SHA-256", {}}, o);
               }),
               Via<SaslInitialResponse>(ParseSaslInitialResponse, EncodeSaslInitialResponse)});
  v.push_back({"SASLResponse", kF, Encoded([](Buffer& o) { EncodeSaslResponse("c=biws", o); }),
               [](Bytes b) -> absl::StatusOr<std::string> {
                 Buffer o;
                 EncodeSaslResponse(ParseSaslResponse(b), o);
                 return o;
               },
               true});

  // Backend.
  auto auth = Via<Authentication>(ParseAuthentication, EncodeAuthentication);
  v.push_back({"AuthOk", kB, Encoded([](Buffer& o) { EncodeAuthentication({}, o); }), auth});
  v.push_back({"AuthCleartext", kB, Encoded([](Buffer& o) {
                 EncodeAuthentication({AuthCode::kCleartextPassword, "", {}, ""}, o);
               }),
               auth});
  v.push_back({"AuthMd5", kB, Encoded([](Buffer& o) {
                 EncodeAuthentication({AuthCode::kMd5Password, "\x01\x02\x03\x04", {}, ""}, o);
               }),
               auth});
  v.push_back({"AuthSASL", kB, Encoded([](Buffer& o) {
                 EncodeAuthentication(
                     {AuthCode::kSasl, "", {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, ""}, o);
               }),
               auth});
  v.push_back(
      {"AuthSASLContinue", kB, Encoded([](Buffer& o) {
         EncodeAuthentication({AuthCode::kSaslContinue, "", {}, "r=abc,s=c2FsdA==,i=4096"}, o);
       }),
       auth, true});
  v.push_back({"AuthSASLFinal", kB, Encoded([](Buffer& o) {
                 EncodeAuthentication({AuthCode::kSaslFinal, "", {}, "v=abc="}, o);
               }),
               auth, true});
  v.push_back({"ParameterStatus", kB, Encoded([](Buffer& o) {
                 EncodeParameterStatus({"server_version", "16.2"}, o);
               }),
               Via<ParameterStatus>(ParseParameterStatus, EncodeParameterStatus)});
  v.push_back({"BackendKeyData", kB, Encoded([](Buffer& o) {
                 EncodeBackendKeyData({4242, -7}, o);
               }),
               Via<BackendKeyData>(ParseBackendKeyData, EncodeBackendKeyData)});
  for (char s : {'I', 'T', 'E'}) {
    v.push_back({std::string("ReadyForQuery_") + s, kB,
                 Encoded([s](Buffer& o) { EncodeReadyForQuery({s}, o); }),
                 Via<ReadyForQuery>(ParseReadyForQuery, EncodeReadyForQuery)});
  }
  RowDescription rd;
  rd.fields = {{"id", 16384, 1, 23, 4, -1, 0}, {"", 0, 0, 25, -1, -1, 1}};
  v.push_back({"RowDescription", kB, Encoded([&](Buffer& o) { EncodeRowDescription(rd, o); }),
               Via<RowDescription>(ParseRowDescription, EncodeRowDescription)});
  DataRow row;
  row.values = {B(kValue1), std::nullopt, B(""), B(kValue2)};
  v.push_back({"DataRow", kB, Encoded([&](Buffer& o) { EncodeDataRow(row, o); }),
               Via<DataRow>(ParseDataRow, EncodeDataRow)});
  v.push_back({"DataRowEmpty", kB, Encoded([](Buffer& o) { EncodeDataRow({}, o); }),
               Via<DataRow>(ParseDataRow, EncodeDataRow)});
  v.push_back({"CommandComplete", kB,
               Encoded([](Buffer& o) { EncodeCommandComplete("SELECT 1", o); }),
               Via<CommandComplete>(ParseCommandComplete, [](const CommandComplete& c, Buffer& o) {
                 EncodeCommandComplete(c.tag, o);
               })});
  for (char t : {'I', '1', '2', '3', 'n', 's', 'c'}) {
    v.push_back({std::string("EmptyBackend_") + t, kB,
                 Encoded([t](Buffer& o) { EncodeEmpty(t, o); }), ViaEmpty(t)});
  }
  ErrorFields ef;
  ef.fields = {{'S', "ERROR"}, {'V', "ERROR"}, {'C', "42501"}, {'M', "permission denied"}};
  v.push_back({"ErrorResponse", kB, Encoded([&](Buffer& o) { EncodeErrorResponse(ef, o); }),
               Via<ErrorFields>(ParseErrorFields, EncodeErrorResponse)});
  v.push_back({"NoticeResponse", kB, Encoded([&](Buffer& o) { EncodeNoticeResponse(ef, o); }),
               Via<ErrorFields>(ParseErrorFields, EncodeNoticeResponse)});
  v.push_back({"EncodeError", kB,
               Encoded([](Buffer& o) { EncodeError("FATAL", "08P01", "protocol violation", o); }),
               Via<ErrorFields>(ParseErrorFields, EncodeErrorResponse)});
  v.push_back({"ParameterDescription", kB, Encoded([](Buffer& o) {
                 EncodeParameterDescription({{23, 25, 0xFFFFFFFFu}}, o);
               }),
               Via<ParameterDescription>(ParseParameterDescription, EncodeParameterDescription)});
  v.push_back({"NotificationResponse", kB, Encoded([](Buffer& o) {
                 EncodeNotificationResponse({77, "chan", "payload"}, o);
               }),
               Via<NotificationResponse>(ParseNotificationResponse, EncodeNotificationResponse)});
  for (char t : {'G', 'H', 'W'}) {
    v.push_back({std::string("CopyResponse_") + t, kB, Encoded([t](Buffer& o) {
                   EncodeCopyResponse(t, {1, {0, 1, 1}}, o);
                 }),
                 [t](Bytes b) -> absl::StatusOr<std::string> {
                   TG_ASSIGN_OR_RETURN(CopyResponse m, ParseCopyResponse(b));
                   Buffer o;
                   EncodeCopyResponse(t, m, o);
                   return o;
                 }});
  }
  v.push_back({"CopyDataBackend", kB, Encoded([](Buffer& o) { EncodeCopyData(B("row\n"), o); }),
               [](Bytes b) -> absl::StatusOr<std::string> {
                 Buffer o;
                 EncodeCopyData(b, o);
                 return o;
               },
               true});
  v.push_back({"FunctionCallResponse", kB,
               Encoded([](Buffer& o) { EncodeFunctionCallResponse({B(kValue1)}, o); }),
               Via<FunctionCallResponse>(ParseFunctionCallResponse, EncodeFunctionCallResponse)});
  v.push_back({"FunctionCallResponseNull", kB,
               Encoded([](Buffer& o) { EncodeFunctionCallResponse({std::nullopt}, o); }),
               Via<FunctionCallResponse>(ParseFunctionCallResponse, EncodeFunctionCallResponse)});
  v.push_back({"NegotiateProtocolVersion", kB, NegotiateWire(), ReencodeNegotiate});
  return v;
}

class RoundTripTest : public ::testing::TestWithParam<RoundTrip> {
 protected:
  // Frames the wire bytes the way the proxy would.
  static Frame FrameOf(const RoundTrip& c) {
    Bytes wire = B(c.wire);
    FrameResult r = (c.wire[0] == '\0') ? DecodeStartupFrame(wire, Limits{})
                                        : DecodeFrame(wire, c.direction, Limits{});
    EXPECT_EQ(r.status, DecodeStatus::kFrame) << r.error;
    EXPECT_EQ(r.frame.wire_size, c.wire.size());
    return r.frame;
  }
};

TEST_P(RoundTripTest, EncodeFrameParseEncodeIsIdentity) {
  const RoundTrip& c = GetParam();
  Frame frame = FrameOf(c);
  EXPECT_TRUE(ValidateFrame(frame, c.direction).ok()) << ValidateFrame(frame, c.direction);
  absl::StatusOr<std::string> again = c.reencode(frame.body);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, c.wire);
}

TEST_P(RoundTripTest, FramingWaitsForEveryPrefix) {
  const RoundTrip& c = GetParam();
  for (size_t n = 0; n < c.wire.size(); ++n) {
    Bytes prefix = B(c.wire).first(n);
    FrameResult r = (c.wire[0] == '\0') ? DecodeStartupFrame(prefix, Limits{})
                                        : DecodeFrame(prefix, c.direction, Limits{});
    EXPECT_EQ(r.status, DecodeStatus::kNeedMoreData) << n;
    if (n >= (c.wire[0] == '\0' ? 4u : 5u)) {
      EXPECT_EQ(r.bytes_needed, c.wire.size()) << n;
    }
  }
}

TEST_P(RoundTripTest, EveryTruncatedBodyIsRejected) {
  const RoundTrip& c = GetParam();
  if (c.open_tail) {
    // A prefix of this body may itself be a valid, shorter body. Then it must decode as
    // exactly those bytes: nothing read past them, nothing invented.
    Frame frame = FrameOf(c);
    for (size_t n = 0; n < frame.body.size(); ++n) {
      std::string copy = S(frame.body.first(n));
      absl::StatusOr<std::string> r = c.reencode(B(copy));
      if (r.ok()) {
        EXPECT_EQ(r->size(), c.wire.size() - frame.body.size() + n) << "prefix of " << n;
      }
    }
    return;
  }
  Frame frame = FrameOf(c);
  // Copy so that a read past the prefix would hit ASan, not the rest of the message.
  for (size_t n = 0; n < frame.body.size(); ++n) {
    std::string copy = S(frame.body.first(n));
    Frame truncated{frame.type, B(copy), 0};
    EXPECT_FALSE(c.reencode(B(copy)).ok()) << "prefix of " << n << " bytes";
    if (frame.type != 'p') {
      EXPECT_FALSE(ValidateFrame(truncated, c.direction).ok()) << "prefix of " << n << " bytes";
    }
  }
}

TEST_P(RoundTripTest, TrailingBytesAreRejected) {
  const RoundTrip& c = GetParam();
  Frame frame = FrameOf(c);
  if (c.open_tail) {
    // The body runs to the end of the message: trailing bytes are data, kept verbatim.
    for (std::string_view extra : {std::string_view("\0", 1), std::string_view("x")}) {
      std::string longer = S(frame.body) + std::string(extra);
      absl::StatusOr<std::string> r = c.reencode(B(longer));
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->size(), c.wire.size() + extra.size());
    }
    return;
  }
  for (std::string_view extra : {std::string_view("\0", 1), std::string_view("x")}) {
    std::string longer = S(frame.body) + std::string(extra);
    absl::StatusOr<std::string> r = c.reencode(B(longer));
    EXPECT_FALSE(r.ok());
    if (frame.type != 'p') {
      EXPECT_FALSE(ValidateFrame(Frame{frame.type, B(longer), 0}, c.direction).ok());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllMessages, RoundTripTest, ::testing::ValuesIn(RoundTrips()),
                         [](const ::testing::TestParamInfo<RoundTrip>& info) {
                           std::string name = info.param.name;
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) {
                               ch = '_';
                             }
                           }
                           return name;
                         });

// ---- Decoded values ------------------------------------------------------------------------

TEST(MessagesTest, BindValuesPointIntoTheBody) {
  Body b;
  b.Str("").Str("stmt").I16(0).I16(2).I32(3).Raw("abc").I32(-1).I16(0);
  absl::StatusOr<Bind> bind = ParseBind(B(b.s));
  ASSERT_TRUE(bind.ok()) << bind.status();
  EXPECT_EQ(bind->statement, "stmt");
  ASSERT_EQ(bind->params.size(), 2u);
  ASSERT_TRUE(bind->params[0].has_value());
  EXPECT_EQ(S(*bind->params[0]), "abc");
  EXPECT_EQ(bind->params[0]->data(), reinterpret_cast<const uint8_t*>(b.s.data()) + 14);
  EXPECT_FALSE(bind->params[1].has_value());
}

TEST(MessagesTest, StartupFindsParameters) {
  Body b;
  b.I32(kProtocolVersion3).Str("user").Str("alice").Str("database").Str("db").U8(0);
  absl::StatusOr<StartupPacket> p = ParseStartupPacket(B(b.s));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->kind, StartupKind::kStartup);
  ASSERT_NE(p->startup.Find("user"), nullptr);
  EXPECT_EQ(*p->startup.Find("user"), "alice");
  EXPECT_EQ(p->startup.Find("options"), nullptr);
}

TEST(MessagesTest, ErrorFieldsFind) {
  Buffer out;
  EncodeError("FATAL", "28P01", "password authentication failed", out);
  absl::StatusOr<ErrorFields> e = ParseErrorFields(B(out).subspan(5));
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_NE(e->Find('C'), nullptr);
  EXPECT_EQ(*e->Find('C'), "28P01");
  EXPECT_EQ(*e->Find('S'), "FATAL");
  EXPECT_EQ(e->Find('D'), nullptr);
}

// ---- Malformed bodies --------------------------------------------------------------------

struct Malformed {
  std::string name;
  std::function<absl::Status(Bytes)> parse;
  std::string body;
  std::string expected;  // substring of the error
};

template <typename Fn>
std::function<absl::Status(Bytes)> St(Fn fn) {
  return [fn](Bytes b) { return fn(b).status(); };
}

std::vector<Malformed> MalformedBodies() {
  auto startup = St(ParseStartupPacket);
  auto bind = St(ParseBind);
  auto v3 = [] { return Body().I32(kProtocolVersion3); };
  return {
      {"QueryMissingNul", St(ParseQuery), "SELECT 1", "Query: query string is missing its NUL"},
      {"QueryEmpty", St(ParseQuery), "", "missing its NUL"},
      {"QueryTrailing", St(ParseQuery), std::string("SELECT 1\0x", 10), "1 trailing bytes"},
      {"ParseCountTooBig", St(ParseParse), Body().Str("").Str("q").I16(65535).s,
       "parameter type count 65535 needs at least 262140 bytes but only 0 remain"},
      {"ParseOidTruncated", St(ParseParse), Body().Str("").Str("q").I16(1).Raw("ab").s,
       "needs at least 4 bytes"},
      {"BindHugeParamCount", bind, Body().Str("").Str("").I16(0).I16(32767).Raw("ab").s,
       "parameter count 32767 needs at least 131068 bytes but only 2 remain"},
      {"BindParamLengthExceeds", bind,
       Body().Str("").Str("").I16(0).I16(3).I32(0).I32(0).I32(1048576).Raw("0123456789ab").s,
       "Bind: parameter 3 length 1048576 exceeds remaining 12 bytes"},
      {"BindNegativeLength", bind, Body().Str("").Str("").I16(0).I16(1).I32(-2).I16(0).s,
       "parameter 1 length -2 is negative"},
      {"BindFormatMismatch", bind,
       Body().Str("").Str("").I16(2).I16(0).I16(0).I16(3).I32(-1).I32(-1).I32(-1).I16(0).s,
       "2 parameter formats for 3 parameters"},
      {"BindBadFormatCode", bind, Body().Str("").Str("").I16(1).I16(2).I16(0).I16(0).s,
       "parameter format 1 is 2 (must be 0 or 1)"},
      {"BindNegativeFormatCode", bind, Body().Str("").Str("").I16(1).I16(-1).I16(0).I16(0).s,
       "is -1 (must be 0 or 1)"},
      {"BindMissingResultFormats", bind, Body().Str("").Str("").I16(0).I16(0).s,
       "truncated reading result format count"},
      {"BindPortalMissingNul", bind, "portal", "portal name is missing its NUL"},
      {"DescribeBadKind", St(ParseDescribe), Body().Raw("X").Str("").s, "neither 'S' nor 'P'"},
      {"CloseEmpty", St(ParseClose), "", "truncated reading kind"},
      {"ExecuteNegative", St(ParseExecute), Body().Str("").I32(-1).s, "row limit -1 is negative"},
      {"ExecuteTruncated", St(ParseExecute), Body().Str("").I16(0).s, "truncated reading row"},
      {"EmptyWithBody", [](Bytes b) { return ParseEmpty(b); }, "x", "must have an empty body"},
      {"FunctionCallBadResultFormat", St(ParseFunctionCall), Body().I32(1).I16(0).I16(0).I16(5).s,
       "result format is 5"},
      {"FunctionCallArgExceeds", St(ParseFunctionCall),
       Body().I32(1).I16(0).I16(1).I32(100).Raw("x").s,
       "argument 1 length 100 exceeds remaining 1 bytes"},
      {"CopyFailMissingNul", St(ParseCopyFail), "oops", "missing its NUL"},
      {"CopyResponseBadFormat", St(ParseCopyResponse), Body().U8(2).I16(0).s,
       "overall format is 2"},
      {"CopyResponseTextWithBinaryColumn", St(ParseCopyResponse), Body().U8(0).I16(1).I16(1).s,
       "binary in a text copy"},
      {"DataRowHugeCount", St(ParseDataRow), Body().I16(65535).I32(-1).s,
       "column count 65535 needs at least"},
      {"DataRowNegativeLength", St(ParseDataRow), Body().I16(1).I32(-5).s,
       "column 1 length -5 is negative"},
      {"DataRowLengthExceeds", St(ParseDataRow), Body().I16(2).I32(-1).I32(10).Raw("abc").s,
       "DataRow: column 2 length 10 exceeds remaining 3 bytes"},
      {"DataRowTooFewColumns", St(ParseDataRow), Body().I16(2).I32(1).Raw("abcd").s,
       "truncated reading column 2 length"},
      {"RowDescriptionHugeCount", St(ParseRowDescription),
       Body().I16(100).Raw(std::string(19, 'a')).s, "field count 100 needs at least 1900 bytes"},
      {"RowDescriptionBadFormat", St(ParseRowDescription),
       Body().I16(1).Str("id").I32(0).I16(0).I32(23).I16(4).I32(-1).I16(7).s,
       "field 1 format is 7"},
      {"RowDescriptionNameMissingNul", St(ParseRowDescription),
       Body().I16(1).Raw(std::string(30, 'a')).s, "field 1 name is missing its NUL"},
      {"ErrorMissingTerminator", St(ParseErrorFields), Body().U8('S').Str("ERROR").s,
       "truncated reading field 2 code"},
      {"ErrorValueMissingNul", St(ParseErrorFields), Body().U8('S').Raw("ERROR").s,
       "field 1 value is missing its NUL"},
      {"ErrorTrailing", St(ParseErrorFields), Body().U8('S').Str("ERROR").U8(0).U8(0).s,
       "trailing"},
      {"NegotiateNegativeCount", St(ParseNegotiateProtocolVersion), Body().I32(0).I32(-1).s,
       "option count -1 is negative"},
      {"NegotiateHugeCount", St(ParseNegotiateProtocolVersion),
       Body().I32(0).I32(1000).Raw("ab\0").s, "option count 1000 needs at least 1000 bytes"},
      {"ReadyForQueryBadStatus", St(ParseReadyForQuery), "X", "is not 'I', 'T' or 'E'"},
      {"BackendKeyDataShort", St(ParseBackendKeyData), Body().I32(1).I16(0).s,
       "truncated reading secret key"},
      {"ParameterStatusNoValue", St(ParseParameterStatus), Body().Str("name").s,
       "value is missing its NUL"},
      {"NotificationTruncated", St(ParseNotificationResponse), Body().I16(1).s,
       "truncated reading process id"},
      {"FunctionCallResponseNegative", St(ParseFunctionCallResponse), Body().I32(-3).s,
       "result length -3 is negative"},
      {"AuthGss", St(ParseAuthentication), Body().I32(7).s,
       "unsupported authentication method GSSAPI (code 7)"},
      {"AuthUnknown", St(ParseAuthentication), Body().I32(99).s, "(code 99)"},
      {"AuthMd5ShortSalt", St(ParseAuthentication), Body().I32(5).Raw("abc").s,
       "md5 salt length 4 exceeds remaining 3 bytes"},
      {"AuthSaslNoMechanisms", St(ParseAuthentication), Body().I32(10).U8(0).s, "no mechanisms"},
      {"AuthSaslUnterminated", St(ParseAuthentication), Body().I32(10).Str("SCRAM-SHA-256").s,
       "SASL mechanism 2 is missing its NUL"},
      {"SaslInitialNegativeLength", St(ParseSaslInitialResponse),
       Body().Str("SCRAM-SHA-256").I32(-2).s, "data length -2 is negative"},
      {"SaslInitialLengthExceeds", St(ParseSaslInitialResponse),
       Body().Str("SCRAM-SHA-256").I32(50).Raw("n,,").s, "data length 50 exceeds remaining 3"},
      {"SaslInitialEmptyMechanism", St(ParseSaslInitialResponse), Body().Str("").I32(-1).s,
       "empty mechanism"},
      {"PasswordMissingNul", St(ParsePasswordMessage), "secret", "missing its NUL"},
      {"StartupProtocol2", startup, Body().I32(0x00020000).Str("user").Str("u").U8(0).s,
       "unsupported protocol version 2.0"},
      {"StartupProtocol31", startup, Body().I32(0x00030001).Str("user").Str("u").U8(0).s,
       "unsupported protocol version 3.1"},
      {"StartupDuplicate", startup, v3().Str("user").Str("a").Str("user").Str("b").U8(0).s,
       "duplicate parameter \"user\""},
      {"StartupNoTerminator", startup, v3().Str("user").Str("u").s, "missing its NUL"},
      {"StartupValueMissingNul", startup, v3().Str("user").Raw("u").s,
       "parameter 1 value is missing its NUL"},
      {"StartupTrailing", startup, v3().Str("user").Str("u").U8(0).Raw("x").s, "trailing"},
      {"StartupTruncatedVersion", startup, std::string("\x00\x03", 2),
       "truncated reading protocol version"},
      {"SslRequestTrailing", startup, Body().I32(kSslRequestCode).U8(0).s,
       "SSLRequest: 1 trailing bytes"},
      {"GssEncTrailing", startup, Body().I32(kGssEncRequestCode).I32(0).s,
       "GSSENCRequest: 4 trailing"},
      {"CancelShort", startup, Body().I32(kCancelRequestCode).I32(1).s,
       "CancelRequest: truncated reading secret key"},
      {"CancelLong", startup, Body().I32(kCancelRequestCode).I32(1).I32(2).I32(3).s,
       "CancelRequest: 4 trailing"},
      {"UnknownRequestCode", startup, Body().I32(0x04d21631).s, "unsupported protocol version"},
  };
}

class MalformedTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedTest, IsRejectedWithAPreciseReason) {
  const Malformed& c = GetParam();
  // Exactly-sized heap copy so ASan catches any over-read.
  std::vector<uint8_t> exact(c.body.begin(), c.body.end());
  absl::Status s = c.parse(Bytes(exact.data(), exact.size()));
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(Msg(s), HasSubstr(c.expected));
}

INSTANTIATE_TEST_SUITE_P(Bodies, MalformedTest, ::testing::ValuesIn(MalformedBodies()),
                         [](const ::testing::TestParamInfo<Malformed>& info) {
                           return info.param.name;
                         });

// ---- ValidateFrame on every type ---------------------------------------------------------

TEST(ValidateFrameTest, RejectsAnInvalidBodyForEveryType) {
  const std::string one_byte = "\x01";
  for (Direction d : {Direction::kFrontend, Direction::kBackend}) {
    for (int b = 0; b < 256; ++b) {
      char type = static_cast<char>(b);
      Frame frame{type, B(one_byte), 0};
      absl::Status s = ValidateFrame(frame, d);
      bool anything_goes = type == 'd' || (type == 'p' && d == Direction::kFrontend);
      if (anything_goes) {
        EXPECT_TRUE(s.ok()) << type << " " << s;
      } else {
        EXPECT_FALSE(s.ok()) << "type byte " << b << " direction " << static_cast<int>(d);
      }
    }
  }
}

TEST(ValidateFrameTest, PasswordNeedsABody) {
  EXPECT_FALSE(ValidateFrame(Frame{'p', Bytes(), 0}, Direction::kFrontend).ok());
}

TEST(ValidateFrameTest, BackendCannotSendAStartupPacket) {
  Buffer out;
  EncodeSslRequest(out);
  EXPECT_FALSE(ValidateFrame(Frame{0, B(out).subspan(4), 0}, Direction::kBackend).ok());
  EXPECT_TRUE(ValidateFrame(Frame{0, B(out).subspan(4), 0}, Direction::kFrontend).ok());
}

TEST(ValidateFrameTest, SameTypeByteMeansDifferentThingsPerDirection) {
  // 'S' is Sync (empty) from the client but ParameterStatus from the server.
  Body ps;
  ps.Str("TimeZone").Str("UTC");
  EXPECT_TRUE(ValidateFrame(Frame{'S', B(ps.s), 0}, Direction::kBackend).ok());
  EXPECT_FALSE(ValidateFrame(Frame{'S', B(ps.s), 0}, Direction::kFrontend).ok());
  EXPECT_TRUE(ValidateFrame(Frame{'S', Bytes(), 0}, Direction::kFrontend).ok());
}

}  // namespace
}  // namespace tracegate::pgwire
