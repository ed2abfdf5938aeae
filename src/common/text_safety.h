#pragma once
// Text that came from a caller or from the store, made safe where it goes next: a log line
// (LogEscape), a JSON answer (DumpJson), or a grant (ValidateTraceId).

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace tracegate {

// A trace id is 1..kMaxTraceIdBytes bytes of valid UTF-8 without control characters (C0
// including NUL and CR/LF, DEL, C1). Every entry point that takes a trace id checks it with
// ValidateTraceId before anything is stored, logged raw or sent to a backend.
inline constexpr size_t kMaxTraceIdBytes = 256;

// The stable error code callers get for a refused trace id (HTTP 400).
inline constexpr std::string_view kInvalidTraceIdCode = "invalid_trace_id";

// OK, or InvalidArgument with a message that never repeats the offending bytes.
[[nodiscard]] absl::Status ValidateTraceId(std::string_view trace_id);

// True when `text` is valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
[[nodiscard]] bool IsValidUtf8(std::string_view text);

// `text` for a log line: valid UTF-8 printable characters pass unchanged; backslash becomes
// \\, control characters (C0, DEL, C1) and every byte that is not part of valid UTF-8 become
// \xNN (so CR/LF cannot start a forged line and an invalid byte stays visible). Cut to
// `max_bytes` input bytes, marked with "...".
[[nodiscard]] std::string LogEscape(std::string_view text, size_t max_bytes = 256);

}  // namespace tracegate
