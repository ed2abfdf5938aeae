#pragma once
// The built-in detectors: names, entities, scores, context words, and the Hyperscan
// expressions of the literal-anchored ones with the locator that finds each match's start.

#include <hs/hs.h>

#include <cstdint>
#include <span>
#include <string_view>

namespace tracegate::masking {

enum class Builtin : uint8_t {
  kEmail,
  kPhone,
  kCard,
  kIban,
  kSsn,
  kIpv4,
  kIpv6,
  kMac,
  kAwsAccessKey,
  kAwsSecretKey,
  kGithubToken,
  kGitlabToken,
  kSlackToken,
  kStripeKey,
  kGoogleApiKey,
  kOpenaiKey,
  kAnthropicKey,
  kJwt,
  kPrivateKey,
  kGenericSecret,
  kCount,
};
inline constexpr int kBuiltinCount = static_cast<int>(Builtin::kCount);

struct BuiltinInfo {
  std::string_view name;    // Profile::detectors
  std::string_view entity;  // what the value is counted and redacted as
  float score;              // score of a located, validated match
  std::span<const std::string_view> context;
};
const BuiltinInfo& GetBuiltin(Builtin b);

// How a Hyperscan end offset becomes a [start, end) span (see locators.h).
enum class LocateKind : uint8_t {
  kEmail,          // '@' before the end: local part backwards, domain forwards
  kToken,          // expand over the detector's token alphabet both ways, check prefix
  kJwt,            // header.payload.signature around the end
  kPem,            // -----BEGIN ... PRIVATE KEY----- through the matching -----END ...-----
  kTail40,         // the last 40 bytes of the match (AWS secret access key value)
  kAssignment,     // `password=`/`api_key:` assignment: the value after the separator
  kBearer,         // `Bearer <token>`: the token
  kUrlCredential,  // scheme://user:password@: the password
  kSlackWebhook,   // https://hooks.slack.com/services/...: the whole URL
  kFixed,          // dictionary term of a known length
  kSom,            // custom regex: start from the start-of-match database
};

struct BuiltinPattern {
  Builtin detector;
  const char* regex;
  unsigned flags;
  LocateKind locate;
  float score = 0;  // 0: the detector's score
};
std::span<const BuiltinPattern> BuiltinPatterns();

// Whether the detector is found by the C++ class scanner rather than by Hyperscan.
bool IsClassDetector(Builtin b);

}  // namespace tracegate::masking
