// `tracegate audit sessions|replay|verify|export`: the auditor's questions, answered from the
// state store's session index and the log itself, without a running gateway (or beside one).

#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "app/cli.h"
#include "audit/log.h"
#include "audit/query.h"
#include "audit/recorder.h"
#include "audit/replay.h"
#include "common/json_text.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"
#include "config/config.h"
#include "store/sqlite_store.h"

namespace tracegate::app {

namespace {

using Json = nlohmann::json;

// Exit codes: 0 fine, 1 the answer is "no" (verify found problems), 2 usage or I/O.
constexpr int kProblems = 1;
constexpr int kFailed = 2;

struct Opened {
  std::shared_ptr<const config::Config> config;
  std::unique_ptr<store::SqliteStore> store;
};

absl::StatusOr<Opened> OpenAudit(const std::string& config_path) {
  absl::StatusOr<std::shared_ptr<const config::Config>> config =
      config::LoadFile(config_path, {.secrets_required = false});
  if (!config.ok()) {
    return config.status();
  }
  absl::StatusOr<std::unique_ptr<store::SqliteStore>> store =
      store::SqliteStore::Open((*config)->state.path);
  if (!store.ok()) {
    return store.status();
  }
  return Opened{*std::move(config), *std::move(store)};
}

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(Cat("cannot read ", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The key that checks signatures: --public-key, else the configured private key, else the
// public half the gateway wrote beside the log.
absl::StatusOr<audit::CheckpointKey> VerifyKey(const config::Audit& audit,
                                               const std::string& public_key_file) {
  if (!public_key_file.empty()) {
    absl::StatusOr<std::string> pem = ReadAll(public_key_file);
    if (!pem.ok()) {
      return pem.status();
    }
    return audit::CheckpointKey::FromPublicPem(*pem);
  }
  if (!audit.signing_key.empty()) {
    return audit::CheckpointKey::FromPrivatePem(audit.signing_key);
  }
  absl::StatusOr<std::string> pem = ReadAll((std::filesystem::path(audit.dir) / "checkpoint.pub"));
  if (!pem.ok()) {
    return absl::NotFoundError(
        Cat("no key to verify with: give --public-key, or set audit.signing_key_file (",
            MessageOf(pem.status()), ")"));
  }
  return audit::CheckpointKey::FromPublicPem(*pem);
}

// A stored value for the table: rows written before trace ids were checked (or by an older
// gateway) may hold any byte, so control characters (C0, C1), invisible format characters
// and invalid UTF-8 are shown as \xNN, never written raw to the auditor's terminal.
std::string Cell(std::string_view value) { return LogEscape(value, value.size()); }

void PrintSessionsTable(const std::vector<store::SessionSummary>& sessions) {
  std::cout << fmt::format("{:<27} {:<22} {:<16} {:<12} {:<20} {:<22} {:>5} {:>6} {:>9} {}\n",
                           "STARTED", "SESSION", "SUBJECT", "CONNECTION", "TRACE", "CLIENT",
                           "STMTS", "ROWS", "BYTES", "OUTCOME");
  for (const store::SessionSummary& s : sessions) {
    std::cout << fmt::format(
        "{:<27} {:<22} {:<16} {:<12} {:<20} {:<22} {:>5} {:>6} {:>9} {}\n",
        audit::FormatTime(s.started_at), Cell(s.id), Cell(s.subject.empty() ? s.user : s.subject),
        Cell(s.connection), s.trace_id.empty() ? "-" : Cell(s.trace_id), Cell(s.client_address),
        s.statements, s.rows, s.bytes_to_client, s.outcome.empty() ? "open" : Cell(s.outcome));
  }
}

}  // namespace

void AddAuditCommands(CLI::App& app, int& exit_code) {
  auto* audit_cmd =
      app.add_subcommand("audit", "Recorded sessions: search, replay, verify, export");
  audit_cmd->require_subcommand(1);

  // ---- sessions ----
  struct SessionsOptions {
    std::string config, trace, subject, connection, outcome, since, until, format = "table";
    size_t limit = 100;
  };
  auto so = std::make_shared<SessionsOptions>();
  auto* sessions = audit_cmd->add_subcommand("sessions", "List recorded sessions, newest first");
  sessions->add_option("-c,--config", so->config, "Configuration file")->required();
  sessions->add_option("--trace", so->trace, "Only sessions on this trace id");
  sessions->add_option("--subject", so->subject, "Only this principal (token sub)");
  sessions->add_option("--connection", so->connection, "Only this connection");
  sessions->add_option("--outcome", so->outcome,
                       "completed | refused | violation | error | interrupted | open");
  sessions->add_option("--since", so->since, "Started at or after (RFC 3339, or 15m, 24h, 7d)");
  sessions->add_option("--until", so->until, "Started before (RFC 3339, or 15m, 24h, 7d)");
  sessions->add_option("--limit", so->limit, "At most this many")->check(CLI::Range(1, 100000));
  sessions->add_option("--format", so->format, "table | json")
      ->check(CLI::IsMember({"table", "json"}));
  sessions->callback([so, &exit_code] {
    absl::StatusOr<Opened> opened = OpenAudit(so->config);
    if (!opened.ok()) {
      std::cerr << "tracegate audit sessions: " << MessageOf(opened.status()) << "\n";
      exit_code = kFailed;
      return;
    }
    store::SessionQuery query;
    query.limit = so->limit;
    const auto now = std::chrono::system_clock::now();
    for (auto [text, field] :
         {std::pair{&so->trace, &query.trace_id}, std::pair{&so->subject, &query.subject},
          std::pair{&so->connection, &query.connection}, std::pair{&so->outcome, &query.outcome}}) {
      if (!text->empty()) {
        *field = *text;
      }
    }
    for (auto [text, field] :
         {std::pair{&so->since, &query.since}, std::pair{&so->until, &query.until}}) {
      if (text->empty()) {
        continue;
      }
      absl::StatusOr<std::chrono::system_clock::time_point> at = audit::ParseTimeArg(*text, now);
      if (!at.ok()) {
        std::cerr << "tracegate audit sessions: " << MessageOf(at.status()) << "\n";
        exit_code = kFailed;
        return;
      }
      *field = *at;
    }
    absl::StatusOr<std::vector<store::SessionSummary>> found = opened->store->ListSessions(query);
    if (!found.ok()) {
      std::cerr << "tracegate audit sessions: " << MessageOf(found.status()) << "\n";
      exit_code = kFailed;
      return;
    }
    if (so->format == "json") {
      Json out = Json::array();
      for (const store::SessionSummary& s : *found) {
        out.push_back(audit::SessionSummaryJson(s));
      }
      std::cout << JsonEscapeInvisible(DumpJson(out, 2)) << "\n";
    } else {
      PrintSessionsTable(*found);
    }
    exit_code = 0;
  });

  // ---- replay ----
  struct ReplayOptions {
    std::string config, session, format = "text";
    bool raw = false;
  };
  auto ro = std::make_shared<ReplayOptions>();
  auto* replay = audit_cmd->add_subcommand(
      "replay", "Show a session as it happened: statements, parameters, the rows as sent");
  replay->add_option("-c,--config", ro->config, "Configuration file")->required();
  replay->add_option("session", ro->session, "Session id (from `audit sessions`)")->required();
  replay->add_option("--format", ro->format, "text | json | csv (as psql --csv -q prints)")
      ->check(CLI::IsMember({"text", "json", "csv"}));
  replay->add_flag("--raw", ro->raw,
                   "csv: write recorded bytes as they are even to a terminal (by default, on a "
                   "terminal, control characters are shown as \\xNN / \\uNNNN)");
  replay->callback([ro, &exit_code] {
    absl::StatusOr<Opened> opened = OpenAudit(ro->config);
    if (!opened.ok()) {
      std::cerr << "tracegate audit replay: " << MessageOf(opened.status()) << "\n";
      exit_code = kFailed;
      return;
    }
    absl::StatusOr<audit::SessionReplay> session =
        audit::ReplaySession(opened->config->audit.dir, *opened->store, ro->session);
    if (!session.ok()) {
      std::cerr << "tracegate audit replay: " << MessageOf(session.status()) << "\n";
      exit_code = kFailed;
      return;
    }
    if (ro->format == "json") {
      // C0 is escaped by any JSON writer; C1 and bidi/format characters are escaped too, so
      // the document is safe on a terminal and parses to the same value.
      std::cout << JsonEscapeInvisible(DumpJson(session->ToJson(), 2)) << "\n";
    } else if (ro->format == "csv") {
      // CSV is psql's bytes exactly (for a file or a pipe). On a terminal the recorded bytes
      // would be acted on (a window title, an OSC 52 clipboard write, a screen clear), so
      // there they are escaped unless --raw asks for them; stderr says when that happened.
      std::string csv = session->RenderCsv();
      if (!ro->raw && isatty(STDOUT_FILENO) == 1) {
        size_t escaped = 0;
        csv = TerminalEscape(csv, &escaped);
        if (escaped > 0) {
          std::cerr << "tracegate audit replay: " << escaped
                    << " control or format character(s) escaped for the terminal; --raw, or a "
                       "pipe or file, gives the recorded bytes\n";
        }
      }
      std::cout << csv;
    } else {
      std::cout << session->RenderText();
    }
    exit_code = 0;
  });

  // ---- verify ----
  struct VerifyOptions {
    std::string config, public_key;
    bool live = false;
  };
  auto vo = std::make_shared<VerifyOptions>();
  auto* verify = audit_cmd->add_subcommand(
      "verify", "Check the whole log: every byte, the hash chain, the signed checkpoints");
  verify->add_option("-c,--config", vo->config, "Configuration file")->required();
  verify->add_option("--public-key", vo->public_key,
                     "Ed25519 public key (PEM) to check signatures with; keep a copy away "
                     "from the gateway");
  verify->add_flag("--live", vo->live,
                   "The gateway is running: records after the last checkpoint are not a "
                   "failure");
  verify->callback([vo, &exit_code] {
    absl::StatusOr<Opened> opened = OpenAudit(vo->config);
    if (!opened.ok()) {
      std::cerr << "tracegate audit verify: " << MessageOf(opened.status()) << "\n";
      exit_code = kFailed;
      return;
    }
    absl::StatusOr<audit::CheckpointKey> key = VerifyKey(opened->config->audit, vo->public_key);
    if (!key.ok()) {
      std::cerr << "tracegate audit verify: " << MessageOf(key.status()) << "\n";
      exit_code = kFailed;
      return;
    }
    audit::VerifyOptions options;
    options.dir = opened->config->audit.dir;
    options.key = &*key;
    options.live = vo->live;
    absl::StatusOr<std::optional<std::string>> head = opened->store->GetAuditHead();
    if (!head.ok()) {
      std::cerr << "tracegate audit verify: " << MessageOf(head.status()) << "\n";
      exit_code = kFailed;
      return;
    }
    if (head->has_value()) {
      absl::StatusOr<audit::Checkpoint> checkpoint = audit::CheckpointFromJson(**head);
      if (!checkpoint.ok()) {
        std::cout << "FAIL state store: the recorded head is unreadable: "
                  << MessageOf(checkpoint.status()) << "\n";
        exit_code = kProblems;
        return;
      }
      options.expected_head = *checkpoint;
    }
    // The index is checked against the log: every session_start has its row, no session id
    // starts twice, every row points at records of its own (issue 18, item 2).
    store::SessionQuery all;
    all.limit = std::numeric_limits<size_t>::max();
    absl::StatusOr<std::vector<store::SessionSummary>> rows = opened->store->ListSessions(all);
    if (!rows.ok()) {
      std::cerr << "tracegate audit verify: the session index: " << MessageOf(rows.status())
                << "\n";
      exit_code = kFailed;
      return;
    }
    options.index.emplace();
    options.index->reserve(rows->size());
    for (const store::SessionSummary& row : *rows) {
      options.index->push_back(audit::IndexedSession{
          .id = row.id, .first_seq = row.first_seq, .last_seq = row.last_seq});
    }
    const audit::VerifyReport report = audit::Verify(options);
    for (const std::string& note : report.notes) {
      std::cout << "note: " << note << "\n";
    }
    for (const std::string& problem : report.problems) {
      std::cout << "FAIL " << problem << "\n";
    }
    std::cout << (report.ok ? "OK" : "FAILED") << ": " << report.segments << " segment(s), "
              << report.records << " record(s) " << report.first_seq << ".." << report.last_seq
              << ", " << report.checkpoints << " checkpoint(s), last signed at record "
              << report.last_checkpoint_seq << " (key " << key->key_id() << ")\n";
    exit_code = report.ok ? 0 : kProblems;
  });

  // ---- export ----
  struct ExportOptions {
    std::string config, since, until, format = "jsonl";
  };
  auto eo = std::make_shared<ExportOptions>();
  auto* export_cmd =
      audit_cmd->add_subcommand("export", "Stream the log's records as events for a SIEM");
  export_cmd->add_option("-c,--config", eo->config, "Configuration file")->required();
  export_cmd->add_option("--since", eo->since, "Records at or after (RFC 3339, or 15m, 24h, 7d)");
  export_cmd->add_option("--until", eo->until, "Records before (RFC 3339, or 15m, 24h, 7d)");
  export_cmd->add_option("--format", eo->format, "jsonl")->check(CLI::IsMember({"jsonl"}));
  export_cmd->callback([eo, &exit_code] {
    absl::StatusOr<std::shared_ptr<const config::Config>> config =
        config::LoadFile(eo->config, {.secrets_required = false});
    if (!config.ok()) {
      std::cerr << "tracegate audit export: " << MessageOf(config.status()) << "\n";
      exit_code = kFailed;
      return;
    }
    const auto now = std::chrono::system_clock::now();
    int64_t since_us = INT64_MIN;
    int64_t until_us = INT64_MAX;
    for (auto [text, field] :
         {std::pair{&eo->since, &since_us}, std::pair{&eo->until, &until_us}}) {
      if (text->empty()) {
        continue;
      }
      absl::StatusOr<std::chrono::system_clock::time_point> at = audit::ParseTimeArg(*text, now);
      if (!at.ok()) {
        std::cerr << "tracegate audit export: " << MessageOf(at.status()) << "\n";
        exit_code = kFailed;
        return;
      }
      *field =
          std::chrono::duration_cast<std::chrono::microseconds>(at->time_since_epoch()).count();
    }
    absl::StatusOr<audit::LogReader> reader = audit::LogReader::Open((*config)->audit.dir);
    if (!reader.ok()) {
      std::cerr << "tracegate audit export: " << MessageOf(reader.status()) << "\n";
      exit_code = kFailed;
      return;
    }
    absl::Status read = reader->ForEach(0, [&](const audit::Record& record) {
      if (record.time_us >= since_us && record.time_us < until_us) {
        // JSON lines for a SIEM, often read on a terminal first: C1 and format characters as
        // \u escapes (the same values when parsed).
        std::cout << JsonEscapeInvisible(DumpJson(audit::RecordEventJson(record))) << "\n";
      }
      return static_cast<bool>(std::cout);
    });
    if (!read.ok()) {
      std::cerr << "tracegate audit export: " << MessageOf(read) << "\n";
      exit_code = kFailed;
      return;
    }
    exit_code = 0;
  });
}

}  // namespace tracegate::app
