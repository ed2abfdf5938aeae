#pragma once
// Codecs for every protocol 3.0 message tracegate handles, both directions.
//
// Parse* functions take the body of one frame (see framing.h: the bytes after the
// length field) and return the decoded message or InvalidArgument with a precise reason
// (truncated field, missing NUL terminator, negative count, trailing bytes, ...). They
// never read outside the span and never trust a count before checking it against the
// remaining bytes. Encode* functions append one complete message (type byte, length,
// body) to `out`.
//
// Parsed messages own their strings, except DataRow, Bind and CopyData, whose values are
// spans into the frame body (the hot path; valid while the body is).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "pgwire/framing.h"

namespace tracegate::pgwire {

// Appends to a byte buffer; std::string is the buffer type throughout pgwire.
using Buffer = std::string;

// ---- Message type bytes ----------------------------------------------------------
namespace frontend {
inline constexpr char kQuery = 'Q', kParse = 'P', kBind = 'B', kDescribe = 'D', kExecute = 'E',
                      kSync = 'S', kFlush = 'H', kClose = 'C', kTerminate = 'X', kCopyData = 'd',
                      kCopyDone = 'c', kCopyFail = 'f', kFunctionCall = 'F',
                      // PasswordMessage, SASLInitialResponse and SASLResponse share 'p'.
    kPassword = 'p';
}  // namespace frontend
namespace backend {
inline constexpr char kAuthentication = 'R', kParameterStatus = 'S', kBackendKeyData = 'K',
                      kReadyForQuery = 'Z', kRowDescription = 'T', kDataRow = 'D',
                      kCommandComplete = 'C', kEmptyQueryResponse = 'I', kErrorResponse = 'E',
                      kNoticeResponse = 'N', kParseComplete = '1', kBindComplete = '2',
                      kCloseComplete = '3', kParameterDescription = 't', kNoData = 'n',
                      kPortalSuspended = 's', kNotificationResponse = 'A', kCopyInResponse = 'G',
                      kCopyOutResponse = 'H', kCopyBothResponse = 'W', kCopyData = 'd',
                      kCopyDone = 'c', kFunctionCallResponse = 'V', kNegotiateProtocolVersion = 'v';
}  // namespace backend

// ---- Startup phase (untyped) -------------------------------------------------------
struct StartupMessage {
  uint32_t protocol_version = kProtocolVersion3;
  // In wire order; names are unique (a duplicate is a parse error).
  std::vector<std::pair<std::string, std::string>> parameters;
  [[nodiscard]] const std::string* Find(std::string_view name) const;
};
struct CancelRequest {
  int32_t process_id = 0;
  int32_t secret_key = 0;
};
// What an untyped startup-phase packet is.
enum class StartupKind { kStartup, kSslRequest, kGssEncRequest, kCancel };
struct StartupPacket {
  StartupKind kind = StartupKind::kStartup;
  StartupMessage startup;  // kind == kStartup
  CancelRequest cancel;    // kind == kCancel
};
// Protocol versions other than 3.0 are errors (2.0 is long gone; 3.x minor > 0 would need
// NegotiateProtocolVersion, which tracegate answers by refusing).
[[nodiscard]] absl::StatusOr<StartupPacket> ParseStartupPacket(Bytes body);
void EncodeStartupMessage(const StartupMessage& msg, Buffer& out);
void EncodeSslRequest(Buffer& out);
void EncodeCancelRequest(const CancelRequest& msg, Buffer& out);

// ---- Authentication ('R') --------------------------------------------------------------
enum class AuthCode : int32_t {
  kOk = 0,
  kCleartextPassword = 3,
  kMd5Password = 5,
  kSasl = 10,
  kSaslContinue = 11,
  kSaslFinal = 12,
};
struct Authentication {
  AuthCode code = AuthCode::kOk;
  std::string md5_salt;                 // kMd5Password: 4 bytes
  std::vector<std::string> mechanisms;  // kSasl
  std::string data;                     // kSaslContinue / kSaslFinal
};
// Unknown or unsupported codes (Kerberos, GSS, SSPI) are errors.
[[nodiscard]] absl::StatusOr<Authentication> ParseAuthentication(Bytes body);
void EncodeAuthentication(const Authentication& msg, Buffer& out);

// 'p' from the client. Which one it is depends on the auth exchange, so there are three
// parsers over the same type byte.
[[nodiscard]] absl::StatusOr<std::string> ParsePasswordMessage(Bytes body);
struct SaslInitialResponse {
  std::string mechanism;
  std::optional<std::string> data;  // absent when the length field is -1
};
[[nodiscard]] absl::StatusOr<SaslInitialResponse> ParseSaslInitialResponse(Bytes body);
// SASLResponse: the body is the mechanism's data.
[[nodiscard]] std::string_view ParseSaslResponse(Bytes body);
void EncodePasswordMessage(std::string_view password, Buffer& out);
void EncodeSaslInitialResponse(const SaslInitialResponse& msg, Buffer& out);
void EncodeSaslResponse(std::string_view data, Buffer& out);

// ---- Backend status messages ---------------------------------------------------------
struct ParameterStatus {
  std::string name;
  std::string value;
};
[[nodiscard]] absl::StatusOr<ParameterStatus> ParseParameterStatus(Bytes body);
void EncodeParameterStatus(const ParameterStatus& msg, Buffer& out);

struct BackendKeyData {
  int32_t process_id = 0;
  int32_t secret_key = 0;
};
[[nodiscard]] absl::StatusOr<BackendKeyData> ParseBackendKeyData(Bytes body);
void EncodeBackendKeyData(const BackendKeyData& msg, Buffer& out);

// Transaction status: 'I' idle, 'T' in a transaction block, 'E' in a failed one.
struct ReadyForQuery {
  char status = 'I';
};
[[nodiscard]] absl::StatusOr<ReadyForQuery> ParseReadyForQuery(Bytes body);
void EncodeReadyForQuery(const ReadyForQuery& msg, Buffer& out);

// ErrorResponse and NoticeResponse: (field code, value) pairs, e.g. 'S' severity,
// 'V' non-localized severity, 'C' SQLSTATE, 'M' message, 'D' detail, 'H' hint.
struct ErrorFields {
  std::vector<std::pair<char, std::string>> fields;
  [[nodiscard]] const std::string* Find(char code) const;
};
[[nodiscard]] absl::StatusOr<ErrorFields> ParseErrorFields(Bytes body);
void EncodeErrorResponse(const ErrorFields& msg, Buffer& out);
void EncodeNoticeResponse(const ErrorFields& msg, Buffer& out);
// Convenience: an ErrorResponse with S/V = severity, C = sqlstate, M = message.
void EncodeError(std::string_view severity, std::string_view sqlstate, std::string_view message,
                 Buffer& out);

struct NotificationResponse {
  int32_t process_id = 0;
  std::string channel;
  std::string payload;
};
[[nodiscard]] absl::StatusOr<NotificationResponse> ParseNotificationResponse(Bytes body);
void EncodeNotificationResponse(const NotificationResponse& msg, Buffer& out);

struct NegotiateProtocolVersion {
  int32_t newest_minor = 0;
  std::vector<std::string> unrecognized_options;
};
[[nodiscard]] absl::StatusOr<NegotiateProtocolVersion> ParseNegotiateProtocolVersion(Bytes body);

// ---- Simple and extended query (frontend) -----------------------------------------------
struct Query {
  std::string sql;
};
[[nodiscard]] absl::StatusOr<Query> ParseQuery(Bytes body);
void EncodeQuery(std::string_view sql, Buffer& out);

struct Parse {
  std::string statement;  // "" = unnamed
  std::string query;
  std::vector<uint32_t> param_types;
};
[[nodiscard]] absl::StatusOr<Parse> ParseParse(Bytes body);
void EncodeParse(const Parse& msg, Buffer& out);

struct Bind {
  std::string portal;
  std::string statement;
  std::vector<int16_t> param_formats;        // 0 text, 1 binary; 0, 1 or n entries
  std::vector<std::optional<Bytes>> params;  // nullopt = SQL NULL (length -1)
  std::vector<int16_t> result_formats;
};
[[nodiscard]] absl::StatusOr<Bind> ParseBind(Bytes body);
void EncodeBind(const Bind& msg, Buffer& out);

// Describe and Close: kind 'S' (statement) or 'P' (portal).
struct DescribeOrClose {
  char kind = 'S';
  std::string name;
};
[[nodiscard]] absl::StatusOr<DescribeOrClose> ParseDescribe(Bytes body);
[[nodiscard]] absl::StatusOr<DescribeOrClose> ParseClose(Bytes body);
void EncodeDescribe(const DescribeOrClose& msg, Buffer& out);
void EncodeClose(const DescribeOrClose& msg, Buffer& out);

struct Execute {
  std::string portal;
  int32_t max_rows = 0;  // 0 = no limit; negative is an error
};
[[nodiscard]] absl::StatusOr<Execute> ParseExecute(Bytes body);
void EncodeExecute(const Execute& msg, Buffer& out);

// Sync, Flush, Terminate, CopyDone, and the backend's EmptyQueryResponse, ParseComplete,
// BindComplete, CloseComplete, NoData, PortalSuspended: a body must be empty.
[[nodiscard]] absl::Status ParseEmpty(Bytes body);
void EncodeEmpty(char type, Buffer& out);

struct FunctionCall {
  uint32_t function_oid = 0;
  std::vector<int16_t> arg_formats;
  std::vector<std::optional<Bytes>> args;
  int16_t result_format = 0;
};
[[nodiscard]] absl::StatusOr<FunctionCall> ParseFunctionCall(Bytes body);
void EncodeFunctionCall(const FunctionCall& msg, Buffer& out);

// ---- Copy (both directions) -----------------------------------------------------------
// CopyData's body is the data itself; no parser needed beyond framing.
void EncodeCopyData(Bytes data, Buffer& out);
struct CopyFail {
  std::string message;
};
[[nodiscard]] absl::StatusOr<CopyFail> ParseCopyFail(Bytes body);
void EncodeCopyFail(const CopyFail& msg, Buffer& out);
// CopyInResponse / CopyOutResponse / CopyBothResponse.
struct CopyResponse {
  int8_t format = 0;  // 0 text, 1 binary
  std::vector<int16_t> column_formats;
};
[[nodiscard]] absl::StatusOr<CopyResponse> ParseCopyResponse(Bytes body);
void EncodeCopyResponse(char type, const CopyResponse& msg, Buffer& out);

// ---- Results (backend) -----------------------------------------------------------------
struct FieldDescription {
  std::string name;
  uint32_t table_oid = 0;
  int16_t column_attr = 0;
  uint32_t type_oid = 0;
  int16_t type_size = 0;
  int32_t type_modifier = 0;
  int16_t format = 0;  // 0 text, 1 binary
};
struct RowDescription {
  std::vector<FieldDescription> fields;
};
[[nodiscard]] absl::StatusOr<RowDescription> ParseRowDescription(Bytes body);
void EncodeRowDescription(const RowDescription& msg, Buffer& out);

struct DataRow {
  std::vector<std::optional<Bytes>> values;  // nullopt = NULL
};
[[nodiscard]] absl::StatusOr<DataRow> ParseDataRow(Bytes body);
void EncodeDataRow(const DataRow& msg, Buffer& out);

struct CommandComplete {
  std::string tag;  // e.g. "SELECT 1"
};
[[nodiscard]] absl::StatusOr<CommandComplete> ParseCommandComplete(Bytes body);
void EncodeCommandComplete(std::string_view tag, Buffer& out);

struct ParameterDescription {
  std::vector<uint32_t> type_oids;
};
[[nodiscard]] absl::StatusOr<ParameterDescription> ParseParameterDescription(Bytes body);
void EncodeParameterDescription(const ParameterDescription& msg, Buffer& out);

struct FunctionCallResponse {
  std::optional<Bytes> value;
};
[[nodiscard]] absl::StatusOr<FunctionCallResponse> ParseFunctionCallResponse(Bytes body);
void EncodeFunctionCallResponse(const FunctionCallResponse& msg, Buffer& out);

// ---- Validation of a whole frame ---------------------------------------------------------
// Parses `frame` with the codec its type selects (for 'p' from the frontend: only checks
// that the body is present, since its meaning depends on the auth exchange) and returns
// the error, if any. The proxy calls this on every frame it relays, so nothing passes
// unexamined.
[[nodiscard]] absl::Status ValidateFrame(const Frame& frame, Direction direction);

}  // namespace tracegate::pgwire
