#pragma once
// Content-Encoding of an HTTP trace store's response, undone so masking can read the body.
// Only encodings zlib reads are accepted (gzip, deflate, identity); anything else (br, zstd,
// compress, stacked encodings) is refused: a body masking cannot read is never forwarded.
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tracegate::httpproxy {

// Decodes `body` sent with `content_encoding` (the header's value, "" when absent) into at most
// `max_bytes` bytes. Errors:
//   FailedPrecondition  an encoding other than identity, gzip, x-gzip or deflate
//   InvalidArgument     the body is not valid in its encoding (truncated, corrupt, trailing
//                       bytes after the gzip member)
//   ResourceExhausted   the decoded body is larger than max_bytes (a decompression bomb stops
//                       there, never allocating more)
absl::StatusOr<std::string> DecodeBody(std::string_view content_encoding, std::string body,
                                       uint64_t max_bytes);

}  // namespace tracegate::httpproxy
