#pragma once
// Private to the config module: the keys of the sections that decide who gets access
// (identity, policy) and where grants are handed out and kept (api, state).

#include <string>

#include "absl/strings/string_view.h"
#include "config/config.h"
#include "config/schema.h"

namespace tracegate::config::internal {

// An optional secret given as <name>_file or <name>_env (never inline). Neither = empty.
struct SecretSources {
  std::string file;  // resolved path
  std::string env;
};

// Loads the secret from its source into `out` (a file loses its trailing newlines). Errors
// land at `map.path`.<name>_file / _env and never quote the secret. Call from `map`'s check.
void LoadOptionalSecret(const Item& map, absl::string_view name, const SecretSources& sources,
                        std::string& out, Context& ctx);

// An http:// or https:// URL without spaces or control characters.
ScalarType<std::string> Url();
// A subject, group or client id: 1 to 1024 printable characters.
ScalarType<std::string> Selector();

const Table<Identity>& IdentityKeys();
const Table<Policy>& PolicyKeys();
const Table<State>& StateKeys();
// `api` is optional as a whole: parsed into Config::api.
void ParseApi(const Item& item, Config& config, NoExtra&, Context& ctx);
// Checks that span sections: policy rules name existing connections and masking profiles,
// the API's TLS needs the
// top-level certificate, listen addresses do not clash with the API's.
void CheckAccess(Config& config, Context& ctx);
// issuer_scope.cpp: scope names are configured issuers; with more than one issuer, every
// role (approver, force and auditor groups, rules' approvers) names the issuers it trusts and
// so does every allow rule; identity.people entries are "<issuer name>:<subject>", each once.
void CheckIssuerScopes(const Config& config, Context& ctx);

}  // namespace tracegate::config::internal
