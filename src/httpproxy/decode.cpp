#include "httpproxy/decode.h"

#include <zlib.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "common/strings.h"

namespace tracegate::httpproxy {

namespace {

// zlib's window bits: 15 + 16 reads a gzip member, 15 a zlib stream (HTTP "deflate").
constexpr int kGzipWindow = 15 + 16;
constexpr int kZlibWindow = 15;

absl::StatusOr<std::string> Inflate(std::string_view in, int window_bits, uint64_t max_bytes,
                                    std::string_view name) {
  z_stream z{};
  if (inflateInit2(&z, window_bits) != Z_OK) {
    return absl::InternalError("zlib: inflateInit2 failed");
  }
  std::string out;
  out.resize(
      static_cast<size_t>(std::min<uint64_t>(max_bytes, std::max<size_t>(in.size() * 4, 4096))));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  size_t produced = 0;
  int rc = Z_OK;
  for (;;) {
    if (produced == out.size()) {
      if (out.size() >= max_bytes) {
        // Room is exhausted: anything more is over the limit.
        unsigned char probe;
        z.next_out = &probe;
        z.avail_out = 1;
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END && z.avail_out == 1) {
          break;  // ended exactly at the limit
        }
        inflateEnd(&z);
        return absl::ResourceExhaustedError(
            Cat("the decoded response is larger than ", max_bytes, " bytes"));
      }
      out.resize(static_cast<size_t>(std::min<uint64_t>(max_bytes, out.size() * 2)));
    }
    z.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    z.avail_out = static_cast<uInt>(out.size() - produced);
    rc = inflate(&z, Z_NO_FLUSH);
    produced = out.size() - z.avail_out;
    if (rc == Z_STREAM_END) {
      break;
    }
    if (rc == Z_BUF_ERROR && z.avail_in == 0) {
      inflateEnd(&z);
      return absl::InvalidArgumentError(Cat("the ", name, " body is truncated"));
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      inflateEnd(&z);
      return absl::InvalidArgumentError(Cat("the ", name, " body is corrupt"));
    }
  }
  const bool trailing = z.avail_in != 0;
  inflateEnd(&z);
  if (trailing) {
    // A second gzip member (or junk) would be data nobody examined as one body.
    return absl::InvalidArgumentError(Cat("the ", name, " body has bytes after its end"));
  }
  out.resize(produced);
  return out;
}

}  // namespace

absl::StatusOr<std::string> DecodeBody(std::string_view content_encoding, std::string body,
                                       uint64_t max_bytes) {
  const std::string encoding = absl::AsciiStrToLower(absl::StripAsciiWhitespace(
      absl::string_view(content_encoding.data(), content_encoding.size())));
  if (encoding.empty() || encoding == "identity") {
    if (body.size() > max_bytes) {
      return absl::ResourceExhaustedError(Cat("the response is larger than ", max_bytes, " bytes"));
    }
    return body;
  }
  if (encoding == "gzip" || encoding == "x-gzip") {
    return Inflate(body, kGzipWindow, max_bytes, "gzip");
  }
  if (encoding == "deflate") {
    return Inflate(body, kZlibWindow, max_bytes, "deflate");
  }
  return absl::FailedPreconditionError(Cat("the store answered with Content-Encoding \"",
                                           encoding.substr(0, 64),
                                           "\", which tracegate cannot decode to mask"));
}

}  // namespace tracegate::httpproxy
