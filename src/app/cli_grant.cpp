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
    bool json = false;
  };
  auto list_options = std::make_shared<ListOptions>();
  auto* list = approvals->add_subcommand("list", "Requests you may decide (or have made)");
  AddApiOptions(*list, list_options->api);
  list->add_option("--state", list_options->state,
                   "pending, approved, denied, expired, cancelled or all")
      ->capture_default_str();
  list->add_flag("--json", list_options->json, "Print the API's JSON");
  list->callback([list_options, &exit_code] {
    json out;
    exit_code =
        Call(list_options->api, "GET", "/v1/approvals?state=" + list_options->state, "", out);
    if (exit_code != 0) {
      return;
    }
    if (list_options->json) {
      std::cout << DumpJson(out, 2) << "\n";
      return;
    }
    std::cout << "id                              kind      state     votes  trace               "
                 "requester / reason\n";
    for (const json& a : out["approvals"]) {
      std::cout << fmt::format("{:<31} {:<9} {:<9} {}/{}    {:<19} {} / {}\n", a.value("id", ""),
                               a.value("kind", ""), a.value("state", ""), a.value("approvals", 0),
                               a.value("required", 1), a.value("trace_id", "").substr(0, 19),
                               a.value("requester", ""), a.value("reason", ""));
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
