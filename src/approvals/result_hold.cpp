#include "approvals/result_hold.h"

#include "common/strings.h"

namespace tracegate::approvals {

bool MustHold(const ApprovalTerms& terms, uint64_t found) {
  return terms.hold_if_masked_at_least > 0 && found >= terms.hold_if_masked_at_least;
}

std::string HeldDetail(uint64_t found, uint32_t threshold) {
  return Cat("the result holds ", found, " value(s) masking found (the rule holds at ", threshold,
             ")");
}

std::string WithheldWhy(ApprovalService& approvals, const store::ApprovalRequest& settled) {
  if (absl::StatusOr<ApprovalView> view = approvals.Get(settled.id); view.ok()) {
    for (const store::ApprovalDecision& d : view->decisions) {
      if (!d.approve) {
        return Cat("approval ", settled.id, " was denied by ", d.approver,
                   d.comment.empty() ? "" : Cat(": ", d.comment));
      }
    }
  }
  return Cat("approval ", settled.id, " ", store::ApprovalStateName(settled.state));
}

}  // namespace tracegate::approvals
