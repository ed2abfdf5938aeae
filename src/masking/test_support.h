#pragma once
// Helpers shared by the masking tests, fuzz target and benchmark (header-only, not part of
// the library). Secret-shaped test values are assembled at run time from obviously fake
// parts, so no live-looking secret is committed.

#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "masking/masker.h"

namespace tracegate::masking::test_support {

// `unit` repeated and cut to n bytes.
inline std::string Rep(std::string_view unit, size_t n) {
  std::string out;
  while (out.size() < n) {
    out.append(unit);
  }
  out.resize(n);
  return out;
}

inline std::string FakeGithubToken() { return std::string("gh") + "p_" + Rep("EXAMPLE0tok", 36); }
inline std::string FakeGitlabToken() { return std::string("glp") + "at-" + Rep("EXAMPLEx", 20); }
inline std::string FakeSlackToken() {
  return std::string("xo") + "xb-000000000000-0000000000000-" + Rep("EXAMPLE", 24);
}
inline std::string FakeStripeKey() { return std::string("sk") + "_live_" + Rep("EXAMPLE0", 24); }
inline std::string FakeGoogleKey() { return std::string("AI") + "za" + Rep("EXAMPLE0-_", 35); }
inline std::string FakeOpenaiKey() {
  return std::string("sk") + "-proj-" + Rep("EXAMPLEexample01", 48);
}
inline std::string FakeAnthropicKey() {
  return std::string("sk") + "-ant-api03-" + Rep("EXAMPLEexample01", 93) + "AA";
}
inline std::string FakeAwsKeyId() { return std::string("AKIA") + "IOSFODNN7EXAMPLE"; }
inline std::string FakeAwsSecret() {
  return std::string("wJalrXUtnFEMI/K7MDENG/") + "bPxRfiCYEXAMPLEKEY";
}
inline std::string FakeJwt() {
  return std::string("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.") +
         "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ." +
         "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
}
inline std::string FakePem() {
  return std::string("-----BEGIN ") + "RSA PRIVATE KEY-----\n" + Rep("EXAMPLEKEYBODY+/", 64) +
         "\n" + Rep("EXAMPLEKEYBODY+/", 40) + "==\n-----END RSA PRIVATE KEY-----";
}

// Every country of the SWIFT IBAN registry (release 102, June 2026) with its IBAN length and
// the registry's own example IBAN (electronic format). kIbanCountries in validators.cpp is
// the same list without the examples; validators_test checks that the two agree.
struct IbanRegistryEntry {
  const char* country;
  int length;
  const char* example;
};

inline constexpr IbanRegistryEntry kIbanRegistry[] = {
    {"AD", 24, "AD1200012030200359100100"},
    {"AE", 23, "AE070331234567890123456"},
    {"AL", 28, "AL47212110090000000235698741"},
    {"AT", 20, "AT611904300234573201"},
    {"AZ", 28, "AZ21NABZ00000000137010001944"},
    {"BA", 20, "BA391290079401028494"},
    {"BE", 16, "BE68539007547034"},
    {"BG", 22, "BG80BNBG96611020345678"},
    {"BH", 22, "BH67BMAG00001299123456"},
    {"BI", 27, "BI4210000100010000332045181"},
    {"BR", 29, "BR1800360305000010009795493C1"},
    {"BY", 28, "BY13NBRB3600900000002Z00AB00"},
    {"CH", 21, "CH9300762011623852957"},
    {"CR", 22, "CR05015202001026284066"},
    {"CY", 28, "CY17002001280000001200527600"},
    {"CZ", 24, "CZ6508000000192000145399"},
    {"DE", 22, "DE89370400440532013000"},
    {"DJ", 27, "DJ2100010000000154000100186"},
    {"DK", 18, "DK5000400440116243"},
    {"DO", 28, "DO28BAGR00000001212453611324"},
    {"EE", 20, "EE382200221020145685"},
    {"EG", 29, "EG380019000500000000263180002"},
    {"ES", 24, "ES9121000418450200051332"},
    {"FI", 18, "FI2112345600000785"},
    {"FK", 18, "FK88SC123456789012"},
    {"FO", 18, "FO6264600001631634"},
    {"FR", 27, "FR1420041010050500013M02606"},
    {"GB", 22, "GB29NWBK60161331926819"},
    {"GE", 22, "GE29NB0000000101904917"},
    {"GI", 23, "GI75NWBK000000007099453"},
    {"GL", 18, "GL8964710001000206"},
    {"GR", 27, "GR1601101250000000012300695"},
    {"GT", 28, "GT82TRAJ01020000001210029690"},
    {"HN", 28, "HN88CABF00000000000250005469"},
    {"HR", 21, "HR1210010051863000160"},
    {"HU", 28, "HU42117730161111101800000000"},
    {"IE", 22, "IE29AIBK93115212345678"},
    {"IL", 23, "IL620108000000099999999"},
    {"IQ", 23, "IQ98NBIQ850123456789012"},
    {"IS", 26, "IS140159260076545510730339"},
    {"IT", 27, "IT60X0542811101000000123456"},
    {"JO", 30, "JO94CBJO0010000000000131000302"},
    {"KW", 30, "KW81CBKU0000000000001234560101"},
    {"KZ", 20, "KZ86125KZT5004100100"},
    {"LB", 28, "LB62099900000001001901229114"},
    {"LC", 32, "LC55HEMM000100010012001200023015"},
    {"LI", 21, "LI21088100002324013AA"},
    {"LT", 20, "LT121000011101001000"},
    {"LU", 20, "LU280019400644750000"},
    {"LV", 21, "LV80BANK0000435195001"},
    {"LY", 25, "LY83002048000020100120361"},
    {"MC", 27, "MC5811222000010123456789030"},
    {"MD", 24, "MD24AG000225100013104168"},
    {"ME", 22, "ME25505000012345678951"},
    {"MK", 19, "MK07250120000058984"},
    {"MN", 20, "MN121234123456789123"},
    {"MR", 27, "MR1300020001010000123456753"},
    {"MT", 31, "MT84MALT011000012345MTLCAST001S"},
    {"MU", 30, "MU17BOMM0101101030300200000MUR"},
    {"NI", 28, "NI45BAPR00000013000003558124"},
    {"NL", 18, "NL91ABNA0417164300"},
    {"NO", 15, "NO9386011117947"},
    {"OM", 23, "OM810180000001299123456"},
    {"PK", 24, "PK36SCBL0000001123456702"},
    {"PL", 28, "PL61109010140000071219812874"},
    {"PS", 29, "PS92PALS000000000400123456702"},
    {"PT", 25, "PT50000201231234567890154"},
    {"QA", 29, "QA58DOHB00001234567890ABCDEFG"},
    {"RO", 24, "RO49AAAA1B31007593840000"},
    {"RS", 22, "RS35260005601001611379"},
    {"RU", 33, "RU0304452522540817810538091310419"},
    {"SA", 24, "SA0380000000608010167519"},
    {"SC", 31, "SC18SSCB11010000000000001497USD"},
    {"SD", 18, "SD2129010501234001"},
    {"SE", 24, "SE4550000000058398257466"},
    {"SI", 19, "SI56263300012039086"},
    {"SK", 24, "SK3112000000198742637541"},
    {"SM", 27, "SM86U0322509800000000270100"},
    {"SO", 23, "SO211000001001000100141"},
    {"ST", 25, "ST23000100010051845310146"},
    {"SV", 28, "SV62CENR00000000000000700025"},
    {"TL", 23, "TL380080012345678910157"},
    {"TN", 24, "TN5910006035183598478831"},
    {"TR", 26, "TR330006100519786457841326"},
    {"UA", 29, "UA213223130000026007233566001"},
    {"VA", 22, "VA59001123000012345678"},
    {"VG", 24, "VG96VPVG0000012345678901"},
    {"XK", 20, "XK051212012345678906"},
    {"YE", 30, "YE15CBYE0001018861234567891234"},
};

// One synthetic value to plant: `text` goes into the document, `value` (a substring of
// `text`) is what must be masked, and the rest of `text` is the context a real trace carries
// with it ("call ", "aws_secret_access_key="). As a JSON field it is `"field": "field_value"`
// with a realistic name ("email", "OPENAI_API_KEY"); field_value is `value` unless the value
// needs its surroundings ("Bearer ...", a database URL).
struct PiiSample {
  std::string entity;  // as the engine counts it: EMAIL, CARD, ..., SECRET
  std::string text;
  std::string value;
  std::string field;
  std::string field_value;
};

// Seeded generator of varied, realistically shaped PII and secrets. std::mt19937 is
// specified bit for bit and every expression below draws its random parts in a fixed order
// (braced lists and statements, never two draws as operands of one `+`), so a seed gives
// the same values with every compiler. Secrets carry "EXAMPLE"; e-mail, phone and network
// addresses come from documentation or fiction ranges (example.com, 555-01xx, Ofcom's drama
// numbers, 192.0.2.0/24, 2001:db8::/32, locally administered MACs); cards, IBANs and SSNs
// only need a valid checksum or range to be detected, so they are random and exist only at
// run time. Nothing live-looking is committed.
class SyntheticPii {
 public:
  explicit SyntheticPii(uint32_t seed) : rng_(seed) {}

  // Every entity the default profile detects, in the engine's names.
  static const std::vector<std::string>& Entities() {
    static const std::vector<std::string> kEntities = {"EMAIL",
                                                       "CARD",
                                                       "IBAN",
                                                       "SSN",
                                                       "PHONE",
                                                       "IP_ADDRESS",
                                                       "MAC_ADDRESS",
                                                       "AWS_ACCESS_KEY",
                                                       "AWS_SECRET_KEY",
                                                       "GITHUB_TOKEN",
                                                       "GITLAB_TOKEN",
                                                       "SLACK_TOKEN",
                                                       "STRIPE_KEY",
                                                       "GOOGLE_API_KEY",
                                                       "OPENAI_KEY",
                                                       "ANTHROPIC_KEY",
                                                       "JWT",
                                                       "PRIVATE_KEY",
                                                       "SECRET"};
    return kEntities;
  }

  PiiSample Make(const std::string& entity) {
    struct Kind {
      const char* entity;
      std::string (SyntheticPii::*value)();
      std::vector<const char*> contexts;
      std::vector<const char*> fields;
    };
    static const Kind kKinds[] = {
        {"EMAIL",
         &SyntheticPii::Email,
         {"", "", "email ", "mailto:", "contact: "},
         {"email", "user_email", "reply_to"}},
        {"CARD",
         &SyntheticPii::Card,
         {"", "card ", "Visa ", "paid with "},
         {"card_number", "cc_number", "pan"}},
        {"IBAN", &SyntheticPii::Iban, {"", "IBAN ", "IBAN: ", "account "}, {"iban", "account"}},
        {"SSN",
         &SyntheticPii::Ssn,
         {"SSN ", "SSN: ", "social security number ", "SSN#"},
         {"ssn", "social_security_number"}},
        {"PHONE",
         &SyntheticPii::Phone,
         {"call ", "phone: ", "tel ", "mobile ", "contact number ", "whatsapp "},
         {"phone", "mobile", "phone_number"}},
        {"IP_ADDRESS",
         &SyntheticPii::IpAddress,
         {"", "client ip ", "from ", "remote address "},
         {"client_ip", "remote_addr", "ip"}},
        {"MAC_ADDRESS", &SyntheticPii::Mac, {"", "mac ", "device "}, {"mac", "device_mac"}},
        {"AWS_ACCESS_KEY",
         &SyntheticPii::AwsAccessKey,
         {"", "aws_access_key_id=", "AWS_ACCESS_KEY_ID: ", "key "},
         {"aws_access_key_id", "AccessKeyId"}},
        {"AWS_SECRET_KEY",
         &SyntheticPii::AwsSecretKey,
         {"aws_secret_access_key=", "aws_secret_access_key = ", "AWS_SECRET_ACCESS_KEY=",
          "export AWS_SECRET_ACCESS_KEY=", "aws_secret_access_key: ", "amazon secret key: "},
         {"aws_secret_access_key", "SecretAccessKey"}},
        {"GITHUB_TOKEN",
         &SyntheticPii::GithubToken,
         {"", "token ", "GITHUB_TOKEN="},
         {"github_token", "GH_TOKEN"}},
        {"GITLAB_TOKEN",
         &SyntheticPii::GitlabToken,
         {"", "PRIVATE-TOKEN: ", "gitlab "},
         {"gitlab_token", "GITLAB_PAT"}},
        {"SLACK_TOKEN",
         &SyntheticPii::SlackToken,
         {"", "slack ", "SLACK_BOT_TOKEN="},
         {"slack_bot_token", "webhook_url"}},
        {"STRIPE_KEY",
         &SyntheticPii::StripeKey,
         {"", "stripe ", "STRIPE_KEY="},
         {"stripe_key", "STRIPE_SECRET_KEY"}},
        {"GOOGLE_API_KEY",
         &SyntheticPii::GoogleApiKey,
         {"", "key=", "GOOGLE_API_KEY="},
         {"google_api_key", "GEMINI_KEY"}},
        {"OPENAI_KEY",
         &SyntheticPii::OpenaiKey,
         {"", "OPENAI_API_KEY=", "openai "},
         {"OPENAI_API_KEY", "openai"}},
        {"ANTHROPIC_KEY",
         &SyntheticPii::AnthropicKey,
         {"", "ANTHROPIC_API_KEY=", "x-api-key: "},
         {"ANTHROPIC_API_KEY", "anthropic"}},
        {"JWT",
         &SyntheticPii::Jwt,
         {"", "jwt ", "Authorization: Bearer ", "id_token="},
         {"id_token", "jwt"}},
        {"PRIVATE_KEY",
         &SyntheticPii::PrivateKey,
         {"", "key:\n", "id_rsa "},
         {"private_key", "pem"}},
    };
    PiiSample s{entity, "", "", "", ""};
    for (const Kind& kind : kKinds) {
      if (entity == kind.entity) {
        s.text = OneOf(kind.contexts);
        s.value = (this->*kind.value)();
        s.text += s.value;
        s.field = OneOf(kind.fields);
        s.field_value = s.value;
        return s;
      }
    }
    // SECRET: a generic assignment, a bearer token or a password in a URL.
    switch (Pick(4)) {
      case 0:
        s.text = "Authorization: Bearer ";
        s.value = Join({From(kB64Url, 24 + Pick(40)), "EXAMPLE"});
        s.text += s.value;
        s.field = "authorization";
        s.field_value = "Bearer " + s.value;
        return s;
      case 1: {
        static const char* const kUrls[][2] = {
            {"postgres", "5432"}, {"mysql", "3306"}, {"redis", "6379"}, {"amqp", "5672"}};
        const auto& url = kUrls[Pick(4)];
        s.text = Join({url[0], "://app_user:"});
        s.value = Password();
        s.text += Join({s.value, "@db.example.internal:", url[1], "/app"});
        s.field = OneOf({"dsn", "database_url"});
        s.field_value = s.text;
        return s;
      }
      default:
        s.text =
            OneOf({"password=", "password: ", "api_key: ", "API_KEY=", "db_password=", "passwd => ",
                   "secret = ", "access_token: ", "Password: "});
        s.value = Password();
        s.text += s.value;
        s.field = OneOf({"password", "api_key", "client_secret", "token"});
        s.field_value = s.value;
        return s;
    }
  }

  int Pick(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }
  const char* OneOf(std::initializer_list<const char*> options) {
    return options.begin()[Pick(static_cast<int>(options.size()))];
  }
  const char* OneOf(const std::vector<const char*>& options) {
    return options[static_cast<size_t>(Pick(static_cast<int>(options.size())))];
  }
  std::string From(std::string_view alphabet, int n) {
    std::string s;
    for (int i = 0; i < n; ++i) {
      s += alphabet[static_cast<size_t>(Pick(static_cast<int>(alphabet.size())))];
    }
    return s;
  }
  std::string Digits(int n) { return From("0123456789", n); }
  std::string Hex(int n) { return From("0123456789abcdef", n); }
  // The parts, drawn in order (a braced list is evaluated left to right).
  static std::string Join(std::initializer_list<std::string> parts) {
    std::string out;
    for (const std::string& p : parts) {
      out += p;
    }
    return out;
  }

  std::string Email() {
    std::string first = OneOf({"jane", "john", "maria", "li", "ahmed", "olga", "sam", "priya",
                               "lucas", "chen", "fatima", "noah", "Anna", "JOSE"});
    std::string last = OneOf({"doe", "smith", "garcia", "wang", "khan", "ivanova", "okafor",
                              "rossi", "tanaka", "nguyen", "Miller"});
    std::string local;
    switch (Pick(6)) {
      case 0:
        local = first + "." + last;
        break;
      case 1:
        local = Join({first, "_", last, Digits(2)});
        break;
      case 2:
        local = first.substr(0, 1) + last;
        break;
      case 3:
        local = Join({first, ".", last, "+", OneOf({"news", "billing", "test"})});
        break;
      case 4:
        local = Join({first, "-", last, Digits(1 + Pick(3))});
        break;
      default:
        local = Join({OneOf({"support", "billing", "no-reply", "hr"}), Digits(Pick(3))});
        break;
    }
    return Join(
        {local, "@",
         OneOf({"example.com", "example.org", "example.net", "mail.example.com",
                "corp.example.co.uk", "example.io", "students.example.edu", "example.de"})});
  }

  // Luhn-valid Visa, Mastercard (51–55 and 2-series), Amex or Discover, grouped or not.
  std::string Card() {
    std::string d;
    switch (Pick(6)) {
      case 0:
      case 1:
        d = "4";
        break;
      case 2:
        d = std::to_string(51 + Pick(5));
        break;
      case 3:
        d = std::to_string(2221 + Pick(500));
        break;
      case 4:
        d = OneOf({"34", "37"});
        break;
      default:
        d = "6011";
        break;
    }
    const size_t len = d.starts_with("34") || d.starts_with("37") ? 15 : 16;
    d += Digits(static_cast<int>(len - 1 - d.size()));
    for (char c = '0'; c <= '9'; ++c) {
      if (Luhn(d + c)) {
        d += c;
        break;
      }
    }
    std::string sep = OneOf({"", " ", "-"});
    if (sep.empty()) {
      return d;
    }
    if (len == 15) {
      return d.substr(0, 4) + sep + d.substr(4, 6) + sep + d.substr(10);
    }
    return d.substr(0, 4) + sep + d.substr(4, 4) + sep + d.substr(8, 4) + sep + d.substr(12);
  }

  // A valid IBAN of one of eight countries with its national BBAN shape, compact or in
  // groups of four.
  std::string Iban() {
    static constexpr std::string_view kUpper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    static constexpr std::string_view kUpperDigit = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string country;
    std::string bban;
    switch (Pick(8)) {
      case 0:
        country = "DE";
        bban = Digits(18);
        break;
      case 1:
        country = "GB";
        bban = Join({From(kUpper, 4), Digits(14)});
        break;
      case 2:
        country = "FR";
        bban = Join({Digits(10), From(kUpperDigit, 11), Digits(2)});
        break;
      case 3:
        country = "NL";
        bban = Join({From(kUpper, 4), Digits(10)});
        break;
      case 4:
        country = "ES";
        bban = Digits(20);
        break;
      case 5:
        country = "IT";
        bban = Join({From(kUpper, 1), Digits(10), From(kUpperDigit, 12)});
        break;
      case 6:
        country = "CH";
        bban = Join({Digits(5), From(kUpperDigit, 12)});
        break;
      default:
        country = "BE";
        bban = Digits(12);
        break;
    }
    int rem = 0;
    for (char c : bban + country + "00") {
      rem = c >= 'A' ? (rem * 100 + (c - 'A' + 10)) % 97 : (rem * 10 + (c - '0')) % 97;
    }
    const int check = 98 - rem;
    std::string iban = country + (check < 10 ? "0" : "") + std::to_string(check) + bban;
    if (Pick(2) == 0) {
      return iban;
    }
    std::string spaced;
    for (size_t k = 0; k < iban.size(); ++k) {
      if (k > 0 && k % 4 == 0) {
        spaced += ' ';
      }
      spaced += iban[k];
    }
    return spaced;
  }

  // Valid SSA ranges; mostly 123-45-6789, else spaced or bare (which need the context word
  // the caller puts before them).
  std::string Ssn() {
    int area = 1 + Pick(899);
    area = area == 666 ? 667 : area;
    const int group = 1 + Pick(99);
    const int serial = 1 + Pick(9999);
    const int form = Pick(6);
    const char* format =
        form < 4 ? "%03d-%02d-%04d" : (form == 4 ? "%03d %02d %04d" : "%03d%02d%04d");
    char buf[16];
    std::snprintf(buf, sizeof buf, format, area, group, serial);
    return buf;
  }

  // NANP numbers in the fictional 555-01xx block, UK and Berlin numbers kept for drama.
  std::string Phone() {
    const std::string area = std::to_string(201 + Pick(780));
    const std::string line = Join({"01", Digits(2)});
    switch (Pick(9)) {
      case 0:
        return "+1 " + area + " 555 " + line;
      case 1:
        return "(" + area + ") 555-" + line;
      case 2:
        return area + "-555-" + line;
      case 3:
        return area + ".555." + line;
      case 4:
        return "+1-" + area + "-555-" + line;
      case 5:
        return Join({"+44 20 7946 0", Digits(3)});
      case 6:
        return Join({"+44 7700 900", Digits(3)});
      case 7:
        return Join({"+49 30 23125 ", Digits(3)});  // Bundesnetzagentur fiction block
      default:
        return Join({"07700 900", Digits(3)});
    }
  }

  std::string IpAddress() { return Pick(3) == 0 ? Ipv6() : Ipv4(); }
  std::string Ipv4() {
    switch (Pick(4)) {
      case 0:
        return "192.0.2." + std::to_string(1 + Pick(254));
      case 1:
        return "198.51.100." + std::to_string(1 + Pick(254));
      case 2:
        return "203.0.113." + std::to_string(1 + Pick(254));
      default:
        return Join({"10.", std::to_string(Pick(256)), ".", std::to_string(Pick(256)), ".",
                     std::to_string(1 + Pick(254))});
    }
  }
  std::string Ipv6() {
    switch (Pick(4)) {
      case 0:
        return "2001:db8::" + Hex(1 + Pick(4));
      case 1:
        return Join({"2001:db8:", Hex(4), ":", Hex(1 + Pick(4)), "::", Hex(4), ":", Hex(3)});
      case 2:
        return Join({"2001:0db8:", Hex(4), ":", Hex(4), ":", Hex(4), ":", Hex(4), ":", Hex(4), ":",
                     Hex(4)});
      default:
        return Join({"fe80::", Hex(3), ":", Hex(4), ":", Hex(4), ":", Hex(4)});
    }
  }

  // Locally administered unicast MACs, colon or dash separated, either case.
  std::string Mac() {
    std::string mac = Join({Hex(1), OneOf({"2", "6", "a", "e"})});
    const char* sep = Pick(3) == 0 ? "-" : ":";
    for (int k = 0; k < 5; ++k) {
      mac += sep + Hex(2);
    }
    if (Pick(2) == 0) {
      for (char& c : mac) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      }
    }
    return mac;
  }

  std::string AwsAccessKey() {
    return Join({OneOf({"AKIA", "ASIA"}), Example(From("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16))});
  }
  std::string AwsSecretKey() { return Example(From(kB64, 40)); }
  std::string GithubToken() {
    if (Pick(5) == 0) {
      return Join({"github_pat_", Example(From(kAlnum, 22)), "_", From(kAlnum, 59)});
    }
    return Join({"gh", OneOf({"p", "o", "u", "s", "r"}), "_", Example(From(kAlnum, 36))});
  }
  std::string GitlabToken() {
    return Join(
        {OneOf({"glpat", "glpat", "gldt", "glrt", "glptt"}), "-", Example(From(kB64Url, 20))});
  }
  std::string SlackToken() {
    static constexpr std::string_view kUpperDigit = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    switch (Pick(4)) {
      case 0:
        return Join({"xoxb-", Digits(12), "-", Digits(13), "-", Example(From(kAlnum, 24))});
      case 1:
        return Join(
            {"xoxp-", Digits(12), "-", Digits(12), "-", Digits(13), "-", Hex(25), "example"});
      case 2:
        return Join({"xapp-1-A", Example(From(kUpperDigit, 10)), "-", Digits(13), "-", Hex(64)});
      default:
        return Join({"https://hooks.slack.com/services/T", From(kUpperDigit, 8), "/B",
                     From(kUpperDigit, 10), "/", Example(From(kAlnum, 24))});
    }
  }
  std::string StripeKey() {
    if (Pick(5) == 0) {
      return "whsec_" + Example(From(kAlnum, 32));
    }
    return Join({OneOf({"sk", "sk", "rk"}), OneOf({"_live_", "_test_"}),
                 Example(From(kAlnum, 24 + Pick(76)))});
  }
  std::string GoogleApiKey() { return "AIzaSy" + Example(From(kB64Url, 33)); }
  // Legacy (with the T3BlbkFJ marker), project and service-account keys.
  std::string OpenaiKey() {
    switch (Pick(3)) {
      case 0:
        return Join({"sk-", Example(From(kAlnum, 20)), "T3BlbkFJ", From(kAlnum, 20)});
      case 1:
        return "sk-svcacct-" + Mixed(From(kB64Url, 64 + Pick(92)));
      default:
        return "sk-proj-" + Mixed(From(kB64Url, 64 + Pick(92)));
    }
  }
  std::string AnthropicKey() {
    return Join(
        {"sk-ant-", OneOf({"api03-", "api03-", "admin01-"}), Example(From(kB64Url, 93)), "AA"});
  }
  std::string Jwt() {
    const std::string header =
        OneOf({R"({"alg":"HS256","typ":"JWT"})", R"({"typ":"JWT","alg":"RS256"})",
               R"({"alg":"ES256","kid":"example-key-1"})"});
    const std::string payload =
        Join({R"({"sub":"user-)", Digits(6), R"(","name":"Example User","iat":17)", Digits(8),
              R"(,"iss":"https://auth.example.com"})"});
    const int sig = header.find("HS256") != std::string::npos ? 43 : 86;
    return Base64Url(header) + "." + Base64Url(payload) + "." + Example(From(kB64Url, sig));
  }
  std::string PrivateKey() {
    const std::string kind = OneOf({"RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY",
                                    "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"});
    const std::string nl = Pick(4) == 0 ? "\r\n" : "\n";
    std::string pem = "-----BEGIN " + kind + "-----" + nl + Example(From(kB64, 64)) + nl;
    const int lines = 2 + Pick(20);
    for (int k = 0; k < lines; ++k) {
      pem += From(kB64, 64) + nl;
    }
    pem += From(kB64, 20 + Pick(40)) + "==" + nl;
    return pem + "-----END " + kind + "-----";
  }
  std::string Password() {
    std::string pw =
        Join({OneOf({"Tr0ub4dor", "hunter", "Summer", "EXAMPLE", "Passw0rd", "correct-horse"}),
              OneOf({"-", "_", "!", "#", ""}), From(kAlnum, 4 + Pick(12))});
    if (Pick(3) == 0) {
      pw += OneOf({"!", "%", "*", "~", "^"});
    }
    return pw;
  }

 private:
  static constexpr std::string_view kAlnum =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  static constexpr std::string_view kB64Url =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  static constexpr std::string_view kB64 =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

  static bool Luhn(std::string_view d) {
    int sum = 0;
    for (size_t k = 0; k < d.size(); ++k) {
      int v = d[d.size() - 1 - k] - '0';
      if (k % 2 == 1) {
        v = v * 2 > 9 ? v * 2 - 9 : v * 2;
      }
      sum += v;
    }
    return sum % 10 == 0;
  }
  // `s` with "EXAMPLE" written over it at a random place, so every secret says it is fake.
  std::string Example(std::string s) {
    if (s.size() >= 7) {
      s.replace(static_cast<size_t>(Pick(static_cast<int>(s.size()) - 6)), 7, "EXAMPLE");
    }
    return s;
  }
  // Example(s) ending in a digit and a lower-case letter: OpenAI's unmarked keys mix all
  // three classes, and the detector requires that.
  std::string Mixed(std::string s) {
    s = Example(std::move(s));
    s[s.size() - 2] = static_cast<char>('0' + Pick(10));
    s.back() = 'x';
    return s;
  }
  static std::string Base64Url(std::string_view in) {
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : in) {
      acc = (acc << 8) | c;
      bits += 8;
      while (bits >= 6) {
        bits -= 6;
        out += kB64Url[(acc >> bits) & 63];
      }
    }
    if (bits > 0) {
      out += kB64Url[(acc << (6 - bits)) & 63];
    }
    return out;
  }

  std::mt19937 rng_;
};

inline bool ValidJson(std::string_view s) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(s.data(), s.size());
  return parser.parse(padded).error() == simdjson::SUCCESS;
}

// Where the real framework traces are: $TRACEGATE_TRACE_DIR if set, else
// ../shared/data/langfuse-framework-traces next to the repository root. The root comes from
// TRACEGATE_SOURCE_DIR, a compile definition that src/masking/CMakeLists.txt gives the
// targets reading the traces; without it (and without the variable) there is no directory.
inline std::filesystem::path TraceDir() {
  const char* env = std::getenv("TRACEGATE_TRACE_DIR");
  if (env != nullptr && *env != '\0') {
    return env;
  }
#ifdef TRACEGATE_SOURCE_DIR
  return (std::filesystem::path(TRACEGATE_SOURCE_DIR) / ".." / "shared" / "data" /
          "langfuse-framework-traces")
      .lexically_normal();
#else
  return {};
#endif
}

// The real trace corpus: the .json files of TraceDir(), sorted by name, or empty when the
// directory is absent (most machines). Says on stderr, once per process, which it was, so a
// run's output shows whether the real traces took part.
inline std::vector<std::pair<std::string, std::string>> LoadTraceFiles() {
  std::vector<std::pair<std::string, std::string>> out;
  const std::filesystem::path dir = TraceDir();
  std::error_code ec;
  if (!dir.empty() && std::filesystem::is_directory(dir, ec)) {
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.path().extension() != ".json") {
        continue;
      }
      std::ifstream in(entry.path(), std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      out.emplace_back(entry.path().filename().string(), ss.str());
    }
    std::sort(out.begin(), out.end());
  }
  static bool said = false;
  if (!said) {
    said = true;
    if (out.empty()) {
      std::fprintf(stderr, "note: real traces absent (%s); using generated traces only\n",
                   dir.empty() ? "no TRACEGATE_TRACE_DIR or TRACEGATE_SOURCE_DIR" : dir.c_str());
    } else {
      std::fprintf(stderr, "note: %zu real traces from %s\n", out.size(), dir.c_str());
    }
  }
  return out;
}

// One value of each common kind (email, card, phone, IBAN, SSN, IP, secrets), for planting
// densely where the kind matters less than the volume (GeneratedTrace, masking_bench).
inline const std::vector<std::string>& DensePiiValues() {
  static const std::vector<std::string> values = {
      "jane.doe@example.com",
      "4111 1111 1111 1111",
      "+1 415 555 2671",
      "GB82 WEST 1234 5698 7654 32",
      "536-22-8726",
      "192.168.10.20",
      FakeAwsKeyId(),
      FakeGithubToken(),
      FakeJwt(),
  };
  return values;
}

// A deterministic Langfuse-shaped trace of about `bytes` bytes: metadata as a JSON string,
// observations with model parameters, chat messages, timestamps, usage numbers, hex ids
// and an opaque reasoning signature. `pii_every` > 0 plants one PII/secret value in every
// n-th message (cycling through the kinds), else none.
inline std::string GeneratedTrace(size_t bytes, int pii_every, uint32_t seed = 1) {
  uint32_t x = seed * 2654435761u + 1;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
  };
  auto hex = [&](size_t n) {
    std::string s;
    while (s.size() < n) {
      s += "0123456789abcdef"[next() % 16];
    }
    return s;
  };
  const std::vector<std::string>& pii = DensePiiValues();
  const char* words[] = {"the",     "agent",   "calls",   "tool",      "search", "returns",
                         "result",  "weather", "in",      "Berlin",    "is",     "sunny",
                         "with",    "20",      "degrees", "user",      "asked",  "for",
                         "summary", "of",      "report",  "2025-06-06"};
  std::string out = "{\"trace\":{\"id\":\"" + hex(32) +
                    "\",\"name\":\"agent-run\",\"timestamp\":\"2025-06-06T11:31:33.965Z\","
                    "\"metadata\":\"{\\\"sdk\\\":\\\"python\\\",\\\"version\\\":\\\"3.0.0\\\","
                    "\\\"public_key\\\":\\\"pk-lf-5855d85e-3943-497e-bd10-f50ad414bcba\\\"}\","
                    "\"tags\":[\"dev\"],\"latency\":0.645},\"observations\":[";
  int message = 0;
  bool first = true;
  while (out.size() < bytes) {
    if (!first) {
      out += ',';
    }
    first = false;
    out += "{\"id\":\"" + hex(16) + "\",\"type\":\"GENERATION\",\"startTime\":\"2025-06-06T11:31:" +
           std::to_string(10 + next() % 50) + ".965Z\",\"model\":\"gpt-4o\",\"modelParameters\":" +
           "{\"temperature\":0.7,\"max_tokens\":1024},\"usage\":{\"input\":" +
           std::to_string(next() % 5000) + ",\"output\":" + std::to_string(next() % 900) +
           ",\"total\":" + std::to_string(next() % 6000) + "},\"costDetails\":{\"total\":0." +
           std::to_string(next() % 100000) + "},\"input\":[";
    for (int m = 0; m < 3; ++m) {
      std::string text;
      for (int w = 0; w < 25; ++w) {
        text += words[next() % (sizeof words / sizeof words[0])];
        text += ' ';
      }
      ++message;
      if (pii_every > 0 && message % pii_every == 0) {
        text += "contact " + pii[static_cast<size_t>(message / pii_every) % pii.size()] + " now";
      }
      out += std::string(m > 0 ? "," : "") + "{\"role\":\"user\",\"content\":\"" + text + "\"}";
    }
    out +=
        "],\"output\":{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":"
        "\"Let me think about it.\",\"signature\":\"" +
        Rep("EqQBCkgIARABGAIiQL7ZpXhWw/4111111111111111+Q", 120) + "\"}]}}";
  }
  out += "]}";
  return out;
}

}  // namespace tracegate::masking::test_support
