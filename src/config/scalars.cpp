#include "config/scalars.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace tracegate::config::internal {
namespace {

using absl::InvalidArgumentError;

constexpr Duration kMaxDuration = std::chrono::hours(24 * 365);
constexpr size_t kMaxRoleNameBytes = 63;  // PostgreSQL's NAMEDATALEN - 1; longer names truncate
constexpr size_t kMaxConnectionNameBytes = 63;
constexpr size_t kMaxRequiredSecretFileBytes = 64 << 10;

// Leading decimal digits of `text` as a number; nullopt on overflow or no digits.
std::optional<uint64_t> LeadingNumber(absl::string_view text, size_t* digits) {
  uint64_t n = 0;
  size_t i = 0;
  for (; i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i])); ++i) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (n > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      return std::nullopt;
    }
    n = n * 10 + digit;
  }
  *digits = i;
  if (i == 0) {
    return std::nullopt;
  }
  return n;
}

bool IsBase64(absl::string_view text) {
  if (text.empty() || text.size() % 4 != 0) {
    return false;
  }
  size_t padding = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding > 0) {  // '=' only at the end
      return false;
    }
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') {
      return false;
    }
  }
  return padding <= 2;
}

bool IsHostChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

bool IsIpv6Char(char c) {
  // Hex digits, ':' and '.' (embedded IPv4); '%' plus a zone name for link-local.
  return IsHostChar(c) || c == ':' || c == '%';
}

std::string DurationText(Duration d) { return absl::StrCat(d.count(), "ms"); }

}  // namespace

absl::StatusOr<uint64_t> ParseCount(absl::string_view text, uint64_t min, uint64_t max) {
  size_t digits = 0;
  std::optional<uint64_t> n = LeadingNumber(text, &digits);
  if (!n.has_value() || digits != text.size() || *n < min || *n > max) {
    return InvalidArgumentError(
        absl::StrCat("expected an integer from ", min, " to ", max, ", got ", Quote(text)));
  }
  return *n;
}

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text, uint64_t min, uint64_t max) {
  size_t digits = 0;
  std::optional<uint64_t> n = LeadingNumber(text, &digits);
  if (digits == 0) {
    return InvalidArgumentError(
        absl::StrCat("expected a size in bytes like 65536 or 64MiB, got ", Quote(text)));
  }
  absl::string_view unit = absl::StripLeadingAsciiWhitespace(text.substr(digits));
  uint64_t scale = 1;
  if (unit == "KiB") {
    scale = uint64_t{1} << 10;
  } else if (unit == "MiB") {
    scale = uint64_t{1} << 20;
  } else if (unit == "GiB") {
    scale = uint64_t{1} << 30;
  } else if (!unit.empty()) {
    return InvalidArgumentError(
        absl::StrCat("unknown size unit ", Quote(unit), " (use KiB, MiB or GiB, or plain bytes)"));
  }
  if (!n.has_value() || *n > max / scale || *n * scale < min) {
    return InvalidArgumentError(
        absl::StrCat("size ", Quote(text), " is out of range (", min, " to ", max, " bytes)"));
  }
  return *n * scale;
}

absl::StatusOr<Duration> ParseDuration(absl::string_view text, Duration min) {
  if (absl::StartsWith(text, "-")) {
    return InvalidArgumentError(absl::StrCat("durations cannot be negative, got ", Quote(text)));
  }
  size_t digits = 0;
  std::optional<uint64_t> n = LeadingNumber(text, &digits);
  if (digits == 0) {
    return InvalidArgumentError(
        absl::StrCat("expected a duration like 30s, 5m or 250ms, got ", Quote(text)));
  }
  absl::string_view unit = absl::StripLeadingAsciiWhitespace(text.substr(digits));
  if (unit.empty()) {
    return InvalidArgumentError(
        absl::StrCat("duration needs a unit (ms, s, m or h), e.g. \"", text, "s\""));
  }
  uint64_t ms_per_unit = 0;
  if (unit == "ms") {
    ms_per_unit = 1;
  } else if (unit == "s") {
    ms_per_unit = 1000;
  } else if (unit == "m") {
    ms_per_unit = 60 * 1000;
  } else if (unit == "h") {
    ms_per_unit = 60 * 60 * 1000;
  } else {
    return InvalidArgumentError(
        absl::StrCat("unknown duration unit ", Quote(unit), " (use ms, s, m or h)"));
  }
  const uint64_t max_ms = static_cast<uint64_t>(kMaxDuration.count());
  if (!n.has_value() || *n > max_ms / ms_per_unit) {
    return InvalidArgumentError(
        absl::StrCat("duration ", Quote(text), " is too long (at most 8760h)"));
  }
  Duration d(static_cast<Duration::rep>(*n * ms_per_unit));
  if (d < min) {
    return InvalidArgumentError(min == Duration(1)
                                    ? std::string("must be greater than 0")
                                    : absl::StrCat("must be at least ", DurationText(min)));
  }
  return d;
}

absl::StatusOr<bool> ParseBool(absl::string_view text) {
  if (text == "true") {
    return true;
  }
  if (text == "false") {
    return false;
  }
  return InvalidArgumentError(absl::StrCat("expected true or false, got ", Quote(text)));
}

absl::StatusOr<double> ParseFraction(absl::string_view text, bool exclude_zero) {
  const std::string expected =
      absl::StrCat("expected a decimal ", exclude_zero ? "above 0" : "from 0", " up to 1 like 0.5");
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  size_t end = digits;
  if (digits > 0 && end < text.size() && text[end] == '.') {
    ++end;
    while (end < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[end]))) {
      ++end;
    }
  }
  double value = 0;
  const bool parsed =
      digits > 0 && end == text.size() && text.back() != '.' &&
      std::from_chars(text.data(), text.data() + end, value).ptr == text.data() + end;
  if (!parsed || value > 1 || (exclude_zero && value == 0)) {
    return InvalidArgumentError(absl::StrCat(expected, ", got ", Quote(text)));
  }
  return value;
}

absl::StatusOr<std::string> ParseHost(absl::string_view text) {
  absl::string_view host = text;
  bool bracketed = absl::StartsWith(host, "[") && absl::EndsWith(host, "]") && host.size() >= 2;
  if (bracketed) {
    host = host.substr(1, host.size() - 2);
  }
  bool ipv6 = bracketed || absl::StrContains(host, ':');
  bool valid = !host.empty();
  for (char c : host) {
    valid = valid && (ipv6 ? IsIpv6Char(c) : IsHostChar(c));
  }
  if (!valid) {
    return InvalidArgumentError(
        absl::StrCat("expected a host name or IP address, got ", Quote(text)));
  }
  return std::string(host);
}

absl::StatusOr<Endpoint> ParseListenAddress(absl::string_view text) {
  absl::string_view host;
  absl::string_view port;
  if (absl::StartsWith(text, "[")) {
    size_t close = text.find(']');
    if (close == absl::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return InvalidArgumentError(absl::StrCat("expected [ipv6-address]:port, got ", Quote(text)));
    }
    host = text.substr(0, close + 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) {
      return InvalidArgumentError(
          absl::StrCat("expected host:port like 127.0.0.1:6432, got ", Quote(text)));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (absl::StrContains(host, ':')) {
      return InvalidArgumentError(
          absl::StrCat("IPv6 addresses need brackets, e.g. [::1]:6432, got ", Quote(text)));
    }
  }
  absl::StatusOr<std::string> parsed_host = ParseHost(host);
  if (!parsed_host.ok()) {
    return parsed_host.status();
  }
  absl::StatusOr<uint64_t> parsed_port = ParseCount(port, 0, 65535);
  if (!parsed_port.ok()) {
    return InvalidArgumentError(
        absl::StrCat("expected a port from 0 to 65535 after the host, got ", Quote(text)));
  }
  return Endpoint{.host = *std::move(parsed_host), .port = static_cast<uint16_t>(*parsed_port)};
}

absl::Status CheckConnectionName(absl::string_view text) {
  bool valid = !text.empty() && text.size() <= kMaxConnectionNameBytes;
  for (char c : text) {
    valid = valid && (absl::ascii_islower(static_cast<unsigned char>(c)) ||
                      absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '_');
  }
  if (!valid) {
    return InvalidArgumentError(
        absl::StrCat("expected 1 to 63 characters of a-z, 0-9, '-' and '_', got ", Quote(text)));
  }
  return absl::OkStatus();
}

absl::Status CheckRoleName(absl::string_view text) {
  if (text.empty()) {
    return InvalidArgumentError("must not be empty");
  }
  if (text.size() > kMaxRoleNameBytes) {
    return InvalidArgumentError(absl::StrCat(
        "is ", text.size(), " bytes; PostgreSQL role names are at most 63 (longer ones are cut)"));
  }
  for (char c : text) {
    if (absl::ascii_iscntrl(static_cast<unsigned char>(c))) {
      return InvalidArgumentError(
          absl::StrCat("must not contain control characters, got ", Quote(text)));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckEnvVarName(absl::string_view text) {
  bool valid = !text.empty() && !absl::ascii_isdigit(static_cast<unsigned char>(text[0]));
  for (char c : text) {
    valid = valid && (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_');
  }
  if (!valid) {
    return InvalidArgumentError(
        absl::StrCat("expected an environment variable name like TRACEGATE_BACKEND_PASSWORD, got ",
                     Quote(text)));
  }
  return absl::OkStatus();
}

absl::Status CheckScramVerifier(absl::string_view text) {
  constexpr absl::string_view kPrefix = "SCRAM-SHA-256$";
  constexpr absl::string_view kShape =
      "; expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>";
  if (!absl::StartsWith(text, kPrefix)) {
    return InvalidArgumentError(absl::StrCat("not a SCRAM-SHA-256 verifier", kShape));
  }
  std::vector<absl::string_view> halves = absl::StrSplit(text.substr(kPrefix.size()), '$');
  std::vector<absl::string_view> first;
  std::vector<absl::string_view> second;
  if (halves.size() == 2) {
    first = absl::StrSplit(halves[0], ':');
    second = absl::StrSplit(halves[1], ':');
  }
  if (first.size() != 2 || second.size() != 2) {
    return InvalidArgumentError(absl::StrCat("malformed verifier", kShape));
  }
  if (!ParseCount(first[0], 1, std::numeric_limits<int32_t>::max()).ok()) {
    return InvalidArgumentError("malformed verifier: iterations must be a positive integer");
  }
  if (!IsBase64(first[1])) {
    return InvalidArgumentError("malformed verifier: the salt is not base64");
  }
  // SHA-256 outputs are 32 bytes: 44 base64 characters ending in one '='.
  for (absl::string_view key : second) {
    if (key.size() != 44 || !IsBase64(key) || key[42] == '=') {
      return InvalidArgumentError(
          "malformed verifier: StoredKey and ServerKey must each be 32 bytes of base64");
    }
  }
  return absl::OkStatus();
}

bool UsesOnlyTheTraceId(absl::string_view sql) {
  bool uses_one = false;
  for (size_t i = 0; i + 1 < sql.size(); ++i) {
    const bool after_identifier =
        i > 0 && (absl::ascii_isalnum(static_cast<unsigned char>(sql[i - 1])) ||
                  sql[i - 1] == '_' || sql[i - 1] == '$');
    if (sql[i] != '$' || after_identifier ||
        !absl::ascii_isdigit(static_cast<unsigned char>(sql[i + 1]))) {
      continue;
    }
    size_t end = i + 1;
    while (end < sql.size() && absl::ascii_isdigit(static_cast<unsigned char>(sql[end]))) {
      ++end;
    }
    if (sql.substr(i + 1, end - i - 1) != "1") {
      return false;
    }
    uses_one = true;
    i = end - 1;
  }
  return uses_one;
}

std::string ResolvePath(const std::filesystem::path& base, absl::string_view text) {
  std::filesystem::path path{std::string(text)};
  if (path.is_relative()) {
    path = base / path;
  }
  return path.lexically_normal().string();
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_size) {
  auto failure = [&path](absl::string_view what) {
    // The whole path, however long: it is what the operator needs to find the file.
    return InvalidArgumentError(
        absl::StrCat("cannot read \"", absl::CHexEscape(path), "\": ", what));
  };
  // O_NONBLOCK: opening a FIFO without a writer must not hang the loader.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    return failure(std::strerror(errno));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return failure("not a regular file");
  }
  std::string content;
  char buffer[4096];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int read_errno = errno;
      ::close(fd);
      return failure(std::strerror(read_errno));
    }
    if (n == 0) {
      break;
    }
    content.append(buffer, static_cast<size_t>(n));
    if (content.size() > max_size) {
      ::close(fd);
      return failure(absl::StrCat("larger than ", max_size, " bytes"));
    }
  }
  ::close(fd);
  return content;
}

ScalarType<Duration> Period(Duration min) {
  return {"a duration like 30s",
          [min](const std::string& text, const Context&) { return ParseDuration(text, min); }};
}

ScalarType<bool> Boolean() {
  return {"true or false", [](const std::string& text, const Context&) { return ParseBool(text); }};
}

ScalarType<double> Fraction(bool exclude_zero) {
  return {"a decimal from 0 to 1", [exclude_zero](const std::string& text, const Context&) {
            return ParseFraction(text, exclude_zero);
          }};
}

ScalarType<Endpoint> ListenAddress() {
  return {"host:port",
          [](const std::string& text, const Context&) { return ParseListenAddress(text); }};
}

ScalarType<std::string> HostName() {
  return {"a host name or IP address",
          [](const std::string& text, const Context&) { return ParseHost(text); }};
}

ScalarType<std::string> Text(std::string what) {
  return {what, [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (text.empty()) {
              return InvalidArgumentError("must not be empty");
            }
            return text;
          }};
}

ScalarType<std::string> ConnectionName() {
  return {"a name", [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (absl::Status s = CheckConnectionName(text); !s.ok()) {
              return s;
            }
            return text;
          }};
}

ScalarType<std::string> RoleName() {
  return {"a role name",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (absl::Status s = CheckRoleName(text); !s.ok()) {
              return s;
            }
            return text;
          }};
}

ScalarType<std::string> SqlName(bool qualified) {
  return {qualified ? "a table name (name or schema.name)" : "an SQL name",
          [qualified](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            auto valid_part = [](std::string_view part) {
              if (part.empty() || part.size() > 63 || (part[0] >= '0' && part[0] <= '9') ||
                  part[0] == '$') {
                return false;
              }
              return std::all_of(part.begin(), part.end(), [](char c) {
                return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '$';
              });
            };
            const size_t dot = text.find('.');
            const bool ok = dot == std::string::npos
                                ? valid_part(text)
                                : qualified && valid_part(std::string_view(text).substr(0, dot)) &&
                                      valid_part(std::string_view(text).substr(dot + 1));
            if (!ok) {
              return InvalidArgumentError(
                  absl::StrCat(Quote(text), " is not ", qualified ? "a table name" : "an SQL name",
                               ": use lower-case letters, digits, _ and $ (as PostgreSQL folds "
                               "unquoted names), at most 63 bytes",
                               qualified ? ", optionally schema-qualified" : ""));
            }
            return text;
          }};
}

ScalarType<std::string> FilePath(bool allow_empty) {
  return {
      "a file path",
      [allow_empty](const std::string& text, const Context& ctx) -> absl::StatusOr<std::string> {
        if (text.empty()) {
          if (allow_empty) {
            return std::string();
          }
          return InvalidArgumentError("must not be empty");
        }
        if (text.find('\0') != std::string::npos) {
          return InvalidArgumentError("a path must not contain NUL bytes");
        }
        return ResolvePath(ctx.base_dir(), text);
      }};
}

ScalarType<std::string> EnvVarName() {
  return {"an environment variable name",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (absl::Status s = CheckEnvVarName(text); !s.ok()) {
              return s;
            }
            return text;
          }};
}

ScalarType<std::string> Secret() {
  return {"a string", [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (text.empty()) {
              return InvalidArgumentError("must not be empty");
            }
            return text;
          }};
}

ScalarType<std::string> ScramVerifier() {
  return {"a SCRAM-SHA-256 verifier",
          [](const std::string& text, const Context&) -> absl::StatusOr<std::string> {
            if (absl::Status s = CheckScramVerifier(text); !s.ok()) {
              return s;
            }
            return text;
          }};
}

void LoadRequiredSecret(const Item& map, absl::string_view name,
                        const RequiredSecretSources& sources, std::string& out, Context& ctx) {
  const std::string file_key = ChildPath(map.path, absl::StrCat(name, "_file"));
  const std::string env_key = ChildPath(map.path, absl::StrCat(name, "_env"));
  const std::string inline_key = ChildPath(map.path, name);
  // Which sources the map names (MarkOf finds keys present, even with invalid values), in
  // document order so that a conflict is reported at the later key.
  std::vector<std::string> set;
  for (const std::string* key : {&file_key, &env_key, &inline_key}) {
    if (!ctx.MarkOf(*key).is_null()) {
      set.push_back(*key);
    }
  }
  std::sort(set.begin(), set.end(), [&ctx](const std::string& a, const std::string& b) {
    return ctx.MarkOf(a).pos < ctx.MarkOf(b).pos;
  });
  if (set.empty()) {
    ctx.Error(map.mark, map.path,
              absl::StrCat("needs a ", name, " source: ", name, "_file or ", name, "_env (or ",
                           name, ", with allow_inline_", name, ": true)"));
    return;
  }
  if (set.size() > 1) {
    ctx.Error(ctx.MarkOf(set[1]), set[1],
              absl::StrCat("set only one of ", name, "_file, ", name, "_env and ", name));
    return;
  }
  if (sources.file.empty() && sources.env.empty() && sources.inline_value.empty()) {
    return;  // the one source given was invalid, and reported
  }
  if (!sources.file.empty()) {
    absl::StatusOr<std::string> content = ReadSmallFile(sources.file, kMaxRequiredSecretFileBytes);
    if (!content.ok() && !ctx.secrets_required()) {
      return;
    }
    if (!content.ok()) {
      ctx.Error(ctx.MarkOf(file_key), file_key, content.status().message());
      return;
    }
    std::string& secret = *content;
    if (secret.ends_with('\n')) {  // one trailing newline, as `echo` writes it
      secret.pop_back();
      if (secret.ends_with('\r')) {
        secret.pop_back();
      }
    }
    if (secret.empty()) {
      ctx.Error(ctx.MarkOf(file_key), file_key,
                absl::StrCat(name, " file \"", sources.file, "\" is empty"));
      return;
    }
    out = std::move(secret);
  } else if (!sources.env.empty()) {
    const char* value = std::getenv(sources.env.c_str());
    if ((value == nullptr || *value == '\0') && !ctx.secrets_required()) {
      return;
    }
    if (value == nullptr || *value == '\0') {
      ctx.Error(ctx.MarkOf(env_key), env_key,
                absl::StrCat("environment variable ", sources.env,
                             value == nullptr ? " is not set" : " is empty"));
      return;
    }
    out = value;
  } else if (!sources.allow_inline) {
    ctx.Error(ctx.MarkOf(inline_key), inline_key,
              absl::StrCat("an inline ", name, " is accepted only with allow_inline_", name,
                           ": true (demos and tests); use ", name, "_file or ", name, "_env"));
  } else {
    out = sources.inline_value;
  }
}

}  // namespace tracegate::config::internal
