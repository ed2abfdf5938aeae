// Frontend query messages (simple and extended protocol), function calls and copy.
//
// 16-bit counts are read unsigned, as PostgreSQL reads them (libpq sends up to 65535
// parameters). Encoders expect at most 65535 entries per list; parsed messages always fit.
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "pgwire/messages.h"
#include "pgwire/reader.h"

namespace tracegate::pgwire {

using internal::AsStringView;
using internal::Field;
using internal::Reader;

namespace {

// A list of format codes, each 0 (text) or 1 (binary).
absl::StatusOr<std::vector<int16_t>> ReadFormats(Reader& r, std::string_view what) {
  TG_ASSIGN_OR_RETURN(size_t n, r.Count16(Field{what, -1, "count"}, 2));
  std::vector<int16_t> formats;
  formats.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TG_ASSIGN_OR_RETURN(int16_t f, r.I16(Field{what, static_cast<int64_t>(i + 1)}));
    if (f != 0 && f != 1) {
      return r.Error(absl::StrCat(internal::Sv(what), " ", i + 1, " is ", f, " (must be 0 or 1)"));
    }
    formats.push_back(f);
  }
  return formats;
}

void PutFormats(Buffer& out, const std::vector<int16_t>& formats) {
  internal::PutU16(out, static_cast<uint16_t>(formats.size()));
  for (int16_t f : formats) {
    internal::PutI16(out, f);
  }
}

// Values with int32 length prefixes (-1 = NULL), as in Bind and FunctionCall.
absl::StatusOr<std::vector<std::optional<Bytes>>> ReadValues(Reader& r, std::string_view what) {
  TG_ASSIGN_OR_RETURN(size_t n, r.Count16(Field{what, -1, "count"}, 4));
  std::vector<std::optional<Bytes>> values;
  values.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TG_ASSIGN_OR_RETURN(std::optional<Bytes> v,
                        r.NullableValue(Field{what, static_cast<int64_t>(i + 1)}));
    values.push_back(v);
  }
  return values;
}

void PutValues(Buffer& out, const std::vector<std::optional<Bytes>>& values) {
  internal::PutU16(out, static_cast<uint16_t>(values.size()));
  for (const auto& v : values) {
    internal::PutNullableValue(out, v);
  }
}

// A format list must have 0 entries (all text), 1 (applies to all) or one per value.
absl::Status CheckFormatCount(const Reader& r, size_t formats, size_t values,
                              std::string_view what) {
  if (formats > 1 && formats != values) {
    return r.Error(absl::StrCat(formats, " ", internal::Sv(what), " formats for ", values, " ",
                                internal::Sv(what), "s"));
  }
  return absl::OkStatus();
}

absl::StatusOr<DescribeOrClose> ParseDescribeOrClose(Bytes body, std::string_view message) {
  Reader r(body, message);
  DescribeOrClose msg;
  TG_ASSIGN_OR_RETURN(uint8_t kind, r.U8(Field{"kind"}));
  if (kind != 'S' && kind != 'P') {
    return r.Error(absl::StrCat("kind byte ", kind, " is neither 'S' nor 'P'"));
  }
  msg.kind = static_cast<char>(kind);
  TG_ASSIGN_OR_RETURN(std::string_view name, r.CString(Field{"name"}));
  msg.name = std::string(name);
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeDescribeOrClose(char type, const DescribeOrClose& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, type);
  internal::PutU8(out, static_cast<uint8_t>(msg.kind));
  internal::PutCString(out, msg.name);
  internal::FinishMessage(out, at);
}

}  // namespace

absl::StatusOr<Query> ParseQuery(Bytes body) {
  Reader r(body, "Query");
  TG_ASSIGN_OR_RETURN(std::string_view sql, r.CString(Field{"query string"}));
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return Query{std::string(sql)};
}

void EncodeQuery(std::string_view sql, Buffer& out) {
  size_t at = internal::BeginMessage(out, frontend::kQuery);
  internal::PutCString(out, sql);
  internal::FinishMessage(out, at);
}

absl::StatusOr<Parse> ParseParse(Bytes body) {
  Reader r(body, "Parse");
  Parse msg;
  TG_ASSIGN_OR_RETURN(std::string_view statement, r.CString(Field{"statement name"}));
  TG_ASSIGN_OR_RETURN(std::string_view query, r.CString(Field{"query string"}));
  TG_ASSIGN_OR_RETURN(size_t n, r.Count16(Field{"parameter type count"}, 4));
  msg.statement = std::string(statement);
  msg.query = std::string(query);
  msg.param_types.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TG_ASSIGN_OR_RETURN(uint32_t oid, r.U32(Field{"parameter type", static_cast<int64_t>(i + 1)}));
    msg.param_types.push_back(oid);
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeParse(const Parse& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, frontend::kParse);
  internal::PutCString(out, msg.statement);
  internal::PutCString(out, msg.query);
  internal::PutU16(out, static_cast<uint16_t>(msg.param_types.size()));
  for (uint32_t oid : msg.param_types) {
    internal::PutU32(out, oid);
  }
  internal::FinishMessage(out, at);
}

absl::StatusOr<Bind> ParseBind(Bytes body) {
  Reader r(body, "Bind");
  Bind msg;
  TG_ASSIGN_OR_RETURN(std::string_view portal, r.CString(Field{"portal name"}));
  TG_ASSIGN_OR_RETURN(std::string_view statement, r.CString(Field{"statement name"}));
  msg.portal = std::string(portal);
  msg.statement = std::string(statement);
  TG_ASSIGN_OR_RETURN(msg.param_formats, ReadFormats(r, "parameter format"));
  TG_ASSIGN_OR_RETURN(msg.params, ReadValues(r, "parameter"));
  TG_RETURN_IF_ERROR(CheckFormatCount(r, msg.param_formats.size(), msg.params.size(), "parameter"));
  TG_ASSIGN_OR_RETURN(msg.result_formats, ReadFormats(r, "result format"));
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeBind(const Bind& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, frontend::kBind);
  internal::PutCString(out, msg.portal);
  internal::PutCString(out, msg.statement);
  PutFormats(out, msg.param_formats);
  PutValues(out, msg.params);
  PutFormats(out, msg.result_formats);
  internal::FinishMessage(out, at);
}

absl::StatusOr<DescribeOrClose> ParseDescribe(Bytes body) {
  return ParseDescribeOrClose(body, "Describe");
}
absl::StatusOr<DescribeOrClose> ParseClose(Bytes body) {
  return ParseDescribeOrClose(body, "Close");
}
void EncodeDescribe(const DescribeOrClose& msg, Buffer& out) {
  EncodeDescribeOrClose(frontend::kDescribe, msg, out);
}
void EncodeClose(const DescribeOrClose& msg, Buffer& out) {
  EncodeDescribeOrClose(frontend::kClose, msg, out);
}

absl::StatusOr<Execute> ParseExecute(Bytes body) {
  Reader r(body, "Execute");
  Execute msg;
  TG_ASSIGN_OR_RETURN(std::string_view portal, r.CString(Field{"portal name"}));
  msg.portal = std::string(portal);
  TG_ASSIGN_OR_RETURN(msg.max_rows, r.I32(Field{"row limit"}));
  if (msg.max_rows < 0) {
    return r.Error(absl::StrCat("row limit ", msg.max_rows, " is negative"));
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeExecute(const Execute& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, frontend::kExecute);
  internal::PutCString(out, msg.portal);
  internal::PutI32(out, msg.max_rows);
  internal::FinishMessage(out, at);
}

absl::Status ParseEmpty(Bytes body) {
  if (!body.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("message must have an empty body, got ", body.size(), " bytes"));
  }
  return absl::OkStatus();
}

void EncodeEmpty(char type, Buffer& out) {
  size_t at = internal::BeginMessage(out, type);
  internal::FinishMessage(out, at);
}

absl::StatusOr<FunctionCall> ParseFunctionCall(Bytes body) {
  Reader r(body, "FunctionCall");
  FunctionCall msg;
  TG_ASSIGN_OR_RETURN(msg.function_oid, r.U32(Field{"function oid"}));
  TG_ASSIGN_OR_RETURN(msg.arg_formats, ReadFormats(r, "argument format"));
  TG_ASSIGN_OR_RETURN(msg.args, ReadValues(r, "argument"));
  TG_RETURN_IF_ERROR(CheckFormatCount(r, msg.arg_formats.size(), msg.args.size(), "argument"));
  TG_ASSIGN_OR_RETURN(msg.result_format, r.I16(Field{"result format"}));
  if (msg.result_format != 0 && msg.result_format != 1) {
    return r.Error(absl::StrCat("result format is ", msg.result_format, " (must be 0 or 1)"));
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeFunctionCall(const FunctionCall& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, frontend::kFunctionCall);
  internal::PutU32(out, msg.function_oid);
  PutFormats(out, msg.arg_formats);
  PutValues(out, msg.args);
  internal::PutI16(out, msg.result_format);
  internal::FinishMessage(out, at);
}

// ---- Copy ---------------------------------------------------------------------------------

void EncodeCopyData(Bytes data, Buffer& out) {
  size_t at = internal::BeginMessage(out, frontend::kCopyData);
  internal::PutBytes(out, data);
  internal::FinishMessage(out, at);
}

absl::StatusOr<CopyFail> ParseCopyFail(Bytes body) {
  Reader r(body, "CopyFail");
  TG_ASSIGN_OR_RETURN(std::string_view message, r.CString(Field{"message"}));
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return CopyFail{std::string(message)};
}

void EncodeCopyFail(const CopyFail& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, frontend::kCopyFail);
  internal::PutCString(out, msg.message);
  internal::FinishMessage(out, at);
}

absl::StatusOr<CopyResponse> ParseCopyResponse(Bytes body) {
  Reader r(body, "CopyResponse");
  CopyResponse msg;
  TG_ASSIGN_OR_RETURN(uint8_t format, r.U8(Field{"overall format"}));
  if (format != 0 && format != 1) {
    return r.Error(absl::StrCat("overall format is ", format, " (must be 0 or 1)"));
  }
  msg.format = static_cast<int8_t>(format);
  TG_ASSIGN_OR_RETURN(msg.column_formats, ReadFormats(r, "column format"));
  if (msg.format == 0) {
    for (size_t i = 0; i < msg.column_formats.size(); ++i) {
      if (msg.column_formats[i] != 0) {
        return r.Error(absl::StrCat("column format ", i + 1, " is binary in a text copy"));
      }
    }
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeCopyResponse(char type, const CopyResponse& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, type);
  internal::PutU8(out, static_cast<uint8_t>(msg.format));
  PutFormats(out, msg.column_formats);
  internal::FinishMessage(out, at);
}

}  // namespace tracegate::pgwire
