#pragma once
// The result check for HTTP trace stores: every trace id a JSON response carries at the
// route's response_trace_id path must be the granted one. The gateway refuses (403
// "response_trace_mismatch") a response that fails it, so a store that ignores the trace id
// in the request (or a route that lists) cannot leak other traces.
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "config/config.h"

namespace tracegate::httproute {

// OK when every value at `path` in `json` is a string equal to `trace_id` and, for a path
// without [*] steps, the value is present. A path with [*] may match nothing (an empty page),
// but every element of such an array must carry the id (an element without one cannot be
// attributed). An empty `path` means the whole document is the id.
// Errors (the message says which and where, e.g. "data[3].traceId", and names no value other
// than the ids it compared, each escaped and cut after 128 bytes):
//   InvalidArgument   `json` is not valid JSON (or nests deeper than 256)
//   PermissionDenied  a value differs from `trace_id`, is not a string, is missing, a step
//                     meets a non-object / non-array, or an object on the path holds the
//                     step's key more than once (clients disagree on which one counts)
// Parses with a per-thread simdjson DOM parser; the DOM needs several times the size of
// `json` while the check runs.
absl::Status CheckResponseTrace(std::string_view json,
                                const std::vector<config::JsonPathStep>& path,
                                std::string_view trace_id);

}  // namespace tracegate::httproute
