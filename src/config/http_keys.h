#pragma once
// Private to the config module: the keys of an http connection (type: http): its upstream,
// the upstream's credential and its routes. The parsers of the values they hold are pure
// functions over text (unit-tested directly); reasons quote the value, never a secret.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "config/config.h"
#include "config/schema.h"

namespace tracegate::config::internal {

// The parts of an upstream `url`: http(s)://host[:port][/prefix].
struct UpstreamUrl {
  std::string url;  // as written, without trailing '/'
  bool https = false;
  std::string host;  // IPv6 without brackets
  uint16_t port = 0;
  std::string prefix;  // "" or "/a/b", as written (percent-escapes kept)
};
// No user information (never quoted back: it may hold a password), query or fragment; the
// port defaults to 80 / 443; the prefix has no empty, "." or ".." segments.
absl::StatusOr<UpstreamUrl> ParseUpstreamUrl(absl::string_view text);

// A route's `path`: "/api/public/traces/{trace_id}", "/api/public/observations?traceId=
// {trace_id}". Segments and query parameters are percent-decoded strictly; {trace_id} is
// exactly once a whole segment or a whole query value.
absl::StatusOr<RouteTemplate> ParseRouteTemplate(absl::string_view text);

// A route's `response_trace_id`: step('.'step)*, step = [A-Za-z0-9_-]+ optionally followed
// by [*].
absl::StatusOr<std::vector<JsonPathStep>> ParseJsonPath(absl::string_view text);

// An HTTP field name (RFC 9110 token) that can carry the upstream credential: not one the
// gateway writes itself (Host, Content-Length, Transfer-Encoding) nor a hop-by-hop header.
absl::Status CheckCredentialHeaderName(absl::string_view text);

const Table<HttpUpstream>& UpstreamKeys();
const Table<HttpRoute>& RouteKeys();

// Checks of an http connection's keys against each other, once they are parsed: route names
// are unique and fetch_route names one of them (default: the first route).
void CheckHttpConnection(const Item& map, Connection& connection, Context& ctx);

}  // namespace tracegate::config::internal
