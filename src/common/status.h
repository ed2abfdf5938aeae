#pragma once
// Error-handling helpers shared by every module. The data path never throws: functions
// return absl::Status / absl::StatusOr<T>, marked [[nodiscard]] by their types.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status); returns it from the current function if not ok.
#define TG_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status tg_status_ = (expr);      \
    if (!tg_status_.ok()) return tg_status_; \
  } while (0)

#define TG_CONCAT_INNER(a, b) a##b
#define TG_CONCAT(a, b) TG_CONCAT_INNER(a, b)

// TG_ASSIGN_OR_RETURN(auto x, StatusOrExpr()): binds the value or returns the error.
#define TG_ASSIGN_OR_RETURN(lhs, expr) \
  TG_ASSIGN_OR_RETURN_IMPL(TG_CONCAT(tg_statusor_, __LINE__), lhs, expr)
#define TG_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

// The same two, for coroutines (co_return instead of return).
#define TG_CO_RETURN_IF_ERROR(expr)             \
  do {                                          \
    ::absl::Status tg_status_ = (expr);         \
    if (!tg_status_.ok()) co_return tg_status_; \
  } while (0)
#define TG_CO_ASSIGN_OR_RETURN(lhs, expr) \
  TG_CO_ASSIGN_OR_RETURN_IMPL(TG_CONCAT(tg_statusor_, __LINE__), lhs, expr)
#define TG_CO_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) co_return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

#include <string_view>

namespace tracegate {

// Debian's Abseil is built with its own string_view; this bridges a status message to
// std::string_view (and so to fmt) without a copy.
inline std::string_view MessageOf(const ::absl::Status& status) {
  return {status.message().data(), status.message().size()};
}

}  // namespace tracegate
