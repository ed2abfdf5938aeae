// libpq_client: drives one libpq feature against a server and prints the results in a
// stable text form, so tests/test_pgproxy.py can compare "through tracegate" with "direct"
// (and tests/test_gate.py can check what the statement gate lets through: the gate-* modes).
//
//   libpq_client <conninfo> <extended|prepared|binary|cancel|pipeline|copy-out>
//   libpq_client <conninfo> <gate-params|gate-pipeline> <trace> <other-trace>
//   libpq_client <conninfo> binary-query <sql>
//   libpq_client <conninfo> answer-loop <trace> <marker-prefix> <count>
//
// Output is deterministic for a given database (ORDER BY everywhere, no timings, no pids).
// Exit status 0 on success; otherwise 1 with the reason on stderr (libpq's message and the
// SQLSTATE where there is one).

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <poll.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Owns a PGresult.
class Result {
 public:
  explicit Result(PGresult* res) : res_(res) {}
  ~Result() { PQclear(res_); }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  PGresult* get() const { return res_; }
  ExecStatusType status() const { return PQresultStatus(res_); }

 private:
  PGresult* res_;
};

std::string SqlState(const PGresult* res) {
  const char* s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  return s != nullptr ? s : "";
}

[[noreturn]] void Fail(const std::string& what, PGconn* conn, const PGresult* res = nullptr) {
  std::string msg = what;
  if (res != nullptr) {
    msg += ": [" + SqlState(res) + "] " + PQresultErrorMessage(res);
  } else if (conn != nullptr) {
    msg += ": " + std::string(PQerrorMessage(conn));
  }
  throw Failure(msg);
}

void Expect(PGconn* conn, const Result& res, ExecStatusType want, const std::string& what) {
  if (res.status() != want) {
    Fail(what + " (status " + PQresStatus(res.status()) + ")", conn, res.get());
  }
}

// Text rows as "v1|v2|..."; NULL prints as \N.
void PrintRows(const PGresult* res, const std::string& label) {
  int rows = PQntuples(res);
  int cols = PQnfields(res);
  std::printf("%s: %d row(s), %d column(s):", label.c_str(), rows, cols);
  for (int c = 0; c < cols; ++c) {
    std::printf(" %s", PQfname(res, c));
  }
  std::printf("\n");
  for (int r = 0; r < rows; ++r) {
    std::string line = "  ";
    for (int c = 0; c < cols; ++c) {
      if (c > 0) {
        line += "|";
      }
      line += PQgetisnull(res, r, c) ? "\\N" : PQgetvalue(res, r, c);
    }
    std::printf("%s\n", line.c_str());
  }
}

std::vector<std::string> TraceIds(PGconn* conn, int n) {
  Result res(
      PQexec(conn, ("select id from traces order by id limit " + std::to_string(n)).c_str()));
  Expect(conn, res, PGRES_TUPLES_OK, "select trace ids");
  std::vector<std::string> ids;
  for (int r = 0; r < PQntuples(res.get()); ++r) {
    ids.emplace_back(PQgetvalue(res.get(), r, 0));
  }
  if (ids.empty()) {
    throw Failure("no traces in the database");
  }
  return ids;
}

// Extended query protocol, unnamed statement, text parameters.
void Extended(PGconn* conn) {
  const char* params[] = {"40", "%agent"};
  Result a(PQexecParams(conn,
                        "select id, name, risk, jsonb_array_length(input->'messages') as msgs "
                        "from traces where risk >= $1::int and name like $2 order by id limit 5",
                        2, nullptr, params, nullptr, nullptr, 0));
  Expect(conn, a, PGRES_TUPLES_OK, "extended select");
  PrintRows(a.get(), "risky traces");

  const char* p2[] = {"7", nullptr, "it's \"quoted\" \\ text"};
  Result b(PQexecParams(conn,
                        "select $1::int * 6 as answer, $2::text is null as null_param, "
                        "$3::text as echoed, length($3) as len",
                        3, nullptr, p2, nullptr, nullptr, 0));
  Expect(conn, b, PGRES_TUPLES_OK, "extended params");
  PrintRows(b.get(), "params");

  std::vector<std::string> ids = TraceIds(conn, 1);
  const char* p3[] = {ids[0].c_str()};
  Result c(PQexecParams(conn,
                        "select t.id, count(o.id) as observations, "
                        "length(t.input::text) + length(t.output::text) > 1000 as big, "
                        "t.metadata #>> '{sdk,name}' as sdk "
                        "from traces t left join observations o on o.trace_id = t.id "
                        "where t.id = $1 group by t.id",
                        1, nullptr, p3, nullptr, nullptr, 0));
  Expect(conn, c, PGRES_TUPLES_OK, "extended join");
  PrintRows(c.get(), "join");

  const char* zero[] = {"0"};
  Result err(PQexecParams(conn, "select 1 / $1::int", 1, nullptr, zero, nullptr, nullptr, 0));
  std::printf("division by zero: %s %s\n", PQresStatus(err.status()), SqlState(err.get()).c_str());
  Result after(
      PQexecParams(conn, "select 'still usable'", 0, nullptr, nullptr, nullptr, nullptr, 0));
  Expect(conn, after, PGRES_TUPLES_OK, "query after error");
  PrintRows(after.get(), "after error");
}

// Named and unnamed prepared statements, each executed several times.
void Prepared(PGconn* conn) {
  std::vector<std::string> ids = TraceIds(conn, 4);
  Result prep(PQprepare(conn, "trace_by_id",
                        "select id, name, risk, project_id, length(input::text) > 0 as has_input "
                        "from traces where id = $1",
                        1, nullptr));
  Expect(conn, prep, PGRES_COMMAND_OK, "prepare trace_by_id");

  Result desc(PQdescribePrepared(conn, "trace_by_id"));
  Expect(conn, desc, PGRES_COMMAND_OK, "describe trace_by_id");
  std::printf("trace_by_id: %d param(s), %d field(s), param type %u\n", PQnparams(desc.get()),
              PQnfields(desc.get()), PQparamtype(desc.get(), 0));

  for (int round = 0; round < 2; ++round) {
    for (const std::string& id : ids) {
      const char* v[] = {id.c_str()};
      Result r(PQexecPrepared(conn, "trace_by_id", 1, v, nullptr, nullptr, 0));
      Expect(conn, r, PGRES_TUPLES_OK, "execute trace_by_id");
      PrintRows(r.get(), "trace_by_id round " + std::to_string(round));
    }
  }
  const char* missing[] = {"no-such-trace"};
  Result none(PQexecPrepared(conn, "trace_by_id", 1, missing, nullptr, nullptr, 0));
  Expect(conn, none, PGRES_TUPLES_OK, "execute trace_by_id (missing)");
  PrintRows(none.get(), "trace_by_id missing");

  Result prep2(PQprepare(conn, "obs_count",
                         "select type, count(*) from observations where trace_id = $1 "
                         "group by type order by type",
                         1, nullptr));
  Expect(conn, prep2, PGRES_COMMAND_OK, "prepare obs_count");
  for (const std::string& id : ids) {
    const char* v[] = {id.c_str()};
    Result r(PQexecPrepared(conn, "obs_count", 1, v, nullptr, nullptr, 0));
    Expect(conn, r, PGRES_TUPLES_OK, "execute obs_count");
    PrintRows(r.get(), "obs_count");
  }

  // The unnamed statement, replaced by each PQprepare with name "".
  for (int i = 1; i <= 3; ++i) {
    std::string sql = "select $1::int + " + std::to_string(i) + " as n";
    Result p(PQprepare(conn, "", sql.c_str(), 1, nullptr));
    Expect(conn, p, PGRES_COMMAND_OK, "prepare unnamed");
    std::string val = std::to_string(i * 10);
    const char* v[] = {val.c_str()};
    Result r(PQexecPrepared(conn, "", 1, v, nullptr, nullptr, 0));
    Expect(conn, r, PGRES_TUPLES_OK, "execute unnamed");
    PrintRows(r.get(), "unnamed " + std::to_string(i));
  }

  Result dup(PQprepare(conn, "trace_by_id", "select 1", 0, nullptr));
  std::printf("duplicate prepare: %s %s\n", PQresStatus(dup.status()), SqlState(dup.get()).c_str());
  Result gone(PQexecPrepared(conn, "never_prepared", 0, nullptr, nullptr, nullptr, 0));
  std::printf("unknown statement: %s %s\n", PQresStatus(gone.status()),
              SqlState(gone.get()).c_str());
  Result dealloc(PQexec(conn, "deallocate trace_by_id"));
  Expect(conn, dealloc, PGRES_COMMAND_OK, "deallocate");
  const char* v[] = {ids[0].c_str()};
  Result after(PQexecPrepared(conn, "trace_by_id", 1, v, nullptr, nullptr, 0));
  std::printf("after deallocate: %s %s\n", PQresStatus(after.status()),
              SqlState(after.get()).c_str());
}

uint32_t ReadU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return ntohl(v);
}

int64_t ReadI64(const char* p) {
  uint64_t hi = ReadU32(p);
  uint64_t lo = ReadU32(p + 4);
  return static_cast<int64_t>((hi << 32) | lo);
}

// Binary result format (and a binary parameter); decode by type OID.
void Binary(PGconn* conn) {
  constexpr Oid kInt4 = 23, kInt8 = 20, kText = 25, kJsonb = 3802, kBool = 16;
  uint32_t param_be = htonl(40);
  const char* values[] = {reinterpret_cast<const char*>(&param_be)};
  int lengths[] = {4};
  int formats[] = {1};
  Oid types[] = {kInt4};
  Result res(PQexecParams(conn,
                          "select 42::int4 as i4, -9007199254740993::int8 as i8, "
                          "'h\u00e9llo'::text as t, '{\"a\": [1, 2], \"b\": null}'::jsonb as j, "
                          "true as b, null::int4 as n, $1::int4 + 2 as p",
                          1, types, values, lengths, formats, 1));
  Expect(conn, res, PGRES_TUPLES_OK, "binary literals");

  std::vector<std::string> ids = TraceIds(conn, 3);
  Result rows(PQexecParams(conn,
                           "select risk::int4, (select count(*) from observations o "
                           "where o.trace_id = t.id)::int8 as obs, id, metadata->'sdk' as sdk "
                           "from traces t order by id limit 3",
                           0, nullptr, nullptr, nullptr, nullptr, 1));
  Expect(conn, rows, PGRES_TUPLES_OK, "binary trace rows");

  for (const Result* r : {&res, &rows}) {
    const PGresult* pr = r->get();
    for (int row = 0; row < PQntuples(pr); ++row) {
      std::string line = "  ";
      for (int c = 0; c < PQnfields(pr); ++c) {
        if (PQfformat(pr, c) != 1) {
          throw Failure("column " + std::to_string(c) + " not in binary format");
        }
        line += std::string(c ? " " : "") + PQfname(pr, c) + "=";
        if (PQgetisnull(pr, row, c)) {
          line += "NULL";
          continue;
        }
        const char* v = PQgetvalue(pr, row, c);
        int len = PQgetlength(pr, row, c);
        Oid type = PQftype(pr, c);
        if (type == kInt4 && len == 4) {
          line += std::to_string(static_cast<int32_t>(ReadU32(v)));
        } else if (type == kInt8 && len == 8) {
          line += std::to_string(ReadI64(v));
        } else if (type == kText) {
          line += std::string(v, len);
        } else if (type == kBool && len == 1) {
          line += v[0] ? "true" : "false";
        } else if (type == kJsonb && len >= 1) {
          if (v[0] != 1) {
            throw Failure("unknown jsonb binary version " + std::to_string(v[0]));
          }
          line += "jsonb:" + std::string(v + 1, len - 1);
        } else {
          throw Failure("unexpected type " + std::to_string(type) + " / length " +
                        std::to_string(len));
        }
      }
      std::printf("%s\n", line.c_str());
    }
  }
}

// Waits for the connection's socket to become readable, up to `ms`.
void PollReadable(PGconn* conn, int ms) {
  pollfd pfd{PQsocket(conn), POLLIN, 0};
  ::poll(&pfd, 1, ms);
}

void Cancel(PGconn* conn) {
  auto start = Clock::now();
  if (!PQsendQuery(conn, "select pg_sleep(30)")) {
    Fail("send pg_sleep", conn);
  }
  // Let the query reach the server and start sleeping (~200 ms), watching for an early
  // (error) result instead of sleeping blindly.
  while (Clock::now() - start < std::chrono::milliseconds(200)) {
    PollReadable(conn, 20);
    if (!PQconsumeInput(conn)) {
      Fail("consume input", conn);
    }
    if (!PQisBusy(conn)) {
      Result early(PQgetResult(conn));
      Fail("pg_sleep finished before cancel", conn, early.get());
    }
  }
  PGcancel* cancel = PQgetCancel(conn);
  if (cancel == nullptr) {
    Fail("PQgetCancel", conn);
  }
  char errbuf[256] = {0};
  int ok = PQcancel(cancel, errbuf, sizeof errbuf);
  PQfreeCancel(cancel);
  if (!ok) {
    throw Failure(std::string("PQcancel: ") + errbuf);
  }
  auto sent = Clock::now();
  std::string state;
  bool got = false;
  while (PGresult* raw = PQgetResult(conn)) {
    Result r(raw);
    if (!got) {
      state = SqlState(r.get());
      got = true;
    }
  }
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent);
  std::fprintf(stderr, "cancel took effect after %lld ms\n",
               static_cast<long long>(waited.count()));
  if (state != "57014") {
    throw Failure("expected SQLSTATE 57014 after cancel, got '" + state + "'");
  }
  if (waited > std::chrono::seconds(10)) {
    throw Failure("cancel took " + std::to_string(waited.count()) + " ms");
  }
  std::printf("cancel: %s\n", state.c_str());
  Result again(PQexec(conn, "select 'usable after cancel'"));
  Expect(conn, again, PGRES_TUPLES_OK, "query after cancel");
  PrintRows(again.get(), "after cancel");
}

// Pipeline mode: several queries in flight, one failing (aborts the rest up to the sync).
void Pipeline(PGconn* conn) {
  std::vector<std::string> ids = TraceIds(conn, 2);
  if (!PQenterPipelineMode(conn)) {
    Fail("enter pipeline mode", conn);
  }
  auto send = [&](const char* sql, std::vector<const char*> params) {
    if (!PQsendQueryParams(conn, sql, static_cast<int>(params.size()), nullptr, params.data(),
                           nullptr, nullptr, 0)) {
      Fail(std::string("send ") + sql, conn);
    }
  };
  send("select 1 as one", {});
  send("select count(*) as traces from traces", {});
  send("select id, risk from traces where id = $1", {ids[0].c_str()});
  if (!PQsendPrepare(conn, "pipe_stmt", "select name from traces where id = $1", 1, nullptr)) {
    Fail("send prepare", conn);
  }
  const char* second[] = {ids[1].c_str()};
  if (!PQsendQueryPrepared(conn, "pipe_stmt", 1, second, nullptr, nullptr, 0)) {
    Fail("send prepared", conn);
  }
  if (!PQpipelineSync(conn)) {
    Fail("sync 1", conn);
  }
  send("select 1 / 0", {});
  send("select 'skipped after error'", {});
  if (!PQpipelineSync(conn)) {
    Fail("sync 2", conn);
  }
  send("select 'after second sync' as recovered", {});
  if (!PQpipelineSync(conn)) {
    Fail("sync 3", conn);
  }

  int syncs = 0;
  int index = 0;
  int nulls = 0;
  while (syncs < 3) {
    PGresult* raw = PQgetResult(conn);
    if (raw == nullptr) {
      // One NULL ends each query's results; two in a row means nothing more is coming.
      if (++nulls > 1) {
        Fail("pipeline ended after " + std::to_string(syncs) + " sync(s)", conn);
      }
      continue;
    }
    nulls = 0;
    Result r(raw);
    ExecStatusType st = r.status();
    std::string label = "result " + std::to_string(index++) + " " + PQresStatus(st);
    if (st == PGRES_PIPELINE_SYNC) {
      ++syncs;
      std::printf("%s\n", label.c_str());
    } else if (st == PGRES_TUPLES_OK) {
      PrintRows(r.get(), label);
    } else if (st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED) {
      std::printf("%s %s\n", label.c_str(), SqlState(r.get()).c_str());
    } else {
      std::printf("%s\n", label.c_str());
    }
  }
  if (!PQexitPipelineMode(conn)) {
    Fail("exit pipeline mode", conn);
  }
}

void CopyOut(PGconn* conn) {
  for (const char* sql :
       {"copy (select id, name, risk, tags, metadata, output->'content'->0 from traces "
        "order by id limit 20) to stdout",
        "copy (select trace_id, type, name, usage from observations order by trace_id, start_time, "
        "id limit 30) to stdout with (format csv, header)"}) {
    Result start(PQexec(conn, sql));
    Expect(conn, start, PGRES_COPY_OUT, "copy out");
    long lines = 0;
    long bytes = 0;
    char* buf = nullptr;
    int n;
    while ((n = PQgetCopyData(conn, &buf, 0)) > 0) {
      std::fwrite(buf, 1, n, stdout);
      bytes += n;
      ++lines;
      PQfreemem(buf);
    }
    if (n == -2) {
      Fail("PQgetCopyData", conn);
    }
    Result done(PQgetResult(conn));
    Expect(conn, done, PGRES_COMMAND_OK, "copy completion");
    std::printf("copy: %ld line(s), %ld byte(s), tag %s\n", lines, bytes, PQcmdStatus(done.get()));
    while (PGresult* extra = PQgetResult(conn)) {
      PQclear(extra);
    }
  }
}

// --- statement gate modes (tests/test_gate.py): argument-taking, through a grant ---------

std::string ErrorLine(const PGresult* res) {
  const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  return std::string(PQresStatus(PQresultStatus(res))) + " " + SqlState(res) + " " +
         (primary != nullptr ? primary : "");
}

// Prints a result: rows for TUPLES_OK, otherwise status, SQLSTATE and primary message (and
// how many rows came with it, which must be 0).
void PrintResult(const PGresult* res, const std::string& label) {
  if (PQresultStatus(res) == PGRES_TUPLES_OK) {
    PrintRows(res, label);
  } else {
    std::printf("%s: %s (%d row(s))\n", label.c_str(), ErrorLine(res).c_str(), PQntuples(res));
  }
}

// gate-params <trace> <other>: a prepared statement pinned by $1, executed with the granted
// trace, another trace, and the granted one again; then the same with PQexecParams (the
// unnamed statement), a statement the gate refuses at Parse, and SQL EXECUTE of the
// prepared statement with another trace.
void GateParams(PGconn* conn, const std::vector<std::string>& args) {
  const std::string& trace = args.at(0);
  const std::string& other = args.at(1);
  Result prep(PQprepare(conn, "by_id", "SELECT id FROM traces WHERE id = $1", 1, nullptr));
  std::printf("prepare by_id: %s\n", PQresStatus(prep.status()));
  const std::vector<std::pair<std::string, std::string>> runs = {
      {"granted", trace}, {"other", other}, {"granted again", trace}};
  for (const auto& [label, id] : runs) {
    const char* v[] = {id.c_str()};
    Result r(PQexecPrepared(conn, "by_id", 1, v, nullptr, nullptr, 0));
    PrintResult(r.get(), "execute by_id " + label);
  }
  for (const auto& [label, id] : runs) {
    const char* v[] = {id.c_str()};
    Result r(PQexecParams(conn, "SELECT id, name FROM traces WHERE id = $1", 1, nullptr, v, nullptr,
                          nullptr, 0));
    PrintResult(r.get(), "exec-params " + label);
  }
  Result blocked(PQprepare(conn, "all_ids", "SELECT id FROM traces", 0, nullptr));
  PrintResult(blocked.get(), "prepare all_ids");
  Result gone(PQexecPrepared(conn, "all_ids", 0, nullptr, nullptr, nullptr, 0));
  PrintResult(gone.get(), "execute all_ids");
  // The protocol-level statement is visible to SQL EXECUTE: the gate must not let a simple
  // Query bind it to another trace.
  const std::string execute_other = "EXECUTE by_id('" + other + "')";
  Result sql_execute(PQexec(conn, execute_other.c_str()));
  PrintResult(sql_execute.get(), "sql EXECUTE by_id other");
  const char* v[] = {trace.c_str()};
  Result last(PQexecPrepared(conn, "by_id", 1, v, nullptr, nullptr, 0));
  PrintResult(last.get(), "execute by_id at the end");
}

// Reads pipeline results until `syncs` PGRES_PIPELINE_SYNC results arrived, printing each.
void DrainPipeline(PGconn* conn, int syncs, const std::string& batch) {
  int seen = 0;
  int index = 0;
  int nulls = 0;
  while (seen < syncs) {
    PGresult* raw = PQgetResult(conn);
    if (raw == nullptr) {
      if (++nulls > 1) {
        Fail(batch + ": pipeline ended after " + std::to_string(seen) + " sync(s)", conn);
      }
      continue;
    }
    nulls = 0;
    Result r(raw);
    const std::string label = batch + " result " + std::to_string(index++);
    if (r.status() == PGRES_PIPELINE_SYNC) {
      ++seen;
      std::printf("%s: %s\n", label.c_str(), PQresStatus(r.status()));
    } else {
      PrintResult(r.get(), label);
    }
  }
}

// gate-pipeline <trace> <other>: pipelined batches whose middle query the gate refuses.
//   batch one-sync: granted, refused at Parse (SELECT id FROM traces), granted; one Sync.
//     Expected: rows, 42501, PIPELINE_ABORTED (as PostgreSQL skips to Sync after an error).
//   batch per-sync: granted, refused at Bind (other trace), granted; a Sync after each.
//     Expected: rows, 42501, rows.
void GatePipeline(PGconn* conn, const std::vector<std::string>& args) {
  const std::string& trace = args.at(0);
  const std::string& other = args.at(1);
  const char* pinned = "SELECT id FROM traces WHERE id = $1";
  if (!PQenterPipelineMode(conn)) {
    Fail("enter pipeline mode", conn);
  }
  auto send = [&](const char* sql, std::vector<const char*> params) {
    if (!PQsendQueryParams(conn, sql, static_cast<int>(params.size()), nullptr, params.data(),
                           nullptr, nullptr, 0)) {
      Fail(std::string("send ") + sql, conn);
    }
  };
  auto sync = [&] {
    if (!PQpipelineSync(conn)) {
      Fail("sync", conn);
    }
  };
  send(pinned, {trace.c_str()});
  send("SELECT id FROM traces", {});
  send(pinned, {trace.c_str()});
  sync();
  DrainPipeline(conn, 1, "one-sync");

  send(pinned, {trace.c_str()});
  sync();
  send(pinned, {other.c_str()});
  sync();
  send(pinned, {trace.c_str()});
  sync();
  DrainPipeline(conn, 3, "per-sync");
  if (!PQexitPipelineMode(conn)) {
    Fail("exit pipeline mode", conn);
  }
  Result after(PQexec(conn, "select 'usable after pipeline' as status"));
  PrintResult(after.get(), "after pipeline");
}

// binary-query <sql>: runs `sql` with PQexecParams asking for every column in binary format
// and prints each value as "<column>=<hex bytes>" (NULL as "<column>=NULL"), one row per line;
// or the error line.
void BinaryQuery(PGconn* conn, const std::vector<std::string>& args) {
  Result r(PQexecParams(conn, args.at(0).c_str(), 0, nullptr, nullptr, nullptr, nullptr, 1));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
    std::printf("%s\n", ErrorLine(r.get()).c_str());
    return;
  }
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    for (int col = 0; col < PQnfields(r.get()); ++col) {
      std::printf("%s%s=", col == 0 ? "" : " ", PQfname(r.get(), col));
      if (PQgetisnull(r.get(), row, col)) {
        std::printf("NULL");
        continue;
      }
      const auto* value = reinterpret_cast<const unsigned char*>(PQgetvalue(r.get(), row, col));
      for (int i = 0; i < PQgetlength(r.get(), row, col); ++i) {
        std::printf("%02x", value[i]);
      }
    }
    std::printf("\n");
  }
}

// answer-loop <trace> <prefix> <count>: fetches the trace `count` times (0: until the
// connection ends), each time with a new marker "<prefix>-<n>" as a bound parameter that comes
// back as a column, and prints "answered <marker>" (flushed) for every answer it received in
// full; then "ended: <reason>" on an error. The crash test counts these lines against the log.
void AnswerLoop(PGconn* conn, const std::vector<std::string>& args) {
  const int count = std::stoi(args.at(2));
  for (int n = 0; count == 0 || n < count; ++n) {
    const std::string marker = args.at(1) + "-" + std::to_string(n);
    const char* params[] = {marker.c_str(), args.at(0).c_str()};
    Result r(PQexecParams(conn, "SELECT id, $1::text AS marker FROM traces WHERE id = $2", 2,
                          nullptr, params, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 1 ||
        marker != PQgetvalue(r.get(), 0, 1)) {
      std::string why = PQerrorMessage(conn);
      while (!why.empty() && why.back() == '\n') {
        why.pop_back();
      }
      std::printf("ended: %s | %s\n", ErrorLine(r.get()).c_str(), why.c_str());
      std::fflush(stdout);
      return;
    }
    std::printf("answered %s\n", marker.c_str());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::map<std::string, std::function<void(PGconn*)>> commands = {
      {"extended", Extended}, {"prepared", Prepared}, {"binary", Binary},
      {"cancel", Cancel},     {"pipeline", Pipeline}, {"copy-out", CopyOut},
  };
  // Modes that take arguments: name -> (function, number of arguments).
  const std::map<std::string,
                 std::pair<std::function<void(PGconn*, const std::vector<std::string>&)>, int>>
      with_args = {
          {"gate-params", {GateParams, 2}},
          {"gate-pipeline", {GatePipeline, 2}},
          {"binary-query", {BinaryQuery, 1}},
          {"answer-loop", {AnswerLoop, 3}},
      };
  const bool plain = argc == 3 && commands.count(argv[2]) != 0;
  const bool has_args =
      argc >= 3 && with_args.count(argv[2]) != 0 && argc == 3 + with_args.at(argv[2]).second;
  if (!plain && !has_args) {
    std::fprintf(stderr,
                 "usage: %s <conninfo> <extended|prepared|binary|cancel|pipeline|copy-out>\n"
                 "       %s <conninfo> <gate-params|gate-pipeline> <trace> <other-trace>\n"
                 "       %s <conninfo> binary-query <sql>\n"
                 "       %s <conninfo> answer-loop <trace> <marker-prefix> <count>\n",
                 argv[0], argv[0], argv[0], argv[0]);
    return 2;
  }
  PGconn* conn = PQconnectdb(argv[1]);
  if (PQstatus(conn) != CONNECTION_OK) {
    std::fprintf(stderr, "connect failed: %s", PQerrorMessage(conn));
    PQfinish(conn);
    return 1;
  }
  int rc = 0;
  try {
    if (plain) {
      commands.at(argv[2])(conn);
    } else {
      std::vector<std::string> args(argv + 3, argv + argc);
      with_args.at(argv[2]).first(conn, args);
    }
  } catch (const Failure& e) {
    std::fprintf(stderr, "%s: %s\n", argv[2], e.what());
    rc = 1;
  }
  std::fflush(stdout);
  PQfinish(conn);
  return rc;
}
