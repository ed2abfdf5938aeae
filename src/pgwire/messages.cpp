// Backend status and result messages, and ValidateFrame. The startup/authentication codecs
// are in messages_startup.cpp, the frontend query codecs in messages_query.cpp.
#include "pgwire/messages.h"

#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "pgwire/reader.h"

namespace tracegate::pgwire {

using internal::Field;
using internal::Reader;

// ---- Backend status messages ------------------------------------------------------------

absl::StatusOr<ParameterStatus> ParseParameterStatus(Bytes body) {
  Reader r(body, "ParameterStatus");
  TG_ASSIGN_OR_RETURN(std::string_view name, r.CString(Field{"name"}));
  TG_ASSIGN_OR_RETURN(std::string_view value, r.CString(Field{"value"}));
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return ParameterStatus{std::string(name), std::string(value)};
}

void EncodeParameterStatus(const ParameterStatus& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, backend::kParameterStatus);
  internal::PutCString(out, msg.name);
  internal::PutCString(out, msg.value);
  internal::FinishMessage(out, at);
}

absl::StatusOr<BackendKeyData> ParseBackendKeyData(Bytes body) {
  Reader r(body, "BackendKeyData");
  BackendKeyData msg;
  TG_ASSIGN_OR_RETURN(msg.process_id, r.I32(Field{"process id"}));
  TG_ASSIGN_OR_RETURN(msg.secret_key, r.I32(Field{"secret key"}));
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeBackendKeyData(const BackendKeyData& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, backend::kBackendKeyData);
  internal::PutI32(out, msg.process_id);
  internal::PutI32(out, msg.secret_key);
  internal::FinishMessage(out, at);
}

absl::StatusOr<ReadyForQuery> ParseReadyForQuery(Bytes body) {
  Reader r(body, "ReadyForQuery");
  TG_ASSIGN_OR_RETURN(uint8_t status, r.U8(Field{"transaction status"}));
  if (status != 'I' && status != 'T' && status != 'E') {
    return r.Error(absl::StrCat("transaction status byte ", status, " is not 'I', 'T' or 'E'"));
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return ReadyForQuery{static_cast<char>(status)};
}

void EncodeReadyForQuery(const ReadyForQuery& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, backend::kReadyForQuery);
  internal::PutU8(out, static_cast<uint8_t>(msg.status));
  internal::FinishMessage(out, at);
}

const std::string* ErrorFields::Find(char code) const {
  for (const auto& [c, value] : fields) {
    if (c == code) {
      return &value;
    }
  }
  return nullptr;
}

absl::StatusOr<ErrorFields> ParseErrorFields(Bytes body) {
  Reader r(body, "ErrorResponse/NoticeResponse");
  ErrorFields msg;
  for (int64_t i = 1;; ++i) {
    TG_ASSIGN_OR_RETURN(uint8_t code, r.U8(Field{"field", i, "code"}));
    if (code == 0) {
      break;
    }
    TG_ASSIGN_OR_RETURN(std::string_view value, r.CString(Field{"field", i, "value"}));
    msg.fields.emplace_back(static_cast<char>(code), std::string(value));
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

namespace {
void EncodeFields(char type, const ErrorFields& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, type);
  for (const auto& [code, value] : msg.fields) {
    internal::PutU8(out, static_cast<uint8_t>(code));
    internal::PutCString(out, value);
  }
  internal::PutU8(out, 0);
  internal::FinishMessage(out, at);
}
}  // namespace

void EncodeErrorResponse(const ErrorFields& msg, Buffer& out) {
  EncodeFields(backend::kErrorResponse, msg, out);
}
void EncodeNoticeResponse(const ErrorFields& msg, Buffer& out) {
  EncodeFields(backend::kNoticeResponse, msg, out);
}

void EncodeError(std::string_view severity, std::string_view sqlstate, std::string_view message,
                 Buffer& out) {
  ErrorFields fields;
  fields.fields = {{'S', std::string(severity)},
                   {'V', std::string(severity)},
                   {'C', std::string(sqlstate)},
                   {'M', std::string(message)}};
  EncodeErrorResponse(fields, out);
}

absl::StatusOr<NotificationResponse> ParseNotificationResponse(Bytes body) {
  Reader r(body, "NotificationResponse");
  NotificationResponse msg;
  TG_ASSIGN_OR_RETURN(msg.process_id, r.I32(Field{"process id"}));
  TG_ASSIGN_OR_RETURN(std::string_view channel, r.CString(Field{"channel"}));
  TG_ASSIGN_OR_RETURN(std::string_view payload, r.CString(Field{"payload"}));
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  msg.channel = std::string(channel);
  msg.payload = std::string(payload);
  return msg;
}

void EncodeNotificationResponse(const NotificationResponse& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, backend::kNotificationResponse);
  internal::PutI32(out, msg.process_id);
  internal::PutCString(out, msg.channel);
  internal::PutCString(out, msg.payload);
  internal::FinishMessage(out, at);
}

absl::StatusOr<NegotiateProtocolVersion> ParseNegotiateProtocolVersion(Bytes body) {
  Reader r(body, "NegotiateProtocolVersion");
  NegotiateProtocolVersion msg;
  TG_ASSIGN_OR_RETURN(msg.newest_minor, r.I32(Field{"newest minor version"}));
  if (msg.newest_minor < 0) {
    return r.Error(absl::StrCat("newest minor version ", msg.newest_minor, " is negative"));
  }
  TG_ASSIGN_OR_RETURN(size_t n, r.Count32(Field{"option count"}, 1));
  msg.unrecognized_options.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TG_ASSIGN_OR_RETURN(std::string_view option,
                        r.CString(Field{"option", static_cast<int64_t>(i + 1)}));
    msg.unrecognized_options.emplace_back(option);
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

// ---- Results ------------------------------------------------------------------------------

absl::StatusOr<RowDescription> ParseRowDescription(Bytes body) {
  // Smallest field: empty name (1) + 4 + 2 + 4 + 2 + 4 + 2.
  constexpr size_t kMinFieldSize = 19;
  Reader r(body, "RowDescription");
  TG_ASSIGN_OR_RETURN(size_t n, r.Count16(Field{"field count"}, kMinFieldSize));
  RowDescription msg;
  msg.fields.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto idx = static_cast<int64_t>(i + 1);
    FieldDescription f;
    TG_ASSIGN_OR_RETURN(std::string_view name, r.CString(Field{"field", idx, "name"}));
    f.name = std::string(name);
    TG_ASSIGN_OR_RETURN(f.table_oid, r.U32(Field{"field", idx, "table oid"}));
    TG_ASSIGN_OR_RETURN(f.column_attr, r.I16(Field{"field", idx, "column number"}));
    TG_ASSIGN_OR_RETURN(f.type_oid, r.U32(Field{"field", idx, "type oid"}));
    TG_ASSIGN_OR_RETURN(f.type_size, r.I16(Field{"field", idx, "type size"}));
    TG_ASSIGN_OR_RETURN(f.type_modifier, r.I32(Field{"field", idx, "type modifier"}));
    TG_ASSIGN_OR_RETURN(f.format, r.I16(Field{"field", idx, "format"}));
    if (f.format != 0 && f.format != 1) {
      return r.Error(absl::StrCat("field ", idx, " format is ", f.format, " (must be 0 or 1)"));
    }
    msg.fields.push_back(std::move(f));
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeRowDescription(const RowDescription& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, backend::kRowDescription);
  internal::PutU16(out, static_cast<uint16_t>(msg.fields.size()));
  for (const FieldDescription& f : msg.fields) {
    internal::PutCString(out, f.name);
    internal::PutU32(out, f.table_oid);
    internal::PutI16(out, f.column_attr);
    internal::PutU32(out, f.type_oid);
    internal::PutI16(out, f.type_size);
    internal::PutI32(out, f.type_modifier);
    internal::PutI16(out, f.format);
  }
  internal::FinishMessage(out, at);
}

absl::StatusOr<DataRow> ParseDataRow(Bytes body) {
  Reader r(body, "DataRow");
  TG_ASSIGN_OR_RETURN(size_t n, r.Count16(Field{"column count"}, 4));
  DataRow msg;
  msg.values.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TG_ASSIGN_OR_RETURN(std::optional<Bytes> v,
                        r.NullableValue(Field{"column", static_cast<int64_t>(i + 1)}));
    msg.values.push_back(v);
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeDataRow(const DataRow& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, backend::kDataRow);
  internal::PutU16(out, static_cast<uint16_t>(msg.values.size()));
  for (const auto& v : msg.values) {
    internal::PutNullableValue(out, v);
  }
  internal::FinishMessage(out, at);
}

absl::StatusOr<CommandComplete> ParseCommandComplete(Bytes body) {
  Reader r(body, "CommandComplete");
  TG_ASSIGN_OR_RETURN(std::string_view tag, r.CString(Field{"command tag"}));
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return CommandComplete{std::string(tag)};
}

void EncodeCommandComplete(std::string_view tag, Buffer& out) {
  size_t at = internal::BeginMessage(out, backend::kCommandComplete);
  internal::PutCString(out, tag);
  internal::FinishMessage(out, at);
}

absl::StatusOr<ParameterDescription> ParseParameterDescription(Bytes body) {
  Reader r(body, "ParameterDescription");
  TG_ASSIGN_OR_RETURN(size_t n, r.Count16(Field{"parameter count"}, 4));
  ParameterDescription msg;
  msg.type_oids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TG_ASSIGN_OR_RETURN(uint32_t oid,
                        r.U32(Field{"parameter", static_cast<int64_t>(i + 1), "type oid"}));
    msg.type_oids.push_back(oid);
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeParameterDescription(const ParameterDescription& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, backend::kParameterDescription);
  internal::PutU16(out, static_cast<uint16_t>(msg.type_oids.size()));
  for (uint32_t oid : msg.type_oids) {
    internal::PutU32(out, oid);
  }
  internal::FinishMessage(out, at);
}

absl::StatusOr<FunctionCallResponse> ParseFunctionCallResponse(Bytes body) {
  Reader r(body, "FunctionCallResponse");
  FunctionCallResponse msg;
  TG_ASSIGN_OR_RETURN(msg.value, r.NullableValue(Field{"result"}));
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeFunctionCallResponse(const FunctionCallResponse& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, backend::kFunctionCallResponse);
  internal::PutNullableValue(out, msg.value);
  internal::FinishMessage(out, at);
}

// ---- ValidateFrame ------------------------------------------------------------------------

namespace {

absl::Status ValidateFrontend(const Frame& frame) {
  const Bytes body = frame.body;
  switch (frame.type) {
    case 0:
      return ParseStartupPacket(body).status();
    case frontend::kQuery:
      return ParseQuery(body).status();
    case frontend::kParse:
      return ParseParse(body).status();
    case frontend::kBind:
      return ParseBind(body).status();
    case frontend::kDescribe:
      return ParseDescribe(body).status();
    case frontend::kExecute:
      return ParseExecute(body).status();
    case frontend::kClose:
      return ParseClose(body).status();
    case frontend::kSync:
    case frontend::kFlush:
    case frontend::kTerminate:
    case frontend::kCopyDone:
      return ParseEmpty(body);
    case frontend::kCopyData:
      return absl::OkStatus();
    case frontend::kCopyFail:
      return ParseCopyFail(body).status();
    case frontend::kFunctionCall:
      return ParseFunctionCall(body).status();
    case frontend::kPassword:
      // Password, SASLInitialResponse or SASLResponse: the auth exchange decides which; all
      // three carry at least one byte.
      if (body.empty()) {
        return absl::InvalidArgumentError("password/SASL message has an empty body");
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown frontend message type byte ", static_cast<int>(frame.type)));
  }
}

absl::Status ValidateBackend(const Frame& frame) {
  const Bytes body = frame.body;
  switch (frame.type) {
    case backend::kAuthentication:
      return ParseAuthentication(body).status();
    case backend::kParameterStatus:
      return ParseParameterStatus(body).status();
    case backend::kBackendKeyData:
      return ParseBackendKeyData(body).status();
    case backend::kReadyForQuery:
      return ParseReadyForQuery(body).status();
    case backend::kRowDescription:
      return ParseRowDescription(body).status();
    case backend::kDataRow:
      return ParseDataRow(body).status();
    case backend::kCommandComplete:
      return ParseCommandComplete(body).status();
    case backend::kEmptyQueryResponse:
    case backend::kParseComplete:
    case backend::kBindComplete:
    case backend::kCloseComplete:
    case backend::kNoData:
    case backend::kPortalSuspended:
    case backend::kCopyDone:
      return ParseEmpty(body);
    case backend::kErrorResponse:
    case backend::kNoticeResponse:
      return ParseErrorFields(body).status();
    case backend::kParameterDescription:
      return ParseParameterDescription(body).status();
    case backend::kNotificationResponse:
      return ParseNotificationResponse(body).status();
    case backend::kCopyInResponse:
    case backend::kCopyOutResponse:
    case backend::kCopyBothResponse:
      return ParseCopyResponse(body).status();
    case backend::kCopyData:
      return absl::OkStatus();
    case backend::kFunctionCallResponse:
      return ParseFunctionCallResponse(body).status();
    case backend::kNegotiateProtocolVersion:
      return ParseNegotiateProtocolVersion(body).status();
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown backend message type byte ", static_cast<int>(frame.type)));
  }
}

}  // namespace

absl::Status ValidateFrame(const Frame& frame, Direction direction) {
  return direction == Direction::kFrontend ? ValidateFrontend(frame) : ValidateBackend(frame);
}

}  // namespace tracegate::pgwire
