#pragma once
// Session ids for the audit log and its index: one letter naming the data path ('p' Postgres,
// 'h' HTTP and the one-call fetch) and 16 hex digits from the CSPRNG. Random rather than
// counted, so that ids stay unique across restarts and across replicas sharing one store
// (a counter restarting at 1 made a second run reuse, and overwrite, the first run's ids).

#include <string>

namespace tracegate {

// `kind` + 16 lowercase hex digits (64 random bits), or "" when no randomness is available
// (the caller refuses the session rather than guess an id that could collide).
[[nodiscard]] std::string NewSessionId(char kind);

}  // namespace tracegate
