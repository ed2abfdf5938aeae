#pragma once
// Private to the config module: how each kind of scalar value is read and checked.
//
// The Parse*/Check* functions work on text alone (unit-tested directly); the ScalarType
// factories wrap them for the key tables in config.cpp. Reasons quote the offending value
// except for secrets, which are never repeated back.

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config/config.h"
#include "config/schema.h"

namespace tracegate::config::internal {

// Decimal integer in [min, max].
absl::StatusOr<uint64_t> ParseCount(absl::string_view text, uint64_t min, uint64_t max);
// Integer bytes, optionally suffixed KiB, MiB or GiB, in [min, max] bytes.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text, uint64_t min, uint64_t max);
// Non-negative integer with a unit ms, s, m or h; at least `min`, at most a year.
absl::StatusOr<Duration> ParseDuration(absl::string_view text, Duration min);
absl::StatusOr<bool> ParseBool(absl::string_view text);
// A plain decimal from 0 to 1 ("0", "1", "0.35"; no sign, exponent or leading dot); with
// `exclude_zero`, above 0.
absl::StatusOr<double> ParseFraction(absl::string_view text, bool exclude_zero);
// "host:port" or "[ipv6]:port"; port 0 means "pick a free port".
absl::StatusOr<Endpoint> ParseListenAddress(absl::string_view text);
// A host name or IP address, IPv6 with or without brackets (returned without).
absl::StatusOr<std::string> ParseHost(absl::string_view text);
absl::Status CheckConnectionName(absl::string_view text);
absl::Status CheckRoleName(absl::string_view text);
absl::Status CheckEnvVarName(absl::string_view text);
// Syntax only: "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>", base64 parts.
// The verifier is sensitive (it allows offline guessing), so reasons never quote it.
absl::Status CheckScramVerifier(absl::string_view text);
// `text` if absolute, else `base`/`text`, normalized.
std::string ResolvePath(const std::filesystem::path& base, absl::string_view text);
// Reads a regular file of at most `max_size` bytes. Errors name the path, never the content.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_size);

// `I` may be signed (for members declared int elsewhere); values are never negative.
template <typename I>
ScalarType<I> Count(uint64_t min, uint64_t max) {
  static_assert(std::numeric_limits<I>::is_integer);
  return {"an integer", [min, max](const std::string& text, const Context&) -> absl::StatusOr<I> {
            absl::StatusOr<uint64_t> n = ParseCount(text, min, max);
            if (!n.ok()) {
              return n.status();
            }
            return static_cast<I>(*n);
          }};
}

template <typename I>
ScalarType<I> ByteSize(uint64_t min, uint64_t max) {
  static_assert(std::numeric_limits<I>::is_integer && !std::numeric_limits<I>::is_signed);
  return {"a size like 64MiB",
          [min, max](const std::string& text, const Context&) -> absl::StatusOr<I> {
            absl::StatusOr<uint64_t> n = ParseByteSize(text, min, max);
            if (!n.ok()) {
              return n.status();
            }
            return static_cast<I>(*n);
          }};
}

// One of a fixed set of words: `expected one of disable|require|verify-full, got "x"`.
template <typename E>
ScalarType<E> OneOf(std::vector<std::pair<absl::string_view, E>> choices) {
  std::vector<absl::string_view> words;
  for (const auto& choice : choices) {
    words.push_back(choice.first);
  }
  std::string what = absl::StrCat("one of ", absl::StrJoin(words, "|"));
  return {
      what,
      [choices = std::move(choices), what](const std::string& text,
                                           const Context&) -> absl::StatusOr<E> {
        for (const auto& [word, value] : choices) {
          if (word == text) {
            return value;
          }
        }
        return absl::InvalidArgumentError(absl::StrCat("expected ", what, ", got ", Quote(text)));
      }};
}

ScalarType<Duration> Period(Duration min);
ScalarType<bool> Boolean();
ScalarType<double> Fraction(bool exclude_zero);
ScalarType<Endpoint> ListenAddress();
ScalarType<std::string> HostName();
ScalarType<std::string> Text(std::string what);  // any non-empty string
ScalarType<std::string> ConnectionName();
ScalarType<std::string> RoleName();
// An SQL name as PostgreSQL stores an unquoted identifier: [a-z_][a-z0-9_$]*, at most 63
// bytes; with `qualified`, optionally `schema.name`.
ScalarType<std::string> SqlName(bool qualified);
// Resolved against Context::base_dir(); with `allow_empty`, "" stays "" (= not set).
ScalarType<std::string> FilePath(bool allow_empty);
ScalarType<std::string> EnvVarName();
ScalarType<std::string> Secret();  // non-empty; never quoted
ScalarType<std::string> ScramVerifier();

}  // namespace tracegate::config::internal
