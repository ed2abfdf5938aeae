// `tracegate gate check`: what the statement gate says about statements, for a connection
// and a trace, without a gateway or a trace store. For writing strict-mode queries and for
// answering "why was this refused".

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app/cli.h"
#include "common/status.h"
#include "common/text_safety.h"
#include "config/config.h"
#include "sql/gate.h"

namespace tracegate::app {

void AddGateCommands(CLI::App& app, int& exit_code) {
  auto* gate = app.add_subcommand("gate", "Statement gate tools");
  gate->require_subcommand(1);

  struct CheckOptions {
    std::string config;
    std::string connection;
    std::string trace;
    bool masked = false;
    std::vector<std::string> statements;
  };
  auto options = std::make_shared<CheckOptions>();
  auto* check = gate->add_subcommand(
      "check",
      "Classify statements as a grant's session for --trace would: one per argument, or one "
      "per line on stdin");
  check->add_option("-c,--config", options->config, "Configuration file")->required();
  check->add_option("--connection", options->connection, "Connection name")->required();
  check->add_option("--trace", options->trace, "The granted trace id")->required();
  check->add_flag("--masked", options->masked,
                  "Check as a session whose responses are masked (refuses SQL that could "
                  "rewrite values before the masker sees them: masking_bypass)");
  check->add_option("statements", options->statements, "SQL statements");
  check->callback([options, &exit_code] {
    auto config = config::LoadFile(options->config);
    if (!config.ok()) {
      std::cerr << MessageOf(config.status()) << "\n";
      exit_code = 2;
      return;
    }
    if (absl::Status valid = ValidateTraceId(options->trace); !valid.ok()) {
      std::cerr << "tracegate gate check: " << valid.message() << "\n";
      exit_code = 2;
      return;
    }
    const config::Connection* connection = nullptr;
    for (const auto& c : (*config)->connections) {
      if (c.name == options->connection) {
        connection = &c;
      }
    }
    if (connection == nullptr) {
      std::cerr << "tracegate gate check: no connection named " << options->connection << "\n";
      exit_code = 2;
      return;
    }
    if (connection->type != config::ConnectionType::kPostgres) {
      std::cerr << "tracegate gate check: connection " << options->connection
                << " is type: http; the statement gate is for postgres connections\n";
      exit_code = 2;
      return;
    }
    auto gate = sql::Gate::Create(connection->gate);
    if (!gate.ok()) {
      std::cerr << "tracegate gate check: " << MessageOf(gate.status()) << "\n";
      exit_code = 2;
      return;
    }
    std::vector<std::string> statements = options->statements;
    if (statements.empty()) {
      for (std::string line; std::getline(std::cin, line);) {
        if (!line.empty()) {
          statements.push_back(line);
        }
      }
    }
    exit_code = 0;
    for (const std::string& sql : statements) {
      const sql::Verdict verdict = (*gate)->CheckUncached(sql, options->trace, options->masked);
      if (verdict.allowed()) {
        std::cout << "allow";
        for (int n : verdict.trace_params) {
          std::cout << " $" << n << "=trace";
        }
      } else {
        std::cout << "block " << sql::RuleName(verdict.rule) << " [" << verdict.SqlState() << "] "
                  << verdict.message;
        exit_code = 3;
      }
      std::cout << "  | " << sql << "\n";
    }
  });
}

}  // namespace tracegate::app
