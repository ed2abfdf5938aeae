#pragma once
// Locators: from a Hyperscan end offset (no start-of-match: that mode ran at ~175 MB/s and
// cannot compile most bounded secret patterns) to the exact span of the value to mask,
// with the detector's validation. Each works inside [lo, hi) (one segment) and reads at
// most a bounded number of bytes around the end offset.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "masking/detectors.h"

namespace tracegate::masking {

struct Span {
  size_t begin = 0;
  size_t end = 0;
};

// Returns false when the match does not validate. `fixed_len` is the term length for
// kFixed. kSom is not handled here.
bool Locate(LocateKind kind, Builtin detector, std::string_view buf, size_t lo, size_t hi,
            size_t match_end, uint32_t fixed_len, Span* out);

}  // namespace tracegate::masking
