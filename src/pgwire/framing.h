#pragma once
// PostgreSQL protocol 3.0 framing: turns a byte buffer into whole messages.
//
// Pure functions over buffers, no I/O. A decoder reads the header (type byte + 4-byte
// length, or the untyped length of a startup-phase packet), rejects anything longer than
// the configured maximum *before* the body is buffered, and only then hands out a span
// over the complete message. Callers loop:
//
//   FrameResult r = DecodeFrame(buffer, Direction::kFrontend, limits);
//   switch (r.status) { kNeedMoreData: read more; kFrame: use r.frame, consume
//   r.frame.wire_size bytes; kError: answer r.error (SQLSTATE 08P01) and close }

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"

namespace tracegate::pgwire {

using Bytes = std::span<const uint8_t>;

// Who sent the bytes: the client (frontend) or the server (backend).
enum class Direction { kFrontend, kBackend };

struct Limits {
  // Startup-phase packets (StartupMessage, SSLRequest, CancelRequest, ...). PostgreSQL
  // itself uses 10000 (MAX_STARTUP_PACKET_LENGTH).
  uint32_t max_startup_length = 10000;
  // Any typed message, either direction.
  uint32_t max_message_length = 64u << 20;
};

// Startup-phase request codes (the int32 after the length in an untyped packet).
inline constexpr uint32_t kProtocolVersion3 = 196608;  // 3.0
inline constexpr uint32_t kSslRequestCode = 80877103;
inline constexpr uint32_t kGssEncRequestCode = 80877104;
inline constexpr uint32_t kCancelRequestCode = 80877102;

struct Frame {
  // Message type byte; 0 for an untyped startup-phase packet.
  char type = 0;
  // The message body after the length field (for a startup packet: after the length,
  // starting with the request code / protocol version).
  Bytes body;
  // Header + body: how many bytes of the input this frame occupies.
  size_t wire_size = 0;
};

enum class DecodeStatus { kNeedMoreData, kFrame, kError };

struct FrameResult {
  DecodeStatus status = DecodeStatus::kNeedMoreData;
  Frame frame;         // valid when status == kFrame
  absl::Status error;  // set when status == kError (InvalidArgument with a precise text)
  // When kNeedMoreData: total bytes needed for the next frame if already known from its
  // header (so the caller can size its buffer), else the header size.
  size_t bytes_needed = 0;
};

// Decodes one untyped startup-phase packet at the front of `buffer`. Lengths below 8 or
// above limits.max_startup_length are errors.
[[nodiscard]] FrameResult DecodeStartupFrame(Bytes buffer, const Limits& limits);

// Decodes one typed message at the front of `buffer`. The type byte must be one that
// `direction` may send in protocol 3.0 (see IsKnownType); the length must be >= 4 and the
// body no longer than limits.max_message_length. Anything else is an error.
[[nodiscard]] FrameResult DecodeFrame(Bytes buffer, Direction direction, const Limits& limits);

// Whether `type` is a message type the given side may send after startup.
[[nodiscard]] bool IsKnownType(char type, Direction direction);

}  // namespace tracegate::pgwire
