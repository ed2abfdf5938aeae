#pragma once
// Text that came from a token or an IdP, made safe for an error message or a log line.

#include <chrono>
#include <string>
#include <string_view>

namespace tracegate::identity {

// Quotes `text`, escapes quotes, backslashes and anything outside printable ASCII as \xNN,
// and cuts it to `max_chars` input characters (marked with "..."). For untrusted values such
// as `kid` or an unknown `iss`; never pass a token or a secret.
[[nodiscard]] std::string LogSafe(std::string_view text, size_t max_chars = 64);

// "2026-11-27T10:00:00Z".
[[nodiscard]] std::string FormatUtc(std::chrono::system_clock::time_point t);

}  // namespace tracegate::identity
