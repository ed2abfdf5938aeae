#include "common/text_safety.h"

#include <fmt/format.h>

#include <cstdint>

#include "common/strings.h"

namespace tracegate {

namespace {

// The length of the valid UTF-8 sequence at text[i], or 0 if none starts there; `*code` gets
// its code point.
size_t Utf8SequenceAt(std::string_view text, size_t i, uint32_t* code) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  if (b0 < 0x80) {
    *code = b0;
    return 1;
  }
  size_t len = 0;
  uint32_t cp = 0;
  uint32_t min = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1F;
    min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0F;
    min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > text.size()) {
    return 0;
  }
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xC0) != 0x80) {
      return 0;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  *code = cp;
  return len;
}

}  // namespace

bool IsControlCodePoint(uint32_t cp) { return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); }

bool IsInvisibleFormat(uint32_t cp) {
  return cp == 0x061C || (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202E) ||
         (cp >= 0x2060 && cp <= 0x2069) || cp == 0xFEFF;
}

bool IsValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const size_t len = Utf8SequenceAt(text, i, &cp);
    if (len == 0) {
      return false;
    }
    i += len;
  }
  return true;
}

absl::Status ValidateTraceId(std::string_view trace_id) {
  if (trace_id.empty()) {
    return absl::InvalidArgumentError("the trace id is empty");
  }
  if (trace_id.size() > kMaxTraceIdBytes) {
    return absl::InvalidArgumentError(
        Cat("the trace id is longer than ", kMaxTraceIdBytes, " bytes"));
  }
  for (size_t i = 0; i < trace_id.size();) {
    uint32_t cp = 0;
    const size_t len = Utf8SequenceAt(trace_id, i, &cp);
    if (len == 0) {
      return absl::InvalidArgumentError("the trace id is not valid UTF-8");
    }
    if (IsControlCodePoint(cp)) {
      return absl::InvalidArgumentError("the trace id contains a control character");
    }
    if (IsInvisibleFormat(cp)) {
      return absl::InvalidArgumentError(
          "the trace id contains an invisible format character (bidi control, line separator "
          "or zero-width)");
    }
    i += len;
  }
  return absl::OkStatus();
}

std::string LogEscape(std::string_view text, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 8);
  for (size_t i = 0; i < text.size();) {
    if (i >= max_bytes) {
      out += "...";
      break;
    }
    uint32_t cp = 0;
    const size_t len = Utf8SequenceAt(text, i, &cp);
    if (len == 0 || IsControlCodePoint(cp) || IsInvisibleFormat(cp)) {
      // An invalid byte, a control character (one byte for C0/DEL, two for C1) or an invisible
      // format character (three bytes).
      const size_t n = len == 0 ? 1 : len;
      for (size_t k = 0; k < n; ++k) {
        out += fmt::format("\\x{:02X}", static_cast<unsigned char>(text[i + k]));
      }
      i += n;
      continue;
    }
    if (cp == '\\') {
      out += "\\\\";
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::string TerminalEscape(std::string_view text, size_t* escaped) {
  std::string out;
  out.reserve(text.size());
  size_t count = 0;
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const size_t len = Utf8SequenceAt(text, i, &cp);
    if (len == 0) {
      out += fmt::format("\\x{:02X}", static_cast<unsigned char>(text[i]));
      ++count;
      i += 1;
      continue;
    }
    if (cp != '\n' && (IsControlCodePoint(cp) || IsInvisibleFormat(cp))) {
      out += cp < 0x80 ? fmt::format("\\x{:02X}", cp) : fmt::format("\\u{:04X}", cp);
      ++count;
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  if (escaped != nullptr) {
    *escaped = count;
  }
  return out;
}

std::string JsonEscapeInvisible(std::string_view json_text) {
  std::string out;
  out.reserve(json_text.size());
  for (size_t i = 0; i < json_text.size();) {
    uint32_t cp = 0;
    size_t len = Utf8SequenceAt(json_text, i, &cp);
    if (len == 0) {
      len = 1;  // not valid UTF-8: left as it is (the caller's JSON is supposed to be valid)
    } else if (cp >= 0x80 && (IsControlCodePoint(cp) || IsInvisibleFormat(cp))) {
      out += fmt::format("\\u{:04x}", cp);
      i += len;
      continue;
    }
    out.append(json_text.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace tracegate
