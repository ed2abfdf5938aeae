#include "pgwire/framing.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace tracegate::pgwire {
namespace {

constexpr size_t kTypedHeaderSize = 5;    // type byte + int32 length
constexpr size_t kStartupHeaderSize = 4;  // int32 length

uint32_t ReadU32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

FrameResult NeedMore(size_t bytes_needed) {
  FrameResult r;
  r.status = DecodeStatus::kNeedMoreData;
  r.bytes_needed = bytes_needed;
  return r;
}

FrameResult Fail(std::string message) {
  FrameResult r;
  r.status = DecodeStatus::kError;
  r.error = absl::InvalidArgumentError(std::move(message));
  return r;
}

// Printable form of a type byte for error messages: 'Q' or 0x00.
std::string TypeName(char type) {
  auto b = static_cast<unsigned char>(type);
  if (b >= 0x21 && b <= 0x7e) {
    return absl::StrCat("'", std::string(1, type), "'");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  return absl::StrCat("0x", std::string(1, kHex[b >> 4]), std::string(1, kHex[b & 0xf]));
}

// Messages whose body has a fixed size, checked from the header so that, e.g., a
// "Sync" claiming 60 MB is refused before anything is buffered.
std::optional<uint32_t> FixedBodySize(char type, Direction direction) {
  if (direction == Direction::kFrontend) {
    switch (type) {
      case 'S':  // Sync
      case 'H':  // Flush
      case 'X':  // Terminate
      case 'c':  // CopyDone
        return 0;
      default:
        return std::nullopt;
    }
  }
  switch (type) {
    case 'K':  // BackendKeyData
      return 8;
    case 'Z':  // ReadyForQuery
      return 1;
    case 'I':  // EmptyQueryResponse
    case '1':  // ParseComplete
    case '2':  // BindComplete
    case '3':  // CloseComplete
    case 'n':  // NoData
    case 's':  // PortalSuspended
    case 'c':  // CopyDone
      return 0;
    default:
      return std::nullopt;
  }
}

const char* DirectionName(Direction direction) {
  return direction == Direction::kFrontend ? "frontend" : "backend";
}

}  // namespace

bool IsKnownType(char type, Direction direction) {
  // Protocol 3.0 message types each side may send after startup.
  constexpr std::string_view kFrontendTypes = "QPBDESHCXdcfFp";
  constexpr std::string_view kBackendTypes = "RSKZTDCIEN123tnsAGHWdcVv";
  std::string_view types = direction == Direction::kFrontend ? kFrontendTypes : kBackendTypes;
  return types.find(type) != std::string_view::npos;
}

FrameResult DecodeStartupFrame(Bytes buffer, const Limits& limits) {
  if (buffer.size() < kStartupHeaderSize) {
    return NeedMore(kStartupHeaderSize);
  }
  uint32_t length = ReadU32(buffer.data());
  // The length counts itself and the 4-byte request code, so 8 is the smallest packet.
  if (length < 8 || length > limits.max_startup_length) {
    return Fail(absl::StrCat("invalid startup packet length ", length, " (must be 8 to ",
                             limits.max_startup_length, ")"));
  }
  if (buffer.size() < length) {
    return NeedMore(length);
  }
  FrameResult r;
  r.status = DecodeStatus::kFrame;
  r.frame.type = 0;
  r.frame.body = buffer.subspan(kStartupHeaderSize, length - kStartupHeaderSize);
  r.frame.wire_size = length;
  return r;
}

FrameResult DecodeFrame(Bytes buffer, Direction direction, const Limits& limits) {
  if (buffer.empty()) {
    return NeedMore(kTypedHeaderSize);
  }
  char type = static_cast<char>(buffer[0]);
  if (!IsKnownType(type, direction)) {
    return Fail(
        absl::StrCat("unknown ", DirectionName(direction), " message type ", TypeName(type)));
  }
  if (buffer.size() < kTypedHeaderSize) {
    return NeedMore(kTypedHeaderSize);
  }
  uint32_t length = ReadU32(buffer.data() + 1);
  if (length < 4) {
    return Fail(absl::StrCat("message ", TypeName(type), " has invalid length ", length,
                             " (must be at least 4)"));
  }
  uint32_t body_size = length - 4;
  if (body_size > limits.max_message_length) {
    return Fail(absl::StrCat("message ", TypeName(type), " body of ", body_size,
                             " bytes exceeds the limit of ", limits.max_message_length));
  }
  if (std::optional<uint32_t> fixed = FixedBodySize(type, direction);
      fixed.has_value() && body_size != *fixed) {
    return Fail(absl::StrCat(DirectionName(direction), " message ", TypeName(type), " body of ",
                             body_size, " bytes must be exactly ", *fixed));
  }
  // 64-bit: 1 + 0xFFFFFFFF must not wrap (it cannot get here, but stay obviously safe).
  uint64_t wire_size = uint64_t{1} + length;
  if (buffer.size() < wire_size) {
    return NeedMore(static_cast<size_t>(wire_size));
  }
  FrameResult r;
  r.status = DecodeStatus::kFrame;
  r.frame.type = type;
  r.frame.body = buffer.subspan(kTypedHeaderSize, body_size);
  r.frame.wire_size = static_cast<size_t>(wire_size);
  return r;
}

}  // namespace tracegate::pgwire
