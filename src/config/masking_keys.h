#pragma once
// Private to the config module: the keys of `masking_profiles:`, a list of named
// masking::Profile, each compiled into a masking::Masker at load.

#include "config/config.h"
#include "config/schema.h"

namespace tracegate::config::internal {

// Parses the list into Config::masking_profiles and compiles every profile that parsed
// without errors into Config::maskers; a profile that does not compile is an error at its
// position, naming it and the reason.
void ParseMaskingProfiles(const Item& item, Config& config, NoExtra&, Context& ctx);

}  // namespace tracegate::config::internal
