// audit.*: what loads, the defaults, and the errors.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "config/config.h"

namespace tracegate::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr const char* kConnection = R"(connections:
  - name: traces-pg
    listen: 127.0.0.1:6432
    backend: {host: db, database: traces, user: tg, password: pw, allow_inline_password: true}
)";

absl::StatusOr<std::shared_ptr<const Config>> Load(const std::string& tail) {
  return LoadString(absl::StrCat(kConnection, tail), "/etc/tg/t.yaml");
}

std::string ErrorOf(const std::string& tail) {
  auto config = Load(tail);
  return config.ok() ? "<loaded>" : std::string(config.status().message());
}

TEST(AuditConfig, DefaultsRecordEverySessionBesideTheStateStore) {
  auto config = Load("state: {path: /var/lib/tg/state.db}\n");
  ASSERT_TRUE(config.ok()) << config.status();
  const Audit& a = (*config)->audit;
  EXPECT_TRUE(a.enabled);
  EXPECT_EQ(a.dir, "/var/lib/tg/audit");
  EXPECT_EQ(a.durability, AuditDurability::kStrict);
  EXPECT_EQ(a.checkpoint_interval, 1s);
  EXPECT_EQ(a.retention_days, 0u);
  EXPECT_TRUE(a.signing_key.empty());
}

// Without a state section both default beside the config file, never in the working
// directory of whoever starts the gateway.
TEST(AuditConfig, DefaultPathsAreBesideTheConfigFile) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "audit_keys_test_d";
  std::filesystem::create_directories(dir);
  const std::filesystem::path path = dir / "tracegate.yaml";
  {
    std::ofstream out(path);
    out << kConnection;
  }
  auto config = LoadFile(path.string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ((*config)->state.path, (dir / "tracegate.db").string());
  EXPECT_EQ((*config)->audit.dir, (dir / "audit").string());
  std::filesystem::remove_all(dir);
}

TEST(AuditConfig, FullSectionLoads) {
  const std::string key_file =
      (std::filesystem::temp_directory_path() / "audit_keys_test.pem").string();
  {
    std::ofstream out(key_file);
    out << "-----BEGIN PRIVATE "
           "KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+1Qh1bXyPKs3SKCXn8hE9qxu9wGa4tR5pQD2sDw4cq\n"
           "-----END PRIVATE KEY-----\n";
  }
  auto config = Load(absl::StrCat(R"(audit:
  dir: rec
  durability: batched
  flush_interval: 25ms
  checkpoint_interval: 5s
  segment_bytes: 1MiB
  retention_days: 30
  max_session_bytes: 8MiB
  signing_key_file: )",
                                  key_file, R"(
  auditor_groups: [auditors, security]
)"));
  ASSERT_TRUE(config.ok()) << config.status();
  const Audit& a = (*config)->audit;
  // Relative paths resolve against the config file's directory (the working directory for
  // LoadString).
  EXPECT_EQ(a.dir, (std::filesystem::current_path() / "rec").string());
  EXPECT_EQ(a.durability, AuditDurability::kBatched);
  EXPECT_EQ(a.flush_interval, 25ms);
  EXPECT_EQ(a.checkpoint_interval, 5s);
  EXPECT_EQ(a.segment_bytes, 1u << 20);
  EXPECT_EQ(a.retention_days, 30u);
  EXPECT_EQ(a.max_session_bytes, 8u << 20);
  EXPECT_THAT(a.signing_key, HasSubstr("BEGIN PRIVATE KEY"));
  EXPECT_EQ(a.auditor_groups, (std::vector<std::string>{"auditors", "security"}));
  std::filesystem::remove(key_file);
}

TEST(AuditConfig, Errors) {
  EXPECT_THAT(ErrorOf("audit: {durability: sometimes}\n"), HasSubstr("audit.durability"));
  EXPECT_THAT(ErrorOf("audit: {segment_bytes: 10}\n"), HasSubstr("audit.segment_bytes"));
  EXPECT_THAT(ErrorOf("audit: {bogus: 1}\n"), HasSubstr("audit: unknown key \"bogus\""));
  EXPECT_THAT(ErrorOf("audit: {signing_key_file: /nonexistent/k.pem}\n"),
              HasSubstr("audit.signing_key_file"));
  ::setenv("TG_AUDIT_TEST_KEY", "not a key at all", 1);
  const std::string not_pem = ErrorOf("audit: {signing_key_env: TG_AUDIT_TEST_KEY}\n");
  EXPECT_THAT(not_pem, HasSubstr("expected a PEM private key"));
  EXPECT_THAT(not_pem, Not(HasSubstr("not a key at all")));  // a secret is never quoted
}

// `tracegate audit` reads the config without the gateway's secrets: an auditor does not hold
// the backend password or the signing key.
TEST(AuditConfig, ToolsMayLoadWithoutSecrets) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / "audit_keys_test_no_secrets.yaml";
  {
    std::ofstream out(path);
    out << R"(connections:
  - name: traces-pg
    listen: 127.0.0.1:6432
    backend: {host: db, database: traces, user: tg, password_env: TG_AUDIT_TEST_UNSET}
audit: {signing_key_file: /nonexistent/signing.pem}
masking_profiles:
  - name: joinable
    default_strategy: {kind: pseudonymize}
    pseudonym_key_file: /nonexistent/pseudonym.key
)";
  }
  ::unsetenv("TG_AUDIT_TEST_UNSET");
  auto strict = LoadFile(path.string());
  ASSERT_FALSE(strict.ok());
  EXPECT_THAT(strict.status().message(), HasSubstr("TG_AUDIT_TEST_UNSET is not set"));
  EXPECT_THAT(strict.status().message(), HasSubstr("audit.signing_key_file"));
  auto lenient = LoadFile(path.string(), {.secrets_required = false});
  ASSERT_TRUE(lenient.ok()) << lenient.status();
  EXPECT_TRUE((*lenient)->connections[0].backend.password.empty());
  EXPECT_TRUE((*lenient)->audit.signing_key.empty());
  EXPECT_TRUE((*lenient)->maskers.empty());
  ASSERT_EQ((*lenient)->masking_profiles.size(), 1u);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace tracegate::config
