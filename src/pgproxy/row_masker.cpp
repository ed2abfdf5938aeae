#include "pgproxy/row_masker.h"

#include <utility>

#include "common/status.h"
#include "common/strings.h"
#include "pgproxy/pg_error.h"

namespace tracegate::pgproxy {
namespace {

namespace oid {
constexpr uint32_t kBool = 16;
constexpr uint32_t kBytea = 17;
constexpr uint32_t kChar = 18;
constexpr uint32_t kName = 19;
constexpr uint32_t kInt8 = 20;
constexpr uint32_t kInt2 = 21;
constexpr uint32_t kInt4 = 23;
constexpr uint32_t kText = 25;
constexpr uint32_t kJson = 114;
constexpr uint32_t kXml = 142;
constexpr uint32_t kUnknown = 705;
constexpr uint32_t kByteaArray = 1001;
constexpr uint32_t kBpchar = 1042;
constexpr uint32_t kVarchar = 1043;
constexpr uint32_t kDate = 1082;
constexpr uint32_t kTime = 1083;
constexpr uint32_t kTimestamp = 1114;
constexpr uint32_t kTimestamptz = 1184;
constexpr uint32_t kInterval = 1186;
constexpr uint32_t kTimetz = 1266;
constexpr uint32_t kUuid = 2950;
constexpr uint32_t kVoid = 2278;
constexpr uint32_t kJsonb = 3802;
}  // namespace oid

// Types whose values carry no free text in either format.
bool NoFreeText(uint32_t type) {
  switch (type) {
    case oid::kBool:
    case oid::kChar:  // one byte
    case oid::kDate:
    case oid::kTime:
    case oid::kTimestamp:
    case oid::kTimestamptz:
    case oid::kInterval:
    case oid::kTimetz:
    case oid::kUuid:
    case oid::kVoid:
      return true;
    default:
      return false;
  }
}

RowMasker::Read ReadFor(uint32_t type, int16_t format) {
  using Read = RowMasker::Read;
  if (type == oid::kBytea || type == oid::kByteaArray) {
    return Read::kRefuse;
  }
  if (NoFreeText(type)) {
    return Read::kPass;
  }
  if (format == 0) {
    return type == oid::kJson || type == oid::kJsonb ? Read::kJson : Read::kText;
  }
  switch (type) {
    case oid::kJson:
      return Read::kJson;
    case oid::kJsonb:
      return Read::kJsonbBinary;
    case oid::kText:
    case oid::kVarchar:
    case oid::kBpchar:
    case oid::kName:
    case oid::kUnknown:
    case oid::kXml:
      return Read::kText;
    case oid::kInt2:
    case oid::kInt4:
    case oid::kInt8:
      return Read::kIntBinary;
    default:
      return Read::kRefuse;
  }
}

int32_t ReadInt32(const uint8_t* p) {
  return static_cast<int32_t>((uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                              (uint32_t{p[2]} << 8) | uint32_t{p[3]});
}

void PutInt32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

// A big-endian two's-complement integer of 2, 4 or 8 bytes, as decimal text.
std::optional<std::string> DecodeInt(std::string_view bytes) {
  if (bytes.size() != 2 && bytes.size() != 4 && bytes.size() != 8) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (char c : bytes) {
    v = (v << 8) | static_cast<uint8_t>(c);
  }
  const int shift = static_cast<int>(64 - 8 * bytes.size());
  const int64_t value = static_cast<int64_t>(v << shift) >> shift;  // sign-extend
  return std::to_string(value);
}

absl::Status Unreadable(const RowMasker::Column& column, std::string_view why) {
  return PgError(absl::StatusCode::kFailedPrecondition, sqlstate::kFeatureNotSupported,
                 Cat("tracegate: column \"", column.name, "\" ", why,
                     "; the statement is ended (responses of this session are masked)"));
}

}  // namespace

RowMasker::Plan RowMasker::PlanFor(const pgwire::RowDescription& description) const {
  Plan plan;
  plan.reserve(description.fields.size());
  for (const pgwire::FieldDescription& f : description.fields) {
    Column column{.name = f.name, .type_oid = f.type_oid, .read = ReadFor(f.type_oid, f.format)};
    if (f.table_oid != 0) {
      auto it = names_.find((static_cast<uint64_t>(f.table_oid) << 16) |
                            static_cast<uint16_t>(f.column_attr));
      if (it != names_.end()) {
        column.name = it->second;
        column.trusted_name = true;
      }
    }
    plan.push_back(std::move(column));
  }
  return plan;
}

absl::StatusOr<bool> RowMasker::MaskValue(const Column& column, std::string_view value,
                                          std::string& masked) {
  const masking::FieldContext text{.column = column.name,
                                   .kind = masking::ValueKind::kText,
                                   .trusted_names = column.trusted_name};
  const masking::FieldContext json{.column = column.name,
                                   .kind = masking::ValueKind::kJson,
                                   .trusted_names = column.trusted_name};
  absl::StatusOr<bool> changed = false;
  switch (column.read) {
    case Read::kPass:
      return false;
    case Read::kRefuse:
      return Unreadable(column,
                        column.type_oid == oid::kBytea || column.type_oid == oid::kByteaArray
                            ? "is bytea, which masking cannot read (leave it out of "
                              "the select list)"
                            : Cat("(type oid ", column.type_oid,
                                  ") was asked for in binary format, which masking "
                                  "cannot read (ask for text format)"));
    case Read::kText:
      changed = scanner_.Mask(value, text, masked, counts_);
      break;
    case Read::kJson:
      changed = scanner_.Mask(value, json, masked, counts_);
      break;
    case Read::kJsonbBinary: {
      if (value.empty() || value[0] != 1) {
        return Unreadable(column, "holds a binary jsonb version masking does not know");
      }
      changed = scanner_.Mask(value.substr(1), json, scratch_, counts_);
      if (changed.ok() && *changed) {
        masked.assign(1, '\1');
        masked += scratch_;
      }
      break;
    }
    case Read::kIntBinary: {
      const std::optional<std::string> decimal = DecodeInt(value);
      if (!decimal.has_value()) {
        return Unreadable(column, "holds an integer of an unexpected size");
      }
      changed = scanner_.Mask(*decimal, text, scratch_, counts_);
      if (changed.ok() && *changed) {
        return Unreadable(column,
                          "holds a number the masking profile masks, which cannot be sent in "
                          "binary format (ask for text format)");
      }
      break;
    }
  }
  if (!changed.ok()) {
    // The engine's reasons name offsets and entities, never the value.
    return PgError(absl::StatusCode::kInternal, sqlstate::kInternalError,
                   Cat("tracegate: masking failed for column \"", column.name,
                       "\": ", MessageOf(changed.status()), "; the statement is ended"));
  }
  return *changed;
}

absl::StatusOr<bool> RowMasker::MaskRow(const Plan& plan, pgwire::Bytes body, pgwire::Buffer& out) {
  // The frame was validated: the count and every length fit the body.
  const uint8_t* p = body.data();
  const size_t columns = static_cast<size_t>((p[0] << 8) | p[1]);
  if (columns != plan.size()) {
    return absl::InvalidArgumentError("a row does not match its row description");
  }
  p += 2;
  masked_values_.resize(columns);
  changed_.assign(columns, 0);
  values_.resize(columns);
  bool any = false;
  for (size_t i = 0; i < columns; ++i) {
    const int32_t length = ReadInt32(p);
    p += 4;
    values_[i] = {p, length};
    masked_values_[i].clear();
    if (length >= 0) {
      const std::string_view value(reinterpret_cast<const char*>(p), static_cast<size_t>(length));
      absl::StatusOr<bool> changed = MaskValue(plan[i], value, masked_values_[i]);
      if (!changed.ok()) {
        return changed.status();
      }
      changed_[i] = *changed ? 1 : 0;
      any = any || *changed;
      p += length;
    }
  }
  if (!any) {
    return false;
  }
  const size_t at = out.size();
  out.push_back(pgwire::backend::kDataRow);
  PutInt32(out, 0);  // length, patched below
  out.push_back(static_cast<char>(columns >> 8));
  out.push_back(static_cast<char>(columns));
  for (size_t i = 0; i < columns; ++i) {
    const auto [data, length] = values_[i];
    if (length < 0) {
      PutInt32(out, static_cast<uint32_t>(-1));
    } else if (changed_[i] != 0) {
      PutInt32(out, static_cast<uint32_t>(masked_values_[i].size()));
      out += masked_values_[i];
    } else {
      PutInt32(out, static_cast<uint32_t>(length));
      out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(length));
    }
  }
  const uint64_t frame_length = out.size() - at - 1;
  if (frame_length > INT32_MAX) {
    out.resize(at);
    return PgError(absl::StatusCode::kResourceExhausted, sqlstate::kProgramLimitExceeded,
                   "tracegate: a masked row would exceed the protocol's message size; the "
                   "statement is ended");
  }
  std::string length_bytes;
  PutInt32(length_bytes, static_cast<uint32_t>(frame_length));
  out.replace(at + 1, 4, length_bytes);
  return true;
}

absl::StatusOr<bool> RowMasker::MaskMessage(char type, pgwire::Bytes body, pgwire::Buffer& out) {
  absl::StatusOr<pgwire::ErrorFields> fields = pgwire::ParseErrorFields(body);
  if (!fields.ok()) {
    return fields.status();
  }
  const masking::FieldContext context{.column = "message", .kind = masking::ValueKind::kText};
  bool any = false;
  for (auto& [code, value] : fields->fields) {
    // Message, detail, hint, context, internal query: where PostgreSQL quotes values.
    if (code != 'M' && code != 'D' && code != 'H' && code != 'W' && code != 'q') {
      continue;
    }
    absl::StatusOr<bool> changed = scanner_.Mask(value, context, scratch_, counts_);
    if (!changed.ok()) {
      return PgError(absl::StatusCode::kInternal, sqlstate::kInternalError,
                     Cat("tracegate: masking failed for a message from the trace store: ",
                         MessageOf(changed.status())));
    }
    if (*changed) {
      value = scratch_;
      any = true;
    }
  }
  if (!any) {
    return false;
  }
  if (type == pgwire::backend::kErrorResponse) {
    pgwire::EncodeErrorResponse(*fields, out);
  } else {
    pgwire::EncodeNoticeResponse(*fields, out);
  }
  return true;
}

}  // namespace tracegate::pgproxy
