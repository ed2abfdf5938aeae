#include "masking/json_path.h"

#include <charconv>

#include "common/strings.h"

namespace tracegate::masking {
namespace {

absl::Status Bad(std::string_view path, size_t at, std::string_view what) {
  return absl::InvalidArgumentError(Cat("JSON path '", path, "' at ", at, ": ", what));
}

}  // namespace

absl::StatusOr<PathProgram> PathProgram::Parse(std::string_view path) {
  PathProgram p;
  if (path.empty() || path[0] != '$') {
    return Bad(path, 0, "must start with '$'");
  }
  size_t i = 1;
  while (i < path.size()) {
    PathStep step;
    if (path.substr(i, 2) == "..") {
      step.descendant = true;
      i += 2;
      if (i < path.size() && path[i] == '[') {
        // `..[n]` / `..['name']`: handled by the bracket branch below.
      } else {
        size_t end = path.find_first_of(".[", i);
        std::string_view name = path.substr(i, end == std::string_view::npos ? end : end - i);
        if (name.empty()) {
          return Bad(path, i, "expected a name or '*' after '..'");
        }
        if (name == "*") {
          step.kind = PathStep::Kind::kWildcard;
        } else {
          step.name = std::string(name);
        }
        i += name.size();
        p.steps_.push_back(std::move(step));
        continue;
      }
    }
    if (path[i] == '.') {
      ++i;
      size_t end = path.find_first_of(".[", i);
      std::string_view name = path.substr(i, end == std::string_view::npos ? end : end - i);
      if (name.empty()) {
        return Bad(path, i, "expected a name or '*' after '.'");
      }
      if (name == "*") {
        step.kind = PathStep::Kind::kWildcard;
      } else {
        step.name = std::string(name);
      }
      i += name.size();
    } else if (path[i] == '[') {
      size_t close = path.find(']', i);
      if (close == std::string_view::npos) {
        return Bad(path, i, "unterminated '['");
      }
      std::string_view inner = path.substr(i + 1, close - i - 1);
      if (inner == "*") {
        step.kind = PathStep::Kind::kWildcard;
      } else if (inner.size() >= 2 && (inner[0] == '\'' || inner[0] == '"') &&
                 inner.back() == inner[0]) {
        step.name = std::string(inner.substr(1, inner.size() - 2));
      } else if (!inner.empty() && inner.size() <= 18 &&
                 inner.find_first_not_of("0123456789") == std::string_view::npos) {
        step.kind = PathStep::Kind::kIndex;
        std::from_chars(inner.data(), inner.data() + inner.size(), step.index);
      } else {
        return Bad(path, i, "expected [*], [n] or ['name']");
      }
      i = close + 1;
    } else {
      return Bad(path, i, "expected '.', '..' or '['");
    }
    p.steps_.push_back(std::move(step));
  }
  if (p.steps_.size() > 62) {
    return Bad(path, 0, "more than 62 steps");
  }
  return p;
}

uint64_t PathProgram::Advance(uint64_t state, const PathComponent& c) const {
  uint64_t next = 0;
  for (size_t i = 0; i < steps_.size(); ++i) {
    if (!((state >> i) & 1)) {
      continue;
    }
    const PathStep& s = steps_[i];
    if (s.descendant) {
      next |= uint64_t{1} << i;
    }
    bool match = false;
    switch (s.kind) {
      case PathStep::Kind::kWildcard:
        match = true;
        break;
      case PathStep::Kind::kName:
        match = !c.is_index && c.name == s.name;
        break;
      case PathStep::Kind::kIndex:
        match = c.is_index && c.index == s.index;
        break;
    }
    if (match) {
      next |= uint64_t{1} << (i + 1);
    }
  }
  return next;
}

}  // namespace tracegate::masking
