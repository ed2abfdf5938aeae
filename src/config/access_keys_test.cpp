// identity.*, policy.*, api.* and state.*: what loads, what defaults apply, and the errors.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "config/config.h"

namespace tracegate::config {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr const char* kConnection = R"(connections:
  - name: traces-pg
    listen: 127.0.0.1:6432
    backend: {host: db, database: traces, user: tg, password: pw, allow_inline_password: true}
)";

absl::StatusOr<std::shared_ptr<const Config>> Load(const std::string& tail) {
  return LoadString(absl::StrCat(kConnection, tail), "t.yaml");
}

std::string ErrorOf(const std::string& tail) {
  auto config = Load(tail);
  return config.ok() ? "<loaded>" : std::string(config.status().message());
}

TEST(AccessConfig, FullSectionsLoad) {
  auto config = Load(R"(tls: {cert_file: /etc/tg/c.pem, key_file: /etc/tg/k.pem}
api:
  listen: 127.0.0.1:8443
  public_host: gw.example.com
  max_body_bytes: 16KiB
  auth_failures_per_minute: 5
  trusted_proxies: [10.0.0.0/8, "::1", 192.168.1.7]
  handler_threads: 6
state: {path: /var/lib/tracegate/state.db}
identity:
  token_cache_entries: 500
  issuers:
    - name: okta
      issuer: https://example.okta.com/oauth2/default
      audiences: [api://tracegate]
      algorithms: [RS256, ES256]
      typ: at+jwt
      leeway: 10s
    - name: keycloak
      issuer: https://kc.example.com/realms/ai
      audiences: [tracegate, account]
      jwks_uri: https://kc.example.com/realms/ai/protocol/openid-connect/certs
      groups_claim: realm_access.roles
masking_profiles: [{name: default}]
policy:
  max_ttl: 2m
  rules:
    - name: agents
      issuers: [keycloak]
      groups: [ai-agents]
      connections: [traces-pg]
      ttl: 20s
      uses: 2
      masking_profile: default
      require_reason: true
    - name: contractors
      effect: deny
      groups: [contractors]
)");
  ASSERT_TRUE(config.ok()) << config.status();
  const Config& c = **config;
  ASSERT_TRUE(c.api.has_value());
  EXPECT_EQ(c.api->listen.port, 8443);
  EXPECT_TRUE(c.api->tls);
  EXPECT_EQ(c.api->public_host, "gw.example.com");
  EXPECT_EQ(c.api->max_body_bytes, 16384u);
  EXPECT_THAT(c.api->trusted_proxies, ElementsAre("10.0.0.0/8", "::1", "192.168.1.7"));
  EXPECT_EQ(c.api->handler_threads, 6u);
  EXPECT_EQ(c.api->max_slow_calls, 2u);  // the default
  EXPECT_EQ(c.state.path, "/var/lib/tracegate/state.db");
  ASSERT_EQ(c.identity.issuers.size(), 2u);
  const Issuer& okta = c.identity.issuers[0];
  EXPECT_TRUE(okta.discovery);
  EXPECT_THAT(okta.algorithms, ElementsAre("RS256", "ES256"));
  EXPECT_EQ(okta.leeway, 10s);
  EXPECT_EQ(okta.groups_claim, "groups");
  const Issuer& kc = c.identity.issuers[1];
  EXPECT_FALSE(kc.discovery);  // an explicit jwks_uri replaces discovery
  EXPECT_THAT(kc.audiences, ElementsAre("tracegate", "account"));
  EXPECT_EQ(kc.groups_claim, "realm_access.roles");
  EXPECT_THAT(kc.algorithms, ElementsAre("RS256"));
  ASSERT_EQ(c.policy.rules.size(), 2u);
  EXPECT_EQ(c.policy.max_ttl, 2min);
  EXPECT_EQ(c.policy.rules[0].uses, 2u);
  EXPECT_EQ(c.policy.rules[0].ttl, 20s);
  EXPECT_TRUE(c.policy.rules[0].require_reason);
  EXPECT_EQ(c.policy.rules[0].masking_profile, "default");
  EXPECT_THAT(c.policy.rules[0].issuers, ElementsAre("keycloak"));
  EXPECT_EQ(c.policy.rules[1].effect, Effect::kDeny);
  EXPECT_THAT(c.policy.rules[1].issuers, ::testing::IsEmpty());  // a deny rule: every issuer
}

TEST(AccessConfig, DefaultsMatchTheHeader) {
  auto config = Load("");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE((*config)->api.has_value());
  EXPECT_EQ((*config)->state.path.substr((*config)->state.path.rfind('/') + 1), "tracegate.db");
  const PolicyRule defaults;
  auto rules = Load("policy: {rules: [{name: r}]}");
  ASSERT_TRUE(rules.ok()) << rules.status();
  const PolicyRule& r = (*rules)->policy.rules[0];
  EXPECT_EQ(r.ttl, defaults.ttl);
  EXPECT_EQ(r.uses, defaults.uses);
  EXPECT_EQ(r.max_session, defaults.max_session);
  EXPECT_EQ(r.max_rows, defaults.max_rows);
  EXPECT_EQ(r.max_bytes, defaults.max_bytes);
  EXPECT_EQ(r.effect, Effect::kAllow);
  EXPECT_EQ((*rules)->policy.max_ttl, Policy().max_ttl);
}

TEST(AccessConfig, SecretsComeFromFilesOrEnvironmentAndAreNeverQuoted) {
  ::setenv("TG_TEST_HMAC", "very-secret-hmac-key-material-of-32+bytes", 1);
  auto config = Load(R"(identity:
  issuers:
    - {name: legacy, issuer: https://legacy, audiences: [tg], algorithms: [HS256],
       jwks_uri: https://legacy/keys, hmac_secret_env: TG_TEST_HMAC}
)");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ((*config)->identity.issuers[0].hmac_secret,
            "very-secret-hmac-key-material-of-32+bytes");
  ::setenv("TG_TEST_HMAC", "too-short", 1);
  EXPECT_THAT(ErrorOf(R"(identity:
  issuers:
    - {name: legacy, issuer: https://legacy, audiences: [tg], algorithms: [HS256],
       jwks_uri: https://legacy/keys, hmac_secret_env: TG_TEST_HMAC}
)"),
              AllOf(HasSubstr("must be at least 32 bytes"), Not(HasSubstr("too-short"))));
  ::unsetenv("TG_TEST_HMAC");
  std::string error = ErrorOf(R"(identity:
  issuers:
    - {name: legacy, issuer: https://legacy, audiences: [tg], algorithms: [HS256],
       jwks_uri: https://legacy/keys, hmac_secret_env: TG_TEST_HMAC}
)");
  EXPECT_THAT(error, HasSubstr("environment variable TG_TEST_HMAC is not set"));
}

struct ErrorCase {
  std::string name;
  std::string tail;
  std::string expected;  // a substring of the report
};

class AccessErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(AccessErrorTest, Reports) {
  EXPECT_THAT(ErrorOf(GetParam().tail), HasSubstr(GetParam().expected));
}

std::vector<ErrorCase> Cases() {
  const std::string issuer = "identity: {issuers: [{name: i, issuer: https://i, audiences: [tg]";
  const std::string api = issuer + "}]}\napi: {listen: 127.0.0.1:8443, tls: false, ";
  return {
      {"AlgNone", issuer + ", algorithms: [none]}]}\n",
       "identity.issuers[0].algorithms[0]: \"none\" is never allowed"},
      {"UnknownAlg", issuer + ", algorithms: [RS1]}]}\n", "expected one of RS256"},
      {"HmacWithoutSecret", issuer + ", algorithms: [HS256]}]}\n",
       "HS* algorithms need hmac_secret_file or hmac_secret_env"},
      {"AudienceRequired", "identity: {issuers: [{name: i, issuer: https://i}]}\n",
       "identity.issuers[0].audiences: needs at least one audience"},
      {"TwoKeySources", issuer + ", jwks_uri: https://i/k, jwks_file: /k.json}]}\n",
       "set only one of jwks_uri and jwks_file"},
      {"DiscoveryConflicts", issuer + ", discovery: true, jwks_uri: https://i/k}]}\n",
       "discovery: true conflicts"},
      {"JwksUriNotUrl", issuer + ", jwks_uri: ftp://i/k}]}\n",
       "expected an http:// or https:// URL"},
      {"AlgorithmsNotAList", issuer + ", algorithms: RS256}]}\n",
       "expected a list of a JWS algorithm, got a scalar"},
      {"DuplicateIssuer",
       "identity: {issuers: [{name: a, issuer: https://i, audiences: [t]}, {name: b, issuer: "
       "https://i, audiences: [t]}]}\n",
       "issuer \"https://i\" is configured twice"},
      {"BadGroupsClaim", issuer + ", groups_claim: a..b}]}\n", "expected dot-separated"},
      {"StaleBelowRefresh", issuer + ", jwks_refresh: 10m, jwks_stale_max: 1m}]}\n",
       "jwks_stale_max: must be at least jwks_refresh"},
      {"IntrospectionNeedsClient", issuer + ", introspection_endpoint: https://i/introspect}]}\n",
       "needs introspection_client_id"},
      {"RuleUnknownConnection", "policy: {rules: [{name: r, connections: [nope]}]}\n",
       "policy.rules[0].connections[0]: no connection is named \"nope\""},
      {"RuleTtlOverMax", "policy: {max_ttl: 1m, rules: [{name: r, ttl: 2m}]}\n",
       "exceeds policy.max_ttl (60s)"},
      {"RuleZeroUses", "policy: {rules: [{name: r, uses: 0}]}\n", "uses: expected an integer"},
      {"RuleBadEffect", "policy: {rules: [{name: r, effect: maybe}]}\n",
       "expected one of allow|deny"},
      {"DuplicateRule", "policy: {rules: [{name: r}, {name: r}]}\n", "duplicate rule name \"r\""},
      {"ApiNeedsTlsCert",
       "api: {listen: 127.0.0.1:8443}\nidentity: {issuers: [{name: i, issuer: "
       "https://i, audiences: [t]}]}\n",
       "api.tls: the API is served over TLS by default"},
      {"ApiNeedsIssuers", "api: {listen: 127.0.0.1:8443, tls: false}\n",
       "api: the API authenticates callers with OIDC tokens"},
      {"ApiClashesWithListener", "api: {listen: 127.0.0.1:6432, tls: false}\n",
       "api.listen: address 127.0.0.1:6432 is also used by connections[0].listen"},
      {"TrustedProxyNotAnAddress", api + "trusted_proxies: [proxy.local]}\n",
       "api.trusted_proxies[0]: \"proxy.local\" is not an IPv4 or IPv6 address"},
      {"TrustedProxyBadPrefix", api + "trusted_proxies: [10.0.0.0/33]}\n",
       "prefix length \"33\" is not 0 to 32"},
      {"TrustedProxyHostBits", api + "trusted_proxies: [10.0.0.1/8]}\n",
       "has bits set past its /8 prefix"},
      {"SlowCallsTakeEveryHandler", api + "handler_threads: 2, max_slow_calls: 2}\n",
       "api.max_slow_calls: must be less than handler_threads (2)"},
      {"UnknownRuleKey", "policy: {rules: [{name: r, group: [a]}]}\n",
       "unknown key \"group\" (did you mean \"groups\"?)"},
  };
}

INSTANTIATE_TEST_SUITE_P(Config, AccessErrorTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace tracegate::config
