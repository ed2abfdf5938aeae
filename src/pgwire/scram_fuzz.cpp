// Fuzzes SCRAM with the input as the peer's messages. The first byte picks the mode; the
// rest is one message, or two separated by the first '\n':
//   0: ScramServer fed client-first '\n' client-final
//   1: ScramClient fed server-first '\n' server-final (its nonce is the fixed
//      "AAECAwQFBgcICQoLDA0ODxAR", so seeds can extend it)
//   2: ParseScramVerifier, which must round-trip through FormatScramVerifier
//   3: strict base64, which must round-trip
//   4: a full exchange with the rest as the password, which must succeed
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pgwire/scram.h"
#include "pgwire/scram_crypto.h"

namespace {

using namespace tracegate::pgwire;  // NOLINT(build/namespaces): a fuzz target's glue.

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

RandomBytes Counting() {
  return [](size_t n) {
    std::string out(n, '\0');
    for (size_t i = 0; i < n; ++i) {
      out[i] = static_cast<char>(i);
    }
    return out;
  };
}

const ScramVerifier& Verifier() {
  static const ScramVerifier* v = new ScramVerifier(MakeScramVerifier("pencil", "salt", 4096));
  return *v;
}

// Skips server-first messages whose iteration count would make one run slow.
bool CheapIterations(std::string_view server_first) {
  size_t at = server_first.find(",i=");
  if (at == std::string_view::npos) {
    return true;
  }
  std::string_view digits = server_first.substr(at + 3);
  size_t n = 0;
  while (n < digits.size() && digits[n] >= '0' && digits[n] <= '9') {
    ++n;
  }
  return n < 5 || (n == 5 && digits.substr(0, 5) <= "10000");
}

void FuzzServer(std::string_view first, std::string_view final_msg) {
  ScramServer server(Verifier(), Counting());
  absl::StatusOr<std::string> server_first = server.HandleClientFirst(first);
  absl::StatusOr<std::string> server_final = server.HandleClientFinal(final_msg);
  if (server_final.ok()) {
    Check(server_first.ok() && server_final->starts_with("v="));
  }
  if (!server_first.ok()) {
    Check(absl::IsFailedPrecondition(server_final.status()));
  }
}

void FuzzClient(std::string_view first, std::string_view final_msg) {
  if (!CheapIterations(first)) {
    return;
  }
  ScramClient client("pencil", Counting());
  Check(client.ClientFirst() == "n,,n=,r=AAECAwQFBgcICQoLDA0ODxAR");
  absl::StatusOr<std::string> client_final = client.HandleServerFirst(first);
  absl::Status done = client.HandleServerFinal(final_msg);
  if (!client_final.ok()) {
    Check(absl::IsFailedPrecondition(done));
  }
}

void FuzzVerifier(std::string_view text) {
  absl::StatusOr<ScramVerifier> v = ParseScramVerifier(text);
  if (!v.ok()) {
    return;
  }
  Check(FormatScramVerifier(*v) == text);
}

void FuzzBase64(std::string_view text) {
  std::optional<std::string> raw = internal::Base64Decode(text);
  if (raw.has_value()) {
    Check(internal::Base64Encode(*raw) == text);
  }
  Check(internal::Base64Decode(internal::Base64Encode(text)) == std::string(text));
}

void FuzzExchange(std::string_view password) {
  ScramServer server(MakeScramVerifier(password, "salt", 4096), Counting());
  ScramClient client(std::string(password), Counting());
  absl::StatusOr<std::string> server_first = server.HandleClientFirst(client.ClientFirst());
  Check(server_first.ok());
  absl::StatusOr<std::string> client_final = client.HandleServerFirst(*server_first);
  Check(client_final.ok());
  absl::StatusOr<std::string> server_final = server.HandleClientFinal(*client_final);
  Check(server_final.ok());
  Check(client.HandleServerFinal(*server_final).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  size_t newline = rest.find('\n');
  std::string_view first = rest.substr(0, newline);
  std::string_view second =
      newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
  switch (data[0] % 5) {
    case 0:
      FuzzServer(first, second);
      break;
    case 1:
      FuzzClient(first, second);
      break;
    case 2:
      FuzzVerifier(rest);
      break;
    case 3:
      FuzzBase64(rest);
      break;
    default:
      FuzzExchange(rest.substr(0, 64));
      break;
  }
  return 0;
}
