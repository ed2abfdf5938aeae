#include "audit/recorder.h"

#include <fcntl.h>
#include <fmt/chrono.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "audit/segment.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"

namespace tracegate::audit {

namespace {

using Json = nlohmann::json;

constexpr const char* kGeneratedKeyFile = "checkpoint.key";
constexpr const char* kPublicKeyFile = "checkpoint.pub";

// Writes `content` to a new file of mode 0600 (never over an existing one).
absl::Status WriteNewFile(const std::filesystem::path& path, std::string_view content, int mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::UnavailableError(Cat("cannot create ", path.string(), ": ", std::strerror(errno)));
  }
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      const int error = errno;
      ::close(fd);
      return absl::UnavailableError(
          Cat("cannot write ", path.string(), ": ", std::strerror(error)));
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) {
    return absl::UnavailableError(Cat("cannot sync ", path.string()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::UnavailableError(Cat("cannot read ", path.string()));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The configured key, or the one generated in the log directory on first start.
absl::StatusOr<CheckpointKey> LoadKey(const config::Audit& config) {
  const std::filesystem::path dir(config.dir);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::UnavailableError(
        Cat("cannot create the directory ", dir.string(), ": ", std::strerror(errno)));
  }
  std::string pem = config.signing_key;
  if (pem.empty()) {
    const std::filesystem::path key_path = dir / kGeneratedKeyFile;
    std::error_code ec;
    if (!std::filesystem::exists(key_path, ec)) {
      absl::StatusOr<std::string> generated = CheckpointKey::GeneratePrivatePem();
      if (!generated.ok()) {
        return generated.status();
      }
      TG_RETURN_IF_ERROR(WriteNewFile(key_path, *generated, 0600));
      spdlog::warn(
          "audit: generated a checkpoint signing key in {}; set audit.signing_key_file to keep "
          "the key apart from the log it protects",
          key_path.string());
    }
    absl::StatusOr<std::string> stored = ReadFile(key_path);
    if (!stored.ok()) {
      return stored.status();
    }
    pem = *std::move(stored);
  }
  absl::StatusOr<CheckpointKey> key = CheckpointKey::FromPrivatePem(pem);
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        Cat("audit signing key: ", MessageOf(key.status())));  // never the key itself
  }
  // The public half beside the log, for `tracegate audit verify --public-key`.
  const std::filesystem::path pub = dir / kPublicKeyFile;
  std::error_code ec;
  if (!std::filesystem::exists(pub, ec)) {
    TG_RETURN_IF_ERROR(WriteNewFile(pub, key->PublicPem(), 0644));
  }
  return key;
}

Json GroupsJson(const std::vector<std::string>& groups) {
  Json out = Json::array();
  for (const std::string& g : groups) {
    out.push_back(g);
  }
  return out;
}

}  // namespace

std::string FormatTime(std::chrono::system_clock::time_point at) {
  const auto micros =
      std::chrono::time_point_cast<std::chrono::microseconds>(at).time_since_epoch().count();
  const std::time_t seconds = static_cast<std::time_t>(micros / 1000000);
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:06d}Z", tm, micros % 1000000);
}

absl::StatusOr<std::unique_ptr<Recorder>> Recorder::Open(const config::Audit& config,
                                                         store::StateStore& store,
                                                         AuthFailures::Options auth_failures) {
  absl::StatusOr<CheckpointKey> key = LoadKey(config);
  if (!key.ok()) {
    return key.status();
  }
  LogOptions options;
  options.dir = config.dir;
  options.durability = config.durability == config::AuditDurability::kStrict ? Durability::kStrict
                                                                             : Durability::kBatched;
  options.flush_interval = config.flush_interval;
  options.checkpoint_interval = config.checkpoint_interval;
  options.segment_bytes = config.segment_bytes;
  options.on_checkpoint = [&store](const Checkpoint& checkpoint) {
    return store.PutAuditHead(CheckpointToJson(checkpoint));
  };
  absl::StatusOr<std::unique_ptr<LogWriter>> log = LogWriter::Open(options, *std::move(key));
  if (!log.ok()) {
    return log.status();
  }
  std::unique_ptr<Recorder> recorder(
      new Recorder(config, store, *std::move(log), std::move(auth_failures)));
  TG_RETURN_IF_ERROR(recorder->CloseInterruptedSessions());
  return recorder;
}

Recorder::Recorder(const config::Audit& config, store::StateStore& store,
                   std::unique_ptr<LogWriter> log, AuthFailures::Options auth_failure_options)
    : max_session_bytes_(config.max_session_bytes),
      retention_days_(config.retention_days),
      store_(store),
      log_(std::move(log)),
      auth_failures_(std::make_unique<AuthFailures>(
          std::move(auth_failure_options),
          [this](const AuthFailureRecord& record) { return WriteAuthFailure(record); })) {}

Recorder::~Recorder() {
  auth_failures_.reset();  // its last summaries go to the log before the final checkpoint
}

void Recorder::AuthFailure(const audit::AuthFailure& failure) { auth_failures_->Report(failure); }

AuthFailures::Stats Recorder::auth_failure_stats() const { return auth_failures_->stats(); }

absl::Status Recorder::WriteAuthFailure(const AuthFailureRecord& record) {
  // Its own id, so that the index finds it and GET /v1/sessions/{id}/events replays it.
  unsigned char random[8];
  if (RAND_bytes(random, sizeof random) != 1) {
    return absl::UnavailableError("no randomness for a record id");
  }
  std::string id = "af-";
  for (unsigned char byte : random) {
    id += fmt::format("{:02x}", byte);
  }
  absl::StatusOr<uint64_t> seq = log_->Append(RecordType::kAuthFailure, id, record.ToJson());
  if (!seq.ok()) {
    return seq.status();
  }
  store::SessionSummary summary;
  summary.id = id;
  summary.kind = std::string(AuthPathName(record.path));
  summary.connection = record.connection;
  summary.grant_id = record.grant_id;
  summary.user = record.user;
  summary.client_address = record.event == "overflow" ? "(many)" : record.client_address;
  summary.started_at = record.first_at;
  summary.ended_at = record.last_at;
  summary.outcome = "refused";
  summary.reason = record.reason;
  summary.blocked = record.count;
  summary.first_seq = *seq;
  summary.last_seq = *seq;
  return store_.PutSession(summary);
}

absl::Status Recorder::CloseInterruptedSessions() {
  store::SessionQuery query;
  query.outcome = "open";
  query.limit = 100000;
  absl::StatusOr<std::vector<store::SessionSummary>> open = store_.ListSessions(query);
  if (!open.ok()) {
    return open.status();
  }
  for (store::SessionSummary& summary : *open) {
    Session session(*this, summary);
    SessionOutcome outcome;
    outcome.outcome = "interrupted";
    outcome.reason = "the gateway stopped before the session ended";
    outcome.statements = summary.statements;
    outcome.rows = summary.rows;
    outcome.bytes_to_client = summary.bytes_to_client;
    TG_RETURN_IF_ERROR(session.End(outcome));
  }
  if (!open->empty()) {
    spdlog::warn("audit: {} session(s) left open by an earlier run marked interrupted",
                 open->size());
  }
  return log_->Flush();
}

absl::StatusOr<size_t> Recorder::Prune() {
  if (retention_days_ == 0) {
    return 0;
  }
  return log_->Prune(std::chrono::system_clock::now() - std::chrono::hours(24) * retention_days_);
}

absl::Status Recorder::IndexConflict(std::string_view id, std::string_view what) {
  index_conflicts_.fetch_add(1);
  spdlog::error("audit index: session {} {}; the index row is kept as it is", LogEscape(id, 64),
                what);
  return absl::AlreadyExistsError(Cat("audit index: session ", id, " ", what));
}

absl::StatusOr<std::unique_ptr<Recorder::Session>> Recorder::Begin(const SessionInfo& info) {
  // Never overwrite another session's row (ids are random; a clash means a broken id source
  // or a replayed id): refuse this session instead.
  if (absl::StatusOr<store::SessionSummary> existing = store_.GetSession(info.id); existing.ok()) {
    return IndexConflict(info.id, "is already indexed (a session id was reused)");
  } else if (!absl::IsNotFound(existing.status())) {
    return absl::UnavailableError(Cat("audit index: ", MessageOf(existing.status())));
  }
  Json start = {
      {"session", info.id},
      {"kind", info.kind},
      {"connection", info.connection},
      {"user", info.user},
      {"database", info.database},
      {"grant_id", info.grant_id},
      {"trace_id", info.trace_id},
      {"principal",
       {{"issuer", info.issuer},
        {"subject", info.subject},
        {"client_id", info.client_id},
        {"groups", GroupsJson(info.groups)}}},
      {"rule", info.rule},
      {"masking_profile", info.masking_profile},
      {"client_address", info.client_address},
      {"tls", info.tls_version.empty()
                  ? Json(nullptr)
                  : Json{{"version", info.tls_version}, {"cipher", info.tls_cipher}}},
      {"started_at", FormatTime(info.started_at)},
  };
  absl::StatusOr<uint64_t> seq =
      log_->Append(RecordType::kSessionStart, info.id,
                   start.dump(-1, ' ', false, Json::error_handler_t::replace));
  if (!seq.ok()) {
    return seq.status();
  }
  store::SessionSummary summary;
  summary.id = info.id;
  summary.kind = info.kind;
  summary.connection = info.connection;
  summary.trace_id = info.trace_id;
  summary.grant_id = info.grant_id;
  summary.issuer = info.issuer;
  summary.subject = info.subject;
  summary.client_id = info.client_id;
  summary.user = info.user;
  summary.client_address = info.client_address;
  summary.started_at = info.started_at;
  summary.first_seq = *seq;
  summary.last_seq = *seq;
  if (absl::Status indexed = store_.PutSession(summary); !indexed.ok()) {
    return absl::UnavailableError(Cat("audit index: ", MessageOf(indexed)));
  }
  std::unique_ptr<Session> session(new Session(*this, std::move(summary)));
  session->last_seq_ = *seq;
  return session;
}

Recorder::Session::Session(Recorder& recorder, store::SessionSummary summary)
    : recorder_(recorder), summary_(std::move(summary)), last_seq_(summary_.last_seq) {}

size_t MaxFramesPerRecord() {
  return internal::kMaxRecordSize - internal::kRecordOverhead - 255;  // 255: longest session id
}

absl::StatusOr<uint64_t> Recorder::Session::AppendFrames(RecordType type, std::string_view frames) {
  const size_t max = MaxFramesPerRecord();
  uint64_t seq = last_seq_;
  while (!frames.empty()) {
    size_t take = frames.size();
    if (take > max) {
      // Whole Postgres frames (type byte + length) up to the record's size.
      take = 0;
      while (take + 5 <= frames.size()) {
        const auto* p = reinterpret_cast<const uint8_t*>(frames.data() + take + 1);
        const uint64_t size =
            1 + ((uint64_t{p[0]} << 24) | (uint64_t{p[1]} << 16) | (uint64_t{p[2]} << 8) | p[3]);
        if (take + size > max) {
          break;
        }
        take += size;
      }
      if (take == 0) {
        return absl::InvalidArgumentError(
            Cat("audit log: one frame is longer than a record holds (", max, " bytes)"));
      }
    }
    TG_ASSIGN_OR_RETURN(
        seq, recorder_.log_->Append(type, summary_.id, std::string(frames.substr(0, take))));
    recorded_bytes_ += take;
    last_seq_ = seq;
    frames.remove_prefix(take);
  }
  return seq;
}

absl::StatusOr<uint64_t> Recorder::Session::Unforwarded(
    const std::vector<UnforwardedFrames>& frames) {
  Json list = Json::array();
  for (const UnforwardedFrames& f : frames) {
    unforwarded_frames_ += f.count;
    unforwarded_bytes_ += f.bytes;
    Json entry = {{"type", std::string(1, f.type)},
                  {"verdict", f.verdict},
                  {"count", f.count},
                  {"bytes", f.bytes}};
    if (!f.head.empty()) {
      entry["head"] = f.head.substr(0, kUnforwardedHead);
    }
    list.push_back(std::move(entry));
  }
  if (list.empty()) {
    return last_seq_;
  }
  std::string payload = Json{{"session", summary_.id}, {"frames", std::move(list)}}.dump(
      -1, ' ', false, Json::error_handler_t::replace);
  if (unforwarded_summary_bytes_ + payload.size() > kUnforwardedSummaryBudget) {
    for (const UnforwardedFrames& f : frames) {
      unforwarded_unsummarized_ += f.count;
    }
    return last_seq_;
  }
  unforwarded_summary_bytes_ += payload.size();
  absl::StatusOr<uint64_t> seq =
      recorder_.log_->Append(RecordType::kUnforwarded, summary_.id, std::move(payload));
  if (seq.ok()) {
    last_seq_ = *seq;
  }
  return seq;
}

absl::StatusOr<uint64_t> Recorder::Session::Frames(RecordType type, std::string_view frames) {
  const uint64_t limit = recorder_.max_session_bytes_;
  auto cap_reached = [&] {
    return absl::ResourceExhaustedError(
        Cat("the session's recording reached audit.max_session_bytes (", limit, " bytes)"));
  };
  if (truncated_) {
    return cap_reached();  // nothing goes on unrecorded: the caller ends the session
  }
  if (frames.empty()) {
    return last_seq_;
  }
  if (recorded_bytes_ + frames.size() > limit) {
    // Fail closed: the session ends here. The client's frames that cross the cap are still
    // recorded (they were received; one read's worth at most, bounded by the message size
    // limit), so the statement that ended the session is evidence. Server frames that would
    // cross it are not recorded, and the caller must not release them.
    truncated_ = true;
    uint64_t dropped = frames.size();
    if (type == RecordType::kClientFrames) {
      absl::StatusOr<uint64_t> seq = AppendFrames(type, frames);
      if (!seq.ok()) {
        return seq.status();
      }
      dropped = 0;
    }
    const Json note = {{"session", summary_.id},
                       {"limit_bytes", limit},
                       {"recorded_bytes", recorded_bytes_},
                       {"unrecorded_bytes", dropped},
                       {"direction", type == RecordType::kClientFrames ? "client" : "server"},
                       {"action", "session ended"}};
    absl::StatusOr<uint64_t> seq =
        recorder_.log_->Append(RecordType::kTruncated, summary_.id,
                               note.dump(-1, ' ', false, Json::error_handler_t::replace));
    if (!seq.ok()) {
      return seq.status();
    }
    last_seq_ = *seq;
    return cap_reached();
  }
  return AppendFrames(type, frames);
}

absl::StatusOr<uint64_t> Recorder::Session::ClientFrames(std::string_view frames) {
  return Frames(RecordType::kClientFrames, frames);
}

absl::StatusOr<uint64_t> Recorder::Session::ServerFrames(std::string_view frames) {
  return Frames(RecordType::kServerFrames, frames);
}

absl::StatusOr<uint64_t> Recorder::Session::GrantEvent(std::string_view from, std::string_view to,
                                                       std::string_view actor,
                                                       std::string_view detail) {
  const Json event = {{"grant_id", summary_.grant_id},
                      {"from", from},
                      {"to", to},
                      {"actor", actor},
                      {"detail", detail}};
  absl::StatusOr<uint64_t> seq =
      recorder_.log_->Append(RecordType::kGrantEvent, summary_.id,
                             event.dump(-1, ' ', false, Json::error_handler_t::replace));
  if (seq.ok()) {
    last_seq_ = *seq;
  }
  return seq;
}

absl::StatusOr<uint64_t> Recorder::Session::Approval(std::string payload) {
  absl::StatusOr<uint64_t> seq =
      recorder_.log_->Append(RecordType::kApproval, summary_.id, std::move(payload));
  if (seq.ok()) {
    last_seq_ = *seq;
  }
  return seq;
}

absl::StatusOr<uint64_t> Recorder::Approval(std::string_view session, std::string payload) {
  return log_->Append(RecordType::kApproval, session, std::move(payload));
}

absl::Status Recorder::Session::End(const SessionOutcome& outcome) {
  const auto now = std::chrono::system_clock::now();
  Json masked = Json::object();
  for (const auto& [entity, count] : outcome.masked) {
    masked[entity] = count;
  }
  const Json end = {{"session", summary_.id},
                    {"outcome", outcome.outcome},
                    {"reason", outcome.reason},
                    {"statements", outcome.statements},
                    {"blocked", outcome.blocked},
                    {"rows", outcome.rows},
                    {"bytes_to_client", outcome.bytes_to_client},
                    {"bytes_from_client", outcome.bytes_from_client},
                    {"masked", masked},
                    {"masking_errors", outcome.masking_errors},
                    {"unforwarded",
                     {{"frames", unforwarded_frames_},
                      {"bytes", unforwarded_bytes_},
                      {"unsummarized_frames", unforwarded_unsummarized_}}},
                    {"ended_at", FormatTime(now)}};
  absl::StatusOr<uint64_t> seq =
      recorder_.log_->Append(RecordType::kSessionEnd, summary_.id,
                             end.dump(-1, ' ', false, Json::error_handler_t::replace));
  if (!seq.ok()) {
    return seq.status();
  }
  last_seq_ = *seq;
  summary_.ended_at = now;
  summary_.outcome = outcome.outcome;
  summary_.reason = outcome.reason;
  summary_.statements = outcome.statements;
  summary_.blocked = outcome.blocked;
  summary_.rows = outcome.rows;
  summary_.bytes_to_client = outcome.bytes_to_client;
  summary_.last_seq = last_seq_;
  // The row must still be this session's (the same first record): never replace another's.
  if (absl::StatusOr<store::SessionSummary> row = recorder_.store_.GetSession(summary_.id);
      row.ok() && row->first_seq != summary_.first_seq) {
    return recorder_.IndexConflict(summary_.id,
                                   Cat("is indexed for another session (first seq ", row->first_seq,
                                       ", this one's ", summary_.first_seq, ")"));
  }
  return recorder_.store_.PutSession(summary_);
}

}  // namespace tracegate::audit
