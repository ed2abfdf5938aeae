// Webhook delivery against a real HTTP receiver on loopback: headers, bodies and signatures,
// event filtering, retries and their limits, a full queue, and shutdown with work pending.
#include "notify/webhooks.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "common/strings.h"

namespace tracegate::notify {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr milliseconds kFastBackoff{10};
constexpr milliseconds kPatience{20000};  // upper bound for things that should take millis

struct Request {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// A blocking HTTP/1.1 server on 127.0.0.1:0, one thread per connection, one request per
// connection. It records every request before answering with whatever the responder says.
class Receiver {
 public:
  static constexpr int kHang = -1;  // keep the connection open, never answer
  static constexpr int kHold = -2;  // answer 200 once Release() is called
  // Gets the request and how many came before it; returns a status or kHang.
  using Responder = std::function<int(const Request&, size_t index)>;

  Receiver() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 128), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
  }

  ~Receiver() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    changed_.notify_all();
    acceptor_.join();
    for (std::thread& t : workers_) {
      t.join();
    }
    ::close(fd_);
  }

  void Respond(Responder responder) {
    std::lock_guard lock(mu_);
    responder_ = std::move(responder);
  }

  // One more header line ("Retry-After: 5") on every answer to `path`.
  void AddHeader(const std::string& path, std::string line) {
    std::lock_guard lock(mu_);
    headers_[path] = std::move(line);
  }

  void Release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    changed_.notify_all();
  }

  size_t CountTo(const std::string& path) const { return RequestsTo(path).size(); }

  bool WaitForRequestsTo(const std::string& path, size_t n, milliseconds timeout = kPatience) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, timeout, [&] {
      return static_cast<size_t>(std::count_if(requests_.begin(), requests_.end(),
                                               [&](const Request& r) { return r.path == path; })) >=
             n;
    });
  }

  std::string Url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  std::vector<Request> Requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

  std::vector<Request> RequestsTo(const std::string& path) const {
    std::vector<Request> out;
    for (Request& r : Requests()) {
      if (r.path == path) {
        out.push_back(std::move(r));
      }
    }
    return out;
  }

  bool WaitForRequests(size_t n, milliseconds timeout = kPatience) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
  }

 private:
  void Accept() {
    while (true) {
      {
        std::lock_guard lock(mu_);
        if (stop_) {
          return;
        }
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) {
        continue;
      }
      int client = ::accept(fd_, nullptr, nullptr);
      if (client >= 0) {
        workers_.emplace_back([this, client] { Serve(client); });
      }
    }
  }

  bool Stopped() {
    std::lock_guard lock(mu_);
    return stop_;
  }

  // Reads one request; false if the peer went away or the server stops first.
  bool Read(int fd, Request& request) {
    std::string data;
    size_t header_end = std::string::npos;
    size_t content_length = 0;
    char buf[4096];
    while (header_end == std::string::npos || data.size() < header_end + 4 + content_length) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) {
        if (Stopped()) {
          return false;
        }
        continue;
      }
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        return false;
      }
      data.append(buf, static_cast<size_t>(n));
      if (header_end == std::string::npos && (header_end = data.find("\r\n\r\n")) != data.npos) {
        std::istringstream lines(data.substr(0, header_end));
        std::string line;
        std::getline(lines, line);
        std::istringstream first(line);
        first >> request.method >> request.path;
        while (std::getline(lines, line)) {
          if (!line.empty() && line.back() == '\r') {
            line.pop_back();
          }
          size_t colon = line.find(':');
          if (colon == std::string::npos) {
            continue;
          }
          std::string name = line.substr(0, colon);
          std::transform(name.begin(), name.end(), name.begin(),
                         [](unsigned char c) { return std::tolower(c); });
          std::string value = line.substr(colon + 1);
          value.erase(0, value.find_first_not_of(' '));
          request.headers[name] = value;
        }
        content_length = std::stoul(
            request.Header("content-length").empty() ? "0" : request.Header("content-length"));
      }
    }
    request.body = data.substr(header_end + 4, content_length);
    return true;
  }

  void Serve(int fd) {
    Request request;
    if (Read(fd, request)) {
      std::unique_lock lock(mu_);
      int status = responder_ ? responder_(request, requests_.size()) : 200;
      requests_.push_back(request);
      changed_.notify_all();
      if (status == kHold) {
        changed_.wait(lock, [&] { return stop_ || released_; });
        status = 200;
      }
      if (status == kHang) {
        changed_.wait(lock, [&] { return stop_; });
      } else {
        auto extra = headers_.find(request.path);
        const std::string header = extra == headers_.end() ? "" : extra->second + "\r\n";
        lock.unlock();
        std::string response = "HTTP/1.1 " + std::to_string(status) + " X\r\n" + header +
                               "Content-Length: 2\r\nConnection: close\r\n\r\nok";
        ::send(fd, response.data(), response.size(), MSG_NOSIGNAL);
      }
    }
    ::close(fd);
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread acceptor_;
  std::vector<std::thread> workers_;  // only the acceptor thread touches this until ~Receiver
  mutable std::mutex mu_;
  std::condition_variable changed_;
  bool stop_ = false;
  bool released_ = false;
  std::map<std::string, std::string> headers_;
  Responder responder_;
  std::vector<Request> requests_;
};

// HMAC-SHA256 through OpenSSL's EVP_MAC interface (the code under test uses HMAC()).
std::string HmacSha256Hex(std::string_view key, std::string_view message) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                         OSSL_PARAM_construct_end()};
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t out_len = 0;
  bool ok = EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                         params) == 1 &&
            EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(message.data()),
                           message.size()) == 1 &&
            EVP_MAC_final(ctx, out, &out_len, sizeof out) == 1;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  EXPECT_TRUE(ok);
  std::string hex;
  for (size_t i = 0; i < out_len; ++i) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", out[i]);
    hex += b;
  }
  return hex;
}

config::Webhook Hook(std::string url, std::string secret = "s3cret-key") {
  config::Webhook hook;
  hook.name = "test-hook";
  hook.url = std::move(url);
  hook.secret = std::move(secret);
  hook.timeout = milliseconds(5000);
  hook.max_attempts = 5;
  return hook;
}

Event Requested(std::string trace = "trace-1") {
  return Event{.type = "requested",
               .payload = {{"request_id", "r1"}, {"trace", std::move(trace)}},
               .text = "alice asks to read trace-1"};
}

Event Decided() {
  return Event{.type = "decided", .payload = {{"outcome", "approved"}}, .text = "approved"};
}

// Plain character checks (no regex in this repository: STYLE.md); they say what they check.
bool IsLowerHex(std::string_view s, size_t length) {
  return s.size() == length && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// "YYYY-MM-DDTHH:MM:SSZ"
bool IsRfc3339Utc(std::string_view s) {
  const std::string_view shape = "dddd-dd-ddTdd:dd:ddZ";
  if (s.size() != shape.size()) {
    return false;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    if (shape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(s[i])) : s[i] != shape[i]) {
      return false;
    }
  }
  return true;
}

// Splits "t=<digits>,v1=<64 lowercase hex>"; false if the header has another shape.
bool ParseSignature(const std::string& header, std::string& t, std::string& v1) {
  size_t comma = header.find(",v1=");
  if (header.rfind("t=", 0) != 0 || comma == std::string::npos || comma == 2) {
    return false;
  }
  t = header.substr(2, comma - 2);
  v1 = header.substr(comma + 4);
  return std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
         IsLowerHex(v1, 64);
}

uint16_t ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(SignatureTest, MatchesAKnownVector) {
  // From: printf '%s' '1700000000.{"event":"approval.requested"}' |
  //       openssl dgst -sha256 -hmac whsec_test
  EXPECT_EQ(Signature("whsec_test", 1700000000, R"({"event":"approval.requested"})"),
            "t=1700000000,v1=043813834db26426b822e3c4c5d4fcdc2cd852dc44016b080b9b1f1392752fd2");
}

TEST(SignatureTest, MatchesOpenSslEvpMac) {
  const std::string body = R"({"data":{"x":"\u00e9"},"id":"0123456789abcdef"})";
  for (std::string_view secret : {"k", "a longer secret with spaces", "\x01\x02\xff"}) {
    EXPECT_EQ(Signature(secret, 42, body), "t=42,v1=" + HmacSha256Hex(secret, "42." + body));
  }
  EXPECT_NE(Signature("k", 42, body), Signature("k", 43, body));
  EXPECT_NE(Signature("k", 42, body), Signature("k2", 42, body));
}

TEST(WebhooksTest, GenericDeliveryCarriesHeadersBodyAndSignature) {
  Receiver receiver;
  const int64_t before = std::time(nullptr);
  Webhooks hooks({Hook(receiver.Url())});
  EXPECT_TRUE(hooks.Publish(Requested()));
  ASSERT_TRUE(hooks.WaitIdle(kPatience));
  const int64_t after = std::time(nullptr);

  std::vector<Request> got = receiver.Requests();
  ASSERT_EQ(got.size(), 1u);
  const Request& r = got[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/hook");
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.Header("user-agent"), "tracegate");
  EXPECT_EQ(r.Header("x-tracegate-event"), "approval.requested");
  const std::string id = r.Header("x-tracegate-delivery");
  EXPECT_TRUE(IsLowerHex(id, 16)) << id;

  nlohmann::json body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["event"], "approval.requested");
  EXPECT_EQ(body["id"], id);
  EXPECT_EQ(body["data"], (nlohmann::json{{"request_id", "r1"}, {"trace", "trace-1"}}));
  EXPECT_TRUE(IsRfc3339Utc(body["sent_at"].get<std::string>())) << body["sent_at"];
  EXPECT_EQ(body.size(), 4u);

  std::string t;
  std::string v1;
  const std::string signature = r.Header("x-tracegate-signature");
  ASSERT_TRUE(ParseSignature(signature, t, v1)) << signature;
  EXPECT_GE(std::stoll(t), before);
  EXPECT_LE(std::stoll(t), after);
  EXPECT_EQ(v1, HmacSha256Hex("s3cret-key", t + "." + r.body));

  WebhookStats stats = hooks.stats();
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.retries, 0u);
  EXPECT_EQ(stats.dropped, 0u);
}

TEST(WebhooksTest, SlackBodyIsTextAndSignedOnlyWithASecret) {
  Receiver receiver;
  config::Webhook unsigned_hook = Hook(receiver.Url("/plain"), "");
  unsigned_hook.format = config::WebhookFormat::kSlack;
  config::Webhook signed_hook = Hook(receiver.Url("/signed"), "slack-signing");
  signed_hook.format = config::WebhookFormat::kSlack;
  Webhooks hooks({unsigned_hook, signed_hook});
  EXPECT_TRUE(hooks.Publish(Requested()));
  ASSERT_TRUE(hooks.WaitIdle(kPatience));

  std::vector<Request> plain = receiver.RequestsTo("/plain");
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(plain[0].body),
            (nlohmann::json{{"text", "alice asks to read trace-1"}}));
  EXPECT_EQ(plain[0].Header("x-tracegate-signature"), "");
  EXPECT_EQ(plain[0].Header("x-tracegate-event"), "approval.requested");

  std::vector<Request> signed_requests = receiver.RequestsTo("/signed");
  ASSERT_EQ(signed_requests.size(), 1u);
  EXPECT_EQ(signed_requests[0].body, plain[0].body);
  std::string t;
  std::string v1;
  const std::string signature = signed_requests[0].Header("x-tracegate-signature");
  ASSERT_TRUE(ParseSignature(signature, t, v1)) << signature;
  EXPECT_EQ(v1, HmacSha256Hex("slack-signing", t + "." + signed_requests[0].body));
  EXPECT_EQ(hooks.stats().delivered, 2u);
}

// Issue 17: a reason is the caller's text; Slack must not read it as a mention or a link.
TEST(WebhooksTest, SlackTextEscapesMentionsLinksAndEntities) {
  Receiver receiver;
  config::Webhook hook = Hook(receiver.Url("/slack"), "");
  hook.format = config::WebhookFormat::kSlack;
  Webhooks hooks({hook});
  Event event = Requested();
  event.text =
      "bob asks because \"<!channel> <https://evil.example|approve here> <@U123> &amp; x\"";
  EXPECT_TRUE(hooks.Publish(event));
  ASSERT_TRUE(hooks.WaitIdle(kPatience));
  std::vector<Request> got = receiver.RequestsTo("/slack");
  ASSERT_EQ(got.size(), 1u);
  const std::string text = nlohmann::json::parse(got[0].body).at("text");
  EXPECT_EQ(text,
            "bob asks because \"&lt;!channel&gt; &lt;https://evil.example|approve here&gt; "
            "&lt;@U123&gt; &amp;amp; x\"");
  EXPECT_EQ(text.find('<'), std::string::npos);
  EXPECT_EQ(text.find('>'), std::string::npos);
}

TEST(WebhooksTest, HooksGetOnlyTheEventsTheySubscribeTo) {
  Receiver receiver;
  config::Webhook decided_only = Hook(receiver.Url("/decided"));
  decided_only.events = {"decided"};
  config::Webhook both = Hook(receiver.Url("/both"));
  Webhooks hooks({decided_only, both});
  EXPECT_TRUE(hooks.Publish(Requested()));
  EXPECT_TRUE(hooks.Publish(Decided()));
  EXPECT_TRUE(hooks.Publish(Event{.type = "unknown", .payload = {}, .text = ""}));
  ASSERT_TRUE(hooks.WaitIdle(kPatience));

  std::vector<Request> decided = receiver.RequestsTo("/decided");
  ASSERT_EQ(decided.size(), 1u);
  EXPECT_EQ(decided[0].Header("x-tracegate-event"), "approval.decided");
  EXPECT_EQ(nlohmann::json::parse(decided[0].body)["data"]["outcome"], "approved");

  std::vector<std::string> events;
  for (const Request& r : receiver.RequestsTo("/both")) {
    events.push_back(r.Header("x-tracegate-event"));
  }
  std::sort(events.begin(), events.end());
  EXPECT_EQ(events, (std::vector<std::string>{"approval.decided", "approval.requested"}));
  EXPECT_EQ(hooks.stats().delivered, 3u);
}

class RetryStatusTest : public ::testing::TestWithParam<int> {};

TEST_P(RetryStatusTest, RetriesTransientFailuresWithTheSameDeliveryId) {
  Receiver receiver;
  const int status = GetParam();
  receiver.Respond([status](const Request&, size_t index) { return index < 2 ? status : 200; });
  Webhooks hooks({Hook(receiver.Url())}, 1000, kFastBackoff);
  EXPECT_TRUE(hooks.Publish(Requested()));
  ASSERT_TRUE(hooks.WaitIdle(kPatience));

  std::vector<Request> got = receiver.Requests();
  ASSERT_EQ(got.size(), 3u);
  for (const Request& r : got) {
    EXPECT_EQ(r.Header("x-tracegate-delivery"), got[0].Header("x-tracegate-delivery"));
    EXPECT_EQ(r.body, got[0].body);
  }
  WebhookStats stats = hooks.stats();
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.retries, 2u);
  EXPECT_EQ(stats.failed, 0u);
}

INSTANTIATE_TEST_SUITE_P(Transient, RetryStatusTest, ::testing::Values(500, 503, 429));

class RefusedStatusTest : public ::testing::TestWithParam<int> {};

TEST_P(RefusedStatusTest, FailsAtOnce) {
  Receiver receiver;
  const int status = GetParam();
  receiver.Respond([status](const Request&, size_t) { return status; });
  Webhooks hooks({Hook(receiver.Url())}, 1000, kFastBackoff);
  EXPECT_TRUE(hooks.Publish(Requested()));
  ASSERT_TRUE(hooks.WaitIdle(kPatience));

  EXPECT_EQ(receiver.Requests().size(), 1u);
  WebhookStats stats = hooks.stats();
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(stats.retries, 0u);
  EXPECT_EQ(stats.delivered, 0u);
}

// 3xx: redirects are not followed (a receiver cannot bounce a signed body elsewhere).
INSTANTIATE_TEST_SUITE_P(Permanent, RefusedStatusTest, ::testing::Values(400, 401, 404, 302));

TEST(WebhooksTest, GivesUpAfterMaxAttempts) {
  Receiver receiver;
  receiver.Respond([](const Request&, size_t) { return 500; });
  config::Webhook hook = Hook(receiver.Url());
  hook.max_attempts = 3;
  Webhooks hooks({hook}, 1000, kFastBackoff);
  EXPECT_TRUE(hooks.Publish(Requested()));
  ASSERT_TRUE(hooks.WaitIdle(kPatience));

  EXPECT_EQ(receiver.Requests().size(), 3u);
  WebhookStats stats = hooks.stats();
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(stats.retries, 2u);
  EXPECT_EQ(stats.delivered, 0u);
}

TEST(WebhooksTest, UnreachableReceiverFailsAfterRetries) {
  config::Webhook hook = Hook("http://127.0.0.1:" + std::to_string(ClosedPort()) + "/hook");
  hook.max_attempts = 3;
  Webhooks hooks({hook}, 1000, kFastBackoff);
  EXPECT_TRUE(hooks.Publish(Requested()));
  ASSERT_TRUE(hooks.WaitIdle(kPatience));

  WebhookStats stats = hooks.stats();
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(stats.retries, 2u);
  EXPECT_EQ(stats.delivered, 0u);
}

TEST(WebhooksTest, TimedOutAttemptIsRetried) {
  Receiver receiver;
  receiver.Respond([](const Request&, size_t index) { return index == 0 ? Receiver::kHang : 200; });
  config::Webhook hook = Hook(receiver.Url());
  hook.timeout = milliseconds(200);
  Webhooks hooks({hook}, 1000, kFastBackoff);
  EXPECT_TRUE(hooks.Publish(Requested()));
  ASSERT_TRUE(hooks.WaitIdle(kPatience));

  EXPECT_EQ(receiver.Requests().size(), 2u);
  WebhookStats stats = hooks.stats();
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.retries, 1u);
}

TEST(WebhooksTest, ARetryWaitingDoesNotHoldUpOtherHooks) {
  Receiver receiver;
  receiver.Respond([](const Request& r, size_t) { return r.path == "/down" ? 503 : 200; });
  // The first retry of /down would wait 60 s (the cap): /up must be delivered long before.
  Webhooks hooks({Hook(receiver.Url("/down")), Hook(receiver.Url("/up"))}, 1000,
                 std::chrono::seconds(60));
  EXPECT_TRUE(hooks.Publish(Requested("one")));
  EXPECT_TRUE(hooks.Publish(Requested("two")));
  ASSERT_TRUE(receiver.WaitForRequests(4));
  for (int i = 0; i < 500 && hooks.stats().delivered < 2; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(receiver.RequestsTo("/down").size(), 2u);
  EXPECT_EQ(receiver.RequestsTo("/up").size(), 2u);
  EXPECT_EQ(hooks.stats().delivered, 2u);
  EXPECT_FALSE(hooks.WaitIdle(milliseconds(50)));  // two retries still wait
  // Destruction does not wait for those retries (see below); they are dropped.
}

TEST(WebhooksTest, FullQueueDropsTheOldestAndPublishNeverBlocks) {
  Receiver receiver;
  receiver.Respond([](const Request&, size_t) { return Receiver::kHang; });
  config::Webhook hook = Hook(receiver.Url());
  hook.timeout = milliseconds(60000);
  const size_t limit = 10;
  size_t accepted = 0;
  size_t refused = 0;
  {
    Webhooks hooks({hook}, limit, kFastBackoff);
    EXPECT_TRUE(hooks.Publish(Requested()));
    ASSERT_TRUE(receiver.WaitForRequests(1));  // the delivery thread is now stuck on it
    for (int i = 0; i < 2000; ++i) {
      (hooks.Publish(Requested()) ? accepted : refused) += 1;
    }
    EXPECT_EQ(accepted, limit);
    EXPECT_EQ(refused, 2000 - limit);
    WebhookStats stats = hooks.stats();
    EXPECT_EQ(stats.dropped, refused);
    EXPECT_EQ(stats.delivered, 0u);
    ASSERT_EQ(hooks.hook_stats().size(), 1u);
    EXPECT_EQ(hooks.hook_stats()[0].queued, limit + 1);  // ten waiting, one in flight
    EXPECT_FALSE(hooks.WaitIdle(milliseconds(50)));
  }
  // The destructor cut the hung attempt off after its grace period instead of 60 s.
  EXPECT_EQ(receiver.Requests().size(), 1u);
}

// What a full queue keeps is the newest: after a flood, the last events still arrive.
TEST(WebhooksTest, AfterAFloodTheNewestDeliveriesArrive) {
  Receiver receiver;
  receiver.Respond([](const Request&, size_t index) { return index == 0 ? Receiver::kHold : 200; });
  config::Webhook hook = Hook(receiver.Url());
  hook.queue_size = 10;
  Webhooks hooks({hook}, 0, kFastBackoff);
  EXPECT_TRUE(hooks.Publish(Requested("first")));
  ASSERT_TRUE(receiver.WaitForRequests(1));
  for (int i = 0; i < 500; ++i) {
    (void)hooks.Publish(Requested(Cat("flood-", i)));
  }
  receiver.Release();
  ASSERT_TRUE(hooks.WaitIdle(kPatience));
  std::vector<std::string> traces;
  for (const Request& r : receiver.Requests()) {
    traces.push_back(nlohmann::json::parse(r.body)["data"]["trace"].get<std::string>());
  }
  std::vector<std::string> expected = {"first"};
  for (int i = 490; i < 500; ++i) {
    expected.push_back(Cat("flood-", i));
  }
  EXPECT_EQ(traces, expected);
  EXPECT_EQ(hooks.stats().dropped, 490u);
  EXPECT_EQ(hooks.stats().delivered, 11u);
}

TEST(WebhooksTest, AHangingHookDoesNotDelayAnother) {
  Receiver receiver;
  receiver.Respond(
      [](const Request& r, size_t) { return r.path == "/hang" ? Receiver::kHang : 200; });
  config::Webhook hanging = Hook(receiver.Url("/hang"));
  hanging.name = "hanging";
  hanging.timeout = milliseconds(600000);  // longer than kPatience: only a separate lane passes
  config::Webhook healthy = Hook(receiver.Url("/ok"));
  healthy.name = "healthy";
  Webhooks hooks({hanging, healthy}, 0, kFastBackoff);
  EXPECT_TRUE(hooks.Publish(Requested("a")));
  ASSERT_TRUE(receiver.WaitForRequestsTo("/hang", 1));
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(hooks.Publish(Requested(Cat("b", i))));
  }
  ASSERT_TRUE(receiver.WaitForRequestsTo("/ok", 21));
  EXPECT_EQ(receiver.CountTo("/hang"), 1u);
  const std::vector<HookStats> per_hook = hooks.hook_stats();
  ASSERT_EQ(per_hook.size(), 2u);
  EXPECT_EQ(per_hook[0].name, "hanging");
  EXPECT_EQ(per_hook[0].queued, 21u);  // one in flight, twenty waiting behind it
  EXPECT_EQ(per_hook[1].name, "healthy");
}

// A dead hook answering 503 with Retry-After is not retried before it asked (the backoff
// here is 1 ms), and the other hook gets everything meanwhile.
class RetryAfterTest : public ::testing::TestWithParam<std::pair<int, std::string>> {};

TEST_P(RetryAfterTest, IsHonouredAndStarvesNobody) {
  const auto& [status, retry_after] = GetParam();
  Receiver receiver;
  receiver.Respond([status](const Request& r, size_t) { return r.path == "/dead" ? status : 200; });
  receiver.AddHeader("/dead", "Retry-After: " + retry_after);
  config::Webhook dead = Hook(receiver.Url("/dead"));
  dead.max_attempts = 5;
  Webhooks hooks({dead, Hook(receiver.Url("/ok"))}, 0, milliseconds(1));
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(hooks.Publish(Requested(Cat("t", i))));
  }
  ASSERT_TRUE(receiver.WaitForRequestsTo("/ok", 20));
  ASSERT_TRUE(receiver.WaitForRequestsTo("/dead", 20));
  // Give a 1 ms backoff every chance to show itself: the healthy hook takes 20 more first.
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(hooks.Publish(Event{.type = "decided", .payload = {}, .text = ""}));
  }
  ASSERT_TRUE(receiver.WaitForRequestsTo("/ok", 40));
  ASSERT_TRUE(receiver.WaitForRequestsTo("/dead", 40));
  std::set<std::string> ids;
  for (const Request& r : receiver.RequestsTo("/dead")) {
    EXPECT_TRUE(ids.insert(r.Header("x-tracegate-delivery")).second)
        << "delivery " << r.Header("x-tracegate-delivery") << " was retried before Retry-After";
  }
  EXPECT_EQ(hooks.stats().retries, 0u);
  EXPECT_EQ(hooks.hook_stats()[0].queued, 40u);  // all waiting for their retry (or in flight)
  // The receiver records a request before it answers: the count follows the answer.
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (hooks.hook_stats()[1].stats.delivered < 40 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(hooks.hook_stats()[1].stats.delivered, 40u);
}

INSTANTIATE_TEST_SUITE_P(
    SecondsAndDates, RetryAfterTest,
    ::testing::Values(std::pair{503, std::string("3600")}, std::pair{429, std::string("120")},
                      std::pair{503, std::string("Wed, 21 Oct 2037 07:28:00 GMT")}));

// Without Retry-After (or with one that is not a number or a date) the backoff applies.
TEST(WebhooksTest, AnUnreadableRetryAfterFallsBackToTheBackoff) {
  Receiver receiver;
  receiver.Respond([](const Request&, size_t index) { return index == 0 ? 503 : 200; });
  receiver.AddHeader("/hook", "Retry-After: soon");
  Webhooks hooks({Hook(receiver.Url())}, 0, kFastBackoff);
  EXPECT_TRUE(hooks.Publish(Requested()));
  ASSERT_TRUE(hooks.WaitIdle(kPatience));
  EXPECT_EQ(hooks.stats().delivered, 1u);
  EXPECT_EQ(hooks.stats().retries, 1u);
}

TEST(WebhooksTest, DestructionWithPendingDeliveriesReturns) {
  Receiver receiver;
  receiver.Respond([](const Request&, size_t) { return Receiver::kHang; });
  config::Webhook hanging = Hook(receiver.Url("/hang"));
  hanging.timeout = milliseconds(60000);
  config::Webhook refusing = Hook("http://127.0.0.1:" + std::to_string(ClosedPort()) + "/closed");
  const auto start = std::chrono::steady_clock::now();
  {
    Webhooks hooks({hanging, refusing}, 1000, std::chrono::seconds(30));
    for (int i = 0; i < 50; ++i) {
      EXPECT_TRUE(hooks.Publish(Requested()));
    }
    ASSERT_TRUE(receiver.WaitForRequests(1));
  }
  // ~2 s grace; a generous bound that still fails if the destructor waited for a 60 s attempt.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(WebhooksTest, FailureLogsNameStatusAndAttemptButNoSecretsOrBody) {
  Receiver receiver;
  receiver.Respond([](const Request&, size_t) { return 502; });
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  {
    config::Webhook hook = Hook(receiver.Url("/services/T0/B0/PATHSECRET"), "HOOKSECRET");
    hook.name = "approvers-chat";
    hook.max_attempts = 2;
    Webhooks hooks({hook}, 1000, kFastBackoff);
    Event event = Requested("BODYMARKER");
    event.text = "TEXTMARKER";
    EXPECT_TRUE(hooks.Publish(std::move(event)));
    ASSERT_TRUE(hooks.WaitIdle(kPatience));
    EXPECT_EQ(hooks.stats().failed, 1u);
  }
  spdlog::set_default_logger(previous);

  const std::string logs = captured.str();
  EXPECT_THAT(logs, HasSubstr("approvers-chat"));
  EXPECT_THAT(logs, HasSubstr("HTTP 502"));
  EXPECT_THAT(logs, HasSubstr("attempt 1/2"));
  EXPECT_THAT(logs, HasSubstr("attempt 2/2"));
  EXPECT_THAT(logs, Not(HasSubstr("HOOKSECRET")));
  EXPECT_THAT(logs, Not(HasSubstr("PATHSECRET")));
  EXPECT_THAT(logs, Not(HasSubstr("BODYMARKER")));
  EXPECT_THAT(logs, Not(HasSubstr("TEXTMARKER")));
}

}  // namespace
}  // namespace tracegate::notify
