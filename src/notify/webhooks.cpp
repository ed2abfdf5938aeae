#include "notify/webhooks.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <optional>
#include <random>

#include "common/strings.h"

namespace tracegate::notify {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kMaxBackoff{60000};
constexpr milliseconds kStopGrace{2000};  // how long a stopping Webhooks lets deliveries run
constexpr size_t kMaxResponseBytes = 64 << 10;
constexpr auto kDropLogInterval = std::chrono::seconds(1);
// A receiver's Retry-After is honoured up to this; past it the delivery waits this long.
constexpr milliseconds kMaxRetryAfter{600000};

// One event on its way to one hook.
struct Delivery {
  std::shared_ptr<const Event> event;  // released once `body` is built
  std::chrono::system_clock::time_point published;
  std::string id;    // X-Tracegate-Delivery; empty until the first attempt
  std::string name;  // "approval.<type>"
  std::string body;
  uint32_t attempts = 0;  // made so far
  Clock::time_point due;  // next attempt
  uint64_t seq = 0;       // FIFO among deliveries due at the same instant
  uint64_t order = 0;     // publish order (kept across retries): a full queue drops the lowest
};

// Heap order: the earliest due delivery on top.
struct DueLater {
  bool operator()(const Delivery& a, const Delivery& b) const {
    return a.due != b.due ? a.due > b.due : a.seq > b.seq;
  }
};

enum class Verdict { kDelivered, kRetry, kFailed, kAborted };

struct Outcome {
  Verdict verdict;
  std::string reason;                       // status or curl error; never the URL, body or secret
  std::optional<milliseconds> retry_after;  // a 429 or 503's Retry-After, capped
};

std::string Hex(const unsigned char* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

std::string RandomDeliveryId() {
  unsigned char bytes[8];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    // Ids only need to be unique enough for receivers to dedupe; they protect nothing.
    std::random_device device;
    for (unsigned char& b : bytes) {
      b = static_cast<unsigned char>(device());
    }
  }
  return Hex(bytes, sizeof bytes);
}

std::string Rfc3339(std::chrono::system_clock::time_point at) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(at);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[32];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(buf, n);
}

// Slack reads `<…>` in message text as a mention (`<!channel>`, `<@U123>`) or a link
// (`<https://…|label>`), and `&` as the start of an entity. Reasons, comments and trace ids
// are the caller's, so its three control characters are escaped as Slack asks: a reason of
// `<!channel> <https://evil.example|approve here>` arrives as that text, not a ping and a
// disguised link.
std::string SlackText(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string BuildBody(const config::Webhook& hook, const Delivery& d) {
  nlohmann::json body = nlohmann::json::object();
  if (hook.format == config::WebhookFormat::kSlack) {
    body["text"] = SlackText(d.event->text);
  } else {
    body["event"] = d.name;
    body["id"] = d.id;
    body["sent_at"] = Rfc3339(d.published);
    body["data"] = d.event->payload;
  }
  // `replace`: invalid UTF-8 in a payload must not throw on the delivery thread.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

milliseconds Backoff(milliseconds initial, uint32_t attempts_made) {
  milliseconds delay = std::max(initial, milliseconds(1));
  for (uint32_t i = 1; i < attempts_made && delay < kMaxBackoff; ++i) {
    delay *= 2;
  }
  return std::min(delay, kMaxBackoff);
}

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct CurlFree {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using HeaderList = std::unique_ptr<curl_slist, CurlFree>;

bool AppendHeader(HeaderList& list, const std::string& line) {
  curl_slist* head = curl_slist_append(list.get(), line.c_str());
  if (head == nullptr) {
    return false;  // the list is unchanged
  }
  (void)list.release();
  list.reset(head);
  return true;
}

// "Retry-After: 120" or "Retry-After: <HTTP-date>" → how long from now, capped at
// kMaxRetryAfter; nullopt for anything else (the backoff applies then).
std::optional<milliseconds> ParseRetryAfter(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r' ||
                            value.back() == '\n')) {
    value.remove_suffix(1);
  }
  if (value.empty() || value.size() > 64) {
    return std::nullopt;
  }
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) {
      return kMaxRetryAfter;
    }
    int64_t seconds = 0;
    for (const char c : value) {
      seconds = seconds * 10 + (c - '0');
    }
    return std::min<milliseconds>(std::chrono::seconds(seconds), kMaxRetryAfter);
  }
  const std::string date(value);
  const time_t at = curl_getdate(date.c_str(), nullptr);
  if (at < 0) {
    return std::nullopt;
  }
  const auto left = std::chrono::system_clock::from_time_t(at) - std::chrono::system_clock::now();
  return std::clamp<milliseconds>(std::chrono::duration_cast<milliseconds>(left), milliseconds(0),
                                  kMaxRetryAfter);
}

// Keeps the response's Retry-After header value (the last one, at most one line).
size_t KeepRetryAfter(char* data, size_t size, size_t count, void* user) {
  const std::string_view line(data, size * count);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size() &&
      std::equal(kName.begin(), kName.end(), line.begin(),
                 [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
    *static_cast<std::string*>(user) = std::string(line.substr(kName.size(), 128));
  }
  return size * count;
}

// Reads at most kMaxResponseBytes of the response and throws it away.
size_t DiscardBody(char*, size_t size, size_t count, void* user) {
  auto* seen = static_cast<size_t*>(user);
  *seen += size * count;
  return *seen > kMaxResponseBytes ? 0 : size * count;
}

// Runs `easy` on `multi` until it completes, or until the monotonic time in `abort_at_ns`
// (0: none) passes; `curl_multi_wakeup` makes a new deadline count at once.
CURLcode Run(CURLM* multi, CURL* easy, const std::atomic<int64_t>& abort_at_ns, bool& aborted) {
  if (curl_multi_add_handle(multi, easy) != CURLM_OK) {
    return CURLE_FAILED_INIT;
  }
  CURLcode result = CURLE_OK;
  int running = 1;
  while (true) {
    if (curl_multi_perform(multi, &running) != CURLM_OK) {
      result = CURLE_FAILED_INIT;
      break;
    }
    if (running == 0) {
      int queued = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) {
          result = msg->data.result;
        }
      }
      break;
    }
    int wait_ms = 1000;
    if (int64_t abort_at = abort_at_ns.load(); abort_at != 0) {
      int64_t left_ns = abort_at - NowNanos();
      if (left_ns <= 0) {
        aborted = true;
        break;
      }
      wait_ms = static_cast<int>(std::min<int64_t>(wait_ms, left_ns / 1000000 + 1));
    }
    curl_multi_poll(multi, nullptr, 0, wait_ms, nullptr);
  }
  curl_multi_remove_handle(multi, easy);
  return result;
}

Outcome Post(CURLM* multi, const config::Webhook& hook, const Delivery& d,
             const std::atomic<int64_t>& abort_at_ns) {
  if (multi == nullptr) {
    return {Verdict::kRetry, "curl_multi_init failed"};
  }
  std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
  if (!curl) {
    return {Verdict::kRetry, "curl_easy_init failed"};
  }
  HeaderList headers;
  bool ok = AppendHeader(headers, "Content-Type: application/json") &&
            AppendHeader(headers, "Expect:") &&  // no 100-continue round trip
            AppendHeader(headers, Cat("X-Tracegate-Event: ", d.name)) &&
            AppendHeader(headers, Cat("X-Tracegate-Delivery: ", d.id));
  if (ok && !hook.secret.empty()) {
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    std::string signature = Signature(hook.secret, now, d.body);
    ok = !signature.empty() && AppendHeader(headers, Cat("X-Tracegate-Signature: ", signature));
  }
  if (!ok) {
    return {Verdict::kRetry, "could not build the request headers"};
  }

  CURL* c = curl.get();
  size_t response_bytes = 0;
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, hook.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, std::max<long>(1, hook.timeout.count()));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!hook.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, hook.ca_file.c_str());
  }
  curl_easy_setopt(c, CURLOPT_USERAGENT, "tracegate");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, d.body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(d.body.size()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, DiscardBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response_bytes);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  std::string retry_after;
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, KeepRetryAfter);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &retry_after);

  bool aborted = false;
  CURLcode code = Run(multi, c, abort_at_ns, aborted);
  if (aborted) {
    return {Verdict::kAborted, "cut off by shutdown"};
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  // A response too large to read still has its status.
  bool cut_short = code == CURLE_WRITE_ERROR && response_bytes > kMaxResponseBytes && status > 0;
  if (code != CURLE_OK && !cut_short) {
    // curl's messages name the host at most, never the path (where Slack keeps its secret).
    std::string reason = error[0] != '\0' ? error : curl_easy_strerror(code);
    bool permanent = code == CURLE_UNSUPPORTED_PROTOCOL || code == CURLE_URL_MALFORMAT;
    return {permanent ? Verdict::kFailed : Verdict::kRetry, std::move(reason)};
  }
  if (status >= 200 && status < 300) {
    return {Verdict::kDelivered, Cat("HTTP ", status)};
  }
  bool transient = status == 429 || status >= 500;
  Outcome outcome{transient ? Verdict::kRetry : Verdict::kFailed, Cat("HTTP ", status)};
  if ((status == 429 || status == 503) && !retry_after.empty()) {
    outcome.retry_after = ParseRetryAfter(retry_after);
  }
  return outcome;
}

// One hook's queue and delivery thread. Lanes share nothing but the process: a hook that
// hangs, refuses or asks to wait holds up only its own deliveries.
struct Lane {
  const config::Webhook hook;
  const size_t queue_limit;
  const milliseconds initial_backoff;
  CURLM* const multi;  // owned by the lane's thread, except curl_multi_wakeup

  std::atomic<bool> stopping{false};
  std::atomic<int64_t> abort_at_ns{0};  // steady-clock deadline for the transfer in flight

  mutable std::mutex mu;
  std::condition_variable wake;  // new work, or stop
  std::condition_variable idle;  // a delivery settled
  std::vector<Delivery> queue;   // a heap under DueLater
  bool in_flight = false;
  Clock::time_point stop_deadline;
  WebhookStats stats;
  uint64_t next_seq = 0;
  uint64_t overflowed = 0;  // dropped for room since the last overflow log line
  Clock::time_point next_drop_log = Clock::time_point::min();
  std::thread thread;

  Lane(config::Webhook h, size_t limit, milliseconds backoff)
      : hook(std::move(h)),
        queue_limit(std::max<size_t>(1, limit)),
        initial_backoff(backoff),
        multi(NewMulti()) {}
  ~Lane() {
    if (multi != nullptr) {
      curl_multi_cleanup(multi);
    }
  }

  static CURLM* NewMulti() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    return curl_multi_init();
  }

  void Push(Delivery d) {
    d.seq = next_seq++;
    queue.push_back(std::move(d));
    std::push_heap(queue.begin(), queue.end(), DueLater());
  }

  Delivery Pop() {
    std::pop_heap(queue.begin(), queue.end(), DueLater());
    Delivery d = std::move(queue.back());
    queue.pop_back();
    return d;
  }

  // Under `mu`, the queue full: drops the delivery published first (a retry waiting included)
  // to make room for a new one. Returns its name for the log.
  std::string DropOldest() {
    auto oldest =
        std::min_element(queue.begin(), queue.end(),
                         [](const Delivery& a, const Delivery& b) { return a.order < b.order; });
    std::string name = oldest->event ? Cat("approval.", oldest->event->type) : oldest->name;
    queue.erase(oldest);
    std::make_heap(queue.begin(), queue.end(), DueLater());
    ++stats.dropped;
    ++overflowed;
    return name;
  }

  // Publish's half: takes the delivery, making room if needed. False when something was
  // dropped for it.
  bool Offer(Delivery d) {
    const Clock::time_point now = Clock::now();
    bool dropped = false;
    std::string dropped_name;
    uint64_t dropped_since_log = 0;
    uint64_t dropped_total = 0;
    bool log = false;
    {
      std::lock_guard lock(mu);
      if (queue.size() >= queue_limit) {
        dropped_name = DropOldest();
        dropped = true;
        if (now >= next_drop_log) {
          next_drop_log = now + kDropLogInterval;
          log = true;
          dropped_since_log = overflowed;
          dropped_total = stats.dropped;
          overflowed = 0;
        }
      }
      Push(std::move(d));
    }
    wake.notify_one();
    if (log) {
      spdlog::warn(
          "notify: webhook {}: queue full ({} deliveries, queue_size); dropped the oldest ({}), "
          "{} dropped for room since the last report, {} dropped in all",
          hook.name, queue_limit, dropped_name, dropped_since_log, dropped_total);
    }
    return !dropped;
  }

  // The lane's thread.
  void Loop() {
    std::unique_lock lock(mu);
    while (true) {
      Clock::time_point now = Clock::now();
      if (stopping) {
        if (queue.empty() || now >= stop_deadline || queue.front().due > now) {
          break;
        }
      } else if (queue.empty()) {
        wake.wait(lock);
        continue;
      } else if (queue.front().due > now) {
        // A copy: wait_until keeps reading its argument while the lock is released, and a
        // Push meanwhile may reallocate the queue (ASan: heap-use-after-free).
        const Clock::time_point due = queue.front().due;
        wake.wait_until(lock, due);
        continue;
      }
      Delivery d = Pop();
      in_flight = true;
      lock.unlock();
      bool requeue = false;
      Outcome outcome = Attempt(d, requeue);
      lock.lock();
      in_flight = false;
      Settle(std::move(d), outcome.verdict, requeue);
      idle.notify_all();
    }
    size_t left = queue.size();
    stats.dropped += left;
    queue.clear();
    idle.notify_all();
    lock.unlock();
    if (left > 0) {
      spdlog::warn("notify: webhook {}: stopping; dropped {} queued deliveries", hook.name, left);
    }
  }

  // Makes one attempt and logs how it went; sets `requeue` (and d.due) for a retry.
  Outcome Attempt(Delivery& d, bool& requeue) {
    if (d.id.empty()) {
      d.id = RandomDeliveryId();
      d.name = Cat("approval.", d.event->type);
      d.body = BuildBody(hook, d);
      d.event.reset();
    }
    ++d.attempts;
    Outcome outcome = Post(multi, hook, d, abort_at_ns);
    const uint32_t max_attempts = std::max<uint32_t>(1, hook.max_attempts);
    switch (outcome.verdict) {
      case Verdict::kDelivered:
        spdlog::debug("notify: webhook {}: delivered {} {} ({}, attempt {}/{})", hook.name, d.name,
                      d.id, outcome.reason, d.attempts, max_attempts);
        break;
      case Verdict::kRetry:
        if (stopping) {
          spdlog::warn("notify: webhook {}: {} {} attempt {}/{} failed ({}); stopping, dropped",
                       hook.name, d.name, d.id, d.attempts, max_attempts, outcome.reason);
        } else if (d.attempts < max_attempts) {
          // The receiver's Retry-After wins over a shorter backoff: it asked for the time.
          milliseconds delay = Backoff(initial_backoff, d.attempts);
          if (outcome.retry_after.has_value()) {
            delay = std::max(delay, *outcome.retry_after);
          }
          d.due = Clock::now() + delay;
          requeue = true;
          spdlog::warn("notify: webhook {}: {} {} attempt {}/{} failed ({}); retrying in {} ms{}",
                       hook.name, d.name, d.id, d.attempts, max_attempts, outcome.reason,
                       delay.count(), outcome.retry_after.has_value() ? " (Retry-After)" : "");
        } else {
          spdlog::warn("notify: webhook {}: {} {} attempt {}/{} failed ({}); giving up", hook.name,
                       d.name, d.id, d.attempts, max_attempts, outcome.reason);
        }
        break;
      case Verdict::kFailed:
        spdlog::warn("notify: webhook {}: {} {} attempt {}/{} failed ({}); not retried", hook.name,
                     d.name, d.id, d.attempts, max_attempts, outcome.reason);
        break;
      case Verdict::kAborted:
        spdlog::warn("notify: webhook {}: {} {} attempt {}/{} {}; dropped", hook.name, d.name, d.id,
                     d.attempts, max_attempts, outcome.reason);
        break;
    }
    return outcome;
  }

  // Under `mu`: counts the attempt's outcome and queues the retry. A retry that finds the
  // queue full (filled while it was in flight) makes room like a new delivery would.
  void Settle(Delivery d, Verdict verdict, bool requeue) {
    if (d.attempts > 1) {
      ++stats.retries;
    }
    if (verdict == Verdict::kDelivered) {
      ++stats.delivered;
    } else if (requeue) {
      if (queue.size() >= queue_limit) {
        if (std::all_of(queue.begin(), queue.end(),
                        [&](const Delivery& q) { return q.order > d.order; })) {
          ++stats.dropped;  // the retry itself is the oldest
          ++overflowed;
          return;
        }
        (void)DropOldest();
      }
      Push(std::move(d));
    } else if (verdict == Verdict::kAborted || (verdict == Verdict::kRetry && stopping)) {
      ++stats.dropped;
    } else {
      ++stats.failed;
    }
  }

  // Asks the thread to stop by `deadline`; the in-flight transfer is cut off then.
  void Stop(Clock::time_point deadline) {
    {
      std::lock_guard lock(mu);
      stopping = true;
      stop_deadline = deadline;
      abort_at_ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
    }
    wake.notify_all();
    if (multi != nullptr) {
      curl_multi_wakeup(multi);
    }
  }
};

}  // namespace

struct Webhooks::State {
  std::vector<std::unique_ptr<Lane>> lanes;
  std::atomic<uint64_t> next_order{0};
};

Webhooks::Webhooks(std::vector<config::Webhook> hooks, size_t queue_limit,
                   milliseconds initial_backoff)
    : state_(std::make_unique<State>()) {
  for (config::Webhook& hook : hooks) {
    const size_t limit = queue_limit > 0 ? queue_limit : hook.queue_size;
    state_->lanes.push_back(std::make_unique<Lane>(std::move(hook), limit, initial_backoff));
  }
  for (const std::unique_ptr<Lane>& lane : state_->lanes) {
    lane->thread = std::thread([l = lane.get()] { l->Loop(); });
  }
}

Webhooks::~Webhooks() {
  // Every lane gets the same grace, at the same time: stopping takes ~2 s however many hooks.
  const Clock::time_point deadline = Clock::now() + kStopGrace;
  for (const std::unique_ptr<Lane>& lane : state_->lanes) {
    lane->Stop(deadline);
  }
  for (const std::unique_ptr<Lane>& lane : state_->lanes) {
    lane->thread.join();
  }
}

bool Webhooks::Publish(Event event) {
  std::shared_ptr<const Event> shared;
  const auto published = std::chrono::system_clock::now();
  const uint64_t order = state_->next_order.fetch_add(1);
  bool all_taken = true;
  for (const std::unique_ptr<Lane>& lane : state_->lanes) {
    const std::vector<std::string>& events = lane->hook.events;
    if (std::find(events.begin(), events.end(), event.type) == events.end()) {
      continue;
    }
    if (!shared) {
      shared = std::make_shared<const Event>(event);
    }
    all_taken &= lane->Offer(
        Delivery{.event = shared, .published = published, .due = Clock::now(), .order = order});
  }
  return all_taken;
}

WebhookStats Webhooks::stats() const {
  WebhookStats total;
  for (const HookStats& hook : hook_stats()) {
    total.delivered += hook.stats.delivered;
    total.failed += hook.stats.failed;
    total.dropped += hook.stats.dropped;
    total.retries += hook.stats.retries;
  }
  return total;
}

std::vector<HookStats> Webhooks::hook_stats() const {
  std::vector<HookStats> out;
  for (const std::unique_ptr<Lane>& lane : state_->lanes) {
    std::lock_guard lock(lane->mu);
    out.push_back(HookStats{.name = lane->hook.name,
                            .stats = lane->stats,
                            .queued = lane->queue.size() + (lane->in_flight ? 1 : 0)});
  }
  return out;
}

bool Webhooks::WaitIdle(milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (const std::unique_ptr<Lane>& lane : state_->lanes) {
    std::unique_lock lock(lane->mu);
    if (!lane->idle.wait_until(lock, deadline,
                               [&] { return lane->queue.empty() && !lane->in_flight; })) {
      return false;
    }
  }
  return true;
}

std::string Signature(std::string_view secret, int64_t unix_seconds, std::string_view body) {
  const std::string t = std::to_string(unix_seconds);
  std::string message;
  message.reserve(t.size() + 1 + body.size());
  message.append(t).append(".").append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  static const char kEmpty[1] = {0};
  if (HMAC(EVP_sha256(), secret.empty() ? kEmpty : secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac,
           &mac_len) == nullptr) {
    return "";
  }
  return Cat("t=", t, ",v1=", Hex(mac, mac_len));
}

}  // namespace tracegate::notify
