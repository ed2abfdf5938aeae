// The record codec and the hash chain (formats in log.h).
#include <openssl/evp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "audit/log.h"
#include "audit/segment.h"
#include "common/strings.h"

namespace tracegate::audit {

std::string_view RecordTypeName(RecordType type) {
  switch (type) {
    case RecordType::kSessionStart:
      return "session_start";
    case RecordType::kClientFrames:
      return "client_frames";
    case RecordType::kServerFrames:
      return "server_frames";
    case RecordType::kSessionEnd:
      return "session_end";
    case RecordType::kGrantEvent:
      return "grant_event";
    case RecordType::kTruncated:
      return "truncated";
    case RecordType::kCheckpoint:
      return "checkpoint";
    case RecordType::kRecovery:
      return "recovery";
    case RecordType::kPruned:
      return "pruned";
    case RecordType::kApproval:
      return "approval";
    case RecordType::kAuthFailure:
      return "auth_failure";
    case RecordType::kUnforwarded:
      return "unforwarded_frames";
  }
  return "unknown";
}

std::string EncodeRecord(const Record& record) {
  // Callers keep the session id within 255 bytes (LogWriter::Append refuses longer ones).
  const size_t session_len = std::min<size_t>(record.session.size(), 255);
  const size_t len = internal::kRecordOverhead - 4 + session_len + record.payload.size();
  std::string out;
  out.reserve(len + 4);
  internal::PutU32(out, static_cast<uint32_t>(len));
  internal::PutU64(out, record.seq);
  internal::PutU64(out, static_cast<uint64_t>(record.time_us));
  out.push_back(static_cast<char>(record.type));
  out.push_back(static_cast<char>(session_len));
  out.append(record.session, 0, session_len);
  out.append(reinterpret_cast<const char*>(record.prev_hash.data()), record.prev_hash.size());
  out.append(record.payload);
  internal::PutU32(out, internal::Crc32(std::string_view(out).substr(4)));
  return out;
}

absl::StatusOr<Record> DecodeRecord(std::string_view bytes, size_t& consumed) {
  absl::StatusOr<internal::ParsedRecord> parsed = internal::ParseRecord(bytes);
  if (!parsed.ok()) {
    return parsed.status();
  }
  if (!parsed->crc_ok) {
    return absl::DataLossError(Cat("record ", parsed->record.seq, ": CRC mismatch"));
  }
  consumed = parsed->encoded.size();
  return std::move(parsed->record);
}

Hash ChainHash(const Hash& prev, std::string_view encoded_record) {
  // Fetched once: OpenSSL 3's implicit fetch on every EVP_sha256() init is slow.
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  Hash out{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int n = 0;
  if (kSha256 == nullptr || ctx == nullptr || EVP_DigestInit_ex(ctx, kSha256, nullptr) != 1 ||
      EVP_DigestUpdate(ctx, prev.data(), prev.size()) != 1 ||
      EVP_DigestUpdate(ctx, encoded_record.data(), encoded_record.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, out.data(), &n) != 1 || n != out.size()) {
    // SHA-256 cannot fail short of a broken OpenSSL; a wrong hash would be worse than a stop.
    std::abort();
  }
  EVP_MD_CTX_free(ctx);
  return out;
}

}  // namespace tracegate::audit
