#pragma once
// The JSONPath subset of field rules, run as a small NFA over the path of the value being
// tokenised: a state is a bit set of "next step to match", advanced once per key or array
// index, so matching costs O(steps) per value whatever the depth.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tracegate::masking {

struct PathComponent {
  std::string_view name;  // object key (decoded)
  int64_t index = -1;     // array index when is_index
  bool is_index = false;
};

struct PathStep {
  enum class Kind { kName, kWildcard, kIndex };
  Kind kind = Kind::kName;
  bool descendant = false;  // `..`: any number of components may come before this one
  std::string name;
  int64_t index = 0;
};

class PathProgram {
 public:
  // `$`, `.name`, `['name']`, `["name"]`, `[n]`, `.*`, `[*]`, `..name`, `..*`, `..[n]`.
  static absl::StatusOr<PathProgram> Parse(std::string_view path);

  uint64_t Start() const { return 1; }
  uint64_t Advance(uint64_t state, const PathComponent& c) const;
  bool Accepts(uint64_t state) const { return (state >> steps_.size()) & 1; }
  // The name the last step requires, if it is a name step (a quick reject).
  const std::vector<PathStep>& steps() const { return steps_; }

 private:
  std::vector<PathStep> steps_;
};

}  // namespace tracegate::masking
