// libFuzzer target: arbitrary bytes as a config file. Beyond "no crash, no hang, no leak"
// it checks what LoadString promises: every error line names the source, and a password
// taken from the environment never shows up in an error unless the input itself contains it.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "config/config.h"

namespace {

// Seeds refer to it as `password_env: TG_FUZZ_PW`.
constexpr const char* kSecret = "fuzz-Secret-9f3b1c";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool env_ready = (::setenv("TG_FUZZ_PW", kSecret, 1) == 0);
  if (!env_ready) {
    __builtin_trap();
  }
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  auto config = tracegate::config::LoadString(yaml, "fuzz.yaml");
  if (config.ok()) {
    if (*config == nullptr || (*config)->connections.empty()) {
      __builtin_trap();
    }
    return 0;
  }
  const absl::string_view message = config.status().message();
  for (absl::string_view line : absl::StrSplit(message, '\n')) {
    if (!absl::StartsWith(line, "fuzz.yaml")) {
      __builtin_trap();
    }
  }
  if (absl::StrContains(message, kSecret) && !absl::StrContains(yaml, kSecret)) {
    __builtin_trap();
  }
  return 0;
}
