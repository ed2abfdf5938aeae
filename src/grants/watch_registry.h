#pragma once
// Private to grants: who wants to hear that a grant ended (revoked or expired), or that a
// pending grant was decided. See common/watch_registry.h for the locking rules.

#include "common/watch_registry.h"
#include "store/state_store.h"

namespace tracegate::grants::internal {

using WatchRegistry = tracegate::WatchRegistry<store::GrantState>;

}  // namespace tracegate::grants::internal
