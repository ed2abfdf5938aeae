// JWT validation cost: uncached (decode + RS256/ES256/EdDSA verify + claims) and cached
// (SHA-256 of the token + one lookup). DESIGN.md target: >= 20k uncached RS256/s per core.
#include <benchmark/benchmark.h>

#include "identity/jose_testing.h"
#include "identity/token_validator.h"
#include "identity/validator.h"

namespace tracegate::identity {
namespace {

using namespace tracegate::identity::testkit;

const std::string kIss = "https://idp.example.com";
constexpr int64_t kNow = 1'800'000'000;

struct Fixture {
  Key rsa = GenerateRsa();
  Key ec = GenerateEc();
  Key ed = GenerateEd25519();
  std::shared_ptr<FakeIdp> idp = std::make_shared<FakeIdp>();
  FakeClock clock;
  Fixture() {
    clock.millis = kNow * 1000;
    idp->Set(kIss + "/jwks", Jwks({PublicJwk(rsa.get(), "rsa"), PublicJwk(ec.get(), "ec"),
                                   PublicJwk(ed.get(), "ed")}));
  }
  config::Issuer Issuer() const {
    config::Issuer issuer;
    issuer.name = "bench";
    issuer.issuer = kIss;
    issuer.audiences = {"tracegate"};
    issuer.discovery = false;
    issuer.jwks_uri = kIss + "/jwks";
    issuer.algorithms = {"RS256", "ES256", "EdDSA"};
    issuer.typ = "at+jwt";
    return issuer;
  }
  std::string Token(const std::string& alg, int i) {
    std::string kid = alg == "RS256" ? "rsa" : alg == "ES256" ? "ec" : "ed";
    EVP_PKEY* key = alg == "RS256" ? rsa.get() : alg == "ES256" ? ec.get() : ed.get();
    json claims = {{"iss", kIss},
                   {"sub", "agent-" + std::to_string(i)},
                   {"aud", "tracegate"},
                   {"exp", kNow + 600},
                   {"iat", kNow},
                   {"jti", std::to_string(i)},
                   {"client_id", "bench-client"},
                   {"groups", {"trace-readers", "agents"}},
                   {"scope", "openid traces:read"}};
    return MakeToken({{"alg", alg}, {"kid", kid}, {"typ", "at+jwt"}}, claims,
                     {.alg = alg, .key = key});
  }
};

Fixture& F() {
  static Fixture* f = new Fixture();
  return *f;
}

// Decode + verify + claims against a fixed key set: the work a cache miss does.
void BM_DecodeAndVerify(benchmark::State& state, std::string alg) {
  std::string token = F().Token(alg, 0);
  JwtValidator validator(F().Issuer());
  JwkSet keys = *ParseJwks(*F().idp->Get(F().Issuer().jwks_uri, {}));
  auto now = std::chrono::system_clock::time_point(std::chrono::seconds(kNow));
  for (auto _ : state) {
    absl::StatusOr<Jws> jws = ParseJws(token);
    absl::StatusOr<Principal> p = validator.Validate(*jws, keys, now);
    if (!p.ok()) state.SkipWithError("rejected");
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_DecodeAndVerify, RS256, std::string("RS256"));
BENCHMARK_CAPTURE(BM_DecodeAndVerify, ES256, std::string("ES256"));
BENCHMARK_CAPTURE(BM_DecodeAndVerify, EdDSA, std::string("EdDSA"));

// Through the façade with the token cache off: every call hashes, routes, and verifies.
void BM_TokenValidatorUncachedRS256(benchmark::State& state) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 64; ++i) tokens.push_back(F().Token("RS256", i));
  config::Identity identity;
  identity.issuers = {F().Issuer()};
  identity.token_cache_entries = 0;
  TokenValidator validator(identity, F().idp, F().clock.AsClock());
  size_t i = 0;
  for (auto _ : state) {
    absl::StatusOr<Principal> p = validator.Validate(tokens[i++ % tokens.size()]);
    if (!p.ok()) state.SkipWithError("rejected");
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TokenValidatorUncachedRS256);

// A repeated token: SHA-256 + lookup + Principal copy.
void BM_TokenValidatorCached(benchmark::State& state) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 64; ++i) tokens.push_back(F().Token("RS256", i));
  config::Identity identity;
  identity.issuers = {F().Issuer()};
  TokenValidator validator(identity, F().idp, F().clock.AsClock());
  for (const std::string& t : tokens) (void)validator.Validate(t);
  size_t i = 0;
  for (auto _ : state) {
    absl::StatusOr<Principal> p = validator.Validate(tokens[i++ % tokens.size()]);
    if (!p.ok()) state.SkipWithError("rejected");
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["verifications"] = static_cast<double>(validator.stats().signature_verifications);
}
BENCHMARK(BM_TokenValidatorCached)->ThreadRange(1, 2);

}  // namespace
}  // namespace tracegate::identity
