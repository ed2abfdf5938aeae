// LogReader: the records of a log directory in seq order, stopped or live.
#include <system_error>

#include "audit/log.h"
#include "audit/segment.h"
#include "common/status.h"
#include "common/strings.h"

namespace tracegate::audit {

absl::StatusOr<LogReader> LogReader::Open(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(Cat("audit log: ", dir.string(), " is not a directory"));
  }
  LogReader reader;
  reader.dir_ = dir;
  return reader;
}

absl::Status LogReader::ForEach(uint64_t from_seq,
                                const std::function<bool(const Record&)>& visit) const {
  TG_ASSIGN_OR_RETURN(std::vector<internal::SegmentFile> segments, internal::ListSegments(dir_));
  // The newest segment that starts at or before from_seq (or the oldest there is).
  size_t first = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (segments[i].first_seq <= from_seq) {
      first = i;
    }
  }
  bool stopped = false;
  uint64_t last_seq = 0;  // of the previous segment, to check the next one continues it
  for (size_t i = first; i < segments.size() && !stopped; ++i) {
    const internal::SegmentFile& segment = segments[i];
    const bool newest = i + 1 == segments.size();
    TG_ASSIGN_OR_RETURN(std::unique_ptr<internal::FileSource> source,
                        internal::FileSource::Open(segment.path));
    if (newest && source->size() < internal::kSegmentHeaderSize) {
      break;  // being created (a live log rotating)
    }
    if (i > first && segment.first_seq != last_seq + 1) {
      return absl::DataLossError(Cat("audit log: ", segment.name, " offset 0: starts at record ",
                                     segment.first_seq, " but the segment before ends at ",
                                     last_seq));
    }
    TG_ASSIGN_OR_RETURN(internal::ScanEnd end,
                        internal::ScanSegment(*source, segment.name, /*allow_torn_tail=*/newest,
                                              [&](const Record& record, std::string_view) {
                                                if (record.seq < from_seq) {
                                                  return true;
                                                }
                                                if (!visit(record)) {
                                                  stopped = true;
                                                  return false;
                                                }
                                                return true;
                                              }));
    last_seq = end.last_seq;
  }
  return absl::OkStatus();
}

}  // namespace tracegate::audit
