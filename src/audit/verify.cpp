// Verify: reads a whole log and says precisely what is wrong with it, going on past each
// problem where it can.
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "audit/log.h"
#include "audit/segment.h"
#include "common/status.h"
#include "common/strings.h"

namespace tracegate::audit {
namespace {

using internal::BlockRead;
using internal::FileSource;
using internal::SegmentFile;

// Past this many problems the rest are only counted (a rewritten log breaks every link).
constexpr size_t kMaxProblems = 500;

struct DctxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// Text from the log (a key id) as it may go into a report line.
std::string Printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 64)) {
    out.push_back(c >= 0x21 && c <= 0x7e ? c : '?');
  }
  return out;
}

std::string Range(uint64_t lo, uint64_t hi) {
  return lo == hi ? Cat("record ", lo) : Cat("records ", lo, "..", hi);
}

class Verifier {
 public:
  explicit Verifier(const VerifyOptions& options) : options_(options), dctx_(ZSTD_createDCtx()) {}

  VerifyReport Run();

 private:
  // A run of seqs not seen (yet): reported at the end unless they turn up out of order.
  struct Gap {
    uint64_t lo = 0;
    uint64_t hi = 0;
    uint64_t before = 0;   // the record before the gap
    std::string start_of;  // or the segment whose start the gap is at
    uint64_t after = 0;
    size_t problem_index = 0;  // where in the report it belongs
  };
  struct PrunedEntry {
    uint64_t record_seq = 0;
    internal::PrunedSegment segment;
  };

  void Problem(std::string line);
  void Note(std::string line) { report_.notes.push_back(std::move(line)); }
  void CheckSegment(const SegmentFile& segment, bool first, bool newest);
  void CheckBlock(const SegmentFile& segment, uint64_t offset, const BlockRead& block);
  void OnRecord(const internal::ParsedRecord& parsed, const SegmentFile& segment);
  void CheckSeq(uint64_t seq, const SegmentFile& segment);
  void CheckCheckpoint(const Record& record, const Hash& head_before);
  void OnPruned(const Record& record);
  void NoteForIndex(const Record& record);
  void CheckIndex();
  std::optional<uint64_t> NextBlockAfter(const internal::SegmentSource& source, uint64_t offset);
  void Finish();

  const VerifyOptions& options_;
  std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx_;
  VerifyReport report_;
  size_t unlisted_problems_ = 0;

  uint64_t log_start_ = 0;  // the first segment's first seq
  Hash start_prev_{};
  bool start_known_ = false;
  bool any_record_ = false;
  uint64_t high_ = 0;      // the highest seq seen
  uint64_t prev_seq_ = 0;  // the seq of the record before, in file order
  bool have_head_ = false;
  Hash head_{};
  std::vector<Gap> gaps_;
  std::vector<PrunedEntry> pruned_;
  bool valid_checkpoint_ = false;
  std::optional<Hash> expected_seen_;
  // Index cross-check: where each session id starts in the log (session_start or
  // auth_failure; more than one is a reused id), and the session of each record an index
  // row names as its last.
  std::map<std::string, std::vector<uint64_t>, std::less<>> starts_;
  std::map<uint64_t, std::string> wanted_last_;  // seq -> session of that record ("" unseen)
  std::set<uint64_t> seen_last_;
};

void Verifier::Problem(std::string line) {
  report_.ok = false;
  if (report_.problems.size() >= kMaxProblems) {
    ++unlisted_problems_;
    return;
  }
  report_.problems.push_back(std::move(line));
}

VerifyReport Verifier::Run() {
  if (options_.key == nullptr) {
    Problem("no checkpoint key given: signatures cannot be checked");
  }
  if (options_.index.has_value()) {
    for (const IndexedSession& row : *options_.index) {
      wanted_last_.emplace(row.last_seq, std::string());
    }
  }
  absl::StatusOr<std::vector<SegmentFile>> segments = internal::ListSegments(options_.dir);
  if (!segments.ok()) {
    Problem(std::string(MessageOf(segments.status())));
  } else if (segments->empty()) {
    Problem(Cat(options_.dir.string(), ": no segment files"));
  } else {
    for (size_t i = 0; i < segments->size(); ++i) {
      CheckSegment((*segments)[i], i == 0, i + 1 == segments->size());
    }
  }
  Finish();
  return std::move(report_);
}

void Verifier::CheckSegment(const SegmentFile& segment, bool first, bool newest) {
  ++report_.segments;
  const std::string& name = segment.name;
  absl::StatusOr<std::unique_ptr<FileSource>> opened = FileSource::Open(segment.path);
  if (!opened.ok()) {
    Problem(Cat(name, ": ", MessageOf(opened.status())));
    return;
  }
  const FileSource& source = **opened;
  if (source.size() < internal::kSegmentHeaderSize) {
    if (newest && options_.live) {
      Note(Cat(name, ": being created (", source.size(), " header bytes so far)"));
    } else {
      Problem(Cat(name, " offset 0: header incomplete (", source.size(), " of ",
                  internal::kSegmentHeaderSize, " bytes)"));
    }
    return;
  }
  std::string scratch;
  absl::StatusOr<std::string_view> bytes = source.Read(0, internal::kSegmentHeaderSize, scratch);
  if (!bytes.ok()) {
    Problem(Cat(name, ": ", MessageOf(bytes.status())));
    return;
  }
  absl::StatusOr<internal::SegmentHeader> header = internal::DecodeSegmentHeader(*bytes);
  if (first) {
    log_start_ = segment.first_seq;
  }
  if (!header.ok()) {
    Problem(Cat(name, " offset 0: ", MessageOf(header.status())));
  } else if (header->first_seq != segment.first_seq) {
    Problem(Cat(name, " offset 0: header says first record ", header->first_seq,
                " but the name says ", segment.first_seq));
  } else if (first) {
    start_known_ = true;
    start_prev_ = header->prev_hash;
    if (header->first_seq == 1 && header->prev_hash != Hash{}) {
      Problem(Cat("segment ", name, ": header prev_hash is not zero, as the log's start must be"));
    }
    head_ = header->prev_hash;
    have_head_ = true;
  } else {
    if (any_record_ && header->first_seq != prev_seq_ + 1) {
      Problem(Cat("segment ", name, ": header says first record ", header->first_seq,
                  " but the segment before ends at record ", prev_seq_));
    }
    if (have_head_ && header->prev_hash != head_) {
      Problem(Cat("segment ", name, ": header prev_hash does not continue the chain"));
    }
  }

  uint64_t offset = internal::kSegmentHeaderSize;
  while (true) {
    absl::StatusOr<BlockRead> block = internal::ReadBlock(source, offset, dctx_.get());
    if (!block.ok()) {
      Problem(Cat(name, " offset ", offset, ": ", MessageOf(block.status())));
      return;
    }
    switch (block->kind) {
      case BlockRead::Kind::kEnd:
        return;
      case BlockRead::Kind::kIncomplete:
        if (newest && options_.live) {
          Note(Cat(name, " ends inside a block at offset ", offset, " (being written)"));
        } else {
          Problem(Cat(name, " ends inside a block at offset ", offset, " (tail cut)"));
        }
        return;
      case BlockRead::Kind::kZeroTail:
        Problem(Cat(name, " offset ", offset, ": the file ends in ", source.size() - offset,
                    " zero bytes (an unfinished write)"));
        return;
      case BlockRead::Kind::kCorrupt: {
        Problem(Cat(name, " offset ", offset, ": ", block->problem));
        if (block->size > 0) {
          offset += block->size;
          continue;
        }
        std::optional<uint64_t> next = NextBlockAfter(source, offset);
        if (!next.has_value()) {
          return;
        }
        Note(Cat(name, ": went on at the next good block, offset ", *next));
        offset = *next;
        continue;
      }
      case BlockRead::Kind::kBlock:
        CheckBlock(segment, offset, *block);
        offset += block->size;
        continue;
    }
  }
}

// The next offset after `offset` where a whole good block starts, if any.
std::optional<uint64_t> Verifier::NextBlockAfter(const internal::SegmentSource& source,
                                                 uint64_t offset) {
  constexpr size_t kChunk = 1u << 20;
  std::string scratch;
  for (uint64_t at = offset + 1; at < source.size();) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, source.size() - at));
    absl::StatusOr<std::string_view> bytes = source.Read(at, n, scratch);
    if (!bytes.ok()) {
      return std::nullopt;
    }
    const std::string chunk(*bytes);
    for (size_t pos = chunk.find(internal::kBlockMagic); pos != std::string::npos;
         pos = chunk.find(internal::kBlockMagic, pos + 1)) {
      absl::StatusOr<BlockRead> block = internal::ReadBlock(source, at + pos, dctx_.get());
      if (block.ok() && block->kind == BlockRead::Kind::kBlock) {
        return at + pos;
      }
    }
    if (n < kChunk) {
      break;
    }
    at += n - (internal::kBlockMagic.size() - 1);  // a magic across the chunk boundary
  }
  return std::nullopt;
}

void Verifier::CheckBlock(const SegmentFile& segment, uint64_t offset, const BlockRead& block) {
  std::string_view raw = block.raw;
  uint32_t count = 0;
  while (!raw.empty()) {
    absl::StatusOr<internal::ParsedRecord> parsed = internal::ParseRecord(raw);
    if (!parsed.ok()) {
      Problem(Cat(segment.name, " offset ", offset, ": ", MessageOf(parsed.status())));
      return;
    }
    if (count == 0 && parsed->record.seq != block.header.first_seq) {
      Problem(Cat(segment.name, " offset ", offset, ": block header says first record ",
                  block.header.first_seq, " but it holds ", parsed->record.seq));
    }
    if (!parsed->crc_ok) {
      Problem(
          Cat(segment.name, " offset ", offset, ": record ", parsed->record.seq, ": CRC mismatch"));
    }
    ++count;
    OnRecord(*parsed, segment);
    raw.remove_prefix(parsed->encoded.size());
  }
  if (count != block.header.count) {
    Problem(Cat(segment.name, " offset ", offset, ": block header says ", block.header.count,
                " records but it holds ", count));
  }
}

void Verifier::CheckSeq(uint64_t seq, const SegmentFile& segment) {
  if (!any_record_) {
    any_record_ = true;
    report_.first_seq = seq;
    high_ = seq;
    if (seq > log_start_) {
      gaps_.push_back({log_start_, seq - 1, 0, segment.name, seq, report_.problems.size()});
    } else if (seq < log_start_) {
      Problem(Cat("record ", seq, " is in ", segment.name, ", which starts at ", log_start_));
    }
    return;
  }
  if (seq == high_ + 1) {
    high_ = seq;
    return;
  }
  if (seq > high_ + 1) {
    gaps_.push_back({high_ + 1, seq - 1, prev_seq_, "", seq, report_.problems.size()});
    high_ = seq;
    return;
  }
  // Seen before, or turning up late to fill a gap.
  for (size_t i = 0; i < gaps_.size(); ++i) {
    Gap& gap = gaps_[i];
    if (seq < gap.lo || seq > gap.hi) {
      continue;
    }
    Problem(Cat("records out of order: ", seq, " after ", prev_seq_));
    if (gap.lo == gap.hi) {
      gaps_.erase(gaps_.begin() + static_cast<ptrdiff_t>(i));
    } else if (seq == gap.lo) {
      ++gap.lo;
    } else if (seq == gap.hi) {
      --gap.hi;
    } else {
      Gap upper = gap;
      upper.lo = seq + 1;
      gap.hi = seq - 1;
      gaps_.insert(gaps_.begin() + static_cast<ptrdiff_t>(i) + 1, upper);
    }
    return;
  }
  if (seq == prev_seq_) {
    Problem(Cat("record ", seq, " repeated"));
  } else {
    Problem(Cat("record ", seq, " appears again after ", prev_seq_));
  }
}

void Verifier::OnRecord(const internal::ParsedRecord& parsed, const SegmentFile& segment) {
  const Record& record = parsed.record;
  ++report_.records;
  CheckSeq(record.seq, segment);
  if (!have_head_) {
    head_ = record.prev_hash;  // nothing to check the first link against
    have_head_ = true;
  }
  const Hash computed_before = head_;
  if (record.prev_hash != head_) {
    Problem(Cat("record ", record.seq,
                ": previous-hash link broken (record inserted, dropped or edited before it)"));
    // Go on from what the record says came before, so one break is reported once.
    head_ = record.prev_hash;
  }
  head_ = ChainHash(head_, parsed.encoded);
  if (options_.expected_head.has_value() && record.seq == options_.expected_head->seq) {
    expected_seen_ = head_;
  }
  switch (record.type) {
    case RecordType::kCheckpoint:
      CheckCheckpoint(record, computed_before);
      break;
    case RecordType::kRecovery:
      Note(Cat("record ", record.seq,
               ": startup recovery: ", Printable(std::string_view(record.payload).substr(0, 200))));
      break;
    case RecordType::kPruned:
      OnPruned(record);
      break;
    default:
      if (RecordTypeName(record.type) == "unknown") {
        Problem(
            Cat("record ", record.seq, ": unknown record type ", static_cast<int>(record.type)));
      }
      break;
  }
  if (options_.index.has_value()) {
    NoteForIndex(record);
  }
  prev_seq_ = record.seq;
  report_.last_seq = record.seq;
}

void Verifier::NoteForIndex(const Record& record) {
  if (record.type == RecordType::kSessionStart || record.type == RecordType::kAuthFailure) {
    starts_[record.session].push_back(record.seq);
  }
  if (auto it = wanted_last_.find(record.seq); it != wanted_last_.end()) {
    it->second = record.session;
    seen_last_.insert(record.seq);
  }
}

void Verifier::CheckIndex() {
  std::map<std::string_view, const IndexedSession*> rows;
  for (const IndexedSession& row : *options_.index) {
    rows.emplace(row.id, &row);
  }
  const uint64_t first_kept = start_known_ ? log_start_ : 1;
  for (const auto& [id, seqs] : starts_) {
    if (seqs.size() > 1) {
      std::string list;
      for (uint64_t seq : seqs) {
        list += Cat(list.empty() ? "" : ", ", seq);
      }
      Problem(Cat("session ", Printable(id), " starts more than once (records ", list,
                  "): a reused session id; the index holds one row for them"));
    }
    auto row = rows.find(id);
    if (row == rows.end()) {
      const bool unsigned_tail = options_.live && seqs.front() > report_.last_checkpoint_seq;
      std::string line = Cat("record ", seqs.front(), ": session ", Printable(id),
                             " has no row in the session index");
      if (unsigned_tail) {
        Note(Cat(line, " (yet: the log is live)"));
      } else {
        Problem(std::move(line));
      }
    } else if (std::find(seqs.begin(), seqs.end(), row->second->first_seq) == seqs.end()) {
      Problem(Cat("session ", Printable(id), ": the index points at record ",
                  row->second->first_seq, " but the session starts at record ", seqs.front()));
    }
  }
  for (const IndexedSession& row : *options_.index) {
    if (row.first_seq < first_kept) {
      continue;  // pruned by retention
    }
    if (!starts_.contains(row.id)) {
      Problem(Cat("index row ", Printable(row.id), ": record ", row.first_seq,
                  " is not the start of that session in the log"));
      continue;
    }
    if (row.last_seq >= first_kept && row.last_seq <= report_.last_seq) {
      auto last = wanted_last_.find(row.last_seq);
      if (!seen_last_.contains(row.last_seq) || last->second != row.id) {
        Problem(Cat("index row ", Printable(row.id), ": its last record ", row.last_seq,
                    " is not a record of that session"));
      }
    } else if (row.last_seq > report_.last_seq) {
      Problem(Cat("index row ", Printable(row.id), ": its last record ", row.last_seq,
                  " is past the end of the log (", report_.last_seq, ")"));
    }
  }
}

void Verifier::CheckCheckpoint(const Record& record, const Hash& head_before) {
  absl::StatusOr<Checkpoint> checkpoint = CheckpointFromJson(record.payload);
  if (!checkpoint.ok()) {
    Problem(Cat("checkpoint at record ", record.seq, ": unreadable (",
                MessageOf(checkpoint.status()), ")"));
    return;
  }
  bool good = options_.key != nullptr;
  if (good && (checkpoint->key_id != options_.key->key_id() ||
               !options_.key->Verify(CheckpointMessage(*checkpoint), checkpoint->signature))) {
    std::string named;
    if (checkpoint->key_id != options_.key->key_id()) {
      named = Cat(" (it names key ", Printable(checkpoint->key_id), ")");
    }
    Problem(Cat("checkpoint at record ", record.seq, ": signature does not verify with key ",
                options_.key->key_id(), named));
    good = false;
  }
  if (checkpoint->seq + 1 != record.seq) {
    Problem(Cat("checkpoint at record ", record.seq, ": signs record ", checkpoint->seq,
                ", not the record before it"));
    good = false;
  } else if (checkpoint->head != head_before) {
    Problem(Cat("checkpoint at record ", record.seq,
                ": signed head does not match the chain at record ", checkpoint->seq));
    good = false;
  }
  if (good) {
    valid_checkpoint_ = true;
    ++report_.checkpoints;
    report_.last_checkpoint_seq = record.seq;
  }
}

void Verifier::OnPruned(const Record& record) {
  absl::StatusOr<std::vector<internal::PrunedSegment>> segments =
      internal::PrunedFromJson(record.payload);
  if (!segments.ok()) {
    Problem(Cat("record ", record.seq, ": pruned record unreadable (", MessageOf(segments.status()),
                ")"));
    return;
  }
  if (segments->empty()) {
    return;
  }
  Note(Cat("record ", record.seq, ": retention pruned ", segments->size(), " segment(s), ",
           Range(segments->front().first_seq, segments->back().last_seq)));
  for (internal::PrunedSegment& segment : *segments) {
    pruned_.push_back({record.seq, std::move(segment)});
  }
}

void Verifier::Finish() {
  // The pruned prefix must be what a kPruned record in the chain says went.
  if (start_known_ && log_start_ > 1) {
    const PrunedEntry* match = nullptr;
    for (const PrunedEntry& entry : pruned_) {
      if (entry.segment.last_seq == log_start_ - 1) {
        match = &entry;
      }
    }
    if (match == nullptr) {
      Problem(Cat("log starts at record ", log_start_,
                  " but no kPruned record accounts for records before it"));
    } else if (match->segment.last_hash != start_prev_) {
      Problem(Cat("log starts at record ", log_start_, " but the kPruned record ",
                  match->record_seq, " says record ", log_start_ - 1,
                  " ended at a different hash"));
    } else {
      Note(Cat("records 1..", log_start_ - 1, " were pruned (kPruned record ", match->record_seq,
               ")"));
    }
  }

  // Gaps no late record filled, each where it was found.
  for (auto it = gaps_.rbegin(); it != gaps_.rend(); ++it) {
    std::string line =
        it->start_of.empty()
            ? Cat(Range(it->lo, it->hi), " missing: ", it->before, " is followed by ", it->after)
            : Cat(Range(it->lo, it->hi), " missing: ", it->start_of, " starts with ", it->after);
    report_.ok = false;
    if (report_.problems.size() < kMaxProblems) {
      const size_t at = std::min(it->problem_index, report_.problems.size());
      report_.problems.insert(report_.problems.begin() + static_cast<ptrdiff_t>(at),
                              std::move(line));
    } else {
      ++unlisted_problems_;
    }
  }

  if (!valid_checkpoint_) {
    Problem("log has no valid checkpoint");
  } else if (report_.last_seq > report_.last_checkpoint_seq) {
    std::string line = Cat(Range(report_.last_checkpoint_seq + 1, report_.last_seq),
                           report_.last_seq > report_.last_checkpoint_seq + 1 ? " are" : " is",
                           " after the last checkpoint");
    if (options_.live) {
      Note(Cat(line, " (not signed yet)"));
    } else {
      Problem(std::move(line));
    }
  }

  if (options_.expected_head.has_value()) {
    const Checkpoint& expected = *options_.expected_head;
    if (!expected.signature.empty() && options_.key != nullptr &&
        (expected.key_id != options_.key->key_id() ||
         !options_.key->Verify(CheckpointMessage(expected), expected.signature))) {
      Problem(Cat("the state store's signed head (record ", expected.seq,
                  "): signature does not verify with key ", options_.key->key_id()));
    }
    const uint64_t last = any_record_ ? report_.last_seq : 0;
    if (last < expected.seq) {
      Problem(Cat("log ends at record ", last, " but the state store's signed head is at ",
                  expected.seq, ": the tail was cut"));
    } else if (start_known_ && expected.seq + 1 == log_start_) {
      if (expected.head != start_prev_) {
        Problem(Cat("head hash mismatch at record ", expected.seq, ": the log was rewritten"));
      }
    } else if (expected_seen_.has_value()) {
      if (*expected_seen_ != expected.head) {
        Problem(Cat("head hash mismatch at record ", expected.seq, ": the log was rewritten"));
      }
    } else if (expected.seq + 1 < log_start_) {
      Note(Cat("the state store's signed head (record ", expected.seq,
               ") is in the pruned part of the log"));
    } else {
      Problem(Cat("the state store's signed head (record ", expected.seq, ") is not in the log"));
    }
  }

  if (options_.index.has_value()) {
    CheckIndex();
  }

  if (unlisted_problems_ > 0) {
    report_.problems.push_back(Cat("... and ", unlisted_problems_, " more problems"));
  }
}

}  // namespace

VerifyReport Verify(const VerifyOptions& options) { return Verifier(options).Run(); }

}  // namespace tracegate::audit
