#include "masking/json_lex.h"

#include <cstring>

#include "masking/validators.h"

namespace tracegate::masking {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// Index of the first '\\' at or after i, or n.
size_t FindBackslash(const char* s, size_t n, size_t i) {
  while (i + 16 <= n) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    int bits = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
    if (bits != 0) {
      return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(bits)));
    }
    i += 16;
  }
  while (i < n && s[i] != '\\') {
    ++i;
  }
  return i;
}

// Index of the first '"', '\\' or control byte at or after i, or n.
size_t FindSpecialTail(const char* s, size_t n, size_t i) {
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\' || c < 0x20) {
      return i;
    }
    ++i;
  }
  return n;
}

size_t FindSpecialSse2(const char* s, size_t n, size_t i) {
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i slash = _mm_set1_epi8('\\');
  const __m128i ctl = _mm_set1_epi8(0x1f);
  while (i + 16 <= n) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)),
                             _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v));
    int bits = _mm_movemask_epi8(m);
    if (bits != 0) {
      return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(bits)));
    }
    i += 16;
  }
  return FindSpecialTail(s, n, i);
}

__attribute__((target("avx2"))) size_t FindSpecialAvx2(const char* s, size_t n, size_t i) {
  const __m256i quote = _mm256_set1_epi8('"');
  const __m256i slash = _mm256_set1_epi8('\\');
  const __m256i ctl = _mm256_set1_epi8(0x1f);
  while (i + 32 <= n) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
    __m256i m =
        _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(v, quote), _mm256_cmpeq_epi8(v, slash)),
                        _mm256_cmpeq_epi8(_mm256_min_epu8(v, ctl), v));
    unsigned bits = static_cast<unsigned>(_mm256_movemask_epi8(m));
    if (bits != 0) {
      return i + static_cast<size_t>(__builtin_ctz(bits));
    }
    i += 32;
  }
  return FindSpecialSse2(s, n, i);
}

size_t (*PickFindSpecial())(const char*, size_t, size_t) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") ? FindSpecialAvx2 : FindSpecialSse2;
}

int Hex4(const char* p) {
  int v = 0;
  for (int k = 0; k < 4; ++k) {
    char c = p[k];
    int d = IsDigit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : c - 'A' + 10;
    v = v * 16 + d;
  }
  return v;
}

char* PutUtf8(char* w, uint32_t cp) {
  if (cp < 0x80) {
    *w++ = static_cast<char>(cp);
  } else if (cp < 0x800) {
    *w++ = static_cast<char>(0xc0 | (cp >> 6));
    *w++ = static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    *w++ = static_cast<char>(0xe0 | (cp >> 12));
    *w++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    *w++ = static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    *w++ = static_cast<char>(0xf0 | (cp >> 18));
    *w++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    *w++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    *w++ = static_cast<char>(0x80 | (cp & 0x3f));
  }
  return w;
}

}  // namespace

size_t (*const FindSpecial)(const char*, size_t, size_t) = PickFindSpecial();

void DecodeString(const char* p, size_t n, std::string& out) {
  // The decoded form is never longer than the escaped one: write in place, trim after.
  size_t base = out.size();
  out.resize(base + n);
  char* w = out.data() + base;
  size_t i = 0;
  while (i < n) {
    size_t k = FindBackslash(p, n, i);
    std::memcpy(w, p + i, k - i);
    w += k - i;
    if (k >= n) {
      break;
    }
    char e = p[k + 1];
    i = k + 2;
    switch (e) {
      case 'b':
        *w++ = '\b';
        break;
      case 'f':
        *w++ = '\f';
        break;
      case 'n':
        *w++ = '\n';
        break;
      case 'r':
        *w++ = '\r';
        break;
      case 't':
        *w++ = '\t';
        break;
      case 'u': {
        uint32_t cp = static_cast<uint32_t>(Hex4(p + k + 2));
        i = k + 6;
        if (cp >= 0xd800 && cp <= 0xdbff && i + 6 <= n && p[i] == '\\' && p[i + 1] == 'u') {
          uint32_t lo = static_cast<uint32_t>(Hex4(p + i + 2));
          if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
          }
        }
        if (cp >= 0xd800 && cp <= 0xdfff) {
          cp = 0xfffd;
        }
        w = PutUtf8(w, cp);
        break;
      }
      default:  // '"', '\\', '/'
        *w++ = e;
        break;
    }
  }
  out.resize(static_cast<size_t>(w - out.data()));
}

void DecodeInto(const char* p, size_t n, bool escaped, std::string& out) {
  if (escaped) {
    DecodeString(p, n, out);
  } else {
    out.append(p, n);
  }
}

bool RawMayBeJson(const char* p, size_t n) {
  size_t b = 0;
  while (b < n && IsWs(p[b])) {
    ++b;
  }
  size_t e = n;
  while (e > b && IsWs(p[e - 1])) {
    --e;
  }
  if (e - b < 2) {
    return false;
  }
  char f = p[b];
  char l = p[e - 1];
  return (f == '{' || f == '[' || f == '\\') && (l == '}' || l == ']' || l == '"' || l == 'n');
}

bool LooksLikeJson(std::string_view t) {
  size_t b = 0;
  while (b < t.size() && IsWs(t[b])) {
    ++b;
  }
  size_t e = t.size();
  while (e > b && IsWs(t[e - 1])) {
    --e;
  }
  if (e - b < 2) {
    return false;
  }
  char f = t[b];
  char l = t[e - 1];
  return (f == '{' && l == '}') || (f == '[' && l == ']') || (f == '"' && l == '"');
}

void AppendJsonString(std::string& out, std::string_view v) {
  out += '"';
  size_t i = 0;
  while (i < v.size()) {
    size_t k = FindSpecial(v.data(), v.size(), i);
    out.append(v.data() + i, k - i);
    if (k >= v.size()) {
      break;
    }
    unsigned char u = static_cast<unsigned char>(v[k]);
    switch (v[k]) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        out += "\\u00";
        out += kHexDigits[u >> 4];
        out += kHexDigits[u & 0xf];
    }
    i = k + 1;
  }
  out += '"';
}

}  // namespace tracegate::masking
