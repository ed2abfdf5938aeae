// Fuzzes JSON masking. Traps when: a value simdjson accepts is refused (other than for our
// nesting limit), a value simdjson rejects is accepted (other than for number range and
// lone surrogates, which RFC 8259 allows), a masked output is not valid JSON, masking the
// output again fails, or a text value fails at all. Never crashing is checked by running.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "masking/masker.h"

namespace {

using tracegate::masking::Counts;
using tracegate::masking::FieldAction;
using tracegate::masking::Masker;
using tracegate::masking::Profile;
using tracegate::masking::Scanner;
using tracegate::masking::StrategyKind;
using tracegate::masking::ValueKind;

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

simdjson::error_code Parse(std::string_view s) {
  static simdjson::dom::parser parser;
  simdjson::padded_string padded(s.data(), s.size());
  return parser.parse(padded).error();
}

bool HasSurrogateEscape(std::string_view s) {
  for (size_t i = 0; i + 3 < s.size(); ++i) {
    if (s[i] == '\\' && s[i + 1] == 'u' && (s[i + 2] == 'd' || s[i + 2] == 'D') &&
        std::string_view("89abcdefABCDEF").find(s[i + 3]) != std::string_view::npos) {
      return true;
    }
  }
  return false;
}

Scanner& TheScanner() {
  static Scanner* scanner = [] {
    Profile p;
    p.pseudonym_key = "fuzzing key, not a secret!";
    p.strategies["EMAIL"] = {StrategyKind::kPseudonymize};
    p.strategies["CARD"] = {StrategyKind::kPartial, 4};
    p.field_rules = {{.path = "$..raw", .action = FieldAction::kKeep},
                     {.path = "$.a[*].b", .action = FieldAction::kMask, .entity = "NOTE"}};
    auto masker = Masker::Create(p);
    Check(masker.ok());
    auto s = Scanner::Create(*masker);
    Check(s.ok());
    return new Scanner(std::move(*s));
  }();
  return *scanner;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Scanner& scanner = TheScanner();
  std::string out;
  Counts counts;

  simdjson::error_code parsed = Parse(in);
  auto r = scanner.MaskJson(in, {"trace", ValueKind::kJson}, out, counts);
  if (parsed == simdjson::SUCCESS && !r.ok()) {
    Check(std::string_view(r.status().message().data(), r.status().message().size())
              .find("nesting") != std::string_view::npos);
  }
  if (parsed != simdjson::SUCCESS && r.ok()) {
    Check(parsed == simdjson::NUMBER_ERROR || parsed == simdjson::NUMBER_OUT_OF_RANGE ||
          parsed == simdjson::DEPTH_ERROR ||
          (parsed == simdjson::STRING_ERROR && HasSurrogateEscape(in)));
  }
  if (!r.ok()) {
    Check(out.empty());
  } else if (*r) {
    simdjson::error_code again = Parse(out);
    Check(again == simdjson::SUCCESS || again == parsed);
    std::string out2;
    Check(scanner.MaskJson(out, {"trace", ValueKind::kJson}, out2, counts).ok());
  }

  auto t = scanner.MaskText(in, {"notes", ValueKind::kText}, out, counts);
  Check(t.ok());
  if (*t && r.ok() && parsed == simdjson::SUCCESS && !in.empty() &&
      (in.find_first_not_of(" \t\r\n") != std::string_view::npos) &&
      (in[in.find_first_not_of(" \t\r\n")] == '{' || in[in.find_first_not_of(" \t\r\n")] == '[')) {
    simdjson::error_code again = Parse(out);
    Check(again == simdjson::SUCCESS);
  }
  return 0;
}
