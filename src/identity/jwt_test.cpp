// The compact JWS decoder: one spelling per token, bounded, no exceptions.
#include "identity/jwt.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/status.h"
#include "identity/base64url.h"

namespace tracegate::identity {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string B64(const std::string& s) { return Base64UrlEncode(s); }

std::string Token(const std::string& header, const std::string& payload,
                  const std::string& sig = "sig") {
  return B64(header) + "." + B64(payload) + "." + B64(sig);
}

const std::string kHeader = R"({"alg":"RS256","kid":"k1","typ":"at+jwt"})";
const std::string kPayload = R"({"iss":"https://idp","sub":"a","exp":1})";

TEST(Base64Url, RoundTripsAndIsStrict) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00\x01"}) {
    EXPECT_EQ(Base64UrlDecode(Base64UrlEncode(s)), s);
  }
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(Base64UrlDecode("Zm9v="));  // padding
  EXPECT_FALSE(Base64UrlDecode("Zm9vYg=="));
  EXPECT_FALSE(Base64UrlDecode("Zm+v"));  // base64, not base64url
  EXPECT_FALSE(Base64UrlDecode("Zm/v"));
  EXPECT_FALSE(Base64UrlDecode("Zm9 v"));
  EXPECT_FALSE(Base64UrlDecode("Z"));   // 1 mod 4
  EXPECT_FALSE(Base64UrlDecode("Zh"));  // non-zero trailing bits ("Zg" is canonical)
  EXPECT_TRUE(Base64UrlDecode("Zg"));
}

TEST(ParseJws, DecodesTheParts) {
  std::string token = Token(kHeader, kPayload, "\x01\x02\x03");
  absl::StatusOr<Jws> jws = ParseJws(token);
  ASSERT_TRUE(jws.ok()) << MessageOf(jws.status());
  EXPECT_EQ(jws->alg, "RS256");
  EXPECT_EQ(jws->kid, "k1");
  EXPECT_EQ(jws->typ, "at+jwt");
  EXPECT_EQ(jws->payload["sub"], "a");
  EXPECT_EQ(jws->signature, "\x01\x02\x03");
  EXPECT_EQ(jws->signing_input, token.substr(0, token.rfind('.')));
  EXPECT_TRUE(LooksLikeJws(token));
  EXPECT_FALSE(LooksLikeJws("opaque-token"));
}

TEST(ParseJws, EmptySignatureParses) {
  // alg none tokens end in "."; refusing them is the validator's job, with a clear reason.
  absl::StatusOr<Jws> jws = ParseJws(B64(R"({"alg":"none"})") + "." + B64(kPayload) + ".");
  ASSERT_TRUE(jws.ok()) << MessageOf(jws.status());
  EXPECT_TRUE(jws->signature.empty());
}

struct Bad {
  std::string name;
  std::string token;
  std::string error;
};

std::vector<Bad> BadTokens() {
  std::string good = Token(kHeader, kPayload);
  return {
      {"empty", "", "not three dot-separated parts"},
      {"two_parts", B64(kHeader) + "." + B64(kPayload), "not three dot-separated parts"},
      {"four_parts", good + ".x", "not three dot-separated parts"},
      {"jwe_five_parts", good + ".x.y", "not three dot-separated parts"},
      {"empty_header", "." + B64(kPayload) + ".c2ln", "header is empty"},
      {"empty_payload", B64(kHeader) + "..c2ln", "payload is empty"},
      {"padding", B64(kHeader) + "=." + B64(kPayload) + ".c2ln",
       "header is not unpadded base64url"},
      {"signature_padding",
       B64(kHeader) + "." + B64(kPayload) + ".c2lnbg==", "signature is not unpadded base64url"},
      {"plus_slash", B64(kHeader) + "." + B64(kPayload) + ".ab+/", "signature is not unpadded"},
      {"space", B64(kHeader) + " ." + B64(kPayload) + ".c2ln", "header is not unpadded"},
      {"header_not_json", Token("not json", kPayload), "header: not valid JSON"},
      {"header_array", Token("[1,2]", kPayload), "header is not a JSON object"},
      {"header_string", Token("\"RS256\"", kPayload), "header is not a JSON object"},
      {"payload_array", Token(kHeader, "[]"), "payload is not a JSON object"},
      {"payload_number", Token(kHeader, "42"), "payload is not a JSON object"},
      {"payload_trailing_garbage", Token(kHeader, kPayload + "x"), "payload: not valid JSON"},
      {"payload_invalid_utf8", Token(kHeader, "{\"sub\":\"\xff\"}"), "payload: not valid JSON"},
      {"duplicate_alg", Token(R"({"alg":"none","alg":"RS256"})", kPayload),
       "header: duplicate member \"alg\""},
      {"duplicate_sub", Token(kHeader, R"({"sub":"a","sub":"admin"})"),
       "payload: duplicate member \"sub\""},
      {"duplicate_nested", Token(kHeader, R"({"r":{"x":1,"x":2}})"), "duplicate member \"x\""},
      {"deep_nesting",
       Token(kHeader, R"({"a":)" + std::string(100, '[') + std::string(100, ']') + "}"),
       "nested deeper than 16 levels"},
      {"alg_missing", Token(R"({"kid":"k"})", kPayload), "header alg is missing or not a string"},
      {"alg_number", Token(R"({"alg":256})", kPayload), "header alg is missing or not a string"},
      {"alg_empty", Token(R"({"alg":""})", kPayload), "header alg is missing or not a string"},
      {"kid_number", Token(R"({"alg":"RS256","kid":7})", kPayload), "header kid is not a string"},
      {"kid_null", Token(R"({"alg":"RS256","kid":null})", kPayload), "header kid is not a string"},
      {"typ_object", Token(R"({"alg":"RS256","typ":{}})", kPayload), "header typ is not a string"},
      {"enc_present", Token(R"({"alg":"RS256","enc":"A128GCM"})", kPayload), "header has enc"},
      {"oversize", Token(kHeader, R"({"x":")" + std::string(16 * 1024, 'a') + "\"}"),
       "longer than 16384 bytes"},
  };
}

class ParseJwsBad : public ::testing::TestWithParam<Bad> {};

TEST_P(ParseJwsBad, IsRefused) {
  absl::StatusOr<Jws> jws = ParseJws(GetParam().token);
  ASSERT_FALSE(jws.ok());
  EXPECT_EQ(jws.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(MessageOf(jws.status())), HasSubstr(GetParam().error));
  EXPECT_THAT(std::string(MessageOf(jws.status())), HasSubstr("malformed JWT: "));
}

INSTANTIATE_TEST_SUITE_P(Strict, ParseJwsBad, ::testing::ValuesIn(BadTokens()),
                         [](const auto& info) { return info.param.name; });

TEST(ParseJws, AcceptsTokensUpToTheLimit) {
  std::string header = B64(kHeader);
  std::string sig = B64("sig");
  size_t payload_bytes = (kMaxTokenBytes - header.size() - 2 - sig.size()) * 3 / 4;
  std::string payload_json = R"({"x":")" + std::string(payload_bytes - 8, 'a') + "\"}";
  std::string token = header + "." + B64(payload_json) + "." + sig;
  ASSERT_LE(token.size(), kMaxTokenBytes);
  ASSERT_GE(token.size(), kMaxTokenBytes - 3);
  EXPECT_TRUE(ParseJws(token).ok());
  EXPECT_FALSE(ParseJws(header + "." + B64(payload_json + "    ") + "." + sig).ok());
}

}  // namespace
}  // namespace tracegate::identity
