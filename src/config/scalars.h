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
// Whether `sql`'s only parameter is $1, used at least once: a query the gateway runs with the
// trace id alone (risk_query, fetch_query). A `$` right after an identifier character
// belongs to the identifier (`a$1`), not a parameter.
bool UsesOnlyTheTraceId(absl::string_view sql);
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

// `row`, a scalar key, that also notes in `extra.*valid` whether its value parsed: checks
// that depend on it (a connection's type, an upstream's auth scheme) then stay quiet instead of
// adding errors that follow from the one already reported.
template <typename T, typename Extra>
Key<T, Extra> NotingValidity(Key<T, Extra> row, bool Extra::*valid) {
  row.parse = [inner = std::move(row.parse), valid](const Item& item, T& t, Extra& extra,
                                                    Context& ctx) {
    const size_t before = ctx.error_count();
    inner(item, t, extra, ctx);
    extra.*valid = ctx.error_count() == before;
  };
  return row;
}

// ---- a secret that must be set -------------------------------------------------------------

// The keys <name>_file, <name>_env, <name> and allow_inline_<name> of one map (a backend's
// password, an HTTP upstream's secret), as parsed: the Extra of that map's table.
struct RequiredSecretSources {
  std::string file;  // resolved path
  std::string env;
  std::string inline_value;
  bool allow_inline = false;
};

// Loads into `out` the secret named by exactly one of <name>_file (one trailing newline is
// stripped), <name>_env, or <name> itself when allow_inline_<name> is true (demos and tests).
// Errors land at `map.path`.<key> and never quote the secret. Call from `map`'s check.
void LoadRequiredSecret(const Item& map, absl::string_view name,
                        const RequiredSecretSources& sources, std::string& out, Context& ctx);

}  // namespace tracegate::config::internal
