#pragma once
// Private to pgwire: a bounds-checked big-endian cursor over one message body, and the
// matching writer. Every read checks the remaining length first; errors name the message
// and the field so a client sees e.g. "Bind: parameter 3 length 1048576 exceeds remaining
// 12 bytes".

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "pgwire/framing.h"

namespace tracegate::pgwire::internal {

// This abseil build has its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), which does
// not convert from std::string_view; wrap std::string_view arguments to absl::StrCat.
inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Names a field in error messages: "parameter 3 length" is {"parameter", 3, "length"}.
struct Field {
  std::string_view name;
  int64_t index = -1;
  std::string_view part = {};

  [[nodiscard]] std::string ToString() const {
    std::string s(name);
    if (index >= 0) {
      absl::StrAppend(&s, " ", index);
    }
    if (!part.empty()) {
      absl::StrAppend(&s, " ", Sv(part));
    }
    return s;
  }
};

class Reader {
 public:
  // `message` names the message in errors ("Bind", "DataRow", ...).
  Reader(Bytes data, std::string_view message) : data_(data), message_(message) {}

  [[nodiscard]] size_t remaining() const { return data_.size() - pos_; }
  [[nodiscard]] size_t offset() const { return pos_; }
  [[nodiscard]] bool AtEnd() const { return pos_ == data_.size(); }

  [[nodiscard]] absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(Sv(message_), ": ", Sv(what)));
  }

  [[nodiscard]] absl::StatusOr<uint8_t> U8(Field field) {
    if (remaining() < 1) {
      return Truncated(1, field);
    }
    return data_[pos_++];
  }
  [[nodiscard]] absl::StatusOr<uint16_t> U16(Field field) {
    if (remaining() < 2) {
      return Truncated(2, field);
    }
    uint16_t v = static_cast<uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
    pos_ += 2;
    return v;
  }
  [[nodiscard]] absl::StatusOr<int16_t> I16(Field field) {
    auto v = U16(field);
    if (!v.ok()) {
      return v.status();
    }
    return static_cast<int16_t>(*v);
  }
  [[nodiscard]] absl::StatusOr<uint32_t> U32(Field field) {
    if (remaining() < 4) {
      return Truncated(4, field);
    }
    uint32_t v = (uint32_t{data_[pos_]} << 24) | (uint32_t{data_[pos_ + 1]} << 16) |
                 (uint32_t{data_[pos_ + 2]} << 8) | uint32_t{data_[pos_ + 3]};
    pos_ += 4;
    return v;
  }
  [[nodiscard]] absl::StatusOr<int32_t> I32(Field field) {
    auto v = U32(field);
    if (!v.ok()) {
      return v.status();
    }
    return static_cast<int32_t>(*v);
  }

  // A NUL-terminated string; the view excludes the NUL.
  [[nodiscard]] absl::StatusOr<std::string_view> CString(Field field) {
    const uint8_t* start = data_.data() + pos_;
    const void* nul = remaining() == 0 ? nullptr : std::memchr(start, 0, remaining());
    if (nul == nullptr) {
      return Error(absl::StrCat(field.ToString(), " is missing its NUL terminator at offset ",
                                data_.size()));
    }
    size_t len = static_cast<const uint8_t*>(nul) - start;
    pos_ += len + 1;
    return std::string_view(reinterpret_cast<const char*>(start), len);
  }

  [[nodiscard]] absl::StatusOr<Bytes> Take(size_t n, Field field) {
    if (n > remaining()) {
      return Error(absl::StrCat(field.ToString(), " length ", n, " exceeds remaining ", remaining(),
                                " bytes"));
    }
    Bytes out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

  // The rest of the body.
  [[nodiscard]] Bytes Rest() {
    Bytes out = data_.subspan(pos_);
    pos_ = data_.size();
    return out;
  }

  // A 16-bit count (PostgreSQL reads these unsigned) of entries each at least
  // `min_entry_size` bytes, checked against what is left so a caller may reserve it.
  [[nodiscard]] absl::StatusOr<size_t> Count16(Field field, size_t min_entry_size) {
    auto n = U16(field);
    if (!n.ok()) {
      return n.status();
    }
    TG_RETURN_IF_ERROR(CheckCount(*n, field, min_entry_size));
    return size_t{*n};
  }

  // A signed 32-bit count; negative is an error.
  [[nodiscard]] absl::StatusOr<size_t> Count32(Field field, size_t min_entry_size) {
    auto n = I32(field);
    if (!n.ok()) {
      return n.status();
    }
    if (*n < 0) {
      return Error(absl::StrCat(field.ToString(), " ", *n, " is negative"));
    }
    TG_RETURN_IF_ERROR(CheckCount(static_cast<size_t>(*n), field, min_entry_size));
    return static_cast<size_t>(*n);
  }

  // A value with an int32 length prefix; -1 is SQL NULL, anything below is an error.
  [[nodiscard]] absl::StatusOr<std::optional<Bytes>> NullableValue(Field field) {
    auto len = I32(Field{field.name, field.index, "length"});
    if (!len.ok()) {
      return len.status();
    }
    if (*len == -1) {
      return std::optional<Bytes>();
    }
    if (*len < 0) {
      return Error(absl::StrCat(field.ToString(), " length ", *len, " is negative"));
    }
    auto bytes = Take(static_cast<size_t>(*len), field);
    if (!bytes.ok()) {
      return bytes.status();
    }
    return std::optional<Bytes>(*bytes);
  }

  [[nodiscard]] absl::Status ExpectEnd() const {
    if (!AtEnd()) {
      return Error(absl::StrCat(remaining(), " trailing bytes after offset ", pos_));
    }
    return absl::OkStatus();
  }

 private:
  [[nodiscard]] absl::Status CheckCount(size_t n, Field field, size_t min_entry_size) const {
    if (min_entry_size > 0 && n > remaining() / min_entry_size) {
      return Error(absl::StrCat(field.ToString(), " ", n, " needs at least ", n * min_entry_size,
                                " bytes but only ", remaining(), " remain"));
    }
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status Truncated(size_t need, Field field) const {
    return Error(absl::StrCat("truncated reading ", field.ToString(), " at offset ", pos_,
                              ": need ", need, " bytes, ", remaining(), " remain"));
  }

  Bytes data_;
  size_t pos_ = 0;
  std::string_view message_;
};

// Appends big-endian fields to a std::string buffer.
inline void PutU8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
inline void PutU16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}
inline void PutI16(std::string& out, int16_t v) { PutU16(out, static_cast<uint16_t>(v)); }
inline void PutU32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}
inline void PutI32(std::string& out, int32_t v) { PutU32(out, static_cast<uint32_t>(v)); }
// Writes `s` and a NUL. `s` must not contain a NUL itself (the peer would cut it there).
inline void PutCString(std::string& out, std::string_view s) {
  out.append(s);
  out.push_back('\0');
}
inline void PutBytes(std::string& out, Bytes b) {
  out.append(reinterpret_cast<const char*>(b.data()), b.size());
}
inline void PutNullableValue(std::string& out, const std::optional<Bytes>& v) {
  if (!v.has_value()) {
    PutI32(out, -1);
    return;
  }
  PutI32(out, static_cast<int32_t>(v->size()));
  PutBytes(out, *v);
}

// Starts a typed message (type 0: an untyped startup packet); returns where its length
// field is, for FinishMessage.
inline size_t BeginMessage(std::string& out, char type) {
  if (type != 0) {
    out.push_back(type);
  }
  size_t length_at = out.size();
  PutU32(out, 0);
  return length_at;
}
inline void FinishMessage(std::string& out, size_t length_at) {
  uint32_t len = static_cast<uint32_t>(out.size() - length_at);
  for (int i = 0; i < 4; ++i) {
    out[length_at + i] = static_cast<char>(len >> (24 - 8 * i));
  }
}

inline Bytes AsBytes(std::string_view s) {
  return Bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string_view AsStringView(Bytes b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace tracegate::pgwire::internal
