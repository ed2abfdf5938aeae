// Keys of identity.*, policy.*, api.* and state.*; see config.cpp for the rest and
// tracegate.example.yaml for the operator's view of the same keys.

#include "config/access_keys.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <set>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "config/scalars.h"

namespace tracegate::config::internal {
namespace {

using namespace std::chrono_literals;

constexpr size_t kMaxIssuers = 64;
constexpr size_t kMaxRules = 10000;
constexpr size_t kMaxSelectors = 10000;
constexpr size_t kMaxPeople = 100000;

}  // namespace

ScalarType<std::string> Url() {
  return {"an http(s) URL",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (!absl::StartsWith(text, "https://") && !absl::StartsWith(text, "http://")) {
              return absl::InvalidArgumentError(
                  absl::StrCat("expected an http:// or https:// URL, got ", Quote(text)));
            }
            for (char c : text) {
              if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
                return absl::InvalidArgumentError(
                    absl::StrCat("URL contains a space or control character: ", Quote(text)));
              }
            }
            return text;
          }};
}

ScalarType<std::string> Algorithm() {
  return {"a JWS algorithm",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            static const std::set<std::string> kKnown = {"RS256", "RS384", "RS512", "PS256",
                                                         "PS384", "PS512", "ES256", "EdDSA",
                                                         "HS256", "HS384", "HS512"};
            if (absl::AsciiStrToLower(text) == "none") {
              return absl::InvalidArgumentError(
                  "\"none\" is never allowed: unsigned tokens prove nothing (RFC 8725 3.1)");
            }
            if (!kKnown.contains(text)) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "expected one of RS256|RS384|RS512|PS256|PS384|PS512|ES256|EdDSA|HS256|HS384|"
                  "HS512, got ",
                  Quote(text)));
            }
            return text;
          }};
}

// A claim path such as "groups" or "realm_access.roles".
ScalarType<std::string> ClaimPath() {
  return {"a claim path",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            bool valid = !text.empty() && text.size() <= 256 && text.front() != '.' &&
                         text.back() != '.' && !absl::StrContains(text, "..");
            for (char c : text) {
              valid = valid && static_cast<unsigned char>(c) > ' ' && c != 0x7f;
            }
            if (!valid) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "expected dot-separated claim names like realm_access.roles, got ", Quote(text)));
            }
            return text;
          }};
}

// A subject, group or client id in a policy selector: any non-empty text without control
// characters.
ScalarType<std::string> Selector() {
  return {"a name", [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            bool valid = !text.empty() && text.size() <= 1024;
            for (char c : text) {
              valid = valid && static_cast<unsigned char>(c) >= ' ' && c != 0x7f;
            }
            if (!valid) {
              return absl::InvalidArgumentError(
                  absl::StrCat("expected 1 to 1024 printable characters, got ", Quote(text)));
            }
            return text;
          }};
}

namespace {

// A finite decimal number, sign and exponent allowed ("0.8", "-2", "1e3"); absent = nullopt.
ScalarType<std::optional<double>> FiniteNumber() {
  return {"a number",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::optional<double>> {
            double value = 0;
            const char* end = text.data() + text.size();
            const auto [ptr, ec] = std::from_chars(text.data(), end, value);
            if (text.empty() || ec != std::errc() || ptr != end || !std::isfinite(value)) {
              return absl::InvalidArgumentError(
                  absl::StrCat("expected a finite number like 0.8, got ", Quote(text)));
            }
            return value;
          }};
}

ScalarType<std::string> ConnectionSelector() {
  return {"a connection name or *",
          [](const std::string& text, const Context& ctx) -> absl::StatusOr<std::string> {
            if (text == "*") {
              return text;
            }
            return ConnectionName().parse(text, ctx);
          }};
}

// ---- identity.issuers[] ------------------------------------------------------------------

struct IssuerExtra {
  std::string hmac_file;
  std::string hmac_env;
  std::string introspection_file;
  std::string introspection_env;
};

void CheckIssuer(const Item& map, Issuer& issuer, IssuerExtra& extra, Context& ctx) {
  LoadOptionalSecret(map, "hmac_secret", {extra.hmac_file, extra.hmac_env}, issuer.hmac_secret,
                     ctx);
  LoadOptionalSecret(map, "introspection_client_secret",
                     {extra.introspection_file, extra.introspection_env},
                     issuer.introspection_client_secret, ctx);
  const std::string algorithms_key = ChildPath(map.path, "algorithms");
  const bool wants_hmac =
      std::any_of(issuer.algorithms.begin(), issuer.algorithms.end(),
                  [](const std::string& alg) { return absl::StartsWith(alg, "HS"); });
  if (wants_hmac && issuer.hmac_secret.empty() && extra.hmac_file.empty() &&
      extra.hmac_env.empty()) {
    ctx.Error(ctx.MarkOf(algorithms_key), algorithms_key,
              "HS* algorithms need hmac_secret_file or hmac_secret_env: an HMAC key is never "
              "taken from a JWKS (RFC 8725 3.1)");
  }
  if (!issuer.hmac_secret.empty() && issuer.hmac_secret.size() < 32) {
    const std::string key =
        ChildPath(map.path, extra.hmac_file.empty() ? "hmac_secret_env" : "hmac_secret_file");
    ctx.Error(ctx.MarkOf(key), key,
              "the HMAC secret must be at least 32 bytes (RFC 7518 3.2: as long as the hash)");
  }
  if (issuer.algorithms.empty()) {
    ctx.Error(ctx.MarkOf(algorithms_key), algorithms_key, "needs at least one algorithm");
  }
  const int key_sources = (!issuer.jwks_uri.empty() ? 1 : 0) + (!issuer.jwks_file.empty() ? 1 : 0);
  if (key_sources > 1) {
    const std::string key = ChildPath(map.path, "jwks_file");
    ctx.Error(ctx.MarkOf(key), key, "set only one of jwks_uri and jwks_file");
  }
  if (key_sources > 0 && issuer.discovery &&
      !ctx.MarkOf(ChildPath(map.path, "discovery")).is_null()) {
    const std::string key = ChildPath(map.path, "discovery");
    ctx.Error(ctx.MarkOf(key), key,
              "discovery: true conflicts with an explicit jwks_uri/jwks_file");
  }
  if (key_sources > 0) {
    issuer.discovery = false;
  }
  if (issuer.audiences.empty()) {
    const std::string key = ChildPath(map.path, "audiences");
    ctx.Error(ctx.MarkOf(key).is_null() ? map.mark : ctx.MarkOf(key), key,
              "needs at least one audience: tokens minted for another service must not work "
              "here (RFC 8725 3.9)");
  }
  if (!issuer.introspection_endpoint.empty() &&
      (issuer.introspection_client_id.empty() || issuer.introspection_client_secret.empty())) {
    const std::string key = ChildPath(map.path, "introspection_endpoint");
    ctx.Error(ctx.MarkOf(key), key,
              "needs introspection_client_id and introspection_client_secret_file (or _env)");
  }
  if (issuer.jwks_stale_max < issuer.jwks_refresh) {
    const std::string key = ChildPath(map.path, "jwks_stale_max");
    ctx.Error(ctx.MarkOf(key).is_null() ? map.mark : ctx.MarkOf(key), key,
              "must be at least jwks_refresh");
  }
}

const Table<Issuer, IssuerExtra>& IssuerKeys() {
  using K = Keys<Issuer, IssuerExtra>;
  static const auto* const table = new Table<Issuer, IssuerExtra>{
      .keys =
          {
              K::Required("name", &Issuer::name, kReloadable, ConnectionName()),
              K::Required("issuer", &Issuer::issuer, kReloadable, Text("an issuer identifier")),
              K::Strings("audiences", &Issuer::audiences, {}, kReloadable, Selector(), 64),
              K::Optional("discovery", &Issuer::discovery, true, kReloadable, Boolean()),
              K::Optional("jwks_uri", &Issuer::jwks_uri, "", kReloadable, Url()),
              K::Optional("jwks_file", &Issuer::jwks_file, "", kReloadable, FilePath(true)),
              K::Optional("ca_file", &Issuer::ca_file, "", kReloadable, FilePath(true)),
              K::Strings("algorithms", &Issuer::algorithms, {"RS256"}, kReloadable, Algorithm(),
                         16),
              K::Optional("hmac_secret_file", &IssuerExtra::hmac_file, "", kReloadable,
                          FilePath(true)),
              K::Optional("hmac_secret_env", &IssuerExtra::hmac_env, "", kReloadable, EnvVarName()),
              K::Optional("typ", &Issuer::typ, "", kReloadable, Text("a JOSE typ")),
              K::Optional("leeway", &Issuer::leeway, 30s, kReloadable, Period(0ms)),
              K::Optional("groups_claim", &Issuer::groups_claim, "groups", kReloadable,
                          ClaimPath()),
              K::Optional("jwks_refresh", &Issuer::jwks_refresh, 5min, kReloadable, Period(1s)),
              K::Optional("jwks_stale_max", &Issuer::jwks_stale_max, 1h, kReloadable, Period(1s)),
              K::Optional("unknown_kid_min_interval", &Issuer::unknown_kid_min_interval, 10s,
                          kReloadable, Period(0ms)),
              K::Optional("introspection_endpoint", &Issuer::introspection_endpoint, "",
                          kReloadable, Url()),
              K::Optional("introspection_client_id", &Issuer::introspection_client_id, "",
                          kReloadable, Selector()),
              K::Optional("introspection_client_secret_file", &IssuerExtra::introspection_file, "",
                          kReloadable, FilePath(true)),
              K::Optional("introspection_client_secret_env", &IssuerExtra::introspection_env, "",
                          kReloadable, EnvVarName()),
              K::Optional("development", &Issuer::development, false, kReloadable, Boolean()),
          },
      .check = CheckIssuer,
  };
  return *table;
}

// ---- identity ----------------------------------------------------------------------------

void CheckIdentity(const Item& map, Identity& identity, NoExtra&, Context& ctx) {
  std::set<std::string> names;
  std::set<std::string> issuers;
  for (size_t i = 0; i < identity.issuers.size(); ++i) {
    const Issuer& issuer = identity.issuers[i];
    const std::string path = ElementPath(ChildPath(map.path, "issuers"), i);
    if (!issuer.name.empty() && !names.insert(issuer.name).second) {
      ctx.Error(ctx.MarkOf(path + ".name"), path + ".name",
                absl::StrCat("duplicate issuer name ", Quote(issuer.name)));
    }
    // Tokens are routed by their exact `iss`: two entries for one issuer would make the choice
    // of keys and audiences ambiguous.
    if (!issuer.issuer.empty() && !issuers.insert(issuer.issuer).second) {
      ctx.Error(ctx.MarkOf(path + ".issuer"), path + ".issuer",
                absl::StrCat("issuer ", Quote(issuer.issuer), " is configured twice"));
    }
  }
}

std::string IssuerIdentity(const Issuer& issuer) { return issuer.name; }

const Table<Person>& PersonKeys() {
  using K = Keys<Person>;
  static const auto* const table = new Table<Person>{
      .keys =
          {
              K::Required("name", &Person::name, kReloadable, Selector()),
              K::Strings("identities", &Person::identities, {}, kReloadable, Selector(),
                         kMaxIssuers),
          },
  };
  return *table;
}

// ---- policy ------------------------------------------------------------------------------

void CheckRule(const Item& map, PolicyRule& rule, NoExtra&, Context& ctx) {
  if (rule.uses == 0) {
    const std::string key = ChildPath(map.path, "uses");
    ctx.Error(ctx.MarkOf(key), key, "must be at least 1");
  }
}

const Table<PolicyRule>& RuleKeys() {
  using K = Keys<PolicyRule>;
  static const auto* const table =
      new Table<PolicyRule>{
          .keys =
              {
                  K::Required("name", &PolicyRule::name, kReloadable, ConnectionName()),
                  K::Optional("effect", &PolicyRule::effect, Effect::kAllow, kReloadable,
                              OneOf<Effect>({{"allow", Effect::kAllow}, {"deny", Effect::kDeny}})),
                  K::Strings("subjects", &PolicyRule::subjects, {}, kReloadable, Selector(),
                             kMaxSelectors),
                  K::Strings("groups", &PolicyRule::groups, {}, kReloadable, Selector(),
                             kMaxSelectors),
                  K::Strings("clients", &PolicyRule::clients, {}, kReloadable, Selector(),
                             kMaxSelectors),
                  K::Strings("connections", &PolicyRule::connections, {}, kReloadable,
                             ConnectionSelector(), kMaxSelectors),
                  K::Strings("issuers", &PolicyRule::issuers, {}, kReloadable, ConnectionName(),
                             kMaxIssuers),
                  K::Optional("ttl", &PolicyRule::ttl, 30s, kReloadable, Period(1s)),
                  K::Optional("uses", &PolicyRule::uses, 1, kReloadable, Count<uint32_t>(1, 1000)),
                  K::Optional("max_session", &PolicyRule::max_session, 5min, kReloadable,
                              Period(1s)),
                  K::Optional("max_rows", &PolicyRule::max_rows, 100000, kReloadable,
                              Count<uint64_t>(0, uint64_t{1} << 40)),
                  K::Optional("max_bytes", &PolicyRule::max_bytes, 64u << 20, kReloadable,
                              ByteSize<uint64_t>(0, uint64_t{1} << 40)),
                  K::Optional("masking_profile", &PolicyRule::masking_profile, "", kReloadable,
                              ConnectionName()),
                  K::Optional("require_reason", &PolicyRule::require_reason, false, kReloadable,
                              Boolean()),
                  K::Optional("require_approval", &PolicyRule::require_approval, false, kReloadable,
                              Boolean()),
                  K::Strings("approvers", &PolicyRule::approvers, {}, kReloadable, Selector(),
                             kMaxSelectors),
                  K::Optional("approvals_required", &PolicyRule::approvals_required, 1,
                              kReloadable, Count<uint32_t>(1, 16)),
                  K::Optional("hold_if_masked_at_least", &PolicyRule::hold_if_masked_at_least, 0,
                              kReloadable, Count<uint32_t>(0, 1000000)),
                  K::Optional("approve_if_risk_at_least", &PolicyRule::approve_if_risk_at_least,
                              std::nullopt, kReloadable, FiniteNumber()),
              },
          .check = CheckRule,
      };
  return *table;
}

void CheckPolicy(const Item& map, Policy& policy, NoExtra&, Context& ctx) {
  std::set<std::string> names;
  for (size_t i = 0; i < policy.rules.size(); ++i) {
    const PolicyRule& rule = policy.rules[i];
    const std::string path = ElementPath(ChildPath(map.path, "rules"), i);
    if (!rule.name.empty() && !names.insert(rule.name).second) {
      ctx.Error(ctx.MarkOf(path + ".name"), path + ".name",
                absl::StrCat("duplicate rule name ", Quote(rule.name)));
    }
    if (rule.effect == Effect::kAllow && rule.ttl > policy.max_ttl) {
      const std::string key = path + ".ttl";
      ctx.Error(ctx.MarkOf(key).is_null() ? ctx.MarkOf(path + ".name") : ctx.MarkOf(key), key,
                absl::StrCat("exceeds policy.max_ttl (", policy.max_ttl.count() / 1000, "s)"));
    }
  }
}

// ---- api ---------------------------------------------------------------------------------

// "10.0.0.0/8", "fd00::/8", or one address (a /32 or /128). The address must be the network's
// (no host bits set), so that "10.0.0.1/8" is not silently read as 10.0.0.0/8.
ScalarType<std::string> Cidr() {
  return {"an IP address or CIDR like 10.0.0.0/8",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            const size_t slash = text.find('/');
            const std::string address = text.substr(0, slash);
            unsigned char bytes[16] = {};
            size_t size = 0;
            if (inet_pton(AF_INET, address.c_str(), bytes) == 1) {
              size = 4;
            } else if (inet_pton(AF_INET6, address.c_str(), bytes) == 1) {
              size = 16;
            } else {
              return absl::InvalidArgumentError(
                  absl::StrCat(Quote(address), " is not an IPv4 or IPv6 address"));
            }
            uint32_t prefix = static_cast<uint32_t>(size * 8);
            if (slash != std::string::npos) {
              const std::string digits = text.substr(slash + 1);
              if (digits.empty() || digits.size() > 3 ||
                  digits.find_first_not_of("0123456789") != std::string::npos ||
                  !absl::SimpleAtoi(digits, &prefix) || prefix > size * 8) {
                return absl::InvalidArgumentError(
                    absl::StrCat("prefix length ", Quote(digits), " is not 0 to ", size * 8));
              }
            }
            for (size_t bit = prefix; bit < size * 8; ++bit) {
              if ((bytes[bit / 8] >> (7 - bit % 8)) & 1) {
                return absl::InvalidArgumentError(
                    absl::StrCat(Quote(text), " has bits set past its /", prefix, " prefix"));
              }
            }
            return text;
          }};
}

const Table<Api>& ApiKeys() {
  using K = Keys<Api>;
  static const auto* const table = new Table<Api>{
      .keys =
          {
              K::Required("listen", &Api::listen, kRestart, ListenAddress()),
              K::Optional("tls", &Api::tls, true, kRestart, Boolean()),
              K::Optional("public_host", &Api::public_host, "", kReloadable, HostName()),
              K::Optional("max_body_bytes", &Api::max_body_bytes, 65536, kReloadable,
                          ByteSize<uint32_t>(1024, 16u << 20)),
              K::Optional("auth_failures_per_minute", &Api::auth_failures_per_minute, 30,
                          kReloadable, Count<uint32_t>(1, 1000000)),
              K::Strings("trusted_proxies", &Api::trusted_proxies, {}, kRestart, Cidr(), 256),
              K::Optional("handler_threads", &Api::handler_threads, 4, kRestart,
                          Count<uint32_t>(2, 256)),
              K::Optional("max_slow_calls", &Api::max_slow_calls, 2, kRestart,
                          Count<uint32_t>(1, 255)),
          },
      .check =
          [](const Item& map, Api& api, NoExtra&, Context& ctx) {
            // A slow dependency must never hold every handler thread: the approver's list and
            // every other quick request keep at least one.
            if (api.max_slow_calls >= api.handler_threads) {
              const std::string key = ChildPath(map.path, "max_slow_calls");
              ctx.Error(
                  ctx.MarkOf(key).is_null() ? map.mark : ctx.MarkOf(key), key,
                  absl::StrCat("must be less than handler_threads (", api.handler_threads, ")"));
            }
          },
  };
  return *table;
}

}  // namespace

void LoadOptionalSecret(const Item& map, absl::string_view name, const SecretSources& sources,
                        std::string& out, Context& ctx) {
  constexpr size_t kMaxSecretFileBytes = 64 << 10;
  const std::string file_key = ChildPath(map.path, absl::StrCat(name, "_file"));
  const std::string env_key = ChildPath(map.path, absl::StrCat(name, "_env"));
  if (!sources.file.empty() && !sources.env.empty()) {
    ctx.Error(ctx.MarkOf(env_key), env_key,
              absl::StrCat("set only one of ", name, "_file and ", name, "_env"));
    return;
  }
  if (!sources.file.empty()) {
    absl::StatusOr<std::string> content = ReadSmallFile(sources.file, kMaxSecretFileBytes);
    if (!content.ok() && !ctx.secrets_required()) {
      return;
    }
    if (!content.ok()) {
      ctx.Error(ctx.MarkOf(file_key), file_key, content.status().message());
      return;
    }
    std::string value = *std::move(content);
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) {
      value.pop_back();
    }
    if (value.empty()) {
      ctx.Error(ctx.MarkOf(file_key), file_key,
                absl::StrCat("secret file \"", sources.file, "\" is empty"));
      return;
    }
    out = std::move(value);
  } else if (!sources.env.empty()) {
    const char* value = std::getenv(sources.env.c_str());
    if ((value == nullptr || *value == '\0') && !ctx.secrets_required()) {
      return;
    }
    if (value == nullptr || *value == '\0') {
      ctx.Error(ctx.MarkOf(env_key), env_key,
                absl::StrCat("environment variable ", sources.env,
                             value == nullptr ? " is not set" : " is empty"));
      return;
    }
    out = value;
  }
}

const Table<Identity>& IdentityKeys() {
  using K = Keys<Identity>;
  static const auto* const table = new Table<Identity>{
      .keys =
          {
              K::List("issuers", kOptional, &Identity::issuers, IssuerKeys, 0, kMaxIssuers,
                      IssuerIdentity),
              K::Optional("token_cache_entries", &Identity::token_cache_entries, 100000,
                          kReloadable, Count<size_t>(0, 10000000)),
              K::List("people", kOptional, &Identity::people, PersonKeys, 0, kMaxPeople, nullptr),
          },
      .check = CheckIdentity,
  };
  return *table;
}

const Table<Policy>& PolicyKeys() {
  using K = Keys<Policy>;
  static const auto* const table = new Table<Policy>{
      .keys =
          {
              K::Optional("max_ttl", &Policy::max_ttl, 5min, kReloadable, Period(1s)),
              K::List("rules", kOptional, &Policy::rules, RuleKeys, 0, kMaxRules, nullptr),
          },
      .check = CheckPolicy,
  };
  return *table;
}

const Table<State>& StateKeys() {
  using K = Keys<State>;
  static const auto* const table = new Table<State>{
      .keys =
          {
              K::Optional("path", &State::path, "tracegate.db", kRestart, FilePath(false)),
          },
  };
  return *table;
}

void ParseApi(const Item& item, Config& config, NoExtra&, Context& ctx) {
  Api api;
  NoExtra none;
  ParseMap(ApiKeys(), item, api, none, ctx);
  config.api = api;
}

void CheckAccess(Config& config, Context& ctx) {
  std::set<std::string> connections;
  for (const Connection& c : config.connections) {
    connections.insert(c.name);
  }
  for (size_t i = 0; i < config.policy.rules.size(); ++i) {
    const PolicyRule& rule = config.policy.rules[i];
    for (size_t j = 0; j < rule.connections.size(); ++j) {
      const std::string& name = rule.connections[j];
      if (name.empty() || name == "*" || connections.contains(name)) {
        continue;
      }
      const std::string path = ElementPath(ElementPath("policy.rules", i) + ".connections", j);
      ctx.Error(ctx.MarkOf(path).is_null() ? ctx.MarkOf(ElementPath("policy.rules", i))
                                           : ctx.MarkOf(path),
                path, absl::StrCat("no connection is named ", Quote(name)));
    }
  }
  std::set<std::string> profiles;
  for (const masking::Profile& profile : config.masking_profiles) {
    profiles.insert(profile.name);
  }
  for (size_t i = 0; i < config.policy.rules.size(); ++i) {
    const std::string& name = config.policy.rules[i].masking_profile;
    if (name.empty() || profiles.contains(name)) {
      continue;
    }
    const std::string path = ElementPath("policy.rules", i) + ".masking_profile";
    ctx.Error(ctx.MarkOf(path), path,
              absl::StrCat("no masking profile is named ", Quote(name),
                           profiles.empty() ? " (masking_profiles defines none)" : ""));
  }
  CheckIssuerScopes(config, ctx);
  if (config.api.has_value()) {
    if (config.api->tls && config.tls.cert_file.empty()) {
      ctx.Error(ctx.MarkOf("api.tls"), "api.tls",
                "the API is served over TLS by default and needs tls.cert_file and "
                "tls.key_file (or api.tls: false for a local demo)");
    }
    if (config.identity.issuers.empty()) {
      ctx.Error(ctx.MarkOf("api"), "api",
                "the API authenticates callers with OIDC tokens: configure identity.issuers");
    }
  }
}

}  // namespace tracegate::config::internal
