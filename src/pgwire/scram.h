#pragma once
// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL uses it, both roles, plus the md5
// password hash. Pure computation: no sockets. Nonces come from an injected generator so
// tests are deterministic.
//
// PostgreSQL's SCRAM: the username in client-first is ignored (empty, "n=,r=..."); channel
// binding is SCRAM-SHA-256-PLUS with "tls-server-end-point" (RFC 5929: a hash of the server's
// certificate), the only type PostgreSQL implements; iteration count 4096 by default.

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
  // Channel binding, set before HandleClientFirst. `end_point` is the tls-server-end-point
  // data of the connection (empty: no TLS, so SCRAM-SHA-256-PLUS was not offered);
  // `plus_selected` says the client chose SCRAM-SHA-256-PLUS. With PLUS the client must bind
  // ('p=tls-server-end-point') to exactly this data; without it, a client claiming 'y' (it
  // supports binding but thinks the server does not) while PLUS was offered is refused: the
  // mechanism list was tampered with (RFC 5802 section 6).
  void SetChannelBinding(std::string end_point, bool plus_selected);
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
  std::string end_point_;
  bool plus_selected_ = false;
};

// Iteration counts the gateway accepts from a backend by default (backend.max_scram_iterations).
inline constexpr uint32_t kDefaultMaxClientIterations = 100'000;

// What the client must derive from the password: SaltedPassword = Hi(password, salt, i).
struct ScramDerivation {
  std::string salt;  // raw bytes
  uint32_t iterations = 0;
};

struct ScramClientOptions {
  // tls-server-end-point data of the backend's certificate: non-empty = SCRAM-SHA-256-PLUS
  // (the caller selects that mechanism). Empty with `tls` = flag 'y' (we could bind, the
  // server offered no PLUS); empty without TLS = flag 'n'.
  std::string end_point;
  bool tls = false;
  uint32_t max_iterations = kDefaultMaxClientIterations;
};

// Client side: the gateway authenticating to a backend PostgreSQL.
class ScramClient {
 public:
  ScramClient(std::string password, RandomBytes random, ScramClientOptions options = {});
  // client-first-message ("n,,n=,r=<nonce>", "p=tls-server-end-point,,n=,r=<nonce>", ...).
  [[nodiscard]] std::string ClientFirst();
  // server-first-message -> client-final-message. Rejects a nonce that does not extend
  // ours, malformed fields, and iteration counts below 4096 (InvalidArgument) or above
  // options.max_iterations (ResourceExhausted, naming the count and the bound).
  [[nodiscard]] absl::StatusOr<std::string> HandleServerFirst(std::string_view server_first);
  // HandleServerFirst in three steps, so that the PBKDF2 in the middle can run on another
  // thread: ParseServerFirst validates (same errors) and says what to derive;
  // SaltedPassword is const and touches no other state (safe on any thread while the
  // client waits); ClientFinal takes its result and returns the client-final-message.
  [[nodiscard]] absl::StatusOr<ScramDerivation> ParseServerFirst(std::string_view server_first);
  [[nodiscard]] std::string SaltedPassword(const ScramDerivation& derivation) const;
  [[nodiscard]] absl::StatusOr<std::string> ClientFinal(std::string_view salted_password);
  // Verifies the server signature (constant time). PermissionDenied on mismatch.
  [[nodiscard]] absl::Status HandleServerFinal(std::string_view server_final);

 private:
  enum class State {
    kInitial,
    kExpectServerFirst,
    kExpectSaltedPassword,
    kExpectServerFinal,
    kDone,
    kFailed
  };
  State state_ = State::kInitial;
  std::string password_;
  RandomBytes random_;
  ScramClientOptions options_;
  std::string gs2_header_;
  std::string client_nonce_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string nonce_;  // client nonce + server nonce
  std::string expected_server_signature_;
};

// "md5" + hex(md5(hex(md5(password + user)) + salt)), as PasswordMessage carries it.
[[nodiscard]] std::string Md5PasswordResponse(std::string_view user, std::string_view password,
                                              std::string_view salt);

// Constant-time equality for secrets.
[[nodiscard]] bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace tracegate::pgwire
