#include "notify/webhooks.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <ctime>
#include <mutex>
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

// One event on its way to one hook.
struct Delivery {
  size_t hook = 0;                     // index into State::hooks
  std::shared_ptr<const Event> event;  // released once `body` is built
  std::chrono::system_clock::time_point published;
  std::string id;    // X-Tracegate-Delivery; empty until the first attempt
  std::string name;  // "approval.<type>"
  std::string body;
  uint32_t attempts = 0;  // made so far
  Clock::time_point due;  // next attempt
  uint64_t seq = 0;       // FIFO among deliveries due at the same instant
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
  std::string reason;  // status or curl error; never the URL, body or secret
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
  return {transient ? Verdict::kRetry : Verdict::kFailed, Cat("HTTP ", status)};
}

}  // namespace

struct Webhooks::State {
  const std::vector<config::Webhook> hooks;
  const size_t queue_limit;
  const milliseconds initial_backoff;
  CURLM* const multi;  // owned by the delivery thread, except curl_multi_wakeup

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
  Clock::time_point next_drop_log = Clock::time_point::min();

  State(std::vector<config::Webhook> h, size_t limit, milliseconds backoff)
      : hooks(std::move(h)), queue_limit(limit), initial_backoff(backoff), multi(NewMulti()) {}
  ~State() {
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

  // The delivery thread.
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
        wake.wait_until(lock, queue.front().due);
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
      spdlog::warn("notify: stopping; dropped {} queued webhook deliveries", left);
    }
  }

  // Makes one attempt and logs how it went; sets `requeue` (and d.due) for a retry.
  Outcome Attempt(Delivery& d, bool& requeue) {
    const config::Webhook& hook = hooks[d.hook];
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
          milliseconds delay = Backoff(initial_backoff, d.attempts);
          d.due = Clock::now() + delay;
          requeue = true;
          spdlog::warn("notify: webhook {}: {} {} attempt {}/{} failed ({}); retrying in {} ms",
                       hook.name, d.name, d.id, d.attempts, max_attempts, outcome.reason,
                       delay.count());
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

  // Under `mu`: counts the attempt's outcome and queues the retry.
  void Settle(Delivery d, Verdict verdict, bool requeue) {
    if (d.attempts > 1) {
      ++stats.retries;
    }
    if (verdict == Verdict::kDelivered) {
      ++stats.delivered;
    } else if (requeue) {
      Push(std::move(d));
    } else if (verdict == Verdict::kAborted || (verdict == Verdict::kRetry && stopping)) {
      ++stats.dropped;
    } else {
      ++stats.failed;
    }
  }
};

Webhooks::Webhooks(std::vector<config::Webhook> hooks, size_t queue_limit,
                   milliseconds initial_backoff)
    : state_(std::make_unique<State>(std::move(hooks), queue_limit, initial_backoff)) {
  thread_ = std::thread([state = state_.get()] { state->Loop(); });
}

Webhooks::~Webhooks() {
  Clock::time_point deadline = Clock::now() + kStopGrace;
  {
    std::lock_guard lock(state_->mu);
    state_->stopping = true;
    state_->stop_deadline = deadline;
    state_->abort_at_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  }
  state_->wake.notify_all();
  if (state_->multi != nullptr) {
    curl_multi_wakeup(state_->multi);
  }
  thread_.join();
}

bool Webhooks::Publish(Event event) {
  std::vector<size_t> targets;
  for (size_t i = 0; i < state_->hooks.size(); ++i) {
    const std::vector<std::string>& events = state_->hooks[i].events;
    if (std::find(events.begin(), events.end(), event.type) != events.end()) {
      targets.push_back(i);
    }
  }
  if (targets.empty()) {
    return true;
  }
  auto shared = std::make_shared<const Event>(std::move(event));
  const auto published = std::chrono::system_clock::now();
  const Clock::time_point now = Clock::now();
  size_t dropped = 0;
  uint64_t dropped_total = 0;
  size_t waiting = 0;
  bool log_drop = false;
  {
    std::lock_guard lock(state_->mu);
    for (size_t hook : targets) {
      if (state_->queue.size() >= state_->queue_limit) {
        ++dropped;
        continue;
      }
      state_->Push(Delivery{.hook = hook, .event = shared, .published = published, .due = now});
    }
    state_->stats.dropped += dropped;
    if (dropped > 0 && now >= state_->next_drop_log) {
      state_->next_drop_log = now + kDropLogInterval;
      log_drop = true;
      dropped_total = state_->stats.dropped;
      waiting = state_->queue.size();
    }
  }
  if (dropped < targets.size()) {
    state_->wake.notify_one();
  }
  if (log_drop) {
    spdlog::warn(
        "notify: webhook queue full ({} deliveries waiting); dropped approval.{} for {} of {} "
        "webhooks ({} dropped in all)",
        waiting, shared->type, dropped, targets.size(), dropped_total);
  }
  return dropped == 0;
}

WebhookStats Webhooks::stats() const {
  std::lock_guard lock(state_->mu);
  return state_->stats;
}

bool Webhooks::WaitIdle(milliseconds timeout) {
  std::unique_lock lock(state_->mu);
  return state_->idle.wait_for(lock, timeout,
                               [this] { return state_->queue.empty() && !state_->in_flight; });
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
