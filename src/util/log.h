#pragma once
// Logging goes to stderr through spdlog, so stdout stays clean for a command's real output
// (token ids, generated text, JSON).
#include <spdlog/spdlog.h>

namespace retort {

void init_logging(bool verbose);
bool stderr_is_terminal();
bool stdout_is_terminal();

}  // namespace retort
