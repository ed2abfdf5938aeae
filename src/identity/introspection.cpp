#include "identity/introspection.h"

#include "common/status.h"
#include "common/strings.h"
#include "identity/claims.h"
#include "identity/form.h"
#include "identity/strict_json.h"

namespace tracegate::identity {

absl::StatusOr<Principal> Introspect(const config::Issuer& issuer, const std::string& endpoint,
                                     std::string_view token, Fetcher& fetcher, const Clock& clock) {
  if (issuer.introspection_client_id.empty()) {
    return absl::FailedPreconditionError(
        Cat("issuer ", issuer.name, " has no introspection client configured"));
  }
  std::string form = Cat("token=", FormUrlEncode(token), "&token_type_hint=access_token");
  FetchOptions options{.ca_file = issuer.ca_file, .timeout = std::chrono::milliseconds(3000)};
  absl::StatusOr<std::string> body = fetcher.Post(
      endpoint, form, BasicAuth{issuer.introspection_client_id, issuer.introspection_client_secret},
      options);
  if (!body.ok()) {
    return absl::UnavailableError(
        Cat("introspection at issuer ", issuer.name, " failed: ", MessageOf(body.status())));
  }
  absl::StatusOr<nlohmann::json> response = ParseStrictJson(*body);
  if (!response.ok() || !response->is_object()) {
    return absl::UnavailableError(
        Cat("introspection at issuer ", issuer.name, ": response is not a JSON object"));
  }
  auto active = response->find("active");
  if (active == response->end() || !active->is_boolean() || !active->get<bool>()) {
    return absl::UnauthenticatedError(Cat("token is not active at issuer ", issuer.name));
  }
  return PrincipalFromClaims(*response, issuer, clock(), ClaimSource::kIntrospection);
}

}  // namespace tracegate::identity
