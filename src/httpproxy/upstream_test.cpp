// UpstreamClient against a resolver that never answers (getaddrinfo is interposed in this
// binary, so names under .hang.test block, as a DNS server that drops queries makes glibc do
// for timeout × attempts seconds, until the test releases them) and against a canned store on
// loopback: interim answers, close-delimited bodies, error answers in unreadable encodings, and
// an exchange cut while it waits.
#include "httpproxy/upstream.h"

#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netdb.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string_view>

#include "common/status.h"
#include "common/strings.h"

namespace {

std::mutex g_mu;
std::condition_variable g_cv;
bool g_release = false;         // guarded by g_mu
std::atomic<int> g_hanging{0};  // lookups that blocked

void ReleaseHangingLookups() {
  std::lock_guard lock(g_mu);
  g_release = true;
  g_cv.notify_all();
}

}  // namespace

extern "C" int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                           struct addrinfo** res) noexcept {
  if (node != nullptr && std::string_view(node).ends_with(".hang.test")) {
    ++g_hanging;
    std::unique_lock lock(g_mu);
    g_cv.wait_for(lock, std::chrono::seconds(30), [] { return g_release; });
    return EAI_AGAIN;
  }
  using Fn = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "getaddrinfo"));
  return real(node, service, hints, res);
}

namespace tracegate::httpproxy {
namespace {

namespace asio = boost::asio;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST(UpstreamClientTest, ResolvingTheStoresHostHasADeadline) {
  {
    std::lock_guard lock(g_mu);
    g_release = false;  // --gtest_repeat
  }
  g_hanging = 0;
  config::HttpUpstream upstream;
  upstream.url = "http://store.hang.test";
  upstream.host = "store.hang.test";
  upstream.port = 80;
  upstream.connect_timeout = 300ms;
  upstream.timeout = 2s;
  asio::io_context io;
  std::optional<absl::StatusOr<UpstreamResponse>> result;
  std::chrono::steady_clock::duration took{};
  {
    UpstreamClient client(io.get_executor(), upstream, nullptr);
    const auto started = std::chrono::steady_clock::now();
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          result = co_await client.Get("/api/public/traces/t1");
          took = std::chrono::steady_clock::now() - started;
          io.stop();  // the hung lookup still counts as work
        },
        asio::detached);
    io.run_for(5s);
  }
  ReleaseHangingLookups();
  EXPECT_EQ(g_hanging.load(), 1);
  ASSERT_TRUE(result.has_value()) << "Get waited for the resolver past every deadline";
  EXPECT_LT(took, 1500ms);
  ASSERT_FALSE(result->ok());
  EXPECT_EQ(result->status().code(), absl::StatusCode::kUnavailable) << result->status();
  EXPECT_THAT(std::string(MessageOf(result->status())), HasSubstr("store.hang.test"));
  EXPECT_THAT(std::string(MessageOf(result->status())), HasSubstr("timed out"));
}

// A store on loopback that answers every request on every connection with the same bytes
// (nothing when `answer` is empty), half-closing after each answer when `half_close`. It
// counts the requests it reads, per connection.
class CannedStore {
 public:
  CannedStore(asio::io_context& io, std::string answer, bool half_close)
      : acceptor_(io, {asio::ip::make_address("127.0.0.1"), 0}),
        answer_(std::move(answer)),
        half_close_(half_close) {
    asio::co_spawn(io, Accept(), asio::detached);
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int connections = 0;
  int requests = 0;
  int requests_after_half_close = 0;

 private:
  asio::awaitable<void> Accept() {
    for (;;) {
      boost::system::error_code ec;
      asio::ip::tcp::socket socket =
          co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      ++connections;
      asio::co_spawn(acceptor_.get_executor(), Serve(std::move(socket)), asio::detached);
    }
  }
  asio::awaitable<void> Serve(asio::ip::tcp::socket socket) {
    std::string buffer;
    bool half_closed = false;
    for (;;) {
      boost::system::error_code ec;
      const size_t n =
          co_await asio::async_read_until(socket, asio::dynamic_buffer(buffer), "\r\n\r\n",
                                          asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      buffer.erase(0, n);
      ++requests;
      if (half_closed) {
        ++requests_after_half_close;
        continue;
      }
      if (answer_.empty()) {
        continue;  // never answers
      }
      co_await asio::async_write(socket, asio::buffer(answer_),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (half_close_) {
        socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        half_closed = true;
      }
    }
  }
  asio::ip::tcp::acceptor acceptor_;
  std::string answer_;
  bool half_close_;
};

config::HttpUpstream LoopbackUpstream(uint16_t port) {
  config::HttpUpstream upstream;
  upstream.url = Cat("http://127.0.0.1:", port);
  upstream.host = "127.0.0.1";
  upstream.port = port;
  upstream.connect_timeout = 1s;
  upstream.timeout = 2s;
  upstream.max_response_bytes = 1 << 20;
  return upstream;
}

// Asks `client` for `gets` traces one after the other; returns the last answer.
absl::StatusOr<UpstreamResponse> GetAll(asio::io_context& io, UpstreamClient& client, int gets,
                                        ExchangeCut* cut = nullptr) {
  std::optional<absl::StatusOr<UpstreamResponse>> result;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < gets; ++i) {
          result = co_await client.Get(Cat("/api/public/traces/t", i), cut);
        }
        io.stop();
      },
      asio::detached);
  io.run_for(5s);
  io.restart();
  if (!result) {
    return absl::DeadlineExceededError("the test's own deadline passed");
  }
  return *std::move(result);
}

constexpr std::string_view kJsonAnswer =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
    "{\"id\":\"t0\"}";

TEST(UpstreamClientTest, AnAnswerWithALengthIsKeptAlive) {
  asio::io_context io;
  CannedStore store(io, std::string(kJsonAnswer), false);
  const config::HttpUpstream upstream = LoopbackUpstream(store.port());
  UpstreamClient client(io.get_executor(), upstream, nullptr);
  absl::StatusOr<UpstreamResponse> got = GetAll(io, client, 3);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->body, "{\"id\":\"t0\"}");
  EXPECT_EQ(store.connections, 1);
  EXPECT_EQ(store.requests, 3);
  EXPECT_EQ(client.idle_connections(), 1u);
}

TEST(UpstreamClientTest, InterimAnswersAreSkipped) {
  asio::io_context io;
  CannedStore store(
      io,
      Cat("HTTP/1.1 100 Continue\r\n\r\n",
          "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", kJsonAnswer),
      false);
  const config::HttpUpstream upstream = LoopbackUpstream(store.port());
  UpstreamClient client(io.get_executor(), upstream, nullptr);
  absl::StatusOr<UpstreamResponse> got = GetAll(io, client, 2);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status, 200u);
  EXPECT_EQ(got->body, "{\"id\":\"t0\"}");
  EXPECT_EQ(store.connections, 1);  // and the connection stayed in step
  EXPECT_EQ(client.idle_connections(), 1u);
}

TEST(UpstreamClientTest, SwitchingProtocolsAndEndlessInterimAnswersAreRefused) {
  std::string endless;
  for (int i = 0; i < 9; ++i) {
    endless += "HTTP/1.1 100 Continue\r\n\r\n";
  }
  for (const std::string& answer :
       {Cat("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", kJsonAnswer),
        Cat(endless, kJsonAnswer)}) {
    asio::io_context io;
    CannedStore store(io, answer, false);
    const config::HttpUpstream upstream = LoopbackUpstream(store.port());
    UpstreamClient client(io.get_executor(), upstream, nullptr);
    absl::StatusOr<UpstreamResponse> got = GetAll(io, client, 1);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();
    EXPECT_EQ(client.idle_connections(), 0u);
  }
}

// No Content-Length, not chunked: the body ends with the connection, which is then finished
// even though the header did not say "close".
TEST(UpstreamClientTest, AConnectionWhoseBodyEndedItIsNotKeptAlive) {
  asio::io_context io;
  CannedStore store(io, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"id\":\"t0\"}",
                    true);
  const config::HttpUpstream upstream = LoopbackUpstream(store.port());
  UpstreamClient client(io.get_executor(), upstream, nullptr);
  absl::StatusOr<UpstreamResponse> first = GetAll(io, client, 1);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->body, "{\"id\":\"t0\"}");
  EXPECT_EQ(client.idle_connections(), 0u);
  absl::StatusOr<UpstreamResponse> second = GetAll(io, client, 1);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(store.connections, 2);
  EXPECT_EQ(store.requests_after_half_close, 0);
}

// An error answer's body is never forwarded, so it is neither read nor decoded.
TEST(UpstreamClientTest, AnErrorAnswerInAnUnreadableEncodingKeepsItsStatus) {
  asio::io_context io;
  CannedStore store(io,
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                    "Content-Encoding: br\r\nContent-Length: 9\r\n\r\n\xff\xfe garbage",
                    false);
  const config::HttpUpstream upstream = LoopbackUpstream(store.port());
  UpstreamClient client(io.get_executor(), upstream, nullptr);
  absl::StatusOr<UpstreamResponse> got = GetAll(io, client, 1);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status, 404u);
  EXPECT_EQ(got->body, "");
  EXPECT_EQ(client.idle_connections(), 0u);  // its body is unread
}

TEST(UpstreamClientTest, ACutEndsTheExchangeAtOnce) {
  asio::io_context io;
  CannedStore store(io, "", false);  // reads the request, never answers
  const config::HttpUpstream upstream = LoopbackUpstream(store.port());
  UpstreamClient client(io.get_executor(), upstream, nullptr);
  ExchangeCut cut;
  asio::steady_timer later(io, 200ms);
  later.async_wait([&](boost::system::error_code) { cut.Cut("grant g1 was revoked"); });
  const auto started = std::chrono::steady_clock::now();
  absl::StatusOr<UpstreamResponse> got = GetAll(io, client, 1, &cut);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kCancelled) << got.status();
  EXPECT_EQ(MessageOf(got.status()), "grant g1 was revoked");
  EXPECT_EQ(store.requests, 1);
  EXPECT_EQ(client.idle_connections(), 0u);
}

}  // namespace
}  // namespace tracegate::httpproxy
