#pragma once
// Private to the audit module: the segment file format of log.h (header, blocks, records as
// parsed bytes) and the file helpers the writer, the reader and verify share.
//
// Decoding is a pure function of the bytes (`SegmentSource` hides whether they come from a
// file or from memory), so the fuzzer runs exactly what verify and startup run.

#include <sys/types.h>
#include <zstd.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "audit/log.h"

namespace tracegate::audit::internal {

inline constexpr std::string_view kSegmentMagic = "TGLOG01\n";
inline constexpr std::string_view kBlockMagic = "TGB1";
inline constexpr size_t kSegmentHeaderSize = 8 + 8 + 32 + 8 + 4;   // 60
inline constexpr size_t kBlockHeaderSize = 4 + 4 + 4 + 8 + 4 + 4;  // 28, CRC included
// u32 len | u64 seq | i64 time_us | u8 type | u8 session_len | u8[32] prev_hash | u32 crc
inline constexpr size_t kRecordOverhead = 4 + 8 + 8 + 1 + 1 + 32 + 4;

// The writer closes a block once its raw records pass this (a bigger single record gets a
// block of its own).
inline constexpr size_t kBlockRawTarget = 4u << 20;
// Bounds a reader enforces before allocating anything.
inline constexpr size_t kMaxRecordSize = 32u << 20;  // one encoded record
inline constexpr size_t kMaxBlockRaw = kMaxRecordSize + kBlockRawTarget;
inline constexpr size_t kMaxBlockCompressed = kMaxBlockRaw + (1u << 20);

uint32_t Crc32(std::string_view bytes);
uint32_t Crc32(std::string_view a, std::string_view b);
void PutU32(std::string& out, uint32_t v);
void PutU64(std::string& out, uint64_t v);
uint32_t GetU32(const char* p);
uint64_t GetU64(const char* p);
std::string HexOf(std::string_view bytes);
inline std::string HexOf(const Hash& hash) {
  return HexOf(std::string_view(reinterpret_cast<const char*>(hash.data()), hash.size()));
}
bool HashFromHex(std::string_view hex, Hash& out);

// ---- Segment files ----------------------------------------------------------------------

// "seg-00000000000000000001.tglog"
std::string SegmentName(uint64_t first_seq);
// The first seq a segment file name carries, or 0 if `name` is not a segment file name.
uint64_t ParseSegmentName(std::string_view name);

struct SegmentFile {
  uint64_t first_seq = 0;  // from the name
  std::string name;
  std::filesystem::path path;
};
// The segment files in `dir`, oldest first. Other files are ignored.
absl::StatusOr<std::vector<SegmentFile>> ListSegments(const std::filesystem::path& dir);

struct SegmentHeader {
  uint64_t first_seq = 0;
  Hash prev_hash{};
  int64_t created_us = 0;
};
std::string EncodeSegmentHeader(const SegmentHeader& header);
// `bytes` is the start of the file. Errors (DataLoss) say what is wrong, without the name:
// "header incomplete (12 of 60 bytes)", "bad segment magic", "header CRC mismatch".
absl::StatusOr<SegmentHeader> DecodeSegmentHeader(std::string_view bytes);

// Where decoding reads a segment's bytes from.
class SegmentSource {
 public:
  virtual ~SegmentSource() = default;
  [[nodiscard]] virtual uint64_t size() const = 0;
  // Bytes [offset, offset + n), which the caller keeps within size(); may point into
  // `scratch`. Errors are I/O errors.
  virtual absl::StatusOr<std::string_view> Read(uint64_t offset, size_t n,
                                                std::string& scratch) const = 0;
};

class MemorySource final : public SegmentSource {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) {}
  [[nodiscard]] uint64_t size() const override { return bytes_.size(); }
  absl::StatusOr<std::string_view> Read(uint64_t offset, size_t n,
                                        std::string& scratch) const override;

 private:
  std::string_view bytes_;
};

// A read-only segment file (opened O_NOFOLLOW); its size is taken at Open.
class FileSource final : public SegmentSource {
 public:
  static absl::StatusOr<std::unique_ptr<FileSource>> Open(const std::filesystem::path& path);
  ~FileSource() override;
  [[nodiscard]] uint64_t size() const override { return size_; }
  absl::StatusOr<std::string_view> Read(uint64_t offset, size_t n,
                                        std::string& scratch) const override;

 private:
  FileSource(int fd, uint64_t size, std::filesystem::path path)
      : fd_(fd), size_(size), path_(std::move(path)) {}
  int fd_;
  uint64_t size_;
  std::filesystem::path path_;
};

// ---- Blocks -----------------------------------------------------------------------------

struct BlockHeader {
  uint32_t compressed_len = 0;
  uint32_t raw_len = 0;
  uint64_t first_seq = 0;
  uint32_t count = 0;
  uint32_t crc = 0;
};

// One zstd frame of `raw` (encoded records) behind a block header. `cctx` is reused.
absl::StatusOr<std::string> EncodeBlock(ZSTD_CCtx* cctx, int level, uint64_t first_seq,
                                        uint32_t count, std::string_view raw);

struct BlockRead {
  enum class Kind {
    kBlock,       // a whole block, CRC good, decompressed into `raw`
    kEnd,         // offset is the end of the file
    kIncomplete,  // the file ends inside the block (header or body)
    kZeroTail,    // nothing but zero bytes from here to the end of the file
    kCorrupt,     // `problem` says what
  };
  Kind kind = Kind::kEnd;
  BlockHeader header;
  uint64_t size = 0;  // bytes the block spans, when its header could be read (else 0)
  std::string raw;
  std::string problem;
  bool crc_mismatch = false;  // kCorrupt because of the CRC (with `size` known)

  // What a crash in the middle of the block's write() leaves at the end of the newest
  // segment: startup cuts it off, a reader of a live log stops before it.
  [[nodiscard]] bool TornTail(uint64_t offset, uint64_t file_size) const {
    return kind == Kind::kIncomplete || kind == Kind::kZeroTail ||
           (crc_mismatch && offset + size == file_size);
  }
};
// Reads the block at `offset`. Errors are I/O errors only; what is wrong with the bytes is
// in the result.
absl::StatusOr<BlockRead> ReadBlock(const SegmentSource& source, uint64_t offset, ZSTD_DCtx* dctx);

// ---- Records ----------------------------------------------------------------------------

struct ParsedRecord {
  Record record;
  std::string_view encoded;  // the record's bytes, as the chain hashes them
  bool crc_ok = false;
};
// Parses the record at the front of `bytes` without rejecting a CRC mismatch (verify goes
// on past one). Errors (InvalidArgument) are structural: nothing after can be parsed.
absl::StatusOr<ParsedRecord> ParseRecord(std::string_view bytes);

// ---- Whole segments ---------------------------------------------------------------------

struct ScanEnd {
  SegmentHeader header;
  uint64_t records = 0;
  uint64_t last_seq = 0;     // header.first_seq - 1 when there are no records
  Hash head{};               // the chain hash through last_seq (header.prev_hash if none)
  int64_t last_time_us = 0;  // of the last record (0 if none)
  uint64_t valid_bytes = 0;  // header and whole good blocks
  uint64_t file_size = 0;
  bool torn = false;  // bytes past valid_bytes are a torn tail (only with allow_torn_tail)
};
// Reads one segment through: header, every block and record, seq continuity and hash links
// within it. A torn tail is accepted (and reported in the result) when `allow_torn_tail`;
// anything else wrong is DataLoss "audit log: <name> offset <n>: <what>". `visit` (may be
// empty) sees each record with its encoded bytes and returns false to stop early.
using ScanVisitor = std::function<bool(const Record&, std::string_view encoded)>;
absl::StatusOr<ScanEnd> ScanSegment(const SegmentSource& source, std::string_view name,
                                    bool allow_torn_tail, const ScanVisitor& visit);

// ---- Files ------------------------------------------------------------------------------

// Fault injection for tests: the writer calls these instead of ::write and ::fdatasync.
// nullptr restores the real call.
using WriteFn = ssize_t (*)(int fd, const void* data, size_t size);
using SyncFn = int (*)(int fd);
void SetIoForTest(WriteFn write, SyncFn sync);

// Writes all of `data` (short writes, EINTR). Unavailable "audit log: write to <path>
// failed: <strerror>".
absl::Status WriteAll(int fd, std::string_view data, const std::filesystem::path& path);
// fdatasync; Unavailable "audit log: sync of <path> failed: <strerror>".
absl::Status SyncData(int fd, const std::filesystem::path& path);
// fsync of a directory (after creating or deleting a file in it).
absl::Status SyncDir(int dir_fd, const std::filesystem::path& dir);
// "audit log: <what> <path> failed: <strerror of errno>"
absl::Status ErrnoError(std::string_view what, const std::filesystem::path& path, int error);

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  [[nodiscard]] int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// The JSON of kRecovery and kPruned records.
std::string RecoveryJson(uint64_t torn_bytes, std::string_view segment);
struct PrunedSegment {
  std::string name;
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  Hash last_hash{};
};
std::string PrunedJson(const std::vector<PrunedSegment>& segments);
absl::StatusOr<std::vector<PrunedSegment>> PrunedFromJson(std::string_view json);

}  // namespace tracegate::audit::internal
