// Which issuers each role and rule trusts (approvals.issuers, audit.auditor_issuers,
// policy.rules[].issuers), identity.people, and the checks that keep them fail-closed when
// more than one issuer is configured. DESIGN.md "How approvals work" says why.

#include <map>
#include <set>
#include <string>
#include <string_view>

#include "absl/strings/str_join.h"
#include "common/strings.h"
#include "config/access_keys.h"

namespace tracegate::config {
namespace {

const Issuer* IssuerByIss(const Identity& identity, std::string_view iss) {
  for (const Issuer& issuer : identity.issuers) {
    if (issuer.issuer == iss) {
      return &issuer;
    }
  }
  return nullptr;
}

// The person `issuer_name:subject` belongs to, or nullptr.
const Person* PersonOf(const Identity& identity, std::string_view issuer_name,
                       std::string_view subject) {
  const std::string key = Cat(issuer_name, ":", subject);
  for (const Person& person : identity.people) {
    for (const std::string& entry : person.identities) {
      if (entry == key) {
        return &person;
      }
    }
  }
  return nullptr;
}

}  // namespace

bool TrustsIssuer(const Identity& identity, const std::vector<std::string>& scope,
                  std::string_view issuer_name) {
  if (scope.empty()) {
    return identity.issuers.size() <= 1;
  }
  for (const std::string& name : scope) {
    if (name == issuer_name) {
      return true;
    }
  }
  return false;
}

bool SamePerson(const Identity& identity, std::string_view iss_a, std::string_view sub_a,
                std::string_view iss_b, std::string_view sub_b) {
  if (iss_a == iss_b && sub_a == sub_b) {
    return true;
  }
  const Issuer* a = IssuerByIss(identity, iss_a);
  const Issuer* b = IssuerByIss(identity, iss_b);
  if (a == nullptr || b == nullptr) {
    return false;
  }
  const Person* person_a = PersonOf(identity, a->name, sub_a);
  return person_a != nullptr && person_a == PersonOf(identity, b->name, sub_b);
}

namespace internal {
namespace {

std::string IssuerNames(const Identity& identity) {
  std::vector<std::string> names;
  for (const Issuer& issuer : identity.issuers) {
    names.push_back(issuer.name);
  }
  return absl::StrJoin(names, ", ");
}

// Every name in the scope at `path` must be a configured issuer.
void CheckScopeNames(const std::vector<std::string>& scope, const std::string& path,
                     const std::set<std::string>& known, const Identity& identity, Context& ctx) {
  for (const std::string& name : scope) {
    if (!name.empty() && !known.contains(name)) {
      ctx.Error(ctx.MarkOf(path), path,
                Cat("no issuer is named ", Quote(name), " (identity.issuers names ",
                    identity.issuers.empty() ? "none" : IssuerNames(identity), ")"));
    }
  }
}

// A role honoured from every issuer while several are configured: whoever controls groups in
// any one of them would hold it.
void CheckScoped(const std::vector<std::string>& role, const std::vector<std::string>& scope,
                 const std::string& role_path, const YAML::Mark& mark, std::string_view scope_key,
                 const Identity& identity, Context& ctx) {
  if (role.empty() || !scope.empty() || identity.issuers.size() <= 1) {
    return;
  }
  ctx.Error(mark, role_path,
            Cat("is honoured from every issuer, and ", identity.issuers.size(), " are configured (",
                IssuerNames(identity), "): name the issuers it trusts in ", scope_key));
}

void CheckPeople(const Identity& identity, const std::set<std::string>& known, Context& ctx) {
  std::map<std::string, std::string> owner;  // identity → person path
  for (size_t i = 0; i < identity.people.size(); ++i) {
    const Person& person = identity.people[i];
    const std::string path = ElementPath("identity.people", i) + ".identities";
    for (const std::string& entry : person.identities) {
      const size_t colon = entry.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == entry.size()) {
        ctx.Error(ctx.MarkOf(path), path,
                  Cat("expected <issuer name>:<subject>, got ", Quote(entry)));
        continue;
      }
      const std::string issuer = entry.substr(0, colon);
      if (!known.contains(issuer)) {
        ctx.Error(ctx.MarkOf(path), path,
                  Cat("no issuer is named ", Quote(issuer), " (in ", Quote(entry),
                      "; identity.issuers names ", IssuerNames(identity), ")"));
        continue;
      }
      auto [it, inserted] = owner.emplace(entry, ElementPath("identity.people", i));
      if (!inserted) {
        ctx.Error(ctx.MarkOf(path), path,
                  Cat(Quote(entry), " is also listed under ", it->second,
                      ": an identity belongs to one person"));
      }
    }
  }
}

}  // namespace

void CheckIssuerScopes(const Config& config, Context& ctx) {
  const Identity& identity = config.identity;
  std::set<std::string> known;
  for (const Issuer& issuer : identity.issuers) {
    known.insert(issuer.name);
  }
  CheckScopeNames(config.approvals.issuers, "approvals.issuers", known, identity, ctx);
  CheckScopeNames(config.audit.auditor_issuers, "audit.auditor_issuers", known, identity, ctx);
  CheckScoped(config.approvals.approver_groups, config.approvals.issuers,
              "approvals.approver_groups", ctx.MarkOf("approvals.approver_groups"),
              "approvals.issuers", identity, ctx);
  CheckScoped(config.approvals.force_groups, config.approvals.issuers, "approvals.force_groups",
              ctx.MarkOf("approvals.force_groups"), "approvals.issuers", identity, ctx);
  CheckScoped(config.audit.auditor_groups, config.audit.auditor_issuers, "audit.auditor_groups",
              ctx.MarkOf("audit.auditor_groups"), "audit.auditor_issuers", identity, ctx);
  for (size_t i = 0; i < config.policy.rules.size(); ++i) {
    const PolicyRule& rule = config.policy.rules[i];
    const std::string path = ElementPath("policy.rules", i);
    CheckScopeNames(rule.issuers, path + ".issuers", known, identity, ctx);
    CheckScoped(rule.approvers, config.approvals.issuers, path + ".approvers",
                ctx.MarkOf(path + ".approvers"), "approvals.issuers", identity, ctx);
    // A deny rule honoured from every issuer only refuses more: it may stay unscoped.
    if (rule.effect == Effect::kAllow && rule.issuers.empty() && identity.issuers.size() > 1) {
      ctx.Error(ctx.MarkOf(path + ".name"), path + ".issuers",
                Cat("allow rule ", Quote(rule.name), " applies to callers of every issuer, and ",
                    identity.issuers.size(), " are configured (", IssuerNames(identity),
                    "): name the issuers it trusts with issuers: [...]"));
    }
  }
  CheckPeople(identity, known, ctx);
}

}  // namespace internal
}  // namespace tracegate::config
