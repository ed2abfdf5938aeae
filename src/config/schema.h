#pragma once
// Private to the config module: the machinery behind the key tables in config.cpp.
//
// A Table lists the keys of one YAML map. Each Key says whether it is required, whether a
// reload may change it, how its value is parsed and what it defaults to. ParseMap walks a
// YAML map against a table and reports unknown, duplicate, missing and malformed keys into
// a Context, which collects every error (with its position) instead of stopping at the first.

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tracegate::config::internal {

enum class Need { kRequired, kOptional };
inline constexpr Need kRequired = Need::kRequired;
inline constexpr Need kOptional = Need::kOptional;

// Whether a reload may swap in a new value, or the process must restart to apply it.
enum class Reload { kReloadable, kRestart };
inline constexpr Reload kReloadable = Reload::kReloadable;
inline constexpr Reload kRestart = Reload::kRestart;

// Collects errors as "<source>:<line>:<column>: <key path>: <reason>".
class Context {
 public:
  Context(std::string source, std::filesystem::path base_dir, bool secrets_required = true)
      : source_(std::move(source)),
        base_dir_(std::move(base_dir)),
        secrets_required_(secrets_required) {}

  // False for tools that read the config but never use its secrets (`tracegate audit`): a
  // secret file or variable that cannot be read is then left empty instead of an error.
  bool secrets_required() const { return secrets_required_; }

  // `reason` must never contain secret material; callers quote only non-secret values.
  void Error(const YAML::Mark& mark, absl::string_view path, absl::string_view reason);
  bool ok() const { return errors_.empty() && dropped_ == 0 && stopped_.empty(); }
  // Errors reported so far: a caller compares it before and after a part to tell whether
  // that part had any.
  size_t error_count() const { return errors_.size() + dropped_; }
  // Every error, ordered by position, one per line.
  std::string Report() const;

  // Remembers where the value of `path` sits, for checks that span several keys.
  void Remember(const std::string& path, const YAML::Mark& mark) { marks_[path] = mark; }
  YAML::Mark MarkOf(const std::string& path) const;

  // Counts one more key read. Aliases let a small file name a huge tree (a list of 256 aliases
  // to a map holding 10000 aliases...), so reading stops, with one error, after kMaxKeys.
  bool CountKey(const YAML::Mark& mark);
  bool exhausted() const { return keys_read_ > kMaxKeys; }

  // Relative file paths in the config resolve against this directory.
  const std::filesystem::path& base_dir() const { return base_dir_; }

 private:
  struct Diagnostic {
    int line;
    int column;
    std::string text;
  };
  std::string source_;
  std::filesystem::path base_dir_;
  bool secrets_required_ = true;
  std::vector<Diagnostic> errors_;
  static constexpr size_t kMaxKeys = 200000;
  size_t dropped_ = 0;  // beyond kMaxStoredErrors
  size_t keys_read_ = 0;
  std::string stopped_;  // set once kMaxKeys is exceeded
  std::map<std::string, YAML::Mark, std::less<>> marks_;
};

// A YAML value and where it is: its key path ("connections[0].backend.tls") and position
// (the value's, or its key's when the value is empty).
struct Item {
  YAML::Node yaml;
  std::string path;
  YAML::Mark mark;
};

// `"text"`, C-escaped and cut to a readable length. Never pass secret material.
std::string Quote(absl::string_view text);
std::string ChildPath(absl::string_view parent, absl::string_view key);
std::string ElementPath(absl::string_view parent, size_t index);
// "a map", "a list", "an empty value", "a scalar": for "expected X, got Y".
absl::string_view DescribeKind(const YAML::Node& node);
// The item's text if it is a scalar; otherwise reports "expected <what>, got <kind>".
const std::string* ScalarText(const Item& item, absl::string_view what, Context& ctx);
// `unknown key "worker" (did you mean "workers"?)`.
std::string UnknownKeyReason(absl::string_view key, const std::vector<absl::string_view>& known);

// How one kind of scalar is read. `parse` returns the value or the reason it is invalid.
template <typename V>
struct ScalarType {
  std::string what;  // completes "expected ...", e.g. "a duration like 30s"
  std::function<absl::StatusOr<V>(const std::string& text, const Context& ctx)> parse;
};

struct NoExtra {};

// One key of a YAML map whose contents land in a T. `Extra` holds values that several keys
// of the map combine into one field (e.g. the password sources of a backend).
template <typename T, typename Extra>
struct Key {
  absl::string_view name;
  Need need = kOptional;
  Reload reload = kReloadable;
  std::function<void(const Item& value, T&, Extra&, Context&)> parse = {};
  std::function<void(T&, Extra&)> apply_default = {};  // when an optional key is absent
  // Appends to `out` the paths under this key that differ and need a restart.
  std::function<void(const T& before, const T& after, const std::string& path,
                     std::vector<std::string>& out)>
      diff = {};
};

template <typename T, typename Extra = NoExtra>
struct Table {
  std::vector<Key<T, Extra>> keys;
  // Checks spanning several keys of the map; runs once every key has been parsed.
  std::function<void(const Item& map, T&, Extra&, Context&)> check = {};
};

template <typename T, typename Extra>
void ApplyDefaults(const Table<T, Extra>& table, T& out) {
  Extra extra;
  for (const auto& key : table.keys) {
    if (key.apply_default) {
      key.apply_default(out, extra);
    }
  }
}

template <typename T, typename Extra>
void ParseMap(const Table<T, Extra>& table, const Item& map, T& out, Extra& extra, Context& ctx) {
  if (!map.yaml.IsMap()) {
    ctx.Error(map.mark, map.path, "expected a map, got " + std::string(DescribeKind(map.yaml)));
    return;
  }
  std::vector<bool> seen(table.keys.size(), false);
  for (const auto& entry : map.yaml) {
    const YAML::Node& key = entry.first;
    if (!ctx.CountKey(key.Mark())) {
      return;
    }
    if (!key.IsScalar()) {
      ctx.Error(key.Mark(), map.path,
                "keys must be plain names, got " + std::string(DescribeKind(key)));
      continue;
    }
    const std::string& name = key.Scalar();
    size_t index = 0;
    while (index < table.keys.size() && table.keys[index].name != name) {
      ++index;
    }
    if (index == table.keys.size()) {
      std::vector<absl::string_view> known;
      for (const auto& k : table.keys) {
        known.push_back(k.name);
      }
      ctx.Error(key.Mark(), map.path, UnknownKeyReason(name, known));
      continue;
    }
    std::string path = ChildPath(map.path, name);
    if (seen[index]) {
      YAML::Mark first = ctx.MarkOf(path);
      ctx.Error(key.Mark(), map.path,
                "duplicate key " + Quote(name) + " (first set on line " +
                    std::to_string(first.line + 1) + ")");
      continue;
    }
    seen[index] = true;
    const YAML::Node& value = entry.second;
    Item item{value, std::move(path), value.IsNull() ? key.Mark() : value.Mark()};
    ctx.Remember(item.path, item.mark);
    table.keys[index].parse(item, out, extra, ctx);
  }
  for (size_t i = 0; i < table.keys.size(); ++i) {
    const auto& key = table.keys[i];
    if (seen[i]) {
      continue;
    }
    if (key.need == kRequired) {
      ctx.Error(map.mark, ChildPath(map.path, key.name), "missing required key");
    } else if (key.apply_default) {
      key.apply_default(out, extra);
    }
  }
  if (table.check) {
    table.check(map, out, extra, ctx);
  }
}

template <typename T, typename Extra>
void DiffMap(const Table<T, Extra>& table, const T& before, const T& after, const std::string& path,
             std::vector<std::string>& out) {
  for (const auto& key : table.keys) {
    if (key.diff) {
      key.diff(before, after, ChildPath(path, key.name), out);
    }
  }
}

// Builders for the rows of a Table<T, Extra>. A scalar key's member may belong to T or to
// Extra; only members of T are compared by RestartRequiredChanges.
template <typename T, typename Extra = NoExtra>
struct Keys {
  using Row = Key<T, Extra>;

  template <typename Owner, typename V>
  static Row Required(absl::string_view name, V Owner::*member, Reload reload,
                      ScalarType<std::type_identity_t<V>> type) {
    return Row{.name = name,
               .need = kRequired,
               .reload = reload,
               .parse = ScalarParser(member, std::move(type)),
               .apply_default = nullptr,
               .diff = Differ(member, reload)};
  }

  template <typename Owner, typename V>
  static Row Optional(absl::string_view name, V Owner::*member, std::type_identity_t<V> fallback,
                      Reload reload, ScalarType<std::type_identity_t<V>> type) {
    return Row{
        .name = name,
        .need = kOptional,
        .reload = reload,
        .parse = ScalarParser(member, std::move(type)),
        .apply_default = [member, fallback](T& t, Extra& e) { Field(t, e, member) = fallback; },
        .diff = Differ(member, reload)};
  }

  // A key that is validated but stored nowhere (e.g. a connection's `type` while only one
  // type exists).
  template <typename V>
  static Row Checked(absl::string_view name, ScalarType<V> type) {
    return Row{.name = name,
               .need = kOptional,
               .reload = kRestart,
               .parse =
                   [type = std::move(type)](const Item& item, T&, Extra&, Context& ctx) {
                     if (const std::string* text = ScalarText(item, type.what, ctx)) {
                       absl::StatusOr<V> v = type.parse(*text, ctx);
                       if (!v.ok()) {
                         ctx.Error(item.mark, item.path, v.status().message());
                       }
                     }
                   },
               .apply_default = nullptr,
               .diff = nullptr};
  }

  // A nested map parsed with its own table.
  template <typename S, typename SExtra>
  static Row Section(absl::string_view name, Need need, S T::*member,
                     const Table<S, SExtra>& (*table)()) {
    return Row{
        .name = name,
        .need = need,
        .reload = kReloadable,  // per key of the section
        .parse =
            [member, table](const Item& item, T& t, Extra&, Context& ctx) {
              SExtra extra;
              ParseMap(table(), item, t.*member, extra, ctx);
            },
        .apply_default = [member, table](T& t, Extra&) { ApplyDefaults(table(), t.*member); },
        .diff =
            [member, table](const T& a, const T& b, const std::string& path,
                            std::vector<std::string>& out) {
              DiffMap(table(), a.*member, b.*member, path, out);
            }};
  }

  // A list of maps, each parsed with `table`. With `identity`, RestartRequiredChanges matches
  // elements by it and reports added or removed ones; without, the list is reloadable.
  template <typename E, typename EExtra>
  static Row List(absl::string_view name, Need need, std::vector<E> T::*member,
                  const Table<E, EExtra>& (*table)(), size_t min_size, size_t max_size,
                  std::string (*identity)(const std::type_identity_t<E>&)) {
    Row row{.name = name, .need = need, .reload = identity ? kRestart : kReloadable};
    row.parse = [member, table, min_size, max_size](const Item& item, T& t, Extra&, Context& ctx) {
      if (!item.yaml.IsSequence()) {
        ctx.Error(item.mark, item.path,
                  "expected a list, got " + std::string(DescribeKind(item.yaml)));
        return;
      }
      if (item.yaml.size() < min_size) {
        ctx.Error(
            item.mark, item.path,
            "needs at least " + std::to_string(min_size) + " entr" + (min_size == 1 ? "y" : "ies"));
        return;
      }
      if (item.yaml.size() > max_size) {
        ctx.Error(item.mark, item.path,
                  "has " + std::to_string(item.yaml.size()) + " entries, at most " +
                      std::to_string(max_size) + " are allowed");
        return;
      }
      std::vector<E>& list = t.*member;
      list.clear();
      for (const YAML::Node& element : item.yaml) {
        if (ctx.exhausted()) {
          return;
        }
        Item sub{element, ElementPath(item.path, list.size()),
                 element.IsNull() ? item.mark : element.Mark()};
        list.emplace_back();
        EExtra extra;
        ParseMap(table(), sub, list.back(), extra, ctx);
      }
    };
    row.apply_default = [member](T& t, Extra&) { (t.*member).clear(); };
    if (identity) {
      row.diff = [member, table, identity](const T& a, const T& b, const std::string& path,
                                           std::vector<std::string>& out) {
        DiffListByIdentity(table(), a.*member, b.*member, identity, path, out);
      };
    }
    return row;
  }

  // A list of scalars, each parsed with `element` (e.g. `groups: [ai-agents, sre]`). A single
  // scalar is not taken for a one-element list: that is how `groups: a, b` would be misread.
  template <typename Owner>
  static Row Strings(absl::string_view name, std::vector<std::string> Owner::*member,
                     std::vector<std::string> fallback, Reload reload,
                     ScalarType<std::string> element, size_t max_size) {
    Row row{.name = name, .need = kOptional, .reload = reload};
    row.parse = [member, element = std::move(element), max_size](const Item& item, T& t, Extra& e,
                                                                 Context& ctx) {
      if (!item.yaml.IsSequence()) {
        ctx.Error(
            item.mark, item.path,
            "expected a list of " + element.what + ", got " + std::string(DescribeKind(item.yaml)));
        return;
      }
      if (item.yaml.size() > max_size) {
        ctx.Error(item.mark, item.path,
                  "has " + std::to_string(item.yaml.size()) + " entries, at most " +
                      std::to_string(max_size) + " are allowed");
        return;
      }
      std::vector<std::string>& list = Field(t, e, member);
      list.clear();
      for (const YAML::Node& node : item.yaml) {
        if (!ctx.CountKey(node.Mark())) {
          return;
        }
        Item sub{node, ElementPath(item.path, list.size()),
                 node.IsNull() ? item.mark : node.Mark()};
        const std::string* text = ScalarText(sub, element.what, ctx);
        if (text == nullptr) {
          list.emplace_back();
          continue;
        }
        absl::StatusOr<std::string> value = element.parse(*text, ctx);
        if (!value.ok()) {
          ctx.Error(sub.mark, sub.path, value.status().message());
        }
        list.push_back(value.ok() ? *std::move(value) : std::string());
      }
    };
    row.apply_default = [member, fallback = std::move(fallback)](T& t, Extra& e) {
      Field(t, e, member) = fallback;
    };
    row.diff = Differ(member, reload);
    return row;
  }

  // Anything else: hand-written parse / default / diff.
  static Row Custom(absl::string_view name, Need need, Reload reload, decltype(Row::parse) parse,
                    decltype(Row::apply_default) apply_default, decltype(Row::diff) diff) {
    return Row{.name = name,
               .need = need,
               .reload = reload,
               .parse = std::move(parse),
               .apply_default = std::move(apply_default),
               .diff = std::move(diff)};
  }

 private:
  template <typename Owner, typename V>
  static V& Field(T& t, Extra& e, V Owner::*member) {
    if constexpr (std::is_same_v<Owner, T>) {
      return t.*member;
    } else {
      static_assert(std::is_same_v<Owner, Extra>, "member of neither T nor Extra");
      return e.*member;
    }
  }

  template <typename Owner, typename V>
  static decltype(Row::parse) ScalarParser(V Owner::*member, ScalarType<V> type) {
    return [member, type = std::move(type)](const Item& item, T& t, Extra& e, Context& ctx) {
      const std::string* text = ScalarText(item, type.what, ctx);
      if (text == nullptr) {
        return;
      }
      absl::StatusOr<V> value = type.parse(*text, ctx);
      if (!value.ok()) {
        ctx.Error(item.mark, item.path, value.status().message());
        return;
      }
      Field(t, e, member) = *std::move(value);
    };
  }

  template <typename Owner, typename V>
  static decltype(Row::diff) Differ(V Owner::*member, Reload reload) {
    if constexpr (std::is_same_v<Owner, T>) {
      if (reload == kRestart) {
        return [member](const T& a, const T& b, const std::string& path,
                        std::vector<std::string>& out) {
          if (!(a.*member == b.*member)) {
            out.push_back(path);
          }
        };
      }
    }
    return nullptr;
  }

  template <typename E, typename EExtra>
  static void DiffListByIdentity(const Table<E, EExtra>& table, const std::vector<E>& before,
                                 const std::vector<E>& after, std::string (*identity)(const E&),
                                 const std::string& path, std::vector<std::string>& out) {
    std::map<std::string, const E*> old_by_id;
    for (const E& e : before) {
      old_by_id.emplace(identity(e), &e);
    }
    for (const E& e : after) {
      std::string id = identity(e);
      auto it = old_by_id.find(id);
      std::string element_path = path + "[" + id + "]";
      if (it == old_by_id.end()) {
        out.push_back(element_path + " (added)");
        continue;
      }
      DiffMap(table, *it->second, e, element_path, out);
      old_by_id.erase(it);
    }
    for (const auto& [id, e] : old_by_id) {
      out.push_back(path + "[" + id + "] (removed)");
    }
  }
};

}  // namespace tracegate::config::internal
