#include "httproute/route.h"

#include <algorithm>
#include <optional>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/strings.h"
#include "httproute/message_text.h"

namespace tracegate::httproute {
namespace {

constexpr size_t kMaxTargetBytes = 8192;
constexpr size_t kMaxPathInMessage = 256;

struct Param {
  std::string name;  // decoded
  std::string value;
};

// The caller's target, split and strictly percent-decoded.
struct ParsedTarget {
  std::string_view raw_path;          // as sent, for messages
  std::vector<std::string> segments;  // decoded
  // False when a segment is empty, "." or "..", or decodes to something containing '/':
  // such a path matches no route.
  bool matchable = true;
  std::vector<Param> query;  // in the order sent
};

Refusal MakeRefusal(unsigned status, std::string code, std::string message) {
  Refusal r;
  r.status = status;
  r.code = std::move(code);
  r.message = std::move(message);
  return r;
}

Refusal BadTarget(std::string message) {
  return MakeRefusal(400, "bad_target", std::move(message));
}

bool IsUnreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// Strict: every '%' starts a two-hex-digit escape. '+' stays '+'.
std::optional<std::string> PercentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) {
      return std::nullopt;
    }
    const int hi = HexDigitValue(text[i + 1]);
    const int lo = HexDigitValue(text[i + 2]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// Origin-form only: "/" path ["?" query], printable ASCII without '#'. Bytes >= 0x80 are
// refused too: RFC 3986 has no raw non-ASCII, and clients percent-encode them.
std::optional<Refusal> CheckTargetBytes(std::string_view target) {
  if (target.empty() || target.front() != '/') {
    return BadTarget("the request target must be origin-form (/path?query)");
  }
  if (target.size() > kMaxTargetBytes) {
    return BadTarget(Cat("the request target is longer than ", kMaxTargetBytes, " bytes"));
  }
  for (const char c : target) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte >= 0x7f) {
      return BadTarget(
          "the request target contains a space, a control character or a non-ASCII byte");
    }
    if (c == '#') {
      return BadTarget("the request target contains a fragment ('#')");
    }
  }
  return std::nullopt;
}

std::optional<Refusal> ParsePath(std::string_view path, ParsedTarget& out) {
  out.raw_path = path;
  std::string_view rest = path.substr(1);  // after the leading '/'
  while (true) {
    const size_t slash = rest.find('/');
    const std::string_view raw = rest.substr(0, slash);
    std::optional<std::string> decoded = PercentDecode(raw);
    if (!decoded) {
      return BadTarget("the request path has a malformed percent-escape");
    }
    if (decoded->empty() || *decoded == "." || *decoded == ".." ||
        decoded->find('/') != std::string::npos) {
      out.matchable = false;
    }
    out.segments.push_back(*std::move(decoded));
    if (slash == std::string_view::npos) {
      return std::nullopt;
    }
    rest = rest.substr(slash + 1);
  }
}

// "a=1&b=2": pieces split on '&' (empty pieces are skipped), name and value split on the first
// '='; a piece without '=' has an empty value.
std::optional<Refusal> ParseQuery(std::string_view query, ParsedTarget& out) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view piece = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (piece.empty()) {
      continue;
    }
    const size_t eq = piece.find('=');
    std::optional<std::string> name = PercentDecode(piece.substr(0, eq));
    std::optional<std::string> value =
        PercentDecode(eq == std::string_view::npos ? std::string_view() : piece.substr(eq + 1));
    if (!name || !value) {
      return BadTarget("the request query has a malformed percent-escape");
    }
    out.query.push_back({*std::move(name), *std::move(value)});
  }
  // A parameter sent twice is ambiguous (servers disagree on which one counts): refuse it
  // rather than pick one.
  std::unordered_set<std::string_view> seen;
  for (const Param& p : out.query) {
    if (!seen.insert(p.name).second) {
      return BadTarget(Cat("query parameter ", QuoteForMessage(p.name), " appears more than once"));
    }
  }
  return std::nullopt;
}

std::optional<Refusal> ParseTarget(std::string_view target, ParsedTarget& out) {
  if (std::optional<Refusal> bad = CheckTargetBytes(target)) {
    return bad;
  }
  const size_t question = target.find('?');
  if (std::optional<Refusal> bad = ParsePath(target.substr(0, question), out)) {
    return bad;
  }
  if (question != std::string_view::npos) {
    return ParseQuery(target.substr(question + 1), out);
  }
  return std::nullopt;
}

const Param* FindParam(const ParsedTarget& target, std::string_view name) {
  for (const Param& p : target.query) {
    if (p.name == name) {
      return &p;
    }
  }
  return nullptr;
}

// A route with no trace slot, or one pointing outside its template, would proxy requests that
// name no trace: it matches nothing (the loader should never produce one).
bool HasTraceSlot(const config::RouteTemplate& t) {
  const bool in_path =
      t.trace_segment >= 0 && static_cast<size_t>(t.trace_segment) < t.segments.size();
  const bool in_query = t.trace_query >= 0 && static_cast<size_t>(t.trace_query) < t.query.size();
  const bool path_ok = t.trace_segment < 0 || in_path;
  const bool query_ok = t.trace_query < 0 || in_query;
  return (in_path || in_query) && path_ok && query_ok;
}

// Path literals and template query parameters (names present, literal values equal). The trace
// slots are not compared here.
bool FitsTemplate(const config::RouteTemplate& t, const ParsedTarget& target) {
  if (!target.matchable || target.segments.size() != t.segments.size() || !HasTraceSlot(t)) {
    return false;
  }
  for (size_t i = 0; i < t.segments.size(); ++i) {
    if (static_cast<int>(i) != t.trace_segment && t.segments[i] != target.segments[i]) {
      return false;
    }
  }
  for (size_t i = 0; i < t.query.size(); ++i) {
    const Param* p = FindParam(target, t.query[i].first);
    if (p == nullptr) {
      return false;
    }
    if (static_cast<int>(i) != t.trace_query && p->value != t.query[i].second) {
      return false;
    }
  }
  return true;
}

bool InTemplateQuery(const config::RouteTemplate& t, std::string_view name) {
  return std::any_of(t.query.begin(), t.query.end(),
                     [&](const auto& q) { return q.first == name; });
}

// The first parameter that is neither in the template nor in allow_query, if any.
const Param* DisallowedParam(const config::HttpRoute& route, const ParsedTarget& target) {
  for (const Param& p : target.query) {
    if (!InTemplateQuery(route.parsed, p.name) &&
        std::find(route.allow_query.begin(), route.allow_query.end(), p.name) ==
            route.allow_query.end()) {
      return &p;
    }
  }
  return nullptr;
}

// The trace id the request names: the decoded trace segment and / or trace parameter value. A
// template with both slots must carry the same id in both; the first that differs is returned.
const std::string& RequestedTrace(const config::RouteTemplate& t, const ParsedTarget& target,
                                  std::string_view granted) {
  if (t.trace_segment >= 0) {
    const std::string& in_path = target.segments[t.trace_segment];
    if (in_path != granted || t.trace_query < 0) {
      return in_path;
    }
  }
  return FindParam(target, t.query[t.trace_query].first)->value;
}

std::string JoinAllowed(const std::vector<std::string>& names) {
  if (names.empty()) {
    return "none";
  }
  std::string out;
  for (const std::string& n : names) {
    out += out.empty() ? "" : ", ";
    out += QuoteForMessage(n);
  }
  return out;
}

// Why `route` (whose template the target fits) does not take this request; nullopt = it does.
std::optional<Refusal> CheckFittingRoute(const config::HttpRoute& route, const ParsedTarget& target,
                                         std::string_view method, std::string_view granted) {
  if (const Param* extra = DisallowedParam(route, target)) {
    return MakeRefusal(
        403, "query_not_allowed",
        Cat("query parameter ", QuoteForMessage(extra->name),
            " is not allowed on this route (allowed: ", JoinAllowed(route.allow_query), ")"));
  }
  if (method != route.method) {
    Refusal r = MakeRefusal(405, "method_not_allowed",
                            Cat(EscapeForMessage(method, 32), " is not allowed on ",
                                EscapeForMessage(target.raw_path, kMaxPathInMessage),
                                ": this route accepts ", route.method, " only"));
    r.allow = route.method;
    return r;
  }
  const std::string& requested = RequestedTrace(route.parsed, target, granted);
  if (requested != granted || !TraceFitsRoute(route, granted)) {
    return MakeRefusal(403, "trace_mismatch",
                       Cat("the request names trace ", QuoteForMessage(requested),
                           " but this credential is for trace ", QuoteForMessage(granted)));
  }
  return std::nullopt;
}

void AppendParam(std::string& out, std::string_view name, std::string_view value) {
  out += out.find('?') == std::string::npos ? '?' : '&';
  out += PercentEncode(name);
  out += '=';
  out += PercentEncode(value);
}

}  // namespace

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (IsUnreserved(c)) {
      out += c;
    } else {
      const auto byte = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    }
  }
  return out;
}

bool TraceFitsRoute(const config::HttpRoute& route, std::string_view trace_id) {
  if (trace_id.empty()) {
    return false;
  }
  if (route.parsed.trace_segment >= 0) {
    return trace_id != "." && trace_id != ".." && trace_id.find('/') == std::string_view::npos;
  }
  return true;
}

std::string BuildTarget(const config::HttpRoute& route, std::string_view trace_id) {
  const config::RouteTemplate& t = route.parsed;
  std::string out;
  for (size_t i = 0; i < t.segments.size(); ++i) {
    out += '/';
    out += PercentEncode(static_cast<int>(i) == t.trace_segment ? trace_id
                                                                : std::string_view(t.segments[i]));
  }
  if (out.empty()) {
    out.push_back('/');  // (not `out = "/"`: g++ 12 -O2 warns -Wrestrict on it, a false positive)
  }
  for (size_t i = 0; i < t.query.size(); ++i) {
    AppendParam(
        out, t.query[i].first,
        static_cast<int>(i) == t.trace_query ? trace_id : std::string_view(t.query[i].second));
  }
  return out;
}

MatchResult MatchRequest(const std::vector<config::HttpRoute>& routes, std::string_view method,
                         std::string_view target, std::string_view granted_trace) {
  MatchResult result;
  ParsedTarget parsed;
  if (std::optional<Refusal> bad = ParseTarget(target, parsed)) {
    result.refusal = *std::move(bad);
    return result;
  }
  // The first route that takes the request wins; otherwise the refusal of the first route whose
  // template the target fits; otherwise no_route.
  std::optional<Refusal> first_refusal;
  for (const config::HttpRoute& route : routes) {
    if (!FitsTemplate(route.parsed, parsed)) {
      continue;
    }
    std::optional<Refusal> refusal = CheckFittingRoute(route, parsed, method, granted_trace);
    if (!refusal) {
      result.ok = true;
      result.match.route = &route;
      result.match.upstream_target = BuildTarget(route, granted_trace);
      for (const Param& p : parsed.query) {
        if (!InTemplateQuery(route.parsed, p.name)) {
          AppendParam(result.match.upstream_target, p.name, p.value);
        }
      }
      return result;
    }
    if (!first_refusal) {
      first_refusal = std::move(refusal);
    }
  }
  if (first_refusal) {
    result.refusal = *std::move(first_refusal);
  } else {
    result.refusal = MakeRefusal(
        403, "no_route",
        Cat(EscapeForMessage(method, 32), " ", EscapeForMessage(parsed.raw_path, kMaxPathInMessage),
            " is not an allowed route: only requests for the granted trace are proxied"));
  }
  return result;
}

}  // namespace tracegate::httproute
