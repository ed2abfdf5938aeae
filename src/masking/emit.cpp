// Output: copies unchanged bytes through, rewrites segments with hits (re-encoding JSON
// strings), re-encodes changed nested documents as strings; strategies produce the
// replacement text.
#include <openssl/evp.h>

#include "common/status.h"
#include "common/strings.h"
#include "masking/json_lex.h"
#include "masking/scan_state.h"
#include "masking/validators.h"

namespace tracegate::masking {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void AppendHex(std::string& out, const unsigned char* p, size_t chars) {
  for (size_t i = 0; i < chars; ++i) {
    unsigned char b = p[i / 2];
    out += kHex[(i % 2 == 0) ? (b >> 4) : (b & 0xf)];
  }
}

// The canonical form pseudonyms and hashes are computed over, so that `4111 1111 1111
// 1111` and `4111111111111111` (or Jane@Example.com and jane@example.com) join.
void Normalize(std::string_view entity, std::string_view v, std::string& out) {
  out.clear();
  if (entity == "EMAIL") {
    for (char c : v) {
      out += ToLower(c);
    }
  } else if (entity == "CARD" || entity == "PHONE" || entity == "SSN" || entity == "IBAN") {
    for (char c : v) {
      if (IsAlnum(c)) {
        out += IsLower(c) ? static_cast<char>(c - 'a' + 'A') : c;
      }
    }
  } else {
    out.assign(v);
  }
}

// Keeps the last `keep` letters/digits (a non-ASCII character counts as one and becomes a
// single '*'); separators stay.
void AppendPartial(std::string& out, std::string_view v, int keep) {
  size_t total = 0;
  for (char c : v) {
    unsigned char u = static_cast<unsigned char>(c);
    if (IsAlnum(c) || (u >= 0x80 && (u & 0xc0) != 0x80)) {
      ++total;
    }
  }
  size_t keep_from = total > static_cast<size_t>(keep) ? total - static_cast<size_t>(keep) : 0;
  size_t idx = 0;
  bool masking_char = false;
  for (char c : v) {
    unsigned char u = static_cast<unsigned char>(c);
    bool counted = IsAlnum(c) || (u >= 0x80 && (u & 0xc0) != 0x80);
    if (counted) {
      masking_char = idx < keep_from;
      ++idx;
      out += masking_char ? '*' : c;
    } else if (u >= 0x80) {  // continuation byte
      if (!masking_char) {
        out += c;
      }
    } else {
      masking_char = false;
      out += c;
    }
  }
}

absl::Status AppendReplacement(ScanState& st, std::string_view value, uint16_t entity,
                               std::string& out) {
  const CompiledProfile& cp = st.cp;
  const std::string& name = cp.entity_names[entity];
  const Strategy& s = cp.entity_strategy[entity];
  switch (s.kind) {
    case StrategyKind::kRedact:
      out += "[REDACTED:";
      out += name;
      out += ']';
      return absl::OkStatus();
    case StrategyKind::kPartial:
      AppendPartial(out, value, s.keep_last);
      return absl::OkStatus();
    case StrategyKind::kPseudonymize: {
      Normalize(name, value, st.replace_buf);
      unsigned char md[EVP_MAX_MD_SIZE];
      size_t md_len = 0;
      const char sep = '\x1f';
      if (st.mac == nullptr || EVP_MAC_init(st.mac, nullptr, 0, nullptr) != 1 ||
          EVP_MAC_update(st.mac, reinterpret_cast<const unsigned char*>(name.data()),
                         name.size()) != 1 ||
          EVP_MAC_update(st.mac, reinterpret_cast<const unsigned char*>(&sep), 1) != 1 ||
          EVP_MAC_update(st.mac, reinterpret_cast<const unsigned char*>(st.replace_buf.data()),
                         st.replace_buf.size()) != 1 ||
          EVP_MAC_final(st.mac, md, &md_len, sizeof md) != 1 || md_len < 16) {
        return absl::InternalError("HMAC-SHA256 failed");
      }
      out += '[';
      out += name;
      out += ':';
      AppendHex(out, md, static_cast<size_t>(cp.profile.pseudonym_hex_chars));
      out += ']';
      return absl::OkStatus();
    }
    case StrategyKind::kHash: {
      Normalize(name, value, st.replace_buf);
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned md_len = 0;
      if (EVP_Digest(st.replace_buf.data(), st.replace_buf.size(), md, &md_len, EVP_sha256(),
                     nullptr) != 1) {
        return absl::InternalError("SHA-256 failed");
      }
      out += '[';
      out += name;
      out += ":sha256:";
      AppendHex(out, md, 16);
      out += ']';
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown strategy");
}

absl::Status AppendMasked(ScanState& st, const Segment& seg, bool json, std::string& out) {
  std::string_view text = st.SegText(seg);
  std::string& v = st.value_buf;
  v.clear();
  size_t pos = 0;
  for (uint32_t h = seg.hit_begin; h < seg.hit_end; ++h) {
    const Hit& hit = st.hits[h];
    if (hit.begin < pos || hit.end > text.size() || hit.begin >= hit.end) {
      return absl::InternalError("overlapping or out-of-range hits");
    }
    v.append(text.substr(pos, hit.begin - pos));
    TG_RETURN_IF_ERROR(
        AppendReplacement(st, text.substr(hit.begin, hit.end - hit.begin), hit.entity, v));
    pos = hit.end;
  }
  v.append(text.substr(pos));
  if (json) {
    AppendJsonString(out, v);
  } else {
    out.append(v);
  }
  return absl::OkStatus();
}

absl::Status EmitDoc(ScanState& st, uint32_t doc_index, size_t level, std::string& out) {
  const Doc d = st.docs[doc_index];
  size_t pos = 0;
  for (uint32_t si = d.seg_begin; si < d.seg_end;) {
    const Segment& seg = st.segs[si];
    if (seg.kind == SegKind::kContainer) {
      uint32_t child = seg.text_off;
      if (st.docs[child].changed) {
        out.append(d.text + pos, seg.raw_begin - pos);
        if (st.emit_bufs.size() <= level) {
          return absl::InternalError("nested JSON deeper than the emit buffers");
        }
        std::string& buf = st.emit_bufs[level];
        buf.clear();
        TG_RETURN_IF_ERROR(EmitDoc(st, child, level + 1, buf));
        AppendJsonString(out, buf);
        pos = seg.raw_end;
      }
      si = st.docs[child].seg_end;
      continue;
    }
    if (seg.hit_end > seg.hit_begin) {
      out.append(d.text + pos, seg.raw_begin - pos);
      TG_RETURN_IF_ERROR(AppendMasked(st, seg, d.json, out));
      pos = seg.raw_end;
    }
    ++si;
  }
  out.append(d.text + pos, d.size - pos);
  return absl::OkStatus();
}

}  // namespace

absl::Status Emit(ScanState& st, std::string& out) {
  out.clear();
  out.reserve(st.docs[0].size + st.docs[0].size / 8 + 64);
  return EmitDoc(st, 0, 0, out);
}

}  // namespace tracegate::masking
