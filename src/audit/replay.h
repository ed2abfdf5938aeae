#pragma once
// Session replay: rebuilds what happened in one recorded session from its audit records,
// for `tracegate audit replay` and the API.
//
// The client's and the server's frames are decoded with pgwire (framing, then the message
// parsers) and matched the way the protocol pairs them: every client message that expects
// an answer is queued, and server messages are read against the front of that queue (after
// an ErrorResponse in the extended protocol the server skips to the next Sync, and so does
// the queue). That is how an Execute's DataRows get their columns from an earlier Describe
// of the portal, or of its statement (with the Bind's result formats applied).
//
// Nothing here is fatal: a frame that does not decode, a message that does not parse, or a
// JSON payload that is not an object becomes an "undecodable" step with the reason, and
// replay goes on. Memory is what the records hold: rows are kept to be rendered.

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "audit/log.h"

namespace tracegate::audit {

class SessionReplay {
 public:
  SessionReplay();
  ~SessionReplay();
  SessionReplay(SessionReplay&&) noexcept;
  SessionReplay& operator=(SessionReplay&&) noexcept;

  // Feed the session's records in seq order. Frames may be split across records of the same
  // direction (each direction keeps a carry buffer). Records that belong to no session
  // (checkpoints, recovery, pruning) are ignored.
  void Add(const Record& record);

  // For humans, psql-like: a header (who, where from, when), one block per step with its
  // time, result sets as psql's aligned tables, and the session's end. Control characters
  // from the recording are escaped, never written raw to the reader's terminal.
  [[nodiscard]] std::string RenderText() const;

  // Every result set as `psql --csv -q` prints it (without -q psql also prints the command
  // tag of each command that returns no rows): the header line of column names, then one
  // line per row. Results ended by an error, or cut off by the end of the recording, are left
  // out, as psql prints nothing for them. Two things psql never meets: binary-format values
  // are written like bytea's text form (\x + hex), and rows whose columns were never
  // described are written without a header line. A portal executed in chunks (Execute with
  // max_rows, PortalSuspended) is one result set: one header, all chunks' rows.
  [[nodiscard]] std::string RenderCsv() const;

  // {"session": <the session_start payload> | null, "steps": [...], "end": <the session_end
  // payload> | null}. Each step is {"kind", "at" (RFC 3339 UTC, microseconds), "seq", ...}:
  //   query {sql}; parse {statement, sql}; bind {portal, statement, params}; execute {portal,
  //   max_rows}; result {columns: [{name, type_oid, format: "text"|"binary"}] | null, rows,
  //   command: tag | null, status: "complete"|"suspended"|"error"|"incomplete"};
  //   error / notice {severity, sqlstate, message, detail?, hint?}; truncated {limit_bytes,
  //   recorded_bytes}; grant_event {grant_id, from, to, actor, detail}; undecodable {reason}.
  // Values (bind params, row values): text as a string, NULL as null, binary (and text that
  // is not valid UTF-8) as {"hex": "..."}. Every string in the result is valid UTF-8, so
  // dump() does not throw.
  [[nodiscard]] nlohmann::json ToJson() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tracegate::audit
