#include "pgwire/scram.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pgwire/scram_crypto.h"

namespace tracegate::pgwire {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// RFC 7677 section 3.
constexpr char kPassword[] = "pencil";
constexpr char kClientNonce[] = "rOprNGfwEbeRWgbNEkqO";
constexpr char kSaltB64[] = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr char kRfcServerNonce[] = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
// The verifier PostgreSQL would store for "pencil" with that salt (computed with Python's
// hashlib/hmac).
constexpr char kPencilVerifier[] =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

std::string Salt() { return *internal::Base64Decode(kSaltB64); }

// Always returns `bytes`, whatever is asked for.
RandomBytes Fixed(std::string bytes) {
  return [bytes](size_t) { return bytes; };
}
// 0, 1, 2, ... n-1.
RandomBytes Counting() {
  return [](size_t n) {
    std::string out(n, '\0');
    for (size_t i = 0; i < n; ++i) {
      out[i] = static_cast<char>(i);
    }
    return out;
  };
}

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// ---- Primitives ------------------------------------------------------------------------------

TEST(Base64Test, EncodesAndDecodesRfc4648Vectors) {
  const std::vector<std::pair<std::string, std::string>> vectors = {{"", ""},
                                                                    {"f", "Zg=="},
                                                                    {"fo", "Zm8="},
                                                                    {"foo", "Zm9v"},
                                                                    {"foob", "Zm9vYg=="},
                                                                    {"fooba", "Zm9vYmE="},
                                                                    {"foobar", "Zm9vYmFy"}};
  for (const auto& [raw, b64] : vectors) {
    EXPECT_EQ(internal::Base64Encode(raw), b64);
    EXPECT_EQ(internal::Base64Decode(b64), raw) << b64;
  }
}

TEST(Base64Test, RejectsNonCanonicalInput) {
  for (std::string_view bad : {"Zg", "Zg=", "Z===", "====", "Zg==Zg==", "Zh==", "Zm9=", "Zm 9",
                               "Zm9v\n", "Zm-v", "Zm_v", "=Zm9"}) {
    EXPECT_FALSE(internal::Base64Decode(bad).has_value()) << bad;
  }
}

TEST(ScramTest, Rfc7677VectorFromThePrimitives) {
  std::string salted = internal::Pbkdf2Sha256(kPassword, Salt(), 4096);
  std::string client_key = internal::HmacSha256(salted, "Client Key");
  std::string stored_key = internal::Sha256(client_key);
  std::string auth_message = absl::StrCat("n=user,r=", kClientNonce, ",r=", kRfcServerNonce,
                                          ",s=", kSaltB64, ",i=4096,c=biws,r=", kRfcServerNonce);
  std::string proof =
      internal::XorBytes(client_key, internal::HmacSha256(stored_key, auth_message));
  EXPECT_EQ(internal::Base64Encode(proof), "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  std::string server_key = internal::HmacSha256(salted, "Server Key");
  EXPECT_EQ(internal::Base64Encode(internal::HmacSha256(server_key, auth_message)),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

// ---- Verifier ------------------------------------------------------------------------------

TEST(ScramVerifierTest, MatchesPostgresFormat) {
  ScramVerifier v = MakeScramVerifier(kPassword, Salt(), 4096);
  EXPECT_EQ(FormatScramVerifier(v), kPencilVerifier);
  absl::StatusOr<ScramVerifier> parsed = ParseScramVerifier(kPencilVerifier);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->iterations, 4096u);
  EXPECT_EQ(parsed->salt, v.salt);
  EXPECT_EQ(parsed->stored_key, v.stored_key);
  EXPECT_EQ(parsed->server_key, v.server_key);
  EXPECT_EQ(FormatScramVerifier(*parsed), kPencilVerifier);
}

TEST(ScramVerifierTest, RoundTripsOtherParameters) {
  ScramVerifier v = MakeScramVerifier("s3cret", "sixteen byte slt", 10000);
  absl::StatusOr<ScramVerifier> parsed = ParseScramVerifier(FormatScramVerifier(v));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->iterations, 10000u);
  EXPECT_EQ(FormatScramVerifier(*parsed), FormatScramVerifier(v));
}

TEST(ScramVerifierTest, RejectsMalformedText) {
  const std::string key = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=";
  const std::string salt = kSaltB64;
  const std::vector<std::string> bad = {
      "",
      "md5abcdef",
      "SCRAM-SHA-1$4096:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$",
      "SCRAM-SHA-256$4096:" + salt,
      "SCRAM-SHA-256$4096:" + salt + "$" + key,
      "SCRAM-SHA-256$4096$" + salt + ":" + key + ":" + key,
      "SCRAM-SHA-256$0:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$-1:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$10000001:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$4096x:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$4096:$" + key + ":" + key,
      "SCRAM-SHA-256$4096:!!!!$" + key + ":" + key,
      "SCRAM-SHA-256$4096:" + salt + "$Zm9v:" + key,
      "SCRAM-SHA-256$4096:" + salt + "$" + key + ":Zm9v",
      "SCRAM-SHA-256$4096:" + salt + "$" + key + ":" + key + ":" + key,
      "SCRAM-SHA-256$4096:" + salt + "$" + key + ":" + key + "x",
  };
  for (const std::string& text : bad) {
    absl::StatusOr<ScramVerifier> v = ParseScramVerifier(text);
    EXPECT_TRUE(absl::IsInvalidArgument(v.status())) << text;
  }
}

// ---- Known exchanges -------------------------------------------------------------------

// PostgreSQL's variant of the RFC 7677 exchange: same password, nonces, salt and
// iterations, but an empty user name in client-first ("n=,"); expected values computed
// independently with Python's hashlib/hmac.
TEST(ScramClientTest, PostgresVariantOfRfc7677) {
  ScramClient client(std::string(kPassword), Fixed(*internal::Base64Decode(kClientNonce)));
  EXPECT_EQ(client.ClientFirst(), "n,,n=,r=rOprNGfwEbeRWgbNEkqO");
  absl::StatusOr<std::string> final_msg =
      client.HandleServerFirst(absl::StrCat("r=", kRfcServerNonce, ",s=", kSaltB64, ",i=4096"));
  ASSERT_TRUE(final_msg.ok()) << final_msg.status();
  EXPECT_EQ(*final_msg,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            "p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k=");
  EXPECT_TRUE(client.HandleServerFinal("v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=").ok());
}

TEST(ScramServerTest, KnownExchange) {
  ScramServer server(*ParseScramVerifier(kPencilVerifier), Counting());
  absl::StatusOr<std::string> first = server.HandleClientFirst("n,,n=,r=rOprNGfwEbeRWgbNEkqO");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first,
            "r=rOprNGfwEbeRWgbNEkqOAAECAwQFBgcICQoLDA0ODxAR,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  absl::StatusOr<std::string> final_msg = server.HandleClientFinal(
      "c=biws,r=rOprNGfwEbeRWgbNEkqOAAECAwQFBgcICQoLDA0ODxAR,"
      "p=5Xquj4v8r5ovkR2PHyCbjfLfnyfnmcYY4xLOFpgV4qU=");
  ASSERT_TRUE(final_msg.ok()) << final_msg.status();
  EXPECT_EQ(*final_msg, "v=az9xMKLfa4sUWCI1gMq8nHJ4uKyGo2Kz0yJiYmuWyu8=");
}

TEST(ScramServerTest, RejectsRfcProofBoundToADifferentNonce) {
  // The RFC's client-final carries the RFC's server nonce, not the one this server sent.
  ScramServer server(*ParseScramVerifier(kPencilVerifier), Counting());
  ASSERT_TRUE(server.HandleClientFirst("n,,n=user,r=rOprNGfwEbeRWgbNEkqO").ok());
  absl::StatusOr<std::string> r = server.HandleClientFinal(absl::StrCat(
      "c=biws,r=", kRfcServerNonce, ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_THAT(Msg(r.status()), HasSubstr("nonce"));
}

// ---- Client and server together -----------------------------------------------------------

struct Exchange {
  absl::Status server_first;
  absl::Status server_final;
  absl::Status client_final;
};

Exchange RunExchange(std::string_view stored_password, std::string_view client_password) {
  ScramServer server(MakeScramVerifier(stored_password, "0123456789abcdef", 4096), SystemRandom());
  ScramClient client(std::string(client_password), SystemRandom());
  Exchange e;
  absl::StatusOr<std::string> server_first = server.HandleClientFirst(client.ClientFirst());
  e.server_first = server_first.status();
  if (!server_first.ok()) {
    return e;
  }
  absl::StatusOr<std::string> client_final = client.HandleServerFirst(*server_first);
  if (!client_final.ok()) {
    e.client_final = client_final.status();
    return e;
  }
  absl::StatusOr<std::string> server_final = server.HandleClientFinal(*client_final);
  e.server_final = server_final.status();
  if (server_final.ok()) {
    e.client_final = client.HandleServerFinal(*server_final);
  }
  return e;
}

TEST(ScramTest, ClientAndServerAgree) {
  Exchange e = RunExchange("correct horse", "correct horse");
  EXPECT_TRUE(e.server_first.ok()) << e.server_first;
  EXPECT_TRUE(e.server_final.ok()) << e.server_final;
  EXPECT_TRUE(e.client_final.ok()) << e.client_final;
}

TEST(ScramTest, WrongPasswordIsPermissionDenied) {
  Exchange e = RunExchange("correct horse", "battery staple");
  EXPECT_TRUE(e.server_first.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(e.server_final)) << e.server_final;
}

TEST(ScramTest, ClientRejectsAForgedServerSignature) {
  ScramServer server(MakeScramVerifier("pw", "salt", 4096), SystemRandom());
  ScramClient client("pw", SystemRandom());
  absl::StatusOr<std::string> sf = server.HandleClientFirst(client.ClientFirst());
  ASSERT_TRUE(sf.ok());
  absl::StatusOr<std::string> cf = client.HandleServerFirst(*sf);
  ASSERT_TRUE(cf.ok());
  ASSERT_TRUE(server.HandleClientFinal(*cf).ok());
  // A server that does not know the password cannot produce this signature.
  std::string forged = "v=" + internal::Base64Encode(std::string(32, 'x'));
  EXPECT_TRUE(absl::IsPermissionDenied(client.HandleServerFinal(forged)));
}

TEST(ScramTest, ClientReportsServerError) {
  ScramClient client("pw", SystemRandom());
  std::string first = client.ClientFirst();
  std::string nonce = first.substr(first.find("r=") + 2);
  ASSERT_TRUE(client.HandleServerFirst("r=" + nonce + "xyz,s=c2FsdA==,i=4096").ok());
  absl::Status s = client.HandleServerFinal("e=invalid-proof");
  EXPECT_TRUE(absl::IsPermissionDenied(s));
  EXPECT_THAT(Msg(s), HasSubstr("invalid-proof"));
}

// ---- Server: malformed client messages ------------------------------------------------------

TEST(ScramServerTest, RejectsMalformedClientFirst) {
  struct Case {
    std::string message;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"p=tls-server-end-point,,n=,r=abc", "SCRAM-SHA-256-PLUS was not selected"},
      {"", "channel binding flag"},
      {"x,,n=,r=abc", "channel binding flag"},
      {"n", "channel binding flag"},
      {"n,a=admin,n=,r=abc", "authorization identity"},
      {"n,", "gs2 header is truncated"},
      {"n,,", "not of the form"},
      {"n,,m=ext,n=,r=abc", "mandatory extensions"},
      {"n,,r=abc", "expected attribute 'n' but found 'r'"},
      {"n,,n=", "missing attribute 'r'"},
      {"n,,n=,r=", "client nonce"},
      {"n,,n=,r=a b", "client nonce"},
      {"n,,n=,r=abc\x7f", "client nonce"},
      {"n,,n=,,r=abc", "not of the form"},
      {"n,,n=,r=abc,", "not of the form"},
      {"n,,n=,r=abc,1=x", "not of the form"},
      {"n,,n=,x", "not of the form"},
  };
  for (const Case& c : cases) {
    ScramServer server(MakeScramVerifier("pw", "salt", 4096), Counting());
    absl::StatusOr<std::string> r = server.HandleClientFirst(c.message);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << c.message << ": " << r.status();
    EXPECT_THAT(Msg(r.status()), HasSubstr(c.expected)) << c.message;
    // A failed exchange stays failed.
    EXPECT_FALSE(server.HandleClientFinal("c=biws,r=x,p=x").ok());
  }
}

TEST(ScramServerTest, AcceptsYFlagAndExtensions) {
  ScramVerifier v = MakeScramVerifier("pw", "salt", 4096);
  ScramServer server(v, Counting());
  absl::StatusOr<std::string> first = server.HandleClientFirst("y,,n=anyone,r=abc,x=ext");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(*first, StartsWith("r=abcAAEC"));
}

TEST(ScramServerTest, RejectsMalformedClientFinal) {
  ScramVerifier v = MakeScramVerifier("pw", "salt", 4096);
  // Server nonce from Counting(): base64 of bytes 0..17.
  const std::string nonce = "abcAAECAwQFBgcICQoLDA0ODxAR";
  const std::string proof = "p=" + internal::Base64Encode(std::string(32, 'p'));
  struct Case {
    std::string message;
    std::string expected;
    bool permission_denied = false;
  };
  const std::vector<Case> cases = {
      {"", "not of the form"},
      {"c=biws", "missing attribute 'r'"},
      {"c=biws,r=" + nonce, "proof 'p' must be the last"},
      {"r=" + nonce + ",c=biws," + proof, "expected attribute 'c'"},
      {"c=biws,r=" + nonce + "," + proof + ",x=1", "proof 'p' must be the last"},
      {"c=eSws,r=" + nonce + "," + proof, "channel binding data"},
      {"c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=" + nonce + "," + proof, "channel binding data"},
      {"c=biws,r=" + nonce + "X," + proof, "nonce does not match"},
      {"c=biws,r=abc," + proof, "nonce does not match"},
      {"c=biws,r=" + nonce + ",p=", "proof is not base64 of 32 bytes"},
      {"c=biws,r=" + nonce + ",p=Zm9v", "proof is not base64 of 32 bytes"},
      {"c=biws,r=" + nonce + ",p=!!!!", "proof is not base64 of 32 bytes"},
      {"c=biws,r=" + nonce + "," + proof, "wrong password", true},
      {"c=biws,r=" + nonce + ",x=ext," + proof, "wrong password", true},
  };
  for (const Case& c : cases) {
    ScramServer server(v, Counting());
    ASSERT_TRUE(server.HandleClientFirst("n,,n=,r=abc").ok());
    absl::StatusOr<std::string> r = server.HandleClientFinal(c.message);
    if (c.permission_denied) {
      EXPECT_TRUE(absl::IsPermissionDenied(r.status())) << c.message << ": " << r.status();
    } else {
      EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << c.message << ": " << r.status();
    }
    EXPECT_THAT(Msg(r.status()), HasSubstr(c.expected)) << c.message;
  }
}

TEST(ScramServerTest, EnforcesMessageOrder) {
  ScramServer server(MakeScramVerifier("pw", "salt", 4096), Counting());
  EXPECT_TRUE(absl::IsFailedPrecondition(server.HandleClientFinal("c=biws,r=a,p=b").status()));
  // Once failed, even a valid first message is refused.
  EXPECT_FALSE(server.HandleClientFirst("n,,n=,r=abc").ok());

  ScramServer twice(MakeScramVerifier("pw", "salt", 4096), Counting());
  ASSERT_TRUE(twice.HandleClientFirst("n,,n=,r=abc").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(twice.HandleClientFirst("n,,n=,r=abc").status()));
}

TEST(ScramServerTest, RefusesABrokenRandomGenerator) {
  ScramServer server(MakeScramVerifier("pw", "salt", 4096), Fixed("short"));
  EXPECT_TRUE(absl::IsInternal(server.HandleClientFirst("n,,n=,r=abc").status()));
}

// ---- Client: malformed server messages -----------------------------------------------------

TEST(ScramClientTest, RejectsMalformedServerFirst) {
  const std::string salt = "s=c2FsdA==";
  struct Case {
    std::string suffix_or_message;  // "$" prefix: appended after r=<client nonce>
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"", "not of the form"},
      {"m=x,r=abc", "mandatory extensions"},
      {"s=c2FsdA==,r=abc,i=4096", "expected attribute 'r'"},
      {"r=someoneelse,s=c2FsdA==,i=4096", "does not extend the client nonce"},
      {"$,s=c2FsdA==,i=4096", "does not extend the client nonce"},  // nonce not extended
      {"$x y,s=c2FsdA==,i=4096", "non-printable"},
      {"$srv", "missing attribute 's'"},
      {"$srv,s=c2FsdA==", "missing attribute 'i'"},
      {"$srv,s=,i=4096", "salt is not valid"},
      {"$srv,s=c2FsdA=,i=4096", "salt is not valid"},
      {"$srv,s=c2FsdA==,i=4095", "iteration count \"4095\""},
      {"$srv,s=c2FsdA==,i=0", "iteration count"},
      {"$srv,s=c2FsdA==,i=10000001", "iteration count"},
      {"$srv,s=c2FsdA==,i=99999999999", "iteration count"},
      {"$srv,s=c2FsdA==,i=-4096", "iteration count"},
      {"$srv,s=c2FsdA==,i=+4096", "iteration count"},
      {"$srv,s=c2FsdA==,i=4096x", "iteration count"},
      {"$srv,s=c2FsdA==,i=", "iteration count"},
      {"$srv,s=c2FsdA==,i=4096,", "not of the form"},
  };
  for (const Case& c : cases) {
    ScramClient client("pw", Counting());
    std::string first = client.ClientFirst();
    std::string nonce = first.substr(first.find("r=") + 2);
    std::string message = c.suffix_or_message.starts_with("$")
                              ? "r=" + nonce + c.suffix_or_message.substr(1)
                              : c.suffix_or_message;
    absl::StatusOr<std::string> r = client.HandleServerFirst(message);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << message << ": " << r.status();
    EXPECT_THAT(Msg(r.status()), HasSubstr(c.expected)) << message;
    EXPECT_FALSE(client.HandleServerFinal("v=x").ok());
  }
}

TEST(ScramClientTest, AcceptsIterationBoundsAndExtensions) {
  ScramClient client("pw", Counting());
  std::string first = client.ClientFirst();
  std::string nonce = first.substr(first.find("r=") + 2);
  absl::StatusOr<std::string> r =
      client.HandleServerFirst("r=" + nonce + "srv,s=c2FsdA==,i=4096,x=future");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(*r, StartsWith("c=biws,r=" + nonce + "srv,p="));
}

TEST(ScramClientTest, RejectsMalformedServerFinal) {
  for (std::string_view bad : {"", "v=", "v=Zm9v", "x=abc", "v=!!!!", "r=abc"}) {
    ScramClient client("pw", Counting());
    std::string first = client.ClientFirst();
    std::string nonce = first.substr(first.find("r=") + 2);
    ASSERT_TRUE(client.HandleServerFirst("r=" + nonce + "srv,s=c2FsdA==,i=4096").ok());
    EXPECT_TRUE(absl::IsInvalidArgument(client.HandleServerFinal(bad))) << bad;
  }
}

TEST(ScramClientTest, EnforcesMessageOrder) {
  ScramClient client("pw", Counting());
  EXPECT_TRUE(
      absl::IsFailedPrecondition(client.HandleServerFirst("r=a,s=c2FsdA==,i=4096").status()));
  EXPECT_EQ(client.ClientFirst(), "");  // already failed

  ScramClient early("pw", Counting());
  EXPECT_TRUE(absl::IsFailedPrecondition(early.HandleServerFinal("v=abc")));

  ScramClient broken("pw", Fixed(""));
  EXPECT_EQ(broken.ClientFirst(), "");
  EXPECT_FALSE(broken.HandleServerFirst("r=a,s=c2FsdA==,i=4096").ok());
}

TEST(ScramClientTest, RefusesMoreIterationsThanItsBoundNamingBoth) {
  for (const auto& [max, asked, ok] : std::vector<std::tuple<uint32_t, uint32_t, bool>>{
           {kDefaultMaxClientIterations, 100'000, true},
           {kDefaultMaxClientIterations, 100'001, false},
           {kDefaultMaxClientIterations, 10'000'000, false},
           {5000, 5000, true},
           {5000, 5001, false}}) {
    ScramClient client("pw", Counting(), {.max_iterations = max});
    std::string first = client.ClientFirst();
    std::string nonce = first.substr(first.find("r=") + 2);
    absl::StatusOr<std::string> r =
        client.HandleServerFirst(absl::StrCat("r=", nonce, "srv,s=c2FsdA==,i=", asked));
    EXPECT_EQ(r.ok(), ok) << max << " " << asked << ": " << r.status();
    if (!ok) {
      EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
      EXPECT_EQ(
          Msg(r.status()),
          absl::StrCat("the backend asked for ", asked,
                       " SCRAM iterations, more than backend.max_scram_iterations (", max, ")"));
    }
  }
}

TEST(ScramClientTest, StepwiseServerFirstMatchesTheOneCallForm) {
  const std::string server_first_tail = "srv,s=c2FsdA==,i=4096";
  ScramClient whole("pw", Counting());
  std::string first = whole.ClientFirst();
  std::string nonce = first.substr(first.find("r=") + 2);
  absl::StatusOr<std::string> expected = whole.HandleServerFirst("r=" + nonce + server_first_tail);
  ASSERT_TRUE(expected.ok()) << expected.status();

  ScramClient stepwise("pw", Counting());
  ASSERT_EQ(stepwise.ClientFirst(), first);
  absl::StatusOr<ScramDerivation> derivation =
      stepwise.ParseServerFirst("r=" + nonce + server_first_tail);
  ASSERT_TRUE(derivation.ok()) << derivation.status();
  EXPECT_EQ(derivation->salt, "salt");
  EXPECT_EQ(derivation->iterations, 4096u);
  absl::StatusOr<std::string> final_message =
      stepwise.ClientFinal(stepwise.SaltedPassword(*derivation));
  ASSERT_TRUE(final_message.ok()) << final_message.status();
  EXPECT_EQ(*final_message, *expected);

  // Out of order, or not a salted password: refused, and the client is done.
  ScramClient early("pw", Counting());
  (void)early.ClientFirst();
  EXPECT_TRUE(absl::IsFailedPrecondition(early.ClientFinal(std::string(32, 'x')).status()));
  ScramClient short_salted("pw", Counting());
  first = short_salted.ClientFirst();
  nonce = first.substr(first.find("r=") + 2);
  ASSERT_TRUE(short_salted.ParseServerFirst("r=" + nonce + server_first_tail).ok());
  EXPECT_FALSE(short_salted.ClientFinal("short").ok());
  EXPECT_FALSE(short_salted.HandleServerFinal("v=x").ok());
}

// ---- Channel binding (SCRAM-SHA-256-PLUS, tls-server-end-point) ------------------------------

struct PlusCase {
  ScramClientOptions client;
  std::string server_end_point;
  bool plus_selected;
  std::string expected_error;  // empty = the exchange succeeds
};

TEST(ScramChannelBindingTest, TableOfClientAndServerBindings) {
  const std::string cert_hash(32, '\x5a');
  const std::string other_hash(32, '\x5b');
  const std::vector<PlusCase> cases = {
      // Bound to the same certificate hash on both ends.
      {{.end_point = cert_hash, .tls = true}, cert_hash, true, ""},
      // A man in the middle terminates TLS with its own certificate: the hashes differ.
      {{.end_point = other_hash, .tls = true}, cert_hash, true, "does not match this connection"},
      // TLS client that saw no PLUS offer says 'y'; fine when none was offered ...
      {{.tls = true}, "", false, ""},
      // ... refused when PLUS was offered (the offer was stripped on the way).
      {{.tls = true}, cert_hash, false, "a downgrade on the path"},
      // No TLS: 'n', PLUS not offered.
      {{}, "", false, ""},
      // No TLS but PLUS offered: 'n' is allowed (libpq with channel_binding=prefer).
      {{}, cert_hash, false, ""},
      // PLUS selected but the client does not bind.
      {{.tls = true}, cert_hash, true, "without channel binding"},
      // Binding attempted without selecting PLUS.
      {{.end_point = cert_hash, .tls = true}, cert_hash, false, "was not selected"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const PlusCase& c = cases[i];
    ScramServer server(MakeScramVerifier("pw", "0123456789abcdef", 4096), SystemRandom());
    server.SetChannelBinding(c.server_end_point, c.plus_selected);
    ScramClient client("pw", SystemRandom(), c.client);
    std::string first = client.ClientFirst();
    absl::Status failure;
    absl::StatusOr<std::string> server_first = server.HandleClientFirst(first);
    if (!server_first.ok()) {
      failure = server_first.status();
    } else {
      absl::StatusOr<std::string> client_final = client.HandleServerFirst(*server_first);
      ASSERT_TRUE(client_final.ok()) << i << ": " << client_final.status();
      absl::StatusOr<std::string> server_final = server.HandleClientFinal(*client_final);
      if (!server_final.ok()) {
        failure = server_final.status();
      } else {
        EXPECT_TRUE(client.HandleServerFinal(*server_final).ok()) << i;
      }
    }
    if (c.expected_error.empty()) {
      EXPECT_TRUE(failure.ok()) << i << ": " << first << ": " << failure;
    } else {
      EXPECT_THAT(Msg(failure), HasSubstr(c.expected_error)) << i << ": " << first;
    }
  }
}

TEST(ScramChannelBindingTest, ClientMessagesCarryTheHeaderAndTheHash) {
  const std::string cert_hash(32, '\x01');
  ScramClient client("pw", Counting(), {.end_point = cert_hash, .tls = true});
  std::string first = client.ClientFirst();
  EXPECT_THAT(first, StartsWith("p=tls-server-end-point,,n=,r="));
  std::string nonce = first.substr(first.find("r=") + 2);
  absl::StatusOr<std::string> r = client.HandleServerFirst("r=" + nonce + "srv,s=c2FsdA==,i=4096");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(*r, StartsWith("c=" + internal::Base64Encode("p=tls-server-end-point,," + cert_hash) +
                             ",r="));
  ScramClient tls_only("pw", Counting(), {.tls = true});
  EXPECT_THAT(tls_only.ClientFirst(), StartsWith("y,,n=,r="));
}

// ---- md5 and helpers ------------------------------------------------------------------------

TEST(Md5Test, MatchesPostgresHash) {
  // python3: "md5" + md5(md5(b"secretpostgres").hexdigest().encode() + b"\x01\x02\x03\x04")
  EXPECT_EQ(Md5PasswordResponse("postgres", "secret", std::string_view("\x01\x02\x03\x04", 4)),
            "md5bb41a296aab6baccb36ff243a562abff");
  EXPECT_EQ(Md5PasswordResponse("grant_user", "pencil", "abcd"),
            "md526d9a94b222dad84a0cc602d5787487e");
}

TEST(ConstantTimeEqualsTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
}

TEST(SystemRandomTest, ReturnsTheRequestedLength) {
  RandomBytes random = SystemRandom();
  EXPECT_EQ(random(0).size(), 0u);
  std::string a = random(32);
  std::string b = random(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace tracegate::pgwire
