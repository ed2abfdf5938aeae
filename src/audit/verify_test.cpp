// Verify against the edits a careful forger would make: decode the whole log, change it,
// re-encode every record, block and segment with correct CRCs. What the forger cannot do is
// sign, and that, with the hash links and the state store's head, is what verify catches.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "audit/log.h"
#include "audit/segment.h"
#include "common/strings.h"

namespace tracegate::audit {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "tg_verify_XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) {
    out += line + "\n";
  }
  return out;
}

// ---- A forger's tools -------------------------------------------------------------------

struct Segment {
  std::string name;
  internal::SegmentHeader header;
  std::vector<std::string> encoded;  // the records' bytes, as stored
};

std::vector<Segment> DecodeLog(const fs::path& dir) {
  std::vector<Segment> out;
  auto files = internal::ListSegments(dir);
  EXPECT_TRUE(files.ok());
  for (const internal::SegmentFile& file : *files) {
    Segment segment;
    segment.name = file.name;
    auto source = internal::FileSource::Open(file.path);
    EXPECT_TRUE(source.ok());
    auto end = internal::ScanSegment(**source, file.name, false,
                                     [&](const Record&, std::string_view encoded) {
                                       segment.encoded.emplace_back(encoded);
                                       return true;
                                     });
    EXPECT_TRUE(end.ok()) << end.status();
    segment.header = end->header;
    out.push_back(std::move(segment));
  }
  return out;
}

Record Decoded(const std::string& encoded) {
  size_t consumed = 0;
  absl::StatusOr<Record> record = DecodeRecord(encoded, consumed);
  EXPECT_TRUE(record.ok()) << record.status();
  return *record;
}

// Writes `segments` over the log in `dir`, `per_block` records a block. Segment files are
// named after their first record; an emptied segment is left out.
void EncodeLog(const fs::path& dir, const std::vector<Segment>& segments, size_t per_block = 3) {
  auto old_files = internal::ListSegments(dir);
  ASSERT_TRUE(old_files.ok());
  for (const internal::SegmentFile& file : *old_files) {
    fs::remove(file.path);
  }
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  for (const Segment& segment : segments) {
    if (segment.encoded.empty()) {
      continue;
    }
    internal::SegmentHeader header = segment.header;
    header.first_seq = Decoded(segment.encoded.front()).seq;
    std::string bytes = internal::EncodeSegmentHeader(header);
    for (size_t i = 0; i < segment.encoded.size(); i += per_block) {
      std::string raw;
      const size_t n = std::min(per_block, segment.encoded.size() - i);
      for (size_t j = i; j < i + n; ++j) {
        raw += segment.encoded[j];
      }
      auto block = internal::EncodeBlock(cctx, 1, Decoded(segment.encoded[i]).seq,
                                         static_cast<uint32_t>(n), raw);
      EXPECT_TRUE(block.ok());
      bytes += *block;
    }
    std::ofstream(dir / internal::SegmentName(header.first_seq), std::ios::binary) << bytes;
  }
  ZSTD_freeCCtx(cctx);
}

// Re-encodes every record (correct CRCs) and recomputes every hash link and segment header:
// a self-consistent log, short of the signatures.
void Rechain(std::vector<Segment>& segments) {
  Hash head{};
  bool first = true;
  for (Segment& segment : segments) {
    if (first) {
      head = segment.header.prev_hash;
      first = false;
    }
    segment.header.prev_hash = head;
    for (std::string& encoded : segment.encoded) {
      Record record = Decoded(encoded);
      record.prev_hash = head;
      encoded = EncodeRecord(record);
      head = ChainHash(head, encoded);
    }
  }
}

// Where the record with `seq` is: segment index and index in it.
std::pair<size_t, size_t> Find(const std::vector<Segment>& segments, uint64_t seq) {
  for (size_t s = 0; s < segments.size(); ++s) {
    for (size_t i = 0; i < segments[s].encoded.size(); ++i) {
      if (Decoded(segments[s].encoded[i]).seq == seq) {
        return {s, i};
      }
    }
  }
  ADD_FAILURE() << "no record " << seq;
  return {0, 0};
}

std::string& At(std::vector<Segment>& segments, uint64_t seq) {
  auto [s, i] = Find(segments, seq);
  return segments[s].encoded[i];
}

// ---- Fixture ----------------------------------------------------------------------------

class VerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pem_ = *CheckpointKey::GeneratePrivatePem();
    key_ = std::make_unique<CheckpointKey>(
        *CheckpointKey::FromPublicPem(CheckpointKey::FromPrivatePem(pem_)->PublicPem()));
  }

  // A log of `records` session records (one block each), checkpoints at open and close.
  void MakeLog(const fs::path& dir, const std::string& pem, int records,
               uint64_t segment_bytes = 64u << 20) {
    LogOptions options;
    options.dir = dir;
    options.checkpoint_interval = std::chrono::hours(1);
    options.segment_bytes = segment_bytes;
    options.on_checkpoint = [this](const Checkpoint& c) {
      head_ = c;
      return absl::OkStatus();
    };
    auto log = LogWriter::Open(options, *CheckpointKey::FromPrivatePem(pem));
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 0; i < records; ++i) {
      ASSERT_TRUE((*log)->Append(RecordType::kClientFrames, "sess", Cat("Q select ", i)).ok());
      ASSERT_TRUE((*log)->Flush().ok());
    }
  }
  void MakeLog(int records, uint64_t segment_bytes = 64u << 20) {
    MakeLog(dir_.path(), pem_, records, segment_bytes);
  }

  VerifyReport Check(bool with_head = false, bool live = false) {
    VerifyOptions options;
    options.dir = dir_.path();
    options.key = key_.get();
    options.live = live;
    if (with_head) {
      options.expected_head = head_;
    }
    return Verify(options);
  }

  TempDir dir_;
  std::string pem_;
  std::unique_ptr<CheckpointKey> key_;
  Checkpoint head_;  // what the state store would hold
};

TEST_F(VerifyTest, AGoodLogVerifies) {
  MakeLog(50, 1024);
  VerifyReport report = Check(/*with_head=*/true);
  EXPECT_TRUE(report.ok) << Joined(report.problems);
  EXPECT_THAT(report.problems, ElementsAre());
  EXPECT_GT(report.segments, 2u);
  EXPECT_EQ(report.records, 52u);
  EXPECT_EQ(report.checkpoints, 2u);
  EXPECT_EQ(report.first_seq, 1u);
  EXPECT_EQ(report.last_seq, 52u);
  EXPECT_EQ(report.last_checkpoint_seq, 52u);
  EXPECT_EQ(head_.seq, 51u);
  // Re-encoding what was read, unchanged, is still the same log.
  EncodeLog(dir_.path(), DecodeLog(dir_.path()));
  EXPECT_TRUE(Check(true).ok);
}

TEST_F(VerifyTest, ARawByteFlipIsABlockCrcMismatch) {
  MakeLog(10);
  const fs::path first = dir_.path() / internal::SegmentName(1);
  {
    std::fstream f(first, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(internal::kSegmentHeaderSize + internal::kBlockHeaderSize + 3);
    f.put('\xff');
  }
  VerifyReport report = Check();
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems,
              Contains(Cat(internal::SegmentName(1), " offset 60: block CRC mismatch")));
}

TEST_F(VerifyTest, AfterABlockWithoutItsMagicVerifyGoesOnAtTheNextBlock) {
  MakeLog(10);
  const fs::path first = dir_.path() / internal::SegmentName(1);
  // Blocks hold one record each (MakeLog flushes after every append); spoil the third.
  auto source = internal::FileSource::Open(first);
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  uint64_t offset = internal::kSegmentHeaderSize;
  for (int i = 0; i < 2; ++i) {
    offset += internal::ReadBlock(**source, offset, dctx)->size;
  }
  ZSTD_freeDCtx(dctx);
  {
    std::fstream f(first, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write("XXXX", 4);
  }
  VerifyReport report = Check();
  EXPECT_THAT(report.problems,
              ElementsAre(Cat(internal::SegmentName(1), " offset ", offset, ": bad block magic"),
                          "record 3 missing: 2 is followed by 4",
                          "record 4: previous-hash link broken (record inserted, dropped or "
                          "edited before it)"));
  EXPECT_THAT(report.notes, Contains(HasSubstr("went on at the next good block")));
}

TEST_F(VerifyTest, AnEditedPayloadFailsTheRecordCrc) {
  MakeLog(30);
  std::vector<Segment> log = DecodeLog(dir_.path());
  std::string& record = At(log, 17);
  record[record.size() - 6] ^= 0x20;  // a payload byte; the record CRC is left alone
  EncodeLog(dir_.path(), log);        // block CRCs are recomputed
  VerifyReport report = Check();
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems, Contains(HasSubstr(": record 17: CRC mismatch")));
  EXPECT_THAT(report.problems,
              Contains("record 18: previous-hash link broken (record inserted, dropped or "
                       "edited before it)"));
}

TEST_F(VerifyTest, AnEditedPayloadWithItsCrcFixedBreaksTheNextLink) {
  MakeLog(30);
  std::vector<Segment> log = DecodeLog(dir_.path());
  Record record = Decoded(At(log, 17));
  record.payload = "Q select 'nothing to see here'";
  At(log, 17) = EncodeRecord(record);
  EncodeLog(dir_.path(), log);
  VerifyReport report = Check();
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems,
              ElementsAre("record 18: previous-hash link broken (record inserted, dropped or "
                          "edited before it)"));
}

TEST_F(VerifyTest, ADroppedRecordIsMissing) {
  MakeLog(60);
  std::vector<Segment> log = DecodeLog(dir_.path());
  auto [s, i] = Find(log, 42);
  log[s].encoded.erase(log[s].encoded.begin() + static_cast<ptrdiff_t>(i));
  EncodeLog(dir_.path(), log);
  VerifyReport report = Check();
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems, Contains("record 42 missing: 41 is followed by 43"));
  EXPECT_THAT(report.problems, Contains(HasSubstr("record 43: previous-hash link broken")));
}

TEST_F(VerifyTest, SwappedRecordsAreOutOfOrder) {
  MakeLog(20);
  std::vector<Segment> log = DecodeLog(dir_.path());
  std::swap(At(log, 9), At(log, 10));
  EncodeLog(dir_.path(), log);
  VerifyReport report = Check();
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems, Contains("records out of order: 9 after 10"));
  EXPECT_THAT(report.problems, Contains(HasSubstr("record 10: previous-hash link broken")));
  for (const std::string& line : report.problems) {
    EXPECT_THAT(line, ::testing::Not(HasSubstr("missing")));
  }
}

TEST_F(VerifyTest, AnInsertedRecordBreaksTheLinkAfterIt) {
  MakeLog(30);
  std::vector<Segment> log = DecodeLog(dir_.path());
  // The forger renumbers everything after the inserted record; each record is re-encoded
  // with a good CRC, but the links are the originals.
  auto [s, i] = Find(log, 20);
  Record fake = Decoded(log[s].encoded[i]);
  fake.payload = "Q select 'planted'";
  fake.prev_hash = ChainHash(Decoded(log[s].encoded[i - 1]).prev_hash, log[s].encoded[i - 1]);
  log[s].encoded.insert(log[s].encoded.begin() + static_cast<ptrdiff_t>(i), EncodeRecord(fake));
  for (size_t j = i + 1; j < log[s].encoded.size(); ++j) {
    Record r = Decoded(log[s].encoded[j]);
    ++r.seq;
    log[s].encoded[j] = EncodeRecord(r);
  }
  EncodeLog(dir_.path(), log);
  VerifyReport report = Check();
  EXPECT_FALSE(report.ok);
  ASSERT_FALSE(report.problems.empty());
  EXPECT_EQ(report.problems[0],
            "record 21: previous-hash link broken (record inserted, dropped or edited before it)");
}

TEST_F(VerifyTest, AnInsertedRecordWithTheChainRecomputedFailsTheCheckpoint) {
  MakeLog(30);
  std::vector<Segment> log = DecodeLog(dir_.path());
  auto [s, i] = Find(log, 20);
  Record fake = Decoded(log[s].encoded[i]);
  fake.payload = "Q select 'planted'";
  log[s].encoded.insert(log[s].encoded.begin() + static_cast<ptrdiff_t>(i), EncodeRecord(fake));
  for (size_t j = i + 1; j < log[s].encoded.size(); ++j) {
    Record r = Decoded(log[s].encoded[j]);
    ++r.seq;
    log[s].encoded[j] = EncodeRecord(r);
  }
  Rechain(log);
  EncodeLog(dir_.path(), log);
  VerifyReport report = Check(/*with_head=*/true);
  EXPECT_FALSE(report.ok);
  // The closing checkpoint (was record 32, now 33) signed record 31.
  EXPECT_THAT(report.problems,
              Contains("checkpoint at record 33: signs record 31, not the record before it"));
  EXPECT_THAT(report.problems, Contains("records 2..33 are after the last checkpoint"));
  EXPECT_THAT(report.problems, Contains("head hash mismatch at record 31: the log was rewritten"));
}

TEST_F(VerifyTest, ATailCutAtABlockBoundaryIsCaughtByTheStoredHead) {
  MakeLog(20);
  std::vector<Segment> log = DecodeLog(dir_.path());
  // Drop the last 5 records, closing checkpoint included: what is left is a good log.
  log.back().encoded.resize(log.back().encoded.size() - 5);
  EncodeLog(dir_.path(), log);
  VerifyReport without = Check();
  EXPECT_THAT(without.problems, ElementsAre("records 2..17 are after the last checkpoint"));
  VerifyReport report = Check(/*with_head=*/true);
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems,
              Contains("log ends at record 17 but the state store's signed head is at 21: the "
                       "tail was cut"));
}

TEST_F(VerifyTest, ATruncatedSegmentEndsInsideABlock) {
  MakeLog(20, 512);
  auto files = *internal::ListSegments(dir_.path());
  ASSERT_GE(files.size(), 3u);
  const fs::path middle = files[1].path;
  const uint64_t size = fs::file_size(middle);
  fs::resize_file(middle, size - 4);
  // The cut block starts where the file's last block did.
  auto source = internal::FileSource::Open(middle);
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  uint64_t offset = internal::kSegmentHeaderSize;
  while (true) {
    auto block = internal::ReadBlock(**source, offset, dctx);
    if (block->kind != internal::BlockRead::Kind::kBlock) {
      break;
    }
    offset += block->size;
  }
  ZSTD_freeDCtx(dctx);
  VerifyReport report = Check();
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems, Contains(Cat(files[1].name, " ends inside a block at offset ",
                                            offset, " (tail cut)")));
  // Live or not: only the newest segment may be mid-write.
  EXPECT_FALSE(Check(false, /*live=*/true).ok);
}

TEST_F(VerifyTest, AForgeryWithAnotherKeyHasNoValidCheckpoint) {
  MakeLog(10);
  const Checkpoint genuine = head_;
  // A whole new log, self-consistent, signed with the forger's key.
  fs::remove_all(dir_.path());
  fs::create_directory(dir_.path());
  const std::string forger = *CheckpointKey::GeneratePrivatePem();
  MakeLog(dir_.path(), forger, 10);
  const std::string forger_id = CheckpointKey::FromPrivatePem(forger)->key_id();
  head_ = genuine;
  VerifyReport report = Check(/*with_head=*/true);
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems,
              Contains(Cat("checkpoint at record 1: signature does not verify with key ",
                           key_->key_id(), " (it names key ", forger_id, ")")));
  EXPECT_THAT(report.problems, Contains("log has no valid checkpoint"));
  EXPECT_THAT(report.problems, Contains("head hash mismatch at record 11: the log was rewritten"));
}

TEST_F(VerifyTest, AnEditedCheckpointDoesNotVerify) {
  MakeLog(10);
  std::vector<Segment> log = DecodeLog(dir_.path());
  Record checkpoint = Decoded(At(log, 12));
  ASSERT_EQ(checkpoint.type, RecordType::kCheckpoint);
  Checkpoint c = *CheckpointFromJson(checkpoint.payload);
  c.time_us += 1;
  checkpoint.payload = CheckpointToJson(c);
  At(log, 12) = EncodeRecord(checkpoint);
  EncodeLog(dir_.path(), log);
  VerifyReport report = Check();
  EXPECT_THAT(report.problems,
              ElementsAre(Cat("checkpoint at record 12: signature does not verify with key ",
                              key_->key_id()),
                          "records 2..12 are after the last checkpoint"));
}

TEST_F(VerifyTest, ALogWithoutCheckpointsFails) {
  MakeLog(10);
  std::vector<Segment> log = DecodeLog(dir_.path());
  std::vector<std::string> kept;
  uint64_t seq = 1;
  for (const std::string& encoded : log[0].encoded) {
    Record r = Decoded(encoded);
    if (r.type == RecordType::kCheckpoint) {
      continue;
    }
    r.seq = seq++;
    kept.push_back(EncodeRecord(r));
  }
  log[0].encoded = kept;
  Rechain(log);
  EncodeLog(dir_.path(), log);
  VerifyReport report = Check();
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems, ElementsAre("log has no valid checkpoint"));
}

TEST_F(VerifyTest, RecordsAfterTheLastCheckpointAreAProblemUnlessLive) {
  MakeLog(10);
  std::vector<Segment> log = DecodeLog(dir_.path());
  log.back().encoded.pop_back();  // the closing checkpoint
  EncodeLog(dir_.path(), log);
  VerifyReport stopped = Check();
  EXPECT_THAT(stopped.problems, ElementsAre("records 2..11 are after the last checkpoint"));
  VerifyReport live = Check(false, /*live=*/true);
  EXPECT_TRUE(live.ok) << Joined(live.problems);
  EXPECT_THAT(live.notes, Contains("records 2..11 are after the last checkpoint (not signed yet)"));
}

TEST_F(VerifyTest, ASegmentHeaderThatDoesNotContinueTheChain) {
  MakeLog(20, 512);
  std::vector<Segment> log = DecodeLog(dir_.path());
  ASSERT_GE(log.size(), 3u);
  log[2].header.prev_hash[0] ^= 1;
  EncodeLog(dir_.path(), log);
  VerifyReport report = Check();
  EXPECT_THAT(report.problems, ElementsAre(Cat("segment ", log[2].name,
                                               ": header prev_hash does not continue the chain")));
}

TEST_F(VerifyTest, ACorruptSegmentHeader) {
  MakeLog(5);
  {
    std::fstream f(dir_.path() / internal::SegmentName(1),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x01');
  }
  VerifyReport report = Check();
  EXPECT_THAT(report.problems,
              Contains(Cat(internal::SegmentName(1), " offset 0: header CRC mismatch")));
}

TEST_F(VerifyTest, AMissingPrefixNeedsAPrunedRecord) {
  MakeLog(20, 512);
  auto files = *internal::ListSegments(dir_.path());
  ASSERT_GE(files.size(), 3u);
  fs::remove(files[0].path);
  VerifyReport report = Check();
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems,
              Contains(Cat("log starts at record ", files[1].first_seq,
                           " but no kPruned record accounts for records before it")));
}

TEST_F(VerifyTest, SeveralProblemsAreAllReported) {
  MakeLog(40, 1024);
  std::vector<Segment> log = DecodeLog(dir_.path());
  std::swap(At(log, 9), At(log, 10));
  auto [s, i] = Find(log, 30);
  log[s].encoded.erase(log[s].encoded.begin() + static_cast<ptrdiff_t>(i));
  EncodeLog(dir_.path(), log);
  VerifyReport report = Check();
  EXPECT_THAT(report.problems, Contains("records out of order: 9 after 10"));
  EXPECT_THAT(report.problems, Contains("record 30 missing: 29 is followed by 31"));
}

TEST_F(VerifyTest, NoLogAtAll) {
  VerifyReport report = Check();
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems, Contains(HasSubstr("no segment files")));
  EXPECT_THAT(report.problems, Contains("log has no valid checkpoint"));
  VerifyOptions no_key;
  no_key.dir = dir_.path();
  EXPECT_FALSE(Verify(no_key).ok);
}

// ---- The index against the log (issue 18, item 2) ---------------------------------------

class VerifyIndexTest : public VerifyTest {
 protected:
  // Appends (type, session) records after the opening checkpoint (seq 1); returns their seqs.
  std::vector<uint64_t> Write(const std::vector<std::pair<RecordType, std::string>>& records) {
    LogOptions options;
    options.dir = dir_.path();
    options.checkpoint_interval = std::chrono::hours(1);
    options.on_checkpoint = [this](const Checkpoint& c) {
      head_ = c;
      return absl::OkStatus();
    };
    auto log = LogWriter::Open(options, *CheckpointKey::FromPrivatePem(pem_));
    EXPECT_TRUE(log.ok()) << log.status();
    std::vector<uint64_t> seqs;
    for (const auto& [type, session] : records) {
      auto seq = (*log)->Append(type, session, "{}");
      EXPECT_TRUE(seq.ok()) << seq.status();
      seqs.push_back(*seq);
    }
    EXPECT_TRUE((*log)->Flush().ok());
    return seqs;
  }
  VerifyReport CheckWith(std::vector<IndexedSession> index) {
    VerifyOptions options;
    options.dir = dir_.path();
    options.key = key_.get();
    options.index = std::move(index);
    return Verify(options);
  }
};

TEST_F(VerifyIndexTest, AnIndexThatMatchesTheLogVerifies) {
  auto seqs = Write({{RecordType::kSessionStart, "p01"},
                     {RecordType::kClientFrames, "p01"},
                     {RecordType::kSessionStart, "p02"},
                     {RecordType::kSessionEnd, "p01"},
                     {RecordType::kAuthFailure, "af-1"}});
  VerifyReport report = CheckWith({{"p01", seqs[0], seqs[3]},
                                   {"p02", seqs[2], seqs[2]},  // still open
                                   {"af-1", seqs[4], seqs[4]}});
  EXPECT_TRUE(report.ok) << Joined(report.problems);
}

// The evidence: two runs, both with a session "000001"; the index kept one row.
TEST_F(VerifyIndexTest, AReusedSessionIdIsAProblem) {
  auto seqs = Write({{RecordType::kSessionStart, "000001"},
                     {RecordType::kSessionEnd, "000001"},
                     {RecordType::kSessionStart, "000001"},
                     {RecordType::kSessionEnd, "000001"}});
  VerifyReport report = CheckWith({{"000001", seqs[2], seqs[3]}});
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems,
              Contains(HasSubstr(Cat("session 000001 starts more than once (records ", seqs[0],
                                     ", ", seqs[2], ")"))));
}

TEST_F(VerifyIndexTest, ASessionWithoutItsRowAndRowsThatPointElsewhereAreProblems) {
  auto seqs = Write({{RecordType::kSessionStart, "p01"},
                     {RecordType::kSessionEnd, "p01"},
                     {RecordType::kSessionStart, "p02"},
                     {RecordType::kSessionEnd, "p02"},
                     {RecordType::kSessionStart, "p03"}});
  VerifyReport report = CheckWith({
      {"p02", seqs[2], seqs[1]},  // its last record is p01's
      {"p03", seqs[3], seqs[4]},  // points at p02's end as its start
      {"ghost", seqs[4], seqs[4]},
  });
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems,
              Contains(Cat("record ", seqs[0], ": session p01 has no row in the session index")));
  EXPECT_THAT(report.problems, Contains(HasSubstr(Cat("index row p02: its last record ", seqs[1],
                                                      " is not a record of that session"))));
  EXPECT_THAT(report.problems,
              Contains(HasSubstr(Cat("session p03: the index points at record ", seqs[3]))));
  EXPECT_THAT(report.problems, Contains(HasSubstr("index row ghost: record")));
}

}  // namespace
}  // namespace tracegate::audit
