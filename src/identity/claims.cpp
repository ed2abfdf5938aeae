#include "identity/claims.h"

#include <cmath>
#include <optional>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/strings.h"
#include "identity/log_safe.h"

namespace tracegate::identity {
namespace {

using nlohmann::json;
using std::chrono::system_clock;

// 2200-01-01T00:00:00Z: later dates would overflow system_clock's nanoseconds (year 2262).
constexpr double kMaxNumericDate = 7258118400.0;

absl::Status Refuse(const std::string& reason) { return absl::UnauthenticatedError(reason); }

// A NumericDate claim (RFC 7519 §2): seconds since the epoch, integer or not. nullopt when
// absent; an error when present but not a plausible date.
absl::StatusOr<std::optional<system_clock::time_point>> NumericDate(const json& claims,
                                                                    const char* name) {
  auto it = claims.find(name);
  if (it == claims.end()) {
    return std::optional<system_clock::time_point>();
  }
  if (!it->is_number()) {
    return Refuse(Cat("claim ", name, " is not a number"));
  }
  double seconds = it->get<double>();
  if (!std::isfinite(seconds) || seconds < 0 || seconds > kMaxNumericDate) {
    return Refuse(Cat("claim ", name, " is out of range"));
  }
  return std::optional<system_clock::time_point>(
      system_clock::time_point(std::chrono::seconds(static_cast<int64_t>(std::floor(seconds)))));
}

// A claim that must be a string when present; nullopt when absent.
absl::StatusOr<std::optional<std::string>> StringClaim(const json& claims, const char* name) {
  auto it = claims.find(name);
  if (it == claims.end()) {
    return std::optional<std::string>();
  }
  if (!it->is_string()) {
    return Refuse(Cat("claim ", name, " is not a string"));
  }
  return std::optional<std::string>(it->get<std::string>());
}

// A string or an array of strings (`aud`, groups, `scp`); `split_spaces` splits a single
// string on spaces (`scope`, Azure's `scp`).
absl::StatusOr<std::vector<std::string>> StringList(const json& value, std::string_view what,
                                                    bool split_spaces) {
  std::vector<std::string> out;
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (!split_spaces) {
      out.push_back(text);
      return out;
    }
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find(' ', start);
      if (end == std::string::npos) {
        end = text.size();
      }
      if (end > start) {
        out.push_back(text.substr(start, end - start));
      }
      start = end + 1;
    }
    return out;
  }
  if (!value.is_array()) {
    return Refuse(Cat("claim ", what, " is not a string or an array of strings"));
  }
  for (const json& item : value) {
    if (!item.is_string()) {
      return Refuse(Cat("claim ", what, " is not a string or an array of strings"));
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

// The groups claim: a top-level member named exactly `path` (Auth0-style names contain dots),
// else the dotted path walked through objects (`realm_access.roles`). nullptr when absent.
const json* FindPath(const json& claims, const std::string& path) {
  if (auto it = claims.find(path); it != claims.end()) {
    return &*it;
  }
  const json* node = &claims;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
    if (!node->is_object()) {
      return nullptr;
    }
    auto it = node->find(part);
    if (it == node->end()) {
      return nullptr;
    }
    node = &*it;
    if (dot == std::string::npos) {
      return node;
    }
    start = dot + 1;
  }
}

absl::Status CheckAudience(const json& claims, const config::Issuer& issuer) {
  auto aud = claims.find("aud");
  if (aud == claims.end()) {
    return Refuse("token has no aud");
  }
  TG_ASSIGN_OR_RETURN(std::vector<std::string> audiences, StringList(*aud, "aud", false));
  for (const std::string& a : audiences) {
    for (const std::string& wanted : issuer.audiences) {
      if (a == wanted) {
        return absl::OkStatus();
      }
    }
  }
  return Refuse(Cat("audience mismatch: token aud ",
                    audiences.empty() ? std::string("[]") : LogSafe(audiences.front()),
                    audiences.size() > 1 ? Cat(" and ", audiences.size() - 1, " more") : "",
                    " is not accepted by issuer ", issuer.name));
}

absl::Status CheckTimes(const json& claims, const config::Issuer& issuer,
                        system_clock::time_point now, system_clock::time_point& expires_at) {
  TG_ASSIGN_OR_RETURN(auto exp, NumericDate(claims, "exp"));
  TG_ASSIGN_OR_RETURN(auto nbf, NumericDate(claims, "nbf"));
  TG_ASSIGN_OR_RETURN(auto iat, NumericDate(claims, "iat"));
  if (!exp) {
    return Refuse("token has no exp");
  }
  if (now >= *exp + issuer.leeway) {
    return Refuse(Cat("token expired at ", FormatUtc(*exp)));
  }
  if (nbf && now + issuer.leeway < *nbf) {
    return Refuse(Cat("token not valid before ", FormatUtc(*nbf)));
  }
  if (iat && *iat > now + issuer.leeway) {
    return Refuse(Cat("token issued in the future (iat ", FormatUtc(*iat), ")"));
  }
  expires_at = *exp;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Principal> PrincipalFromClaims(const json& claims, const config::Issuer& issuer,
                                              system_clock::time_point now, ClaimSource source) {
  if (!claims.is_object()) {
    return Refuse("claims are not a JSON object");
  }
  Principal principal;
  principal.issuer_name = issuer.name;
  principal.issuer = issuer.issuer;
  principal.development = issuer.development;

  TG_ASSIGN_OR_RETURN(std::optional<std::string> iss, StringClaim(claims, "iss"));
  if (!iss && source == ClaimSource::kJwt) {
    return Refuse("token has no iss");
  }
  if (iss && *iss != issuer.issuer) {
    return Refuse(Cat("issuer mismatch: token iss ", LogSafe(*iss), " is not the iss of issuer ",
                      issuer.name));
  }
  if (issuer.audiences.empty()) {
    return Refuse(Cat("issuer ", issuer.name, " has no audiences configured"));
  }
  TG_RETURN_IF_ERROR(CheckAudience(claims, issuer));
  TG_RETURN_IF_ERROR(CheckTimes(claims, issuer, now, principal.expires_at));

  TG_ASSIGN_OR_RETURN(std::optional<std::string> client_id, StringClaim(claims, "client_id"));
  TG_ASSIGN_OR_RETURN(std::optional<std::string> azp, StringClaim(claims, "azp"));
  principal.client_id = client_id ? *client_id : azp ? *azp : std::string();

  TG_ASSIGN_OR_RETURN(std::optional<std::string> sub, StringClaim(claims, "sub"));
  if (sub && !sub->empty()) {
    principal.subject = *sub;
  } else if (source == ClaimSource::kIntrospection && !principal.client_id.empty()) {
    principal.subject = principal.client_id;
  } else {
    return Refuse("token has no sub");
  }

  if (const json* groups = FindPath(claims, issuer.groups_claim); groups != nullptr) {
    TG_ASSIGN_OR_RETURN(principal.groups, StringList(*groups, issuer.groups_claim, false));
  }
  if (auto scope = claims.find("scope"); scope != claims.end()) {
    if (!scope->is_string()) {
      return Refuse("claim scope is not a string");
    }
    TG_ASSIGN_OR_RETURN(principal.scopes, StringList(*scope, "scope", true));
  } else if (auto scp = claims.find("scp"); scp != claims.end()) {
    TG_ASSIGN_OR_RETURN(principal.scopes, StringList(*scp, "scp", true));
  }
  return principal;
}

}  // namespace tracegate::identity
