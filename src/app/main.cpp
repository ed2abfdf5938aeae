// tracegate: a just-in-time access gateway for LLM reasoning traces.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "absl/strings/str_join.h"
#include "app/cli.h"
#include "app/serve.h"
#include "common/status.h"
#include "config/config.h"
#include "pgwire/scram.h"
#include "sql/gate.h"

namespace {

using tracegate::config::Config;

void SetUpLogging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("tracegate");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

int ConfigCheck(const std::string& path) {
  auto config = tracegate::config::LoadFile(path);
  if (!config.ok()) {
    std::cerr << tracegate::MessageOf(config.status()) << "\n";
    return 1;
  }
  const Config& cfg = **config;
  // The statement gate's strict-mode queries are parsed and fingerprinted here too.
  for (const auto& conn : cfg.connections) {
    if (auto gate = tracegate::sql::Gate::Create(conn.gate); !gate.ok()) {
      std::cerr << path << ": connections[" << conn.name
                << "].gate: " << tracegate::MessageOf(gate.status()) << "\n";
      return 1;
    }
  }
  std::cout << path << ": OK\n";
  for (const auto& conn : cfg.connections) {
    if (conn.type == tracegate::config::ConnectionType::kHttp) {
      std::cout << "  connection " << conn.name << ": http, listens on " << conn.listen.host << ":"
                << conn.listen.port << ", store " << conn.upstream.url << " (" << conn.routes.size()
                << " route(s), fetch route " << conn.fetch_route << ")\n";
      continue;
    }
    std::cout << "  connection " << conn.name << ": postgres, listens on " << conn.listen.host
              << ":" << conn.listen.port << ", backend " << conn.backend.host << ":"
              << conn.backend.port << "/" << conn.backend.database << " as " << conn.backend.user
              << ", " << conn.users.size() << " static user(s); gate "
              << (conn.gate.mode == tracegate::config::GateMode::kStrict ? "strict" : "classify")
              << ", " << conn.gate.trace_tables.size() << " trace table(s)\n";
  }
  if (cfg.admin.has_value()) {
    std::cout << "  admin: " << cfg.admin->host << ":" << cfg.admin->port << "\n";
  }
  if (cfg.api.has_value()) {
    std::cout << "  api: " << (cfg.api->tls ? "https" : "http") << "://" << cfg.api->listen.host
              << ":" << cfg.api->listen.port << ", state in " << cfg.state.path << "\n";
  }
  for (const auto& issuer : cfg.identity.issuers) {
    std::cout << "  issuer " << issuer.name << ": " << issuer.issuer << " (audiences "
              << absl::StrJoin(issuer.audiences, ", ") << "; algorithms "
              << absl::StrJoin(issuer.algorithms, ", ") << ")"
              << (issuer.development ? " DEVELOPMENT ISSUER" : "") << "\n";
  }
  if (!cfg.policy.rules.empty()) {
    std::cout << "  policy: " << cfg.policy.rules.size() << " rule(s), max ttl "
              << cfg.policy.max_ttl.count() / 1000 << " s\n";
  }
  if (cfg.audit.enabled) {
    std::cout << "  audit: "
              << (cfg.audit.durability == tracegate::config::AuditDurability::kStrict ? "strict"
                                                                                      : "batched")
              << " recording to " << cfg.audit.dir << ", checkpoints signed with "
              << (cfg.audit.signing_key.empty() ? "a key generated there" : "the configured key")
              << "\n";
  } else {
    std::cout << "  audit: DISABLED (sessions are not recorded)\n";
  }
  return 0;
}

int ScramVerifierCommand(uint32_t iterations) {
  std::string password;
  if (!std::getline(std::cin, password) || password.empty()) {
    std::cerr << "scram-verifier: give the password on stdin (one line)\n";
    return 1;
  }
  const std::string salt = tracegate::pgwire::SystemRandom()(16);
  std::cout << tracegate::pgwire::FormatScramVerifier(
                   tracegate::pgwire::MakeScramVerifier(password, salt, iterations))
            << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tracegate: just-in-time, audited access to LLM reasoning traces"};
  app.require_subcommand(1);

  std::string config_path;
  auto* serve = app.add_subcommand("serve", "Run the gateway");
  serve->add_option("-c,--config", config_path, "Configuration file (YAML)")->required();

  auto* config_cmd = app.add_subcommand("config", "Configuration tools");
  config_cmd->require_subcommand(1);
  std::string check_path;
  auto* check = config_cmd->add_subcommand("check", "Validate a configuration file");
  check->add_option("file", check_path, "Configuration file (YAML)")->required();

  uint32_t iterations = 4096;
  auto* verifier = app.add_subcommand("scram-verifier",
                                      "Read a password on stdin, print its SCRAM-SHA-256 verifier "
                                      "(for connections[].users[].scram_verifier)");
  verifier->add_option("--iterations", iterations, "PBKDF2 iterations")
      ->check(CLI::Range(4096u, 1000000u));

  int exit_code = 0;
  tracegate::app::AddGrantCommands(app, exit_code);
  tracegate::app::AddApprovalCommands(app, exit_code);
  tracegate::app::AddDevCommands(app, exit_code);
  tracegate::app::AddPolicyCommands(app, exit_code);
  tracegate::app::AddGateCommands(app, exit_code);
  tracegate::app::AddAuditCommands(app, exit_code);

  CLI11_PARSE(app, argc, argv);

  for (const char* name : {"grant", "approvals", "dev", "policy", "gate", "audit"}) {
    if (app.got_subcommand(name)) {
      return exit_code;
    }
  }

  if (*check) {
    return ConfigCheck(check_path);
  }
  if (*verifier) {
    return ScramVerifierCommand(iterations);
  }
  auto config = tracegate::config::LoadFile(config_path);
  if (!config.ok()) {
    std::cerr << tracegate::MessageOf(config.status()) << "\n";
    return 2;
  }
  SetUpLogging((*config)->log_level);
  return tracegate::app::Serve(*config);
}
