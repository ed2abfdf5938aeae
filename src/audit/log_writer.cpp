// LogWriter: startup recovery, the writer thread (group commit, checkpoints, rotation) and
// retention.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "audit/log.h"
#include "audit/segment.h"
#include "common/status.h"
#include "common/strings.h"

namespace tracegate::audit {
namespace {

using internal::FileSource;
using internal::UniqueFd;
using SteadyClock = std::chrono::steady_clock;

// Batched mode wakes the writer early once this much is queued.
constexpr size_t kWakeBytes = 1u << 20;
constexpr size_t kMaxSession = 255;
constexpr size_t kMaxPayload = internal::kMaxRecordSize - internal::kRecordOverhead - kMaxSession;

int64_t Micros(std::chrono::system_clock::time_point t) {
  return std::chrono::floor<std::chrono::microseconds>(t.time_since_epoch()).count();
}

struct Pending {
  uint64_t seq = 0;
  int64_t time_us = 0;
  RecordType type = RecordType::kSessionStart;
  std::string session;
  std::string payload;  // a checkpoint's is made when it is written (it signs the head)
  bool checkpoint = false;
};

struct CctxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

absl::Status AsUnavailable(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kUnavailable) {
    return status;
  }
  return absl::UnavailableError(status.message());
}

// Creates a segment file holding only its header, synced, and the directory entry synced.
absl::StatusOr<UniqueFd> CreateSegment(int dir_fd, const std::filesystem::path& dir,
                                       const internal::SegmentHeader& header) {
  const std::filesystem::path path = dir / internal::SegmentName(header.first_seq);
  UniqueFd fd(
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd.get() < 0) {
    return internal::ErrnoError("create", path, errno);
  }
  TG_RETURN_IF_ERROR(internal::WriteAll(fd.get(), internal::EncodeSegmentHeader(header), path));
  TG_RETURN_IF_ERROR(internal::SyncData(fd.get(), path));
  TG_RETURN_IF_ERROR(internal::SyncDir(dir_fd, dir));
  return fd;
}

absl::StatusOr<UniqueFd> OpenForAppend(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    return internal::ErrnoError("open", path, errno);
  }
  return fd;
}

absl::Status Truncate(int fd, const std::filesystem::path& path, uint64_t size) {
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    return internal::ErrnoError("truncate of", path, errno);
  }
  return internal::SyncData(fd, path);
}

absl::Status MakeDir(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST) {
    return absl::OkStatus();
  }
  if (errno != ENOENT || !dir.has_parent_path()) {
    return internal::ErrnoError("mkdir", dir, errno);
  }
  std::error_code ec;
  std::filesystem::create_directories(dir.parent_path(), ec);
  if (ec) {
    return absl::UnavailableError(
        Cat("audit log: mkdir ", dir.parent_path().string(), " failed: ", ec.message()));
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return internal::ErrnoError("mkdir", dir, errno);
  }
  return absl::OkStatus();
}

}  // namespace

struct LogWriter::State {
  LogOptions options;
  CheckpointKey key;
  UniqueFd dir_fd;  // flock'ed: one writer per directory

  // The writer thread's (and Open's, before the thread starts).
  UniqueFd seg_fd;
  std::filesystem::path seg_path;
  uint64_t seg_size = 0;
  bool seg_unsynced = false;
  Hash head{};
  std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx{ZSTD_createCCtx()};
  Stats delta;  // this batch's, added to `stats` once it is durable

  mutable std::mutex mu;
  std::condition_variable wake;  // the writer waits on it
  std::deque<Pending> queue;
  size_t queued_bytes = 0;
  uint64_t next_seq = 1;
  uint64_t durable_seq = 0;
  absl::Status broken;
  bool stopping = false;
  bool stopped = false;
  bool flush_requested = false;
  uint64_t unsigned_records = 0;  // written or queued for writing since the last checkpoint
  SteadyClock::time_point last_checkpoint;
  std::multimap<uint64_t, absl::AnyInvocable<void(absl::Status)>> waiters;
  uint64_t checkpoints_handled = 0;  // durable and given to on_checkpoint
  std::condition_variable checkpoint_handled;
  Stats stats;
  uint64_t active_first_seq = 0;  // the segment being written (Prune never touches it)

  std::mutex prune_mu;  // one Prune at a time
  std::thread thread;

  State(LogOptions o, CheckpointKey k) : options(std::move(o)), key(std::move(k)) {}

  int64_t NowUs() const { return Micros(options.clock()); }
  absl::StatusOr<uint64_t> Enqueue(RecordType type, std::string_view session, std::string payload);
  void EnqueueCheckpointLocked();
  absl::Status WaitDurable(uint64_t seq);
  void Run();
  absl::Status WriteBatch(std::vector<Pending>& batch, std::optional<Checkpoint>& checkpoint);
  absl::Status WriteBlock(uint64_t first_seq, uint32_t count, std::string_view raw,
                          const Hash& prev_head);
  absl::Status Rotate(uint64_t first_seq, const Hash& prev_head);
  // Marks the writer broken; the caller runs what it returns (the waiters) outside the lock.
  std::vector<absl::AnyInvocable<void(absl::Status)>> BreakLocked(const absl::Status& status);
  absl::Status Recover();
};

absl::StatusOr<uint64_t> LogWriter::State::Enqueue(RecordType type, std::string_view session,
                                                   std::string payload) {
  if (session.size() > kMaxSession) {
    return absl::InvalidArgumentError(
        Cat("audit log: session id of ", session.size(), " bytes (at most ", kMaxSession, ")"));
  }
  if (payload.size() > kMaxPayload) {
    return absl::InvalidArgumentError(
        Cat("audit log: record payload of ", payload.size(), " bytes (at most ", kMaxPayload, ")"));
  }
  bool notify = false;
  uint64_t seq = 0;
  {
    std::lock_guard lock(mu);
    if (!broken.ok()) {
      return broken;
    }
    if (stopping) {
      return absl::UnavailableError("audit log: closed");
    }
    seq = next_seq++;
    // Batched mode: the first record of a batch starts the writer's flush timer.
    notify = queue.empty();
    queued_bytes += payload.size() + session.size() + internal::kRecordOverhead;
    queue.push_back(Pending{seq, NowUs(), type, std::string(session), std::move(payload)});
    ++unsigned_records;
    // Strict mode syncs when someone waits (WhenDurable), not for every record: a session's
    // client frames ride along with the answer it waits for.
    notify = notify || queued_bytes >= kWakeBytes;
  }
  if (notify) {
    wake.notify_one();
  }
  return seq;
}

void LogWriter::State::EnqueueCheckpointLocked() {
  Pending p;
  p.seq = next_seq++;
  p.time_us = NowUs();
  p.type = RecordType::kCheckpoint;
  p.checkpoint = true;
  queue.push_back(std::move(p));
  unsigned_records = 0;
  last_checkpoint = SteadyClock::now();
}

absl::Status LogWriter::State::WaitDurable(uint64_t seq) {
  std::promise<absl::Status> promise;
  std::future<absl::Status> done = promise.get_future();
  bool inline_done = false;
  absl::Status inline_status;
  {
    std::lock_guard lock(mu);
    if (!broken.ok()) {
      return broken;
    }
    if (seq <= durable_seq) {
      return absl::OkStatus();
    }
    if (stopped) {
      inline_done = true;
      inline_status = absl::UnavailableError("audit log: closed");
    } else {
      flush_requested = true;
      waiters.emplace(seq, [&promise](absl::Status s) { promise.set_value(std::move(s)); });
    }
  }
  if (inline_done) {
    return inline_status;
  }
  wake.notify_one();
  return done.get();
}

std::vector<absl::AnyInvocable<void(absl::Status)>> LogWriter::State::BreakLocked(
    const absl::Status& status) {
  if (broken.ok()) {
    broken = AsUnavailable(status);
  }
  std::vector<absl::AnyInvocable<void(absl::Status)>> failed;
  for (auto& [seq, done] : waiters) {
    failed.push_back(std::move(done));
  }
  waiters.clear();
  queue.clear();
  queued_bytes = 0;
  return failed;
}

void LogWriter::State::Run() {
  std::unique_lock lock(mu);
  SteadyClock::time_point next_flush = SteadyClock::now() + options.flush_interval;
  while (true) {
    if (!broken.ok()) {
      // Nothing more is written; Append and WhenDurable answer with the error.
      if (stopping) {
        break;
      }
      wake.wait(lock);
      continue;
    }
    const SteadyClock::time_point now = SteadyClock::now();
    const bool has_records = !queue.empty();
    const bool checkpoint_due =
        unsigned_records > 0 && (stopping || now >= last_checkpoint + options.checkpoint_interval);
    const bool write_due = has_records && (stopping || flush_requested ||
                                           queued_bytes >= kWakeBytes || now >= next_flush);
    if (!write_due && !checkpoint_due) {
      if (stopping) {
        break;
      }
      SteadyClock::time_point deadline = SteadyClock::time_point::max();
      if (has_records) {
        deadline = std::min(deadline, next_flush);
      }
      if (unsigned_records > 0) {
        deadline = std::min(deadline, last_checkpoint + options.checkpoint_interval);
      }
      if (deadline == SteadyClock::time_point::max()) {
        wake.wait(lock);
      } else {
        wake.wait_until(lock, deadline);
      }
      continue;
    }
    if (checkpoint_due) {
      EnqueueCheckpointLocked();
    }
    std::vector<Pending> batch(std::make_move_iterator(queue.begin()),
                               std::make_move_iterator(queue.end()));
    queue.clear();
    queued_bytes = 0;
    flush_requested = false;
    lock.unlock();

    std::optional<Checkpoint> checkpoint;
    delta = Stats{};
    absl::Status status = WriteBatch(batch, checkpoint);
    std::vector<absl::AnyInvocable<void(absl::Status)>> ready;
    lock.lock();
    if (!status.ok()) {
      ready = BreakLocked(status);
      status = broken;
    } else {
      durable_seq = batch.back().seq;
      stats.records += batch.size();
      stats.blocks += delta.blocks;
      stats.bytes_written += delta.bytes_written;
      stats.raw_bytes += delta.raw_bytes;
      stats.syncs += delta.syncs;
      auto end = waiters.upper_bound(durable_seq);
      for (auto it = waiters.begin(); it != end; ++it) {
        ready.push_back(std::move(it->second));
      }
      waiters.erase(waiters.begin(), end);
    }
    next_flush = SteadyClock::now() + options.flush_interval;
    lock.unlock();
    for (auto& done : ready) {
      done(status);
    }
    ready.clear();
    if (status.ok() && checkpoint.has_value()) {
      absl::Status kept =
          options.on_checkpoint ? options.on_checkpoint(*checkpoint) : absl::OkStatus();
      lock.lock();
      if (!kept.ok()) {
        ready =
            BreakLocked(absl::UnavailableError(Cat("audit log: keeping the checkpoint of record ",
                                                   checkpoint->seq, " failed: ", MessageOf(kept))));
        status = broken;
      }
      ++checkpoints_handled;
      lock.unlock();
      checkpoint_handled.notify_all();
      for (auto& done : ready) {
        done(status);
      }
    }
    lock.lock();
  }
  stopped = true;
}

absl::Status LogWriter::State::WriteBatch(std::vector<Pending>& batch,
                                          std::optional<Checkpoint>& checkpoint) {
  std::string raw;
  uint32_t count = 0;
  uint64_t block_first = 0;
  Hash block_prev{};
  for (Pending& p : batch) {
    if (p.checkpoint) {
      Checkpoint c;
      c.seq = p.seq - 1;
      c.head = head;
      c.time_us = p.time_us;
      c.key_id = key.key_id();
      TG_ASSIGN_OR_RETURN(c.signature, key.Sign(CheckpointMessage(c)));
      p.payload = CheckpointToJson(c);
      checkpoint = std::move(c);
    }
    Record record{p.seq, p.time_us, p.type, std::move(p.session), head, std::move(p.payload)};
    std::string encoded = EncodeRecord(record);
    if (count > 0 && raw.size() + encoded.size() > internal::kBlockRawTarget) {
      TG_RETURN_IF_ERROR(WriteBlock(block_first, count, raw, block_prev));
      raw.clear();
      count = 0;
    }
    if (count == 0) {
      block_first = p.seq;
      block_prev = head;
    }
    head = ChainHash(head, encoded);
    raw += encoded;
    ++count;
  }
  if (count > 0) {
    TG_RETURN_IF_ERROR(WriteBlock(block_first, count, raw, block_prev));
  }
  if (seg_unsynced) {
    TG_RETURN_IF_ERROR(internal::SyncData(seg_fd.get(), seg_path));
    seg_unsynced = false;
    ++delta.syncs;
  }
  return absl::OkStatus();
}

absl::Status LogWriter::State::WriteBlock(uint64_t first_seq, uint32_t count, std::string_view raw,
                                          const Hash& prev_head) {
  if (seg_size > options.segment_bytes && seg_size > internal::kSegmentHeaderSize) {
    TG_RETURN_IF_ERROR(Rotate(first_seq, prev_head));
  }
  TG_ASSIGN_OR_RETURN(std::string block,
                      internal::EncodeBlock(cctx.get(), options.zstd_level, first_seq, count, raw));
  TG_RETURN_IF_ERROR(internal::WriteAll(seg_fd.get(), block, seg_path));
  seg_size += block.size();
  seg_unsynced = true;
  ++delta.blocks;
  delta.bytes_written += block.size();
  delta.raw_bytes += raw.size();
  return absl::OkStatus();
}

absl::Status LogWriter::State::Rotate(uint64_t first_seq, const Hash& prev_head) {
  if (seg_unsynced) {
    TG_RETURN_IF_ERROR(internal::SyncData(seg_fd.get(), seg_path));
    seg_unsynced = false;
    ++delta.syncs;
  }
  internal::SegmentHeader header{first_seq, prev_head, NowUs()};
  TG_ASSIGN_OR_RETURN(UniqueFd fd, CreateSegment(dir_fd.get(), options.dir, header));
  seg_fd = std::move(fd);
  seg_path = options.dir / internal::SegmentName(first_seq);
  seg_size = internal::kSegmentHeaderSize;
  ++delta.syncs;
  delta.bytes_written += internal::kSegmentHeaderSize;
  std::lock_guard lock(mu);
  active_first_seq = first_seq;
  return absl::OkStatus();
}

// Finds where the chain ends, cuts a torn tail off the newest segment, and leaves the newest
// segment open for appending. Queues a kRecovery record if anything was cut.
absl::Status LogWriter::State::Recover() {
  const std::filesystem::path& dir = options.dir;
  TG_ASSIGN_OR_RETURN(std::vector<internal::SegmentFile> segments, internal::ListSegments(dir));
  if (segments.empty()) {
    internal::SegmentHeader header{1, Hash{}, NowUs()};
    TG_ASSIGN_OR_RETURN(seg_fd, CreateSegment(dir_fd.get(), dir, header));
    seg_path = dir / internal::SegmentName(1);
    seg_size = internal::kSegmentHeaderSize;
    next_seq = 1;
    active_first_seq = 1;
    return absl::OkStatus();
  }
  // Every older segment's header.
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    TG_ASSIGN_OR_RETURN(std::unique_ptr<FileSource> source, FileSource::Open(segments[i].path));
    std::string scratch;
    TG_ASSIGN_OR_RETURN(
        std::string_view bytes,
        source->Read(0, std::min<uint64_t>(source->size(), internal::kSegmentHeaderSize), scratch));
    absl::StatusOr<internal::SegmentHeader> header = internal::DecodeSegmentHeader(bytes);
    if (!header.ok()) {
      return absl::DataLossError(
          Cat("audit log: ", segments[i].name, " offset 0: ", MessageOf(header.status())));
    }
    if (header->first_seq != segments[i].first_seq) {
      return absl::DataLossError(Cat("audit log: ", segments[i].name,
                                     " offset 0: header says first record ", header->first_seq));
    }
  }

  const internal::SegmentFile& newest = segments.back();
  TG_ASSIGN_OR_RETURN(std::unique_ptr<FileSource> source, FileSource::Open(newest.path));
  std::string scratch;
  TG_ASSIGN_OR_RETURN(
      std::string_view start,
      source->Read(0, std::min<uint64_t>(source->size(), internal::kSegmentHeaderSize), scratch));
  const bool torn_header = source->size() < internal::kSegmentHeaderSize ||
                           std::all_of(start.begin(), start.end(), [](char c) { return c == 0; });
  std::optional<std::string> recovery;
  if (torn_header) {
    // A crash while the segment was being created: the chain ends in the one before.
    uint64_t last_seq = 0;
    Hash last_head{};
    if (segments.size() > 1) {
      const internal::SegmentFile& prev = segments[segments.size() - 2];
      TG_ASSIGN_OR_RETURN(std::unique_ptr<FileSource> prev_source, FileSource::Open(prev.path));
      TG_ASSIGN_OR_RETURN(internal::ScanEnd end,
                          internal::ScanSegment(*prev_source, prev.name, false, {}));
      last_seq = end.last_seq;
      last_head = end.head;
    }
    if (newest.first_seq != last_seq + 1) {
      return absl::DataLossError(Cat("audit log: ", newest.name, " offset 0: ",
                                     MessageOf(internal::DecodeSegmentHeader(start).status()),
                                     ", and the log before it ends at record ", last_seq));
    }
    TG_ASSIGN_OR_RETURN(seg_fd, OpenForAppend(newest.path));
    TG_RETURN_IF_ERROR(Truncate(seg_fd.get(), newest.path, 0));
    internal::SegmentHeader header{newest.first_seq, last_head, NowUs()};
    TG_RETURN_IF_ERROR(
        internal::WriteAll(seg_fd.get(), internal::EncodeSegmentHeader(header), newest.path));
    TG_RETURN_IF_ERROR(internal::SyncData(seg_fd.get(), newest.path));
    TG_RETURN_IF_ERROR(internal::SyncDir(dir_fd.get(), dir));
    recovery = internal::RecoveryJson(source->size(), newest.name);
    seg_size = internal::kSegmentHeaderSize;
    next_seq = newest.first_seq;
    head = last_head;
  } else {
    TG_ASSIGN_OR_RETURN(internal::ScanEnd end,
                        internal::ScanSegment(*source, newest.name, true, {}));
    TG_ASSIGN_OR_RETURN(seg_fd, OpenForAppend(newest.path));
    if (end.torn) {
      TG_RETURN_IF_ERROR(Truncate(seg_fd.get(), newest.path, end.valid_bytes));
      recovery = internal::RecoveryJson(end.file_size - end.valid_bytes, newest.name);
    }
    seg_size = end.valid_bytes;
    next_seq = end.last_seq + 1;
    head = end.head;
  }
  seg_path = newest.path;
  active_first_seq = newest.first_seq;
  if (recovery.has_value()) {
    queue.push_back(Pending{next_seq++, NowUs(), RecordType::kRecovery, "", *std::move(recovery)});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LogWriter>> LogWriter::Open(LogOptions options, CheckpointKey key) {
  if (!key.can_sign()) {
    return absl::InvalidArgumentError("audit log: the checkpoint key has no private half");
  }
  if (options.dir.empty()) {
    return absl::InvalidArgumentError("audit log: no directory");
  }
  if (!options.clock) {
    options.clock = [] { return std::chrono::system_clock::now(); };
  }
  std::unique_ptr<LogWriter> writer(new LogWriter());
  writer->state_ = std::make_unique<State>(std::move(options), std::move(key));
  State& s = *writer->state_;
  if (!s.cctx) {
    return absl::InternalError("audit log: cannot create a zstd context");
  }
  const std::filesystem::path& dir = s.options.dir;
  TG_RETURN_IF_ERROR(MakeDir(dir));
  s.dir_fd.reset(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (s.dir_fd.get() < 0) {
    return internal::ErrnoError("open", dir, errno);
  }
  if (::flock(s.dir_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          Cat("audit log: ", dir.string(), " is in use by another writer"));
    }
    return internal::ErrnoError("lock of", dir, errno);
  }
  TG_RETURN_IF_ERROR(s.Recover());
  s.durable_seq = s.next_seq - 1;
  // Anchor what is there (and the recovery record, if any) with a checkpoint right away.
  s.EnqueueCheckpointLocked();
  s.thread = std::thread([&s] { s.Run(); });
  TG_RETURN_IF_ERROR(writer->Flush());
  // Open succeeds only once the opening checkpoint is where verify will look for it.
  std::unique_lock lock(s.mu);
  s.checkpoint_handled.wait(lock, [&s] { return s.checkpoints_handled > 0 || !s.broken.ok(); });
  if (!s.broken.ok()) {
    return s.broken;
  }
  lock.unlock();
  return writer;
}

LogWriter::~LogWriter() {
  if (!state_) {
    return;
  }
  State& s = *state_;
  {
    std::lock_guard lock(s.mu);
    s.stopping = true;
  }
  s.wake.notify_all();
  if (s.thread.joinable()) {
    s.thread.join();
  }
  std::vector<absl::AnyInvocable<void(absl::Status)>> left;
  absl::Status status;
  {
    std::lock_guard lock(s.mu);
    s.stopped = true;
    status = s.broken.ok() ? absl::UnavailableError("audit log: closed") : s.broken;
    for (auto& [seq, done] : s.waiters) {
      left.push_back(std::move(done));
    }
    s.waiters.clear();
  }
  for (auto& done : left) {
    done(status);
  }
}

absl::StatusOr<uint64_t> LogWriter::Append(RecordType type, std::string_view session,
                                           std::string payload) {
  if (type == RecordType::kCheckpoint || type == RecordType::kPruned) {
    return absl::InvalidArgumentError(
        Cat("audit log: ", RecordTypeName(type), " records are written by the log itself"));
  }
  if (RecordTypeName(type) == "unknown") {
    return absl::InvalidArgumentError(
        Cat("audit log: unknown record type ", static_cast<int>(type)));
  }
  return state_->Enqueue(type, session, std::move(payload));
}

void LogWriter::WhenDurable(uint64_t seq, absl::AnyInvocable<void(absl::Status)> done) {
  State& s = *state_;
  absl::Status now;
  {
    std::unique_lock lock(s.mu);
    if (!s.broken.ok()) {
      now = s.broken;
    } else if (seq <= s.durable_seq) {
      now = absl::OkStatus();
    } else if (s.stopped) {
      now = absl::UnavailableError("audit log: closed");
    } else {
      s.waiters.emplace(seq, std::move(done));
      // The record is still queued (not in the batch being written): a waiter makes the
      // writer sync now. Records nobody waits for are synced every flush_interval.
      const bool queued = !s.queue.empty() && seq >= s.queue.front().seq;
      if (queued) {
        s.flush_requested = true;
      }
      lock.unlock();
      if (queued) {
        s.wake.notify_one();
      }
      return;
    }
  }
  done(std::move(now));
}

absl::Status LogWriter::Flush() {
  uint64_t target = 0;
  {
    std::lock_guard lock(state_->mu);
    target = state_->next_seq - 1;
  }
  return state_->WaitDurable(target);
}

absl::Status LogWriter::health() const {
  std::lock_guard lock(state_->mu);
  return state_->broken;
}

Durability LogWriter::durability() const { return state_->options.durability; }

LogWriter::Stats LogWriter::stats() const {
  std::lock_guard lock(state_->mu);
  return state_->stats;
}

absl::StatusOr<size_t> LogWriter::Prune(std::chrono::system_clock::time_point cutoff) {
  State& s = *state_;
  std::lock_guard prune_lock(s.prune_mu);
  uint64_t active = 0;
  {
    std::lock_guard lock(s.mu);
    if (!s.broken.ok()) {
      return s.broken;
    }
    active = s.active_first_seq;
  }
  TG_ASSIGN_OR_RETURN(std::vector<internal::SegmentFile> segments,
                      internal::ListSegments(s.options.dir));
  const int64_t cutoff_us = Micros(cutoff);
  std::vector<internal::PrunedSegment> gone;
  std::vector<std::filesystem::path> paths;
  for (const internal::SegmentFile& segment : segments) {
    if (segment.first_seq >= active) {
      break;
    }
    // Closed segments do not change: read through, which also checks them.
    TG_ASSIGN_OR_RETURN(std::unique_ptr<FileSource> source, FileSource::Open(segment.path));
    TG_ASSIGN_OR_RETURN(internal::ScanEnd end,
                        internal::ScanSegment(*source, segment.name, false, {}));
    if (end.records == 0 || end.last_time_us >= cutoff_us) {
      break;
    }
    gone.push_back({segment.name, end.header.first_seq, end.last_seq, end.head});
    paths.push_back(segment.path);
  }
  if (gone.empty()) {
    return 0;
  }
  // The record first: a crash before the deletions leaves segments the chain says are gone
  // (harmless), never a missing prefix nothing explains.
  TG_ASSIGN_OR_RETURN(uint64_t seq, s.Enqueue(RecordType::kPruned, "", internal::PrunedJson(gone)));
  TG_RETURN_IF_ERROR(s.WaitDurable(seq));
  for (const std::filesystem::path& path : paths) {
    if (::unlink(path.c_str()) != 0) {
      return internal::ErrnoError("delete of", path, errno);
    }
  }
  TG_RETURN_IF_ERROR(internal::SyncDir(s.dir_fd.get(), s.options.dir));
  return gone.size();
}

}  // namespace tracegate::audit
