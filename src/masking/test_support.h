#pragma once
// Helpers shared by the masking tests, fuzz target and benchmark (header-only, not part of
// the library). Secret-shaped test values are assembled at run time from obviously fake
// parts, so no live-looking secret is committed.

#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
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

inline bool ValidJson(std::string_view s) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(s.data(), s.size());
  return parser.parse(padded).error() == simdjson::SUCCESS;
}

// The trace corpus: files of /work/shared/data/langfuse-framework-traces (or
// $TRACEGATE_TRACE_DIR) when present, else empty.
inline std::vector<std::pair<std::string, std::string>> LoadTraceFiles() {
  std::vector<std::pair<std::string, std::string>> out;
  const char* env = std::getenv("TRACEGATE_TRACE_DIR");
  std::filesystem::path dir = env != nullptr ? env : "/work/shared/data/langfuse-framework-traces";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return out;
  }
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
  return out;
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
  const std::vector<std::string> pii = {
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
