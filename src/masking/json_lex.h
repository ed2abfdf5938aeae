#pragma once
// JSON lexing helpers shared by the walker and the emitter: whitespace skipping, string
// scanning with SIMD, escape decoding, re-encoding, and quick JSON-likeness checks.

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tracegate::masking {

inline bool IsWs(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

inline size_t SkipWs(const char* s, size_t n, size_t i) {
  if (i < n && !IsWs(s[i])) {
    return i;
  }
  // Indentation of pretty-printed JSON: 16 bytes at a time.
  while (i + 16 <= n) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    __m128i ws = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(' ')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\n'))),
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\r')),
                     _mm_cmpeq_epi8(v, _mm_set1_epi8('\t'))));
    unsigned non_ws = ~static_cast<unsigned>(_mm_movemask_epi8(ws)) & 0xffffu;
    if (non_ws != 0) {
      return i + static_cast<size_t>(__builtin_ctz(non_ws));
    }
    i += 16;
  }
  while (i < n && IsWs(s[i])) {
    ++i;
  }
  return i;
}

// Index of the first '"', '\\' or control byte at or after i, or n (AVX2 when available).
extern size_t (*const FindSpecial)(const char* s, size_t n, size_t i);

// Decodes the content of a validated JSON string (between the quotes) onto `out`. A lone
// surrogate becomes U+FFFD: RFC 8259 allows it syntactically, UTF-8 cannot hold it.
void DecodeString(const char* p, size_t n, std::string& out);
// Appends the content as is when it has no escapes, else decoded.
void DecodeInto(const char* p, size_t n, bool escaped, std::string& out);
// Appends `v` as a JSON string literal (quotes, escapes for '"', '\\' and control bytes).
void AppendJsonString(std::string& out, std::string_view v);

// Whether raw string content might decode to a JSON document: it starts with '{', '[' or
// an escape (\" of a string literal, \n before a brace) and ends with '}', ']', '"' or 'n'.
bool RawMayBeJson(const char* p, size_t n);
// Whether decoded text is shaped like a JSON object, array or string literal.
bool LooksLikeJson(std::string_view t);

}  // namespace tracegate::masking
