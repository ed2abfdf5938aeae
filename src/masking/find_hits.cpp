// Detection and resolution: one Hyperscan pass and one class-scanner pass over the scan
// buffer, locators and validators per reported end, then per segment: context words,
// score threshold, overlap resolution (higher score, then longer, wins).
#include <algorithm>

#include "common/strings.h"
#include "masking/locators.h"
#include "masking/scan_state.h"
#include "masking/validators.h"

namespace tracegate::masking {
namespace {

int OnDetect(unsigned id, unsigned long long, unsigned long long to, unsigned, void* ctx) {
  static_cast<std::vector<Detection>*>(ctx)->push_back({id, static_cast<uint32_t>(to)});
  return 0;
}

struct SomContext {
  ScanState* st;
  uint32_t seg;
  size_t lo;      // segment start in the scan buffer
  size_t region;  // region start in the scan buffer
};

bool PassesCheck(Check check, std::string_view v) {
  switch (check) {
    case Check::kNone:
      return true;
    case Check::kLuhn: {
      size_t digits = std::count_if(v.begin(), v.end(), IsDigit);
      return digits >= 12 && LuhnValid(v);
    }
    case Check::kMod97: {
      std::string compact;
      for (char c : v) {
        if (IsAlnum(c)) {
          compact += IsLower(c) ? static_cast<char>(c - 'a' + 'A') : c;
        }
      }
      return IbanValid(compact);
    }
    case Check::kEntropy:
      return ShannonEntropy(v) >= 3.0;
  }
  return false;
}

int OnSom(unsigned id, unsigned long long from, unsigned long long to, unsigned, void* ctx) {
  auto* c = static_cast<SomContext*>(ctx);
  const CompiledProfile& cp = c->st->cp;
  const PatternDef& p = cp.patterns[id];
  const DetectorDef& d = cp.detectors[p.detector];
  size_t b = c->region + from;
  size_t e = c->region + to;
  if (e > b && PassesCheck(d.check, c->st->scan_buf.substr(b, e - b))) {
    c->st->cands.push_back({c->seg, static_cast<uint32_t>(b - c->lo),
                            static_cast<uint32_t>(e - c->lo), p.score, p.detector});
  }
  return 0;
}

// Maps scan-buffer offsets to segments. Offsets mostly arrive in increasing order, so it
// first tries the segment of the previous lookup and the next one.
class SegmentFinder {
 public:
  explicit SegmentFinder(const ScanState& st) : st_(st), order_(st.shadow_segs) {}

  // The segment whose text contains `pos`, or -1.
  int At(size_t pos) {
    if (order_.empty()) {
      return -1;
    }
    for (size_t k = last_; k < order_.size() && k < last_ + 2; ++k) {
      const Segment& s = st_.segs[order_[k]];
      if (pos < s.text_off) {
        break;
      }
      if (pos < static_cast<size_t>(s.text_off) + s.text_len) {
        last_ = k;
        return static_cast<int>(order_[k]);
      }
    }
    auto it = std::upper_bound(order_.begin(), order_.end(), pos,
                               [&](size_t p, uint32_t si) { return p < st_.segs[si].text_off; });
    if (it == order_.begin()) {
      return -1;
    }
    size_t k = static_cast<size_t>(it - order_.begin()) - 1;
    const Segment& s = st_.segs[order_[k]];
    if (pos >= static_cast<size_t>(s.text_off) + s.text_len) {
      return -1;
    }
    last_ = k;
    return static_cast<int>(order_[k]);
  }

 private:
  const ScanState& st_;
  const std::vector<uint32_t>& order_;
  size_t last_ = 0;
};

bool IsWordGap(char c) { return c == ' ' || c == '_' || c == '-'; }

// A camelCase boundary: "socialSecurity" reads as "social security".
bool IsCaseBoundary(std::string_view s, size_t i) {
  return i > 0 && i < s.size() && IsLower(s[i - 1]) && IsUpper(s[i]);
}

// Whether `word` (lower case) occurs in `hay` at the start of a word. A gap in the word
// (' ' or '-') matches one ' ', '_' or '-' or a camelCase boundary, so "social security"
// is found in "social_security_number", "social-security" and "socialSecurityNumber".
bool ContainsWord(std::string_view hay, std::string_view word) {
  if (word.empty()) {
    return false;
  }
  for (size_t i = 0; i < hay.size(); ++i) {
    if (i > 0 && IsAlpha(hay[i - 1]) && !IsCaseBoundary(hay, i)) {
      continue;  // "tel" must not match inside "hotel"
    }
    size_t h = i;
    size_t k = 0;
    while (k < word.size()) {
      if (IsWordGap(word[k])) {
        if (h < hay.size() && IsWordGap(hay[h])) {
          ++h;
        } else if (!IsCaseBoundary(hay, h)) {
          break;
        }
      } else if (h >= hay.size() || ToLower(hay[h]) != word[k]) {
        break;
      } else {
        ++h;
      }
      ++k;
    }
    if (k == word.size()) {
      return true;
    }
  }
  return false;
}

// The raw key of the member holding the segment, or a text value's column name.
std::string_view KeyOf(const ScanState& st, const Segment& seg) {
  if (seg.key_len > 0) {
    return {st.docs[seg.doc].text + seg.key_off, seg.key_len};
  }
  return seg.kind == SegKind::kText ? st.context_key : std::string_view();
}

bool HasContext(const ScanState& st, const Segment& seg, const DetectorDef& d, const Candidate& c) {
  std::string_view text = st.SegText(seg);
  size_t w = static_cast<size_t>(st.cp.profile.context_window);
  size_t from = c.begin > w ? c.begin - w : 0;
  std::string_view before = text.substr(from, c.begin - from);
  std::string_view after = text.substr(c.end, std::min(w / 2, text.size() - c.end));
  std::string_view key = KeyOf(st, seg);
  for (const std::string& word : d.context) {
    if (ContainsWord(before, word) || ContainsWord(after, word) || ContainsWord(key, word)) {
      return true;
    }
  }
  return false;
}

absl::Status Detect(ScanState& st) {
  const CompiledProfile& cp = st.cp;
  std::string_view buf = st.scan_buf;
  if (cp.detect_db != nullptr && !buf.empty()) {
    hs_error_t rc = hs_scan(cp.detect_db.get(), buf.data(), static_cast<unsigned>(buf.size()), 0,
                            st.scratch, OnDetect, &st.detections);
    if (rc != HS_SUCCESS) {
      return absl::InternalError(Cat("hs_scan failed: ", rc));
    }
  }
  const ClassConfig& k = cp.classes;
  if (k.card || k.phone || k.ssn || k.ipv4 || k.ipv6 || k.mac || k.iban) {
    ScanClasses(buf, k, st.class_hits);
  }
  return absl::OkStatus();
}

// 40 bytes of base64 without padding: an AWS secret access key.
bool IsAwsSecretShape(std::string_view v) {
  return v.size() == 40 &&
         std::all_of(v.begin(), v.end(), [](char c) { return IsAlnum(c) || c == '/' || c == '+'; });
}

// aws_secret_access_key, AWS_SECRET_KEY, amazon_secret_key; "secret access key" is AWS's
// own term (STS returns `"SecretAccessKey"` next to `"AccessKeyId"`).
bool NamesAwsSecret(std::string_view key) {
  return ((ContainsWord(key, "aws") || ContainsWord(key, "amazon")) &&
          ContainsWord(key, "secret")) ||
         ContainsWord(key, "secret access key");
}

absl::Status LocateAll(ScanState& st) {
  const CompiledProfile& cp = st.cp;
  std::string_view buf = st.scan_buf;
  std::vector<Detection> som;
  // A private key block or JWT can be long; detections that end inside the last one
  // located in the same segment are the same value and are not expanded again.
  int covered_seg = -1;
  size_t covered_until = 0;
  SegmentFinder finder(st);
  for (const Detection& det : st.detections) {
    int si = det.end > 0 ? finder.At(det.end - 1) : -1;
    if (si < 0) {
      continue;
    }
    const Segment& seg = st.segs[si];
    size_t lo = seg.text_off;
    size_t hi = lo + seg.text_len;
    const PatternDef& p = cp.patterns[det.pattern];
    const DetectorDef& d = cp.detectors[p.detector];
    if (p.locate == LocateKind::kSom) {
      som.push_back({static_cast<uint32_t>(si), det.end});  // pattern := segment here
      continue;
    }
    const bool long_value = p.locate == LocateKind::kPem || p.locate == LocateKind::kJwt;
    if (long_value && si == covered_seg && det.end <= covered_until) {
      continue;
    }
    Span span;
    Builtin b = d.builtin >= 0 ? static_cast<Builtin>(d.builtin) : Builtin::kCount;
    if (!Locate(p.locate, b, buf, lo, hi, det.end, p.fixed_len, &span) ||
        !PassesCheck(d.check, buf.substr(span.begin, span.end - span.begin))) {
      continue;
    }
    if (long_value) {
      covered_seg = si;
      covered_until = span.end;
    }
    st.cands.push_back({static_cast<uint32_t>(si), static_cast<uint32_t>(span.begin - lo),
                        static_cast<uint32_t>(span.end - lo), p.score, p.detector});
  }
  // Custom regexes: one start-of-match scan per segment over the region their ends need.
  uint32_t max_width = 0;
  for (const PatternDef& p : cp.patterns) {
    if (p.locate == LocateKind::kSom) {
      max_width = std::max(max_width, p.max_width);
    }
  }
  for (size_t a = 0; a < som.size();) {
    uint32_t si = som[a].pattern;
    size_t b = a;
    uint32_t first_end = som[a].end;
    uint32_t last_end = som[a].end;
    while (b < som.size() && som[b].pattern == si) {
      first_end = std::min(first_end, som[b].end);
      last_end = std::max(last_end, som[b].end);
      ++b;
    }
    const Segment& seg = st.segs[si];
    size_t lo = seg.text_off;
    size_t region =
        (max_width == kUnbounded || first_end < lo + max_width) ? lo : first_end - max_width;
    SomContext ctx{&st, si, lo, region};
    hs_error_t rc = hs_scan(cp.som_db.get(), buf.data() + region,
                            static_cast<unsigned>(last_end - region), 0, st.scratch, OnSom, &ctx);
    if (rc != HS_SUCCESS) {
      return absl::InternalError(Cat("hs_scan (start of match) failed: ", rc));
    }
    a = b;
  }
  SegmentFinder class_finder(st);
  for (const ClassHit& h : st.class_hits) {
    int si = class_finder.At(h.begin);
    if (si < 0) {
      continue;
    }
    const Segment& seg = st.segs[si];
    if (h.end > seg.text_off + seg.text_len) {
      continue;
    }
    int det = cp.DetectorOf(h.detector);
    st.cands.push_back({static_cast<uint32_t>(si), h.begin - seg.text_off, h.end - seg.text_off,
                        h.score, static_cast<uint16_t>(det)});
  }
  int generic = cp.DetectorOf(Builtin::kGenericSecret);
  int aws_secret = cp.DetectorOf(Builtin::kAwsSecretKey);
  if (generic >= 0) {
    for (uint32_t si : st.shadow_segs) {
      const Segment& seg = st.segs[si];
      std::string_view v = st.SegText(seg);
      if (seg.secret_value && SecretValuePlausible(v)) {
        // The AWS secret pattern needs its key in the same text; under a JSON key (or a
        // column) of that name the value alone is the secret.
        int det = aws_secret >= 0 && IsAwsSecretShape(v) && NamesAwsSecret(KeyOf(st, seg))
                      ? aws_secret
                      : generic;
        st.cands.push_back({si, 0, seg.text_len, 1.0f, static_cast<uint16_t>(det)});
      }
    }
  }
  return absl::OkStatus();
}

bool IsContinuation(char c) { return (static_cast<unsigned char>(c) & 0xc0) == 0x80; }

void AddHit(ScanState& st, const Candidate& c) {
  uint16_t entity = st.cp.detectors[c.detector].entity;
  st.hits.push_back({c.begin, c.end, entity});
  ++st.entity_hits[entity];
}

// Resolves the overlapping candidates cands[a, b) (sorted by begin) into hits.
void ResolveCluster(ScanState& st, std::vector<Candidate>& cl) {
  if (cl.size() > 64) {  // pathological chains: first come, first kept
    uint32_t end = 0;
    for (const Candidate& c : cl) {
      if (c.begin >= end) {
        AddHit(st, c);
        end = c.end;
      }
    }
    return;
  }
  std::sort(cl.begin(), cl.end(), [](const Candidate& x, const Candidate& y) {
    if (x.score != y.score) {
      return x.score > y.score;
    }
    if (x.end - x.begin != y.end - y.begin) {
      return x.end - x.begin > y.end - y.begin;
    }
    return x.begin < y.begin;
  });
  Candidate chosen[64];
  size_t n = 0;
  for (const Candidate& c : cl) {
    bool overlaps = false;
    for (size_t k = 0; k < n && !overlaps; ++k) {
      overlaps = c.begin < chosen[k].end && chosen[k].begin < c.end;
    }
    if (!overlaps) {
      chosen[n++] = c;
    }
  }
  std::sort(chosen, chosen + n,
            [](const Candidate& x, const Candidate& y) { return x.begin < y.begin; });
  for (size_t k = 0; k < n; ++k) {
    AddHit(st, chosen[k]);
  }
}

bool IsVendorSecret(const DetectorDef& d) {
  return d.builtin >= static_cast<int>(Builtin::kAwsAccessKey) &&
         d.builtin <= static_cast<int>(Builtin::kPrivateKey);
}

// A value under a secret-named key is masked whole (the generic candidate, score 1.0, wins
// every overlap), but when a vendor detector validated a key inside it, the value is that
// key: it is labelled and counted as such ("OPENAI_API_KEY": "sk-proj-…" is OPENAI_KEY).
void LabelWholeSecret(const CompiledProfile& cp, const Segment& seg, std::vector<Candidate>& ok) {
  const int generic = cp.DetectorOf(Builtin::kGenericSecret);
  Candidate* whole = nullptr;
  const Candidate* best = nullptr;
  for (Candidate& c : ok) {
    if (c.detector == generic) {
      if (c.begin == 0 && c.end == seg.text_len) {
        whole = &c;
      }
    } else if (IsVendorSecret(cp.detectors[c.detector]) &&
               (best == nullptr || c.end - c.begin > best->end - best->begin)) {
      best = &c;
    }
  }
  if (whole != nullptr && best != nullptr) {
    whole->detector = best->detector;
  }
}

void Resolve(ScanState& st) {
  const CompiledProfile& cp = st.cp;
  const float min_score = static_cast<float>(cp.profile.min_score);
  const float boost = static_cast<float>(cp.profile.context_boost);
  std::sort(st.cands.begin(), st.cands.end(), [](const Candidate& x, const Candidate& y) {
    if (x.seg != y.seg) {
      return x.seg < y.seg;
    }
    if (x.begin != y.begin) {
      return x.begin < y.begin;
    }
    return x.end > y.end;
  });
  std::vector<Candidate> ok;
  std::vector<Candidate> cluster;
  size_t ci = 0;
  for (uint32_t si = 0; si < st.segs.size(); ++si) {
    Segment& seg = st.segs[si];
    seg.hit_begin = static_cast<uint32_t>(st.hits.size());
    if (seg.mode == SegMode::kMaskWhole) {
      st.hits.push_back({0, seg.text_len, seg.entity});
      ++st.entity_hits[seg.entity];
    }
    ok.clear();
    // Only segments with candidates have text in the scan buffer worth reading (a
    // container segment's text_off is a document index).
    std::string_view text;
    if (ci < st.cands.size() && st.cands[ci].seg == si) {
      text = st.SegText(seg);
    }
    for (; ci < st.cands.size() && st.cands[ci].seg == si; ++ci) {
      Candidate c = st.cands[ci];
      // Never split a UTF-8 character: the output must stay valid UTF-8.
      while (c.begin < c.end && IsContinuation(text[c.begin])) {
        ++c.begin;
      }
      while (c.end < text.size() && IsContinuation(text[c.end])) {
        ++c.end;
      }
      if (c.begin >= c.end) {
        continue;
      }
      if (seg.mode == SegMode::kMaskWhole ||
          (seg.mode == SegMode::kOpaque && (c.begin != 0 || c.end != seg.text_len))) {
        continue;
      }
      const DetectorDef& d = cp.detectors[c.detector];
      if (c.score < min_score && !d.context.empty() && HasContext(st, seg, d, c)) {
        c.score += boost;
      }
      if (c.score >= min_score) {
        ok.push_back(c);
      }
    }
    if (seg.secret_value) {
      LabelWholeSecret(cp, seg, ok);
    }
    std::sort(ok.begin(), ok.end(), [](const Candidate& x, const Candidate& y) {
      return x.begin != y.begin ? x.begin < y.begin : x.end > y.end;
    });
    for (size_t k = 0; k < ok.size();) {
      size_t m = k + 1;
      uint32_t max_end = ok[k].end;
      while (m < ok.size() && ok[m].begin < max_end) {
        max_end = std::max(max_end, ok[m].end);
        ++m;
      }
      if (m == k + 1) {
        AddHit(st, ok[k]);
      } else {
        cluster.assign(ok.begin() + static_cast<std::ptrdiff_t>(k),
                       ok.begin() + static_cast<std::ptrdiff_t>(m));
        ResolveCluster(st, cluster);
      }
      k = m;
    }
    seg.hit_end = static_cast<uint32_t>(st.hits.size());
    if (seg.hit_end > seg.hit_begin) {
      st.docs[seg.doc].changed = true;
    }
  }
  for (size_t d = st.docs.size(); d-- > 1;) {
    if (st.docs[d].changed && st.docs[d].parent_seg >= 0) {
      st.docs[st.segs[st.docs[d].parent_seg].doc].changed = true;
    }
  }
}

}  // namespace

absl::StatusOr<bool> FindHits(ScanState& st) {
  st.entity_hits.assign(st.cp.entity_names.size(), 0);
  if (!st.shadow_segs.empty()) {
    if (absl::Status s = Detect(st); !s.ok()) {
      return s;
    }
    if (absl::Status s = LocateAll(st); !s.ok()) {
      return s;
    }
  }
  Resolve(st);
  return !st.docs.empty() && st.docs[0].changed;
}

}  // namespace tracegate::masking
