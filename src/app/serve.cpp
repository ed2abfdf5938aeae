#include "app/serve.h"

#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <thread>

#include "admin/admin_server.h"
#include "approvals/approvals.h"
#include "audit/recorder.h"
#include "common/status.h"
#include "common/strings.h"
#include "fetch/fetcher.h"
#include "grants/grants.h"
#include "httpapi/api.h"
#include "httpapi/api_server.h"
#include "httpproxy/proxy.h"
#include "identity/http_fetch.h"
#include "identity/token_validator.h"
#include "notify/webhooks.h"
#include "pgproxy/gateway.h"
#include "store/sqlite_store.h"

namespace tracegate::app {

namespace asio = boost::asio;

namespace {

// Takes SIGINT and SIGTERM from the moment it exists, so a signal during start-up is
// not lost (nor fatal).
class ShutdownSignal {
 public:
  ShutdownSignal() : signals_(context_, SIGINT, SIGTERM) {}
  // Blocks until one arrives; returns the signal number.
  int Wait() {
    int received = 0;
    signals_.async_wait([&](boost::system::error_code, int signal) { received = signal; });
    context_.run();
    return received;
  }

 private:
  asio::io_context context_;
  asio::signal_set signals_;
};

// The grants side of the gateway: state store, grant service, token validation, the API, and
// the sweeper that moves grants past their expiry to `expired`.
class AccessPlane {
 public:
  AccessPlane(std::shared_ptr<const config::Config> config, prometheus::Registry& registry)
      : config_(std::move(config)), registry_(registry) {}
  ~AccessPlane() { Stop(); }

  // Opens the state store when grants or recording need it; the grant service (with the
  // API) and the recorder (unless disabled) are usable after this.
  absl::Status Open() {
    if (!config_->api.has_value() && !config_->audit.enabled) {
      return absl::OkStatus();
    }
    absl::StatusOr<std::unique_ptr<store::SqliteStore>> opened =
        store::SqliteStore::Open(config_->state.path);
    if (!opened.ok()) {
      return absl::Status(opened.status().code(), Cat("state store ", config_->state.path, ": ",
                                                      MessageOf(opened.status())));
    }
    store_ = *std::move(opened);
    if (config_->api.has_value()) {
      grants_ = std::make_unique<grants::GrantService>(
          *store_, [] { return std::chrono::system_clock::now(); }, pgwire::SystemRandom());
    }
    if (config_->audit.enabled) {
      absl::StatusOr<std::unique_ptr<audit::Recorder>> recorder =
          audit::Recorder::Open(config_->audit, *store_);
      if (!recorder.ok()) {
        return absl::Status(recorder.status().code(), Cat("audit log ", config_->audit.dir, ": ",
                                                          MessageOf(recorder.status())));
      }
      recorder_ = *std::move(recorder);
      spdlog::info(
          "audit: recording every session to {} ({} durability)", config_->audit.dir,
          config_->audit.durability == config::AuditDurability::kStrict ? "strict" : "batched");
    } else {
      spdlog::warn("audit: recording is DISABLED (audit.enabled: false): sessions leave no record");
    }
    if (grants_) {
      if (!config_->approvals.webhooks.empty()) {
        webhooks_ = std::make_unique<notify::Webhooks>(config_->approvals.webhooks);
        auto& family = prometheus::BuildGauge()
                           .Name("tracegate_webhook_deliveries")
                           .Help(
                               "Approval webhook deliveries so far, by outcome "
                               "(delivered, failed, dropped, retries)")
                           .Register(registry_);
        for (const char* outcome : {"delivered", "failed", "dropped", "retries"}) {
          webhook_gauges_.push_back(&family.Add({{"outcome", outcome}}));
        }
        // Per hook: which one backs up (its own queue) and what its full queue dropped.
        auto& queued = prometheus::BuildGauge()
                           .Name("tracegate_webhook_queued")
                           .Help("Deliveries waiting in a webhook's queue (in flight included)")
                           .Register(registry_);
        auto& dropped = prometheus::BuildGauge()
                            .Name("tracegate_webhook_dropped")
                            .Help("Deliveries a webhook's full queue (or shutdown) dropped so far")
                            .Register(registry_);
        for (const config::Webhook& hook : config_->approvals.webhooks) {
          webhook_hook_gauges_.push_back(
              {&queued.Add({{"hook", hook.name}}), &dropped.Add({{"hook", hook.name}})});
        }
      }
      approvals_ = std::make_unique<approvals::ApprovalService>(
          config_, *store_, *grants_, recorder_.get(), webhooks_.get(),
          [] { return std::chrono::system_clock::now(); });
    }
    sweeper_ = std::thread([this] { Sweep(); });
    return absl::OkStatus();
  }

  grants::GrantService* grants() { return grants_.get(); }
  approvals::ApprovalService* approvals() { return approvals_.get(); }
  audit::Recorder* recorder() { return recorder_.get(); }

  // For /readyz: without the API there is nothing to check; with it, the state store answers
  // and every issuer's keys are loaded and not stale (otherwise every grant request fails).
  bool Ready() const {
    if (!store_) {
      return true;
    }
    if (recorder_ && !recorder_->health().ok()) {
      return false;  // sessions would be refused
    }
    if (!grants_) {
      return store_->CheckHealth().ok();
    }
    return store_->CheckHealth().ok() && validator_ && validator_->KeysUsable().ok();
  }

  // Starts token validation, the API and the expiry sweeper. `gateway` tells where clients
  // reach each connection's listener.
  absl::Status Start(const pgproxy::Gateway& gateway, httpproxy::HttpProxy& proxy) {
    for (const config::Issuer& issuer : config_->identity.issuers) {
      if (issuer.development) {
        spdlog::warn(
            "identity: issuer \"{}\" is the DEVELOPMENT issuer ({}): anyone holding its local "
            "key can mint tokens; never use it in production",
            issuer.name, issuer.issuer);
      }
    }
    validator_ = std::make_unique<identity::TokenValidator>(
        config_->identity, std::make_shared<identity::CurlFetcher>(), identity::SystemClock());
    validator_->Start();
    auto listener_address = [config = config_, &gateway, &proxy](const std::string& name) {
      for (const config::Connection& c : config->connections) {
        if (c.name != name) {
          continue;
        }
        std::optional<asio::ip::tcp::endpoint> endpoint =
            c.type == config::ConnectionType::kHttp ? proxy.endpoint(name) : gateway.endpoint(name);
        std::string host = c.advertise_host;
        if (host.empty()) {
          const bool wildcard = c.listen.host == "0.0.0.0" || c.listen.host == "::";
          host = !wildcard                           ? c.listen.host
                 : !config->api->public_host.empty() ? config->api->public_host
                                                     : std::string("127.0.0.1");
        }
        return std::pair<std::string, uint16_t>(host, endpoint ? endpoint->port() : 0);
      }
      return std::pair<std::string, uint16_t>("", 0);
    };
    service_ = std::make_unique<httpapi::ApiService>(
        config_,
        [validator = validator_.get()](std::string_view token, identity::IdpAccess access) {
          return validator->Validate(token, access);
        },
        *grants_, listener_address, [] { return std::chrono::system_clock::now(); },
        recorder_ ? store_.get() : nullptr, approvals_.get(), recorder_.get(), &registry_);
    fetcher_ = std::make_unique<fetch::TraceFetcher>(config_, *grants_, recorder_.get(),
                                                     approvals_.get(), proxy);
    server_ = std::make_unique<httpapi::ApiServer>(
        config_, *service_,
        [fetcher = fetcher_.get()](const httpapi::FetchJob& job) { return fetcher->Fetch(job); });
    TG_RETURN_IF_ERROR(server_->Start());
    spdlog::info("api: listening on {}://{}:{}", config_->api->tls ? "https" : "http",
                 server_->endpoint().address().to_string(), server_->endpoint().port());
    return absl::OkStatus();
  }

  void Stop() {
    if (server_) {
      server_->Stop();
    }
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (sweeper_.joinable()) {
      sweeper_.join();
    }
    if (validator_) {
      validator_->Stop();
    }
  }

  // After the gateway's sessions are gone: pending notifications get their last chance,
  // then the log's final checkpoint.
  void CloseRecorder() {
    approvals_.reset();
    webhooks_.reset();
    recorder_.reset();
  }

 private:
  // Once a second: grants past their expiry; once a minute: audit segments past retention.
  void Sweep() {
    std::unique_lock lock(mu_);
    for (uint64_t tick = 0;
         !wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; }); ++tick) {
      lock.unlock();
      if (webhooks_) {
        const notify::WebhookStats stats = webhooks_->stats();
        const uint64_t values[] = {stats.delivered, stats.failed, stats.dropped, stats.retries};
        for (size_t i = 0; i < webhook_gauges_.size(); ++i) {
          webhook_gauges_[i]->Set(static_cast<double>(values[i]));
        }
        const std::vector<notify::HookStats> hooks = webhooks_->hook_stats();
        for (size_t i = 0; i < hooks.size() && i < webhook_hook_gauges_.size(); ++i) {
          webhook_hook_gauges_[i].first->Set(static_cast<double>(hooks[i].queued));
          webhook_hook_gauges_[i].second->Set(static_cast<double>(hooks[i].stats.dropped));
        }
      }
      if (approvals_) {
        absl::StatusOr<size_t> expired = approvals_->ExpireDue();
        if (!expired.ok()) {
          spdlog::error("approvals: expiry sweep failed: {}", MessageOf(expired.status()));
        } else if (*expired > 0) {
          spdlog::info("approvals: {} request(s) expired undecided", *expired);
        }
      }
      if (grants_) {
        absl::StatusOr<size_t> expired = grants_->ExpireDue();
        if (!expired.ok()) {
          spdlog::error("grants: expiry sweep failed: {}", MessageOf(expired.status()));
        } else if (*expired > 0) {
          spdlog::info("grants: {} grant(s) expired", *expired);
        }
      }
      if (recorder_ && tick % 60 == 0) {
        absl::StatusOr<size_t> pruned = recorder_->Prune();
        if (!pruned.ok()) {
          spdlog::error("audit: retention pruning failed: {}", MessageOf(pruned.status()));
        } else if (*pruned > 0) {
          spdlog::info("audit: retention removed {} segment(s)", *pruned);
        }
      }
      lock.lock();
    }
  }

  std::shared_ptr<const config::Config> config_;
  prometheus::Registry& registry_;
  std::vector<prometheus::Gauge*> webhook_gauges_;  // delivered, failed, dropped, retries
  // Per hook, in configuration order: (queued, dropped).
  std::vector<std::pair<prometheus::Gauge*, prometheus::Gauge*>> webhook_hook_gauges_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<grants::GrantService> grants_;
  std::unique_ptr<audit::Recorder> recorder_;
  std::unique_ptr<notify::Webhooks> webhooks_;
  std::unique_ptr<approvals::ApprovalService> approvals_;
  std::unique_ptr<identity::TokenValidator> validator_;
  std::unique_ptr<httpapi::ApiService> service_;
  std::unique_ptr<fetch::TraceFetcher> fetcher_;
  std::unique_ptr<httpapi::ApiServer> server_;
  std::thread sweeper_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
};

}  // namespace

int Serve(std::shared_ptr<const config::Config> config) {
  std::signal(SIGPIPE, SIG_IGN);
  ShutdownSignal shutdown_signal;
  auto registry = std::make_shared<prometheus::Registry>();
  AccessPlane access(config, *registry);
  if (absl::Status opened = access.Open(); !opened.ok()) {
    spdlog::error("cannot start: {}", MessageOf(opened));
    return 1;
  }
  pgproxy::Gateway gateway(config, *registry, access.grants(), access.recorder(),
                           access.approvals());
  if (absl::Status started = gateway.Start(); !started.ok()) {
    spdlog::error("cannot start: {}", MessageOf(started));
    return 1;
  }
  httpproxy::HttpProxy http_proxy(config, *registry, access.grants(), access.recorder(),
                                  access.approvals());
  const unsigned workers =
      config->workers > 0 ? config->workers : std::max(1u, std::thread::hardware_concurrency());
  if (absl::Status started = http_proxy.Start(workers); !started.ok()) {
    spdlog::error("cannot start: {}", MessageOf(started));
    gateway.Shutdown();
    return 1;
  }
  if (config->api.has_value()) {
    if (absl::Status started = access.Start(gateway, http_proxy); !started.ok()) {
      spdlog::error("cannot start: {}", MessageOf(started));
      http_proxy.Shutdown();
      gateway.Shutdown();
      return 1;
    }
  }
  std::unique_ptr<admin::AdminServer> admin_server;
  if (config->admin.has_value()) {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(config->admin->host, ec);
    if (ec) {
      spdlog::error("admin.listen: \"{}\" is not an IP address", config->admin->host);
      gateway.Shutdown();
      return 1;
    }
    admin_server = std::make_unique<admin::AdminServer>(
        gateway.aux_executor(), registry,
        [&gateway, &access] { return gateway.accepting() && access.Ready(); });
    if (absl::Status s = admin_server->Start({address, config->admin->port}); !s.ok()) {
      spdlog::error("cannot start: {}", MessageOf(s));
      gateway.Shutdown();
      return 1;
    }
    spdlog::info("admin: listening on {}:{}", admin_server->endpoint().address().to_string(),
                 admin_server->endpoint().port());
  }
  spdlog::info("tracegate is ready");

  const int signal = shutdown_signal.Wait();
  spdlog::info("received {}: no new sessions; draining {} open session(s) for up to {} ms",
               signal == SIGINT ? "SIGINT" : "SIGTERM", gateway.active_sessions(),
               config->shutdown_grace.count());
  gateway.StopAccepting();
  http_proxy.StopAccepting();
  const auto deadline = std::chrono::steady_clock::now() + config->shutdown_grace;
  while ((gateway.active_sessions() > 0 || http_proxy.active_requests() > 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (gateway.active_sessions() > 0) {
    spdlog::info("terminating {} session(s) still open", gateway.active_sessions());
  }
  if (admin_server) {
    admin_server->Stop();
  }
  access.Stop();
  http_proxy.Shutdown();
  gateway.Shutdown();
  access.CloseRecorder();
  spdlog::info("stopped");
  return 0;
}

}  // namespace tracegate::app
