#pragma once
// The validated caller, as the rest of tracegate sees it.

#include <chrono>
#include <string>
#include <vector>

namespace tracegate::identity {

struct Principal {
  std::string issuer_name;          // config name of the issuer that vouched for the token
  std::string issuer;               // its exact `iss`
  std::string subject;              // `sub`
  std::string client_id;            // `client_id`, else `azp`; may be empty
  std::vector<std::string> groups;  // from the issuer's groups_claim path
  std::vector<std::string> scopes;  // `scope` split on spaces (or `scp` as a list)
  std::chrono::system_clock::time_point expires_at;  // the token's `exp`
  bool development = false;                          // vouched for by the development issuer

  // "sub (client client_id) via issuer_name": for logs and audit records.
  std::string Describe() const;
};

}  // namespace tracegate::identity
