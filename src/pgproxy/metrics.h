#pragma once
// The proxy's metrics, declared in one table and exported on the admin /metrics page.
// One ConnectionMetrics per configured connection holds the labelled children, so the hot
// path increments a cached reference and never looks anything up.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

namespace tracegate::pgproxy {

struct ConnectionMetrics {
  prometheus::Counter* sessions_total;          // sessions accepted (after TCP accept)
  prometheus::Counter* sessions_authenticated;  // sessions that reached the relay
  prometheus::Counter* sessions_refused;        // over a limit, refused with 53300
  prometheus::Counter* preauth_refused;         // of those: over limits.max_unauthenticated
  prometheus::Gauge* sessions_active;
  // tracegate_auth_failures_total{path="postgres",reason,connection}: the labels the API's
  // series carry too (path="api", connection="").
  prometheus::Counter* auth_failures_password;       // 28P01: wrong password or credential
  prometheus::Counter* auth_failures_authorization;  // 28000: a grant or user not usable
  prometheus::Counter* protocol_errors;              // 08P01 sent to a client
  prometheus::Counter* backend_errors;               // backend unreachable / lost
  prometheus::Counter* bytes_from_client;
  prometheus::Counter* bytes_to_client;
  prometheus::Counter* backend_connects;     // new backend connections opened
  prometheus::Counter* pool_reuses;          // sessions served by a pooled backend
  prometheus::Counter* cancels;              // cancel requests forwarded
  prometheus::Histogram* statement_seconds;  // Query/Sync → ReadyForQuery
  prometheus::Counter* statements_blocked;   // refused by the statement gate, or capped
  prometheus::Counter* gate_violations;      // rows of another trace: the session ended
  prometheus::Counter* masking_errors;       // values masking could not read: statement ended
  prometheus::Counter* unforwarded_frames;   // client frames the gate dropped or replaced
  // Masked values by entity: one child per (connection, entity), added as entities appear.
  void AddMasked(const std::string& entity, double n) const;
  prometheus::Family<prometheus::Counter>* masked_values;
  std::string connection;
};

class ProxyMetrics {
 public:
  explicit ProxyMetrics(prometheus::Registry& registry);
  // Labelled children for one connection; the returned object lives as long as this.
  ConnectionMetrics ForConnection(const std::string& connection);

 private:
  prometheus::Family<prometheus::Counter>& sessions_total_;
  prometheus::Family<prometheus::Counter>& sessions_authenticated_;
  prometheus::Family<prometheus::Counter>& sessions_refused_;
  prometheus::Family<prometheus::Counter>& preauth_refused_;
  prometheus::Family<prometheus::Counter>& unforwarded_frames_;
  prometheus::Family<prometheus::Gauge>& sessions_active_;
  prometheus::Family<prometheus::Counter>& auth_failures_;
  prometheus::Family<prometheus::Counter>& protocol_errors_;
  prometheus::Family<prometheus::Counter>& backend_errors_;
  prometheus::Family<prometheus::Counter>& bytes_;
  prometheus::Family<prometheus::Counter>& backend_connects_;
  prometheus::Family<prometheus::Counter>& pool_reuses_;
  prometheus::Family<prometheus::Counter>& cancels_;
  prometheus::Family<prometheus::Histogram>& statement_seconds_;
  prometheus::Family<prometheus::Counter>& statements_blocked_;
  prometheus::Family<prometheus::Counter>& gate_violations_;
  prometheus::Family<prometheus::Counter>& masking_errors_;
  prometheus::Family<prometheus::Counter>& masked_values_;
};

}  // namespace tracegate::pgproxy
