#include "audit/segment.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/crc.hpp>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "common/status.h"
#include "common/strings.h"

namespace tracegate::audit::internal {
namespace {

std::atomic<WriteFn> g_write{nullptr};
std::atomic<SyncFn> g_sync{nullptr};

std::string ErrorText(int error) {
  return std::error_code(error, std::generic_category()).message();
}

bool AllZero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

BlockRead Corrupt(std::string problem, uint64_t size = 0) {
  BlockRead r;
  r.kind = BlockRead::Kind::kCorrupt;
  r.problem = std::move(problem);
  r.size = size;
  return r;
}

// True when every byte from `offset` to the end is zero (a file the kernel extended before
// the data reached it).
absl::StatusOr<bool> ZeroToEnd(const SegmentSource& source, uint64_t offset) {
  std::string scratch;
  constexpr size_t kChunk = 1u << 20;
  while (offset < source.size()) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, source.size() - offset));
    TG_ASSIGN_OR_RETURN(std::string_view bytes, source.Read(offset, n, scratch));
    if (!AllZero(bytes)) {
      return false;
    }
    offset += n;
  }
  return true;
}

absl::Status ScanError(std::string_view name, uint64_t offset, std::string_view what) {
  return absl::DataLossError(Cat("audit log: ", name, " offset ", offset, ": ", what));
}

struct DctxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

}  // namespace

uint32_t Crc32(std::string_view bytes) {
  boost::crc_32_type crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

uint32_t Crc32(std::string_view a, std::string_view b) {
  boost::crc_32_type crc;
  crc.process_bytes(a.data(), a.size());
  crc.process_bytes(b.data(), b.size());
  return crc.checksum();
}

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) {
    v = (v << 8) | static_cast<uint8_t>(p[i]);
  }
  return v;
}

uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | static_cast<uint8_t>(p[i]);
  }
  return v;
}

std::string HexOf(std::string_view bytes) {
  return absl::BytesToHexString(absl::string_view(bytes.data(), bytes.size()));
}

bool HashFromHex(std::string_view hex, Hash& out) {
  if (hex.size() != out.size() * 2) {
    return false;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = HexDigitValue(hex[2 * i]);
    int lo = HexDigitValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}

// ---- Segment files ----------------------------------------------------------------------

std::string SegmentName(uint64_t first_seq) { return fmt::format("seg-{:020}.tglog", first_seq); }

uint64_t ParseSegmentName(std::string_view name) {
  constexpr std::string_view kPrefix = "seg-";
  constexpr std::string_view kSuffix = ".tglog";
  if (name.size() != kPrefix.size() + 20 + kSuffix.size() || !name.starts_with(kPrefix) ||
      !name.ends_with(kSuffix)) {
    return 0;
  }
  uint64_t seq = 0;
  for (char c : name.substr(kPrefix.size(), 20)) {
    if (c < '0' || c > '9') {
      return 0;
    }
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (seq > (UINT64_MAX - digit) / 10) {
      return 0;
    }
    seq = seq * 10 + digit;
  }
  return seq;
}

absl::StatusOr<std::vector<SegmentFile>> ListSegments(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) {
    return absl::UnavailableError(Cat("audit log: cannot list ", dir.string(), ": ", ec.message()));
  }
  std::vector<SegmentFile> segments;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    uint64_t seq = ParseSegmentName(name);
    if (seq != 0) {
      segments.push_back({seq, name, it->path()});
    }
  }
  if (ec) {
    return absl::UnavailableError(Cat("audit log: cannot list ", dir.string(), ": ", ec.message()));
  }
  std::sort(segments.begin(), segments.end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.first_seq < b.first_seq; });
  return segments;
}

std::string EncodeSegmentHeader(const SegmentHeader& header) {
  std::string out(kSegmentMagic);
  PutU64(out, header.first_seq);
  out.append(reinterpret_cast<const char*>(header.prev_hash.data()), header.prev_hash.size());
  PutU64(out, static_cast<uint64_t>(header.created_us));
  PutU32(out, Crc32(out));
  return out;
}

absl::StatusOr<SegmentHeader> DecodeSegmentHeader(std::string_view bytes) {
  if (bytes.size() < kSegmentHeaderSize) {
    return absl::DataLossError(
        Cat("header incomplete (", bytes.size(), " of ", kSegmentHeaderSize, " bytes)"));
  }
  if (!bytes.starts_with(kSegmentMagic)) {
    return absl::DataLossError("bad segment magic");
  }
  if (Crc32(bytes.substr(0, kSegmentHeaderSize - 4)) !=
      GetU32(bytes.data() + kSegmentHeaderSize - 4)) {
    return absl::DataLossError("header CRC mismatch");
  }
  SegmentHeader header;
  const char* p = bytes.data() + kSegmentMagic.size();
  header.first_seq = GetU64(p);
  std::memcpy(header.prev_hash.data(), p + 8, header.prev_hash.size());
  header.created_us = static_cast<int64_t>(GetU64(p + 40));
  if (header.first_seq == 0) {
    return absl::DataLossError("header says first record 0");
  }
  return header;
}

absl::StatusOr<std::string_view> MemorySource::Read(uint64_t offset, size_t n,
                                                    std::string& /*scratch*/) const {
  if (offset > bytes_.size() || n > bytes_.size() - offset) {
    return absl::OutOfRangeError("read past the end");
  }
  return bytes_.substr(static_cast<size_t>(offset), n);
}

absl::StatusOr<std::unique_ptr<FileSource>> FileSource::Open(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoError("open", path, errno);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int error = errno;
    ::close(fd);
    return ErrnoError("stat", path, error);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(
        Cat("audit log: ", path.string(), " is not a regular file"));
  }
  return std::unique_ptr<FileSource>(new FileSource(fd, static_cast<uint64_t>(st.st_size), path));
}

FileSource::~FileSource() { ::close(fd_); }

absl::StatusOr<std::string_view> FileSource::Read(uint64_t offset, size_t n,
                                                  std::string& scratch) const {
  scratch.resize(n);
  size_t done = 0;
  while (done < n) {
    ssize_t got = ::pread(fd_, scratch.data() + done, n - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      return ErrnoError("read from", path_, errno);
    }
    if (got == 0) {
      return absl::DataLossError(Cat("audit log: ", path_.string(), " shrank while it was read"));
    }
    done += static_cast<size_t>(got);
  }
  return std::string_view(scratch);
}

// ---- Blocks -----------------------------------------------------------------------------

absl::StatusOr<std::string> EncodeBlock(ZSTD_CCtx* cctx, int level, uint64_t first_seq,
                                        uint32_t count, std::string_view raw) {
  if (raw.size() > kMaxBlockRaw) {
    return absl::InvalidArgumentError(Cat("audit log: block of ", raw.size(), " bytes"));
  }
  std::string out;
  out.resize(kBlockHeaderSize + ZSTD_compressBound(raw.size()));
  size_t n = ZSTD_compressCCtx(cctx, out.data() + kBlockHeaderSize, out.size() - kBlockHeaderSize,
                               raw.data(), raw.size(), level);
  if (ZSTD_isError(n)) {
    return absl::InternalError(Cat("audit log: zstd compression failed: ", ZSTD_getErrorName(n)));
  }
  out.resize(kBlockHeaderSize + n);
  std::string header(kBlockMagic);
  PutU32(header, static_cast<uint32_t>(n));
  PutU32(header, static_cast<uint32_t>(raw.size()));
  PutU64(header, first_seq);
  PutU32(header, count);
  std::string_view compressed(out.data() + kBlockHeaderSize, n);
  PutU32(header, Crc32(header, compressed));
  std::memcpy(out.data(), header.data(), kBlockHeaderSize);
  return out;
}

absl::StatusOr<BlockRead> ReadBlock(const SegmentSource& source, uint64_t offset, ZSTD_DCtx* dctx) {
  BlockRead r;
  const uint64_t size = source.size();
  if (offset >= size) {
    r.kind = BlockRead::Kind::kEnd;
    return r;
  }
  std::string scratch;
  const uint64_t left = size - offset;
  if (left < kBlockHeaderSize) {
    TG_ASSIGN_OR_RETURN(std::string_view rest, source.Read(offset, left, scratch));
    if (AllZero(rest)) {
      r.kind = BlockRead::Kind::kZeroTail;
    } else if (kBlockMagic.starts_with(rest.substr(0, std::min(rest.size(), kBlockMagic.size())))) {
      r.kind = BlockRead::Kind::kIncomplete;
      r.problem = "ends inside a block header";
    } else {
      return Corrupt("bad block magic");
    }
    return r;
  }
  TG_ASSIGN_OR_RETURN(std::string_view hv, source.Read(offset, kBlockHeaderSize, scratch));
  std::string header_bytes(hv);
  if (!header_bytes.starts_with(kBlockMagic)) {
    TG_ASSIGN_OR_RETURN(bool zero, ZeroToEnd(source, offset));
    if (zero) {
      r.kind = BlockRead::Kind::kZeroTail;
      return r;
    }
    return Corrupt("bad block magic");
  }
  const char* p = header_bytes.data() + kBlockMagic.size();
  r.header.compressed_len = GetU32(p);
  r.header.raw_len = GetU32(p + 4);
  r.header.first_seq = GetU64(p + 8);
  r.header.count = GetU32(p + 16);
  r.header.crc = GetU32(p + 20);
  if (r.header.compressed_len == 0 || r.header.compressed_len > kMaxBlockCompressed) {
    return Corrupt(Cat("block length ", r.header.compressed_len, " out of bounds"));
  }
  if (r.header.raw_len > kMaxBlockRaw) {
    return Corrupt(Cat("block raw length ", r.header.raw_len, " out of bounds"));
  }
  if (r.header.count == 0 || r.header.count > r.header.raw_len / (kRecordOverhead)) {
    return Corrupt(Cat("block record count ", r.header.count, " out of bounds"));
  }
  r.size = kBlockHeaderSize + uint64_t{r.header.compressed_len};
  if (r.size > left) {
    r.kind = BlockRead::Kind::kIncomplete;
    r.problem = "ends inside a block";
    return r;
  }
  TG_ASSIGN_OR_RETURN(std::string_view compressed,
                      source.Read(offset + kBlockHeaderSize, r.header.compressed_len, scratch));
  if (Crc32(std::string_view(header_bytes).substr(0, kBlockHeaderSize - 4), compressed) !=
      r.header.crc) {
    BlockRead bad = Corrupt("block CRC mismatch", r.size);
    bad.header = r.header;
    bad.crc_mismatch = true;
    return bad;
  }
  unsigned long long content = ZSTD_getFrameContentSize(compressed.data(), compressed.size());
  if (content != r.header.raw_len) {
    BlockRead bad =
        Corrupt(Cat("block does not hold one zstd frame of ", r.header.raw_len, " bytes"), r.size);
    bad.header = r.header;
    return bad;
  }
  r.raw.resize(r.header.raw_len);
  size_t n =
      ZSTD_decompressDCtx(dctx, r.raw.data(), r.raw.size(), compressed.data(), compressed.size());
  if (ZSTD_isError(n) || n != r.header.raw_len) {
    BlockRead bad = Corrupt(Cat("block does not decompress (",
                                ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size", ")"),
                            r.size);
    bad.header = r.header;
    return bad;
  }
  r.kind = BlockRead::Kind::kBlock;
  return r;
}

// ---- Records ----------------------------------------------------------------------------

absl::StatusOr<ParsedRecord> ParseRecord(std::string_view bytes) {
  if (bytes.size() < 4) {
    return absl::InvalidArgumentError(Cat("record is short (", bytes.size(), " bytes)"));
  }
  const uint64_t len = GetU32(bytes.data());
  if (len < kRecordOverhead - 4 || len > kMaxRecordSize) {
    return absl::InvalidArgumentError(Cat("record length ", len, " out of bounds"));
  }
  if (len > bytes.size() - 4) {
    return absl::InvalidArgumentError(
        Cat("record is short (", bytes.size(), " bytes, needs ", len + 4, ")"));
  }
  ParsedRecord out;
  out.encoded = bytes.substr(0, static_cast<size_t>(len) + 4);
  const char* p = out.encoded.data() + 4;
  Record& r = out.record;
  r.seq = GetU64(p);
  r.time_us = static_cast<int64_t>(GetU64(p + 8));
  r.type = static_cast<RecordType>(static_cast<uint8_t>(p[16]));
  const size_t session_len = static_cast<uint8_t>(p[17]);
  if (session_len > len - (kRecordOverhead - 4)) {
    return absl::InvalidArgumentError(
        Cat("record session length ", session_len, " out of bounds (seq ", r.seq, ")"));
  }
  r.session.assign(p + 18, session_len);
  std::memcpy(r.prev_hash.data(), p + 18 + session_len, r.prev_hash.size());
  const size_t payload_at = 18 + session_len + 32;
  const size_t payload_len = static_cast<size_t>(len) - 4 - payload_at;
  r.payload.assign(p + payload_at, payload_len);
  const std::string_view covered = out.encoded.substr(4, static_cast<size_t>(len) - 4);
  out.crc_ok = Crc32(covered) == GetU32(out.encoded.data() + out.encoded.size() - 4);
  return out;
}

// ---- Whole segments ---------------------------------------------------------------------

absl::StatusOr<ScanEnd> ScanSegment(const SegmentSource& source, std::string_view name,
                                    bool allow_torn_tail, const ScanVisitor& visit) {
  ScanEnd end;
  end.file_size = source.size();
  std::string scratch;
  TG_ASSIGN_OR_RETURN(
      std::string_view head_bytes,
      source.Read(0, static_cast<size_t>(std::min<uint64_t>(kSegmentHeaderSize, source.size())),
                  scratch));
  absl::StatusOr<SegmentHeader> header = DecodeSegmentHeader(head_bytes);
  if (!header.ok()) {
    return ScanError(name, 0, MessageOf(header.status()));
  }
  if (header->first_seq != ParseSegmentName(name)) {
    return ScanError(name, 0,
                     Cat("header says first record ", header->first_seq, ", the name says ",
                         ParseSegmentName(name)));
  }
  end.header = *header;
  end.last_seq = header->first_seq - 1;
  end.head = header->prev_hash;
  end.valid_bytes = kSegmentHeaderSize;

  std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx(ZSTD_createDCtx());
  uint64_t offset = kSegmentHeaderSize;
  while (true) {
    TG_ASSIGN_OR_RETURN(BlockRead block, ReadBlock(source, offset, dctx.get()));
    if (block.kind == BlockRead::Kind::kEnd) {
      break;
    }
    if (block.kind != BlockRead::Kind::kBlock) {
      if (allow_torn_tail && block.TornTail(offset, source.size())) {
        end.torn = true;
        break;
      }
      std::string what = block.problem;
      if (block.kind == BlockRead::Kind::kIncomplete) {
        what = "ends inside a block (tail cut)";
      } else if (block.kind == BlockRead::Kind::kZeroTail) {
        what = "the file ends in zero bytes (an unfinished write)";
      }
      return ScanError(name, offset, what);
    }
    if (block.header.first_seq != end.last_seq + 1) {
      return ScanError(
          name, offset,
          Cat("block starts at record ", block.header.first_seq, ", expected ", end.last_seq + 1));
    }
    std::string_view raw = block.raw;
    for (uint32_t i = 0; i < block.header.count; ++i) {
      absl::StatusOr<ParsedRecord> parsed = ParseRecord(raw);
      if (!parsed.ok()) {
        return ScanError(name, offset, MessageOf(parsed.status()));
      }
      const Record& record = parsed->record;
      if (!parsed->crc_ok) {
        return ScanError(name, offset, Cat("record ", record.seq, ": CRC mismatch"));
      }
      if (record.seq != end.last_seq + 1) {
        return ScanError(name, offset, Cat("record ", record.seq, " follows ", end.last_seq));
      }
      if (record.prev_hash != end.head) {
        return ScanError(name, offset, Cat("record ", record.seq, ": previous-hash link broken"));
      }
      end.head = ChainHash(end.head, parsed->encoded);
      end.last_seq = record.seq;
      end.last_time_us = record.time_us;
      ++end.records;
      raw.remove_prefix(parsed->encoded.size());
      if (visit && !visit(record, parsed->encoded)) {
        return end;
      }
    }
    if (!raw.empty()) {
      return ScanError(
          name, offset,
          Cat(raw.size(), " bytes after the block's ", block.header.count, " records"));
    }
    offset += block.size;
    end.valid_bytes = offset;
  }
  return end;
}

// ---- Files ------------------------------------------------------------------------------

void SetIoForTest(WriteFn write, SyncFn sync) {
  g_write.store(write);
  g_sync.store(sync);
}

absl::Status ErrnoError(std::string_view what, const std::filesystem::path& path, int error) {
  return absl::UnavailableError(
      Cat("audit log: ", what, " ", path.string(), " failed: ", ErrorText(error)));
}

absl::Status WriteAll(int fd, std::string_view data, const std::filesystem::path& path) {
  WriteFn write = g_write.load();
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write != nullptr ? write(fd, data.data() + done, data.size() - done)
                                 : ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return ErrnoError("write to", path, errno);
    }
    if (n == 0) {
      return ErrnoError("write to", path, ENOSPC);
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status SyncData(int fd, const std::filesystem::path& path) {
  SyncFn sync = g_sync.load();
  int rc;
  do {
    rc = sync != nullptr ? sync(fd) : ::fdatasync(fd);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    return ErrnoError("sync of", path, errno);
  }
  return absl::OkStatus();
}

absl::Status SyncDir(int dir_fd, const std::filesystem::path& dir) {
  int rc;
  do {
    rc = ::fsync(dir_fd);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    return ErrnoError("sync of", dir, errno);
  }
  return absl::OkStatus();
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset(other.release());
  }
  return *this;
}

UniqueFd::~UniqueFd() { reset(); }

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = fd;
}

std::string RecoveryJson(uint64_t torn_bytes, std::string_view segment) {
  nlohmann::json j = {{"torn_bytes", torn_bytes}, {"segment", std::string(segment)}};
  return j.dump();
}

std::string PrunedJson(const std::vector<PrunedSegment>& segments) {
  nlohmann::json list = nlohmann::json::array();
  for (const PrunedSegment& s : segments) {
    list.push_back({{"name", s.name},
                    {"first_seq", s.first_seq},
                    {"last_seq", s.last_seq},
                    {"last_hash", HexOf(s.last_hash)}});
  }
  nlohmann::json j = {{"segments", list}};
  return j.dump();
}

absl::StatusOr<std::vector<PrunedSegment>> PrunedFromJson(std::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("not a JSON object");
  }
  auto list = j.find("segments");
  if (list == j.end() || !list->is_array()) {
    return absl::InvalidArgumentError("no \"segments\" array");
  }
  std::vector<PrunedSegment> out;
  for (const nlohmann::json& item : *list) {
    if (!item.is_object()) {
      return absl::InvalidArgumentError("a segment entry is not an object");
    }
    auto name = item.find("name");
    auto first = item.find("first_seq");
    auto last = item.find("last_seq");
    auto hash = item.find("last_hash");
    PrunedSegment s;
    if (name == item.end() || !name->is_string() || first == item.end() ||
        !first->is_number_unsigned() || last == item.end() || !last->is_number_unsigned() ||
        hash == item.end() || !hash->is_string() ||
        !HashFromHex(hash->get_ref<const std::string&>(), s.last_hash)) {
      return absl::InvalidArgumentError(
          "a segment entry lacks name, first_seq, last_seq or "
          "last_hash");
    }
    s.name = name->get<std::string>();
    s.first_seq = first->get<uint64_t>();
    s.last_seq = last->get<uint64_t>();
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace tracegate::audit::internal
