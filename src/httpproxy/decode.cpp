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
// Output past the buffer goes here and is only counted.
constexpr size_t kScratchBytes = 16 * 1024;

struct Inflated {
  std::string body;    // complete when total == body.size()
  uint64_t total = 0;  // what the stream decodes to
};

// Inflates `in` into a buffer of exactly `capacity` bytes, allocated once; what does not fit
// is decoded into a scratch area and only counted, so a second pass can allocate the exact
// size. Stops with ResourceExhausted as soon as more than `max_bytes` were decoded (a bomb
// costs at most the limit), and tells a stream that ends early (truncated) from one that is
// larger than the limit: only output past the limit makes a body too large.
absl::StatusOr<Inflated> InflateInto(std::string_view in, int window_bits, uint64_t capacity,
                                     uint64_t max_bytes, std::string_view name) {
  z_stream z{};
  if (inflateInit2(&z, window_bits) != Z_OK) {
    return absl::InternalError("zlib: inflateInit2 failed");
  }
  Inflated out;
  // An empty std::string's first allocation is exactly the size asked for: no doubling, and
  // never an old and a new buffer alive together.
  out.body.resize(static_cast<size_t>(capacity));
  char scratch[kScratchBytes];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  absl::Status failed;
  for (;;) {
    const bool into_body = out.total < capacity;
    z.next_out = into_body ? reinterpret_cast<Bytef*>(out.body.data() + out.total)
                           : reinterpret_cast<Bytef*>(scratch);
    z.avail_out = into_body ? static_cast<uInt>(std::min<uint64_t>(capacity - out.total, 1u << 30))
                            : static_cast<uInt>(sizeof scratch);
    const uInt room = z.avail_out;
    const int rc = inflate(&z, Z_NO_FLUSH);
    out.total += room - z.avail_out;
    if (out.total > max_bytes) {
      failed = absl::ResourceExhaustedError(
          Cat("the decoded response is larger than ", max_bytes, " bytes"));
      break;
    }
    if (rc == Z_STREAM_END) {
      if (z.avail_in != 0) {
        // A second gzip member (or junk) would be data nobody examined as one body.
        failed = absl::InvalidArgumentError(Cat("the ", name, " body has bytes after its end"));
      }
      break;
    }
    if (rc == Z_BUF_ERROR && z.avail_in == 0) {
      // Every byte decoded and the stream has not ended: cut off, at or under the limit.
      failed = absl::InvalidArgumentError(Cat("the ", name, " body is truncated"));
      break;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      failed = absl::InvalidArgumentError(Cat("the ", name, " body is corrupt"));
      break;
    }
  }
  inflateEnd(&z);
  if (!failed.ok()) {
    return failed;
  }
  if (out.total < capacity) {
    out.body.resize(static_cast<size_t>(out.total));  // shrinks in place
  }
  return out;
}

// A gzip member ends with ISIZE, its decoded size mod 2^32 (RFC 1952): a hint worth one
// exact allocation. zlib checks it against the output, so an honest store costs one pass; a
// wrong hint costs a counting pass, never more memory.
uint64_t GzipSizeHint(std::string_view in, uint64_t max_bytes) {
  if (in.size() < 18) {
    return 0;
  }
  const auto* end = reinterpret_cast<const unsigned char*>(in.data() + in.size());
  const uint64_t isize = uint64_t{end[-4]} | uint64_t{end[-3]} << 8 | uint64_t{end[-2]} << 16 |
                         uint64_t{end[-1]} << 24;
  return std::min(isize, max_bytes);
}

absl::StatusOr<std::string> Inflate(std::string_view in, int window_bits, uint64_t max_bytes,
                                    std::string_view name) {
  const uint64_t hint = window_bits == kGzipWindow ? GzipSizeHint(in, max_bytes) : 0;
  absl::StatusOr<Inflated> first = InflateInto(in, window_bits, hint, max_bytes, name);
  if (!first.ok()) {
    return first.status();
  }
  if (first->total == first->body.size()) {
    return std::move(first->body);
  }
  // The stream is valid and within the limit, and now its size is known.
  const uint64_t size = first->total;
  first->body = std::string();
  absl::StatusOr<Inflated> second = InflateInto(in, window_bits, size, max_bytes, name);
  if (!second.ok()) {
    return second.status();
  }
  return std::move(second->body);
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
