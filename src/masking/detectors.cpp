#include "masking/detectors.h"

#include <array>

namespace tracegate::masking {
namespace {

using Words = std::string_view;
constexpr Words kNone[] = {""};
constexpr Words kPhoneWords[] = {"phone", "tel",      "mobile",  "cell", "call",
                                 "fax",   "whatsapp", "contact", "sms",  "number"};
constexpr Words kSsnWords[] = {"ssn", "social security", "social-security", "ss#", "taxpayer"};
constexpr Words kCardWords[] = {"card", "credit", "visa", "mastercard", "amex", "payment"};
constexpr Words kIpWords[] = {"ip", "address", "host", "client", "server", "remote"};
constexpr Words kIbanWords[] = {"iban", "account", "bank"};

constexpr std::span<const Words> NoWords() { return std::span<const Words>(kNone, 0); }

// Scores follow Presidio's scale: a validated checksum or a fixed vendor prefix is near
// 1; a well-formed shape without a checksum is 0.6–0.75; the class scanner scores its own
// weak shapes below the default threshold of 0.5 (see class_scanner.cpp).
constexpr std::array<BuiltinInfo, kBuiltinCount> kBuiltins = {{
    {"email", "EMAIL", 0.9f, NoWords()},
    {"phone", "PHONE", 0.7f, kPhoneWords},
    {"card", "CARD", 0.9f, kCardWords},
    {"iban", "IBAN", 0.95f, kIbanWords},
    {"ssn", "SSN", 0.6f, kSsnWords},
    {"ipv4", "IP_ADDRESS", 0.6f, kIpWords},
    {"ipv6", "IP_ADDRESS", 0.6f, kIpWords},
    {"mac", "MAC_ADDRESS", 0.6f, NoWords()},
    {"aws_access_key", "AWS_ACCESS_KEY", 0.95f, NoWords()},
    {"aws_secret_key", "AWS_SECRET_KEY", 0.9f, NoWords()},
    {"github_token", "GITHUB_TOKEN", 0.95f, NoWords()},
    {"gitlab_token", "GITLAB_TOKEN", 0.95f, NoWords()},
    {"slack_token", "SLACK_TOKEN", 0.95f, NoWords()},
    {"stripe_key", "STRIPE_KEY", 0.95f, NoWords()},
    {"google_api_key", "GOOGLE_API_KEY", 0.95f, NoWords()},
    {"openai_key", "OPENAI_KEY", 0.9f, NoWords()},
    {"anthropic_key", "ANTHROPIC_KEY", 0.95f, NoWords()},
    {"jwt", "JWT", 0.95f, NoWords()},
    {"private_key", "PRIVATE_KEY", 1.0f, NoWords()},
    {"generic_secret", "SECRET", 0.8f, NoWords()},
}};

constexpr unsigned kCaseless = HS_FLAG_CASELESS;

// Each expression ends as early as a match is certain, so Hyperscan reports one end per
// value; the locator then finds the full extent in C++.
constexpr BuiltinPattern kPatterns[] = {
    {Builtin::kEmail, R"([A-Za-z0-9_%+\-\x80-\xff]@[A-Za-z0-9\-]{1,63}\.[A-Za-z0-9])", 0,
     LocateKind::kEmail},
    {Builtin::kAwsAccessKey, R"((?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16})", 0,
     LocateKind::kToken},
    {Builtin::kAwsSecretKey,
     R"((?:aws|amazon)[A-Za-z0-9_\-. ]{0,30}(?:secret|sk)[A-Za-z0-9_\- ]{0,20}["']?[ \t]{0,3}[:=][ \t]{0,3}["']?[A-Za-z0-9/+]{40})",
     kCaseless, LocateKind::kTail40},
    {Builtin::kGithubToken, R"(gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22})", 0,
     LocateKind::kToken},
    {Builtin::kGitlabToken,
     R"((?:glpat|gldt|glrt|glptt|glft|glsoat|glcbt|gloas|glimt|glagent)-[A-Za-z0-9_\-]{20})", 0,
     LocateKind::kToken},
    {Builtin::kSlackToken, R"(xox[abposre]-[A-Za-z0-9\-]{10}|xapp-[0-9]-[A-Za-z0-9\-]{10})", 0,
     LocateKind::kToken},
    {Builtin::kSlackToken, R"(hooks\.slack\.com/services/T[A-Za-z0-9_]{6})", 0,
     LocateKind::kSlackWebhook},
    {Builtin::kStripeKey, R"((?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10}|whsec_[A-Za-z0-9]{20})", 0,
     LocateKind::kToken},
    {Builtin::kGoogleApiKey, R"(AIza[0-9A-Za-z_\-]{35})", 0, LocateKind::kToken},
    {Builtin::kOpenaiKey, R"(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20})", 0,
     LocateKind::kToken},
    {Builtin::kAnthropicKey, R"(sk-ant-[a-z]{2,8}[0-9]{0,3}-[A-Za-z0-9_\-]{20})", 0,
     LocateKind::kToken},
    {Builtin::kJwt, R"(eyJ[A-Za-z0-9_\-]{8,1000}\.eyJ)", 0, LocateKind::kJwt},
    {Builtin::kPrivateKey, R"(-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----)", 0,
     LocateKind::kPem},
    {Builtin::kGenericSecret,
     R"((?:password|passwd|pwd|passphrase|secret|api[_\-]?key|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|private[_\-]?key|token)["']?[ \t]{0,3}(?:[:=]|=>)[ \t]{0,3}["']?[^\s"'`,;=:>])",
     kCaseless, LocateKind::kAssignment},
    {Builtin::kGenericSecret, R"(\bbearer[ \t]{1,3}[A-Za-z0-9._~+/\-]{16})", kCaseless,
     LocateKind::kBearer},
    {Builtin::kGenericSecret,
     R"([A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s:@/"'<>]{1,64}:[^\s@/"'<>]{1,128}@)", 0,
     LocateKind::kUrlCredential, 0.95f},  // above email: `user:pw@host` is not an address
};

}  // namespace

const BuiltinInfo& GetBuiltin(Builtin b) { return kBuiltins[static_cast<size_t>(b)]; }

std::span<const BuiltinPattern> BuiltinPatterns() { return kPatterns; }

bool IsClassDetector(Builtin b) {
  switch (b) {
    case Builtin::kPhone:
    case Builtin::kCard:
    case Builtin::kIban:
    case Builtin::kSsn:
    case Builtin::kIpv4:
    case Builtin::kIpv6:
    case Builtin::kMac:
      return true;
    default:
      return false;
  }
}

}  // namespace tracegate::masking
