#pragma once
// Text that came from a caller or from the store, made safe where it goes next: a log line
// (LogEscape), a JSON answer (DumpJson), or a grant (ValidateTraceId).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace tracegate {

// A trace id is 1..kMaxTraceIdBytes bytes of valid UTF-8 without control characters (C0
// including NUL and CR/LF, DEL, C1) or invisible format characters (IsInvisibleFormat: line
// and paragraph separators, bidi controls, zero-width characters). Every entry point that takes a
// trace id checks it with ValidateTraceId before anything is stored, logged raw or sent to a
// backend.
inline constexpr size_t kMaxTraceIdBytes = 256;

// The stable error code callers get for a refused trace id (HTTP 400).
inline constexpr std::string_view kInvalidTraceIdCode = "invalid_trace_id";

// OK, or InvalidArgument with a message that never repeats the offending bytes.
[[nodiscard]] absl::Status ValidateTraceId(std::string_view trace_id);

// C0 (including NUL, CR, LF, ESC), DEL and C1 (U+0080..U+009F, among them NEL and CSI).
[[nodiscard]] bool IsControlCodePoint(uint32_t cp);

// Characters that change how the text around them is shown without being seen themselves:
// U+2028/U+2029 (line / paragraph separator), the bidi controls (U+061C, U+200E/F,
// U+202A..U+202E, U+2066..U+2069, the "Trojan Source" set), zero-width characters (U+200B..
// U+200D, U+2060, U+FEFF). Refused in trace ids, escaped in logs and on terminals.
[[nodiscard]] bool IsInvisibleFormat(uint32_t cp);

// True when `text` is valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
[[nodiscard]] bool IsValidUtf8(std::string_view text);

// `text` for a log line: valid UTF-8 printable characters pass unchanged; backslash becomes
// \\, control characters (C0, DEL, C1), invisible format characters and every byte that is not part
// of valid UTF-8 become \xNN (so CR/LF cannot start a forged line and an invalid byte stays
// visible). Cut to `max_bytes` input bytes, marked with "...".
[[nodiscard]] std::string LogEscape(std::string_view text, size_t max_bytes = 256);

// `text` for a terminal, whole (not cut): LF passes, so lines stay lines; every other control
// character (CR, ESC, BEL, C1 …), invisible format character and byte that is not valid
// UTF-8 is written as \xNN (C0, DEL, invalid bytes) or \uNNNN (C1, format characters), so
// nothing recorded can move the cursor, set a title, write the clipboard (OSC 52) or clear the
// screen. Backslashes are left alone: the result is for reading, not for parsing back.
// `*escaped` (if given) gets how many characters were escaped.
[[nodiscard]] std::string TerminalEscape(std::string_view text, size_t* escaped = nullptr);

// Serialized JSON (valid UTF-8, as DumpJson writes it) with every C1 control and invisible
// format character written as a \uNNNN escape. Outside strings JSON text is ASCII, so the
// document parses to the same value; C0 is already escaped by any JSON writer. For JSON that
// may be shown on a terminal (`audit replay --format json`).
[[nodiscard]] std::string JsonEscapeInvisible(std::string_view json_text);

}  // namespace tracegate
