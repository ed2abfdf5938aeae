// Fuzzes the masking of result rows: the input describes a result (column types and
// formats) and one row of values; RowMasker::MaskRow must either refuse with one of its
// SQLSTATEs or produce a well-formed DataRow of the same shape in which NULLs stay NULL,
// columns that are never read pass byte for byte and a binary jsonb keeps its version
// byte. The same bytes, read as an ErrorResponse body, go through MaskMessage.
//
// Input: byte 0 = number of columns (mod 9); then per column one byte: type (an index into
// kTypes) and format (high bit); then the values, each a one-byte length (255 = NULL) and
// that many bytes (short values are padded with zeros).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pgproxy/pg_error.h"
#include "pgproxy/row_masker.h"
#include "pgwire/framing.h"

namespace {

using tracegate::pgproxy::RowMasker;
namespace pgwire = tracegate::pgwire;

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

// text, varchar, json, jsonb, int2, int4, int8, numeric, bytea, uuid, timestamptz, bool,
// text[], unknown type
constexpr std::array<uint32_t, 14> kTypes = {25,   1043, 114,  3802, 21, 23,   20,
                                             1700, 17,   2950, 1184, 16, 1009, 99999};

RowMasker& Masker() {
  static RowMasker* masker = [] {
    auto compiled = tracegate::masking::Masker::Create(tracegate::masking::Profile{});
    Check(compiled.ok());
    auto scanner = tracegate::masking::Scanner::Create(*compiled);
    Check(scanner.ok());
    // Column 1 of table 1 is a trace-table column named "notes".
    return new RowMasker(*std::move(scanner), {{(uint64_t{1} << 16) | 1, "notes"}});
  }();
  return *masker;
}

pgwire::Bytes AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  size_t at = 0;
  const size_t columns = data[at++] % 9;
  pgwire::RowDescription description;
  for (size_t i = 0; i < columns; ++i) {
    const uint8_t spec = at < size ? data[at++] : 0;
    description.fields.push_back({.name = "c" + std::to_string(i),
                                  .table_oid = (spec & 0x40) != 0 ? 1u : 0u,
                                  .column_attr = 1,
                                  .type_oid = kTypes[(spec & 0x7f) % kTypes.size()],
                                  .type_size = -1,
                                  .format = static_cast<int16_t>(spec >> 7)});
  }
  std::vector<std::optional<std::string>> values;
  for (size_t i = 0; i < columns; ++i) {
    const uint8_t length = at < size ? data[at++] : 255;
    if (length == 255) {
      values.emplace_back(std::nullopt);
      continue;
    }
    std::string v(length, '\0');
    for (size_t j = 0; j < length && at < size; ++j) {
      v[j] = static_cast<char>(data[at++]);
    }
    values.emplace_back(std::move(v));
  }
  pgwire::DataRow row;
  for (const auto& v : values) {
    row.values.push_back(v.has_value() ? std::optional(AsBytes(*v)) : std::nullopt);
  }
  std::string frame;
  pgwire::EncodeDataRow(row, frame);

  const RowMasker::Plan plan = Masker().PlanFor(description);
  std::string out = "x";  // MaskRow appends
  absl::StatusOr<bool> changed = Masker().MaskRow(plan, AsBytes(frame).subspan(5), out);
  if (!changed.ok()) {
    const std::string state = tracegate::pgproxy::SqlStateOf(changed.status());
    Check(state == "0A000" || state == "XX000" || state == "54000");
    Check(out == "x");
  } else if (!*changed) {
    Check(out == "x");
  } else {
    const pgwire::FrameResult r =
        pgwire::DecodeFrame(AsBytes(out).subspan(1), pgwire::Direction::kBackend, pgwire::Limits{});
    Check(r.status == pgwire::DecodeStatus::kFrame && r.frame.wire_size == out.size() - 1);
    Check(r.frame.type == pgwire::backend::kDataRow);
    absl::StatusOr<pgwire::DataRow> masked = pgwire::ParseDataRow(r.frame.body);
    Check(masked.ok() && masked->values.size() == columns);
    for (size_t i = 0; i < columns; ++i) {
      Check(masked->values[i].has_value() == values[i].has_value());
      if (!values[i].has_value()) {
        continue;
      }
      const std::string_view after(reinterpret_cast<const char*>(masked->values[i]->data()),
                                   masked->values[i]->size());
      if (plan[i].read == RowMasker::Read::kPass) {
        Check(after == *values[i]);
      }
      if (plan[i].read == RowMasker::Read::kJsonbBinary) {
        Check(!after.empty() && after[0] == '\1');
      }
    }
  }

  // The input (after the column count) as the body of an error or notice.
  const pgwire::Bytes body(data + 1, size - 1);
  std::string message;
  absl::StatusOr<bool> masked_message = Masker().MaskMessage(
      data[0] & 1 ? pgwire::backend::kErrorResponse : pgwire::backend::kNoticeResponse, body,
      message);
  if (!masked_message.ok() || !*masked_message) {
    Check(message.empty());
  } else {
    const pgwire::FrameResult r =
        pgwire::DecodeFrame(AsBytes(message), pgwire::Direction::kBackend, pgwire::Limits{});
    Check(r.status == pgwire::DecodeStatus::kFrame && r.frame.wire_size == message.size());
    Check(pgwire::ParseErrorFields(r.frame.body).ok());
  }
  return 0;
}
