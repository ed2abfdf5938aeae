// Fuzzes SessionReplay over arbitrary records. The input is a sequence of fake records, each
//   u8 tag | u16 length (big-endian) | length bytes of payload (fewer if the input ends)
// where tag % 11 + 1 is the RecordType (session_start .. auth_failure), except tag 0xff:
// unforwarded_frames, and tag / 8 picks the record's time (30 and 31: the extremes of int64).
// Replay must never crash, read out of bounds, or produce JSON that dump() refuses; every rendering
// is exercised, and the text rendering never lets a recorded byte reach the reader raw or forge a
// step header.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "audit/log.h"
#include "audit/replay.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tracegate::audit::Record;
  using tracegate::audit::RecordType;
  tracegate::audit::SessionReplay replay;
  size_t pos = 0;
  uint64_t seq = 1;
  while (pos < size) {
    uint8_t tag = data[pos++];
    size_t length = 0;
    for (int i = 0; i < 2 && pos < size; ++i) {
      length = (length << 8) | data[pos++];
    }
    length = std::min(length, size - pos);
    Record record;
    record.seq = seq++;
    record.type = tag == 0xff ? RecordType::kUnforwarded : static_cast<RecordType>(tag % 11 + 1);
    record.session = "fuzz";
    int64_t when = tag / 8;
    record.time_us = when == 31   ? std::numeric_limits<int64_t>::max()
                     : when == 30 ? std::numeric_limits<int64_t>::min()
                                  : 1'796'083'141'000'000 + when * 1'000'003;
    record.payload.assign(reinterpret_cast<const char*>(data + pos), length);
    pos += length;
    replay.Add(record);
  }
  std::string text = replay.RenderText();
  std::string csv = replay.RenderCsv();
  std::string json = replay.ToJson().dump();
  if (text.empty() || json.empty()) {
    __builtin_trap();
  }
  // Issue 18 item 4: nothing recorded reaches the reader raw (ESC, CR, BEL, C1 as UTF-8), and
  // the only lines that start with '[' are the step headers: one per step that is not a result.
  size_t headers = text.starts_with('[') ? 1 : 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == 0x1b || c == '\r' || c == 0x07 ||
        (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
         static_cast<unsigned char>(text[i + 1]) < 0xa0)) {
      __builtin_trap();
    }
    if (c == '\n' && i + 1 < text.size() && text[i + 1] == '[') {
      ++headers;
    }
  }
  size_t heads = 0;
  const nlohmann::json steps = replay.ToJson()["steps"];
  for (const nlohmann::json& step : steps) {
    heads += step["kind"] != "result" ? 1 : 0;
  }
  if (headers != heads) {
    __builtin_trap();
  }
  (void)csv;
  return 0;
}
