#pragma once
// Per-Scanner working state of one MaskText/MaskJson call, and the three stages that use
// it: BuildJsonSegments (json_walker.cpp), FindHits (find_hits.cpp), Emit (emit.cpp).
//
// A value is cut into segments: for JSON, every string (value or key) and number that is
// scanned, masked whole or holds nested JSON; for text, the whole value. The decoded
// text of all scanned segments is laid end to end in `shadow` (NUL between segments), so
// one Hyperscan call and one class-scanner pass cover the whole value.

#include <hs/hs.h>
#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "masking/class_scanner.h"
#include "masking/compiled_profile.h"
#include "masking/masker.h"

namespace tracegate::masking {

enum class SegKind : uint8_t { kText, kString, kKey, kNumber, kContainer };
enum class SegMode : uint8_t {
  kScan,       // detectors run over the text
  kOpaque,     // an opaque blob under a keep-if-opaque rule: only a match covering the
               // whole value counts
  kMaskWhole,  // a field rule masks the whole value (text in `aside`)
};

struct Segment {
  uint32_t doc = 0;
  uint32_t raw_begin = 0;  // in the doc's text; strings include their quotes
  uint32_t raw_end = 0;
  uint32_t text_off = 0;  // kScan/kOpaque: in the scan buffer; kMaskWhole: in `aside`;
                          // kContainer: the nested doc's index
  uint32_t text_len = 0;
  uint32_t key_off = 0;  // the raw key of the member holding this value (doc text), for
  uint32_t key_len = 0;  // context words
  uint32_t hit_begin = 0;
  uint32_t hit_end = 0;
  SegKind kind = SegKind::kText;
  SegMode mode = SegMode::kScan;
  bool secret_value = false;  // held by a secret-named key: checked whole
  uint16_t entity = 0;        // kMaskWhole
};

struct Doc {
  const char* text = nullptr;
  uint32_t size = 0;
  uint32_t seg_begin = 0;
  uint32_t seg_end = 0;
  int32_t parent_seg = -1;
  bool json = false;
  bool changed = false;
};

struct Candidate {
  uint32_t seg;
  uint32_t begin;  // relative to the segment text
  uint32_t end;
  float score;
  uint16_t detector;
};

struct Hit {
  uint32_t begin;
  uint32_t end;
  uint16_t entity;
};

struct Detection {
  uint32_t pattern;
  uint32_t end;
};

// Walker frame: one open object or array.
struct Frame {
  bool is_object = false;
  uint8_t mode = 0;  // Mode (json_walker.cpp) its children inherit
  uint16_t entity = 0;
  uint32_t index = 0;       // next array index
  uint32_t rules_off = 0;   // this node's rule states in ScanState::rule_states
  bool owns_rules = false;  // the states were pushed for this node (not the caller's)
  uint32_t key_off = 0;     // the raw key of the member being parsed
  uint32_t key_len = 0;
};

class ScanState {
 public:
  explicit ScanState(const CompiledProfile& cp) : cp(cp) {}
  ~ScanState();
  ScanState(const ScanState&) = delete;
  ScanState& operator=(const ScanState&) = delete;

  void Reset();
  // The decoded text of a scanned or masked-whole segment (empty if out of range, which
  // would be a bug; never throws).
  std::string_view SegText(const Segment& s) const {
    std::string_view buf = s.mode == SegMode::kMaskWhole ? std::string_view(aside) : scan_buf;
    if (s.kind == SegKind::kContainer || s.text_off > buf.size() ||
        s.text_len > buf.size() - s.text_off) {
      return {};
    }
    return {buf.data() + s.text_off, s.text_len};
  }
  // A stable buffer for the decoded text of a nested JSON document.
  std::string& NewNestedText();

  const CompiledProfile& cp;
  hs_scratch_t* scratch = nullptr;
  EVP_MAC_CTX* mac = nullptr;

  std::string_view scan_buf;     // shadow (JSON) or the input (text)
  std::string_view context_key;  // text values: the column name
  // False when the value's column name or JSON structure may be the client's choice
  // (FieldContext::trusted_names): `keep` rules then keep only opaque blobs.
  bool keep_rules = true;
  std::string shadow;
  std::string aside;
  std::vector<Segment> segs;
  std::vector<Doc> docs;
  std::vector<std::unique_ptr<std::string>> nested;
  size_t nested_used = 0;
  std::vector<uint32_t> shadow_segs;  // segments laid out in the scan buffer, in order

  std::vector<Detection> detections;
  std::vector<ClassHit> class_hits;
  std::vector<Candidate> cands;
  std::vector<Hit> hits;
  std::vector<uint32_t> entity_hits;

  std::vector<Frame> frames;
  std::vector<uint64_t> rule_states;
  std::string key_buf;
  std::vector<std::string> emit_bufs;
  std::string value_buf;
  std::string replace_buf;
};

// Tokenises and validates `in` as JSON into segments/shadow (doc 0); errors on invalid
// JSON (the state must then be Reset before reuse).
absl::Status BuildJsonSegments(ScanState& st, std::string_view in, std::string_view column);

// Sets up a text value (doc 0, one segment) after the column rules.
absl::Status BuildTextSegments(ScanState& st, std::string_view in, std::string_view column);
// Whether a text value starts (after whitespace) with '{' or '['.
bool StartsLikeJson(std::string_view in);

// Runs the detectors over st.scan_buf and fills st.hits, the segments' hit ranges and
// st.entity_hits; marks changed docs. Returns whether anything is to be masked.
absl::StatusOr<bool> FindHits(ScanState& st);

// Writes the masked value (doc 0) to `out`.
absl::Status Emit(ScanState& st, std::string& out);

}  // namespace tracegate::masking
