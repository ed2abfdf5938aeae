#pragma once
// The class scanner: cards, phone numbers, SSNs, IPv4, IBANs, IPv6 and MAC addresses.
//
// These shapes are made of character classes only (digits, hex, separators), so Hyperscan
// has no literal to anchor on and runs an automaton over every byte: measured on the trace
// corpus, the 10 digit/hex patterns together held one core to ~300 MB/s while the
// literal-anchored detectors ran at ~3 GB/s. This pass instead finds the start of every
// digit run (and every ':' and '-' for IPv6/MAC) with SIMD compares, expands a numeric
// token of digit groups and separators around it, and classifies the token and its
// contiguous sub-ranges of groups with the validators. Most trace bytes are not digits,
// and most digit runs (timestamps, counters, hex ids) are rejected after a few compares.

#include <cstdint>
#include <string_view>
#include <vector>

#include "masking/detectors.h"

namespace tracegate::masking {

struct ClassConfig {
  bool card = false;
  bool phone = false;
  bool ssn = false;
  bool ipv4 = false;
  bool ipv6 = false;
  bool mac = false;
  bool iban = false;
};

struct ClassHit {
  uint32_t begin;
  uint32_t end;
  float score;
  Builtin detector;
};

// Scans `buf` (segments separated by NUL bytes: no token crosses one) and appends every
// validated shape with its score. Weak shapes (bare 9 digits as SSN, bare 10 digits as a
// phone number) are reported with a score below 0.5 and need context to be masked.
void ScanClasses(std::string_view buf, const ClassConfig& config, std::vector<ClassHit>& out);

}  // namespace tracegate::masking
