#pragma once
// The audit log: append-only segment files of framed, hash-chained records, compressed in
// blocks, with signed checkpoints of the chain head. DESIGN.md "How recording is built".
//
// On disk (all integers little-endian):
//
//   <dir>/seg-<first seq, 20 digits>.tglog
//     header  "TGLOG01\n" | u64 first_seq | u8[32] prev_hash | i64 created_us | u32 crc32
//             (of the 56 header bytes before it)
//     block*  "TGB1" | u32 compressed_len | u32 raw_len | u64 first_seq | u32 count
//             | u32 crc32 (of the 24 header bytes before it and the compressed bytes)
//             | compressed_len bytes: one zstd frame holding `count` encoded records
//
//   record (EncodeRecord): u32 len (bytes that follow) | u64 seq | i64 time_us | u8 type
//             | u8 session_len | session | u8[32] prev_hash | payload | u32 crc32 (of every
//             byte from seq to the end of payload)
//
// The chain: hash(0) = 32 zero bytes; hash(n) = SHA-256(hash(n-1) || encoded record n).
// Record n carries hash(n-1), so a dropped, inserted or reordered record breaks the link
// right where it happened. A checkpoint record signs (seq, hash(seq)) of the record before it
// with Ed25519; the newest checkpoint is also handed to `CheckpointSink` (the state store
// keeps it), so a cut tail or a wholesale replacement of the log is detected too.
//
// Writers: `Append` is called by sessions on any thread; one writer thread encodes, hashes,
// compresses and writes what has queued, then fdatasyncs: one write and one sync per batch
// (group commit). The writer syncs as soon as someone waits for a queued record
// (`WhenDurable`), else every `flush_interval`. Strict durability: callers wait on
// `WhenDurable` before releasing a response. Batched: nobody waits.
// Fail closed: after any write or sync error the writer is broken for good; Append and
// WhenDurable return / deliver Unavailable naming the error.

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tracegate::audit {

enum class RecordType : uint8_t {
  kSessionStart = 1,  // JSON, SessionStart fields (recorder.h)
  kClientFrames = 2,  // the client's protocol frames as received and validated, verbatim
  kServerFrames = 3,  // the frames sent to the client, byte for byte (masked)
  kSessionEnd = 4,    // JSON
  kGrantEvent = 5,    // JSON: a grant transition
  kTruncated = 6,     // JSON: the session reached the recording cap; its frames stop here
  kCheckpoint = 7,    // JSON: a signed chain head (CheckpointPayload)
  kRecovery = 8,      // JSON: what startup found (a torn tail cut off, sessions left open)
  kPruned = 9,        // JSON: segments retention removed, with the chain head each ended at
  kApproval = 10,     // JSON: an approval request opened, a vote, or the request settled
  kAuthFailure = 11,  // JSON: a refused credential, or a count of them (auth_failures.h)
  kUnforwarded = 12,  // JSON: client frames the gate dropped or refused, summarised (no bytes)
};
// "session_start", "client_frames", ...; "unknown" for anything else.
std::string_view RecordTypeName(RecordType type);

using Hash = std::array<uint8_t, 32>;

struct Record {
  uint64_t seq = 0;
  int64_t time_us = 0;  // microseconds since the Unix epoch
  RecordType type = RecordType::kSessionStart;
  std::string session;  // session id, empty for records that belong to no session
  Hash prev_hash{};
  std::string payload;
};

// The record's bytes as the chain hashes them (record format above).
std::string EncodeRecord(const Record& record);
// Decodes one record from the front of `bytes`; `consumed` is set to its size. Errors
// (InvalidArgument / DataLoss) name what is wrong: short, length out of bounds, CRC.
absl::StatusOr<Record> DecodeRecord(std::string_view bytes, size_t& consumed);
Hash ChainHash(const Hash& prev, std::string_view encoded_record);

// Ed25519 signing of checkpoints. The key is a PEM private key (`openssl genpkey -algorithm
// ed25519`); verify needs only the public half.
class CheckpointKey {
 public:
  static absl::StatusOr<CheckpointKey> FromPrivatePem(std::string_view pem);
  static absl::StatusOr<CheckpointKey> FromPublicPem(std::string_view pem);
  // A new random key, PEM-encoded private key (the demo writes one).
  static absl::StatusOr<std::string> GeneratePrivatePem();

  [[nodiscard]] bool can_sign() const;
  // First 16 hex digits of SHA-256 of the raw public key.
  [[nodiscard]] const std::string& key_id() const;
  [[nodiscard]] std::string PublicPem() const;
  absl::StatusOr<std::string> Sign(std::string_view message) const;
  [[nodiscard]] bool Verify(std::string_view message, std::string_view signature) const;
  // (movable; holds an EVP_PKEY)
  CheckpointKey(CheckpointKey&&) noexcept;
  CheckpointKey& operator=(CheckpointKey&&) noexcept;
  ~CheckpointKey();

 private:
  CheckpointKey();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What a checkpoint record holds and signs: the chain through record `seq` ends at `head`.
struct Checkpoint {
  uint64_t seq = 0;
  Hash head{};
  int64_t time_us = 0;
  std::string key_id;
  std::string signature;  // raw 64 bytes
};
// The signed message: "tracegate-checkpoint-v1\n<seq>\n<head hex>\n<time_us>\n".
std::string CheckpointMessage(const Checkpoint& checkpoint);
std::string CheckpointToJson(const Checkpoint& checkpoint);  // hex head, base64 signature
absl::StatusOr<Checkpoint> CheckpointFromJson(std::string_view json);

enum class Durability { kStrict, kBatched };

struct LogOptions {
  std::filesystem::path dir;  // created if missing (mode 0700)
  Durability durability = Durability::kStrict;
  std::chrono::milliseconds flush_interval{10};         // batched mode
  std::chrono::milliseconds checkpoint_interval{1000};  // at most this long unsigned
  uint64_t segment_bytes = 64ull << 20;                 // rotate past this size
  int zstd_level = 1;
  // Called on the writer thread after each checkpoint is durable (may be empty). An error
  // breaks the writer (the head could not be kept where verify looks for it). Must not block
  // on this log (Flush, Prune).
  std::function<absl::Status(const Checkpoint&)> on_checkpoint;
  std::function<std::chrono::system_clock::time_point()> clock;  // default: system clock
};

class LogWriter {
 public:
  // Opens the log in `options.dir`: continues the chain after the last durable record. A
  // torn final block (shorter than it says, or failing its CRC, at the very end of the
  // newest segment: a write the crash interrupted, never acknowledged) is cut off and a
  // kRecovery record says how many bytes went. Anything else wrong is an error: the log is
  // evidence and startup does not repair it (`tracegate audit verify` says what is wrong).
  static absl::StatusOr<std::unique_ptr<LogWriter>> Open(LogOptions options, CheckpointKey key);
  // Writes a final checkpoint and stops the writer thread.
  ~LogWriter();

  // Queues a record (time = clock now) and returns its seq. Unavailable once broken.
  absl::StatusOr<uint64_t> Append(RecordType type, std::string_view session, std::string payload);
  // Runs `done` (on the writer thread, or inline if already durable or broken) once every
  // record up to `seq` is on disk and synced: OK, or the error that broke the writer.
  // `done` must not block on this log (Flush, Prune): the writer thread would wait on itself.
  void WhenDurable(uint64_t seq, absl::AnyInvocable<void(absl::Status)> done);
  // Blocks until everything appended so far is durable.
  absl::Status Flush();

  // OK, or the error that broke the writer.
  [[nodiscard]] absl::Status health() const;
  [[nodiscard]] Durability durability() const;

  // Retention: deletes whole segments whose newest record is older than `cutoff`, never the
  // segment being written, oldest first and only a prefix of the log. A kPruned record
  // listing each (name, first and last seq, the chain hash it ended at) is appended and made
  // durable first, so a crash in between never leaves a gap nothing explains.
  // Returns how many segments went.
  absl::StatusOr<size_t> Prune(std::chrono::system_clock::time_point cutoff);

  struct Stats {
    uint64_t records = 0;
    uint64_t blocks = 0;
    uint64_t bytes_written = 0;  // compressed, headers included
    uint64_t raw_bytes = 0;      // encoded records before compression
    uint64_t syncs = 0;
  };
  [[nodiscard]] Stats stats() const;

 private:
  LogWriter() = default;
  struct State;
  std::unique_ptr<State> state_;
};

// Reads a log directory in seq order. Meant for a stopped gateway or a live one (the
// newest block may be incomplete while it is written: reading stops before it).
class LogReader {
 public:
  static absl::StatusOr<LogReader> Open(const std::filesystem::path& dir);
  // Calls `visit` for every record with seq >= from_seq, in order, until it returns false.
  // Errors: DataLoss naming segment, offset and what is wrong.
  absl::Status ForEach(uint64_t from_seq, const std::function<bool(const Record&)>& visit) const;

 private:
  std::filesystem::path dir_;
};

// One row of the state store's session index, as verify cross-checks it against the log.
struct IndexedSession {
  std::string id;
  uint64_t first_seq = 0;  // its session_start (or auth_failure) record
  uint64_t last_seq = 0;   // its last record so far
};

struct VerifyOptions {
  std::filesystem::path dir;
  const CheckpointKey* key = nullptr;       // public half is enough; required
  std::optional<Checkpoint> expected_head;  // the state store's newest checkpoint, if any
  // A log still being written: records after the last checkpoint are reported as unsigned,
  // not as a failure.
  bool live = false;
  // The session index, when given: every session_start in the log must have its row (with
  // that record as first_seq), a session id must start once, and every row must point at a
  // session_start / auth_failure of its own id and at a last record of its own (rows older
  // than the log's first remaining record are skipped: retention pruned them).
  std::optional<std::vector<IndexedSession>> index;
};

struct VerifyReport {
  bool ok = true;
  std::vector<std::string> problems;  // one line each, precise: segment, offset, seq, what
  std::vector<std::string> notes;     // facts that are not failures (pruned ranges, recovery)
  uint64_t segments = 0;
  uint64_t records = 0;
  uint64_t checkpoints = 0;
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  uint64_t last_checkpoint_seq = 0;
};

// Checks every segment, block and record: CRCs, seq continuity, the hash links, segment
// headers against the chain, every checkpoint's signature and head, that a pruned prefix
// is explained by a kPruned record in the chain, that the log ends at a signed checkpoint
// (unless live), that it reaches `expected_head` with the same hash, and (with an index)
// that the index and the log agree.
VerifyReport Verify(const VerifyOptions& options);

}  // namespace tracegate::audit
