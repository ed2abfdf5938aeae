// Fuzzes the framers: the input is a byte stream from a client (a startup packet, then
// typed messages) or from a server (typed messages), consumed frame by frame with small
// limits. Traps when a result breaks the framing contract.
#include <cstddef>
#include <cstdint>

#include "pgwire/framing.h"

namespace {

using tracegate::pgwire::Bytes;
using tracegate::pgwire::DecodeFrame;
using tracegate::pgwire::DecodeStartupFrame;
using tracegate::pgwire::DecodeStatus;
using tracegate::pgwire::Direction;
using tracegate::pgwire::FrameResult;
using tracegate::pgwire::IsKnownType;
using tracegate::pgwire::Limits;

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

// Checks one result against `input`; returns how many bytes the frame used (0 = stop).
size_t CheckResult(const FrameResult& r, Bytes input, size_t header, uint32_t max_body) {
  switch (r.status) {
    case DecodeStatus::kNeedMoreData:
      Check(r.bytes_needed > input.size());
      Check(r.bytes_needed >= header);
      Check(r.error.ok());
      return 0;
    case DecodeStatus::kError:
      Check(!r.error.ok());
      return 0;
    case DecodeStatus::kFrame:
      Check(r.error.ok());
      Check(r.frame.wire_size <= input.size());
      Check(r.frame.wire_size == header + r.frame.body.size());
      Check(r.frame.body.size() <= max_body);
      Check(r.frame.body.data() == input.data() + header);
      return r.frame.wire_size;
  }
  return 0;
}

void ConsumeTyped(Bytes input, Direction direction, const Limits& limits) {
  while (!input.empty()) {
    FrameResult r = DecodeFrame(input, direction, limits);
    size_t used = CheckResult(r, input, 5, limits.max_message_length);
    if (r.status == DecodeStatus::kFrame) {
      Check(IsKnownType(r.frame.type, direction));
    }
    if (used == 0) {
      return;
    }
    input = input.subspan(used);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Limits limits;
  limits.max_startup_length = 512;
  limits.max_message_length = 4096;
  Bytes input(data, size);

  // A client: one startup-phase packet, then typed messages.
  FrameResult startup = DecodeStartupFrame(input, limits);
  size_t used = CheckResult(startup, input, 4, limits.max_startup_length - 4);
  if (startup.status == DecodeStatus::kFrame) {
    Check(startup.frame.type == 0 && startup.frame.wire_size >= 8);
  }
  ConsumeTyped(input.subspan(used), Direction::kFrontend, limits);

  // The same bytes as a typed stream from either side.
  ConsumeTyped(input, Direction::kFrontend, limits);
  ConsumeTyped(input, Direction::kBackend, limits);
  return 0;
}
