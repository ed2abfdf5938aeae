// jit_cycle_client: the agent side of tracegate's just-in-time access cycle, timed.
//
//   grant  : POST /v1/grants (HTTPS, bearer token, keep-alive) -> one-time credential ->
//            PQconnectdb to the gateway (SCRAM) -> one query -> PQfinish
//   direct : PQconnectdb to a PostgreSQL DSN (directly, or through pgbouncer) -> the same
//            query -> PQfinish
//
// N threads loop one cycle each for D seconds and record every cycle's latency
// (steady_clock); grant mode also records the grant request and the connect+query part.
// One JSON object goes to stdout; errors (first few messages) to stderr. The exit status is
// 0, or 2 when more than --max-error-rate of the cycles failed (the run stops early once
// that is clear), or 1 on bad usage. Secrets never come from the command line: the token is
// read from --token-file, the direct password from PGPASSWORD (or ~/.pgpass).
//
// Used by bench/jit_cycle.sh; see bench/README.md.

#include <curl/curl.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string mode;  // grant | direct
  std::string label;
  int clients = 1;
  double seconds = 10;
  double warmup = 0;
  bool once = false;
  std::string query;
  // grant
  std::string api_url;  // https://127.0.0.1:PORT
  std::string cacert;
  std::string token_file;
  std::string connection = "traces-pg";
  std::string trace_id;
  std::string reason = "jit_cycle benchmark";
  std::string sslmode = "disable";  // for the Postgres hop; "grant" = what the API says
  // direct
  std::string dsn;
  double max_error_rate = 0.01;
};

[[noreturn]] void Usage(const std::string& msg) {
  std::cerr
      << "jit_cycle_client: " << msg << "\n"
      << "usage: jit_cycle_client --mode grant|direct --query SQL [--clients N] [--seconds D]\n"
         "         [--warmup W] [--once] [--label NAME] [--max-error-rate R]\n"
         "  grant:  --api-url https://HOST:PORT --cacert PEM --token-file FILE\n"
         "          --trace-id ID [--connection NAME] [--reason TEXT]\n"
         "          [--sslmode disable|require|verify-full|grant]\n"
         "  direct: --dsn 'host=... port=... user=... dbname=...' (password: PGPASSWORD)\n";
  std::exit(1);
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(a + " needs a value");
      return argv[++i];
    };
    auto number = [&](double min) -> double {
      std::string v = value();
      char* end = nullptr;
      double d = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || !std::isfinite(d) || d < min) {
        Usage(a + ": bad number '" + v + "'");
      }
      return d;
    };
    if (a == "--mode")
      o.mode = value();
    else if (a == "--label")
      o.label = value();
    else if (a == "--clients")
      o.clients = static_cast<int>(number(1));
    else if (a == "--seconds")
      o.seconds = number(0.001);
    else if (a == "--warmup")
      o.warmup = number(0);
    else if (a == "--once")
      o.once = true;
    else if (a == "--query")
      o.query = value();
    else if (a == "--api-url")
      o.api_url = value();
    else if (a == "--cacert")
      o.cacert = value();
    else if (a == "--token-file")
      o.token_file = value();
    else if (a == "--connection")
      o.connection = value();
    else if (a == "--trace-id")
      o.trace_id = value();
    else if (a == "--reason")
      o.reason = value();
    else if (a == "--sslmode")
      o.sslmode = value();
    else if (a == "--dsn")
      o.dsn = value();
    else if (a == "--max-error-rate")
      o.max_error_rate = number(0);
    else if (a == "--token")
      Usage("--token: pass the token in a file (--token-file)");
    else
      Usage("unknown argument " + a);
  }
  if (o.mode != "grant" && o.mode != "direct") Usage("--mode must be grant or direct");
  if (o.query.empty()) Usage("--query is required");
  if (o.mode == "grant" && (o.api_url.empty() || o.token_file.empty() || o.trace_id.empty())) {
    Usage("grant mode needs --api-url, --token-file and --trace-id");
  }
  if (o.mode == "direct" && o.dsn.empty()) Usage("direct mode needs --dsn");
  if (o.label.empty()) o.label = o.mode;
  return o;
}

std::string Trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t b = 0;
  while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  return s.substr(b);
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Shared between the threads.
struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<bool> aborted{false};
  std::atomic<uint64_t> done{0};    // measured cycles, ok or not
  std::atomic<uint64_t> errors{0};  // measured cycles that failed
  std::atomic<uint64_t> warmup_errors{0};
  std::mutex mu;
  std::vector<std::string> error_samples;  // first few, for the report
  double max_error_rate = 0.01;

  void Error(const std::string& what, bool measured) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (error_samples.size() < 5) {
        error_samples.push_back(measured ? what : "(warm-up) " + what);
        std::cerr << "jit_cycle_client: error: " << error_samples.back() << "\n";
      }
    }
    if (!measured) {
      warmup_errors.fetch_add(1);
      return;
    }
    uint64_t e = errors.fetch_add(1) + 1;
    // Stop early once the error rate is clearly above the limit (not on the first fluke).
    uint64_t n = done.load();
    if (e >= 20 &&
        static_cast<double>(e) > max_error_rate * static_cast<double>(std::max<uint64_t>(n, 1))) {
      aborted = true;
      stop = true;
    }
  }
};

struct Sample {
  double total_ms;
  double grant_ms;  // grant mode only
  double cq_ms;     // connect + query (+ close)
};

// One PostgreSQL connection, one query (one row expected), close. Empty string = ok.
std::string ConnectQueryClose(const char* const* keys, const char* const* values,
                              const std::string& query) {
  PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  std::string err;
  if (conn == nullptr) return "PQconnectdbParams returned null";
  if (PQstatus(conn) != CONNECTION_OK) {
    err = std::string("connect: ") + Trim(PQerrorMessage(conn));
  } else {
    PGresult* res = PQexec(conn, query.c_str());
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
      err = std::string("query: ") + PQresStatus(PQresultStatus(res)) + ": " +
            Trim(PQresultErrorMessage(res));
    } else if (PQntuples(res) != 1) {
      err = "query returned " + std::to_string(PQntuples(res)) + " rows, expected 1";
    }
    PQclear(res);
  }
  PQfinish(conn);
  return err;
}

size_t WriteToString(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

class Worker {
 public:
  Worker(const Options& o, Shared& shared, const std::string& token) : o_(o), shared_(shared) {
    if (o_.mode == "grant") {
      curl_ = curl_easy_init();
      url_ = o_.api_url + "/v1/grants";
      body_ = json{{"connection", o_.connection}, {"trace_id", o_.trace_id}, {"reason", o_.reason}}
                  .dump();
      auth_header_ = "Authorization: Bearer " + token;
      headers_ = curl_slist_append(headers_, auth_header_.c_str());
      headers_ = curl_slist_append(headers_, "Content-Type: application/json");
      headers_ = curl_slist_append(headers_, "Expect:");
      curl_easy_setopt(curl_, CURLOPT_URL, url_.c_str());
      curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body_.c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body_.size()));
      curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, WriteToString);
      curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &response_);
      curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(curl_, CURLOPT_TCP_NODELAY, 1L);
      curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, 10000L);
      curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYPEER, 1L);
      curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYHOST, 2L);
      if (!o_.cacert.empty()) curl_easy_setopt(curl_, CURLOPT_CAINFO, o_.cacert.c_str());
      curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, curl_error_);
    }
  }
  ~Worker() {
    if (curl_ != nullptr) curl_easy_cleanup(curl_);
    curl_slist_free_all(headers_);
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs cycles until `until` (or stop); measured cycles are recorded.
  void Run(Clock::time_point until, bool measured) {
    while (!shared_.stop.load(std::memory_order_relaxed) && Clock::now() < until) {
      Sample s{};
      std::string err = o_.mode == "grant" ? GrantCycle(s) : DirectCycle(s);
      if (!measured) {
        if (!err.empty()) shared_.Error(err, false);
        continue;
      }
      shared_.done.fetch_add(1, std::memory_order_relaxed);
      if (err.empty()) {
        samples.push_back(s);
      } else {
        shared_.Error(err, true);
      }
    }
  }

  std::string Once() {
    Sample s{};
    return o_.mode == "grant" ? GrantCycle(s) : DirectCycle(s);
  }

  std::vector<Sample> samples;

 private:
  std::string DirectCycle(Sample& s) {
    const char* keys[] = {"dbname", "gssencmode", "connect_timeout", nullptr};
    const char* values[] = {o_.dsn.c_str(), "disable", "10", nullptr};
    auto t0 = Clock::now();
    std::string err = ConnectQueryClose(keys, values, o_.query);
    s.total_ms = s.cq_ms = Ms(Clock::now() - t0);
    return err;
  }

  std::string GrantCycle(Sample& s) {
    auto t0 = Clock::now();
    response_.clear();
    curl_error_[0] = '\0';
    CURLcode rc = curl_easy_perform(curl_);
    if (rc != CURLE_OK) {
      return std::string("POST /v1/grants: ") + curl_easy_strerror(rc) +
             (curl_error_[0] ? std::string(": ") + curl_error_ : std::string());
    }
    long status = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    if (status != 201) {
      return "POST /v1/grants: HTTP " + std::to_string(status) + ": " + response_.substr(0, 300);
    }
    json grant = json::parse(response_, nullptr, /*allow_exceptions=*/false);
    if (grant.is_discarded() || !grant.contains("postgres") || !grant["postgres"].is_object()) {
      return "POST /v1/grants: 201 without a postgres credential: " + response_.substr(0, 300);
    }
    const json& pg = grant["postgres"];
    auto field = [&](const char* k) -> std::string {
      if (!pg.contains(k)) return {};
      const json& v = pg[k];
      return v.is_string() ? v.get<std::string>() : v.dump();
    };
    std::string host = field("host"), port = field("port"), user = field("user"),
                password = field("password"), dbname = field("dbname");
    std::string sslmode = o_.sslmode == "grant" ? field("sslmode") : o_.sslmode;
    if (host.empty() || port.empty() || user.empty() || password.empty() || dbname.empty()) {
      return "POST /v1/grants: incomplete postgres credential";
    }
    auto t1 = Clock::now();
    std::vector<const char*> keys = {"host",   "port",    "user",       "password",
                                     "dbname", "sslmode", "gssencmode", "connect_timeout"};
    std::vector<const char*> values = {
        host.c_str(),   port.c_str(),    user.c_str(), password.c_str(),
        dbname.c_str(), sslmode.c_str(), "disable",    "10"};
    if (!o_.cacert.empty()) {  // the gateway's self-signed cert is its own CA
      keys.push_back("sslrootcert");
      values.push_back(o_.cacert.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    std::string err = ConnectQueryClose(keys.data(), values.data(), o_.query);
    auto t2 = Clock::now();
    s.grant_ms = Ms(t1 - t0);
    s.cq_ms = Ms(t2 - t1);
    s.total_ms = Ms(t2 - t0);
    return err;
  }

  const Options& o_;
  Shared& shared_;
  CURL* curl_ = nullptr;
  curl_slist* headers_ = nullptr;
  std::string url_, body_, auth_header_, response_;
  char curl_error_[CURL_ERROR_SIZE] = {};
};

double Percentile(std::vector<double>& v, double q) {  // nearest rank; v sorted
  if (v.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

double Round3(double x) { return std::round(x * 1000.0) / 1000.0; }

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  std::string token;
  if (o.mode == "grant") {
    std::ifstream f(o.token_file);
    if (!f) Usage("cannot read --token-file " + o.token_file);
    std::stringstream ss;
    ss << f.rdbuf();
    token = Trim(ss.str());
    if (token.empty()) Usage("--token-file " + o.token_file + " is empty");
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    std::cerr << "jit_cycle_client: curl_global_init failed\n";
    return 1;
  }

  Shared shared;
  shared.max_error_rate = o.max_error_rate;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < o.clients; ++i) workers.push_back(std::make_unique<Worker>(o, shared, token));

  if (o.once) {  // smoke test: one cycle per client, in sequence
    int rc = 0;
    for (auto& w : workers) {
      std::string err = w->Once();
      if (!err.empty()) {
        std::cerr << "jit_cycle_client: " << o.label << ": " << err << "\n";
        rc = 2;
      }
    }
    std::cout << json{{"mode", o.mode}, {"label", o.label}, {"ok", rc == 0}}.dump() << "\n";
    curl_global_cleanup();
    return rc;
  }

  // Warm-up (not recorded), then the measured phase; both start together on every thread.
  auto warm_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(o.warmup));
  auto deadline = warm_until + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(o.seconds));
  std::atomic<int> warmed{0};
  std::atomic<bool> go{false};
  Clock::time_point measure_start{};
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    threads.emplace_back([&, wp = w.get()] {
      if (o.warmup > 0) wp->Run(warm_until, false);
      // barrier: measurement starts when every thread is done warming up
      if (warmed.fetch_add(1) + 1 == o.clients) {
        measure_start = Clock::now();
        go = true;
      }
      while (!go.load()) std::this_thread::yield();
      wp->Run(std::max(deadline, measure_start + std::chrono::duration_cast<Clock::duration>(
                                                     std::chrono::duration<double>(o.seconds))),
              true);
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - measure_start).count();

  std::vector<double> total, grant, cq;
  for (auto& w : workers) {
    for (const Sample& s : w->samples) {
      total.push_back(s.total_ms);
      grant.push_back(s.grant_ms);
      cq.push_back(s.cq_ms);
    }
  }
  std::sort(total.begin(), total.end());
  std::sort(grant.begin(), grant.end());
  std::sort(cq.begin(), cq.end());
  const uint64_t attempted = shared.done.load();
  const uint64_t ok = total.size();
  const uint64_t errors = attempted - ok;
  double mean = 0;
  for (double x : total) mean += x;
  mean = ok ? mean / static_cast<double>(ok) : 0;

  json out = {
      {"mode", o.mode},
      {"label", o.label},
      {"clients", o.clients},
      {"seconds", Round3(elapsed)},
      {"warmup_seconds", o.warmup},
      {"cycles", ok},
      {"errors", errors},
      {"warmup_errors", shared.warmup_errors.load()},
      {"error_rate",
       attempted ? Round3(static_cast<double>(errors) / static_cast<double>(attempted)) : 0.0},
      {"aborted", shared.aborted.load()},
      {"cycles_per_s", elapsed > 0 ? Round3(static_cast<double>(ok) / elapsed) : 0.0},
      {"mean_ms", Round3(mean)},
      {"p50_ms", Round3(Percentile(total, 0.50))},
      {"p90_ms", Round3(Percentile(total, 0.90))},
      {"p99_ms", Round3(Percentile(total, 0.99))},
      {"max_ms", Round3(total.empty() ? 0 : total.back())},
      {"query", o.query},
  };
  if (o.mode == "grant") {
    out["sslmode"] = o.sslmode;
    out["grant_p50_ms"] = Round3(Percentile(grant, 0.50));
    out["grant_p90_ms"] = Round3(Percentile(grant, 0.90));
    out["grant_p99_ms"] = Round3(Percentile(grant, 0.99));
    out["connect_query_p50_ms"] = Round3(Percentile(cq, 0.50));
    out["connect_query_p90_ms"] = Round3(Percentile(cq, 0.90));
    out["connect_query_p99_ms"] = Round3(Percentile(cq, 0.99));
  }
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    out["error_samples"] = shared.error_samples;
  }
  std::cout << out.dump() << "\n";
  workers.clear();
  curl_global_cleanup();

  const bool too_many = attempted == 0 || static_cast<double>(errors) >
                                              o.max_error_rate * static_cast<double>(attempted);
  if (too_many) {
    std::cerr << "jit_cycle_client: " << o.label << ": " << errors << " of " << attempted
              << " cycles failed (limit " << o.max_error_rate * 100 << "%)"
              << (shared.aborted ? "; stopped early" : "") << "\n";
    return 2;
  }
  return 0;
}
