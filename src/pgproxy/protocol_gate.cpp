#include "pgproxy/protocol_gate.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "common/strings.h"
#include "pgproxy/pg_error.h"

namespace tracegate::pgproxy {
namespace {

namespace fe = pgwire::frontend;
namespace be = pgwire::backend;

// What a refused message is replaced with: text that fails to parse (42601), so the backend
// itself answers with an error, aborts the transaction block if there is one, and (extended
// protocol) skips to Sync, as it would have for an error of its own. The gate delivers its
// refusal in place of that error. The statement name is longer than PostgreSQL's names can
// be (NAMEDATALEN 63) and is never created: the Parse fails.
constexpr std::string_view kRefusedStatement = "tracegate: statement refused by the gateway";
constexpr std::string_view kRefusedName =
    "tracegate:refused-message-placeholder-that-is-longer-than-NAMEDATALEN-63";

// Parameter types a pinning parameter may be declared with at Parse: unspecified, text,
// varchar, uuid (casts that could change the value, such as bpchar or name, are refused).
bool TraceParamType(uint32_t oid) { return oid == 0 || oid == 25 || oid == 1043 || oid == 2950; }

std::optional<std::string> ParseUuid(std::string_view s) {
  std::string hex;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '-' && (i == 8 || i == 13 || i == 18 || i == 23) && s.size() == 36) {
      continue;
    }
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return std::nullopt;
    }
    hex.push_back(c);
  }
  if (hex.size() != 32) {
    return std::nullopt;
  }
  std::string out(16, '\0');
  for (size_t i = 0; i < 16; ++i) {
    out[i] = static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  }
  return out;
}

std::string_view AsView(pgwire::Bytes b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

int32_t ReadInt32(const uint8_t* p) {
  return static_cast<int32_t>((uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                              (uint32_t{p[2]} << 8) | uint32_t{p[3]});
}

}  // namespace

bool IsUtf8EncodingName(std::string_view name) {
  std::string folded;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      folded.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  return folded == "utf8" || folded == "unicode";
}

std::string TraceColumnsQuery(const std::vector<config::TraceTable>& tables) {
  // Names are validated by the config loader ([a-z0-9_$]), so quoting them is enough.
  std::string values;
  for (const config::TraceTable& t : tables) {
    values += Cat(values.empty() ? "" : ", ", "('", t.schema, "', '", t.name, "')");
  }
  return Cat(
      "SELECT n.nspname, c.relname, a.attname, c.oid, a.attnum "
      "FROM pg_catalog.pg_class c "
      "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
      "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
      "AND NOT a.attisdropped "
      "WHERE (n.nspname, c.relname) IN (",
      values, ")");
}

ProtocolGate::ProtocolGate(const sql::Gate& gate, std::string trace_id, TraceColumns trace_columns,
                           GateLimits limits, std::unique_ptr<RowMasker> masker)
    : gate_(gate),
      trace_id_(std::move(trace_id)),
      trace_uuid_(ParseUuid(trace_id_)),
      trace_columns_(std::move(trace_columns)),
      limits_(limits),
      masker_(std::move(masker)) {}

void ProtocolGate::AppendError(const Refusal& refusal, pgwire::Buffer& out) {
  pgwire::EncodeError("ERROR", refusal.sqlstate, refusal.message, out);
}

void ProtocolGate::Refuse(bool extended, Refusal refusal, pgwire::Buffer& to_backend) {
  ++stats_.blocked;
  if (extended) {
    pgwire::EncodeParse(
        {.statement = std::string(kRefusedName), .query = std::string(kRefusedStatement)},
        to_backend);
    pending_.push_back({.expect = Expect::kParse, .refusal = std::move(refusal)});
    skipping_to_sync_ = true;
  } else {
    pgwire::EncodeQuery(kRefusedStatement, to_backend);
    pending_.push_back({.expect = Expect::kQuery, .refusal = std::move(refusal)});
  }
}

bool ProtocolGate::IsTrace(pgwire::Bytes value, int16_t format) const {
  const std::string_view v = AsView(value);
  if (v == trace_id_) {
    return true;  // text format, and binary text/varchar (the same bytes)
  }
  return format == 1 && trace_uuid_.has_value() && v == *trace_uuid_;
}

absl::StatusOr<ProtocolGate::Action> ProtocolGate::OnClientFrame(const pgwire::Frame& frame,
                                                                 pgwire::Bytes raw,
                                                                 pgwire::Buffer& to_backend) {
  auto forward = [&] { to_backend.append(AsView(raw)); };
  if (skipping_to_sync_ && frame.type != fe::kSync && frame.type != fe::kFlush) {
    return Action::kDropped;
  }
  switch (frame.type) {
    case fe::kQuery: {
      absl::StatusOr<pgwire::Query> query = pgwire::ParseQuery(frame.body);
      if (!query.ok()) {
        return query.status();
      }
      ++stats_.statements;
      sql::Verdict verdict = gate_.Check(query->sql, trace_id_, masker_ != nullptr);
      if (verdict.allowed() && !verdict.trace_params.empty()) {
        verdict.rule = sql::Rule::kTraceScope;
        verdict.message = "a simple query cannot bind parameters: pin the trace with a literal";
      }
      if (!verdict.allowed()) {
        Refuse(false, {std::string(verdict.SqlState()), verdict.ErrorMessage()}, to_backend);
        return Action::kSubstituted;
      }
      // SQL may close and declare cursors, which are portals too: describe any portal again
      // before its next Execute.
      PortalsMayHaveChanged(nullptr);
      forward();
      pending_.push_back({.expect = Expect::kQuery});
      return Action::kForwarded;
    }
    case fe::kParse: {
      absl::StatusOr<pgwire::Parse> parse = pgwire::ParseParse(frame.body);
      if (!parse.ok()) {
        return parse.status();
      }
      ++stats_.statements;
      if (!parse->statement.empty() && statements_.contains(parse->statement)) {
        Refuse(true, {"42P05", Cat("prepared statement \"", parse->statement, "\" already exists")},
               to_backend);
        return Action::kSubstituted;
      }
      sql::Verdict verdict = gate_.Check(parse->query, trace_id_, masker_ != nullptr);
      if (verdict.allowed()) {
        for (int n : verdict.trace_params) {
          const size_t i = static_cast<size_t>(n - 1);
          if (i < parse->param_types.size() && !TraceParamType(parse->param_types[i])) {
            verdict.rule = sql::Rule::kTraceScope;
            verdict.message = Cat("parameter $", n, " pins the trace and must be text or uuid");
            break;
          }
        }
      }
      if (!verdict.allowed()) {
        Refuse(true, {std::string(verdict.SqlState()), verdict.ErrorMessage()}, to_backend);
        return Action::kSubstituted;
      }
      Pending pending{.expect = Expect::kParse, .name = parse->statement};
      SaveStatement(pending, parse->statement);
      statements_[parse->statement] =
          Statement{.trace_params = verdict.trace_params, .kind = verdict.kind};
      forward();
      pending_.push_back(std::move(pending));
      return Action::kForwarded;
    }
    case fe::kBind: {
      absl::StatusOr<pgwire::Bind> bind = pgwire::ParseBind(frame.body);
      if (!bind.ok()) {
        return bind.status();
      }
      auto it = statements_.find(bind->statement);
      if (it == statements_.end()) {
        Refuse(true,
               {std::string(sqlstate::kInvalidStatementName),
                bind->statement.empty()
                    ? std::string("unnamed prepared statement does not exist")
                    : Cat("prepared statement \"", bind->statement, "\" does not exist")},
               to_backend);
        return Action::kSubstituted;
      }
      for (int n : it->second.trace_params) {
        const size_t i = static_cast<size_t>(n - 1);
        const int16_t format = bind->param_formats.empty()       ? 0
                               : bind->param_formats.size() == 1 ? bind->param_formats[0]
                               : i < bind->param_formats.size()  ? bind->param_formats[i]
                                                                 : -1;
        const bool bound = i < bind->params.size() && bind->params[i].has_value() &&
                           (format == 0 || format == 1) && IsTrace(*bind->params[i], format);
        if (!bound) {
          const sql::Verdict verdict{
              .rule = sql::Rule::kOtherTrace,
              .message = Cat("parameter $", n, " must be bound to the granted trace id")};
          Refuse(true, {std::string(verdict.SqlState()), verdict.ErrorMessage()}, to_backend);
          return Action::kSubstituted;
        }
      }
      Pending pending{.expect = Expect::kBind, .name = bind->portal};
      SavePortal(pending, bind->portal);
      // A new portal of this name (a cursor a FETCH portal reads may be replaced by it).
      PortalsMayHaveChanged(&bind->portal);
      portals_[bind->portal] = Portal{.fetch_unrun = it->second.kind == sql::StatementKind::kFetch};
      forward();
      pending_.push_back(std::move(pending));
      return Action::kForwarded;
    }
    case fe::kDescribe: {
      absl::StatusOr<pgwire::DescribeOrClose> describe = pgwire::ParseDescribe(frame.body);
      if (!describe.ok()) {
        return describe.status();
      }
      if (describe->kind == 'P') {
        Pending pending{.expect = Expect::kDescribePortal, .name = describe->name};
        SavePortal(pending, describe->name);
        portals_[describe->name].described = true;
        pending_.push_back(std::move(pending));
      } else {
        pending_.push_back({.expect = Expect::kDescribeStatement, .name = describe->name});
      }
      forward();
      return Action::kForwarded;
    }
    case fe::kExecute: {
      absl::StatusOr<pgwire::Execute> execute = pgwire::ParseExecute(frame.body);
      if (!execute.ok()) {
        return execute.status();
      }
      auto it = portals_.find(execute->portal);
      if (it != portals_.end() && it->second.stale) {
        const sql::Verdict verdict{
            .rule = sql::Rule::kUnsupported,
            .message = Cat("portal \"", execute->portal,
                           "\" runs FETCH or MOVE, and a statement, Bind or Close was sent "
                           "between its Bind and its Execute (PostgreSQL would return the "
                           "cursor's rows under the columns it had at Bind); bind it again")};
        Refuse(true, {std::string(verdict.SqlState()), verdict.ErrorMessage()}, to_backend);
        return Action::kSubstituted;
      }
      const bool described = it != portals_.end() && it->second.described;
      // This Execute may run anything (DECLARE, CLOSE, FETCH …): every other portal must be
      // described again before its next Execute.
      PortalsMayHaveChanged(&execute->portal);
      if (!described) {
        // Learn the portal's columns before its rows arrive; the answer stays with us.
        pgwire::EncodeDescribe({.kind = 'P', .name = execute->portal}, to_backend);
        Pending pending{
            .expect = Expect::kDescribePortal, .name = execute->portal, .internal = true};
        SavePortal(pending, execute->portal);
        pending_.push_back(std::move(pending));
      }
      Pending pending{.expect = Expect::kExecute, .name = execute->portal};
      SavePortal(pending, execute->portal);
      Portal& portal = portals_[execute->portal];
      portal.described = false;  // the next Execute of it is described again too
      portal.fetch_unrun = false;
      forward();
      pending_.push_back(std::move(pending));
      return Action::kForwarded;
    }
    case fe::kClose: {
      absl::StatusOr<pgwire::DescribeOrClose> close = pgwire::ParseClose(frame.body);
      if (!close.ok()) {
        return close.status();
      }
      Pending pending{.expect = Expect::kClose, .name = close->name};
      if (close->kind == 'S') {
        SaveStatement(pending, close->name);
        statements_.erase(close->name);
      } else {
        SavePortal(pending, close->name);
        PortalsMayHaveChanged(nullptr);
        portals_.erase(close->name);
      }
      forward();
      pending_.push_back(std::move(pending));
      return Action::kForwarded;
    }
    case fe::kSync:
      skipping_to_sync_ = false;
      forward();
      pending_.push_back({.expect = Expect::kSync});
      return Action::kForwarded;
    case fe::kFlush:
      forward();
      return Action::kForwarded;
    case fe::kFunctionCall: {
      ++stats_.statements;
      const sql::Verdict verdict{.rule = sql::Rule::kUnsupported,
                                 .message = "the fast-path function call interface is not allowed"};
      Refuse(false, {std::string(verdict.SqlState()), verdict.ErrorMessage()}, to_backend);
      return Action::kSubstituted;
    }
    case fe::kCopyData:
    case fe::kCopyDone:
    case fe::kCopyFail:
      return Action::kDropped;  // no COPY is ever started; PostgreSQL ignores these too
    default:
      return absl::InvalidArgumentError(
          Cat("unexpected message '", std::string(1, frame.type), "' from the client"));
  }
}

ProtocolGate::Layout ProtocolGate::LayoutOf(const pgwire::RowDescription& row) const {
  Layout layout;
  layout.known = true;
  for (size_t i = 0; i < row.fields.size(); ++i) {
    const pgwire::FieldDescription& f = row.fields[i];
    if (f.table_oid != 0 && trace_columns_.contains(TraceColumnKey(f.table_oid, f.column_attr))) {
      layout.trace_columns.push_back(static_cast<int>(i));
    }
    layout.formats.push_back(f.format);
  }
  if (masker_ != nullptr) {
    layout.plan = masker_->PlanFor(row);
  }
  return layout;
}

absl::Status ProtocolGate::CheckRow(Pending& pending, const Layout& layout,
                                    const pgwire::Frame& frame, pgwire::Bytes raw,
                                    pgwire::Buffer& to_client) {
  if (pending.ended || swallowing_) {
    return absl::OkStatus();
  }
  if (!layout.known || layout.no_data) {
    return absl::InvalidArgumentError("the trace store sent a row with no row description");
  }
  const bool over_rows = limits_.max_rows != 0 && stats_.rows + 1 > limits_.max_rows;
  const bool over_bytes = limits_.max_bytes != 0 && stats_.bytes + raw.size() > limits_.max_bytes;
  if (over_rows || over_bytes) {
    EndStatement(
        pending,
        {std::string(sqlstate::kProgramLimitExceeded),
         over_rows ? Cat("tracegate: statement ended (row_cap): the grant allows at most ",
                         limits_.max_rows, " rows per session")
                   : Cat("tracegate: statement ended (byte_cap): the grant allows at most ",
                         limits_.max_bytes, " bytes of rows per session")},
        to_client);
    return absl::OkStatus();
  }
  if (!layout.trace_columns.empty()) {
    // Walk the row to the trace-id columns (the frame was validated: counts and lengths fit).
    const uint8_t* p = frame.body.data();
    const size_t columns = static_cast<size_t>((p[0] << 8) | p[1]);
    if (columns != layout.formats.size()) {
      return absl::InvalidArgumentError("a row does not match its row description");
    }
    p += 2;
    size_t next = 0;
    for (size_t i = 0; i < columns && next < layout.trace_columns.size(); ++i) {
      const int32_t length = ReadInt32(p);
      p += 4;
      if (static_cast<int>(i) == layout.trace_columns[next]) {
        ++next;
        if (length >= 0 && !IsTrace({p, static_cast<size_t>(length)}, layout.formats[i])) {
          return PgError(absl::StatusCode::kPermissionDenied, sqlstate::kInsufficientPrivilege,
                         "tracegate: a result row belongs to another trace; the session is "
                         "ended");
        }
      }
      if (length > 0) {
        p += length;
      }
    }
  }
  ++stats_.rows;
  stats_.bytes += raw.size();
  if (masker_ != nullptr) {
    absl::StatusOr<bool> masked = masker_->MaskRow(layout.plan, frame.body, to_client);
    if (!masked.ok()) {
      if (masked.status().code() == absl::StatusCode::kInvalidArgument) {
        return masked.status();  // the row does not match its description: end the session
      }
      ++stats_.masking_errors;
      EndStatement(pending, {SqlStateOf(masked.status()), std::string(masked.status().message())},
                   to_client);
      return absl::OkStatus();
    }
    if (*masked) {
      return absl::OkStatus();
    }
  }
  to_client.append(AsView(raw));
  return absl::OkStatus();
}

void ProtocolGate::EndStatement(Pending& pending, const Refusal& error, pgwire::Buffer& to_client) {
  pending.ended = true;
  cancel_wanted_ = CancelIsSafe();
  ++stats_.blocked;
  AppendError(error, to_client);
  if (pending.expect != Expect::kQuery) {
    swallowing_ = true;  // as after any error: the client expects nothing more until Sync
  }
}

void ProtocolGate::ForwardMessage(const pgwire::Frame& frame, pgwire::Bytes raw,
                                  pgwire::Buffer& to_client) {
  if (masker_ != nullptr &&
      (frame.type == be::kErrorResponse || frame.type == be::kNoticeResponse)) {
    absl::StatusOr<bool> masked = masker_->MaskMessage(frame.type, frame.body, to_client);
    if (!masked.ok()) {
      // Never the unmasked text: an error keeps its SQLSTATE only, a notice is dropped.
      ++stats_.masking_errors;
      if (frame.type == be::kErrorResponse) {
        absl::StatusOr<pgwire::ErrorFields> fields = pgwire::ParseErrorFields(frame.body);
        const std::string* code = fields.ok() ? fields->Find('C') : nullptr;
        AppendError({code != nullptr ? *code : std::string(sqlstate::kInternalError),
                     "tracegate: the trace store's error message could not be masked"},
                    to_client);
      }
      return;
    }
    if (*masked) {
      return;
    }
  }
  to_client.append(AsView(raw));
}

void ProtocolGate::PortalsMayHaveChanged(const std::string* except) {
  for (auto& [name, portal] : portals_) {
    portal.described = false;
    if (portal.fetch_unrun && (except == nullptr || name != *except)) {
      portal.stale = true;
    }
  }
}

void ProtocolGate::SaveStatement(Pending& pending, const std::string& name) const {
  auto it = statements_.find(name);
  pending.saved_statement.emplace(it == statements_.end() ? std::nullopt
                                                          : std::optional(it->second));
}

void ProtocolGate::SavePortal(Pending& pending, const std::string& name) const {
  auto it = portals_.find(name);
  pending.saved_portal.emplace(it == portals_.end() ? std::nullopt : std::optional(it->second));
}

void ProtocolGate::Undo(const Pending& pending) {
  if (pending.saved_statement.has_value()) {
    if (pending.saved_statement->has_value()) {
      statements_[pending.name] = **pending.saved_statement;
    } else {
      statements_.erase(pending.name);
    }
  }
  if (pending.saved_portal.has_value()) {
    if (pending.saved_portal->has_value()) {
      Portal& portal = portals_[pending.name] = **pending.saved_portal;
      portal.described = false;  // never trust an old Describe again: describe anew
    } else {
      portals_.erase(pending.name);
    }
  }
}

void ProtocolGate::DropUntilSync() {
  std::vector<Pending> skipped;
  while (!pending_.empty() && pending_.front().expect != Expect::kSync) {
    skipped.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
  // The backend skipped these (or failed the first): undo what they changed, latest first.
  for (auto it = skipped.rbegin(); it != skipped.rend(); ++it) {
    Undo(*it);
  }
  if (pending_.empty()) {
    // The client has not sent its Sync yet: what it sends until then, the backend ignores.
    skipping_to_sync_ = true;
  }
}

bool ProtocolGate::CancelIsSafe() const {
  // PostgreSQL drops a cancel that reaches an idle backend, so a cancel hits either the
  // capped statement or nothing, provided the backend has nothing else queued to run: the
  // capped answer is the last one owed (a Query), or only the rest of its run up to Sync is
  // (the client already has an error for that run; the gate swallows the rest of it).
  auto it = pending_.begin();
  if (it == pending_.end()) {
    return false;
  }
  if (it->expect == Expect::kQuery) {
    return pending_.size() == 1;
  }
  for (++it; it != pending_.end(); ++it) {
    if (it->expect == Expect::kQuery) {
      return false;
    }
    if (it->expect == Expect::kSync) {
      return std::next(it) == pending_.end();
    }
  }
  return true;
}

absl::Status ProtocolGate::OnBackendFrame(const pgwire::Frame& frame, pgwire::Bytes raw,
                                          pgwire::Buffer& to_client) {
  auto forward = [&] { ForwardMessage(frame, raw, to_client); };
  switch (frame.type) {
    case be::kParameterStatus: {
      // The backend starts with client_encoding=UTF8 and the gate refuses any change of it;
      // should the server still report another (a path nobody foresaw), the gate and the
      // server would read the client's bytes differently from here on: end the session.
      absl::StatusOr<pgwire::ParameterStatus> param = pgwire::ParseParameterStatus(frame.body);
      if (!param.ok()) {
        return param.status();
      }
      if (param->name == "client_encoding" && !IsUtf8EncodingName(param->value)) {
        return PgError(absl::StatusCode::kFailedPrecondition, sqlstate::kFeatureNotSupported,
                       Cat("tracegate: the trace store switched client_encoding to ", param->value,
                           "; statements are checked as UTF-8, so the session is ended"));
      }
      forward();
      return absl::OkStatus();
    }
    case be::kNoticeResponse:
    case be::kNotificationResponse:
      forward();  // asynchronous: answers nothing
      return absl::OkStatus();
    default:
      break;
  }
  if (pending_.empty()) {
    return absl::InvalidArgumentError(
        Cat("the trace store sent '", std::string(1, frame.type), "', which answers nothing"));
  }
  Pending& p = pending_.front();
  auto unexpected = [&] {
    return absl::InvalidArgumentError(Cat("the trace store sent '", std::string(1, frame.type),
                                          "' where it owed another answer"));
  };

  if (frame.type == be::kReadyForQuery) {
    if ((p.expect != Expect::kQuery && p.expect != Expect::kSync) || p.refusal.has_value()) {
      return unexpected();  // (a refusal's substitute must have failed first)
    }
    pending_.pop_front();
    swallowing_ = false;
    forward();
    return absl::OkStatus();
  }
  if (frame.type == be::kErrorResponse) {
    if (p.expect == Expect::kSync) {
      return unexpected();
    }
    if (p.expect == Expect::kQuery) {
      if (p.refusal.has_value()) {
        AppendError(*p.refusal, to_client);
        p.refusal.reset();  // delivered; only ReadyForQuery may follow
      } else if (!p.ended) {
        forward();
      }
      return absl::OkStatus();
    }
    if (swallowing_) {
      // An error was delivered earlier in this run: nothing more until ReadyForQuery.
    } else if (p.refusal.has_value()) {
      AppendError(*p.refusal, to_client);
    } else {
      forward();
    }
    DropUntilSync();  // the backend now skips to Sync
    return absl::OkStatus();
  }

  const bool show = !swallowing_ && !p.internal;
  switch (p.expect) {
    case Expect::kQuery:
      if (p.refusal.has_value()) {
        return unexpected();  // a refusal's substitute cannot succeed
      }
      switch (frame.type) {
        case be::kRowDescription: {
          absl::StatusOr<pgwire::RowDescription> row = pgwire::ParseRowDescription(frame.body);
          if (!row.ok()) {
            return row.status();
          }
          p.layout = LayoutOf(*row);
          forward();
          return absl::OkStatus();
        }
        case be::kDataRow:
          return CheckRow(p, p.layout, frame, raw, to_client);
        case be::kCommandComplete:
          if (!p.ended) {
            forward();
          }
          p.layout = {};  // (an ended Query stays ended: a late cancel's error is dropped too)
          return absl::OkStatus();
        case be::kEmptyQueryResponse:
          forward();
          return absl::OkStatus();
        case be::kCopyInResponse:
        case be::kCopyOutResponse:
        case be::kCopyBothResponse:
          return PgError(absl::StatusCode::kPermissionDenied, sqlstate::kInsufficientPrivilege,
                         "tracegate: the trace store started a COPY; the session is ended");
        default:
          return unexpected();
      }
    case Expect::kParse:
    case Expect::kBind:
    case Expect::kClose: {
      const char want = p.expect == Expect::kParse  ? be::kParseComplete
                        : p.expect == Expect::kBind ? be::kBindComplete
                                                    : be::kCloseComplete;
      if (frame.type != want || p.refusal.has_value()) {
        return unexpected();  // a refusal's substitute cannot succeed
      }
      if (show) {
        forward();
      }
      pending_.pop_front();
      return absl::OkStatus();
    }
    case Expect::kDescribeStatement:
      if (frame.type == be::kParameterDescription) {
        if (show) {
          forward();
        }
        return absl::OkStatus();
      }
      if (frame.type != be::kRowDescription && frame.type != be::kNoData) {
        return unexpected();
      }
      if (show) {
        forward();
      }
      pending_.pop_front();
      return absl::OkStatus();
    case Expect::kDescribePortal: {
      Layout layout;
      if (frame.type == be::kRowDescription) {
        absl::StatusOr<pgwire::RowDescription> row = pgwire::ParseRowDescription(frame.body);
        if (!row.ok()) {
          return row.status();
        }
        layout = LayoutOf(*row);
      } else if (frame.type == be::kNoData) {
        layout.known = true;
        layout.no_data = true;
      } else {
        return unexpected();
      }
      layouts_[p.name] = std::move(layout);
      if (show) {
        forward();
      }
      pending_.pop_front();
      return absl::OkStatus();
    }
    case Expect::kExecute:
      switch (frame.type) {
        case be::kDataRow: {
          auto it = layouts_.find(p.name);
          if (it == layouts_.end()) {
            return absl::InvalidArgumentError("a row for a portal the gate does not know");
          }
          return CheckRow(p, it->second, frame, raw, to_client);
        }
        case be::kCommandComplete:
        case be::kEmptyQueryResponse:
        case be::kPortalSuspended:
          if (show && !p.ended) {
            forward();
          }
          pending_.pop_front();
          return absl::OkStatus();
        case be::kCopyInResponse:
        case be::kCopyOutResponse:
        case be::kCopyBothResponse:
          return PgError(absl::StatusCode::kPermissionDenied, sqlstate::kInsufficientPrivilege,
                         "tracegate: the trace store started a COPY; the session is ended");
        default:
          return unexpected();
      }
    case Expect::kSync:
      return unexpected();
  }
  return unexpected();
}

}  // namespace tracegate::pgproxy
