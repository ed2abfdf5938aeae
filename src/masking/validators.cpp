#include "masking/validators.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <span>

namespace tracegate::masking {
namespace {

int Num(std::string_view d, size_t n) {
  int v = 0;
  for (size_t i = 0; i < n && i < d.size(); ++i) {
    v = v * 10 + (d[i] - '0');
  }
  return v;
}

bool AllSame(std::string_view s) {
  for (char c : s) {
    if (c != s[0]) {
      return false;
    }
  }
  return true;
}

bool EqualsLower(std::string_view v, std::string_view lower) {
  if (v.size() != lower.size()) {
    return false;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (ToLower(v[i]) != lower[i]) {
      return false;
    }
  }
  return true;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

struct IbanCountry {
  char code[3];
  int length;
};

// Every IBAN country of the SWIFT IBAN registry (ISO 13616), release 102 (June 2026): the
// "IBAN prefix country code" and "IBAN length" of each entry, 89 in all. The releases since
// 2023 added MN, NI, SO, FK, OM, YE and HN. Territories that the registry lists under another
// entry (GF, GP, MQ, RE... under FR; IM, JE, GG under GB; AX under FI) use that entry's
// prefix, so they have no row of their own. test_support.h holds the registry's example IBAN
// of every row (validators_test and masker_test run them); update both together.
constexpr IbanCountry kIbanCountries[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
    {"BH", 22}, {"BI", 27}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24},
    {"DE", 22}, {"DJ", 27}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18},
    {"FK", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27},
    {"GT", 28}, {"HN", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26},
    {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20},
    {"LU", 20}, {"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MN", 20},
    {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NI", 28}, {"NL", 18}, {"NO", 15}, {"OM", 23}, {"PK", 24},
    {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"RU", 33}, {"SA", 24},
    {"SC", 31}, {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"SO", 23}, {"ST", 25},
    {"SV", 28}, {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
    {"YE", 30},
};

// File extensions that look like TLDs in `icon@2x.png` or `name@host.json`; none is a
// delegated TLD.
constexpr std::string_view kFileExtensions[] = {
    "png", "jpg", "jpeg", "gif",  "svg", "webp", "ico",  "bmp",  "tif", "tiff", "css",
    "js",  "mjs", "cjs",  "ts",   "tsx", "jsx",  "json", "yaml", "yml", "txt",  "lock",
    "map", "csv", "log",  "html", "htm", "xml",  "wasm", "pyc",  "whl", "toml", "ini",
};

}  // namespace

bool LuhnValid(std::string_view s) {
  int sum = 0;
  int n = 0;
  for (size_t i = s.size(); i-- > 0;) {
    if (!IsDigit(s[i])) {
      continue;
    }
    int d = s[i] - '0';
    if (n % 2 == 1) {
      d *= 2;
      if (d > 9) {
        d -= 9;
      }
    }
    sum += d;
    ++n;
  }
  return n > 0 && sum % 10 == 0;
}

bool CardNumberPlausible(std::string_view d) {
  size_t len = d.size();
  if (len < 13 || len > 19 || AllSame(d)) {
    return false;
  }
  int p2 = Num(d, 2);
  int p3 = Num(d, 3);
  int p4 = Num(d, 4);
  auto in = [](int v, int lo, int hi) { return v >= lo && v <= hi; };
  auto len_in = [len](size_t lo, size_t hi) { return len >= lo && len <= hi; };
  if (d[0] == '4') {
    return len == 13 || len == 16 || len == 19;  // Visa
  }
  if (in(p2, 51, 55) || in(p4, 2221, 2720)) {
    return len == 16;  // Mastercard
  }
  if (in(p4, 2200, 2204)) {
    return len_in(16, 19);  // Mir
  }
  if (p2 == 34 || p2 == 37) {
    return len == 15;  // Amex
  }
  if (in(p3, 300, 305) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39) {
    return len_in(14, 19);  // Diners
  }
  if (in(p4, 3528, 3589)) {
    return len_in(16, 19);  // JCB
  }
  if (p4 == 6011 || in(p3, 644, 649) || p2 == 65 || p2 == 62) {
    return len_in(16, 19);  // Discover, UnionPay
  }
  if (p2 == 50 || in(p2, 56, 69)) {
    return len_in(13, 19);  // Maestro
  }
  return false;
}

int IbanLength(char c0, char c1) {
  for (const IbanCountry& c : kIbanCountries) {
    if (c.code[0] == c0 && c.code[1] == c1) {
      return c.length;
    }
  }
  return 0;
}

bool IbanValid(std::string_view s) {
  if (s.size() < 15 || s.size() > 34) {
    return false;
  }
  if (IbanLength(s[0], s[1]) != static_cast<int>(s.size()) || !IsDigit(s[2]) || !IsDigit(s[3])) {
    return false;
  }
  // Move the first four characters to the end, letters become 10..35, mod 97 == 1.
  int rem = 0;
  for (size_t k = 0; k < s.size(); ++k) {
    char c = s[(k + 4) % s.size()];
    if (IsDigit(c)) {
      rem = (rem * 10 + (c - '0')) % 97;
    } else if (IsUpper(c)) {
      rem = (rem * 100 + (c - 'A' + 10)) % 97;
    } else {
      return false;
    }
  }
  return rem == 1;
}

bool SsnValid(std::string_view d) {
  if (d.size() != 9) {
    return false;
  }
  int area = Num(d, 3);
  int group = Num(d.substr(3), 2);
  int serial = Num(d.substr(5), 4);
  if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0) {
    return false;
  }
  return !AllSame(d);
}

double ShannonEntropy(std::string_view s) {
  if (s.empty()) {
    return 0;
  }
  std::array<int, 256> freq{};
  for (char c : s) {
    ++freq[static_cast<unsigned char>(c)];
  }
  double h = 0;
  double n = static_cast<double>(s.size());
  for (int f : freq) {
    if (f > 0) {
      double p = f / n;
      h -= p * std::log2(p);
    }
  }
  return h;
}

bool LooksLikePlaceholder(std::string_view v) {
  if (v.empty()) {
    return true;
  }
  switch (v[0]) {
    case '$':
    case '{':
    case '<':
    case '%':
    case '[':
    case '*':
    case '(':
      return true;
    default:
      break;
  }
  if (v.find("****") != std::string_view::npos || v.find("xxxx") != std::string_view::npos ||
      v.find("XXXX") != std::string_view::npos || v.find("...") != std::string_view::npos) {
    return true;
  }
  static constexpr std::string_view kWords[] = {
      "null",     "none",        "nil",           "true",     "false",    "undefined",
      "redacted", "hidden",      "masked",        "required", "optional", "string",
      "example",  "placeholder", "your_password", "password", "secret"};
  for (std::string_view word : kWords) {
    if (EqualsLower(v, word)) {
      return true;
    }
  }
  return false;
}

bool SecretValuePlausible(std::string_view v) {
  return v.size() >= 6 && !LooksLikePlaceholder(v) && ShannonEntropy(v) >= 2.0;
}

bool IsSecretKeyName(std::string_view key) {
  if (key.size() < 3 || key.size() > 64) {
    return false;
  }
  // Most keys are rejected by their last three letters/digits before any normalisation.
  char tail[4] = {0, 0, 0, 0};
  int m = 0;
  for (size_t i = key.size(); i-- > 0 && m < 3;) {
    if (IsAlnum(key[i])) {
      tail[2 - m++] = ToLower(key[i]);
    }
  }
  static constexpr std::string_view kTails[] = {"ord", "swd", "pwd", "ass", "als", "ken", "ion",
                                                "ase", "kie", "ial", "rer", "ret", "key"};
  if (m < 3 || std::find(std::begin(kTails), std::end(kTails), std::string_view(tail, 3)) ==
                   std::end(kTails)) {
    return false;
  }
  char buf[64];
  size_t n = 0;
  for (char c : key) {
    if (IsAlnum(c)) {
      buf[n++] = ToLower(c);
    }
  }
  if (n < 3) {
    return false;
  }
  std::string_view k(buf, n);
  // Dispatch on the last byte so that a key is compared with a handful of names at most.
  static constexpr std::string_view kD[] = {"password", "passwd", "pwd"};
  static constexpr std::string_view kS[] = {"pass", "credentials"};
  static constexpr std::string_view kN[] = {"token",       "authorization", "apitoken",
                                            "accesstoken", "authtoken",     "refreshtoken",
                                            "idtoken",     "sessiontoken",  "bearertoken"};
  static constexpr std::string_view kE[] = {"passphrase", "cookie"};
  static constexpr std::string_view kL[] = {"credential"};
  static constexpr std::string_view kR[] = {"bearer"};
  static constexpr std::string_view kT[] = {"secret"};
  static constexpr std::string_view kY[] = {"apikey",          "privatekey", "secretkey",
                                            "secretaccesskey", "signingkey", "encryptionkey"};
  auto exact = [&k](std::span<const std::string_view> names) {
    for (std::string_view name : names) {
      if (k == name) {
        return true;
      }
    }
    return false;
  };
  auto suffix = [&k](std::span<const std::string_view> names) {
    for (std::string_view name : names) {
      if (EndsWith(k, name)) {
        return true;
      }
    }
    return false;
  };
  switch (k.back()) {
    case 'd':
      return suffix(std::span(kD, 2)) || k == "pwd";
    case 's':
      return exact(kS);
    case 'n':
      return k == "token" || k == "authorization" || suffix(std::span(kN).subspan(2));
    case 'e':
      return exact(kE);
    case 'l':
      return exact(kL);
    case 'r':
      return exact(kR);
    case 't':
      return suffix(kT);  // secret, client_secret, webhook_secret, access_key_secret
    case 'y':
      return suffix(kY);
    default:
      return false;
  }
}

bool IsOpaqueBlob(std::string_view v) {
  if (v.starts_with("data:")) {
    size_t comma = v.find(";base64,");
    if (comma == std::string_view::npos || comma > 100) {
      return false;
    }
    v = v.substr(comma + 8);
  }
  if (v.size() < 16) {
    return false;
  }
  size_t i = 0;
  for (; i < v.size(); ++i) {
    char c = v[i];
    if (!(IsAlnum(c) || c == '+' || c == '/' || c == '_' || c == '-')) {
      break;
    }
  }
  for (; i < v.size(); ++i) {
    if (v[i] != '=') {
      return false;
    }
  }
  return true;
}

bool ParseIpv6(std::string_view s, int* groups_present) {
  if (s.size() < 2 || s.size() > 45) {
    return false;
  }
  char buf[64];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  unsigned char addr[16];
  if (inet_pton(AF_INET6, buf, addr) != 1) {
    return false;
  }
  int groups = 0;
  bool in_group = false;
  for (char c : s) {
    bool hex = IsHex(c);
    if (hex && !in_group) {
      ++groups;
    }
    in_group = hex;
  }
  *groups_present = groups;
  return true;
}

bool EmailLocalValid(std::string_view local) {
  if (local.empty() || local.size() > 64 || local.front() == '.' || local.back() == '.') {
    return false;
  }
  return local.find("..") == std::string_view::npos;
}

bool EmailDomainValid(std::string_view domain) {
  if (domain.size() < 4 || domain.size() > 253) {
    return false;
  }
  int labels = 0;
  size_t start = 0;
  std::string_view tld;
  while (start <= domain.size()) {
    size_t dot = domain.find('.', start);
    if (dot == std::string_view::npos) {
      dot = domain.size();
    }
    std::string_view label = domain.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!IsAlnum(c) && c != '-') {
        return false;
      }
    }
    ++labels;
    tld = label;
    start = dot + 1;
  }
  if (labels < 2 || tld.size() < 2) {
    return false;
  }
  if (!tld.starts_with("xn--")) {
    for (char c : tld) {
      if (!IsAlpha(c)) {
        return false;
      }
    }
  }
  for (std::string_view ext : kFileExtensions) {
    if (EqualsLower(tld, ext)) {
      return false;
    }
  }
  return true;
}

int Base64UrlDecode(std::string_view s, char* out, int out_cap) {
  int n = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v;
    if (IsUpper(c)) {
      v = c - 'A';
    } else if (IsLower(c)) {
      v = c - 'a' + 26;
    } else if (IsDigit(c)) {
      v = c - '0' + 52;
    } else if (c == '-' || c == '+') {
      v = 62;
    } else if (c == '_' || c == '/') {
      v = 63;
    } else if (c == '=') {
      break;
    } else {
      return -1;
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (n >= out_cap) {
        return n;
      }
      out[n++] = static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return n;
}

}  // namespace tracegate::masking
