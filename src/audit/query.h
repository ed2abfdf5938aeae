#pragma once
// Answers to an auditor's questions, shared by `tracegate audit` and the API: the session
// index as JSON, a session's replay from the log, and records as SIEM events.

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "audit/log.h"
#include "audit/replay.h"
#include "store/state_store.h"

namespace tracegate::audit {

// {"id","kind","connection","trace_id","grant_id","principal":{issuer,subject,client_id},
//  "user","client_address","started_at","ended_at"|null,"outcome"|null,"reason",
//  "statements","blocked","rows","bytes_to_client","first_seq","last_seq"}; an entry with
// outcome "refused" is a refused credential (Recorder::AuthFailure) and adds "attempts".
nlohmann::json SessionSummaryJson(const store::SessionSummary& session);

// The session's records, read from the log in `dir` starting at its first record, fed into a
// replay. NotFound when the index has no such session; DataLoss when the log cannot be read.
absl::StatusOr<SessionReplay> ReplaySession(const std::filesystem::path& dir,
                                            store::StateStore& store, std::string_view id);

// One record as a SIEM event: {"seq","time","type","session", ...}; JSON payloads under
// "data"; client frames as the statements they carry ("steps", as in a replay) and their
// bytes in base64; server frames as their size and base64 bytes.
nlohmann::json RecordEventJson(const Record& record);

// A point in time given on a command line or in a query string: RFC 3339
// ("2026-11-30T12:00:00Z") or a duration before `now` ("90s", "15m", "24h", "7d").
absl::StatusOr<std::chrono::system_clock::time_point> ParseTimeArg(
    std::string_view text, std::chrono::system_clock::time_point now);

}  // namespace tracegate::audit
