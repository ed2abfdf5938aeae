#pragma once
// application/x-www-form-urlencoded encoding (private to identity): introspection requests
// and, per RFC 6749 §2.3.1, the client id and secret inside HTTP Basic credentials.

#include <string>
#include <string_view>

namespace tracegate::identity {

// Unreserved characters (A-Z a-z 0-9 - . _ ~) stay; space becomes '+'; the rest %XX.
[[nodiscard]] std::string FormUrlEncode(std::string_view text);

}  // namespace tracegate::identity
