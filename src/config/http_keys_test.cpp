// connections[] of type: http: what loads (every field), the defaults, the errors (each at its
// exact key path), and that the upstream's secret never reaches a message.

#include "config/http_keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "config/config.h"

namespace tracegate::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using namespace std::chrono_literals;

// An http connection named "web", in parts a case can replace. Each part is whole lines.
struct Http {
  std::string connection;  // more keys of the connection, indented 4
  std::string url = "      url: https://store.internal:3000/prefix\n";
  std::string auth =
      "      auth: {username: pk-lf-1, secret: sk-inline, allow_inline_secret: true}\n";
  std::string upstream;  // more keys of the upstream, indented 6
  std::string routes =
      "    routes:\n"
      "      - {name: trace, path: '/api/public/traces/{trace_id}', response_trace_id: id}\n";
  std::string tail;  // after the connection: more connections, or top-level keys
};

std::string Yaml(const Http& h) {
  const std::string upstream = absl::StrCat(h.url, h.auth, h.upstream);
  return absl::StrCat("connections:\n  - name: web\n    type: http\n    listen: 127.0.0.1:8443\n",
                      h.connection, upstream.empty() ? "" : "    upstream:\n", upstream, h.routes,
                      h.tail);
}

Http WithConnection(std::string lines) {
  Http h;
  h.connection = std::move(lines);
  return h;
}
Http WithUrl(const std::string& url) {
  Http h;
  h.url = absl::StrCat("      url: ", url, "\n");
  return h;
}
Http WithAuth(const std::string& flow) {
  Http h;
  h.auth = absl::StrCat("      auth: ", flow, "\n");
  return h;
}
Http WithUpstream(std::string lines, const std::string& url = "https://store.internal") {
  Http h = WithUrl(url);
  h.upstream = std::move(lines);
  return h;
}
Http WithRoutes(const std::string& lines) {
  Http h;
  h.routes = absl::StrCat("    routes:\n", lines);
  return h;
}
// One route with `keys` besides its name ("r").
Http WithRoute(const std::string& keys) {
  return WithRoutes(absl::StrCat("      - {name: r, ", keys, "}\n"));
}
Http WithPath(const std::string& path) {
  return WithRoute(absl::StrCat("path: '", path, "', response_trace_id: id"));
}
Http WithTracePath(const std::string& response_trace_id) {
  return WithRoute(
      absl::StrCat("path: '/t/{trace_id}', response_trace_id: '", response_trace_id, "'"));
}
Http WithTail(std::string tail) {
  Http h;
  h.tail = std::move(tail);
  return h;
}

absl::StatusOr<std::shared_ptr<const Config>> Load(const Http& h) {
  return LoadString(Yaml(h), "t.yaml");
}

std::string ErrorOf(const Http& h) {
  auto config = Load(h);
  return config.ok() ? "<loaded>" : std::string(config.status().message());
}

// ---- what loads ------------------------------------------------------------------------------

TEST(HttpConfig, FullConnectionLoadsWithEveryValue) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "http_keys_test_full";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "langfuse.secret") << "sk-lf-from-file\n";
  const std::string yaml = absl::StrCat(R"(tls: {cert_file: /etc/tg/c.pem, key_file: /etc/tg/k.pem}
connections:
  - name: traces-pg
    listen: 127.0.0.1:6432
    backend: {host: db, database: traces, user: tg, password: pw, allow_inline_password: true}
  - name: traces-http
    type: http
    listen: "[::1]:8443"
    advertise_host: gw.example.com
    require_tls: true
    idle_timeout: 20s
    session_timeout: 2m
    max_sessions: 50
    max_request_bytes: 1MiB
    upstream:
      url: https://langfuse.internal:3000/lf/api%20v1/
      auth:
        scheme: basic
        username: pk-lf-123
        secret_file: )",
                                        (dir / "langfuse.secret").string(), R"(
      ca_file: /etc/tg/langfuse-ca.pem
      verify_tls: true
      connect_timeout: 2s
      timeout: 45s
      max_response_bytes: 32MiB
      max_idle_connections: 0
    routes:
      - name: trace
        method: GET
        path: /api/public/traces/{trace_id}
        response_trace_id: id
        allow_query: [fields]
      - name: observations
        path: /api/public/observations?traceId={trace_id}&type=GENERATION
        response_trace_id: "data[*].traceId"
        allow_query: [page, limit]
      - name: scores
        path: /api/public/v2/scores/by%20trace/{trace_id}/all?x%26y=a%3Db
        response_trace_id: "meta.items[*].ids[*]"
    fetch_route: observations
policy:
  rules:
    - {name: agents, groups: [ai-agents], connections: [traces-http, traces-pg]}
)");
  auto loaded = LoadString(yaml, "t.yaml");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Config& config = **loaded;
  ASSERT_EQ(config.connections.size(), 2u);
  EXPECT_EQ(config.connections[0].type, ConnectionType::kPostgres);
  const Connection& c = config.connections[1];
  EXPECT_EQ(c.name, "traces-http");
  EXPECT_EQ(c.type, ConnectionType::kHttp);
  EXPECT_EQ(c.listen, (Endpoint{"::1", 8443}));
  EXPECT_EQ(c.advertise_host, "gw.example.com");
  EXPECT_TRUE(c.require_tls);
  EXPECT_EQ(c.idle_timeout, 20s);
  EXPECT_EQ(c.session_timeout, 2min);
  EXPECT_EQ(c.max_sessions, 50u);
  EXPECT_EQ(c.max_request_bytes, 1u << 20);
  const HttpUpstream& u = c.upstream;
  EXPECT_EQ(u.url, "https://langfuse.internal:3000/lf/api%20v1");
  EXPECT_TRUE(u.https);
  EXPECT_EQ(u.host, "langfuse.internal");
  EXPECT_EQ(u.port, 3000);
  EXPECT_EQ(u.prefix, "/lf/api%20v1");
  EXPECT_EQ(u.auth.scheme, UpstreamAuthScheme::kBasic);
  EXPECT_EQ(u.auth.username, "pk-lf-123");
  EXPECT_EQ(u.auth.header, "");
  EXPECT_EQ(u.auth.secret, "sk-lf-from-file");
  EXPECT_EQ(u.ca_file, "/etc/tg/langfuse-ca.pem");
  EXPECT_TRUE(u.verify_tls);
  EXPECT_EQ(u.connect_timeout, 2s);
  EXPECT_EQ(u.timeout, 45s);
  EXPECT_EQ(u.max_response_bytes, 32u << 20);
  EXPECT_EQ(u.max_idle_connections, 0u);
  ASSERT_EQ(c.routes.size(), 3u);

  const HttpRoute& trace = c.routes[0];
  EXPECT_EQ(trace.name, "trace");
  EXPECT_EQ(trace.method, "GET");
  EXPECT_EQ(trace.path, "/api/public/traces/{trace_id}");
  EXPECT_THAT(trace.parsed.segments, ElementsAre("api", "public", "traces", "{trace_id}"));
  EXPECT_EQ(trace.parsed.trace_segment, 3);
  EXPECT_THAT(trace.parsed.query, IsEmpty());
  EXPECT_EQ(trace.parsed.trace_query, -1);
  EXPECT_EQ(trace.response_trace_id, "id");
  EXPECT_THAT(trace.trace_path, ElementsAre(JsonPathStep{"id", false}));
  EXPECT_THAT(trace.allow_query, ElementsAre("fields"));

  const HttpRoute& observations = c.routes[1];
  EXPECT_EQ(observations.name, "observations");
  EXPECT_EQ(observations.method, "GET");
  EXPECT_EQ(observations.path, "/api/public/observations?traceId={trace_id}&type=GENERATION");
  EXPECT_THAT(observations.parsed.segments, ElementsAre("api", "public", "observations"));
  EXPECT_EQ(observations.parsed.trace_segment, -1);
  EXPECT_THAT(observations.parsed.query,
              ElementsAre(Pair("traceId", "{trace_id}"), Pair("type", "GENERATION")));
  EXPECT_EQ(observations.parsed.trace_query, 0);
  EXPECT_EQ(observations.response_trace_id, "data[*].traceId");
  EXPECT_THAT(observations.trace_path,
              ElementsAre(JsonPathStep{"data", true}, JsonPathStep{"traceId", false}));
  EXPECT_THAT(observations.allow_query, ElementsAre("page", "limit"));

  // Segments and query parameters are percent-decoded.
  const HttpRoute& scores = c.routes[2];
  EXPECT_THAT(scores.parsed.segments,
              ElementsAre("api", "public", "v2", "scores", "by trace", "{trace_id}", "all"));
  EXPECT_EQ(scores.parsed.trace_segment, 5);
  EXPECT_THAT(scores.parsed.query, ElementsAre(Pair("x&y", "a=b")));
  EXPECT_EQ(scores.parsed.trace_query, -1);
  EXPECT_THAT(scores.trace_path,
              ElementsAre(JsonPathStep{"meta", false}, JsonPathStep{"items", true},
                          JsonPathStep{"ids", true}));
  EXPECT_THAT(scores.allow_query, IsEmpty());

  EXPECT_EQ(c.fetch_route, "observations");
  // Postgres keys keep their defaults on an http connection.
  EXPECT_TRUE(c.risk_query.empty());
  EXPECT_TRUE(c.fetch_query.empty());
  EXPECT_THAT(c.users, IsEmpty());
  EXPECT_EQ(c.pool.max_size, Pool().max_size);
  EXPECT_THAT(config.policy.rules[0].connections, ElementsAre("traces-http", "traces-pg"));
  std::filesystem::remove_all(dir);
}

TEST(HttpConfig, DefaultsMatchTheHeader) {
  auto loaded = Load(Http{});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Connection& c = (*loaded)->connections[0];
  const Connection fresh;
  const HttpUpstream& u = c.upstream;
  EXPECT_EQ(c.type, ConnectionType::kHttp);
  EXPECT_EQ(c.max_request_bytes, fresh.max_request_bytes);
  EXPECT_EQ(c.max_request_bytes, 64u << 10);
  EXPECT_EQ(u.verify_tls, fresh.upstream.verify_tls);
  EXPECT_EQ(u.ca_file, fresh.upstream.ca_file);
  EXPECT_EQ(u.connect_timeout, fresh.upstream.connect_timeout);
  EXPECT_EQ(u.timeout, fresh.upstream.timeout);
  EXPECT_EQ(u.max_response_bytes, fresh.upstream.max_response_bytes);
  EXPECT_EQ(u.max_idle_connections, fresh.upstream.max_idle_connections);
  EXPECT_EQ(u.auth.scheme, fresh.upstream.auth.scheme);
  EXPECT_TRUE(u.verify_tls);
  EXPECT_EQ(u.connect_timeout, 5s);
  EXPECT_EQ(u.timeout, 30s);
  EXPECT_EQ(u.max_response_bytes, 16u << 20);
  EXPECT_EQ(u.max_idle_connections, 16u);
  EXPECT_EQ(u.auth.scheme, UpstreamAuthScheme::kBasic);
  EXPECT_EQ(u.auth.secret, "sk-inline");
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_EQ(c.routes[0].method, "GET");
  EXPECT_THAT(c.routes[0].allow_query, IsEmpty());
  EXPECT_EQ(c.fetch_route, "trace");  // the first route
}

TEST(HttpConfig, BearerAndHeaderSchemes) {
  ::setenv("TG_HTTP_TEST_TOKEN", "tok-123", 1);
  auto bearer = Load(WithAuth("{scheme: bearer, secret_env: TG_HTTP_TEST_TOKEN}"));
  ASSERT_TRUE(bearer.ok()) << bearer.status();
  EXPECT_EQ((*bearer)->connections[0].upstream.auth.scheme, UpstreamAuthScheme::kBearer);
  EXPECT_EQ((*bearer)->connections[0].upstream.auth.secret, "tok-123");
  auto header =
      Load(WithAuth("{scheme: header, header: X-Api-Key, secret_env: TG_HTTP_TEST_TOKEN}"));
  ::unsetenv("TG_HTTP_TEST_TOKEN");
  ASSERT_TRUE(header.ok()) << header.status();
  const UpstreamAuth& auth = (*header)->connections[0].upstream.auth;
  EXPECT_EQ(auth.scheme, UpstreamAuthScheme::kHeader);
  EXPECT_EQ(auth.header, "X-Api-Key");
  EXPECT_EQ(auth.secret, "tok-123");
  EXPECT_TRUE(auth.username.empty());
}

TEST(HttpConfig, ToolsMayLoadWithoutTheUpstreamSecret) {
  const std::filesystem::path path =
      std::filesystem::path(::testing::TempDir()) / "http_keys_test_no_secret.yaml";
  std::ofstream(path) << Yaml(WithAuth("{username: pk, secret_env: TG_HTTP_TEST_UNSET}"));
  ::unsetenv("TG_HTTP_TEST_UNSET");
  EXPECT_FALSE(LoadFile(path.string()).ok());
  auto lenient = LoadFile(path.string(), {.secrets_required = false});
  ASSERT_TRUE(lenient.ok()) << lenient.status();
  EXPECT_TRUE((*lenient)->connections[0].upstream.auth.secret.empty());
  std::filesystem::remove(path);
}

TEST(HttpConfig, PolicyRulesMayNameHttpConnections) {
  auto loaded = Load(WithTail("policy: {rules: [{name: r, connections: [web]}]}\n"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_THAT((*loaded)->policy.rules[0].connections, ElementsAre("web"));
}

// ---- parsers -----------------------------------------------------------------------------

TEST(HttpParsers, UpstreamUrls) {
  using internal::ParseUpstreamUrl;
  struct Case {
    std::string text, url;
    bool https;
    std::string host;
    uint16_t port;
    std::string prefix;
  };
  for (const Case& c : std::vector<Case>{
           {"http://store", "http://store", false, "store", 80, ""},
           {"https://store", "https://store", true, "store", 443, ""},
           {"https://store/", "https://store", true, "store", 443, ""},
           {"http://10.0.0.5:8080/", "http://10.0.0.5:8080", false, "10.0.0.5", 8080, ""},
           {"https://[::1]:8443/a/b//", "https://[::1]:8443/a/b", true, "::1", 8443, "/a/b"},
           {"http://[fd00::5]/x", "http://[fd00::5]/x", false, "fd00::5", 80, "/x"},
           {"https://h/a%20b/c", "https://h/a%20b/c", true, "h", 443, "/a%20b/c"},
       }) {
    absl::StatusOr<internal::UpstreamUrl> u = ParseUpstreamUrl(c.text);
    ASSERT_TRUE(u.ok()) << c.text << ": " << u.status();
    EXPECT_EQ(u->url, c.url) << c.text;
    EXPECT_EQ(u->https, c.https) << c.text;
    EXPECT_EQ(u->host, c.host) << c.text;
    EXPECT_EQ(u->port, c.port) << c.text;
    EXPECT_EQ(u->prefix, c.prefix) << c.text;
  }
}

TEST(HttpParsers, RouteTemplates) {
  using internal::ParseRouteTemplate;
  absl::StatusOr<RouteTemplate> root = ParseRouteTemplate("/?id={trace_id}");
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_THAT(root->segments, IsEmpty());
  EXPECT_EQ(root->trace_segment, -1);
  EXPECT_THAT(root->query, ElementsAre(Pair("id", "{trace_id}")));
  EXPECT_EQ(root->trace_query, 0);
  absl::StatusOr<RouteTemplate> mixed =
      ParseRouteTemplate("/v1/{trace_id}/spans?a=&b=x=y&c=%7E/?&d=1");
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  EXPECT_THAT(mixed->segments, ElementsAre("v1", "{trace_id}", "spans"));
  EXPECT_EQ(mixed->trace_segment, 1);
  EXPECT_THAT(mixed->query,
              ElementsAre(Pair("a", ""), Pair("b", "x=y"), Pair("c", "~/?"), Pair("d", "1")));
  EXPECT_EQ(mixed->trace_query, -1);
  absl::StatusOr<RouteTemplate> delims = ParseRouteTemplate("/a:b@c!$&'()*+,;=/{trace_id}");
  ASSERT_TRUE(delims.ok()) << delims.status();
  EXPECT_EQ(delims->segments[0], "a:b@c!$&'()*+,;=");
}

TEST(HttpParsers, JsonPaths) {
  using internal::ParseJsonPath;
  EXPECT_THAT(*ParseJsonPath("id"), ElementsAre(JsonPathStep{"id", false}));
  EXPECT_THAT(*ParseJsonPath("a-b_C9[*].x"),
              ElementsAre(JsonPathStep{"a-b_C9", true}, JsonPathStep{"x", false}));
  EXPECT_THAT(*ParseJsonPath("ids[*]"), ElementsAre(JsonPathStep{"ids", true}));
  for (const char* bad : {"", ".", "a.", ".a", "a..b", "[*]", "a[*][*]", "a[0]", "a[*]b", "a b",
                          "a.[*]", "$.a", "a/b", "a[*"}) {
    EXPECT_FALSE(ParseJsonPath(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseJsonPath(std::string(257, 'a')).ok());
}

TEST(HttpParsers, CredentialHeaderNames) {
  using internal::CheckCredentialHeaderName;
  for (const char* good : {"X-Api-Key", "Authorization", "x_key", "A!#$%&'*+-.^_`|~9"}) {
    EXPECT_TRUE(CheckCredentialHeaderName(good).ok()) << good;
  }
  for (const char* bad :
       {"", "X Api", "X-Api:", "Host", "HOST", "content-length", "Transfer-Encoding", "connection",
        "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "Proxy-Authorization",
        "Proxy-Authenticate", "X-\xc3\xa9"}) {
    EXPECT_FALSE(CheckCredentialHeaderName(bad).ok()) << bad;
  }
}

// ---- errors --------------------------------------------------------------------------------

struct ErrorCase {
  std::string name;
  Http http;
  std::string path;    // the key path the one error names
  std::string reason;  // and its reason, exactly
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

class HttpErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(HttpErrorTest, ReportsOneErrorAtItsKey) {
  const std::string message = ErrorOf(GetParam().http);
  std::vector<std::string> lines = absl::StrSplit(message, '\n');
  ASSERT_EQ(lines.size(), 1u) << message << "\n" << Yaml(GetParam().http);
  // "t.yaml:<line>:<column>: <rest>", read by hand.
  const std::string& line = lines[0];
  ASSERT_TRUE(absl::StartsWith(line, "t.yaml:")) << line;
  size_t at = 7;
  for (int field = 0; field < 2; ++field) {
    const size_t digits = at;
    while (at < line.size() && absl::ascii_isdigit(static_cast<unsigned char>(line[at]))) {
      ++at;
    }
    ASSERT_TRUE(at > digits && at < line.size() && line[at] == ':') << line;
    ++at;
  }
  ASSERT_EQ(line.substr(at, 1), " ") << line;
  EXPECT_EQ(line.substr(at + 1), absl::StrCat(GetParam().path, ": ", GetParam().reason))
      << Yaml(GetParam().http);
}

std::vector<ErrorCase> Cases() {
  const std::string c = "connections[0]";
  const std::string u = c + ".upstream";
  const std::string a = u + ".auth";
  const std::string r = c + ".routes[0]";
  const std::string route = "      - {name: trace, path: '/t/{trace_id}', response_trace_id: id}\n";
  std::string many_routes;
  for (int i = 0; i < 65; ++i) {
    absl::StrAppend(&many_routes, "      - {name: r", i,
                    ", path: '/t/{trace_id}', response_trace_id: id}\n");
  }
  const std::string header_refused =
      " cannot carry the credential: the gateway writes Host, Content-Length and "
      "Transfer-Encoding itself and drops hop-by-hop headers";
  const std::string braces = "\"{\" and \"}\" may appear only in the placeholder {trace_id}, got ";
  const std::string query_name =
      "expected a query parameter name of 1 to 128 characters A-Z, a-z, 0-9, '-', '.', '_', '~', "
      "'[' and ']', got ";
  const std::string json_path =
      "expected keys of A-Z, a-z, 0-9, '_' and '-' joined by \".\", each optionally followed by "
      "[*] (like id or data[*].traceId), got ";
  const std::string bearer = "{scheme: bearer, secret: s, allow_inline_secret: true";
  return {
      // Keys of the other type.
      {"BackendOnHttp",
       WithConnection("    backend: {host: db, database: d, user: u, password_env: HOME}\n"),
       c + ".backend", "only for type: postgres"},
      {"PoolOnHttp", WithConnection("    pool: {max_size: 2}\n"), c + ".pool",
       "only for type: postgres"},
      {"UsersOnHttp", WithConnection("    users: []\n"), c + ".users", "only for type: postgres"},
      {"GateOnHttp", WithConnection("    gate: {mode: strict}\n"), c + ".gate",
       "only for type: postgres"},
      {"RiskQueryOnHttp", WithConnection("    risk_query: select 1\n"), c + ".risk_query",
       "only for type: postgres"},
      {"FetchQueryOnHttp", WithConnection("    fetch_query: q\n"), c + ".fetch_query",
       "only for type: postgres"},
      // The connection.
      {"MissingUpstream",
       [] {
         Http h;
         h.url = h.auth = "";
         return h;
       }(),
       u, "missing required key"},
      {"MissingRoutes",
       [] {
         Http h;
         h.routes = "";
         return h;
       }(),
       c + ".routes", "missing required key"},
      {"EmptyRoutes",
       [] {
         Http h;
         h.routes = "    routes: []\n";
         return h;
       }(),
       c + ".routes", "needs at least 1 entry"},
      {"TooManyRoutes", WithRoutes(many_routes), c + ".routes",
       "has 65 entries, at most 64 are allowed"},
      {"DuplicateRouteName", WithRoutes(route + route), c + ".routes[1].name",
       "duplicate route name \"trace\" (also connections[0].routes[0].name)"},
      {"FetchRouteUnknown", WithConnection("    fetch_route: nope\n"), c + ".fetch_route",
       "no route is named \"nope\""},
      {"FetchRouteBadName", WithConnection("    fetch_route: Nope\n"), c + ".fetch_route",
       "expected 1 to 63 characters of a-z, 0-9, '-' and '_', got \"Nope\""},
      {"MaxRequestBytesTooSmall", WithConnection("    max_request_bytes: 512\n"),
       c + ".max_request_bytes", "size \"512\" is out of range (1024 to 16777216 bytes)"},
      {"MaxRequestBytesTooLarge", WithConnection("    max_request_bytes: 17MiB\n"),
       c + ".max_request_bytes", "size \"17MiB\" is out of range (1024 to 16777216 bytes)"},
      {"ListenClashesAcrossTypes",
       WithTail("  - name: pg\n    listen: 127.0.0.1:8443\n"
                "    backend: {host: h, database: d, user: u, password_env: HOME}\n"),
       "connections[1].listen", "address 127.0.0.1:8443 is also used by connections[0].listen"},
      {"NameClashesAcrossTypes",
       WithTail("  - name: web\n    listen: 127.0.0.1:6432\n"
                "    backend: {host: h, database: d, user: u, password_env: HOME}\n"),
       "connections[1].name", "duplicate connection name \"web\" (also connections[0].name)"},
      {"RiskRuleOnHttp",
       WithTail("policy: {rules: [{name: r, connections: [web], approvers: [a], "
                "approve_if_risk_at_least: 0.5}]}\n"),
       "policy.rules[0].approve_if_risk_at_least",
       "connection \"web\" is type: http, which has no risk_query, so the risk of its traces "
       "cannot be known"},
      // upstream.url
      {"MissingUrl",
       [] {
         Http h;
         h.url = "";
         return h;
       }(),
       u + ".url", "missing required key"},
      {"UrlNotHttp", WithUrl("ftp://store"), u + ".url",
       "expected an http:// or https:// URL, got \"ftp://store\""},
      {"UrlUpperCaseScheme", WithUrl("HTTPS://store"), u + ".url",
       "expected an http:// or https:// URL, got \"HTTPS://store\""},
      {"UrlWithQuery", WithUrl("https://store/x?a=1"), u + ".url",
       "must not have a query or fragment (routes give the query), got \"https://store/x?a=1\""},
      {"UrlWithFragment", WithUrl("'https://store/x#f'"), u + ".url",
       "must not have a query or fragment (routes give the query), got \"https://store/x#f\""},
      {"UrlWithUserinfo", WithUrl("https://pk:sk-secret@store/x"), u + ".url",
       "must not contain user information (user:password@); the credential goes under auth"},
      {"UrlWithSpace", WithUrl("'https://st ore'"), u + ".url",
       "must not contain spaces, control characters or non-ASCII bytes, got \"https://st ore\""},
      {"UrlWithoutHost", WithUrl("https://"), u + ".url",
       "expected http(s)://host[:port][/prefix], got \"https://\""},
      {"UrlBadHost", WithUrl("https://st*re"), u + ".url",
       "expected http(s)://host[:port][/prefix], got \"https://st*re\""},
      {"UrlUnclosedBracket", WithUrl("'https://[::1'"), u + ".url",
       "expected http(s)://host[:port][/prefix], got \"https://[::1\""},
      {"UrlIpv6WithoutBrackets", WithUrl("'http://::1:80'"), u + ".url",
       "IPv6 addresses need brackets, e.g. http://[::1]:8080, got \"http://::1:80\""},
      {"UrlPortZero", WithUrl("https://store:0"), u + ".url",
       "expected a port from 1 to 65535 after the host, got \"https://store:0\""},
      {"UrlPortTooLarge", WithUrl("https://store:65536"), u + ".url",
       "expected a port from 1 to 65535 after the host, got \"https://store:65536\""},
      {"UrlEmptyPort", WithUrl("'https://store:'"), u + ".url",
       "expected a port from 1 to 65535 after the host, got \"https://store:\""},
      {"UrlEmptySegment", WithUrl("https://store//x"), u + ".url",
       "has an empty path segment (\"//\"), got \"https://store//x\""},
      {"UrlDotSegment", WithUrl("https://store/a/../b"), u + ".url",
       "must not have \".\" or \"..\" segments or an encoded \"/\", got "
       "\"https://store/a/../b\""},
      {"UrlEncodedSlash", WithUrl("https://store/a%2fb"), u + ".url",
       "must not have \".\" or \"..\" segments or an encoded \"/\", got "
       "\"https://store/a%2fb\""},
      {"UrlBadEscape", WithUrl("https://store/a%zz"), u + ".url",
       "malformed percent-escape in \"a%zz\""},
      // upstream, other keys
      {"MissingAuth",
       [] {
         Http h;
         h.auth = "";
         return h;
       }(),
       a, "missing required key"},
      {"UnknownUpstreamKey", WithUpstream("      verify: true\n"), u, "unknown key \"verify\""},
      {"CaFileWithHttp", WithUpstream("      ca_file: ca.pem\n", "http://store"), u + ".ca_file",
       "is only used with an https:// url"},
      {"VerifyTlsWithHttp", WithUpstream("      verify_tls: true\n", "http://store"),
       u + ".verify_tls", "is only used with an https:// url"},
      {"CaFileWithoutVerification",
       WithUpstream("      verify_tls: false\n      ca_file: ca.pem\n"), u + ".ca_file",
       "is not used with verify_tls: false"},
      {"ConnectTimeoutZero", WithUpstream("      connect_timeout: 0s\n"), u + ".connect_timeout",
       "must be greater than 0"},
      {"TimeoutWithoutUnit", WithUpstream("      timeout: 30\n"), u + ".timeout",
       "duration needs a unit (ms, s, m or h), e.g. \"30s\""},
      {"MaxResponseBytesTooSmall", WithUpstream("      max_response_bytes: 1000\n"),
       u + ".max_response_bytes", "size \"1000\" is out of range (1024 to 1073741824 bytes)"},
      {"MaxResponseBytesTooLarge", WithUpstream("      max_response_bytes: 2GiB\n"),
       u + ".max_response_bytes", "size \"2GiB\" is out of range (1024 to 1073741824 bytes)"},
      {"MaxIdleConnectionsTooMany", WithUpstream("      max_idle_connections: 1025\n"),
       u + ".max_idle_connections", "expected an integer from 0 to 1024, got \"1025\""},
      // upstream.auth
      {"NoSecret", WithAuth("{username: pk}"), a,
       "needs a secret source: secret_file or secret_env (or secret, with allow_inline_secret: "
       "true)"},
      {"TwoSecretSources",
       WithAuth("{username: pk, secret_env: HOME, secret: s, allow_inline_secret: true}"),
       a + ".secret", "set only one of secret_file, secret_env and secret"},
      {"InlineSecretNotAllowed", WithAuth("{username: pk, secret: s}"), a + ".secret",
       "an inline secret is accepted only with allow_inline_secret: true (demos and tests); use "
       "secret_file or secret_env"},
      {"SecretEnvNotSet", WithAuth("{username: pk, secret_env: TG_HTTP_TEST_UNSET}"),
       a + ".secret_env", "environment variable TG_HTTP_TEST_UNSET is not set"},
      {"SecretEnvBadName", WithAuth("{username: pk, secret_env: 1x}"), a + ".secret_env",
       "expected an environment variable name like TRACEGATE_BACKEND_PASSWORD, got \"1x\""},
      {"SecretFileEmptyPath", WithAuth("{username: pk, secret_file: ''}"), a + ".secret_file",
       "must not be empty"},
      {"UnknownScheme", WithAuth("{scheme: digest, secret: s, allow_inline_secret: true}"),
       a + ".scheme", "expected one of basic|bearer|header, got \"digest\""},
      {"BasicWithoutUsername", WithAuth("{secret: s, allow_inline_secret: true}"), a + ".username",
       "required with scheme: basic"},
      {"BearerWithUsername", WithAuth(bearer + ", username: pk}"), a + ".username",
       "only for scheme: basic"},
      {"BearerWithHeader", WithAuth(bearer + ", header: X-Api-Key}"), a + ".header",
       "only for scheme: header"},
      {"HeaderWithoutHeader", WithAuth("{scheme: header, secret: s, allow_inline_secret: true}"),
       a + ".header", "required with scheme: header"},
      {"BasicWithHeader",
       WithAuth("{username: pk, header: X-Api-Key, secret: s, allow_inline_secret: true}"),
       a + ".header", "only for scheme: header"},
      {"UsernameWithColon", WithAuth("{username: 'pk:x', secret: s, allow_inline_secret: true}"),
       a + ".username",
       "must not contain \":\" (Basic authentication joins username:secret), got \"pk:x\""},
      {"UsernameEmpty", WithAuth("{username: '', secret: s, allow_inline_secret: true}"),
       a + ".username", "must not be empty"},
      {"HeaderNotAToken",
       WithAuth("{scheme: header, header: 'X(Api)', secret: s, allow_inline_secret: true}"),
       a + ".header",
       "expected an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), got \"X(Api)\""},
      {"HeaderHost",
       WithAuth("{scheme: header, header: Host, secret: s, allow_inline_secret: true}"),
       a + ".header", "\"Host\"" + header_refused},
      {"HeaderContentLength",
       WithAuth("{scheme: header, header: content-length, secret: s, allow_inline_secret: true}"),
       a + ".header", "\"content-length\"" + header_refused},
      {"HeaderTransferEncoding",
       WithAuth(
           "{scheme: header, header: Transfer-Encoding, secret: s, allow_inline_secret: true}"),
       a + ".header", "\"Transfer-Encoding\"" + header_refused},
      {"HeaderConnection",
       WithAuth("{scheme: header, header: Connection, secret: s, allow_inline_secret: true}"),
       a + ".header", "\"Connection\"" + header_refused},
      {"HeaderHopByHop",
       WithAuth("{scheme: header, header: Keep-Alive, secret: s, allow_inline_secret: true}"),
       a + ".header", "\"Keep-Alive\"" + header_refused},
      {"UnknownAuthKey",
       WithAuth("{scheme: bearer, token: t, secret: s, allow_inline_secret: true}"), a,
       "unknown key \"token\""},
      // routes[]
      {"RouteBadName",
       WithRoutes("      - {name: Trace, path: '/t/{trace_id}', response_trace_id: id}\n"),
       r + ".name", "expected 1 to 63 characters of a-z, 0-9, '-' and '_', got \"Trace\""},
      {"RouteMethodPost", WithRoute("method: POST, path: '/t/{trace_id}', response_trace_id: id"),
       r + ".method", "only GET is supported for now, got \"POST\""},
      {"RouteMethodLowerCase",
       WithRoute("method: get, path: '/t/{trace_id}', response_trace_id: id"), r + ".method",
       "only GET is supported for now, got \"get\""},
      {"RouteWithoutPath", WithRoute("response_trace_id: id"), r + ".path", "missing required key"},
      {"RouteWithoutResponseTraceId", WithRoute("path: '/t/{trace_id}'"), r + ".response_trace_id",
       "missing required key"},
      {"RouteUnknownKey", WithRoute("path: '/t/{trace_id}', response_trace_id: id, query: [a]"), r,
       "unknown key \"query\""},
      // routes[].path
      {"PathRelative", WithPath("t/{trace_id}"), r + ".path",
       "must start with \"/\", got \"t/{trace_id}\""},
      {"PathFragment", WithPath("/t/{trace_id}#x"), r + ".path",
       "must not contain \"#\" (a fragment is never sent), got \"/t/{trace_id}#x\""},
      {"PathEmptySegment", WithPath("/t//{trace_id}"), r + ".path",
       "has an empty segment (\"//\"), got \"/t//{trace_id}\""},
      {"PathTrailingSlash", WithPath("/t/{trace_id}/"), r + ".path",
       "must not end with \"/\", got \"/t/{trace_id}/\""},
      {"PathDotDot", WithPath("/t/../{trace_id}"), r + ".path",
       "must not have \".\" or \"..\" segments, got \"/t/../{trace_id}\""},
      {"PathDot", WithPath("/./{trace_id}"), r + ".path",
       "must not have \".\" or \"..\" segments, got \"/./{trace_id}\""},
      {"PathEncodedDotDot", WithPath("/t/%2e%2E/{trace_id}"), r + ".path",
       "must not have \".\" or \"..\" segments, got \"/t/%2e%2E/{trace_id}\""},
      {"PathBadEscape", WithPath("/t/%zz/{trace_id}"), r + ".path",
       "malformed percent-escape in \"%zz\""},
      {"PathShortEscape", WithPath("/t/{trace_id}/a%4"), r + ".path",
       "malformed percent-escape in \"a%4\""},
      {"PathEncodedSlash", WithPath("/a%2Fb/{trace_id}"), r + ".path",
       "segment \"a%2Fb\" encodes \"/\" (%2F)"},
      {"PathEncodedControl", WithPath("/t/%00/{trace_id}"), r + ".path",
       "\"%00\" encodes a control character"},
      {"PathRawSpace", WithPath("/t/a b/{trace_id}"), r + ".path",
       "character \" \" must be percent-encoded, in \"a b\""},
      {"PathRawAngle", WithPath("/t/a<b/{trace_id}"), r + ".path",
       "character \"<\" must be percent-encoded, in \"a<b\""},
      {"PathPartialPlaceholder", WithPath("/t/{trace_id}.json"), r + ".path",
       "{trace_id} must be a whole path segment or a whole query value, got "
       "\"{trace_id}.json\""},
      {"PathOtherPlaceholder", WithPath("/t/{id}"), r + ".path", braces + "\"{id}\""},
      {"PathEncodedPlaceholder", WithPath("/t/%7Btrace_id%7D"), r + ".path",
       braces + "\"%7Btrace_id%7D\""},
      {"PathWithoutPlaceholder", WithPath("/t"), r + ".path",
       "must contain {trace_id} as a whole path segment or query value, got \"/t\""},
      {"PathPlaceholderTwice", WithPath("/t/{trace_id}/{trace_id}"), r + ".path",
       "must contain {trace_id} exactly once, got \"/t/{trace_id}/{trace_id}\""},
      {"PathAndQueryPlaceholder", WithPath("/t/{trace_id}?id={trace_id}"), r + ".path",
       "must contain {trace_id} exactly once, got \"/t/{trace_id}?id={trace_id}\""},
      {"QueryPlaceholderAsName", WithPath("/t?{trace_id}=1"), r + ".path",
       "{trace_id} must be a whole path segment or a whole query value, got \"{trace_id}\""},
      {"QueryPartialPlaceholder", WithPath("/t?id=tr-{trace_id}"), r + ".path",
       "{trace_id} must be a whole path segment or a whole query value, got "
       "\"tr-{trace_id}\""},
      {"QueryEmpty", WithPath("/t/{trace_id}?"), r + ".path", "has an empty query after \"?\""},
      {"QueryEmptyParameter", WithPath("/t?id={trace_id}&&a=1"), r + ".path",
       "has an empty query parameter (\"&&\", or \"&\" at the start or end)"},
      {"QueryTrailingAmpersand", WithPath("/t?id={trace_id}&"), r + ".path",
       "has an empty query parameter (\"&&\", or \"&\" at the start or end)"},
      {"QueryWithoutValue", WithPath("/t?id={trace_id}&flag"), r + ".path",
       "query parameter \"flag\" needs a value: name=value"},
      {"QueryWithoutName", WithPath("/t?=1&id={trace_id}"), r + ".path",
       "query parameter \"=1\" has no name"},
      {"QueryDuplicate", WithPath("/t?id={trace_id}&id=2"), r + ".path",
       "query parameter \"id\" is given twice"},
      {"QueryDuplicateAfterDecoding", WithPath("/t?id={trace_id}&%69d=2"), r + ".path",
       "query parameter \"id\" is given twice"},
      {"QueryBadEscape", WithPath("/t?id={trace_id}&q=%G1"), r + ".path",
       "malformed percent-escape in \"%G1\""},
      {"QueryEncodedControl", WithPath("/t?id={trace_id}&q=%0a"), r + ".path",
       "\"%0a\" encodes a control character"},
      // routes[].response_trace_id
      {"TraceIdPathEmpty", WithTracePath(""), r + ".response_trace_id", json_path + "\"\""},
      {"TraceIdPathTrailingDot", WithTracePath("data[*]."), r + ".response_trace_id",
       json_path + "\"data[*].\""},
      {"TraceIdPathIndex", WithTracePath("data[0].id"), r + ".response_trace_id",
       json_path + "\"data[0].id\""},
      {"TraceIdPathJsonPathSyntax", WithTracePath("$.data[*].id"), r + ".response_trace_id",
       json_path + "\"$.data[*].id\""},
      // routes[].allow_query
      {"AllowQueryInTemplate",
       WithRoute("path: '/t?traceId={trace_id}', response_trace_id: id, allow_query: [traceId]"),
       r + ".allow_query[0]",
       "\"traceId\" is already in the query of path (a caller cannot set it)"},
      {"AllowQueryTwice",
       WithRoute("path: '/t/{trace_id}', response_trace_id: id, allow_query: [page, limit, page]"),
       r + ".allow_query[2]", "\"page\" is listed twice"},
      {"AllowQueryBadName",
       WithRoute("path: '/t/{trace_id}', response_trace_id: id, allow_query: ['a&b']"),
       r + ".allow_query[0]", query_name + "\"a&b\""},
      {"AllowQueryNotAList",
       WithRoute("path: '/t/{trace_id}', response_trace_id: id, allow_query: page"),
       r + ".allow_query", "expected a list of a query parameter name, got a scalar"},
  };
}

INSTANTIATE_TEST_SUITE_P(Config, HttpErrorTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

// ---- secrets -------------------------------------------------------------------------------

TEST(HttpConfig, SecretsNeverAppearInErrors) {
  const std::string secret = "sk-lf-Tr0ub4dor-SECRET";
  const std::filesystem::path file =
      std::filesystem::path(::testing::TempDir()) / "http_keys_test_secret";
  std::ofstream(file) << secret << "\n";
  ::setenv("TG_HTTP_TEST_SECRET", secret.c_str(), 1);
  // Each holds the secret and has errors besides (a bad url, routes, and more).
  auto with_auth = [](const std::string& auth) {
    Http h = WithAuth(auth);
    h.url = "      url: ftp://nowhere\n";
    h.routes = "    routes: [{name: r, path: /x, response_trace_id: '..'}]\n";
    return h;
  };
  std::vector<Http> configs = {
      with_auth("{scheme: bearer, secret_file: " + file.string() + "}"),
      with_auth("{scheme: bearer, secret_env: TG_HTTP_TEST_SECRET}"),
      with_auth("{scheme: bearer, secret: " + secret + "}"),
      with_auth("{scheme: bearer, secret: " + secret + ", secret_env: TG_HTTP_TEST_SECRET}"),
      with_auth("{scheme: bearer, secret: " + secret + ", secret: " + secret + "}"),
      with_auth("{scheme: bearer, secret: [" + secret + "]}"),
      with_auth("{scheme: bearer, secret: {" + secret + ": 1}}"),
      with_auth("{scheme: digest, secret_env: TG_HTTP_TEST_SECRET, allow_inline_secret: maybe}"),
      with_auth("{username: pk, header: X, secret_file: " + file.string() + "}"),
      WithUrl("https://pk-lf-1:" + secret + "@store/x"),
      WithUrl("'ftp://pk-lf-1:" + secret + "@store/x'"),
      WithUrl("'https://pk:" + secret + "@st ore/x?q#f'"),
  };
  for (const Http& h : configs) {
    const std::string message = ErrorOf(h);
    EXPECT_NE(message, "<loaded>") << Yaml(h);
    EXPECT_THAT(message, Not(HasSubstr(secret))) << Yaml(h);
    EXPECT_THAT(message, Not(HasSubstr("Tr0ub4dor"))) << Yaml(h);
  }
  ::unsetenv("TG_HTTP_TEST_SECRET");
  std::filesystem::remove(file);
}

// A bearer token or header value is written into the request as it is: a line break in it
// would let whoever writes the secret file add headers.
TEST(HttpConfig, HeaderSecretsMustNotHoldControlCharacters) {
  ::setenv("TG_HTTP_TEST_SECRET", "tok\r\nX-Injected: 1", 1);
  const std::string message =
      ErrorOf(WithAuth("{scheme: bearer, secret_env: TG_HTTP_TEST_SECRET}"));
  EXPECT_THAT(message, HasSubstr("connections[0].upstream.auth.secret_env: the secret contains a "
                                 "control character, which cannot be sent in an HTTP header"));
  EXPECT_THAT(message, Not(HasSubstr("Injected")));
  // Basic authentication base64-encodes it.
  auto basic = Load(WithAuth("{username: pk, secret_env: TG_HTTP_TEST_SECRET}"));
  ::unsetenv("TG_HTTP_TEST_SECRET");
  ASSERT_TRUE(basic.ok()) << basic.status();
}

// ---- reload --------------------------------------------------------------------------------

TEST(HttpConfig, OnlyListenAndTypeNeedARestart) {
  auto base = Load(Http{});
  ASSERT_TRUE(base.ok()) << base.status();
  auto changes = [&base](const Http& h) {
    auto after = Load(h);
    EXPECT_TRUE(after.ok()) << after.status();
    return after.ok() ? RestartRequiredChanges(**base, **after)
                      : std::vector<std::string>{"<error>"};
  };
  EXPECT_THAT(changes(Http{}), IsEmpty());
  Http reloadable = WithUpstream("      timeout: 5s\n      max_idle_connections: 2\n",
                                 "http://other.internal:8080/x");
  reloadable.auth = "      auth: {scheme: bearer, secret: t, allow_inline_secret: true}\n";
  reloadable.connection = "    max_request_bytes: 1MiB\n    fetch_route: b\n";
  reloadable.routes =
      "    routes:\n"
      "      - {name: a, path: '/x?id={trace_id}', response_trace_id: 'data[*].id'}\n"
      "      - {name: b, path: '/y/{trace_id}', response_trace_id: id, allow_query: [p]}\n";
  EXPECT_THAT(changes(reloadable), IsEmpty());
  std::string moved = Yaml(Http{});
  moved.replace(moved.find("8443"), 4, "8444");
  auto after = LoadString(moved, "t.yaml");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_THAT(RestartRequiredChanges(**base, **after), ElementsAre("connections[web].listen"));
  auto postgres = LoadString(R"(connections:
  - name: web
    listen: 127.0.0.1:8443
    backend: {host: db, database: d, user: u, password: p, allow_inline_password: true}
)",
                             "t.yaml");
  ASSERT_TRUE(postgres.ok()) << postgres.status();
  EXPECT_THAT(RestartRequiredChanges(**base, **postgres), ElementsAre("connections[web].type"));
}

}  // namespace
}  // namespace tracegate::config
