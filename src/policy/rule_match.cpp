#include "policy/rule_match.h"

#include <algorithm>
#include <cstdio>

#include "common/strings.h"

namespace tracegate::policy::internal {
namespace {

constexpr std::string_view kWildcard = "*";

bool IsControl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// The first entry of `selector` that is "*" or equals `value`; nullptr when none does. An
// empty value (no client id) is matched only by "*", never by an empty entry.
const std::string* MatchingEntry(const std::vector<std::string>& selector, std::string_view value) {
  for (const std::string& entry : selector) {
    if (entry == kWildcard || (!value.empty() && entry == value)) {
      return &entry;
    }
  }
  return nullptr;
}

// One "subject alice" / "any client" phrase for a matched selector.
std::string MatchedPhrase(std::string_view what, const std::string& entry) {
  if (entry == kWildcard) {
    return Cat("any ", what);
  }
  return Cat(what, " ", Printable(entry));
}

void Append(std::string& out, std::string_view separator, std::string_view part) {
  if (!out.empty()) {
    out += separator;
  }
  out += part;
}

}  // namespace

RuleMatch MatchRule(const config::PolicyRule& rule, const Request& request) {
  const identity::Principal& principal = request.principal;
  std::string matched;
  std::string failed;

  // Subjects, clients and connections: one value each against "any of" the entries.
  auto check_single = [&](std::string_view what, const std::vector<std::string>& selector,
                          std::string_view value) {
    if (selector.empty()) {
      return;
    }
    if (const std::string* entry = MatchingEntry(selector, value)) {
      Append(matched, ", ", MatchedPhrase(what, *entry));
      return;
    }
    std::string shown = value.empty() ? std::string("(none)") : Printable(value);
    Append(failed, "; ", Cat(what, " ", shown, " is not one of ", ListText(selector)));
  };

  // The issuer first: subjects, groups and clients mean something only within it.
  check_single("issuer", rule.issuers, principal.issuer_name);
  check_single("subject", rule.subjects, principal.subject);
  check_single("client", rule.clients, principal.client_id);

  if (!rule.groups.empty()) {
    // "*" matches even a principal with no groups.
    auto wildcard = std::find(rule.groups.begin(), rule.groups.end(), kWildcard);
    const std::string* entry = wildcard != rule.groups.end() ? &*wildcard : nullptr;
    for (size_t i = 0; entry == nullptr && i < principal.groups.size(); ++i) {
      entry = MatchingEntry(rule.groups, principal.groups[i]);
    }
    if (entry != nullptr) {
      Append(matched, ", ", MatchedPhrase("group", *entry));
    } else if (principal.groups.empty()) {
      Append(failed, "; ",
             Cat("principal has no groups, rule needs one of ", ListText(rule.groups)));
    } else {
      Append(
          failed, "; ",
          Cat("groups ", ListText(principal.groups), " include none of ", ListText(rule.groups)));
    }
  }

  check_single("connection", rule.connections, request.connection);

  if (!failed.empty()) {
    return {.matched = false, .detail = std::move(failed)};
  }
  if (matched.empty()) {
    matched = "every request";
  }
  return {.matched = true, .detail = std::move(matched)};
}

std::string TraceIdProblem(std::string_view trace_id) {
  if (trace_id.empty()) {
    return "trace id is empty";
  }
  if (trace_id.size() > kMaxTraceIdLength) {
    return Cat("trace id is ", trace_id.size(), " bytes, more than ", kMaxTraceIdLength);
  }
  for (size_t i = 0; i < trace_id.size(); ++i) {
    if (IsControl(static_cast<unsigned char>(trace_id[i]))) {
      return Cat("trace id has a control character (", Printable(trace_id.substr(i, 1)),
                 ") at byte ", i);
    }
  }
  return {};
}

bool IsBlank(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  });
}

std::string Printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (IsControl(byte)) {
      char escaped[5];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out;
}

std::string ListText(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) {
    Append(out, ", ", Printable(item));
  }
  return Cat("[", out, "]");
}

std::string DurationText(std::chrono::milliseconds duration) {
  const int64_t ms = duration.count();
  if (ms != 0 && ms % 3600000 == 0) {
    return Cat(ms / 3600000, "h");
  }
  if (ms != 0 && ms % 60000 == 0) {
    return Cat(ms / 60000, "m");
  }
  if (ms != 0 && ms % 1000 == 0) {
    return Cat(ms / 1000, "s");
  }
  return Cat(ms, "ms");
}

}  // namespace tracegate::policy::internal
