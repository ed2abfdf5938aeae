#include "httproute/trace_check.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

namespace tracegate::httproute {
namespace {

using Path = std::vector<config::JsonPathStep>;

const Path kId = {{"id", false}};
const Path kData = {{"data", true}, {"traceId", false}};
const Path kNested = {{"data", true}, {"items", true}, {"traceId", false}};
const Path kMeta = {{"meta", false}, {"trace", false}, {"id", false}};

struct Case {
  std::string name;
  Path path;
  std::string json;
  absl::StatusCode code;
  std::string message;  // expected exactly when not empty
};

std::string PrintCase(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class TraceCheckTable : public ::testing::TestWithParam<Case> {};

TEST_P(TraceCheckTable, Checks) {
  const Case& c = GetParam();
  absl::Status status = CheckResponseTrace(c.json, c.path, "tr-1");
  EXPECT_EQ(status.code(), c.code) << status;
  if (!c.message.empty()) {
    EXPECT_EQ(status.message(), c.message);
  }
}

constexpr absl::StatusCode kOk = absl::StatusCode::kOk;
constexpr absl::StatusCode kDenied = absl::StatusCode::kPermissionDenied;
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

std::string Nest(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

INSTANTIATE_TEST_SUITE_P(
    Paths, TraceCheckTable,
    ::testing::Values(
        // Objects.
        Case{"ObjectOk", kId, R"({"id":"tr-1","name":"x","input":{"id":"tr-2"}})", kOk, ""},
        Case{"EscapedIdOk", kId, R"({"id":"tr\u002d1"})", kOk, ""},
        Case{"EscapedKeyOk", kId, R"({"i\u0064":"tr-1"})", kOk, ""},
        Case{"NestedObjectOk", kMeta, R"({"meta":{"trace":{"id":"tr-1"}}})", kOk, ""},
        Case{"ObjectOther", kId, R"({"id":"tr-2"})", kDenied,
             "response trace id at id is 'tr-2', not the granted trace 'tr-1'"},
        Case{"ObjectMissing", kId, R"({"traceId":"tr-1"})", kDenied,
             "response has no trace id at id"},
        Case{"ObjectNull", kId, R"({"id":null})", kDenied,
             "response trace id at id is not a string"},
        Case{"ObjectNumber", kId, R"({"id":1})", kDenied,
             "response trace id at id is not a string"},
        Case{"ObjectArrayId", kId, R"({"id":["tr-1"]})", kDenied,
             "response trace id at id is not a string"},
        Case{"NotAnObject", kId, R"(["tr-1"])", kDenied, "response is not a JSON object"},
        Case{"ScalarDocument", kId, R"("tr-1")", kDenied, "response is not a JSON object"},
        Case{"MidStepNotObject", kMeta, R"({"meta":{"trace":"tr-1"}})", kDenied,
             "response value at meta.trace is not an object"},
        Case{"MidStepMissing", kMeta, R"({"meta":{}})", kDenied,
             "response has no trace id at meta.trace.id"},
        Case{"DuplicateId", kId, R"({"id":"tr-1","id":"tr-2"})", kDenied,
             "response has a duplicate key at id"},
        Case{"DuplicateIdSame", kId, R"({"id":"tr-1","id":"tr-1"})", kDenied, ""},
        Case{"DuplicateEscapedId", kId, R"({"id":"tr-2","\u0069d":"tr-1"})", kDenied,
             "response has a duplicate key at id"},
        Case{"DuplicateOuterKey", kData, R"({"data":[],"data":[{"traceId":"tr-2"}]})", kDenied,
             "response has a duplicate key at data"},
        // Arrays.
        Case{"ArrayOk", kData, R"({"data":[{"traceId":"tr-1"},{"traceId":"tr-1","x":1}]})", kOk,
             ""},
        Case{"EmptyArrayOk", kData, R"({"data":[],"meta":{"page":1}})", kOk, ""},
        Case{"OneDiffers", kData,
             R"({"data":[{"traceId":"tr-1"},{"traceId":"tr-1"},{"traceId":"tr-1"},)"
             R"({"traceId":"tr-9"}]})",
             kDenied,
             "response trace id at data[3].traceId is 'tr-9', not the granted trace 'tr-1'"},
        Case{"ElementMissingId", kData, R"({"data":[{"traceId":"tr-1"},{"id":"tr-1"}]})", kDenied,
             "response has no trace id at data[1].traceId"},
        Case{"ElementNotObject", kData, R"({"data":[{"traceId":"tr-1"},"tr-1"]})", kDenied,
             "response value at data[1] is not an object"},
        Case{"ElementDuplicateId", kData, R"({"data":[{"traceId":"tr-1","traceId":"tr-2"}]})",
             kDenied, "response has a duplicate key at data[0].traceId"},
        Case{"DataNotArray", kData, R"({"data":{"traceId":"tr-1"}})", kDenied,
             "response value at data is not an array"},
        Case{"DataMissing", kData, R"({"items":[]})", kDenied,
             "response has no trace id at data[*].traceId"},
        Case{"ElementNumberId", kData, R"({"data":[{"traceId":7}]})", kDenied,
             "response trace id at data[0].traceId is not a string"},
        // Nested arrays.
        Case{"NestedOk", kNested,
             R"({"data":[{"items":[{"traceId":"tr-1"}]},{"items":[]},)"
             R"({"items":[{"traceId":"tr-1"},{"traceId":"tr-1"}]}]})",
             kOk, ""},
        Case{"NestedDiffers", kNested,
             R"({"data":[{"items":[{"traceId":"tr-1"}]},{"items":[{"traceId":"tr-1"},)"
             R"({"traceId":"tr-2"}]}]})",
             kDenied,
             "response trace id at data[1].items[1].traceId is 'tr-2', not the granted "
             "trace 'tr-1'"},
        Case{"NestedMissingItems", kNested, R"({"data":[{"items":[]},{}]})", kDenied,
             "response has no trace id at data[1].items[*].traceId"},
        Case{"EachOfStrings", Path{{"ids", true}}, R"({"ids":["tr-1","tr-1"]})", kOk, ""},
        Case{"EachOfStringsDiffers", Path{{"ids", true}}, R"({"ids":["tr-1","tr-3"]})", kDenied,
             "response trace id at ids[1] is 'tr-3', not the granted trace 'tr-1'"},
        // Not JSON, or too deep.
        Case{"Empty", kId, "", kInvalid, ""},
        Case{"Truncated", kId, R"({"id":"tr-1")", kInvalid, ""},
        Case{"TrailingGarbage", kId, R"({"id":"tr-1"} x)", kInvalid, ""},
        Case{"TwoDocuments", kId, R"({"id":"tr-1"}{"id":"tr-2"})", kInvalid, ""},
        Case{"BadUtf8", kId, "{\"id\":\"tr-1\",\"x\":\"\xff\"}", kInvalid, ""},
        Case{"Html", kId, "<html>502</html>", kInvalid, ""},
        Case{"Deep10000", kId, Nest(10000), kInvalid, "response JSON nests deeper than 256 levels"},
        Case{"Deep10000Unclosed", kId, std::string(10000, '['), kInvalid, ""},
        Case{"Deep257", kId, Nest(257), kInvalid, "response JSON nests deeper than 256 levels"},
        Case{"Deep256", kId, Nest(256), kDenied, "response is not a JSON object"}),
    PrintCase);

TEST(CheckResponseTrace, LongOtherIdIsCut) {
  const std::string other(1000, 'z');
  absl::Status status = CheckResponseTrace(R"({"id":")" + other + R"("})", kId, "tr-1");
  EXPECT_EQ(status.code(), kDenied);
  EXPECT_EQ(status.message(), "response trace id at id is '" + std::string(128, 'z') +
                                  "...' (1000 bytes), not the granted trace 'tr-1'");
}

TEST(CheckResponseTrace, MessageNamesNothingElse) {
  absl::Status status = CheckResponseTrace(
      R"({"data":[{"traceId":"tr-1","input":"secret-a"},{"traceId":"tr-\n2","output":"secret-b"}]})",
      kData, "tr-1");
  EXPECT_EQ(status.code(), kDenied);
  EXPECT_EQ(status.message(),
            "response trace id at data[1].traceId is 'tr-\\x0A2', not the granted trace 'tr-1'");
}

// Found by route_fuzz: a default string_view has a null data().
TEST(CheckResponseTrace, NullEmptyBody) {
  EXPECT_EQ(CheckResponseTrace(std::string_view(), kId, "tr-1").code(), kInvalid);
  EXPECT_EQ(CheckResponseTrace(std::string_view(), {{"data", true}}, "tr-1").code(), kInvalid);
}

TEST(CheckResponseTrace, EmptyPathIsTheDocument) {
  EXPECT_TRUE(CheckResponseTrace(R"("tr-1")", {}, "tr-1").ok());
  EXPECT_EQ(CheckResponseTrace(R"({"id":"tr-1"})", {}, "tr-1").message(),
            "response trace id at the top level is not a string");
}

// A large response frees the thread's parser afterwards; the next (small, deep) one must still
// be held to the depth limit.
TEST(CheckResponseTrace, DepthLimitSurvivesParserReset) {
  std::string big = R"({"data":[)";
  for (int i = 0; i < 100000; ++i) {
    big += i == 0 ? "" : ",";
    big += R"({"traceId":"tr-1","n":12345})";
  }
  big += "]}";
  ASSERT_GT(big.size(), size_t{2} << 20);
  EXPECT_TRUE(CheckResponseTrace(big, kData, "tr-1").ok());
  EXPECT_EQ(CheckResponseTrace(Nest(300), kId, "tr-1").code(), kInvalid);
  EXPECT_TRUE(CheckResponseTrace(R"({"id":"tr-1"})", kId, "tr-1").ok());
}

}  // namespace
}  // namespace tracegate::httproute
