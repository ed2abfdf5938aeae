// Fuzzes request matching and the response trace check against the Langfuse routes.
//
// Input: byte 0 picks the method (bit 0: GET / POST) and the granted trace (bits 1-2, from
// kGranted); the rest up to the first '\n' is the request target, after it the JSON body.
//
// Traps when: a refusal's status does not fit its code; an accepted request's upstream target
// is not clean origin-form (no dot or empty path segment, no "//", '#', byte < 0x21 or
// > 0x7e), does not start with
// BuildTarget() for the granted trace, differs from it although the caller sent no extra
// parameter, does not match again to itself, or would also be accepted for another trace; a
// response check fails with an unexpected code, or passes both for the granted trace and
// another one on a path that requires the id.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "httproute/route.h"
#include "httproute/trace_check.h"

namespace {

using tracegate::config::HttpRoute;
using tracegate::config::JsonPathStep;
using tracegate::httproute::BuildTarget;
using tracegate::httproute::CheckResponseTrace;
using tracegate::httproute::MatchRequest;
using tracegate::httproute::MatchResult;

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

const std::array<std::string_view, 4> kGranted = {"tr-1", "a b+c%/ü", "..", "x"};

const std::vector<HttpRoute>& Routes() {
  static const auto* const routes = [] {
    HttpRoute trace;
    trace.name = "trace";
    trace.path = "/api/public/traces/{trace_id}";
    trace.parsed.segments = {"api", "public", "traces", "{trace_id}"};
    trace.parsed.trace_segment = 3;
    trace.trace_path = {{"id", false}};

    HttpRoute observations;
    observations.name = "observations";
    observations.path = "/api/public/observations?traceId={trace_id}";
    observations.parsed.segments = {"api", "public", "observations"};
    observations.parsed.query = {{"traceId", "{trace_id}"}};
    observations.parsed.trace_query = 0;
    observations.trace_path = {{"data", true}, {"traceId", false}};
    observations.allow_query = {"page", "limit"};

    HttpRoute generations = observations;  // a literal query value before the trace
    generations.name = "generations";
    generations.path = "/api/public/generations?type=GENERATION&traceId={trace_id}";
    generations.parsed.segments = {"api", "public", "generations"};
    generations.parsed.query = {{"type", "GENERATION"}, {"traceId", "{trace_id}"}};
    generations.parsed.trace_query = 1;
    generations.trace_path = {{"data", true}, {"items", true}, {"traceId", false}};
    return new std::vector<HttpRoute>{trace, observations, generations};
  }();
  return *routes;
}

bool HasEach(const std::vector<JsonPathStep>& path) {
  for (const JsonPathStep& step : path) {
    if (step.each) {
      return true;
    }
  }
  return false;
}

void CheckRefusal(const MatchResult& r) {
  const std::string& code = r.refusal.code;
  Check(!r.refusal.message.empty());
  for (const char c : r.refusal.message) {
    const auto byte = static_cast<unsigned char>(c);
    Check(byte >= 0x20 && byte <= 0x7e);
  }
  if (code == "bad_target") {
    Check(r.refusal.status == 400);
  } else if (code == "method_not_allowed") {
    Check(r.refusal.status == 405 && !r.refusal.allow.empty());
  } else {
    Check(code == "no_route" || code == "trace_mismatch" || code == "query_not_allowed");
    Check(r.refusal.status == 403);
  }
}

void CheckMatch(const MatchResult& r, std::string_view method, std::string_view target,
                std::string_view granted) {
  const std::string& up = r.match.upstream_target;
  Check(r.match.route != nullptr);
  Check(!up.empty() && up.front() == '/');
  Check(tracegate::httproute::TraceFitsRoute(*r.match.route, granted));
  // No dot segment and no empty segment in the path ('.' is unreserved, so a value like "a..b"
  // may appear in a query parameter, where it means nothing to a server).
  const std::string_view path = std::string_view(up).substr(0, up.find('?'));
  Check(path.find("//") == std::string::npos && path.back() != '/');
  Check(path.find("/./") == std::string::npos && path.find("/../") == std::string::npos);
  Check(!path.ends_with("/.") && !path.ends_with("/.."));
  Check(up.find("//") == std::string::npos);
  Check(up.find('#') == std::string::npos);
  for (const char c : up) {
    const auto byte = static_cast<unsigned char>(c);
    Check(byte >= 0x21 && byte <= 0x7e);
  }
  // The template with the granted trace, then only '&' / '?' + extras.
  const std::string built = BuildTarget(*r.match.route, granted);
  Check(up.compare(0, built.size(), built) == 0);
  const std::string_view extras = std::string_view(up).substr(built.size());
  Check(extras.empty() || extras.front() == '?' || extras.front() == '&');
  // No '&' in the caller's query beyond the template's parameters: no extras upstream.
  const size_t question = target.find('?');
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  if (query.find('&') == std::string_view::npos && !r.match.route->parsed.query.empty()) {
    Check(extras.empty());
  }
  if (question == std::string_view::npos) {
    Check(up == built);
  }
  // The rebuilt target is a request the same route takes as it is.
  const MatchResult again = MatchRequest(Routes(), method, up, granted);
  Check(again.ok && again.match.route == r.match.route && again.match.upstream_target == up);
  // Scope: the same request is never accepted for another trace.
  const std::string other = std::string(granted) + "0";
  Check(!MatchRequest(Routes(), method, target, other).ok);
}

void CheckBody(std::string_view body, std::string_view granted) {
  for (const HttpRoute& route : Routes()) {
    const absl::Status status = CheckResponseTrace(body, route.trace_path, granted);
    Check(status.ok() || status.code() == absl::StatusCode::kInvalidArgument ||
          status.code() == absl::StatusCode::kPermissionDenied);
    if (status.ok() && !HasEach(route.trace_path)) {
      const std::string other = std::string(granted) + "0";
      Check(!CheckResponseTrace(body, route.trace_path, other).ok());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 64 * 1024) {
    return 0;
  }
  const std::string_view method = (data[0] & 1) != 0 ? "POST" : "GET";
  const std::string_view granted = kGranted[(data[0] >> 1) & 3];
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t newline = rest.find('\n');
  const std::string_view target = rest.substr(0, newline);
  const std::string_view body =
      newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);

  const MatchResult r = MatchRequest(Routes(), method, target, granted);
  if (r.ok) {
    CheckMatch(r, method, target, granted);
  } else {
    CheckRefusal(r);
  }
  CheckBody(body, granted);
  return 0;
}
