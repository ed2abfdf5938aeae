#include "httproute/route.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

namespace tracegate::httproute {
namespace {

using ::testing::HasSubstr;

config::HttpRoute TraceRoute() {
  config::HttpRoute r;
  r.name = "trace";
  r.path = "/api/public/traces/{trace_id}";
  r.parsed.segments = {"api", "public", "traces", "{trace_id}"};
  r.parsed.trace_segment = 3;
  r.response_trace_id = "id";
  r.trace_path = {{"id", false}};
  return r;
}

config::HttpRoute ObservationsRoute() {
  config::HttpRoute r;
  r.name = "observations";
  r.path = "/api/public/observations?traceId={trace_id}";
  r.parsed.segments = {"api", "public", "observations"};
  r.parsed.query = {{"traceId", "{trace_id}"}};
  r.parsed.trace_query = 0;
  r.response_trace_id = "data[*].traceId";
  r.trace_path = {{"data", true}, {"traceId", false}};
  r.allow_query = {"page", "limit"};
  return r;
}

const std::vector<config::HttpRoute>& Langfuse() {
  static const auto* const routes =
      new std::vector<config::HttpRoute>{TraceRoute(), ObservationsRoute()};
  return *routes;
}

struct Case {
  std::string name;
  std::string method;
  std::string target;
  std::string granted;
  unsigned status;       // 0 = ok
  std::string expected;  // ok: the upstream target; else the refusal code
};

std::string PrintCase(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class MatchTable : public ::testing::TestWithParam<Case> {};

TEST_P(MatchTable, Matches) {
  const Case& c = GetParam();
  MatchResult r = MatchRequest(Langfuse(), c.method, c.target, c.granted);
  if (c.status == 0) {
    ASSERT_TRUE(r.ok) << r.refusal.code << ": " << r.refusal.message;
    EXPECT_EQ(r.match.upstream_target, c.expected);
    ASSERT_NE(r.match.route, nullptr);
  } else {
    ASSERT_FALSE(r.ok) << r.match.upstream_target;
    EXPECT_EQ(r.refusal.code, c.expected) << r.refusal.message;
    EXPECT_EQ(r.refusal.status, c.status) << r.refusal.message;
    EXPECT_FALSE(r.refusal.message.empty());
  }
}

const std::string kLong = "/api/public/traces/" + std::string(8192, 'a');

INSTANTIATE_TEST_SUITE_P(
    Langfuse, MatchTable,
    ::testing::Values(
        // The granted trace, by path and by query.
        Case{"TraceOk", "GET", "/api/public/traces/tr-1", "tr-1", 0, "/api/public/traces/tr-1"},
        Case{"ObservationsOk", "GET", "/api/public/observations?traceId=tr-1", "tr-1", 0,
             "/api/public/observations?traceId=tr-1"},
        // Template params first, then allowed extras in the caller's order.
        Case{"ObservationsPaged", "GET", "/api/public/observations?limit=50&traceId=tr-1&page=2",
             "tr-1", 0, "/api/public/observations?traceId=tr-1&limit=50&page=2"},
        Case{"EmptyPiecesSkipped", "GET", "/api/public/observations?&traceId=tr-1&&page=2&", "tr-1",
             0, "/api/public/observations?traceId=tr-1&page=2"},
        Case{"ParamWithoutValue", "GET", "/api/public/observations?traceId=tr-1&page", "tr-1", 0,
             "/api/public/observations?traceId=tr-1&page="},
        Case{"ExtraValueReencoded", "GET", "/api/public/observations?traceId=tr-1&page=1/2%20x",
             "tr-1", 0, "/api/public/observations?traceId=tr-1&page=1%2F2%20x"},
        Case{"EncodedParamName", "GET", "/api/public/observations?trace%49d=tr-1", "tr-1", 0,
             "/api/public/observations?traceId=tr-1"},
        // A percent-encoded id equal to the granted one matches; upstream gets it re-encoded.
        Case{"EncodedIdInPath", "GET", "/api/public/traces/%74%72%2d1", "tr-1", 0,
             "/api/public/traces/tr-1"},
        Case{"EncodedIdInQuery", "GET", "/api/public/observations?traceId=tr%2D1", "tr-1", 0,
             "/api/public/observations?traceId=tr-1"},
        // '+' is a literal '+', not a space.
        Case{"PlusIsLiteralInPath", "GET", "/api/public/traces/a+b", "a+b", 0,
             "/api/public/traces/a%2Bb"},
        Case{"PlusIsLiteralInQuery", "GET", "/api/public/observations?traceId=a+b", "a+b", 0,
             "/api/public/observations?traceId=a%2Bb"},
        Case{"PlusIsNotSpace", "GET", "/api/public/observations?traceId=a+b", "a b", 403,
             "trace_mismatch"},
        Case{"SpaceIdEncoded", "GET", "/api/public/traces/a%20b", "a b", 0,
             "/api/public/traces/a%20b"},
        Case{"SlashIdByQuery", "GET", "/api/public/observations?traceId=a%2Fb", "a/b", 0,
             "/api/public/observations?traceId=a%2Fb"},
        // Another trace.
        Case{"OtherTrace", "GET", "/api/public/traces/tr-2", "tr-1", 403, "trace_mismatch"},
        Case{"OtherTraceByQuery", "GET", "/api/public/observations?traceId=tr-2&page=1", "tr-1",
             403, "trace_mismatch"},
        Case{"PrefixOfGranted", "GET", "/api/public/traces/tr-", "tr-1", 403, "trace_mismatch"},
        Case{"EmptyTraceParam", "GET", "/api/public/observations?traceId=", "tr-1", 403,
             "trace_mismatch"},
        Case{"EmptyGranted", "GET", "/api/public/observations?traceId=", "", 403, "trace_mismatch"},
        // List and export endpoints, and paths that only look like a route.
        Case{"TraceList", "GET", "/api/public/traces", "tr-1", 403, "no_route"},
        Case{"TraceListQuery", "GET", "/api/public/traces?page=1", "tr-1", 403, "no_route"},
        Case{"TrailingSlash", "GET", "/api/public/traces/", "tr-1", 403, "no_route"},
        Case{"ObservationList", "GET", "/api/public/observations", "tr-1", 403, "no_route"},
        Case{"ObservationListPaged", "GET", "/api/public/observations?page=1", "tr-1", 403,
             "no_route"},
        Case{"Root", "GET", "/", "tr-1", 403, "no_route"},
        Case{"CaseOfLiteral", "GET", "/api/public/Traces/tr-1", "tr-1", 403, "no_route"},
        Case{"EncodedSlash", "GET", "/api/public/traces/tr-1%2F..%2Ftr-2", "tr-1", 403, "no_route"},
        Case{"EncodedSlashIsGranted", "GET", "/api/public/traces/a%2Fb", "a/b", 403, "no_route"},
        Case{"DotDot", "GET", "/api/public/traces/..", "..", 403, "no_route"},
        Case{"EncodedDotDot", "GET", "/api/public/traces/%2E%2e", "..", 403, "no_route"},
        Case{"Dot", "GET", "/api/public/traces/.", ".", 403, "no_route"},
        Case{"DotDotAfterId", "GET", "/api/public/traces/tr-1/../tr-2", "tr-1", 403, "no_route"},
        Case{"DotDotBackToGranted", "GET", "/api/public/traces/tr-2/../tr-1", "tr-1", 403,
             "no_route"},
        Case{"DotDotInPrefix", "GET", "/api/public/x/../traces/tr-1", "tr-1", 403, "no_route"},
        Case{"DoubleSlash", "GET", "/api/public//traces/tr-1", "tr-1", 403, "no_route"},
        Case{"LeadingDoubleSlash", "GET", "//api/public/traces/tr-1", "tr-1", 403, "no_route"},
        Case{"TrailingSlashAfterId", "GET", "/api/public/traces/tr-1/", "tr-1", 403, "no_route"},
        // Methods.
        Case{"Post", "POST", "/api/public/traces/tr-1", "tr-1", 405, "method_not_allowed"},
        Case{"Delete", "DELETE", "/api/public/observations?traceId=tr-1", "tr-1", 405,
             "method_not_allowed"},
        Case{"LowercaseGet", "get", "/api/public/traces/tr-1", "tr-1", 405, "method_not_allowed"},
        Case{"PostToList", "POST", "/api/public/traces", "tr-1", 403, "no_route"},
        // Query parameters.
        Case{"DuplicateTraceId", "GET", "/api/public/observations?traceId=tr-1&traceId=tr-1",
             "tr-1", 400, "bad_target"},
        Case{"TwoTraceIds", "GET", "/api/public/observations?traceId=tr-1&traceId=tr-2", "tr-1",
             400, "bad_target"},
        Case{"TwoTraceIdsOneEncoded", "GET", "/api/public/observations?traceId=tr-1&trace%49d=x",
             "tr-1", 400, "bad_target"},
        Case{"DuplicateExtra", "GET", "/api/public/observations?traceId=tr-1&page=1&page=2", "tr-1",
             400, "bad_target"},
        Case{"UnknownParam", "GET", "/api/public/observations?traceId=tr-1&userId=u", "tr-1", 403,
             "query_not_allowed"},
        Case{"ParamOnTraceRoute", "GET", "/api/public/traces/tr-1?page=1", "tr-1", 403,
             "query_not_allowed"},
        Case{"EmptyParamName", "GET", "/api/public/observations?traceId=tr-1&=x", "tr-1", 403,
             "query_not_allowed"},
        Case{"ParamNameCase", "GET", "/api/public/observations?traceid=tr-1", "tr-1", 403,
             "no_route"},
        // Targets that are not origin-form, or not strictly encoded.
        Case{"Empty", "GET", "", "tr-1", 400, "bad_target"},
        Case{"Asterisk", "OPTIONS", "*", "tr-1", 400, "bad_target"},
        Case{"AbsoluteForm", "GET", "http://store/api/public/traces/tr-1", "tr-1", 400,
             "bad_target"},
        Case{"QueryOnly", "GET", "?traceId=tr-1", "tr-1", 400, "bad_target"},
        Case{"Fragment", "GET", "/api/public/traces/tr-1#x", "tr-1", 400, "bad_target"},
        Case{"Space", "GET", "/api/public/traces/tr 1", "tr 1", 400, "bad_target"},
        Case{"Tab", "GET", "/api/public/traces/tr\t1", "tr\t1", 400, "bad_target"},
        Case{"Nul", "GET", std::string("/api/public/traces/tr\0", 22), "tr", 400, "bad_target"},
        Case{"Del", "GET", "/api/public/traces/tr\x7f", "tr\x7f", 400, "bad_target"},
        Case{"RawUtf8", "GET", "/api/public/traces/\xC3\xBC", "\xC3\xBC", 400, "bad_target"},
        Case{"BadEscape", "GET", "/api/public/traces/%zz", "tr-1", 400, "bad_target"},
        Case{"ShortEscape", "GET", "/api/public/traces/tr-1%4", "tr-1", 400, "bad_target"},
        Case{"TrailingPercent", "GET", "/api/public/traces/tr-1%", "tr-1", 400, "bad_target"},
        Case{"BadEscapeInQuery", "GET", "/api/public/observations?traceId=tr-1&page=%G1", "tr-1",
             400, "bad_target"},
        Case{"BadEscapeInName", "GET", "/api/public/observations?traceId=tr-1&%=1", "tr-1", 400,
             "bad_target"},
        Case{"TooLong", "GET", kLong, "tr-1", 400, "bad_target"},
        Case{"LongestAllowed", "GET", kLong.substr(0, 8192), "tr-1", 403, "trace_mismatch"}),
    PrintCase);

TEST(MatchRequest, MismatchNamesBothIds) {
  MatchResult r = MatchRequest(Langfuse(), "GET", "/api/public/traces/tr-2", "tr-1");
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.refusal.message,
            "the request names trace 'tr-2' but this credential is for trace 'tr-1'");
}

TEST(MatchRequest, MismatchMessageEscapesAndCuts) {
  MatchResult r = MatchRequest(Langfuse(), "GET", "/api/public/traces/%C3%BC'%0A", "tr-1");
  ASSERT_FALSE(r.ok);
  EXPECT_THAT(r.refusal.message, HasSubstr("'\\xC3\\xBC\\x27\\x0A'"));

  r = MatchRequest(Langfuse(), "GET", "/api/public/traces/" + std::string(1000, 'x'), "tr-1");
  ASSERT_FALSE(r.ok);
  EXPECT_THAT(r.refusal.message, HasSubstr("'" + std::string(128, 'x') + "...' (1000 bytes)"));
}

TEST(MatchRequest, NoRouteMessage) {
  MatchResult r = MatchRequest(Langfuse(), "GET", "/api/public/traces?page=1", "tr-1");
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.refusal.message,
            "GET /api/public/traces is not an allowed route: only requests for the granted trace "
            "are proxied");
}

TEST(MatchRequest, MethodNotAllowedSaysWhichMethod) {
  MatchResult r = MatchRequest(Langfuse(), "POST", "/api/public/traces/tr-1", "tr-1");
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.refusal.allow, "GET");
  EXPECT_EQ(r.refusal.message,
            "POST is not allowed on /api/public/traces/tr-1: this route accepts GET only");
}

TEST(MatchRequest, QueryNotAllowedListsAllowed) {
  MatchResult r =
      MatchRequest(Langfuse(), "GET", "/api/public/observations?traceId=tr-1&userId=u", "tr-1");
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.refusal.message,
            "query parameter 'userId' is not allowed on this route (allowed: 'page', 'limit')");
}

TEST(MatchRequest, OkPointsAtTheRoute) {
  MatchResult r = MatchRequest(Langfuse(), "GET", "/api/public/observations?traceId=t", "t");
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.match.route, &Langfuse()[1]);
}

// Ids with spaces, unicode, '%', '+', '&', '=', '?' and '/' round-trip through PercentEncode.
TEST(MatchRequest, EncodedIdsRoundTrip) {
  const std::vector<std::string> ids = {"tr 1",        "trace-ü-😀", "100%",
                                        "a+b&c=d?e#f", "a/b",       std::string("nul\0x", 5),
                                        "~._-",        "\xff\xfe"};
  for (const std::string& id : ids) {
    SCOPED_TRACE(id);
    const std::string encoded = PercentEncode(id);
    MatchResult by_query =
        MatchRequest(Langfuse(), "GET", "/api/public/observations?traceId=" + encoded, id);
    ASSERT_TRUE(by_query.ok) << by_query.refusal.message;
    EXPECT_EQ(by_query.match.upstream_target, "/api/public/observations?traceId=" + encoded);
    EXPECT_EQ(by_query.match.upstream_target, BuildTarget(Langfuse()[1], id));

    MatchResult by_path = MatchRequest(Langfuse(), "GET", "/api/public/traces/" + encoded, id);
    if (id.find('/') != std::string::npos) {
      EXPECT_EQ(by_path.refusal.code, "no_route");  // a decoded '/' never matches
      continue;
    }
    ASSERT_TRUE(by_path.ok) << by_path.refusal.message;
    EXPECT_EQ(by_path.match.upstream_target, "/api/public/traces/" + encoded);
  }
}

TEST(MatchRequest, FirstFittingRouteWins) {
  config::HttpRoute narrow = ObservationsRoute();
  narrow.name = "narrow";
  narrow.allow_query = {};
  config::HttpRoute wide = ObservationsRoute();
  wide.name = "wide";
  const std::vector<config::HttpRoute> routes = {narrow, wide};

  MatchResult r = MatchRequest(routes, "GET", "/api/public/observations?traceId=t", "t");
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.match.route, &routes[0]);
  // The first route refuses the extra parameter but the second takes it.
  r = MatchRequest(routes, "GET", "/api/public/observations?traceId=t&page=1", "t");
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.match.route, &routes[1]);
  // When none takes it, the first fitting route's refusal is the answer.
  r = MatchRequest(routes, "GET", "/api/public/observations?traceId=t&x=1", "t");
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.refusal.code, "query_not_allowed");
}

TEST(MatchRequest, LiteralQueryValuesMatchExactly) {
  config::HttpRoute generations = ObservationsRoute();
  generations.parsed.query = {{"type", "GENERATION"}, {"traceId", "{trace_id}"}};
  generations.parsed.trace_query = 1;
  const std::vector<config::HttpRoute> routes = {generations};

  MatchResult r =
      MatchRequest(routes, "GET", "/api/public/observations?page=3&traceId=t&type=GENERATION", "t");
  ASSERT_TRUE(r.ok) << r.refusal.message;
  EXPECT_EQ(r.match.upstream_target, "/api/public/observations?type=GENERATION&traceId=t&page=3");
  EXPECT_EQ(
      MatchRequest(routes, "GET", "/api/public/observations?traceId=t&type=SPAN", "t").refusal.code,
      "no_route");
  EXPECT_EQ(MatchRequest(routes, "GET", "/api/public/observations?traceId=t", "t").refusal.code,
            "no_route");
}

TEST(MatchRequest, RouteWithoutTraceSlotMatchesNothing) {
  config::HttpRoute broken = TraceRoute();
  broken.parsed.trace_segment = -1;
  config::HttpRoute out_of_range = TraceRoute();
  out_of_range.parsed.trace_segment = 7;
  const std::vector<config::HttpRoute> routes = {broken, out_of_range};
  EXPECT_EQ(MatchRequest(routes, "GET", "/api/public/traces/{trace_id}", "t").refusal.code,
            "no_route");
  EXPECT_EQ(MatchRequest(routes, "GET", "/api/public/traces/t", "t").refusal.code, "no_route");
}

TEST(MatchRequest, TraceInPathAndQueryMustAgree) {
  config::HttpRoute both = TraceRoute();
  both.parsed.query = {{"traceId", "{trace_id}"}};
  both.parsed.trace_query = 0;
  const std::vector<config::HttpRoute> routes = {both};
  EXPECT_TRUE(MatchRequest(routes, "GET", "/api/public/traces/t?traceId=t", "t").ok);
  EXPECT_EQ(MatchRequest(routes, "GET", "/api/public/traces/t?traceId=u", "t").refusal.code,
            "trace_mismatch");
  EXPECT_EQ(MatchRequest(routes, "GET", "/api/public/traces/u?traceId=t", "t").refusal.code,
            "trace_mismatch");
}

TEST(TraceFitsRoute, DotsAndSlashesOnlyFitQuerySlots) {
  const config::HttpRoute& by_path = Langfuse()[0];
  const config::HttpRoute& by_query = Langfuse()[1];
  for (const std::string id : {"tr-1", "a..b", ".x", "a b", "%2F"}) {
    EXPECT_TRUE(TraceFitsRoute(by_path, id)) << id;
    EXPECT_TRUE(TraceFitsRoute(by_query, id)) << id;
  }
  for (const std::string id : {".", "..", "a/b", "/"}) {
    EXPECT_FALSE(TraceFitsRoute(by_path, id)) << id;
    EXPECT_TRUE(TraceFitsRoute(by_query, id)) << id;
  }
  EXPECT_FALSE(TraceFitsRoute(by_path, ""));
  EXPECT_FALSE(TraceFitsRoute(by_query, ""));
  // By query, ".." is an ordinary value.
  MatchResult r = MatchRequest(Langfuse(), "GET", "/api/public/observations?traceId=..", "..");
  ASSERT_TRUE(r.ok) << r.refusal.message;
  EXPECT_EQ(r.match.upstream_target, "/api/public/observations?traceId=..");
}

TEST(BuildTarget, Langfuse) {
  EXPECT_EQ(BuildTarget(Langfuse()[0], "tr-1"), "/api/public/traces/tr-1");
  EXPECT_EQ(BuildTarget(Langfuse()[0], "tr 1/ü"), "/api/public/traces/tr%201%2F%C3%BC");
  EXPECT_EQ(BuildTarget(Langfuse()[1], "tr-1"), "/api/public/observations?traceId=tr-1");
  EXPECT_EQ(BuildTarget(Langfuse()[1], "a&b=c"), "/api/public/observations?traceId=a%26b%3Dc");
}

TEST(PercentEncode, OnlyUnreservedStay) {
  EXPECT_EQ(PercentEncode(""), "");
  EXPECT_EQ(PercentEncode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(PercentEncode(" !\"#$%&'()*+,/:;=?@[\\]^`{|}"),
            "%20%21%22%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3D%3F%40%5B%5C%5D%5E%60%7B%7C%7D");
  EXPECT_EQ(PercentEncode(std::string("\0\x7f\x80\xff", 4)), "%00%7F%80%FF");
}

}  // namespace
}  // namespace tracegate::httproute
