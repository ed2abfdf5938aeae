#include "pgwire/scram.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "pgwire/reader.h"
#include "pgwire/scram_crypto.h"

namespace tracegate::pgwire {

using internal::Base64Decode;
using internal::Base64Encode;
using internal::HmacSha256;
using internal::Sha256;
using internal::Sv;

namespace {

constexpr std::string_view kVerifierPrefix = "SCRAM-SHA-256$";
// Raw nonce bytes per side (PostgreSQL uses 18, i.e. 24 base64 characters).
constexpr size_t kNonceBytes = 18;
// Fewer random bytes than this from the generator means it is broken.
constexpr size_t kMinNonceBytes = 12;
constexpr uint32_t kMinClientIterations = 4096;
constexpr uint32_t kMaxIterations = 10'000'000;

absl::Status Malformed(std::string_view message, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("SCRAM ", Sv(message), ": ", Sv(why)));
}

// One "x=value" attribute of a SCRAM message.
struct Attribute {
  char name;
  std::string_view value;
};

// Splits a SCRAM message into its attributes. Values cannot contain ',' (usernames escape it
// as "=2C", nonces exclude it, base64 has none).
absl::StatusOr<std::vector<Attribute>> SplitAttributes(std::string_view text,
                                                       std::string_view message) {
  std::vector<Attribute> attrs;
  size_t pos = 0;
  while (true) {
    size_t comma = text.find(',', pos);
    std::string_view attr =
        text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    char name = attr.empty() ? '\0' : attr[0];
    bool alpha = (name >= 'a' && name <= 'z') || (name >= 'A' && name <= 'Z');
    if (attr.size() < 2 || !alpha || attr[1] != '=') {
      return Malformed(message,
                       absl::StrCat("attribute ", attrs.size() + 1, " is not of the form x=value"));
    }
    attrs.push_back(Attribute{name, attr.substr(2)});
    if (comma == std::string_view::npos) {
      return attrs;
    }
    pos = comma + 1;
  }
}

absl::Status Expect(const std::vector<Attribute>& attrs, size_t index, char name,
                    std::string_view message) {
  if (index >= attrs.size()) {
    return Malformed(message, absl::StrCat("missing attribute '", std::string(1, name), "'"));
  }
  if (attrs[index].name != name) {
    return Malformed(message,
                     absl::StrCat("expected attribute '", std::string(1, name), "' but found '",
                                  std::string(1, attrs[index].name), "'"));
  }
  return absl::OkStatus();
}

// printable = %x21-2B / %x2D-7E (RFC 5802).
bool IsValidNonce(std::string_view nonce) {
  if (nonce.empty()) {
    return false;
  }
  for (char c : nonce) {
    if (c < 0x21 || c > 0x7e || c == ',') {
      return false;
    }
  }
  return true;
}

// Decimal iteration count in [min, max]; digits only.
std::optional<uint32_t> ParseIterations(std::string_view text, uint32_t min, uint32_t max) {
  if (text.empty() || text.size() > 9) {
    return std::nullopt;
  }
  uint32_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v < min || v > max) {
    return std::nullopt;
  }
  return v;
}

absl::StatusOr<std::string> MakeNonce(const RandomBytes& random) {
  std::string bytes = random(kNonceBytes);
  if (bytes.size() < kMinNonceBytes) {
    return absl::InternalError("random generator returned too few bytes for a SCRAM nonce");
  }
  return Base64Encode(bytes);
}

}  // namespace

RandomBytes SystemRandom() {
  return [](size_t n) {
    std::string out(n, '\0');
    if (n > 0 &&
        RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
      // No safe way to continue without randomness; not something a peer can cause.
      std::fprintf(stderr, "tracegate: RAND_bytes failed\n");
      std::abort();
    }
    return out;
  };
}

// ---- Verifier ----------------------------------------------------------------------------

ScramVerifier MakeScramVerifier(std::string_view password, std::string_view salt,
                                uint32_t iterations) {
  ScramVerifier v;
  v.iterations = iterations < 1 ? 1 : iterations;
  v.salt = std::string(salt);
  std::string salted = internal::Pbkdf2Sha256(password, salt, v.iterations);
  v.stored_key = Sha256(HmacSha256(salted, "Client Key"));
  v.server_key = HmacSha256(salted, "Server Key");
  return v;
}

absl::StatusOr<ScramVerifier> ParseScramVerifier(std::string_view text) {
  auto bad = [](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("SCRAM verifier: ", Sv(why)));
  };
  if (!text.starts_with(kVerifierPrefix)) {
    return bad("does not start with \"SCRAM-SHA-256$\"");
  }
  text.remove_prefix(kVerifierPrefix.size());
  // <iterations>:<salt>$<StoredKey>:<ServerKey>
  size_t colon1 = text.find(':');
  size_t dollar = text.find('$');
  if (colon1 == std::string_view::npos || dollar == std::string_view::npos || dollar < colon1) {
    return bad("expected <iterations>:<salt>$<StoredKey>:<ServerKey>");
  }
  size_t colon2 = text.find(':', dollar);
  if (colon2 == std::string_view::npos) {
    return bad("expected <StoredKey>:<ServerKey> after '$'");
  }
  ScramVerifier v;
  std::optional<uint32_t> iterations = ParseIterations(text.substr(0, colon1), 1, kMaxIterations);
  if (!iterations.has_value()) {
    return bad(absl::StrCat("iteration count must be a number from 1 to ", kMaxIterations));
  }
  v.iterations = *iterations;
  std::optional<std::string> salt = Base64Decode(text.substr(colon1 + 1, dollar - colon1 - 1));
  if (!salt.has_value() || salt->empty()) {
    return bad("salt is not valid non-empty base64");
  }
  v.salt = std::move(*salt);
  std::optional<std::string> stored = Base64Decode(text.substr(dollar + 1, colon2 - dollar - 1));
  std::optional<std::string> server = Base64Decode(text.substr(colon2 + 1));
  if (!stored.has_value() || stored->size() != internal::kSha256Size) {
    return bad("StoredKey is not base64 of 32 bytes");
  }
  if (!server.has_value() || server->size() != internal::kSha256Size) {
    return bad("ServerKey is not base64 of 32 bytes");
  }
  v.stored_key = std::move(*stored);
  v.server_key = std::move(*server);
  return v;
}

std::string FormatScramVerifier(const ScramVerifier& verifier) {
  return absl::StrCat(Sv(kVerifierPrefix), verifier.iterations, ":", Base64Encode(verifier.salt),
                      "$", Base64Encode(verifier.stored_key), ":",
                      Base64Encode(verifier.server_key));
}

// ---- Server ----------------------------------------------------------------------------

ScramServer::ScramServer(ScramVerifier verifier, RandomBytes random)
    : verifier_(std::move(verifier)), random_(std::move(random)) {}

void ScramServer::SetChannelBinding(std::string end_point, bool plus_selected) {
  end_point_ = std::move(end_point);
  plus_selected_ = plus_selected;
}

absl::StatusOr<std::string> ScramServer::HandleClientFirst(std::string_view client_first) {
  constexpr std::string_view kMsg = "client-first-message";
  if (state_ != State::kExpectClientFirst) {
    state_ = State::kFailed;
    return absl::FailedPreconditionError("SCRAM: unexpected client-first-message");
  }
  state_ = State::kFailed;  // until it succeeds
  // gs2-header: cbind-flag "," [authzid] ","
  size_t flag_end = 1;
  if (client_first.starts_with("p=")) {
    if (!plus_selected_) {
      return Malformed(kMsg, "channel binding requested but SCRAM-SHA-256-PLUS was not selected");
    }
    constexpr std::string_view kType = "p=tls-server-end-point,";
    if (!client_first.starts_with(kType)) {
      return Malformed(kMsg, "unsupported channel binding type (only tls-server-end-point)");
    }
    flag_end = kType.size() - 1;
  } else if (plus_selected_) {
    return Malformed(kMsg, "SCRAM-SHA-256-PLUS was selected without channel binding");
  } else if (client_first.starts_with("y,") && !end_point_.empty()) {
    return Malformed(kMsg,
                     "the client believes the server cannot bind the channel, but "
                     "SCRAM-SHA-256-PLUS was offered (a downgrade on the path?)");
  } else if (!client_first.starts_with("n,") && !client_first.starts_with("y,")) {
    return Malformed(kMsg, "channel binding flag must be 'n', 'y' or 'p'");
  }
  if (client_first.size() < flag_end + 2) {
    return Malformed(kMsg, "gs2 header is truncated");
  }
  if (client_first[flag_end + 1] != ',') {
    return Malformed(kMsg, "authorization identity is not supported");
  }
  gs2_header_ = std::string(client_first.substr(0, flag_end + 2));
  std::string_view bare = client_first.substr(flag_end + 2);
  TG_ASSIGN_OR_RETURN(std::vector<Attribute> attrs, SplitAttributes(bare, kMsg));
  if (attrs[0].name == 'm') {
    return Malformed(kMsg, "mandatory extensions are not supported");
  }
  // PostgreSQL ignores the user name here (it came in the startup packet).
  TG_RETURN_IF_ERROR(Expect(attrs, 0, 'n', kMsg));
  TG_RETURN_IF_ERROR(Expect(attrs, 1, 'r', kMsg));
  if (!IsValidNonce(attrs[1].value)) {
    return Malformed(kMsg, "client nonce is empty or has non-printable characters");
  }
  TG_ASSIGN_OR_RETURN(std::string server_nonce, MakeNonce(random_));
  client_first_bare_ = std::string(bare);
  nonce_ = absl::StrCat(Sv(attrs[1].value), server_nonce);
  server_first_ =
      absl::StrCat("r=", nonce_, ",s=", Base64Encode(verifier_.salt), ",i=", verifier_.iterations);
  state_ = State::kExpectClientFinal;
  return server_first_;
}

absl::StatusOr<std::string> ScramServer::HandleClientFinal(std::string_view client_final) {
  constexpr std::string_view kMsg = "client-final-message";
  if (state_ != State::kExpectClientFinal) {
    state_ = State::kFailed;
    return absl::FailedPreconditionError("SCRAM: unexpected client-final-message");
  }
  state_ = State::kFailed;
  TG_ASSIGN_OR_RETURN(std::vector<Attribute> attrs, SplitAttributes(client_final, kMsg));
  TG_RETURN_IF_ERROR(Expect(attrs, 0, 'c', kMsg));
  TG_RETURN_IF_ERROR(Expect(attrs, 1, 'r', kMsg));
  if (attrs.size() < 3 || attrs.back().name != 'p') {
    return Malformed(kMsg, "the proof 'p' must be the last attribute");
  }
  const std::string binding =
      gs2_header_.starts_with("p=") ? absl::StrCat(gs2_header_, end_point_) : gs2_header_;
  if (attrs[0].value != Base64Encode(binding)) {
    return Malformed(kMsg, "channel binding data does not match this connection");
  }
  if (attrs[1].value != nonce_) {
    return Malformed(kMsg, "nonce does not match the one the server sent");
  }
  std::optional<std::string> proof = Base64Decode(attrs.back().value);
  if (!proof.has_value() || proof->size() != internal::kSha256Size) {
    return Malformed(kMsg, "proof is not base64 of 32 bytes");
  }
  // Everything before ",p=<proof>".
  std::string_view without_proof =
      client_final.substr(0, client_final.size() - attrs.back().value.size() - 3);
  std::string auth_message =
      absl::StrCat(client_first_bare_, ",", server_first_, ",", Sv(without_proof));
  std::string client_signature = HmacSha256(verifier_.stored_key, auth_message);
  std::string client_key = internal::XorBytes(*proof, client_signature);
  if (!ConstantTimeEquals(Sha256(client_key), verifier_.stored_key)) {
    return absl::PermissionDeniedError("SCRAM authentication failed: wrong password");
  }
  state_ = State::kDone;
  return absl::StrCat("v=", Base64Encode(HmacSha256(verifier_.server_key, auth_message)));
}

// ---- Client ----------------------------------------------------------------------------

ScramClient::ScramClient(std::string password, RandomBytes random, ScramClientOptions options)
    : password_(std::move(password)), random_(std::move(random)), options_(std::move(options)) {
  gs2_header_ = !options_.end_point.empty() ? "p=tls-server-end-point,,"
                : options_.tls              ? "y,,"
                                            : "n,,";
}

std::string ScramClient::ClientFirst() {
  if (state_ != State::kInitial) {
    state_ = State::kFailed;
    return "";
  }
  absl::StatusOr<std::string> nonce = MakeNonce(random_);
  if (!nonce.ok()) {
    state_ = State::kFailed;
    return "";
  }
  client_nonce_ = *std::move(nonce);
  client_first_bare_ = absl::StrCat("n=,r=", client_nonce_);
  state_ = State::kExpectServerFirst;
  return absl::StrCat(gs2_header_, client_first_bare_);
}

absl::StatusOr<std::string> ScramClient::HandleServerFirst(std::string_view server_first) {
  TG_ASSIGN_OR_RETURN(ScramDerivation derivation, ParseServerFirst(server_first));
  return ClientFinal(SaltedPassword(derivation));
}

absl::StatusOr<ScramDerivation> ScramClient::ParseServerFirst(std::string_view server_first) {
  constexpr std::string_view kMsg = "server-first-message";
  if (state_ != State::kExpectServerFirst) {
    state_ = State::kFailed;
    return absl::FailedPreconditionError("SCRAM: unexpected server-first-message");
  }
  state_ = State::kFailed;
  TG_ASSIGN_OR_RETURN(std::vector<Attribute> attrs, SplitAttributes(server_first, kMsg));
  if (attrs[0].name == 'm') {
    return Malformed(kMsg, "mandatory extensions are not supported");
  }
  TG_RETURN_IF_ERROR(Expect(attrs, 0, 'r', kMsg));
  TG_RETURN_IF_ERROR(Expect(attrs, 1, 's', kMsg));
  TG_RETURN_IF_ERROR(Expect(attrs, 2, 'i', kMsg));
  std::string_view nonce = attrs[0].value;
  if (!IsValidNonce(nonce)) {
    return Malformed(kMsg, "server nonce is empty or has non-printable characters");
  }
  if (nonce.size() <= client_nonce_.size() || !nonce.starts_with(client_nonce_)) {
    return Malformed(kMsg, "server nonce does not extend the client nonce");
  }
  std::optional<std::string> salt = Base64Decode(attrs[1].value);
  if (!salt.has_value() || salt->empty()) {
    return Malformed(kMsg, "salt is not valid non-empty base64");
  }
  std::optional<uint32_t> iterations =
      ParseIterations(attrs[2].value, kMinClientIterations, kMaxIterations);
  if (!iterations.has_value()) {
    return Malformed(
        kMsg, absl::StrCat("iteration count \"", Sv(attrs[2].value), "\" is not a number from ",
                           kMinClientIterations, " to ", kMaxIterations));
  }
  if (*iterations > options_.max_iterations) {
    // Each iteration is an HMAC the gateway computes: a server (or whoever answers in its
    // place) must not be able to make a login arbitrarily expensive.
    return absl::ResourceExhaustedError(
        absl::StrCat("the backend asked for ", *iterations,
                     " SCRAM iterations, more than backend.max_scram_iterations (",
                     options_.max_iterations, ")"));
  }
  server_first_ = std::string(server_first);
  nonce_ = std::string(nonce);
  state_ = State::kExpectSaltedPassword;
  return ScramDerivation{.salt = *std::move(salt), .iterations = *iterations};
}

std::string ScramClient::SaltedPassword(const ScramDerivation& derivation) const {
  // No SASLprep: the password is used as given (identical for ASCII passwords).
  return internal::Pbkdf2Sha256(password_, derivation.salt, derivation.iterations);
}

absl::StatusOr<std::string> ScramClient::ClientFinal(std::string_view salted) {
  if (state_ != State::kExpectSaltedPassword || salted.size() != internal::kSha256Size) {
    state_ = State::kFailed;
    return absl::FailedPreconditionError("SCRAM: client-final-message out of order");
  }
  state_ = State::kFailed;
  std::string client_key = HmacSha256(salted, "Client Key");
  std::string stored_key = Sha256(client_key);
  // c= is the gs2 header, followed by the certificate hash when the channel is bound.
  const std::string binding =
      gs2_header_.starts_with("p=") ? absl::StrCat(gs2_header_, options_.end_point) : gs2_header_;
  std::string without_proof = absl::StrCat("c=", Base64Encode(binding), ",r=", nonce_);
  std::string auth_message =
      absl::StrCat(client_first_bare_, ",", server_first_, ",", without_proof);
  std::string proof = internal::XorBytes(client_key, HmacSha256(stored_key, auth_message));
  expected_server_signature_ = HmacSha256(HmacSha256(salted, "Server Key"), auth_message);
  state_ = State::kExpectServerFinal;
  return absl::StrCat(without_proof, ",p=", Base64Encode(proof));
}

absl::Status ScramClient::HandleServerFinal(std::string_view server_final) {
  constexpr std::string_view kMsg = "server-final-message";
  if (state_ != State::kExpectServerFinal) {
    state_ = State::kFailed;
    return absl::FailedPreconditionError("SCRAM: unexpected server-final-message");
  }
  state_ = State::kFailed;
  TG_ASSIGN_OR_RETURN(std::vector<Attribute> attrs, SplitAttributes(server_final, kMsg));
  if (attrs[0].name == 'e') {
    return absl::PermissionDeniedError(
        absl::StrCat("SCRAM: server reported error \"", Sv(attrs[0].value), "\""));
  }
  TG_RETURN_IF_ERROR(Expect(attrs, 0, 'v', kMsg));
  std::optional<std::string> signature = Base64Decode(attrs[0].value);
  if (!signature.has_value() || signature->size() != internal::kSha256Size) {
    return Malformed(kMsg, "server signature is not base64 of 32 bytes");
  }
  if (!ConstantTimeEquals(*signature, expected_server_signature_)) {
    return absl::PermissionDeniedError("SCRAM: server signature does not verify");
  }
  state_ = State::kDone;
  return absl::OkStatus();
}

// ---- md5 and helpers ------------------------------------------------------------------------

std::string Md5PasswordResponse(std::string_view user, std::string_view password,
                                std::string_view salt) {
  std::string inner = internal::Md5Hex(absl::StrCat(Sv(password), Sv(user)));
  return absl::StrCat("md5", internal::Md5Hex(absl::StrCat(inner, Sv(salt))));
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // The lengths are not secret (digests have fixed sizes).
  if (a.size() != b.size()) {
    return false;
  }
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace tracegate::pgwire
