// Fuzzes the decoding of a whole segment file: header, blocks (CRC, zstd), records and the
// JSON of checkpoint and pruning records, the way startup, the reader and verify run it.
// Traps when a result breaks the decoder's contract.
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "audit/log.h"
#include "audit/segment.h"

namespace {

using tracegate::audit::CheckpointFromJson;
using tracegate::audit::DecodeRecord;
using tracegate::audit::EncodeRecord;
using tracegate::audit::Record;
using tracegate::audit::RecordType;
namespace internal = tracegate::audit::internal;

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

void CheckRecords(std::string_view raw) {
  while (!raw.empty()) {
    auto parsed = internal::ParseRecord(raw);
    if (!parsed.ok()) {
      Check(!parsed.status().message().empty());
      return;
    }
    Check(parsed->encoded.size() <= raw.size());
    Check(parsed->encoded.size() >= internal::kRecordOverhead);
    Check(parsed->encoded.data() == raw.data());
    size_t consumed = 0;
    auto decoded = DecodeRecord(raw, consumed);
    Check(decoded.ok() == parsed->crc_ok);
    if (parsed->crc_ok) {
      // The format has one encoding per record.
      Check(consumed == parsed->encoded.size());
      Check(EncodeRecord(*decoded) == parsed->encoded);
      if (decoded->type == RecordType::kCheckpoint) {
        (void)CheckpointFromJson(decoded->payload);
      } else if (decoded->type == RecordType::kPruned) {
        (void)internal::PrunedFromJson(decoded->payload);
      }
    }
    raw.remove_prefix(parsed->encoded.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const internal::MemorySource source(bytes);

  auto header = internal::DecodeSegmentHeader(bytes);
  Check(header.ok() || size < internal::kSegmentHeaderSize || !header.status().message().empty());

  // Block by block, going on after a bad block whose length is known (as verify does).
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  uint64_t offset = internal::kSegmentHeaderSize;
  while (offset < size) {
    auto block = internal::ReadBlock(source, offset, dctx);
    Check(block.ok());  // memory never fails to read
    using Kind = internal::BlockRead::Kind;
    if (block->kind == Kind::kBlock) {
      Check(block->size == internal::kBlockHeaderSize + block->header.compressed_len);
      Check(offset + block->size <= size);
      Check(block->raw.size() == block->header.raw_len);
      CheckRecords(block->raw);
    } else if (block->kind == Kind::kCorrupt) {
      Check(!block->problem.empty());
      Check(offset + block->size <= size);
      if (block->crc_mismatch) {
        Check(block->size > 0);
      }
    } else {
      Check(block->kind != Kind::kEnd);  // offset < size
      break;                             // incomplete or a zero tail: nothing after
    }
    if (block->size == 0) {
      break;  // a bad header: where the next block starts is unknown
    }
    offset += block->size;
  }
  ZSTD_freeDCtx(dctx);

  // The whole-segment scan, as startup (torn tail allowed) and as a closed segment.
  const std::string name = internal::SegmentName(header.ok() ? header->first_seq : 1);
  for (bool allow_torn : {true, false}) {
    uint64_t visited = 0;
    auto end = internal::ScanSegment(source, name, allow_torn,
                                     [&visited](const Record&, std::string_view encoded) {
                                       Check(encoded.size() >= internal::kRecordOverhead);
                                       ++visited;
                                       return true;
                                     });
    if (end.ok()) {
      Check(header.ok());
      Check(end->records == visited);
      Check(end->valid_bytes <= end->file_size);
      Check(end->file_size == size);
      Check(end->torn ? allow_torn && end->valid_bytes < size : end->valid_bytes == size);
      Check(end->last_seq + 1 == header->first_seq + visited);
    } else {
      Check(end.status().code() == absl::StatusCode::kDataLoss);
    }
  }
  return 0;
}
