// The one place that declares every configuration key: the *Keys() tables below list, per
// YAML map, each key's name, whether it is required, its default, whether a reload may change
// it, and how its value is parsed. Checks that span several keys follow each table.
// tracegate.example.yaml at the repository root documents the same keys for operators.

#include "config/config.h"

#include <arpa/inet.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "config/access_keys.h"
#include "config/approval_keys.h"
#include "config/audit_keys.h"
#include "config/http_keys.h"
#include "config/masking_keys.h"
#include "config/scalars.h"
#include "config/schema.h"

namespace tracegate::config {
namespace {

using namespace std::chrono_literals;
using internal::Boolean;
using internal::ByteSize;
using internal::ConnectionName;
using internal::Context;
using internal::Count;
using internal::ElementPath;
using internal::EnvVarName;
using internal::FilePath;
using internal::HostName;
using internal::Item;
using internal::Key;
using internal::Keys;
using internal::kOptional;
using internal::kReloadable;
using internal::kRequired;
using internal::kRestart;
using internal::ListenAddress;
using internal::NoExtra;
using internal::NotingValidity;
using internal::OneOf;
using internal::Period;
using internal::Quote;
using internal::RequiredSecretSources;
using internal::RoleName;
using internal::ScalarType;
using internal::ScramVerifier;
using internal::Secret;
using internal::SqlName;
using internal::Table;
using internal::Text;

constexpr size_t kMaxConnections = 256;
constexpr size_t kMaxUsersPerConnection = 10000;
constexpr size_t kMaxConfigFileBytes = 16 << 20;
constexpr size_t kMaxRoutesPerConnection = 64;

// ---- tls ---------------------------------------------------------------------------------

void CheckTls(const Item& map, Tls& tls, NoExtra&, Context& ctx) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    ctx.Error(map.mark, map.path,
              absl::StrCat("cert_file and key_file go together; ",
                           tls.cert_file.empty() ? "cert_file" : "key_file", " is missing"));
  }
}

const Table<Tls>& TlsKeys() {
  using K = Keys<Tls>;
  static const auto* const table = new Table<Tls>{
      .keys =
          {
              K::Optional("cert_file", &Tls::cert_file, "", kReloadable, FilePath(true)),
              K::Optional("key_file", &Tls::key_file, "", kReloadable, FilePath(true)),
          },
      .check = CheckTls,
  };
  return *table;
}

// ---- limits ------------------------------------------------------------------------------

const Table<Limits>& LimitsKeys() {
  using K = Keys<Limits>;
  static const auto* const table = new Table<Limits>{
      .keys =
          {
              // 8 = length + protocol version, the smallest startup packet.
              K::Optional("max_startup_length", &Limits::max_startup_length, 10000, kReloadable,
                          ByteSize<uint32_t>(8, 1 << 20)),
              // 5 = type byte + length, the smallest message.
              K::Optional("max_message_length", &Limits::max_message_length, 64u << 20, kReloadable,
                          ByteSize<uint32_t>(5, 1u << 30)),
              // Before authentication; SCRAM's messages are about 100 bytes.
              K::Optional("max_auth_message_length", &Limits::max_auth_message_length, 1024,
                          kReloadable, ByteSize<uint32_t>(256, 1 << 20)),
              K::Optional("max_unauthenticated", &Limits::max_unauthenticated, 256, kReloadable,
                          Count<uint32_t>(1, 1000000)),
          },
  };
  return *table;
}

// ---- admin -------------------------------------------------------------------------------

struct AdminSection {
  Endpoint listen;
};

const Table<AdminSection>& AdminKeys() {
  using K = Keys<AdminSection>;
  static const auto* const table = new Table<AdminSection>{
      .keys =
          {
              K::Required("listen", &AdminSection::listen, kRestart, ListenAddress()),
          },
  };
  return *table;
}

void ParseAdmin(const Item& item, Config& config, NoExtra&, Context& ctx) {
  AdminSection admin;
  NoExtra none;
  ParseMap(AdminKeys(), item, admin, none, ctx);
  config.admin = admin.listen;
}

// ---- connections[].backend ---------------------------------------------------------------

void CheckBackend(const Item& map, Backend& backend, RequiredSecretSources& sources, Context& ctx) {
  internal::LoadRequiredSecret(map, "password", sources, backend.password, ctx);
  // Only verify-full verifies certificates; with disable or require a CA bundle would be
  // ignored, and an operator who set one likely believes the backend is authenticated.
  if (!backend.ca_file.empty() && backend.tls != BackendTlsMode::kVerifyFull) {
    const std::string key = internal::ChildPath(map.path, "ca_file");
    ctx.Error(ctx.MarkOf(key), key, "is only used with tls: verify-full");
  }
  const std::string auth_key = internal::ChildPath(map.path, "auth");
  if (backend.auth.empty()) {
    ctx.Error(ctx.MarkOf(auth_key), auth_key, "must list at least one method");
  }
  // Cleartext crosses the network only inside TLS; a loopback backend never leaves the host.
  const bool lists_password =
      std::find(backend.auth.begin(), backend.auth.end(), "password") != backend.auth.end();
  if (lists_password && backend.tls == BackendTlsMode::kDisable && !IsLoopbackHost(backend.host)) {
    ctx.Error(ctx.MarkOf(auth_key), auth_key,
              "lists password (cleartext) but tls is disable and the host is not loopback: "
              "the password would cross the network in the clear");
  }
}

ScalarType<std::string> BackendAuthMethod() {
  return {"an authentication method (scram-sha-256, md5, password)",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (text != "scram-sha-256" && text != "md5" && text != "password") {
              return absl::InvalidArgumentError(
                  absl::StrCat("expected one of scram-sha-256|md5|password, got ", Quote(text)));
            }
            return text;
          }};
}

const Table<Backend, RequiredSecretSources>& BackendKeys() {
  using K = Keys<Backend, RequiredSecretSources>;
  static const auto* const table = new Table<Backend, RequiredSecretSources>{
      .keys =
          {
              K::Required("host", &Backend::host, kReloadable, HostName()),
              K::Optional("port", &Backend::port, 5432, kReloadable, Count<uint16_t>(1, 65535)),
              K::Required("database", &Backend::database, kReloadable, Text("a database name")),
              K::Required("user", &Backend::user, kReloadable, RoleName()),
              K::Optional("password_file", &RequiredSecretSources::file, "", kReloadable,
                          FilePath(false)),
              K::Optional("password_env", &RequiredSecretSources::env, "", kReloadable,
                          EnvVarName()),
              K::Optional("password", &RequiredSecretSources::inline_value, "", kReloadable,
                          Secret()),
              K::Optional("allow_inline_password", &RequiredSecretSources::allow_inline, false,
                          kReloadable, Boolean()),
              K::Optional("tls", &Backend::tls, BackendTlsMode::kDisable, kReloadable,
                          OneOf<BackendTlsMode>({{"disable", BackendTlsMode::kDisable},
                                                 {"require", BackendTlsMode::kRequire},
                                                 {"verify-full", BackendTlsMode::kVerifyFull}})),
              K::Optional("ca_file", &Backend::ca_file, "", kReloadable, FilePath(true)),
              K::Strings("auth", &Backend::auth, {"scram-sha-256"}, kReloadable,
                         BackendAuthMethod(), 3),
              K::Optional("max_scram_iterations", &Backend::max_scram_iterations, 100000,
                          kReloadable, Count<uint32_t>(4096, 10000000)),
              K::Optional("connect_timeout", &Backend::connect_timeout, 5s, kReloadable,
                          Period(1ms)),
              K::Optional("statement_timeout", &Backend::statement_timeout, 30s, kReloadable,
                          Period(0ms)),
              K::Optional("read_only", &Backend::read_only, true, kReloadable, Boolean()),
          },
      .check = CheckBackend,
  };
  return *table;
}

// ---- connections[].pool, connections[].users ---------------------------------------------

const Table<Pool>& PoolKeys() {
  using K = Keys<Pool>;
  static const auto* const table = new Table<Pool>{
      .keys =
          {
              K::Optional("max_size", &Pool::max_size, 32, kReloadable, Count<uint32_t>(1, 10000)),
              K::Optional("idle_timeout", &Pool::idle_timeout, 60s, kReloadable, Period(1ms)),
          },
  };
  return *table;
}

const Table<StaticUser>& UserKeys() {
  using K = Keys<StaticUser>;
  static const auto* const table = new Table<StaticUser>{
      .keys =
          {
              K::Required("name", &StaticUser::name, kReloadable, RoleName()),
              K::Required("scram_verifier", &StaticUser::scram_verifier, kReloadable,
                          ScramVerifier()),
          },
  };
  return *table;
}

// ---- connections[].gate ------------------------------------------------------------------

const Table<TraceTable>& TraceTableKeys() {
  using K = Keys<TraceTable>;
  static const auto* const table = new Table<TraceTable>{
      .keys =
          {
              K::Required("table", &TraceTable::name, kReloadable, SqlName(true)),
              K::Required("id_column", &TraceTable::id_column, kReloadable, SqlName(false)),
          },
      .check =
          [](const Item&, TraceTable& t, NoExtra&, Context&) {
            if (const size_t dot = t.name.find('.'); dot != std::string::npos) {
              t.schema = t.name.substr(0, dot);
              t.name = t.name.substr(dot + 1);
            }
          },
  };
  return *table;
}

const Table<NamedQuery>& NamedQueryKeys() {
  using K = Keys<NamedQuery>;
  static const auto* const table = new Table<NamedQuery>{
      .keys =
          {
              K::Required("name", &NamedQuery::name, kReloadable, ConnectionName()),
              K::Required("sql", &NamedQuery::sql, kReloadable, Text("an SQL statement")),
          },
  };
  return *table;
}

void CheckGate(const Item& map, Gate& gate, NoExtra&, Context& ctx) {
  std::map<std::string, std::string> tables;
  for (size_t i = 0; i < gate.trace_tables.size(); ++i) {
    const TraceTable& t = gate.trace_tables[i];
    if (t.name.empty()) {
      continue;  // already reported
    }
    std::string path = ElementPath(internal::ChildPath(map.path, "trace_tables"), i) + ".table";
    auto [it, inserted] = tables.emplace(t.schema + "." + t.name, path);
    if (!inserted) {
      ctx.Error(ctx.MarkOf(path), path,
                absl::StrCat("table ", t.schema, ".", t.name, " is declared twice (also ",
                             it->second, ")"));
    }
  }
  std::map<std::string, std::string> names;
  for (size_t i = 0; i < gate.queries.size(); ++i) {
    std::string path = ElementPath(internal::ChildPath(map.path, "queries"), i) + ".name";
    auto [it, inserted] = names.emplace(gate.queries[i].name, path);
    if (!inserted && !gate.queries[i].name.empty()) {
      ctx.Error(ctx.MarkOf(path), path,
                absl::StrCat("duplicate query name ", Quote(gate.queries[i].name), " (also ",
                             it->second, ")"));
    }
  }
  if (gate.mode == GateMode::kStrict && gate.queries.empty()) {
    const std::string path = internal::ChildPath(map.path, "queries");
    ctx.Error(map.mark, path, "strict mode needs at least one query");
  }
}

const Table<Gate>& GateKeys() {
  using K = Keys<Gate>;
  static const auto* const table = new Table<Gate>{
      .keys =
          {
              K::Optional("mode", &Gate::mode, GateMode::kClassify, kReloadable,
                          OneOf<GateMode>(
                              {{"classify", GateMode::kClassify}, {"strict", GateMode::kStrict}})),
              K::List("trace_tables", kOptional, &Gate::trace_tables, TraceTableKeys, 0, 64,
                      nullptr),
              K::Strings("allow_functions", &Gate::allow_functions, {}, kReloadable, SqlName(true),
                         1000),
              K::List("queries", kOptional, &Gate::queries, NamedQueryKeys, 0, 1000, nullptr),
              K::Optional("cache_entries", &Gate::cache_entries, 10000, kReloadable,
                          Count<uint32_t>(0, 10000000)),
          },
      .check = CheckGate,
  };
  return *table;
}

// ---- connections[] -----------------------------------------------------------------------

// Keys that belong to one connection type wait here for the connection's check: `type` may
// come after them in the map.
struct ConnectionExtra {
  bool type_valid = true;
  std::vector<std::pair<absl::string_view, Item>> typed;  // key name, value
};

using ConnectionKey = Key<Connection, ConnectionExtra>;

absl::string_view TypeName(ConnectionType type) {
  return type == ConnectionType::kHttp ? "http" : "postgres";
}

// A key used by connections of one type only; `row` parses it (and says whether a connection
// of that type needs it).
struct TypedKey {
  ConnectionType type;
  ConnectionKey row;
};

const std::vector<TypedKey>& TypedKeys() {
  using K = Keys<Connection, ConnectionExtra>;
  constexpr ConnectionType kPostgres = ConnectionType::kPostgres;
  constexpr ConnectionType kHttp = ConnectionType::kHttp;
  static const auto* const keys = new std::vector<TypedKey>{
      {kPostgres, K::Section("backend", kRequired, &Connection::backend, BackendKeys)},
      {kPostgres, K::Section("pool", kOptional, &Connection::pool, PoolKeys)},
      {kPostgres, K::List("users", kOptional, &Connection::users, UserKeys, 0,
                          kMaxUsersPerConnection, nullptr)},
      {kPostgres, K::Section("gate", kOptional, &Connection::gate, GateKeys)},
      // Checked with the rules that use it (approval_keys.cpp CheckApprovalRules).
      {kPostgres,
       K::Optional("risk_query", &Connection::risk_query, "", kReloadable, Text("an SQL query"))},
      {kPostgres,
       K::Optional("fetch_query", &Connection::fetch_query, "", kReloadable, ConnectionName())},
      {kHttp, K::Section("upstream", kRequired, &Connection::upstream, internal::UpstreamKeys)},
      {kHttp, K::List("routes", kRequired, &Connection::routes, internal::RouteKeys, 1,
                      kMaxRoutesPerConnection, nullptr)},
      {kHttp,
       K::Optional("fetch_route", &Connection::fetch_route, "", kReloadable, ConnectionName())},
      {kHttp, K::Optional("max_request_bytes", &Connection::max_request_bytes, 64u << 10,
                          kReloadable, ByteSize<uint32_t>(1 << 10, 16 << 20))},
  };
  return *keys;
}

// The row of the connection table for a typed key: it only keeps the value for the check.
ConnectionKey Deferred(const TypedKey& key) {
  return ConnectionKey{
      .name = key.row.name,
      .need = kOptional,  // per type, in ParseTypedKeys
      .reload = key.row.reload,
      .parse = [name = key.row.name](const Item& item, Connection&, ConnectionExtra& extra,
                                     Context&) { extra.typed.emplace_back(name, item); },
      .apply_default = nullptr,  // in ParseTypedKeys
      .diff = key.row.diff,
  };
}

void ParseTypedKeys(const Item& map, Connection& connection, ConnectionExtra& extra, Context& ctx) {
  for (const TypedKey& key : TypedKeys()) {
    const auto value = std::find_if(extra.typed.begin(), extra.typed.end(),
                                    [&key](const auto& e) { return e.first == key.row.name; });
    if (value == extra.typed.end()) {
      if (extra.type_valid && key.type == connection.type && key.row.need == kRequired) {
        ctx.Error(map.mark, internal::ChildPath(map.path, key.row.name), "missing required key");
      } else if (key.row.apply_default) {
        key.row.apply_default(connection, extra);
      }
    } else if (!extra.type_valid) {
      continue;  // which type it belongs to is unknown; `type` is reported
    } else if (key.type != connection.type) {
      ctx.Error(value->second.mark, value->second.path,
                absl::StrCat("only for type: ", TypeName(key.type)));
    } else {
      key.row.parse(value->second, connection, extra, ctx);
    }
  }
}

// The one-call fetch runs a declared query with the trace id as its only parameter.
void CheckFetchQuery(const Item& map, const Connection& connection, Context& ctx) {
  if (connection.fetch_query.empty()) {
    return;
  }
  const std::string key = internal::ChildPath(map.path, "fetch_query");
  const std::vector<NamedQuery>& queries = connection.gate.queries;
  const auto query = std::find_if(queries.begin(), queries.end(), [&](const NamedQuery& q) {
    return q.name == connection.fetch_query;
  });
  if (query == queries.end()) {
    ctx.Error(ctx.MarkOf(key), key,
              absl::StrCat("no query in gate.queries is named ", Quote(connection.fetch_query)));
  } else if (!query->sql.empty() && !internal::UsesOnlyTheTraceId(query->sql)) {
    ctx.Error(ctx.MarkOf(key), key,
              absl::StrCat("query ", Quote(query->name),
                           " must take the trace id as $1 and no other parameter"));
  }
}

void CheckConnection(const Item& map, Connection& connection, ConnectionExtra& extra,
                     Context& ctx) {
  ParseTypedKeys(map, connection, extra, ctx);
  if (!extra.type_valid) {
    return;
  }
  if (connection.type == ConnectionType::kHttp) {
    internal::CheckHttpConnection(map, connection, ctx);
    return;
  }
  // A listener other clients can reach takes TLS only, unless the operator says otherwise
  // (issue 18, item 7): SCRAM keeps the password off the wire, but not the traces.
  if (!map.yaml["require_tls"].IsDefined() && !connection.listen.host.empty() &&
      !IsLoopbackHost(connection.listen.host)) {
    connection.require_tls = true;
  }
  std::map<std::string, std::string> first_by_name;
  for (size_t i = 0; i < connection.users.size(); ++i) {
    const std::string& name = connection.users[i].name;
    std::string path = ElementPath(internal::ChildPath(map.path, "users"), i) + ".name";
    if (name.empty()) {
      continue;  // already reported
    }
    auto [it, inserted] = first_by_name.emplace(name, path);
    if (!inserted) {
      ctx.Error(ctx.MarkOf(path), path,
                absl::StrCat("duplicate user name ", Quote(name), " (also ", it->second, ")"));
    }
  }
  CheckFetchQuery(map, connection, ctx);
}

const Table<Connection, ConnectionExtra>& ConnectionKeys() {
  using K = Keys<Connection, ConnectionExtra>;
  static const auto* const table = [] {
    auto* t = new Table<Connection, ConnectionExtra>{
        .keys =
            {
                K::Required("name", &Connection::name, kRestart, ConnectionName()),
                NotingValidity(
                    K::Optional("type", &Connection::type, ConnectionType::kPostgres, kRestart,
                                OneOf<ConnectionType>({{"postgres", ConnectionType::kPostgres},
                                                       {"http", ConnectionType::kHttp}})),
                    &ConnectionExtra::type_valid),
                K::Required("listen", &Connection::listen, kRestart, ListenAddress()),
                K::Optional("advertise_host", &Connection::advertise_host, "", kReloadable,
                            HostName()),
                K::Optional("require_tls", &Connection::require_tls, false, kReloadable, Boolean()),
                K::Optional("idle_timeout", &Connection::idle_timeout, 5min, kReloadable,
                            Period(1ms)),
                K::Optional("session_timeout", &Connection::session_timeout, 1h, kReloadable,
                            Period(0ms)),
                K::Optional("max_sessions", &Connection::max_sessions, 1000, kReloadable,
                            Count<uint32_t>(1, 1000000)),
            },
        .check = CheckConnection,
    };
    for (const TypedKey& key : TypedKeys()) {
      t->keys.push_back(Deferred(key));
    }
    return t;
  }();
  return *table;
}

// ---- top level ---------------------------------------------------------------------------

std::string FormatEndpoint(const Endpoint& e) {
  return e.host.find(':') == std::string::npos ? absl::StrCat(e.host, ":", e.port)
                                               : absl::StrCat("[", e.host, "]:", e.port);
}

void CheckConfig(const Item& item, Config& config, NoExtra&, Context& ctx) {
  // A default path is not passed through FilePath: resolve it against the config's
  // directory like any path written in the file.
  if (std::filesystem::path(config.state.path).is_relative()) {
    config.state.path = (ctx.base_dir() / config.state.path).lexically_normal().string();
  }
  if (config.audit.dir.empty()) {
    config.audit.dir =
        (std::filesystem::path(config.state.path).parent_path() / "audit").lexically_normal();
  }
  internal::CheckApprovalRules(item, config, ctx);
  std::map<std::string, std::string> name_owner;
  std::map<std::string, std::string> listen_owner;  // port 0 (pick a free one) never clashes
  if (config.admin.has_value() && config.admin->port != 0) {
    listen_owner.emplace(FormatEndpoint(*config.admin), "admin.listen");
  }
  for (size_t i = 0; i < config.connections.size(); ++i) {
    const Connection& c = config.connections[i];
    const std::string path = ElementPath("connections", i);
    if (!c.name.empty()) {
      auto [it, inserted] = name_owner.emplace(c.name, path + ".name");
      if (!inserted) {
        ctx.Error(
            ctx.MarkOf(path + ".name"), path + ".name",
            absl::StrCat("duplicate connection name ", Quote(c.name), " (also ", it->second, ")"));
      }
    }
    if (c.listen.port != 0) {
      auto [it, inserted] = listen_owner.emplace(FormatEndpoint(c.listen), path + ".listen");
      if (!inserted) {
        ctx.Error(
            ctx.MarkOf(path + ".listen"), path + ".listen",
            absl::StrCat("address ", FormatEndpoint(c.listen), " is also used by ", it->second));
      }
    }
    if (c.require_tls && config.tls.cert_file.empty()) {
      ctx.Error(ctx.MarkOf(path + ".require_tls"), path + ".require_tls",
                "require_tls (true by default on a listener that is not loopback) needs "
                "tls.cert_file and tls.key_file; set require_tls: false to serve clients "
                "without TLS");
    }
  }
  if (config.api.has_value() && config.api->listen.port != 0) {
    auto [it, inserted] = listen_owner.emplace(FormatEndpoint(config.api->listen), "api.listen");
    if (!inserted) {
      ctx.Error(ctx.MarkOf("api.listen"), "api.listen",
                absl::StrCat("address ", FormatEndpoint(config.api->listen), " is also used by ",
                             it->second));
    }
  }
  internal::CheckAccess(config, ctx);
}

const Table<Config>& ConfigKeys() {
  using K = Keys<Config>;
  static const auto* const table = new Table<Config>{
      .keys =
          {
              K::Optional("workers", &Config::workers, 0, kRestart, Count<uint32_t>(0, 1024)),
              K::Optional("shutdown_grace", &Config::shutdown_grace, 10s, kReloadable, Period(0ms)),
              K::Optional("log_level", &Config::log_level, "info", kReloadable,
                          OneOf<std::string>({{"trace", "trace"},
                                              {"debug", "debug"},
                                              {"info", "info"},
                                              {"warn", "warn"},
                                              {"error", "error"}})),
              K::Custom(
                  "admin", kOptional, kRestart, ParseAdmin,
                  [](Config& config, NoExtra&) { config.admin.reset(); },
                  [](const Config& a, const Config& b, const std::string& path,
                     std::vector<std::string>& out) {
                    if (a.admin != b.admin) {
                      out.push_back(path);
                    }
                  }),
              K::Section("tls", kOptional, &Config::tls, TlsKeys),
              K::Section("limits", kOptional, &Config::limits, LimitsKeys),
              K::List("connections", kRequired, &Config::connections, ConnectionKeys, 1,
                      kMaxConnections, [](const Connection& c) { return c.name; }),
              K::Custom(
                  "api", kOptional, kRestart, internal::ParseApi,
                  [](Config& config, NoExtra&) { config.api.reset(); },
                  [](const Config& a, const Config& b, const std::string& path,
                     std::vector<std::string>& out) {
                    if (a.api.has_value() != b.api.has_value() ||
                        (a.api && (a.api->listen != b.api->listen || a.api->tls != b.api->tls))) {
                      out.push_back(path);
                    }
                  }),
              K::Section("state", kOptional, &Config::state, internal::StateKeys),
              K::Section("approvals", kOptional, &Config::approvals, internal::ApprovalKeys),
              K::Section("audit", kOptional, &Config::audit, internal::AuditKeys),
              K::Section("identity", kOptional, &Config::identity, internal::IdentityKeys),
              K::Section("policy", kOptional, &Config::policy, internal::PolicyKeys),
              K::Custom(
                  "masking_profiles", kOptional, kReloadable, internal::ParseMaskingProfiles,
                  [](Config& config, NoExtra&) {
                    config.masking_profiles.clear();
                    config.maskers.clear();
                  },
                  nullptr),
          },
      .check = CheckConfig,
  };
  return *table;
}

// ---- loading -----------------------------------------------------------------------------

// Where a second YAML document starts, if there is one. Not YAML::LoadAll: in yaml-cpp 0.7 it
// loops forever, allocating, on input like ",1" (jbeder/yaml-cpp#1040, fixed upstream by
// #1319); here the parser is asked for at most two documents.
std::optional<YAML::Mark> SecondDocumentStart(const std::string& yaml) {
  class DocumentStarts : public YAML::EventHandler {
   public:
    void OnDocumentStart(const YAML::Mark& mark) override { last = mark; }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
    YAML::Mark last;
  };
  std::istringstream in(yaml);
  YAML::Parser parser(in);
  DocumentStarts starts;
  if (!parser.HandleNextDocument(starts) || !parser.HandleNextDocument(starts)) {
    return std::nullopt;
  }
  return starts.last;
}

absl::StatusOr<std::shared_ptr<const Config>> Load(const std::string& yaml,
                                                   const std::string& source,
                                                   std::filesystem::path base_dir,
                                                   bool secrets_required = true) {
  Context ctx(source, std::move(base_dir), secrets_required);
  auto config = std::make_shared<Config>();
  config->source = source;
  // yaml-cpp reports errors by throwing; this is the only place they are caught.
  try {
    YAML::Node root = YAML::Load(yaml);
    if (std::optional<YAML::Mark> second = SecondDocumentStart(yaml)) {
      ctx.Error(*second, "", "only one YAML document is allowed");
    }
    if (root.IsNull()) {
      ctx.Error(YAML::Mark::null_mark(), "",
                "the config is empty; it needs at least \"connections\"");
    } else {
      NoExtra none;
      ParseMap(ConfigKeys(), Item{root, "", root.Mark()}, *config, none, ctx);
    }
  } catch (const YAML::DeepRecursion& e) {
    ctx.Error(e.mark, "", "YAML syntax error: nested too deeply");
  } catch (const YAML::Exception& e) {
    // yaml-cpp's messages are fixed texts ("illegal map value"), but a few append a piece of
    // the document after a colon ("unknown escape character: q"); that piece may belong to a
    // secret, so it is dropped.
    std::string reason = e.msg.substr(0, e.msg.find(':'));
    ctx.Error(e.mark, "", absl::StrCat("YAML syntax error: ", absl::CHexEscape(reason)));
  }
  if (!ctx.ok()) {
    return absl::InvalidArgumentError(ctx.Report());
  }
  return std::shared_ptr<const Config>(std::move(config));
}

}  // namespace

bool IsLoopbackHost(std::string_view host) {
  if (host == "localhost") {
    return true;
  }
  const std::string text(host);
  unsigned char v4[4];
  if (inet_pton(AF_INET, text.c_str(), v4) == 1) {
    return v4[0] == 127;
  }
  unsigned char v6[16];
  if (inet_pton(AF_INET6, text.c_str(), v6) == 1) {
    static const unsigned char kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::equal(v6, v6 + 16, kLoopback);
  }
  return false;
}

absl::StatusOr<std::shared_ptr<const Config>> LoadFile(const std::string& path,
                                                       LoadOptions options) {
  absl::StatusOr<std::string> yaml = internal::ReadSmallFile(path, kMaxConfigFileBytes);
  if (!yaml.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", yaml.status().message()));
  }
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  return Load(*yaml, path, ec ? std::filesystem::path(path).parent_path() : absolute.parent_path(),
              options.secrets_required);
}

absl::StatusOr<std::shared_ptr<const Config>> LoadString(const std::string& yaml,
                                                         const std::string& source) {
  std::error_code ec;
  std::filesystem::path cwd = std::filesystem::current_path(ec);
  return Load(yaml, source, ec ? std::filesystem::path() : cwd);
}

std::vector<std::string> RestartRequiredChanges(const Config& before, const Config& after) {
  std::vector<std::string> changes;
  internal::DiffMap(ConfigKeys(), before, after, "", changes);
  return changes;
}

}  // namespace tracegate::config
