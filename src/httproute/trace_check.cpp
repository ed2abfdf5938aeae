#include "httproute/trace_check.h"

#include <simdjson.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/strings.h"
#include "httproute/message_text.h"

namespace tracegate::httproute {
namespace {

constexpr size_t kMaxDepth = 256;
// A thread's parser keeps its buffers for the next response up to this document size; a
// larger one's (the DOM takes several times the document) are freed after the check.
constexpr size_t kKeepCapacity = size_t{1} << 20;

simdjson::dom::parser& ThreadParser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

// Walks `path` through a parsed response; on the first failure says where, by step keys and
// the indices of the array elements it was in ("data[3].items[0].traceId").
class Walker {
 public:
  Walker(const std::vector<config::JsonPathStep>& path, std::string_view trace_id)
      : path_(path), trace_id_(trace_id), indices_(path.size(), 0) {}

  absl::Status Walk(simdjson::dom::element value, size_t step) {
    if (step == path_.size()) {
      return CheckValue(value);
    }
    const config::JsonPathStep& s = path_[step];
    simdjson::dom::object object;
    if (value.get_object().get(object) != simdjson::SUCCESS) {
      return absl::PermissionDeniedError(
          step == 0 ? std::string("response is not a JSON object")
                    : Cat("response value at ", Describe(step, step), " is not an object"));
    }
    // simdjson keeps every member of an object, duplicates included; a client or a store
    // could take either one, so a duplicated key on the path attributes nothing.
    simdjson::dom::element member;
    int found = 0;
    for (simdjson::dom::key_value_pair field : object) {
      if (field.key == s.key) {
        member = field.value;
        ++found;
      }
    }
    if (found == 0) {
      return absl::PermissionDeniedError(
          Cat("response has no trace id at ", Describe(path_.size(), step)));
    }
    if (found > 1) {
      return absl::PermissionDeniedError(Cat("response has a duplicate key at ", KeyPath(step)));
    }
    if (!s.each) {
      return Walk(member, step + 1);
    }
    simdjson::dom::array array;
    if (member.get_array().get(array) != simdjson::SUCCESS) {
      return absl::PermissionDeniedError(
          Cat("response value at ", KeyPath(step), " is not an array"));
    }
    size_t index = 0;
    for (simdjson::dom::element element : array) {
      indices_[step] = index++;
      if (absl::Status status = Walk(element, step + 1); !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status CheckValue(simdjson::dom::element value) const {
    const std::string where =
        path_.empty() ? std::string("the top level") : Describe(path_.size(), path_.size());
    std::string_view id;
    if (value.get_string().get(id) != simdjson::SUCCESS) {
      return absl::PermissionDeniedError(Cat("response trace id at ", where, " is not a string"));
    }
    if (id != trace_id_) {
      return absl::PermissionDeniedError(Cat("response trace id at ", where, " is ",
                                             QuoteForMessage(id), ", not the granted trace ",
                                             QuoteForMessage(trace_id_)));
    }
    return absl::OkStatus();
  }

  // The first `steps` steps; array steps before `known` show the current index, later ones
  // "[*]".
  std::string Describe(size_t steps, size_t known) const {
    std::string out;
    for (size_t i = 0; i < steps; ++i) {
      if (i > 0) {
        out += '.';
      }
      out += EscapeForMessage(path_[i].key);
      if (path_[i].each) {
        out += i < known ? Cat("[", indices_[i], "]") : std::string("[*]");
      }
    }
    return out;
  }

  // The steps before `step` with their current indices, then the key of `step` ("data[3].items").
  std::string KeyPath(size_t step) const {
    std::string out = Describe(step, step);
    if (step > 0) {
      out += '.';
    }
    out += EscapeForMessage(path_[step].key);
    return out;
  }

  const std::vector<config::JsonPathStep>& path_;
  std::string_view trace_id_;
  std::vector<size_t> indices_;
};

absl::Status ParseError(simdjson::error_code error) {
  if (error == simdjson::DEPTH_ERROR) {
    return absl::InvalidArgumentError(
        Cat("response JSON nests deeper than ", kMaxDepth, " levels"));
  }
  // simdjson's messages are fixed texts, never document content.
  return absl::InvalidArgumentError(
      Cat("response is not valid JSON: ", simdjson::error_message(error)));
}

}  // namespace

absl::Status CheckResponseTrace(std::string_view json,
                                const std::vector<config::JsonPathStep>& path,
                                std::string_view trace_id) {
  if (json.empty()) {
    // Also keeps a null data() (a default string_view) away from simdjson's memcpy.
    return absl::InvalidArgumentError("response is not valid JSON: the body is empty");
  }
  simdjson::dom::parser& parser = ThreadParser();
  if (parser.capacity() == 0) {
    // The depth limit is set here once per parser; later growth keeps it.
    if (simdjson::error_code error =
            parser.allocate(std::max(json.size(), size_t{4096}), kMaxDepth);
        error != simdjson::SUCCESS) {
      return ParseError(error);
    }
  }
  absl::Status status;
  simdjson::dom::element root;
  if (simdjson::error_code error = parser.parse(json.data(), json.size()).get(root);
      error != simdjson::SUCCESS) {
    status = ParseError(error);
  } else {
    status = Walker(path, trace_id).Walk(root, 0);
  }
  if (parser.capacity() > kKeepCapacity) {
    parser = simdjson::dom::parser();
  }
  return status;
}

}  // namespace tracegate::httproute
