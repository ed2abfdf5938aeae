#include "config/audit_keys.h"

#include <chrono>
#include <filesystem>

#include "config/access_keys.h"
#include "config/scalars.h"

namespace tracegate::config::internal {

using namespace std::chrono_literals;

namespace {

void CheckAudit(const Item& map, Audit& audit, AuditExtra& extra, Context& ctx) {
  LoadOptionalSecret(map, "signing_key", {extra.signing_key_file, extra.signing_key_env},
                     audit.signing_key, ctx);
  if (!audit.signing_key.empty() &&
      audit.signing_key.find("PRIVATE KEY-----") == std::string::npos) {
    const std::string key = ChildPath(
        map.path, extra.signing_key_file.empty() ? "signing_key_env" : "signing_key_file");
    ctx.Error(ctx.MarkOf(key), key,
              "expected a PEM private key (openssl genpkey -algorithm ed25519)");
  }
}

}  // namespace

const Table<Audit, AuditExtra>& AuditKeys() {
  using K = Keys<Audit, AuditExtra>;
  static const auto* const table = new Table<Audit, AuditExtra>{
      .keys =
          {
              K::Optional("enabled", &Audit::enabled, true, kRestart, Boolean()),
              K::Optional("dir", &Audit::dir, "", kRestart, FilePath(true)),
              K::Optional("durability", &Audit::durability, AuditDurability::kStrict, kRestart,
                          OneOf<AuditDurability>({{"strict", AuditDurability::kStrict},
                                                  {"batched", AuditDurability::kBatched}})),
              K::Optional("flush_interval", &Audit::flush_interval, 10ms, kRestart, Period(1ms)),
              K::Optional("checkpoint_interval", &Audit::checkpoint_interval, 1s, kRestart,
                          Period(10ms)),
              K::Optional("segment_bytes", &Audit::segment_bytes, 64u << 20, kRestart,
                          ByteSize<uint64_t>(64u << 10, 1ull << 40)),
              K::Optional("retention_days", &Audit::retention_days, 0, kReloadable,
                          Count<uint32_t>(0, 36500)),
              K::Optional("max_session_bytes", &Audit::max_session_bytes, 256u << 20, kReloadable,
                          ByteSize<uint64_t>(4096, 1ull << 40)),
              K::Optional("signing_key_file", &AuditExtra::signing_key_file, "", kRestart,
                          FilePath(true)),
              K::Optional("signing_key_env", &AuditExtra::signing_key_env, "", kRestart,
                          EnvVarName()),
              K::Strings("auditor_groups", &Audit::auditor_groups, {}, kReloadable,
                         Text("a group name"), 64),
              K::Strings("auditor_issuers", &Audit::auditor_issuers, {}, kReloadable,
                         ConnectionName(), 64),
          },
      .check = CheckAudit,
  };
  return *table;
}

}  // namespace tracegate::config::internal
