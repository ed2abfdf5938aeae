// UpstreamClient against a resolver that never answers: getaddrinfo is interposed in this
// binary, so names under .hang.test block (as a DNS server that drops queries makes glibc do
// for timeout × attempts seconds) until the test releases them.
#include "httpproxy/upstream.h"

#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netdb.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string_view>

#include "common/status.h"

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

}  // namespace
}  // namespace tracegate::httpproxy
