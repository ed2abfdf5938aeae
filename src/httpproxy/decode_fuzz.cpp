// Fuzzes DecodeBody: the first byte picks the Content-Encoding (identity, gzip, deflate or one
// zlib cannot read), the rest is the store's body. Traps when a result breaks the contract:
// more than the limit returned, an error code the header does not list, identity not returned
// byte for byte, an unreadable encoding not refused, or a result that depends on the limit
// other than by ResourceExhausted.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "httpproxy/decode.h"

namespace {

using tracegate::httpproxy::DecodeBody;

constexpr uint64_t kLimit = 64 * 1024;
// A small limit too, so short inputs reach the "buffer full at the limit" path.
constexpr uint64_t kSmallLimit = 64;

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

bool Documented(absl::StatusCode code) {
  return code == absl::StatusCode::kFailedPrecondition ||
         code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kResourceExhausted;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  static constexpr std::string_view kEncodings[] = {
      "", "gzip", "deflate", "br", "identity", " X-GZIP", "DEFLATE ", "gzip, gzip"};
  const std::string_view encoding = kEncodings[data[0] % 8];
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);

  absl::StatusOr<std::string> big = DecodeBody(encoding, body, kLimit);
  absl::StatusOr<std::string> small = DecodeBody(encoding, body, kSmallLimit);
  for (const absl::StatusOr<std::string>* result : {&big, &small}) {
    Check(result->ok() || Documented(result->status().code()));
  }
  if (big.ok()) {
    Check(big->size() <= kLimit);
  }
  if (small.ok()) {
    Check(small->size() <= kSmallLimit);
    // What fits the small limit fits the large one, decoded the same.
    Check(big.ok() && *big == *small);
  } else if (small.status().code() != absl::StatusCode::kResourceExhausted) {
    // Only the size may depend on the limit: a refused encoding or a broken body is refused
    // alike under both.
    Check(!big.ok() && big.status().code() == small.status().code());
  }
  if (encoding == "" || encoding == "identity") {
    Check(big.ok() == (body.size() <= kLimit));
    if (big.ok()) {
      Check(*big == body);
    }
  }
  if (encoding == "br" || encoding == "gzip, gzip") {
    Check(!big.ok() && big.status().code() == absl::StatusCode::kFailedPrecondition);
  }
  return 0;
}
