#include "httpapi/api_server.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>
#include <stdexcept>

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

}  // namespace
}  // namespace tracegate::httpapi
