#include "config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "config/scalars.h"

namespace tracegate::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using namespace std::chrono_literals;

// A minimal valid connection. Line numbers of its keys (1-based) when it starts the document:
//   1 connections:   2 - name   3 listen   4 backend:   5 host   6 database   7 user
//   8 password   9 allow_inline_password
constexpr const char* kMinimal = R"(connections:
  - name: pg
    listen: 127.0.0.1:6432
    backend:
      host: db.internal
      database: traces
      user: tracegate
      password: inline-pw
      allow_inline_password: true
)";

const char* const kVerifier =
    "SCRAM-SHA-256$4096:dHJhY2VnYXRlLWRlbW8tcw==$CKCA8w/SGM2WdC1Zeqqo1tE0G12kB4V+AZ3GklHE/0A=:"
    "QBHFrI3ns+eJo82ee4xR4EBtrPlzH3yAAdFjMoxH6WU=";

std::string ErrorOf(const std::string& yaml) {
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadString(yaml, "t.yaml");
  if (config.ok()) {
    return "<loaded>";
  }
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

std::shared_ptr<const Config> MustLoad(const std::string& yaml) {
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadString(yaml, "t.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : nullptr;
}

// A fresh directory under the test temp dir.
std::filesystem::path MakeTempDir() {
  std::string pattern = (std::filesystem::path(::testing::TempDir()) / "config_test.XXXXXX");
  char* dir = ::mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr);
  return std::filesystem::path(pattern);
}

void WriteFile(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (value == nullptr) {
      ::unsetenv(name);
    } else {
      ::setenv(name, value, 1);
    }
  }
  ~ScopedEnv() { ::unsetenv(name_); }

 private:
  const char* name_;
};

// ---- good configs ------------------------------------------------------------------------

TEST(LoadFile, FullConfigLoadsWithEveryValue) {
  std::filesystem::path dir = MakeTempDir();
  WriteFile(dir / "secrets/backend.pw", "s3cret-from-file\n");
  WriteFile(dir / "tracegate.yaml", absl::StrCat(R"(workers: 3
shutdown_grace: 2500ms
log_level: debug
admin:
  listen: "[::1]:9187"
tls:
  cert_file: certs/server.crt
  key_file: /etc/tracegate/server.key
limits:
  max_startup_length: 2KiB
  max_message_length: 1GiB
  max_auth_message_length: 4KiB
  max_unauthenticated: 64
connections:
  - name: traces-pg
    type: postgres
    listen: 0.0.0.0:6432
    require_tls: true
    idle_timeout: 90s
    session_timeout: 0s
    backend:
      host: "[fd00::5]"
      port: 6543
      database: traces
      user: tracegate
      password_file: secrets/backend.pw
      tls: verify-full
      ca_file: ca/root.pem
      connect_timeout: 1s
      statement_timeout: 0ms
      read_only: false
    pool:
      max_size: 4
      idle_timeout: 2h
    users:
      - name: alice
        scram_verifier: ")",
                                                 kVerifier, R"("
      - name: bob
        scram_verifier: ")",
                                                 kVerifier, R"("
  - name: second_1
    listen: 127.0.0.1:0
    backend: {host: db, database: d, user: u, password: p, allow_inline_password: true}
)"));
  absl::StatusOr<std::shared_ptr<const Config>> loaded = LoadFile(dir / "tracegate.yaml");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Config& c = **loaded;
  EXPECT_EQ(c.source, (dir / "tracegate.yaml").string());
  EXPECT_EQ(c.workers, 3u);
  EXPECT_EQ(c.shutdown_grace, 2500ms);
  EXPECT_EQ(c.log_level, "debug");
  ASSERT_TRUE(c.admin.has_value());
  EXPECT_EQ(c.admin->host, "::1");
  EXPECT_EQ(c.admin->port, 9187);
  EXPECT_EQ(c.tls.cert_file, (dir / "certs/server.crt").string());
  EXPECT_EQ(c.tls.key_file, "/etc/tracegate/server.key");
  EXPECT_EQ(c.limits.max_startup_length, 2048u);
  EXPECT_EQ(c.limits.max_message_length, 1u << 30);
  EXPECT_EQ(c.limits.max_auth_message_length, 4096u);
  EXPECT_EQ(c.limits.max_unauthenticated, 64u);
  ASSERT_EQ(c.connections.size(), 2u);
  const Connection& pg = c.connections[0];
  EXPECT_EQ(pg.name, "traces-pg");
  EXPECT_EQ(pg.listen.host, "0.0.0.0");
  EXPECT_EQ(pg.listen.port, 6432);
  EXPECT_TRUE(pg.require_tls);
  EXPECT_EQ(pg.idle_timeout, 90s);
  EXPECT_EQ(pg.session_timeout, 0ms);
  EXPECT_EQ(pg.backend.host, "fd00::5");
  EXPECT_EQ(pg.backend.port, 6543);
  EXPECT_EQ(pg.backend.database, "traces");
  EXPECT_EQ(pg.backend.user, "tracegate");
  EXPECT_EQ(pg.backend.password, "s3cret-from-file");
  EXPECT_EQ(pg.backend.tls, BackendTlsMode::kVerifyFull);
  EXPECT_EQ(pg.backend.ca_file, (dir / "ca/root.pem").string());
  EXPECT_EQ(pg.backend.connect_timeout, 1s);
  EXPECT_EQ(pg.backend.statement_timeout, 0ms);
  EXPECT_FALSE(pg.backend.read_only);
  EXPECT_EQ(pg.pool.max_size, 4u);
  EXPECT_EQ(pg.pool.idle_timeout, 2h);
  ASSERT_EQ(pg.users.size(), 2u);
  EXPECT_EQ(pg.users[0].name, "alice");
  EXPECT_EQ(pg.users[0].scram_verifier, kVerifier);
  EXPECT_EQ(pg.users[1].name, "bob");
  EXPECT_EQ(c.connections[1].name, "second_1");
  EXPECT_EQ(c.connections[1].listen.port, 0);
  EXPECT_EQ(c.connections[1].backend.password, "p");
}

TEST(LoadString, DefaultsMatchTheHeader) {
  std::shared_ptr<const Config> c = MustLoad(kMinimal);
  ASSERT_NE(c, nullptr);
  // The key tables declare defaults; they must agree with the struct initializers in
  // config.h, which code that builds a Config by hand relies on.
  const Config fresh;
  EXPECT_EQ(c->workers, fresh.workers);
  EXPECT_EQ(c->shutdown_grace, fresh.shutdown_grace);
  EXPECT_EQ(c->log_level, fresh.log_level);
  EXPECT_EQ(c->admin, fresh.admin);
  EXPECT_EQ(c->tls.cert_file, fresh.tls.cert_file);
  EXPECT_EQ(c->tls.key_file, fresh.tls.key_file);
  EXPECT_EQ(c->limits.max_startup_length, fresh.limits.max_startup_length);
  EXPECT_EQ(c->limits.max_message_length, fresh.limits.max_message_length);
  ASSERT_EQ(c->connections.size(), 1u);
  const Connection& pg = c->connections[0];
  const Connection fresh_pg;
  EXPECT_EQ(pg.require_tls, fresh_pg.require_tls);
  EXPECT_EQ(pg.idle_timeout, fresh_pg.idle_timeout);
  EXPECT_EQ(pg.session_timeout, fresh_pg.session_timeout);
  EXPECT_EQ(pg.backend.port, fresh_pg.backend.port);
  EXPECT_EQ(pg.backend.tls, fresh_pg.backend.tls);
  EXPECT_EQ(pg.backend.ca_file, fresh_pg.backend.ca_file);
  EXPECT_EQ(pg.backend.connect_timeout, fresh_pg.backend.connect_timeout);
  EXPECT_EQ(pg.backend.statement_timeout, fresh_pg.backend.statement_timeout);
  EXPECT_EQ(pg.backend.read_only, fresh_pg.backend.read_only);
  EXPECT_EQ(pg.pool.max_size, fresh_pg.pool.max_size);
  EXPECT_EQ(pg.pool.idle_timeout, fresh_pg.pool.idle_timeout);
  EXPECT_THAT(pg.users, IsEmpty());
  // And the documented values themselves.
  EXPECT_EQ(c->workers, 0u);
  EXPECT_EQ(c->shutdown_grace, 10s);
  EXPECT_EQ(c->log_level, "info");
  EXPECT_FALSE(c->admin.has_value());
  EXPECT_EQ(c->limits.max_startup_length, 10000u);
  EXPECT_EQ(c->limits.max_message_length, 64u << 20);
  EXPECT_EQ(c->limits.max_auth_message_length, 1024u);  // PostgreSQL's SASL message cap
  EXPECT_EQ(c->limits.max_unauthenticated, 256u);
  EXPECT_EQ(pg.idle_timeout, 5min);
  EXPECT_EQ(pg.session_timeout, 1h);
  EXPECT_EQ(pg.backend.port, 5432);
  EXPECT_EQ(pg.backend.tls, BackendTlsMode::kDisable);
  EXPECT_EQ(pg.backend.connect_timeout, 5s);
  EXPECT_EQ(pg.backend.statement_timeout, 30s);
  EXPECT_TRUE(pg.backend.read_only);
  EXPECT_EQ(pg.pool.max_size, 32u);
  EXPECT_EQ(pg.pool.idle_timeout, 60s);
}

TEST(LoadFile, ExampleConfigLoads) {
  ScopedEnv env("TRACEGATE_BACKEND_PASSWORD", "example-pw");
  ScopedEnv upstream_env("TRACEGATE_LANGFUSE_SECRET_KEY", "example-sk");
  absl::StatusOr<std::shared_ptr<const Config>> loaded = LoadFile(TRACEGATE_EXAMPLE_CONFIG);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Config& c = **loaded;
  ASSERT_EQ(c.connections.size(), 2u);
  EXPECT_EQ(c.connections[0].name, "traces-pg");
  EXPECT_EQ(c.connections[0].type, ConnectionType::kPostgres);
  EXPECT_EQ(c.connections[0].backend.password, "example-pw");
  EXPECT_EQ(c.connections[0].fetch_query, "trace-by-id");
  ASSERT_EQ(c.connections[0].users.size(), 1u);
  EXPECT_EQ(c.connections[0].users[0].name, "alice");
  // The http example documents every key with its default value (except those it must set).
  const Connection& http = c.connections[1];
  EXPECT_EQ(http.name, "traces-http");
  EXPECT_EQ(http.type, ConnectionType::kHttp);
  EXPECT_EQ(http.upstream.auth.secret, "example-sk");
  EXPECT_EQ(http.upstream.host, "langfuse.internal");
  const Connection fresh;
  EXPECT_EQ(http.max_request_bytes, fresh.max_request_bytes);
  EXPECT_EQ(http.upstream.verify_tls, fresh.upstream.verify_tls);
  EXPECT_EQ(http.upstream.connect_timeout, fresh.upstream.connect_timeout);
  EXPECT_EQ(http.upstream.timeout, fresh.upstream.timeout);
  EXPECT_EQ(http.upstream.max_response_bytes, fresh.upstream.max_response_bytes);
  EXPECT_EQ(http.upstream.max_idle_connections, fresh.upstream.max_idle_connections);
  ASSERT_EQ(http.routes.size(), 2u);
  EXPECT_EQ(http.fetch_route, "trace");
  // Relative paths resolve against the example's own directory.
  std::filesystem::path dir = std::filesystem::path(TRACEGATE_EXAMPLE_CONFIG).parent_path();
  EXPECT_EQ(c.tls.cert_file, (dir / "certs/server.crt").lexically_normal().string());
  // The example's masking profile compiles, and its allow rule uses it.
  ASSERT_EQ(c.masking_profiles.size(), 1u);
  EXPECT_EQ(c.masking_profiles[0].name, "default");
  EXPECT_TRUE(c.maskers.contains("default"));
  ASSERT_EQ(c.policy.rules.size(), 2u);
  EXPECT_EQ(c.policy.rules[1].masking_profile, "default");
}

TEST(LoadFile, ExampleConfigNeedsItsSecretVariables) {
  ScopedEnv env("TRACEGATE_BACKEND_PASSWORD", nullptr);
  ScopedEnv upstream_env("TRACEGATE_LANGFUSE_SECRET_KEY", nullptr);
  absl::StatusOr<std::shared_ptr<const Config>> loaded = LoadFile(TRACEGATE_EXAMPLE_CONFIG);
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(),
              HasSubstr("connections[0].backend.password_env: environment variable "
                        "TRACEGATE_BACKEND_PASSWORD is not set"));
  EXPECT_THAT(loaded.status().message(),
              HasSubstr("connections[1].upstream.auth.secret_env: environment variable "
                        "TRACEGATE_LANGFUSE_SECRET_KEY is not set"));
}

TEST(LoadString, RelativePathsResolveAgainstWorkingDirectory) {
  std::shared_ptr<const Config> c =
      MustLoad(absl::StrCat("tls: {cert_file: certs/a.crt, key_file: ../b.key}\n", kMinimal));
  ASSERT_NE(c, nullptr);
  std::filesystem::path cwd = std::filesystem::current_path();
  EXPECT_EQ(c->tls.cert_file, (cwd / "certs/a.crt").string());
  EXPECT_EQ(c->tls.key_file, (cwd.parent_path() / "b.key").string());
}

// ---- backend authentication and TLS defaults (issue 18, items 6 and 7) ----------------------

std::string BackendWith(const std::string& listen, const std::string& backend_tail) {
  return absl::StrCat("connections:\n  - name: pg\n    listen: ", listen,
                      "\n    backend:\n      host: db.internal\n      database: d\n"
                      "      user: u\n      password: pw\n      allow_inline_password: true\n",
                      backend_tail);
}

TEST(BackendAuth, DefaultsToScramOnlyWithABoundedIterationCount) {
  std::shared_ptr<const Config> c = MustLoad(kMinimal);
  ASSERT_NE(c, nullptr);
  EXPECT_THAT(c->connections[0].backend.auth, ElementsAre("scram-sha-256"));
  EXPECT_EQ(c->connections[0].backend.max_scram_iterations, 100000u);
  EXPECT_FALSE(c->connections[0].require_tls);  // loopback listener
}

TEST(BackendAuth, ListedMethodsAndBoundAreTaken) {
  std::shared_ptr<const Config> c =
      MustLoad(BackendWith("127.0.0.1:6432",
                           "      tls: require\n      auth: [scram-sha-256, md5, password]\n"
                           "      max_scram_iterations: 200000\n"));
  ASSERT_NE(c, nullptr);
  EXPECT_THAT(c->connections[0].backend.auth, ElementsAre("scram-sha-256", "md5", "password"));
  EXPECT_EQ(c->connections[0].backend.max_scram_iterations, 200000u);
}

TEST(BackendAuth, RefusesUnknownEmptyAndCleartextOverTheNetwork) {
  struct Case {
    std::string tail;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {"      auth: [scram-sha-256, gss]\n",
            "expected one of scram-sha-256|md5|password, got \"gss\""},
           {"      auth: []\n", "backend.auth: must list at least one method"},
           {"      auth: md5\n", "expected a list of"},
           {"      auth: [password]\n",
            "lists password (cleartext) but tls is disable and the host is not loopback"},
           {"      max_scram_iterations: 100\n", "max_scram_iterations"},
           {"      max_scram_iterations: 10000001\n", "max_scram_iterations"},
       }) {
    EXPECT_THAT(ErrorOf(BackendWith("127.0.0.1:6432", c.tail)), HasSubstr(c.error)) << c.tail;
  }
  // Cleartext is allowed inside TLS, or to a backend on this host.
  EXPECT_EQ(ErrorOf(BackendWith("127.0.0.1:6432", "      tls: require\n      auth: [password]\n")),
            "<loaded>");
  std::string local = BackendWith("127.0.0.1:6432", "      auth: [password]\n");
  local.replace(local.find("db.internal"), 11, "127.0.0.1");
  EXPECT_EQ(ErrorOf(local), "<loaded>");
}

TEST(ClientTls, RequiredByDefaultOutsideLoopback) {
  // A wildcard listener without a certificate: the implicit require_tls cannot be met.
  EXPECT_THAT(ErrorOf(BackendWith("0.0.0.0:6432", "")),
              HasSubstr("require_tls (true by default on a listener that is not loopback)"));
  std::string opted_out = BackendWith("0.0.0.0:6432", "");
  opted_out.replace(opted_out.find("    backend:"), 0, "    require_tls: false\n");
  std::shared_ptr<const Config> c = MustLoad(opted_out);
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->connections[0].require_tls);
}

TEST(ClientTls, LoopbackHosts) {
  for (std::string_view host : {"localhost", "127.0.0.1", "127.1.2.3", "::1"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (std::string_view host : {"0.0.0.0", "::", "10.0.0.1", "db.internal", "128.0.0.1",
                                "localhost.example.com", "::2", ""}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

TEST(LoadString, PasswordFromEnvironment) {
  const std::string yaml = R"(connections:
  - name: pg
    listen: 127.0.0.1:6432
    backend: {host: db, database: d, user: u, password_env: TG_TEST_PW}
)";
  {
    ScopedEnv env("TG_TEST_PW", "from-env");
    std::shared_ptr<const Config> c = MustLoad(yaml);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->connections[0].backend.password, "from-env");
  }
  {
    ScopedEnv env("TG_TEST_PW", nullptr);
    EXPECT_EQ(ErrorOf(yaml),
              "t.yaml:4:61: connections[0].backend.password_env: environment variable TG_TEST_PW "
              "is not set");
  }
  {
    ScopedEnv env("TG_TEST_PW", "");
    EXPECT_EQ(ErrorOf(yaml),
              "t.yaml:4:61: connections[0].backend.password_env: environment variable TG_TEST_PW "
              "is empty");
  }
}

TEST(LoadString, PasswordFileStripsOneTrailingNewline) {
  std::filesystem::path dir = MakeTempDir();
  struct Case {
    std::string content;
    std::string password;
  };
  for (const Case& c : std::vector<Case>{{"pw", "pw"},
                                         {"pw\n", "pw"},
                                         {"pw\r\n", "pw"},
                                         {"pw\n\n", "pw\n"},
                                         {" pw \n", " pw "}}) {
    WriteFile(dir / "pw", c.content);
    std::shared_ptr<const Config> config = MustLoad(absl::StrCat(R"(connections:
  - name: pg
    listen: 127.0.0.1:6432
    backend: {host: db, database: d, user: u, password_file: )",
                                                                 (dir / "pw").string(), "}\n"));
    ASSERT_NE(config, nullptr);
    EXPECT_EQ(config->connections[0].backend.password, c.password);
  }
}

TEST(LoadString, PasswordFileErrorsNameThePath) {
  std::filesystem::path dir = MakeTempDir();
  auto yaml = [](const std::string& path) {
    return absl::StrCat(R"(connections:
  - name: pg
    listen: 127.0.0.1:6432
    backend:
      host: db
      database: d
      user: u
      password_file: )",
                        path, "\n");
  };
  std::string missing = (dir / "nope.pw").string();
  EXPECT_EQ(ErrorOf(yaml(missing)),
            absl::StrCat("t.yaml:8:22: connections[0].backend.password_file: cannot read \"",
                         missing, "\": No such file or directory"));
  EXPECT_EQ(ErrorOf(yaml(dir.string())),
            absl::StrCat("t.yaml:8:22: connections[0].backend.password_file: cannot read \"",
                         dir.string(), "\": not a regular file"));
  WriteFile(dir / "empty.pw", "\n");
  EXPECT_EQ(ErrorOf(yaml((dir / "empty.pw").string())),
            absl::StrCat("t.yaml:8:22: connections[0].backend.password_file: password file \"",
                         (dir / "empty.pw").string(), "\" is empty"));
}

// ---- errors ------------------------------------------------------------------------------

struct ErrorCase {
  const char* name;
  std::string yaml;
  std::string error;  // the whole message
};

std::vector<ErrorCase> ErrorCases() {
  const std::string m = kMinimal;
  // kMinimal with its backend password lines replaced by `backend_tail` (lines 8+).
  auto with_backend = [](const std::string& backend_tail) {
    return absl::StrCat(R"(connections:
  - name: pg
    listen: 127.0.0.1:6432
    backend:
      host: db.internal
      database: traces
      user: tracegate
)",
                        backend_tail);
  };
  const std::string inline_pw = "      password: pw\n      allow_inline_password: true\n";
  return {
      {"UnknownKeyWithSuggestion", "worker: 2\n" + m,
       R"(t.yaml:1:1: unknown key "worker" (did you mean "workers"?))"},
      {"UnknownKeyWithoutSuggestion", "colour: blue\n" + m, R"(t.yaml:1:1: unknown key "colour")"},
      {"UnknownNestedKey", m + "    pool: {max_sise: 3}\n",
       R"(t.yaml:10:12: connections[0].pool: unknown key "max_sise" (did you mean "max_size"?))"},
      {"BadEnum", with_backend(inline_pw + "      tls: sometimes\n"),
       "t.yaml:10:12: connections[0].backend.tls: "
       "expected one of disable|require|verify-full, got \"sometimes\""},
      {"BadLogLevel", "log_level: verbose\n" + m,
       R"(t.yaml:1:12: log_level: expected one of trace|debug|info|warn|error, got "verbose")"},
      {"DurationWithoutUnit", "shutdown_grace: 10\n" + m,
       R"(t.yaml:1:17: shutdown_grace: duration needs a unit (ms, s, m or h), e.g. "10s")"},
      {"DurationUnknownUnit", "shutdown_grace: 10sec\n" + m,
       R"(t.yaml:1:17: shutdown_grace: unknown duration unit "sec" (use ms, s, m or h))"},
      {"NegativeDuration", "shutdown_grace: -1s\n" + m,
       R"(t.yaml:1:17: shutdown_grace: durations cannot be negative, got "-1s")"},
      {"ZeroWhereNotAllowed", m + "    idle_timeout: 0s\n",
       "t.yaml:10:19: connections[0].idle_timeout: must be greater than 0"},
      {"MapWhereScalarExpected", "workers: {a: 1}\n" + m,
       "t.yaml:1:10: workers: expected an integer, got a map"},
      {"ListWhereScalarExpected", "log_level: [info]\n" + m,
       "t.yaml:1:12: log_level: expected one of trace|debug|info|warn|error, got a list"},
      {"EmptyValue", "workers:\n" + m,
       "t.yaml:1:1: workers: expected an integer, got an empty value"},
      {"ScalarWhereMapExpected", "admin: 9187\n" + m,
       "t.yaml:1:8: admin: expected a map, got a scalar"},
      {"ScalarWhereListExpected", "connections: pg\n",
       "t.yaml:1:14: connections: expected a list, got a scalar"},
      {"IntegerOutOfRange", "workers: 5000\n" + m,
       R"(t.yaml:1:10: workers: expected an integer from 0 to 1024, got "5000")"},
      {"SizeUnit", "limits: {max_message_length: 64MB}\n" + m,
       "t.yaml:1:30: limits.max_message_length: "
       "unknown size unit \"MB\" (use KiB, MiB or GiB, or plain bytes)"},
      {"SizeOutOfRange", "limits: {max_message_length: 4GiB}\n" + m,
       "t.yaml:1:30: limits.max_message_length: "
       "size \"4GiB\" is out of range (5 to 1073741824 bytes)"},
      {"AuthMessageTooSmall", "limits: {max_auth_message_length: 100}\n" + m,
       "t.yaml:1:35: limits.max_auth_message_length: "
       "size \"100\" is out of range (256 to 1048576 bytes)"},
      {"NoUnauthenticatedClients", "limits: {max_unauthenticated: 0}\n" + m,
       R"(t.yaml:1:31: limits.max_unauthenticated: expected an integer from 1 to 1000000, got "0")"},
      {"NotBoolean", m + "    require_tls: yes\n",
       R"(t.yaml:10:18: connections[0].require_tls: expected true or false, got "yes")"},
      {"MissingRequiredKey",
       "connections:\n  - name: pg\n    backend: {host: h, database: d, user: u, password_env: "
       "HOME}\n",
       "t.yaml:2:5: connections[0].listen: missing required key"},
      {"NoConnections", "workers: 1\n", "t.yaml:1:1: connections: missing required key"},
      {"EmptyConnections", "connections: []\n", "t.yaml:1:14: connections: needs at least 1 entry"},
      {"EmptyDocument", "# nothing\n",
       R"(t.yaml: the config is empty; it needs at least "connections")"},
      {"TopLevelNotAMap", "- a\n- b\n", "t.yaml:1:1: expected a map, got a list"},
      {"DuplicateKey", "workers: 1\nworkers: 2\n" + m,
       R"(t.yaml:2:1: duplicate key "workers" (first set on line 1))"},
      {"YamlSyntaxError", "workers: [1, 2\n" + m,
       "t.yaml:2:12: YAML syntax error: end of sequence flow not found"},
      // yaml-cpp appends the offending character; it may belong to a secret, so it is cut.
      {"YamlBadEscape", with_backend("      password: \"ab\\qc\"\n"),
       "t.yaml:8:22: YAML syntax error: unknown escape character"},
      {"StrayComma", ",1\n",
       "t.yaml: the config is empty; it needs at least \"connections\"\n"
       "t.yaml:1:1: only one YAML document is allowed"},
      {"SecondDocument", m + "---\nworkers: 1\n", "t.yaml:10:1: only one YAML document is allowed"},
      // An http connection has its own required keys and none of a postgres one's.
      {"HttpConnectionWithPostgresKeys", m + "    type: http\n",
       "t.yaml:2:5: connections[0].upstream: missing required key\n"
       "t.yaml:2:5: connections[0].routes: missing required key\n"
       "t.yaml:5:7: connections[0].backend: only for type: postgres"},
      // An unknown type says nothing about the keys that depend on it.
      {"UnknownConnectionType", m + "    type: mysql\n    upstream: {}\n",
       R"(t.yaml:10:11: connections[0].type: expected one of postgres|http, got "mysql")"},
      {"BackendRequiredForPostgres", "connections:\n  - name: pg\n    listen: 127.0.0.1:1\n",
       "t.yaml:2:5: connections[0].backend: missing required key"},
      {"UpstreamOnPostgres", m + "    upstream: {url: http://store}\n",
       "t.yaml:10:15: connections[0].upstream: only for type: http"},
      {"RoutesOnPostgres", m + "    routes: []\n",
       "t.yaml:10:13: connections[0].routes: only for type: http"},
      {"FetchRouteOnPostgres", m + "    fetch_route: trace\n",
       "t.yaml:10:18: connections[0].fetch_route: only for type: http"},
      {"MaxRequestBytesOnPostgres", m + "    max_request_bytes: 1MiB\n",
       "t.yaml:10:24: connections[0].max_request_bytes: only for type: http"},
      {"FetchQueryUnknown",
       m + "    gate: {queries: [{name: by-id, sql: select 1}]}\n    fetch_query: by-idd\n",
       "t.yaml:11:18: connections[0].fetch_query: no query in gate.queries is named \"by-idd\""},
      {"FetchQueryWithSecondParameter",
       m + "    fetch_query: by-id\n    gate:\n      queries:\n"
           "        - {name: by-id, sql: 'select * from t where id = $1 limit $2'}\n",
       "t.yaml:10:18: connections[0].fetch_query: query \"by-id\" must take the trace id as $1 and "
       "no other parameter"},
      {"FetchQueryWithoutParameter",
       m + "    fetch_query: all\n    gate: {queries: [{name: all, sql: select * from t}]}\n",
       "t.yaml:10:18: connections[0].fetch_query: query \"all\" must take the trace id as $1 and "
       "no other parameter"},
      {"BadConnectionName",
       "connections:\n  - name: Traces PG\n    listen: 127.0.0.1:1\n"
       "    backend: {host: h, database: d, user: u, password_env: HOME}\n",
       "t.yaml:2:11: connections[0].name: "
       "expected 1 to 63 characters of a-z, 0-9, '-' and '_', got \"Traces PG\""},
      {"ListenWithoutPort", "admin: {listen: localhost}\n" + m,
       R"(t.yaml:1:17: admin.listen: expected host:port like 127.0.0.1:6432, got "localhost")"},
      {"Ipv6WithoutBrackets", "admin: {listen: \"::1:9187\"}\n" + m,
       "t.yaml:1:17: admin.listen: "
       "IPv6 addresses need brackets, e.g. [::1]:6432, got \"::1:9187\""},
      {"PortOutOfRange", "admin: {listen: \"127.0.0.1:70000\"}\n" + m,
       "t.yaml:1:17: admin.listen: "
       "expected a port from 0 to 65535 after the host, got \"127.0.0.1:70000\""},
      {"BackendPortZero", with_backend(inline_pw + "      port: 0\n"),
       "t.yaml:10:13: connections[0].backend.port: "
       "expected an integer from 1 to 65535, got \"0\""},
      {"NoPasswordSource", with_backend(""),
       "t.yaml:5:7: connections[0].backend: needs a password source: password_file or "
       "password_env (or password, with allow_inline_password: true)"},
      {"TwoPasswordSources", with_backend(inline_pw + "      password_env: HOME\n"),
       "t.yaml:10:21: connections[0].backend.password_env: set only one of password_file, "
       "password_env and password"},
      {"InlinePasswordNotAllowed", with_backend("      password: pw\n"),
       "t.yaml:8:17: connections[0].backend.password: an inline password is accepted only with "
       "allow_inline_password: true (demos and tests); use password_file or password_env"},
      {"BadEnvVarName", with_backend("      password_env: 1-x\n"),
       "t.yaml:8:21: connections[0].backend.password_env: "
       "expected an environment variable name like TRACEGATE_BACKEND_PASSWORD, got \"1-x\""},
      {"CaFileWithoutTls", with_backend(inline_pw + "      ca_file: ca.pem\n"),
       "t.yaml:10:16: connections[0].backend.ca_file: is only used with tls: verify-full"},
      {"CaFileWithTlsRequire",
       with_backend(inline_pw + "      tls: require\n      ca_file: ca.pem\n"),
       "t.yaml:11:16: connections[0].backend.ca_file: is only used with tls: verify-full"},
      {"TlsCertWithoutKey", "tls:\n  cert_file: a.crt\n" + m,
       "t.yaml:2:3: tls: cert_file and key_file go together; key_file is missing"},
      {"RequireTlsWithoutCertificate", m + "    require_tls: true\n",
       "t.yaml:10:18: connections[0].require_tls: require_tls (true by default on a listener that "
       "is not loopback) needs tls.cert_file and tls.key_file; set require_tls: false to serve "
       "clients without TLS"},
      {"DuplicateConnectionName",
       m + "  - name: pg\n    listen: 127.0.0.1:6433\n"
           "    backend: {host: h, database: d, user: u, password_env: HOME}\n",
       "t.yaml:10:11: connections[1].name: "
       "duplicate connection name \"pg\" (also connections[0].name)"},
      {"DuplicateListen",
       m + "  - name: pg2\n    listen: 127.0.0.1:6432\n"
           "    backend: {host: h, database: d, user: u, password_env: HOME}\n",
       "t.yaml:11:13: connections[1].listen: address 127.0.0.1:6432 is also used by "
       "connections[0].listen"},
      {"ListenClashesWithAdmin", "admin: {listen: 127.0.0.1:6432}\n" + m,
       "t.yaml:4:13: connections[0].listen: address 127.0.0.1:6432 is also used by admin.listen"},
      {"BadVerifier", m + "    users:\n      - name: alice\n        scram_verifier: md5abcdef\n",
       "t.yaml:12:25: connections[0].users[0].scram_verifier: not a SCRAM-SHA-256 verifier; "
       "expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"},
      {"VerifierWithShortKey",
       m + "    users:\n      - name: alice\n        scram_verifier: "
           "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA\n",
       "t.yaml:12:25: connections[0].users[0].scram_verifier: malformed verifier: StoredKey and "
       "ServerKey must each be 32 bytes of base64"},
      {"MissingVerifier", m + "    users:\n      - name: alice\n",
       "t.yaml:11:9: connections[0].users[0].scram_verifier: missing required key"},
      {"EmptyUserName",
       absl::StrCat(m, "    users:\n      - name: \"\"\n        scram_verifier: \"", kVerifier,
                    "\"\n"),
       "t.yaml:11:15: connections[0].users[0].name: must not be empty"},
      {"DuplicateUserName",
       absl::StrCat(m, "    users:\n      - {name: al, scram_verifier: \"", kVerifier,
                    "\"}\n      - {name: al, scram_verifier: \"", kVerifier, "\"}\n"),
       "t.yaml:12:16: connections[0].users[1].name: "
       "duplicate user name \"al\" (also connections[0].users[0].name)"},
      {"NonScalarKey", "[a]: 1\n" + m, "t.yaml:1:1: keys must be plain names, got a list"},
  };
}

class LoadErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(LoadErrorTest, ReportsFileLineColumnPathAndReason) {
  EXPECT_EQ(ErrorOf(GetParam().yaml), GetParam().error) << GetParam().yaml;
}

INSTANTIATE_TEST_SUITE_P(Config, LoadErrorTest, ::testing::ValuesIn(ErrorCases()),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(LoadString, ReportsEveryErrorInDocumentOrder) {
  std::string message = ErrorOf(R"(worker: 2
log_level: loud
connections:
  - name: pg
    listen: nowhere
    idle_timeout: 5
    backend:
      host: db
      database: d
      tls: sometimes
      password: pw
      allow_inline_password: true
)");
  std::vector<std::string> lines = absl::StrSplit(message, '\n');
  EXPECT_THAT(
      lines,
      ElementsAre(
          R"(t.yaml:1:1: unknown key "worker" (did you mean "workers"?))",
          R"(t.yaml:2:12: log_level: expected one of trace|debug|info|warn|error, got "loud")",
          "t.yaml:5:13: connections[0].listen: "
          "expected host:port like 127.0.0.1:6432, got \"nowhere\"",
          "t.yaml:6:19: connections[0].idle_timeout: "
          "duration needs a unit (ms, s, m or h), e.g. \"5s\"",
          "t.yaml:8:7: connections[0].backend.user: missing required key",
          "t.yaml:10:12: connections[0].backend.tls: "
          "expected one of disable|require|verify-full, got \"sometimes\""));
}

TEST(LoadString, CapsTheNumberOfReportedErrors) {
  std::string yaml;
  for (int i = 0; i < 150; ++i) {
    absl::StrAppend(&yaml, "unknown_", i, ": 1\n");
  }
  std::vector<std::string> lines = absl::StrSplit(ErrorOf(yaml), '\n');
  ASSERT_EQ(lines.size(), 101u);
  EXPECT_EQ(lines.back(), "t.yaml: 51 more errors not shown");  // 150 unknown + connections
}

TEST(LoadString, AliasExpansionIsBounded) {
  // 256 connections aliasing one whose users list aliases one user 9999 times: a 30 KB file
  // naming 2.5 million users. Reading stops at the key budget instead of taking seconds.
  std::string users = "[&u {name: a, scram_verifier: x}";
  for (int i = 0; i < 9999; ++i) {
    users += ", *u";
  }
  std::string yaml = absl::StrCat(
      "connections:\n  - &c {name: x, listen: \"127.0.0.1:0\", backend: {host: h, database: d, "
      "user: u, password: p, allow_inline_password: true}, users: ",
      users, "]}\n");
  for (int i = 0; i < 255; ++i) {
    yaml += "  - *c\n";
  }
  std::vector<std::string> lines = absl::StrSplit(ErrorOf(yaml), '\n');
  EXPECT_THAT(lines.front(), ::testing::MatchesRegex(
                                 "t\\.yaml:2:[0-9]+: the config has more than 200000 keys .*"));
}

// ---- secrets -----------------------------------------------------------------------------

TEST(LoadString, SecretsNeverAppearInErrors) {
  const std::string secret = "Tr0ub4dor-and-3-SECRET";
  std::filesystem::path dir = MakeTempDir();
  WriteFile(dir / "pw", secret + "\n");
  ScopedEnv env("TG_TEST_SECRET_PW", secret.c_str());
  auto connection = [](const std::string& backend_extra) {
    return absl::StrCat(R"(log_level: loud
connections:
  - name: pg
    listen: 127.0.0.1:6432
    backend:
      host: db
      database: d
      user: u
      tls: sometimes
)",
                        backend_extra);
  };
  const std::string file = (dir / "pw").string();
  std::vector<std::string> configs = {
      // Each loads the secret (or holds it inline) and has other errors besides.
      connection("      password_file: " + file + "\n"),
      connection("      password_env: TG_TEST_SECRET_PW\n"),
      connection("      password: " + secret + "\n"),  // inline without allow_inline_password
      connection("      password: " + secret + "\n      password_env: TG_TEST_SECRET_PW\n"),
      connection("      password: " + secret + "\n      password: " + secret + "\n"),
      connection("      password: [" + secret + "]\n"),
      connection("      password: {" + secret + ": 1}\n"),
      connection("      password: \"" + secret + "\n"),  // unterminated: YAML syntax error
      connection("      password_file: " + file + "\n      allow_inline_password: maybe\n"),
      connection("      password_file: " + file + "\n    users:\n      - name: a\n" +
                 "        scram_verifier: SCRAM-SHA-256$4096:" + secret + "\n"),
  };
  for (const std::string& yaml : configs) {
    std::string message = ErrorOf(yaml);
    EXPECT_NE(message, "<loaded>") << yaml;
    EXPECT_THAT(message, Not(HasSubstr(secret))) << yaml;
    EXPECT_THAT(message, Not(HasSubstr("Tr0ub4dor"))) << yaml;  // nor a prefix of it
  }
}

// ---- reload ------------------------------------------------------------------------------

TEST(RestartRequiredChanges, ListsOnlyKeysThatCannotBeReloaded) {
  std::shared_ptr<const Config> base = MustLoad(kMinimal);
  ASSERT_NE(base, nullptr);
  auto changes = [&base](const std::string& yaml) {
    std::shared_ptr<const Config> after = MustLoad(yaml);
    return after ? RestartRequiredChanges(*base, *after) : std::vector<std::string>{"<error>"};
  };
  const std::string m = kMinimal;
  EXPECT_THAT(changes(m), IsEmpty());
  EXPECT_THAT(changes("log_level: debug\nshutdown_grace: 1s\n" + m), IsEmpty());
  EXPECT_THAT(changes(m + "    pool: {max_size: 2}\n    idle_timeout: 1m\n"), IsEmpty());
  EXPECT_THAT(changes("workers: 4\n" + m), ElementsAre("workers"));
  EXPECT_THAT(changes("admin: {listen: 127.0.0.1:9187}\n" + m), ElementsAre("admin"));
  std::string moved = m;
  moved.replace(moved.find("6432"), 4, "7000");
  EXPECT_THAT(changes(moved), ElementsAre("connections[pg].listen"));
  EXPECT_THAT(changes(m + "    risk_query: select 1 where $1 = $1\n    fetch_query: q\n"
                          "    gate: {queries: [{name: q, sql: select 1 where $1 = $1}]}\n"),
              IsEmpty());
  std::string renamed = m;
  renamed.replace(renamed.find("name: pg"), 8, "name: pq");
  EXPECT_THAT(changes(renamed),
              ElementsAre("connections[pq] (added)", "connections[pg] (removed)"));
}

// ---- scalars -----------------------------------------------------------------------------

TEST(Scalars, Durations) {
  using internal::ParseDuration;
  EXPECT_EQ(*ParseDuration("0ms", 0ms), 0ms);
  EXPECT_EQ(*ParseDuration("250ms", 0ms), 250ms);
  EXPECT_EQ(*ParseDuration("30s", 0ms), 30s);
  EXPECT_EQ(*ParseDuration("5m", 0ms), 5min);
  EXPECT_EQ(*ParseDuration("8760h", 0ms), 8760h);
  for (const char* bad : {"", "s", "5", "5 x", "1h30m", "-5s", "5.5s", "8761h",
                          "99999999999999999999999s", "0x10s", "+5s"}) {
    EXPECT_FALSE(ParseDuration(bad, 0ms).ok()) << bad;
  }
  EXPECT_FALSE(ParseDuration("0s", 1ms).ok());
}

TEST(Scalars, ByteSizes) {
  using internal::ParseByteSize;
  EXPECT_EQ(*ParseByteSize("0", 0, 100), 0u);
  EXPECT_EQ(*ParseByteSize("64KiB", 0, 1 << 30), 65536u);
  EXPECT_EQ(*ParseByteSize("64MiB", 0, 1 << 30), 64u << 20);
  EXPECT_EQ(*ParseByteSize("1GiB", 0, 1 << 30), 1u << 30);
  for (const char* bad : {"", "KiB", "1GB", "1.5MiB", "-1", "2GiB", "18446744073709551616"}) {
    EXPECT_FALSE(ParseByteSize(bad, 0, 1 << 30).ok()) << bad;
  }
  EXPECT_FALSE(ParseByteSize("4", 5, 100).ok());
}

TEST(Scalars, ListenAddresses) {
  using internal::ParseListenAddress;
  EXPECT_EQ(*ParseListenAddress("127.0.0.1:6432"), (Endpoint{"127.0.0.1", 6432}));
  EXPECT_EQ(*ParseListenAddress("localhost:0"), (Endpoint{"localhost", 0}));
  EXPECT_EQ(*ParseListenAddress("[::1]:9187"), (Endpoint{"::1", 9187}));
  EXPECT_EQ(*ParseListenAddress("[fe80::1%eth0]:1"), (Endpoint{"fe80::1%eth0", 1}));
  for (const char* bad : {"", ":6432", "host", "host:", "host:x", "host:65536", "::1:80", "[::1]",
                          "[::1]80", "[]:80", "a b:80", "[::1]:-1"}) {
    EXPECT_FALSE(ParseListenAddress(bad).ok()) << bad;
  }
}

TEST(Scalars, ScramVerifiers) {
  using internal::CheckScramVerifier;
  EXPECT_TRUE(CheckScramVerifier(kVerifier).ok());
  const std::string key(43, 'A');
  for (const std::string& bad : {std::string("md5abc"), std::string("SCRAM-SHA-256$"),
                                 "SCRAM-SHA-256$0:c2FsdA==$" + key + "=:" + key + "=",
                                 "SCRAM-SHA-256$4096:c2Fsd$" + key + "=:" + key + "=",
                                 "SCRAM-SHA-256$4096:c2FsdA==$" + key + "=",
                                 "SCRAM-SHA-256$4096:c2FsdA==$" + key + "=:" + key + "=:x",
                                 "SCRAM-SHA-256$4096:c2FsdA==$" + key + "==:" + key + "="}) {
    EXPECT_FALSE(CheckScramVerifier(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace tracegate::config
