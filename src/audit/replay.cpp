#include "audit/replay.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "pgwire/framing.h"
#include "pgwire/messages.h"

namespace tracegate::audit {
namespace {

using json = nlohmann::json;
using pgwire::Bytes;

std::string_view View(Bytes b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }
Bytes AsBytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

std::string Hex(std::string_view bytes) {
  return absl::BytesToHexString(absl::string_view(bytes.data(), bytes.size()));
}

// ---- UTF-8 and display width ---------------------------------------------------------------

// Decodes the code point at s[i] (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF). Returns its length in bytes, or 0 if the bytes there are not valid UTF-8.
size_t NextCodePoint(std::string_view s, size_t i, char32_t& cp) {
  auto at = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  uint8_t b0 = at(0);
  size_t len = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    return 0;
  }
  cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1f) : len == 3 ? (b0 & 0x0f) : (b0 & 0x07);
  for (size_t k = 1; k < len; ++k) {
    if ((at(k) & 0xc0) != 0x80) {
      return 0;
    }
    cp = (cp << 6) | (at(k) & 0x3f);
  }
  static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
    return 0;
  }
  return len;
}

bool IsValidUtf8(std::string_view s) {
  char32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    size_t n = NextCodePoint(s, i, cp);
    if (n == 0) {
      return false;
    }
    i += n;
  }
  return true;
}

// Text for a JSON string: as is when valid UTF-8, else with each bad byte as U+FFFD.
std::string Utf8(std::string_view s) {
  if (IsValidUtf8(s)) {
    return std::string(s);
  }
  std::string out;
  char32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    size_t n = NextCodePoint(s, i, cp);
    out.append(n == 0 ? std::string_view("\xef\xbf\xbd") : s.substr(i, n));
    i += n == 0 ? 1 : n;
  }
  return out;
}

// Columns a code point takes in a terminal, roughly as wcwidth(3): combining marks and
// zero-width characters 0, East Asian wide and emoji 2, anything else 1.
size_t DisplayWidth(char32_t cp) {
  if ((cp >= 0x0300 && cp <= 0x036f) || (cp >= 0x1ab0 && cp <= 0x1aff) ||
      (cp >= 0x20d0 && cp <= 0x20ff) || (cp >= 0xfe20 && cp <= 0xfe2f) ||
      (cp >= 0x200b && cp <= 0x200f) || cp == 0xfeff) {
    return 0;
  }
  if ((cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf && cp != 0x303f) ||
      (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
      (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
      (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1f64f) ||
      (cp >= 0x1f900 && cp <= 0x1f9ff) || (cp >= 0x20000 && cp <= 0x3fffd)) {
    return 2;
  }
  return 1;
}

// One line of text made safe for a terminal, and how many columns it takes.
struct Line {
  std::string text;
  size_t width = 0;
};

// Splits recorded text into display lines the way psql shows a cell: at each newline, tabs
// expanded to the next multiple of 8, CR as \r, other control characters and bytes that are
// not UTF-8 as \xNN (or \uNNNN for C1 controls and invisible format characters: U+2028/9,
// bidi controls, zero-width ones). Nothing from the recording reaches the reader's terminal
// as a control sequence.
std::vector<Line> DisplayLines(std::string_view s) {
  std::vector<Line> lines(1);
  char32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    Line& line = lines.back();
    size_t n = NextCodePoint(s, i, cp);
    std::string piece;
    if (n == 0) {
      piece = fmt::format("\\x{:02X}", static_cast<uint8_t>(s[i]));
      n = 1;
    } else if (cp == '\n') {
      lines.emplace_back();
      i += n;
      continue;
    } else if (cp == '\t') {
      piece.assign(8 - line.width % 8, ' ');
    } else if (cp == '\r') {
      piece = "\\r";
    } else if (cp < 0x20 || cp == 0x7f) {
      piece = fmt::format("\\x{:02X}", static_cast<uint32_t>(cp));
    } else if ((cp >= 0x80 && cp < 0xa0) || IsInvisibleFormat(cp)) {
      piece = fmt::format("\\u{:04X}", static_cast<uint32_t>(cp));
    } else {
      line.text.append(s.substr(i, n));
      line.width += DisplayWidth(cp);
      i += n;
      continue;
    }
    line.text += piece;
    line.width += piece.size();
    i += n;
  }
  return lines;
}

// How RenderText keeps recorded content apart from its own lines: a line of the replay's
// own starts at column 0 (a step header with "[time] ", the session's header and end);
// recorded text is either one line inside such a line (OneLine: newlines shown as \n) or a
// block whose every line starts with kIndent (Block). So no recorded byte sequence can make a
// line that starts with '[' (a step header) or with "ended"/"session".
constexpr std::string_view kIndent = "  ";

// Recorded text inside one of the replay's own lines: made safe, newlines as \n.
std::string OneLine(std::string_view s) {
  std::string out;
  for (const Line& line : DisplayLines(s)) {
    out += line.text;
    out += "\\n";
  }
  out.resize(out.size() - 2);  // DisplayLines returns at least one line
  return out;
}

// Recorded multi-line text (SQL, DETAIL, HINT, HTTP): each line made safe and indented, each
// ending with a newline. `first` replaces the first line's indent when given.
std::string Block(std::string_view s, std::optional<std::string_view> first = std::nullopt) {
  std::string out;
  bool at_first = true;
  for (const Line& line : DisplayLines(s)) {
    out += at_first && first.has_value() ? *first : kIndent;
    at_first = false;
    out += line.text;
    out += '\n';
  }
  return out;
}

// ---- Time ---------------------------------------------------------------------------------

// "2026-11-30T23:59:01.123456Z" (rfc3339) or "2026-11-30 23:59:01.123456 UTC"; a time
// outside years 1..9999 (nothing a real clock writes) as "@<us>us".
std::string FormatMicros(int64_t us, bool rfc3339) {
  constexpr int64_t kYear1 = -62135596800000000;      // 0001-01-01T00:00:00Z
  constexpr int64_t kYear10000 = 253402300800000000;  // 10000-01-01T00:00:00Z
  if (us < kYear1 || us >= kYear10000) {
    return Cat("@", us, "us");
  }
  using namespace std::chrono;  // NOLINT(build/namespaces): calendar arithmetic.
  sys_time<microseconds> at{microseconds{us}};
  sys_days day = floor<days>(at);
  year_month_day ymd{day};
  hh_mm_ss<microseconds> tod{at - day};
  return fmt::format("{:04}-{:02}-{:02}{}{:02}:{:02}:{:02}.{:06}{}", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     rfc3339 ? "T" : " ", tod.hours().count(), tod.minutes().count(),
                     tod.seconds().count(), tod.subseconds().count(), rfc3339 ? "Z" : " UTC");
}

// "23:59:01.200134", the time of day of a step.
std::string ClockOf(int64_t us) {
  std::string full = FormatMicros(us, false);
  return full.size() == 30 ? full.substr(11, 15) : full;
}

// ---- What a session holds -----------------------------------------------------------------

struct Value {
  bool null = true;
  bool binary = false;
  std::string bytes;
};

Value MakeValue(const std::optional<Bytes>& v, bool binary) {
  if (!v.has_value()) {
    return Value{};
  }
  return Value{.null = false, .binary = binary, .bytes = std::string(View(*v))};
}

// The format code that applies to item `i` of `n` under the protocol's rule: no codes means
// all text, one code applies to all, else one code per item.
bool IsBinary(const std::vector<int16_t>& formats, size_t i) {
  if (formats.empty()) {
    return false;
  }
  return (formats.size() == 1 ? formats[0] : i < formats.size() ? formats[i] : 0) == 1;
}

struct Column {
  std::string name;
  uint32_t type_oid = 0;
  bool binary = false;
};
using Columns = std::optional<std::vector<Column>>;  // nullopt: the statement returns no rows

// What a prepared statement or portal returns, once a Describe (or a Bind of a described
// statement) said so.
struct Shape {
  bool known = false;
  Columns columns;
  bool suspended = false;  // portals: the last Execute ended in PortalSuspended
};

struct QueryStep {
  std::string sql;
};
struct ParseStep {
  std::string statement;
  std::string sql;
};
struct BindStep {
  std::string portal;
  std::string statement;
  std::vector<Value> params;
};
struct ExecuteStep {
  std::string portal;
  int32_t max_rows = 0;
};
enum class ResultEnd { kOpen, kComplete, kSuspended, kError };
struct ResultStep {
  Columns columns;
  std::vector<std::vector<Value>> rows;
  std::optional<std::string> command;
  ResultEnd end = ResultEnd::kOpen;
  bool continues = false;  // further rows of a portal whose last Execute was suspended
};
struct MessageStep {  // ErrorResponse or NoticeResponse
  bool error = true;
  std::string severity;
  std::string sqlstate;
  std::string message;
  std::optional<std::string> detail;
  std::optional<std::string> hint;
};
struct EventStep {  // kTruncated, kGrantEvent, kApproval or kAuthFailure: the record's JSON object
  RecordType type = RecordType::kTruncated;
  json payload;
};
struct UndecodableStep {
  std::string reason;
};
// One side of an HTTP exchange (sessions of kind "http" and "fetch"): the request as the
// gateway accepted it (credentials already replaced), or the response as sent.
struct HttpStep {
  bool request = true;
  std::string text;
};

struct Step {
  uint64_t seq = 0;
  int64_t time_us = 0;
  std::variant<QueryStep, ParseStep, BindStep, ExecuteStep, ResultStep, MessageStep, EventStep,
               UndecodableStep, HttpStep>
      body;
};

// A client message that the server will answer, in the order it will.
enum class Expect {
  kQuery,
  kParse,
  kBind,
  kDescribeStatement,
  kDescribePortal,
  kExecute,
  kClose,
  kSync
};
struct Pending {
  Expect what = Expect::kSync;
  std::string name;                     // statement (Parse, Describe S, Close S) or portal
  std::string statement;                // Bind
  std::vector<int16_t> result_formats;  // Bind
  char close_kind = 'S';                // Close
};

std::string_view JsonRecordName(RecordType type) {
  switch (type) {
    case RecordType::kSessionStart:
      return "session_start";
    case RecordType::kSessionEnd:
      return "session_end";
    case RecordType::kTruncated:
      return "truncated";
    case RecordType::kApproval:
      return "approval";
    case RecordType::kAuthFailure:
      return "auth_failure";
    case RecordType::kUnforwarded:
      return "unforwarded";
    default:
      return "grant_event";
  }
}

std::optional<json> ParseObject(std::string_view payload) {
  json j = json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return std::nullopt;
  }
  return j;
}

}  // namespace

struct SessionReplay::State {
  std::string session_id;
  std::optional<json> start;
  std::optional<json> end;
  int64_t start_us = 0;
  int64_t end_us = 0;
  std::vector<Step> steps;

  // Decoding.
  uint64_t seq = 0;  // of the record being added
  int64_t time_us = 0;
  std::string client_carry;
  std::string server_carry;
  std::deque<Pending> pending;
  std::map<std::string, Shape> statements;
  std::map<std::string, Shape> portals;
  std::optional<size_t> open_result;  // index into steps

  void Add(const Record& record);
  void Feed(std::string& carry, pgwire::Direction direction, std::string_view bytes);
  void DropCarry(std::string& carry, std::string_view side, std::string_view when);
  void OnClient(const pgwire::Frame& frame);
  void OnServer(const pgwire::Frame& frame);

  void OnRowDescription(Bytes body);
  void OnDataRow(Bytes body);
  void OnCommandComplete(Bytes body);
  void OnPortalSuspended();
  void OnEmptyQuery();
  void OnErrorOrNotice(Bytes body, bool error);
  void OnBindComplete();
  void OnNoData();
  void OnCloseComplete();
  void OnReadyForQuery();

  template <typename T>
  T& AddStep(T body) {
    steps.push_back(Step{.seq = seq, .time_us = time_us, .body = std::move(body)});
    return std::get<T>(steps.back().body);
  }
  void Undecodable(std::string reason) { AddStep(UndecodableStep{std::move(reason)}); }
  ResultStep& OpenResult(Columns columns, bool continues);
  ResultStep& OpenResultForExecute();
  void CloseResult(ResultEnd end);
  [[nodiscard]] const Pending* Front(Expect what) const;
  void PopExecute(bool suspended);
};

SessionReplay::SessionReplay() : state_(std::make_unique<State>()) {}
SessionReplay::~SessionReplay() = default;
SessionReplay::SessionReplay(SessionReplay&&) noexcept = default;
SessionReplay& SessionReplay::operator=(SessionReplay&&) noexcept = default;

void SessionReplay::Add(const Record& record) { state_->Add(record); }

void SessionReplay::State::Add(const Record& record) {
  seq = record.seq;
  time_us = record.time_us;
  if (session_id.empty()) {
    session_id = record.session;
  }
  const bool http = start.has_value() && start->value("kind", "") != "postgres";
  switch (record.type) {
    case RecordType::kClientFrames:
      if (http) {
        AddStep(HttpStep{.request = true, .text = std::string(record.payload)});
        return;
      }
      Feed(client_carry, pgwire::Direction::kFrontend, record.payload);
      return;
    case RecordType::kServerFrames:
      if (http) {
        AddStep(HttpStep{.request = false, .text = std::string(record.payload)});
        return;
      }
      Feed(server_carry, pgwire::Direction::kBackend, record.payload);
      return;
    case RecordType::kSessionStart:
    case RecordType::kSessionEnd:
    case RecordType::kTruncated:
    case RecordType::kGrantEvent:
    case RecordType::kApproval:
    case RecordType::kAuthFailure:
    case RecordType::kUnforwarded:
      break;
    default:  // checkpoints, recovery, pruning: not part of a session
      return;
  }
  std::optional<json> payload = ParseObject(record.payload);
  if (!payload.has_value()) {
    Undecodable(Cat(JsonRecordName(record.type), " payload is not a JSON object"));
    return;
  }
  if (record.type == RecordType::kSessionStart) {
    if (start.has_value()) {
      Undecodable(Cat("a second session_start record (seq ", record.seq, ")"));
      return;
    }
    start = std::move(payload);
    start_us = record.time_us;
  } else if (record.type == RecordType::kSessionEnd) {
    DropCarry(client_carry, "client", "the session's end");
    DropCarry(server_carry, "server", "the session's end");
    end = std::move(payload);
    end_us = record.time_us;
  } else {
    bool truncated = record.type == RecordType::kTruncated;
    if (truncated) {
      DropCarry(client_carry, "client", "the truncation");
      DropCarry(server_carry, "server", "the truncation");
    }
    AddStep(EventStep{.type = record.type, .payload = std::move(*payload)});
  }
}

void SessionReplay::State::DropCarry(std::string& carry, std::string_view side,
                                     std::string_view when) {
  if (!carry.empty()) {
    Undecodable(
        Cat(side, " frames: ", carry.size(), " bytes of an incomplete frame before ", when));
    carry.clear();
  }
}

void SessionReplay::State::Feed(std::string& carry, pgwire::Direction direction,
                                std::string_view bytes) {
  carry.append(bytes);
  const pgwire::Limits limits;
  size_t used = 0;
  while (used < carry.size()) {
    pgwire::FrameResult r =
        pgwire::DecodeFrame(AsBytes(std::string_view(carry).substr(used)), direction, limits);
    if (r.status == pgwire::DecodeStatus::kNeedMoreData) {
      break;
    }
    if (r.status == pgwire::DecodeStatus::kError) {
      // Framing is lost: nothing after this point of the buffer can be trusted to start a
      // frame. The next record starts afresh.
      Undecodable(Cat(direction == pgwire::Direction::kFrontend ? "client" : "server", " frames: ",
                      MessageOf(r.error), " (", carry.size() - used, " bytes skipped)"));
      used = carry.size();
      break;
    }
    if (direction == pgwire::Direction::kFrontend) {
      OnClient(r.frame);
    } else {
      OnServer(r.frame);
    }
    used += r.frame.wire_size;
  }
  carry.erase(0, used);
}

// ---- Client messages ------------------------------------------------------------------------

void SessionReplay::State::OnClient(const pgwire::Frame& frame) {
  namespace fe = pgwire::frontend;
  auto failed = [&](std::string_view what, const absl::Status& status) {
    Undecodable(Cat("client ", what, ": ", MessageOf(status)));
  };
  switch (frame.type) {
    case fe::kQuery: {
      auto m = pgwire::ParseQuery(frame.body);
      if (!m.ok()) {
        return failed("Query", m.status());
      }
      AddStep(QueryStep{std::move(m->sql)});
      pending.push_back(Pending{.what = Expect::kQuery});
      return;
    }
    case fe::kParse: {
      auto m = pgwire::ParseParse(frame.body);
      if (!m.ok()) {
        return failed("Parse", m.status());
      }
      pending.push_back(Pending{.what = Expect::kParse, .name = m->statement});
      AddStep(ParseStep{std::move(m->statement), std::move(m->query)});
      return;
    }
    case fe::kBind: {
      auto m = pgwire::ParseBind(frame.body);
      if (!m.ok()) {
        return failed("Bind", m.status());
      }
      BindStep step{.portal = m->portal, .statement = m->statement, .params = {}};
      for (size_t i = 0; i < m->params.size(); ++i) {
        step.params.push_back(MakeValue(m->params[i], IsBinary(m->param_formats, i)));
      }
      pending.push_back(Pending{.what = Expect::kBind,
                                .name = std::move(m->portal),
                                .statement = std::move(m->statement),
                                .result_formats = std::move(m->result_formats)});
      AddStep(std::move(step));
      return;
    }
    case fe::kDescribe: {
      auto m = pgwire::ParseDescribe(frame.body);
      if (!m.ok()) {
        return failed("Describe", m.status());
      }
      pending.push_back(
          Pending{.what = m->kind == 'P' ? Expect::kDescribePortal : Expect::kDescribeStatement,
                  .name = std::move(m->name)});
      return;
    }
    case fe::kExecute: {
      auto m = pgwire::ParseExecute(frame.body);
      if (!m.ok()) {
        return failed("Execute", m.status());
      }
      pending.push_back(Pending{.what = Expect::kExecute, .name = m->portal});
      AddStep(ExecuteStep{std::move(m->portal), m->max_rows});
      return;
    }
    case fe::kClose: {
      auto m = pgwire::ParseClose(frame.body);
      if (!m.ok()) {
        return failed("Close", m.status());
      }
      pending.push_back(
          Pending{.what = Expect::kClose, .name = std::move(m->name), .close_kind = m->kind});
      return;
    }
    case fe::kSync:
      pending.push_back(Pending{.what = Expect::kSync});
      return;
    default:  // Flush, Terminate, copy and function-call traffic: nothing to show
      return;
  }
}

// ---- Server messages ------------------------------------------------------------------------

const Pending* SessionReplay::State::Front(Expect what) const {
  return !pending.empty() && pending.front().what == what ? &pending.front() : nullptr;
}

ResultStep& SessionReplay::State::OpenResult(Columns columns, bool continues) {
  open_result = steps.size();
  return AddStep(ResultStep{.columns = std::move(columns), .continues = continues});
}

// A result that starts without a RowDescription of its own: an Execute's, whose columns are
// what the portal was described as (unknown if it never was), or a command's.
ResultStep& SessionReplay::State::OpenResultForExecute() {
  if (const Pending* execute = Front(Expect::kExecute)) {
    const Shape& shape = portals[execute->name];
    return OpenResult(shape.known ? shape.columns : std::nullopt, shape.suspended);
  }
  return OpenResult(std::nullopt, false);
}

void SessionReplay::State::CloseResult(ResultEnd end) {
  if (open_result.has_value()) {
    std::get<ResultStep>(steps[*open_result].body).end = end;
    open_result.reset();
  }
}

void SessionReplay::State::PopExecute(bool suspended) {
  if (const Pending* execute = Front(Expect::kExecute)) {
    portals[execute->name].suspended = suspended;
    pending.pop_front();
  }
}

void SessionReplay::State::OnServer(const pgwire::Frame& frame) {
  namespace be = pgwire::backend;
  switch (frame.type) {
    case be::kRowDescription:
      return OnRowDescription(frame.body);
    case be::kDataRow:
      return OnDataRow(frame.body);
    case be::kCommandComplete:
      return OnCommandComplete(frame.body);
    case be::kPortalSuspended:
      return OnPortalSuspended();
    case be::kEmptyQueryResponse:
      return OnEmptyQuery();
    case be::kErrorResponse:
      return OnErrorOrNotice(frame.body, true);
    case be::kNoticeResponse:
      return OnErrorOrNotice(frame.body, false);
    case be::kParseComplete:
      if (const Pending* parse = Front(Expect::kParse)) {
        statements[parse->name] = Shape{};
        pending.pop_front();
      }
      return;
    case be::kBindComplete:
      return OnBindComplete();
    case be::kNoData:
      return OnNoData();
    case be::kCloseComplete:
      return OnCloseComplete();
    case be::kReadyForQuery:
      return OnReadyForQuery();
    default:  // ParameterStatus, ParameterDescription, notifications, copy traffic, ...
      return;
  }
}

void SessionReplay::State::OnRowDescription(Bytes body) {
  auto m = pgwire::ParseRowDescription(body);
  if (!m.ok()) {
    return Undecodable(Cat("server RowDescription: ", MessageOf(m.status())));
  }
  std::vector<Column> columns;
  for (const pgwire::FieldDescription& f : m->fields) {
    columns.push_back(Column{.name = f.name, .type_oid = f.type_oid, .binary = f.format == 1});
  }
  if (const Pending* describe = Front(Expect::kDescribeStatement)) {
    // Formats in a statement's description are not known yet: the Bind sets them.
    statements[describe->name] = Shape{.known = true, .columns = std::move(columns)};
    pending.pop_front();
  } else if (const Pending* describe = Front(Expect::kDescribePortal)) {
    portals[describe->name] = Shape{.known = true, .columns = std::move(columns)};
    pending.pop_front();
  } else {
    CloseResult(ResultEnd::kOpen);  // a result without its end: left "incomplete"
    OpenResult(std::move(columns), false);
  }
}

void SessionReplay::State::OnDataRow(Bytes body) {
  auto m = pgwire::ParseDataRow(body);
  if (!m.ok()) {
    return Undecodable(Cat("server DataRow: ", MessageOf(m.status())));
  }
  ResultStep& result = open_result.has_value() ? std::get<ResultStep>(steps[*open_result].body)
                                               : OpenResultForExecute();
  std::vector<Value> row;
  row.reserve(m->values.size());
  for (size_t i = 0; i < m->values.size(); ++i) {
    bool binary =
        result.columns.has_value() && i < result.columns->size() && (*result.columns)[i].binary;
    row.push_back(MakeValue(m->values[i], binary));
  }
  result.rows.push_back(std::move(row));
}

void SessionReplay::State::OnCommandComplete(Bytes body) {
  auto m = pgwire::ParseCommandComplete(body);
  if (!m.ok()) {
    return Undecodable(Cat("server CommandComplete: ", MessageOf(m.status())));
  }
  ResultStep& result = open_result.has_value() ? std::get<ResultStep>(steps[*open_result].body)
                                               : OpenResultForExecute();
  result.command = std::move(m->tag);
  CloseResult(ResultEnd::kComplete);
  PopExecute(false);
}

void SessionReplay::State::OnPortalSuspended() {
  if (!open_result.has_value()) {
    OpenResultForExecute();
  }
  CloseResult(ResultEnd::kSuspended);
  PopExecute(true);
}

void SessionReplay::State::OnEmptyQuery() {
  CloseResult(ResultEnd::kComplete);
  PopExecute(false);
}

void SessionReplay::State::OnErrorOrNotice(Bytes body, bool error) {
  auto m = pgwire::ParseErrorFields(body);
  if (!m.ok()) {
    return Undecodable(
        Cat("server ", error ? "ErrorResponse: " : "NoticeResponse: ", MessageOf(m.status())));
  }
  auto field = [&](char code) -> std::string {
    const std::string* v = m->Find(code);
    return v != nullptr ? *v : std::string();
  };
  auto optional_field = [&](char code) -> std::optional<std::string> {
    const std::string* v = m->Find(code);
    return v != nullptr ? std::optional<std::string>(*v) : std::nullopt;
  };
  MessageStep step{.error = error,
                   .severity = m->Find('V') != nullptr ? field('V') : field('S'),
                   .sqlstate = field('C'),
                   .message = field('M'),
                   .detail = optional_field('D'),
                   .hint = optional_field('H')};
  if (!error) {
    AddStep(std::move(step));
    return;
  }
  CloseResult(ResultEnd::kError);
  AddStep(std::move(step));
  // In the extended protocol the server discards every message up to the next Sync; within
  // a simple Query only the statement fails, and the Query waits for its ReadyForQuery.
  while (!pending.empty() && pending.front().what != Expect::kSync &&
         pending.front().what != Expect::kQuery) {
    if (pending.front().what == Expect::kExecute) {
      portals[pending.front().name].suspended = false;
    }
    pending.pop_front();
  }
}

void SessionReplay::State::OnBindComplete() {
  const Pending* bind = Front(Expect::kBind);
  if (bind == nullptr) {
    return;
  }
  Shape portal;
  auto statement = statements.find(bind->statement);
  if (statement != statements.end() && statement->second.known) {
    portal.known = true;
    portal.columns = statement->second.columns;
    if (portal.columns.has_value()) {
      for (size_t i = 0; i < portal.columns->size(); ++i) {
        (*portal.columns)[i].binary = IsBinary(bind->result_formats, i);
      }
    }
  }
  portals[bind->name] = std::move(portal);
  pending.pop_front();
}

void SessionReplay::State::OnNoData() {
  if (const Pending* describe = Front(Expect::kDescribeStatement)) {
    statements[describe->name] = Shape{.known = true};
    pending.pop_front();
  } else if (const Pending* describe = Front(Expect::kDescribePortal)) {
    portals[describe->name] = Shape{.known = true};
    pending.pop_front();
  }
}

void SessionReplay::State::OnCloseComplete() {
  if (const Pending* close = Front(Expect::kClose)) {
    (close->close_kind == 'P' ? portals : statements).erase(close->name);
    pending.pop_front();
  }
}

void SessionReplay::State::OnReadyForQuery() {
  CloseResult(ResultEnd::kOpen);  // never ended: left "incomplete"
  // Resynchronises with the client: everything up to the Sync or Query answered here.
  while (!pending.empty()) {
    Expect what = pending.front().what;
    pending.pop_front();
    if (what == Expect::kSync || what == Expect::kQuery) {
      break;
    }
  }
}

// ---- JSON -----------------------------------------------------------------------------------

namespace {

json ValueJson(const Value& v) {
  if (v.null) {
    return nullptr;
  }
  if (v.binary || !IsValidUtf8(v.bytes)) {
    return json{{"hex", Hex(v.bytes)}};
  }
  return v.bytes;
}

json RowJson(const std::vector<Value>& values) {
  json out = json::array();
  for (const Value& v : values) {
    out.push_back(ValueJson(v));
  }
  return out;
}

std::string_view EndName(ResultEnd end) {
  switch (end) {
    case ResultEnd::kComplete:
      return "complete";
    case ResultEnd::kSuspended:
      return "suspended";
    case ResultEnd::kError:
      return "error";
    case ResultEnd::kOpen:
      break;
  }
  return "incomplete";
}

struct StepToJson {
  json& j;
  void operator()(const QueryStep& s) const {
    j["kind"] = "query";
    j["sql"] = Utf8(s.sql);
  }
  void operator()(const ParseStep& s) const {
    j["kind"] = "parse";
    j["statement"] = Utf8(s.statement);
    j["sql"] = Utf8(s.sql);
  }
  void operator()(const BindStep& s) const {
    j["kind"] = "bind";
    j["portal"] = Utf8(s.portal);
    j["statement"] = Utf8(s.statement);
    j["params"] = RowJson(s.params);
  }
  void operator()(const ExecuteStep& s) const {
    j["kind"] = "execute";
    j["portal"] = Utf8(s.portal);
    j["max_rows"] = s.max_rows;
  }
  void operator()(const ResultStep& s) const {
    j["kind"] = "result";
    j["columns"] = nullptr;
    if (s.columns.has_value()) {
      j["columns"] = json::array();
      for (const Column& c : *s.columns) {
        j["columns"].push_back(json{{"name", Utf8(c.name)},
                                    {"type_oid", c.type_oid},
                                    {"format", c.binary ? "binary" : "text"}});
      }
    }
    j["rows"] = json::array();
    for (const std::vector<Value>& row : s.rows) {
      j["rows"].push_back(RowJson(row));
    }
    j["command"] = s.command.has_value() ? json(Utf8(*s.command)) : json(nullptr);
    j["status"] = EndName(s.end);
  }
  void operator()(const MessageStep& s) const {
    j["kind"] = s.error ? "error" : "notice";
    j["severity"] = Utf8(s.severity);
    j["sqlstate"] = Utf8(s.sqlstate);
    j["message"] = Utf8(s.message);
    if (s.detail.has_value()) {
      j["detail"] = Utf8(*s.detail);
    }
    if (s.hint.has_value()) {
      j["hint"] = Utf8(*s.hint);
    }
  }
  void operator()(const EventStep& s) const {
    for (const auto& [key, value] : s.payload.items()) {
      if (key != "session" && key != "kind" && key != "at" && key != "seq") {
        j[key] = value;
      }
    }
    j["kind"] = JsonRecordName(s.type);
  }
  void operator()(const UndecodableStep& s) const {
    j["kind"] = "undecodable";
    j["reason"] = Utf8(s.reason);
  }
  void operator()(const HttpStep& s) const {
    j["kind"] = s.request ? "http_request" : "http_response";
    const size_t blank = s.text.find("\r\n\r\n");
    if (s.request || blank == std::string::npos) {
      j["text"] = Utf8(s.text);
      return;
    }
    // "HTTP/1.1 200 OK\r\nheaders\r\n\r\nbody": the status, the head and the body.
    const std::string_view head = std::string_view(s.text).substr(0, blank);
    const size_t space = head.find(' ');
    unsigned status = 0;
    if (space != std::string_view::npos) {
      for (size_t i = space + 1; i < head.size() && i < space + 4; ++i) {
        status = status * 10 + static_cast<unsigned>(head[i] - '0');
      }
    }
    j["status"] = status;
    j["head"] = Utf8(head);
    j["body"] = Utf8(std::string_view(s.text).substr(blank + 4));
  }
};

}  // namespace

nlohmann::json SessionReplay::ToJson() const {
  const State& s = *state_;
  json out = json::object();
  out["session"] = s.start.has_value() ? *s.start : json(nullptr);
  out["steps"] = json::array();
  for (const Step& step : s.steps) {
    json j = json::object();
    j["at"] = FormatMicros(step.time_us, true);
    j["seq"] = step.seq;
    std::visit(StepToJson{j}, step.body);
    out["steps"].push_back(std::move(j));
  }
  out["end"] = s.end.has_value() ? *s.end : json(nullptr);
  return out;
}

// ---- CSV ------------------------------------------------------------------------------------

namespace {

// psql's csv_print_field with ',' as the separator: quoted when the field holds a comma, a
// double quote, CR or LF, or is exactly \. (a COPY end-of-data marker); inside quotes a
// double quote is doubled. Nothing else is quoted: not spaces, not the empty string (which
// is how NULL prints too).
void AppendCsvField(std::string_view field, std::string& out) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos && field != "\\.") {
    out.append(field);
    return;
  }
  out.push_back('"');
  for (char c : field) {
    if (c == '"') {
      out.push_back('"');
    }
    out.push_back(c);
  }
  out.push_back('"');
}

std::string CsvText(const Value& v) {
  if (v.null) {
    return {};
  }
  return v.binary ? Cat("\\x", Hex(v.bytes)) : v.bytes;
}

}  // namespace

std::string SessionReplay::RenderCsv() const {
  std::string out;
  for (const Step& step : state_->steps) {
    const auto* result = std::get_if<ResultStep>(&step.body);
    if (result == nullptr ||
        (result->end != ResultEnd::kComplete && result->end != ResultEnd::kSuspended)) {
      continue;
    }
    if (result->columns.has_value() && !result->continues) {
      for (size_t i = 0; i < result->columns->size(); ++i) {
        if (i > 0) {
          out.push_back(',');
        }
        AppendCsvField((*result->columns)[i].name, out);
      }
      out.push_back('\n');
    }
    for (const std::vector<Value>& row : result->rows) {
      // psql prints one line per row as it ends its last cell: none without columns.
      size_t width = result->columns.has_value() ? result->columns->size() : row.size();
      for (size_t i = 0; i < width; ++i) {
        if (i > 0) {
          out.push_back(',');
        }
        AppendCsvField(i < row.size() ? CsvText(row[i]) : std::string(), out);
      }
      if (width > 0) {
        out.push_back('\n');
      }
    }
  }
  return out;
}

// ---- Text -----------------------------------------------------------------------------------

namespace {

// psql right-aligns numbers: int2/4/8, oid, xid, cid, float4/8, money, numeric, xid8.
bool IsNumericType(uint32_t oid) {
  switch (oid) {
    case 20:
    case 21:
    case 23:
    case 26:
    case 28:
    case 29:
    case 700:
    case 701:
    case 790:
    case 1700:
    case 5069:
      return true;
    default:
      return false;
  }
}

enum class Align { kLeft, kRight, kCenter };

// One table line per display line of the tallest cell, psql's aligned format with border 1:
// " a | b", a '+' before the bar where a cell continues on the next line, the last column
// left unpadded (except headers, which psql centres and pads).
void AppendTableRow(const std::vector<std::vector<Line>>& cells, const std::vector<size_t>& widths,
                    const std::vector<Align>& align, std::string& out) {
  size_t height = 1;
  for (const std::vector<Line>& cell : cells) {
    height = std::max(height, cell.size());
  }
  for (size_t l = 0; l < height; ++l) {
    for (size_t i = 0; i < cells.size(); ++i) {
      const Line empty;
      const Line& line = l < cells[i].size() ? cells[i][l] : empty;
      bool more = l + 1 < cells[i].size();
      size_t pad = widths[i] - std::min(widths[i], line.width);
      size_t before = align[i] == Align::kRight ? pad : align[i] == Align::kCenter ? pad / 2 : 0;
      bool last = i + 1 == cells.size();
      if (last && l >= cells[i].size() && align[i] != Align::kCenter) {
        before = 0;  // psql writes nothing for a last cell that has no more lines
      }
      out.append(i > 0 ? "| " : " ");
      out.append(before, ' ');
      out += line.text;
      if (last && align[i] != Align::kCenter && !more) {
        break;
      }
      out.append(pad - before, ' ');
      out.push_back(more ? '+' : ' ');
    }
    out.push_back('\n');
  }
}

std::vector<Line> CellLines(const Value& v) {
  if (v.null) {
    return {Line{}};
  }
  return DisplayLines(v.binary ? Cat("\\x", Hex(v.bytes)) : v.bytes);
}

void AppendTable(const ResultStep& r, std::string& out) {
  size_t ncols = 0;
  if (r.columns.has_value()) {
    ncols = r.columns->size();
  } else {
    for (const std::vector<Value>& row : r.rows) {
      ncols = std::max(ncols, row.size());
    }
  }
  std::vector<std::vector<Line>> header(ncols);
  std::vector<size_t> widths(ncols, 0);
  std::vector<Align> centre(ncols, Align::kCenter);
  std::vector<Align> align(ncols, Align::kLeft);
  for (size_t i = 0; i < ncols; ++i) {
    header[i] = DisplayLines(r.columns.has_value() ? (*r.columns)[i].name : "?column?");
    if (r.columns.has_value() && IsNumericType((*r.columns)[i].type_oid)) {
      align[i] = Align::kRight;
    }
  }
  std::vector<std::vector<std::vector<Line>>> rows;
  rows.reserve(r.rows.size());
  for (const std::vector<Value>& row : r.rows) {
    std::vector<std::vector<Line>> cells(ncols, std::vector<Line>(1));
    for (size_t i = 0; i < ncols && i < row.size(); ++i) {
      cells[i] = CellLines(row[i]);
    }
    rows.push_back(std::move(cells));
  }
  auto widen = [&](const std::vector<std::vector<Line>>& cells) {
    for (size_t i = 0; i < ncols; ++i) {
      for (const Line& line : cells[i]) {
        widths[i] = std::max(widths[i], line.width);
      }
    }
  };
  widen(header);
  for (const auto& cells : rows) {
    widen(cells);
  }
  if (ncols > 0) {
    AppendTableRow(header, widths, centre, out);
    for (size_t i = 0; i < ncols; ++i) {
      out.append(i > 0 ? "+" : "");
      out.append(widths[i] + 2, '-');
    }
    out.push_back('\n');
    for (const auto& cells : rows) {
      AppendTableRow(cells, widths, align, out);
    }
  }
}

void AppendResult(const ResultStep& r, std::string& out) {
  bool table = r.columns.has_value() || !r.rows.empty();
  if (table) {
    AppendTable(r, out);
    size_t n = r.rows.size();
    std::string_view tail = r.end == ResultEnd::kSuspended ? ", portal suspended"
                            : r.end == ResultEnd::kError   ? ", then an error"
                            : r.end == ResultEnd::kOpen    ? ", recording ends before the result"
                                                           : "";
    out += Cat("(", n, n == 1 ? " row" : " rows", tail, ")\n");
  }
  // Like psql: a command's tag, and after rows only for INSERT/UPDATE/DELETE ... RETURNING.
  if (r.command.has_value() &&
      (!table || r.command->starts_with("INSERT") || r.command->starts_with("UPDATE") ||
       r.command->starts_with("DELETE"))) {
    // A tag is one line at column 0 (psql's place for it); it cannot begin a step header.
    std::string tag = OneLine(*r.command);
    if (tag.starts_with('[')) {
      tag.replace(0, 1, "\\x5B");
    }
    out += Cat(tag, "\n");
  } else if (!table && r.end == ResultEnd::kSuspended) {
    out += "(portal suspended)\n";
  }
}

std::string Name(std::string_view name) {
  return name.empty() ? std::string("(unnamed)") : OneLine(name);
}

std::string ValueText(const Value& v) {
  if (v.null) {
    return "NULL";
  }
  if (v.binary) {
    return Cat("\\x", Hex(v.bytes));
  }
  std::string quoted = "'";
  for (char c : v.bytes) {
    quoted += c;
    if (c == '\'') {
      quoted += c;
    }
  }
  return OneLine(quoted + "'");
}

// A field of a JSON object as text: strings as they are, anything else as JSON, and
// `fallback` when it is missing or null.
std::string Field(const json& object, std::string_view key, std::string_view fallback = "?") {
  if (!object.is_object()) {
    return std::string(fallback);
  }
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    return std::string(fallback);
  }
  return OneLine(it->is_string() ? it->get_ref<const std::string&>() : it->dump());
}

struct StepToText {
  std::string& out;
  std::string at;
  void Head(std::string_view what) const { out += Cat("\n[", at, "] ", what, "\n"); }
  void operator()(const QueryStep& s) const {
    Head("query");
    out += Block(s.sql);
  }
  void operator()(const ParseStep& s) const {
    Head(Cat("parse statement ", Name(s.statement)));
    out += Block(s.sql);
  }
  void operator()(const BindStep& s) const {
    std::string params;
    for (size_t i = 0; i < s.params.size(); ++i) {
      params += Cat(i == 0 ? ": " : ", ", "$", i + 1, " = ", ValueText(s.params[i]));
    }
    Head(Cat("bind portal ", Name(s.portal), " to statement ", Name(s.statement), params));
  }
  void operator()(const ExecuteStep& s) const {
    Head(Cat("execute portal ", Name(s.portal),
             s.max_rows > 0 ? Cat(", at most ", s.max_rows, s.max_rows == 1 ? " row" : " rows")
                            : std::string()));
  }
  void operator()(const ResultStep& s) const { AppendResult(s, out); }
  void operator()(const MessageStep& s) const {
    std::string_view usual = s.error ? "ERROR" : "NOTICE";
    Head(Cat(s.error ? "error " : "notice ",
             s.severity == usual ? "" : Cat(OneLine(s.severity), " "), OneLine(s.sqlstate), ": ",
             OneLine(s.message)));
    if (s.detail.has_value()) {
      out += Block(*s.detail, "DETAIL:  ");
    }
    if (s.hint.has_value()) {
      out += Block(*s.hint, "HINT:  ");
    }
  }
  void operator()(const EventStep& s) const {
    if (s.type == RecordType::kAuthFailure) {
      // A refused credential (or a count of them): never a secret, only who and why.
      const std::string grant = Field(s.payload, "grant_id", "");
      const std::string user = Field(s.payload, "user", "");
      Head(Cat("refused ", Field(s.payload, "path"), " credential: ", Field(s.payload, "reason"),
               " (", Field(s.payload, "event"), ", ", Field(s.payload, "count"),
               " attempt(s) from ", Field(s.payload, "first_at"), " to ",
               Field(s.payload, "last_at"), ")"));
      out += Cat("connection ", Field(s.payload, "connection", "-"), ", client ",
                 Field(s.payload, "client_address", "-"), user.empty() ? "" : Cat(", user ", user),
                 grant.empty() ? "" : Cat(", grant ", grant), "\n");
    } else if (s.type == RecordType::kUnforwarded) {
      // Client frames the backend never received: a summary, never their bytes.
      const json frames = s.payload.value("frames", json::array());
      Head("client frames not forwarded (summary; their bytes are not recorded)");
      for (const json& f : frames.is_array() ? frames : json::array()) {
        // One indented line per entry (Field shows a newline in a refused statement's head
        // as \n), so recorded text cannot pass for a line of the replay's own.
        const std::string head = Field(f, "head", "");
        out += Cat(kIndent, Field(f, "count"), " x '", Field(f, "type"), "' (", Field(f, "bytes"),
                   " bytes) ", Field(f, "verdict"), head.empty() ? "" : Cat(": ", head), "\n");
      }
    } else if (s.type == RecordType::kTruncated) {
      Head(Cat("recording truncated at ", Field(s.payload, "limit_bytes"), " bytes (",
               Field(s.payload, "recorded_bytes"), " recorded): nothing after this was recorded"));
    } else if (s.type == RecordType::kApproval && s.payload.contains("decisions")) {
      // The decision a session waited for: the approval as the API shows it.
      std::string votes;
      if (s.payload["decisions"].is_array()) {
        for (const json& d : s.payload["decisions"]) {
          const std::string comment = Field(d, "comment", "");
          votes += Cat(votes.empty() ? "" : "; ", Field(d, "approver"), " ", Field(d, "decision"),
                       comment.empty() ? "" : Cat(" \"", comment, "\""));
        }
      }
      Head(Cat("approval ", Field(s.payload, "id"), ": ", Field(s.payload, "state"),
               votes.empty() ? "" : Cat(" (", votes, ")")));
    } else if (s.type == RecordType::kApproval) {
      std::string comment = Field(s.payload, "comment", "");
      Head(Cat("approval ", Field(s.payload, "request_id"), ": ", Field(s.payload, "event"), " ",
               Field(s.payload, "state"), Cat(" by ", Field(s.payload, "actor")),
               comment.empty() ? "" : Cat(" (", comment, ")")));
    } else {
      std::string detail = Field(s.payload, "detail", "");
      Head(Cat("grant ", Field(s.payload, "grant_id"), ": ", Field(s.payload, "from"), " -> ",
               Field(s.payload, "to"), " by ", Field(s.payload, "actor"),
               detail.empty() ? "" : Cat(" (", detail, ")")));
    }
  }
  void operator()(const UndecodableStep& s) const { Head(Cat("undecodable: ", OneLine(s.reason))); }
  void operator()(const HttpStep& s) const {
    Head(s.request ? "http request" : "http response");
    std::string text;  // HTTP's CRLF line ends shown as plain lines
    for (size_t i = 0; i < s.text.size(); ++i) {
      if (!(s.text[i] == '\r' && i + 1 < s.text.size() && s.text[i + 1] == '\n')) {
        text.push_back(s.text[i]);
      }
    }
    out += Block(text);
  }
};

}  // namespace

std::string SessionReplay::RenderText() const {
  const State& s = *state_;
  std::string out;
  // Only refused credentials (Recorder::AuthFailure): no session began, none ended.
  const bool refusal = !s.start.has_value() && !s.end.has_value() && !s.steps.empty() &&
                       std::all_of(s.steps.begin(), s.steps.end(), [](const Step& step) {
                         const EventStep* event = std::get_if<EventStep>(&step.body);
                         return event != nullptr && event->type == RecordType::kAuthFailure;
                       });
  if (s.start.has_value()) {
    const json& j = *s.start;
    const json none;
    auto principal = j.find("principal");
    const json& p = principal != j.end() ? *principal : none;
    out += Cat("session ", Field(j, "session"), " on ", Field(j, "connection"), ": ",
               Field(j, "user"), " (client ", Field(p, "client_id"), ") via ", Field(p, "issuer"),
               ", grant ", Field(j, "grant_id", "none"), ", trace ", Field(j, "trace_id"),
               ", from ", Field(j, "client_address"), "\n");
    std::string tls = "no TLS";
    if (auto it = j.find("tls"); it != j.end() && it->is_object()) {
      tls = Cat(Field(*it, "version"), " ", Field(*it, "cipher"));
    }
    out += Cat("database ", Field(j, "database"), ", rule ", Field(j, "rule"), ", masking ",
               Field(j, "masking_profile", "none"), ", ", tls, "\n");
    out += Cat("started ", FormatMicros(s.start_us, false), "\n");
  } else if (refusal) {
    out += Cat("refused attempt(s) ", OneLine(s.session_id),
               ": a credential the gateway refused, no session began\n");
  } else {
    out += Cat("session ", OneLine(s.session_id), " (no session_start record)\n");
  }
  for (const Step& step : s.steps) {
    std::visit(StepToText{out, ClockOf(step.time_us)}, step.body);
  }
  if (refusal) {
    return out;
  }
  if (!s.end.has_value()) {
    out += "\nnot ended: no session_end record\n";
    return out;
  }
  const json& e = *s.end;
  out +=
      Cat("\nended ", FormatMicros(s.end_us, false), ": ", Field(e, "outcome"), " (",
          Field(e, "reason", ""), "); ", Field(e, "statements"), " statements, ",
          Field(e, "blocked"), " blocked, ", Field(e, "rows"), " rows, ",
          Field(e, "bytes_to_client"), " bytes sent, ", Field(e, "bytes_from_client"), " received");
  if (auto it = e.find("masked"); it != e.end() && it->is_object() && !it->empty()) {
    std::string masked;
    for (const auto& [entity, count] : it->items()) {
      masked +=
          Cat(masked.empty() ? "; masked " : ", ", OneLine(entity), "=", OneLine(count.dump()));
    }
    out += masked;
  }
  if (std::string errors = Field(e, "masking_errors", "0"); errors != "0") {
    out += Cat("; ", errors, " masking errors");
  }
  out += "\n";
  return out;
}

}  // namespace tracegate::audit
