#pragma once
// Subcommands of the `tracegate` binary beyond `serve` and `config check`. Each Add* registers
// its subcommands on `app`; when one of them was chosen, its callback stores the process exit
// code in `exit_code`.

#include <CLI/CLI.hpp>

namespace tracegate::app {

// `tracegate grant request|show|revoke`: the control-plane API from the shell.
void AddGrantCommands(CLI::App& app, int& exit_code);
// `tracegate approvals list|show|approve|deny`: approvers decide over the API.
void AddApprovalCommands(CLI::App& app, int& exit_code);
// `tracegate dev token`: tokens from the embedded development issuer.
void AddDevCommands(CLI::App& app, int& exit_code);
// `tracegate policy explain`: which rule decides, and why.
void AddPolicyCommands(CLI::App& app, int& exit_code);
// `tracegate gate check`: the statement gate's verdict on statements.
void AddGateCommands(CLI::App& app, int& exit_code);
// `tracegate audit sessions|replay|verify|export`: the recorded sessions.
void AddAuditCommands(CLI::App& app, int& exit_code);

}  // namespace tracegate::app
