#include "masking/locators.h"

#include <algorithm>

#include "masking/validators.h"

namespace tracegate::masking {
namespace {

// RFC 6531 allows UTF-8 in the local part; taking non-ASCII bytes also keeps a zero-width
// or homoglyph character right before the '@' from splitting the address.
bool IsEmailLocal(char c) {
  return IsAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool IsB64Url(char c) { return IsAlnum(c) || c == '_' || c == '-'; }

// The token alphabet of each fixed-prefix secret.
bool InTokenAlphabet(Builtin d, char c) {
  switch (d) {
    case Builtin::kAwsAccessKey:
      return IsUpper(c) || IsDigit(c);
    case Builtin::kGithubToken:
    case Builtin::kStripeKey:
      return IsAlnum(c) || c == '_';
    case Builtin::kSlackToken:
      return IsAlnum(c) || c == '-';
    default:
      return IsB64Url(c);
  }
}

bool HasMixedClasses(std::string_view s) {
  bool upper = false, lower = false, digit = false;
  for (char c : s) {
    upper |= IsUpper(c);
    lower |= IsLower(c);
    digit |= IsDigit(c);
  }
  return upper && lower && digit;
}

bool TokenValid(Builtin d, std::string_view t) {
  switch (d) {
    case Builtin::kAwsAccessKey:
      return t.size() == 20 &&
             (t.starts_with("AKIA") || t.starts_with("ASIA") || t.starts_with("ABIA") ||
              t.starts_with("ACCA") || t.starts_with("A3T"));
    case Builtin::kGithubToken:
      if (t.starts_with("github_pat_")) {
        return t.size() >= 40 && t.size() <= 255;
      }
      return t.size() >= 40 && t.size() <= 255 && t[0] == 'g' && t[1] == 'h' && t[3] == '_';
    case Builtin::kGitlabToken: {
      size_t dash = t.find('-');
      if (dash == std::string_view::npos || t.size() < dash + 21) {
        return false;
      }
      std::string_view prefix = t.substr(0, dash);
      static constexpr std::string_view kPrefixes[] = {
          "glpat", "gldt", "glrt", "glptt", "glft", "glsoat", "glcbt", "gloas", "glimt", "glagent"};
      for (std::string_view p : kPrefixes) {
        if (prefix == p) {
          return true;
        }
      }
      return false;
    }
    case Builtin::kSlackToken:
      return t.size() >= 15 && (t.starts_with("xox") || t.starts_with("xapp-"));
    case Builtin::kStripeKey:
      return (t.starts_with("sk_live_") || t.starts_with("sk_test_") || t.starts_with("rk_live_") ||
              t.starts_with("rk_test_"))
                 ? t.size() >= 18
                 : (t.starts_with("whsec_") && t.size() >= 26);
    case Builtin::kGoogleApiKey:
      return t.size() == 39 && t.starts_with("AIza");
    case Builtin::kOpenaiKey:
      return t.starts_with("sk-") && !t.starts_with("sk-ant-") && t.size() >= 32 &&
             t.size() <= 256 &&
             (t.find("T3BlbkFJ") != std::string_view::npos || HasMixedClasses(t));
    case Builtin::kAnthropicKey:
      return t.starts_with("sk-ant-") && t.size() >= 40 && t.size() <= 256;
    default:
      return false;
  }
}

bool LocateToken(Builtin d, std::string_view buf, size_t lo, size_t hi, size_t e, Span* out) {
  size_t b = e;
  while (b > lo && e - b < 300 && InTokenAlphabet(d, buf[b - 1])) {
    --b;
  }
  size_t x = e;
  while (x < hi && x - b < 300 && InTokenAlphabet(d, buf[x])) {
    ++x;
  }
  if ((b > lo && IsWordByte(buf[b - 1])) || !TokenValid(d, buf.substr(b, x - b))) {
    return false;
  }
  *out = {b, x};
  return true;
}

bool LocateEmail(std::string_view buf, size_t lo, size_t hi, size_t e, Span* out) {
  size_t at = e;
  while (at > lo && e - at < 70 && buf[at - 1] != '@') {
    --at;
  }
  if (at == lo || buf[at - 1] != '@') {
    return false;
  }
  --at;  // index of '@'
  size_t s = at;
  while (s > lo && at - s < 64 && IsEmailLocal(buf[s - 1])) {
    --s;
  }
  while (s < at && (buf[s] == '.' || buf[s] == '-')) {
    ++s;
  }
  size_t t = at + 1;
  while (t < hi && t - at <= 253 && (IsAlnum(buf[t]) || buf[t] == '-' || buf[t] == '.')) {
    ++t;
  }
  while (t > at + 1 && (buf[t - 1] == '.' || buf[t - 1] == '-')) {
    --t;
  }
  std::string_view local = buf.substr(s, at - s);
  std::string_view domain = buf.substr(at + 1, t - at - 1);
  if (!EmailLocalValid(local) || !EmailDomainValid(domain)) {
    return false;
  }
  *out = {s, t};
  return true;
}

// The match ends with ".eyJ" (the payload's start): the header is the base64url run
// before that dot, which must start with "eyJ" and decode to a JOSE header.
bool LocateJwt(std::string_view buf, size_t lo, size_t hi, size_t e, Span* out) {
  if (e < lo + 4 || buf[e - 4] != '.') {
    return false;
  }
  size_t dot = e - 4;
  size_t b = dot;
  while (b > lo && dot - b < 1000 && IsB64Url(buf[b - 1])) {
    --b;
  }
  if (b > lo && (IsB64Url(buf[b - 1]) || buf[b - 1] == '.' || IsWordByte(buf[b - 1]))) {
    return false;  // part of a longer dotted or alphanumeric run
  }
  std::string_view header = buf.substr(b, dot - b);
  if (!header.starts_with("eyJ")) {
    return false;
  }
  char decoded[800];
  int n = Base64UrlDecode(header, decoded, sizeof decoded);
  std::string_view h(decoded, n > 0 ? static_cast<size_t>(n) : 0);
  if (h.find("\"alg\"") == std::string_view::npos && h.find("\"typ\"") == std::string_view::npos &&
      h.find("\"enc\"") == std::string_view::npos) {
    return false;
  }
  // payload, then signature (JWS) or three more parts (JWE); a part may be empty.
  size_t x = e - 3;
  for (int part = 0; part < 4; ++part) {
    while (x < hi && x - b < 65536 && IsB64Url(buf[x])) {
      ++x;
    }
    if (part == 3 || x + 1 >= hi || buf[x] != '.' || !IsB64Url(buf[x + 1])) {
      break;
    }
    ++x;
  }
  *out = {b, x};
  return true;
}

bool LocatePem(std::string_view buf, size_t lo, size_t hi, size_t e, Span* out) {
  size_t from = e > lo + 80 ? e - 80 : lo;
  size_t b = buf.substr(from, e - from).rfind("-----BEGIN");
  if (b == std::string_view::npos) {
    return false;
  }
  b += from;
  size_t limit = std::min(hi, e + 16384);
  std::string_view tail = buf.substr(e, limit - e);
  size_t end_marker = tail.find("-----END");
  size_t x;
  if (end_marker != std::string_view::npos) {
    size_t close = tail.find("-----", end_marker + 8);
    x = close == std::string_view::npos ? limit : e + close + 5;
  } else {
    // Truncated block: the key body is base64 and line breaks.
    x = e;
    while (x < limit &&
           (IsAlnum(buf[x]) || buf[x] == '+' || buf[x] == '/' || buf[x] == '=' || buf[x] == '\n' ||
            buf[x] == '\r' || buf[x] == ' ' || buf[x] == ':' || buf[x] == '-' || buf[x] == ',')) {
      ++x;
    }
  }
  *out = {b, x};
  return true;
}

bool LocateTail40(std::string_view buf, size_t lo, size_t hi, size_t e, Span* out) {
  auto b64 = [](char c) { return IsAlnum(c) || c == '/' || c == '+'; };
  if (e < lo + 40 || (e < hi && (b64(buf[e]) || buf[e] == '=')) ||
      (e > lo + 40 && b64(buf[e - 41]))) {
    return false;
  }
  std::string_view v = buf.substr(e - 40, 40);
  if (ShannonEntropy(v) < 3.0) {
    return false;
  }
  *out = {e - 40, e};
  return true;
}

bool IsValueEnd(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '"' || c == '\'' || c == '`' ||
         c == ',' || c == ';' || c == '&' || c == '\0';
}

bool LocateAssignment(std::string_view buf, size_t hi, size_t e, Span* out) {
  size_t b = e - 1;
  size_t x = e;
  while (x < hi && x - b < 256 && !IsValueEnd(buf[x])) {
    ++x;
  }
  std::string_view v = buf.substr(b, x - b);
  while (!v.empty() && (v.back() == '.' || v.back() == ')' || v.back() == '}' || v.back() == ']' ||
                        v.back() == '>')) {
    v.remove_suffix(1);
  }
  if (!SecretValuePlausible(v)) {
    return false;
  }
  *out = {b, b + v.size()};
  return true;
}

bool LocateBearer(std::string_view buf, size_t hi, size_t e, Span* out) {
  auto tok = [](char c) {
    return IsAlnum(c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '-' ||
           c == '=';
  };
  size_t b = e - 16;
  size_t x = e;
  while (x < hi && x - b < 8192 && tok(buf[x])) {
    ++x;
  }
  std::string_view v = buf.substr(b, x - b);
  if (LooksLikePlaceholder(v) || ShannonEntropy(v) < 3.0) {
    return false;
  }
  *out = {b, x};
  return true;
}

bool LocateUrlCredential(std::string_view buf, size_t lo, size_t e, Span* out) {
  size_t at = e - 1;
  size_t from = at > lo + 200 ? at - 200 : lo;
  size_t scheme = buf.substr(from, at - from).rfind("://");
  if (scheme == std::string_view::npos) {
    return false;
  }
  scheme += from;
  size_t colon = buf.find(':', scheme + 3);
  if (colon == std::string_view::npos || colon >= at) {
    return false;
  }
  std::string_view pw = buf.substr(colon + 1, at - colon - 1);
  if (pw.empty() || LooksLikePlaceholder(pw)) {
    return false;
  }
  *out = {colon + 1, at};
  return true;
}

bool LocateSlackWebhook(std::string_view buf, size_t lo, size_t hi, size_t e, Span* out) {
  size_t from = e > lo + 48 ? e - 48 : lo;
  size_t b = buf.substr(from, e - from).rfind("hooks.slack.com");
  if (b == std::string_view::npos) {
    return false;
  }
  b += from;
  if (b >= lo + 8 && buf.substr(b - 8, 8) == "https://") {
    b -= 8;
  }
  size_t x = e;
  while (x < hi && x - b < 512 && (IsB64Url(buf[x]) || buf[x] == '/')) {
    ++x;
  }
  *out = {b, x};
  return true;
}

bool LocateFixed(std::string_view buf, size_t lo, size_t hi, size_t e, uint32_t len, Span* out) {
  if (e < lo + len) {
    return false;
  }
  size_t b = e - len;
  if ((IsWordByte(buf[b]) && b > lo && IsWordByte(buf[b - 1])) ||
      (IsWordByte(buf[e - 1]) && e < hi && IsWordByte(buf[e]))) {
    return false;
  }
  *out = {b, e};
  return true;
}

}  // namespace

bool Locate(LocateKind kind, Builtin detector, std::string_view buf, size_t lo, size_t hi, size_t e,
            uint32_t fixed_len, Span* out) {
  if (e <= lo || e > hi) {
    return false;
  }
  switch (kind) {
    case LocateKind::kEmail:
      return LocateEmail(buf, lo, hi, e, out);
    case LocateKind::kToken:
      return LocateToken(detector, buf, lo, hi, e, out);
    case LocateKind::kJwt:
      return LocateJwt(buf, lo, hi, e, out);
    case LocateKind::kPem:
      return LocatePem(buf, lo, hi, e, out);
    case LocateKind::kTail40:
      return LocateTail40(buf, lo, hi, e, out);
    case LocateKind::kAssignment:
      return LocateAssignment(buf, hi, e, out);
    case LocateKind::kBearer:
      return e >= lo + 16 && LocateBearer(buf, hi, e, out);
    case LocateKind::kUrlCredential:
      return LocateUrlCredential(buf, lo, e, out);
    case LocateKind::kSlackWebhook:
      return LocateSlackWebhook(buf, lo, hi, e, out);
    case LocateKind::kFixed:
      return LocateFixed(buf, lo, hi, e, fixed_len, out);
    case LocateKind::kSom:
      return false;
  }
  return false;
}

}  // namespace tracegate::masking
