// `tracegate grant request|show|revoke` and `tracegate approvals list|show|approve|deny`. The
// caller's OIDC access token is read from a file (or $TRACEGATE_TOKEN), never from the command
// line, where `ps` would show it.

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/ascii.h"
#include "app/cli.h"
#include "app/http_client.h"
#include "common/json_text.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/text_safety.h"

namespace tracegate::app {
namespace {

using json = nlohmann::json;

struct ApiOptions {
  std::string api;
  std::string token_file;
  std::string ca_file;
};

std::string EnvOr(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

void AddApiOptions(CLI::App& cmd, ApiOptions& options) {
  options.api = EnvOr("TRACEGATE_API", "https://127.0.0.1:8443");
  options.ca_file = EnvOr("TRACEGATE_CACERT", "");
  cmd.add_option("--api", options.api, "Control-plane URL ($TRACEGATE_API)")->capture_default_str();
  cmd.add_option("--token-file", options.token_file,
                 "File holding your OIDC access token, - for stdin (default: $TRACEGATE_TOKEN)");
  cmd.add_option("--cacert", options.ca_file,
                 "CA bundle that signed the gateway's certificate ($TRACEGATE_CACERT)");
}

absl::StatusOr<std::string> ReadToken(const ApiOptions& options) {
  std::string token;
  if (options.token_file.empty()) {
    token = EnvOr("TRACEGATE_TOKEN", "");
    if (token.empty()) {
      return absl::InvalidArgumentError(
          "no token: pass --token-file FILE (or -) or set TRACEGATE_TOKEN");
    }
  } else if (options.token_file == "-") {
    std::getline(std::cin, token);
  } else {
    std::ifstream in(options.token_file);
    if (!in) {
      return absl::InvalidArgumentError(Cat("cannot read ", options.token_file));
    }
    std::stringstream text;
    text << in.rdbuf();
    token = text.str();
  }
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.empty()) {
    return absl::InvalidArgumentError("the token is empty");
  }
  return token;
}

// Calls the API; prints the error (the API's JSON message) and returns 1 on failure.
int Call(const ApiOptions& options, const std::string& method, const std::string& path,
         const std::string& body, json& out) {
  absl::StatusOr<std::string> token = ReadToken(options);
  if (!token.ok()) {
    std::cerr << "tracegate: " << MessageOf(token.status()) << "\n";
    return 2;
  }
  std::string base = options.api;
  while (!base.empty() && base.back() == '/') {
    base.pop_back();
  }
  absl::StatusOr<HttpResult> result =
      Perform({.method = method,
               .url = base + path,
               .headers = {"Authorization: Bearer " + *token, "Content-Type: application/json"},
               .body = body,
               .ca_file = options.ca_file});
  if (!result.ok()) {
    std::cerr << "tracegate: " << MessageOf(result.status()) << "\n";
    return 1;
  }
  out = json::parse(result->body, nullptr, false);
  if (result->status / 100 != 2) {
    const std::string message =
        out.is_object() && out.contains("message") && out["message"].is_string()
            ? out["message"].get<std::string>()
            : result->body.substr(0, 512);
    std::cerr << "tracegate: " << method << " " << path << ": HTTP " << result->status << ": "
              << message << "\n";
    return 1;
  }
  if (out.is_discarded()) {
    std::cerr << "tracegate: the API answered with something that is not JSON\n";
    return 1;
  }
  return 0;
}

// A query-string value, percent-encoded (RFC 3986's unreserved characters pass as they are).
std::string QueryValue(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(byte) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out += {'%', kHex[byte >> 4], kHex[byte & 0xf]};
    }
  }
  return out;
}

}  // namespace

void AddGrantCommands(CLI::App& app, int& exit_code) {
  auto* grant = app.add_subcommand("grant", "Ask for, inspect and revoke just-in-time grants");
  grant->require_subcommand(1);

  struct RequestOptions {
    ApiOptions api;
    std::string connection;
    std::string trace;
    std::string reason;
    bool json = false;
  };
  auto request_options = std::make_shared<RequestOptions>();
  auto* request = grant->add_subcommand(
      "request", "Request a grant for one trace; prints the one-time connection URI");
  AddApiOptions(*request, request_options->api);
  request->add_option("--connection", request_options->connection, "Connection name")->required();
  request->add_option("--trace", request_options->trace, "Trace id")->required();
  request->add_option("--reason", request_options->reason, "Why you need it (recorded)");
  request->add_flag("--json", request_options->json,
                    "Print the whole response (grant id, expiry, credential) as JSON");
  request->callback([request_options, &exit_code] {
    if (absl::Status valid = ValidateTraceId(request_options->trace); !valid.ok()) {
      std::cerr << "tracegate grant request: --trace: " << MessageOf(valid) << "\n";
      exit_code = 2;
      return;
    }
    json body{{"connection", request_options->connection}, {"trace_id", request_options->trace}};
    if (!request_options->reason.empty()) {
      body["reason"] = request_options->reason;
    }
    json out;
    exit_code = Call(request_options->api, "POST", "/v1/grants", DumpJson(body), out);
    if (exit_code != 0) {
      return;
    }
    if (request_options->json) {
      std::cout << DumpJson(out, 2) << "\n";
    } else {
      std::cout << out["postgres"]["uri"].get<std::string>() << "\n";
      if (out.value("state", "") == "pending") {
        std::cerr << "grant " << out["grant_id"].get<std::string>() << " waits for "
                  << out.value("approvals_required", 1) << " approval(s) from "
                  << DumpJson(out.value("approvers", json::array())) << " until "
                  << out["expires_at"].get<std::string>()
                  << "; a session opened with it is held until they decide\n";
      } else {
        std::cerr << "grant " << out["grant_id"].get<std::string>() << " expires at "
                  << out["expires_at"].get<std::string>() << "; the credential works "
                  << out["uses_allowed"].get<int>() << " time(s)\n";
      }
    }
  });

  for (const char* verb : {"show", "revoke"}) {
    struct IdOptions {
      ApiOptions api;
      std::string id;
    };
    auto options = std::make_shared<IdOptions>();
    const bool revoke = std::string_view(verb) == "revoke";
    auto* cmd = grant->add_subcommand(
        verb, revoke ? "Revoke a grant; a session using it is cut" : "Show a grant's state");
    AddApiOptions(*cmd, options->api);
    cmd->add_option("id", options->id, "Grant id")->required();
    cmd->callback([options, revoke, &exit_code] {
      json out;
      exit_code =
          Call(options->api, revoke ? "DELETE" : "GET", "/v1/grants/" + options->id, "", out);
      if (exit_code == 0) {
        std::cout << DumpJson(out, 2) << "\n";
      }
    });
  }
}

void AddApprovalCommands(CLI::App& app, int& exit_code) {
  auto* approvals = app.add_subcommand(
      "approvals", "Decide requests that wait for approval (you authenticate as the approver)");
  approvals->require_subcommand(1);

  struct ListOptions {
    ApiOptions api;
    std::string state = "pending";
    uint32_t limit = 100;
    std::string after;
    std::string connection;
    std::string trace_id;
    std::string requester;
    bool all = false;
    bool json = false;
  };
  auto list_options = std::make_shared<ListOptions>();
  auto* list = approvals->add_subcommand(
      "list", "Requests you may decide (or have made), newest first, a page at a time");
  AddApiOptions(*list, list_options->api);
  list->add_option("--state", list_options->state,
                   "pending, approved, denied, expired, cancelled or all")
      ->capture_default_str();
  list->add_option("--limit", list_options->limit, "Requests per page (1 to 200)")
      ->check(CLI::Range(1, 200))
      ->capture_default_str();
  list->add_option("--after", list_options->after,
                   "Start after this cursor (the \"next\" a previous page printed)");
  list->add_option("--connection", list_options->connection, "Only requests for this connection");
  list->add_option("--trace-id", list_options->trace_id, "Only requests for this trace");
  list->add_option("--requester", list_options->requester,
                   "Only this requester's requests: me, or <issuer name>:<subject>");
  list->add_flag("--all", list_options->all, "Follow every page to the end");
  list->add_flag("--json", list_options->json, "Print the API's JSON");
  list->callback([list_options, &exit_code] {
    const ListOptions& o = *list_options;
    std::string query = Cat("state=", QueryValue(o.state), "&limit=", o.limit);
    const std::pair<const char*, const std::string*> filters[] = {
        {"connection", &o.connection}, {"trace_id", &o.trace_id}, {"requester", &o.requester}};
    for (const auto& [name, value] : filters) {
      if (!value->empty()) {
        query += Cat("&", name, "=", QueryValue(*value));
      }
    }
    json listed = json::array();
    std::string after = o.after;
    std::string next;
    // --all stops after this many pages (200 000 requests at the largest page), so a server
    // that always answers `next` cannot keep the CLI going for ever.
    constexpr int kMaxPages = 1000;
    for (int page = 0; page < kMaxPages; ++page) {
      json out;
      exit_code = Call(
          o.api, "GET",
          Cat("/v1/approvals?", query, after.empty() ? "" : "&after=", QueryValue(after)), "", out);
      if (exit_code != 0) {
        return;
      }
      for (json& a : out["approvals"]) {
        listed.push_back(std::move(a));
      }
      next = out.value("next", std::string());
      if (!o.all || next.empty()) {
        break;
      }
      after = next;
    }
    if (o.json) {
      json out = {{"approvals", listed}};
      if (!next.empty()) {
        out["next"] = next;
      }
      std::cout << DumpJson(out, 2) << "\n";
      return;
    }
    std::cout << "id                              kind      state     votes  trace               "
                 "requester / reason\n";
    for (const json& a : listed) {
      std::cout << fmt::format("{:<31} {:<9} {:<9} {}/{}    {:<19} {} / {}\n", a.value("id", ""),
                               a.value("kind", ""), a.value("state", ""), a.value("approvals", 0),
                               a.value("required", 1), a.value("trace_id", "").substr(0, 19),
                               a.value("requester", ""), a.value("reason", ""));
    }
    if (!next.empty()) {
      std::cout << "more: --after " << next << "  (or --all)\n";
    }
  });

  struct IdOptions {
    ApiOptions api;
    std::string id;
    std::string comment;
  };
  auto show_options = std::make_shared<IdOptions>();
  auto* show = approvals->add_subcommand("show", "A request with its votes and comments");
  AddApiOptions(*show, show_options->api);
  show->add_option("id", show_options->id, "Request id (a grant id, or <grant>.r<n>)")->required();
  show->callback([show_options, &exit_code] {
    json out;
    exit_code = Call(show_options->api, "GET", "/v1/approvals/" + show_options->id, "", out);
    if (exit_code == 0) {
      std::cout << DumpJson(out, 2) << "\n";
    }
  });

  for (const char* verb : {"approve", "deny"}) {
    const bool approve = std::string_view(verb) == "approve";
    auto options = std::make_shared<IdOptions>();
    auto* cmd = approvals->add_subcommand(
        verb, approve ? "Approve a request (a grant, or a held result)"
                      : "Deny a request; the requester is told your comment");
    AddApiOptions(*cmd, options->api);
    cmd->add_option("id", options->id, "Request id (a grant id, or <grant>.r<n>)")->required();
    auto* comment = cmd->add_option("--comment", options->comment, "Why (shown to the requester)");
    if (!approve) {
      comment->required();
    }
    cmd->callback([options, approve, &exit_code] {
      json body = json::object();
      if (!options->comment.empty()) {
        body["comment"] = options->comment;
      }
      json out;
      exit_code = Call(options->api, "POST",
                       Cat("/v1/approvals/", options->id, approve ? "/approve" : "/deny"),
                       DumpJson(body), out);
      if (exit_code != 0) {
        return;
      }
      std::cout << "approval " << out.value("id", "") << ": " << out.value("state", "") << " ("
                << out.value("approvals", 0) << " of " << out.value("required", 1)
                << " approval(s))\n";
    });
  }
}

}  // namespace tracegate::app
