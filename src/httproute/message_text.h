#pragma once
// Private to httproute: how a value the caller or the store supplied (a path, a trace id, a
// parameter name) appears in a refusal message. Messages end up in JSON bodies and log lines,
// so the text is kept printable ASCII and short.
#include <cstddef>
#include <string>
#include <string_view>

namespace tracegate::httproute {

// `text` with bytes outside printable ASCII, '\\' and '\'' written as \xHH, cut after
// `max_bytes` input bytes ("abc... (300 bytes)").
std::string EscapeForMessage(std::string_view text, size_t max_bytes = 128);

// The same between single quotes ("'abc...' (300 bytes)").
std::string QuoteForMessage(std::string_view text, size_t max_bytes = 128);

}  // namespace tracegate::httproute
