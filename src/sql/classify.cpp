#include "sql/classify.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/strings.h"
#include "sql/nesting.h"

namespace tracegate::sql::internal {
namespace {

using Node = PgQuery__Node;

// The walk's own recursion limit (each tree level is two or three of its frames). The
// nesting bound refuses deeper statements before parsing; this is the backstop.
constexpr int kMaxDepth = 4 * kMaxNesting;

// ---- small accessors ----------------------------------------------------------------------

const char* StringOf(const Node* node) {
  return node != nullptr && node->node_case == PG_QUERY__NODE__NODE_STRING &&
                 node->string != nullptr
             ? node->string->sval
             : nullptr;
}

// The message inside a Node's oneof (every member is a message pointer at the same place).
const ProtobufCMessage* InnerOf(const Node* node) {
  void* inner = nullptr;
  std::memcpy(&inner, &node->alias, sizeof inner);
  return static_cast<const ProtobufCMessage*>(inner);
}

// The dotted name of a list of String nodes ("pg_catalog.lower"); empty if any part is not
// a String.
std::string DottedName(size_t n, Node* const* parts) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    const char* part = StringOf(parts[i]);
    if (part == nullptr) {
      return {};
    }
    if (i > 0) {
      out.push_back('.');
    }
    out.append(part);
  }
  return out;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// AND-ed conjuncts of a boolean expression, flattened.
void Conjuncts(const Node* node, std::vector<const Node*>& out) {
  if (node == nullptr) {
    return;
  }
  if (node->node_case == PG_QUERY__NODE__NODE_BOOL_EXPR &&
      node->bool_expr->boolop == PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR) {
    for (size_t i = 0; i < node->bool_expr->n_args; ++i) {
      Conjuncts(node->bool_expr->args[i], out);
    }
    return;
  }
  out.push_back(node);
}

bool IsEqualsOperator(const PgQuery__AExpr* e) {
  if (e->kind != PG_QUERY__A__EXPR__KIND__AEXPR_OP) {
    return false;
  }
  const std::string name = DottedName(e->n_name, e->name);
  return name == "=" || name == "pg_catalog.=";
}

// Settings a grant's session may SET / RESET (lower case, as the parser folds them).
bool SettableSetting(std::string_view name) {
  // Not statement_timeout or idle_in_transaction_session_timeout: the operator's bounds on
  // the backend session stay as configured.
  static const auto* const kSettable = new absl::flat_hash_set<std::string>{
      "application_name",    "datestyle",          "timezone",
      "intervalstyle",       "extra_float_digits", "lock_timeout",
      "client_min_messages", "bytea_output",       "client_encoding"};
  return kSettable->contains(std::string(name));
}

bool ShowableSetting(std::string_view name) {
  static const auto* const kShowable =
      new absl::flat_hash_set<std::string>{"statement_timeout",
                                           "idle_in_transaction_session_timeout",
                                           "server_version",
                                           "server_encoding",
                                           "transaction_isolation",
                                           "transaction_read_only",
                                           "standard_conforming_strings",
                                           "integer_datetimes",
                                           "is_superuser"};
  return SettableSetting(name) || kShowable->contains(std::string(name));
}

// client_encoding values the gate accepts: UTF-8 only, so libpg_query (which reads the text
// as UTF-8) and the server tokenise the same bytes.
bool IsUtf8Name(std::string_view value) {
  std::string folded;
  for (char c : value) {
    if (c != '-' && c != '_') {
      folded.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  return folded == "utf8" || folded == "unicode";
}

// ---- masked sessions ----------------------------------------------------------------------

// Whether `node` is a literal or a parameter, possibly cast: a value the client sent, so
// nothing done to it can reveal what the masker hides.
bool IsClientValue(const Node* node) {
  while (node != nullptr) {
    switch (node->node_case) {
      case PG_QUERY__NODE__NODE_A_CONST:
      case PG_QUERY__NODE__NODE_PARAM_REF:
        return true;
      case PG_QUERY__NODE__NODE_TYPE_CAST:
        node = node->type_cast->arg;
        break;
      case PG_QUERY__NODE__NODE_NAMED_ARG_EXPR:
        node = node->named_arg_expr->arg;
        break;
      default:
        return false;
    }
  }
  return false;
}

// Functions whose result is a size, a position or a type, never any part of a value: a
// computation on their result reveals nothing the masker hides.
bool MeasuresOnly(std::string_view name) {
  static const auto* const kMeasures = new absl::flat_hash_set<std::string>{
      "count",      "length",       "char_length", "character_length",   "octet_length",
      "bit_length", "array_length", "cardinality", "jsonb_array_length", "json_array_length",
      "row_number", "rank",         "dense_rank",  "jsonb_typeof",       "json_typeof",
      "pg_typeof"};
  return kMeasures->contains(std::string(name));
}

// Whether evaluating `message` can read stored data: a column, a whole row, or a subquery,
// outside a function that only measures (count, length …). Literals, parameters and
// functions of them do not. Past the walk's depth limit it answers yes (fail closed).
bool ReadsData(const ProtobufCMessage* message, int depth = 0) {
  if (message == nullptr) {
    return false;
  }
  if (depth > 4 * kMaxNesting) {
    return true;
  }
  const ProtobufCMessageDescriptor* d = message->descriptor;
  if (d == &pg_query__node__descriptor) {
    const auto* node = reinterpret_cast<const Node*>(message);
    switch (node->node_case) {
      case PG_QUERY__NODE__NODE_COLUMN_REF:
      case PG_QUERY__NODE__NODE_SUB_LINK:
      case PG_QUERY__NODE__NODE_SELECT_STMT:
        return true;
      case PG_QUERY__NODE__NODE_FUNC_CALL: {
        const PgQuery__FuncCall* call = node->func_call;
        if (call->n_funcname > 0 && call->n_funcname <= 2) {
          const char* last = StringOf(call->funcname[call->n_funcname - 1]);
          const char* schema = call->n_funcname == 2 ? StringOf(call->funcname[0]) : nullptr;
          if (last != nullptr && MeasuresOnly(last) &&
              (call->n_funcname == 1 ||
               (schema != nullptr && std::string_view(schema) == "pg_catalog"))) {
            return false;
          }
        }
        break;
      }
      default:
        break;
    }
    return ReadsData(InnerOf(node), depth + 1);
  }
  const auto* base = reinterpret_cast<const char*>(message);
  for (unsigned f = 0; f < d->n_fields; ++f) {
    const ProtobufCFieldDescriptor& field = d->fields[f];
    if (field.type != PROTOBUF_C_TYPE_MESSAGE) {
      continue;
    }
    if (field.label == PROTOBUF_C_LABEL_REPEATED) {
      const size_t n = *reinterpret_cast<const size_t*>(base + field.quantifier_offset);
      auto* const* items = *reinterpret_cast<ProtobufCMessage* const* const*>(base + field.offset);
      for (size_t i = 0; i < n; ++i) {
        if (ReadsData(items[i], depth + 1)) {
          return true;
        }
      }
      continue;
    }
    if ((field.flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 &&
        *reinterpret_cast<const uint32_t*>(base + field.quantifier_offset) != field.id) {
      continue;
    }
    if (ReadsData(*reinterpret_cast<const ProtobufCMessage* const*>(base + field.offset),
                  depth + 1)) {
      return true;
    }
  }
  return false;
}

bool ReadsData(const Node* node) {
  return ReadsData(reinterpret_cast<const ProtobufCMessage*>(node));
}

// Operators that select, compare or test values rather than compute new ones: their result
// is a value whole (JSON selectors) or a boolean (comparisons, containment, patterns: the
// documented boolean-oracle gap). Every other operator on stored data computes a new value
// (`card + 1` fails the Luhn check and reads back by subtraction; `jsonb - 'key'` and
// `ts - interval` are caught too, since the gate does not know the operands' types).
bool SelectsOrCompares(std::string_view op, bool prefix) {
  if (prefix) {
    return false;  // -x, ~x, @x, |/x …
  }
  static const auto* const kOps = new absl::flat_hash_set<std::string>{
      "=",  "<>", "!=", "<",  ">",   "<=",  ">=",   "->", "->>", "#>", "#>>", "@>", "<@", "?",
      "?|", "?&", "&&", "~~", "~~*", "!~~", "!~~*", "~",  "~*",  "!~", "!~*", "@?", "@@"};
  return kOps->contains(std::string(op));
}

// Whether a jsonpath (a literal's text) only selects and filters: no arithmetic (`$.card +
// 1`) and no item methods other than .size(), .type() and .keyvalue() (`.double()`,
// `.datetime()`, `.floor()` … compute new values). Wildcards (`.*`, `[*]`) and quoted keys
// are fine; `-` is refused everywhere outside quotes (`last - 1` included: conservative).
bool JsonPathSelectsOnly(std::string_view path) {
  char previous = '\0';  // the last character outside quotes that is not a blank
  for (size_t i = 0; i < path.size(); ++i) {
    const char c = path[i];
    if (c == '"') {
      for (++i; i < path.size() && path[i] != '"'; ++i) {
        if (path[i] == '\\') {
          ++i;
        }
      }
      previous = '"';
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      continue;
    }
    if (c == '+' || c == '-' || c == '/' || c == '%') {
      return false;
    }
    if (c == '*' && previous != '.' && previous != '[') {
      return false;
    }
    if (c == '(') {
      // A method call is `.name(`; a filter is `?(`, and `exists (`, `like_regex` … have
      // no dot before their name.
      size_t end = i;
      while (end > 0 && (path[end - 1] == ' ' || path[end - 1] == '\t')) {
        --end;
      }
      size_t start = end;
      while (start > 0 && (std::isalnum(static_cast<unsigned char>(path[start - 1])) ||
                           path[start - 1] == '_')) {
        --start;
      }
      if (start > 0 && start < end && path[start - 1] == '.') {
        const std::string_view method = path.substr(start, end - start);
        if (method != "size" && method != "type" && method != "keyvalue") {
          return false;
        }
      }
    }
    previous = c;
  }
  return true;
}

// The name of a type as written, without pg_catalog ("varchar(4)", "bytea[]").
std::string TypeDisplay(const PgQuery__TypeName* type) {
  std::string name = DottedName(type->n_names, type->names);
  if (name.starts_with("pg_catalog.")) {
    name.erase(0, std::string_view("pg_catalog.").size());
  }
  if (name.empty()) {
    name = "?";
  } else if (name == "bpchar") {
    name = "char";
  }
  if (type->n_typmods > 0) {
    name.push_back('(');
    for (size_t i = 0; i < type->n_typmods; ++i) {
      const Node* m = type->typmods[i];
      if (i > 0) {
        name.push_back(',');
      }
      if (m != nullptr && m->node_case == PG_QUERY__NODE__NODE_A_CONST &&
          m->a_const->val_case == PG_QUERY__A__CONST__VAL_IVAL) {
        name.append(std::to_string(m->a_const->ival->ival));
      } else {
        name.append("...");
      }
    }
    name.push_back(')');
  }
  for (size_t i = 0; i < type->n_array_bounds; ++i) {
    name.append("[]");
  }
  return name;
}

// Whether a cast to `type` leaves a value's text for the masker to find. Text without a
// length, JSON (the masker decodes its strings), integers and numeric without a typmod (a
// cast either fails or prints the same digits), and boolean (one bit, like `=`). Not:
// float4/float8 (4.111111111111111e+15 is a card in another shape), numeric(p,s) (rounds),
// date/time/interval and uuid (the masker passes those types unread: `card::int8 *
// interval '1 microsecond'` reads back exactly), bytea (hex), char(n)/varchar(n)/name/"char"
// (truncate), bit, inet/macaddr (re-format), money (adds separators), tsvector, xml,
// regclass and the rest, nor anything unknown.
bool CastKeepsText(const PgQuery__TypeName* type) {
  if (type == nullptr || type->setof || type->pct_type || type->n_names == 0 || type->n_names > 2) {
    return false;
  }
  if (type->n_names == 2) {
    const char* schema = StringOf(type->names[0]);
    if (schema == nullptr || std::string_view(schema) != "pg_catalog") {
      return false;
    }
  }
  const char* last = StringOf(type->names[type->n_names - 1]);
  if (last == nullptr) {
    return false;
  }
  if (type->n_typmods > 0) {
    return false;
  }
  static const auto* const kKeeps = new absl::flat_hash_set<std::string>{
      "text", "varchar", "bpchar", "json", "jsonb", "bool", "int2", "int4", "int8", "numeric"};
  return kKeeps->contains(last);
}

// ---- the walk ----------------------------------------------------------------------------

// A conjunct of WHERE or of a join's ON, with the names it can see. PostgreSQL resolves a
// column of an ON clause against that join's own items only (and then the enclosing
// queries), and a join with an alias hides the items inside it from everything outside it:
// `u.id` there is another query's `u`, or an error, never the hidden one.
struct Conjunct {
  const Node* node = nullptr;
  int visibility = -1;  // -1: WHERE (every occurrence not hidden); else a join's, by index
};

// One declared trace table in one SELECT's FROM.
struct Occurrence {
  const config::TraceTable* table = nullptr;
  std::string refname;  // alias, or the table's name
  bool aliased = false;
  std::string schema;                  // as written, or "public"
  std::vector<Conjunct> on_conjuncts;  // ON conditions that hold whenever it has a row
  bool hidden = false;                 // inside a join with an alias: not visible by name
};

// A term of an equality: a column of an occurrence, a string literal, or a parameter.
struct Term {
  enum Kind { kNone, kColumn, kLiteral, kParam } kind = kNone;
  int occurrence = -1;
  std::string column;
  int location = 0;
  std::string value;
  int param = 0;
};

// Union-find over terms named by string keys.
class Classes {
 public:
  int Id(const std::string& key) {
    auto [it, inserted] = ids_.emplace(key, static_cast<int>(parent_.size()));
    if (inserted) {
      parent_.push_back(it->second);
    }
    return it->second;
  }
  int Find(int x) {
    while (parent_[x] != x) {
      parent_[x] = parent_[parent_[x]];
      x = parent_[x];
    }
    return x;
  }
  void Union(int a, int b) { parent_[Find(a)] = Find(b); }

 private:
  absl::flat_hash_map<std::string, int> ids_;
  std::vector<int> parent_;
};

class Analyzer {
 public:
  explicit Analyzer(const Rules& rules) : rules_(rules) {}

  void Statement(const Node* stmt, Classification& out);

 private:
  struct SelectScope {
    std::vector<Occurrence> occurrences;
    int from_items = 0;
    // ON conditions of joins outside the nullable side of any outer join: they hold for
    // every row of the FROM clause, like WHERE.
    std::vector<Conjunct> global_on;
    // Per join, by index: the occurrences its ON clause can see by name.
    std::vector<std::vector<int>> join_visible;
  };

  bool Block(Rule rule, std::string message) {
    if (rule_ == Rule::kNone) {
      rule_ = rule;
      message_ = std::move(message);
    }
    return false;
  }
  bool Blocked() const { return rule_ != Rule::kNone; }

  bool Select(const PgQuery__SelectStmt* s);
  bool From(const Node* item, const std::vector<Conjunct>& applicable, bool global,
            SelectScope& scope);
  bool CheckPinned(const PgQuery__SelectStmt* s, SelectScope& scope);
  Term TermOf(const Node* node, const SelectScope& scope, int visibility) const;
  int ResolveColumn(const PgQuery__ColumnRef* ref, const SelectScope& scope, int visibility,
                    std::string& column) const;
  const config::TraceTable* FindTable(std::string_view schema, std::string_view name) const;

  bool Visit(const Node* node);
  bool Children(const ProtobufCMessage* message);
  bool Message(const ProtobufCMessage* message);
  bool Function(const PgQuery__FuncCall* call);
  void CheckMaskedFunction(const PgQuery__FuncCall* call, const std::string& name);
  void MaskingHazard(std::string what);
  bool TransactionOptions(size_t n, Node* const* options);
  void SetStatement(const PgQuery__VariableSetStmt* set, Classification& out);

  const Rules& rules_;
  Rule rule_ = Rule::kNone;
  std::string message_;
  int depth_ = 0;
  std::vector<std::string> ctes_;  // CTE names visible here (a stack)
  std::vector<TraceLiteral> literals_;
  std::vector<int> params_;
  std::string masking_hazard_;  // the first one found
};

struct DepthGuard {
  explicit DepthGuard(int& depth) : depth(depth) { ++depth; }
  ~DepthGuard() { --depth; }
  int& depth;
};

const config::TraceTable* Analyzer::FindTable(std::string_view schema,
                                              std::string_view name) const {
  for (const config::TraceTable& t : rules_.tables) {
    if (t.schema == schema && t.name == name) {
      return &t;
    }
  }
  return nullptr;
}

bool Analyzer::Select(const PgQuery__SelectStmt* s) {
  DepthGuard guard(depth_);
  if (depth_ > kMaxDepth) {
    return Block(Rule::kTooComplex, "the statement is nested too deeply");
  }
  if (s->into_clause != nullptr) {
    return Block(Rule::kWrite, "SELECT ... INTO creates a table");
  }
  if (s->n_locking_clause > 0) {
    return Block(Rule::kWrite, "FOR UPDATE / FOR SHARE locks rows");
  }
  const size_t scope_mark = ctes_.size();
  struct Restore {
    std::vector<std::string>& ctes;
    size_t mark;
    ~Restore() { ctes.resize(mark); }
  } restore{ctes_, scope_mark};

  if (s->with_clause != nullptr) {
    const PgQuery__WithClause* with = s->with_clause;
    std::vector<const PgQuery__CommonTableExpr*> ctes;
    for (size_t i = 0; i < with->n_ctes; ++i) {
      if (with->ctes[i]->node_case != PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR) {
        return Block(Rule::kUnsupported, "unexpected WITH element");
      }
      ctes.push_back(with->ctes[i]->common_table_expr);
    }
    for (size_t i = 0; i < ctes.size(); ++i) {
      const PgQuery__CommonTableExpr* cte = ctes[i];
      if (cte->ctequery == nullptr ||
          cte->ctequery->node_case != PG_QUERY__NODE__NODE_SELECT_STMT) {
        return Block(Rule::kWrite, Cat("WITH ", cte->ctename, " AS (...) modifies data"));
      }
      // A CTE sees the ones before it; in WITH RECURSIVE, all of them, itself included.
      ctes_.resize(scope_mark);
      for (size_t j = 0; j < ctes.size(); ++j) {
        if (j < i || with->recursive) {
          ctes_.emplace_back(ctes[j]->ctename);
        }
      }
      if (!Select(cte->ctequery->select_stmt)) {
        return false;
      }
      if ((cte->search_clause != nullptr && !Children(&cte->search_clause->base)) ||
          (cte->cycle_clause != nullptr && !Children(&cte->cycle_clause->base))) {
        return false;
      }
    }
    ctes_.resize(scope_mark);
    for (const PgQuery__CommonTableExpr* cte : ctes) {
      ctes_.emplace_back(cte->ctename);
    }
  }

  auto visit_all = [this](size_t n, Node* const* nodes) {
    for (size_t i = 0; i < n; ++i) {
      if (!Visit(nodes[i])) {
        return false;
      }
    }
    return true;
  };

  if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE &&
      s->op != PG_QUERY__SET_OPERATION__SET_OPERATION_UNDEFINED) {
    if (s->larg == nullptr || s->rarg == nullptr) {
      return Block(Rule::kUnsupported, "malformed set operation");
    }
    return Select(s->larg) && Select(s->rarg) && visit_all(s->n_sort_clause, s->sort_clause) &&
           Visit(s->limit_offset) && Visit(s->limit_count);
  }

  SelectScope scope;
  const std::vector<Conjunct> none;
  for (size_t i = 0; i < s->n_from_clause; ++i) {
    if (!From(s->from_clause[i], none, true, scope)) {
      return false;
    }
  }
  if (!CheckPinned(s, scope)) {
    return false;
  }
  return visit_all(s->n_target_list, s->target_list) && Visit(s->where_clause) &&
         visit_all(s->n_group_clause, s->group_clause) && Visit(s->having_clause) &&
         visit_all(s->n_window_clause, s->window_clause) &&
         visit_all(s->n_values_lists, s->values_lists) &&
         visit_all(s->n_sort_clause, s->sort_clause) && Visit(s->limit_offset) &&
         Visit(s->limit_count) && visit_all(s->n_distinct_clause, s->distinct_clause);
}

bool Analyzer::From(const Node* item, const std::vector<Conjunct>& applicable, bool global,
                    SelectScope& scope) {
  DepthGuard guard(depth_);
  if (depth_ > kMaxDepth) {
    return Block(Rule::kTooComplex, "the statement is nested too deeply");
  }
  switch (item->node_case) {
    case PG_QUERY__NODE__NODE_RANGE_VAR: {
      ++scope.from_items;
      const PgQuery__RangeVar* rv = item->range_var;
      const std::string_view catalog = rv->catalogname != nullptr ? rv->catalogname : "";
      const std::string_view schema_written = rv->schemaname != nullptr ? rv->schemaname : "";
      const std::string_view name = rv->relname != nullptr ? rv->relname : "";
      const std::string written = Cat(catalog.empty() ? "" : Cat(catalog, "."),
                                      schema_written.empty() ? "" : Cat(schema_written, "."), name);
      if (!catalog.empty()) {
        return Block(Rule::kRelation, Cat("relation ", written, " is not a declared trace table"));
      }
      if (schema_written.empty() && std::find(ctes_.begin(), ctes_.end(), name) != ctes_.end()) {
        return true;  // a reference to a WITH query, checked where it is defined
      }
      const std::string_view schema = schema_written.empty() ? "public" : schema_written;
      const config::TraceTable* table = FindTable(schema, name);
      if (table == nullptr) {
        return Block(Rule::kRelation, Cat("relation ", written, " is not a declared trace table"));
      }
      Occurrence o;
      o.table = table;
      o.schema = std::string(schema);
      if (rv->alias != nullptr) {
        if (rv->alias->n_colnames > 0) {
          // traces AS t(a, b) renames columns by position: t.id could be another column.
          return Block(Rule::kUnsupported,
                       Cat("column aliases on trace table ", name, " are not supported"));
        }
        o.refname = rv->alias->aliasname;
        o.aliased = true;
      } else {
        o.refname = std::string(name);
      }
      o.on_conjuncts = applicable;
      scope.occurrences.push_back(std::move(o));
      return true;
    }
    case PG_QUERY__NODE__NODE_JOIN_EXPR: {
      const PgQuery__JoinExpr* join = item->join_expr;
      const int visibility = static_cast<int>(scope.join_visible.size());
      scope.join_visible.emplace_back();
      std::vector<const Node*> on_nodes;
      Conjuncts(join->quals, on_nodes);
      std::vector<Conjunct> on;
      for (const Node* n : on_nodes) {
        on.push_back({.node = n, .visibility = visibility});
      }
      std::vector<Conjunct> left = applicable;
      std::vector<Conjunct> right = applicable;
      // ON holds for every row a side contributes, except on the preserved side of an outer
      // join (its rows come through whether ON holds or not). An inner join's ON holds for
      // every row of the whole FROM unless the join sits on a nullable side.
      bool left_global = false;
      bool right_global = false;
      switch (join->jointype) {
        case PG_QUERY__JOIN_TYPE__JOIN_INNER:
          left.insert(left.end(), on.begin(), on.end());
          right.insert(right.end(), on.begin(), on.end());
          if (global) {
            scope.global_on.insert(scope.global_on.end(), on.begin(), on.end());
          }
          left_global = right_global = global;
          break;
        case PG_QUERY__JOIN_TYPE__JOIN_LEFT:
          right.insert(right.end(), on.begin(), on.end());
          left_global = global;
          break;
        case PG_QUERY__JOIN_TYPE__JOIN_RIGHT:
          left.insert(left.end(), on.begin(), on.end());
          right_global = global;
          break;
        default:
          break;
      }
      if (join->larg == nullptr || join->rarg == nullptr) {
        return Block(Rule::kUnsupported, "malformed join");
      }
      const size_t first = scope.occurrences.size();
      if (!From(join->larg, left, left_global, scope) ||
          !From(join->rarg, right, right_global, scope)) {
        return false;
      }
      // Its ON sees the items inside it that no inner alias hides; its own alias then hides
      // them all from everything outside it.
      for (size_t i = first; i < scope.occurrences.size(); ++i) {
        if (!scope.occurrences[i].hidden) {
          scope.join_visible[visibility].push_back(static_cast<int>(i));
        }
      }
      if (join->alias != nullptr) {
        for (size_t i = first; i < scope.occurrences.size(); ++i) {
          scope.occurrences[i].hidden = true;
        }
      }
      return Visit(join->quals);
    }
    case PG_QUERY__NODE__NODE_RANGE_SUBSELECT: {
      ++scope.from_items;
      const Node* sub = item->range_subselect->subquery;
      if (sub == nullptr || sub->node_case != PG_QUERY__NODE__NODE_SELECT_STMT) {
        return Block(Rule::kUnsupported, "unexpected subquery in FROM");
      }
      return Select(sub->select_stmt);
    }
    case PG_QUERY__NODE__NODE_RANGE_FUNCTION: {
      ++scope.from_items;
      const PgQuery__RangeFunction* rf = item->range_function;
      for (size_t i = 0; i < rf->n_functions; ++i) {
        if (!Visit(rf->functions[i])) {
          return false;
        }
      }
      for (size_t i = 0; i < rf->n_coldeflist; ++i) {
        if (!Visit(rf->coldeflist[i])) {
          return false;
        }
      }
      return true;
    }
    case PG_QUERY__NODE__NODE_RANGE_TABLE_SAMPLE:
      return Block(Rule::kUnsupported, "TABLESAMPLE is not supported");
    case PG_QUERY__NODE__NODE_RANGE_TABLE_FUNC:
      return Block(Rule::kUnsupported, "XMLTABLE is not supported");
    default:
      return Block(Rule::kUnsupported, "unexpected item in FROM");
  }
}

int Analyzer::ResolveColumn(const PgQuery__ColumnRef* ref, const SelectScope& scope, int visibility,
                            std::string& column) const {
  const std::string dotted = DottedName(ref->n_fields, ref->fields);
  if (dotted.empty()) {
    return -1;  // t.* or an indirection
  }
  std::vector<std::string_view> parts;
  for (size_t i = 0; i < ref->n_fields; ++i) {
    parts.emplace_back(StringOf(ref->fields[i]));
  }
  if (parts.size() == 1) {
    // Unqualified: only in WHERE, when the table is the single item of this FROM, so the
    // name cannot belong to a neighbour (and an id column the table has wins over an outer
    // query's).
    if (visibility < 0 && scope.from_items == 1 && scope.occurrences.size() == 1 &&
        !scope.occurrences[0].hidden) {
      column = std::string(parts[0]);
      return 0;
    }
    return -1;
  }
  std::vector<int> all;
  const std::vector<int>* visible = nullptr;
  if (visibility >= 0) {
    visible = &scope.join_visible[visibility];
  } else {
    for (size_t i = 0; i < scope.occurrences.size(); ++i) {
      if (!scope.occurrences[i].hidden) {
        all.push_back(static_cast<int>(i));
      }
    }
    visible = &all;
  }
  int found = -1;
  for (const int i : *visible) {
    const Occurrence& o = scope.occurrences[i];
    bool match = false;
    if (parts.size() == 2) {
      match = o.refname == parts[0];
    } else if (parts.size() == 3) {
      match = !o.aliased && o.schema == parts[0] && o.table->name == parts[1];
    }
    if (match) {
      if (found >= 0) {
        return -1;  // ambiguous: PostgreSQL refuses it anyway
      }
      found = i;
    }
  }
  if (found >= 0) {
    column = std::string(parts.back());
  }
  return found;
}

Term Analyzer::TermOf(const Node* node, const SelectScope& scope, int visibility) const {
  Term term;
  if (node == nullptr) {
    return term;
  }
  switch (node->node_case) {
    case PG_QUERY__NODE__NODE_COLUMN_REF: {
      term.occurrence = ResolveColumn(node->column_ref, scope, visibility, term.column);
      if (term.occurrence >= 0) {
        term.kind = Term::kColumn;
      }
      return term;
    }
    case PG_QUERY__NODE__NODE_A_CONST: {
      const PgQuery__AConst* c = node->a_const;
      if (!c->isnull && c->val_case == PG_QUERY__A__CONST__VAL_SVAL && c->sval != nullptr) {
        term.kind = Term::kLiteral;
        term.location = c->location;
        term.value = c->sval->sval;
      }
      return term;
    }
    case PG_QUERY__NODE__NODE_PARAM_REF:
      term.kind = Term::kParam;
      term.param = node->param_ref->number;
      return term;
    case PG_QUERY__NODE__NODE_TYPE_CAST: {
      // Only casts that cannot change the value: text, varchar and uuid without a length.
      const PgQuery__TypeName* type = node->type_cast->type_name;
      if (type == nullptr || type->n_typmods > 0 || type->n_array_bounds > 0 || type->setof ||
          type->pct_type) {
        return term;
      }
      const std::string name = DottedName(type->n_names, type->names);
      static const auto* const kKeeps = new absl::flat_hash_set<std::string>{
          "text", "pg_catalog.text", "varchar", "pg_catalog.varchar", "uuid", "pg_catalog.uuid"};
      if (!kKeeps->contains(name)) {
        return term;
      }
      const Node* arg = node->type_cast->arg;
      if (arg != nullptr && (arg->node_case == PG_QUERY__NODE__NODE_A_CONST ||
                             arg->node_case == PG_QUERY__NODE__NODE_PARAM_REF)) {
        return TermOf(arg, scope, visibility);
      }
      return term;
    }
    default:
      return term;
  }
}

bool Analyzer::CheckPinned(const PgQuery__SelectStmt* s, SelectScope& scope) {
  std::vector<const Node*> where_nodes;
  Conjuncts(s->where_clause, where_nodes);
  std::vector<Conjunct> where;
  for (const Node* n : where_nodes) {
    where.push_back({.node = n, .visibility = -1});
  }
  for (size_t oi = 0; oi < scope.occurrences.size(); ++oi) {
    const Occurrence& o = scope.occurrences[oi];
    std::vector<Conjunct> conjuncts = where;
    conjuncts.insert(conjuncts.end(), scope.global_on.begin(), scope.global_on.end());
    conjuncts.insert(conjuncts.end(), o.on_conjuncts.begin(), o.on_conjuncts.end());
    Classes classes;
    std::vector<Term> constants;  // literals and parameters, by their class id
    std::vector<int> constant_ids;
    auto id_of = [&](const Term& t) {
      switch (t.kind) {
        case Term::kColumn:
          return classes.Id(Cat("c", t.occurrence, ".", t.column));
        case Term::kLiteral:
        case Term::kParam: {
          const int id = classes.Id(Cat("k", constants.size()));
          constants.push_back(t);
          constant_ids.push_back(id);
          return id;
        }
        case Term::kNone:
          break;
      }
      return -1;
    };
    for (const Conjunct& conjunct : conjuncts) {
      const Node* c = conjunct.node;
      if (c->node_case != PG_QUERY__NODE__NODE_A_EXPR || !IsEqualsOperator(c->a_expr)) {
        continue;
      }
      const Term left = TermOf(c->a_expr->lexpr, scope, conjunct.visibility);
      const Term right = TermOf(c->a_expr->rexpr, scope, conjunct.visibility);
      if (left.kind == Term::kNone || right.kind == Term::kNone ||
          (left.kind != Term::kColumn && right.kind != Term::kColumn)) {
        continue;
      }
      classes.Union(id_of(left), id_of(right));
    }
    const int target = classes.Find(classes.Id(Cat("c", oi, ".", o.table->id_column)));
    bool pinned = false;
    for (size_t k = 0; k < constants.size(); ++k) {
      if (classes.Find(constant_ids[k]) != target) {
        continue;
      }
      pinned = true;
      if (constants[k].kind == Term::kParam) {
        params_.push_back(constants[k].param);
      } else {
        literals_.push_back({.location = constants[k].location, .value = constants[k].value});
      }
    }
    if (!pinned) {
      return Block(Rule::kTraceScope,
                   Cat(o.table->name, " is not restricted to the granted trace: add ", o.refname,
                       ".", o.table->id_column,
                       " = '<trace id>' to WHERE (AND-ed at the top) or to an inner JOIN's ON"));
    }
  }
  return true;
}

bool Analyzer::Function(const PgQuery__FuncCall* call) {
  const std::string name = DottedName(call->n_funcname, call->funcname);
  bool allowed = false;
  if (call->n_funcname == 1) {
    allowed = rules_.functions.contains(name);
  } else if (call->n_funcname == 2) {
    const std::string_view schema = StringOf(call->funcname[0]);
    allowed = schema == "pg_catalog"
                  ? rules_.functions.contains(std::string(StringOf(call->funcname[1])))
                  : rules_.qualified_functions.contains(name);
  }
  if (!allowed) {
    return Block(Rule::kFunction,
                 Cat("function ", name.empty() ? "(unnamed)" : name, "() is not allowed"));
  }
  CheckMaskedFunction(call, name);
  return Children(&call->base);
}

// Records an allowed function that a masked session may not apply to its data.
void Analyzer::CheckMaskedFunction(const PgQuery__FuncCall* call, const std::string& name) {
  if (!masking_hazard_.empty()) {
    return;
  }
  std::string_view shown = name;
  if (call->n_funcname == 2) {
    if (std::string_view(StringOf(call->funcname[0])) != "pg_catalog") {
      return;  // schema-qualified: only the operator's allow_functions get here
    }
    shown = StringOf(call->funcname[1]);
  }
  // to_char copies its format's text to the output, rewritten around its template patterns:
  // the format must be the client's, not a column's.
  if (shown == "to_char" && call->n_args >= 2 && !IsClientValue(call->args[1])) {
    MaskingHazard("to_char() with a format that is not a literal or parameter");
    return;
  }
  // jsonpath can compute: `jsonb_path_query(metadata, '$.card + 1')`, `.double()`.
  if ((shown == "jsonb_path_query" || shown == "jsonb_path_query_first") && call->n_args >= 2) {
    const Node* path = call->args[1];
    while (path != nullptr && path->node_case == PG_QUERY__NODE__NODE_TYPE_CAST) {
      path = path->type_cast->arg;
    }
    const bool literal = path != nullptr && path->node_case == PG_QUERY__NODE__NODE_A_CONST &&
                         path->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL &&
                         path->a_const->sval != nullptr;
    bool reads_data = false;  // the document, or the variables of `$x` (third argument)
    for (size_t i = 0; i < call->n_args && !reads_data; ++i) {
      reads_data = i != 1 && ReadsData(call->args[i]);
    }
    if (reads_data && (!literal || !JsonPathSelectsOnly(path->a_const->sval->sval))) {
      MaskingHazard(Cat(shown, "() with a path that computes (arithmetic or an item method)"));
      return;
    }
  }
  if (rules_.masked_functions.contains(std::string(shown))) {
    return;
  }
  // On client values only (to_timestamp($1), SIMILAR TO's similar_to_escape('a%'),
  // round(count(*) / 3.0)) it cannot reveal anything.
  bool reads_data = call->agg_filter != nullptr || call->over != nullptr || call->n_agg_order > 0;
  for (size_t i = 0; !reads_data && i < call->n_args; ++i) {
    reads_data = ReadsData(call->args[i]);
  }
  if (reads_data) {
    MaskingHazard(Cat(shown, "()"));
  }
}

void Analyzer::MaskingHazard(std::string what) {
  if (masking_hazard_.empty()) {
    masking_hazard_ =
        Cat(what, " could rewrite masked values; it is not allowed while responses are masked");
  }
}

bool Analyzer::Visit(const Node* node) {
  if (node == nullptr || Blocked()) {
    return !Blocked();
  }
  DepthGuard guard(depth_);
  if (depth_ > kMaxDepth) {
    return Block(Rule::kTooComplex, "the statement is nested too deeply");
  }
  switch (node->node_case) {
    case PG_QUERY__NODE__NODE__NOT_SET:
      return true;  // an empty list element (DISTINCT without ON, a function's column list)
    case PG_QUERY__NODE__NODE_SELECT_STMT:
      return Select(node->select_stmt);
    case PG_QUERY__NODE__NODE_FUNC_CALL:
      return Function(node->func_call);
    case PG_QUERY__NODE__NODE_A_EXPR: {
      const PgQuery__AExpr* e = node->a_expr;
      if (e->n_name > 1) {
        const char* schema = StringOf(e->name[0]);
        if (e->n_name > 2 || schema == nullptr || std::string_view(schema) != "pg_catalog") {
          return Block(Rule::kFunction, Cat("operator ", DottedName(e->n_name, e->name),
                                            " is not allowed (only pg_catalog operators)"));
        }
      }
      // An operator that computes a new value from stored data hides it from the masker:
      // `||` glues text to it (a digit run glued to a letter is part of a word, not a card),
      // `card + 1` fails the Luhn check and reads back by subtraction.
      if (e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP && e->n_name > 0 &&
          masking_hazard_.empty()) {
        const char* op = StringOf(e->name[e->n_name - 1]);
        if (op == nullptr || (!SelectsOrCompares(op, e->lexpr == nullptr) &&
                              (ReadsData(e->lexpr) || ReadsData(e->rexpr)))) {
          MaskingHazard(Cat("the ", op != nullptr ? op : "?", " operator on stored data"));
        }
      }
      return Children(&e->base);
    }
    case PG_QUERY__NODE__NODE_TYPE_CAST: {
      const PgQuery__TypeCast* cast = node->type_cast;
      if (cast == nullptr) {
        return true;
      }
      if (masking_hazard_.empty() && cast->type_name != nullptr &&
          !CastKeepsText(cast->type_name) && ReadsData(cast->arg)) {
        MaskingHazard(Cat("a cast to ", TypeDisplay(cast->type_name)));
      }
      return Children(&cast->base);
    }
    // Expressions and the plain parts of a SELECT.
    case PG_QUERY__NODE__NODE_COLUMN_REF:
    case PG_QUERY__NODE__NODE_PARAM_REF:
    case PG_QUERY__NODE__NODE_A_CONST:
    case PG_QUERY__NODE__NODE_A_STAR:
    case PG_QUERY__NODE__NODE_A_INDICES:
    case PG_QUERY__NODE__NODE_A_INDIRECTION:
    case PG_QUERY__NODE__NODE_A_ARRAY_EXPR:
    case PG_QUERY__NODE__NODE_RES_TARGET:
    case PG_QUERY__NODE__NODE_TYPE_NAME:
    case PG_QUERY__NODE__NODE_COLLATE_CLAUSE:
    case PG_QUERY__NODE__NODE_SORT_BY:
    case PG_QUERY__NODE__NODE_WINDOW_DEF:
    case PG_QUERY__NODE__NODE_BOOL_EXPR:
    case PG_QUERY__NODE__NODE_SUB_LINK:
    case PG_QUERY__NODE__NODE_CASE_EXPR:
    case PG_QUERY__NODE__NODE_CASE_WHEN:
    case PG_QUERY__NODE__NODE_COALESCE_EXPR:
    case PG_QUERY__NODE__NODE_MIN_MAX_EXPR:
    case PG_QUERY__NODE__NODE_SQLVALUE_FUNCTION:
    case PG_QUERY__NODE__NODE_NULL_TEST:
    case PG_QUERY__NODE__NODE_BOOLEAN_TEST:
    case PG_QUERY__NODE__NODE_ROW_EXPR:
    case PG_QUERY__NODE__NODE_GROUPING_SET:
    case PG_QUERY__NODE__NODE_GROUPING_FUNC:
    case PG_QUERY__NODE__NODE_NAMED_ARG_EXPR:
    case PG_QUERY__NODE__NODE_COLUMN_DEF:
    case PG_QUERY__NODE__NODE_LIST:
    case PG_QUERY__NODE__NODE_STRING:
    case PG_QUERY__NODE__NODE_INTEGER:
    case PG_QUERY__NODE__NODE_FLOAT:
    case PG_QUERY__NODE__NODE_BOOLEAN:
    case PG_QUERY__NODE__NODE_BIT_STRING:
    case PG_QUERY__NODE__NODE_ALIAS: {
      const auto* inner = InnerOf(node);
      return inner == nullptr || Children(inner);
    }
    default: {
      const auto* inner = InnerOf(node);
      const char* what = inner != nullptr ? inner->descriptor->short_name : "an empty node";
      return Block(Rule::kUnsupported, Cat(what, " is not supported in a trace read"));
    }
  }
}

// A typed (non-Node) submessage met while walking.
bool Analyzer::Message(const ProtobufCMessage* message) {
  const ProtobufCMessageDescriptor* d = message->descriptor;
  if (d == &pg_query__node__descriptor) {
    return Visit(reinterpret_cast<const Node*>(message));
  }
  if (d == &pg_query__select_stmt__descriptor) {
    return Select(reinterpret_cast<const PgQuery__SelectStmt*>(message));
  }
  if (d == &pg_query__into_clause__descriptor) {
    return Block(Rule::kWrite, "SELECT ... INTO creates a table");
  }
  if (d == &pg_query__range_var__descriptor || d == &pg_query__with_clause__descriptor) {
    return Block(Rule::kUnsupported, Cat(d->short_name, " in an unexpected place"));
  }
  return Children(message);
}

bool Analyzer::Children(const ProtobufCMessage* message) {
  DepthGuard guard(depth_);
  if (depth_ > kMaxDepth) {
    return Block(Rule::kTooComplex, "the statement is nested too deeply");
  }
  const ProtobufCMessageDescriptor* d = message->descriptor;
  const auto* base = reinterpret_cast<const char*>(message);
  for (unsigned f = 0; f < d->n_fields; ++f) {
    const ProtobufCFieldDescriptor& field = d->fields[f];
    if (field.type != PROTOBUF_C_TYPE_MESSAGE) {
      continue;
    }
    if (field.label == PROTOBUF_C_LABEL_REPEATED) {
      const size_t n = *reinterpret_cast<const size_t*>(base + field.quantifier_offset);
      auto* const* items = *reinterpret_cast<ProtobufCMessage* const* const*>(base + field.offset);
      for (size_t i = 0; i < n; ++i) {
        if (items[i] != nullptr && !Message(items[i])) {
          return false;
        }
      }
      continue;
    }
    if ((field.flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 &&
        *reinterpret_cast<const uint32_t*>(base + field.quantifier_offset) != field.id) {
      continue;
    }
    const auto* sub = *reinterpret_cast<const ProtobufCMessage* const*>(base + field.offset);
    if (sub != nullptr && !Message(sub)) {
      return false;
    }
  }
  return true;
}

bool Analyzer::TransactionOptions(size_t n, Node* const* options) {
  for (size_t i = 0; i < n; ++i) {
    if (options[i]->node_case != PG_QUERY__NODE__NODE_DEF_ELEM) {
      return Block(Rule::kUnsupported, "unexpected transaction option");
    }
    const PgQuery__DefElem* option = options[i]->def_elem;
    const std::string_view name = option->defname != nullptr ? option->defname : "";
    if (name == "transaction_read_only") {
      const Node* arg = option->arg;
      const bool read_only = arg != nullptr && arg->node_case == PG_QUERY__NODE__NODE_A_CONST &&
                             arg->a_const->val_case == PG_QUERY__A__CONST__VAL_IVAL &&
                             arg->a_const->ival->ival != 0;
      if (!read_only) {
        return Block(Rule::kSessionState, "a read-write transaction is not allowed");
      }
    } else if (name != "transaction_isolation" && name != "transaction_deferrable") {
      return Block(Rule::kSessionState, Cat("transaction option ", name, " is not allowed"));
    }
  }
  return true;
}

void Analyzer::SetStatement(const PgQuery__VariableSetStmt* set, Classification& out) {
  const std::string name = set->name != nullptr ? Lower(set->name) : "";
  out.verdict.kind = StatementKind::kSet;
  switch (set->kind) {
    case PG_QUERY__VARIABLE_SET_KIND__VAR_RESET_ALL:
      Block(Rule::kSessionState, "RESET ALL is not allowed");
      return;
    case PG_QUERY__VARIABLE_SET_KIND__VAR_SET_MULTI:
      if (name == "transaction") {
        TransactionOptions(set->n_args, set->args);
      } else {
        Block(Rule::kSessionState, Cat("SET ", name, " is not allowed"));
      }
      return;
    default:
      break;
  }
  if (!SettableSetting(name)) {
    Block(Rule::kSessionState, Cat("setting ", name, " cannot be changed through tracegate"));
    return;
  }
  if (name == "client_encoding" && set->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_VALUE) {
    out.cacheable = false;  // the verdict depends on the value
    const Node* arg = set->n_args == 1 ? set->args[0] : nullptr;
    const char* value = nullptr;
    if (arg != nullptr && arg->node_case == PG_QUERY__NODE__NODE_A_CONST &&
        arg->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL) {
      value = arg->a_const->sval->sval;
    }
    if (value == nullptr || !IsUtf8Name(value)) {
      Block(Rule::kSessionState, "client_encoding must stay UTF8");
    }
  } else if (name == "client_encoding") {
    // RESET / SET ... TO DEFAULT / FROM CURRENT: the default is whatever the role, database
    // or server says (SJIS, say) unless the backend's startup packet pinned it; refused
    // whatever the pin, so the gate never relies on it alone.
    Block(Rule::kSessionState, "client_encoding must stay UTF8 (RESET and DEFAULT are refused)");
  }
}

void Analyzer::Statement(const Node* stmt, Classification& out) {
  Verdict& v = out.verdict;
  switch (stmt->node_case) {
    case PG_QUERY__NODE__NODE_SELECT_STMT:
      v.kind = StatementKind::kSelect;
      Select(stmt->select_stmt);
      break;
    case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT: {
      v.kind = StatementKind::kDeclare;
      const Node* query = stmt->declare_cursor_stmt->query;
      if (query == nullptr || query->node_case != PG_QUERY__NODE__NODE_SELECT_STMT) {
        Block(Rule::kUnsupported, "DECLARE needs a SELECT");
      } else {
        Select(query->select_stmt);
      }
      break;
    }
    case PG_QUERY__NODE__NODE_FETCH_STMT:
      v.kind = StatementKind::kFetch;
      break;
    case PG_QUERY__NODE__NODE_CLOSE_PORTAL_STMT:
      v.kind = StatementKind::kClosePortal;
      break;
    case PG_QUERY__NODE__NODE_TRANSACTION_STMT: {
      v.kind = StatementKind::kTransaction;
      const PgQuery__TransactionStmt* t = stmt->transaction_stmt;
      switch (t->kind) {
        case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_BEGIN:
        case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_START:
          TransactionOptions(t->n_options, t->options);
          break;
        case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT:
        case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK:
        case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_SAVEPOINT:
        case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_RELEASE:
        case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_TO:
          break;
        default:
          Block(Rule::kUnsupported, "two-phase commit is not allowed");
          break;
      }
      break;
    }
    case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT:
      SetStatement(stmt->variable_set_stmt, out);
      break;
    case PG_QUERY__NODE__NODE_VARIABLE_SHOW_STMT: {
      v.kind = StatementKind::kShow;
      const std::string name =
          stmt->variable_show_stmt->name != nullptr ? Lower(stmt->variable_show_stmt->name) : "";
      if (!ShowableSetting(name)) {
        Block(Rule::kSessionState, Cat("SHOW ", name, " is not allowed"));
      }
      break;
    }
    case PG_QUERY__NODE__NODE_COPY_STMT:
      Block(Rule::kBulkExport, "COPY is not allowed");
      break;
    case PG_QUERY__NODE__NODE_INSERT_STMT:
      Block(Rule::kWrite, "INSERT is not allowed");
      break;
    case PG_QUERY__NODE__NODE_UPDATE_STMT:
      Block(Rule::kWrite, "UPDATE is not allowed");
      break;
    case PG_QUERY__NODE__NODE_DELETE_STMT:
      Block(Rule::kWrite, "DELETE is not allowed");
      break;
    case PG_QUERY__NODE__NODE_MERGE_STMT:
      Block(Rule::kWrite, "MERGE is not allowed");
      break;
    default: {
      const auto* inner = InnerOf(stmt);
      const std::string_view what = inner != nullptr ? inner->descriptor->short_name : "?";
      static constexpr std::string_view kDdlPrefixes[] = {
          "Create", "Alter", "Drop", "Truncate", "Grant",    "Comment",      "Rename",
          "Define", "Index", "View", "Rule",     "Reassign", "CompositeType"};
      const bool ddl = std::any_of(std::begin(kDdlPrefixes), std::end(kDdlPrefixes),
                                   [&](std::string_view p) { return what.starts_with(p); });
      std::string shown(what);
      if (shown.ends_with("Stmt")) {
        shown.resize(shown.size() - 4);
      }
      Block(ddl ? Rule::kDdl : Rule::kUnsupported, Cat(shown, " statements are not allowed"));
      break;
    }
  }
  out.trace_literals = std::move(literals_);
  std::sort(params_.begin(), params_.end());
  params_.erase(std::unique(params_.begin(), params_.end()), params_.end());
  v.trace_params = std::move(params_);
  v.rule = rule_;
  v.message = std::move(message_);
  if (v.allowed()) {
    out.masking_hazard = std::move(masking_hazard_);
  } else {
    v.kind = StatementKind::kOther;
    v.trace_params.clear();
    out.trace_literals.clear();
  }
}

struct ParseResultDeleter {
  void operator()(PgQuery__ParseResult* r) const {
    pg_query__parse_result__free_unpacked(r, nullptr);
  }
};

}  // namespace

Classification Classify(std::string_view sql, const Rules& rules) {
  Classification out;
  const std::string text(sql);  // libpg_query wants a NUL-terminated string
  if (text.find('\0') != std::string::npos) {
    out.verdict.rule = Rule::kSyntax;
    out.verdict.message = "the statement contains a NUL byte";
    return out;
  }
  // Nothing may recurse over a statement before its depth is known to be bounded
  // (sql/nesting.h): libpg_query's output and protobuf-c's unpack recurse per tree level.
  if (text.size() > kMaxStatementBytes) {
    out.verdict.rule = Rule::kTooComplex;
    out.verdict.message =
        Cat("the statement is ", text.size(), " bytes; tracegate examines statements of at most ",
            kMaxStatementBytes, " bytes");
    return out;
  }
  if (OperatorRunCost(text) > kMaxOperatorRunCost) {
    out.verdict.rule = Rule::kTooComplex;
    out.verdict.message =
        "the statement has runs of operator characters too long to examine (+-*/<>=~!@#%^&|`?)";
    return out;
  }
  if (const NestingBound nesting = BoundNesting(text.c_str());
      nesting.scanned && nesting.bound > kMaxNesting) {
    out.verdict.rule = Rule::kTooComplex;
    out.verdict.message = Cat(
        "the statement nests up to ", nesting.bound,
        " levels of operators, keywords and brackets; tracegate examines at most ", kMaxNesting);
    return out;
  }
  PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(text.c_str());
  struct FreeParsed {
    PgQueryProtobufParseResult& r;
    ~FreeParsed() { pg_query_free_protobuf_parse_result(r); }
  } free_parsed{parsed};
  if (parsed.error != nullptr) {
    out.verdict.rule = Rule::kSyntax;
    out.verdict.message = parsed.error->message != nullptr ? parsed.error->message : "syntax error";
    return out;
  }
  std::unique_ptr<PgQuery__ParseResult, ParseResultDeleter> tree(pg_query__parse_result__unpack(
      nullptr, parsed.parse_tree.len, reinterpret_cast<const uint8_t*>(parsed.parse_tree.data)));
  if (tree == nullptr) {
    out.verdict.rule = Rule::kUnsupported;
    out.verdict.message = "the parse tree could not be read";
    out.cacheable = false;
    return out;
  }
  if (tree->n_stmts == 0) {
    out.verdict.kind = StatementKind::kEmpty;
    return out;
  }
  if (tree->n_stmts > 1) {
    out.verdict.rule = Rule::kMultiStatement;
    out.verdict.message = "one statement per query: send each statement on its own";
    return out;
  }
  const PgQuery__RawStmt* raw = tree->stmts[0];
  if (raw == nullptr || raw->stmt == nullptr) {
    out.verdict.kind = StatementKind::kEmpty;
    return out;
  }
  Analyzer analyzer(rules);
  analyzer.Statement(raw->stmt, out);
  if (out.verdict.allowed() && !rules.strict_fingerprints.empty() &&
      (out.verdict.kind == StatementKind::kSelect || out.verdict.kind == StatementKind::kDeclare)) {
    if (!rules.strict_fingerprints.contains(Fingerprint(sql))) {
      out.verdict.rule = Rule::kStrict;
      out.verdict.message = "only the connection's declared queries may run (strict mode)";
      out.verdict.kind = StatementKind::kOther;
      out.verdict.trace_params.clear();
      out.trace_literals.clear();
      out.masking_hazard.clear();
    }
  }
  return out;
}

std::string Fingerprint(std::string_view sql) {
  const std::string text(sql);
  PgQueryFingerprintResult result = pg_query_fingerprint(text.c_str());
  std::string out;
  if (result.error == nullptr && result.fingerprint_str != nullptr) {
    out = result.fingerprint_str;
  }
  pg_query_free_fingerprint_result(result);
  return out;
}

}  // namespace tracegate::sql::internal
