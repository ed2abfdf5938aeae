#pragma once
// What an agent may ask an HTTP trace store through the gateway, as pure functions (no I/O):
// match the caller's request line against a connection's routes for the granted trace, and
// build the request the gateway sends upstream instead.
//
// The upstream target is rebuilt from the route template, never copied from the caller: the
// trace id is percent-encoded into its slot and only the route's allow_query parameters are
// carried over (re-encoded), so dot segments, encoded slashes, duplicate parameters or a
// second trace id cannot reach the store.
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace tracegate::httproute {

// Why a request is refused (403 with {"error": code, "message": message}, or 400 / 405 where
// `status` says so).
struct Refusal {
  unsigned status = 403;
  std::string code;  // "method_not_allowed", "no_route", "trace_mismatch", "bad_target",
                     // "query_not_allowed"
  // For the caller; never contains anything but what the caller sent and the granted trace id.
  // Caller-supplied text is escaped to printable ASCII and cut short.
  std::string message;
  std::string allow;  // 405: the method the route accepts (the Allow header)
};

struct Match {
  const config::HttpRoute* route = nullptr;
  // Origin-form target for the store, without the upstream prefix:
  // "/api/public/traces/tr-1" or "/api/public/observations?traceId=tr-1&page=2": BuildTarget()
  // (the template with the granted trace), then the caller's allowed extra parameters in the
  // order sent, every name and value re-encoded with PercentEncode().
  std::string upstream_target;
};

// Matches `method` and `target` (the request-target as received) against `routes` for
// `granted_trace`.
//
// The target must be origin-form ("/path?query"): printable ASCII (no space, control or
// non-ASCII byte, no '#'), at most 8 KiB, else "bad_target" (400). Percent-decoding is strict
// (a '%' not followed by two hex digits is "bad_target"); '+' is a literal '+' in the path and
// in the query alike (not a space: RFC 3986, not form encoding). The path is split on '/' and
// each segment decoded; an empty segment ("//", a trailing '/'), "." or "..", or one that
// decodes to something containing '/' ("%2F") matches no route. The query is split on '&'
// (empty pieces skipped) and each piece on its first '=' (no '=': empty value); a parameter
// name sent twice is "bad_target" (400), whatever the route.
//
// A route's template fits when the segment counts are equal, every literal segment equals the
// decoded one, and every template query parameter is present with, for literals, the exact
// value. For the first route whose template fits:
//   a parameter neither in the template nor in allow_query  -> "query_not_allowed" (403)
//   a method other than route.method (case-sensitive)      -> "method_not_allowed" (405)
//   a decoded trace slot other than `granted_trace`         -> "trace_mismatch" (403)
// unless a later fitting route takes the request. No fitting route (a list or export
// endpoint) is "no_route" (403). A `granted_trace` that fails TraceFitsRoute() is never taken.
struct MatchResult {
  bool ok = false;
  Match match;      // when ok
  Refusal refusal;  // when !ok
};
MatchResult MatchRequest(const std::vector<config::HttpRoute>& routes, std::string_view method,
                         std::string_view target, std::string_view granted_trace);

// Whether `trace_id` may fill `route`'s trace slot: not empty and, for a path slot, neither "."
// nor ".." and without '/' (PercentEncode leaves '.' as it is, and a store or a proxy in front
// of it may remove dot segments or decode %2F, which would move the request to another
// resource). MatchRequest never takes such an id.
bool TraceFitsRoute(const config::HttpRoute& route, std::string_view trace_id);

// The upstream target of `route` for `trace_id` (one-call fetch). The caller must check
// TraceFitsRoute() first: for an id that does not fit, the target names another resource.
std::string BuildTarget(const config::HttpRoute& route, std::string_view trace_id);

// RFC 3986 percent-encoding of everything but unreserved characters.
std::string PercentEncode(std::string_view text);

}  // namespace tracegate::httproute
