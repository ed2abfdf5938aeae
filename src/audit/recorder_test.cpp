// The recorder's own rules (issue 18): an index row is never replaced by another session,
// frames the gate did not forward are summarised within a budget of their own, and a run of
// frames longer than one record is split between frames.
#include "audit/recorder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "store/sqlite_store.h"

namespace tracegate::audit {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class RecorderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "tg_recorder_XXXXXX").string();
    dir_ = ::mkdtemp(pattern.data());
    auto store = store::SqliteStore::Open((dir_ / "state.db").string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    config::Audit config;
    config.dir = (dir_ / "audit").string();
    config.durability = config::AuditDurability::kBatched;
    config.max_session_bytes = 1u << 20;
    auto recorder = Recorder::Open(config, *store_);
    ASSERT_TRUE(recorder.ok()) << recorder.status();
    recorder_ = *std::move(recorder);
  }
  void TearDown() override {
    recorder_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  std::vector<Record> RecordsOf(const std::string& session, const char* log = "audit") {
    EXPECT_TRUE(recorder_->log().Flush().ok());
    auto reader = LogReader::Open(dir_ / log);
    EXPECT_TRUE(reader.ok()) << reader.status();
    std::vector<Record> out;
    EXPECT_TRUE(reader
                    ->ForEach(0,
                              [&](const Record& r) {
                                if (r.session == session) {
                                  out.push_back(r);
                                }
                                return true;
                              })
                    .ok());
    return out;
  }

  static SessionInfo Info(std::string id) {
    SessionInfo info;
    info.id = std::move(id);
    info.connection = "traces-pg";
    info.user = "agent";
    info.started_at = std::chrono::system_clock::now();
    return info;
  }

  fs::path dir_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<Recorder> recorder_;
};

// Issue 18 item 2: a second session with the same id replaced the first one's index row.
TEST_F(RecorderTest, ASecondSessionWithAnIndexedIdIsRefusedAndTheRowKept) {
  auto first = recorder_->Begin(Info("p0000000000000001"));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*first)->End({.outcome = "completed"}).ok());
  auto row = store_->GetSession("p0000000000000001");
  ASSERT_TRUE(row.ok());

  auto second = recorder_->Begin(Info("p0000000000000001"));
  EXPECT_TRUE(absl::IsAlreadyExists(second.status())) << second.status();
  EXPECT_EQ(recorder_->index_conflicts(), 1u);
  auto kept = store_->GetSession("p0000000000000001");
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, *row);
  // Nothing of the refused session reached the log: one start, one end.
  EXPECT_EQ(RecordsOf("p0000000000000001").size(), 2u);
}

TEST_F(RecorderTest, UnforwardedFramesAreSummarisedWithinTheirOwnBudget) {
  auto session = recorder_->Begin(Info("p00000000000000aa"));
  ASSERT_TRUE(session.ok());
  // Far more than max_session_bytes (1 MiB) announced, none of it charged to it.
  size_t written = 0;
  for (int i = 0; i < 5000; ++i) {
    const uint64_t before = (*session)->last_seq();
    auto seq = (*session)->Unforwarded(
        {{.type = 'd', .verdict = "dropped", .count = 27, .bytes = 27ull * (10u << 20)}});
    ASSERT_TRUE(seq.ok()) << seq.status();
    written += *seq != before ? 1 : 0;
  }
  EXPECT_GT(written, 10u);
  EXPECT_LT(written, 5000u);  // the budget ran out: the rest were only counted
  // The session goes on: forwarded frames still fit the record.
  std::string query = "Q" + std::string("\0\0\0\x0dselect 1\0", 13);
  EXPECT_TRUE((*session)->ClientFrames(query).ok());
  ASSERT_TRUE((*session)->End({.outcome = "completed"}).ok());

  std::vector<Record> records = RecordsOf("p00000000000000aa");
  size_t summary_bytes = 0;
  for (const Record& r : records) {
    if (r.type == RecordType::kUnforwarded) {
      summary_bytes += r.payload.size();
      json j = json::parse(r.payload);
      EXPECT_EQ(j["frames"][0]["type"], "d");
      EXPECT_EQ(j["frames"][0]["count"], 27);
    }
  }
  EXPECT_LE(summary_bytes, kUnforwardedSummaryBudget);
  json end = json::parse(records.back().payload);
  EXPECT_EQ(end["unforwarded"]["frames"], 27u * 5000);
  EXPECT_EQ(end["unforwarded"]["unsummarized_frames"], 27u * (5000 - written));
}

TEST_F(RecorderTest, ARunLongerThanARecordIsSplitBetweenFrames) {
  config::Audit config;
  config.dir = (dir_ / "audit2").string();
  config.durability = config::AuditDurability::kBatched;
  config.max_session_bytes = 1u << 30;
  recorder_.reset();
  auto recorder = Recorder::Open(config, *store_);
  ASSERT_TRUE(recorder.ok()) << recorder.status();
  recorder_ = *std::move(recorder);
  auto session = recorder_->Begin(Info("p00000000000000bb"));
  ASSERT_TRUE(session.ok()) << session.status();
  // Three DataRow-shaped frames of 14 MiB: 42 MiB, more than one record holds.
  const uint32_t body = 14u << 20;
  std::string frame(1 + 4 + body, 'x');
  frame[0] = 'D';
  for (int i = 0; i < 4; ++i) {
    frame[1 + i] = static_cast<char>(((body + 4) >> (24 - 8 * i)) & 0xff);
  }
  ASSERT_TRUE((*session)->ServerFrames(frame + frame + frame).ok());
  // One frame longer than a record cannot be recorded (the message limit prevents it).
  std::string huge(MaxFramesPerRecord() + 10, 'y');
  huge[0] = 'D';
  const uint32_t huge_len = static_cast<uint32_t>(huge.size() - 1);
  for (int i = 0; i < 4; ++i) {
    huge[1 + i] = static_cast<char>((huge_len >> (24 - 8 * i)) & 0xff);
  }
  EXPECT_FALSE((*session)->ServerFrames(huge).ok());
  std::vector<size_t> sizes;
  for (const Record& r : RecordsOf("p00000000000000bb", "audit2")) {
    if (r.type == RecordType::kServerFrames) {
      sizes.push_back(r.payload.size());
    }
  }
  // Split between frames: two in the first record, one in the second.
  EXPECT_EQ(sizes, (std::vector<size_t>{2 * frame.size(), frame.size()}));
}

}  // namespace
}  // namespace tracegate::audit
