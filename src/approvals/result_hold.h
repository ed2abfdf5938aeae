#pragma once
// The words every path uses for a result held for approvers (rule hold_if_masked_at_least):
// psql sessions (pgproxy::Session), the HTTP listener, the one-call fetch over either store
// type and whatever answers in one go next (httpproxy::OneShotSession). One wording, so that
// an approver, a requester and an auditor read the same thing whichever path held the result.

#include <cstdint>
#include <string>

#include "approvals/approvals.h"
#include "store/state_store.h"

namespace tracegate::approvals {

// Whether a result in which masking found `found` values is held under `terms`.
[[nodiscard]] bool MustHold(const ApprovalTerms& terms, uint64_t found);

// "the result holds 12 value(s) masking found (the rule holds at 5)".
[[nodiscard]] std::string HeldDetail(uint64_t found, uint32_t threshold);

// Why a held result was not released: "approval g.r1 was denied by bob: not now",
// "approval g.r1 expired", "approval g.r1 cancelled". `settled` is the request as it settled;
// the deny's voter and comment are read from `approvals` (plain text if they cannot be).
[[nodiscard]] std::string WithheldWhy(ApprovalService& approvals,
                                      const store::ApprovalRequest& settled);

}  // namespace tracegate::approvals
