#include "pgproxy/protocol_gate.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgproxy/pg_error.h"
#include "pgwire/framing.h"
#include "pgwire/messages.h"
#include "sql/gate.h"

namespace tracegate::pgproxy {
namespace {

using pgwire::Direction;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Action = ProtocolGate::Action;

constexpr std::string_view kTrace = "tr-1";
constexpr std::string_view kUuidTrace = "0b7e6c1a-2f4d-4c8e-9a1b-3c5d7e9f1a2b";
// The catalog as the tests pretend it is: public.traces has OID 16384 and id is its first
// column; public.observations has OID 16390 and trace_id is its second.
constexpr uint32_t kTracesOid = 16384;
constexpr uint32_t kObservationsOid = 16390;
constexpr uint32_t kInt4Oid = 23;
constexpr uint32_t kTextOid = 25;
constexpr uint32_t kVarcharOid = 1043;
constexpr uint32_t kUuidOid = 2950;

// A statement that pins traces.id to its first parameter.
constexpr std::string_view kPinnedByParam = "SELECT id, name FROM traces WHERE id = $1";
// A statement the gate allows that the backend will refuse (the column does not exist).
constexpr std::string_view kFailsAtBackend = "SELECT no_such_column FROM traces WHERE id = 'tr-1'";

constexpr std::string_view kBlockedPrefix = "tracegate: statement blocked";
// What a refused message is replaced with: text that fails to parse, so the backend answers
// with an error of its own (which the gate replaces with its refusal).
constexpr std::string_view kRefusedSql = "tracegate: statement refused by the gateway";
constexpr std::string_view kOtherTraceBind =
    "tracegate: statement blocked (other_trace): parameter $1 must be bound to the granted "
    "trace id";

pgwire::Bytes AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string AsString(pgwire::Bytes b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// The 16 bytes of kUuidTrace, as a uuid travels in binary format.
std::string UuidTraceBytes() {
  return std::string("\x0b\x7e\x6c\x1a\x2f\x4d\x4c\x8e\x9a\x1b\x3c\x5d\x7e\x9f\x1a\x2b", 16);
}

// ---- Client messages ---------------------------------------------------------------------

std::string ClientQuery(std::string_view sql) {
  std::string out;
  pgwire::EncodeQuery(sql, out);
  return out;
}

std::string ClientParse(std::string_view name, std::string_view query,
                        std::vector<uint32_t> param_types = {}) {
  std::string out;
  pgwire::EncodeParse({.statement = std::string(name),
                       .query = std::string(query),
                       .param_types = std::move(param_types)},
                      out);
  return out;
}

// nullopt = NULL.
std::string ClientBind(std::string_view portal, std::string_view statement,
                       const std::vector<std::optional<std::string>>& params,
                       std::vector<int16_t> param_formats = {},
                       std::vector<int16_t> result_formats = {}) {
  pgwire::Bind bind{.portal = std::string(portal),
                    .statement = std::string(statement),
                    .param_formats = std::move(param_formats),
                    .result_formats = std::move(result_formats)};
  for (const std::optional<std::string>& p : params) {
    bind.params.push_back(p.has_value() ? std::optional(AsBytes(*p)) : std::nullopt);
  }
  std::string out;
  pgwire::EncodeBind(bind, out);
  return out;
}

std::string ClientDescribe(char kind, std::string_view name) {
  std::string out;
  pgwire::EncodeDescribe({.kind = kind, .name = std::string(name)}, out);
  return out;
}

std::string ClientExecute(std::string_view portal, int32_t max_rows = 0) {
  std::string out;
  pgwire::EncodeExecute({.portal = std::string(portal), .max_rows = max_rows}, out);
  return out;
}

std::string ClientClose(char kind, std::string_view name) {
  std::string out;
  pgwire::EncodeClose({.kind = kind, .name = std::string(name)}, out);
  return out;
}

std::string ClientEmpty(char type) {
  std::string out;
  pgwire::EncodeEmpty(type, out);
  return out;
}
std::string ClientSync() { return ClientEmpty('S'); }
std::string ClientFlush() { return ClientEmpty('H'); }

// ---- Backend messages --------------------------------------------------------------------

pgwire::FieldDescription Column(std::string name, uint32_t table_oid, int16_t attnum,
                                uint32_t type_oid = kTextOid, int16_t format = 0) {
  return {.name = std::move(name),
          .table_oid = table_oid,
          .column_attr = attnum,
          .type_oid = type_oid,
          .type_size = -1,
          .type_modifier = -1,
          .format = format};
}
pgwire::FieldDescription TraceIdColumn(int16_t format = 0) {
  return Column("id", kTracesOid, 1, kTextOid, format);
}
pgwire::FieldDescription NameColumn() { return Column("name", kTracesOid, 2); }

std::string BackendRowDescription(std::vector<pgwire::FieldDescription> fields) {
  std::string out;
  pgwire::EncodeRowDescription({.fields = std::move(fields)}, out);
  return out;
}
// The layout of kPinnedByParam's result: (traces.id, traces.name).
std::string PinnedRowDescription() {
  return BackendRowDescription({TraceIdColumn(), NameColumn()});
}

// nullopt = NULL.
std::string BackendDataRow(const std::vector<std::optional<std::string>>& values) {
  pgwire::DataRow row;
  for (const std::optional<std::string>& v : values) {
    row.values.push_back(v.has_value() ? std::optional(AsBytes(*v)) : std::nullopt);
  }
  std::string out;
  pgwire::EncodeDataRow(row, out);
  return out;
}

std::string BackendComplete(std::string_view tag) {
  std::string out;
  pgwire::EncodeCommandComplete(tag, out);
  return out;
}

std::string BackendReady(char status = 'I') {
  std::string out;
  pgwire::EncodeReadyForQuery({.status = status}, out);
  return out;
}

// '1' ParseComplete, '2' BindComplete, '3' CloseComplete, 'n' NoData, 'I'
// EmptyQueryResponse, 's' PortalSuspended.
std::string BackendEmpty(char type) {
  std::string out;
  pgwire::EncodeEmpty(type, out);
  return out;
}

std::string BackendParameterDescription(std::vector<uint32_t> types) {
  std::string out;
  pgwire::EncodeParameterDescription({.type_oids = std::move(types)}, out);
  return out;
}

std::string BackendError(std::string_view sqlstate, std::string_view message) {
  std::string out;
  pgwire::EncodeError("ERROR", sqlstate, message, out);
  return out;
}

// How PostgreSQL answers the unparsable text a refused message is replaced with.
std::string BackendSyntaxError() {
  return BackendError("42601", "syntax error at or near \"tracegate\"");
}

// ---- Decoding what the gate sent -----------------------------------------------------------

struct Message {
  char type = 0;
  std::string body;
};

std::vector<Message> Split(std::string_view wire, Direction direction) {
  std::vector<Message> out;
  pgwire::Bytes rest = AsBytes(wire);
  while (!rest.empty()) {
    const pgwire::FrameResult r = pgwire::DecodeFrame(rest, direction, pgwire::Limits{});
    if (r.status != pgwire::DecodeStatus::kFrame) {
      ADD_FAILURE() << "the gate sent bytes that are not whole frames: " << r.error;
      break;
    }
    out.push_back({r.frame.type, AsString(r.frame.body)});
    rest = rest.subspan(r.frame.wire_size);
  }
  return out;
}

// The type bytes of `messages`, e.g. "TDCZ".
std::string Types(const std::vector<Message>& messages) {
  std::string out;
  for (const Message& m : messages) {
    out.push_back(m.type);
  }
  return out;
}

::testing::AssertionResult IsError(const Message& m, std::string_view sqlstate,
                                   std::string_view message_prefix) {
  if (m.type != 'E') {
    return ::testing::AssertionFailure() << "type '" << m.type << "', not an ErrorResponse";
  }
  absl::StatusOr<pgwire::ErrorFields> fields = pgwire::ParseErrorFields(AsBytes(m.body));
  if (!fields.ok()) {
    return ::testing::AssertionFailure() << fields.status();
  }
  const std::string* severity = fields->Find('S');
  const std::string* code = fields->Find('C');
  const std::string* message = fields->Find('M');
  if (severity == nullptr || *severity != "ERROR") {
    return ::testing::AssertionFailure() << "severity is not ERROR";
  }
  if (code == nullptr || *code != sqlstate) {
    return ::testing::AssertionFailure()
           << "SQLSTATE " << (code == nullptr ? "(none)" : *code) << ", want " << sqlstate;
  }
  if (message == nullptr || !std::string_view(*message).starts_with(message_prefix)) {
    return ::testing::AssertionFailure() << "message \"" << (message == nullptr ? "" : *message)
                                         << "\" does not start with \"" << message_prefix << "\"";
  }
  return ::testing::AssertionSuccess();
}

// Whether `m` is the Parse a refused extended-protocol message becomes: the unparsable text,
// under a placeholder statement name.
::testing::AssertionResult IsPlaceholderParse(const Message& m) {
  if (m.type != 'P') {
    return ::testing::AssertionFailure() << "type '" << m.type << "', not a Parse";
  }
  absl::StatusOr<pgwire::Parse> parse = pgwire::ParseParse(AsBytes(m.body));
  if (!parse.ok()) {
    return ::testing::AssertionFailure() << parse.status();
  }
  // Longer than NAMEDATALEN - 1, so no client can have prepared a statement of that name.
  if (parse->statement.size() <= 63 || !parse->statement.starts_with("tracegate:")) {
    return ::testing::AssertionFailure() << "prepares \"" << parse->statement << "\"";
  }
  if (parse->query != kRefusedSql) {
    return ::testing::AssertionFailure() << "parses \"" << parse->query << "\"";
  }
  if (!parse->param_types.empty()) {
    return ::testing::AssertionFailure() << "declares parameter types";
  }
  return ::testing::AssertionSuccess();
}

std::string ActionName(const absl::StatusOr<Action>& action) {
  if (!action.ok()) {
    return action.status().ToString();
  }
  switch (*action) {
    case Action::kForwarded:
      return "forwarded";
    case Action::kSubstituted:
      return "substituted";
    case Action::kDropped:
      return "dropped";
  }
  return "?";
}

std::shared_ptr<const sql::Gate> MakeSqlGate() {
  config::Gate config;
  config.trace_tables = {{.schema = "public", .name = "traces", .id_column = "id"},
                         {.schema = "public", .name = "observations", .id_column = "trace_id"}};
  absl::StatusOr<std::shared_ptr<const sql::Gate>> gate = sql::Gate::Create(config);
  EXPECT_TRUE(gate.ok()) << gate.status();
  return gate.ok() ? *gate : nullptr;
}

// One ProtocolGate and the two byte streams it writes.
class Harness {
 public:
  explicit Harness(GateLimits limits = {}, std::string_view trace_id = kTrace,
                   std::unique_ptr<RowMasker> masker = nullptr)
      : sql_gate_(MakeSqlGate()),
        gate_(*sql_gate_, std::string(trace_id),
              TraceColumns{TraceColumnKey(kTracesOid, 1), TraceColumnKey(kObservationsOid, 2)},
              limits, std::move(masker)) {}

  // Hands one encoded client message to the gate: "forwarded", "substituted", "dropped" or
  // the error.
  std::string Client(const std::string& wire) {
    const pgwire::FrameResult r =
        pgwire::DecodeFrame(AsBytes(wire), Direction::kFrontend, pgwire::Limits{});
    EXPECT_EQ(r.status, pgwire::DecodeStatus::kFrame) << r.error;
    EXPECT_EQ(r.frame.wire_size, wire.size());
    return ActionName(gate_.OnClientFrame(r.frame, AsBytes(wire), to_backend_));
  }
  // The same, when the status itself matters.
  absl::StatusOr<Action> ClientStatus(const std::string& wire) {
    const pgwire::FrameResult r =
        pgwire::DecodeFrame(AsBytes(wire), Direction::kFrontend, pgwire::Limits{});
    EXPECT_EQ(r.status, pgwire::DecodeStatus::kFrame) << r.error;
    return gate_.OnClientFrame(r.frame, AsBytes(wire), to_backend_);
  }

  // Hands one encoded backend message to the gate.
  absl::Status Backend(const std::string& wire) {
    const pgwire::FrameResult r =
        pgwire::DecodeFrame(AsBytes(wire), Direction::kBackend, pgwire::Limits{});
    EXPECT_EQ(r.status, pgwire::DecodeStatus::kFrame) << r.error;
    EXPECT_EQ(r.frame.wire_size, wire.size());
    return gate_.OnBackendFrame(r.frame, AsBytes(wire), to_client_);
  }
  // Several backend messages, each of which the gate must accept.
  void Answer(const std::vector<std::string>& messages) {
    for (const std::string& m : messages) {
      const absl::Status status = Backend(m);
      ASSERT_TRUE(status.ok()) << "backend message '" << m[0] << "': " << status;
    }
  }

  // What the gate wrote so far (the buffer is emptied).
  std::string TakeToBackend() { return std::exchange(to_backend_, {}); }
  std::string TakeToClient() { return std::exchange(to_client_, {}); }
  std::vector<Message> ToBackend() { return Split(TakeToBackend(), Direction::kFrontend); }
  std::vector<Message> ToClient() { return Split(TakeToClient(), Direction::kBackend); }

  // Prepares `name` as kPinnedByParam in a run of its own.
  void PreparePinned(std::string_view name) {
    ASSERT_EQ(Client(ClientParse(name, kPinnedByParam)), "forwarded");
    ASSERT_EQ(Client(ClientSync()), "forwarded");
    Answer({BackendEmpty('1'), BackendReady()});
    EXPECT_EQ(Types(ToClient()), "1Z");
    TakeToBackend();
  }

  [[nodiscard]] const GateStats& stats() const { return gate_.stats(); }
  bool TakeCancel() { return gate_.TakeCancel(); }
  const masking::Counts* masked() const { return gate_.masked(); }

 private:
  std::shared_ptr<const sql::Gate> sql_gate_;
  ProtocolGate gate_;
  std::string to_backend_;
  std::string to_client_;
};

// ---- Simple query -----------------------------------------------------------------------

TEST(ProtocolGateTest, AllowedSimpleQueryAndItsAnswersPassByteForByte) {
  Harness h;
  const std::string query = ClientQuery("SELECT id, name FROM traces WHERE id = 'tr-1'");
  EXPECT_EQ(h.Client(query), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), query);

  const std::vector<std::string> answers = {
      PinnedRowDescription(),
      BackendDataRow({"tr-1", "first"}),
      BackendDataRow({"tr-1", std::nullopt}),
      BackendComplete("SELECT 2"),
      BackendReady(),
  };
  h.Answer(answers);
  std::string expected;
  for (const std::string& a : answers) {
    expected += a;
  }
  EXPECT_EQ(h.TakeToClient(), expected);
  EXPECT_EQ(h.stats().statements, 1u);
  EXPECT_EQ(h.stats().blocked, 0u);
  EXPECT_EQ(h.stats().rows, 2u);
  EXPECT_EQ(h.stats().bytes, answers[1].size() + answers[2].size());
}

TEST(ProtocolGateTest, ReadsOfNoTraceTableAndTransactionControlPass) {
  Harness h;
  for (const char* sql : {"SELECT 1", "BEGIN READ ONLY", "COMMIT"}) {
    const std::string query = ClientQuery(sql);
    EXPECT_EQ(h.Client(query), "forwarded") << sql;
    EXPECT_EQ(h.TakeToBackend(), query) << sql;
  }
  h.Answer({BackendRowDescription({Column("?column?", 0, 0, kInt4Oid)}), BackendDataRow({"1"}),
            BackendComplete("SELECT 1"), BackendReady(), BackendComplete("BEGIN"),
            BackendReady('T'), BackendComplete("COMMIT"), BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "TDCZCZCZ");
}

struct BlockedQuery {
  const char* sql;
  const char* message_prefix;
};

class BlockedSimpleQueryTest : public ::testing::TestWithParam<BlockedQuery> {};

TEST_P(BlockedSimpleQueryTest, BecomesAnUnparsableQueryWhoseErrorIsReplacedByTheRefusal) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery(GetParam().sql)), "substituted");
  EXPECT_EQ(h.TakeToBackend(), ClientQuery(kRefusedSql));
  EXPECT_EQ(h.stats().blocked, 1u);

  ASSERT_TRUE(h.Backend(BackendSyntaxError()).ok());
  const std::vector<Message> error = h.ToClient();
  ASSERT_EQ(error.size(), 1u);
  EXPECT_TRUE(IsError(error[0], "42501", GetParam().message_prefix));

  ASSERT_TRUE(h.Backend(BackendReady()).ok());
  EXPECT_EQ(h.TakeToClient(), BackendReady());

  // The session goes on.
  const std::string next = ClientQuery("SELECT 1");
  EXPECT_EQ(h.Client(next), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), next);
}

INSTANTIATE_TEST_SUITE_P(
    ProtocolGateTest, BlockedSimpleQueryTest,
    ::testing::Values(
        BlockedQuery{"SELECT * FROM traces", "tracegate: statement blocked (trace_scope)"},
        BlockedQuery{"SELECT * FROM traces WHERE id = 'tr-2'",
                     "tracegate: statement blocked (other_trace)"},
        BlockedQuery{"COPY traces TO STDOUT",
                     "tracegate: statement blocked (bulk_export): COPY is not allowed"},
        BlockedQuery{"DELETE FROM traces WHERE id = 'tr-1'",
                     "tracegate: statement blocked (write)"},
        BlockedQuery{"SELECT * FROM pg_authid", "tracegate: statement blocked (relation)"},
        BlockedQuery{"PREPARE x AS SELECT 1", kBlockedPrefix.data()},
        BlockedQuery{"DEALLOCATE s1", kBlockedPrefix.data()},
        BlockedQuery{"DISCARD ALL", kBlockedPrefix.data()},
        // A parameter cannot be bound in a simple query, so it pins nothing.
        BlockedQuery{"SELECT * FROM traces WHERE id = $1",
                     "tracegate: statement blocked (trace_scope): a simple query cannot bind "
                     "parameters"}));

TEST(ProtocolGateTest, SyntaxErrorIsRefusedWith42601) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery("SELEC 1")), "substituted");
  EXPECT_EQ(h.TakeToBackend(), ClientQuery(kRefusedSql));
  h.Answer({BackendSyntaxError(), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42601", "tracegate: statement blocked (syntax)"));
}

TEST(ProtocolGateTest, ClientsOwnEmptyQueryIsAnsweredAsUsual) {
  Harness h;
  const std::string empty = ClientQuery("");
  EXPECT_EQ(h.Client(empty), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), empty);
  h.Answer({BackendEmpty('I'), BackendReady()});
  EXPECT_EQ(h.TakeToClient(), BackendEmpty('I') + BackendReady());
  EXPECT_EQ(h.stats().blocked, 0u);
}

TEST(ProtocolGateTest, PipelinedBlockedQueryIsAnsweredAfterTheEarlierQuery) {
  Harness h;
  const std::string allowed = ClientQuery("SELECT id FROM traces WHERE id = 'tr-1'");
  EXPECT_EQ(h.Client(allowed), "forwarded");
  EXPECT_EQ(h.Client(ClientQuery("SELECT * FROM traces")), "substituted");
  const std::string later = ClientQuery("SELECT 2");
  EXPECT_EQ(h.Client(later), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), allowed + ClientQuery(kRefusedSql) + later);

  const std::string description = BackendRowDescription({TraceIdColumn()});
  const std::string row = BackendDataRow({"tr-1"});
  h.Answer({description, row, BackendComplete("SELECT 1"), BackendReady(), BackendSyntaxError(),
            BackendReady(), BackendRowDescription({Column("?column?", 0, 0, kInt4Oid)}),
            BackendDataRow({"2"}), BackendComplete("SELECT 1"), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "TDCZEZTDCZ");
  EXPECT_EQ(out[1].body, AsString(AsBytes(row).subspan(5)));
  EXPECT_TRUE(IsError(out[4], "42501", "tracegate: statement blocked (trace_scope)"));
}

TEST(ProtocolGateTest, RefusedQueryInATransactionBlockAbortsItAsAnErrorWould) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery("BEGIN READ ONLY")), "forwarded");
  h.Answer({BackendComplete("BEGIN"), BackendReady('T')});
  EXPECT_EQ(Types(h.ToClient()), "CZ");
  h.TakeToBackend();

  EXPECT_EQ(h.Client(ClientQuery("SELECT * FROM traces")), "substituted");
  EXPECT_EQ(h.TakeToBackend(), ClientQuery(kRefusedSql));
  // The backend fails the substitute itself, which aborts the transaction block; the client
  // gets the refusal, and the ReadyForQuery that says the block is aborted.
  h.Answer({BackendSyntaxError(), BackendReady('E')});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42501", "tracegate: statement blocked (trace_scope)"));
  EXPECT_EQ(out[1].body, "E");
  EXPECT_EQ(h.stats().blocked, 1u);

  // The client ends the block as after any error.
  const std::string rollback = ClientQuery("ROLLBACK");
  EXPECT_EQ(h.Client(rollback), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), rollback);
  h.Answer({BackendComplete("ROLLBACK"), BackendReady()});
  EXPECT_EQ(h.TakeToClient(), BackendComplete("ROLLBACK") + BackendReady());
}

TEST(ProtocolGateTest, RefusalInAnAbortedTransactionIsTheGatesNotTheBackends) {
  Harness h;
  h.PreparePinned("s1");
  // A transaction block the backend has already aborted.
  EXPECT_EQ(h.Client(ClientQuery("BEGIN READ ONLY")), "forwarded");
  EXPECT_EQ(h.Client(ClientQuery(kFailsAtBackend)), "forwarded");
  const std::string failed = BackendError("42703", "column \"no_such_column\" does not exist");
  h.Answer({BackendComplete("BEGIN"), BackendReady('T'), failed, BackendReady('E')});
  EXPECT_EQ(Types(h.ToClient()), "CZEZ");
  h.TakeToBackend();
  const std::string aborted = BackendError(
      "25P02", "current transaction is aborted, commands ignored until end of transaction block");

  // The backend answers the substitute with 25P02 rather than a syntax error; the client gets
  // the refusal all the same.
  EXPECT_EQ(h.Client(ClientQuery("DELETE FROM traces WHERE id = 'tr-1'")), "substituted");
  EXPECT_EQ(h.TakeToBackend(), ClientQuery(kRefusedSql));
  h.Answer({aborted, BackendReady('E')});
  std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42501", "tracegate: statement blocked (write)"));
  EXPECT_EQ(out[1].body, "E");

  // So for a refused extended-protocol message.
  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  const std::vector<Message> sent = h.ToBackend();
  ASSERT_EQ(Types(sent), "PS");
  EXPECT_TRUE(IsPlaceholderParse(sent[0]));
  h.Answer({aborted, BackendReady('E')});
  out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42501", kOtherTraceBind));
  EXPECT_EQ(out[1].body, "E");
  EXPECT_EQ(h.stats().blocked, 2u);
}

TEST(ProtocolGateTest, BackendErrorInASimpleQueryIsForwarded) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery(kFailsAtBackend)), "forwarded");
  const std::string error = BackendError("42703", "column \"no_such_column\" does not exist");
  h.Answer({error, BackendReady()});
  EXPECT_EQ(h.TakeToClient(), error + BackendReady());
  // The next query is matched to its own answers.
  EXPECT_EQ(h.Client(ClientQuery("SELECT 1")), "forwarded");
  h.Answer({BackendRowDescription({Column("?column?", 0, 0, kInt4Oid)}), BackendDataRow({"1"}),
            BackendComplete("SELECT 1"), BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "TDCZ");
}

TEST(ProtocolGateTest, AsynchronousBackendMessagesPassAtAnyTime) {
  Harness h;
  std::string status;
  pgwire::EncodeParameterStatus({.name = "TimeZone", .value = "UTC"}, status);
  std::string notice;
  pgwire::EncodeNoticeResponse({.fields = {{'S', "NOTICE"}, {'C', "00000"}, {'M', "hi"}}}, notice);
  std::string notification;
  pgwire::EncodeNotificationResponse({.process_id = 7, .channel = "c", .payload = "p"},
                                     notification);
  // With nothing pending...
  h.Answer({status, notice, notification});
  EXPECT_EQ(h.TakeToClient(), status + notice + notification);
  // ...and in the middle of a result.
  EXPECT_EQ(h.Client(ClientQuery("SELECT id FROM traces WHERE id = 'tr-1'")), "forwarded");
  h.Answer({BackendRowDescription({TraceIdColumn()}), notice, BackendDataRow({"tr-1"}), status,
            BackendComplete("SELECT 1"), BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "TNDSCZ");
}

// ---- Extended protocol -------------------------------------------------------------------

TEST(ProtocolGateTest, ExtendedRunBoundToTheGrantedTracePasses) {
  Harness h;
  const std::vector<std::string> run = {
      ClientParse("", kPinnedByParam),
      ClientBind("", "", {"tr-1"}),
      ClientDescribe('P', ""),
      ClientExecute(""),
      ClientSync(),
  };
  std::string sent;
  for (const std::string& m : run) {
    EXPECT_EQ(h.Client(m), "forwarded");
    sent += m;
  }
  EXPECT_EQ(h.TakeToBackend(), sent);

  const std::vector<std::string> answers = {
      BackendEmpty('1'),           BackendEmpty('2'),
      PinnedRowDescription(),      BackendDataRow({"tr-1", "a"}),
      BackendComplete("SELECT 1"), BackendReady(),
  };
  h.Answer(answers);
  std::string expected;
  for (const std::string& a : answers) {
    expected += a;
  }
  EXPECT_EQ(h.TakeToClient(), expected);
  EXPECT_EQ(h.stats().statements, 1u);
  EXPECT_EQ(h.stats().rows, 1u);
}

TEST(ProtocolGateTest, BindToAnotherTraceBecomesAFailingParseAndTheRunIsDroppedUntilSync) {
  Harness h;
  h.PreparePinned("s1");

  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
  const std::vector<Message> substitute = h.ToBackend();
  ASSERT_EQ(substitute.size(), 1u);
  EXPECT_TRUE(IsPlaceholderParse(substitute[0]));
  EXPECT_EQ(h.stats().blocked, 1u);

  // The rest of the run never reaches the backend, whatever it is.
  EXPECT_EQ(h.Client(ClientDescribe('P', "")), "dropped");
  EXPECT_EQ(h.Client(ClientExecute("")), "dropped");
  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-1"})), "dropped");
  EXPECT_EQ(h.Client(ClientParse("x", "SELECT 1")), "dropped");
  EXPECT_EQ(h.Client(ClientClose('S', "s1")), "dropped");
  EXPECT_EQ(h.Client(ClientQuery("SELECT 1")), "dropped");
  EXPECT_EQ(h.TakeToBackend(), "");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientSync());

  // The backend fails the substitute (and skips to the Sync); the client gets the refusal.
  ASSERT_TRUE(h.Backend(BackendSyntaxError()).ok());
  const std::vector<Message> error = h.ToClient();
  ASSERT_EQ(error.size(), 1u);
  EXPECT_TRUE(IsError(error[0], "42501", kOtherTraceBind));
  ASSERT_TRUE(h.Backend(BackendReady()).ok());
  EXPECT_EQ(h.TakeToClient(), BackendReady());

  // After the Sync, messages reach the backend again; the dropped Close did not forget s1.
  const std::string bind = ClientBind("", "s1", {"tr-1"});
  EXPECT_EQ(h.Client(bind), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), bind);
}

TEST(ProtocolGateTest, MessagesBeforeTheRefusedOneAreAnsweredFirst) {
  Harness h;
  const std::string parse = ClientParse("s1", kPinnedByParam);
  EXPECT_EQ(h.Client(parse), "forwarded");
  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
  EXPECT_EQ(h.Client(ClientExecute("")), "dropped");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  const std::vector<Message> sent = h.ToBackend();
  ASSERT_EQ(Types(sent), "PPS");
  EXPECT_EQ(sent[0].body, parse.substr(5));
  EXPECT_TRUE(IsPlaceholderParse(sent[1]));

  h.Answer({BackendEmpty('1'), BackendSyntaxError(), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "1EZ");
  EXPECT_TRUE(IsError(out[1], "42501", kOtherTraceBind));
}

TEST(ProtocolGateTest, RefusedExtendedMessageInATransactionBlockAbortsIt) {
  Harness h;
  h.PreparePinned("s1");
  EXPECT_EQ(h.Client(ClientQuery("BEGIN READ ONLY")), "forwarded");
  h.Answer({BackendComplete("BEGIN"), BackendReady('T')});
  EXPECT_EQ(Types(h.ToClient()), "CZ");
  h.TakeToBackend();

  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
  EXPECT_EQ(h.Client(ClientExecute("")), "dropped");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  const std::vector<Message> sent = h.ToBackend();
  ASSERT_EQ(Types(sent), "PS");
  EXPECT_TRUE(IsPlaceholderParse(sent[0]));
  h.Answer({BackendSyntaxError(), BackendReady('E')});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42501", kOtherTraceBind));
  EXPECT_EQ(out[1].body, "E");
}

TEST(ProtocolGateTest, NullOrMissingPinningParameterIsRefused) {
  Harness h;
  h.PreparePinned("s1");
  for (const std::string& bind : {ClientBind("", "s1", {std::nullopt}), ClientBind("", "s1", {}),
                                  ClientBind("", "s1", {"tr-1x"}), ClientBind("", "s1", {"TR-1"}),
                                  ClientBind("", "s1", {std::string("tr-1\0", 5)})}) {
    EXPECT_EQ(h.Client(bind), "substituted");
    EXPECT_EQ(h.Client(ClientSync()), "forwarded");
    h.Answer({BackendSyntaxError(), BackendReady()});
    const std::vector<Message> out = h.ToClient();
    ASSERT_EQ(Types(out), "EZ");
    EXPECT_TRUE(IsError(out[0], "42501", kOtherTraceBind));
  }
  EXPECT_EQ(h.stats().blocked, 5u);
}

TEST(ProtocolGateTest, BinaryParameterEqualToTheTraceIsAllowed) {
  Harness h;
  h.PreparePinned("s1");
  // One format for all parameters.
  const std::string bind = ClientBind("", "s1", {"tr-1"}, {1});
  EXPECT_EQ(h.Client(bind), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), bind);
  // Binary format is no way around the check.
  EXPECT_EQ(h.Client(ClientBind("p2", "s1", {"tr-2"}, {1})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendEmpty('2'), BackendSyntaxError(), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "2EZ");
  EXPECT_TRUE(IsError(out[1], "42501", kOtherTraceBind));
}

TEST(ProtocolGateTest, PerParameterFormatsAreMatchedToTheirParameters) {
  Harness h;
  ASSERT_EQ(h.Client(ClientParse("s2", "SELECT * FROM traces WHERE name = $1 AND id = $2")),
            "forwarded");
  ASSERT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendEmpty('1'), BackendReady()});
  h.TakeToClient();
  h.TakeToBackend();

  // $1 pins nothing: it may hold another trace's id, or NULL.
  const std::string bind = ClientBind("", "s2", {"tr-2", "tr-1"}, {0, 1});
  EXPECT_EQ(h.Client(bind), "forwarded");
  EXPECT_EQ(h.Client(ClientBind("", "s2", {std::nullopt, "tr-1"})), "forwarded");
  // $2 is the pinning one.
  EXPECT_EQ(h.Client(ClientBind("", "s2", {"tr-1", "tr-2"}, {1, 0})), "substituted");
}

TEST(ProtocolGateTest, UuidTraceMayBeBoundAsItsSixteenBinaryBytes) {
  Harness h(GateLimits{}, kUuidTrace);
  ASSERT_EQ(h.Client(ClientParse("u", "SELECT id FROM traces WHERE id = $1", {kUuidOid})),
            "forwarded");
  ASSERT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendEmpty('1'), BackendReady()});
  h.TakeToClient();
  h.TakeToBackend();

  const std::string binary = ClientBind("b", "u", {UuidTraceBytes()}, {1});
  EXPECT_EQ(h.Client(binary), "forwarded");
  const std::string text = ClientBind("t", "u", {std::string(kUuidTrace)});
  EXPECT_EQ(h.Client(text), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), binary + text);

  // The 16 bytes only count in binary format; another uuid never does.
  EXPECT_EQ(h.Client(ClientBind("x", "u", {UuidTraceBytes()}, {0})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.TakeToBackend();
  std::string other = UuidTraceBytes();
  other[15] = '\x2c';
  EXPECT_EQ(h.Client(ClientBind("y", "u", {other}, {1})), "substituted");
}

TEST(ProtocolGateTest, UuidTraceColumnMayComeBackInBinary) {
  Harness h(GateLimits{}, kUuidTrace);
  ASSERT_EQ(h.Client(ClientParse("", "SELECT id FROM traces WHERE id = $1", {kUuidOid})),
            "forwarded");
  ASSERT_EQ(h.Client(ClientBind("", "", {UuidTraceBytes()}, {1}, {1})), "forwarded");
  ASSERT_EQ(h.Client(ClientDescribe('P', "")), "forwarded");
  ASSERT_EQ(h.Client(ClientExecute("")), "forwarded");
  h.Answer({BackendEmpty('1'), BackendEmpty('2'),
            BackendRowDescription({Column("id", kTracesOid, 1, kUuidOid, 1)}),
            BackendDataRow({UuidTraceBytes()}), BackendDataRow({std::string(kUuidTrace)})});
  EXPECT_EQ(Types(h.ToClient()), "12TDD");
  std::string other = UuidTraceBytes();
  other[0] = '\x0c';
  const absl::Status status = h.Backend(BackendDataRow({other}));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_EQ(h.TakeToClient(), "");
}

TEST(ProtocolGateTest, RebindingAPreparedStatementIsCheckedEachTime) {
  Harness h;
  h.PreparePinned("s1");
  const std::string first = ClientBind("", "s1", {"tr-1"});
  EXPECT_EQ(h.Client(first), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendEmpty('2'), BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "2Z");
  h.TakeToBackend();

  // Another trace: refused, though the statement was bound fine before.
  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendSyntaxError(), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42501", kOtherTraceBind));
  h.TakeToBackend();

  // The granted trace again: fine.
  const std::string again = ClientBind("p", "s1", {"tr-1"});
  EXPECT_EQ(h.Client(again), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), again);
}

TEST(ProtocolGateTest, ParseOfABlockedStatementIsRefused) {
  Harness h;
  EXPECT_EQ(h.Client(ClientParse("s", "SELECT * FROM traces")), "substituted");
  EXPECT_EQ(h.Client(ClientBind("", "s", {})), "dropped");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  const std::vector<Message> sent = h.ToBackend();
  ASSERT_EQ(Types(sent), "PS");
  EXPECT_TRUE(IsPlaceholderParse(sent[0]));
  h.Answer({BackendSyntaxError(), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42501", "tracegate: statement blocked (trace_scope)"));

  // The refused statement was never prepared.
  EXPECT_EQ(h.Client(ClientBind("", "s", {})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendSyntaxError(), BackendReady()});
  const std::vector<Message> unknown = h.ToClient();
  ASSERT_EQ(Types(unknown), "EZ");
  EXPECT_TRUE(IsError(unknown[0], "26000", "prepared statement \"s\" does not exist"));
  EXPECT_EQ(h.stats().statements, 1u);
  EXPECT_EQ(h.stats().blocked, 2u);
}

TEST(ProtocolGateTest, PinningParameterMustBeDeclaredTextOrUuid) {
  Harness h;
  EXPECT_EQ(h.Client(ClientParse("s", kPinnedByParam, {kInt4Oid})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  const std::vector<Message> sent = h.ToBackend();
  ASSERT_EQ(Types(sent), "PS");
  EXPECT_TRUE(IsPlaceholderParse(sent[0]));
  h.Answer({BackendSyntaxError(), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42501",
                      "tracegate: statement blocked (trace_scope): parameter $1 pins the trace "
                      "and must be text or uuid"));

  // Unspecified, text, varchar and uuid are fine; a type for a parameter past the pinning
  // ones changes nothing.
  int n = 0;
  for (const std::vector<uint32_t>& types :
       std::vector<std::vector<uint32_t>>{{}, {0}, {kTextOid}, {kVarcharOid}, {kUuidOid}}) {
    const std::string parse = ClientParse("ok" + std::to_string(n++), kPinnedByParam, types);
    EXPECT_EQ(h.Client(parse), "forwarded");
    EXPECT_EQ(h.TakeToBackend(), parse);
  }
  EXPECT_EQ(h.Client(ClientParse("two", "SELECT * FROM traces WHERE id = $1 AND name = $2",
                                 {kTextOid, kInt4Oid})),
            "forwarded");
}

TEST(ProtocolGateTest, SecondParseOfANamedStatementIsRefusedWith42P05) {
  Harness h;
  h.PreparePinned("s1");
  EXPECT_EQ(h.Client(ClientParse("s1", "SELECT 1")), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  const std::vector<Message> sent = h.ToBackend();
  ASSERT_EQ(Types(sent), "PS");
  EXPECT_TRUE(IsPlaceholderParse(sent[0]));
  h.Answer({BackendSyntaxError(), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42P05", "prepared statement \"s1\" already exists"));

  // s1 is still the pinned statement.
  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.TakeToBackend();
  h.Answer({BackendSyntaxError(), BackendReady()});
  h.TakeToClient();

  // The unnamed statement may be replaced at will.
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(h.Client(ClientParse("", "SELECT 1")), "forwarded");
  }
  // And a closed statement may be prepared again.
  EXPECT_EQ(h.Client(ClientClose('S', "s1")), "forwarded");
  EXPECT_EQ(h.Client(ClientParse("s1", "SELECT 2")), "forwarded");
}

TEST(ProtocolGateTest, BindOfAnUnknownStatementIsRefusedWith26000) {
  Harness h;
  EXPECT_EQ(h.Client(ClientBind("", "nope", {"tr-1"})), "substituted");
  EXPECT_EQ(h.Client(ClientExecute("")), "dropped");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  const std::vector<Message> sent = h.ToBackend();
  ASSERT_EQ(Types(sent), "PS");
  EXPECT_TRUE(IsPlaceholderParse(sent[0]));
  h.Answer({BackendSyntaxError(), BackendReady()});
  std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "26000", "prepared statement \"nope\" does not exist"));

  EXPECT_EQ(h.Client(ClientBind("", "", {})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendSyntaxError(), BackendReady()});
  out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "26000", "unnamed prepared statement does not exist"));
}

TEST(ProtocolGateTest, DescribeStatementAnswersAreForwarded) {
  Harness h;
  h.PreparePinned("s1");
  const std::string describe = ClientDescribe('S', "s1");
  EXPECT_EQ(h.Client(describe), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), describe + ClientSync());
  const std::string params = BackendParameterDescription({kTextOid});
  h.Answer({params, PinnedRowDescription(), BackendReady()});
  EXPECT_EQ(h.TakeToClient(), params + PinnedRowDescription() + BackendReady());

  // A statement without a result: NoData.
  EXPECT_EQ(h.Client(ClientParse("b", "BEGIN READ ONLY")), "forwarded");
  EXPECT_EQ(h.Client(ClientDescribe('S', "b")), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendEmpty('1'), BackendParameterDescription({}), BackendEmpty('n'), BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "1tnZ");
}

TEST(ProtocolGateTest, ExecuteWithoutDescribeSlipsInADescribeWhoseAnswerStaysWithTheGate) {
  Harness h;
  EXPECT_EQ(h.Client(ClientParse("", kPinnedByParam)), "forwarded");
  EXPECT_EQ(h.Client(ClientBind("", "", {"tr-1"})), "forwarded");
  h.TakeToBackend();
  const std::string execute = ClientExecute("");
  EXPECT_EQ(h.Client(execute), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientDescribe('P', "") + execute);
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");

  const std::string row = BackendDataRow({"tr-1", "a"});
  h.Answer({BackendEmpty('1'), BackendEmpty('2'), PinnedRowDescription(), row,
            BackendComplete("SELECT 1"), BackendReady()});
  EXPECT_EQ(h.TakeToClient(), BackendEmpty('1') + BackendEmpty('2') + row +
                                  BackendComplete("SELECT 1") + BackendReady());
}

TEST(ProtocolGateTest, RowsAfterTheSlippedInDescribeAreChecked) {
  Harness h;
  h.PreparePinned("s1");
  EXPECT_EQ(h.Client(ClientBind("p", "s1", {"tr-1"})), "forwarded");
  EXPECT_EQ(h.Client(ClientExecute("p")), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendEmpty('2'), PinnedRowDescription(), BackendDataRow({"tr-1", "a"})});
  EXPECT_EQ(Types(h.ToClient()), "2D");

  const absl::Status status = h.Backend(BackendDataRow({"tr-2", "b"}));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_EQ(SqlStateOf(status), "42501");
  EXPECT_THAT(std::string(status.message()), HasSubstr("another trace"));
  EXPECT_EQ(h.TakeToClient(), "");
}

TEST(ProtocolGateTest, DescribedPortalIsNotDescribedAgainButASuspendedOneIs) {
  Harness h;
  h.PreparePinned("s1");
  EXPECT_EQ(h.Client(ClientBind("p", "s1", {"tr-1"})), "forwarded");
  EXPECT_EQ(h.Client(ClientDescribe('P', "p")), "forwarded");
  h.TakeToBackend();
  const std::string first = ClientExecute("p", 1);
  EXPECT_EQ(h.Client(first), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), first);
  EXPECT_EQ(h.Client(ClientFlush()), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientFlush());
  h.Answer({BackendEmpty('2'), PinnedRowDescription(), BackendDataRow({"tr-1", "a"}),
            BackendEmpty('s')});
  EXPECT_EQ(Types(h.ToClient()), "2TDs");

  // A statement ran since the Describe (this very Execute): the suspended portal is described
  // again before it resumes, and the answer stays with the gate.
  const std::string second = ClientExecute("p");
  EXPECT_EQ(h.Client(second), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientDescribe('P', "p") + second);
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({PinnedRowDescription(), BackendDataRow({"tr-1", "b"}), BackendComplete("SELECT 1"),
            BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "DCZ");
  const absl::Status status = h.Backend(BackendDataRow({"tr-2", "c"}));
  EXPECT_FALSE(status.ok());  // nothing is pending any more
  h.TakeToClient();

  // A new Bind of the portal needs a new Describe.
  EXPECT_EQ(h.Client(ClientClose('P', "p")), "forwarded");
  EXPECT_EQ(h.Client(ClientBind("p", "s1", {"tr-1"})), "forwarded");
  h.TakeToBackend();
  const std::string third = ClientExecute("p");
  EXPECT_EQ(h.Client(third), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientDescribe('P', "p") + third);
}

TEST(ProtocolGateTest, ExecuteOfAStatementWithoutResultRows) {
  Harness h;
  EXPECT_EQ(h.Client(ClientParse("", "BEGIN READ ONLY")), "forwarded");
  EXPECT_EQ(h.Client(ClientBind("", "", {})), "forwarded");
  EXPECT_EQ(h.Client(ClientExecute("")), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendEmpty('1'), BackendEmpty('2'), BackendEmpty('n'), BackendComplete("BEGIN"),
            BackendReady('T')});
  EXPECT_EQ(Types(h.ToClient()), "12CZ");

  // A row after NoData is a row with no description.
  EXPECT_EQ(h.Client(ClientBind("", "", {})), "forwarded");
  EXPECT_EQ(h.Client(ClientExecute("")), "forwarded");
  h.Answer({BackendEmpty('2'), BackendEmpty('n')});
  const absl::Status status = h.Backend(BackendDataRow({"x"}));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

// ---- Row checks --------------------------------------------------------------------------

TEST(ProtocolGateTest, RowOfAnotherTraceEndsTheSession) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery("SELECT id, name FROM traces WHERE id = 'tr-1'")), "forwarded");
  h.Answer({PinnedRowDescription()});
  EXPECT_EQ(h.TakeToClient(), PinnedRowDescription());
  const absl::Status status = h.Backend(BackendDataRow({"tr-2", "x"}));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_EQ(SqlStateOf(status), "42501");
  EXPECT_THAT(std::string(status.message()), HasSubstr("another trace"));
  EXPECT_EQ(h.TakeToClient(), "");
  EXPECT_EQ(h.stats().rows, 0u);
}

TEST(ProtocolGateTest, EveryDeclaredTraceColumnOfARowIsChecked) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery("SELECT o.trace_id, o.name, t.id FROM observations o JOIN "
                                 "traces t ON t.id = o.trace_id WHERE t.id = 'tr-1'")),
            "forwarded");
  h.Answer({BackendRowDescription({Column("trace_id", kObservationsOid, 2),
                                   Column("name", kObservationsOid, 3), TraceIdColumn()}),
            BackendDataRow({"tr-1", "tr-2", "tr-1"}),
            BackendDataRow({std::nullopt, "x", std::nullopt})});
  EXPECT_EQ(Types(h.ToClient()), "TDD");
  EXPECT_EQ(h.Backend(BackendDataRow({"tr-2", "x", "tr-1"})).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(h.Backend(BackendDataRow({"tr-1", "x", "tr-2"})).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(h.Backend(BackendDataRow({"tr-1", "x", ""})).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(h.TakeToClient(), "");
}

TEST(ProtocolGateTest, NullTraceColumnAndColumnsThatAreNotTraceColumnsPass) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery("SELECT id, name, id AS copy FROM traces WHERE id = 'tr-1'")),
            "forwarded");
  h.TakeToBackend();
  const std::vector<std::string> answers = {
      // Table OID 0 (a computed column), and traces.name (attnum 2): not trace columns.
      BackendRowDescription({TraceIdColumn(), NameColumn(), Column("copy", 0, 0)}),
      BackendDataRow({std::nullopt, "tr-2", "tr-2"}),
      BackendDataRow({"tr-1", std::nullopt, "anything at all"}),
      BackendComplete("SELECT 2"),
      BackendReady(),
  };
  h.Answer(answers);
  EXPECT_EQ(Types(h.ToClient()), "TDDCZ");
}

TEST(ProtocolGateTest, ColumnWithTheAttnumOfATraceColumnInAnotherTableIsNotOne) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery("SELECT 1")), "forwarded");
  // (16390, 1) and (16384, 2) are not declared; only (16384, 1) and (16390, 2) are.
  h.Answer({BackendRowDescription({Column("a", kObservationsOid, 1), Column("b", kTracesOid, 2)}),
            BackendDataRow({"tr-2", "tr-3"}), BackendComplete("SELECT 1"), BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "TDCZ");
}

TEST(ProtocolGateTest, BinaryTextTraceColumnIsTheSameBytes) {
  Harness h;
  EXPECT_EQ(h.Client(ClientParse("", kPinnedByParam)), "forwarded");
  EXPECT_EQ(h.Client(ClientBind("", "", {"tr-1"}, {}, {1})), "forwarded");
  EXPECT_EQ(h.Client(ClientDescribe('P', "")), "forwarded");
  EXPECT_EQ(h.Client(ClientExecute("")), "forwarded");
  h.Answer({BackendEmpty('1'), BackendEmpty('2'),
            BackendRowDescription({TraceIdColumn(1), Column("name", kTracesOid, 2, kTextOid, 1)}),
            BackendDataRow({"tr-1", "x"})});
  EXPECT_EQ(Types(h.ToClient()), "12TD");
  EXPECT_EQ(h.Backend(BackendDataRow({"tr-2", "x"})).code(), absl::StatusCode::kPermissionDenied);
}

TEST(ProtocolGateTest, RowThatDoesNotMatchItsDescriptionIsAnError) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery("SELECT id, name FROM traces WHERE id = 'tr-1'")), "forwarded");
  h.Answer({PinnedRowDescription()});
  const absl::Status status = h.Backend(BackendDataRow({"tr-1"}));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

// ---- Caps --------------------------------------------------------------------------------

TEST(ProtocolGateTest, RowCapEndsTheSimpleQueryThatCrossesIt) {
  Harness h(GateLimits{.max_rows = 2});
  EXPECT_EQ(h.Client(ClientQuery("SELECT id, name FROM traces WHERE id = 'tr-1'")), "forwarded");
  const std::string row1 = BackendDataRow({"tr-1", "a"});
  const std::string row2 = BackendDataRow({"tr-1", "b"});
  h.Answer({PinnedRowDescription(), row1, row2, BackendDataRow({"tr-1", "c"}),
            BackendDataRow({"tr-1", "d"}),
            // Even a row of another trace: the statement has ended, nothing is checked.
            BackendDataRow({"tr-2", "e"}), BackendComplete("SELECT 5"), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "TDDEZ");
  EXPECT_TRUE(IsError(out[3], "54000",
                      "tracegate: statement ended (row_cap): the grant allows at most 2 rows per "
                      "session"));
  EXPECT_EQ(h.stats().rows, 2u);
  EXPECT_EQ(h.stats().bytes, row1.size() + row2.size());
  EXPECT_EQ(h.stats().blocked, 1u);

  // The cap is per session: the next statement with a row ends too, one without passes.
  EXPECT_EQ(h.Client(ClientQuery("SELECT id FROM traces WHERE id = 'tr-1'")), "forwarded");
  h.Answer({BackendRowDescription({TraceIdColumn()}), BackendDataRow({"tr-1"}),
            BackendComplete("SELECT 1"), BackendReady()});
  const std::vector<Message> again = h.ToClient();
  ASSERT_EQ(Types(again), "TEZ");
  EXPECT_TRUE(IsError(again[1], "54000", "tracegate: statement ended (row_cap)"));
  EXPECT_EQ(h.Client(ClientQuery("SELECT id FROM traces WHERE id = 'tr-1'")), "forwarded");
  h.Answer({BackendRowDescription({TraceIdColumn()}), BackendComplete("SELECT 0"), BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "TCZ");
}

TEST(ProtocolGateTest, RowCapInAnExtendedRunDropsEverythingUntilReadyForQuery) {
  Harness h(GateLimits{.max_rows = 2});
  for (const std::string& m :
       {ClientParse("", kPinnedByParam), ClientBind("", "", {"tr-1"}), ClientDescribe('P', ""),
        ClientExecute(""), ClientParse("s2", kPinnedByParam), ClientDescribe('S', "s2"),
        ClientBind("p2", "s2", {"tr-1"}), ClientExecute("p2"), ClientClose('P', "p2"),
        ClientSync()}) {
    EXPECT_EQ(h.Client(m), "forwarded");
  }
  h.Answer({BackendEmpty('1'), BackendEmpty('2'), PinnedRowDescription(),
            BackendDataRow({"tr-1", "a"}), BackendDataRow({"tr-1", "b"}),
            BackendDataRow({"tr-1", "c"}), BackendDataRow({"tr-1", "d"}),
            BackendComplete("SELECT 4"),
            // The rest of the run: answered by the backend, none of it reaches the client.
            BackendEmpty('1'), BackendParameterDescription({kTextOid}), PinnedRowDescription(),
            BackendEmpty('2'), PinnedRowDescription(), BackendDataRow({"tr-1", "e"}),
            BackendComplete("SELECT 1"), BackendEmpty('3'), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "12TDDEZ");
  EXPECT_TRUE(IsError(out[5], "54000", "tracegate: statement ended (row_cap)"));
  EXPECT_EQ(h.stats().rows, 2u);

  // After ReadyForQuery answers flow again.
  EXPECT_EQ(h.Client(ClientClose('S', "s2")), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendEmpty('3'), BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "3Z");
}

TEST(ProtocolGateTest, CappedQueryIsCancelledWhenNothingElseIsQueuedBehindIt) {
  Harness h(GateLimits{.max_rows = 1});
  EXPECT_EQ(h.Client(ClientQuery("SELECT id, name FROM traces WHERE id = 'tr-1'")), "forwarded");
  h.Answer({PinnedRowDescription(), BackendDataRow({"tr-1", "a"})});
  EXPECT_FALSE(h.TakeCancel());
  h.Answer({BackendDataRow({"tr-1", "b"})});
  EXPECT_TRUE(h.TakeCancel());
  EXPECT_FALSE(h.TakeCancel());  // once
  // The cancel may land after the statement completed (an error in place of ReadyForQuery's
  // commit) or not at all: either way the client has its one error.
  h.Answer({BackendDataRow({"tr-1", "c"}), BackendComplete("SELECT 3"),
            BackendError("57014", "canceling statement due to user request"), BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "TDEZ");
}

TEST(ProtocolGateTest, CappedQueryWithAnotherQueryQueuedIsDrainedNotCancelled) {
  // A cancel that arrived after the capped statement finished would hit the next one.
  Harness h(GateLimits{.max_rows = 1});
  EXPECT_EQ(h.Client(ClientQuery("SELECT id, name FROM traces WHERE id = 'tr-1'")), "forwarded");
  EXPECT_EQ(h.Client(ClientQuery("SELECT 1")), "forwarded");
  h.Answer({PinnedRowDescription(), BackendDataRow({"tr-1", "a"}), BackendDataRow({"tr-1", "b"})});
  EXPECT_FALSE(h.TakeCancel());
  h.Answer({BackendComplete("SELECT 2"), BackendReady(),
            BackendRowDescription({Column("?column?", 0, 0, kInt4Oid)}), BackendDataRow({"1"}),
            BackendComplete("SELECT 1"), BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "TDEZTEZ");  // (the cap is per session)
}

TEST(ProtocolGateTest, CappedExecuteIsCancelledOnlyIfItsRunIsTheLastQueued) {
  {
    Harness h(GateLimits{.max_rows = 1});
    for (const std::string& m : {ClientParse("", kPinnedByParam), ClientBind("", "", {"tr-1"}),
                                 ClientDescribe('P', ""), ClientExecute(""), ClientSync()}) {
      EXPECT_EQ(h.Client(m), "forwarded");
    }
    h.Answer({BackendEmpty('1'), BackendEmpty('2'), PinnedRowDescription(),
              BackendDataRow({"tr-1", "a"}), BackendDataRow({"tr-1", "b"})});
    EXPECT_TRUE(h.TakeCancel());
  }
  {
    Harness h(GateLimits{.max_rows = 1});
    for (const std::string& m : {ClientParse("", kPinnedByParam), ClientBind("", "", {"tr-1"}),
                                 ClientDescribe('P', ""), ClientExecute(""), ClientSync(),
                                 ClientBind("", "", {"tr-1"}), ClientExecute(""), ClientSync()}) {
      EXPECT_EQ(h.Client(m), "forwarded");
    }
    h.Answer({BackendEmpty('1'), BackendEmpty('2'), PinnedRowDescription(),
              BackendDataRow({"tr-1", "a"}), BackendDataRow({"tr-1", "b"})});
    EXPECT_FALSE(h.TakeCancel());
  }
}

TEST(ProtocolGateTest, ByteCapEndsTheStatementThatCrossesIt) {
  const std::string row1 = BackendDataRow({"tr-1", "a"});
  const std::string row2 = BackendDataRow({"tr-1", "bb"});
  Harness h(GateLimits{.max_bytes = row1.size() + row2.size()});
  EXPECT_EQ(h.Client(ClientQuery("SELECT id, name FROM traces WHERE id = 'tr-1'")), "forwarded");
  // Exactly at the cap is still allowed; one byte more is not.
  h.Answer({PinnedRowDescription(), row1, row2, BackendDataRow({"tr-1", ""}),
            BackendComplete("SELECT 3"), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "TDDEZ");
  EXPECT_TRUE(IsError(out[3], "54000",
                      Cat("tracegate: statement ended (byte_cap): the grant allows at most ",
                          row1.size() + row2.size(), " bytes of rows per session")));
  EXPECT_EQ(h.stats().bytes, row1.size() + row2.size());
  EXPECT_EQ(h.stats().rows, 2u);
}

TEST(ProtocolGateTest, ByteCapInAnExtendedRun) {
  Harness h(GateLimits{.max_bytes = 10});
  for (const std::string& m : {ClientParse("", kPinnedByParam), ClientBind("", "", {"tr-1"}),
                               ClientExecute(""), ClientSync()}) {
    EXPECT_EQ(h.Client(m), "forwarded");
  }
  h.Answer({BackendEmpty('1'), BackendEmpty('2'), PinnedRowDescription(),
            BackendDataRow({"tr-1", "a long enough name"}), BackendDataRow({"tr-1", "b"}),
            BackendComplete("SELECT 2"), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "12EZ");
  EXPECT_TRUE(IsError(out[2], "54000", "tracegate: statement ended (byte_cap)"));
  EXPECT_EQ(h.stats().rows, 0u);
  EXPECT_EQ(h.stats().bytes, 0u);
}

// ---- Masking ----------------------------------------------------------------------------

std::unique_ptr<RowMasker> DefaultRowMasker() {
  static const std::shared_ptr<const masking::Masker> masker = [] {
    absl::StatusOr<std::shared_ptr<const masking::Masker>> m =
        masking::Masker::Create(masking::Profile{});
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *m : nullptr;
  }();
  absl::StatusOr<masking::Scanner> scanner = masking::Scanner::Create(masker);
  EXPECT_TRUE(scanner.ok()) << scanner.status();
  return std::make_unique<RowMasker>(*std::move(scanner), ColumnNames{});
}

TEST(ProtocolGateTest, MaskedSessionRewritesRowsAndCountsEntities) {
  Harness h(GateLimits{}, kTrace, DefaultRowMasker());
  EXPECT_EQ(h.Client(ClientQuery("SELECT id, name FROM traces WHERE id = 'tr-1'")), "forwarded");
  const std::string clean = BackendDataRow({"tr-1", "nothing to hide"});
  h.Answer({PinnedRowDescription(), BackendDataRow({"tr-1", "mail jane.doe@example.com"}), clean,
            BackendComplete("SELECT 2"), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "TDDCZ");
  EXPECT_EQ(out[1].body, BackendDataRow({"tr-1", "mail [REDACTED:EMAIL]"}).substr(5));
  EXPECT_EQ(out[2].body, clean.substr(5));  // unchanged rows pass as they came
  ASSERT_NE(h.masked(), nullptr);
  EXPECT_EQ(h.masked()->Of("EMAIL"), 1u);
}

TEST(ProtocolGateTest, UnreadableValueEndsTheStatementAndTheSessionGoesOn) {
  Harness h(GateLimits{}, kTrace, DefaultRowMasker());
  EXPECT_EQ(h.Client(ClientQuery("SELECT id, name FROM traces WHERE id = 'tr-1'")), "forwarded");
  h.Answer({BackendRowDescription({TraceIdColumn(), Column("blob", kTracesOid, 3, 17)}),
            BackendDataRow({"tr-1", std::nullopt}), BackendDataRow({"tr-1", "\\x6a"}),
            BackendDataRow({"tr-1", "\\x6b"}), BackendComplete("SELECT 3"),
            BackendError("57014", "canceling statement due to user request"), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "TDEZ");
  EXPECT_TRUE(IsError(out[2], "0A000", "tracegate: column \"blob\" is bytea"));
  EXPECT_EQ(h.stats().masking_errors, 1u);
  EXPECT_EQ(h.Client(ClientQuery("SELECT id FROM traces WHERE id = 'tr-1'")), "forwarded");
  h.Answer({BackendRowDescription({TraceIdColumn()}), BackendDataRow({"tr-1"}),
            BackendComplete("SELECT 1"), BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "TDCZ");
}

TEST(ProtocolGateTest, MaskedSessionMasksBackendErrorsAndNotices) {
  Harness h(GateLimits{}, kTrace, DefaultRowMasker());
  EXPECT_EQ(h.Client(ClientQuery("SELECT id, name FROM traces WHERE id = 'tr-1'")), "forwarded");
  std::string notice;
  pgwire::EncodeNoticeResponse({.fields = {{'S', "NOTICE"}, {'M', "for jane.doe@example.com"}}},
                               notice);
  h.Answer(
      {notice,
       BackendError("22P02", "invalid input syntax for type integer: \"jane.doe@example.com\""),
       BackendReady()});
  const std::string out = h.TakeToClient();
  EXPECT_EQ(out.find("jane.doe"), std::string::npos);
  const std::vector<Message> messages = Split(out, Direction::kBackend);
  ASSERT_EQ(Types(messages), "NEZ");
  EXPECT_TRUE(
      IsError(messages[1], "22P02", "invalid input syntax for type integer: \"[REDACTED:EMAIL]\""));
}

// ---- Backend errors in an extended run ------------------------------------------------------

TEST(ProtocolGateTest, BackendErrorDiscardsTheRestOfTheRun) {
  Harness h;
  for (const std::string& m : {ClientParse("", kFailsAtBackend), ClientBind("", "", {}),
                               ClientDescribe('P', ""), ClientExecute(""), ClientSync()}) {
    EXPECT_EQ(h.Client(m), "forwarded");
  }
  const std::string error = BackendError("42703", "column \"no_such_column\" does not exist");
  h.Answer({error, BackendReady()});
  EXPECT_EQ(h.TakeToClient(), error + BackendReady());

  // The next run is matched to its own answers.
  h.PreparePinned("s1");
}

TEST(ProtocolGateTest, BackendErrorAfterSomeAnswersDiscardsOnlyThoseStillOwed) {
  Harness h;
  for (const std::string& m :
       {ClientParse("", "SELECT 1/0"), ClientBind("", "", {}), ClientExecute(""),
        ClientParse("s9", kPinnedByParam), ClientSync()}) {
    EXPECT_EQ(h.Client(m), "forwarded");
  }
  const std::string error = BackendError("22012", "division by zero");
  h.Answer({BackendEmpty('1'), BackendEmpty('2'),
            BackendRowDescription({Column("?column?", 0, 0, kInt4Oid)}), error, BackendReady()});
  EXPECT_EQ(Types(h.ToClient()), "12EZ");
  // The Parse of s9 was skipped by the backend: s9 does not exist.
  EXPECT_EQ(h.Client(ClientBind("", "s9", {"tr-1"})), "substituted");
}

TEST(ProtocolGateTest, MessagesTheBackendSkippedAreUndone) {
  Harness h;
  h.PreparePinned("s1");
  EXPECT_EQ(h.Client(ClientParse("bad", kFailsAtBackend)), "forwarded");
  EXPECT_EQ(h.Client(ClientClose('S', "s1")), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  const std::string error = BackendError("42703", "column \"no_such_column\" does not exist");
  h.Answer({error, BackendReady()});
  EXPECT_EQ(h.TakeToClient(), error + BackendReady());
  h.TakeToBackend();

  // s1 was not closed: binding it to another trace is still refused for the trace, not
  // because it is unknown.
  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendSyntaxError(), BackendReady()});
  std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42501", kOtherTraceBind));
  // "bad" was never prepared, so it may be prepared now (no 42P05)...
  EXPECT_EQ(h.Client(ClientParse("bad", "SELECT 1")), "forwarded");
  // ...and s1 may not be prepared again.
  EXPECT_EQ(h.Client(ClientParse("s1", "SELECT 1")), "substituted");
}

TEST(ProtocolGateTest, SkippedReparseOfAClosedStatementRestoresItsAbsence) {
  Harness h;
  h.PreparePinned("s1");
  // Close s1, then prepare s1 anew without a pinning parameter — but the run fails first.
  EXPECT_EQ(h.Client(ClientParse("bad", kFailsAtBackend)), "forwarded");
  EXPECT_EQ(h.Client(ClientClose('S', "s1")), "forwarded");
  EXPECT_EQ(h.Client(ClientParse("s1", "SELECT 1")), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendError("42703", "no"), BackendReady()});
  h.TakeToClient();
  // The backend still has the pinned s1.
  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
}

TEST(ProtocolGateTest, SkippedExecuteLeavesThePortalToBeDescribedAgain) {
  Harness h;
  // Portal p, described with a result that has no trace column.
  for (const std::string& m : {ClientParse("s0", "SELECT 1"), ClientBind("p", "s0", {}),
                               ClientDescribe('P', "p"), ClientExecute("p"), ClientSync()}) {
    EXPECT_EQ(h.Client(m), "forwarded");
  }
  h.Answer({BackendEmpty('1'), BackendEmpty('2'),
            BackendRowDescription({Column("?column?", 0, 0, kInt4Oid)}), BackendDataRow({"1"}),
            BackendComplete("SELECT 1"), BackendReady('T')});
  h.TakeToClient();
  // p again, now over the trace table (not described yet).
  for (const std::string& m : {ClientClose('P', "p"), ClientParse("s1", kPinnedByParam),
                               ClientBind("p", "s1", {"tr-1"}), ClientSync()}) {
    EXPECT_EQ(h.Client(m), "forwarded");
  }
  h.Answer({BackendEmpty('3'), BackendEmpty('1'), BackendEmpty('2'), BackendReady('T')});
  h.TakeToClient();
  // An Execute of p (with the Describe the gate slips in) that the backend skips.
  EXPECT_EQ(h.Client(ClientParse("bad", kFailsAtBackend)), "forwarded");
  EXPECT_EQ(h.Client(ClientExecute("p")), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendError("42703", "no"), BackendReady('E')});
  h.TakeToClient();
  h.TakeToBackend();

  // The skipped Describe taught the gate nothing: p must be described before it runs, and its
  // rows checked against its own columns, not those of the portal p was before.
  const std::string execute = ClientExecute("p");
  EXPECT_EQ(h.Client(execute), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientDescribe('P', "p") + execute);
  h.Answer({BackendRowDescription({TraceIdColumn()})});
  EXPECT_EQ(h.Backend(BackendDataRow({"tr-2"})).code(), absl::StatusCode::kPermissionDenied);
}

TEST(ProtocolGateTest, SkippedDescribeOfAPortalTeachesTheGateNothing) {
  Harness h;
  for (const std::string& m :
       {ClientParse("s0", "SELECT 1"), ClientBind("p", "s0", {}), ClientDescribe('P', "p"),
        ClientExecute("p"), ClientClose('P', "p"), ClientParse("s1", kPinnedByParam),
        ClientBind("p", "s1", {"tr-1"}), ClientSync()}) {
    EXPECT_EQ(h.Client(m), "forwarded");
  }
  h.Answer({BackendEmpty('1'), BackendEmpty('2'),
            BackendRowDescription({Column("?column?", 0, 0, kInt4Oid)}), BackendDataRow({"1"}),
            BackendComplete("SELECT 1"), BackendEmpty('3'), BackendEmpty('1'), BackendEmpty('2'),
            BackendReady('T')});
  h.TakeToClient();
  // The client's Describe of the new p is skipped by the backend.
  EXPECT_EQ(h.Client(ClientParse("bad", kFailsAtBackend)), "forwarded");
  EXPECT_EQ(h.Client(ClientDescribe('P', "p")), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendError("42703", "no"), BackendReady('E')});
  h.TakeToClient();
  h.TakeToBackend();

  const std::string execute = ClientExecute("p");
  EXPECT_EQ(h.Client(execute), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientDescribe('P', "p") + execute);
}

TEST(ProtocolGateTest, CursorDeclaredInASimpleQueryIsDescribedBeforeItsRowsPass) {
  Harness h;
  // The client describes portal c while it is one cursor...
  for (const char* sql : {"BEGIN READ ONLY", "DECLARE c CURSOR FOR SELECT 1"}) {
    EXPECT_EQ(h.Client(ClientQuery(sql)), "forwarded") << sql;
  }
  h.Answer({BackendComplete("BEGIN"), BackendReady('T'), BackendComplete("DECLARE CURSOR"),
            BackendReady('T')});
  EXPECT_EQ(h.Client(ClientDescribe('P', "c")), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendRowDescription({Column("?column?", 0, 0, kInt4Oid)}), BackendReady('T')});
  // ...then SQL closes it and declares another cursor of the same name.
  for (const char* sql :
       {"CLOSE c", "DECLARE c CURSOR FOR SELECT id FROM traces WHERE id = 'tr-1'"}) {
    EXPECT_EQ(h.Client(ClientQuery(sql)), "forwarded") << sql;
  }
  h.Answer({BackendComplete("CLOSE CURSOR"), BackendReady('T'), BackendComplete("DECLARE CURSOR"),
            BackendReady('T')});
  h.TakeToClient();
  h.TakeToBackend();

  // An Execute of c must learn the new cursor's columns first.
  const std::string execute = ClientExecute("c");
  EXPECT_EQ(h.Client(execute), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientDescribe('P', "c") + execute);
  h.Answer({BackendRowDescription({TraceIdColumn()})});
  EXPECT_EQ(h.Backend(BackendDataRow({"tr-2"})).code(), absl::StatusCode::kPermissionDenied);
}

// ---- Portals that change under the gate (issue 16, hole 3) --------------------------------

constexpr uint32_t kTimestamptzOid = 1184;
pgwire::FieldDescription UserIdColumn() { return Column("user_id", kTracesOid, 4); }

// Runs `sql` as one extended-protocol statement on the unnamed portal (Parse, Bind, Execute,
// Sync) and answers it as PostgreSQL would for a utility statement: the gate's slipped
// Describe of the unnamed portal gets NoData.
void RunExtendedUtility(Harness& h, std::string_view sql, std::string_view tag, char status = 'T') {
  for (const std::string& m :
       {ClientParse("", sql), ClientBind("", "", {}), ClientExecute(""), ClientSync()}) {
    ASSERT_EQ(h.Client(m), "forwarded") << sql;
  }
  h.Answer({BackendEmpty('1'), BackendEmpty('2'), BackendEmpty('n'), BackendComplete(tag),
            BackendReady(status)});
  EXPECT_EQ(Types(h.ToClient()), "12CZ") << sql;
  h.TakeToBackend();
}

void RunSimple(Harness& h, std::string_view sql, std::string_view tag) {
  ASSERT_EQ(h.Client(ClientQuery(sql)), "forwarded") << sql;
  h.Answer({BackendComplete(tag), BackendReady('T')});
  EXPECT_EQ(Types(h.ToClient()), "CZ") << sql;
  h.TakeToBackend();
}

// The sequence: cursor c first returns a timestamptz (passed unread by the masker),
// then is closed and re-declared over user_id through the extended protocol. Its next Execute
// must be described again, so the email is masked.
TEST(ProtocolGateTest, CursorRedeclaredThroughTheExtendedProtocolIsDescribedAgain) {
  Harness h(GateLimits{}, kTrace, DefaultRowMasker());
  RunSimple(h, "BEGIN READ ONLY", "BEGIN");
  RunSimple(h, "DECLARE c CURSOR FOR SELECT now() FROM traces WHERE id = 'tr-1'", "DECLARE CURSOR");
  // Execute c: the gate slips in a Describe and learns (timestamptz).
  EXPECT_EQ(h.Client(ClientExecute("c", 1)), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientDescribe('P', "c") + ClientExecute("c", 1) + ClientSync());
  h.Answer({BackendRowDescription({Column("now", 0, 0, kTimestamptzOid)}),
            BackendDataRow({"2026-12-01 10:00:00+00"}), BackendEmpty('s'), BackendReady('T')});
  EXPECT_EQ(Types(h.ToClient()), "DsZ");

  RunExtendedUtility(h, "CLOSE c", "CLOSE CURSOR");
  RunExtendedUtility(h, "DECLARE c CURSOR FOR SELECT user_id FROM traces WHERE id = 'tr-1'",
                     "DECLARE CURSOR");

  const std::string execute = ClientExecute("c");
  EXPECT_EQ(h.Client(execute), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientDescribe('P', "c") + execute + ClientSync());
  h.Answer({BackendRowDescription({UserIdColumn()}), BackendDataRow({"jane.doe@example.com"}),
            BackendComplete("FETCH 1"), BackendReady('T')});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "DCZ");
  EXPECT_EQ(out[0].body, BackendDataRow({"[REDACTED:EMAIL]"}).substr(5));
  EXPECT_EQ(h.masked()->Of("EMAIL"), 1u);
}

// Whatever happens between a portal's Describe and its Execute, if it can run a statement
// or replace a portal, the Describe is not trusted: simple Query CLOSE + extended DECLARE,
// extended CLOSE ALL + simple DECLARE, a Close message and a Bind of the name, or an Execute
// of any other portal (the gate does not guess which statements touch cursors).
TEST(ProtocolGateTest,
     AnythingThatCanChangeAPortalBetweenItsDescribeAndItsExecuteVoidsTheDescribe) {
  const std::vector<std::pair<std::string, std::function<void(Harness&)>>> cases = {
      {"simple CLOSE, extended DECLARE",
       [](Harness& h) {
         RunSimple(h, "CLOSE c", "CLOSE CURSOR");
         RunExtendedUtility(h, "DECLARE c CURSOR FOR SELECT id FROM traces WHERE id = 'tr-1'",
                            "DECLARE CURSOR");
       }},
      {"extended CLOSE ALL, simple DECLARE",
       [](Harness& h) {
         RunExtendedUtility(h, "CLOSE ALL", "CLOSE CURSOR ALL");
         RunSimple(h, "DECLARE c CURSOR FOR SELECT id FROM traces WHERE id = 'tr-1'",
                   "DECLARE CURSOR");
       }},
      {"an extended SELECT",
       [](Harness& h) { RunExtendedUtility(h, "SELECT 1 WHERE false", "SELECT 0"); }},
      {"Close message, then Bind of the name",
       [](Harness& h) {
         h.PreparePinned("s9");
         ASSERT_EQ(h.Client(ClientClose('P', "c")), "forwarded");
         ASSERT_EQ(h.Client(ClientBind("c", "s9", {"tr-1"})), "forwarded");
         ASSERT_EQ(h.Client(ClientSync()), "forwarded");
         h.Answer({BackendEmpty('3'), BackendEmpty('2'), BackendReady('T')});
         h.TakeToClient();
         h.TakeToBackend();
       }},
  };
  for (const auto& [what, change] : cases) {
    SCOPED_TRACE(what);
    Harness h;
    RunSimple(h, "BEGIN READ ONLY", "BEGIN");
    RunSimple(h, "DECLARE c CURSOR FOR SELECT 1", "DECLARE CURSOR");
    // The client describes c itself, in a run of its own.
    ASSERT_EQ(h.Client(ClientDescribe('P', "c")), "forwarded");
    ASSERT_EQ(h.Client(ClientSync()), "forwarded");
    h.Answer({BackendRowDescription({Column("?column?", 0, 0, kInt4Oid)}), BackendReady('T')});
    h.TakeToClient();
    h.TakeToBackend();
    change(h);
    const std::string execute = ClientExecute("c");
    ASSERT_EQ(h.Client(execute), "forwarded");
    EXPECT_EQ(h.TakeToBackend(), ClientDescribe('P', "c") + execute);
    h.Answer({BackendRowDescription({TraceIdColumn()})});
    EXPECT_EQ(h.Backend(BackendDataRow({"tr-2"})).code(), absl::StatusCode::kPermissionDenied);
  }
}

// In one pipelined run: the client's Describe of c, then CLOSE c and DECLARE c on the unnamed
// portal, then Execute c. The Describe answers for the old cursor; the Execute is described
// again right before it runs.
TEST(ProtocolGateTest, DescribeFollowedByARedeclareInTheSameRunIsNotTrusted) {
  Harness h;
  RunSimple(h, "BEGIN READ ONLY", "BEGIN");
  RunSimple(h, "DECLARE c CURSOR FOR SELECT 1", "DECLARE CURSOR");
  const std::string execute = ClientExecute("c");
  for (const std::string& m :
       {ClientDescribe('P', "c"), ClientParse("", "CLOSE c"), ClientBind("", "", {}),
        ClientExecute(""),
        ClientParse("", "DECLARE c CURSOR FOR SELECT id FROM traces WHERE id = 'tr-1'"),
        ClientBind("", "", {}), ClientExecute(""), execute, ClientSync()}) {
    ASSERT_EQ(h.Client(m), "forwarded");
  }
  const std::vector<Message> sent = h.ToBackend();
  // D P P B D E P B D E D E S: the Describe of c is sent again just before its Execute.
  EXPECT_EQ(Types(sent), "DPBDEPBDEDES");
  h.Answer({BackendRowDescription({Column("?column?", 0, 0, kInt4Oid)}), BackendEmpty('1'),
            BackendEmpty('2'), BackendEmpty('n'), BackendComplete("CLOSE CURSOR"),
            BackendEmpty('1'), BackendEmpty('2'), BackendEmpty('n'),
            BackendComplete("DECLARE CURSOR"), BackendRowDescription({TraceIdColumn()})});
  EXPECT_EQ(h.Backend(BackendDataRow({"tr-2"})).code(), absl::StatusCode::kPermissionDenied);
}

// PostgreSQL fixes a FETCH portal's columns at Bind and reads the cursor at its first Execute:
// a cursor re-declared in between comes out under the old columns, and a Describe repeats
// them. Such an Execute is refused; one right after its Bind, or a resumed one, is not.
TEST(ProtocolGateTest, FetchPortalBoundBeforeItsCursorChangedIsRefused) {
  Harness h(GateLimits{}, kTrace, DefaultRowMasker());
  RunSimple(h, "BEGIN READ ONLY", "BEGIN");
  RunSimple(h, "DECLARE c CURSOR FOR SELECT now() FROM traces WHERE id = 'tr-1'", "DECLARE CURSOR");
  for (const std::string& m :
       {ClientParse("f", "FETCH ALL FROM c"), ClientBind("pf", "f", {}), ClientSync()}) {
    ASSERT_EQ(h.Client(m), "forwarded");
  }
  h.Answer({BackendEmpty('1'), BackendEmpty('2'), BackendReady('T')});
  h.TakeToClient();
  h.TakeToBackend();
  RunExtendedUtility(h, "CLOSE c", "CLOSE CURSOR");
  RunExtendedUtility(h, "DECLARE c CURSOR FOR SELECT user_id FROM traces WHERE id = 'tr-1'",
                     "DECLARE CURSOR");
  // Describe pf answers the columns of the old c; the Execute is refused all the same.
  EXPECT_EQ(h.Client(ClientDescribe('P', "pf")), "forwarded");
  EXPECT_EQ(h.Client(ClientExecute("pf")), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  const std::vector<Message> sent = h.ToBackend();
  ASSERT_EQ(Types(sent), "DPS");
  EXPECT_TRUE(IsPlaceholderParse(sent[1]));
  h.Answer({BackendRowDescription({Column("now", 0, 0, kTimestamptzOid)}), BackendSyntaxError(),
            BackendReady('E')});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "TEZ");
  EXPECT_TRUE(
      IsError(out[1], "42501", "tracegate: statement blocked (unsupported): portal \"pf\""));

  // The same portal bound again, executed at once: allowed, and resumable after other
  // statements (its rows were read at its first Execute).
  RunSimple(h, "ROLLBACK", "ROLLBACK");
  RunSimple(h, "BEGIN READ ONLY", "BEGIN");
  RunSimple(h, "DECLARE c CURSOR FOR SELECT id FROM traces WHERE id = 'tr-1'", "DECLARE CURSOR");
  for (const std::string& m : {ClientBind("pf", "f", {}), ClientExecute("pf", 1), ClientSync()}) {
    ASSERT_EQ(h.Client(m), "forwarded");
  }
  h.Answer({BackendEmpty('2'), BackendRowDescription({TraceIdColumn()}), BackendDataRow({"tr-1"}),
            BackendEmpty('s'), BackendReady('T')});
  EXPECT_EQ(Types(h.ToClient()), "2DsZ");
  RunSimple(h, "CLOSE c", "CLOSE CURSOR");
  EXPECT_EQ(h.Client(ClientExecute("pf", 1)), "forwarded");
}

TEST(ProtocolGateTest, FetchPortalIsStaleAfterAPortalOfAnyNameIsBoundOrClosed) {
  for (const bool close : {false, true}) {
    SCOPED_TRACE(close ? "Close" : "Bind");
    Harness h;
    h.PreparePinned("s1");
    for (const std::string& m :
         {ClientParse("f", "FETCH ALL FROM c"), ClientBind("pf", "f", {}),
          close ? ClientClose('P', "c") : ClientBind("c", "s1", {"tr-1"}), ClientExecute("pf")}) {
      EXPECT_EQ(h.Client(m), m[0] == 'E' ? "substituted" : "forwarded");
    }
  }
}

// ---- client_encoding (issue 16, hole 4) ---------------------------------------------------

TEST(ProtocolGateTest, ParameterStatusOfAnotherClientEncodingEndsTheSession) {
  Harness h;
  std::string utf8;
  pgwire::EncodeParameterStatus({.name = "client_encoding", .value = "UTF8"}, utf8);
  h.Answer({utf8});
  EXPECT_EQ(h.TakeToClient(), utf8);
  for (const char* encoding : {"SJIS", "LATIN1", "SQL_ASCII", ""}) {
    std::string other;
    pgwire::EncodeParameterStatus({.name = "client_encoding", .value = encoding}, other);
    const absl::Status status = h.Backend(other);
    EXPECT_EQ(SqlStateOf(status), "0A000") << encoding;
    EXPECT_THAT(std::string(status.message()),
                HasSubstr(Cat("switched client_encoding to ", encoding)))
        << encoding;
    EXPECT_EQ(h.TakeToClient(), "") << "the report is not forwarded";
  }
}

TEST(ProtocolGateTest, Utf8EncodingNames) {
  for (const char* name : {"UTF8", "utf8", "UTF-8", "utf_8", "Unicode"}) {
    EXPECT_TRUE(IsUtf8EncodingName(name)) << name;
  }
  for (const char* name : {"SJIS", "SQL_ASCII", "LATIN1", "", "utf16", "utf8x"}) {
    EXPECT_FALSE(IsUtf8EncodingName(name)) << name;
  }
}

TEST(ProtocolGateTest, BackendErrorBeforeTheClientsSyncMakesTheGateSkipToIt) {
  Harness h;
  h.PreparePinned("s1");
  // A run the client flushes before it sends its Sync.
  EXPECT_EQ(h.Client(ClientParse("bad", kFailsAtBackend)), "forwarded");
  EXPECT_EQ(h.Client(ClientFlush()), "forwarded");
  const std::string error = BackendError("42703", "no");
  ASSERT_TRUE(h.Backend(error).ok());
  EXPECT_EQ(h.TakeToClient(), error);
  h.TakeToBackend();

  // The backend now ignores everything up to the Sync, and so must the gate: nothing of it
  // is owed an answer, and nothing of it changes the statements.
  EXPECT_EQ(h.Client(ClientClose('S', "s1")), "dropped");
  EXPECT_EQ(h.Client(ClientParse("x", "SELECT 1")), "dropped");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientSync());
  ASSERT_TRUE(h.Backend(BackendReady()).ok());
  EXPECT_EQ(h.TakeToClient(), BackendReady());

  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendSyntaxError(), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42501", kOtherTraceBind));
}

TEST(ProtocolGateTest, RefusalAfterACapErrorIsNotASecondError) {
  Harness h(GateLimits{.max_rows = 1});
  h.PreparePinned("s1");
  for (const std::string& m : {ClientBind("", "s1", {"tr-1"}), ClientExecute(""), ClientFlush()}) {
    EXPECT_EQ(h.Client(m), "forwarded");
  }
  h.Answer({BackendEmpty('2'), PinnedRowDescription(), BackendDataRow({"tr-1", "a"}),
            BackendDataRow({"tr-1", "b"}), BackendComplete("SELECT 2")});
  std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "2DE");
  EXPECT_TRUE(IsError(out[2], "54000", "tracegate: statement ended (row_cap)"));

  // The client, not yet aware of the error, goes on with the run; one message is refused.
  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  h.Answer({BackendSyntaxError(), BackendReady()});
  // One error per run, as from PostgreSQL.
  EXPECT_EQ(h.TakeToClient(), BackendReady());
}

TEST(ProtocolGateTest, RefusalAfterABackendErrorInTheSameRunIsNotASecondError) {
  Harness h;
  h.PreparePinned("s1");
  EXPECT_EQ(h.Client(ClientParse("bad", kFailsAtBackend)), "forwarded");
  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  const std::vector<Message> sent = h.ToBackend();
  ASSERT_EQ(Types(sent), "PPS");
  EXPECT_TRUE(IsPlaceholderParse(sent[1]));

  // The backend fails the client's Parse and skips the substitute: its error is the run's one.
  const std::string error = BackendError("42703", "column \"no_such_column\" does not exist");
  h.Answer({error, BackendReady()});
  EXPECT_EQ(h.TakeToClient(), error + BackendReady());

  // The next run is matched to its own answers.
  h.PreparePinned("s2");
}

TEST(ProtocolGateTest, PipelinedRunsAreAnsweredInOrder) {
  Harness h;
  h.PreparePinned("s1");
  // Three runs sent before any answer: granted, refused, granted.
  for (const std::string& m : {ClientBind("", "s1", {"tr-1"}), ClientExecute(""), ClientSync()}) {
    EXPECT_EQ(h.Client(m), "forwarded");
  }
  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-2"})), "substituted");
  EXPECT_EQ(h.Client(ClientExecute("")), "dropped");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  for (const std::string& m : {ClientBind("", "s1", {"tr-1"}), ClientExecute(""), ClientSync()}) {
    EXPECT_EQ(h.Client(m), "forwarded");
  }
  EXPECT_EQ(Types(h.ToBackend()), "BDESPSBDES");

  h.Answer({BackendEmpty('2'), PinnedRowDescription(), BackendDataRow({"tr-1", "a"}),
            BackendComplete("SELECT 1"), BackendReady(), BackendSyntaxError(), BackendReady(),
            BackendEmpty('2'), PinnedRowDescription(), BackendDataRow({"tr-1", "b"}),
            BackendComplete("SELECT 1"), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "2DCZEZ2DCZ");
  EXPECT_TRUE(IsError(out[4], "42501", kOtherTraceBind));
}

TEST(ProtocolGateTest, ErrorAnsweringTheSlippedInDescribeIsForwarded) {
  Harness h;
  EXPECT_EQ(h.Client(ClientExecute("nope")), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientDescribe('P', "nope") + ClientExecute("nope") + ClientSync());
  const std::string error = BackendError("34000", "portal \"nope\" does not exist");
  h.Answer({error, BackendReady()});
  EXPECT_EQ(h.TakeToClient(), error + BackendReady());
  // Nothing was learnt of the portal: it is described again next time.
  EXPECT_EQ(h.Client(ClientExecute("nope")), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientDescribe('P', "nope") + ClientExecute("nope"));
}

// ---- Unexpected backend messages ------------------------------------------------------------

TEST(ProtocolGateTest, AnswerToNothingIsAnError) {
  Harness h;
  const absl::Status status = h.Backend(BackendEmpty('1'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("answers nothing"));
  EXPECT_EQ(h.Backend(BackendReady()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(h.Backend(BackendDataRow({"tr-1"})).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(h.TakeToClient(), "");
}

TEST(ProtocolGateTest, RowBeforeAnyRowDescriptionIsAnError) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery("SELECT id FROM traces WHERE id = 'tr-1'")), "forwarded");
  const absl::Status status = h.Backend(BackendDataRow({"tr-1"}));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("no row description"));
  EXPECT_EQ(h.TakeToClient(), "");
}

TEST(ProtocolGateTest, RowAfterCommandCompleteNeedsANewRowDescription) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery("SELECT id FROM traces WHERE id = 'tr-1'")), "forwarded");
  h.Answer({BackendRowDescription({TraceIdColumn()}), BackendComplete("SELECT 0")});
  EXPECT_EQ(h.Backend(BackendDataRow({"tr-1"})).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProtocolGateTest, WrongAnswerIsAnError) {
  Harness h;
  EXPECT_EQ(h.Client(ClientParse("", "SELECT 1")), "forwarded");
  for (const std::string& wrong :
       {BackendEmpty('2'), BackendEmpty('3'), BackendReady(), BackendDataRow({"1"}),
        BackendComplete("SELECT 1"), BackendEmpty('n')}) {
    const absl::Status status = h.Backend(wrong);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << wrong[0] << ": " << status;
  }
  EXPECT_EQ(h.TakeToClient(), "");
}

TEST(ProtocolGateTest, SuccessAnsweringARefusedExtendedMessagesSubstituteIsAnError) {
  // The substitute Parse cannot succeed: a ParseComplete (or the CloseComplete that answered
  // the old substitute) is not its answer.
  for (const std::string& wrong : {BackendEmpty('1'), BackendEmpty('3')}) {
    Harness h;
    EXPECT_EQ(h.Client(ClientParse("s", "SELECT * FROM traces")), "substituted");
    EXPECT_EQ(h.Client(ClientSync()), "forwarded");
    const absl::Status status = h.Backend(wrong);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << wrong[0] << ": " << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("owed another answer"));
    EXPECT_EQ(h.TakeToClient(), "");
  }
}

TEST(ProtocolGateTest, EmptyQueryResponseAnsweringARefusedQuerysSubstituteIsAnError) {
  Harness h;
  EXPECT_EQ(h.Client(ClientQuery("SELECT * FROM traces")), "substituted");
  const absl::Status status = h.Backend(BackendEmpty('I'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("owed another answer"));
  EXPECT_EQ(h.TakeToClient(), "");
}

// Rows, a command tag or a ReadyForQuery without the error first: the refused statement
// would look as if it ran. Whatever answered it, the refusal must not go missing.
TEST(ProtocolGateTest, AnyAnswerButAnErrorToARefusedQuerysSubstituteIsAnError) {
  for (const std::string& answer :
       {BackendReady(), BackendComplete("SELECT 0"), BackendDataRow({"tr-1"})}) {
    Harness h;
    EXPECT_EQ(h.Client(ClientQuery("SELECT * FROM traces")), "substituted");
    const absl::Status status = h.Backend(answer);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_EQ(h.TakeToClient(), "");
  }
}

TEST(ProtocolGateTest, ErrorResponseToASyncIsAnError) {
  Harness h;
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  EXPECT_EQ(h.Backend(BackendError("XX000", "x")).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProtocolGateTest, CopyFromTheBackendEndsTheSession) {
  std::string copy_out;
  pgwire::EncodeCopyResponse('H', {}, copy_out);
  std::string copy_in;
  pgwire::EncodeCopyResponse('G', {}, copy_in);
  std::string copy_both;
  pgwire::EncodeCopyResponse('W', {}, copy_both);
  for (const std::string& copy : {copy_out, copy_in, copy_both}) {
    Harness h;
    EXPECT_EQ(h.Client(ClientQuery("SELECT 1")), "forwarded");
    absl::Status status = h.Backend(copy);
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
    EXPECT_EQ(SqlStateOf(status), "42501");
    EXPECT_THAT(std::string(status.message()), HasSubstr("COPY"));

    EXPECT_EQ(h.Client(ClientParse("", "SELECT 1")), "forwarded");
    EXPECT_EQ(h.Client(ClientBind("", "", {})), "forwarded");
    EXPECT_EQ(h.Client(ClientExecute("")), "forwarded");
    Harness e;
    EXPECT_EQ(e.Client(ClientParse("", "SELECT 1")), "forwarded");
    EXPECT_EQ(e.Client(ClientBind("", "", {})), "forwarded");
    EXPECT_EQ(e.Client(ClientExecute("")), "forwarded");
    e.Answer({BackendEmpty('1'), BackendEmpty('2'), BackendEmpty('n')});
    status = e.Backend(copy);
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
    EXPECT_EQ(e.TakeToClient(), BackendEmpty('1') + BackendEmpty('2'));
  }
}

// ---- Other client messages -------------------------------------------------------------------

TEST(ProtocolGateTest, FunctionCallIsRefusedThroughAnUnparsableQuery) {
  Harness h;
  const std::string arg = "x";
  std::string call;
  pgwire::EncodeFunctionCall({.function_oid = 1242, .arg_formats = {0}, .args = {AsBytes(arg)}},
                             call);
  EXPECT_EQ(h.Client(call), "substituted");
  EXPECT_EQ(h.TakeToBackend(), ClientQuery(kRefusedSql));
  h.Answer({BackendSyntaxError(), BackendReady()});
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(Types(out), "EZ");
  EXPECT_TRUE(IsError(out[0], "42501",
                      "tracegate: statement blocked (unsupported): the fast-path function call "
                      "interface is not allowed"));
  EXPECT_EQ(h.stats().blocked, 1u);
  EXPECT_EQ(h.stats().statements, 1u);
}

TEST(ProtocolGateTest, CopyMessagesFromTheClientAreDropped) {
  Harness h;
  const std::string data = "1\ttr-2\n";
  std::string copy_data;
  pgwire::EncodeCopyData(AsBytes(data), copy_data);
  std::string copy_fail;
  pgwire::EncodeCopyFail({.message = "no"}, copy_fail);
  EXPECT_EQ(h.Client(copy_data), "dropped");
  EXPECT_EQ(h.Client(ClientEmpty('c')), "dropped");
  EXPECT_EQ(h.Client(copy_fail), "dropped");
  EXPECT_EQ(h.TakeToBackend(), "");
  // Nothing is owed for them.
  EXPECT_EQ(h.Backend(BackendReady()).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProtocolGateTest, FlushWhileSkippingToSyncIsForwarded) {
  Harness h;
  EXPECT_EQ(h.Client(ClientBind("", "nope", {})), "substituted");
  const std::vector<Message> substitute = h.ToBackend();
  ASSERT_EQ(substitute.size(), 1u);
  EXPECT_TRUE(IsPlaceholderParse(substitute[0]));
  EXPECT_EQ(h.Client(ClientExecute("")), "dropped");
  // The backend must flush the substituted Parse's error for the client to see the refusal.
  EXPECT_EQ(h.Client(ClientFlush()), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientFlush());
  ASSERT_TRUE(h.Backend(BackendSyntaxError()).ok());
  const std::vector<Message> out = h.ToClient();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(IsError(out[0], "26000", "prepared statement \"nope\" does not exist"));
  // Still skipping until the Sync.
  EXPECT_EQ(h.Client(ClientParse("", "SELECT 1")), "dropped");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientSync());
  h.Answer({BackendReady()});
  EXPECT_EQ(h.TakeToClient(), BackendReady());
}

TEST(ProtocolGateTest, FlushOutsideARunIsForwardedAndOwesNothing) {
  Harness h;
  EXPECT_EQ(h.Client(ClientFlush()), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), ClientFlush());
  EXPECT_FALSE(h.Backend(BackendEmpty('1')).ok());
}

TEST(ProtocolGateTest, TerminateIsNotTheGatesToHandle) {
  Harness h;
  const absl::StatusOr<Action> action = h.ClientStatus(ClientEmpty('X'));
  EXPECT_EQ(action.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(h.TakeToBackend(), "");
}

TEST(ProtocolGateTest, CloseIsForwardedAndAnswered) {
  Harness h;
  h.PreparePinned("s1");
  const std::string close = ClientClose('S', "s1");
  EXPECT_EQ(h.Client(close), "forwarded");
  EXPECT_EQ(h.Client(ClientSync()), "forwarded");
  EXPECT_EQ(h.TakeToBackend(), close + ClientSync());
  h.Answer({BackendEmpty('3'), BackendReady()});
  EXPECT_EQ(h.TakeToClient(), BackendEmpty('3') + BackendReady());
  // Now s1 is gone.
  EXPECT_EQ(h.Client(ClientBind("", "s1", {"tr-1"})), "substituted");
}

TEST(ProtocolGateTest, TraceColumnsQueryNamesEveryTable) {
  const std::string query =
      TraceColumnsQuery({{.schema = "public", .name = "traces", .id_column = "id"},
                         {.schema = "public", .name = "observations", .id_column = "trace_id"}});
  EXPECT_THAT(query, HasSubstr("IN (('public', 'traces'), ('public', 'observations'))"));
  EXPECT_THAT(query, StartsWith("SELECT n.nspname, c.relname, a.attname, c.oid, a.attnum"));
}

}  // namespace
}  // namespace tracegate::pgproxy
