#include "pgproxy/row_masker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "common/strings.h"
#include "pgproxy/pg_error.h"
#include "pgwire/framing.h"

namespace tracegate::pgproxy {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kTextOid = 25;
constexpr uint32_t kJsonOid = 114;
constexpr uint32_t kJsonbOid = 3802;
constexpr uint32_t kInt4Oid = 23;
constexpr uint32_t kInt8Oid = 20;
constexpr uint32_t kByteaOid = 17;
constexpr uint32_t kUuidOid = 2950;
constexpr uint32_t kTimestamptzOid = 1184;
constexpr uint32_t kNumericOid = 1700;

constexpr std::string_view kEmail = "jane.doe@example.com";
constexpr std::string_view kCard = "4111 1111 1111 1111";

std::shared_ptr<const masking::Masker> DefaultMasker() {
  static std::shared_ptr<const masking::Masker> masker = [] {
    absl::StatusOr<std::shared_ptr<const masking::Masker>> m =
        masking::Masker::Create(masking::Profile{});
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *m : nullptr;
  }();
  return masker;
}

RowMasker MakeMasker(ColumnNames names = {}) {
  absl::StatusOr<masking::Scanner> scanner = masking::Scanner::Create(DefaultMasker());
  EXPECT_TRUE(scanner.ok()) << scanner.status();
  return RowMasker(*std::move(scanner), std::move(names));
}

pgwire::Bytes AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct Col {
  std::string name;
  uint32_t type;
  int16_t format = 0;
};

RowMasker::Plan PlanOf(const std::vector<Col>& cols) {
  pgwire::RowDescription d;
  for (const Col& c : cols) {
    d.fields.push_back({.name = c.name, .type_oid = c.type, .type_size = -1, .format = c.format});
  }
  return MakeMasker().PlanFor(d);
}

// The body of a DataRow frame (what MaskRow reads).
std::string RowBody(const std::vector<std::optional<std::string>>& values) {
  pgwire::DataRow row;
  for (const auto& v : values) {
    row.values.push_back(v.has_value() ? std::optional(AsBytes(*v)) : std::nullopt);
  }
  std::string frame;
  pgwire::EncodeDataRow(row, frame);
  return frame.substr(5);
}

// The values of an encoded DataRow frame (nullopt = NULL); checks the frame's length.
std::vector<std::optional<std::string>> Values(const std::string& frame) {
  const pgwire::FrameResult r =
      pgwire::DecodeFrame(AsBytes(frame), pgwire::Direction::kBackend, pgwire::Limits{});
  EXPECT_EQ(r.status, pgwire::DecodeStatus::kFrame) << r.error;
  EXPECT_EQ(r.frame.wire_size, frame.size());
  absl::StatusOr<pgwire::DataRow> row = pgwire::ParseDataRow(r.frame.body);
  EXPECT_TRUE(row.ok()) << row.status();
  std::vector<std::optional<std::string>> out;
  for (const auto& v : row->values) {
    out.push_back(v.has_value() ? std::optional<std::string>(std::string(
                                      reinterpret_cast<const char*>(v->data()), v->size()))
                                : std::nullopt);
  }
  return out;
}

std::string BigEndian(int64_t v, int bytes) {
  std::string out;
  for (int i = bytes - 1; i >= 0; --i) {
    out.push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
  }
  return out;
}

TEST(RowMaskerTest, TextValuesAreMaskedAndTheRowIsRebuiltWithNewLengths) {
  RowMasker m = MakeMasker();
  const RowMasker::Plan plan = PlanOf({{"id", kTextOid}, {"note", kTextOid}, {"extra", kTextOid}});
  const std::string body = RowBody({"tr-1", Cat("write to ", kEmail, " today"), std::nullopt});
  std::string out = "prefix";
  absl::StatusOr<bool> changed = m.MaskRow(plan, AsBytes(body), out);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  ASSERT_TRUE(out.starts_with("prefix"));  // appended, never replaced
  const auto values = Values(out.substr(6));
  ASSERT_EQ(values.size(), 3u);
  EXPECT_EQ(values[0], "tr-1");
  EXPECT_EQ(values[1], "write to [REDACTED:EMAIL] today");
  EXPECT_EQ(values[2], std::nullopt);
  EXPECT_EQ(m.counts().Of("EMAIL"), 1u);
}

TEST(RowMaskerTest, CleanRowIsLeftAlone) {
  RowMasker m = MakeMasker();
  const RowMasker::Plan plan = PlanOf({{"id", kTextOid}, {"version", kTextOid}});
  const std::string body = RowBody({"tr-1", "numpy 1.10.23 in utils.py"});
  std::string out;
  absl::StatusOr<bool> changed = m.MaskRow(plan, AsBytes(body), out);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_FALSE(*changed);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(m.counts().Total(), 0u);
}

TEST(RowMaskerTest, JsonColumnsStayValidAndOpaqueFieldsPassByteForByte) {
  RowMasker m = MakeMasker();
  const std::string signature = "EqQBCkgIARABGAIiQLk9xPzq0cWt1hWJ3lq5b0Kc4yVbQ9Z2mJ3Xf0Q==";
  const std::string doc = Cat(R"({"input":"mail )", kEmail, R"(","nested":"{\"card\":\")", kCard,
                              R"(\"}","signature":")", signature, R"("})");
  for (const int16_t format : {0, 1}) {
    for (const uint32_t type : {kJsonOid, kJsonbOid}) {
      const std::string value = type == kJsonbOid && format == 1 ? "\1" + doc : doc;
      std::string out;
      absl::StatusOr<bool> changed =
          m.MaskRow(PlanOf({{"output", type, format}}), AsBytes(RowBody({value})), out);
      ASSERT_TRUE(changed.ok()) << changed.status();
      ASSERT_TRUE(*changed);
      std::string masked = *Values(out)[0];
      if (type == kJsonbOid && format == 1) {
        ASSERT_EQ(masked[0], '\1');  // the binary jsonb version byte is kept
        masked.erase(0, 1);
      }
      EXPECT_THAT(masked, HasSubstr("mail [REDACTED:EMAIL]"));
      EXPECT_THAT(masked, HasSubstr(R"(\"card\":\"[REDACTED:CARD]\")"));
      EXPECT_THAT(masked, HasSubstr(signature));
      EXPECT_THAT(masked, ::testing::Not(HasSubstr("jane.doe")));
    }
  }
}

TEST(RowMaskerTest, InvalidJsonInAJsonColumnEndsTheStatement) {
  RowMasker m = MakeMasker();
  std::string out;
  absl::StatusOr<bool> changed =
      m.MaskRow(PlanOf({{"output", kJsonOid}}), AsBytes(RowBody({Cat("{\"a\": ", kEmail)})), out);
  ASSERT_FALSE(changed.ok());
  EXPECT_EQ(SqlStateOf(changed.status()), "XX000");
  EXPECT_THAT(changed.status().message(), HasSubstr("masking failed for column \"output\""));
  EXPECT_THAT(changed.status().message(), ::testing::Not(HasSubstr("jane")));
  EXPECT_TRUE(out.empty());
}

TEST(RowMaskerTest, NumbersInTextFormatAreScannedToo) {
  RowMasker m = MakeMasker();
  std::string out;
  absl::StatusOr<bool> changed =
      m.MaskRow(PlanOf({{"card", kNumericOid}}), AsBytes(RowBody({"4111111111111111"})), out);
  ASSERT_TRUE(changed.ok()) << changed.status();
  ASSERT_TRUE(*changed);
  EXPECT_EQ(Values(out)[0], "[REDACTED:CARD]");
}

TEST(RowMaskerTest, BinaryTextIsReadAsText) {
  RowMasker m = MakeMasker();
  std::string out;
  absl::StatusOr<bool> changed =
      m.MaskRow(PlanOf({{"note", kTextOid, 1}}), AsBytes(RowBody({std::string(kEmail)})), out);
  ASSERT_TRUE(changed.ok()) << changed.status();
  ASSERT_TRUE(*changed);
  EXPECT_EQ(Values(out)[0], "[REDACTED:EMAIL]");
}

TEST(RowMaskerTest, BinaryIntegersAreDecodedAndRefusedOnlyWhenTheyMustBeMasked) {
  RowMasker m = MakeMasker();
  std::string out;
  absl::StatusOr<bool> clean =
      m.MaskRow(PlanOf({{"n", kInt4Oid, 1}, {"m", kInt8Oid, 1}}),
                AsBytes(RowBody({BigEndian(-42, 4), BigEndian(7, 8)})), out);
  ASSERT_TRUE(clean.ok()) << clean.status();
  EXPECT_FALSE(*clean);
  absl::StatusOr<bool> card = m.MaskRow(PlanOf({{"card", kInt8Oid, 1}}),
                                        AsBytes(RowBody({BigEndian(4111111111111111, 8)})), out);
  ASSERT_FALSE(card.ok());
  EXPECT_EQ(SqlStateOf(card.status()), "0A000");
  EXPECT_THAT(card.status().message(), HasSubstr("column \"card\""));
  EXPECT_THAT(card.status().message(), HasSubstr("text format"));
  EXPECT_THAT(card.status().message(), ::testing::Not(HasSubstr("4111")));
}

TEST(RowMaskerTest, ByteaIsRefusedButItsNullIsNot) {
  RowMasker m = MakeMasker();
  std::string out;
  const RowMasker::Plan plan = PlanOf({{"id", kTextOid}, {"blob", kByteaOid}});
  absl::StatusOr<bool> null_blob = m.MaskRow(plan, AsBytes(RowBody({"tr-1", std::nullopt})), out);
  ASSERT_TRUE(null_blob.ok()) << null_blob.status();
  absl::StatusOr<bool> blob = m.MaskRow(plan, AsBytes(RowBody({"tr-1", "\\x6a616e65"})), out);
  ASSERT_FALSE(blob.ok());
  EXPECT_EQ(SqlStateOf(blob.status()), "0A000");
  EXPECT_THAT(blob.status().message(), HasSubstr("column \"blob\" is bytea"));
}

TEST(RowMaskerTest, OtherBinaryTypesAreRefusedAndTypesWithoutTextPass) {
  RowMasker m = MakeMasker();
  std::string out;
  absl::StatusOr<bool> numeric = m.MaskRow(PlanOf({{"amount", kNumericOid, 1}}),
                                           AsBytes(RowBody({std::string(8, '\0')})), out);
  ASSERT_FALSE(numeric.ok());
  EXPECT_EQ(SqlStateOf(numeric.status()), "0A000");
  EXPECT_THAT(numeric.status().message(), HasSubstr("binary format"));
  absl::StatusOr<bool> passed =
      m.MaskRow(PlanOf({{"u", kUuidOid, 1}, {"t", kTimestamptzOid, 1}, {"v", kUuidOid}}),
                AsBytes(RowBody({std::string(16, '\x41'), BigEndian(1, 8),
                                 "0b0f9a0e-6f3f-4e7e-9a48-4111111111111111"})),
                out);
  ASSERT_TRUE(passed.ok()) << passed.status();
  EXPECT_FALSE(*passed);
}

TEST(RowMaskerTest, ColumnsOfTraceTablesAreNamedByTheCatalogNotTheAlias) {
  // traces (oid 16400): attnum 3 is "session_id".
  RowMasker m = MakeMasker({{(uint64_t{16400} << 16) | 3, "session_id"}});
  pgwire::RowDescription d;
  d.fields.push_back({.name = "alias", .table_oid = 16400, .column_attr = 3, .type_oid = kTextOid});
  d.fields.push_back(
      {.name = "session_id", .table_oid = 0, .column_attr = 0, .type_oid = kTextOid});
  d.fields.push_back({.name = "x", .table_oid = 16999, .column_attr = 1, .type_oid = kTextOid});
  const RowMasker::Plan plan = m.PlanFor(d);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].name, "session_id");
  EXPECT_TRUE(plan[0].trusted_name);
  EXPECT_EQ(plan[1].name, "session_id");  // computed: the client named it
  EXPECT_FALSE(plan[1].trusted_name);
  EXPECT_EQ(plan[2].name, "x");  // a table that is not a trace table
  EXPECT_FALSE(plan[2].trusted_name);
}

TEST(RowMaskerTest, RowThatDoesNotMatchItsPlanIsAProtocolError) {
  RowMasker m = MakeMasker();
  std::string out;
  absl::StatusOr<bool> r = m.MaskRow(PlanOf({{"a", kTextOid}}), AsBytes(RowBody({"x", "y"})), out);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RowMaskerTest, ErrorAndNoticeTextIsMaskedAndTheSqlstateKept) {
  RowMasker m = MakeMasker();
  pgwire::ErrorFields fields;
  fields.fields = {{'S', "ERROR"},
                   {'V', "ERROR"},
                   {'C', "22P02"},
                   {'M', Cat("invalid input syntax for type integer: \"", kEmail, "\"")},
                   {'D', Cat("card ", kCard)}};
  std::string error;
  pgwire::EncodeErrorResponse(fields, error);
  std::string out;
  absl::StatusOr<bool> changed =
      m.MaskMessage(pgwire::backend::kErrorResponse, AsBytes(error).subspan(5), out);
  ASSERT_TRUE(changed.ok()) << changed.status();
  ASSERT_TRUE(*changed);
  ASSERT_EQ(out[0], pgwire::backend::kErrorResponse);
  absl::StatusOr<pgwire::ErrorFields> parsed = pgwire::ParseErrorFields(AsBytes(out).subspan(5));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed->Find('C'), "22P02");
  EXPECT_EQ(*parsed->Find('M'), "invalid input syntax for type integer: \"[REDACTED:EMAIL]\"");
  EXPECT_EQ(*parsed->Find('D'), "card [REDACTED:CARD]");

  std::string notice;
  pgwire::EncodeNoticeResponse({.fields = {{'S', "NOTICE"}, {'M', "nothing personal"}}}, notice);
  out.clear();
  changed = m.MaskMessage(pgwire::backend::kNoticeResponse, AsBytes(notice).subspan(5), out);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_FALSE(*changed);
}

}  // namespace
}  // namespace tracegate::pgproxy
