// Keys of an http connection: connections[].upstream (with its auth) and connections[].routes.
// config.cpp declares the connection itself; tracegate.example.yaml is the operator's view.

#include "config/http_keys.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"
#include "config/scalars.h"

namespace tracegate::config::internal {
namespace {

using namespace std::chrono_literals;
using absl::InvalidArgumentError;

constexpr absl::string_view kTracePlaceholder = "{trace_id}";
constexpr size_t kMaxAllowQuery = 64;
constexpr size_t kMaxJsonPathBytes = 256;
constexpr size_t kMaxHeaderNameBytes = 256;
constexpr size_t kMaxQueryNameBytes = 128;

bool IsControl(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

// What RFC 3986 lets a path segment hold unencoded: unreserved, sub-delims, ':' and '@'.
bool IsPathChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("-._~!$&'()*+,;=:@").find(c) != absl::string_view::npos;
}

// Strict: every '%' starts an escape of two hex digits.
absl::StatusOr<std::string> PercentDecode(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    const int high = i + 2 < text.size() ? HexDigitValue(text[i + 1]) : -1;
    const int low = i + 2 < text.size() ? HexDigitValue(text[i + 2]) : -1;
    if (high < 0 || low < 0) {
      return InvalidArgumentError(absl::StrCat("malformed percent-escape in ", Quote(text)));
    }
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

// One path segment, query name or query value of a route template, decoded. `*is_trace` is
// set when it is the placeholder and `may_hold_trace` allows one there.
absl::StatusOr<std::string> TemplatePart(absl::string_view raw, absl::string_view also_allowed,
                                         bool may_hold_trace, bool* is_trace) {
  *is_trace = may_hold_trace && raw == kTracePlaceholder;
  if (*is_trace) {
    return std::string(kTracePlaceholder);
  }
  if (absl::StrContains(raw, kTracePlaceholder)) {
    return InvalidArgumentError(absl::StrCat(
        "{trace_id} must be a whole path segment or a whole query value, got ", Quote(raw)));
  }
  const std::string braces = absl::StrCat(
      "\"{\" and \"}\" may appear only in the placeholder {trace_id}, got ", Quote(raw));
  for (char c : raw) {
    if (c == '{' || c == '}') {
      return InvalidArgumentError(braces);
    }
    if (c != '%' && !IsPathChar(c) && also_allowed.find(c) == absl::string_view::npos) {
      return InvalidArgumentError(absl::StrCat("character ", Quote(absl::string_view(&c, 1)),
                                               " must be percent-encoded, in ", Quote(raw)));
    }
  }
  absl::StatusOr<std::string> decoded = PercentDecode(raw);
  if (!decoded.ok()) {
    return decoded.status();
  }
  for (char c : *decoded) {
    if (IsControl(c)) {
      return InvalidArgumentError(absl::StrCat(Quote(raw), " encodes a control character"));
    }
    if (c == '{' || c == '}') {
      return InvalidArgumentError(braces);
    }
  }
  return decoded;
}

// The query of a route template (after '?'): name=value pairs joined by '&'.
absl::Status ParseTemplateQuery(absl::string_view query, RouteTemplate& out, int& traces) {
  if (query.empty()) {
    return InvalidArgumentError("has an empty query after \"?\"");
  }
  std::set<std::string, std::less<>> names;
  for (absl::string_view raw : absl::StrSplit(query, '&')) {
    if (raw.empty()) {
      return InvalidArgumentError(
          "has an empty query parameter (\"&&\", or \"&\" at the start or end)");
    }
    const size_t eq = raw.find('=');
    if (eq == absl::string_view::npos) {
      return InvalidArgumentError(
          absl::StrCat("query parameter ", Quote(raw), " needs a value: name=value"));
    }
    if (eq == 0) {
      return InvalidArgumentError(absl::StrCat("query parameter ", Quote(raw), " has no name"));
    }
    bool is_trace = false;
    absl::StatusOr<std::string> name = TemplatePart(raw.substr(0, eq), "/?", false, &is_trace);
    if (!name.ok()) {
      return name.status();
    }
    absl::StatusOr<std::string> value = TemplatePart(raw.substr(eq + 1), "/?", true, &is_trace);
    if (!value.ok()) {
      return value.status();
    }
    if (!names.insert(*name).second) {
      return InvalidArgumentError(
          absl::StrCat("query parameter ", Quote(*name), " is given twice"));
    }
    if (is_trace) {
      out.trace_query = static_cast<int>(out.query.size());
      ++traces;
    }
    out.query.emplace_back(*std::move(name), *std::move(value));
  }
  return absl::OkStatus();
}

// ---- scalar types ------------------------------------------------------------------------

ScalarType<std::string> BaseUrl() {
  return {"an http(s) URL",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            absl::StatusOr<UpstreamUrl> url = ParseUpstreamUrl(text);
            if (!url.ok()) {
              return url.status();
            }
            return url->url;
          }};
}

ScalarType<std::string> RouteTemplateText() {
  return {"a path like /api/traces/{trace_id}",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            absl::StatusOr<RouteTemplate> parsed = ParseRouteTemplate(text);
            if (!parsed.ok()) {
              return parsed.status();
            }
            return text;
          }};
}

ScalarType<std::string> JsonPathText() {
  return {"a JSON path like data[*].traceId",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            absl::StatusOr<std::vector<JsonPathStep>> parsed = ParseJsonPath(text);
            if (!parsed.ok()) {
              return parsed.status();
            }
            return text;
          }};
}

ScalarType<std::string> Method() {
  return {"an HTTP method",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (text != "GET") {
              return InvalidArgumentError(
                  absl::StrCat("only GET is supported for now, got ", Quote(text)));
            }
            return text;
          }};
}

ScalarType<std::string> CredentialHeaderName() {
  return {"an HTTP header name",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (absl::Status s = CheckCredentialHeaderName(text); !s.ok()) {
              return s;
            }
            return text;
          }};
}

// Basic authentication sends base64(username ":" secret), so the username cannot hold ':'.
ScalarType<std::string> BasicUserName() {
  return {"a user name",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (text.empty()) {
              return InvalidArgumentError("must not be empty");
            }
            if (absl::StrContains(text, ':')) {
              return InvalidArgumentError(absl::StrCat(
                  "must not contain \":\" (Basic authentication joins username:secret), got ",
                  Quote(text)));
            }
            if (std::any_of(text.begin(), text.end(), IsControl)) {
              return InvalidArgumentError(
                  absl::StrCat("must not contain control characters, got ", Quote(text)));
            }
            return text;
          }};
}

ScalarType<std::string> QueryName() {
  return {"a query parameter name",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            bool valid = !text.empty() && text.size() <= kMaxQueryNameBytes;
            for (char c : text) {
              valid = valid && (absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                                absl::string_view("-._~[]").find(c) != absl::string_view::npos);
            }
            if (!valid) {
              return InvalidArgumentError(absl::StrCat(
                  "expected a query parameter name of 1 to 128 characters A-Z, a-z, 0-9, "
                  "'-', '.', '_', '~', '[' and ']', got ",
                  Quote(text)));
            }
            return text;
          }};
}

// ---- connections[].upstream.auth ---------------------------------------------------------

struct AuthExtra {
  bool scheme_valid = true;
  std::string secret_file;  // resolved path
  std::string secret_env;
  std::string secret;
  bool allow_inline_secret = false;
};

void CheckAuth(const Item& map, UpstreamAuth& auth, AuthExtra& extra, Context& ctx) {
  LoadRequiredSecret(map, "secret",
                     {extra.secret_file, extra.secret_env, extra.secret, extra.allow_inline_secret},
                     auth.secret, ctx);
  if (!extra.scheme_valid) {
    return;  // reported at scheme
  }
  auto only_with = [&](absl::string_view key, UpstreamAuthScheme scheme, absl::string_view word) {
    const std::string path = ChildPath(map.path, key);
    const bool present = !ctx.MarkOf(path).is_null();
    if (auth.scheme == scheme && !present) {
      ctx.Error(map.mark, path, absl::StrCat("required with scheme: ", word));
    } else if (auth.scheme != scheme && present) {
      ctx.Error(ctx.MarkOf(path), path, absl::StrCat("only for scheme: ", word));
    }
  };
  only_with("username", UpstreamAuthScheme::kBasic, "basic");
  only_with("header", UpstreamAuthScheme::kHeader, "header");
  // A bearer token or header value goes into the request as it is (basic base64-encodes it):
  // a line break there would let the secret's source write headers.
  if (auth.scheme != UpstreamAuthScheme::kBasic &&
      std::any_of(auth.secret.begin(), auth.secret.end(), IsControl)) {
    const std::string key = ChildPath(map.path, !extra.secret_file.empty()  ? "secret_file"
                                                : !extra.secret_env.empty() ? "secret_env"
                                                                            : "secret");
    ctx.Error(ctx.MarkOf(key), key,
              "the secret contains a control character, which cannot be sent in an HTTP header");
  }
}

const Table<UpstreamAuth, AuthExtra>& AuthKeys() {
  using K = Keys<UpstreamAuth, AuthExtra>;
  static const auto* const table = new Table<UpstreamAuth, AuthExtra>{
      .keys =
          {
              NotingValidity(
                  K::Optional("scheme", &UpstreamAuth::scheme, UpstreamAuthScheme::kBasic,
                              kReloadable,
                              OneOf<UpstreamAuthScheme>({{"basic", UpstreamAuthScheme::kBasic},
                                                         {"bearer", UpstreamAuthScheme::kBearer},
                                                         {"header", UpstreamAuthScheme::kHeader}})),
                  &AuthExtra::scheme_valid),
              K::Optional("username", &UpstreamAuth::username, "", kReloadable, BasicUserName()),
              K::Optional("header", &UpstreamAuth::header, "", kReloadable, CredentialHeaderName()),
              K::Optional("secret_file", &AuthExtra::secret_file, "", kReloadable, FilePath(false)),
              K::Optional("secret_env", &AuthExtra::secret_env, "", kReloadable, EnvVarName()),
              K::Optional("secret", &AuthExtra::secret, "", kReloadable, Secret()),
              K::Optional("allow_inline_secret", &AuthExtra::allow_inline_secret, false,
                          kReloadable, Boolean()),
          },
      .check = CheckAuth,
  };
  return *table;
}

// ---- connections[].upstream --------------------------------------------------------------

void CheckUpstream(const Item& map, HttpUpstream& upstream, NoExtra&, Context& ctx) {
  if (upstream.url.empty()) {
    return;  // missing or invalid: reported
  }
  absl::StatusOr<UpstreamUrl> url = ParseUpstreamUrl(upstream.url);
  if (!url.ok()) {
    return;  // cannot happen: the url key accepted it
  }
  upstream.https = url->https;
  upstream.host = url->host;
  upstream.port = url->port;
  upstream.prefix = url->prefix;
  // As with a backend's ca_file: whoever sets TLS options on a plain-text upstream likely
  // believes it is authenticated.
  const std::string ca_key = ChildPath(map.path, "ca_file");
  if (!upstream.https) {
    const std::string verify_key = ChildPath(map.path, "verify_tls");
    if (!upstream.ca_file.empty()) {
      ctx.Error(ctx.MarkOf(ca_key), ca_key, "is only used with an https:// url");
    }
    if (!ctx.MarkOf(verify_key).is_null()) {
      ctx.Error(ctx.MarkOf(verify_key), verify_key, "is only used with an https:// url");
    }
  } else if (!upstream.verify_tls && !upstream.ca_file.empty()) {
    ctx.Error(ctx.MarkOf(ca_key), ca_key, "is not used with verify_tls: false");
  }
}

// ---- connections[].routes[] --------------------------------------------------------------

void CheckRoute(const Item& map, HttpRoute& route, NoExtra&, Context& ctx) {
  // Both were validated by their keys; empty means missing or invalid (reported).
  if (absl::StatusOr<RouteTemplate> parsed = ParseRouteTemplate(route.path); parsed.ok()) {
    route.parsed = *std::move(parsed);
  }
  if (absl::StatusOr<std::vector<JsonPathStep>> steps = ParseJsonPath(route.response_trace_id);
      steps.ok()) {
    route.trace_path = *std::move(steps);
  }
  const std::string key = ChildPath(map.path, "allow_query");
  std::set<std::string, std::less<>> seen;
  for (size_t i = 0; i < route.allow_query.size(); ++i) {
    const std::string& name = route.allow_query[i];
    if (name.empty()) {
      continue;  // reported
    }
    const bool in_template =
        std::any_of(route.parsed.query.begin(), route.parsed.query.end(),
                    [&name](const auto& parameter) { return parameter.first == name; });
    if (in_template) {
      ctx.Error(ctx.MarkOf(key), ElementPath(key, i),
                absl::StrCat(Quote(name),
                             " is already in the query of path (a caller cannot set "
                             "it)"));
    } else if (!seen.insert(name).second) {
      ctx.Error(ctx.MarkOf(key), ElementPath(key, i),
                absl::StrCat(Quote(name), " is listed twice"));
    }
  }
}

}  // namespace

absl::StatusOr<UpstreamUrl> ParseUpstreamUrl(absl::string_view text) {
  // User information may hold a password: refused before any message could quote the URL.
  if (const size_t scheme_end = text.find("://"); scheme_end != absl::string_view::npos) {
    const absl::string_view after = text.substr(scheme_end + 3);
    if (after.substr(0, after.find_first_of("/?#")).find('@') != absl::string_view::npos) {
      return InvalidArgumentError(
          "must not contain user information (user:password@); the credential goes under auth");
    }
  }
  UpstreamUrl out;
  absl::string_view rest;
  if (absl::StartsWith(text, "https://")) {
    out.https = true;
    rest = text.substr(8);
  } else if (absl::StartsWith(text, "http://")) {
    rest = text.substr(7);
  } else {
    return InvalidArgumentError(
        absl::StrCat("expected an http:// or https:// URL, got ", Quote(text)));
  }
  for (char c : text) {
    if (static_cast<unsigned char>(c) <= ' ' || static_cast<unsigned char>(c) >= 0x7f) {
      return InvalidArgumentError(absl::StrCat(
          "must not contain spaces, control characters or non-ASCII bytes, got ", Quote(text)));
    }
  }
  if (text.find_first_of("?#") != absl::string_view::npos) {
    return InvalidArgumentError(absl::StrCat(
        "must not have a query or fragment (routes give the query), got ", Quote(text)));
  }
  const size_t slash = rest.find('/');
  const absl::string_view authority = rest.substr(0, slash);
  absl::string_view path = slash == absl::string_view::npos ? "" : rest.substr(slash);
  absl::string_view host = authority;
  absl::string_view port;
  bool has_port = false;
  if (absl::StartsWith(authority, "[")) {
    const size_t close = authority.find(']');
    if (close != absl::string_view::npos) {
      host = authority.substr(0, close + 1);
      has_port = close + 1 < authority.size();
      if (has_port && authority[close + 1] != ':') {
        host = authority;  // fails as a host below
        has_port = false;
      }
      port = has_port ? authority.substr(close + 2) : "";
    }
  } else if (const size_t colon = authority.find(':'); colon != absl::string_view::npos) {
    if (authority.find(':', colon + 1) != absl::string_view::npos) {
      return InvalidArgumentError(
          absl::StrCat("IPv6 addresses need brackets, e.g. http://[::1]:8080, got ", Quote(text)));
    }
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    has_port = true;
  }
  absl::StatusOr<std::string> parsed_host = ParseHost(host);
  if (!parsed_host.ok()) {
    return InvalidArgumentError(
        absl::StrCat("expected http(s)://host[:port][/prefix], got ", Quote(text)));
  }
  out.host = *std::move(parsed_host);
  if (has_port) {
    absl::StatusOr<uint64_t> n = ParseCount(port, 1, 65535);
    if (!n.ok()) {
      return InvalidArgumentError(
          absl::StrCat("expected a port from 1 to 65535 after the host, got ", Quote(text)));
    }
    out.port = static_cast<uint16_t>(*n);
  } else {
    out.port = out.https ? 443 : 80;
  }
  const size_t written = path.size();
  while (absl::EndsWith(path, "/")) {
    path.remove_suffix(1);
  }
  if (!path.empty()) {
    for (absl::string_view segment : absl::StrSplit(path.substr(1), '/')) {
      if (segment.empty()) {
        return InvalidArgumentError(
            absl::StrCat("has an empty path segment (\"//\"), got ", Quote(text)));
      }
      bool is_trace = false;
      absl::StatusOr<std::string> decoded = TemplatePart(segment, "", false, &is_trace);
      if (!decoded.ok()) {
        return decoded.status();
      }
      if (*decoded == "." || *decoded == ".." || absl::StrContains(*decoded, '/')) {
        return InvalidArgumentError(absl::StrCat(
            "must not have \".\" or \"..\" segments or an encoded \"/\", got ", Quote(text)));
      }
    }
  }
  out.prefix = std::string(path);
  out.url = std::string(text.substr(0, text.size() - (written - path.size())));
  return out;
}

absl::StatusOr<RouteTemplate> ParseRouteTemplate(absl::string_view text) {
  if (!absl::StartsWith(text, "/")) {
    return InvalidArgumentError(absl::StrCat("must start with \"/\", got ", Quote(text)));
  }
  if (absl::StrContains(text, '#')) {
    return InvalidArgumentError(
        absl::StrCat("must not contain \"#\" (a fragment is never sent), got ", Quote(text)));
  }
  const size_t question = text.find('?');
  const absl::string_view path = text.substr(0, question);
  RouteTemplate out;
  int traces = 0;
  if (path != "/") {
    std::vector<absl::string_view> segments = absl::StrSplit(path.substr(1), '/');
    for (size_t i = 0; i < segments.size(); ++i) {
      if (segments[i].empty()) {
        return InvalidArgumentError(absl::StrCat(i + 1 == segments.size()
                                                     ? "must not end with \"/\", got "
                                                     : "has an empty segment (\"//\"), got ",
                                                 Quote(text)));
      }
      bool is_trace = false;
      absl::StatusOr<std::string> segment = TemplatePart(segments[i], "", true, &is_trace);
      if (!segment.ok()) {
        return segment.status();
      }
      if (*segment == "." || *segment == "..") {
        return InvalidArgumentError(
            absl::StrCat("must not have \".\" or \"..\" segments, got ", Quote(text)));
      }
      if (absl::StrContains(*segment, '/')) {
        return InvalidArgumentError(
            absl::StrCat("segment ", Quote(segments[i]), " encodes \"/\" (%2F)"));
      }
      if (is_trace) {
        out.trace_segment = static_cast<int>(i);
        ++traces;
      }
      out.segments.push_back(*std::move(segment));
    }
  }
  if (question != absl::string_view::npos) {
    if (absl::Status s = ParseTemplateQuery(text.substr(question + 1), out, traces); !s.ok()) {
      return s;
    }
  }
  if (traces == 0) {
    return InvalidArgumentError(absl::StrCat(
        "must contain {trace_id} as a whole path segment or query value, got ", Quote(text)));
  }
  if (traces > 1) {
    return InvalidArgumentError(
        absl::StrCat("must contain {trace_id} exactly once, got ", Quote(text)));
  }
  return out;
}

absl::StatusOr<std::vector<JsonPathStep>> ParseJsonPath(absl::string_view text) {
  const auto invalid = [text] {
    return InvalidArgumentError(absl::StrCat(
        "expected keys of A-Z, a-z, 0-9, '_' and '-' joined by \".\", each optionally followed "
        "by [*] (like id or data[*].traceId), got ",
        Quote(text)));
  };
  if (text.empty() || text.size() > kMaxJsonPathBytes) {
    return invalid();
  }
  std::vector<JsonPathStep> steps;
  for (absl::string_view part : absl::StrSplit(text, '.')) {
    JsonPathStep step;
    step.each = absl::ConsumeSuffix(&part, "[*]");
    const bool valid = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) {
      return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
    if (!valid) {
      return invalid();
    }
    step.key = std::string(part);
    steps.push_back(std::move(step));
  }
  return steps;
}

absl::Status CheckCredentialHeaderName(absl::string_view text) {
  bool valid = !text.empty() && text.size() <= kMaxHeaderNameBytes;
  for (char c : text) {
    valid = valid && (absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                      absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos);
  }
  if (!valid) {
    return InvalidArgumentError(absl::StrCat(
        "expected an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), got ", Quote(text)));
  }
  static const auto* const kRefused = new std::set<std::string, std::less<>>{"host",
                                                                             "content-length",
                                                                             "transfer-encoding",
                                                                             "connection",
                                                                             "keep-alive",
                                                                             "proxy-connection",
                                                                             "te",
                                                                             "trailer",
                                                                             "upgrade",
                                                                             "proxy-authenticate",
                                                                             "proxy-authorization"};
  if (kRefused->contains(absl::AsciiStrToLower(text))) {
    return InvalidArgumentError(
        absl::StrCat(Quote(text),
                     " cannot carry the credential: the gateway writes Host, Content-Length and "
                     "Transfer-Encoding itself and drops hop-by-hop headers"));
  }
  return absl::OkStatus();
}

const Table<HttpUpstream>& UpstreamKeys() {
  using K = Keys<HttpUpstream>;
  static const auto* const table = new Table<HttpUpstream>{
      .keys =
          {
              K::Required("url", &HttpUpstream::url, kReloadable, BaseUrl()),
              K::Section("auth", kRequired, &HttpUpstream::auth, AuthKeys),
              K::Optional("ca_file", &HttpUpstream::ca_file, "", kReloadable, FilePath(true)),
              K::Optional("verify_tls", &HttpUpstream::verify_tls, true, kReloadable, Boolean()),
              K::Optional("connect_timeout", &HttpUpstream::connect_timeout, 5s, kReloadable,
                          Period(1ms)),
              K::Optional("timeout", &HttpUpstream::timeout, 30s, kReloadable, Period(1ms)),
              K::Optional("max_response_bytes", &HttpUpstream::max_response_bytes, 16u << 20,
                          kReloadable, ByteSize<uint64_t>(1 << 10, 1 << 30)),
              K::Optional("max_idle_connections", &HttpUpstream::max_idle_connections, 16,
                          kReloadable, Count<uint32_t>(0, 1024)),
          },
      .check = CheckUpstream,
  };
  return *table;
}

const Table<HttpRoute>& RouteKeys() {
  using K = Keys<HttpRoute>;
  static const auto* const table = new Table<HttpRoute>{
      .keys =
          {
              K::Required("name", &HttpRoute::name, kReloadable, ConnectionName()),
              K::Optional("method", &HttpRoute::method, "GET", kReloadable, Method()),
              K::Required("path", &HttpRoute::path, kReloadable, RouteTemplateText()),
              K::Required("response_trace_id", &HttpRoute::response_trace_id, kReloadable,
                          JsonPathText()),
              K::Strings("allow_query", &HttpRoute::allow_query, {}, kReloadable, QueryName(),
                         kMaxAllowQuery),
          },
      .check = CheckRoute,
  };
  return *table;
}

void CheckHttpConnection(const Item& map, Connection& connection, Context& ctx) {
  std::map<std::string, std::string, std::less<>> first_by_name;
  for (size_t i = 0; i < connection.routes.size(); ++i) {
    const std::string& name = connection.routes[i].name;
    if (name.empty()) {
      continue;  // reported
    }
    std::string path = ElementPath(ChildPath(map.path, "routes"), i) + ".name";
    auto [it, inserted] = first_by_name.emplace(name, path);
    if (!inserted) {
      ctx.Error(ctx.MarkOf(path), path,
                absl::StrCat("duplicate route name ", Quote(name), " (also ", it->second, ")"));
    }
  }
  const std::string key = ChildPath(map.path, "fetch_route");
  if (!connection.fetch_route.empty()) {
    if (!first_by_name.contains(connection.fetch_route)) {
      ctx.Error(ctx.MarkOf(key), key,
                absl::StrCat("no route is named ", Quote(connection.fetch_route)));
    }
  } else if (ctx.MarkOf(key).is_null() && !connection.routes.empty()) {
    connection.fetch_route = connection.routes.front().name;
  }
}

}  // namespace tracegate::config::internal
