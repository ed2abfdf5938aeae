#include "masking/class_scanner.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "masking/validators.h"

namespace tracegate::masking {
namespace {

constexpr int kMaxGroups = 16;

bool IsNumSep(char c) {
  return c == ' ' || c == '-' || c == '.' || c == '/' || c == '(' || c == ')';
}

struct Group {
  uint32_t begin;
  uint32_t end;
};

// One numeric token: digit groups and the 1–2 separator bytes between them.
struct Token {
  Group g[kMaxGroups];
  int n = 0;
  bool plus = false;   // '+' right before the first group
  bool paren = false;  // '(' before the first group and ')' after it: an area code
};

struct Masks {
  uint64_t digit = 0;
  uint64_t colon = 0;
  uint64_t dash = 0;
  uint64_t word = 0;   // letters, digits, '_', non-ASCII (IsWordByte)
  uint64_t upper = 0;  // A-Z
};

// Digit, ':' and '-' bit masks of 64 bytes, in three widths chosen once at run time.
Masks BlockSse2(const char* p) {
  const __m128i zero = _mm_set1_epi8('0');
  const __m128i nine = _mm_set1_epi8(9);
  const __m128i colon = _mm_set1_epi8(':');
  const __m128i dash = _mm_set1_epi8('-');
  Masks m;
  for (int k = 0; k < 4; ++k) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
    __m128i t = _mm_sub_epi8(v, zero);
    __m128i d = _mm_cmpeq_epi8(_mm_min_epu8(t, nine), t);
    auto bits = [](__m128i x) {
      return static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(x)));
    };
    __m128i up = _mm_sub_epi8(v, _mm_set1_epi8('A'));
    __m128i is_up = _mm_cmpeq_epi8(_mm_min_epu8(up, _mm_set1_epi8(25)), up);
    __m128i lo = _mm_sub_epi8(_mm_or_si128(v, _mm_set1_epi8(0x20)), _mm_set1_epi8('a'));
    __m128i is_alpha = _mm_cmpeq_epi8(_mm_min_epu8(lo, _mm_set1_epi8(25)), lo);
    __m128i word = _mm_or_si128(_mm_or_si128(d, is_alpha), _mm_cmpeq_epi8(v, _mm_set1_epi8('_')));
    m.digit |= bits(d) << (16 * k);
    m.colon |= bits(_mm_cmpeq_epi8(v, colon)) << (16 * k);
    m.dash |= bits(_mm_cmpeq_epi8(v, dash)) << (16 * k);
    m.word |= (bits(word) | bits(v)) << (16 * k);  // movemask of v: bytes >= 0x80
    m.upper |= bits(is_up) << (16 * k);
  }
  return m;
}

__attribute__((target("avx2"))) Masks BlockAvx2(const char* p) {
  const __m256i zero = _mm256_set1_epi8('0');
  const __m256i nine = _mm256_set1_epi8(9);
  const __m256i colon = _mm256_set1_epi8(':');
  const __m256i dash = _mm256_set1_epi8('-');
  Masks m;
  for (int k = 0; k < 2; ++k) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * k));
    __m256i t = _mm256_sub_epi8(v, zero);
    __m256i d = _mm256_cmpeq_epi8(_mm256_min_epu8(t, nine), t);
    uint32_t dm = static_cast<uint32_t>(_mm256_movemask_epi8(d));
    uint32_t cm = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, colon)));
    uint32_t hm = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, dash)));
    __m256i up = _mm256_sub_epi8(v, _mm256_set1_epi8('A'));
    __m256i is_up = _mm256_cmpeq_epi8(_mm256_min_epu8(up, _mm256_set1_epi8(25)), up);
    __m256i lo = _mm256_sub_epi8(_mm256_or_si256(v, _mm256_set1_epi8(0x20)), _mm256_set1_epi8('a'));
    __m256i is_alpha = _mm256_cmpeq_epi8(_mm256_min_epu8(lo, _mm256_set1_epi8(25)), lo);
    __m256i word =
        _mm256_or_si256(_mm256_or_si256(d, is_alpha), _mm256_cmpeq_epi8(v, _mm256_set1_epi8('_')));
    uint32_t wm = static_cast<uint32_t>(_mm256_movemask_epi8(word)) |
                  static_cast<uint32_t>(_mm256_movemask_epi8(v));
    uint32_t um = static_cast<uint32_t>(_mm256_movemask_epi8(is_up));
    m.digit |= static_cast<uint64_t>(dm) << (32 * k);
    m.colon |= static_cast<uint64_t>(cm) << (32 * k);
    m.dash |= static_cast<uint64_t>(hm) << (32 * k);
    m.word |= static_cast<uint64_t>(wm) << (32 * k);
    m.upper |= static_cast<uint64_t>(um) << (32 * k);
  }
  return m;
}

__attribute__((target("avx512f,avx512bw"))) Masks BlockAvx512(const char* p) {
  __m512i v = _mm512_loadu_si512(p);
  __m512i t = _mm512_sub_epi8(v, _mm512_set1_epi8('0'));
  Masks m;
  m.digit = _mm512_cmple_epu8_mask(t, _mm512_set1_epi8(9));
  m.colon = _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(':'));
  m.dash = _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('-'));
  m.upper = _mm512_cmple_epu8_mask(_mm512_sub_epi8(v, _mm512_set1_epi8('A')), _mm512_set1_epi8(25));
  uint64_t alpha = _mm512_cmple_epu8_mask(
      _mm512_sub_epi8(_mm512_or_si512(v, _mm512_set1_epi8(0x20)), _mm512_set1_epi8('a')),
      _mm512_set1_epi8(25));
  m.word =
      m.digit | alpha | _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('_')) | _mm512_movepi8_mask(v);
  return m;
}

using BlockFn = Masks (*)(const char*);

BlockFn PickBlock() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bw")) {
    return BlockAvx512;
  }
  if (__builtin_cpu_supports("avx2")) {
    return BlockAvx2;
  }
  return BlockSse2;
}

const BlockFn kBlock = PickBlock();

class Scanner {
 public:
  Scanner(std::string_view buf, const ClassConfig& c, std::vector<ClassHit>& out)
      : b_(buf.data()), n_(buf.size()), c_(c), out_(out) {}

  void Run();

 private:
  Masks MasksAt(size_t blk) const;
  char At(size_t i) const { return i < n_ ? b_[i] : '\0'; }
  void Push(size_t begin, size_t end, float score, Builtin d) {
    out_.push_back({static_cast<uint32_t>(begin), static_cast<uint32_t>(end), score, d});
  }

  size_t ExamineDigits(size_t p);
  size_t ExamineToken(size_t p);
  bool TryIban(size_t q, size_t* end);
  size_t ExamineColon(size_t p);
  void ExamineDash(size_t p);
  void Classify(const Token& t);
  void TryRange(const Token& t, int i, int j, int digits);
  std::string_view Sep(const Token& t, int k) const {  // between group k and k+1
    return {b_ + t.g[k].end, t.g[k + 1].begin - t.g[k].end};
  }
  bool VersionBefore(size_t begin) const;
  // Whether the group is the 8 digits that open a UUID ("31825812-baac-…").
  bool UuidHead(const Group& g) const {
    const size_t p = g.begin;
    if (g.end - g.begin != 8 || p + 14 > n_ || b_[p + 8] != '-' || b_[p + 13] != '-') {
      return false;
    }
    for (size_t k = 9; k < 13; ++k) {
      if (!IsHex(b_[p + k])) {
        return false;
      }
    }
    return true;
  }

  const char* b_;
  size_t n_;
  const ClassConfig& c_;
  std::vector<ClassHit>& out_;
};

Masks Scanner::MasksAt(size_t blk) const {
  if (blk >= n_) {
    return Masks{};
  }
  if (n_ - blk >= 64) {
    return kBlock(b_ + blk);
  }
  char tail[64] = {};
  std::memcpy(tail, b_ + blk, n_ - blk);
  return kBlock(tail);
}

void Scanner::Run() {
  size_t digit_skip = 0;
  size_t colon_skip = 0;
  uint64_t prev_digit = 0;
  uint64_t prev_word = 0;
  uint64_t prev_upper = 0;   // bit 0: byte 63 of the previous block is a capital
  uint64_t prev_upper2 = 0;  // bits 0-1: bytes 62-63 of the previous block are capitals
  const bool want_colon = c_.ipv6 || c_.mac;
  const bool want_dash = c_.mac;
  Masks next = MasksAt(0);
  for (size_t blk = 0; blk < n_; blk += 64) {
    Masks m = next;
    next = MasksAt(blk + 64);
    uint64_t starts = m.digit & ~((m.digit << 1) | prev_digit);
    // A run glued to a word ("a09f5", "T11") is not a number; unless two capitals precede
    // it, which is how an IBAN starts.
    uint64_t after_word = (m.word << 1) | prev_word;
    uint64_t iban = c_.iban ? ((m.upper << 1) | prev_upper) & ((m.upper << 2) | prev_upper2) : 0;
    starts &= ~after_word | iban;
    prev_digit = m.digit >> 63;
    prev_word = m.word >> 63;
    prev_upper2 = m.upper >> 62;
    prev_upper = m.upper >> 63;
    uint64_t events = starts | (want_colon ? m.colon : 0) | (want_dash ? m.dash : 0);
    while (events != 0) {
      size_t bit = static_cast<size_t>(__builtin_ctzll(events));
      size_t pos = blk + bit;
      events &= events - 1;
      char ch = b_[pos];
      if (IsDigit(ch)) {
        // Every shape has at least 4 digits within its first 16 bytes (1.2.3.4 is the
        // sparsest); counters, latencies and clock fields do not.
        uint64_t window = (m.digit >> bit) | (bit == 0 ? 0 : next.digit << (64 - bit));
        if (pos >= digit_skip && __builtin_popcountll(window & 0xffff) >= 4) {
          digit_skip = ExamineDigits(pos);
        }
      } else if (ch == ':') {
        if (pos >= colon_skip) {
          colon_skip = ExamineColon(pos);
        }
      } else if (pos >= colon_skip) {
        ExamineDash(pos);
      }
    }
  }
}

size_t Scanner::ExamineDigits(size_t p) {
  size_t run_end = p;
  while (run_end < n_ && IsDigit(b_[run_end])) {
    ++run_end;
  }
  if (c_.iban && p >= 2 && IsUpper(b_[p - 1]) && IsUpper(b_[p - 2]) &&
      (p == 2 || !IsWordByte(b_[p - 3])) && run_end - p >= 2) {
    size_t end;
    if (TryIban(p - 2, &end)) {
      return end;
    }
  }
  if (p > 0 && IsWordByte(b_[p - 1])) {
    return run_end;  // digits inside a word or a hex id
  }
  if (!(c_.card || c_.phone || c_.ssn || c_.ipv4)) {
    return run_end;
  }
  return ExamineToken(p);
}

size_t Scanner::ExamineToken(size_t p) {
  Token t;
  bool open_paren = false;
  if (p > 0 && (b_[p - 1] == '+' || b_[p - 1] == '(')) {
    if (p < 2 || !IsWordByte(b_[p - 2])) {
      t.plus = b_[p - 1] == '+';
      open_paren = b_[p - 1] == '(';
    }
  }
  size_t q = p;
  while (t.n < kMaxGroups) {
    Group g{static_cast<uint32_t>(q), 0};
    while (q < n_ && IsDigit(b_[q])) {
      ++q;
    }
    g.end = static_cast<uint32_t>(q);
    t.g[t.n++] = g;
    size_t k = 0;
    while (k < 2 && q + k < n_ && IsNumSep(b_[q + k])) {
      ++k;
    }
    if (k == 0 || q + k >= n_ || !IsDigit(b_[q + k])) {
      break;
    }
    if (k == 2 && b_[q] == b_[q + 1] && b_[q] != ' ') {
      break;  // "--", "..": not one number
    }
    q += k;
  }
  // "(212) 555-0100": an area code is closed right after the first group and the number
  // goes on. "(4111 1111 1111 1111)" and "(2234855458403749)" are a number in brackets.
  t.paren = open_paren && t.n >= 2 && b_[t.g[0].end] == ')';
  size_t end = t.g[t.n - 1].end;
  if (IsWordByte(At(end)) || UuidHead(t.g[t.n - 1])) {
    --t.n;  // the last group is glued to a word ("2025-06-06T…", "12ms") or opens a UUID
  }
  if (t.n > 0) {
    Classify(t);
  }
  return end;
}

void Scanner::Classify(const Token& t) {
  for (int i = 0; i < t.n; ++i) {
    int digits = 0;
    for (int j = i; j < t.n; ++j) {
      digits += static_cast<int>(t.g[j].end - t.g[j].begin);
      if (digits > 19) {
        break;
      }
      if (digits >= 7 || (j - i == 3 && digits >= 4)) {
        TryRange(t, i, j, digits);
      }
    }
  }
}

bool Scanner::VersionBefore(size_t begin) const {
  if (begin > 0 && (b_[begin - 1] == 'v' || b_[begin - 1] == 'V')) {
    return true;
  }
  size_t from = begin > 24 ? begin - 24 : 0;
  for (size_t k = begin; k > from; --k) {
    if (b_[k - 1] == '\0') {  // another JSON string: not this value's context
      from = k;
      break;
    }
  }
  char lower[24];
  size_t n = 0;
  for (size_t k = from; k < begin; ++k) {
    lower[n++] = ToLower(b_[k]);
  }
  std::string_view window(lower, n);
  return window.find("version") != std::string_view::npos ||
         window.find("ver ") != std::string_view::npos ||
         window.find("build") != std::string_view::npos;
}

void Scanner::TryRange(const Token& t, int i, int j, int digits) {
  // A sub-range joined to a neighbouring group by '.' is part of a decimal or a longer
  // dotted sequence ("0.0553131103515625", "1.2.3.4.5").
  // A full stop and a space end a sentence instead ("INV-2025-000123. 192.0.2.17").
  auto dotted = [&](int k) {
    std::string_view s = Sep(t, k);
    return s.find('.') != std::string_view::npos && s.find(' ') == std::string_view::npos;
  };
  if (i > 0 && dotted(i - 1)) {
    return;
  }
  if (j < t.n - 1 && dotted(j)) {
    return;
  }
  const bool whole_start = i == 0;
  size_t begin = t.g[i].begin;
  size_t end = t.g[j].end;
  const int groups = j - i + 1;
  char d[20];
  int nd = 0;
  bool seps_same = true;
  char sep0 = 0;
  bool seps_single = true;
  for (int k = i; k <= j; ++k) {
    for (uint32_t x = t.g[k].begin; x < t.g[k].end; ++x) {
      d[nd++] = b_[x];
    }
    if (k < j) {
      std::string_view s = Sep(t, k);
      if (s.size() != 1) {
        seps_single = false;
      }
      if (sep0 == 0) {
        sep0 = s[0];
      } else if (s != std::string_view(&sep0, 1)) {
        seps_same = false;
      }
    }
  }
  std::string_view ds(d, nd);
  auto glen = [&](int k) { return static_cast<int>(t.g[k].end - t.g[k].begin); };

  if (c_.ipv4 && groups == 4 && seps_single && seps_same && sep0 == '.') {
    bool ok = true;
    for (int k = i; k <= j && ok; ++k) {
      int len = glen(k);
      if (len > 3) {
        ok = false;
        break;
      }
      int v = 0;
      for (uint32_t x = t.g[k].begin; x < t.g[k].end; ++x) {
        v = v * 10 + (b_[x] - '0');
      }
      ok = v <= 255 && !(len > 1 && b_[t.g[k].begin] == '0');
    }
    if (ok && !VersionBefore(begin)) {
      Push(begin, end, GetBuiltin(Builtin::kIpv4).score, Builtin::kIpv4);
    }
  }
  if (digits < 7) {
    return;
  }
  const bool plus = whole_start && t.plus;
  const bool paren = whole_start && t.paren;

  if (c_.card && !plus && !paren && digits >= 13 && seps_single && seps_same &&
      (groups == 1 || sep0 == ' ' || sep0 == '-') && CardNumberPlausible(ds) && LuhnValid(ds)) {
    Push(begin, end, GetBuiltin(Builtin::kCard).score, Builtin::kCard);
  }
  if (c_.ssn && !plus && !paren && digits == 9 && SsnValid(ds)) {
    if (groups == 3 && glen(i) == 3 && glen(i + 1) == 2 && seps_single && seps_same &&
        (sep0 == '-' || sep0 == ' ')) {
      Push(begin, end, sep0 == '-' ? 0.6f : 0.4f, Builtin::kSsn);
    } else if (groups == 1) {
      Push(begin, end, 0.3f, Builtin::kSsn);
    }
  }
  if (!c_.phone) {
    return;
  }
  if (plus) {
    if (digits >= 8 && digits <= 15 && ds[0] != '0') {
      Push(begin - 1, end, 0.75f, Builtin::kPhone);
    }
    return;
  }
  // NANP: [1] (NXX) NXX XXXX.
  int k0 = i;
  if (groups == 4 && glen(i) == 1 && ds[0] == '1') {
    k0 = i + 1;
  }
  if (j - k0 == 2 && glen(k0) == 3 && glen(k0 + 1) == 3 && glen(k0 + 2) == 4) {
    char area = b_[t.g[k0].begin];
    char exch = b_[t.g[k0 + 1].begin];
    if (area >= '2' && exch >= '2') {
      Push(paren ? begin - 1 : begin, end, 0.6f, Builtin::kPhone);
    }
    return;
  }
  if (groups == 1 && (digits == 10 || (digits == 11 && ds[0] == '1'))) {
    size_t a = digits == 11 ? 1 : 0;
    if (ds[a] >= '2' && ds[a + 3] >= '2') {
      Push(begin, end, 0.3f, Builtin::kPhone);
      return;
    }
  }
  // National formats with a trunk 0: 020 7946 0958, 06 12 34 56 78, 030-1234567.
  // The digit after the trunk 0 (or after an international 00) is never 0.
  if (ds[0] == '0' && (ds[1] != '0' || ds[2] != '0')) {
    int max_digits = ds[1] == '0' ? 15 : 12;
    if (groups >= 2 && digits >= 9 && digits <= max_digits && seps_single && seps_same &&
        sep0 != '/' && sep0 != '(' && sep0 != ')') {
      bool ok = true;
      for (int k = i; k <= j && ok; ++k) {
        ok = glen(k) >= 2;
      }
      if (ok) {
        Push(begin, end, 0.5f, Builtin::kPhone);
      }
    } else if (groups == 1 && (digits == 10 || digits == 11)) {
      Push(begin, end, 0.3f, Builtin::kPhone);
    }
  }
}

bool Scanner::TryIban(size_t q, size_t* end) {
  int len = IbanLength(b_[q], b_[q + 1]);
  if (len == 0) {
    return false;
  }
  char buf[36];
  int count = 0;
  size_t x = q;
  while (count < len && x < n_) {
    char ch = b_[x];
    if (IsUpper(ch) || IsDigit(ch)) {
      buf[count++] = ch;
      ++x;
    } else if (ch == ' ' && count % 4 == 0 && count > 0 && x + 1 < n_ &&
               (IsUpper(b_[x + 1]) || IsDigit(b_[x + 1]))) {
      ++x;
    } else {
      break;
    }
  }
  if (count != len || IsWordByte(At(x))) {
    return false;
  }
  if (!IbanValid(std::string_view(buf, count))) {
    return false;
  }
  Push(q, x, GetBuiltin(Builtin::kIban).score, Builtin::kIban);
  *end = x;
  return true;
}

size_t Scanner::ExamineColon(size_t p) {
  auto ipchar = [](char ch) { return IsHex(ch) || ch == ':' || ch == '.'; };
  bool left = p > 0 && (IsHex(b_[p - 1]) || b_[p - 1] == ':');
  bool right = IsHex(At(p + 1)) || At(p + 1) == ':';
  if (!left && !right) {
    return p + 1;
  }
  size_t l = p;
  while (l > 0 && ipchar(b_[l - 1]) && p - l < 45) {
    --l;
  }
  size_t r = p;
  while (r < n_ && ipchar(b_[r]) && r - l < 45) {
    ++r;
  }
  size_t scan_end = r;
  while (l < r && b_[l] == '.') {
    ++l;
  }
  while (r > l && b_[r - 1] == '.') {
    --r;
  }
  if (r - l >= 2 && b_[r - 1] == ':' && b_[r - 2] != ':') {
    --r;
  }
  if ((l > 0 && IsWordByte(b_[l - 1])) || IsWordByte(At(r)) || r - l < 3) {
    return scan_end;
  }
  std::string_view cand(b_ + l, r - l);
  if (c_.mac && cand.size() == 17) {
    bool mac = true;
    for (size_t k = 0; k < 17 && mac; ++k) {
      mac = (k % 3 == 2) ? cand[k] == ':' : IsHex(cand[k]);
    }
    if (mac) {
      Push(l, r, GetBuiltin(Builtin::kMac).score, Builtin::kMac);
      return scan_end;
    }
  }
  // Full form has 7 colons (6 before a dotted IPv4 tail); anything shorter needs "::".
  // This keeps clock times and "key:value" runs away from inet_pton.
  size_t colons = static_cast<size_t>(std::count(cand.begin(), cand.end(), ':'));
  if (colons < 6 && cand.find("::") == std::string_view::npos) {
    return scan_end;
  }
  int groups = 0;
  if (c_.ipv6 && ParseIpv6(cand, &groups) && groups >= 2) {
    Push(l, r, GetBuiltin(Builtin::kIpv6).score, Builtin::kIpv6);
  }
  return scan_end;
}

void Scanner::ExamineDash(size_t p) {
  if (p < 2 || p + 15 > n_) {
    return;
  }
  size_t l = p - 2;
  for (size_t k = 0; k < 17; ++k) {
    char ch = b_[l + k];
    if ((k % 3 == 2) ? ch != '-' : !IsHex(ch)) {
      return;
    }
  }
  if ((l > 0 && (IsWordByte(b_[l - 1]) || b_[l - 1] == '-')) || IsWordByte(At(l + 17)) ||
      At(l + 17) == '-') {
    return;
  }
  Push(l, l + 17, GetBuiltin(Builtin::kMac).score, Builtin::kMac);
}

}  // namespace

void ScanClasses(std::string_view buf, const ClassConfig& config, std::vector<ClassHit>& out) {
  Scanner(buf, config, out).Run();
}

}  // namespace tracegate::masking
