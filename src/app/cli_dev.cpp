// `tracegate dev token`: access tokens from the embedded development issuer, for trying
// tracegate without an IdP. The issuer's key pair lives in --key-dir (created on first use);
// a config trusts it with an issuer entry like the one `dev issuer` prints.

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app/cli.h"
#include "common/status.h"
#include "identity/dev_issuer.h"

namespace tracegate::app {
namespace {

std::string DefaultKeyDir() {
  const char* dir = std::getenv("TRACEGATE_DEV_DIR");
  return dir != nullptr && *dir != '\0' ? std::string(dir) : std::string(".tracegate-dev");
}

}  // namespace

void AddDevCommands(CLI::App& app, int& exit_code) {
  auto* dev = app.add_subcommand(
      "dev", "Development helpers (the local development issuer; never for production)");
  dev->require_subcommand(1);

  struct TokenOptions {
    std::string key_dir = DefaultKeyDir();
    std::string sub;
    std::vector<std::string> groups;
    std::string client_id;
    std::string audience = "tracegate";
    int64_t ttl_seconds = 3600;
  };
  auto options = std::make_shared<TokenOptions>();
  auto* token = dev->add_subcommand(
      "token", "Print an access token signed by the development issuer (iss \"tracegate-dev\")");
  token
      ->add_option("--key-dir", options->key_dir,
                   "Where the development issuer's key pair lives ($TRACEGATE_DEV_DIR)")
      ->capture_default_str();
  token->add_option("--sub", options->sub, "Subject")->required();
  token->add_option("--groups", options->groups, "Groups claim (repeat or comma-separate)")
      ->delimiter(',');
  token->add_option("--client-id", options->client_id, "client_id claim");
  token->add_option("--audience", options->audience, "aud claim")->capture_default_str();
  token->add_option("--ttl", options->ttl_seconds, "Lifetime in seconds")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}))
      ->capture_default_str();
  token->callback([options, &exit_code] {
    absl::StatusOr<identity::DevIssuerKeys> keys =
        identity::LoadOrCreateDevIssuerKeys(options->key_dir);
    if (!keys.ok()) {
      std::cerr << "tracegate dev token: " << MessageOf(keys.status()) << "\n";
      exit_code = 1;
      return;
    }
    absl::StatusOr<std::string> jwt = identity::SignDevToken(
        keys->private_key_pem, keys->kid, identity::kDevIssuer, options->audience, options->sub,
        options->groups, options->client_id, std::chrono::seconds(options->ttl_seconds));
    if (!jwt.ok()) {
      std::cerr << "tracegate dev token: " << MessageOf(jwt.status()) << "\n";
      exit_code = 1;
      return;
    }
    std::cout << *jwt << "\n";
  });

  auto key_dir = std::make_shared<std::string>(DefaultKeyDir());
  auto* issuer = dev->add_subcommand(
      "issuer", "Create the development issuer's keys if needed; print its config entry");
  issuer->add_option("--key-dir", *key_dir, "Key directory ($TRACEGATE_DEV_DIR)")
      ->capture_default_str();
  issuer->callback([key_dir, &exit_code] {
    absl::StatusOr<identity::DevIssuerKeys> keys = identity::LoadOrCreateDevIssuerKeys(*key_dir);
    if (!keys.ok()) {
      std::cerr << "tracegate dev issuer: " << MessageOf(keys.status()) << "\n";
      exit_code = 1;
      return;
    }
    std::cout << "identity:\n  issuers:\n    - name: dev\n      issuer: " << identity::kDevIssuer
              << "\n      audiences: [tracegate]\n      jwks_file: " << keys->jwks_path.string()
              << "\n      algorithms: [RS256]\n      typ: at+jwt\n      development: true\n";
  });
}

}  // namespace tracegate::app
