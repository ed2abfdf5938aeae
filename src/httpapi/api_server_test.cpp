#include "httpapi/api_server.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <future>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

namespace tracegate::httpapi {
namespace {

namespace asio = boost::asio;

ApiResponse Answer(std::function<asio::awaitable<ApiResponse>()> handle) {
  asio::io_context context;
  ApiResponse out;
  bool done = false;
  asio::co_spawn(context, AnswerAlways("req-1", std::move(handle)),
                 [&](std::exception_ptr failure, ApiResponse response) {
                   EXPECT_FALSE(failure);
                   out = std::move(response);
                   done = true;
                 });
  context.run();
  EXPECT_TRUE(done);
  return out;
}

TEST(AnswerAlways, PassesAnAnswerThrough) {
  ApiResponse r = Answer(
      []() -> asio::awaitable<ApiResponse> { co_return ApiResponse{.status = 201, .body = "{}"}; });
  EXPECT_EQ(r.status, 201u);
  EXPECT_EQ(r.body, "{}");
}

TEST(AnswerAlways, AThrowingHandlerGetsA500WithTheRequestId) {
  ApiResponse r = Answer([]() -> asio::awaitable<ApiResponse> {
    // What strict dump() did with a stored invalid byte.
    (void)nlohmann::json("abc\xFF").dump();
    co_return ApiResponse{.status = 200};
  });
  EXPECT_EQ(r.status, 500u);
  const nlohmann::json body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["error"], "internal_error");
  EXPECT_EQ(body["request_id"], "req-1");
  // The exception's text is for the log only.
  EXPECT_EQ(r.body.find("invalid UTF-8"), std::string::npos);
}

TEST(AnswerAlways, ANonStdExceptionToo) {
  ApiResponse r = Answer([]() -> asio::awaitable<ApiResponse> {
    throw 42;
    co_return ApiResponse{.status = 200};
  });
  EXPECT_EQ(r.status, 500u);
}

// Issue 17 item 5: the service runs on a handler thread, never on the connection's I/O thread,
// and the coroutine resumes on its own executor with the answer (or the exception).
TEST(OnHandlerThread, RunsTheWorkOnThePoolAndResumesOnTheCaller) {
  asio::io_context context;
  asio::thread_pool pool(2);
  const std::thread::id io_thread = std::this_thread::get_id();
  std::thread::id worked_on;
  std::thread::id resumed_on;
  ApiResponse out;
  bool failed = false;
  // A named lambda: the coroutine refers to its captures, so it must outlive run().
  const std::function<ApiResponse()> work = [&] {
    worked_on = std::this_thread::get_id();
    return ApiResponse{.status = 201, .body = "{}"};
  };
  const std::function<ApiResponse()> bug = []() -> ApiResponse {
    throw std::runtime_error("handler bug");
  };
  auto client = [&]() -> asio::awaitable<void> {
    out = co_await OnHandlerThread(pool, work);
    resumed_on = std::this_thread::get_id();
    try {
      (void)co_await OnHandlerThread(pool, bug);
    } catch (const std::runtime_error&) {
      failed = true;
    }
  };
  asio::co_spawn(context, client(), asio::detached);
  context.run();
  pool.join();
  EXPECT_EQ(out.status, 201u);
  EXPECT_NE(worked_on, io_thread);
  EXPECT_EQ(resumed_on, io_thread);
  EXPECT_TRUE(failed);
}

// While one handler blocks, the I/O thread goes on serving: a second request is answered
// before the first one's work is released.
TEST(OnHandlerThread, ABlockedHandlerDoesNotHoldTheIoThread) {
  asio::io_context context;
  asio::thread_pool pool(2);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::vector<int> finished;
  const std::function<ApiResponse()> blocked = [released] {
    released.wait();
    return ApiResponse{};
  };
  const std::function<ApiResponse()> at_once = [] { return ApiResponse{}; };
  auto slow = [&]() -> asio::awaitable<void> {
    (void)co_await OnHandlerThread(pool, blocked);
    finished.push_back(1);
  };
  auto quick = [&]() -> asio::awaitable<void> {
    (void)co_await OnHandlerThread(pool, at_once);
    finished.push_back(2);
    release.set_value();  // only now may the slow one finish
  };
  asio::co_spawn(context, slow(), asio::detached);
  asio::co_spawn(context, quick(), asio::detached);
  context.run();
  pool.join();
  EXPECT_EQ(finished, (std::vector<int>{2, 1}));
}

}  // namespace
}  // namespace tracegate::httpapi
