#pragma once
// Webhook delivery for approval notifications.
//
// The approvals module publishes an Event when a request starts waiting for approvers
// ("requested") and when it is settled ("decided"). Publish() is called from the data path and
// from API handlers, so it never waits on the network: it puts one delivery into the queue of
// each subscribed hook and returns (it takes a mutex per hook that is never held across I/O).
//
// Each hook has its own bounded queue (config `queue_size`, retries included) and its own
// delivery thread, so a hook that hangs, refuses, or asks to wait delays only its own
// deliveries. A full queue drops its oldest delivery (the one published first) to make room:
// counted as `dropped`, and a warn line at most once a second per hook says how many.
//
// A hook's thread POSTs its deliveries one at a time with libcurl:
//   Content-Type: application/json, User-Agent: tracegate,
//   X-Tracegate-Event: approval.<type>,
//   X-Tracegate-Delivery: 16 random hex digits, the same on every attempt (receivers dedupe on it),
//   X-Tracegate-Signature: Signature(secret, now, body), when the hook has a secret (any format).
// Bodies: generic {"event": "approval.<type>", "id": <delivery id>, "sent_at": <RFC 3339 UTC,
// when the event was published; the same on every attempt>, "data": payload}; slack {"text":
// text}. Redirects are not followed; the response body is read (at most 64 KiB) and discarded.
//
// A 2xx response is delivered. Connection errors, timeouts, 429 and 5xx are retried after
// initial_backoff * 2^(attempt-1) (1 s, 2 s, 4 s, ... capped at 60 s), or after the response's
// Retry-After (seconds or an HTTP date, on 429 and 503) when that is longer, capped at 10 min,
// until the hook's max_attempts; any other status fails at once. Deliveries are ordered by their
// next attempt time, so one waiting for a retry does not hold up the others. Failures are logged
// at warn with the hook name, the status or curl error and the attempt; never the URL (a Slack
// URL is itself a credential), the body or the secret.
//
// Not durable: deliveries still queued when the process stops are lost (logged and counted).

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/config.h"

namespace tracegate::notify {

struct Event {
  std::string type;        // "requested" | "decided" (matched against Webhook::events)
  nlohmann::json payload;  // the event's object: "data" in the generic body
  std::string text;        // one human line for chat formats (Slack: {"text": text})
};

// Counted per delivery (one event to three hooks is three deliveries).
struct WebhookStats {
  uint64_t delivered = 0;  // answered 2xx
  uint64_t failed = 0;     // refused (3xx, 4xx but 429; a malformed URL) or out of attempts
  uint64_t dropped = 0;    // pushed out of a full queue, or cut off / still queued at shutdown
  uint64_t retries = 0;    // attempts after the first
};

// One hook's counts, and how many of its deliveries wait now (in flight included).
struct HookStats {
  std::string name;
  WebhookStats stats;
  size_t queued = 0;
};

class Webhooks {
 public:
  // Starts one delivery thread per hook. Each hook's queue holds its `queue_size` deliveries
  // (including those waiting for a retry), or `queue_limit` for every hook when that is not 0
  // (tests). `initial_backoff` is the first retry's delay (tests shorten it).
  explicit Webhooks(std::vector<config::Webhook> hooks, size_t queue_limit = 0,
                    std::chrono::milliseconds initial_backoff = std::chrono::seconds(1));
  // Stops: lets each hook's delivery in flight (and any others already due) run for at most
  // ~2 s, all hooks at once, then drops the rest (logged, counted).
  ~Webhooks();

  Webhooks(const Webhooks&) = delete;
  Webhooks& operator=(const Webhooks&) = delete;

  // Never blocks on I/O and never fails the caller: enqueues one delivery per hook subscribed
  // to event.type. Returns false when a full queue had to drop an older delivery for it.
  bool Publish(Event event);

  // All hooks together, and per hook (in configuration order).
  WebhookStats stats() const;
  std::vector<HookStats> hook_stats() const;

  // Test hook: blocks until the queue is empty and nothing is in flight, or the timeout passes.
  // Returns whether it became idle.
  bool WaitIdle(std::chrono::milliseconds timeout);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Header value for a body: "t=<unix seconds>,v1=<lowercase hex HMAC-SHA256(secret, "<t>.<body>")>".
// A receiver recomputes it over the raw body it got and rejects an old `t` (replay). Empty only
// if OpenSSL fails (the delivery is then not sent and is retried).
std::string Signature(std::string_view secret, int64_t unix_seconds, std::string_view body);

}  // namespace tracegate::notify
