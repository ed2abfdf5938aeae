#include "audit/query.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "audit/recorder.h"
#include "common/status.h"
#include "common/strings.h"

namespace tracegate::audit {

using Json = nlohmann::json;

Json SessionSummaryJson(const store::SessionSummary& s) {
  Json out{
      {"id", s.id},
      {"kind", s.kind},
      {"connection", s.connection},
      {"trace_id", s.trace_id},
      {"grant_id", s.grant_id},
      {"principal", {{"issuer", s.issuer}, {"subject", s.subject}, {"client_id", s.client_id}}},
      {"user", s.user},
      {"client_address", s.client_address},
      {"started_at", FormatTime(s.started_at)},
      {"ended_at", s.ended_at ? Json(FormatTime(*s.ended_at)) : Json(nullptr)},
      {"outcome", s.outcome.empty() ? Json(nullptr) : Json(s.outcome)},
      {"reason", s.reason},
      {"statements", s.statements},
      {"blocked", s.blocked},
      {"rows", s.rows},
      {"bytes_to_client", s.bytes_to_client},
      {"first_seq", s.first_seq},
      {"last_seq", s.last_seq},
  };
  if (s.outcome == "refused") {
    // A refused credential (Recorder::AuthFailure): `blocked` counts the attempts.
    out["attempts"] = s.blocked;
  }
  return out;
}

absl::StatusOr<SessionReplay> ReplaySession(const std::filesystem::path& dir,
                                            store::StateStore& store, std::string_view id) {
  absl::StatusOr<store::SessionSummary> summary = store.GetSession(id);
  if (!summary.ok()) {
    return summary.status();
  }
  absl::StatusOr<LogReader> reader = LogReader::Open(dir);
  if (!reader.ok()) {
    return reader.status();
  }
  SessionReplay replay;
  const bool ended = summary->ended_at.has_value();
  absl::Status read = reader->ForEach(summary->first_seq, [&](const Record& record) {
    if (ended && record.seq > summary->last_seq) {
      return false;
    }
    if (record.session == id) {
      replay.Add(record);
      if (record.type == RecordType::kSessionEnd) {
        return false;
      }
    }
    return true;
  });
  if (!read.ok()) {
    return read;
  }
  return replay;
}

Json RecordEventJson(const Record& record) {
  Json event = {{"seq", record.seq},
                {"time", FormatTime(std::chrono::system_clock::time_point(
                             std::chrono::microseconds(record.time_us)))},
                {"type", RecordTypeName(record.type)},
                {"session", record.session}};
  switch (record.type) {
    case RecordType::kClientFrames: {
      SessionReplay statements;
      statements.Add(record);
      event["steps"] = statements.ToJson()["steps"];
      event["bytes"] = record.payload.size();
      event["frames_base64"] = absl::Base64Escape(record.payload);
      break;
    }
    case RecordType::kServerFrames:
      event["bytes"] = record.payload.size();
      event["frames_base64"] = absl::Base64Escape(record.payload);
      break;
    default: {
      Json data = Json::parse(record.payload, nullptr, /*allow_exceptions=*/false);
      event["data"] = data.is_discarded() ? Json(absl::Base64Escape(record.payload)) : data;
      break;
    }
  }
  return event;
}

absl::StatusOr<std::chrono::system_clock::time_point> ParseTimeArg(
    std::string_view text, std::chrono::system_clock::time_point now) {
  if (!text.empty()) {
    const char unit = text.back();
    uint64_t count = 0;
    const std::string digits(text.substr(0, text.size() - 1));
    if (std::string_view("smhd").find(unit) != std::string_view::npos &&
        absl::SimpleAtoi(digits, &count) && count < 1000000) {
      const int64_t seconds_per = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
      return now - std::chrono::seconds(static_cast<int64_t>(count) * seconds_per);
    }
  }
  absl::Time parsed;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, std::string(text), &parsed, &error)) {
    return absl::InvalidArgumentError(
        Cat("\"", text,
            "\" is neither an RFC 3339 time (2026-11-30T12:00:00Z) nor a duration "
            "before now (90s, 15m, 24h, 7d)"));
  }
  return absl::ToChronoTime(parsed);
}

}  // namespace tracegate::audit
