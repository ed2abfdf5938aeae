#pragma once
// Validators: the checks a regex cannot express. Pure functions over bytes.

#include <cstdint>
#include <string_view>

namespace tracegate::masking {

inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }
inline bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
inline bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
inline bool IsAlpha(char c) { return IsUpper(c) || IsLower(c); }
inline bool IsAlnum(char c) { return IsDigit(c) || IsAlpha(c); }
inline bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
// A byte that continues a word for boundary checks: ASCII letters, digits, '_' and any
// non-ASCII byte (part of a UTF-8 letter, as far as we can tell without tables).
inline bool IsWordByte(char c) {
  return IsAlnum(c) || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}
inline char ToLower(char c) { return IsUpper(c) ? static_cast<char>(c - 'A' + 'a') : c; }

// Luhn checksum over the digits of `s` (other bytes ignored).
bool LuhnValid(std::string_view s);

// Issuer prefix and length of a card number (digits only) for the major networks: Visa,
// Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro. All-same digits fail.
bool CardNumberPlausible(std::string_view digits);

// IBAN: country code with its registered length, two check digits, mod-97 == 1. `compact`
// is the IBAN without spaces, upper case.
bool IbanValid(std::string_view compact);
// The registered length of IBANs for a country code, or 0.
int IbanLength(char c0, char c1);

// US SSN rules: area not 000, 666 or 9xx; group not 00; serial not 0000. `digits` has 9.
bool SsnValid(std::string_view digits);

// Shannon entropy in bits per byte.
double ShannonEntropy(std::string_view s);

// A value that is a placeholder, not a secret: ${VAR}, <token>, %s, ****, null, none,
// true/false, changeme-style templates, an earlier redaction token.
bool LooksLikePlaceholder(std::string_view v);

// The value of a `password=`/`api_key:` assignment or secret-named field is a secret:
// at least 6 bytes, not a placeholder, entropy >= 2 bits per byte.
bool SecretValuePlausible(std::string_view v);

// Normalised key name (letters and digits, lower case) names a secret: password, passwd,
// pwd, passphrase, secret, *_secret, api_key, *_api_key, access/auth/refresh/session/id
// token, token, authorization, private_key, secret_key, credentials...
bool IsSecretKeyName(std::string_view key);

// Opaque blob: >= 16 bytes of base64/base64url/hex alphabet (with '=' padding), no spaces;
// or a `data:<mime>;base64,` URL.
bool IsOpaqueBlob(std::string_view v);

// IPv6 textual form (RFC 4291, with `::` and an embedded dotted IPv4 tail).
bool ParseIpv6(std::string_view s, int* groups_present);

// Email domain part: labels of letters/digits/hyphens (no leading/trailing hyphen), at
// least two labels, a TLD of >= 2 letters that is not a common file extension.
bool EmailDomainValid(std::string_view domain);
bool EmailLocalValid(std::string_view local);

// Base64url-decodes `s` into `out` (up to out_cap bytes); returns the decoded length or -1.
int Base64UrlDecode(std::string_view s, char* out, int out_cap);

}  // namespace tracegate::masking
