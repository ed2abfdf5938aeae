#include "audit/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "audit/segment.h"
#include "common/strings.h"

namespace tracegate::audit {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "tg_audit_XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string NewPem() {
  absl::StatusOr<std::string> pem = CheckpointKey::GeneratePrivatePem();
  EXPECT_TRUE(pem.ok());
  return *pem;
}

CheckpointKey FromPem(const std::string& pem) {
  absl::StatusOr<CheckpointKey> key = CheckpointKey::FromPrivatePem(pem);
  EXPECT_TRUE(key.ok()) << key.status();
  return *std::move(key);
}

CheckpointKey NewKey() { return FromPem(NewPem()); }

CheckpointKey PublicHalf(const CheckpointKey& key) {
  absl::StatusOr<CheckpointKey> pub = CheckpointKey::FromPublicPem(key.PublicPem());
  EXPECT_TRUE(pub.ok()) << pub.status();
  return *std::move(pub);
}

LogOptions Options(const fs::path& dir) {
  LogOptions options;
  options.dir = dir;
  options.checkpoint_interval = std::chrono::hours(1);  // only at open and close
  return options;
}

std::unique_ptr<LogWriter> OpenLog(LogOptions options, const std::string& pem) {
  absl::StatusOr<std::unique_ptr<LogWriter>> log =
      LogWriter::Open(std::move(options), FromPem(pem));
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

std::vector<Record> ReadAll(const fs::path& dir, uint64_t from = 0) {
  std::vector<Record> out;
  absl::StatusOr<LogReader> reader = LogReader::Open(dir);
  EXPECT_TRUE(reader.ok()) << reader.status();
  absl::Status s = reader->ForEach(from, [&](const Record& r) {
    out.push_back(r);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

VerifyReport VerifyDir(const fs::path& dir, const std::string& pem, bool live = false) {
  CheckpointKey key = PublicHalf(FromPem(pem));
  VerifyOptions options;
  options.dir = dir;
  options.key = &key;
  options.live = live;
  return Verify(options);
}

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) {
    out += line + "\n";
  }
  return out;
}

std::vector<internal::SegmentFile> Segments(const fs::path& dir) {
  absl::StatusOr<std::vector<internal::SegmentFile>> segments = internal::ListSegments(dir);
  EXPECT_TRUE(segments.ok());
  return *segments;
}

// The offset of every block in a segment file.
std::vector<uint64_t> BlockOffsets(const fs::path& path) {
  auto source = internal::FileSource::Open(path);
  EXPECT_TRUE(source.ok());
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  std::vector<uint64_t> offsets;
  uint64_t offset = internal::kSegmentHeaderSize;
  while (true) {
    auto block = internal::ReadBlock(**source, offset, dctx);
    if (!block.ok() || block->kind != internal::BlockRead::Kind::kBlock) {
      break;
    }
    offsets.push_back(offset);
    offset += block->size;
  }
  ZSTD_freeDCtx(dctx);
  return offsets;
}

void FlipByte(const fs::path& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// ---- Codec ------------------------------------------------------------------------------

TEST(RecordCodec, RoundTripsAndNamesWhatIsWrong) {
  Record r{42, 1'767'225'600'000'000, RecordType::kClientFrames, "sess-1", Hash{}, "Q\0\0\0\x05x"};
  r.prev_hash[0] = 7;
  std::string bytes = EncodeRecord(r);
  EXPECT_EQ(bytes.size(), internal::kRecordOverhead + r.session.size() + r.payload.size());
  size_t consumed = 0;
  absl::StatusOr<Record> back = DecodeRecord(bytes + "trailing", consumed);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(consumed, bytes.size());
  EXPECT_EQ(back->seq, 42u);
  EXPECT_EQ(back->time_us, r.time_us);
  EXPECT_EQ(back->type, RecordType::kClientFrames);
  EXPECT_EQ(back->session, "sess-1");
  EXPECT_EQ(back->prev_hash, r.prev_hash);
  EXPECT_EQ(back->payload, r.payload);

  EXPECT_THAT(Msg(DecodeRecord(bytes.substr(0, 3), consumed).status()), HasSubstr("short"));
  EXPECT_THAT(Msg(DecodeRecord(bytes.substr(0, bytes.size() - 1), consumed).status()),
              HasSubstr("short"));
  std::string bad = bytes;
  bad[bad.size() - 6] ^= 1;  // in the payload
  absl::Status crc = DecodeRecord(bad, consumed).status();
  EXPECT_EQ(crc.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Msg(crc), "record 42: CRC mismatch");
  std::string huge = bytes;
  huge[3] = 0x7f;
  EXPECT_THAT(Msg(DecodeRecord(huge, consumed).status()), HasSubstr("out of bounds"));

  EXPECT_EQ(RecordTypeName(RecordType::kSessionStart), "session_start");
  EXPECT_EQ(RecordTypeName(RecordType::kPruned), "pruned");
  EXPECT_EQ(RecordTypeName(static_cast<RecordType>(77)), "unknown");

  Hash h1 = ChainHash(Hash{}, bytes);
  EXPECT_NE(h1, Hash{});
  EXPECT_EQ(h1, ChainHash(Hash{}, bytes));
  EXPECT_NE(h1, ChainHash(h1, bytes));
}

TEST(CheckpointKeyTest, SignsVerifiesAndRoundTripsJson) {
  CheckpointKey key = NewKey();
  EXPECT_TRUE(key.can_sign());
  EXPECT_EQ(key.key_id().size(), 16u);
  CheckpointKey pub = PublicHalf(key);
  EXPECT_FALSE(pub.can_sign());
  EXPECT_EQ(pub.key_id(), key.key_id());
  EXPECT_FALSE(pub.Sign("x").ok());

  Checkpoint c;
  c.seq = 120;
  c.head[31] = 0xab;
  c.time_us = 1'767'225'600'123'456;
  c.key_id = key.key_id();
  EXPECT_EQ(CheckpointMessage(c).substr(0, 28), "tracegate-checkpoint-v1\n120\n");
  absl::StatusOr<std::string> sig = key.Sign(CheckpointMessage(c));
  ASSERT_TRUE(sig.ok());
  EXPECT_EQ(sig->size(), 64u);
  c.signature = *sig;
  EXPECT_TRUE(pub.Verify(CheckpointMessage(c), c.signature));
  Checkpoint other = c;
  other.seq = 121;
  EXPECT_FALSE(pub.Verify(CheckpointMessage(other), c.signature));
  EXPECT_FALSE(NewKey().Verify(CheckpointMessage(c), c.signature));

  absl::StatusOr<Checkpoint> back = CheckpointFromJson(CheckpointToJson(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->seq, c.seq);
  EXPECT_EQ(back->head, c.head);
  EXPECT_EQ(back->time_us, c.time_us);
  EXPECT_EQ(back->key_id, c.key_id);
  EXPECT_EQ(back->signature, c.signature);

  EXPECT_FALSE(CheckpointFromJson("{").ok());
  EXPECT_FALSE(CheckpointFromJson("[]").ok());
  EXPECT_FALSE(CheckpointFromJson(R"({"seq":-1})").ok());
  EXPECT_FALSE(CheckpointKey::FromPrivatePem("not a key").ok());
  EXPECT_FALSE(CheckpointKey::FromPublicPem(key.PublicPem() + "x").ok() &&
               CheckpointKey::FromPublicPem("junk").ok());
}

// ---- Writer -----------------------------------------------------------------------------

TEST(LogWriterTest, RoundTripsManyRecordsFromManyThreads) {
  TempDir dir;
  const std::string key = NewPem();
  constexpr int kThreads = 6;
  constexpr int kPerThread = 300;
  {
    std::unique_ptr<LogWriter> log = OpenLog(Options(dir.path()), key);
    ASSERT_NE(log, nullptr);
    std::vector<std::thread> threads;
    std::atomic<int> durable_ok{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          absl::StatusOr<uint64_t> seq =
              log->Append(RecordType::kServerFrames, Cat("s", t), Cat("thread ", t, " record ", i));
          ASSERT_TRUE(seq.ok()) << seq.status();
          std::promise<absl::Status> done;
          log->WhenDurable(*seq, [&done](absl::Status s) { done.set_value(std::move(s)); });
          if (done.get_future().get().ok()) {
            ++durable_ok;
          }
        }
      });
    }
    for (std::thread& t : threads) {
      t.join();
    }
    EXPECT_EQ(durable_ok.load(), kThreads * kPerThread);
    EXPECT_TRUE(log->health().ok());
  }
  std::vector<Record> records = ReadAll(dir.path());
  std::set<std::string> seen;
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].seq, i + 1);
    if (records[i].type == RecordType::kServerFrames) {
      EXPECT_TRUE(seen.insert(records[i].session + "/" + records[i].payload).second);
      EXPECT_THAT(records[i].payload, HasSubstr(Cat("thread ", records[i].session.substr(1))));
    }
  }
  EXPECT_EQ(seen.size(), size_t{kThreads * kPerThread});
  EXPECT_EQ(records.front().type, RecordType::kCheckpoint);
  EXPECT_EQ(records.back().type, RecordType::kCheckpoint);
  VerifyReport report = VerifyDir(dir.path(), key);
  EXPECT_TRUE(report.ok) << Joined(report.problems);
  EXPECT_EQ(report.records, records.size());
  EXPECT_EQ(report.last_checkpoint_seq, records.back().seq);
}

TEST(LogWriterTest, WhenDurableRunsInSeqOrderAndInlineWhenAlreadyDurable) {
  TempDir dir;
  const std::string key = NewPem();
  std::unique_ptr<LogWriter> log = OpenLog(Options(dir.path()), key);
  ASSERT_NE(log, nullptr);
  std::mutex mu;
  std::vector<uint64_t> order;
  uint64_t last = 0;
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<uint64_t> seq = log->Append(RecordType::kClientFrames, "s", Cat(i));
    ASSERT_TRUE(seq.ok());
    last = *seq;
    log->WhenDurable(*seq, [&mu, &order, seq = *seq](absl::Status s) {
      EXPECT_TRUE(s.ok()) << s;
      std::lock_guard lock(mu);
      order.push_back(seq);
    });
  }
  ASSERT_TRUE(log->Flush().ok());
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(order.size(), 200u);
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
    EXPECT_EQ(order.back(), last);
  }
  bool ran = false;
  log->WhenDurable(last, [&ran](absl::Status s) {
    EXPECT_TRUE(s.ok());
    ran = true;
  });
  EXPECT_TRUE(ran);  // inline: already durable
}

// Holds the writer inside its first fdatasync until released.
struct SyncGate {
  static std::mutex mu;
  static std::condition_variable cv;
  static bool entered;
  static bool open;
  static int Sync(int fd) {
    {
      std::unique_lock lock(mu);
      entered = true;
      cv.notify_all();
      cv.wait(lock, [] { return open; });
    }
    return ::fdatasync(fd);
  }
};
std::mutex SyncGate::mu;
std::condition_variable SyncGate::cv;
bool SyncGate::entered = false;
bool SyncGate::open = false;

TEST(LogWriterTest, AppendsDuringASyncFormTheNextBatch) {
  TempDir dir;
  const std::string key = NewPem();
  std::unique_ptr<LogWriter> log = OpenLog(Options(dir.path()), key);
  ASSERT_NE(log, nullptr);
  const LogWriter::Stats before = log->stats();
  SyncGate::entered = false;
  SyncGate::open = false;
  internal::SetIoForTest(nullptr, &SyncGate::Sync);
  ASSERT_TRUE(log->Append(RecordType::kSessionStart, "s0", "{}").ok());
  {
    std::unique_lock lock(SyncGate::mu);
    SyncGate::cv.wait(lock, [] { return SyncGate::entered; });
  }
  // The writer is inside the first batch's sync: everything appended now queues.
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  std::vector<std::promise<void>> all_done(kThreads * kPerThread);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::StatusOr<uint64_t> seq = log->Append(RecordType::kClientFrames, "s", "frame");
        ASSERT_TRUE(seq.ok());
        log->WhenDurable(*seq, [&, slot = t * kPerThread + i](absl::Status s) {
          if (s.ok()) {
            ++ok;
          }
          all_done[slot].set_value();
        });
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  {
    std::lock_guard lock(SyncGate::mu);
    SyncGate::open = true;
  }
  SyncGate::cv.notify_all();
  for (auto& done : all_done) {
    done.get_future().wait();
  }
  internal::SetIoForTest(nullptr, nullptr);
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  const LogWriter::Stats after = log->stats();
  const uint64_t records = after.records - before.records;
  const uint64_t syncs = after.syncs - before.syncs;
  EXPECT_EQ(records, uint64_t{kThreads * kPerThread + 1});
  EXPECT_LT(syncs, records);
  EXPECT_LE(syncs, 2u);  // the gated batch, then everything that queued behind it
}

TEST(LogWriterTest, ABigBatchIsSplitIntoBlocksWithOneSync) {
  TempDir dir;
  const std::string key = NewPem();
  std::unique_ptr<LogWriter> log = OpenLog(Options(dir.path()), key);
  ASSERT_NE(log, nullptr);
  SyncGate::entered = false;
  SyncGate::open = false;
  internal::SetIoForTest(nullptr, &SyncGate::Sync);
  ASSERT_TRUE(log->Append(RecordType::kSessionStart, "s", "{}").ok());
  {
    std::unique_lock lock(SyncGate::mu);
    SyncGate::cv.wait(lock, [] { return SyncGate::entered; });
  }
  const LogWriter::Stats before = log->stats();
  std::mt19937 random(7);
  std::vector<std::string> payloads;
  for (int i = 0; i < 6; ++i) {
    std::string payload(1u << 20, '\0');  // incompressible
    for (char& c : payload) {
      c = static_cast<char>(random());
    }
    ASSERT_TRUE(log->Append(RecordType::kServerFrames, "s", payload).ok());
    payloads.push_back(std::move(payload));
  }
  {
    std::lock_guard lock(SyncGate::mu);
    SyncGate::open = true;
  }
  SyncGate::cv.notify_all();
  ASSERT_TRUE(log->Flush().ok());
  internal::SetIoForTest(nullptr, nullptr);
  const LogWriter::Stats after = log->stats();
  // The gated batch (1 record, 1 block) and the 6 MiB one behind it, in 4 MiB blocks.
  EXPECT_EQ(after.records - before.records, 7u);
  EXPECT_EQ(after.blocks - before.blocks, 3u);
  EXPECT_EQ(after.syncs - before.syncs, 2u);
  log.reset();
  std::vector<Record> records = ReadAll(dir.path());
  std::vector<std::string> read;
  for (const Record& r : records) {
    if (r.type == RecordType::kServerFrames) {
      read.push_back(r.payload);
    }
  }
  EXPECT_TRUE(read == payloads);
  EXPECT_TRUE(VerifyDir(dir.path(), key).ok);
}

TEST(LogWriterTest, BatchedModeMakesRecordsDurableWithoutWaiters) {
  TempDir dir;
  const std::string key = NewPem();
  LogOptions options = Options(dir.path());
  options.durability = Durability::kBatched;
  options.flush_interval = std::chrono::milliseconds(5);
  std::unique_ptr<LogWriter> log = OpenLog(options, key);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->durability(), Durability::kBatched);
  uint64_t last = 0;
  for (int i = 0; i < 500; ++i) {
    absl::StatusOr<uint64_t> seq = log->Append(RecordType::kServerFrames, "s", Cat("row ", i));
    ASSERT_TRUE(seq.ok());
    last = *seq;
  }
  // Nobody asks for a flush: the interval makes the records durable.
  std::promise<absl::Status> done;
  log->WhenDurable(last, [&done](absl::Status s) { done.set_value(std::move(s)); });
  EXPECT_TRUE(done.get_future().get().ok());
  EXPECT_LT(log->stats().syncs, 500u);
  log.reset();
  EXPECT_TRUE(VerifyDir(dir.path(), key).ok);
}

TEST(LogWriterTest, RotatesSegmentsAndChainsThem) {
  TempDir dir;
  const std::string key = NewPem();
  LogOptions options = Options(dir.path());
  options.segment_bytes = 2048;
  {
    std::unique_ptr<LogWriter> log = OpenLog(options, key);
    ASSERT_NE(log, nullptr);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937 random(static_cast<uint32_t>(t));
        for (int i = 0; i < 100; ++i) {
          std::string payload(200, '\0');  // incompressible, so that segments fill
          for (char& c : payload) {
            c = static_cast<char>(random());
          }
          absl::StatusOr<uint64_t> seq = log->Append(RecordType::kServerFrames, "s", payload);
          ASSERT_TRUE(seq.ok());
          std::promise<absl::Status> done;  // like a session: small batches, many blocks
          log->WhenDurable(*seq, [&done](absl::Status s) { done.set_value(std::move(s)); });
          ASSERT_TRUE(done.get_future().get().ok());
        }
      });
    }
    for (std::thread& t : threads) {
      t.join();
    }
    ASSERT_TRUE(log->Flush().ok());
  }
  std::vector<internal::SegmentFile> segments = Segments(dir.path());
  EXPECT_GT(segments.size(), 3u);
  struct stat st {};
  ASSERT_EQ(::stat(segments.back().path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(dir.path().c_str(), &st), 0);
  std::vector<Record> records = ReadAll(dir.path());
  ASSERT_EQ(records.size(), 402u);
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(records[i].seq, i + 1);
  }
  // Reading from the middle starts in the right segment.
  std::vector<Record> tail = ReadAll(dir.path(), segments[2].first_seq + 1);
  ASSERT_FALSE(tail.empty());
  EXPECT_EQ(tail.front().seq, segments[2].first_seq + 1);
  EXPECT_EQ(tail.back().seq, 402u);
  VerifyReport report = VerifyDir(dir.path(), key);
  EXPECT_TRUE(report.ok) << Joined(report.problems);
  EXPECT_EQ(report.segments, segments.size());
}

TEST(LogWriterTest, CreatesThePrivateDirectory) {
  TempDir dir;
  const std::string key = NewPem();
  fs::path nested = dir.path() / "a" / "audit";
  std::unique_ptr<LogWriter> log = OpenLog(Options(nested), key);
  ASSERT_NE(log, nullptr);
  struct stat st {};
  ASSERT_EQ(::stat(nested.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // A second writer on the same directory is refused.
  absl::StatusOr<std::unique_ptr<LogWriter>> second = LogWriter::Open(Options(nested), NewKey());
  EXPECT_FALSE(second.ok());
  EXPECT_THAT(Msg(second.status()), HasSubstr("in use by another writer"));
}

TEST(LogWriterTest, ReopenContinuesTheChain) {
  TempDir dir;
  const std::string key = NewPem();
  std::vector<Checkpoint> kept;
  LogOptions options = Options(dir.path());
  options.on_checkpoint = [&kept](const Checkpoint& c) {
    kept.push_back(c);
    return absl::OkStatus();
  };
  uint64_t expect_next = 0;
  for (int round = 0; round < 3; ++round) {
    std::unique_ptr<LogWriter> log = OpenLog(options, key);
    ASSERT_NE(log, nullptr);
    for (int i = 0; i < 10; ++i) {
      absl::StatusOr<uint64_t> seq = log->Append(RecordType::kGrantEvent, "", Cat("{}"));
      ASSERT_TRUE(seq.ok());
      if (i == 0 && round > 0) {
        EXPECT_EQ(*seq, expect_next + 1);  // after the opening checkpoint
      }
      expect_next = *seq + 2;  // this record, then the closing checkpoint
    }
  }
  std::vector<Record> records = ReadAll(dir.path());
  ASSERT_EQ(records.size(), 3u * 12u);
  ASSERT_FALSE(kept.empty());
  EXPECT_EQ(kept.back().seq + 1, records.back().seq);
  VerifyOptions verify;
  CheckpointKey verify_key = FromPem(key);
  verify.dir = dir.path();
  verify.key = &verify_key;
  verify.expected_head = kept.back();
  VerifyReport report = Verify(verify);
  EXPECT_TRUE(report.ok) << Joined(report.problems);
  EXPECT_EQ(report.checkpoints, 6u);
}

TEST(LogWriterTest, PeriodicCheckpointsAreSignedAndHandedOver) {
  TempDir dir;
  const std::string key = NewPem();
  std::mutex mu;
  std::vector<Checkpoint> kept;
  LogOptions options = Options(dir.path());
  options.checkpoint_interval = std::chrono::milliseconds(0);  // after every batch
  options.on_checkpoint = [&](const Checkpoint& c) {
    std::lock_guard lock(mu);
    kept.push_back(c);
    return absl::OkStatus();
  };
  std::unique_ptr<LogWriter> log = OpenLog(options, key);
  ASSERT_NE(log, nullptr);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(log->Append(RecordType::kClientFrames, "s", "x").ok());
    ASSERT_TRUE(log->Flush().ok());
  }
  log.reset();
  std::lock_guard lock(mu);
  EXPECT_GE(kept.size(), 6u);
  VerifyOptions verify;
  CheckpointKey verify_key = FromPem(key);
  verify.dir = dir.path();
  verify.key = &verify_key;
  verify.expected_head = kept.back();
  VerifyReport report = Verify(verify);
  EXPECT_TRUE(report.ok) << Joined(report.problems);
  EXPECT_EQ(report.checkpoints, kept.size());
}

TEST(LogWriterTest, AFailingCheckpointSinkBreaksTheWriter) {
  TempDir dir;
  const std::string key = NewPem();
  LogOptions options = Options(dir.path());
  options.checkpoint_interval = std::chrono::milliseconds(0);  // one per batch
  std::atomic<int> calls{0};
  options.on_checkpoint = [&calls](const Checkpoint&) {
    return ++calls == 1 ? absl::OkStatus() : absl::UnavailableError("state store down");
  };
  std::unique_ptr<LogWriter> log = OpenLog(options, key);
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Append(RecordType::kClientFrames, "s", "x").ok());
  EXPECT_TRUE(log->Flush().ok());  // the record is durable; its checkpoint is not kept
  // The writer hands the checkpoint over before it takes the next batch, so by the time
  // anything after it could be durable, the writer is broken.
  absl::StatusOr<uint64_t> next = log->Append(RecordType::kClientFrames, "s", "y");
  absl::Status flushed = log->Flush();
  EXPECT_TRUE(!next.ok() || !flushed.ok());
  EXPECT_EQ(Msg(log->health()),
            "audit log: keeping the checkpoint of record 2 failed: state store down");
  log.reset();
  EXPECT_EQ(calls.load(), 2);

  // At open, the opening checkpoint must be kept or the log does not open.
  options.on_checkpoint = [](const Checkpoint&) {
    return absl::UnavailableError("state store down");
  };
  absl::StatusOr<std::unique_ptr<LogWriter>> refused = LogWriter::Open(options, FromPem(key));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Msg(refused.status()), HasSubstr("failed: state store down"));
}

// ---- Recovery ---------------------------------------------------------------------------

// Writes a small log (several blocks) and returns the newest segment's path.
fs::path WriteSmallLog(const fs::path& dir, const std::string& key) {
  std::unique_ptr<LogWriter> log = OpenLog(Options(dir), key);
  EXPECT_NE(log, nullptr);
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(log->Append(RecordType::kServerFrames, "s", Cat("payload ", i)).ok());
    if (i % 5 == 4) {
      EXPECT_TRUE(log->Flush().ok());
    }
  }
  log.reset();
  return Segments(dir).back().path;
}

Record LastOfType(const std::vector<Record>& records, RecordType type) {
  for (auto it = records.rbegin(); it != records.rend(); ++it) {
    if (it->type == type) {
      return *it;
    }
  }
  ADD_FAILURE() << "no " << RecordTypeName(type) << " record";
  return {};
}

TEST(RecoveryTest, CutsATornTailAndSaysSo) {
  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant);
    TempDir dir;
    const std::string key = NewPem();
    fs::path newest = WriteSmallLog(dir.path(), key);
    const uint64_t size = fs::file_size(newest);
    const uint64_t last_block = BlockOffsets(newest).back();
    uint64_t torn = 0;
    if (variant == 0) {  // the last block's write stopped short
      fs::resize_file(newest, size - 3);
      torn = size - 3 - last_block;
    } else if (variant == 1) {  // full length, but not all of it reached the disk
      FlipByte(newest, size - 1);
      torn = size - last_block;
    } else {  // the file grew, the data never came
      fs::resize_file(newest, size + 4096);
      torn = 4096;
    }
    const uint64_t records_before = ReadAll(dir.path()).size();
    {
      std::unique_ptr<LogWriter> log = OpenLog(Options(dir.path()), key);
      ASSERT_NE(log, nullptr);
    }
    std::vector<Record> records = ReadAll(dir.path());
    Record recovery = LastOfType(records, RecordType::kRecovery);
    EXPECT_EQ(recovery.payload,
              Cat(R"({"segment":")", newest.filename().string(), R"(","torn_bytes":)", torn, "}"));
    // The reader stopped before the torn block already; the reopen added recovery and
    // checkpoint records.
    EXPECT_EQ(records.size(), records_before + 2);
    VerifyReport report = VerifyDir(dir.path(), key);
    EXPECT_TRUE(report.ok) << Joined(report.problems);
    EXPECT_THAT(report.notes, Contains(HasSubstr("startup recovery")));
  }
}

TEST(RecoveryTest, FixesASegmentWhoseHeaderWasNotWritten) {
  TempDir dir;
  const std::string key = NewPem();
  WriteSmallLog(dir.path(), key);
  const uint64_t next = ReadAll(dir.path()).back().seq + 1;
  const fs::path partial = dir.path() / internal::SegmentName(next);
  {
    std::ofstream f(partial, std::ios::binary);
    f << "TGLOG";  // the crash came during rotation
  }
  {
    std::unique_ptr<LogWriter> log = OpenLog(Options(dir.path()), key);
    ASSERT_NE(log, nullptr);
    ASSERT_TRUE(log->Append(RecordType::kClientFrames, "s", "after").ok());
  }
  std::vector<Record> records = ReadAll(dir.path());
  EXPECT_EQ(LastOfType(records, RecordType::kRecovery).seq, next);
  EXPECT_THAT(LastOfType(records, RecordType::kRecovery).payload, HasSubstr("\"torn_bytes\":5"));
  VerifyReport report = VerifyDir(dir.path(), key);
  EXPECT_TRUE(report.ok) << Joined(report.problems);
  EXPECT_EQ(report.segments, 2u);
}

TEST(RecoveryTest, RefusesCorruptionThatIsNotATornTail) {
  TempDir dir;
  const std::string key = NewPem();
  fs::path newest = WriteSmallLog(dir.path(), key);
  std::vector<uint64_t> blocks = BlockOffsets(newest);
  ASSERT_GE(blocks.size(), 3u);
  FlipByte(newest, blocks[1] + internal::kBlockHeaderSize + 2);
  absl::StatusOr<std::unique_ptr<LogWriter>> log = LogWriter::Open(Options(dir.path()), NewKey());
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Msg(log.status()), Cat("audit log: ", newest.filename().string(), " offset ", blocks[1],
                                   ": block CRC mismatch"));
}

TEST(RecoveryTest, RefusesASegmentThatIsASymlink) {
  TempDir dir;
  const fs::path segment = dir.path() / internal::SegmentName(1);
  fs::create_symlink("/dev/full", segment);
  absl::StatusOr<std::unique_ptr<LogWriter>> log = LogWriter::Open(Options(dir.path()), NewKey());
  ASSERT_FALSE(log.ok());
  EXPECT_THAT(Msg(log.status()),
              AllOf(HasSubstr(segment.string()), HasSubstr("Too many levels of symbolic links")));
}

// ---- Failures ---------------------------------------------------------------------------

ssize_t NoSpace(int, const void*, size_t) {
  errno = ENOSPC;
  return -1;
}
ssize_t ShortThenInterrupted(int fd, const void* data, size_t size) {
  static std::atomic<int> calls{0};
  if (calls++ % 2 == 0) {
    errno = EINTR;
    return -1;
  }
  return ::write(fd, data, std::min<size_t>(size, 7));  // short writes
}
int SyncFails(int) {
  errno = EIO;
  return -1;
}

TEST(FailureTest, AWriteErrorBreaksTheWriterForGood) {
  TempDir dir;
  const std::string key = NewPem();
  std::unique_ptr<LogWriter> log = OpenLog(Options(dir.path()), key);
  ASSERT_NE(log, nullptr);
  internal::SetIoForTest(&NoSpace, nullptr);
  absl::StatusOr<uint64_t> seq = log->Append(RecordType::kClientFrames, "s", "x");
  ASSERT_TRUE(seq.ok());
  std::promise<absl::Status> done;
  log->WhenDurable(*seq, [&done](absl::Status s) { done.set_value(std::move(s)); });
  absl::Status status = done.get_future().get();
  internal::SetIoForTest(nullptr, nullptr);
  const std::string expected =
      Cat("audit log: write to ", Segments(dir.path()).back().path.string(),
          " failed: No space left on device");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Msg(status), expected);
  EXPECT_EQ(Msg(log->health()), expected);
  absl::StatusOr<uint64_t> after = log->Append(RecordType::kClientFrames, "s", "y");
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Msg(after.status()), expected);
  EXPECT_EQ(Msg(log->Flush()), expected);
  bool ran = false;
  log->WhenDurable(*seq + 5, [&](absl::Status s) {
    EXPECT_EQ(Msg(s), expected);
    ran = true;
  });
  EXPECT_TRUE(ran);
  log.reset();  // no final checkpoint, no hang
  // What is on disk is still a good log (nothing was written).
  EXPECT_TRUE(VerifyDir(dir.path(), key).ok);
}

TEST(FailureTest, ASyncErrorBreaksTheWriter) {
  TempDir dir;
  const std::string key = NewPem();
  std::unique_ptr<LogWriter> log = OpenLog(Options(dir.path()), key);
  ASSERT_NE(log, nullptr);
  internal::SetIoForTest(nullptr, &SyncFails);
  ASSERT_TRUE(log->Append(RecordType::kClientFrames, "s", "x").ok());
  absl::Status status = log->Flush();
  internal::SetIoForTest(nullptr, nullptr);
  EXPECT_THAT(Msg(status),
              AllOf(HasSubstr("audit log: sync of "), HasSubstr("failed: Input/output error")));
  EXPECT_FALSE(log->health().ok());
}

TEST(FailureTest, ShortWritesAndEintrAreRetried) {
  TempDir dir;
  const std::string key = NewPem();
  {
    std::unique_ptr<LogWriter> log = OpenLog(Options(dir.path()), key);
    ASSERT_NE(log, nullptr);
    internal::SetIoForTest(&ShortThenInterrupted, nullptr);
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(log->Append(RecordType::kClientFrames, "s", Cat("frame ", i)).ok());
    }
    EXPECT_TRUE(log->Flush().ok());
    log.reset();
    internal::SetIoForTest(nullptr, nullptr);
  }
  EXPECT_EQ(ReadAll(dir.path()).size(), 22u);  // checkpoint, 20 records, checkpoint
  EXPECT_TRUE(VerifyDir(dir.path(), key).ok);
}

TEST(FailureTest, RefusesWhatItCannotRecord) {
  TempDir dir;
  const std::string key = NewPem();
  std::unique_ptr<LogWriter> log = OpenLog(Options(dir.path()), key);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->Append(RecordType::kCheckpoint, "", "{}").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log->Append(RecordType::kClientFrames, std::string(256, 's'), "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log->Append(RecordType::kServerFrames, "s", std::string(internal::kMaxRecordSize, 'x'))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(log->health().ok());
  absl::StatusOr<std::unique_ptr<LogWriter>> unsigned_log =
      LogWriter::Open(Options(dir.path() / "other"), PublicHalf(FromPem(key)));
  EXPECT_EQ(unsigned_log.status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- Retention --------------------------------------------------------------------------

TEST(PruneTest, DeletesOldSegmentsAndVerifyStillPasses) {
  TempDir dir;
  const std::string key = NewPem();
  const auto t0 = std::chrono::system_clock::time_point(std::chrono::hours(500'000));
  auto now = std::make_shared<std::atomic<int64_t>>(0);
  LogOptions options = Options(dir.path());
  options.segment_bytes = 512;
  options.clock = [t0, now] { return t0 + std::chrono::hours(now->load()); };
  std::vector<Checkpoint> kept;
  options.on_checkpoint = [&kept](const Checkpoint& c) {
    kept.push_back(c);
    return absl::OkStatus();
  };
  {
    std::unique_ptr<LogWriter> log = OpenLog(options, key);
    ASSERT_NE(log, nullptr);
    for (int i = 0; i < 40; ++i) {
      if (i == 20) {
        now->store(48);  // two days later
      }
      ASSERT_TRUE(log->Append(RecordType::kServerFrames, "s",
                              Cat(i, " ", std::hash<int>{}(i), std::hash<int>{}(i + 99)))
                      .ok());
      ASSERT_TRUE(log->Flush().ok());  // one block each
    }
    const size_t segments_before = Segments(dir.path()).size();
    ASSERT_GT(segments_before, 6u);
    now->store(50);
    absl::StatusOr<size_t> gone = log->Prune(t0 + std::chrono::hours(24));
    ASSERT_TRUE(gone.ok()) << gone.status();
    EXPECT_GT(*gone, 0u);
    std::vector<internal::SegmentFile> left = Segments(dir.path());
    EXPECT_EQ(left.size(), segments_before - *gone);
    // Everything left that holds old records is the segment where the new ones start.
    EXPECT_GT(left.front().first_seq, 2u);
    // Pruning everything keeps the segment being written (and the kPruned record may have
    // rotated to a new one).
    const uint64_t active = Segments(dir.path()).back().first_seq;
    absl::StatusOr<size_t> all = log->Prune(t0 + std::chrono::hours(1000));
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(Segments(dir.path()).front().first_seq, active);
    EXPECT_LE(Segments(dir.path()).size(), 2u);
  }
  std::vector<Record> records = ReadAll(dir.path());
  Record pruned = LastOfType(records, RecordType::kPruned);
  EXPECT_THAT(pruned.payload, HasSubstr("\"last_hash\":\""));
  VerifyOptions verify;
  CheckpointKey verify_key = FromPem(key);
  verify.dir = dir.path();
  verify.key = &verify_key;
  verify.expected_head = kept.back();
  VerifyReport report = Verify(verify);
  EXPECT_TRUE(report.ok) << Joined(report.problems);
  EXPECT_THAT(report.notes,
              Contains(HasSubstr(Cat("records 1..", report.first_seq - 1, " were pruned"))));
  // And the log still opens and goes on.
  {
    std::unique_ptr<LogWriter> log = OpenLog(options, key);
    ASSERT_NE(log, nullptr);
  }
  EXPECT_TRUE(VerifyDir(dir.path(), key).ok);
}

// ---- Reader -----------------------------------------------------------------------------

TEST(LogReaderTest, StopsBeforeABlockBeingWrittenAndReportsRealCorruption) {
  TempDir dir;
  const std::string key = NewPem();
  fs::path newest = WriteSmallLog(dir.path(), key);
  const size_t records = ReadAll(dir.path()).size();
  {
    std::ofstream f(newest, std::ios::binary | std::ios::app);
    f << "TGB1" << std::string(10, '\x01');  // a block whose write is under way
  }
  EXPECT_EQ(ReadAll(dir.path()).size(), records);
  VerifyReport live = VerifyDir(dir.path(), key, /*live=*/true);
  EXPECT_TRUE(live.ok) << Joined(live.problems);
  VerifyReport stopped = VerifyDir(dir.path(), key);
  EXPECT_FALSE(stopped.ok);
  EXPECT_THAT(stopped.problems,
              Contains(Cat(newest.filename().string(), " ends inside a block at offset ",
                           fs::file_size(newest) - 14, " (tail cut)")));

  std::vector<uint64_t> blocks = BlockOffsets(newest);
  FlipByte(newest, blocks[0] + internal::kBlockHeaderSize + 1);
  absl::StatusOr<LogReader> reader = LogReader::Open(dir.path());
  ASSERT_TRUE(reader.ok());
  absl::Status s = reader->ForEach(0, [](const Record&) { return true; });
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Msg(s), Cat("audit log: ", newest.filename().string(), " offset ", blocks[0],
                        ": block CRC mismatch"));
  EXPECT_FALSE(LogReader::Open(dir.path() / "missing").ok());
}

// ---- Fuzz seeds --------------------------------------------------------------------------

std::string ReadBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A segment rebuilt from `raw` records in one block (for seeds whose blocks are good but
// whose records are not).
std::string OneBlockSegment(const std::string& header, uint64_t first_seq, uint32_t count,
                            const std::string& raw) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  absl::StatusOr<std::string> block = internal::EncodeBlock(cctx, 1, first_seq, count, raw);
  ZSTD_freeCCtx(cctx);
  EXPECT_TRUE(block.ok());
  return header + *block;
}

// Builds the seed corpus of segment_fuzz (valid segments of each kind of log, and broken
// ones) and checks each decodes as its name says: valid_* read through, torn_* only as a
// newest segment at startup, bad_* not at all. With TG_SEGMENT_CORPUS_DIR set (to
// src/audit/segment_corpus) it also writes them there.
TEST(SegmentCorpus, SeedsDecodeAsNamed) {
  TempDir dir;
  const std::string key = NewPem();
  std::map<std::string, std::string> seeds;

  {  // a fresh log: the opening checkpoint only
    TempDir log_dir;
    { std::unique_ptr<LogWriter> log = OpenLog(Options(log_dir.path()), key); }
    seeds["valid_fresh"] = ReadBytes(Segments(log_dir.path()).front().path);
  }
  TempDir session_dir;
  {  // one session's records over several blocks
    std::unique_ptr<LogWriter> log = OpenLog(Options(session_dir.path()), key);
    ASSERT_NE(log, nullptr);
    ASSERT_TRUE(log->Append(RecordType::kSessionStart, "sess-1", R"({"user":"ana"})").ok());
    ASSERT_TRUE(log->Append(RecordType::kGrantEvent, "sess-1", R"({"to":"in_use"})").ok());
    ASSERT_TRUE(log->Flush().ok());
    ASSERT_TRUE(
        log->Append(RecordType::kClientFrames, "sess-1", std::string("Q\0\0\0\x0dselect 1\0", 14))
            .ok());
    ASSERT_TRUE(log->Append(RecordType::kServerFrames, "sess-1", std::string(300, 'D')).ok());
    ASSERT_TRUE(log->Flush().ok());
    ASSERT_TRUE(log->Append(RecordType::kTruncated, "sess-1", R"({"limit_bytes":10})").ok());
    ASSERT_TRUE(log->Append(RecordType::kSessionEnd, "sess-1", R"({"outcome":"completed"})").ok());
  }
  const fs::path session_file = Segments(session_dir.path()).front().path;
  const std::string session = ReadBytes(session_file);
  seeds["valid_session"] = session;
  {  // a later segment of a rotated, pruned log (kPruned record, non-zero prev_hash)
    TempDir log_dir;
    const auto t0 = std::chrono::system_clock::time_point(std::chrono::hours(500'000));
    auto hours = std::make_shared<std::atomic<int>>(0);
    LogOptions options = Options(log_dir.path());
    options.segment_bytes = 256;
    options.clock = [t0, hours] { return t0 + std::chrono::hours(hours->load()); };
    std::unique_ptr<LogWriter> log = OpenLog(options, key);
    ASSERT_NE(log, nullptr);
    for (int i = 0; i < 8; ++i) {
      ASSERT_TRUE(log->Append(RecordType::kServerFrames, "s", Cat("row ", i)).ok());
      ASSERT_TRUE(log->Flush().ok());
    }
    hours->store(100);
    absl::StatusOr<size_t> pruned = log->Prune(t0 + std::chrono::hours(50));
    ASSERT_TRUE(pruned.ok()) << pruned.status();
    ASSERT_GT(*pruned, 0u);
    log.reset();
    seeds["valid_pruned"] = ReadBytes(Segments(log_dir.path()).back().path);
  }
  {  // after startup cut a torn tail (kRecovery)
    TempDir log_dir;
    fs::path newest = WriteSmallLog(log_dir.path(), key);
    fs::resize_file(newest, fs::file_size(newest) - 2);
    { std::unique_ptr<LogWriter> log = OpenLog(Options(log_dir.path()), key); }
    seeds["valid_recovered"] = ReadBytes(Segments(log_dir.path()).back().path);
  }

  const std::vector<uint64_t> blocks = BlockOffsets(session_file);
  ASSERT_GE(blocks.size(), 3u);
  seeds["torn_short_block"] = session.substr(0, session.size() - 3);
  seeds["torn_block_header"] = session.substr(0, blocks.back() + 10);
  seeds["torn_zero_tail"] = session + std::string(256, '\0');
  std::string last_crc = session;
  last_crc[last_crc.size() - 1] ^= 0x40;
  seeds["torn_last_block_crc"] = last_crc;

  std::string block_crc = session;
  block_crc[blocks[1] + internal::kBlockHeaderSize + 2] ^= 0x01;
  seeds["bad_block_crc"] = block_crc;
  std::string header_crc = session;
  header_crc[12] ^= 0x01;
  seeds["bad_header_crc"] = header_crc;
  seeds["bad_short_header"] = session.substr(0, 30);
  std::string bad_length = session;
  bad_length[blocks[0] + 7] = '\x7f';  // compressed_len far out of bounds
  seeds["bad_block_length"] = bad_length;
  {
    // Good blocks around bad records: a record CRC, and a seq gap.
    std::vector<Record> records = ReadAll(session_dir.path());
    const std::string header = session.substr(0, internal::kSegmentHeaderSize);
    std::string raw;
    Hash head{};
    for (const Record& r : records) {
      Record copy = r;
      copy.prev_hash = head;
      std::string encoded = EncodeRecord(copy);
      head = ChainHash(head, encoded);
      raw += encoded;
    }
    std::string bad_crc = raw;
    bad_crc[internal::kRecordOverhead + 20] ^= 0x01;
    seeds["bad_record_crc"] =
        OneBlockSegment(header, 1, static_cast<uint32_t>(records.size()), bad_crc);
    std::string gap = raw.substr(0, EncodeRecord(records[0]).size());
    Record third = records[2];
    gap += EncodeRecord(third);
    seeds["bad_seq_gap"] = OneBlockSegment(header, 1, 2, gap);
    seeds["valid_one_block"] =
        OneBlockSegment(header, 1, static_cast<uint32_t>(records.size()), raw);
  }

  size_t total = 0;
  for (const auto& [name, bytes] : seeds) {
    SCOPED_TRACE(name);
    total += bytes.size();
    internal::MemorySource source(bytes);
    absl::StatusOr<internal::ScanEnd> newest = internal::ScanSegment(
        source,
        internal::SegmentName(name == "valid_pruned" || name == "valid_recovered"
                                  ? internal::DecodeSegmentHeader(bytes)->first_seq
                                  : 1),
        true, {});
    absl::StatusOr<internal::ScanEnd> closed = internal::ScanSegment(
        source, internal::SegmentName(newest.ok() ? newest->header.first_seq : 1), false, {});
    if (name.starts_with("valid_")) {
      EXPECT_TRUE(closed.ok()) << closed.status();
      EXPECT_GT(closed->records, 0u);
    } else if (name.starts_with("torn_")) {
      ASSERT_TRUE(newest.ok()) << newest.status();
      EXPECT_TRUE(newest->torn);
      EXPECT_FALSE(closed.ok());
    } else {
      EXPECT_FALSE(newest.ok());
    }
  }
  EXPECT_LT(total, 100u << 10);
  if (const char* out = std::getenv("TG_SEGMENT_CORPUS_DIR"); out != nullptr) {
    fs::create_directories(out);
    for (const auto& [name, bytes] : seeds) {
      std::ofstream(fs::path(out) / (name + ".tglog"), std::ios::binary) << bytes;
    }
  }
}

}  // namespace
}  // namespace tracegate::audit
