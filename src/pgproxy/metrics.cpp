#include "pgproxy/metrics.h"

namespace tracegate::pgproxy {

namespace {

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& registry,
                                                       const std::string& name,
                                                       const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

}  // namespace

ProxyMetrics::ProxyMetrics(prometheus::Registry& registry)
    : sessions_total_(CounterFamily(registry, "tracegate_sessions_total",
                                    "Client connections accepted on a Postgres listener")),
      sessions_authenticated_(CounterFamily(registry, "tracegate_sessions_authenticated_total",
                                            "Sessions that authenticated and reached a backend")),
      sessions_refused_(CounterFamily(registry, "tracegate_sessions_refused_total",
                                      "Connections refused with 53300 (max_sessions, or "
                                      "limits.max_unauthenticated)")),
      preauth_refused_(CounterFamily(registry, "tracegate_sessions_refused_unauthenticated_total",
                                     "Connections refused because limits.max_unauthenticated "
                                     "clients were still authenticating")),
      unforwarded_frames_(CounterFamily(registry, "tracegate_unforwarded_frames_total",
                                        "Client frames of grant sessions the gate dropped or "
                                        "replaced (recorded as a summary, not their bytes)")),
      sessions_active_(prometheus::BuildGauge()
                           .Name("tracegate_sessions_active")
                           .Help("Sessions currently open")
                           .Register(registry)),
      auth_failures_(CounterFamily(registry, "tracegate_auth_failures_total",
                                   "Client authentications refused")),
      protocol_errors_(CounterFamily(registry, "tracegate_protocol_errors_total",
                                     "Sessions ended for a protocol violation (08P01)")),
      backend_errors_(CounterFamily(registry, "tracegate_backend_errors_total",
                                    "Backend connections that failed or were lost")),
      bytes_(CounterFamily(registry, "tracegate_bytes_total", "Bytes relayed, by direction")),
      backend_connects_(CounterFamily(registry, "tracegate_backend_connects_total",
                                      "New backend connections opened")),
      pool_reuses_(CounterFamily(registry, "tracegate_pool_reuses_total",
                                 "Sessions served by an already-open pooled backend")),
      cancels_(CounterFamily(registry, "tracegate_cancel_requests_total",
                             "Cancel requests forwarded to a backend")),
      statement_seconds_(prometheus::BuildHistogram()
                             .Name("tracegate_statement_duration_seconds")
                             .Help("Time from a client's Query or Sync to the backend's "
                                   "ReadyForQuery")
                             .Register(registry)),
      statements_blocked_(CounterFamily(
          registry, "tracegate_statements_blocked_total",
          "Statements of grant sessions refused by the statement gate or ended by a cap")),
      gate_violations_(CounterFamily(registry, "tracegate_gate_violations_total",
                                     "Grant sessions ended for a result row of another trace")),
      masking_errors_(CounterFamily(registry, "tracegate_masking_errors_total",
                                    "Statements ended because masking could not read a value")),
      masked_values_(CounterFamily(registry, "tracegate_masked_values_total",
                                   "Values masked in responses, by entity")) {}

void ConnectionMetrics::AddMasked(const std::string& entity, double n) const {
  masked_values->Add({{"connection", connection}, {"entity", entity}}).Increment(n);
}

ConnectionMetrics ProxyMetrics::ForConnection(const std::string& connection) {
  const std::map<std::string, std::string> labels{{"connection", connection}};
  auto with = [&](const char* key, const char* value) {
    auto l = labels;
    l.emplace(key, value);
    return l;
  };
  auto with2 = [&](const char* key1, const char* value1, const char* key2, const char* value2) {
    auto l = with(key1, value1);
    l.emplace(key2, value2);
    return l;
  };
  static const prometheus::Histogram::BucketBoundaries kBuckets{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
  return ConnectionMetrics{
      .sessions_total = &sessions_total_.Add(labels),
      .sessions_authenticated = &sessions_authenticated_.Add(labels),
      .sessions_refused = &sessions_refused_.Add(labels),
      .preauth_refused = &preauth_refused_.Add(labels),
      .sessions_active = &sessions_active_.Add(labels),
      .auth_failures_password =
          &auth_failures_.Add(with2("path", "postgres", "reason", "invalid_password")),
      .auth_failures_authorization =
          &auth_failures_.Add(with2("path", "postgres", "reason", "invalid_authorization")),
      .protocol_errors = &protocol_errors_.Add(labels),
      .backend_errors = &backend_errors_.Add(labels),
      .bytes_from_client = &bytes_.Add(with("direction", "from_client")),
      .bytes_to_client = &bytes_.Add(with("direction", "to_client")),
      .backend_connects = &backend_connects_.Add(labels),
      .pool_reuses = &pool_reuses_.Add(labels),
      .cancels = &cancels_.Add(labels),
      .statement_seconds = &statement_seconds_.Add(labels, kBuckets),
      .statements_blocked = &statements_blocked_.Add(labels),
      .gate_violations = &gate_violations_.Add(labels),
      .masking_errors = &masking_errors_.Add(labels),
      .unforwarded_frames = &unforwarded_frames_.Add(labels),
      .masked_values = &masked_values_,
      .connection = connection,
  };
}

}  // namespace tracegate::pgproxy
