#pragma once
// The statement gate in the data path of one grant-scoped session: every client message
// is checked before it reaches the trace store, and every answer is checked before it
// reaches the client. Transport-free (the session does the I/O), so it is tested with
// frames alone (protocol_gate_test.cpp).
//
// Client → backend:
//   Query      sql::Gate decides; a blocked statement is replaced by text that does not
//              parse, whose ErrorResponse becomes the client's refusal: the backend fails
//              the statement itself (aborting a transaction block, as an error would), the
//              answers keep their order, and the session stays usable.
//   Parse      sql::Gate decides; the statement's pinning parameters are remembered.
//   Bind       each pinning parameter must be bound to the granted trace id.
//   Execute    if the portal's columns are unknown, a Describe is slipped in first (its
//              answer is kept from the client) so every row can be checked.
//   A blocked extended-protocol message is replaced by a Parse of that unparsable text (the
//   backend then skips to Sync, as after any error) and the client's messages are dropped
//   up to its Sync.
//   FunctionCall, CopyData/CopyDone/CopyFail: refused or dropped (no COPY ever starts).
//
// Backend → client:
//   A ParameterStatus that reports a client_encoding other than UTF8 ends the session.
//   Every answer is matched to the request it answers (a queue of expected answers); rows
//   are checked against the RowDescription they belong to: a declared trace-id column must
//   hold the granted trace (or NULL), else the session ends. The grant's row and byte caps
//   end the statement that crosses them (54000). COPY from the backend ends the session.

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "pgproxy/row_masker.h"
#include "pgwire/messages.h"
#include "sql/gate.h"

namespace tracegate::pgproxy {

// (table OID, attribute number) of every declared trace-id column, as the backend's
// catalog says; RowDescription names result columns the same way.
using TraceColumns = absl::flat_hash_set<uint64_t>;
inline uint64_t TraceColumnKey(uint32_t table_oid, int16_t attnum) {
  return (static_cast<uint64_t>(table_oid) << 16) | static_cast<uint16_t>(attnum);
}

// The catalog query that lists every column of the declared trace tables: rows of
// (schema, table, column, table oid, attnum) as text.
std::string TraceColumnsQuery(const std::vector<config::TraceTable>& tables);

// Whether `name` is PostgreSQL's spelling of UTF-8 (case, `-` and `_` ignored, as the
// server folds encoding names): the only client_encoding a grant session may run with, since
// the statement gate reads statements as UTF-8.
bool IsUtf8EncodingName(std::string_view name);

struct GateLimits {
  uint64_t max_rows = 0;   // per session; 0 = unlimited
  uint64_t max_bytes = 0;  // per session, DataRow bytes sent; 0 = unlimited
};

// Counters of what the gate did, for metrics and the session log.
struct GateStats {
  uint64_t statements = 0;
  uint64_t blocked = 0;
  uint64_t rows = 0;
  uint64_t bytes = 0;
  uint64_t masking_errors = 0;  // values or messages masking could not read (never sent)
};

class ProtocolGate {
 public:
  enum class Action {
    kForwarded,    // the message went to the backend as it was
    kSubstituted,  // something else went in its place (answered the same way)
    kDropped,      // nothing went to the backend
  };

  // `masker`: the session's masking (null = responses are not masked).
  ProtocolGate(const sql::Gate& gate, std::string trace_id, TraceColumns trace_columns,
               GateLimits limits, std::unique_ptr<RowMasker> masker = nullptr);

  // One validated client frame (`raw` = its bytes on the wire). Appends what the backend
  // must receive to `to_backend`. An error ends the session (protocol violation).
  absl::StatusOr<Action> OnClientFrame(const pgwire::Frame& frame, pgwire::Bytes raw,
                                       pgwire::Buffer& to_backend);

  // One validated backend frame. Appends what the client must receive to `to_client`. An
  // error ends the session (a row of another trace, an answer nothing asked for, COPY).
  absl::Status OnBackendFrame(const pgwire::Frame& frame, pgwire::Bytes raw,
                              pgwire::Buffer& to_client);

  [[nodiscard]] const GateStats& stats() const { return stats_; }
  // Values masked so far, by entity; null when the session is not masked.
  [[nodiscard]] const masking::Counts* masked() const {
    return masker_ ? &masker_->counts() : nullptr;
  }

  // A backend message that answers nothing and goes to the client whatever the gate's
  // state (a FATAL error): masked like every other message.
  void ForwardMessage(const pgwire::Frame& frame, pgwire::Bytes raw, pgwire::Buffer& to_client);

  // True once after a statement crossed a cap and the backend may be cancelled: nothing
  // after the capped statement has been forwarded to it. The caller must then hold the
  // client's messages until the CancelRequest has been delivered, so the cancel cannot hit
  // a later statement. When it is not safe the gate drains the statement instead (its
  // remaining rows are dropped either way).
  bool TakeCancel() { return std::exchange(cancel_wanted_, false); }

 private:
  // One column layout of a result, reduced to what the checks need.
  struct Layout {
    bool known = false;
    bool no_data = false;
    std::vector<int> trace_columns;  // indexes of declared trace-id columns
    std::vector<int16_t> formats;    // per column: 0 text, 1 binary
    RowMasker::Plan plan;            // masked sessions: how each column is read
  };
  // Client-side mirrors of the backend's prepared statements and portals, updated as
  // messages are forwarded (and undone when the backend skips them).
  struct Statement {
    std::vector<int> trace_params;  // 1-based
    sql::StatementKind kind = sql::StatementKind::kOther;
  };
  struct Portal {
    // A Describe (the client's or ours) of this portal was sent after the last statement
    // that ran (an Execute of any portal, a simple Query): what it answers is what the next
    // Execute returns. Any statement may have closed and re-declared a cursor of this name
    // (DECLARE, CLOSE, by either protocol), so nothing older is trusted.
    bool described = false;
    // Bound from FETCH/MOVE and not executed yet. PostgreSQL fixes such a portal's columns
    // at Bind from the cursor as it was then, and reads the rows the cursor has at the first
    // Execute with those columns: a cursor closed and re-declared in between comes out under
    // the old layout (and a Describe repeats the old one). So a FETCH portal is stale once
    // anything that can change a portal was sent after its Bind, and its Execute is refused.
    bool fetch_unrun = false;
    bool stale = false;
  };
  enum class Expect {
    kQuery,              // a simple Query (or a substitute): up to ReadyForQuery
    kParse,              // ParseComplete
    kBind,               // BindComplete
    kDescribeStatement,  // ParameterDescription, then RowDescription / NoData
    kDescribePortal,     // RowDescription / NoData
    kExecute,            // DataRow*, then CommandComplete / EmptyQueryResponse / PortalSuspended
    kClose,              // CloseComplete
    kSync,               // ReadyForQuery
  };
  // An error the gate delivers in place of an answer.
  struct Refusal {
    std::string sqlstate;
    std::string message;
  };
  struct Pending {
    Expect expect;
    std::string name;                // statement or portal
    bool internal = false;           // slipped in by the gate: its answer is not forwarded
    std::optional<Refusal> refusal;  // deliver this error in place of the answer
    Layout layout;                   // kQuery: the current result's columns
    bool ended = false;  // the gate ended the statement (a cap, masking): its rows are dropped
    // What the message changed in our mirror of the backend's statements and portals, to
    // undo when the backend skips it (an earlier message of the same run failed).
    std::optional<std::optional<Statement>> saved_statement;
    std::optional<std::optional<Portal>> saved_portal;
  };

  // Substitutes a message the backend answers harmlessly and queues the refusal in place
  // of that answer. Extended protocol: the client's messages up to Sync are dropped.
  void Refuse(bool extended, Refusal refusal, pgwire::Buffer& to_backend);
  Layout LayoutOf(const pgwire::RowDescription& row) const;
  absl::Status CheckRow(Pending& pending, const Layout& layout, const pgwire::Frame& frame,
                        pgwire::Bytes raw, pgwire::Buffer& to_client);
  bool IsTrace(pgwire::Bytes value, int16_t format) const;
  // After an error in an extended-protocol run, the backend skips to Sync; so do we.
  void DropUntilSync();
  bool CancelIsSafe() const;
  // Delivers `error` in place of the rest of the statement's answer; the backend is
  // cancelled when that is safe, and its remaining rows are dropped.
  void EndStatement(Pending& pending, const Refusal& error, pgwire::Buffer& to_client);
  // A statement may have run, or a portal was closed or bound: no portal's Describe is
  // trusted any more, and FETCH portals bound before it (other than `except`) are stale.
  void PortalsMayHaveChanged(const std::string* except);
  // Remember a statement's / portal's state before `pending` changes it, for Undo.
  void SaveStatement(Pending& pending, const std::string& name) const;
  void SavePortal(Pending& pending, const std::string& name) const;
  void Undo(const Pending& pending);
  static void AppendError(const Refusal& refusal, pgwire::Buffer& out);

  const sql::Gate& gate_;
  const std::string trace_id_;
  std::optional<std::string> trace_uuid_;  // 16 bytes, when the trace id is a UUID
  const TraceColumns trace_columns_;
  const GateLimits limits_;
  const std::unique_ptr<RowMasker> masker_;

  absl::flat_hash_map<std::string, Statement> statements_;
  absl::flat_hash_map<std::string, Portal> portals_;
  // Backend side: each portal's columns, from the answer to the Describe that precedes every
  // Execute's rows in the answer stream.
  absl::flat_hash_map<std::string, Layout> layouts_;
  std::deque<Pending> pending_;
  // Client side: a message was refused, or the backend failed one before the client sent
  // its Sync; drop until Sync.
  bool skipping_to_sync_ = false;
  bool swallowing_ = false;  // backend side: an error was delivered, drop until Sync
  GateStats stats_;
  bool cancel_wanted_ = false;
};

}  // namespace tracegate::pgproxy
