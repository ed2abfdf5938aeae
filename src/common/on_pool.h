#pragma once
// Runs blocking work (libpq, SQLite, an IdP call) on a thread pool and resumes the awaiting
// coroutine on its own executor: `T result = co_await OnPool<T>(pool, work);`.
//
// Not a coroutine on purpose: g++ 12 mishandles class objects (by-value parameters,
// temporaries) that live across a co_await, so OnPool only builds the initiation and returns
// Asio's awaitable; the work is copied into the posted function, outside any coroutine frame.
// An exception from `work` is rethrown in the awaiting coroutine.

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <functional>
#include <utility>

namespace tracegate {

template <typename T>
struct OnPoolInitiation {
  boost::asio::thread_pool* pool;
  std::function<T()> work;

  template <typename Handler>
  void operator()(Handler handler) {
    namespace asio = boost::asio;
    // The awaiting coroutine's executor counts this as work until the answer is posted back.
    auto home = asio::prefer(asio::get_associated_executor(handler),
                             asio::execution::outstanding_work.tracked);
    asio::post(*pool, [handler = std::move(handler), work = std::move(work),
                       home = std::move(home)]() mutable {
      std::exception_ptr failure;
      T answer{};
      try {
        answer = work();
      } catch (...) {
        failure = std::current_exception();
      }
      asio::post(home,
                 [handler = std::move(handler), failure, answer = std::move(answer)]() mutable {
                   std::move(handler)(failure, std::move(answer));
                 });
    });
  }
};

template <typename T>
boost::asio::awaitable<T> OnPool(boost::asio::thread_pool& pool, const std::function<T()>& work) {
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                     void(std::exception_ptr, T)>(OnPoolInitiation<T>{&pool, work},
                                                                  boost::asio::use_awaitable);
}

}  // namespace tracegate
