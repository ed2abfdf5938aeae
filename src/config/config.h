#pragma once
// tracegate's configuration: YAML in, one validated immutable Config out.
//
// Every key is declared once in config.cpp (type, default, whether reload may change it).
// Unknown keys, wrong types, out-of-range values and missing required keys are errors
// reported together, each as "<file>:<line>:<column>: <key path>: <reason>". Secrets are
// never in the file itself in production: a backend password is read from a file or an
// environment variable named in the config (password_file / password_env), and the
// loaded value never appears in an error message.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "masking/masker.h"
#include "masking/profile.h"

namespace tracegate::config {

using Duration = std::chrono::milliseconds;

struct Endpoint {
  std::string host;   // literal address or name
  uint16_t port = 0;  // 0 = pick a free port (tests)

  bool operator==(const Endpoint&) const = default;
};

enum class BackendTlsMode { kDisable, kRequire, kVerifyFull };

struct Backend {
  std::string host;
  uint16_t port = 5432;
  std::string database;
  std::string user;
  // The gateway's own password for the backend, already loaded from password_file or
  // password_env (exactly one of them must be set; a literal `password` key is accepted
  // only with `allow_inline_password: true` for demos and tests).
  std::string password;
  BackendTlsMode tls = BackendTlsMode::kDisable;
  std::string ca_file;  // verify-full: CA bundle (empty = system default)
  // Authentication methods the gateway answers when the backend asks (issue 18, item 6):
  // "scram-sha-256" (SCRAM-SHA-256-PLUS when the link is TLS), "md5", "password" (cleartext;
  // only over TLS or to a loopback host). Anything else the backend asks for ends the login.
  std::vector<std::string> auth = {"scram-sha-256"};
  // The most PBKDF2 iterations a backend may ask for in SCRAM (PostgreSQL's default is 4096).
  uint32_t max_scram_iterations = 100000;
  Duration connect_timeout{5000};
  Duration statement_timeout{30000};  // 0 = off
  bool read_only = true;              // default_transaction_read_only on backend sessions
};

// True for a host name that cannot leave this machine: "localhost", 127.0.0.0/8, ::1.
[[nodiscard]] bool IsLoopbackHost(std::string_view host);

struct Pool {
  uint32_t max_size = 32;        // backend connections per connection entry
  Duration idle_timeout{60000};  // close pooled backends idle longer than this
};

// A statically configured client credential (issue 2); JIT grants replace this source.
struct StaticUser {
  std::string name;
  std::string scram_verifier;  // "SCRAM-SHA-256$<iter>:<salt>$<stored>:<server>"
};

// ---- statement gate (per Postgres connection) ------------------------------------------------

// A table (or view) that holds trace data, and the column that names the trace of each row.
struct TraceTable {
  std::string schema = "public";
  std::string name;
  std::string id_column;
};

// A statement strict mode lets run, matched by its libpg_query fingerprint.
struct NamedQuery {
  std::string name;
  std::string sql;
};

enum class GateMode {
  kClassify,  // any read the classifier can prove stays inside the granted trace
  kStrict,    // additionally, only the declared queries
};

// What a grant's session may run on this connection; see src/sql/gate.h. Static users are
// not gated (they are the operator's own service accounts).
struct Gate {
  GateMode mode = GateMode::kClassify;
  std::vector<TraceTable> trace_tables;
  std::vector<std::string> allow_functions;  // in addition to sql::DefaultAllowedFunctions()
  std::vector<NamedQuery> queries;           // strict mode: the only statements that may read
  uint32_t cache_entries = 10000;            // classified statement shapes kept
};

// ---- HTTP trace stores (type: http) -------------------------------------------------------

enum class UpstreamAuthScheme {
  kBasic,   // Authorization: Basic base64(username:secret)
  kBearer,  // Authorization: Bearer <secret>
  kHeader,  // <header>: <secret>
};

// The gateway's own credential for an HTTP trace store. Callers never see it.
struct UpstreamAuth {
  UpstreamAuthScheme scheme = UpstreamAuthScheme::kBasic;
  std::string username;  // basic only
  std::string header;    // header only: its name, e.g. "X-Api-Key"
  // Basic password, bearer token or header value, loaded from secret_file / secret_env (or
  // `secret` with allow_inline_secret: true). Never in a message.
  std::string secret;
};

// The HTTP trace store behind an http connection.
struct HttpUpstream {
  std::string url;  // base URL: http(s)://host[:port][/prefix], no query, no trailing '/'
  // Parts of `url`, filled by the loader.
  bool https = false;
  std::string host;  // name or literal address (IPv6 without brackets)
  uint16_t port = 0;
  std::string prefix;  // "" or "/prefix" (no trailing '/'), put before every route path
  UpstreamAuth auth;
  std::string ca_file;     // https: PEM bundle the store's certificate must chain to; "" = system
  bool verify_tls = true;  // https: verify chain and host name; false only for tests
  Duration connect_timeout{5000};
  Duration timeout{30000};                  // for the whole response, else 504
  uint64_t max_response_bytes = 16u << 20;  // decoded body; past it the response is refused (502)
  uint32_t max_idle_connections = 16;       // kept-alive connections per worker
};

// Where the trace id sits: "/api/public/traces/{trace_id}" or
// "/api/public/observations?traceId={trace_id}", parsed by the loader.
struct RouteTemplate {
  // Path segments, percent-decoded; the one equal to "{trace_id}" (index trace_segment) is the
  // trace id. Empty segments are not allowed.
  std::vector<std::string> segments;
  int trace_segment = -1;
  // Query parameters the request must carry, in order; the one whose value is "{trace_id}"
  // (index trace_query) carries the trace id. Exactly one of trace_segment / trace_query >= 0.
  std::vector<std::pair<std::string, std::string>> query;
  int trace_query = -1;
};

// One step of a response path: a member `key`, then, when `each`, every element of the array
// it holds. "data[*].traceId" = {{"data", true}, {"traceId", false}}.
struct JsonPathStep {
  std::string key;
  bool each = false;

  bool operator==(const JsonPathStep&) const = default;
};

// A request an agent may send through an http connection's listener.
struct HttpRoute {
  std::string name;
  std::string method = "GET";  // only GET and HEAD-free reads are proxied: GET
  std::string path;            // as written (template with {trace_id})
  RouteTemplate parsed;
  // Where the trace id sits in the JSON response, as written ("id", "data[*].traceId"), and
  // parsed. Every value found there must be the granted trace id; a path without [*] must
  // be present.
  std::string response_trace_id;
  std::vector<JsonPathStep> trace_path;
  // Further query parameters a caller may add (e.g. page, limit); any other is refused.
  std::vector<std::string> allow_query;
};

enum class ConnectionType { kPostgres, kHttp };

// One entry of `connections:`. Postgres connections use backend, pool, users, gate and the
// query keys; http connections use upstream and routes.
struct Connection {
  std::string name;
  ConnectionType type = ConnectionType::kPostgres;
  Endpoint listen;
  std::string advertise_host;  // host written into grant credentials; default: listen host
  bool require_tls = false;
  Duration idle_timeout{300000};      // no client traffic for this long ends the session
  Duration session_timeout{3600000};  // hard bound on a session's life; 0 = off
  // Client sessions open at once on this listener (handshakes included); one more is
  // refused with 53300 before any other work, so a flood cannot exhaust the gateway.
  uint32_t max_sessions = 1000;
  Backend backend;
  Pool pool;
  std::vector<StaticUser> users;
  Gate gate;
  // SQL with exactly one parameter, $1 = the trace id, returning one row with one numeric
  // column: the trace's risk, for rules with approve_if_risk_at_least. The gateway runs it
  // with the backend credential above (src/approvals/risk.h). Empty = no risk condition
  // possible on this connection.
  std::string risk_query;
  // One-call fetch (GET /v1/connections/{name}/traces/{id}): the name of a gate.queries entry
  // with one parameter, $1 = the trace id, whose rows are the trace. Empty = not offered.
  std::string fetch_query;

  // ---- type: http ----
  HttpUpstream upstream;
  std::vector<HttpRoute> routes;
  // One-call fetch: the route (by name) that returns the trace. Default: the first route.
  std::string fetch_route;
  uint32_t max_request_bytes = 65536;  // a caller's request line, headers and body
};

struct Tls {
  std::string cert_file;  // PEM; both empty = TLS not offered
  std::string key_file;
};

struct Limits {
  uint32_t max_startup_length = 10000;
  uint32_t max_message_length = 64u << 20;
  // Before authentication, a client message (SASLInitialResponse, SASLResponse) is at most
  // this long, as PostgreSQL caps SASL messages (PG_MAX_SASL_MESSAGE_LENGTH, 1024).
  uint32_t max_auth_message_length = 1024;
  // Postgres clients connected and not yet authenticated (TLS, startup, SCRAM), over all
  // listeners; one more is refused with 53300 before anything is read from it. With the
  // two limits above this bounds the memory that clients without a credential can hold.
  uint32_t max_unauthenticated = 256;
};

// ---- identity: who may call the control plane ---------------------------------------------

// One trusted OIDC issuer. Tokens are routed to it by their exact `iss`; keys come only from
// its JWKS (discovered, configured by URI, or a local file for the development issuer).
struct Issuer {
  std::string name;                    // label in logs and config paths, e.g. "okta"
  std::string issuer;                  // exact `iss` value
  std::vector<std::string> audiences;  // `aud` must contain one of these (required)
  // Where the keys come from: exactly one of discovery (issuer + /.well-known/...),
  // jwks_uri, or jwks_file (a local JWKS, e.g. the development issuer's).
  bool discovery = true;
  std::string jwks_uri;
  std::string jwks_file;
  std::string ca_file;  // PEM bundle for the IdP's TLS; empty = system default
  // Pinned algorithms; never "none". HS256/384/512 only with hmac_secret set.
  std::vector<std::string> algorithms = {"RS256"};
  std::string hmac_secret;              // loaded from hmac_secret_file / hmac_secret_env
  std::string typ;                      // required JOSE `typ` (e.g. "at+jwt"); empty = not checked
  Duration leeway{30000};               // clock skew allowed on exp / nbf / iat
  std::string groups_claim = "groups";  // dotted path, e.g. "realm_access.roles"
  Duration jwks_refresh{300000};        // background refetch interval
  Duration jwks_stale_max{3600000};     // serve cached keys this long after refetches fail
  Duration unknown_kid_min_interval{10000};  // at most one refetch per this on unknown kid
  // RFC 7662 introspection for opaque (non-JWT) tokens; empty endpoint = JWTs only.
  std::string introspection_endpoint;
  std::string introspection_client_id;
  std::string introspection_client_secret;  // loaded from ..._file / ..._env
  bool development = false;  // the local `tracegate dev token` issuer: marked in every log line
};

// One person known under several issuers (identity.people): "never approves their own
// request" compares people, so the same person under another issuer is still the requester.
struct Person {
  std::string name;
  // "<issuer name>:<subject>" as written; issuer names have no ':', so the first one splits.
  std::vector<std::string> identities;
};

struct Identity {
  std::vector<Issuer> issuers;
  size_t token_cache_entries = 100000;  // validated tokens cached until their exp
  std::vector<Person> people;
};

// Whether a role (or rule) scoped to the issuer names `scope` counts a caller vouched for by
// the issuer named `issuer_name`. An empty scope counts callers of every issuer only while at
// most one issuer is configured; with more, an unscoped role matches nobody (the loader
// refuses such a config; this keeps a hand-built one fail-closed too).
[[nodiscard]] bool TrustsIssuer(const Identity& identity, const std::vector<std::string>& scope,
                                std::string_view issuer_name);

// Whether (iss_a, sub_a) and (iss_b, sub_b) are one person: the same pair, or two identities
// identity.people lists under one person. `iss` is the exact `iss` value (as grants keep it).
[[nodiscard]] bool SamePerson(const Identity& identity, std::string_view iss_a,
                              std::string_view sub_a, std::string_view iss_b,
                              std::string_view sub_b);

// ---- policy ------------------------------------------------------------------------------

enum class Effect { kAllow, kDeny };

// One rule. A rule matches when every non-empty selector matches (issuers / subjects /
// groups / clients / connections are each "any of"; "*" matches everything). Deny wins over allow;
// among allow rules the first match in file order decides.
struct PolicyRule {
  std::string name;
  Effect effect = Effect::kAllow;
  std::vector<std::string> subjects;
  std::vector<std::string> groups;
  std::vector<std::string> clients;      // client_id / azp
  std::vector<std::string> connections;  // empty = every connection
  // Issuer names (identity.issuers[].name) whose callers the rule applies to: subjects, groups
  // and clients are read from those issuers' tokens only. Empty = every issuer, which the
  // loader allows only for deny rules or while at most one issuer is configured.
  std::vector<std::string> issuers;
  Duration ttl{30000};  // how long the credential may be redeemed
  uint32_t uses = 1;
  Duration max_session{300000};  // a session's life, at most until the grant expires
  uint64_t max_rows = 100000;    // per session; 0 = unlimited
  uint64_t max_bytes = 64u << 20;
  std::string masking_profile;  // a masking_profiles[].name; empty = no masking
  bool require_reason = false;
  // Approval (src/approvals): a grant under this rule starts `pending` until approvers agree.
  bool require_approval = false;
  // Groups whose members may approve or deny; empty = approvals.approver_groups.
  std::vector<std::string> approvers;
  uint32_t approvals_required = 1;  // distinct approvers who must say yes (a deny settles it)
  // Hold a result until approved when masking finds at least this many values in it (before
  // masking; a held result is released masked). 0 = never hold.
  uint32_t hold_if_masked_at_least = 0;
  // Ask for approval only when the trace's risk (the connection's risk_query) is at least
  // this (any finite number); below it the grant is issued active. Absent = no risk
  // condition. require_approval: true asks regardless of risk.
  std::optional<double> approve_if_risk_at_least;
};

struct Policy {
  Duration max_ttl{300000};  // no rule may grant longer
  std::vector<PolicyRule> rules;
};

// ---- control plane and state --------------------------------------------------------------

struct Api {
  Endpoint listen;
  bool tls = true;          // uses the top-level tls cert; false only for local demos
  std::string public_host;  // host put into credential URIs; default: the listen host
  uint32_t max_body_bytes = 65536;
  uint32_t auth_failures_per_minute = 30;  // per client address, then 429
  // Peers (CIDRs: "10.0.0.0/8", "::1/128", or one address) whose X-Forwarded-For is believed:
  // the client address is then its right-most entry that is not itself trusted. Empty: the
  // TCP peer is the client, and X-Forwarded-For is ignored.
  std::vector<std::string> trusted_proxies;
  // Threads that run API handlers, which may block (state store, risk query, IdP); the two
  // I/O threads only read and write. More than max_slow_calls.
  uint32_t handler_threads = 4;
  // Handlers that may wait on a slow dependency (the risk query, token introspection, a JWKS
  // fetch) at once; another such request is answered 503 `busy` with Retry-After.
  uint32_t max_slow_calls = 2;
};

struct State {
  std::string path = "tracegate.db";  // SQLite database file
};

// ---- approvals -----------------------------------------------------------------------------

enum class WebhookFormat {
  kGeneric,  // {"event", "id", "sent_at", "data": the approval} signed (HMAC-SHA256)
  kSlack,    // Slack incoming-webhook body: {"text": "..."}
};

// Where the approvals module posts notifications. Delivery runs on its own thread with
// retries and backoff; it never blocks a request or a session.
struct Webhook {
  std::string name;  // label in logs and metrics
  std::string url;   // http:// or https://
  WebhookFormat format = WebhookFormat::kGeneric;
  // HMAC-SHA256 key for the X-Tracegate-Signature header (secret_file / secret_env).
  // Empty: deliveries are not signed (allowed for slack only).
  std::string secret;
  // Which events go here: "requested" (a request waits for approvers), "decided" (approved,
  // denied or expired; also what tells the requester).
  std::vector<std::string> events = {"requested", "decided"};
  Duration timeout{5000};     // per attempt
  uint32_t max_attempts = 5;  // then the delivery is dropped (logged, counted)
  std::string ca_file;        // PEM bundle for https; empty = system default
  // Deliveries waiting for this hook (its own queue, retries included); a full queue drops
  // its oldest delivery (logged, counted as dropped).
  uint32_t queue_size = 1000;
};

struct Approvals {
  Duration timeout{900000};  // a pending request expires after this (grants and held results)
  // Default approver groups for rules that name none.
  std::vector<std::string> approver_groups;
  // A single approval or deny from a member of these settles any request.
  std::vector<std::string> force_groups;
  // Issuer names whose callers' groups count for approver_groups, force_groups and every
  // rule's approvers. Empty: required once more than one issuer is configured.
  std::vector<std::string> issuers;
  // A held result is buffered up to this size; past it the result is refused (53400).
  uint64_t hold_max_bytes = 16u << 20;
  std::vector<Webhook> webhooks;
  // Pending requests one requester (issuer, subject) may have at a time, grants and held
  // results together; one more is refused (HTTP 429 too_many_pending) before anything exists.
  uint32_t max_pending_per_requester = 10;
};

// ---- recording -----------------------------------------------------------------------------

enum class AuditDurability {
  kStrict,   // a response reaches the client only once its record is on disk (group commit)
  kBatched,  // records are synced every flush_interval; a crash may lose the last interval
};

// The session recorder and its log (src/audit). On by default: every session is recorded.
struct Audit {
  bool enabled = true;  // false: nothing is recorded (logged loudly at startup)
  // Where the log's segment files go; empty = "audit" beside the state database.
  std::string dir;
  AuditDurability durability = AuditDurability::kStrict;
  Duration flush_interval{10};         // batched mode
  Duration checkpoint_interval{1000};  // a signed checkpoint of the chain head at most this often
  uint64_t segment_bytes = 64u << 20;  // a new segment file past this size
  uint32_t retention_days = 0;         // whole segments older than this are pruned; 0 = keep
  uint64_t max_session_bytes = 256u << 20;  // per session; reaching it ends the session
                                            // (54000) after a truncation record
  // Ed25519 private key (PEM) that signs checkpoints, from signing_key_file / signing_key_env.
  // Empty: a key is generated in `dir` on first start (fine for a demo; in production keep
  // the key, or at least its public half for verify, away from the log).
  std::string signing_key;
  // Principals in any of these groups may read sessions and replays over the API.
  std::vector<std::string> auditor_groups;
  // Issuer names whose callers' groups count for auditor_groups. Empty: required once more
  // than one issuer is configured.
  std::vector<std::string> auditor_issuers;
};

struct Config {
  std::string source;              // path it was loaded from, for messages
  uint32_t workers = 0;            // event-loop threads; 0 = number of cores
  Duration shutdown_grace{10000};  // SIGTERM: drain this long, then close
  std::string log_level = "info";
  std::optional<Endpoint> admin;  // /healthz, /readyz, /metrics
  Tls tls;
  Limits limits;
  std::vector<Connection> connections;
  std::optional<Api> api;  // control plane; absent = no grants API (static users only)
  State state;
  Approvals approvals;
  Audit audit;
  Identity identity;
  Policy policy;
  // Masking profiles as written (unique names; reloadable), with their pseudonym keys loaded.
  std::vector<masking::Profile> masking_profiles;
  // Each of masking_profiles compiled once at load (Hyperscan databases), by name.
  std::map<std::string, std::shared_ptr<const masking::Masker>, std::less<>> maskers;
};

struct LoadOptions {
  // False: secrets (backend passwords, key files, ...) that cannot be read are left empty
  // instead of failing the load, and masking profiles are not compiled (Config::maskers
  // stays empty). For tools that never use them, such as `tracegate audit`, run by people
  // who should not hold the gateway's credentials.
  bool secrets_required = true;
};

// Loads and validates. On failure the status message lists every error, one per line.
[[nodiscard]] absl::StatusOr<std::shared_ptr<const Config>> LoadFile(const std::string& path,
                                                                     LoadOptions options = {});
// Same, from text (tests, fuzzing); `source` names it in messages.
[[nodiscard]] absl::StatusOr<std::shared_ptr<const Config>> LoadString(const std::string& yaml,
                                                                       const std::string& source);

// The key paths (e.g. "workers", "connections[traces-pg].listen") whose values differ between
// two loaded configs and which a reload cannot apply (declared per key in config.cpp); a
// connection added or removed shows as "connections[<name>] (added)" / "(removed)". Empty
// means `after` may simply replace `before`.
[[nodiscard]] std::vector<std::string> RestartRequiredChanges(const Config& before,
                                                              const Config& after);

}  // namespace tracegate::config
