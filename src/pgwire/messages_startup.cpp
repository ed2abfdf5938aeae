// Startup-phase packets and the authentication exchange.
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "pgwire/messages.h"
#include "pgwire/reader.h"

namespace tracegate::pgwire {

using internal::AsBytes;
using internal::AsStringView;
using internal::Field;
using internal::Reader;

const std::string* StartupMessage::Find(std::string_view name) const {
  for (const auto& [key, value] : parameters) {
    if (key == name) {
      return &value;
    }
  }
  return nullptr;
}

namespace {

absl::StatusOr<StartupMessage> ParseStartupParameters(Reader& r, uint32_t version) {
  StartupMessage msg;
  msg.protocol_version = version;
  // name\0value\0 pairs, ended by an empty name (a lone NUL), which must be the last byte.
  for (int64_t i = 1;; ++i) {
    TG_ASSIGN_OR_RETURN(std::string_view name, r.CString(Field{"parameter", i, "name"}));
    if (name.empty()) {
      break;
    }
    TG_ASSIGN_OR_RETURN(std::string_view value, r.CString(Field{"parameter", i, "value"}));
    if (msg.Find(name) != nullptr) {
      return r.Error(absl::StrCat("duplicate parameter \"", internal::Sv(name), "\""));
    }
    msg.parameters.emplace_back(std::string(name), std::string(value));
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  // Whether `user` and `database` are present and non-empty is the session's decision
  // (it answers 28000, not a protocol violation): see pgproxy/session.cpp.
  return msg;
}

std::string_view AuthCodeName(int32_t code) {
  switch (code) {
    case 2:
      return "Kerberos V5";
    case 6:
      return "SCM credentials";
    case 7:
      return "GSSAPI";
    case 8:
      return "GSSAPI continue";
    case 9:
      return "SSPI";
    default:
      return "unknown";
  }
}

}  // namespace

absl::StatusOr<StartupPacket> ParseStartupPacket(Bytes body) {
  Reader r(body, "StartupMessage");
  TG_ASSIGN_OR_RETURN(uint32_t code, r.U32(Field{"protocol version"}));  // >= 4 bytes
  StartupPacket packet;
  switch (code) {
    case kSslRequestCode:
      packet.kind = StartupKind::kSslRequest;
      break;
    case kGssEncRequestCode:
      packet.kind = StartupKind::kGssEncRequest;
      break;
    case kCancelRequestCode: {
      Reader c(body, "CancelRequest");
      (void)c.U32(Field{"request code"});
      packet.kind = StartupKind::kCancel;
      TG_ASSIGN_OR_RETURN(packet.cancel.process_id, c.I32(Field{"process id"}));
      TG_ASSIGN_OR_RETURN(packet.cancel.secret_key, c.I32(Field{"secret key"}));
      TG_RETURN_IF_ERROR(c.ExpectEnd());
      return packet;
    }
    default:
      if (code != kProtocolVersion3) {
        return r.Error(absl::StrCat("unsupported protocol version ", code >> 16, ".", code & 0xffff,
                                    " (only 3.0 is supported)"));
      }
      packet.kind = StartupKind::kStartup;
      TG_ASSIGN_OR_RETURN(packet.startup, ParseStartupParameters(r, code));
      return packet;
  }
  // SSLRequest / GSSENCRequest carry nothing after the code.
  if (!r.AtEnd()) {
    return absl::InvalidArgumentError(
        absl::StrCat(packet.kind == StartupKind::kSslRequest ? "SSLRequest" : "GSSENCRequest", ": ",
                     r.remaining(), " trailing bytes after the request code"));
  }
  return packet;
}

void EncodeStartupMessage(const StartupMessage& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, 0);
  internal::PutU32(out, msg.protocol_version);
  for (const auto& [name, value] : msg.parameters) {
    internal::PutCString(out, name);
    internal::PutCString(out, value);
  }
  internal::PutU8(out, 0);
  internal::FinishMessage(out, at);
}

void EncodeSslRequest(Buffer& out) {
  size_t at = internal::BeginMessage(out, 0);
  internal::PutU32(out, kSslRequestCode);
  internal::FinishMessage(out, at);
}

void EncodeCancelRequest(const CancelRequest& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, 0);
  internal::PutU32(out, kCancelRequestCode);
  internal::PutI32(out, msg.process_id);
  internal::PutI32(out, msg.secret_key);
  internal::FinishMessage(out, at);
}

// ---- Authentication ----------------------------------------------------------------------

absl::StatusOr<Authentication> ParseAuthentication(Bytes body) {
  Reader r(body, "Authentication");
  TG_ASSIGN_OR_RETURN(int32_t code, r.I32(Field{"code"}));
  Authentication msg;
  switch (code) {
    case static_cast<int32_t>(AuthCode::kOk):
    case static_cast<int32_t>(AuthCode::kCleartextPassword):
      break;
    case static_cast<int32_t>(AuthCode::kMd5Password): {
      TG_ASSIGN_OR_RETURN(Bytes salt, r.Take(4, Field{"md5 salt"}));
      msg.md5_salt = std::string(AsStringView(salt));
      break;
    }
    case static_cast<int32_t>(AuthCode::kSasl):
      for (int64_t i = 1;; ++i) {
        TG_ASSIGN_OR_RETURN(std::string_view mech, r.CString(Field{"SASL mechanism", i}));
        if (mech.empty()) {
          break;
        }
        msg.mechanisms.emplace_back(mech);
      }
      if (msg.mechanisms.empty()) {
        return r.Error("SASL offers no mechanisms");
      }
      break;
    case static_cast<int32_t>(AuthCode::kSaslContinue):
    case static_cast<int32_t>(AuthCode::kSaslFinal):
      msg.data = std::string(AsStringView(r.Rest()));
      break;
    default:
      return r.Error(absl::StrCat("unsupported authentication method ",
                                  internal::Sv(AuthCodeName(code)), " (code ", code, ")"));
  }
  msg.code = static_cast<AuthCode>(code);
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

void EncodeAuthentication(const Authentication& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, backend::kAuthentication);
  internal::PutI32(out, static_cast<int32_t>(msg.code));
  switch (msg.code) {
    case AuthCode::kMd5Password:
      out.append(msg.md5_salt);
      break;
    case AuthCode::kSasl:
      for (const std::string& mech : msg.mechanisms) {
        internal::PutCString(out, mech);
      }
      internal::PutU8(out, 0);
      break;
    case AuthCode::kSaslContinue:
    case AuthCode::kSaslFinal:
      out.append(msg.data);
      break;
    default:
      break;
  }
  internal::FinishMessage(out, at);
}

absl::StatusOr<std::string> ParsePasswordMessage(Bytes body) {
  Reader r(body, "PasswordMessage");
  TG_ASSIGN_OR_RETURN(std::string_view password, r.CString(Field{"password"}));
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return std::string(password);
}

absl::StatusOr<SaslInitialResponse> ParseSaslInitialResponse(Bytes body) {
  Reader r(body, "SASLInitialResponse");
  SaslInitialResponse msg;
  TG_ASSIGN_OR_RETURN(std::string_view mech, r.CString(Field{"mechanism"}));
  if (mech.empty()) {
    return r.Error("empty mechanism name");
  }
  msg.mechanism = std::string(mech);
  TG_ASSIGN_OR_RETURN(std::optional<Bytes> data, r.NullableValue(Field{"data"}));
  if (data.has_value()) {
    msg.data = std::string(AsStringView(*data));
  }
  TG_RETURN_IF_ERROR(r.ExpectEnd());
  return msg;
}

std::string_view ParseSaslResponse(Bytes body) { return AsStringView(body); }

void EncodePasswordMessage(std::string_view password, Buffer& out) {
  size_t at = internal::BeginMessage(out, frontend::kPassword);
  internal::PutCString(out, password);
  internal::FinishMessage(out, at);
}

void EncodeSaslInitialResponse(const SaslInitialResponse& msg, Buffer& out) {
  size_t at = internal::BeginMessage(out, frontend::kPassword);
  internal::PutCString(out, msg.mechanism);
  if (msg.data.has_value()) {
    internal::PutNullableValue(out, AsBytes(*msg.data));
  } else {
    internal::PutNullableValue(out, std::nullopt);
  }
  internal::FinishMessage(out, at);
}

void EncodeSaslResponse(std::string_view data, Buffer& out) {
  size_t at = internal::BeginMessage(out, frontend::kPassword);
  out.append(data);
  internal::FinishMessage(out, at);
}

}  // namespace tracegate::pgwire
