#include "config/schema.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tracegate::config::internal {
namespace {

// Enough for any real config; bounds memory when a generated input is wrong everywhere.
constexpr size_t kMaxStoredErrors = 1000;
constexpr size_t kMaxReportedErrors = 100;

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                  std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

void Context::Error(const YAML::Mark& mark, absl::string_view path, absl::string_view reason) {
  if (errors_.size() >= kMaxStoredErrors) {
    ++dropped_;
    return;
  }
  std::string text = source_;
  if (!mark.is_null()) {
    absl::StrAppend(&text, ":", mark.line + 1, ":", mark.column + 1);
  }
  absl::StrAppend(&text, ": ");
  if (!path.empty()) {
    absl::StrAppend(&text, path, ": ");
  }
  absl::StrAppend(&text, reason);
  errors_.push_back(Diagnostic{mark.line, mark.column, std::move(text)});
}

bool Context::CountKey(const YAML::Mark& mark) {
  ++keys_read_;
  if (keys_read_ == kMaxKeys + 1) {
    // Kept apart and reported first: the errors after it may be artifacts of stopping.
    stopped_ = absl::StrCat(source_, ":", mark.line + 1, ":", mark.column + 1,
                            ": the config has more than ", kMaxKeys,
                            " keys (counting each use of an alias); stopped reading here");
  }
  return keys_read_ <= kMaxKeys;
}

std::string Context::Report() const {
  std::vector<Diagnostic> sorted = errors_;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  size_t shown = std::min(sorted.size(), kMaxReportedErrors);
  std::vector<absl::string_view> lines;
  for (size_t i = 0; i < shown; ++i) {
    lines.push_back(sorted[i].text);
  }
  if (!stopped_.empty()) {
    lines.insert(lines.begin(), stopped_);
  }
  std::string report = absl::StrJoin(lines, "\n");
  size_t hidden = sorted.size() - shown + dropped_;
  if (hidden > 0) {
    absl::StrAppend(&report, "\n", source_, ": ", hidden, " more errors not shown");
  }
  return report;
}

YAML::Mark Context::MarkOf(const std::string& path) const {
  auto it = marks_.find(path);
  return it == marks_.end() ? YAML::Mark::null_mark() : it->second;
}

std::string Quote(absl::string_view text) {
  constexpr size_t kMaxShown = 64;
  if (text.size() > kMaxShown) {
    return absl::StrCat("\"", absl::CHexEscape(text.substr(0, kMaxShown)), "\"...");
  }
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

std::string ChildPath(absl::string_view parent, absl::string_view key) {
  return parent.empty() ? std::string(key) : absl::StrCat(parent, ".", key);
}

std::string ElementPath(absl::string_view parent, size_t index) {
  return absl::StrCat(parent, "[", index, "]");
}

absl::string_view DescribeKind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "an empty value";
  }
  return "an unknown node";
}

const std::string* ScalarText(const Item& item, absl::string_view what, Context& ctx) {
  if (!item.yaml.IsScalar()) {
    ctx.Error(item.mark, item.path,
              absl::StrCat("expected ", what, ", got ", DescribeKind(item.yaml)));
    return nullptr;
  }
  return &item.yaml.Scalar();
}

std::string UnknownKeyReason(absl::string_view key, const std::vector<absl::string_view>& known) {
  absl::string_view best;
  size_t best_distance = 3;  // suggest only within an edit distance of 2
  for (absl::string_view candidate : known) {
    size_t distance = EditDistance(key, candidate);
    if (distance < best_distance && distance < candidate.size()) {
      best = candidate;
      best_distance = distance;
    }
  }
  std::string reason = absl::StrCat("unknown key ", Quote(key));
  if (!best.empty()) {
    absl::StrAppend(&reason, " (did you mean \"", best, "\"?)");
  }
  return reason;
}

}  // namespace tracegate::config::internal
