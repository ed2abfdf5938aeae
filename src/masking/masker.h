#pragma once
// The masking engine: a compiled, immutable Masker per profile, and a Scanner per thread.
//
//   TG_ASSIGN_OR_RETURN(auto masker, Masker::Create(profile));   // at config load
//   TG_ASSIGN_OR_RETURN(Scanner scanner, Scanner::Create(masker));  // once per worker
//   Counts counts;                                                  // per session
//   TG_ASSIGN_OR_RETURN(bool changed, scanner.Mask(value, {"output", ValueKind::kJson},
//                                                  masked, counts));
//   forward(changed ? masked : value);
//
// Detection is two-tier. One Hyperscan database holds every literal-anchored detector
// (email via '@', all secret formats, assignments, custom regexes and dictionaries) and
// reports end offsets only; a C++ locator per detector finds the start and validates.
// Digit- and hex-class shapes (card, phone, SSN, IPv4, IBAN, IPv6, MAC) have no literal
// for Hyperscan to anchor on and cost it most of its time, so a vectorised C++ pass finds
// digit runs and colons and classifies them with the validators (Luhn, mod-97, SSA rules).
// JSON is tokenised once; every scanned string (decoded, so `\u0040` is an '@') and number
// is laid end to end in one buffer and scanned in one call; only strings that received a
// hit are re-encoded, everything else is copied through byte for byte.
//
// Fail closed: any error (invalid JSON in a JSON value, a Hyperscan failure, an input over
// 4 GiB) is returned as a status; `out` then holds nothing usable and the caller must not
// forward the input in its place.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "masking/profile.h"

namespace tracegate::masking {

class CompiledProfile;  // masker_internal.h
class ScanState;

enum class ValueKind {
  kText,  // text/varchar: scanned as text; if the whole value parses as JSON it is masked
          // as JSON (so escapes inside it cannot hide a match), otherwise as text
  kJson,  // json/jsonb/HTTP JSON body: must be valid JSON, else an error
};

struct FieldContext {
  std::string_view column;  // column or field name, for column rules and secret-like names
  ValueKind kind = ValueKind::kText;
  // False when the name or the value's JSON structure may have been chosen by the client
  // (a computed SQL result column: an alias, jsonb_build_object(...)). `keep` rules would
  // then let the client steer any value into a kept field, so they only keep opaque blobs
  // (as with only_if_opaque); `mask` and `scan` rules apply as usual.
  bool trusted_names = true;
};

// How many values of each entity were masked, e.g. {"EMAIL": 3, "CARD": 1}.
struct Counts {
  std::map<std::string, uint64_t, std::less<>> by_entity;

  uint64_t Of(std::string_view entity) const;
  uint64_t Total() const;
  void Merge(const Counts& other);
};

class Masker {
 public:
  // Compiles the profile: unknown detector names, bad paths, custom regexes Hyperscan
  // rejects, pseudonymize without a key of at least 16 bytes are errors.
  static absl::StatusOr<std::shared_ptr<const Masker>> Create(const Profile& profile);

  ~Masker();
  Masker(const Masker&) = delete;
  Masker& operator=(const Masker&) = delete;

  const CompiledProfile& compiled() const { return *compiled_; }

 private:
  explicit Masker(std::unique_ptr<CompiledProfile> compiled);
  std::unique_ptr<CompiledProfile> compiled_;
};

// Per-thread state: Hyperscan scratch, HMAC context and reusable buffers. Not thread-safe;
// cheap to keep, not to create (create one per worker thread and profile).
class Scanner {
 public:
  static absl::StatusOr<Scanner> Create(std::shared_ptr<const Masker> masker);

  Scanner(Scanner&&) noexcept;
  Scanner& operator=(Scanner&&) noexcept;
  ~Scanner();

  // Each returns whether anything was masked. true: `out` holds the masked value. false:
  // the input is clean and may be forwarded as is (`out` is cleared). `counts` gains one per
  // masked value, by entity.
  absl::StatusOr<bool> MaskText(std::string_view in, const FieldContext& ctx, std::string& out,
                                Counts& counts);
  absl::StatusOr<bool> MaskJson(std::string_view in, const FieldContext& ctx, std::string& out,
                                Counts& counts);
  // Dispatches on ctx.kind.
  absl::StatusOr<bool> Mask(std::string_view in, const FieldContext& ctx, std::string& out,
                            Counts& counts);

  const Masker& masker() const { return *masker_; }

 private:
  Scanner(std::shared_ptr<const Masker> masker, std::unique_ptr<ScanState> state);
  std::shared_ptr<const Masker> masker_;
  std::unique_ptr<ScanState> state_;
};

}  // namespace tracegate::masking
