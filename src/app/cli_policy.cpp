// `tracegate policy explain`: validates a real token against the config's issuers (so the
// principal is exactly what the gateway would see) and prints how the policy decides.

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "app/cli.h"
#include "common/status.h"
#include "common/text_safety.h"
#include "config/config.h"
#include "identity/http_fetch.h"
#include "identity/token_validator.h"
#include "policy/policy.h"

namespace tracegate::app {

void AddPolicyCommands(CLI::App& app, int& exit_code) {
  auto* policy = app.add_subcommand("policy", "Policy tools");
  policy->require_subcommand(1);

  struct ExplainOptions {
    std::string config;
    std::string token_file;
    std::string connection;
    std::string trace;
    std::string reason;
  };
  auto options = std::make_shared<ExplainOptions>();
  auto* explain = policy->add_subcommand(
      "explain", "Show which rule decides a request for a token, connection and trace");
  explain->add_option("-c,--config", options->config, "Configuration file")->required();
  explain->add_option("--token", options->token_file, "File holding the access token")->required();
  explain->add_option("--connection", options->connection, "Connection name")->required();
  explain->add_option("--trace", options->trace, "Trace id")->required();
  explain->add_option("--reason", options->reason, "The reason the caller would give");
  explain->callback([options, &exit_code] {
    auto config = config::LoadFile(options->config);
    if (!config.ok()) {
      std::cerr << MessageOf(config.status()) << "\n";
      exit_code = 2;
      return;
    }
    std::ifstream in(options->token_file);
    if (!in) {
      std::cerr << "tracegate policy explain: cannot read " << options->token_file << "\n";
      exit_code = 2;
      return;
    }
    std::stringstream text;
    text << in.rdbuf();
    const std::string token(absl::StripAsciiWhitespace(text.str()));
    identity::TokenValidator validator(
        (*config)->identity, std::make_shared<identity::CurlFetcher>(), identity::SystemClock());
    absl::StatusOr<identity::Principal> principal = validator.Validate(token);
    if (!principal.ok()) {
      std::cerr << "tracegate policy explain: the token is not accepted: "
                << MessageOf(principal.status()) << "\n";
      exit_code = 1;
      return;
    }
    if (absl::Status valid = ValidateTraceId(options->trace); !valid.ok()) {
      std::cerr << "tracegate policy explain: " << valid.message() << "\n";
      exit_code = 2;
      return;
    }
    policy::PolicyEngine engine(*config);
    const policy::Request request{.principal = *principal,
                                  .connection = options->connection,
                                  .trace_id = options->trace,
                                  .reason = options->reason};
    std::cout << engine.Explain(request);
    exit_code = engine.Evaluate(request).allowed() ? 0 : 3;
  });
}

}  // namespace tracegate::app
