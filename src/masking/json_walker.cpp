// JSON tokenizer/validator that cuts a document into segments (scan_state.h). Strict RFC
// 8259 grammar, UTF-8 checked once for the input; field rules resolved per value with the
// path programs; JSON found inside a string is walked recursively (bounded depth) and
// rolled back to a plain string if it does not parse.
#include <simdjson.h>

#include "common/status.h"
#include "common/strings.h"
#include "masking/json_lex.h"
#include "masking/scan_state.h"
#include "masking/validators.h"

namespace tracegate::masking {
namespace {

constexpr size_t kMaxNesting = 512;

enum class Mode : uint8_t { kScan, kKeep, kMask, kKeepIfOpaque };

struct Node {
  Mode mode = Mode::kScan;
  uint16_t entity = 0;
  Mode inherited = Mode::kScan;  // what applies when a keep-if-opaque rule does not
  uint16_t inherited_entity = 0;
  bool secret = false;        // forced: the container string was secret-named
  std::string_view key_name;  // decoded key of the member (valid until the next key)
  uint32_t key_off = 0;       // raw key (doc text) for context
  uint32_t key_len = 0;
  uint32_t rules_off = 0;  // this node's rule states
  bool owns_rules = false;
};

// Whether a key could hold something a built-in detector finds: every built-in match has
// a digit, '@', ':' or '=' (or a non-ASCII byte before an '@'), or is at least 15 bytes
// long (tokens, key blocks, dashed MAC addresses). Plain keys ("role", "content") are a
// sixth of a trace's strings and are skipped; with custom detectors every key is scanned.
bool KeyMayHoldValue(std::string_view key) {
  if (key.size() >= 15) {
    return true;
  }
  for (char c : key) {
    if (IsDigit(c) || c == '@' || c == ':' || c == '=' || static_cast<unsigned char>(c) >= 0x80) {
      return true;
    }
  }
  return false;
}

class Walker {
 public:
  explicit Walker(ScanState& st)
      : st_(st), cp_(st.cp), rules_(st.cp.rules.size()), slots_(st.cp.rule_slots) {}

  // Resolves the root node of a top-level value for `column`.
  Node Root(std::string_view column) {
    Node node;
    node.rules_off = static_cast<uint32_t>(st_.rule_states.size());
    node.owns_rules = false;
    st_.rule_states.resize(node.rules_off + slots_);
    for (const CompiledRule& r : cp_.rules) {
      bool applies = r.column.empty() || EqualsIgnoreCase(r.column, column);
      if (r.slot >= 0) {
        st_.rule_states[node.rules_off + r.slot] = applies ? r.path.Start() : 0;
      }
      column_ok_.push_back(applies);
    }
    Resolve(node, nullptr);
    return node;
  }

  absl::Status WalkDoc(uint32_t doc, int level, Node root);

 private:
  static bool EqualsIgnoreCase(std::string_view lower, std::string_view s) {
    if (lower.size() != s.size()) {
      return false;
    }
    for (size_t i = 0; i < s.size(); ++i) {
      if (ToLower(s[i]) != lower[i]) {
        return false;
      }
    }
    return true;
  }

  // Applies the first rule accepting this node; otherwise the inherited mode.
  void Resolve(Node& node, const PathComponent* c) {
    node.mode = node.inherited;
    node.entity = node.inherited_entity;
    for (size_t r = 0; r < rules_; ++r) {
      const CompiledRule& rule = cp_.rules[r];
      if (rule.simple_descendant) {
        if (c == nullptr || c->is_index || !column_ok_[r] || c->name != rule.descendant_name) {
          continue;
        }
      } else if (!rule.path.Accepts(st_.rule_states[node.rules_off + rule.slot])) {
        continue;
      }
      switch (rule.action) {
        case FieldAction::kKeep:
          // (An untrusted name or structure keeps opaque blobs only: see keep_rules.)
          node.mode = rule.only_if_opaque || !st_.keep_rules ? Mode::kKeepIfOpaque : Mode::kKeep;
          break;
        case FieldAction::kMask:
          node.mode = Mode::kMask;
          node.entity = rule.entity;
          break;
        case FieldAction::kScan:
          node.mode = Mode::kScan;
          break;
      }
      return;
    }
  }

  Node Child(const Frame& parent, const PathComponent& c) {
    Node node;
    node.inherited = static_cast<Mode>(parent.mode);
    node.inherited_entity = parent.entity;
    node.rules_off = static_cast<uint32_t>(st_.rule_states.size());
    node.owns_rules = true;
    if (slots_ > 0) {
      st_.rule_states.resize(node.rules_off + slots_);
      for (const CompiledRule& rule : cp_.rules) {
        if (rule.slot < 0) {
          continue;
        }
        uint64_t s = st_.rule_states[parent.rules_off + rule.slot];
        st_.rule_states[node.rules_off + rule.slot] = s == 0 ? 0 : rule.path.Advance(s, c);
      }
    }
    Resolve(node, &c);
    if (parent.is_object) {
      node.key_name = c.name;
      node.key_off = parent.key_off;
      node.key_len = parent.key_len;
    }
    return node;
  }

  absl::Status Error(uint32_t doc, size_t at, std::string_view what) {
    if (doc != 0) {
      return absl::InvalidArgumentError("nested");  // swallowed: the string stays text
    }
    return absl::InvalidArgumentError(Cat("invalid JSON at byte ", at, ": ", what));
  }

  absl::Status ParseString(uint32_t doc, const char* s, size_t n, size_t i, size_t* end,
                           bool* escaped) {
    size_t k = i + 1;
    *escaped = false;
    while (true) {
      k = FindSpecial(s, n, k);
      if (k >= n) {
        return Error(doc, i, "unterminated string");
      }
      char c = s[k];
      if (c == '"') {
        *end = k + 1;
        return absl::OkStatus();
      }
      if (c != '\\') {
        return Error(doc, k, "control character in string");
      }
      *escaped = true;
      if (k + 1 >= n) {
        return Error(doc, k, "unterminated escape");
      }
      char e = s[k + 1];
      if (e == 'u') {
        if (k + 6 > n || !IsHex(s[k + 2]) || !IsHex(s[k + 3]) || !IsHex(s[k + 4]) ||
            !IsHex(s[k + 5])) {
          return Error(doc, k, "bad \\u escape");
        }
        k += 6;
      } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                 e == 'r' || e == 't') {
        k += 2;
      } else {
        return Error(doc, k, "bad escape");
      }
    }
  }

  absl::Status ParseNumber(uint32_t doc, const char* s, size_t n, size_t i, size_t* end) {
    size_t k = i;
    if (s[k] == '-') {
      ++k;
    }
    if (k >= n || !IsDigit(s[k])) {
      return Error(doc, k, "bad number");
    }
    if (s[k] == '0') {
      ++k;
    } else {
      while (k < n && IsDigit(s[k])) {
        ++k;
      }
    }
    if (k < n && s[k] == '.') {
      ++k;
      if (k >= n || !IsDigit(s[k])) {
        return Error(doc, k, "bad number fraction");
      }
      while (k < n && IsDigit(s[k])) {
        ++k;
      }
    }
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
      ++k;
      if (k < n && (s[k] == '+' || s[k] == '-')) {
        ++k;
      }
      if (k >= n || !IsDigit(s[k])) {
        return Error(doc, k, "bad number exponent");
      }
      while (k < n && IsDigit(s[k])) {
        ++k;
      }
    }
    *end = k;
    return absl::OkStatus();
  }

  // Segments are filled in place: building one on the stack and copying it cost a
  // store-forwarding stall per value (a fifth of the walker's time).
  Segment& PushSegment(uint32_t doc, size_t b, size_t e, SegKind kind, SegMode mode,
                       size_t text_off, size_t text_len, uint32_t key_off, uint32_t key_len) {
    Segment& seg = st_.segs.emplace_back();
    seg.doc = doc;
    seg.raw_begin = static_cast<uint32_t>(b);
    seg.raw_end = static_cast<uint32_t>(e);
    seg.text_off = static_cast<uint32_t>(text_off);
    seg.text_len = static_cast<uint32_t>(text_len);
    seg.key_off = key_off;
    seg.key_len = key_len;
    seg.kind = kind;
    seg.mode = mode;
    return seg;
  }
  // A segment whose text was just appended to the shadow at text_off.
  Segment& PushShadowSegment(uint32_t doc, size_t b, size_t e, SegKind kind, SegMode mode,
                             size_t text_off, uint32_t key_off, uint32_t key_len) {
    st_.shadow_segs.push_back(static_cast<uint32_t>(st_.segs.size()));
    Segment& seg = PushSegment(doc, b, e, kind, mode, text_off, st_.shadow.size() - text_off,
                               key_off, key_len);
    st_.shadow.push_back('\0');
    return seg;
  }
  void HandleKey(uint32_t doc, Frame& top, const char* s, size_t b, size_t e, bool escaped,
                 std::string_view* name) {
    std::string_view raw(s + b + 1, e - b - 2);
    if (escaped) {
      st_.key_buf.clear();
      DecodeString(raw.data(), raw.size(), st_.key_buf);
      *name = st_.key_buf;
    } else {
      *name = raw;
    }
    top.key_off = static_cast<uint32_t>(b + 1);
    top.key_len = static_cast<uint32_t>(raw.size());
    Mode mode = static_cast<Mode>(top.mode);
    if (mode == Mode::kKeep || !cp_.profile.scan_keys || name->size() < cp_.min_scan_len ||
        (cp_.profile.custom_detectors.empty() && !KeyMayHoldValue(*name))) {
      return;
    }
    size_t off = st_.shadow.size();
    st_.shadow.append(*name);
    PushShadowSegment(doc, b, e, SegKind::kKey, SegMode::kScan, off, 0, 0);
  }

  absl::Status HandleString(uint32_t doc, int level, const Node& node, const char* s, size_t b,
                            size_t e, bool escaped);
  void HandleNumber(uint32_t doc, const Node& node, const char* s, size_t b, size_t e);
  // Walks a string's content as a nested document; on failure leaves no trace.
  bool TryNested(uint32_t doc, int level, size_t b, size_t e, const Node& node, const char* content,
                 size_t content_len, bool escaped, bool secret);

  ScanState& st_;
  const CompiledProfile& cp_;
  size_t rules_;
  size_t slots_;
  std::vector<bool> column_ok_;  // by rule: the rule's column matches this value's column
};

void Walker::HandleNumber(uint32_t doc, const Node& node, const char* s, size_t b, size_t e) {
  Mode mode = node.mode == Mode::kKeepIfOpaque ? node.inherited : node.mode;
  if (mode == Mode::kKeep) {
    return;
  }
  if (mode == Mode::kMask) {
    size_t off = st_.aside.size();
    st_.aside.append(s + b, e - b);
    Segment& seg = PushSegment(doc, b, e, SegKind::kNumber, SegMode::kMaskWhole, off, e - b,
                               node.key_off, node.key_len);
    seg.entity = mode == node.mode ? node.entity : node.inherited_entity;
    return;
  }
  if (e - b < cp_.min_scan_len) {
    return;
  }
  size_t off = st_.shadow.size();
  st_.shadow.append(s + b, e - b);
  PushShadowSegment(doc, b, e, SegKind::kNumber, SegMode::kScan, off, node.key_off, node.key_len);
}

absl::Status Walker::HandleString(uint32_t doc, int level, const Node& node, const char* s,
                                  size_t b, size_t e, bool escaped) {
  Mode mode = node.mode;
  if (mode == Mode::kKeep) {
    return absl::OkStatus();
  }
  const char* content = s + b + 1;
  size_t content_len = e - b - 2;
  if (mode == Mode::kMask) {
    size_t off = st_.aside.size();
    DecodeString(content, content_len, st_.aside);
    if (st_.aside.size() > off) {
      Segment& seg = PushSegment(doc, b, e, SegKind::kString, SegMode::kMaskWhole, off,
                                 st_.aside.size() - off, node.key_off, node.key_len);
      seg.entity = node.entity;
    }
    return absl::OkStatus();
  }
  size_t off = st_.shadow.size();
  if (mode == Mode::kKeepIfOpaque) {
    DecodeInto(content, content_len, escaped, st_.shadow);
    if (IsOpaqueBlob(std::string_view(st_.shadow).substr(off))) {
      PushShadowSegment(doc, b, e, SegKind::kString, SegMode::kOpaque, off, node.key_off,
                        node.key_len);
      return absl::OkStatus();
    }
    st_.shadow.resize(off);
    Node fallback = node;
    fallback.mode = node.inherited;
    fallback.entity = node.inherited_entity;
    return HandleString(doc, level, fallback, s, b, e, escaped);
  }
  bool secret = node.secret || (!node.key_name.empty() && cp_.Enabled(Builtin::kGenericSecret) &&
                                IsSecretKeyName(node.key_name));
  if (level < cp_.profile.max_json_depth && RawMayBeJson(content, content_len) &&
      TryNested(doc, level, b, e, node, content, content_len, escaped, secret)) {
    return absl::OkStatus();
  }
  DecodeInto(content, content_len, escaped, st_.shadow);
  if (st_.shadow.size() - off >= cp_.min_scan_len || secret) {
    Segment& seg = PushShadowSegment(doc, b, e, SegKind::kString, SegMode::kScan, off, node.key_off,
                                     node.key_len);
    seg.secret_value = secret;
  } else {
    st_.shadow.resize(off);
  }
  return absl::OkStatus();
}

bool Walker::TryNested(uint32_t doc, int level, size_t b, size_t e, const Node& node,
                       const char* content, size_t content_len, bool escaped, bool secret) {
  size_t nested_before = st_.nested_used;
  std::string& text = st_.NewNestedText();
  DecodeInto(content, content_len, escaped, text);
  if (!LooksLikeJson(text)) {
    st_.nested_used = nested_before;
    return false;
  }
  size_t segs_before = st_.segs.size();
  size_t docs_before = st_.docs.size();
  size_t aside_before = st_.aside.size();
  size_t shadow_before = st_.shadow.size();
  size_t shadow_segs_before = st_.shadow_segs.size();
  size_t frames_before = st_.frames.size();
  size_t rules_before = st_.rule_states.size();
  PushSegment(doc, b, e, SegKind::kContainer, SegMode::kScan, docs_before, 0, node.key_off,
              node.key_len);
  Doc nested;
  nested.text = text.data();
  nested.size = static_cast<uint32_t>(text.size());
  nested.seg_begin = static_cast<uint32_t>(st_.segs.size());
  nested.parent_seg = static_cast<int32_t>(segs_before);
  nested.json = true;
  st_.docs.push_back(nested);
  Node root;
  root.rules_off = node.rules_off;  // the path continues into the nested document
  root.owns_rules = false;
  root.secret = secret;
  if (WalkDoc(static_cast<uint32_t>(docs_before), level + 1, root).ok()) {
    st_.docs[docs_before].seg_end = static_cast<uint32_t>(st_.segs.size());
    return true;
  }
  st_.segs.resize(segs_before);
  st_.docs.resize(docs_before);
  st_.aside.resize(aside_before);
  st_.shadow.resize(shadow_before);
  st_.shadow_segs.resize(shadow_segs_before);
  st_.frames.resize(frames_before);
  st_.rule_states.resize(rules_before);
  st_.nested_used = nested_before;
  return false;
}

absl::Status Walker::WalkDoc(uint32_t doc, int level, Node root) {
  const char* s = st_.docs[doc].text;
  const size_t n = st_.docs[doc].size;
  const size_t frames_base = st_.frames.size();
  enum class Step { kValue, kAfterValue, kKey };
  Step step = Step::kValue;
  Node node = root;
  size_t i = SkipWs(s, n, 0);
  while (true) {
    switch (step) {
      case Step::kValue: {
        if (i >= n) {
          return Error(doc, i, "unexpected end of input");
        }
        char c = s[i];
        if (c == '{' || c == '[') {
          if (st_.frames.size() - frames_base >= kMaxNesting) {
            return Error(doc, i, "nesting deeper than 512");
          }
          Frame f;
          f.is_object = c == '{';
          Mode mode = node.mode == Mode::kKeepIfOpaque ? node.inherited : node.mode;
          f.mode = static_cast<uint8_t>(mode);
          f.entity = node.mode == Mode::kKeepIfOpaque ? node.inherited_entity : node.entity;
          f.rules_off = node.rules_off;
          f.owns_rules = node.owns_rules;
          st_.frames.push_back(f);
          i = SkipWs(s, n, i + 1);
          if (i < n && s[i] == (f.is_object ? '}' : ']')) {
            if (f.owns_rules) {
              st_.rule_states.resize(f.rules_off);
            }
            st_.frames.pop_back();
            ++i;
            step = Step::kAfterValue;
          } else if (f.is_object) {
            step = Step::kKey;
          } else {
            node = Child(st_.frames.back(), PathComponent{{}, 0, true});
          }
          continue;
        }
        if (c == '"') {
          size_t end = 0;
          bool escaped = false;
          TG_RETURN_IF_ERROR(ParseString(doc, s, n, i, &end, &escaped));
          TG_RETURN_IF_ERROR(HandleString(doc, level, node, s, i, end, escaped));
          i = end;
        } else if (c == '-' || IsDigit(c)) {
          size_t end = 0;
          TG_RETURN_IF_ERROR(ParseNumber(doc, s, n, i, &end));
          HandleNumber(doc, node, s, i, end);
          i = end;
        } else {
          std::string_view rest(s + i, n - i);
          size_t len = rest.starts_with("true") || rest.starts_with("null") ? 4
                       : rest.starts_with("false")                          ? 5
                                                                            : 0;
          if (len == 0) {
            return Error(doc, i, "unexpected character");
          }
          i += len;
        }
        if (node.owns_rules) {
          st_.rule_states.resize(node.rules_off);
        }
        step = Step::kAfterValue;
        continue;
      }
      case Step::kAfterValue: {
        i = SkipWs(s, n, i);
        if (st_.frames.size() == frames_base) {
          if (i != n) {
            return Error(doc, i, "trailing characters after the value");
          }
          return absl::OkStatus();
        }
        Frame& top = st_.frames.back();
        if (i >= n) {
          return Error(doc, i, "unexpected end of input");
        }
        if (s[i] == ',') {
          i = SkipWs(s, n, i + 1);
          if (top.is_object) {
            step = Step::kKey;
          } else {
            ++top.index;
            node = Child(top, PathComponent{{}, static_cast<int64_t>(top.index), true});
            step = Step::kValue;
          }
          continue;
        }
        if (s[i] == (top.is_object ? '}' : ']')) {
          if (top.owns_rules) {
            st_.rule_states.resize(top.rules_off);
          }
          st_.frames.pop_back();
          ++i;
          continue;
        }
        return Error(doc, i, top.is_object ? "expected ',' or '}'" : "expected ',' or ']'");
      }
      case Step::kKey: {
        if (i >= n || s[i] != '"') {
          return Error(doc, i, "expected a key");
        }
        size_t end = 0;
        bool escaped = false;
        TG_RETURN_IF_ERROR(ParseString(doc, s, n, i, &end, &escaped));
        Frame& top = st_.frames.back();
        std::string_view name;
        HandleKey(doc, top, s, i, end, escaped, &name);
        i = SkipWs(s, n, end);
        if (i >= n || s[i] != ':') {
          return Error(doc, i, "expected ':'");
        }
        i = SkipWs(s, n, i + 1);
        node = Child(st_.frames.back(), PathComponent{name, -1, false});
        step = Step::kValue;
        continue;
      }
    }
  }
}

}  // namespace

absl::Status BuildJsonSegments(ScanState& st, std::string_view in, std::string_view column) {
  if (in.size() >= UINT32_MAX) {
    return absl::InvalidArgumentError("JSON value over 4 GiB");
  }
  if (!simdjson::validate_utf8(in.data(), in.size())) {
    return absl::InvalidArgumentError("invalid JSON: not UTF-8");
  }
  Doc top;
  top.text = in.data();
  top.size = static_cast<uint32_t>(in.size());
  top.json = true;
  st.docs.push_back(top);
  Walker walker(st);
  Node root = walker.Root(column);
  TG_RETURN_IF_ERROR(walker.WalkDoc(0, 0, root));
  if (st.shadow.size() >= UINT32_MAX || st.aside.size() >= UINT32_MAX) {
    return absl::InvalidArgumentError("JSON value too large to scan (decoded text over 4 GiB)");
  }
  st.docs[0].seg_end = static_cast<uint32_t>(st.segs.size());
  st.scan_buf = st.shadow;
  return absl::OkStatus();
}

}  // namespace tracegate::masking

namespace tracegate::masking {

absl::Status BuildTextSegments(ScanState& st, std::string_view in, std::string_view column) {
  if (in.size() >= UINT32_MAX) {
    return absl::InvalidArgumentError("text value over 4 GiB");
  }
  Doc top;
  top.text = in.data();
  top.size = static_cast<uint32_t>(in.size());
  st.docs.push_back(top);
  st.scan_buf = in;
  st.context_key = column;
  Walker walker(st);
  Node root = walker.Root(column);
  Mode mode = root.mode;
  uint16_t entity = root.entity;
  Segment seg;
  seg.raw_end = top.size;
  seg.text_len = top.size;
  seg.kind = SegKind::kText;
  if (mode == Mode::kKeepIfOpaque) {
    if (IsOpaqueBlob(in)) {
      seg.mode = SegMode::kOpaque;
      mode = Mode::kScan;
    } else {
      mode = root.inherited;
      entity = root.inherited_entity;
    }
  }
  if (mode == Mode::kMask && !in.empty()) {
    seg.mode = SegMode::kMaskWhole;
    seg.entity = entity;
    st.aside.assign(in);
    st.segs.push_back(seg);
  } else if (mode == Mode::kScan) {
    seg.secret_value = seg.mode == SegMode::kScan && st.cp.Enabled(Builtin::kGenericSecret) &&
                       IsSecretKeyName(column);
    st.shadow_segs.push_back(0);
    st.segs.push_back(seg);
  }
  st.docs[0].seg_end = static_cast<uint32_t>(st.segs.size());
  return absl::OkStatus();
}

bool StartsLikeJson(std::string_view in) {
  size_t b = SkipWs(in.data(), in.size(), 0);
  return b < in.size() && (in[b] == '{' || in[b] == '[');
}

}  // namespace tracegate::masking
