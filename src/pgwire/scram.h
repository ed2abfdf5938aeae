#pragma once
// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL uses it, both roles, plus the md5
// password hash. Pure computation: no sockets. Nonces come from an injected generator so
// tests are deterministic.
//
// PostgreSQL's SCRAM: the username in client-first is ignored (empty, "n=,r=..."); channel
// binding flag 'n' or 'y' (tracegate does not offer SCRAM-SHA-256-PLUS yet, so 'p' is an
// error); iteration count 4096 by default.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tracegate::pgwire {

// Returns `n` cryptographically random bytes (production: RAND_bytes).
using RandomBytes = std::function<std::string(size_t n)>;
[[nodiscard]] RandomBytes SystemRandom();

// What a server stores instead of a password:
// "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>"
// (the same text as pg_authid.rolpassword).
struct ScramVerifier {
  uint32_t iterations = 4096;
  std::string salt;        // raw bytes
  std::string stored_key;  // raw 32 bytes
  std::string server_key;  // raw 32 bytes
};
[[nodiscard]] ScramVerifier MakeScramVerifier(std::string_view password, std::string_view salt,
                                              uint32_t iterations = 4096);
[[nodiscard]] absl::StatusOr<ScramVerifier> ParseScramVerifier(std::string_view text);
[[nodiscard]] std::string FormatScramVerifier(const ScramVerifier& verifier);

// Server side: authenticates a client against a verifier.
class ScramServer {
 public:
  ScramServer(ScramVerifier verifier, RandomBytes random);
  // client-first-message -> server-first-message.
  [[nodiscard]] absl::StatusOr<std::string> HandleClientFirst(std::string_view client_first);
  // client-final-message -> server-final-message ("v=..."). PermissionDenied when the
  // proof is wrong (compared in constant time); InvalidArgument when malformed.
  [[nodiscard]] absl::StatusOr<std::string> HandleClientFinal(std::string_view client_final);

 private:
  enum class State { kExpectClientFirst, kExpectClientFinal, kDone, kFailed };
  State state_ = State::kExpectClientFirst;
  ScramVerifier verifier_;
  RandomBytes random_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string gs2_header_;
  std::string nonce_;  // client nonce + server nonce
};

// Client side: the gateway authenticating to a backend PostgreSQL.
class ScramClient {
 public:
  ScramClient(std::string password, RandomBytes random);
  // client-first-message ("n,,n=,r=<nonce>").
  [[nodiscard]] std::string ClientFirst();
  // server-first-message -> client-final-message. Rejects a nonce that does not extend
  // ours, iteration counts below 4096 or above 10'000'000, malformed fields.
  [[nodiscard]] absl::StatusOr<std::string> HandleServerFirst(std::string_view server_first);
  // Verifies the server signature (constant time). PermissionDenied on mismatch.
  [[nodiscard]] absl::Status HandleServerFinal(std::string_view server_final);

 private:
  enum class State { kInitial, kExpectServerFirst, kExpectServerFinal, kDone, kFailed };
  State state_ = State::kInitial;
  std::string password_;
  RandomBytes random_;
  std::string client_nonce_;
  std::string client_first_bare_;
  std::string expected_server_signature_;
};

// "md5" + hex(md5(hex(md5(password + user)) + salt)), as PasswordMessage carries it.
[[nodiscard]] std::string Md5PasswordResponse(std::string_view user, std::string_view password,
                                              std::string_view salt);

// Constant-time equality for secrets.
[[nodiscard]] bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace tracegate::pgwire
