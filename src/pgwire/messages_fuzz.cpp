// Fuzzes every message codec. The first input byte selects the direction (bit 0: backend)
// and whether a frontend stream opens with a startup packet (bit 1); the rest is frames.
// Each frame goes through ValidateFrame and its type's parser; whatever parses must
// re-encode to exactly the bytes it came from (the wire format has one encoding per
// message), and ValidateFrame must agree with the parser.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "pgwire/framing.h"
#include "pgwire/messages.h"

namespace {

using namespace tracegate::pgwire;  // NOLINT(build/namespaces): a fuzz target's glue.

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

void PutU32(Buffer& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>(v >> shift));
  }
}

// Parses `body` with `parse` and, on success, encodes it again with `encode`.
template <typename ParseFn, typename EncodeFn>
std::optional<Buffer> Via(Bytes body, ParseFn parse, EncodeFn encode) {
  auto parsed = parse(body);
  if (!parsed.ok()) {
    return std::nullopt;
  }
  Buffer out;
  encode(*parsed, out);
  return out;
}

std::optional<Buffer> ReencodeStartup(Bytes body) {
  auto p = ParseStartupPacket(body);
  if (!p.ok()) {
    return std::nullopt;
  }
  Buffer out;
  switch (p->kind) {
    case StartupKind::kStartup:
      EncodeStartupMessage(p->startup, out);
      break;
    case StartupKind::kSslRequest:
      EncodeSslRequest(out);
      break;
    case StartupKind::kGssEncRequest:
      PutU32(out, 8);
      PutU32(out, kGssEncRequestCode);
      break;
    case StartupKind::kCancel:
      EncodeCancelRequest(p->cancel, out);
      break;
  }
  return out;
}

std::optional<Buffer> ReencodeEmpty(char type, Bytes body) {
  if (!ParseEmpty(body).ok()) {
    return std::nullopt;
  }
  Buffer out;
  EncodeEmpty(type, out);
  return out;
}

std::optional<Buffer> ReencodeNegotiate(Bytes body) {
  auto m = ParseNegotiateProtocolVersion(body);
  if (!m.ok()) {
    return std::nullopt;
  }
  Buffer b;
  PutU32(b, static_cast<uint32_t>(m->newest_minor));
  PutU32(b, static_cast<uint32_t>(m->unrecognized_options.size()));
  for (const std::string& o : m->unrecognized_options) {
    b.append(o);
    b.push_back('\0');
  }
  Buffer out = "v";
  PutU32(out, static_cast<uint32_t>(b.size() + 4));
  return out + b;
}

// The frame re-encoded by the parser its type selects, or nullopt if that parser rejects it.
std::optional<Buffer> ReencodeFrontend(char type, Bytes b) {
  switch (type) {
    case 0:
      return ReencodeStartup(b);
    case 'Q':
      return Via(b, ParseQuery, [](const Query& q, Buffer& o) { EncodeQuery(q.sql, o); });
    case 'P':
      return Via(b, ParseParse, EncodeParse);
    case 'B':
      return Via(b, ParseBind, EncodeBind);
    case 'D':
      return Via(b, ParseDescribe, EncodeDescribe);
    case 'E':
      return Via(b, ParseExecute, EncodeExecute);
    case 'C':
      return Via(b, ParseClose, EncodeClose);
    case 'S':
    case 'H':
    case 'X':
    case 'c':
      return ReencodeEmpty(type, b);
    case 'f':
      return Via(b, ParseCopyFail, EncodeCopyFail);
    case 'F':
      return Via(b, ParseFunctionCall, EncodeFunctionCall);
    default: {  // 'd' (and anything else DecodeFrame lets through: nothing)
      Buffer out;
      EncodeCopyData(b, out);
      return out;
    }
  }
}

std::optional<Buffer> ReencodeBackend(char type, Bytes b) {
  switch (type) {
    case 'R':
      return Via(b, ParseAuthentication, EncodeAuthentication);
    case 'S':
      return Via(b, ParseParameterStatus, EncodeParameterStatus);
    case 'K':
      return Via(b, ParseBackendKeyData, EncodeBackendKeyData);
    case 'Z':
      return Via(b, ParseReadyForQuery, EncodeReadyForQuery);
    case 'T':
      return Via(b, ParseRowDescription, EncodeRowDescription);
    case 'D':
      return Via(b, ParseDataRow, EncodeDataRow);
    case 'C':
      return Via(b, ParseCommandComplete,
                 [](const CommandComplete& c, Buffer& o) { EncodeCommandComplete(c.tag, o); });
    case 'E':
      return Via(b, ParseErrorFields, EncodeErrorResponse);
    case 'N':
      return Via(b, ParseErrorFields, EncodeNoticeResponse);
    case 't':
      return Via(b, ParseParameterDescription, EncodeParameterDescription);
    case 'A':
      return Via(b, ParseNotificationResponse, EncodeNotificationResponse);
    case 'G':
    case 'H':
    case 'W':
      return Via(b, ParseCopyResponse,
                 [type](const CopyResponse& c, Buffer& o) { EncodeCopyResponse(type, c, o); });
    case 'V':
      return Via(b, ParseFunctionCallResponse, EncodeFunctionCallResponse);
    case 'v':
      return ReencodeNegotiate(b);
    case 'd': {
      Buffer out;
      EncodeCopyData(b, out);
      return out;
    }
    default:  // I 1 2 3 n s c
      return ReencodeEmpty(type, b);
  }
}

// The three readings of a frontend 'p': each one that parses must round-trip.
void CheckPassword(Bytes body, const Buffer& wire) {
  if (auto v = Via(body, ParsePasswordMessage,
                   [](const std::string& p, Buffer& o) { EncodePasswordMessage(p, o); })) {
    Check(*v == wire);
  }
  if (auto v = Via(body, ParseSaslInitialResponse, EncodeSaslInitialResponse)) {
    Check(*v == wire);
  }
  Buffer out;
  EncodeSaslResponse(ParseSaslResponse(body), out);
  Check(out == wire);
}

void CheckFrame(const Frame& frame, Bytes wire_bytes, Direction direction) {
  Buffer wire(reinterpret_cast<const char*>(wire_bytes.data()), wire_bytes.size());
  absl::Status valid = ValidateFrame(frame, direction);
  if (direction == Direction::kFrontend && frame.type == 'p') {
    Check(valid.ok() == !frame.body.empty());
    CheckPassword(frame.body, wire);
    return;
  }
  std::optional<Buffer> again = direction == Direction::kFrontend
                                    ? ReencodeFrontend(frame.type, frame.body)
                                    : ReencodeBackend(frame.type, frame.body);
  Check(valid.ok() == again.has_value());
  if (again.has_value()) {
    Check(*again == wire);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  Direction direction = (data[0] & 1) != 0 ? Direction::kBackend : Direction::kFrontend;
  bool startup = direction == Direction::kFrontend && (data[0] & 2) != 0;
  Bytes input(data + 1, size - 1);
  Limits limits;
  limits.max_startup_length = 1024;
  limits.max_message_length = 8192;
  if (startup) {
    FrameResult r = DecodeStartupFrame(input, limits);
    if (r.status != DecodeStatus::kFrame) {
      return 0;
    }
    CheckFrame(r.frame, input.first(r.frame.wire_size), direction);
    input = input.subspan(r.frame.wire_size);
  }
  while (!input.empty()) {
    FrameResult r = DecodeFrame(input, direction, limits);
    if (r.status != DecodeStatus::kFrame) {
      return 0;
    }
    CheckFrame(r.frame, input.first(r.frame.wire_size), direction);
    input = input.subspan(r.frame.wire_size);
  }
  return 0;
}
