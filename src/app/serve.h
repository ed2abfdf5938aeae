#pragma once
// `tracegate serve`: runs the gateway until SIGTERM/SIGINT, then drains.

#include <memory>

#include "config/config.h"

namespace tracegate::app {

// Returns the process exit code.
int Serve(std::shared_ptr<const config::Config> config);

}  // namespace tracegate::app
