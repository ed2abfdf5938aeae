#pragma once
// Private to the config module: the keys of the sections that decide who gets access
// (identity, policy) and where grants are handed out and kept (api, state).

#include "config/config.h"
#include "config/schema.h"

namespace tracegate::config::internal {

const Table<Identity>& IdentityKeys();
const Table<Policy>& PolicyKeys();
const Table<State>& StateKeys();
// `api` is optional as a whole: parsed into Config::api.
void ParseApi(const Item& item, Config& config, NoExtra&, Context& ctx);
// Checks that span sections: policy rules name existing connections, the API's TLS needs the
// top-level certificate, listen addresses do not clash with the API's.
void CheckAccess(Config& config, Context& ctx);

}  // namespace tracegate::config::internal
