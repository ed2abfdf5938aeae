// Scanner: per-thread state and the three entry points.
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "common/status.h"
#include "common/strings.h"
#include "masking/masker.h"
#include "masking/scan_state.h"

namespace tracegate::masking {
namespace {

// Buffers above this are released after a call instead of kept for the next one.
constexpr size_t kKeepCapacity = 4u << 20;

template <typename T>
void ClearAndTrim(T& v) {
  if (v.capacity() > kKeepCapacity) {
    T().swap(v);
  } else {
    v.clear();
  }
}

absl::Status WithColumn(const absl::Status& s, std::string_view column) {
  if (column.empty()) {
    return s;
  }
  return absl::Status(s.code(), Cat("column '", column, "': ", MessageOf(s)));
}

}  // namespace

uint64_t Counts::Of(std::string_view entity) const {
  auto it = by_entity.find(entity);
  return it == by_entity.end() ? 0 : it->second;
}

uint64_t Counts::Total() const {
  uint64_t total = 0;
  for (const auto& [name, n] : by_entity) {
    total += n;
  }
  return total;
}

void Counts::Merge(const Counts& other) {
  for (const auto& [name, n] : other.by_entity) {
    by_entity[name] += n;
  }
}

ScanState::~ScanState() {
  if (scratch != nullptr) {
    hs_free_scratch(scratch);
  }
  if (mac != nullptr) {
    EVP_MAC_CTX_free(mac);
  }
}

void ScanState::Reset() {
  scan_buf = {};
  context_key = {};
  ClearAndTrim(shadow);
  ClearAndTrim(aside);
  ClearAndTrim(segs);
  docs.clear();
  nested_used = 0;
  if (nested.size() > 64) {
    nested.resize(64);
  }
  for (auto& s : nested) {
    ClearAndTrim(*s);
  }
  shadow_segs.clear();
  detections.clear();
  class_hits.clear();
  cands.clear();
  hits.clear();
  frames.clear();
  rule_states.clear();
  for (std::string& b : emit_bufs) {
    ClearAndTrim(b);
  }
  ClearAndTrim(value_buf);
}

std::string& ScanState::NewNestedText() {
  if (nested_used == nested.size()) {
    nested.push_back(std::make_unique<std::string>());
  }
  std::string& s = *nested[nested_used++];
  s.clear();
  return s;
}

Scanner::Scanner(std::shared_ptr<const Masker> masker, std::unique_ptr<ScanState> state)
    : masker_(std::move(masker)), state_(std::move(state)) {}
Scanner::Scanner(Scanner&&) noexcept = default;
Scanner& Scanner::operator=(Scanner&&) noexcept = default;
Scanner::~Scanner() = default;

absl::StatusOr<Scanner> Scanner::Create(std::shared_ptr<const Masker> masker) {
  if (masker == nullptr) {
    return absl::InvalidArgumentError("no masker");
  }
  const CompiledProfile& cp = masker->compiled();
  auto st = std::make_unique<ScanState>(cp);
  for (const hs_database_t* db : {cp.detect_db.get(), cp.som_db.get()}) {
    if (db != nullptr && hs_alloc_scratch(db, &st->scratch) != HS_SUCCESS) {
      return absl::ResourceExhaustedError("cannot allocate Hyperscan scratch");
    }
  }
  if (cp.any_pseudonymize) {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac == nullptr) {
      return absl::InternalError("HMAC unavailable");
    }
    st->mac = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    const std::string& key = cp.profile.pseudonym_key;
    if (st->mac == nullptr ||
        EVP_MAC_init(st->mac, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                     params) != 1) {
      return absl::InternalError("HMAC-SHA256 init failed");
    }
  }
  st->emit_bufs.resize(static_cast<size_t>(cp.profile.max_json_depth) + 2);
  return Scanner(std::move(masker), std::move(st));
}

namespace {

absl::StatusOr<bool> Finish(ScanState& st, std::string& out, Counts& counts) {
  TG_ASSIGN_OR_RETURN(bool changed, FindHits(st));
  if (!changed) {
    return false;
  }
  if (absl::Status s = Emit(st, out); !s.ok()) {
    out.clear();
    return s;
  }
  for (size_t e = 0; e < st.entity_hits.size(); ++e) {
    if (st.entity_hits[e] > 0) {
      counts.by_entity[st.cp.entity_names[e]] += st.entity_hits[e];
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<bool> Scanner::MaskJson(std::string_view in, const FieldContext& ctx,
                                       std::string& out, Counts& counts) {
  ScanState& st = *state_;
  st.Reset();
  st.keep_rules = ctx.trusted_names;
  out.clear();
  if (absl::Status s = BuildJsonSegments(st, in, ctx.column); !s.ok()) {
    return WithColumn(s, ctx.column);
  }
  absl::StatusOr<bool> r = Finish(st, out, counts);
  if (!r.ok()) {
    return WithColumn(r.status(), ctx.column);
  }
  return r;
}

absl::StatusOr<bool> Scanner::MaskText(std::string_view in, const FieldContext& ctx,
                                       std::string& out, Counts& counts) {
  ScanState& st = *state_;
  st.Reset();
  st.keep_rules = ctx.trusted_names;
  out.clear();
  // A text value that is a JSON document is masked as JSON, so escapes cannot hide a
  // match; anything else (including JSON-looking text that does not parse) is text.
  if (StartsLikeJson(in) && BuildJsonSegments(st, in, ctx.column).ok()) {
    absl::StatusOr<bool> r = Finish(st, out, counts);
    return r.ok() ? r : WithColumn(r.status(), ctx.column);
  }
  st.Reset();
  st.keep_rules = ctx.trusted_names;
  if (absl::Status s = BuildTextSegments(st, in, ctx.column); !s.ok()) {
    return WithColumn(s, ctx.column);
  }
  absl::StatusOr<bool> r = Finish(st, out, counts);
  return r.ok() ? r : WithColumn(r.status(), ctx.column);
}

absl::StatusOr<bool> Scanner::Mask(std::string_view in, const FieldContext& ctx, std::string& out,
                                   Counts& counts) {
  return ctx.kind == ValueKind::kJson ? MaskJson(in, ctx, out, counts)
                                      : MaskText(in, ctx, out, counts);
}

}  // namespace tracegate::masking
