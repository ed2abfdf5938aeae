#pragma once
// Masking in the PostgreSQL data path: the values of each result row, and the text of the
// backend's errors and notices (PostgreSQL quotes values in them: `invalid input syntax for
// type integer: "jane@example.com"`), pass through the session's masking profile before
// the client sees them. One row at a time, never a whole result; a row is rebuilt only
// when a value changed.
//
// How a column is read depends on its type and format (from the RowDescription):
//   text format   json/jsonb: masked as JSON (must parse); bool, date/time types, uuid:
//                 passed (no free text); bytea, bytea[]: refused (hex hides everything);
//                 anything else (text, varchar, numbers, arrays, records, inet, ...): as
//                 text, where a value that is entirely JSON is masked as JSON.
//   binary format text, varchar, bpchar, name, json, unknown, xml: the bytes are the text;
//                 jsonb: a version byte, then the text; int2/int4/int8: decoded to decimal
//                 and scanned (a card or phone number held as a number is refused, since
//                 the masked form is no integer); types without free text: passed;
//                 anything else: refused.
// A refused or failed value ends the statement with an error (fail closed): the client
// never receives a value the masker could not read.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "masking/masker.h"
#include "pgwire/messages.h"

namespace tracegate::pgproxy {

// Column names by (table OID << 16 | attnum), as the backend's catalog has them.
using ColumnNames = absl::flat_hash_map<uint64_t, std::string>;

class RowMasker {
 public:
  enum class Read : uint8_t {
    kPass,         // no free text in this type: forwarded unread
    kText,         // scanned as text (a whole-JSON value as JSON)
    kJson,         // json, jsonb in text format
    kJsonbBinary,  // version byte 1, then JSON text
    kIntBinary,    // int2/int4/int8, big-endian
    kRefuse,       // cannot be read; any non-NULL value ends the statement
  };
  struct Column {
    std::string name;
    uint32_t type_oid = 0;
    Read read = Read::kPass;
    // The name is the stored column's (from the catalog), not the result's: an alias cannot
    // dodge a column rule or claim one. False for computed columns and columns of tables
    // that are not trace tables; their `keep` rules keep only opaque blobs.
    bool trusted_name = false;
  };
  using Plan = std::vector<Column>;

  // `trace_table_columns`: the columns of the declared trace tables.
  RowMasker(masking::Scanner scanner, ColumnNames trace_table_columns)
      : scanner_(std::move(scanner)), names_(std::move(trace_table_columns)) {}

  // How each column of a result is read, and under which name its rules apply.
  Plan PlanFor(const pgwire::RowDescription& description) const;

  // Masks one DataRow (`body` = the validated frame body, `plan` its columns). Returns
  // whether anything changed; then `out` holds the whole new DataRow frame. An error
  // carries the SQLSTATE and message for the client (see pg_error.h).
  absl::StatusOr<bool> MaskRow(const Plan& plan, pgwire::Bytes body, pgwire::Buffer& out);

  // Masks the human-readable fields of an ErrorResponse / NoticeResponse (`type` is the
  // frame's type). Same contract as MaskRow.
  absl::StatusOr<bool> MaskMessage(char type, pgwire::Bytes body, pgwire::Buffer& out);

  // Values masked so far, by entity.
  [[nodiscard]] const masking::Counts& counts() const { return counts_; }

 private:
  // Masks one non-NULL value; `masked` gets the new bytes when it returns true.
  absl::StatusOr<bool> MaskValue(const Column& column, std::string_view value, std::string& masked);

  masking::Scanner scanner_;
  const ColumnNames names_;
  masking::Counts counts_;
  std::string scratch_;
  // Per column of the row being rebuilt: its masked bytes, when it changed.
  std::vector<std::string> masked_values_;
  std::vector<uint8_t> changed_;
  std::vector<std::pair<const uint8_t*, int32_t>> values_;  // where each value of the row is
};

}  // namespace tracegate::pgproxy
